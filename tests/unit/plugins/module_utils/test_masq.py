# Copyright: netmend.k8s contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

import ipaddress

import pytest

from ansible_collections.netmend.k8s.plugins.module_utils import masq

JUMP = ('-A POSTROUTING -m comment --comment "netmend masq_rule: masquerade chosen destinations" '
        '-m addrtype ! --dst-type LOCAL -j NETMEND-MASQ')
JUMP_ARGS = JUMP[len("-A POSTROUTING "):]
RULE_VPN = '-A NETMEND-MASQ -d 10.11.0.0/24 -m comment --comment "netmend masq_rule: 10.11.0.0/24" -j MASQUERADE'
RULE_LAB = '-A NETMEND-MASQ -d 10.12.0.0/16 -m comment --comment "netmend masq_rule: 10.12.0.0/16" -j MASQUERADE'
KUBE_POST = '-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING'
IP_MASQ = ('-A POSTROUTING -m comment --comment "ip-masq-agent: ensure nat POSTROUTING directs all non-LOCAL '
           'destination traffic to our custom IP-MASQ chain" -m addrtype ! --dst-type LOCAL -j IP-MASQ')
NO_CHAIN = "iptables v1.8.9 (nf_tables): chain `NETMEND-MASQ' in table `nat' is incompatible, use 'nft' tool.\n"
NO_CHAIN_LEGACY = "iptables: No chain/target/match by that name.\n"
WAIT = ["--wait", "5"]


def listing(chain, *rules, policy=None):
    head = "-P %s %s\n" % (chain, policy) if policy else "-N %s\n" % chain
    return head + "".join(rule + "\n" for rule in rules)


class FakeRun:
    """Answers argv lists from a table; records every call (argv, stdin)."""

    def __init__(self, answers):
        self.answers = answers
        self.calls = []

    def __call__(self, argv, data=None):
        self.calls.append((list(argv), data))
        key = " ".join(argv)
        if key not in self.answers:
            return (0, "", "") if argv[0].endswith("-restore") else (1, "", NO_CHAIN)
        return self.answers[key]


def list_cmd(chain, binary="iptables-nft"):
    return " ".join([binary] + WAIT + ["-t", "nat", "-S", chain])


# --- input validation -------------------------------------------------------------

@pytest.mark.parametrize("value, message", [
    ("10.11.0.1/24", "misaligned CIDR '10.11.0.1/24': host bits are set (did you mean 10.11.0.0/24?)"),
    ("10.11.0.256/24", "invalid CIDR '10.11.0.256/24'"),
    ("vpn", "invalid CIDR 'vpn'"),
    ("10.11.0.0/33", "invalid CIDR '10.11.0.0/33'"),
    ("fd00::1/64", "misaligned CIDR 'fd00::1/64'"),
    ("fe80::%eth0/64", "invalid CIDR 'fe80::%eth0/64': an IPv6 zone index (%eth0) names a link"),
    ("fe80::1%2", "invalid CIDR 'fe80::1%2': an IPv6 zone index (%2)"),
])
def test_parse_cidr_rejects(value, message):
    with pytest.raises(masq.MasqError) as err:
        masq.parse_cidr(value)
    assert str(err.value).startswith(message)


@pytest.mark.parametrize("values, kept, warnings", [
    (["10.11.0.0/24"], ["10.11.0.0/24"], []),
    (["10.11.0.0/24", "10.11.0.0/24"], ["10.11.0.0/24"], ["duplicate CIDR 10.11.0.0/24 ignored"]),
    (["10.11.0.128/25", "10.12.0.0/16", "10.11.0.0/24"], ["10.12.0.0/16", "10.11.0.0/24"],
     ["CIDR 10.11.0.128/25 is inside 10.11.0.0/24 and was merged into it"]),
    (["fd00:11::/64", "10.11.0.0/24", "10.11.0.7"], ["fd00:11::/64", "10.11.0.0/24"],
     ["CIDR 10.11.0.7/32 is inside 10.11.0.0/24 and was merged into it"]),
    ([" 192.168.0.0/16 "], ["192.168.0.0/16"], []),
])
def test_normalise_cidrs(values, kept, warnings):
    nets, warned = masq.normalise_cidrs(values)
    assert [str(net) for net in nets] == kept
    assert warned == warnings


