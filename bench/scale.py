# Copyright: netmend.k8s contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The main job at scale, in one run, on the lab's KWOK nodes. Run as root, lab cluster up:

    .venv/bin/python bench/scale.py [--sizes 100,1000,5000] [--modes report,pod_poke]

For each size the lab is brought to that many KWOK nodes (`lab/cluster.py up --nodes N`, timed:
parallel creates after one LIST), then ``playbooks/site.yml`` runs once per mode:

- ``report``: the default job, which changes nothing (the report and net_doctor's cluster checks);
- ``pod_poke``: with ``netmend_pod_poke=true`` after the agent was removed, so each size measures
  a whole rollout of N agent pods (the job's own polls included).

Each run's wall time, its CPU time (the job and every process it started: comparable between runs
made under different loads, which the wall time is not), the load average when it started, and its API requests from the API server's own accounting:
``apiserver_request_total`` from its /metrics, read before and after. KWOK's node heartbeats
(Leases, node status) are left out, and the other requests the idle cluster makes (controllers,
KWOK) are measured in a baseline window at each size and subtracted, scaled to the run's length.
The ratios show growth per step against the node ratio; the goal is 5,000 nodes under 60 s,
growing no faster than linearly. At the end the lab goes back to the node count it had.
Figures are printed, never asserted.
"""
from __future__ import annotations

import argparse
import os
import re
import resource
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "lab"))

import cluster  # noqa: E402  (lab/cluster.py: its RawApi and node naming)

PY_XY = "%d.%d" % sys.version_info[:2]
GOAL_NODES, GOAL_SECONDS = 5000, 60.0
BASELINE_SECONDS = 10.0
# KWOK's heartbeats: they scale with the nodes, not with the job.
BACKGROUND = {("leases", ""), ("nodes", "status")}


def ansible_env():
    env = dict(os.environ)
    env.setdefault("ANSIBLE_COLLECTIONS_PATH", "%s:%s" % (
        os.path.join(REPO, ".build", "collections"),
        os.path.join(REPO, ".venv", "lib", "python%s" % PY_XY, "site-packages")))
    env.setdefault("ANSIBLE_HOME", os.path.join(REPO, ".build", "ansible-home"))
    env.setdefault("ANSIBLE_REMOTE_TMP", os.path.join(env["ANSIBLE_HOME"], "tmp"))
    env["NETMEND_LAB_KUBECONFIG"] = cluster.KUBECONFIG
    # The play's environment reaches modules only; the rollout wait's lookup reads the process's.
    env["K8S_AUTH_KUBECONFIG"] = cluster.KUBECONFIG
    env["ANSIBLE_FORCE_COLOR"] = "0"
    env["ANSIBLE_CALLBACKS_ENABLED"] = "ansible.posix.profile_tasks"  # where the time goes, printed per run
    return env


def slowest(output, count=3):
    """The profile_tasks summary's first lines: the slowest tasks of the run."""
    found = re.findall(r"^(?:[\w.]+ : )?(.+?) -+ ([0-9.]+)s$", output, re.MULTILINE)
    return "; ".join("%s %ss" % (name[:60], seconds) for name, seconds in found[:count])


def requests(raw):
    """apiserver_request_total summed per (verb, resource, subresource), heartbeats left out."""
    text = raw.request("GET", "/metrics", raw=True)[1].decode()
    totals = {}
    for line in text.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
        key = (labels.get("verb", ""), labels.get("resource", ""), labels.get("subresource", ""))
        if key[1:] in BACKGROUND:
            continue
        totals[key] = totals.get(key, 0.0) + float(line.rsplit(" ", 1)[1])
    return totals


def delta(before, after):
    return {key: after.get(key, 0.0) - before.get(key, 0.0) for key in set(before) | set(after)}


def baseline_rate(raw, seconds=BASELINE_SECONDS):
    before = requests(raw)
    time.sleep(seconds)
    return {key: value / seconds for key, value in delta(before, requests(raw)).items()}


def net(counts, rate, seconds):
    """Per (verb, resource): the run's count less the idle rate over the run, never below 0."""
    return {key: max(0.0, value - rate.get(key, 0.0) * seconds) for key, value in counts.items()}


def cpu_of_children():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def site(extra):
    """One run of site.yml: (wall seconds, CPU seconds of the job and every process it started, output).

    The CPU time hardly depends on what else loads the machine, so it compares runs made under
    different loads; the wall time is what a user waits."""
    argv = [os.path.join(REPO, ".venv", "bin", "ansible-playbook"), "-i", "localhost,",
            os.path.join(REPO, "playbooks", "site.yml")] + extra
    started, cpu_before = time.monotonic(), cpu_of_children()
    done = subprocess.run(argv, cwd=REPO, env=ansible_env(), capture_output=True, text=True, check=False)
    seconds, cpu = time.monotonic() - started, cpu_of_children() - cpu_before
    if done.returncode:
        sys.stdout.write(done.stdout[-4000:] + done.stderr[-2000:])
        raise SystemExit("bench: site.yml %s failed (rc %d)" % (" ".join(extra), done.returncode))
    return seconds, cpu, done.stdout


def lab_up(count):
    started = time.monotonic()
    done = subprocess.run([sys.executable, os.path.join(REPO, "lab", "cluster.py"), "up", "--nodes", str(count)],
                          capture_output=True, text=True, check=False)
    seconds = time.monotonic() - started
    if done.returncode:
        raise SystemExit("bench: lab up --nodes %d failed: %s" % (count, done.stdout + done.stderr))
    created = re.search(r"KWOK nodes: (\d+) created, (\d+) deleted in ([0-9.]+)s", done.stdout)
    return seconds, created.groups() if created else ("0", "0", "0")


def kwok_count(raw):
    return sum(1 for node in cluster.list_nodes(raw) if cluster.kwok_node_index(node["metadata"]["name"]) is not None)


def measure(raw, extra):
    rate = baseline_rate(raw)
    before = requests(raw)
    seconds, cpu, output = site(extra)
    counts = net(delta(before, requests(raw)), rate, seconds)
    return seconds, cpu, counts, output


def summary(counts):
    reads = sum(v for (verb, _r, _s), v in counts.items() if verb in ("GET", "LIST", "WATCH"))
    writes = sum(v for (verb, _r, _s), v in counts.items() if verb not in ("GET", "LIST", "WATCH"))
    top = sorted(((v, k) for k, v in counts.items() if v >= 0.5), reverse=True)[:6]
    text = ", ".join("%s %s%s %.0f" % (k[0], k[1], "/" + k[2] if k[2] else "", v) for v, k in top)
    return reads, writes, text


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000,5000")
    parser.add_argument("--modes", default="report,pod_poke")
    args = parser.parse_args(argv)
    sizes = [int(size) for size in args.sizes.split(",")]
    modes = args.modes.split(",")
    raw = cluster.RawApi()
    found = kwok_count(raw)
    rows = []
    try:
        for size in sizes:
            up_seconds, (created, deleted, create_seconds) = lab_up(size)
            print("== %d KWOK nodes: lab up %.1f s (%s created, %s deleted in %s s, then Ready)"
                  % (size, up_seconds, created, deleted, create_seconds), flush=True)
            for mode in modes:
                extra = []
                if mode == "pod_poke":
                    site(["-e", "netmend_pod_poke=true", "-e", "netmend_state=absent"])  # a whole rollout each size
                    extra = ["-e", "netmend_pod_poke=true"]
                load = os.getloadavg()[0]
                seconds, cpu, counts, output = measure(raw, extra)
                reads, writes, top = summary(counts)
                waits = len(re.findall(r"\(item=DaemonSet [^)]*updated", output))
                rows.append((size, mode, seconds, cpu, reads, writes))
                print("   %-8s %6.1f s (job CPU %.1f s, load average %.1f)  requests: %6.0f reads %6.0f writes%s  [%s]"
                      % (mode, seconds, cpu, load, reads, writes, "  rollout polls %d" % waits if waits else "", top),
                      flush=True)
                print("            slowest: %s" % slowest(output), flush=True)
    finally:
        if "pod_poke" in modes:
            site(["-e", "netmend_pod_poke=true", "-e", "netmend_state=absent"])
        lab_up(found)
        print("lab back to %d KWOK nodes" % found)
    print("\nsite.yml at scale (ratio: against the previous size; linear growth means time ratio <= node ratio)")
    columns = ("mode", "nodes", "seconds", "job CPU s", "requests", "node ratio", "time ratio", "CPU ratio", "req. ratio")
    print("%-8s %7s %9s %10s %10s %11s %11s %10s %11s" % columns)
    for mode in modes:
        previous = None
        for size, row_mode, seconds, cpu, reads, writes in rows:
            if row_mode != mode:
                continue
            total = reads + writes
            ratios = "%11s %11s %10s %11s" % ("-", "-", "-", "-")
            if previous:
                request_ratio = total / previous[3] if previous[3] else float("nan")
                ratios = "%11.1f %11.2f %10.2f %11.2f" % (size / float(previous[0]), seconds / previous[1],
                                                          cpu / previous[2], request_ratio)
            print("%-8s %7d %9.1f %10.1f %10.0f %s" % (mode, size, seconds, cpu, total, ratios))
            previous = (size, seconds, cpu, total)
        at_goal = [seconds for size, row_mode, seconds, *_rest in rows if row_mode == mode and size == GOAL_NODES]
        if at_goal:
            verdict = "met" if at_goal[0] < GOAL_SECONDS else "NOT met"
            print("%-8s goal %d nodes < %.0f s: %s (%.1f s)" % (mode, GOAL_NODES, GOAL_SECONDS, verdict, at_goal[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
