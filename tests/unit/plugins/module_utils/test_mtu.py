# Copyright: netmend.k8s contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

import hashlib
import json
import os
import stat

import pytest

from ansible_collections.netmend.k8s.plugins.module_utils import mtu
from ansible_collections.netmend.k8s.plugins.module_utils.mtu import MtuError


def make_sys(root, interfaces):
    """A fake /sys/class/net: {name: (mtu, up)}."""
    for name, (value, up) in interfaces.items():
        folder = root / name
        folder.mkdir(parents=True)
        (folder / "mtu").write_text("%d\n" % value)
        (folder / "flags").write_text("0x%x\n" % (0x1003 if up else 0x1002))
    return str(root)


# --- arithmetic ----------------------------------------------------------------------------

ARITHMETIC = [
    # (host MTU, encapsulation, family, pod MTU)
    pytest.param(1460, "ipip", "ipv4", 1440, id="gce-ipip"),
    pytest.param(1460, "vxlan", "ipv4", 1410, id="gce-vxlan"),
    pytest.param(1460, "wireguard", "ipv4", 1400, id="gce-wireguard"),
    pytest.param(1460, "none", "ipv4", 1460, id="gce-none"),
    pytest.param(9001, "ipip", "ipv4", 8981, id="jumbo-ipip"),
    pytest.param(9001, "vxlan", "ipv4", 8951, id="jumbo-vxlan"),
    pytest.param(9001, "wireguard", "ipv4", 8941, id="jumbo-wireguard"),
    pytest.param(1500, "vxlan", "ipv6", 1430, id="ipv6-vxlan"),
    pytest.param(1500, "wireguard", "ipv6", 1420, id="ipv6-wireguard"),
    pytest.param(1500, "ipip", "ipv6", 1480, id="ipv6-ipip"),
    pytest.param(1500, "vxlan", "dual", 1430, id="dual-vxlan-takes-ipv6"),
    pytest.param(1500, "wireguard", "dual", 1420, id="dual-wireguard-takes-ipv6"),
    pytest.param(9000, "ipip", "dual", 8980, id="dual-ipip-jumbo"),
]


@pytest.mark.parametrize("host_mtu, encapsulation, family, expected", ARITHMETIC)
def test_pod_mtu(host_mtu, encapsulation, family, expected):
    assert mtu.pod_mtu(host_mtu, encapsulation, family) == expected


@pytest.mark.parametrize("encapsulation, family, message", [
    ("gre", "ipv4", "unknown encapsulation 'gre'"),
    ("ipip", "ipv5", "unknown ip_family 'ipv5'"),
])
def test_overhead_rejects_unknown(encapsulation, family, message):
    with pytest.raises(MtuError, match=message):
        mtu.overhead(encapsulation, family)


@pytest.mark.parametrize("value, family, message", [
    (67, "ipv4", "MTU 67 is outside 68-65535"),
    (65536, "ipv4", "MTU 65536 is outside 68-65535"),
    (1279, "ipv6", "MTU 1279 is outside 1280-65535"),
    (1200, "dual", "MTU 1200 is outside 1280-65535"),
    ("1440", "ipv4", "MTU '1440' is not an integer"),
    (True, "ipv4", "MTU True is not an integer"),
])
def test_mtu_range_refused(value, family, message):
    with pytest.raises(MtuError, match=message):
        mtu.check_mtu_range(value, family)


@pytest.mark.parametrize("value, family", [(68, "ipv4"), (65535, "ipv4"), (1280, "ipv6"), (1280, "dual")])
def test_mtu_range_accepted(value, family):
    assert mtu.check_mtu_range(value, family) == value


# --- detection -----------------------------------------------------------------------------

