# Copyright: netmend.k8s contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

import json

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.netmend.k8s.plugins.module_utils import poke
from ansible_collections.netmend.k8s.plugins.modules import pod_poke


def run(args, check_mode=False):
    args = dict(args)
    if check_mode:
        args["_ansible_check_mode"] = True
    with patch_module_args(args):
        with pytest.raises(SystemExit) as exited:
            pod_poke.main()
    return exited.value.code


def canned(unreachable=(), blackholed=()):
    def fake_sweep(targets, **options):
        fake_sweep.calls.append((targets, options))
        entries = [{"ip": t} if isinstance(t, str) else dict(t) for t in targets]
        return {
            "total": len(entries),
            "reachable": [dict(e, rtt_ms=0.2, sent=1, received=1) for e in entries if e["ip"] not in unreachable],
            "unreachable": [dict(e, rtt_ms=None, reason="timeout", sent=1, received=0)
                            for e in entries if e["ip"] in unreachable],
            "mtu_blackholed": [dict(e, mtu_probe="blackholed") for e in entries if e["ip"] in blackholed],
            "mtu_limited": [],
            "duration_s": 0.01,
        }
    fake_sweep.calls = []
    return fake_sweep


CASES = [
    ("defaults", {"targets": ["10.0.0.1"]}, {}, 0,
     {"timeout": 1.0, "count": 1, "size": 56, "dont_fragment": False, "mtu_probe": None, "rate": None}),
    ("all options", {"targets": [{"ip": "10.0.0.1", "name": "a"}], "timeout": 2.5, "count": 3, "size": 1000,
                     "dont_fragment": True, "mtu_probe": 1450, "rate": 200},
     {}, 0, {"timeout": 2.5, "count": 3, "size": 1000, "dont_fragment": True, "mtu_probe": 1450, "rate": 200.0}),
    ("unreachable reported, not failed", {"targets": ["10.0.0.1", "10.0.0.2"]}, {"unreachable": ("10.0.0.2",)}, 0,
     None),
    ("fail_on_unreachable", {"targets": ["10.0.0.1", "10.0.0.2"], "fail_on_unreachable": True},
     {"unreachable": ("10.0.0.2",)}, 1, None),
    ("fail_on_unreachable counts black holes", {"targets": ["10.0.0.1"], "fail_on_unreachable": True,
                                                "mtu_probe": 1500},
     {"blackholed": ("10.0.0.1",)}, 1, None),
    ("fail_on_unreachable, all fine", {"targets": ["10.0.0.1"], "fail_on_unreachable": True}, {}, 0, None),
]


@pytest.mark.parametrize("args, outcome, rc, options", [case[1:] for case in CASES], ids=[case[0] for case in CASES])
@pytest.mark.parametrize("check_mode", [False, True])
def test_module(monkeypatch, capsys, args, outcome, rc, options, check_mode):
    fake = canned(**outcome)
    monkeypatch.setattr(pod_poke, "sweep", fake)
    assert run(args, check_mode=check_mode) == rc
    out = json.loads(capsys.readouterr().out)
    assert out["changed"] is False
    assert out["total"] == len(args["targets"])
    assert len(fake.calls) == 1
    if options is not None:
        assert fake.calls[0] == (args["targets"], options)
    if rc:
        assert out["failed"] is True
        assert "unreachable" in out["msg"] and out["msg"].endswith(
            ", ".join(e["ip"] for e in out["unreachable_targets"] + out["mtu_blackholed"]))
    assert "unreachable" not in out  # Ansible would take the host itself for unreachable
    assert len(out["unreachable_targets"]) == len(outcome.get("unreachable", ()))
    for key in ("reachable", "unreachable_targets", "mtu_blackholed", "mtu_limited", "duration_s"):
        assert key in out


@pytest.mark.parametrize("args, named", [
    ({"targets": ["10.0.0.1", "10.0.0.999"]}, "'10.0.0.999' is not an IP address"),
    ({"targets": [{"name": "web"}]}, "has no 'ip'"),
    ({"targets": ["10.0.0.1"], "timeout": 0}, "timeout must be greater than 0, got 0"),
    ({"targets": ["10.0.0.1"], "mtu_probe": 20}, "got 20"),
])
def test_bad_input_fails_naming_the_value_before_sending(monkeypatch, capsys, args, named):
    def no_socket(version):
        raise AssertionError("a socket was opened")
    monkeypatch.setattr(pod_poke, "sweep", lambda targets, **kw: poke.sweep(targets, channel_factory=no_socket, **kw))
    assert run(args) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["failed"] is True and named in out["msg"]


def test_no_icmp_socket_is_a_clear_failure(monkeypatch, capsys):
    def refused(version):
        raise poke.PokeError("cannot open an ICMP socket for IPv4: a raw socket needs CAP_NET_RAW")
    monkeypatch.setattr(pod_poke, "sweep", lambda targets, **kw: poke.sweep(targets, channel_factory=refused, **kw))
    assert run({"targets": ["10.0.0.1"]}) == 1
    assert "CAP_NET_RAW" in json.loads(capsys.readouterr().out)["msg"]
