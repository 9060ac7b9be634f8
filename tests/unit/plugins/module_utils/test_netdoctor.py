# Copyright: netmend.k8s contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""net_doctor core: the pure checks, the procfs parsers, input validation and the reader's error paths."""
from __future__ import annotations

import ipaddress
import json
import socket

import pytest

from ansible_collections.netmend.k8s.plugins.module_utils import netdoctor as nd
from ansible_collections.netmend.k8s.plugins.module_utils.netdoctor import DoctorError, Spec


def ids(findings):
    return sorted((item["id"], item["severity"]) for item in findings)


def make_sys(root, interfaces):
    """A fake /sys/class/net: {name: (mtu, up)}."""
    base = root / "class" / "net"
    for name, (value, up) in interfaces.items():
        folder = base / name
        folder.mkdir(parents=True)
        (folder / "mtu").write_text("%d\n" % value)
        (folder / "flags").write_text("0x%x\n" % (0x1003 if up else 0x1002))
    return str(root)


def make_proc(root, sysctls=None, files=None):
    for key, value in (sysctls or {}).items():
        path = root / "sys" / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("%s\n" % value)
    for name, text in (files or {}).items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return str(root)


# --- arp_gc_thresh -----------------------------------------------------------------------------

ARP = [
    # (ipv4 namespace count, table count, thresholds, expected)
    pytest.param(10, 10, (128, 512, 1024), [], id="healthy"),
    pytest.param(409, None, (128, 512, 1024), [], id="at-80-percent-is-fine"),
    pytest.param(410, None, (128, 512, 1024), [("arp_gc_thresh", "warning")], id="above-80-percent-of-thresh2"),
    pytest.param(5, 1024, (128, 512, 1024), [("arp_gc_thresh", "error")], id="kernel-table-at-thresh3"),
    pytest.param(2000, 2000, (128, 512, 1024), [("arp_gc_thresh", "error")], id="past-thresh3"),
]


@pytest.mark.parametrize("namespace, table, limits, expected", ARP)
def test_check_arp(namespace, table, limits, expected):
    found = nd.check_arp({"ipv4": {"namespace": namespace, "table": table}}, {"ipv4": limits, "ipv6": limits})
    assert ids(found) == expected


def test_arp_advice_sizes_thresholds_from_the_cluster():
    found = nd.check_arp({"ipv4": {"namespace": 900, "table": 900}}, {"ipv4": (128, 512, 1024)}, nodes=100, pods=3000)
    assert "gc_thresh1=2048, gc_thresh2=4096, gc_thresh3=8192" in found[0]["advice"]
    assert "100 nodes and 3000 pods" in found[0]["advice"]


@pytest.mark.parametrize("nodes, pods, expected", [
    (3, 30, (512, 1024, 2048)),
    (100, 719, (512, 1024, 2048)),
    (100, 720, (1024, 2048, 4096)),
    (500, 20000, (16384, 32768, 65536)),
])
def test_recommended_gc_thresh_keeps_the_count_under_80_percent(nodes, pods, expected):
    assert nd.recommended_gc_thresh(nodes, pods) == expected
    assert nodes + pods <= expected[1] * 0.8


# --- sysctl checks -------------------------------------------------------------------------------

FORWARD = [
    pytest.param({"ipv4": 1, "ipv6": 0}, {"ipv4"}, [], id="v4-only-node-v6-off-is-fine"),
    pytest.param({"ipv4": 0, "ipv6": 1}, {"ipv4"}, [("ip_forward", "error")], id="v4-off"),
    pytest.param({"ipv4": 1, "ipv6": 0}, {"ipv4", "ipv6"}, [("ip_forward", "error")], id="dual-stack-v6-off"),
    pytest.param({"ipv4": None, "ipv6": None}, {"ipv4"}, [], id="unreadable-is-not-a-finding"),
]


@pytest.mark.parametrize("forwarding, families, expected", FORWARD)
def test_check_ip_forward(forwarding, families, expected):
    assert ids(nd.check_ip_forward(forwarding, families)) == expected


