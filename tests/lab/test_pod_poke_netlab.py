# Copyright: netmend.k8s contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""pod_poke against real packets: pods are network namespaces wired like Calico.

Every address probed here belongs to a namespace the test's netlab created (or
is routed only inside those namespaces). The sweep runs inside a "poker" pod,
as the agent would, through the core module in a child process.

The echo requests carry checksums we compute; the target kernels check them and
silently drop bad ones, so every reply is also an independent check of
``poke.checksum``.
"""
from __future__ import annotations

import ipaddress
import json
import os
import sys
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COLLECTIONS = os.path.join(REPO, ".build", "collections")

pytestmark = pytest.mark.netlab

SWEEP = (
    "import json, sys\n"
    "from ansible_collections.netmend.k8s.plugins.module_utils import poke\n"
    "args = json.loads(sys.argv[1])\n"
    "try:\n"
    "    print(json.dumps(poke.sweep(**args)))\n"
    "except poke.PokeError as exc:\n"
    "    print(json.dumps({'error': str(exc)}))\n"
)


def python_for(host, prefix):
    """A Python that ``prefix`` (an unprivileged user) can start: this one, else the system's.
    A Python under /root (mode 0700, as pyenv's) whose libpython the system lacks cannot be
    loaded by uid 65534; the core it runs is standard-library Python for 3.9 and later."""
    tried = {}
    for candidate in (sys.executable, "/usr/bin/python3"):
        proc = host.run([*prefix, candidate, "-c", "pass"], check=False, timeout=30)
        if proc.returncode == 0:
            return candidate
        tried[candidate] = proc.stderr.strip()[-300:]
    pytest.fail("no Python the unprivileged user can start: %s" % tried)


def sweep_from(host, prefix=(), **args):
    """Run poke.sweep inside ``host``'s namespace (optionally under ``prefix``, e.g. setpriv)."""
    env = dict(os.environ, PYTHONPATH=COLLECTIONS)
    python = python_for(host, prefix) if prefix else sys.executable
    started = time.monotonic()
    proc = host.run([*prefix, python, "-c", SWEEP, json.dumps(args)], env=env, timeout=120)
    result = json.loads(proc.stdout)
    result["wall_s"] = time.monotonic() - started
    return result


def share_neighbour(pod):
    """Route the pod's extra IPv4 addresses via its first one.

    The kernel's ARP table is one for all namespaces (gc_thresh3 1024 by default):
    a neighbour entry per address would crowd everyone else's out. One per pod is
    what a real node has anyway.
    """
    first = pod.ips[0]
    pod.node.batch(["route replace %s/32 via %s dev %s" % (ip, first, pod.host_veth)
                    for ip in pod.ips[1:] if ":" not in ip])
    return pod


def ips(entries):
    return {entry["ip"] for entry in entries}


def test_hundreds_of_pods_classified_within_deadline(netlab):
    """3 nodes × 4 pods × 25 IPv4 addresses + one IPv6 each, a firewalled pod and refused addresses."""
    nodes = [netlab.add_node("node%d" % index) for index in range(3)]
    underlay = netlab.connect_nodes(nodes)
    poker = netlab.add_pod("node0", "poker", ["10.244.0.250", "fd00:244::250"])
    pods = []
    for n_index in range(3):
        for p_index in range(4):
            base = ipaddress.ip_address("10.244.%d.%d" % (n_index, p_index * 25))
            addresses = [str(base + offset) for offset in range(25)]
            addresses.append("fd00:244::%d:%d" % (n_index, p_index))
            pods.append(share_neighbour(netlab.add_pod("node%d" % n_index, "pod-%d-%d" % (n_index, p_index), addresses)))
    firewalled = pods[6]  # on node1: answers nothing
    firewalled.iptables("-A", "INPUT", "-p", "icmp", "-j", "DROP")
    firewalled.iptables("-A", "INPUT", "-p", "ipv6-icmp", "--icmpv6-type", "echo-request", "-j", "DROP", family="6")
    # Addresses node0 refuses to forward, answering "host unreachable" itself. (Not plain
    # missing routes: the kernel's route-error limiter, net.ipv4.route.error_burst, is
    # host-wide and lets only about 5 through at once.) The per-namespace ICMP limits
    # are lifted so each refused address gets its own error.
    nodes[0].sysctl({"net/ipv4/icmp_ratelimit": 0, "net/ipv4/icmp_msgs_burst": 10000,
                     "net/ipv4/icmp_msgs_per_sec": 100000})
    nodes[0].ip_cmd("route", "add", "10.244.9.0/24", "via", underlay.ips["node1"])
    nodes[0].iptables("-A", "FORWARD", "-d", "10.244.9.0/24", "-j", "REJECT", "--reject-with", "icmp-host-unreachable")
    refused = ["10.244.9.%d" % index for index in range(10)]
    all_pod_ips = [ip for pod in pods for ip in pod.ips]
    targets = [{"ip": ip, "name": "p"} for ip in all_pod_ips] + refused
    assert len(targets) == 322

    result = sweep_from(poker, targets=targets, timeout=1.0)

    assert result["total"] == 322
    expected_down = set(firewalled.ips) | set(refused)
    assert ips(result["unreachable"]) == expected_down
    assert ips(result["reachable"]) == set(all_pod_ips) - set(firewalled.ips)
    reasons = {entry["ip"]: entry["reason"] for entry in result["unreachable"]}
    assert {reasons[ip] for ip in firewalled.ips} == {"timeout"}
    assert {reasons[ip] for ip in refused} == {"host unreachable"}
    assert all(entry["rtt_ms"] > 0 and entry["name"] == "p" for entry in result["reachable"])
    # Silent targets keep the sweep open until its deadline, and not a moment longer.
    assert 1.0 <= result["duration_s"] <= 1.25, result["duration_s"]


def test_all_answering_ends_before_the_deadline(netlab):
    node = netlab.add_node("node0")
    poker = netlab.add_pod(node, "poker", "10.244.0.250")
    pod = share_neighbour(netlab.add_pod(node, "web", ["10.244.0.%d" % index for index in range(1, 101)]))
    result = sweep_from(poker, targets=pod.ips, timeout=5.0, count=3)
    assert len(result["reachable"]) == 100 and result["unreachable"] == []
    assert all(entry["received"] == 3 for entry in result["reachable"])
    assert result["duration_s"] < 1.0


def mtu_topology(netlab):
    """Poker pod on node0; node0's underlay link is 1400 while pods use 1500."""
    nodes = [netlab.add_node("node0"), netlab.add_node("node1")]
    underlay = netlab.connect_nodes(nodes)
    poker = netlab.add_pod("node0", "poker", "10.244.0.250")
    local = netlab.add_pod("node0", "local", ["10.244.0.1", "10.244.0.2"])
    remote = netlab.add_pod("node1", "remote", ["10.244.1.1", "10.244.1.2"])
    nodes[0].set_mtu(underlay.ifname["node0"], 1400)
    return nodes, poker, local, remote


def test_mtu_black_hole_found_by_df_probe_not_by_small_pings(netlab):
    nodes, poker, local, remote = mtu_topology(netlab)
    nodes[0].drop_frag_needed()
    targets = local.ips + remote.ips

    small = sweep_from(poker, targets=targets, timeout=1.0)
    assert ips(small["reachable"]) == set(targets) and small["unreachable"] == []
    assert small["mtu_blackholed"] == []

    probed = sweep_from(poker, targets=targets, timeout=1.0, mtu_probe=1500)
    assert ips(probed["mtu_blackholed"]) == set(remote.ips)
    assert ips(probed["reachable"]) == set(targets)
    states = {entry["ip"]: entry["mtu_probe"] for entry in probed["reachable"]}
    assert {states[ip] for ip in local.ips} == {"passed"}
    assert {states[ip] for ip in remote.ips} == {"blackholed"}
    # A probe that fits the narrow link passes everywhere.
    fitting = sweep_from(poker, targets=targets, timeout=1.0, mtu_probe=1400)
    assert fitting["mtu_blackholed"] == [] and {e["mtu_probe"] for e in fitting["reachable"]} == {"passed"}


def test_frag_needed_is_a_limit_not_a_black_hole(netlab):
    _nodes, poker, _local, remote = mtu_topology(netlab)
    result = sweep_from(poker, targets=remote.ips, timeout=1.0, mtu_probe=1500)
    assert result["mtu_blackholed"] == []
    assert ips(result["mtu_limited"]) == set(remote.ips)
    assert {entry["path_mtu"] for entry in result["mtu_limited"]} == {1400}


def test_unprivileged_ping_socket_fallback_and_clear_error(netlab):
    node = netlab.add_node("node0")
    poker = netlab.add_pod(node, "poker", ["10.244.0.250", "fd00:244::250"])
    pod = netlab.add_pod(node, "web", ["10.244.0.1", "fd00:244::1"])
    nobody = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", "--inh-caps=-all",
              "--bounding-set=-all"]

    poker.run(["sh", "-c", "echo '1 0' > /proc/sys/net/ipv4/ping_group_range"])
    refused = sweep_from(poker, prefix=nobody, targets=pod.ips, timeout=0.5)
    assert "CAP_NET_RAW" in refused["error"] and "ping_group_range (1 0)" in refused["error"]

    poker.run(["sh", "-c", "echo '65534 65534' > /proc/sys/net/ipv4/ping_group_range"])
    allowed = sweep_from(poker, prefix=nobody, targets=pod.ips + ["10.244.0.9"], timeout=0.5, mtu_probe=1500)
    assert ips(allowed["reachable"]) == set(pod.ips)
    assert ips(allowed["unreachable"]) == {"10.244.0.9"}
    assert {entry["mtu_probe"] for entry in allowed["reachable"]} == {"passed"}