@pytest.mark.parametrize("name, message", [
    ("", "it is empty"),
    ("A" * 29, "29 characters, iptables allows at most 28"),
    ("-MASQ", "it may not start with '-'"),
    ("!MASQ", "it may not start with '!'"),
    ("MY CHAIN", "whitespace"),
    ("MY\tCHAIN", "whitespace"),
    ('MY"CHAIN', "quotes"),
    ("RETURN", "clashes with a builtin chain or target name"),
    ("POSTROUTING", "clashes"),
    ("masquerade", "clashes"),
    ("KUBE-POSTROUTING", "names starting with KUBE- (any case) belong to kube-proxy and kubelet"),
    ("KUBE-MARK-MASQ", "belong to kube-proxy and kubelet"),
    ("kube-mine", "belong to kube-proxy and kubelet"),
    ("IP-MASQ", "belong to ip-masq-agent"),
    ("IP-MASQ-AGENT", "belong to ip-masq-agent"),
    ("cali-POSTROUTING", "belong to Calico (Felix)"),
    ("cali-nat-outgoing", "belong to Calico (Felix)"),
    ("CILIUM_POST_nat", "belong to Cilium"),
    ("cilium-feeder", "belong to Cilium"),
    ("DOCKER-USER", "belong to Docker"),
    ("DOCKER", "belong to Docker"),
    ("MASQ-\u00e9", "non-ASCII"),
])
def test_validate_chain_rejects(name, message):
    with pytest.raises(masq.MasqError) as err:
        masq.validate_chain(name)
    assert message in str(err.value)
    assert repr(name) in str(err.value)


@pytest.mark.parametrize("name", ["NETMEND-MASQ", "A" * 28, "vpn_masq.1", "KUBEFOO", "MY-KUBE-MASQ", "CALICO"])
def test_validate_chain_accepts(name):
    assert masq.validate_chain(name) == name
    assert masq.chain_error(name) == ""


def test_chain_error_is_the_validator_message():
    assert masq.chain_error("KUBE-SVC-X") == (
        "invalid chain name 'KUBE-SVC-X': names starting with KUBE- (any case) belong to kube-proxy and kubelet")


@pytest.mark.parametrize("kwargs, message", [
    ({"cidrs": []}, "cidrs is empty: state=present needs at least one destination CIDR"),
    ({"cidrs": ["10.11.0.1/24"]}, "misaligned CIDR '10.11.0.1/24'"),
    ({"cidrs": ["10.11.0.0/24"], "chain": "bad chain"}, "invalid chain name 'bad chain'"),
    ({"cidrs": ["10.11.0.0/24"], "position": "middle"}, "invalid position 'middle'"),
    ({"cidrs": ["fd00::/64"], "source_cidrs": ["10.4.0.0/14"]},
     "source_cidrs has no ipv6 CIDR but cidrs has ipv6 destinations fd00::/64"),
    ({"cidrs": ["10.11.0.0/24"], "source_cidrs": ["10.4.0.1/14"]}, "misaligned CIDR '10.4.0.1/14'"),
])
def test_spec_rejects(kwargs, message):
    with pytest.raises(masq.MasqError) as err:
        masq.Spec(**kwargs)
    assert str(err.value).startswith(message)


def test_spec_absent_needs_no_cidrs():
    spec = masq.Spec(state="absent")
    assert spec.cidrs == [] and spec.destinations("ipv4") == []


# --- rendering -----------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, family, lines", [
    ({"cidrs": ["10.11.0.0/24"]}, "ipv4", [RULE_VPN]),
    ({"cidrs": ["10.11.0.0/24", "10.12.0.0/16"]}, "ipv4", [RULE_VPN, RULE_LAB]),
    ({"cidrs": ["10.11.0.0/24"], "random_fully": True}, "ipv4", [RULE_VPN + " --random-fully"]),
    ({"cidrs": ["10.11.0.0/24"], "source_cidrs": ["10.4.0.0/14", "10.8.0.0/16"]}, "ipv4", [
        RULE_VPN.replace("-A NETMEND-MASQ ", "-A NETMEND-MASQ -s 10.4.0.0/14 "),
        RULE_VPN.replace("-A NETMEND-MASQ ", "-A NETMEND-MASQ -s 10.8.0.0/16 "),
    ]),
    ({"cidrs": ["10.11.0.0/24", "fd00:11::/64"]}, "ipv6", [
        '-A NETMEND-MASQ -d fd00:11::/64 -m comment --comment "netmend masq_rule: fd00:11::/64" -j MASQUERADE']),
    ({"cidrs": ["10.11.0.0/24"], "chain": "VPN"}, "ipv4", [
        '-A VPN -d 10.11.0.0/24 -m comment --comment "netmend masq_rule: 10.11.0.0/24" -j MASQUERADE']),
    ({"cidrs": ["::ffff:10.0.0.0/104"]}, "ipv6", [
        '-A NETMEND-MASQ -d ::ffff:10.0.0.0/104 -m comment --comment "netmend masq_rule: ::ffff:10.0.0.0/104" '
        '-j MASQUERADE']),
    ({"cidrs": ["0.0.0.0/0"]}, "ipv4", [
        '-A NETMEND-MASQ -m comment --comment "netmend masq_rule: 0.0.0.0/0" -j MASQUERADE']),
])
def test_chain_rules_render_as_iptables_prints_them(kwargs, family, lines):
    rules = masq.chain_rules(masq.Spec(**kwargs), family)
    assert [masq.render_line(rule) for rule in rules] == lines
    assert masq.parse_rules("\n".join(lines), kwargs.get("chain", "NETMEND-MASQ")) == rules