def test_routed_families_from_pod_cidrs_else_ipv4():
    nodes = [Spec._node({"name": "a", "pod_cidrs": ["fd00:10::/64"]}, 0)]
    assert nd.routed_families(nodes, []) == {"ipv6"}
    assert nd.routed_families([], [{"dst": "10.0.0.0/8"}]) == {"ipv4"}
    assert nd.routed_families([], []) == set()


RP = [
    pytest.param(0, {"eth0": 1}, [("rp_filter", "warning")], id="interface-strict"),
    pytest.param(1, {"eth0": 0}, [("rp_filter", "warning")], id="all-strict-wins-over-off"),
    pytest.param(1, {"eth0": 2}, [], id="loose-interface-beats-strict-all"),
    pytest.param(2, {"eth0": 1}, [], id="loose-all-beats-strict-interface"),
    pytest.param(0, {"eth0": 0}, [], id="off"),
]


@pytest.mark.parametrize("rp_all, per_interface, expected", RP)
def test_check_rp_filter_uses_the_larger_of_all_and_the_interface(rp_all, per_interface, expected):
    assert ids(nd.check_rp_filter(rp_all, per_interface, {"eth0": "pod traffic"})) == expected


@pytest.mark.parametrize("value, expected", [
    (None, []), (0, []), (1, [("tcp_tw_recycle", "error")]),
])
def test_check_tw_recycle(value, expected):
    found = nd.check_tw_recycle(value, "4.10.0")
    assert ids(found) == expected
    if found:
        assert "NAT" in found[0]["advice"]


@pytest.mark.parametrize("count, maximum, expected", [
    (10, 1000, []), (799, 1000, []), (800, 1000, [("conntrack_full", "warning")]),
    (950, 1000, [("conntrack_full", "error")]), (None, 1000, []), (5, None, []),
])
def test_check_conntrack(count, maximum, expected):
    assert ids(nd.check_conntrack(count, maximum)) == expected


# --- MTU (calico_mtu's arithmetic) ----------------------------------------------------------------

def link(mtu, up=True):
    return {"mtu": mtu, "up": up}


MTU = [
    pytest.param({"eth0": link(1500), "vxlan.calico": link(1450), "cali1": link(1450)}, 1450, "auto",
                 [], id="healthy-vxlan"),
    pytest.param({"eth0": link(1500), "vxlan.calico": link(1450), "cali1": link(1500)}, None, "auto",
                 [("mtu_mismatch", "error")], id="veth-larger-than-path"),
    pytest.param({"eth0": link(1500), "tunl0": link(1500)}, None, "auto",
                 [("mtu_mismatch", "error")], id="ipip-tunnel-too-big"),
    pytest.param({"eth0": link(1500), "tunl0": link(1480), "cali1": link(1480)}, 1500, "auto",
                 [("mtu_mismatch", "error")], id="cni-config-too-big"),
    pytest.param({"eth0": link(1500), "tunl0": link(1480), "cali1": link(1440), "cali2": link(1480)}, 1480, "auto",
                 [("mtu_mismatch", "warning")], id="veth-started-before-cni-change"),
    pytest.param({"eth0": link(9000), "cali1": link(1500)}, None, "none", [], id="no-encapsulation-smaller-pods"),
    pytest.param({"eth0": link(1500), "cali1": link(1450)}, None, "vxlan", [], id="explicit-encapsulation"),
]


@pytest.mark.parametrize("interfaces, cni_mtu, encapsulation, expected", MTU)
def test_check_mtu(interfaces, cni_mtu, encapsulation, expected):
    spec = Spec(encapsulation=encapsulation)
    found, facts = nd.check_mtu(interfaces, spec, cni_mtu, interfaces["eth0"]["mtu"], "eth0")
    assert ids(found) == expected
    assert facts["host_mtu"] == interfaces["eth0"]["mtu"]


