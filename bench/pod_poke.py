# Copyright: netmend.k8s contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark pod_poke against the seed's approach, in one run, on the lab. Run as root:

    .venv/bin/python bench/pod_poke.py [--sizes 100,1000,5000] [--agents 3] [--window 30]

1. Sweep wall time for N targets with 10% unreachable: ``poke.sweep`` (all at once,
   one deadline) against the seed's loop (``ping -c 1 -w 1`` per pod, one after
   another), both from a pod namespace of a netlab topology (5 nodes, pods with
   100 addresses each; the unreachable pods drop ICMP). The seed loop is run in
   full only for the smallest size; for larger ones it is timed on a sample and
   extrapolated (each silent pod costs its full 1 s wait), and the output says so.
2. API requests per minute: N pod_poke agents (each with its own service-account
   token, in a namespace with only loopback so the simulated pod IPs are never
   pinged) against N seed loops listing all pods every 5 s, read from the API
   server's own ``apiserver_request_total`` counters (admin kubeconfig). Other
   clients of the lab API server are measured in a baseline window and subtracted.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import uuid

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLLECTIONS = os.path.join(REPO, ".build", "collections")
sys.path[:0] = [COLLECTIONS, REPO, os.path.join(REPO, "tests", "lab")]

from lab import netlab  # noqa: E402  (needs the paths above)
from ansible_collections.netmend.k8s.plugins.module_utils.kube_lite import KubeClient, pods_path  # noqa: E402
from test_pod_poke_agent_cluster import forward_api  # noqa: E402  (the lab's API forwarder into a namespace)
from test_pod_poke_netlab import share_neighbour  # noqa: E402  (one ARP entry per pod, not per address)

KUBECONFIG = os.environ.get("NETMEND_LAB_KUBECONFIG", os.path.expanduser("~/.cache/netmend-lab/kubeconfig"))
AGENT = "ansible_collections.netmend.k8s.plugins.module_utils.agent"
SWEEP = ("import json, sys\n"
         "from ansible_collections.netmend.k8s.plugins.module_utils import poke\n"
         "print(json.dumps(poke.sweep(json.loads(sys.argv[1]), timeout=1.0)))\n")
SEED_LOOP = 'for ip in "$@"; do ping -c 1 -w 1 "$ip" >/dev/null 2>&1 || true; done'
PER_POD = 100
SAMPLE = 100


# --------------------------------------------------------------------------- sweeps


