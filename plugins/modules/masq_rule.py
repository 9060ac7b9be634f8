#!/usr/bin/python
# Copyright: netmend.k8s contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
module: masq_rule
short_description: Source-NAT pod traffic to chosen destination CIDRs on a node
version_added: 0.1.0
description:
  - Owns one chain in the C(nat) table (default C(NETMEND-MASQ)) holding one commented C(MASQUERADE) rule
    per destination CIDR, in the given order, and one commented jump to it from C(POSTROUTING) that skips
    C(LOCAL) destinations.
  - Use it where pods reach a network (a VPN, a peered range) that cannot route back to pod IPs because the
    node's masquerade rules leave that range alone, for example GKE's C(10.0.0.0/8) non-masquerade range.
  - Every change is one C(iptables-restore --noflush --wait) transaction that names only this chain and its
    jump; kube-proxy's, kubelet's and ip-masq-agent's rules are never rewritten. IPv6 CIDRs go to
    C(ip6tables) in the same run.
  - Duplicate CIDRs and CIDRs inside another listed one are dropped with a warning. IPv6 addresses are written
    the way C(ip6tables-save) prints them (an IPv4-mapped range as C(::ffff:10.0.0.0/104)), so a second run
    changes nothing.
  - A family left without destinations (for example the last IPv6 CIDR removed from O(cidrs)) loses its chain
    and jump in the same run.
  - "Ownership. The chain is this module's only when every rule in it carries the comment
    C(netmend masq_rule: ...), or, when it is empty, when a C(POSTROUTING) jump with that comment leads to it.
    An existing chain of that name that is anything else belongs to someone else; O(state=present) fails
    naming it, and O(state=absent) leaves it alone with a warning. Either way nothing is written."
  - Bad input (a misaligned or invalid CIDR, an IPv6 zone index such as C(fe80::%eth0/64), an empty list with
    O(state=present), a chain name iptables would reject or another component reserves) fails before any
    iptables command runs.
  - For every node of a cluster, current and future, use the C(netmend.k8s.masq_rule) role, which runs the
    same code as an agent that repairs the chain on an interval.
author:
  - netmend developers (@netmend)
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
options:
  cidrs:
    description:
      - Destination CIDRs whose traffic is masqueraded to the node's address, for example C(10.11.0.0/24).
      - Host bits must be zero. A plain address means a /32 (/128).
      - Required and non-empty when O(state=present).
    type: list
    elements: str
    default: []
  state:
    description:
      - V(present) writes the chain and the jump; V(absent) removes the jump and the chain and nothing else.
    type: str
    choices: [present, absent]
    default: present
  chain:
    description:
      - Name of the chain in the C(nat) table this module owns.
      - At most 28 characters, no leading C(-) or C(!), no whitespace or quotes, not a builtin chain or target
        name.
      - Names starting with the prefixes of other node components are refused, in any letter case; C(KUBE-)
        (kube-proxy, kubelet), C(IP-MASQ) (ip-masq-agent), C(CALI-) (Calico Felix), C(CILIUM) (Cilium) and
        C(DOCKER) (Docker).
    type: str
    default: NETMEND-MASQ
  source_cidrs:
    description:
      - Only masquerade traffic from these CIDRs (typically the pod CIDR). Empty means any source.
    type: list
    elements: str
    default: []
  random_fully:
    description:
      - Add C(--random-fully) to the C(MASQUERADE) rules (fully randomised source ports).
    type: bool
    default: false
  backend:
    description:
      - The iptables backend to use. V(auto) picks the one kubelet uses, found by its canary chains
        C(KUBE-IPTABLES-HINT) and C(KUBE-KUBELET-CANARY), else V(nft). Never mix backends on one host.
    type: str
    choices: [auto, nft, legacy]
    default: auto
  lock_timeout:
    description:
      - Seconds to wait for the xtables lock (C(--wait)) and for this collection's own lock file.
    type: int
    default: 5
  position:
    description:
      - V(insert) adds the jump as the first rule of C(POSTROUTING) and keeps it above every rule that could
        end traversal for the traffic it NATs. A rule above the jump counts when its target is C(ACCEPT),
        C(DROP), C(REJECT), C(RETURN), C(QUEUE), C(NFQUEUE), C(MASQUERADE), C(SNAT), C(DNAT), C(REDIRECT) or
        C(NETMAP), or it is a goto (C(-g)), unless its C(-d) match cannot match any of O(cidrs); other matches
        are assumed to match. The jump is then moved back to the top.
      - A jump (C(-j)) to another component's chain above ours is not counted, so Felix keeping its
        C(cali-POSTROUTING) jump first (C(ChainInsertMode=Insert)) or kube-proxy inserting its own is
        coexisted with, not fought. Those chains are not read; a C(RETURN) in them comes back to
        C(POSTROUTING), and they end traversal only by NATing the packet themselves.
      - V(append) adds the jump at the end when missing and leaves it wherever it is.
    type: str
    choices: [insert, append]
    default: insert