def test_mtu_facts_name_the_encapsulation_and_expected_pod_mtu():
    interfaces = {"eth0": link(1500), "vxlan.calico": link(1450), "cali1": link(1450), "cali2": link(1450)}
    _found, facts = nd.check_mtu(interfaces, Spec(), 1450, 1500, "eth0")
    assert facts == {"encapsulation": "vxlan", "host_mtu": 1500, "host_interface": "eth0", "overhead": 50,
                     "pod_mtu": 1450, "cni_mtu": 1450, "tunnels": {"vxlan.calico": 1450}, "veths": {"1450": 2}}


def test_mtu_without_a_host_interface_checks_nothing():
    found, facts = nd.check_mtu({"cali1": link(9000)}, Spec(), None, None, None)
    assert found == [] and facts["pod_mtu"] is None


# --- routes --------------------------------------------------------------------------------------

PEER = Spec._node({"name": "node-2", "addresses": ["192.168.1.12"], "pod_cidrs": ["10.244.2.0/24"]}, 0)
DEAD_PEER = dict(PEER, alive=False)
CONNECTED = {"dst": "192.168.1.0/24", "gateway": None, "dev": "eth0", "type": "unicast"}

ROUTES = [
    pytest.param([CONNECTED, {"dst": "10.244.2.0/24", "gateway": "192.168.1.12", "dev": "eth0", "type": "unicast"}],
                 PEER, [], id="direct-via-peer"),
    pytest.param([CONNECTED, {"dst": "10.244.2.0/26", "gateway": "192.168.1.12", "dev": "tunl0", "type": "unicast"}],
                 PEER, [], id="ipip-block-inside-cidr"),
    pytest.param([CONNECTED, {"dst": "10.244.2.0/24", "gateway": "172.30.0.2", "dev": "vxlan.calico"}],
                 PEER, [], id="vxlan-via-vtep"),
    pytest.param([CONNECTED, {"dst": "0.0.0.0/0", "gateway": "192.168.1.1", "dev": "eth0"}],
                 PEER, [("route_missing", "error")], id="only-the-default-route"),
    pytest.param([CONNECTED], DEAD_PEER, [("route_missing", "warning")], id="missing-to-dead-node"),
    pytest.param([CONNECTED, {"dst": "10.244.2.0/24", "gateway": "192.168.1.99", "dev": "eth0"}],
                 PEER, [("route_wrong", "error")], id="via-another-host"),
    pytest.param([CONNECTED, {"dst": "10.244.2.0/24", "gateway": "192.168.1.12", "dev": "eth1"}],
                 PEER, [("route_wrong", "error")], id="via-the-wrong-device"),
    pytest.param([CONNECTED, {"dst": "10.244.2.5/32", "gateway": None, "dev": "cali0123456789a"}],
                 PEER, [("route_wrong", "error")], id="into-a-local-pod-veth"),
    pytest.param([CONNECTED, {"dst": "10.244.2.0/24", "gateway": None, "dev": None, "type": "blackhole"}],
                 PEER, [("route_wrong", "error")], id="blackhole-while-alive"),
    pytest.param([CONNECTED, {"dst": "10.244.2.0/24", "gateway": None, "dev": None, "type": "blackhole"}],
                 DEAD_PEER, [], id="blackhole-for-a-dead-node"),
]


@pytest.mark.parametrize("routes, peer, expected", ROUTES)
def test_check_routes(routes, peer, expected):
    assert ids(nd.check_routes(routes, [peer])) == expected


def test_route_wrong_says_which_route_and_what_is_expected():
    routes = [CONNECTED, {"dst": "10.244.2.0/24", "gateway": "192.168.1.12", "dev": "eth1", "type": "unicast"}]
    (found,) = nd.check_routes(routes, [PEER])
    assert found["observed"] == "10.244.2.0/24 via 192.168.1.12 dev eth1"
    assert found["expected"] == "a route via 192.168.1.12 dev eth0 (the interface that holds it), not dev eth1"


# --- procfs parsers --------------------------------------------------------------------------------

