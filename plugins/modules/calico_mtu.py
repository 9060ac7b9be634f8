#!/usr/bin/python
# Copyright: netmend.k8s contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
module: calico_mtu
short_description: Set the pod MTU in a node's Calico CNI configuration
version_added: 0.1.0
description:
  - Puts the right C("mtu") in the plugin entry of type C(calico) of a Calico CNI
    configuration file (C(.conflist), or a single-plugin C(.conf)).
  - When O(mtu) is not given, computes it as Felix does, from the smallest MTU of the
    up host interfaces matching O(interface_pattern), minus the encapsulation overhead
    (IP-in-IP 20, VXLAN 50 over IPv4 or 70 over IPv6, WireGuard 60 or 80). When no
    interface matches, 1460 minus the overhead is used, with a warning.
  - Only the MTU changes; every other byte stays as it was (key order, indentation,
    CRLF line endings, a UTF-8 byte order mark, trailing whitespace), and so do the file
    mode and owner. The write is atomic. A symbolic link is written through, so its target
    gets the new MTU and the link stays.
  - When the file has several C("plugins") keys, the last one is edited, because it is
    the one container runtimes read (Go's JSON decoder keeps the last duplicate); a
    warning says so.
  - An C("mtu") of V(0) in the file is Calico's auto-detect value (what
    C(veth_mtu) V("0") in the official manifests renders to); RV(previous_mtu) is then V(0).
    Auto-detection looks only at the host's own interfaces, minus the overhead. It is
    wrong where they do not show what the path carries, so set O(mtu) there - on GKE,
    whose VPC carries 1460 (managed Calico's pods came up with 1500 there, so set
    O(mtu=1460) with O(encapsulation=none)), and on overlays on overlays (a Calico tunnel
    inside VMs whose own network is a tunnel or VPN, where the host interface claims more
    than the outer tunnel carries).
  - A new MTU applies only to pods created afterwards; restart the others (the
    C(netmend.k8s.calico_mtu) role does so by eviction). calico-node's install-cni
    rewrites this file whenever it starts, so a lasting fix also sets the MTU where the
    install keeps it, or runs the role's agent.
author:
  - netmend developers (@netmend)