# What ip6tables-save printed for each (iptables 1.8.9, glibc inet_ntop); tests/lab checks it live.
@pytest.mark.parametrize("cidr, printed", [
    ("::ffff:10.0.0.0/104", "::ffff:10.0.0.0/104"),
    ("::ffff:a00:0/104", "::ffff:10.0.0.0/104"),
    ("0:0:0:0:0:ffff:ffff:0/112", "::ffff:255.255.0.0/112"),
    ("::ffff:0:0/96", "::ffff:0.0.0.0/96"),
    ("::10.0.0.0/104", "::10.0.0.0/104"),
    ("::1.2.3.4/128", "::1.2.3.4/128"),
    ("::0.0.0.1/128", "::1/128"),
    ("::/0", "::/0"),
    ("2001:db8:0:0:1:0:0:1/128", "2001:db8::1:0:0:1/128"),
    ("fd00:0:0:1::/64", "fd00:0:0:1::/64"),
    ("64:ff9b::1.2.3.0/120", "64:ff9b::102:300/120"),
    ("10.11.0.0/24", "10.11.0.0/24"),
])
def test_network_text_is_what_iptables_prints(cidr, printed):
    assert masq.network_text(ipaddress.ip_network(cidr)) == printed


def test_ipv4_mapped_destination_converges(tmp_path):
    spec = masq.Spec(cidrs=["::ffff:a00:0/104"])
    assert spec.cidrs == ["::ffff:10.0.0.0/104"]
    rule = masq.chain_rules(spec, "ipv6")
    # what ip6tables -S prints back for the rule we wrote: nothing to change on the next run
    printed = masq.parse_rules(masq.render_line(rule[0]), "NETMEND-MASQ")
    state = masq.State(printed, masq.parse_rules(JUMP, "POSTROUTING"))
    assert masq.plan_family(spec, "ipv6", state).drift == []


# --- ownership and position ----------------------------------------------------------------------

FOREIGN_RULE = "-A NETMEND-MASQ -d 10.99.0.0/16 -j MASQUERADE"


@pytest.mark.parametrize("chain_rules, postrouting, problem", [
    (None, [], None),
    ([RULE_VPN], [JUMP], None),
    ([RULE_VPN, RULE_LAB], [], None),
    ([], [JUMP], None),  # our chain, emptied by hand: still led to by our jump
    ([RULE_VPN, FOREIGN_RULE], [JUMP], "its rule '%s' lacks the comment" % FOREIGN_RULE),
    ([FOREIGN_RULE], [], "chain NETMEND-MASQ exists in the nat table and is not ours"),
    ([], [], "empty, and no POSTROUTING jump with our comment leads to it"),
    ([], ["-A POSTROUTING -j NETMEND-MASQ"], "nothing shows it is ours"),
])
def test_ownership_problem(chain_rules, postrouting, problem):
    state = masq.State(None if chain_rules is None else [masq.parse_rules(r, "NETMEND-MASQ")[0] for r in chain_rules],
                       [masq.parse_rules(r, "POSTROUTING")[0] for r in postrouting])
    found = masq.ownership_problem("NETMEND-MASQ", state)
    assert found is None if problem is None else problem in found


VPN_NET = [ipaddress.ip_network("10.11.0.0/24")]


