#!/usr/bin/python
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
module: pod_poke
short_description: Ping many pod addresses at once and report which answer
version_added: 0.1.0
description:
  - Sends ICMP echo requests to every target at once from one ICMP socket per address
    family (IPv4 and IPv6), matches replies by identifier, sequence number and source,
    and ends the sweep by its deadline whatever the number of targets.
  - Traffic through each target's path also warms up tunnels (Calico IP-in-IP, VXLAN)
    that only start forwarding after a first packet.
  - With O(mtu_probe), also sends one don't-fragment packet of that total size to each
    target and reports the targets that answer small packets but not the large one
    (MTU black holes).
  - Needs C(CAP_NET_RAW), or an unprivileged ICMP socket allowed by
    C(net.ipv4.ping_group_range); the module fails saying which when it has neither.
  - Sends packets but changes nothing, so it always reports C(changed=false) and runs
    the same way in check mode.
author:
  - netmend developers (@netmend)
options:
  targets:
    description:
      - Addresses to probe. Each is an IP address string, or a dict with C(ip) and
        optionally C(name), C(namespace) and C(node), which are copied into the result.
      - Duplicates are probed once. An invalid address fails the module, naming it,
        before any packet is sent.
    type: list
    elements: raw
    required: true
  timeout:
    description:
      - Seconds to wait for answers after the last packet is sent.
      - Without O(rate) this bounds the whole sweep.
    type: float
    default: 1.0
  count:
    description: Echo requests per target; a target is reachable when any is answered.
    type: int
    default: 1
  size:
    description: ICMP payload bytes of each echo request (not counting IP and ICMP headers).
    type: int
    default: 56
  dont_fragment:
    description: Set don't-fragment on the regular echo requests too.
    type: bool
    default: false
  mtu_probe:
    description:
      - Also send one don't-fragment echo request of this total IP packet size to each
        target (for example V(1500), or the pod MTU) and report whether it came back.
      - Reachable targets whose probe vanishes without an ICMP error are listed in
        RV(mtu_blackholed); those that get "fragmentation needed" or "packet too big"
        in RV(mtu_limited).
    type: int
  rate:
    description:
      - Cap on packets sent per second, for fragile networks. Default is no cap.
      - The sweep deadline then grows by the time the packets take to leave.
    type: float
  fail_on_unreachable:
    description: Fail (with the full result) when any target is unreachable or MTU black-holed.
    type: bool
    default: false
extends_documentation_fragment:
  - netmend.k8s.attributes
  - netmend.k8s.attributes.NODE
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details: Nothing changes, so there is never a diff.
  platform:
    platforms: linux
notes:
  - Probes leave from the host Ansible runs the module on. To exercise pod-to-pod paths,
    deploy the in-cluster agent with the C(netmend.k8s.pod_poke) role instead
    (C(pod_poke_delivery=daemonset)).
"""

EXAMPLES = r"""
- name: Ping three pods
  netmend.k8s.pod_poke:
    targets:
      - 10.244.1.12
      - 10.244.2.7
      - fd00:10:244::3

- name: Ping pods found with kubernetes.core.k8s_info, looking for MTU black holes
  netmend.k8s.pod_poke:
    targets: "{{ pods.resources | community.general.json_query(query) }}"
    mtu_probe: 1450
    timeout: 2
  vars:
    query: "[?status.podIP].{ip: status.podIP, name: metadata.name, namespace: metadata.namespace, node: spec.nodeName}"
  register: poke

- name: Fail when a pod does not answer
  netmend.k8s.pod_poke:
    targets: "{{ pod_ips }}"
    count: 3
    rate: 500
    fail_on_unreachable: true
"""

RETURN = r"""
total:
  description: Number of distinct targets probed.
  returned: always
  type: int
  sample: 120
