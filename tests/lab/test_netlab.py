"""The network lab itself: real namespaces, real packets."""
from __future__ import annotations

import hashlib
import os
import re
import time

import pytest

from lab.netlab import (
    GATEWAY4,
    HOST_VETH_MAC,
    VXLAN_DEVICE,
    Netlab,
    NetlabError,
    calico_veth_name,
    leftovers,
)

pytestmark = pytest.mark.netlab


@pytest.mark.parametrize(
    ("namespace", "name"),
    [("default", "web-0"), ("kube-system", "calico-node-x7k2p"), ("a", "b")],
)
def test_veth_name_is_calico_sha1_rule(namespace, name):
    expected = "cali" + hashlib.sha1(f"{namespace}.{name}".encode()).hexdigest()[:11]
    assert calico_veth_name(name, namespace) == expected
    assert len(expected) == 15


def test_pod_is_wired_like_calico(netlab):
    node = netlab.add_node("node1")
    pod = netlab.add_pod(node, "web-0", "10.244.1.2", namespace="shop", mtu=1440)

    assert pod.host_veth == calico_veth_name("web-0", "shop")
    node_links = node.links()
    assert node_links[pod.host_veth]["address"] == HOST_VETH_MAC
    assert node_links[pod.host_veth]["mtu"] == 1440
    assert pod.link_mtu("eth0") == 1440
    assert "10.244.1.2/32" in pod.addresses["eth0"]
    assert node.read_sysctl(f"net/ipv4/conf/{pod.host_veth}/proxy_arp") == "1"
    assert node.read_sysctl("net/ipv4/ip_forward") == "1"
    assert node.read_sysctl("net/ipv4/conf/all/rp_filter") == "2"
    default = [r for r in pod.routes() if r["dst"] == "default"]
    assert default == [{"dst": "default", "gateway": GATEWAY4, "dev": "eth0", "flags": ["onlink"]}]
    node_route = [r for r in node.routes() if r["dst"] == "10.244.1.2"]
    assert node_route and node_route[0]["dev"] == pod.host_veth


def test_pods_on_one_node_reach_each_other(netlab):
    node = netlab.add_node("node1")
    a = netlab.add_pod(node, "a", "10.244.1.2")
    b = netlab.add_pod(node, "b", "10.244.1.3")
    reply = a.ping(b.ip)[0]
    assert reply["ok"], reply
    assert reply["src"] == b.ip
    assert b.reaches(a.ip)
    assert not a.reaches("10.244.1.99", timeout=0.5)


def test_ipv6_pods_dual_stack(netlab):
    node1, node2 = netlab.add_node("node1"), netlab.add_node("node2")
    a = netlab.add_pod(node1, "a", ["10.244.1.2", "fd00:244::12"])
    b = netlab.add_pod(node1, "b", ["10.244.1.3", "fd00:244::13"])
    c = netlab.add_pod(node2, "c", ["10.244.2.2", "fd00:244::22"])
    netlab.connect_nodes([node1, node2], kind="vxlan")
    assert "fd00:244::12/128" in a.addresses["eth0"]
    assert a.ping("fd00:244::13")[0]["src"] == "fd00:244::13"
    assert a.ping("fd00:244::22")[0]["src"] == "fd00:244::22"
    assert b.reaches(c.ip)


@pytest.mark.parametrize("kind", ["bridge", "vxlan"])
def test_pods_across_nodes(netlab, kind):
    nodes = [netlab.add_node(f"node{i}") for i in range(3)]
    before = netlab.add_pod(nodes[0], "before", "10.244.0.2")
    underlay = netlab.connect_nodes(nodes, kind=kind)
    after = netlab.add_pod(nodes[2], "after", "10.244.2.2")

    assert underlay.ips == {"node0": "192.168.200.1", "node1": "192.168.200.2", "node2": "192.168.200.3"}
    assert nodes[0].reaches(underlay.ips["node2"])
    reply = before.ping(after.ip)[0]
    assert reply["ok"] and reply["src"] == after.ip, reply
    assert after.reaches(before.ip)
    route = [r for r in nodes[0].routes() if r["dst"] == after.ip][0]
    if kind == "vxlan":
        assert route["dev"] == VXLAN_DEVICE and route["gateway"] == underlay.tunnel_ips["node2"]
        assert nodes[1].link_mtu(VXLAN_DEVICE) == 1450
    else:
        assert route["dev"] == "eth0" and route["gateway"] == underlay.ips["node2"]


