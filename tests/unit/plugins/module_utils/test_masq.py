# Copyright: netmend.k8s contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

import io
import contextlib

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
    ("MASQ-\u00e9", "non-ASCII"),
])
def test_validate_chain_rejects(name, message):
    with pytest.raises(masq.MasqError) as err:
        masq.validate_chain(name)
    assert message in str(err.value)
    assert repr(name) in str(err.value)


@pytest.mark.parametrize("name", ["NETMEND-MASQ", "A" * 28, "vpn_masq.1", "KUBE-FOO"])
def test_validate_chain_accepts(name):
    assert masq.validate_chain(name) == name


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
])
def test_chain_rules_render_as_iptables_prints_them(kwargs, family, lines):
    rules = masq.chain_rules(masq.Spec(**kwargs), family)
    assert [masq.render_line(rule) for rule in rules] == lines
    assert masq.parse_rules("\n".join(lines), kwargs.get("chain", "NETMEND-MASQ")) == rules


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
    dict(id="foreign rule in our chain removed",
         kwargs={"cidrs": ["10.11.0.0/24"]},
         answers={list_cmd("NETMEND-MASQ"): (0, listing("NETMEND-MASQ", RULE_VPN, "-A NETMEND-MASQ -j RETURN"), ""),
                  list_cmd("POSTROUTING"): (0, listing("POSTROUTING", JUMP, policy="ACCEPT"), "")},
         payload=HEAD + DECLARE + RULE_VPN + "\nCOMMIT\n",
         drift=["ipv4: unexpected rule: -A NETMEND-MASQ -j RETURN"], rules=["-N NETMEND-MASQ", RULE_VPN]),
    dict(id="jump moved below kube-proxy's: put back first",
         kwargs={"cidrs": ["10.11.0.0/24"]},
         answers={list_cmd("NETMEND-MASQ"): (0, listing("NETMEND-MASQ", RULE_VPN), ""),
                  list_cmd("POSTROUTING"): (0, listing("POSTROUTING", KUBE_POST, JUMP, policy="ACCEPT"), "")},
         payload=HEAD + DELETE + INSERT + "COMMIT\n",
         drift=["ipv4: jump not first in POSTROUTING (rule 2)"], rules=["-N NETMEND-MASQ", RULE_VPN]),
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
    assert run.calls[1][0] == ["iptables-legacy-restore", "--noflush", "--wait", "12"]
    assert result["backend"] == "legacy"


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


# --- agent ---------------------------------------------------------------------------------------

class FakeTable:
    """A tiny in-memory nat table that applies our restore payloads, for the agent loop."""

    def __init__(self):
        self.chains = {"POSTROUTING": [masq.parse_rules(KUBE_POST, "POSTROUTING")[0]]}
        self.calls = []

    def __call__(self, argv, data=None):
        self.calls.append(list(argv))
        if argv[0].endswith("-restore"):
            for line in data.splitlines():
                tokens = masq.shlex.split(line)
                if line.startswith(":"):
                    self.chains[line[1:].split()[0]] = []
                elif tokens[0] == "-A":
                    self.chains[tokens[1]].append(tokens)
                elif tokens[0] == "-I":
                    self.chains[tokens[1]].insert(0, ["-A", tokens[1]] + tokens[3:])
                elif tokens[0] == "-D":
                    self.chains[tokens[1]].remove(["-A"] + tokens[1:])
            return 0, "", ""
        chain = argv[-1]
        if argv[-2] != "-S" or chain not in self.chains:
            return 1, "", NO_CHAIN
        return 0, "\n".join(["-N " + chain] + [masq.render_line(r) for r in self.chains[chain]]), ""


class CountingStopper:
    stopped = False

    def __init__(self, table, damage):
        self.table = table
        self.damage = damage
        self.naps = 0

    def sleep(self, seconds):
        if self.naps < len(self.damage):
            self.damage[self.naps](self.table)
        self.naps += 1
        return False