PLAN = [
    # (interfaces, kwargs, expected subset)
    pytest.param({"eth0": (1460, True), "lo": (65536, True), "cali1234567890a": (1500, True)}, {},
                 {"mtu": 1440, "mtu_source": "detected", "host_mtu": 1460, "interface": "eth0"}, id="gce"),
    pytest.param({"ens5": (9001, True), "eth1": (1500, False)}, {"encapsulation": "vxlan"},
                 {"mtu": 8951, "mtu_source": "detected", "host_mtu": 9001, "interface": "ens5"},
                 id="down-interface-ignored"),
    pytest.param({"ens5": (9001, True), "eth1": (1500, True)}, {"encapsulation": "wireguard"},
                 {"mtu": 1440, "host_mtu": 1500, "interface": "eth1"}, id="smallest-wins"),
    pytest.param({"lo": (65536, True), "docker0": (1500, True)}, {},
                 {"mtu": 1440, "mtu_source": "fallback", "host_mtu": None, "interface": None}, id="fallback"),
    pytest.param({"bond0": (9000, True), "eth0": (1500, True)}, {"interface_pattern": "^bond"},
                 {"mtu": 8980, "interface": "bond0"}, id="custom-pattern"),
    pytest.param({"eth0": (1500, True)}, {"mtu": 1400},
                 {"mtu": 1400, "mtu_source": "explicit", "host_mtu": 1500}, id="explicit-below"),
    pytest.param({"eth0": (1460, True)}, {"mtu": 1500, "force": True},
                 {"mtu": 1500, "mtu_source": "explicit"}, id="explicit-forced"),
    pytest.param({"lo": (65536, True)}, {"mtu": 9000},
                 {"mtu": 9000, "mtu_source": "explicit", "host_mtu": None}, id="explicit-no-host"),
]


@pytest.mark.parametrize("interfaces, kwargs, expected", PLAN)
def test_plan_mtu(tmp_path, interfaces, kwargs, expected):
    plan = mtu.plan_mtu(root=make_sys(tmp_path / "net", interfaces), **kwargs)
    assert {key: plan[key] for key in expected} == expected
    assert bool(plan["warnings"]) == (plan["host_mtu"] is None)


@pytest.mark.parametrize("interfaces, kwargs, message", [
    ({"eth0": (1460, True)}, {"mtu": 1450}, "MTU 1450 is larger than host MTU 1460 of eth0 minus the ipip overhead 20"),
    ({"eth0": (1500, True)}, {"mtu": 1000, "ip_family": "ipv6"}, "MTU 1000 is outside 1280-65535"),
    ({"eth0": (1500, True)}, {"encapsulation": "geneve"}, "unknown encapsulation 'geneve'"),
    ({"eth0": (1500, True)}, {"interface_pattern": "(eth"}, "interface_pattern '\\(eth' is not a valid"),
    ({"eth0": (600, True)}, {"ip_family": "ipv6"}, "MTU 580 is outside 1280-65535"),
])
def test_plan_mtu_refused(tmp_path, interfaces, kwargs, message):
    with pytest.raises(MtuError, match=message):
        mtu.plan_mtu(root=make_sys(tmp_path / "net", interfaces), **kwargs)


def test_read_interfaces_and_interface_mtu(tmp_path):
    root = make_sys(tmp_path / "net", {"eth0": (1460, True), "cali0123456789a": (1500, False)})
    assert mtu.read_interfaces(root) == [
        {"name": "cali0123456789a", "mtu": 1500, "up": False},
        {"name": "eth0", "mtu": 1460, "up": True},
    ]
    assert mtu.interface_mtu("eth0", root) == 1460
    assert mtu.interface_mtu("missing", root) is None


def test_read_interfaces_missing_root(tmp_path):
    with pytest.raises(MtuError, match="cannot list network interfaces in .*nowhere"):
        mtu.read_interfaces(str(tmp_path / "nowhere"))


# --- veth names ----------------------------------------------------------------------------

@pytest.mark.parametrize("namespace, pod", [
    ("default", "nginx"),
    ("kube-system", "coredns-7db6d8ff4d-x2x4q"),
    ("isolated", "echo-gvisor-8695f776d5-8z4p8"),
])
def test_veth_name(namespace, pod):
    expected = "cali" + hashlib.sha1(("%s.%s" % (namespace, pod)).encode()).hexdigest()[:11]
    name = mtu.veth_name(namespace, pod)
    assert name == expected
    assert len(name) == 15  # IFNAMSIZ - 1: the longest name Linux allows


