# Copyright: netmend.k8s contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

import contextlib
import io
import shlex

from ansible_collections.netmend.k8s.plugins.module_utils import agent, masq, masq_agent

KUBE_POST = '-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING'
JUMP = masq.render_line(masq.jump_rule("NETMEND-MASQ"))
RULE_VPN = '-A NETMEND-MASQ -d 10.11.0.0/24 -m comment --comment "netmend masq_rule: 10.11.0.0/24" -j MASQUERADE'
NO_CHAIN = "iptables v1.8.9 (nf_tables): chain `NETMEND-MASQ' in table `nat' is incompatible, use 'nft' tool.\n"


class FakeTable:
    """A tiny in-memory nat table per family that applies our restore payloads, for the agent loop."""

    def __init__(self):
        self.families = {"iptables": {"POSTROUTING": [masq.parse_rules(KUBE_POST, "POSTROUTING")[0]]},
                         "ip6tables": {"POSTROUTING": []}}
        self.chains = self.families["iptables"]
        self.calls = []

    def __call__(self, argv, data=None):
        self.calls.append(list(argv))
        chains = self.families[argv[0].split("-")[0]]
        if argv[0].endswith("-restore"):
            for line in data.splitlines():
                tokens = shlex.split(line)
                if line.startswith(":"):
                    chains[line[1:].split()[0]] = []
                elif tokens[0] == "-X":
                    del chains[tokens[1]]
                elif tokens[0] == "-A":
                    chains[tokens[1]].append(tokens)
                elif tokens[0] == "-I":
                    chains[tokens[1]].insert(0, ["-A", tokens[1]] + tokens[3:])
                elif tokens[0] == "-D":
                    chains[tokens[1]].remove(["-A"] + tokens[1:])
            return 0, "", ""
        chain = argv[-1]
        if argv[-2] != "-S" or chain not in chains:
            return 1, "", NO_CHAIN
        return 0, "\n".join(["-N " + chain] + [masq.render_line(r) for r in chains[chain]]), ""


class CountingStopper:
    stopped = False

    def __init__(self, table, damage):
        self.table = table
        self.damage = damage
        self.naps = 0

    def sleep(self, _seconds):
        if self.naps < len(self.damage):
            self.damage[self.naps](self.table)
        self.naps += 1
        return False


def run_agent(argv, table, damage=(), tmp_path=None):
    out = io.StringIO()
    stopper = CountingStopper(table, list(damage))
    with contextlib.redirect_stdout(out):
        rc = masq_agent.agent_main(argv + ["--backend", "nft", "--interval", "0.01",
                                           "--lock-file", str(tmp_path / "lock")], run=table, stopper=stopper)
    return rc, out.getvalue().splitlines(), stopper


def test_dispatch_names_the_agent_file():
    assert agent.FIXES["masq_rule"] == "masq_agent"


def test_agent_repairs_each_drift_with_one_log_line(tmp_path):
    damage = [
        lambda t: t.chains["NETMEND-MASQ"].clear(),
        lambda t: t.chains["POSTROUTING"].insert(0, masq.parse_rules("-A POSTROUTING -j RETURN", "POSTROUTING")[0]),
        lambda t: t.chains["POSTROUTING"].insert(0, masq.parse_rules(
            "-A POSTROUTING -j cali-POSTROUTING", "POSTROUTING")[0]),
        lambda t: None,
    ]
    table = FakeTable()
    rc, lines, _stopper = run_agent(["--cidr", "10.11.0.0/24", "--max-iterations", "5"], table, damage, tmp_path)
    assert rc == 0
    repairs = [line for line in lines if " masq_rule repaired " in line]
    # first apply, the flushed chain, the RETURN above the jump; Felix's jump on top and the quiet round log nothing
    assert len(repairs) == 3, lines
    assert "chain NETMEND-MASQ missing" in repairs[0]
    assert "rule missing" in repairs[1]
    assert "rule 1 of POSTROUTING can end traversal before our jump (rule 2): -A POSTROUTING -j RETURN" in repairs[2]
    assert [masq.render_line(r) for r in table.chains["NETMEND-MASQ"]] == [RULE_VPN]
    assert [masq.render_line(r) for r in table.chains["POSTROUTING"]][:2] == [
        "-A POSTROUTING -j cali-POSTROUTING", JUMP]
    # Checks read only our chain and POSTROUTING, never the whole table.
    assert not [call for call in table.calls if "save" in call[0]]
    assert {call[-1] for call in table.calls if not call[0].endswith("-restore")} == {"NETMEND-MASQ", "POSTROUTING"}