@pytest.mark.parametrize("rule, ends", [
    ("-A POSTROUTING -m comment --comment \"cali:O3lYWMrLQYEMJtB5\" -j cali-POSTROUTING", False),
    (KUBE_POST, False),
    (IP_MASQ, False),
    ("-A POSTROUTING -j MARK --set-xmark 0x4000/0x4000", False),
    ("-A POSTROUTING -j LOG", False),
    ("-A POSTROUTING -j RETURN", True),
    ("-A POSTROUTING -o eth0 -j MASQUERADE", True),
    ("-A POSTROUTING -d 10.0.0.0/8 -j RETURN", True),
    ("-A POSTROUTING -d 10.11.0.128/25 -j ACCEPT", True),
    ("-A POSTROUTING -d 192.0.2.0/24 -j RETURN", False),
    ("-A POSTROUTING ! -d 10.0.0.0/8 -j MASQUERADE", False),
    ("-A POSTROUTING ! -d 192.0.2.0/24 -j SNAT --to-source 192.0.2.1", True),
    ("-A POSTROUTING -d fd00::/8 -j RETURN", False),
    ("-A POSTROUTING -g KUBE-POSTROUTING", True),
])
def test_ends_traversal(rule, ends):
    assert masq.ends_traversal(masq.parse_rules(rule, "POSTROUTING")[0], VPN_NET) is ends


# --- parsing -------------------------------------------------------------------------------

SAVE = """# Generated by iptables-save v1.8.9 (nf_tables)
*mangle
:KUBE-IPTABLES-HINT - [0:0]
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:IP-MASQ - [0:0]
:KUBE-POSTROUTING - [0:0]
:NETMEND-MASQ - [0:0]
{jump}
{kube}
{ipmasq}
-A IP-MASQ -d 10.0.0.0/8 -m comment --comment "ip-masq-agent: local traffic is not subject to MASQUERADE" -j RETURN
-A IP-MASQ -m comment --comment "ip-masq-agent: outbound traffic is subject to MASQUERADE (must be last in chain)" -j MASQUERADE
{rule}
COMMIT
""".format(jump=JUMP, kube=KUBE_POST, ipmasq=IP_MASQ, rule=RULE_VPN)


def test_parse_save_chains():
    chains = masq.parse_save_chains(SAVE)
    assert list(chains) == ["PREROUTING", "POSTROUTING", "IP-MASQ", "KUBE-POSTROUTING", "NETMEND-MASQ"]
    assert chains["KUBE-POSTROUTING"] == []
    assert [masq.render_line(rule) for rule in chains["POSTROUTING"]] == [JUMP, KUBE_POST, IP_MASQ]
    assert chains["IP-MASQ"][0][-1] == "RETURN"
    assert masq.parse_save_chains(SAVE, table="mangle") == {"KUBE-IPTABLES-HINT": []}


def test_parse_rules_ignores_other_chains_and_policy():
    text = listing("POSTROUTING", JUMP, KUBE_POST, policy="ACCEPT") + RULE_VPN + "\n"
    assert [masq.render_line(r) for r in masq.parse_rules(text, "POSTROUTING")] == [JUMP, KUBE_POST]
    assert masq.jumps_to(masq.parse_rules(text, "POSTROUTING"), "NETMEND-MASQ")[0][0] == 1


@pytest.mark.parametrize("token, quoted", [
    ("NETMEND-MASQ", "NETMEND-MASQ"),
    ("two words", '"two words"'),
    ('say "hi"', '"say \\"hi\\""'),
    ("", '""'),
])
def test_quote(token, quoted):
    assert masq.quote(token) == quoted


# --- backend detection -----------------------------------------------------------------------

@pytest.mark.parametrize("present, backend", [
    ({"iptables-nft -t mangle -S KUBE-IPTABLES-HINT"}, "nft"),
    ({"iptables-nft -t mangle -S KUBE-KUBELET-CANARY"}, "nft"),
    ({"iptables-legacy -t mangle -S KUBE-IPTABLES-HINT"}, "legacy"),
    ({"iptables-legacy -t mangle -S KUBE-KUBELET-CANARY"}, "legacy"),
    ({"iptables-nft -t mangle -S KUBE-KUBELET-CANARY", "iptables-legacy -t mangle -S KUBE-KUBELET-CANARY"}, "nft"),
    (set(), "nft"),
])
def test_detect_backend(present, backend):
    run = FakeRun({cmd: (0, "-N %s\n" % cmd.split()[-1], "") for cmd in present})
    assert masq.detect_backend(run) == backend


# --- planning and reconciling: exact commands and payloads -------------------------------------