reachable:
  description: Targets that answered at least one echo request.
  returned: always
  type: list
  elements: dict
  contains:
    ip:
      description: The target address.
      type: str
      sample: 10.244.1.12
    rtt_ms:
      description: Mean round-trip time of the answered requests, in milliseconds.
      type: float
      sample: 0.412
    sent:
      description: Echo requests sent (not counting the MTU probe).
      type: int
      sample: 1
    received:
      description: Echo replies received.
      type: int
      sample: 1
    mtu_probe:
      description: With O(mtu_probe), V(passed), V(blackholed), V(fragmentation needed) or V(packet too big).
      type: str
      sample: passed
    path_mtu:
      description: With O(mtu_probe), the path MTU reported by the ICMP error, when one came.
      type: int
      sample: 1400
    name:
      description: The target's C(name), C(namespace) and C(node) fields, when given.
      type: str
      sample: web-0
  sample:
    - {ip: 10.244.1.12, rtt_ms: 0.412, sent: 1, received: 1, name: web-0, namespace: shop, node: node-1}
unreachable_targets:
  description:
    - Targets that answered nothing, with the same fields and a C(reason).
    - Not called C(unreachable), which Ansible reserves for hosts it cannot reach.
  returned: always
  type: list
  elements: dict
  contains:
    ip:
      description: The target address.
      type: str
      sample: 10.244.2.7
    reason:
      description: >-
        V(timeout), V(unsent) (no probe could leave: the socket stayed full for the whole timeout), the ICMP error
        received (V(host unreachable), ...) or the send error.
      type: str
      sample: timeout
    rtt_ms:
      description: Always null.
      type: float
      sample: null
  sample:
    - {ip: 10.244.2.7, reason: timeout, rtt_ms: null, sent: 1, received: 0}
mtu_blackholed:
  description: Reachable targets whose don't-fragment O(mtu_probe) packet vanished without any ICMP error.
  returned: always
  type: list
  elements: dict
  sample:
    - {ip: 10.244.2.9, rtt_ms: 0.5, mtu_probe: blackholed, sent: 1, received: 1}
mtu_limited:
  description: Reachable targets whose O(mtu_probe) packet got "fragmentation needed" / "packet too big".
  returned: always
  type: list
  elements: dict
  sample:
    - {ip: 10.244.2.9, rtt_ms: 0.5, mtu_probe: fragmentation needed, path_mtu: 1400, sent: 1, received: 1}
duration_s:
  description: Wall time of the sweep in seconds.
  returned: always
  type: float
  sample: 1.004
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.netmend.k8s.plugins.module_utils.poke import PokeError, sweep

ARGUMENT_SPEC = dict(
    targets=dict(type="list", elements="raw", required=True),
    timeout=dict(type="float", default=1.0),
    count=dict(type="int", default=1),
    size=dict(type="int", default=56),
    dont_fragment=dict(type="bool", default=False),
    mtu_probe=dict(type="int"),
    rate=dict(type="float"),
    fail_on_unreachable=dict(type="bool", default=False),
)


def run_module(module):
    params = module.params
    result = sweep(
        params["targets"],
        timeout=params["timeout"],
        count=params["count"],
        size=params["size"],
        dont_fragment=params["dont_fragment"],
        mtu_probe=params["mtu_probe"],
        rate=params["rate"],
    )
    # A true "unreachable" key would make Ansible mark the host itself unreachable.
    result["unreachable_targets"] = result.pop("unreachable")
    result["changed"] = False
    down = result["unreachable_targets"] + result["mtu_blackholed"]
    if params["fail_on_unreachable"] and down:
        module.fail_json(
            msg="%d of %d targets unreachable, %d MTU black-holed: %s" % (
                len(result["unreachable_targets"]), result["total"], len(result["mtu_blackholed"]),
                ", ".join(entry["ip"] for entry in down[:20])),
            **result)
    module.exit_json(**result)


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    try:
        run_module(module)
    except PokeError as exc:
        module.fail_json(msg=str(exc))


if __name__ == "__main__":
    main()
