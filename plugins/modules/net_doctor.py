#!/usr/bin/python
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
module: net_doctor
short_description: Find the node-level network faults that break Kubernetes pod traffic
version_added: 0.1.0
description:
  - Reads one node (the host, or the network namespace, the module runs in) and reports
    each fault it finds as a finding with a stable C(id), a C(severity), what it
    observed, what it expected, advice, and the netmend role or setting that fixes it.
  - "Checks: neighbour entries against C(gc_thresh1/2/3) (C(arp_gc_thresh)), forwarding off
    (C(ip_forward)), strict reverse-path filtering on tunnel or pod-route interfaces
    (C(rp_filter)), C(tcp_tw_recycle) on (kernels before 4.12), the connection-tracking
    table nearly full (C(conntrack_full)), tunnel, pod veth and CNI config MTUs against the
    host MTU minus the encapsulation overhead (C(mtu_mismatch), calico_mtu's arithmetic),
    other nodes' pod CIDRs without a route or routed the wrong way (C(route_missing),
    C(route_wrong)), rules in both the legacy and the nft iptables backend
    (C(iptables_backend_mixed)), BGP peers not accepting TCP 179 (C(bgp_unreachable)) and
    expected tunnel devices missing or down (C(tunnel_down))."
  - Read-only. The only packets it sends are TCP connection attempts to O(bgp_peers),
    all at once and bounded by one O(bgp_timeout).
  - Reads routes and neighbours with C(ip -j) (procfs when C(ip) is missing), sysctls from
    C(/proc/sys), interfaces from C(/sys/class/net), iptables rule counts with
    C(iptables-legacy-save) and C(iptables-nft-save) when installed.
  - The C(netmend.k8s.net_doctor) role feeds it the cluster's nodes, pod CIDRs and peers and
    adds the cluster-level findings.
author:
  - netmend developers (@netmend)