HEAD = "*nat\n"
DECLARE = ":NETMEND-MASQ - [0:0]\n"
INSERT = "-I POSTROUTING 1 " + JUMP_ARGS + "\n"
APPEND = "-A POSTROUTING " + JUMP_ARGS + "\n"
DELETE = "-D POSTROUTING " + JUMP_ARGS + "\n"
RESTORE = "iptables-nft-restore --noflush --wait 5"
V6_CHAIN = list_cmd("NETMEND-MASQ", "ip6tables-nft")
FELIX = '-A POSTROUTING -m comment --comment "cali:O3lYWMrLQYEMJtB5" -j cali-POSTROUTING'
RETURN_10 = "-A POSTROUTING -d 10.0.0.0/8 -j RETURN"
RETURN_192 = "-A POSTROUTING -d 192.0.2.0/24 -j RETURN"

CASES = [
    dict(id="fresh node: chain and jump created in one transaction",
         kwargs={"cidrs": ["10.11.0.0/24"]},
         answers={list_cmd("POSTROUTING"): (0, listing("POSTROUTING", KUBE_POST, IP_MASQ, policy="ACCEPT"), "")},
         payload=HEAD + DECLARE + RULE_VPN + "\n" + INSERT + "COMMIT\n",
         drift=["ipv4: chain NETMEND-MASQ missing", "ipv4: jump from POSTROUTING missing"],
         rules=["-N NETMEND-MASQ", RULE_VPN]),
    dict(id="in place: nothing written",
         kwargs={"cidrs": ["10.11.0.0/24"]},
         answers={list_cmd("NETMEND-MASQ"): (0, listing("NETMEND-MASQ", RULE_VPN), ""),
                  list_cmd("POSTROUTING"): (0, listing("POSTROUTING", JUMP, KUBE_POST, policy="ACCEPT"), "")},
         payload=None, drift=[], rules=["-N NETMEND-MASQ", RULE_VPN]),
    dict(id="append position: the jump may sit anywhere",
         kwargs={"cidrs": ["10.11.0.0/24"], "position": "append"},
         answers={list_cmd("NETMEND-MASQ"): (0, listing("NETMEND-MASQ", RULE_VPN), ""),
                  list_cmd("POSTROUTING"): (0, listing("POSTROUTING", KUBE_POST, JUMP, IP_MASQ, policy="ACCEPT"), "")},
         payload=None, drift=[], rules=["-N NETMEND-MASQ", RULE_VPN]),
    dict(id="append position: missing jump appended",
         kwargs={"cidrs": ["10.11.0.0/24"], "position": "append"},
         answers={list_cmd("NETMEND-MASQ"): (0, listing("NETMEND-MASQ", RULE_VPN), ""),
                  list_cmd("POSTROUTING"): (0, listing("POSTROUTING", KUBE_POST, policy="ACCEPT"), "")},
         payload=HEAD + APPEND + "COMMIT\n", drift=["ipv4: jump from POSTROUTING missing"],
         rules=["-N NETMEND-MASQ", RULE_VPN]),
    dict(id="deleted rule: chain rewritten whole",
         kwargs={"cidrs": ["10.11.0.0/24", "10.12.0.0/16"]},
         answers={list_cmd("NETMEND-MASQ"): (0, listing("NETMEND-MASQ", RULE_LAB), ""),
                  list_cmd("POSTROUTING"): (0, listing("POSTROUTING", JUMP, policy="ACCEPT"), "")},
         payload=HEAD + DECLARE + RULE_VPN + "\n" + RULE_LAB + "\nCOMMIT\n",
         drift=["ipv4: rule missing: " + RULE_VPN], rules=["-N NETMEND-MASQ", RULE_VPN, RULE_LAB]),
    dict(id="reordered rules",
         kwargs={"cidrs": ["10.11.0.0/24", "10.12.0.0/16"]},
         answers={list_cmd("NETMEND-MASQ"): (0, listing("NETMEND-MASQ", RULE_LAB, RULE_VPN), ""),
                  list_cmd("POSTROUTING"): (0, listing("POSTROUTING", JUMP, policy="ACCEPT"), "")},
         payload=HEAD + DECLARE + RULE_VPN + "\n" + RULE_LAB + "\nCOMMIT\n",
         drift=["ipv4: rules of NETMEND-MASQ out of order"], rules=["-N NETMEND-MASQ", RULE_VPN, RULE_LAB]),
    dict(id="a rule of ours for a dropped destination removed",
         kwargs={"cidrs": ["10.11.0.0/24"]},
         answers={list_cmd("NETMEND-MASQ"): (0, listing("NETMEND-MASQ", RULE_VPN, RULE_LAB), ""),
                  list_cmd("POSTROUTING"): (0, listing("POSTROUTING", JUMP, policy="ACCEPT"), "")},
         payload=HEAD + DECLARE + RULE_VPN + "\nCOMMIT\n",
         drift=["ipv4: unexpected rule: " + RULE_LAB], rules=["-N NETMEND-MASQ", RULE_VPN]),
    dict(id="our chain emptied by hand: refilled",
         kwargs={"cidrs": ["10.11.0.0/24"]},
         answers={list_cmd("NETMEND-MASQ"): (0, listing("NETMEND-MASQ"), ""),
                  list_cmd("POSTROUTING"): (0, listing("POSTROUTING", JUMP, policy="ACCEPT"), "")},
         payload=HEAD + DECLARE + RULE_VPN + "\nCOMMIT\n",
         drift=["ipv4: rule missing: " + RULE_VPN], rules=["-N NETMEND-MASQ", RULE_VPN]),
    dict(id="a foreign jump above ours (Felix's, kube-proxy's) is not drift",
         kwargs={"cidrs": ["10.11.0.0/24"]},
         answers={list_cmd("NETMEND-MASQ"): (0, listing("NETMEND-MASQ", RULE_VPN), ""),
                  list_cmd("POSTROUTING"): (0, listing("POSTROUTING", FELIX, KUBE_POST, JUMP, policy="ACCEPT"), "")},
         payload=None, drift=[], rules=["-N NETMEND-MASQ", RULE_VPN]),
    dict(id="a RETURN for our destinations above the jump: jump put back first",
         kwargs={"cidrs": ["10.11.0.0/24"]},
         answers={list_cmd("NETMEND-MASQ"): (0, listing("NETMEND-MASQ", RULE_VPN), ""),
                  list_cmd("POSTROUTING"): (0, listing("POSTROUTING", FELIX, RETURN_10, JUMP, policy="ACCEPT"), "")},
         payload=HEAD + DELETE + INSERT + "COMMIT\n",
         drift=["ipv4: rule 2 of POSTROUTING can end traversal before our jump (rule 3): " + RETURN_10],
         rules=["-N NETMEND-MASQ", RULE_VPN]),
    dict(id="a RETURN for other destinations above the jump is not drift",
         kwargs={"cidrs": ["10.11.0.0/24"]},
         answers={list_cmd("NETMEND-MASQ"): (0, listing("NETMEND-MASQ", RULE_VPN), ""),
                  list_cmd("POSTROUTING"): (0, listing("POSTROUTING", RETURN_192, JUMP, policy="ACCEPT"), "")},
         payload=None, drift=[], rules=["-N NETMEND-MASQ", RULE_VPN]),
    dict(id="two jumps (two writers raced): one removed",
         kwargs={"cidrs": ["10.11.0.0/24"]},
         answers={list_cmd("NETMEND-MASQ"): (0, listing("NETMEND-MASQ", RULE_VPN), ""),
                  list_cmd("POSTROUTING"): (0, listing("POSTROUTING", JUMP, KUBE_POST, JUMP, policy="ACCEPT"), "")},
         payload=HEAD + DELETE + DELETE + INSERT + "COMMIT\n",
         drift=["ipv4: 2 jumps to NETMEND-MASQ in POSTROUTING instead of one"], rules=["-N NETMEND-MASQ", RULE_VPN]),
    dict(id="append position: duplicate jumps become one at the end",
         kwargs={"cidrs": ["10.11.0.0/24"], "position": "append"},
         answers={list_cmd("NETMEND-MASQ"): (0, listing("NETMEND-MASQ", RULE_VPN), ""),
                  list_cmd("POSTROUTING"): (0, listing("POSTROUTING", JUMP, KUBE_POST, JUMP, policy="ACCEPT"), "")},
         payload=HEAD + DELETE + DELETE + APPEND + "COMMIT\n",
         drift=["ipv4: 2 jumps to NETMEND-MASQ in POSTROUTING instead of one"], rules=["-N NETMEND-MASQ", RULE_VPN]),
    dict(id="a hand-made jump without our comment is replaced",
         kwargs={"cidrs": ["10.11.0.0/24"]},
         answers={list_cmd("NETMEND-MASQ"): (0, listing("NETMEND-MASQ", RULE_VPN), ""),
                  list_cmd("POSTROUTING"): (0, listing("POSTROUTING", "-A POSTROUTING -j NETMEND-MASQ",
                                                       policy="ACCEPT"), "")},
         payload=HEAD + "-D POSTROUTING -j NETMEND-MASQ\n" + INSERT + "COMMIT\n",
         drift=["ipv4: jump from POSTROUTING differs: -A POSTROUTING -j NETMEND-MASQ"],
         rules=["-N NETMEND-MASQ", RULE_VPN]),
    dict(id="absent: jump deleted, chain flushed and deleted, nothing else",
         kwargs={"state": "absent"},
         answers={list_cmd("NETMEND-MASQ"): (0, listing("NETMEND-MASQ", RULE_VPN), ""),
                  list_cmd("POSTROUTING"): (0, listing("POSTROUTING", KUBE_POST, JUMP, policy="ACCEPT"), "")},
         payload=HEAD + DELETE + DECLARE + "-X NETMEND-MASQ\nCOMMIT\n",
         drift=["ipv4: chain NETMEND-MASQ and its jump removed"], rules=[]),
    dict(id="absent and already gone: one read, nothing written",
         kwargs={"state": "absent"},
         answers={}, payload=None, drift=[], rules=[]),
]


