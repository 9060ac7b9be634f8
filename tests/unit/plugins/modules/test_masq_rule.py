# Copyright: netmend.k8s contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

import functools
import json

import pytest
from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args

from ansible_collections.netmend.k8s.plugins.module_utils import masq
from ansible_collections.netmend.k8s.plugins.modules import masq_rule

JUMP = ('-A POSTROUTING -m comment --comment "netmend masq_rule: masquerade chosen destinations" '
        '-m addrtype ! --dst-type LOCAL -j NETMEND-MASQ')
RULE_VPN = '-A NETMEND-MASQ -d 10.11.0.0/24 -m comment --comment "netmend masq_rule: 10.11.0.0/24" -j MASQUERADE'
NO_CHAIN = "iptables v1.8.9 (nf_tables): chain `NETMEND-MASQ' in table `nat' is incompatible, use 'nft' tool.\n"
KUBE_POST = '-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING'
V4_CHAIN = "iptables-nft --wait 5 -t nat -S NETMEND-MASQ"
V4_POST = "iptables-nft --wait 5 -t nat -S POSTROUTING"
V6_CHAIN = "ip6tables-nft --wait 5 -t nat -S NETMEND-MASQ"
V4_RESTORE = "iptables-nft-restore --noflush --wait 5"
HINT = "iptables-nft -t mangle -S KUBE-IPTABLES-HINT"
PAYLOAD = ("*nat\n:NETMEND-MASQ - [0:0]\n" + RULE_VPN + "\n-I POSTROUTING 1 "
           + JUMP[len("-A POSTROUTING "):] + "\nCOMMIT\n")
FRESH = {HINT: (0, "-N KUBE-IPTABLES-HINT\n", ""), V4_POST: (0, "-P POSTROUTING ACCEPT\n" + KUBE_POST + "\n", "")}
DONE = dict(FRESH, **{V4_CHAIN: (0, "-N NETMEND-MASQ\n" + RULE_VPN + "\n", ""),
                      V4_POST: (0, "-P POSTROUTING ACCEPT\n" + JUMP + "\n" + KUBE_POST + "\n", "")})


@pytest.fixture
def commands(monkeypatch, tmp_path):
    """Route the module's run_command through a table of answers; the list records every call."""
    calls = []
    answers = {}
    warned = []

    def run_command(self, args, data=None, binary_data=False, check_rc=False, environ_update=None, **kwargs):
        assert check_rc is False and binary_data is True
        assert environ_update == {"LANG": "C", "LC_ALL": "C"}
        calls.append((" ".join(args), data))
        key = " ".join(args)
        if key in answers:
            return answers[key]
        return (0, "", "") if args[0].endswith("-restore") else (1, "", NO_CHAIN)

    monkeypatch.setattr(basic.AnsibleModule, "run_command", run_command)
    # Recorded here: how module warnings reach the result depends on what else the test process loaded.
    monkeypatch.setattr(basic.AnsibleModule, "warn", lambda self, message: warned.append(message))
    monkeypatch.setattr(masq_rule, "reconcile", functools.partial(masq.reconcile, lock_file=str(tmp_path / "lock")))
    return calls, answers, warned


def run_module(args, capsys):
    with patch_module_args(args):
        with pytest.raises(SystemExit):
            masq_rule.main()
    return json.loads(capsys.readouterr().out)


CASES = [
    dict(id="fresh node", args={"cidrs": ["10.11.0.0/24"]}, answers=FRESH, changed=True,
         calls=[HINT, V4_CHAIN, V6_CHAIN, V4_RESTORE], payload=PAYLOAD),
    dict(id="second run changes nothing", args={"cidrs": ["10.11.0.0/24"]}, answers=DONE, changed=False,
         calls=[HINT, V4_CHAIN, V4_POST, V6_CHAIN], payload=None),
    dict(id="check mode on a fresh node writes nothing", args={"cidrs": ["10.11.0.0/24"], "_ansible_check_mode": True},
         answers=FRESH, changed=True, calls=[HINT, V4_CHAIN, V6_CHAIN], payload=None),
    dict(id="absent removes jump and chain", args={"state": "absent"}, answers=DONE, changed=True,
         calls=[HINT, V4_CHAIN, V4_POST, V6_CHAIN, V4_RESTORE],
         payload="*nat\n-D POSTROUTING " + JUMP[len("-A POSTROUTING "):]
         + "\n:NETMEND-MASQ - [0:0]\n-X NETMEND-MASQ\nCOMMIT\n"),
    dict(id="a chain of that name that is not ours: absent leaves it and warns",
         args={"state": "absent", "backend": "nft"},
         answers={V4_CHAIN: (0, "-N NETMEND-MASQ\n-A NETMEND-MASQ -j RETURN\n", ""),
                  V4_POST: (0, "-P POSTROUTING ACCEPT\n", "")},
         changed=False, calls=[V4_CHAIN, V4_POST, V6_CHAIN], payload=None,
         warned=["ipv4: chain NETMEND-MASQ exists in the nat table and is not ours: its rule '-A NETMEND-MASQ -j RETURN' "
                 "lacks the comment 'netmend masq_rule: ...'; left alone"]),
    dict(id="absent when already absent", args={"state": "absent", "backend": "nft"}, answers={}, changed=False,
         calls=[V4_CHAIN, V6_CHAIN], payload=None),
]