def test_veth_name_known_value():
    # sha1(b"default.nginx") = c440f455693...: pinned so a change of the derivation shows.
    assert mtu.veth_name("default", "nginx") == "calic440f455693"
    assert mtu.veth_name("default", "nginx", prefix="vxl") == "vxlc440f455693"


# --- conflist editing ----------------------------------------------------------------------

CONFLIST = """{
  "name": "k8s-pod-network",
  "cniVersion": "0.3.1",
  "plugins": [
    {
      "type": "calico",
      "log_level": "info",
      "datastore_type": "kubernetes",
      "ipam": {"type": "calico-ipam"},
      "policy": {"type": "k8s"},
      "kubernetes": {"kubeconfig": "/etc/cni/net.d/calico-kubeconfig"}
    },
    {
      "type": "portmap",
      "snat": true,
      "capabilities": {"portMappings": true}
    }
  ]
}
"""


def without_calico_mtu(text):
    data = json.loads(text)
    for plugin in data.get("plugins", [data]):
        if plugin.get("type") == "calico":
            plugin.pop("mtu", None)
    return json.dumps(data)


EDITS = [
    # (text, mtu, expected text, previous)
    pytest.param(CONFLIST, 1440,
                 CONFLIST.replace('"type": "calico",\n', '"type": "calico",\n      "mtu": 1440,\n'), None,
                 id="conflist-add-after-type"),
    pytest.param(CONFLIST.replace('"log_level": "info",', '"log_level": "info",\n      "mtu": 1500,'), 1440,
                 CONFLIST.replace('"log_level": "info",', '"log_level": "info",\n      "mtu": 1440,'), 1500,
                 id="conflist-replace-in-place"),
    pytest.param(CONFLIST.replace('"log_level": "info",', '"mtu": "1500", "log_level": "info",'), 1440,
                 CONFLIST.replace('"log_level": "info",', '"mtu": 1440, "log_level": "info",'), 1500,
                 id="string-mtu-becomes-int"),
    pytest.param('{\n\t"type": "calico",\n\t"name": "k8s"\n}\n', 1410,
                 '{\n\t"type": "calico",\n\t"mtu": 1410,\n\t"name": "k8s"\n}\n', None, id="conf-tabs"),
    pytest.param('{"cniVersion":"0.3.1","type":"calico"}', 1400,
                 '{"cniVersion":"0.3.1","type":"calico","mtu":1400}', None, id="conf-compact"),
    pytest.param('{"plugins": [{"type": "bandwidth"}, {"type" : "calico"}]}', 8981,
                 '{"plugins": [{"type": "bandwidth"}, {"type" : "calico","mtu" : 8981}]}', None,
                 id="calico-not-first-spaced-colon"),
    pytest.param('{\r\n    "plugins": [\r\n        {\r\n            "type": "calico"\r\n        }\r\n    ]\r\n}\r\n', 1440,
                 '{\r\n    "plugins": [\r\n        {\r\n            "type": "calico",\r\n            "mtu": 1440\r\n'
                 '        }\r\n    ]\r\n}\r\n', None, id="crlf-four-spaces"),
    pytest.param('{"plugins": [{"type": "calico", "mtu": 1, "mtu": 1500}]}', 1440,
                 '{"plugins": [{"type": "calico", "mtu": 1, "mtu": 1440}]}', 1500, id="duplicate-last-wins"),
    pytest.param('{"plugins": [{"type": "calico", "name": "\\u00e9\\"}]\\"", "mtu": 1440}]}', 1440,
                 '{"plugins": [{"type": "calico", "name": "\\u00e9\\"}]\\"", "mtu": 1440}]}', 1440,
                 id="escapes-unchanged"),
]