@pytest.mark.parametrize("case", CASES, ids=[case["id"] for case in CASES])
@pytest.mark.parametrize("check_mode", [False, True])
def test_reconcile_ipv4(case, check_mode, tmp_path):
    run = FakeRun(case["answers"])
    spec = masq.Spec(**case["kwargs"])
    result, plans = masq.reconcile(spec, run, backend="nft", check_mode=check_mode,
                                   lock_file=str(tmp_path / "lock"))
    restores = [data for argv, data in run.calls if argv[0].endswith("-restore")]
    expected = [] if case["payload"] is None or check_mode else [case["payload"]]
    assert restores == expected
    assert plans[0].payload == (case["payload"] or "")
    assert result["drift"] == case["drift"]
    assert result["changed"] is bool(case["drift"])
    assert result["rules"] == case["rules"]
    assert result["backend"] == "nft"
    reads = [" ".join(argv) for argv, _data in run.calls if not argv[0].endswith("-restore")]
    assert reads[0] == list_cmd("NETMEND-MASQ")
    # IPv6 is only looked at (one read of our chain) when no IPv6 CIDR is asked for.
    assert reads[-1] == V6_CHAIN


def test_reconcile_ipv6_goes_to_ip6tables_in_the_same_run(tmp_path):
    run = FakeRun({list_cmd("POSTROUTING"): (0, listing("POSTROUTING", policy="ACCEPT"), ""),
                   list_cmd("POSTROUTING", "ip6tables-nft"): (0, listing("POSTROUTING", policy="ACCEPT"), "")})
    spec = masq.Spec(cidrs=["fd00:11::/64", "10.11.0.0/24"])
    result = masq.reconcile(spec, run, backend="nft", lock_file=str(tmp_path / "lock"))[0]
    restores = [(argv, data) for argv, data in run.calls if argv[0].endswith("-restore")]
    assert [argv for argv, _data in restores] == [["iptables-nft-restore", "--noflush", "--wait", "5"],
                                                  ["ip6tables-nft-restore", "--noflush", "--wait", "5"]]
    assert restores[1][1] == (HEAD + DECLARE + '-A NETMEND-MASQ -d fd00:11::/64 -m comment --comment '
                              '"netmend masq_rule: fd00:11::/64" -j MASQUERADE\n' + INSERT + "COMMIT\n")
    assert result["cidrs"] == ["fd00:11::/64", "10.11.0.0/24"]
    assert result["rules_ipv6"][1].startswith("-A NETMEND-MASQ -d fd00:11::/64")