options:
  path:
    description:
      - The Calico CNI configuration file.
    type: path
    default: /etc/cni/net.d/10-calico.conflist
  mtu:
    description:
      - The pod MTU to set. Computed from the host interfaces when omitted.
      - Must be within 68-65535 (1280-65535 for O(ip_family=ipv6) or O(ip_family=dual)),
        and not larger than the detected host MTU minus the overhead unless O(force=true).
    type: int
  encapsulation:
    description:
      - The encapsulation of pod traffic between nodes, which decides the overhead.
    type: str
    choices: [ipip, vxlan, wireguard, none]
    default: ipip
  ip_family:
    description:
      - Address family of the underlay. V(dual) takes the larger overhead and the IPv6 minimum MTU.
    type: str
    choices: [ipv4, ipv6, dual]
    default: ipv4
  interface_pattern:
    description:
      - Regular expression for the host interfaces whose MTU bounds the pod MTU (Felix's C(mtuIfacePattern)).
    type: str
    default: ^((en|wl|ww|sl|ib)[Pcopsvx].*|(eth|wlan|wwan).*)
  backup:
    description:
      - Keep a timestamped copy of the file before changing it.
    type: bool
    default: false
  force:
    description:
      - Accept an explicit O(mtu) larger than the detected host MTU minus the overhead.
    type: bool
    default: false
  veth_prefix:
    description:
      - Prefix of the host-side pod interfaces (Felix's C(interfacePrefix)), for RV(stale_interfaces).
    type: str
    default: cali
extends_documentation_fragment:
  - netmend.k8s.attributes
  - netmend.k8s.attributes.NODE
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
  platform:
    platforms: linux
notes:
  - Reads C(/sys/class/net), which shows the interfaces of the network namespace the
    module runs in; run it on the node itself.
seealso:
  - name: Calico MTU documentation
    description: How Calico chooses and configures the pod MTU.
    link: https://docs.tigera.io/calico/latest/networking/configuring/mtu
"""

EXAMPLES = r"""
- name: Compute the MTU from the host interfaces (IP-in-IP)
  netmend.k8s.calico_mtu:

- name: Set a known MTU for VXLAN on a GCE node
  netmend.k8s.calico_mtu:
    mtu: 1410
    encapsulation: vxlan
    backup: true

- name: Fix a single-plugin config on an IPv6 cluster
  netmend.k8s.calico_mtu:
    path: /etc/cni/net.d/10-calico.conf
    encapsulation: vxlan
    ip_family: ipv6
"""

RETURN = r"""
mtu:
  description: The MTU the calico plugin entry carries now (or would, in check mode).
  returned: success
  type: int
  sample: 1440
previous_mtu:
  description: The MTU the entry carried before; null when it had none, V(0) when it was Calico's auto-detect value.
  returned: success
  type: int
  sample: 1500
mtu_source:
  description: Where the MTU came from, V(explicit), V(detected) from the host interfaces, or V(fallback) (1460 minus the overhead).
  returned: success
  type: str
  sample: detected
host_mtu:
  description: The smallest MTU of the up interfaces matching O(interface_pattern); null when none matched.
  returned: success
  type: int
  sample: 1460
interface:
  description: The interface that had RV(host_mtu); null when none matched.
  returned: success
  type: str
  sample: eth0
path:
  description: The CNI configuration file.
  returned: success
  type: str
  sample: /etc/cni/net.d/10-calico.conflist
stale_interfaces:
  description:
    - Host-side pod interfaces whose MTU is not RV(mtu). Their pods were created with another MTU and need a restart;
      Calico names them O(veth_prefix) followed by 11 hex digits of the SHA-1 of C(namespace.pod).
  returned: success
  type: list
  elements: dict
  contains:
    name:
      description: Interface name.
      type: str
      sample: calic440f455693
    mtu:
      description: Its MTU.
      type: int
      sample: 1500
  sample: [{"name": "calic440f455693", "mtu": 1500}]
backup_file:
  description: The copy made before the change; null when none was made.
  returned: success
  type: str
  sample: /etc/cni/net.d/10-calico.conflist.2520.2026-11-21@06:00:00~
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.netmend.k8s.plugins.module_utils.mtu import (
    DEFAULT_CONFLIST,
    ENCAPSULATIONS,
    FELIX_INTERFACE_PATTERN,
    IP_FAMILIES,
    SYS_CLASS_NET,
    VETH_PREFIX,
    MtuError,
    ensure_config_mtu,
    plan_mtu,
    stale_interfaces,
)

ARGUMENT_SPEC = dict(
    path=dict(type="path", default=DEFAULT_CONFLIST),
    mtu=dict(type="int"),
    encapsulation=dict(type="str", choices=list(ENCAPSULATIONS), default="ipip"),
    ip_family=dict(type="str", choices=list(IP_FAMILIES), default="ipv4"),
    interface_pattern=dict(type="str", default=FELIX_INTERFACE_PATTERN),
    backup=dict(type="bool", default=False),
    force=dict(type="bool", default=False),
    veth_prefix=dict(type="str", default=VETH_PREFIX),
)


def run_module(module):
    params = module.params
    plan = plan_mtu(params["mtu"], params["encapsulation"], params["ip_family"],
                    params["interface_pattern"], params["force"], SYS_CLASS_NET)
    for warning in plan["warnings"]:
        module.warn(warning)
    # Check mode first, so a backup is made only when a write follows.
    outcome = ensure_config_mtu(params["path"], plan["mtu"], check_mode=True)
    backup_file = None
    if outcome["changed"] and not module.check_mode:
        if params["backup"]:
            backup_file = module.backup_local(params["path"])
        outcome = ensure_config_mtu(params["path"], plan["mtu"])
    for warning in outcome["warnings"]:
        module.warn(warning)
    result = dict(
        changed=outcome["changed"],
        mtu=plan["mtu"],
        previous_mtu=outcome["previous_mtu"],
        mtu_source=plan["mtu_source"],
        host_mtu=plan["host_mtu"],
        interface=plan["interface"],
        path=params["path"],
        backup_file=backup_file,
        stale_interfaces=stale_interfaces(plan["mtu"], params["veth_prefix"], SYS_CLASS_NET),
    )
    if module._diff:
        result["diff"] = dict(before=outcome["before"], after=outcome["after"],
                              before_header=params["path"], after_header=params["path"])
    return result


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    try:
        result = run_module(module)
    except MtuError as exc:
        module.fail_json(msg=str(exc), path=module.params["path"])
    module.exit_json(**result)


if __name__ == "__main__":
    main()
