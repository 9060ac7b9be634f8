# Copyright: netmend.k8s contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""MTU detection from real interfaces in a network namespace whose MTUs the test sets.

/sys shows the network namespace of whoever mounted it; ``ip netns exec`` mounts a
fresh sysfs for the namespace, so the core and the module run under it read the
namespace's own /sys/class/net.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COLLECTIONS = os.path.join(REPO, ".build", "collections")
VENV_BIN = os.path.dirname(sys.executable)

pytestmark = pytest.mark.netlab

DETECT = (
    "import json, sys\n"
    "from ansible_collections.netmend.k8s.plugins.module_utils import mtu\n"
    "kwargs = json.loads(sys.argv[1])\n"
    "print(json.dumps(mtu.plan_mtu(**kwargs)))\n"
)


def ip(*argv):
    subprocess.run(["ip", *argv], check=True)


@pytest.fixture
def netns(netlab):
    """A node namespace with host-like links: eth0 1460, ens5 9001, eth1 1200 but down, a cali veth 1500."""
    node = netlab.add_node("node")
    for link, mtu, up in (("eth0", 1460, True), ("ens5", 9001, True), ("eth1", 1200, False),
                          ("cali0123456789a", 1500, True)):
        node.ip_cmd("link", "add", link, "mtu", str(mtu), "type", "veth", "peer", "name", "p-" + link[:12])
        if up:
            node.ip_cmd("link", "set", link, "up")
    return node.netns


def detect(netns, **kwargs):
    done = subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-c", DETECT, json.dumps(kwargs)],
                          check=True, capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=COLLECTIONS))
    return json.loads(done.stdout)


def test_detection_reads_the_namespace_interfaces(netns):
    plan = detect(netns)
    assert (plan["host_mtu"], plan["interface"], plan["mtu"], plan["mtu_source"]) == (1460, "eth0", 1440, "detected")
    assert detect(netns, encapsulation="vxlan")["mtu"] == 1410
    assert detect(netns, encapsulation="wireguard")["mtu"] == 1400


def test_detection_follows_mtu_and_link_changes(netns):
    ip("-n", netns, "link", "set", "eth0", "mtu", "1400")
    assert detect(netns)["mtu"] == 1380
    ip("-n", netns, "link", "set", "eth0", "down")
    plan = detect(netns, encapsulation="vxlan")
    assert (plan["interface"], plan["host_mtu"], plan["mtu"]) == ("ens5", 9001, 8951)
    ip("-n", netns, "link", "set", "eth1", "up")
    assert detect(netns)["interface"] == "eth1"  # 1200 is now the smallest up match


def test_detection_falls_back_when_nothing_matches(netns):
    plan = detect(netns, interface_pattern="^bond")
    assert (plan["mtu_source"], plan["host_mtu"], plan["mtu"]) == ("fallback", None, 1440)
    assert "no up interface matches" in plan["warnings"][0]


def test_module_in_the_namespace(netns, tmp_path):
    """The module run by ansible inside the namespace: detects 1460 - 20, then is idempotent."""
    path = tmp_path / "10-calico.conflist"
    original = '{\n  "name": "k8s-pod-network",\n  "plugins": [\n    {\n      "type": "calico"\n    }\n  ]\n}\n'
    path.write_text(original)
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS, ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
               ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json", ANSIBLE_PYTHON_INTERPRETER=sys.executable)

    def module(check=False):
        argv = ["ip", "netns", "exec", netns, os.path.join(VENV_BIN, "ansible"), "localhost", "-c", "local",
                "-m", "netmend.k8s.calico_mtu", "-a", "path=%s encapsulation=ipip" % path]
        done = subprocess.run(argv + (["--check"] if check else []), capture_output=True, text=True, env=env, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        return json.loads(done.stdout)["plays"][0]["tasks"][0]["hosts"]["localhost"]

    checked = module(check=True)
    assert (checked["changed"], checked["mtu"]) == (True, 1440)
    assert path.read_text() == original
    first = module()
    assert (first["changed"], first["mtu"], first["interface"], first["previous_mtu"]) == (True, 1440, "eth0", None)
    assert json.loads(path.read_text())["plugins"][0]["mtu"] == 1440
    assert module()["changed"] is False