def test_reconcile_legacy_backend_and_lock_timeout(tmp_path):
    run = FakeRun({})
    spec = masq.Spec(cidrs=["10.11.0.0/24"])
    original = run.__call__

    def legacy(argv, data=None):
        if argv[-1] == "NETMEND-MASQ" and "-restore" not in argv[0]:
            run.calls.append((list(argv), data))
            return 1, "", NO_CHAIN_LEGACY
        return original(argv, data)

    result = masq.reconcile(spec, legacy, backend="legacy", lock_timeout=12, lock_file=str(tmp_path / "l"))[0]
    assert run.calls[0][0] == ["iptables-legacy", "--wait", "12", "-t", "nat", "-S", "NETMEND-MASQ"]
    # every family is read (and judged) before any is written
    assert run.calls[1][0] == ["ip6tables-legacy", "--wait", "12", "-t", "nat", "-S", "NETMEND-MASQ"]
    assert run.calls[2][0] == ["iptables-legacy-restore", "--noflush", "--wait", "12"]
    assert result["backend"] == "legacy"


@pytest.mark.parametrize("state", ["present", "absent"])
@pytest.mark.parametrize("listing_text", [
    listing("NETMEND-MASQ", "-A NETMEND-MASQ -j RETURN"),
    listing("NETMEND-MASQ", RULE_VPN, "-A NETMEND-MASQ -d 10.99.0.0/16 -j MASQUERADE"),
    listing("NETMEND-MASQ"),
], ids=["foreign rule", "ours plus a foreign rule", "empty, no jump of ours"])
def test_a_chain_that_is_not_ours_is_never_written(listing_text, state, tmp_path):
    run = FakeRun({list_cmd("NETMEND-MASQ"): (0, listing_text, ""),
                   list_cmd("POSTROUTING"): (0, listing("POSTROUTING", KUBE_POST, policy="ACCEPT"), "")})
    spec = masq.Spec(cidrs=["10.11.0.0/24"]) if state == "present" else masq.Spec(state="absent")
    if state == "present":
        with pytest.raises(masq.MasqError) as err:
            masq.reconcile(spec, run, backend="nft", lock_file=str(tmp_path / "lock"))
        assert str(err.value).startswith("ipv4: chain NETMEND-MASQ exists in the nat table")
        assert "refusing to change it" in str(err.value)
    else:
        result = masq.reconcile(spec, run, backend="nft", lock_file=str(tmp_path / "lock"))[0]
        assert result["changed"] is False
        assert result["warnings"][0].startswith("ipv4: chain NETMEND-MASQ exists in the nat table")
        assert result["warnings"][0].endswith("left alone")
    assert [argv for argv, _data in run.calls if argv[0].endswith("-restore")] == []