notes:
  - Needs root (C(CAP_NET_ADMIN)) and the C(iptables-nft)/C(iptables-legacy) binaries of iptables 1.8 or later.
  - Holds C(/run/netmend-masq.lock) around each read-compare-write so concurrent runs (for example the module
    and the agent) cannot both add a jump.
seealso:
  - name: ip-masq-agent
    description: The GKE component whose non-masquerade list the role can edit instead.
    link: https://github.com/kubernetes-sigs/ip-masq-agent
"""

EXAMPLES = r"""
- name: Masquerade pod traffic to the VPN range
  netmend.k8s.masq_rule:
    cidrs:
      - 10.11.0.0/24

- name: Masquerade only traffic from the pod CIDR, with random source ports
  netmend.k8s.masq_rule:
    cidrs:
      - 10.11.0.0/24
      - fd00:11::/64
    source_cidrs:
      - 10.4.0.0/14
      - fd00:4::/56
    random_fully: true

- name: Remove the chain and its jump
  netmend.k8s.masq_rule:
    state: absent
"""

RETURN = r"""
changed:
  description: Whether the chain or the jump was (or in check mode would be) written.
  returned: always
  type: bool
  sample: true
chain:
  description: The chain this module owns.
  returned: always
  type: str
  sample: NETMEND-MASQ
cidrs:
  description: The destination CIDRs after normalisation (duplicates and contained CIDRs dropped).
  returned: always
  type: list
  elements: str
  sample: ["10.11.0.0/24"]
backend:
  description: The iptables backend used.
  returned: always
  type: str
  sample: nft
rules:
  description: The IPv4 chain after the run, as C(iptables -t nat -S <chain>) prints it; empty when absent.
  returned: always
  type: list
  elements: str
  sample:
    - -N NETMEND-MASQ
    - -A NETMEND-MASQ -d 10.11.0.0/24 -m comment --comment "netmend masq_rule: 10.11.0.0/24" -j MASQUERADE
rules_ipv6:
  description: The IPv6 chain after the run, as C(ip6tables -t nat -S <chain>) prints it; empty when absent.
  returned: always
  type: list
  elements: str
  sample: []
drift:
  description: What differed from the wanted state, one line per finding, prefixed by the address family.
  returned: always
  type: list
  elements: str
  sample: ["ipv4: jump from POSTROUTING missing"]
diff:
  description: The chain and the jump before and after, per family, in diff mode.
  returned: when diff mode is on
  type: dict
  contains:
    before:
      description: Chain and jump lines before the run.
      type: str
      returned: success
      sample: "# ipv4 nat\n"
    after:
      description: Chain and jump lines after the run.
      type: str
      returned: success
      sample: "# ipv4 nat\n-N NETMEND-MASQ\n"
    before_header:
      description: What the diff is about.
      type: str
      returned: success
      sample: "nat NETMEND-MASQ and its POSTROUTING jump"
    after_header:
      description: What the diff is about.
      type: str
      returned: success
      sample: "nat NETMEND-MASQ and its POSTROUTING jump"
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.netmend.k8s.plugins.module_utils.masq import (
    DEFAULT_CHAIN,
    DEFAULT_LOCK_TIMEOUT,
    MasqError,
    Spec,
    diff_text,
    reconcile,
)

ARGUMENT_SPEC = dict(
    cidrs=dict(type="list", elements="str", default=[]),
    state=dict(type="str", choices=["present", "absent"], default="present"),
    chain=dict(type="str", default=DEFAULT_CHAIN),
    source_cidrs=dict(type="list", elements="str", default=[]),
    random_fully=dict(type="bool", default=False),
    backend=dict(type="str", choices=["auto", "nft", "legacy"], default="auto"),
    lock_timeout=dict(type="int", default=DEFAULT_LOCK_TIMEOUT),
    position=dict(type="str", choices=["insert", "append"], default="insert"),
)


def run_module(module):
    params = module.params
    spec = Spec(chain=params["chain"], cidrs=params["cidrs"], source_cidrs=params["source_cidrs"],
                random_fully=params["random_fully"], position=params["position"], state=params["state"])
    if params["lock_timeout"] < 0:
        raise MasqError("invalid lock_timeout %r: it must be 0 or more seconds" % params["lock_timeout"])

    def run(argv, data=None):
        return module.run_command(argv, data=data, binary_data=True, check_rc=False,
                                  environ_update={"LANG": "C", "LC_ALL": "C"})

    result = reconcile(spec, run, backend=params["backend"], lock_timeout=params["lock_timeout"],
                       check_mode=module.check_mode)[0]
    for warning in result.pop("warnings"):
        module.warn(warning)
    before, after = result.pop("before"), result.pop("after")
    if module._diff:
        header = "nat %s and its POSTROUTING jump" % spec.chain
        result["diff"] = dict(before=diff_text(before), after=diff_text(after),
                              before_header=header, after_header=header)
    return result


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    try:
        module.exit_json(**run_module(module))
    except MasqError as exc:
        module.fail_json(msg=str(exc), cmd=exc.cmd, rc=exc.rc, stdout=exc.stdout, stderr=exc.stderr)


if __name__ == "__main__":
    main()