def test_agent_removes_the_ipv6_chain_when_no_ipv6_destination_is_left(tmp_path):
    table = FakeTable()
    run_agent(["--cidr", "10.11.0.0/24", "--cidr", "fd00:11::/64", "--max-iterations", "1"], table, (), tmp_path)
    assert "NETMEND-MASQ" in table.families["ip6tables"]
    assert len(table.families["ip6tables"]["POSTROUTING"]) == 1
    rc, lines, _stopper = run_agent(["--cidr", "10.11.0.0/24", "--max-iterations", "2"], table, (), tmp_path)
    assert rc == 0
    assert "NETMEND-MASQ" not in table.families["ip6tables"]
    assert table.families["ip6tables"]["POSTROUTING"] == []
    assert [masq.render_line(r) for r in table.chains["NETMEND-MASQ"]] == [RULE_VPN]
    repairs = [line for line in lines if " repaired " in line]
    assert len(repairs) == 1 and 'family="ipv6"' in repairs[0] and "and its jump removed" in repairs[0]


def test_agent_refuses_a_foreign_chain_and_says_so_once(tmp_path):
    table = FakeTable()
    foreign = masq.parse_rules("-A NETMEND-MASQ -d 10.99.0.0/16 -j MASQUERADE", "NETMEND-MASQ")
    table.chains["NETMEND-MASQ"] = list(foreign)
    rc, lines, _stopper = run_agent(["--cidr", "10.11.0.0/24", "--max-iterations", "3"], table, (), tmp_path)
    assert rc == 0
    failures = [line for line in lines if " check failed " in line]
    assert len(failures) == 1, lines
    assert "chain NETMEND-MASQ exists in the nat table and is not ours" in failures[0]
    assert table.chains["NETMEND-MASQ"] == foreign
    assert not [call for call in table.calls if call[0].endswith("-restore")]


def test_agent_bad_configuration_exits_2(tmp_path):
    rc, lines, _stopper = run_agent(["--cidr", "10.11.0.1/24"], FakeTable(), (), tmp_path)
    assert rc == 2
    assert "misaligned CIDR '10.11.0.1/24'" in "\n".join(lines)


def test_agent_refuses_a_reserved_chain(tmp_path):
    table = FakeTable()
    rc, lines, _stopper = run_agent(["--cidr", "10.11.0.0/24", "--chain", "IP-MASQ-AGENT"], table, (), tmp_path)
    assert rc == 2
    assert "'IP-MASQ-AGENT': names starting with IP-MASQ (any case) belong to ip-masq-agent" in lines[-1]
    assert table.calls == []


def test_agent_nsenter_mode_prefixes_commands(monkeypatch, tmp_path):
    seen = []

    def fake_run(argv, **_kwargs):
        seen.append(argv)
        return masq.subprocess.CompletedProcess(argv, 0, "", "")

    monkeypatch.setattr(masq.subprocess, "run", fake_run)
    with contextlib.redirect_stdout(io.StringIO()):
        masq_agent.agent_main(["--cidr", "10.11.0.0/24", "--nsenter", "--max-iterations", "1",
                               "--lock-file", str(tmp_path / "lock")], stopper=CountingStopper(None, []))
    assert seen and all(argv[:6] == list(masq.NSENTER_PREFIX) for argv in seen)
    assert seen[0][6:] == ["iptables-nft", "-t", "mangle", "-S", "KUBE-IPTABLES-HINT"]


def test_agent_remove_mode_deletes_chain_and_jump_then_idles(tmp_path):
    table = FakeTable()
    table.chains["NETMEND-MASQ"] = masq.parse_rules(RULE_VPN, "NETMEND-MASQ")
    table.chains["POSTROUTING"].insert(0, masq.parse_rules(JUMP, "POSTROUTING")[0])
    rc, lines, stopper = run_agent(["--remove", "--max-iterations", "3"], table, (), tmp_path)
    assert rc == 0
    assert "NETMEND-MASQ" not in table.chains
    assert [masq.render_line(r) for r in table.chains["POSTROUTING"]] == [KUBE_POST]
    assert " masq_rule removed " in "\n".join(lines)
    assert stopper.naps == 2  # idled until the bounded run ended, writing nothing more
    assert sum(call[0].endswith("-restore") for call in table.calls) == 1


def test_agent_remove_mode_leaves_a_foreign_chain(tmp_path):
    table = FakeTable()
    table.chains["NETMEND-MASQ"] = masq.parse_rules("-A NETMEND-MASQ -j RETURN", "NETMEND-MASQ")
    rc, lines, _stopper = run_agent(["--remove", "--max-iterations", "1"], table, (), tmp_path)
    assert rc == 0
    text = "\n".join(lines)
    assert "is not ours" in text and "left alone" in text and " nothing to remove " in text
    assert "NETMEND-MASQ" in table.chains
    assert not [call for call in table.calls if call[0].endswith("-restore")]