PROC_ROUTE = """Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth0\t00000000\t0101A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0
eth0\t0001A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
eth0\t0002F40A\t0C01A8C0\t0003\t0\t0\t0\t00FFFFFF\t0\t0\t0
*\t0003F40A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
"""
PROC_IPV6_ROUTE = (
    "fd000010000000000000000000000000 40 00000000000000000000000000000000 00 "
    "fd00c0a8c80000000000000000000002 00000400 00000001 00000000 00000003 eth0\n"
    "fe800000000000000000000000000000 40 00000000000000000000000000000000 00 "
    "00000000000000000000000000000000 00000100 00000001 00000000 00000001 eth0\n"
    "00000000000000000000000000000000 00 00000000000000000000000000000000 00 "
    "00000000000000000000000000000000 ffffffff 00000001 00000000 00200200 lo\n")


def test_parse_proc_routes():
    routes = nd.parse_proc_routes(PROC_ROUTE, PROC_IPV6_ROUTE)
    assert routes == [
        {"dst": "0.0.0.0/0", "gateway": "192.168.1.1", "dev": "eth0", "type": "unicast"},
        {"dst": "192.168.1.0/24", "gateway": None, "dev": "eth0", "type": "unicast"},
        {"dst": "10.244.2.0/24", "gateway": "192.168.1.12", "dev": "eth0", "type": "unicast"},
        {"dst": "10.244.3.0/24", "gateway": None, "dev": None, "type": "blackhole"},
        {"dst": "fd00:10::/64", "gateway": "fd00:c0a8:c800::2", "dev": "eth0", "type": "unicast"},
        {"dst": "fe80::/64", "gateway": None, "dev": "eth0", "type": "unicast"},
        {"dst": "::/0", "gateway": None, "dev": None, "type": "blackhole"},
    ]


@pytest.mark.parametrize("text, expected", [
    ("entries  allocs\n0000002a 00000001\n0000002a 00000000\n", 42),
    ("", None), (None, None), ("garbage\n", None),
])
def test_parse_neigh_stat(text, expected):
    assert nd.parse_neigh_stat(text) == expected


def test_count_rules():
    dump = "*nat\n:POSTROUTING ACCEPT [0:0]\n-A POSTROUTING -j MASQUERADE\nCOMMIT\n*filter\n-A INPUT -j ACCEPT\nCOMMIT\n"
    assert nd.count_rules(dump) == 2
    assert nd.count_rules("") == 0


@pytest.mark.parametrize("counts, expected", [
    ({"legacy": {"ipv4": 0, "ipv6": 0}, "nft": {"ipv4": 80, "ipv6": 4}}, []),
    ({"legacy": {"ipv4": 3, "ipv6": None}, "nft": {"ipv4": 80, "ipv6": None}}, [("iptables_backend_mixed", "error")]),
    ({"legacy": {"ipv4": None, "ipv6": None}, "nft": {"ipv4": None, "ipv6": None}}, []),
])
def test_check_iptables_backends(counts, expected):
    assert ids(nd.check_iptables_backends(counts)) == expected


@pytest.mark.parametrize("interfaces, expected_tunnels, expected", [
    ({"tunl0": link(1480)}, ["tunl0"], []),
    ({}, ["vxlan.calico"], [("tunnel_down", "error")]),
    ({"flannel.1": link(1450, up=False)}, [], [("tunnel_down", "error")]),
    ({"eth0": link(1500, up=False)}, [], []),
])
def test_check_tunnels(interfaces, expected_tunnels, expected):
    assert ids(nd.check_tunnels(interfaces, expected_tunnels)) == expected


def test_check_bgp():
    found = nd.check_bgp({"10.0.0.1": "open", "10.0.0.2": "timeout", "10.0.0.3": "refused"}, timeout=0.5)
    assert [(item["subject"], item["observed"]) for item in found] == [
        ("10.0.0.2:179", "TCP 179: no answer within 0.5s"), ("10.0.0.3:179", "TCP 179: refused")]