@pytest.mark.parametrize("text, value, expected, previous", EDITS)
def test_set_config_mtu(text, value, expected, previous):
    new_text, old = mtu.set_config_mtu(text, value)
    assert new_text == expected
    assert old == previous
    assert mtu.config_mtu(new_text) == value
    # every key other than the calico entry's mtu stays, in the same order
    assert without_calico_mtu(text) == without_calico_mtu(new_text)
    # idempotent
    assert mtu.set_config_mtu(new_text, value) == (new_text, value)


@pytest.mark.parametrize("text, message", [
    ('{\n  "plugins": [\n    {"type": "calico",}\n  ]\n}', r"is not valid JSON: Expecting property name .* at line 3 column 23"),
    ("", r"is not valid JSON: Expecting value at line 1 column 1"),
    ('{"plugins": [{"type": "flannel"}, {"type": "portmap"}]}', r"has no plugin of type calico \(plugin types: flannel, portmap\)"),
    ('{"type": "bridge"}', r"has no plugin of type calico \(a single-plugin config of type 'bridge'\)"),
    ('{"plugins": {"type": "calico"}}', r'"plugins" is a JSON dict, not a list'),
    ('[{"type": "calico"}]', r"holds a JSON list, not an object"),
])
def test_set_config_mtu_refused(text, message):
    with pytest.raises(MtuError, match=message):
        mtu.set_config_mtu(text, 1440, "/etc/cni/net.d/10-calico.conflist")


# --- files ---------------------------------------------------------------------------------

def test_ensure_config_mtu_writes_atomically_keeping_mode(tmp_path):
    path = tmp_path / "10-calico.conflist"
    path.write_text(CONFLIST)
    os.chmod(path, 0o640)
    result = mtu.ensure_config_mtu(str(path), 1440)
    assert result["changed"] is True and result["previous_mtu"] is None
    assert path.read_text() == result["after"] != result["before"] == CONFLIST
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
    assert sorted(os.listdir(tmp_path)) == ["10-calico.conflist"]  # no temp file left behind
    again = mtu.ensure_config_mtu(str(path), 1440)
    assert again["changed"] is False and again["previous_mtu"] == 1440


def test_ensure_config_mtu_keeps_owner(tmp_path):
    if os.geteuid() != 0:
        pytest.fail("CI runs the unit tests as root; this one checks ownership is kept")
    path = tmp_path / "10-calico.conflist"
    path.write_text(CONFLIST)
    os.chown(path, 4321, 8765)
    mtu.ensure_config_mtu(str(path), 1400)
    assert (os.stat(path).st_uid, os.stat(path).st_gid) == (4321, 8765)


def test_ensure_config_mtu_check_mode_writes_nothing(tmp_path):
    path = tmp_path / "10-calico.conflist"
    path.write_text(CONFLIST)
    before = os.stat(path)
    result = mtu.ensure_config_mtu(str(path), 1440, check_mode=True)
    assert result["changed"] is True
    assert path.read_bytes() == CONFLIST.encode()
    assert os.stat(path).st_ino == before.st_ino


@pytest.mark.parametrize("content, message", [
    (b'{"plugins": [{"type": "calico", "mtu": 1500,}]}', "line 1 column 45"),
    (b'{"plugins": [{"type": "host-local"}]}', "no plugin of type calico"),
    (b"\xff\xfe{}", "is not UTF-8 text"),
])
def test_ensure_config_mtu_refuses_and_leaves_file_byte_identical(tmp_path, content, message):
    path = tmp_path / "10-calico.conflist"
    path.write_bytes(content)
    with pytest.raises(MtuError, match=message):
        mtu.ensure_config_mtu(str(path), 1440)
    assert path.read_bytes() == content
    assert os.listdir(tmp_path) == ["10-calico.conflist"]


def test_ensure_config_mtu_missing_file(tmp_path):
    with pytest.raises(MtuError, match="cannot read CNI config .*/absent.conflist: No such file"):
        mtu.ensure_config_mtu(str(tmp_path / "absent.conflist"), 1440)


# --- real conflist shapes (tests/unit/fixtures/cni) ----------------------------------------

def only_mtu_changed(before, after, old, new):
    """``after`` is ``before`` with the calico entry's ``"mtu": old`` literal replaced, nothing else."""
    assert before.count(b'"mtu": %d' % old) == 1
    assert after == before.replace(b'"mtu": %d' % old, b'"mtu": %d' % new)


