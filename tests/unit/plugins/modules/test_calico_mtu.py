# Copyright: netmend.k8s contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

import json
import os

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.netmend.k8s.plugins.modules import calico_mtu

CONFLIST = """{
  "name": "k8s-pod-network",
  "cniVersion": "0.3.1",
  "plugins": [
    {
      "type": "calico",
      "log_level": "info",
      "ipam": {"type": "calico-ipam"}
    },
    {"type": "portmap", "snat": true}
  ]
}
"""


@pytest.fixture
def node(tmp_path, monkeypatch):
    """A CNI folder and a fake /sys/class/net holding eth0 (MTU 1460, up) and lo."""
    net = tmp_path / "net"
    for name, value in (("eth0", 1460), ("lo", 65536), ("cali0000000000a", 1440), ("cali0000000000b", 1500)):
        (net / name).mkdir(parents=True)
        (net / name / "mtu").write_text("%d\n" % value)
        (net / name / "flags").write_text("0x1003\n")
    monkeypatch.setattr(calico_mtu, "SYS_CLASS_NET", str(net))
    path = tmp_path / "10-calico.conflist"
    path.write_text(CONFLIST)
    return path


def run(args, check_mode=False, diff=False):
    args = dict(args)
    if check_mode:
        args["_ansible_check_mode"] = True
    if diff:
        args["_ansible_diff"] = True
    with patch_module_args(args):
        with pytest.raises(SystemExit) as exited:
            calico_mtu.main()
    return exited.value.code


@pytest.fixture
def warned(monkeypatch):
    """Warnings the module gave (ansible routes them differently once controller code is imported)."""
    messages = []
    monkeypatch.setattr(calico_mtu.AnsibleModule, "warn", lambda self, message: messages.append(message))
    return messages


@pytest.fixture
def result(capsys):
    def read():
        return json.loads(capsys.readouterr().out)
    return read


CASES = [
    # (args, check_mode, expected subset of the result, file MTU afterwards)
    pytest.param({}, False, {"changed": True, "mtu": 1440, "previous_mtu": None, "mtu_source": "detected",
                             "host_mtu": 1460, "interface": "eth0", "backup_file": None}, 1440, id="detected-ipip"),
    pytest.param({"encapsulation": "vxlan"}, False, {"changed": True, "mtu": 1410}, 1410, id="detected-vxlan"),
    pytest.param({"encapsulation": "wireguard"}, False, {"changed": True, "mtu": 1400}, 1400, id="detected-wireguard"),
    pytest.param({"mtu": 1300}, False, {"changed": True, "mtu": 1300, "mtu_source": "explicit"}, 1300, id="explicit"),
    pytest.param({"mtu": 9000, "force": True}, False, {"changed": True, "mtu": 9000}, 9000, id="forced"),
    pytest.param({"interface_pattern": "^ens"}, False, {"changed": True, "mtu": 1440, "mtu_source": "fallback",
                                                        "host_mtu": None, "interface": None}, 1440, id="fallback"),
    pytest.param({}, True, {"changed": True, "mtu": 1440}, None, id="check-mode"),
]


@pytest.mark.parametrize("args, check_mode, expected, file_mtu", CASES)
def test_calico_mtu(node, result, warned, args, check_mode, expected, file_mtu):
    assert run(dict(args, path=str(node)), check_mode=check_mode) == 0
    answer = result()
    assert {key: answer[key] for key in expected} == expected
    assert answer["path"] == str(node)
    assert json.loads(node.read_text())["plugins"][0].get("mtu") == file_mtu
    if check_mode:
        assert node.read_text() == CONFLIST
    assert [message.split(":")[0] for message in warned] == (
        ["no up interface matches '^ens'"] if answer["mtu_source"] == "fallback" else [])


def test_idempotent_second_run(node, result):
    assert run({"path": str(node)}) == 0
    first = result()
    assert run({"path": str(node)}) == 0
    second = result()
    assert (first["changed"], second["changed"]) == (True, False)
    assert second["previous_mtu"] == 1440


def test_diff_and_backup(node, result):
    assert run({"path": str(node), "backup": True}, diff=True) == 0
    answer = result()
    assert answer["diff"]["before"] == CONFLIST
    assert answer["diff"]["after"] == node.read_text()
    assert answer["diff"]["before_header"] == str(node)
    assert open(answer["backup_file"]).read() == CONFLIST
    assert sorted(os.listdir(node.parent)) == sorted(["net", node.name, os.path.basename(answer["backup_file"])])