options:
  node_name:
    description:
      - This node's name in O(nodes). When empty, the nodes holding one of this host's
        addresses are taken as this node.
    type: str
    default: ""
  nodes:
    description:
      - The cluster's nodes. Every node but this one is a peer whose pod CIDRs must be routed
        towards it.
      - A malformed CIDR or address fails the module, naming it, before anything is read.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: Node name.
        type: str
        required: true
      addresses:
        description: The node's addresses (InternalIP), the next hop of its pod CIDRs.
        type: list
        elements: str
        default: []
      pod_cidrs:
        description: The node's pod CIDRs (C(spec.podCIDRs), or Calico's blocks on the node).
        type: list
        elements: str
        default: []
      alive:
        description: Whether the node is up; a blackhole route to a dead node's pods is expected.
        type: bool
        default: true
  pod_count:
    description: Pods in the cluster, to size the recommended C(gc_thresh) values in the advice.
    type: int
  bgp_peers:
    description:
      - Addresses whose TCP O(bgp_port) must accept a connection (the node's BGP peers).
        IP addresses only; names are not resolved.
    type: list
    elements: str
    default: []
  bgp_port:
    description: The BGP port.
    type: int
    default: 179
  bgp_timeout:
    description: Seconds the whole BGP probe may take, whatever the number of peers.
    type: float
    default: 1.0
  encapsulation:
    description:
      - The pod network's encapsulation. V(auto) infers it from the tunnel devices present
        (C(vxlan.calico), C(tunl0), C(flannel.1), C(cilium_vxlan), C(wireguard.cali)).
    type: str
    choices: [auto, ipip, vxlan, wireguard, none]
    default: auto
  ip_family:
    description: Address family of the underlay, for the encapsulation overhead.
    type: str
    choices: [ipv4, ipv6, dual]
    default: ipv4
  interface_pattern:
    description: Regular expression of the host interfaces whose smallest MTU is the host MTU (Felix's default).
    type: str
    default: ^((en|wl|ww|sl|ib)[Pcopsvx].*|(eth|wlan|wwan).*)
  cni_config:
    description: The CNI config whose calico plugin entry's C(mtu) is checked; skipped when the file does not exist.
    type: path
    default: /etc/cni/net.d/10-calico.conflist
  expected_tunnels:
    description: Tunnel devices that must exist and be up (for example C(vxlan.calico) when an IPPool uses VXLAN).
    type: list
    elements: str
    default: []
  veth_prefixes:
    description: Name prefixes of the host-side pod interfaces.
    type: list
    elements: str
    default: [cali, veth, lxc]
  gc_thresh:
    description:
      - "C([gc_thresh1, gc_thresh2, gc_thresh3]) to check the neighbour count against, instead
        of the kernel's C(net.ipv4.neigh.default.gc_thresh*) and C(net.ipv6.neigh.default.gc_thresh*)."
    type: list
    elements: int
  conntrack_max:
    description: Table size to check C(nf_conntrack_count) against, instead of C(net.netfilter.nf_conntrack_max).
    type: int
  checks:
    description: The checks to run; V(routes) covers C(route_missing) and C(route_wrong).
    type: list
    elements: str
    choices: [arp_gc_thresh, ip_forward, rp_filter, tcp_tw_recycle, conntrack_full, mtu_mismatch, routes,
              iptables_backend_mixed, bgp_unreachable, tunnel_down]
    default: [arp_gc_thresh, ip_forward, rp_filter, tcp_tw_recycle, conntrack_full, mtu_mismatch, routes,
              iptables_backend_mixed, bgp_unreachable, tunnel_down]
  fail_on:
    description: Fail (with the full result) when a finding of this severity or worse is found.
    type: str
    choices: [error, warning, never]
    default: never
extends_documentation_fragment:
  - netmend.k8s.attributes
  - netmend.k8s.attributes.NODE
attributes:
  check_mode:
    support: full
    details: The module only reads, so check mode runs it unchanged.
  diff_mode:
    support: none
  platform:
    platforms: linux
notes:
  - C(gc_thresh*) and C(nf_conntrack_max) are kernel-wide on most kernels; the module reads
    them where the kernel keeps them, and the neighbour count the kernel compares them with
    (C(/proc/net/stat/arp_cache)).
  - Reading iptables needs root (C(CAP_NET_ADMIN)); without the C(*-save) tools the check is
    listed in RV(skipped).
seealso:
  - module: netmend.k8s.calico_mtu
  - module: netmend.k8s.pod_poke
"""

EXAMPLES = r"""
- name: Diagnose the node
  netmend.k8s.net_doctor:
  register: doctor

- name: Diagnose with the cluster's view of the other nodes and BGP peers
  netmend.k8s.net_doctor:
    node_name: node-1
    nodes:
      - {name: node-1, addresses: [192.168.1.11], pod_cidrs: [10.244.1.0/24]}
      - {name: node-2, addresses: [192.168.1.12], pod_cidrs: [10.244.2.0/24]}
    bgp_peers: [192.168.1.12]
    expected_tunnels: [tunl0]
    pod_count: 3000
    fail_on: error

- name: Only the neighbour table, against thresholds of our own
  netmend.k8s.net_doctor:
    checks: [arp_gc_thresh]
    gc_thresh: [1024, 4096, 8192]
"""

RETURN = r"""
findings:
  description: The faults found, errors first.
  returned: always
  type: list
  elements: dict
  contains:
    id:
      description:
        - Stable identifier, one of V(arp_gc_thresh), V(ip_forward), V(rp_filter), V(tcp_tw_recycle),
          V(conntrack_full), V(mtu_mismatch), V(route_missing), V(route_wrong), V(iptables_backend_mixed),
          V(bgp_unreachable), V(tunnel_down).
      type: str
      sample: bgp_unreachable
    severity:
      description: V(error), V(warning) or V(info).
      type: str
      sample: error
    subject:
      description: What the finding is about (interface, route, peer, sysctl).
      type: str
      sample: 192.168.1.12:179
    observed:
      description: What was measured.
      type: str
      sample: "TCP 179: no answer within 1.0s"
    expected:
      description: What a healthy node shows.
      type: str
      sample: TCP 179 open
    advice:
      description: What it means and what to do.
      type: str
      sample: BIRD on this node cannot reach its BGP peer...
    fix:
      description: The netmend role or the setting that repairs it; null when there is none.
      type: str
      sample: netmend.k8s.calico_mtu
  sample:
    - id: ip_forward
      severity: error
      subject: net.ipv4.ip_forward
      observed: net.ipv4.ip_forward = 0
      expected: net.ipv4.ip_forward = 1
      advice: The node does not forward ipv4 packets...
      fix: sysctl net.ipv4.ip_forward=1
facts:
  description: What was measured, per check.
  returned: always
  type: dict
  contains:
    kernel:
      description: Kernel release.
      type: str
      sample: 6.1.0-18-amd64
    peers:
      description: The O(nodes) taken as peers (all but this node).
      type: list
      elements: str
      sample: [node-2]
    neighbours:
      description: Neighbour entries per family, in this namespace and in the kernel's whole table.
      type: dict
      sample: {ipv4: {namespace: 12, table: 12}, ipv6: {namespace: 3, table: 3}}
    gc_thresh:
      description: The thresholds checked against, per family.
      type: dict
      sample: {ipv4: [128, 512, 1024], ipv6: [128, 512, 1024]}
    forwarding:
      description: C(net.ipv4.ip_forward) and C(net.ipv6.conf.all.forwarding).
      type: dict
      sample: {ipv4: 1, ipv6: 0}
    rp_filter:
      description: rp_filter of C(all) and of each interface checked.
      type: dict
      sample: {all: 2, eth0: 2, tunl0: 0}
    tcp_tw_recycle:
      description: Its value; null on kernels without it.
      type: int
      sample: null
    conntrack:
      description: C(count) and C(max) of the connection-tracking table.
      type: dict
      sample: {count: 120, max: 262144}
    mtu:
      description:
        - C(encapsulation), C(host_mtu), C(host_interface), C(overhead), the expected C(pod_mtu),
          the CNI config's C(cni_mtu), C(tunnels) (name to MTU) and C(veths) (MTU to count).
      type: dict
      sample: {encapsulation: vxlan, host_mtu: 1500, host_interface: eth0, overhead: 50, pod_mtu: 1450,
               cni_mtu: 1450, tunnels: {vxlan.calico: 1450}, veths: {"1450": 12}}
    routes_checked:
      description: Peer pod CIDRs checked for a route.
      type: int
      sample: 2
    iptables_rules:
      description: Rule counts per backend and family; null where the tool is missing.
      type: dict
      sample: {legacy: {ipv4: 0, ipv6: 0}, nft: {ipv4: 86, ipv6: 12}}
    bgp:
      description: Per peer, V(open), V(refused), V(timeout) or the connect error.
      type: dict
      sample: {192.168.1.12: open}
    duration_s:
      description: Wall time of the diagnosis in seconds.
      type: float
      sample: 0.041
skipped:
  description: Checks (or parts of them) that could not run here, with the reason.
  returned: always
  type: dict
  sample: {iptables_backend_mixed: neither iptables-legacy-save nor iptables-nft-save is installed}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.netmend.k8s.plugins.module_utils.mtu import DEFAULT_CONFLIST, FELIX_INTERFACE_PATTERN
from ansible_collections.netmend.k8s.plugins.module_utils.netdoctor import (
    BGP_PORT,
    DEFAULT_VETH_PREFIXES,
    ENCAPSULATIONS,
    NODE_CHECKS,
    SEVERITIES,
    DoctorError,
    Spec,
    diagnose,
)

ARGUMENT_SPEC = dict(
    node_name=dict(type="str", default=""),
    nodes=dict(type="list", elements="dict", default=[], options=dict(
        name=dict(type="str", required=True),
        addresses=dict(type="list", elements="str", default=[]),
        pod_cidrs=dict(type="list", elements="str", default=[]),
        alive=dict(type="bool", default=True),
    )),
    pod_count=dict(type="int"),
    bgp_peers=dict(type="list", elements="str", default=[]),
    bgp_port=dict(type="int", default=BGP_PORT),
    bgp_timeout=dict(type="float", default=1.0),
    encapsulation=dict(type="str", choices=list(ENCAPSULATIONS), default="auto"),
    ip_family=dict(type="str", choices=["ipv4", "ipv6", "dual"], default="ipv4"),
    interface_pattern=dict(type="str", default=FELIX_INTERFACE_PATTERN),
    cni_config=dict(type="path", default=DEFAULT_CONFLIST),
    expected_tunnels=dict(type="list", elements="str", default=[]),
    veth_prefixes=dict(type="list", elements="str", default=list(DEFAULT_VETH_PREFIXES)),
    gc_thresh=dict(type="list", elements="int"),
    conntrack_max=dict(type="int"),
    checks=dict(type="list", elements="str", choices=list(NODE_CHECKS), default=list(NODE_CHECKS)),
    fail_on=dict(type="str", choices=["error", "warning", "never"], default="never"),
)


def run_module(module):
    params = module.params
    spec = Spec(node_name=params["node_name"], nodes=params["nodes"], pod_count=params["pod_count"],
                bgp_peers=params["bgp_peers"], bgp_port=params["bgp_port"], bgp_timeout=params["bgp_timeout"],
                encapsulation=params["encapsulation"], ip_family=params["ip_family"],
                interface_pattern=params["interface_pattern"], cni_config=params["cni_config"],
                expected_tunnels=params["expected_tunnels"], veth_prefixes=params["veth_prefixes"],
                gc_thresh=params["gc_thresh"], conntrack_max=params["conntrack_max"], checks=params["checks"])
    result = diagnose(spec)
    result["changed"] = False
    if params["fail_on"] != "never":
        worst = SEVERITIES[:SEVERITIES.index(params["fail_on"]) + 1]
        failing = [item for item in result["findings"] if item["severity"] in worst]
        if failing:
            module.fail_json(msg="%d finding(s) of severity %s or worse: %s" % (
                len(failing), params["fail_on"], ", ".join("%s %s" % (item["id"], item["subject"]) for item in failing)),
                **result)
    return result


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    try:
        module.exit_json(**run_module(module))
    except DoctorError as exc:
        module.fail_json(msg=str(exc))


if __name__ == "__main__":
    main()
