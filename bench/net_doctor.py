# Copyright: netmend.k8s contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark net_doctor against the seed talk's checklist, in one run, on the network lab. Run as root:

    .venv/bin/python bench/net_doctor.py [--repeat 5] [--peers 10] [--neighbours 10000]

A node namespace with ``--peers`` other nodes on a bridge underlay (routes to their
pod CIDRs, a CNI config), three cases per node:

1. every peer's BGP port answers (a listener on 179 in each peer namespace);
2. every peer drops TCP 179 (unreachable: each probe can only end by timeout, 1 s);
3. as 1, with ``--neighbours`` permanent neighbour entries in the node.

For each case, side by side: the run-once agent (``python3 -m ...agent net_doctor``,
interpreter start included, and the core's own ``duration_s``) against the seed
talk's manual checks run one by one in the same namespace: ``ip neigh``, the
``gc_thresh`` and forwarding/rp_filter/tcp_tw_recycle sysctls, the conntrack counters,
``ip link``, the CNI config, ``ip route``, both ``iptables-*-save`` and one
``bash </dev/tcp/<peer>/179`` with a 1 s ``timeout`` per peer (the talk's "is BGP
flowing" step). Medians of ``--repeat`` runs.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLLECTIONS = os.path.join(REPO, ".build", "collections")
sys.path[:0] = [COLLECTIONS, REPO]

from lab import netlab  # noqa: E402  (needs the paths above)

AGENT = "ansible_collections.netmend.k8s.plugins.module_utils.agent"
MARKER = "NETMEND_NET_DOCTOR_RESULT "
LISTENER = ("import socket\ns = socket.socket()\ns.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
            "s.bind(('0.0.0.0', 179))\ns.listen(64)\nprint('ready', flush=True)\n"
            "while True:\n    c, _ = s.accept()\n    c.close()\n")


def build(lab, peers, config_path):
    nodes = [lab.add_node("node%d" % index) for index in range(peers + 1)]
    underlay = lab.connect_nodes(nodes)
    for index, node in enumerate(nodes):
        lab.add_pod(node, "web-%d" % index, "10.244.%d.2" % index)
    spec = {"nodes": [{"name": node.name, "addresses": [underlay.ips[node.name]], "pod_cidrs": ["10.244.%d.0/24" % i]}
                      for i, node in enumerate(nodes)],
            "bgp_peers": [underlay.ips[node.name] for node in nodes[1:]], "bgp_timeout": 1.0,
            "cni_config": config_path,
            # kernel-wide, readable only in the initial namespace: the node's own values, read here
            "gc_thresh": [int(open("/proc/sys/net/ipv4/neigh/default/gc_thresh%d" % level, encoding="ascii").read())
                          for level in (1, 2, 3)]}
    listeners = [netlab.Listener(node, [sys.executable, "-u", "-c", LISTENER]) for node in nodes[1:]]
    return nodes, spec, listeners


def run_doctor(node, spec):
    env = dict(os.environ, PYTHONPATH=COLLECTIONS)
    started = time.monotonic()
    proc = node.run([sys.executable, "-m", AGENT, "net_doctor", "--node-name", "node0", "--spec", json.dumps(spec)],
                    env=env, timeout=120)
    wall = time.monotonic() - started
    line = next(line for line in proc.stdout.splitlines() if line.startswith(MARKER))
    result = json.loads(line[len(MARKER):])
    return wall, result


def manual_commands(node, peers, config_path):
    """The seed's checklist as an operator types it: one command after another."""
    interfaces = sorted(node.links())
    commands = [["ip", "neigh"], ["ip", "-6", "neigh"]]
    commands += [["sysctl", "net.ipv4.neigh.default.gc_thresh%d" % level] for level in (1, 2, 3)]
    commands += [["sysctl", "net.ipv4.ip_forward"], ["sysctl", "net.ipv6.conf.all.forwarding"],
                 ["sysctl", "net.ipv4.conf.all.rp_filter"]]
    commands += [["sysctl", "net.ipv4.conf.%s.rp_filter" % name.replace(".", "/")] for name in interfaces]
    commands += [["sysctl", "-e", "net.ipv4.tcp_tw_recycle"],
                 ["cat", "/proc/sys/net/netfilter/nf_conntrack_count", "/proc/sys/net/netfilter/nf_conntrack_max"],
                 ["ip", "link"], ["cat", config_path], ["ip", "route"], ["ip", "-6", "route"],
                 ["iptables-legacy-save"], ["iptables-nft-save"]]
    commands += [["timeout", "1", "bash", "-c", "</dev/tcp/%s/179" % peer] for peer in peers]
    return commands


def run_manual(node, commands):
    started = time.monotonic()
    for argv in commands:
        node.run(argv, check=False)
    return time.monotonic() - started


def add_neighbours(node, count):
    lines = ["neigh replace 10.%d.%d.%d lladdr 02:00:%02x:%02x:%02x:01 dev eth0 nud permanent"
             % (100 + i // 65536, (i // 256) % 256, i % 256, (i >> 16) & 255, (i >> 8) & 255, i & 255)
             for i in range(count)]
    for start in range(0, len(lines), 2000):
        node.batch(lines[start:start + 2000])


def measure(node, spec, commands, repeat):
    doctor, core, manual, findings = [], [], [], None
    for _run in range(repeat):
        wall, result = run_doctor(node, spec)
        doctor.append(wall)
        core.append(result["facts"]["duration_s"])
        findings = sorted({item["id"] for item in result["findings"]})
        manual.append(run_manual(node, commands))
    return statistics.median(doctor), statistics.median(core), statistics.median(manual), findings


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--peers", type=int, default=10)
    parser.add_argument("--neighbours", type=int, default=10000)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as folder, netlab.Netlab() as lab:
        config = os.path.join(folder, "10-calico.conflist")
        with open(config, "w", encoding="utf-8") as handle:
            json.dump({"name": "k8s-pod-network", "plugins": [{"type": "calico", "mtu": 1500}]}, handle)
        nodes, spec, listeners = build(lab, args.peers, config)
        node = nodes[0]
        commands = manual_commands(node, spec["bgp_peers"], config)
        rows.append(("0 unreachable peers",) + measure(node, spec, commands, args.repeat))
        for listener in listeners:
            listener.stop()
        for peer in nodes[1:]:
            peer.run(["iptables-nft", "-w", "-A", "INPUT", "-p", "tcp", "--dport", "179", "-j", "DROP"])
        rows.append(("%d unreachable peers" % args.peers,) + measure(node, spec, commands, args.repeat))
        for peer in nodes[1:]:
            peer.run(["iptables-nft", "-w", "-D", "INPUT", "-p", "tcp", "--dport", "179", "-j", "DROP"])
        listeners = [netlab.Listener(peer, [sys.executable, "-u", "-c", LISTENER]) for peer in nodes[1:]]
        add_neighbours(node, args.neighbours)
        rows.append(("%d neighbour entries" % args.neighbours,) + measure(node, spec, commands, args.repeat))
        node.ip_cmd("neigh", "flush", "dev", "eth0", "nud", "permanent")
    print("net_doctor per node vs the seed's manual checks one by one (%d commands), medians of %d runs, same run"
          % (len(commands), args.repeat))
    print("%-24s %12s %12s %14s %8s  %s" % ("case", "agent wall", "core", "manual", "ratio", "findings"))
    for name, doctor, core, manual, findings in rows:
        cells = (name, doctor, core, manual, manual / doctor, ", ".join(findings) or "none")
        print("%-24s %11.3fs %11.3fs %13.3fs %7.1fx  %s" % cells)
    print("agent wall = python3 start + imports + every check + printing; core = diagnose() alone (facts.duration_s)")


if __name__ == "__main__":
    main()