@pytest.mark.parametrize("case", CASES, ids=[case["id"] for case in CASES])
def test_masq_rule(case, commands, capsys):
    calls, answers, warned = commands
    answers.update(case["answers"])
    result = run_module(case["args"], capsys)
    assert result["changed"] is case["changed"]
    assert warned == case.get("warned", [])
    assert [cmd for cmd, _data in calls] == case["calls"]
    payloads = [data for cmd, data in calls if cmd == V4_RESTORE]
    assert payloads == ([case["payload"]] if case["payload"] else [])
    assert result["chain"] == "NETMEND-MASQ"
    assert result["backend"] == "nft"
    assert "diff" not in result


def test_diff_mode_shows_chain_and_jump(commands, capsys):
    answers, warned = commands[1:]
    answers.update(FRESH)
    result = run_module({"cidrs": ["10.11.0.0/24", "10.11.0.0/25"], "_ansible_diff": True}, capsys)
    assert result["diff"] == {
        "before": "# ipv4 nat\n",
        "after": "# ipv4 nat\n-N NETMEND-MASQ\n%s\n%s\n" % (RULE_VPN, JUMP),
        "before_header": "nat NETMEND-MASQ and its POSTROUTING jump",
        "after_header": "nat NETMEND-MASQ and its POSTROUTING jump",
    }
    assert result["cidrs"] == ["10.11.0.0/24"]
    assert result["rules"] == ["-N NETMEND-MASQ", RULE_VPN]
    assert result["drift"] == ["ipv4: chain NETMEND-MASQ missing", "ipv4: jump from POSTROUTING missing"]
    assert warned == ["CIDR 10.11.0.0/25 is inside 10.11.0.0/24 and was merged into it"]


@pytest.mark.parametrize("args, message", [
    ({"cidrs": ["10.11.0.1/24"]}, "misaligned CIDR '10.11.0.1/24': host bits are set (did you mean 10.11.0.0/24?)"),
    ({"cidrs": ["10.11.0.300/24"]}, "invalid CIDR '10.11.0.300/24'"),
    ({"cidrs": []}, "cidrs is empty: state=present needs at least one destination CIDR"),
    ({"cidrs": ["10.11.0.0/24"], "chain": "-MASQ"}, "invalid chain name '-MASQ'"),
    ({"cidrs": ["10.11.0.0/24"], "chain": "MASQ CHAIN"}, "invalid chain name 'MASQ CHAIN'"),
    ({"cidrs": ["10.11.0.0/24"], "chain": "X" * 29}, "invalid chain name '%s'" % ("X" * 29)),
    ({"cidrs": ["10.11.0.0/24"], "chain": "ACCEPT"}, "invalid chain name 'ACCEPT'"),
    ({"cidrs": ["10.11.0.0/24"], "chain": "IP-MASQ-AGENT"}, "invalid chain name 'IP-MASQ-AGENT': names starting with"),
    ({"cidrs": ["10.11.0.0/24"], "chain": "KUBE-POSTROUTING"}, "invalid chain name 'KUBE-POSTROUTING'"),
    ({"cidrs": ["fe80::%eth0/64"]}, "invalid CIDR 'fe80::%eth0/64': an IPv6 zone index (%eth0)"),
    ({"cidrs": ["10.11.0.0/24"], "lock_timeout": -1}, "invalid lock_timeout -1"),
])
def test_bad_input_fails_before_any_command(args, message, commands, capsys):
    calls = commands[0]
    result = run_module(args, capsys)
    assert result["failed"] is True
    assert result["msg"].startswith(message)
    assert calls == []


def test_a_chain_that_is_not_ours_fails_and_writes_nothing(commands, capsys):
    calls, answers = commands[:2]
    answers.update({HINT: (0, "", ""),
                    V4_CHAIN: (0, "-N NETMEND-MASQ\n-A NETMEND-MASQ -d 10.99.0.0/16 -j MASQUERADE\n", ""),
                    V4_POST: (0, "-P POSTROUTING ACCEPT\n", "")})
    result = run_module({"cidrs": ["10.11.0.0/24"]}, capsys)
    assert result["failed"] is True
    assert result["msg"].startswith("ipv4: chain NETMEND-MASQ exists in the nat table and is not ours")
    assert not [cmd for cmd, _data in calls if cmd.endswith("--noflush --wait 5")]


def test_failed_restore_reports_the_command(commands, capsys):
    answers = commands[1]
    answers.update(FRESH)
    answers[V4_RESTORE] = (1, "", "iptables-restore: line 2 failed\n")
    result = run_module({"cidrs": ["10.11.0.0/24"]}, capsys)
    assert result["failed"] is True
    assert result["cmd"] == V4_RESTORE.split()
    assert result["rc"] == 1
    assert "line 2 failed" in result["msg"] and "line 2 failed" in result["stderr"]