@pytest.mark.parametrize("name, old, warning", [
    ("install-cni.conflist", 0, None),
    ("operator.conflist", 0, None),
    ("gke.conflist", 1460, None),
    # CRLF line endings and trailing blanks: read and written untranslated
    ("install-cni-crlf.conflist", 0, None),
    # a UTF-8 byte order mark stays, with a warning that Go's JSON decoder rejects it
    ("install-cni-bom.conflist", 1500, "starts with a UTF-8 byte order mark"),
])
def test_ensure_config_mtu_keeps_every_other_byte(tmp_path, name, old, warning, cni_fixture):
    before = cni_fixture(name)
    path = tmp_path / "10-calico.conflist"
    path.write_bytes(before)
    result = mtu.ensure_config_mtu(str(path), 1410)
    assert result["changed"] is True and result["previous_mtu"] == old
    only_mtu_changed(before, path.read_bytes(), old, 1410)
    # the diff texts are the exact file contents, so a CRLF or BOM change would show in --diff
    assert result["before"].encode() == before
    assert result["after"].encode() == path.read_bytes()
    assert [text.split(" starts")[0] for text in result["warnings"]] == ([] if warning is None else [str(path)])
    assert mtu.ensure_config_mtu(str(path), 1410)["changed"] is False


def test_crlf_fixture_really_has_crlf(cni_fixture):
    text = cni_fixture("install-cni-crlf.conflist")
    assert text.count(b"\r\n") == text.count(b"\n") > 30
    assert b'"info",  \r\n' in text


def test_symlinked_conflist_is_written_through(tmp_path, cni_fixture):
    """install-cni on some distributions links 10-calico.conflist to a file kept elsewhere."""
    store = tmp_path / "store"
    store.mkdir()
    target = store / "calico.conflist"
    target.write_bytes(cni_fixture("install-cni.conflist"))
    os.chmod(target, 0o600)
    cni = tmp_path / "net.d"
    cni.mkdir()
    link = cni / "10-calico.conflist"
    link.symlink_to(os.path.join("..", "store", "calico.conflist"))
    result = mtu.ensure_config_mtu(str(link), 1440)
    assert result["changed"] is True
    assert os.path.islink(link) and os.readlink(link) == os.path.join("..", "store", "calico.conflist")
    only_mtu_changed(cni_fixture("install-cni.conflist"), target.read_bytes(), 0, 1440)
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600
    assert sorted(os.listdir(cni)) == ["10-calico.conflist"] and sorted(os.listdir(store)) == ["calico.conflist"]
    assert mtu.ensure_config_mtu(str(link), 1440)["changed"] is False


def test_dangling_symlink_is_refused_naming_it(tmp_path):
    link = tmp_path / "10-calico.conflist"
    link.symlink_to(tmp_path / "gone.conflist")
    with pytest.raises(MtuError, match="cannot read CNI config .*10-calico.conflist: No such file"):
        mtu.ensure_config_mtu(str(link), 1440)
    assert os.path.islink(link) and os.listdir(tmp_path) == ["10-calico.conflist"]


def test_duplicate_plugins_keys_edit_the_last(tmp_path, cni_fixture):
    """Go's encoding/json, like Python's, keeps the last duplicate key: that list is what the runtime runs."""
    before = cni_fixture("duplicate-plugins.conflist")
    path = tmp_path / "10-calico.conflist"
    path.write_bytes(before)
    result = mtu.ensure_config_mtu(str(path), 1410)
    assert result["previous_mtu"] == 1480
    assert path.read_bytes() == before.replace(b'"mtu": 1480', b'"mtu": 1410')
    assert b'"mtu": 1500' in path.read_bytes()  # the ignored first list stays as it was
    assert mtu.config_mtu(path.read_text()) == 1410
    assert result["warnings"] == ["%s has 2 \"plugins\" keys; container runtimes use only the last one, so that one "
                                  "was edited and the others were left as they are" % path]