def build_topology(lab, total):
    """5 nodes; pods of PER_POD addresses; every tenth pod drops ICMP. Returns (poker, up, down)."""
    nodes = [lab.add_node("node%d" % index) for index in range(5)]
    lab.connect_nodes(nodes)
    poker = lab.add_pod("node0", "poker", "10.250.255.250")
    up, down = [], []
    for index in range(total // PER_POD):
        base = index * PER_POD
        addresses = ["10.250.%d.%d" % ((base + offset) // 250, (base + offset) % 250) for offset in range(PER_POD)]
        pod = share_neighbour(lab.add_pod(nodes[index % 5], "pod%d" % index, addresses))
        if index % 10 == 9:
            pod.iptables("-A", "INPUT", "-p", "icmp", "-j", "DROP")
            down.extend(addresses)
        else:
            up.extend(addresses)
    return poker, up, down


def targets_for(size, up, down):
    """``size`` addresses, exactly 10% of them silent, interleaved as pods would be."""
    silent, answering = down[:size // 10], up[:size - size // 10]
    mixed = []
    for index, ip in enumerate(answering):
        mixed.append(ip)
        if index % 9 == 8 and silent:
            mixed.append(silent.pop())
    return mixed + silent


def run_module(poker, targets):
    env = dict(os.environ, PYTHONPATH=COLLECTIONS)
    started = time.monotonic()
    out = poker.run([sys.executable, "-c", SWEEP, json.dumps(targets)], env=env, timeout=120).stdout
    wall = time.monotonic() - started
    result = json.loads(out)
    return wall, result


def run_seed(poker, targets):
    started = time.monotonic()
    poker.run(["sh", "-c", SEED_LOOP, "seed", *targets], timeout=len(targets) * 3 + 60)
    return time.monotonic() - started


def bench_sweeps(sizes):
    rows = []
    with netlab.Netlab() as lab:
        poker, up, down = build_topology(lab, max(sizes))
        # One sample of the seed loop, split into answering and silent pods, for the extrapolation.
        sample = targets_for(SAMPLE, up, down)
        silent_sample = [ip for ip in sample if ip in set(down)]
        answering_sample = [ip for ip in sample if ip not in set(down)]
        per_answering = run_seed(poker, answering_sample) / len(answering_sample)
        per_silent = run_seed(poker, silent_sample) / len(silent_sample)
        for size in sizes:
            targets = targets_for(size, up, down)
            wall, result = run_module(poker, targets)
            assert len(result["unreachable"]) == size // 10, (size, len(result["unreachable"]))
            if size <= SAMPLE:
                seed_s, how = run_seed(poker, targets), "measured"
            else:
                seed_s = per_answering * (size - size // 10) + per_silent * (size // 10)
                how = "extrapolated"
            rows.append((size, result["duration_s"], wall, seed_s, how))
    return rows, per_answering, per_silent


# --------------------------------------------------------------------------- API load


def admin_client():
    from kubernetes import client, config

    configuration = client.Configuration()
    config.load_kube_config(config_file=KUBECONFIG, client_configuration=configuration)
    return client.ApiClient(configuration)


def pod_requests(api):
    """apiserver_request_total for cluster-wide pod requests, per verb (LIST, WATCH, ...).

    Both the agents and the seed read pods cluster-wide; the lab's other clients
    mostly work inside their own namespaces, so this keeps their noise out.
    """
    response = api.call_api("GET", api.configuration.host + "/metrics")
    response.read()
    text = response.data.decode()
    totals = {}
    for line in text.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
        if labels.get("resource") == "pods" and labels.get("scope") == "cluster" and not labels.get("subresource"):
            totals[labels["verb"]] = totals.get(labels["verb"], 0) + float(line.rsplit(" ", 1)[1])
    return totals


def delta(before, after):
    return {verb: after.get(verb, 0) - before.get(verb, 0) for verb in set(before) | set(after)}


def window(api, seconds):
    before = pod_requests(api)
    time.sleep(seconds)
    return delta(before, pod_requests(api))


def seed_loop(kube, stop):
    """What each seed pod does: list every pod in the cluster, then sleep 5 s."""
    while not stop.is_set():
        kube.list(pods_path())
        stop.wait(5)


def bench_api(agents, seconds, pods):
    from kubernetes import client

    api = admin_client()
    core = client.CoreV1Api(api)
    rbac = client.RbacAuthorizationV1Api(api)
    namespace = "bench-poke-" + uuid.uuid4().hex[:6]
    core.create_namespace({"metadata": {"name": namespace}})
    role = "netmend-bench-pod-poke-" + namespace
    rbac.create_cluster_role({"metadata": {"name": role},
                              "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "watch"]}]})
    rbac.create_cluster_role_binding({
        "metadata": {"name": role},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": [{"kind": "ServiceAccount", "name": "poker", "namespace": namespace}]})
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "poker"}})
    token = core.create_namespaced_service_account_token("poker", namespace, {"spec": {}}).status.token
    host, ca_file = api.configuration.host, api.configuration.ssl_ca_cert
    for index in range(pods):
        core.create_namespaced_pod(namespace, {
            "metadata": {"name": "p%d" % index},
            "spec": {"tolerations": [{"operator": "Exists"}], "containers": [{"name": "c", "image": "python:3.13-slim"}]}})
    api_port = int(host.rsplit(":", 1)[1])
    results = {}
    try:
        results["baseline"] = window(api, seconds)
        with netlab.Netlab() as lab:
            boxes = [lab.add_node("agent%d" % index) for index in range(agents)]
            forwarders = [forward_api(box.netns, api_port) for box in boxes]
            env = dict(os.environ, PYTHONPATH=COLLECTIONS, NETMEND_KUBE_HOST="https://127.0.0.1:%d" % api_port,
                       NETMEND_KUBE_TOKEN=token, NETMEND_KUBE_CA_FILE=ca_file)
            before = pod_requests(api)
            for index, box in enumerate(boxes):
                box.popen([sys.executable, "-m", AGENT, "pod_poke", "--interval", "5", "--timeout", "0.2",
                           "--metrics-port", "-1"], env=dict(env, NODE_NAME="kwok-node-%d" % index),
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(seconds)
            results["agents"] = delta(before, pod_requests(api))
            for forwarder in forwarders:
                forwarder.close()
        stop = threading.Event()
        kube = KubeClient(host, token=token, ca_file=ca_file)
        before = pod_requests(api)
        loops = [threading.Thread(target=seed_loop, args=(kube, stop), daemon=True) for _loop in range(agents)]
        for loop in loops:
            loop.start()
        time.sleep(seconds)
        results["seed"] = delta(before, pod_requests(api))
        stop.set()
        for loop in loops:
            loop.join()
    finally:
        rbac.delete_cluster_role_binding(role)
        rbac.delete_cluster_role(role)
        core.delete_namespace(namespace)
    return results


# --------------------------------------------------------------------------- report


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000,5000")
    parser.add_argument("--agents", type=int, default=5, help="agents (and seed loops) for the API part")
    parser.add_argument("--window", type=float, default=30, help="seconds per API measurement window")
    parser.add_argument("--pods", type=int, default=60, help="pods created for the API part")
    parser.add_argument("--skip-api", action="store_true")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: the sweeps run in network namespaces")
    if not shutil.which("ping"):
        sys.exit("the seed loop needs ping: apt-get install -y iputils-ping")
    sizes = [int(size) for size in args.sizes.split(",")]

    rows, per_answering, per_silent = bench_sweeps(sizes)
    print("Sweep wall time, 10% unreachable (silent pods), timeout 1 s, same run")
    print("seed loop per pod (sample of %d): %.4f s answering, %.3f s silent" % (SAMPLE, per_answering, per_silent))
    print("%8s %14s %14s %14s %10s  %s" % ("targets", "module sweep", "module+python", "seed loop", "ratio", "seed"))
    for size, sweep_s, wall, seed_s, how in rows:
        print("%8d %13.3fs %13.3fs %13.1fs %9.0fx  %s" % (size, sweep_s, wall, seed_s, seed_s / sweep_s, how))
    if any(how == "extrapolated" for *_rest, how in rows):
        print("(extrapolated = per-pod times of the sample above × this many answering and silent pods)")

    if args.skip_api:
        return
    results = bench_api(args.agents, args.window, args.pods)
    scale = 60.0 / args.window
    baseline = results["baseline"]
    print()
    print("Cluster-wide pod LIST/WATCH requests per minute, %d agents vs %d seed loops (list all pods every 5 s), %d pods,"
          " %.0f s windows, from apiserver_request_total; baseline (other clients) subtracted" %
          (args.agents, args.agents, args.pods, args.window))
    print("%-22s %8s %8s %8s" % ("", "LIST", "WATCH", "total"))
    for name in ("baseline", "agents", "seed"):
        counts = results[name] if name == "baseline" else delta(baseline, results[name])
        lists, watches = (max(0.0, counts.get(verb, 0)) * scale for verb in ("LIST", "WATCH"))
        print("%-22s %8.1f %8.1f %8.1f" % (name + ("" if name == "baseline" else " (net)"), lists, watches,
                                           lists + watches))
    print("agents: one LIST each at start, then one WATCH each that stays open (a WATCH is counted when it ends,"
          " every --watch-timeout=300 s), so steady state is %.1f requests/min for %d agents;"
          " the seed's is %d, growing with nodes and paying for every pod each time."
          % (args.agents * 60.0 / 300, args.agents, args.agents * 12))


if __name__ == "__main__":
    main()