def test_probe_tcp_on_loopback_open_and_refused():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        results = nd.probe_tcp([ipaddress.ip_address("127.0.0.1")], port, 1.0)
    assert results == {"127.0.0.1": "open"}
    assert nd.probe_tcp([ipaddress.ip_address("127.0.0.1")], port, 1.0) == {"127.0.0.1": "refused"}


# --- bad input ------------------------------------------------------------------------------------

BAD = [
    pytest.param({"nodes": [{"name": "n2", "pod_cidrs": ["10.244.2.1/24"]}]}, "'10.244.2.1/24'", id="host-bits"),
    pytest.param({"nodes": [{"name": "n2", "pod_cidrs": ["10.244.300.0/24"]}]}, "'10.244.300.0/24'", id="bad-octet"),
    pytest.param({"nodes": [{"name": "n2", "addresses": ["node-2.example"]}]}, "'node-2.example'", id="name-as-address"),
    pytest.param({"nodes": ["n2"]}, "nodes[0]", id="node-not-a-dict"),
    pytest.param({"bgp_peers": ["10.0.0.300"]}, "'10.0.0.300'", id="bad-peer"),
    pytest.param({"bgp_port": 0}, "0", id="port-zero"),
    pytest.param({"bgp_timeout": 0}, "0", id="timeout-zero"),
    pytest.param({"encapsulation": "gre"}, "'gre'", id="encapsulation"),
    pytest.param({"ip_family": "ipv5"}, "'ipv5'", id="family"),
    pytest.param({"gc_thresh": [1, 2]}, "[1, 2]", id="gc-thresh-two-values"),
    pytest.param({"gc_thresh": [512, 128, 1024]}, "[512, 128, 1024]", id="gc-thresh-decreasing"),
    pytest.param({"gc_thresh": [0, 128, 1024]}, "0", id="gc-thresh-zero"),
    pytest.param({"conntrack_max": -1}, "-1", id="conntrack-negative"),
    pytest.param({"checks": ["arp", "routes"]}, "'arp'", id="unknown-check"),
    pytest.param({"expected_tunnels": ["a/b"]}, "'a/b'", id="tunnel-name"),
    pytest.param({"pod_count": -3}, "-3", id="pod-count"),
]


@pytest.mark.parametrize("kwargs, named", BAD)
def test_bad_input_names_the_value(kwargs, named):
    with pytest.raises(DoctorError) as caught:
        Spec(**kwargs)
    assert named in str(caught.value)


# --- the reader and diagnose, on fixture trees ------------------------------------------------------

class FakeRun:
    """Answers ``ip -j`` and ``*-save`` from a table; records every command."""

    def __init__(self, answers):
        self.answers = answers
        self.calls = []

    def __call__(self, argv):
        self.calls.append(argv)
        return self.answers[tuple(argv)]


IP_ROUTES4 = [{"dst": "default", "gateway": "192.168.1.1", "dev": "eth0"},
              {"dst": "192.168.1.0/24", "dev": "eth0", "prefsrc": "192.168.1.11"},
              {"dst": "10.244.2.0/24", "gateway": "192.168.1.12", "dev": "eth0"},
              {"type": "blackhole", "dst": "10.244.3.0/24"}]


