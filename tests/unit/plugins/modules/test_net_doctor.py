# Copyright: netmend.k8s contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

import json

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.netmend.k8s.plugins.module_utils import netdoctor
from ansible_collections.netmend.k8s.plugins.modules import net_doctor


def run(args, capsys, check_mode=False):
    args = dict(args)
    if check_mode:
        args["_ansible_check_mode"] = True
    with patch_module_args(args):
        with pytest.raises(SystemExit) as exited:
            net_doctor.main()
    return exited.value.code, json.loads(capsys.readouterr().out)


def canned(severities):
    def fake_diagnose(spec, reader=None):
        fake_diagnose.specs.append(spec)
        findings = [netdoctor.finding("ip_forward", severity, "s", "o", "e", "a") for severity in severities]
        return {"findings": findings, "facts": {"duration_s": 0.01}, "skipped": {}}
    fake_diagnose.specs = []
    return fake_diagnose


CASES = [
    # (name, args, severities found, rc)
    ("nothing found", {}, [], 0),
    ("findings reported, not failed", {}, ["error", "warning"], 0),
    ("fail_on error fails on an error", {"fail_on": "error"}, ["error"], 1),
    ("fail_on error passes a warning", {"fail_on": "warning"}, ["info"], 0),
    ("fail_on warning fails on a warning", {"fail_on": "warning"}, ["warning", "info"], 1),
]


@pytest.mark.parametrize("args, severities, rc", [case[1:] for case in CASES], ids=[case[0] for case in CASES])
@pytest.mark.parametrize("check_mode", [False, True])
def test_module(monkeypatch, capsys, args, severities, rc, check_mode):
    fake = canned(severities)
    monkeypatch.setattr(net_doctor, "diagnose", fake)
    code, result = run(args, capsys, check_mode)
    assert code == rc
    assert result["changed"] is False
    assert [item["severity"] for item in result["findings"]] == severities
    if rc:
        assert "finding(s) of severity %s or worse" % args["fail_on"] in result["msg"]


def test_options_reach_the_core(monkeypatch, capsys):
    fake = canned([])
    monkeypatch.setattr(net_doctor, "diagnose", fake)
    code, _result = run({"node_name": "n1", "nodes": [{"name": "n2", "addresses": ["10.0.0.2"],
                                                       "pod_cidrs": ["10.244.2.0/24"]}],
                         "bgp_peers": ["10.0.0.2"], "bgp_timeout": 0.5, "gc_thresh": [1, 2, 3],
                         "checks": ["routes", "bgp_unreachable"]}, capsys)
    assert code == 0
    (spec,) = fake.specs
    assert spec.node_name == "n1"
    assert [str(peer) for peer in spec.bgp_peers] == ["10.0.0.2"]
    assert spec.nodes[0]["pod_cidrs"][0].with_prefixlen == "10.244.2.0/24"
    assert spec.gc_thresh == (1, 2, 3) and spec.bgp_timeout == 0.5
    assert spec.checks == ("routes", "bgp_unreachable")


@pytest.mark.parametrize("args, named", [
    ({"nodes": [{"name": "n2", "pod_cidrs": ["10.244.2.0/33"]}]}, "'10.244.2.0/33'"),
    ({"bgp_peers": ["peer.example"]}, "'peer.example'"),
])
def test_bad_input_fails_naming_the_value(monkeypatch, capsys, args, named):
    code, result = run(args, capsys)
    assert code == 1
    assert named in result["msg"]