def test_removed_pod_is_gone_and_unrouted(netlab):
    node1, node2 = netlab.add_node("node1"), netlab.add_node("node2")
    netlab.connect_nodes([node1, node2])
    a = netlab.add_pod(node1, "a", "10.244.1.2")
    b = netlab.add_pod(node2, "b", "10.244.2.2")
    assert a.reaches(b.ip)
    netlab.remove(b)
    assert not [r for r in node1.routes() if r["dst"] == "10.244.2.2"]
    assert not a.reaches("10.244.2.2", timeout=0.5)
    again = netlab.add_pod(node2, "b", "10.244.2.2", mtu=1400)
    assert a.reaches(again.ip)


def test_vpn_host_behind_a_node(netlab):
    node1, node2 = netlab.add_node("node1"), netlab.add_node("node2")
    netlab.connect_nodes([node1, node2], kind="vxlan")
    near = netlab.add_pod(node1, "near", "10.244.1.2")
    far = netlab.add_pod(node2, "far", "10.244.2.2")
    vpn = netlab.add_host("vpn", behind=node1, subnet="10.11.0.0/24")

    assert vpn.ip == "10.11.0.2" and vpn.gateway == "10.11.0.1"
    assert "10.11.0.1/24" in node1.addresses["h-vpn"]
    with vpn.icmp_capture() as capture:
        assert near.reaches(vpn.ip)
        assert far.reaches(vpn.ip)
        assert sorted(capture.sources(wait=2, count=2)) == ["10.244.1.2", "10.244.2.2"]
    with vpn.udp_echo(port=9999) as server:
        assert far.udp_send(vpn.ip, 9999, "hello") == vpn.ip
        assert server.lines(wait=2, count=1) == [server.lines()[0]]
        peer, _port, payload = server.lines()[0].split()
        assert (peer, payload) == ("10.244.2.2", "hello")


def test_masquerade_changes_the_source_the_vpn_host_sees(netlab):
    """What the masq_rule tests build on: iptables in a node namespace works."""
    node = netlab.add_node("node1")
    pod = netlab.add_pod(node, "a", "10.244.1.2")
    vpn = netlab.add_host("vpn", behind=node)
    node.iptables("-t", "nat", "-A", "POSTROUTING", "-s", "10.244.0.0/16", "-d", vpn.subnet, "-j", "MASQUERADE")
    with vpn.icmp_capture() as capture:
        assert pod.reaches(vpn.ip)
        assert capture.sources(wait=2, count=1) == [vpn.gateway]


@pytest.mark.parametrize("kind", ["bridge", "vxlan"])
def test_mtu_per_link_with_dont_fragment(netlab, kind):
    node1, node2 = netlab.add_node("node1"), netlab.add_node("node2")
    underlay = netlab.connect_nodes([node1, node2], kind=kind, mtu=1400)
    a = netlab.add_pod(node1, "a", "10.244.1.2", mtu=1500)
    b = netlab.add_pod(node2, "b", "10.244.2.2", mtu=1500)
    path_mtu = underlay.overlay_mtu
    assert path_mtu == (1350 if kind == "vxlan" else 1400)
    icmp_payload = path_mtu - 28
    assert a.ping(b.ip, size=icmp_payload, df=True)[0]["ok"]
    # Bigger than the path: the node answers "fragmentation needed", the pod's
    # kernel learns the path MTU and refuses the next DF packet.
    assert not a.ping(b.ip, size=icmp_payload + 1, df=True, timeout=0.5)[0]["ok"]
    assert a.ping(b.ip, size=icmp_payload + 1, df=True)[0]["error"] == "Message too long"
    # Without DF it is fragmented and passes.
    assert a.ping(b.ip, size=icmp_payload + 100, df=False)[0]["ok"]


def test_set_mtu_and_pmtu_black_hole(netlab):
    node1, node2 = netlab.add_node("node1"), netlab.add_node("node2")
    netlab.connect_nodes([node1, node2])
    a = netlab.add_pod(node1, "a", "10.244.1.2")
    b = netlab.add_pod(node2, "b", "10.244.2.2")
    node2.set_mtu(b.host_veth, 1300)
    assert node2.link_mtu(b.host_veth) == 1300
    node2.drop_frag_needed()
    assert a.ping(b.ip, size=1300 - 28, df=True)[0]["ok"]
    # node2 cannot tell a about the smaller link: every big DF packet vanishes.
    lost = a.ping(b.ip, count=2, size=1400, df=True, timeout=0.5)
    assert [reply.get("error") for reply in lost] == ["timeout", "timeout"]