def test_check_mode_with_backup_writes_nothing(node, result):
    assert run({"path": str(node), "backup": True}, check_mode=True, diff=True) == 0
    answer = result()
    assert answer["changed"] is True and answer["backup_file"] is None
    assert '"mtu": 1440' in answer["diff"]["after"]
    assert sorted(os.listdir(node.parent)) == ["10-calico.conflist", "net"]


FAILURES = [
    # (args, file content or None for a missing file, message fragment)
    pytest.param({"mtu": 1450}, CONFLIST, "MTU 1450 is larger than host MTU 1460 of eth0", id="too-large"),
    pytest.param({"mtu": 60}, CONFLIST, "MTU 60 is outside 68-65535", id="too-small"),
    pytest.param({"mtu": 1200, "ip_family": "dual", "force": True}, CONFLIST, "MTU 1200 is outside 1280-65535",
                 id="dual-minimum"),
    pytest.param({}, '{"plugins": [{"type": "calico",]}', "not valid JSON: Expecting property name enclosed in double "
                 "quotes at line 1 column 32", id="invalid-json"),
    pytest.param({}, '{"plugins": [{"type": "flannel"}]}', "no plugin of type calico", id="no-calico"),
    pytest.param({}, None, "cannot read CNI config", id="missing"),
    pytest.param({"interface_pattern": "eth["}, CONFLIST, "interface_pattern 'eth[' is not a valid", id="bad-pattern"),
]


@pytest.mark.parametrize("args, content, message", FAILURES)
def test_refusals_change_nothing(node, result, args, content, message):
    if content is None:
        node.unlink()
    else:
        node.write_text(content)
    assert run(dict(args, path=str(node))) == 1
    answer = result()
    assert answer["failed"] is True
    assert message in answer["msg"]
    if content is not None:
        assert node.read_text() == content
    assert sorted(os.listdir(node.parent)) == sorted(["net"] + ([node.name] if content is not None else []))


def test_unknown_encapsulation_rejected_by_argument_spec(node, result):
    assert run({"path": str(node), "encapsulation": "gre"}) == 1
    assert "value of encapsulation must be one of: ipip, vxlan, wireguard, none, got: gre" in result()["msg"]
    assert node.read_text() == CONFLIST


def test_stale_interfaces(node, result):
    assert run({"path": str(node)}) == 0
    assert result()["stale_interfaces"] == [{"name": "cali0000000000b", "mtu": 1500}]
    assert run({"path": str(node), "mtu": 1300}) == 0
    assert result()["stale_interfaces"] == [{"name": "cali0000000000a", "mtu": 1440}, {"name": "cali0000000000b", "mtu": 1500}]
    assert run({"path": str(node), "veth_prefix": "vxl"}) == 0
    assert result()["stale_interfaces"] == []


@pytest.mark.parametrize("fixture, old, warning", [
    ("install-cni-crlf.conflist", b'"mtu": 0', None),
    ("install-cni-bom.conflist", b'"mtu": 1500', "starts with a UTF-8 byte order mark"),
    ("duplicate-plugins.conflist", b'"mtu": 1480', 'has 2 "plugins" keys'),
])
def test_diff_shows_the_file_exactly(node, result, warned, fixture, old, warning, cni_fixture):
    content = cni_fixture(fixture)
    node.write_bytes(content)
    assert run({"path": str(node), "mtu": 1410}, diff=True) == 0
    answer = result()
    assert node.read_bytes() == content.replace(old, b'"mtu": 1410')
    # before and after are the file's exact bytes: CRLF and a BOM survive and would show if they changed
    assert answer["diff"]["before"].encode() == content
    assert answer["diff"]["after"].encode() == node.read_bytes()
    assert [message for message in warned if warning and warning in message] == ([] if warning is None else warned)
    assert len(warned) == (0 if warning is None else 1)


def test_symlink_is_written_through(node, result):
    target = node.parent / "store.conflist"
    os.replace(node, target)
    node.symlink_to(target.name)
    assert run({"path": str(node), "backup": True}) == 0
    answer = result()
    assert answer["changed"] is True and os.path.islink(node)
    assert json.loads(target.read_text())["plugins"][0]["mtu"] == 1440
    assert open(answer["backup_file"]).read() == CONFLIST