def node_reader(tmp_path, sysctls=None, ip_answers=None, which=("ip", "iptables-nft-save", "ip6tables-nft-save")):
    proc = make_proc(tmp_path / "proc", dict({
        "net/ipv4/ip_forward": 1, "net/ipv6/conf/all/forwarding": 0, "net/ipv4/conf/all/rp_filter": 0,
        "net/ipv4/conf/eth0/rp_filter": 2, "net/netfilter/nf_conntrack_count": 10,
        "net/netfilter/nf_conntrack_max": 1000, "kernel/osrelease": "6.1.0",
        "net/ipv4/neigh/default/gc_thresh1": 128, "net/ipv4/neigh/default/gc_thresh2": 512,
        "net/ipv4/neigh/default/gc_thresh3": 1024, "net/ipv6/neigh/default/gc_thresh1": 128,
        "net/ipv6/neigh/default/gc_thresh2": 512, "net/ipv6/neigh/default/gc_thresh3": 1024,
    }, **(sysctls or {})), {"net/stat/arp_cache": "entries\n00000003\n", "net/stat/ndisc_cache": "entries\n00000001\n"})
    sys_root = make_sys(tmp_path / "sys", {"eth0": (1500, True), "tunl0": (1480, True), "cali1": (1480, True)})
    answers = {
        ("ip", "-j", "-4", "route", "show", "table", "main"): (0, json.dumps(IP_ROUTES4), ""),
        ("ip", "-j", "-6", "route", "show", "table", "main"): (0, "[]", ""),
        ("ip", "-j", "-4", "neigh", "show"): (0, json.dumps([{"dst": "192.168.1.12"}] * 3), ""),
        ("ip", "-j", "-6", "neigh", "show"): (0, "[]", ""),
        ("iptables-nft-save",): (0, "*filter\n-A INPUT -j ACCEPT\nCOMMIT\n", ""),
        ("ip6tables-nft-save",): (0, "", ""),
    }
    answers.update(ip_answers or {})
    run = FakeRun(answers)
    return nd.NodeReader(proc=proc, sys=sys_root, run=run, which=lambda name: name in which), run


NODES = [{"name": "node-1", "addresses": ["192.168.1.11"], "pod_cidrs": ["10.244.1.0/24"]},
         {"name": "node-2", "addresses": ["192.168.1.12"], "pod_cidrs": ["10.244.2.0/24"]},
         {"name": "node-3", "addresses": ["192.168.1.13"], "pod_cidrs": ["10.244.3.0/24"], "alive": False}]


def test_diagnose_healthy_fixture_node_finds_nothing(tmp_path):
    reader, run = node_reader(tmp_path)
    spec = Spec(node_name="node-1", nodes=NODES, cni_config="", checks=[c for c in nd.NODE_CHECKS if c != "bgp_unreachable"])
    result = nd.diagnose(spec, reader)
    assert result["findings"] == []
    facts = result["facts"]
    assert facts["peers"] == ["node-2", "node-3"]
    assert facts["neighbours"]["ipv4"] == {"namespace": 3, "table": 3}
    assert facts["mtu"]["encapsulation"] == "ipip" and facts["mtu"]["pod_mtu"] == 1480
    assert facts["iptables_rules"] == {"legacy": {"ipv4": None, "ipv6": None}, "nft": {"ipv4": 1, "ipv6": 0}}
    assert facts["rp_filter"] == {"all": 0, "eth0": 2, "tunl0": None}
    # read-only: only listing commands ran
    assert all(argv[0] in ("ip", "iptables-nft-save", "ip6tables-nft-save") for argv in run.calls)
    assert all("show" in argv for argv in run.calls if argv[0] == "ip")


def test_diagnose_finds_each_staged_fault_on_fixture_node(tmp_path):
    reader, _run = node_reader(tmp_path, sysctls={
        "net/ipv4/ip_forward": 0, "net/ipv4/conf/all/rp_filter": 1, "net/ipv4/conf/tunl0/rp_filter": 0,
        "net/ipv4/tcp_tw_recycle": 1, "net/netfilter/nf_conntrack_count": 990},
        ip_answers={("ip", "-j", "-4", "route", "show", "table", "main"): (0, json.dumps(IP_ROUTES4[:2]), "")},
        which=("ip", "iptables-nft-save", "ip6tables-nft-save", "iptables-legacy-save", "ip6tables-legacy-save"))
    reader.run.answers[("iptables-legacy-save",)] = (0, "*nat\n-A POSTROUTING -j MASQUERADE\nCOMMIT\n", "")
    reader.run.answers[("ip6tables-legacy-save",)] = (0, "", "")
    spec = Spec(node_name="node-1", nodes=NODES, gc_thresh=[1, 2, 3], expected_tunnels=["vxlan.calico"],
                cni_config="", checks=[c for c in nd.NODE_CHECKS if c != "bgp_unreachable"])
    found = {item["id"] for item in nd.diagnose(spec, reader)["findings"]}
    assert found == {"arp_gc_thresh", "ip_forward", "rp_filter", "tcp_tw_recycle", "conntrack_full", "route_missing",
                     "iptables_backend_mixed", "tunnel_down"}


