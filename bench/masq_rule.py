# Copyright: netmend.k8s contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark of the masq_rule agent's check and repair on a lab node (root; no cluster needed).

    .venv/bin/python bench/masq_rule.py [--sizes 1000,10000,50000] [--repeat 15] [--repairs 5] [--interval 1]

Everything runs inside one lab network namespace (lab/netlab.py); the host's own
iptables is never touched.

1. Per-check cost as the nat table grows: the node's nat table is filled with
   kube-proxy-like rules (per service: one KUBE-SERVICES match, one KUBE-SVC jump, a
   KUBE-SEP mark and DNAT; 4 rules each) up to each size. In the same run, for each
   size, the agent's check (read our chain and POSTROUTING with ``iptables -S``,
   compare) and the seed's check (``iptables-save | grep MASQUERADE | grep -q NAT-VPN``)
   are each timed ``--repeat`` times, from inside the namespace; medians and ratios printed.
2. Repair time: the agent runs with ``--interval`` seconds; our rule is deleted
   ``--repairs`` times at random moments and the seconds until it is back are measured.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(REPO, ".build", "collections"), REPO]

from ansible_collections.netmend.k8s.plugins.module_utils import masq  # noqa: E402
from lab.netlab import Netlab  # noqa: E402

AGENT = "ansible_collections.netmend.k8s.plugins.module_utils.agent"
VPN = "10.11.0.0/24"
SEED_CHECK = "iptables-save | grep MASQUERADE | grep -q NAT-VPN"


def kube_proxy_payload(first_service, services):
    """iptables-restore input adding ``services`` kube-proxy-like services (4 rules each)."""
    lines = ["*nat"]
    if first_service == 0:
        lines += [":KUBE-SERVICES - [0:0]", ":KUBE-MARK-MASQ - [0:0]",
                  "-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES",
                  "-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000"]
    for index in range(first_service, first_service + services):
        svc, sep = "KUBE-SVC-%016X" % index, "KUBE-SEP-%016X" % index
        cluster_ip = "10.96.%d.%d" % (index // 250 % 250, index % 250 + 1)
        endpoint = "10.4.%d.%d" % (index // 250 % 250, index % 250 + 1)
        name = "bench/svc-%d:http" % index
        lines += [":%s - [0:0]" % svc, ":%s - [0:0]" % sep,
                  "-A KUBE-SERVICES -d %s/32 -p tcp -m comment --comment \"%s cluster IP\" -m tcp --dport 80 -j %s"
                  % (cluster_ip, name, svc),
                  "-A %s -m comment --comment \"%s -> %s:80\" -j %s" % (svc, name, endpoint, sep),
                  "-A %s -s %s/32 -m comment --comment \"%s\" -j KUBE-MARK-MASQ" % (sep, endpoint, name),
                  "-A %s -p tcp -m comment --comment \"%s\" -m tcp -j DNAT --to-destination %s:80"
                  % (sep, name, endpoint)]
    return "\n".join(lines + ["COMMIT", ""])


def timed(function, repeat):
    samples = []
    for _sample in range(repeat):
        started = time.perf_counter()
        function()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def inner_check_costs(sizes, repeat, lock_file):
    """Runs inside the node namespace: fill the table step by step, time both checks at each size."""
    run = masq.Runner()
    spec = masq.Spec(cidrs=[VPN])
    masq.reconcile(spec, run, backend="nft", lock_file=lock_file, families=["ipv4"])
    # The seed's rule, so its grep finds what it looks for (the cost is in iptables-save anyway).
    subprocess.run(["iptables", "-w", "-t", "nat", "-A", "POSTROUTING", "-d", VPN, "-m", "comment", "--comment",
                    "NAT-VPN: SNAT for outbound traffic through VPN", "-m", "addrtype", "!", "--dst-type", "LOCAL",
                    "-j", "MASQUERADE"], check=True)
    results, services = [], 0
    for size in sizes:
        wanted = size // 4
        subprocess.run(["iptables-restore", "--noflush", "-w", "30"], input=kube_proxy_payload(services, wanted - services),
                       text=True, check=True)
        services = wanted
        total = sum(1 for line in subprocess.run(["iptables-save", "-t", "nat"], capture_output=True, text=True,
                                                 check=True).stdout.splitlines() if line.startswith("-A "))

        def ours():
            result = masq.reconcile(spec, run, backend="nft", lock_file=lock_file, families=["ipv4"])[0]
            assert result["changed"] is False, result["drift"]

        def seed():
            assert subprocess.run(["sh", "-c", SEED_CHECK], check=False).returncode == 0

        ours()
        seed()  # warm both once
        results.append({"size": size, "nat_rules": total, "ours_s": timed(ours, repeat), "seed_s": timed(seed, repeat)})
    return results


def repair_times(node, repairs, interval, lock_file):
    env = dict(os.environ, PYTHONPATH=os.path.join(REPO, ".build", "collections"))
    agent = node.popen([sys.executable, "-u", "-m", AGENT, "masq_rule", "--cidr", VPN, "--backend", "nft",
                        "--interval", str(interval), "--lock-file", lock_file],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        def rule_present():
            listing = node.run(["iptables", "-w", "-t", "nat", "-S", masq.DEFAULT_CHAIN], check=False).stdout
            return "-d %s" % VPN in listing

        deadline = time.monotonic() + 30
        while not rule_present():
            assert time.monotonic() < deadline, "the agent never wrote its chain"
            time.sleep(0.05)
        samples = []
        for _repair in range(repairs):
            time.sleep(random.uniform(0, interval))
            node.run(["iptables", "-w", "-t", "nat", "-D", masq.DEFAULT_CHAIN, "1"])
            deleted = time.monotonic()
            while not rule_present():
                assert time.monotonic() - deleted < interval * 5, "not repaired within 5 intervals"
                time.sleep(0.01)
            samples.append(time.monotonic() - deleted)
        return samples
    finally:
        node.lab.kill(agent)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--sizes", default="1000,10000,50000")
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--repairs", type=int, default=5)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--lock-file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    if args.inner:
        print(json.dumps(inner_check_costs(sizes, args.repeat, args.lock_file)))
        return 0

    with Netlab() as lab, tempfile.TemporaryDirectory() as scratch:
        lock_file = os.path.join(scratch, "lock")
        node = lab.add_node("node")
        started = time.monotonic()
        out = node.run([sys.executable, os.path.abspath(__file__), "--inner", "--sizes", args.sizes,
                        "--repeat", str(args.repeat), "--lock-file", lock_file], timeout=3600).stdout
        print("Per-check cost, median of %d, one run (%s):" % (
            args.repeat, node.run(["iptables", "--version"]).stdout.strip()))
        print("  %10s %10s %16s %22s %8s" % ("size", "nat rules", "agent check ms", "iptables-save|grep ms", "ratio"))
        for row in json.loads(out):
            figures = (row["size"], row["nat_rules"], row["ours_s"] * 1000, row["seed_s"] * 1000, row["seed_s"] / row["ours_s"])
            print("  %10d %10d %16.1f %22.1f %7.1fx" % figures)
        print("  (table fill and measurements took %.0f s)" % (time.monotonic() - started))

        samples = repair_times(node, args.repairs, args.interval, lock_file)
        print("Deletion to repair (largest table), agent --interval %.1f s, %d deletions at random moments:" % (args.interval, len(samples)))
        print("  median %.2f s, max %.2f s, all: %s" % (statistics.median(samples), max(samples),
                                                        ", ".join("%.2f" % s for s in samples)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
