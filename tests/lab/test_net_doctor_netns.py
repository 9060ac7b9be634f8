# Copyright: netmend.k8s contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""net_doctor on real network namespaces: each fault of seed 003 staged on a node, found by its id.

Three lab nodes on a VXLAN underlay (``vxlan.calico`` like Calico's), pods wired like
Calico's with the overlay MTU, node pod CIDRs 10.244.<n>.0/24. The doctor runs inside
node1's namespace through the agent's run-once entry point, as the DaemonSet would,
so ``/proc/sys/net``, ``/sys/class/net``, ``ip`` and ``iptables-*-save`` all read that
namespace. The only packets it sends are TCP SYNs to the given BGP peers, which are
lab namespaces. ``gc_thresh*`` and ``nf_conntrack_max`` are kernel-wide here, so the
tests stage the entries in the namespace and pass the lowered limit in.
"""
from __future__ import annotations

import json
import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COLLECTIONS = os.path.join(REPO, ".build", "collections")
AGENT = "ansible_collections.netmend.k8s.plugins.module_utils.agent"
MARKER = "NETMEND_NET_DOCTOR_RESULT "

pytestmark = pytest.mark.netlab

BGP_LISTENER = (
    "import socket\n"
    "server = socket.socket()\n"
    "server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "server.bind(('0.0.0.0', 179))\n"
    "server.listen(64)\n"
    "print('ready', flush=True)\n"
    "while True:\n"
    "    conn, peer = server.accept()\n"
    "    print(peer[0], flush=True)\n"
    "    conn.close()\n"
)


def doctor(node, spec, node_name="node1"):
    """The run-once agent inside ``node``'s namespace; returns its result."""
    env = dict(os.environ, PYTHONPATH=COLLECTIONS)
    proc = node.run([sys.executable, "-m", AGENT, "net_doctor", "--node-name", node_name, "--spec", json.dumps(spec)],
                    env=env, check=False, timeout=60)
    lines = [line for line in proc.stdout.splitlines() if line.startswith(MARKER)]
    assert len(lines) == 1, proc.stdout + proc.stderr
    result = json.loads(lines[0][len(MARKER):])
    result["rc"] = proc.returncode
    return result


@pytest.fixture
def cluster(netlab, tmp_path):
    """Three healthy nodes: VXLAN underlay, a pod per node at the overlay MTU, a CNI config at 1450."""
    nodes = [netlab.add_node("node%d" % index) for index in (1, 2, 3)]
    underlay = netlab.connect_nodes(nodes, kind="vxlan")
    for index, node in enumerate(nodes, start=1):
        netlab.add_pod(node, "web-%d" % index, "10.244.%d.2" % index, mtu=underlay.overlay_mtu)
    config = tmp_path / "10-calico.conflist"
    config.write_text(json.dumps({"name": "k8s-pod-network", "cniVersion": "0.3.1",
                                  "plugins": [{"type": "calico", "mtu": underlay.overlay_mtu}]}, indent=2))
    spec = {
        "nodes": [{"name": node.name, "addresses": [underlay.ips[node.name]],
                   "pod_cidrs": ["10.244.%d.0/24" % index]} for index, node in enumerate(nodes, start=1)],
        "cni_config": str(config),
        "expected_tunnels": ["vxlan.calico"],
        "pod_count": 3,
    }
    # Something in the nft backend, as on any node running kube-proxy.
    nodes[0].run(["iptables-nft", "-w", "-A", "FORWARD", "-m", "comment", "--comment", "kube-proxy stand-in",
                  "-j", "ACCEPT"])
    return {"lab": netlab, "nodes": nodes, "underlay": underlay, "spec": spec, "config": config}


def ids(result):
    return sorted({item["id"] for item in result["findings"]})


def test_healthy_node_has_no_findings(cluster):
    node1, node2, _node3 = cluster["nodes"]
    with _listener(node2):
        result = doctor(node1, dict(cluster["spec"], bgp_peers=[cluster["underlay"].ips["node2"]]))
    assert result["rc"] == 0
    assert result["findings"] == [], json.dumps(result["findings"], indent=1)
    facts = result["facts"]
    assert facts["peers"] == ["node2", "node3"]
    assert facts["mtu"]["encapsulation"] == "vxlan" and facts["mtu"]["pod_mtu"] == 1450
    assert facts["mtu"]["cni_mtu"] == 1450 and facts["mtu"]["veths"] == {"1450": 1}
    assert facts["bgp"] == {cluster["underlay"].ips["node2"]: "open"}
    assert facts["iptables_rules"]["nft"]["ipv4"] >= 1 and facts["iptables_rules"]["legacy"]["ipv4"] == 0
    assert facts["routes_checked"] == 2
    assert facts["forwarding"]["ipv4"] == 1


def _listener(host):
    from lab.netlab import Listener
    return Listener(host, [sys.executable, "-u", "-c", BGP_LISTENER])


def fill_neighbours(cluster):
    # 80 permanent entries in node1: the kernel's table is shared, so stay far below its real gc_thresh.
    node1 = cluster["nodes"][0]
    node1.batch(["neigh replace 10.99.%d.%d lladdr 02:00:00:00:%02x:%02x dev eth0 nud permanent"
                 % (i // 250, i % 250 + 1, i // 256, i % 256) for i in range(80)])
    return {"gc_thresh": [16, 32, 64], "checks": ["arp_gc_thresh"]}


def forwarding_off(cluster):
    cluster["nodes"][0].sysctl({"net/ipv4/ip_forward": 0})
    return {}


def strict_rp_filter(cluster):
    cluster["nodes"][0].sysctl({"net/ipv4/conf/all/rp_filter": 1, "net/ipv4/conf/vxlan.calico/rp_filter": 1})
    return {}


def route_missing(cluster):
    node1 = cluster["nodes"][0]
    node1.ip_cmd("route", "del", "10.244.2.2/32")
    return {}


def route_wrong(cluster):
    node1 = cluster["nodes"][0]
    node1.batch(["link add nd-wrong0 type veth peer name nd-wrong1", "link set nd-wrong0 up",
                 "route replace 10.244.3.2/32 dev nd-wrong0"])
    return {}


def route_blackhole(cluster):
    cluster["nodes"][0].ip_cmd("route", "replace", "blackhole", "10.244.3.0/24")
    return {}


def mixed_backends(cluster):
    cluster["nodes"][0].run(["iptables-legacy", "-w", "-A", "INPUT", "-m", "comment", "--comment",
                             "legacy stand-in", "-j", "ACCEPT"])
    return {}


def conntrack_near_max(cluster):
    node1, node2 = cluster["nodes"][:2]
    node1.run(["iptables-nft", "-w", "-A", "OUTPUT", "-m", "conntrack", "--ctstate", "NEW", "-j", "ACCEPT"])
    target = cluster["underlay"].ips["node2"]
    script = ("import socket\nfor port in range(20000, 20060):\n"
              "    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
              "    s.sendto(b'x', (%r, port))\n    s.close()\n" % target)
    node1.run([sys.executable, "-c", script])
    return {"conntrack_max": 60, "checks": ["conntrack_full"]}


def mtu_mismatch(cluster):
    lab, node1 = cluster["lab"], cluster["nodes"][0]
    lab.add_pod(node1, "big-1", "10.244.1.3", mtu=1500)
    return {}


def tunnel_down(cluster):
    cluster["nodes"][0].ip_cmd("link", "set", "vxlan.calico", "down")
    return {"checks": ["tunnel_down"]}


def dead_bgp_peer(cluster):
    node2, node3 = cluster["nodes"][1:]
    node3.run(["iptables-nft", "-w", "-A", "INPUT", "-p", "tcp", "--dport", "179", "-j", "DROP"])
    cluster["listener"] = _listener(node2)
    return {"bgp_peers": [cluster["underlay"].ips["node2"], cluster["underlay"].ips["node3"]], "bgp_timeout": 0.5}


FAULTS = [
    pytest.param(fill_neighbours, {"arp_gc_thresh"}, "ipv4 neighbour table", id="arp_gc_thresh"),
    pytest.param(forwarding_off, {"ip_forward"}, "net.ipv4.ip_forward", id="ip_forward"),
    pytest.param(strict_rp_filter, {"rp_filter"}, "vxlan.calico", id="rp_filter"),
    pytest.param(route_missing, {"route_missing"}, "10.244.2.0/24 (node node2)", id="route_missing"),
    pytest.param(route_wrong, {"route_wrong"}, "10.244.3.2/32 (node node3)", id="route_wrong"),
    pytest.param(route_blackhole, {"route_wrong"}, "10.244.3.0/24 (node node3)", id="route_blackhole"),
    pytest.param(mixed_backends, {"iptables_backend_mixed"}, "iptables", id="iptables_backend_mixed"),
    pytest.param(conntrack_near_max, {"conntrack_full"}, "nf_conntrack", id="conntrack_full"),
    pytest.param(mtu_mismatch, {"mtu_mismatch"}, "pod veths (1)", id="mtu_mismatch"),
    pytest.param(tunnel_down, {"tunnel_down"}, "vxlan.calico", id="tunnel_down"),
    pytest.param(dead_bgp_peer, {"bgp_unreachable"}, "192.168.200.3:179", id="bgp_unreachable"),
]


@pytest.mark.parametrize("stage, expected, subject", FAULTS)
def test_each_staged_fault_is_found_by_its_id(cluster, stage, expected, subject):
    overrides = stage(cluster)
    result = doctor(cluster["nodes"][0], dict(cluster["spec"], **overrides))
    listener = cluster.pop("listener", None)
    if listener:
        listener.stop()
    assert result["rc"] == 0, result
    assert set(ids(result)) == expected, json.dumps(result["findings"], indent=1)
    assert subject in [item["subject"] for item in result["findings"]]
    for item in result["findings"]:
        assert item["observed"] and item["expected"] and item["advice"]


def test_dead_bgp_peer_costs_one_timeout_and_the_live_one_is_open(cluster):
    overrides = dead_bgp_peer(cluster)
    with cluster.pop("listener") as listener:
        result = doctor(cluster["nodes"][0], dict(cluster["spec"], checks=["bgp_unreachable"], **overrides))
        seen = listener.sources(wait=2.0, count=1)
    underlay = cluster["underlay"]
    assert result["facts"]["bgp"] == {underlay.ips["node2"]: "open", underlay.ips["node3"]: "timeout"}
    # the live peer saw exactly our connection, from node1's underlay address
    assert seen == [underlay.ips["node1"]]
    (found,) = result["findings"]
    assert found["observed"] == "TCP 179: no answer within 0.5s"


def test_bad_input_names_the_value_and_sends_nothing(cluster):
    node1, node2 = cluster["nodes"][:2]
    with _listener(node2) as listener:
        result = doctor(node1, dict(cluster["spec"], bgp_peers=[cluster["underlay"].ips["node2"], "node3.lab"]))
        assert listener.lines(wait=0.5) == []
    assert result["rc"] == 2
    assert "'node3.lab' is not an IP address" in result["error"]
    bad = dict(cluster["spec"], nodes=[{"name": "node9", "pod_cidrs": ["10.244.9.1/24"]}])
    result = doctor(node1, bad)
    assert result["rc"] == 2 and "'10.244.9.1/24'" in result["error"]