def test_agent_repairs_each_drift_with_one_log_line(tmp_path):
    table = FakeTable()
    damage = [
        lambda t: t.chains["NETMEND-MASQ"].clear(),
        lambda t: t.chains["POSTROUTING"].reverse(),
        lambda t: None,
    ]
    stopper = CountingStopper(table, damage)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = masq.agent_main(["--cidr", "10.11.0.0/24", "--backend", "nft", "--interval", "0.01",
                              "--lock-file", str(tmp_path / "lock"), "--max-iterations", "4"],
                             run=table, stopper=stopper)
    assert rc == 0
    lines = out.getvalue().splitlines()
    repairs = [line for line in lines if " masq_rule repaired " in line]
    assert len(repairs) == 3  # first apply, the flushed chain, the reordered jump; the quiet round logs nothing
    assert "chain NETMEND-MASQ missing" in repairs[0]
    assert "rule missing" in repairs[1]
    assert "jump not first in POSTROUTING" in repairs[2]
    assert [masq.render_line(r) for r in table.chains["NETMEND-MASQ"]] == [RULE_VPN]
    assert masq.render_line(table.chains["POSTROUTING"][0]) == JUMP
    # Checks read only our chain and POSTROUTING, never the whole table.
    assert not [call for call in table.calls if "save" in call[0]]
    assert {call[-1] for call in table.calls if not call[0].endswith("-restore")} == {"NETMEND-MASQ", "POSTROUTING"}


def test_agent_bad_configuration_exits_2(tmp_path):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = masq.agent_main(["--cidr", "10.11.0.1/24"], run=FakeTable(), stopper=CountingStopper(None, []))
    assert rc == 2
    assert "misaligned CIDR '10.11.0.1/24'" in out.getvalue()


def test_agent_nsenter_mode_prefixes_commands(monkeypatch, tmp_path):
    seen = []

    def fake_run(argv, **kwargs):
        seen.append(argv)
        return masq.subprocess.CompletedProcess(argv, 0, "", "")

    monkeypatch.setattr(masq.subprocess, "run", fake_run)
    with contextlib.redirect_stdout(io.StringIO()):
        masq.agent_main(["--cidr", "10.11.0.0/24", "--nsenter", "--max-iterations", "1",
                         "--lock-file", str(tmp_path / "lock")], stopper=CountingStopper(None, []))
    assert seen and all(argv[:6] == list(masq.NSENTER_PREFIX) for argv in seen)
    assert seen[0][6:] == ["iptables-nft", "-t", "mangle", "-S", "KUBE-IPTABLES-HINT"]


def test_agent_remove_mode_deletes_chain_and_jump_then_idles(tmp_path):
    table = FakeTable()
    table.chains["NETMEND-MASQ"] = masq.parse_rules(RULE_VPN, "NETMEND-MASQ")
    table.chains["POSTROUTING"].insert(0, masq.parse_rules(JUMP, "POSTROUTING")[0])
    original = table.__call__

    def with_delete_chain(argv, data=None):
        if data and "-X NETMEND-MASQ" in data:
            original(argv, data.replace("-X NETMEND-MASQ\n", ""))
            del table.chains["NETMEND-MASQ"]
            return 0, "", ""
        return original(argv, data)

    stopper = CountingStopper(table, [])
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = masq.agent_main(["--remove", "--backend", "nft", "--interval", "0.01", "--max-iterations", "3",
                              "--lock-file", str(tmp_path / "lock")], run=with_delete_chain, stopper=stopper)
    assert rc == 0
    assert "NETMEND-MASQ" not in table.chains
    assert [masq.render_line(r) for r in table.chains["POSTROUTING"]] == [KUBE_POST]
    assert " masq_rule removed " in out.getvalue()
    assert stopper.naps == 2  # idled until the bounded run ended, writing nothing more
    assert sum(call[0].endswith("-restore") for call in table.calls) == 1