def test_host_run_and_popen(netlab):
    node = netlab.add_node("node1")
    assert node.run(["cat", "/proc/sys/net/ipv4/ip_forward"]).stdout.strip() == "1"
    assert node.run(["sh", "-c", "exit 3"], check=False).returncode == 3
    with pytest.raises(NetlabError, match="exited 3"):
        node.run(["sh", "-c", "exit 3"])
    assert node.run(["cat"], input="abc").stdout == "abc"
    proc = node.popen(["sleep", "60"])
    assert proc.poll() is None
    netlab.close()
    assert proc.poll() is not None


def test_names_are_unique_per_lab_and_bad_input_fails(netlab):
    with Netlab() as other:
        assert other.prefix != netlab.prefix
        first = netlab.add_node("node1")
        second = other.add_node("node1")
        assert first.netns != second.netns
        assert re.fullmatch(rf"nm{os.getpid()}-\d+-node1", second.netns)
        assert f"netns:{second.netns}" in leftovers()
    assert f"netns:{second.netns}" not in leftovers()
    with pytest.raises(NetlabError, match="already exists"):
        netlab.add_node("node1")
    with pytest.raises(NetlabError, match="unknown underlay kind"):
        netlab.connect_nodes(["node1"], kind="ipip")
    with pytest.raises(NetlabError, match="bad lab name"):
        netlab.add_node("no/slash")


def test_teardown_after_an_exception_leaves_nothing():
    lab = Netlab()
    with pytest.raises(RuntimeError):
        with lab:
            node1, node2 = lab.add_node("node1"), lab.add_node("node2")
            lab.connect_nodes([node1, node2], kind="vxlan")
            lab.add_pod(node1, "a", "10.244.1.2")
            lab.add_host("vpn", behind=node2)
            lab.hosts["pod.default.a"].popen(["sleep", "60"])
            assert len(leftovers(lab.prefix)) == 5  # 2 nodes, switch, pod, host
            raise RuntimeError("test failed")
    assert leftovers(lab.prefix) == []


def test_three_hundred_pods_on_three_nodes():
    """Other tests create a few hundred pods: the wiring has to stay fast."""
    start = time.monotonic()
    with Netlab() as lab:
        nodes = [lab.add_node(f"node{i}") for i in range(3)]
        lab.connect_nodes(nodes, kind="vxlan")
        pods = [lab.add_pod(nodes[i % 3], f"p{i}", f"10.244.{i % 3}.{i // 3 + 2}") for i in range(300)]
        built = time.monotonic() - start
        assert pods[0].reaches(pods[-1].ip)
        assert pods[-2].reaches(pods[1].ip)
        print(f"300 pods on 3 nodes: built in {built:.2f}s")
    print(f"300 pods on 3 nodes: built and torn down in {time.monotonic() - start:.2f}s")
    assert built < 300 * 0.2
    assert leftovers(lab.prefix) == []


@pytest.mark.parametrize("kind", ["bridge", "vxlan"])
def test_nodes_reach_pods_on_other_nodes(netlab, kind):
    """pod_poke runs on the node network: a node pings pods everywhere."""
    node1, node2 = netlab.add_node("node1"), netlab.add_node("node2")
    netlab.connect_nodes([node1, node2], kind=kind)
    far = netlab.add_pod(node2, "far", ["10.244.2.2", "fd00:244::22"])
    assert node1.reaches(far.ip)
    assert node1.reaches("fd00:244::22")
    assert node1.ips == ["192.168.200.1", "fd00:c0a8:c800::1"]
    assert far.reaches(node1.ip)


def test_vpn_host_without_route_back_only_answers_masqueraded_pods(netlab):
    node = netlab.add_node("node1")
    pod = netlab.add_pod(node, "a", "10.244.1.2")
    vpn = netlab.add_host("vpn", behind=node, default_route=False)
    with vpn.icmp_capture() as capture:
        assert not pod.reaches(vpn.ip, timeout=0.5)
        assert capture.sources(wait=2, count=1) == [pod.ip]
    node.iptables("-t", "nat", "-A", "POSTROUTING", "-d", vpn.subnet, "-j", "MASQUERADE")
    assert pod.reaches(vpn.ip)