def test_reader_falls_back_to_procfs_without_ip(tmp_path):
    reader, run = node_reader(tmp_path, which=())
    (tmp_path / "proc" / "net" / "route").write_text(PROC_ROUTE)
    (tmp_path / "proc" / "net" / "arp").write_text("IP address HW type Flags HW address Mask Device\n"
                                                   "192.168.1.12 0x1 0x2 aa:bb:cc:dd:ee:ff * eth0\n")
    assert reader.routes()[2] == {"dst": "10.244.2.0/24", "gateway": "192.168.1.12", "dev": "eth0", "type": "unicast"}
    assert reader.neighbours() == {"ipv4": {"namespace": 1, "table": 3}, "ipv6": {"namespace": None, "table": 1}}
    assert reader.iptables_rules() == {"legacy": {"ipv4": None, "ipv6": None}, "nft": {"ipv4": None, "ipv6": None}}
    assert run.calls == []


@pytest.mark.parametrize("answer, message", [
    ((1, "", "Error: invalid argument"), "ip -j -4 route show table main exited 1: Error: invalid argument"),
    ((0, "not json", ""), "printed something that is not JSON"),
])
def test_reader_errors_name_the_command(tmp_path, answer, message):
    reader, _run = node_reader(tmp_path, ip_answers={("ip", "-j", "-4", "route", "show", "table", "main"): answer})
    with pytest.raises(DoctorError, match=message):
        reader.routes()


def test_reader_error_for_a_sysctl_that_is_not_a_number(tmp_path):
    reader, _run = node_reader(tmp_path, sysctls={"net/ipv4/ip_forward": "yes"})
    with pytest.raises(DoctorError, match=r"net\.ipv4\.ip_forward holds 'yes'"):
        reader.sysctl("net/ipv4/ip_forward")


def test_malformed_cni_config_fails_naming_the_file(tmp_path):
    reader, _run = node_reader(tmp_path)
    config = tmp_path / "10-calico.conflist"
    config.write_text("{not json")
    with pytest.raises(DoctorError, match=str(config)):
        nd.diagnose(Spec(cni_config=str(config), checks=["mtu_mismatch"]), reader)


def test_cni_config_mtu_is_read_with_calico_mtus_parser(tmp_path):
    reader, _run = node_reader(tmp_path)
    config = tmp_path / "10-calico.conflist"
    config.write_text(json.dumps({"name": "k8s-pod-network", "plugins": [{"type": "calico", "mtu": 1500}]}))
    # the fixture's veth has 1480 (= host 1500 - IPIP 20): right for the path, so only the config is wrong
    result = nd.diagnose(Spec(cni_config=str(config), checks=["mtu_mismatch"]), reader)
    assert result["facts"]["mtu"]["cni_mtu"] == 1500
    assert [(item["id"], item["subject"]) for item in result["findings"]] == [
        ("mtu_mismatch", "CNI config %s" % config)]


def test_nodes_holding_a_local_address_are_this_node():
    spec = Spec(nodes=[{"name": "me", "addresses": ["127.0.0.1"]}, {"name": "other", "addresses": ["192.0.2.1"]}])
    assert [node["name"] for node in nd.split_nodes(spec, nd.NodeReader.is_local)] == ["other"]


def test_unreadable_iptables_is_skipped_not_fatal(tmp_path):
    reader, _run = node_reader(tmp_path)
    reader.run.answers[("iptables-nft-save",)] = (4, "", "iptables-nft-save v1.8.9 (nf_tables): Permission denied")
    result = nd.diagnose(Spec(checks=["iptables_backend_mixed"]), reader)
    assert result["findings"] == []
    assert "Permission denied" in result["skipped"]["iptables_backend_mixed"]