def test_a_foreign_ipv6_chain_stops_the_ipv4_write_too(tmp_path):
    run = FakeRun({list_cmd("POSTROUTING"): (0, listing("POSTROUTING", policy="ACCEPT"), ""),
                   V6_CHAIN: (0, listing("NETMEND-MASQ", "-A NETMEND-MASQ -j ACCEPT"), ""),
                   list_cmd("POSTROUTING", "ip6tables-nft"): (0, listing("POSTROUTING", policy="ACCEPT"), "")})
    with pytest.raises(masq.MasqError, match="^ipv6: chain NETMEND-MASQ exists"):
        masq.reconcile(masq.Spec(cidrs=["10.11.0.0/24", "fd00:11::/64"]), run, backend="nft",
                       lock_file=str(tmp_path / "lock"))
    assert [argv for argv, _data in run.calls if argv[0].endswith("-restore")] == []


def test_read_error_is_raised_with_the_command():
    run = FakeRun({list_cmd("NETMEND-MASQ"): (4, "", "Another app is currently holding the xtables lock.\n")})
    with pytest.raises(masq.MasqError) as err:
        masq.Iptables(run, "ipv4", "nft").read("NETMEND-MASQ")
    assert err.value.rc == 4
    assert "xtables lock" in str(err.value)
    assert err.value.cmd == list_cmd("NETMEND-MASQ").split()


def test_restore_error_is_raised(tmp_path):
    run = FakeRun({RESTORE: (2, "", "iptables-restore: line 3 failed\n")})
    with pytest.raises(masq.MasqError) as err:
        masq.reconcile(masq.Spec(cidrs=["10.11.0.0/24"]), run, backend="nft", lock_file=str(tmp_path / "l"))
    assert "line 3 failed" in str(err.value) and err.value.rc == 2


def test_invalid_backend(tmp_path):
    with pytest.raises(masq.MasqError, match="invalid backend 'iptables'"):
        masq.reconcile(masq.Spec(cidrs=["10.11.0.0/24"]), FakeRun({}), backend="iptables")


def test_diff_text():
    assert masq.diff_text({"ipv6": [], "ipv4": ["-N X", "-A X -j MASQUERADE"]}) == (
        "# ipv4 nat\n-N X\n-A X -j MASQUERADE\n# ipv6 nat\n")


def test_file_lock_times_out(tmp_path):
    path = str(tmp_path / "lock")
    with masq.FileLock(path, timeout=5):
        with pytest.raises(masq.MasqError, match="could not take"):
            with masq.FileLock(path, timeout=0.2):
                pass
    with masq.FileLock(path, timeout=0.2):
        pass


def test_runner_prefix_and_missing_binary():
    assert masq.Runner(["env"])(["true"])[0] == 0
    rc, out, err = masq.Runner()(["/nonexistent/iptables"])
    assert rc == 127 and out == "" and "nonexistent" in err
    assert list(masq.NSENTER_PREFIX) == ["nsenter", "-t", "1", "-m", "-n", "--"]
