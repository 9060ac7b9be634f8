# Copyright: netmend.k8s contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark the pod_poke agent at scale against the seed's approach, in one run, on the lab. Run as root:

    .venv/bin/python bench/pod_poke.py [--pods 50000] [--sizes 100,1000,50000] [--seed-full 1000]
                                       [--api-agents 10,100,1000] [--api-window 120] [--skip-agent] [--skip-api]

Everything is real: the lab's API server (NETMEND_LAB_KUBECONFIG), real agent processes
(``python -m ...agent pod_poke``), real ICMP between network namespaces (lab/netlab.py).

The network: ``--network-nodes`` netlab nodes on one bridge; a "poker" pod namespace on
node0 (where the agent and the sweeps run); pod namespaces holding 900 addresses each
(``share_neighbour``: one ARP entry per namespace) for the 90% of targets that answer;
the other 10% are addresses of a range routed to a "void" namespace that holds none of
them and does not forward, so they are dropped there without any answer (dead pods:
nothing behind the address, not a firewall).

1. Sweeps (issue part 3): ``poke.sweep`` (all at once, one deadline, 1 s timeout)
   against the seed's loop (``ping -c 1 -w 1`` per pod, one after another) at each of
   ``--sizes``, 10% dead. The seed loop is run in full up to ``--seed-full`` targets
   (default 1,000: its answering pods, then its dead ones); larger sizes are
   extrapolated from the per-pod times of that run, and the output says so. "unsent"
   counts targets whose echo request never left (reported unreachable all the same).
2. The agent at scale (issue part 1): ``--pods`` pod objects (default 50,000) in a
   namespace of our own, bound to Node objects we create and KWOK does not manage
   (the pods tolerate every taint, so nothing evicts them), status Running with the
   netlab addresses above as podIP(s), created with parallel keep-alive requests. One
   agent (its own service-account token, the API reached through a forwarder on the
   poker namespace's loopback) lists and watches them and sweeps every ``--interval``
   seconds; per sweep we read its log line (targets, answered, duration), its RSS and
   peak RSS (/proc/<pid>/status VmRSS, VmHWM) and its CPU time (/proc/<pid>/stat).
   Goals: sweep <= timeout + 10%, RSS <= 64 MiB. Creating 50,000 pods takes minutes (about
   30 a second on a loaded 2-core lab: two writes per pod). The seed's way at that size: one full
   LIST of every pod (time and bytes, measured) every 5 s per node, and sequential pings
   (extrapolated from part 1's per-pod times).
3. API load (issue part 2): for each N of ``--api-agents`` (default 10, 100, 1,000), N
   real agent processes, all in one netlab namespace with only loopback and one API
   forwarder, watching a namespace whose pods have no IP (never pinged), started
   staggered; then N seed loops (threads, each a full LIST of all pods every 5 s with the
   same token). Requests are counted by the API server itself: ``apiserver_request_total``
   (a LIST when it ends, a WATCH when it ends) plus the change of
   ``apiserver_longrunning_requests`` (watches open), so a WATCH counts when it starts:
   started = ended + (open after - open before). The lab's own clients are measured in a
   baseline window first and subtracted. Agents are only started while MemAvailable stays
   above ``--reserve-mib``; the output says how many ran.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import ipaddress
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLLECTIONS = os.path.join(REPO, ".build", "collections")
sys.path[:0] = [COLLECTIONS, REPO, os.path.join(REPO, "tests", "lab"), os.path.join(REPO, "lab")]

from lab import netlab  # noqa: E402  (needs the paths above)
from ansible_collections.netmend.k8s.plugins.module_utils.kube_lite import KubeClient, KubeError, pods_path  # noqa: E402
from test_pod_poke_agent_cluster import forward_api  # noqa: E402  (the lab's API forwarder into a namespace)
from test_pod_poke_netlab import share_neighbour  # noqa: E402  (one ARP entry per pod, not per address)
import cluster as lab_cluster  # noqa: E402  (lab/cluster.py: RawApi, parallel keep-alive HTTPS with the admin certificate)

KUBECONFIG = os.environ.get("NETMEND_LAB_KUBECONFIG", os.path.expanduser("~/.cache/netmend-lab/kubeconfig"))
AGENT = "ansible_collections.netmend.k8s.plugins.module_utils.agent"
SWEEP = ("import json, sys\n"
         "from ansible_collections.netmend.k8s.plugins.module_utils import poke\n"
         "print(json.dumps(poke.sweep(json.loads(sys.stdin.read()), timeout=1.0)))\n")  # stdin: 50,000 targets exceed one argument's limit
SEED_LOOP = 'for ip in "$@"; do ping -c 1 -w 1 "$ip" >/dev/null 2>&1 || true; done'
SEED_PERIOD = 5.0
PER_POD = 900
ANSWERING_BASE = int(ipaddress.IPv4Address("10.248.0.0"))  # answering addresses: 10.248.0.0/14 (up to ~250,000)
DEAD_NET = "10.252.0.0/16"  # routed to the void namespace, which holds none of them
POKER_IP = "10.253.255.250"
VOID_IP = "10.253.255.251"
WORKERS = 16
CLK_TCK = os.sysconf("SC_CLK_TCK")
MIB = 1024.0 * 1024.0


def say(message):
    sys.stderr.write("[bench pod_poke %s] %s\n" % (time.strftime("%H:%M:%S"), message))
    sys.stderr.flush()


def address(base, index):
    """The index-th address from base, skipping .0 and .255 in the last octet."""
    return str(ipaddress.IPv4Address(base + (index // 254) * 256 + index % 254 + 1))


# --------------------------------------------------------------------------- network


def build_network(lab, answering, dead, node_count):
    """Returns (poker, up, down): the poker pod, answering addresses, dead addresses."""
    nodes = [lab.add_node("node%d" % index) for index in range(node_count)]
    underlay = lab.connect_nodes(nodes)
    poker = lab.add_pod("node0", "poker", POKER_IP)
    up = [address(ANSWERING_BASE, index) for index in range(answering)]
    for start in range(0, answering, PER_POD):
        node = nodes[(start // PER_POD + 1) % node_count]
        share_neighbour(lab.add_pod(node, "pod%d" % (start // PER_POD), up[start:start + PER_POD]))
    void_node = nodes[-1]
    void = lab.add_pod(void_node, "void", VOID_IP)
    void.sysctl({"net/ipv4/ip_forward": 0})  # holds none of the dead addresses, forwards nothing: they are dropped
    void_node.batch(["route replace %s via %s dev %s" % (DEAD_NET, VOID_IP, void.host_veth)])
    for node in nodes:
        if node is not void_node:
            node.batch(["route replace %s via %s" % (DEAD_NET, underlay.ips[void_node.name])])
    network = ipaddress.ip_network(DEAD_NET)
    down = [address(int(network.network_address), index) for index in range(dead)]
    return poker, up, down


def mixed(up, down, size):
    """``size`` targets, every tenth dead, in the order pods would come."""
    dead = size // 10
    answering = up[:size - dead]
    silent = list(down[:dead])
    targets = []
    for index, ip in enumerate(answering):
        targets.append(ip)
        if index % 9 == 8 and silent:
            targets.append(silent.pop(0))
    return targets + silent


def run_module(poker, targets):
    env = dict(os.environ, PYTHONPATH=COLLECTIONS)
    started = time.monotonic()
    out = poker.run([sys.executable, "-c", SWEEP], input=json.dumps(targets), env=env, timeout=600).stdout
    return time.monotonic() - started, json.loads(out)


def run_seed(poker, targets):
    started = time.monotonic()
    poker.run(["sh", "-c", SEED_LOOP, "seed", *targets], timeout=len(targets) * 3 + 60)
    return time.monotonic() - started


def bench_sweeps(poker, up, down, sizes, seed_full):
    """Module sweep and seed loop per size; the seed loop in full up to seed_full targets."""
    full = min(seed_full, max(sizes))
    targets = mixed(up, down, full)
    dead = set(down)
    answering = [ip for ip in targets if ip not in dead]
    silent = [ip for ip in targets if ip in dead]
    say("seed loop over %d targets (%d answering, then %d dead)" % (full, len(answering), len(silent)))
    seed_answering = run_seed(poker, answering)
    seed_silent = run_seed(poker, silent)
    per_answering, per_silent = seed_answering / len(answering), seed_silent / max(1, len(silent))
    rows = []
    for size in sizes:
        say("module sweep over %d targets" % size)
        wall, result = run_module(poker, mixed(up, down, size))
        if size == full:
            seed_s, how = seed_answering + seed_silent, "measured"
        else:
            seed_s = per_answering * (size - size // 10) + per_silent * (size // 10)
            how = "measured per pod at %d, x this size" % full if size > full else "from the %d run's per-pod times" % full
        rows.append({"size": size, "sweep_s": result["duration_s"], "wall_s": wall, "answered": len(result["reachable"]),
                     "silent": len(result["unreachable"]), "seed_s": seed_s, "how": how,
                     "unsent": sum(1 for entry in result["unreachable"] if not entry["sent"])})
    return {"rows": rows, "full": full, "per_answering": per_answering, "per_silent": per_silent}


# --------------------------------------------------------------------------- API objects


def admin_client():
    from kubernetes import client, config

    configuration = client.Configuration()
    config.load_kube_config(config_file=KUBECONFIG, client_configuration=configuration)
    return client.ApiClient(configuration)


class Objects:
    """What the bench creates in the lab API server, and removes in ``close``."""

    def __init__(self, node_count):
        from kubernetes import client

        self.api = admin_client()
        self.core = client.CoreV1Api(self.api)
        self.rbac = client.RbacAuthorizationV1Api(self.api)
        self.raw = lab_cluster.RawApi()
        self.host, self.ca_file = self.api.configuration.host, self.api.configuration.ssl_ca_cert
        self.api_port = int(self.host.rsplit(":", 1)[1])
        tag = uuid.uuid4().hex[:6]
        self.namespace = "bench-poke-" + tag
        self.api_namespace = "bench-poke-api-" + tag
        self.role = "netmend-bench-pod-poke-" + tag
        self.nodes = ["bench-poke-%s-n%d" % (tag, index) for index in range(node_count)]
        self.created = []
        self.pods = []

    def setup(self):
        for namespace in (self.namespace, self.api_namespace):
            self.core.create_namespace({"metadata": {"name": namespace}})
            self.created.append(("namespace", namespace))
        self.rbac.create_cluster_role({"metadata": {"name": self.role},
                                       "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "watch"]}]})
        self.created.append(("clusterrole", self.role))
        self.rbac.create_cluster_role_binding({
            "metadata": {"name": self.role},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": self.role},
            "subjects": [{"kind": "ServiceAccount", "name": "poker", "namespace": self.namespace}]})
        self.created.append(("clusterrolebinding", self.role))
        for name in self.nodes:
            # No KWOK annotation: nothing simulates these nodes, so their pods keep the status we give them.
            self.raw.request("POST", "/api/v1/nodes", {"apiVersion": "v1", "kind": "Node", "metadata": {
                "name": name, "labels": {"netmend.bench/pod-poke": "true"}}})
            self.created.append(("node", name))
        self.core.create_namespaced_service_account(self.namespace, {"metadata": {"name": "poker"}})
        self.token = self.core.create_namespaced_service_account_token(
            "poker", self.namespace, {"spec": {"expirationSeconds": 86400}}).status.token
        for namespace in (self.namespace, self.api_namespace):  # pods need the default ServiceAccount
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                names = [sa.metadata.name for sa in self.core.list_namespaced_service_account(namespace).items]
                if "default" in names:
                    break
                time.sleep(0.5)

    def pod(self, name, node):
        return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "bench-poke"}},
                "spec": {"nodeName": node, "tolerations": [{"operator": "Exists"}], "automountServiceAccountToken": False,
                         "enableServiceLinks": False, "containers": [{"name": "c", "image": "python:3.13-slim"}]}}

    def create_pods(self, namespace, ips, count=None):
        """Pods bound to our nodes; with ``ips``, one pod per address, status Running with that podIP."""
        count = len(ips) if ips else count
        path = pods_path(namespace)

        def create(index):
            name = "p%d" % index
            _status, pod = self.raw.request("POST", path, self.pod(name, self.nodes[index % len(self.nodes)]), ok=(201,))
            if ips:
                pod["status"] = {"phase": "Running", "podIP": ips[index], "podIPs": [{"ip": ips[index]}],
                                 "hostIP": "192.168.200.1", "startTime": pod["metadata"]["creationTimestamp"]}
                self.raw.request("PUT", "%s/%s/status" % (path, name), pod)
            return name

        started = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(WORKERS) as pool:
            for name in pool.map(create, range(count)):
                self.pods.append((namespace, name))
        return time.monotonic() - started

    def delete_pods(self):
        """Gone at once (grace period 0): no kubelet would ever confirm a graceful deletion."""
        pods, self.pods = self.pods, []

        def delete(item):
            self.raw.request("DELETE", "%s/%s?gracePeriodSeconds=0" % (pods_path(item[0]), item[1]), ok=(200, 202, 404))

        started = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(WORKERS) as pool:
            for _done in pool.map(delete, pods):
                pass
        return time.monotonic() - started

    def close(self):
        try:
            self.delete_pods()
        finally:
            for kind, name in reversed(self.created):
                try:
                    if kind == "namespace":
                        self.core.delete_namespace(name)
                    elif kind == "node":
                        self.raw.request("DELETE", "/api/v1/nodes/" + name, ok=(200, 202, 404))
                    elif kind == "clusterrole":
                        self.rbac.delete_cluster_role(name)
                    else:
                        self.rbac.delete_cluster_role_binding(name)
                except Exception as exc:  # keep removing the rest; say what stayed
                    say("could not delete %s %s: %s" % (kind, name, exc))

    def agent_env(self, node):
        return dict(os.environ, PYTHONPATH=COLLECTIONS, NETMEND_KUBE_HOST="https://127.0.0.1:%d" % self.api_port,
                    NETMEND_KUBE_TOKEN=self.token, NETMEND_KUBE_CA_FILE=self.ca_file, NODE_NAME=node)


# --------------------------------------------------------------------------- processes


def proc_status(pid):
    """{VmRSS, VmHWM} in MiB of a process (from /proc)."""
    values = {}
    with open("/proc/%d/status" % pid, encoding="ascii") as handle:
        for line in handle:
            key, _sep, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) / 1024.0
    return values


def proc_cpu(pid):
    """User + system CPU seconds of a process."""
    with open("/proc/%d/stat" % pid, encoding="ascii") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_pss(pid):
    """Proportional set size in MiB (shared pages split among their users)."""
    with open("/proc/%d/smaps_rollup" % pid, encoding="ascii") as handle:
        for line in handle:
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def python_pid(proc):
    """The agent's own PID: ``ip netns exec`` execs the command, but check (a child, if it forked)."""
    for attempt in range(50):
        try:
            with open("/proc/%d/cmdline" % proc.pid, "rb") as handle:
                if AGENT.encode() in handle.read():
                    return proc.pid
            with open("/proc/%d/task/%d/children" % (proc.pid, proc.pid), encoding="ascii") as handle:
                children = handle.read().split()
            if children:
                return int(children[0])
        except FileNotFoundError:
            pass
        time.sleep(0.05 * (attempt + 1))
    return proc.pid


def mem_available_mib():
    with open("/proc/meminfo", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def fields_of(line):
    return {key: value.strip('"') for key, value in re.findall(r'(\w+)=("[^"]*"|\S+)', line)}


# --------------------------------------------------------------------------- the agent at scale


def bench_agent(lab, poker, objects, args):
    """One agent over every pod of objects.namespace; per sweep: its log line, RSS, peak RSS, CPU."""
    forwarder = forward_api(poker.netns, objects.api_port)
    argv = [sys.executable, "-m", AGENT, "pod_poke", "--namespaces", objects.namespace, "--interval", str(args.interval),
            "--timeout", str(args.timeout), "--metrics-port", "-1", "--max-iterations", str(args.sweeps)]
    started = time.monotonic()
    proc = poker.popen(argv, env=objects.agent_env(objects.nodes[0]), stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True)
    pid = python_pid(proc)
    samples = {"start": None, "sweeps": [], "unreachable_lines": 0, "other": []}
    peak = {"rss": 0.0}
    done = threading.Event()

    def sample_memory():  # VmHWM is the peak; this also catches RSS between sweeps
        while not done.wait(0.2):
            try:
                peak["rss"] = max(peak["rss"], proc_status(pid)["VmRSS"])
            except (FileNotFoundError, ProcessLookupError, KeyError):
                return

    threading.Thread(target=sample_memory, daemon=True).start()
    try:
        for line in proc.stdout:
            now = time.monotonic()
            try:
                memory, cpu = proc_status(pid), proc_cpu(pid)
            except (FileNotFoundError, ProcessLookupError, KeyError):
                memory, cpu = {}, None
            if " pod_poke started" in line:
                samples["start"] = {"at": now - started, "cpu": cpu, **memory}
            elif " pod_poke sweep " in line:
                samples["sweeps"].append({"at": now - started, "cpu": cpu, **memory, **fields_of(line)})
            elif " pod_poke unreachable " in line:
                samples["unreachable_lines"] += 1
            else:
                samples["other"].append(line.strip()[:200])
        proc.wait(timeout=60)
    finally:
        done.set()
        lab.kill(proc)
        forwarder.close()
    samples["returncode"] = proc.returncode
    samples["peak_sampled"] = peak["rss"]
    return samples


def seed_list_cost(objects, repeats=3):
    """One full LIST of every pod in the cluster, as each seed loop does every 5 s: seconds (median) and bytes."""
    times, size = [], 0
    for _repeat in range(repeats):
        started = time.monotonic()
        _status, body = objects.raw.request("GET", pods_path(), raw=True)
        times.append(time.monotonic() - started)
        size = len(body)
        count = len(json.loads(body)["items"])
    return sorted(times)[len(times) // 2], size, count


# --------------------------------------------------------------------------- API load


def accounting(objects):
    """Pod LIST/WATCH requests per scope: ended (apiserver_request_total) and open watches (apiserver_longrunning_requests)."""
    _status, text = objects.raw.request("GET", "/metrics", raw=True)
    counts = {}
    for line in text.decode().splitlines():
        if line.startswith("apiserver_request_total{"):
            kind = "ended"
        elif line.startswith("apiserver_longrunning_requests{"):
            kind = "open"
        else:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
        if labels.get("resource") != "pods" or labels.get("subresource") or labels.get("verb") not in ("LIST", "WATCH"):
            continue
        key = (kind, labels["verb"], labels.get("scope", ""))
        counts[key] = counts.get(key, 0) + float(line.rsplit(" ", 1)[1])
    return counts


def started_requests(before, after):
    """Requests started between two readings, per (verb, scope): LISTs ended, WATCHes ended + change in open ones."""
    result = {}
    for verb in ("LIST", "WATCH"):
        for scope in ("namespace", "cluster"):
            ended = after.get(("ended", verb, scope), 0) - before.get(("ended", verb, scope), 0)
            opened = after.get(("open", verb, scope), 0) - before.get(("open", verb, scope), 0)
            result[(verb, scope)] = ended + (opened if verb == "WATCH" else 0)
    return result


def window(objects, seconds):
    before = accounting(objects)
    started = time.monotonic()
    time.sleep(seconds)
    after = accounting(objects)
    return started_requests(before, after), time.monotonic() - started


def per_minute(counts, seconds, baseline, scope):
    """LIST and WATCH starts per minute at one scope, the baseline's rate taken off."""
    base_counts, base_seconds = baseline
    rates = {}
    for verb in ("LIST", "WATCH"):
        rate = counts.get((verb, scope), 0) * 60.0 / seconds
        rates[verb] = max(0.0, rate - base_counts.get((verb, scope), 0) * 60.0 / base_seconds)
    return rates


def run_agents(objects, count, args, log_path):
    """``count`` agents in one namespace with only loopback; returns (results, netlab) with the agents running."""
    lab = netlab.Netlab()
    box = lab.add_node("agents")
    forwarder = forward_api(box.netns, objects.api_port)
    argv = [sys.executable, "-m", AGENT, "pod_poke", "--namespaces", objects.api_namespace,
            "--interval", str(args.api_interval), "--timeout", "0.2", "--metrics-port", "-1"]
    procs, skipped = [], 0
    with open(log_path, "a", encoding="utf-8") as log:
        for index in range(count):
            if mem_available_mib() < args.reserve_mib:
                skipped = count - index
                say("MemAvailable below %d MiB: %d agents not started" % (args.reserve_mib, skipped))
                break
            procs.append(box.popen(argv, env=objects.agent_env("bench-agent-%d" % index), stdout=log,
                                   stderr=subprocess.STDOUT))
            time.sleep(args.stagger)
    return lab, forwarder, procs, skipped


def count_started(log_path):
    with open(log_path, encoding="utf-8", errors="replace") as handle:
        return sum(1 for line in handle if " pod_poke started" in line)


def bench_api_size(objects, count, args, baseline):
    log_path = os.path.join(tempfile.mkdtemp(prefix="bench-poke-"), "agents.log")
    before = accounting(objects)
    first = time.monotonic()
    lab, forwarder, procs, skipped = run_agents(objects, count, args, log_path)
    try:
        deadline = time.monotonic() + 120 + 0.5 * count
        while count_started(log_path) < len(procs) and time.monotonic() < deadline:
            time.sleep(1)
        ready = count_started(log_path)
        startup_s = time.monotonic() - first
        at_start = accounting(objects)
        startup = started_requests(before, at_start)
        say("%d agents started (%d said started) in %.0fs; window %.0fs" % (len(procs), ready, startup_s, args.api_window))
        steady, steady_s = window(objects, args.api_window)
        pids = [proc.pid for proc in procs[:20] if proc.poll() is None]
        rss = [proc_status(pid)["VmRSS"] for pid in pids]
        pss = [proc_pss(pid) for pid in pids]
        alive = sum(1 for proc in procs if proc.poll() is None)
        total_s = time.monotonic() - first
        overall = started_requests(before, accounting(objects))
    finally:
        lab.close()
        forwarder.close()
        shutil.rmtree(os.path.dirname(log_path), ignore_errors=True)
    return {"agents": len(procs), "skipped": skipped, "ready": ready, "alive": alive, "startup_s": startup_s,
            "startup": startup, "steady": per_minute(steady, steady_s, baseline, "namespace"), "steady_s": steady_s,
            "overall": per_minute(overall, total_s, baseline, "namespace"), "total_s": total_s,
            "rss": sum(rss) / len(rss) if rss else 0.0, "pss": sum(pss) / len(pss) if pss else 0.0}


def seed_loop(kube, stop, errors):
    """What each seed pod does: list every pod in the cluster, then sleep 5 s."""
    while not stop.is_set():
        try:
            kube.list(pods_path())
        except KubeError as exc:
            errors.append(str(exc)[:120])
        stop.wait(SEED_PERIOD)


def bench_seed_size(objects, count, args, baseline):
    stop, errors = threading.Event(), []
    kube = KubeClient(objects.host, token=objects.token, ca_file=objects.ca_file)
    loops = [threading.Thread(target=seed_loop, args=(kube, stop, errors), daemon=True) for _loop in range(count)]
    for loop in loops:
        loop.start()
        time.sleep(min(args.stagger, SEED_PERIOD / count))  # spread over one period, as nodes would be
    try:
        time.sleep(SEED_PERIOD)
        counts, seconds = window(objects, args.seed_window)
    finally:
        stop.set()
        for loop in loops:
            loop.join()
    return {"loops": count, "rates": per_minute(counts, seconds, baseline, "cluster"), "seconds": seconds,
            "errors": len(errors), "first_error": errors[0] if errors else ""}


# --------------------------------------------------------------------------- report


def report_sweeps(sweeps):
    print("Part 3 - sweep wall time, 10% dead (addresses routed to a namespace that holds none), timeout 1 s, same run")
    print("seed loop per pod, from its %d-target run: %.4f s answering, %.3f s dead"
          % (sweeps["full"], sweeps["per_answering"], sweeps["per_silent"]))
    print("%8s %12s %14s %9s %7s %7s %12s %9s  %s" % ("targets", "module sweep", "module+python", "answered", "silent",
                                                      "unsent", "seed loop", "ratio", "seed"))
    for row in sweeps["rows"]:
        print("%8d %11.3fs %13.3fs %9d %7d %7d %11.1fs %8.0fx  %s" % (
            row["size"], row["sweep_s"], row["wall_s"], row["answered"], row["silent"], row["unsent"], row["seed_s"],
            row["seed_s"] / row["sweep_s"], row["how"]))
    print("(silent: reported unreachable, of which %d%% are dead; unsent: targets whose echo request never left before"
          " the deadline, reported unreachable all the same)" % 10)
    print()
    sys.stdout.flush()


def report_agent(samples, pods, create_s, seed_list, sweeps, args):
    print("Part 1 - one pod_poke agent over %d pods (10%% dead), interval %.0f s, timeout %.1f s, created in %.0f s"
          % (pods, args.interval, args.timeout, create_s))
    start = samples["start"]
    if not start:
        print("agent never said started (exit %s); its other lines:" % samples["returncode"])
        print("\n".join(samples["other"][-20:]))
        return
    print("start (python, LIST of %d pods, target set): %.2f s wall, %.2f s CPU, RSS %.1f MiB, peak %.1f MiB"
          % (pods, start["at"], start["cpu"], start.get("VmRSS", 0), start.get("VmHWM", 0)))
    header = ("sweep", "targets", "answered", "silent", "duration", "goal", "RSS MiB", "peak MiB", "CPU s")
    print("%6s %8s %9s %7s %10s %9s %9s %9s %10s" % header)
    previous = start["cpu"]
    for index, sweep in enumerate(samples["sweeps"]):
        duration = float(sweep.get("duration_s", "nan"))
        cpu = sweep["cpu"] - previous if sweep["cpu"] is not None else float("nan")
        previous = sweep["cpu"]
        print("%6d %8s %9s %7s %9.3fs %9s %9.1f %9.1f %10.2f" % (
            index + 1, sweep.get("targets"), sweep.get("reachable"), sweep.get("unreachable"), duration,
            "met" if duration <= args.timeout * 1.1 else "NOT met", sweep.get("VmRSS", 0), sweep.get("VmHWM", 0), cpu))
    print("(CPU s: the agent's user+system time since the previous line, i.e. one sweep plus its interval's idle watch;"
          " goal: sweep <= timeout x 1.1 = %.2f s)" % (args.timeout * 1.1))
    durations = [float(sweep.get("duration_s", "nan")) for sweep in samples["sweeps"]]
    peak = max([samples["peak_sampled"]] + [sweep.get("VmHWM", 0) for sweep in samples["sweeps"]])
    steady_rss = max([sweep.get("VmRSS", 0) for sweep in samples["sweeps"]] or [0])
    print("sweeps: %d, slowest %.3f s (goal %.2f s: %s); RSS after sweeps up to %.1f MiB, peak %.1f MiB (goal 64 MiB: %s);"
          " %d 'unreachable' log lines" % (
              len(durations), max(durations or [float("nan")]), args.timeout * 1.1,
              "met" if durations and max(durations) <= args.timeout * 1.1 else "NOT met", steady_rss, peak,
              "met" if peak <= 64 else "NOT met", samples["unreachable_lines"]))
    list_s, list_bytes, list_count = seed_list
    seed_rate = 60.0 / SEED_PERIOD
    print("seed's way at this size, per node: a full LIST of all %d pods every %.0f s: %.2f s and %.1f MiB per LIST"
          " (measured), so %.0f LISTs and %.0f MiB a minute per node; the agent: 1 LIST at start, then one watch"
          % (list_count, SEED_PERIOD, list_s, list_bytes / MIB, seed_rate, seed_rate * list_bytes / MIB))
    per_answering, per_silent = sweeps["per_answering"], sweeps["per_silent"]
    seed_sweep = per_answering * (pods - pods // 10) + per_silent * (pods // 10)
    slowest = max(durations or [float("nan")])
    print("seed's sequential pings over %d pods: %.0f s (extrapolated from the %d-target run's per-pod times),"
          " %.0fx the agent's slowest sweep" % (pods, seed_sweep, sweeps["full"], seed_sweep / slowest))
    if samples["other"]:
        print("agent's other log lines: %s" % " | ".join(samples["other"][:5]))
    print()
    sys.stdout.flush()


def report_api_header(baseline, args):
    """Part 2's header; each N's row follows as soon as it is measured."""
    base_seconds = baseline[1]
    print("Part 2 - pod API requests per minute, measured by the API server: LIST = apiserver_request_total, WATCH started ="
          " WATCHes ended + change of apiserver_longrunning_requests; baseline (lab's own clients, %.0f s) subtracted"
          % base_seconds)
    print("agents: --interval %.0f, --watch-timeout 300 (default), watching one namespace of %d IP-less pods;"
          " seed: threads listing all pods every %.0f s" % (args.api_interval, args.api_pods, SEED_PERIOD))
    print("%6s %7s %8s %10s %10s %10s %10s %9s %9s %9s %9s %10s" % (
        "N", "agents", "start s", "start L+W", "steady/min", "per agent", "overall", "seed/min", "per loop",
        "ratio", "ratio", "RSS/PSS"))
    print("%6s %7s %8s %10s %10s %10s %10s %9s %9s %9s %9s %10s" % (
        "", "", "", "", "(all)", "steady", "per agent", "(all)", "", "overall", "steady", "MiB"))
    sys.stdout.flush()


def report_api_row(agents, seed):
    startup = sum(agents["startup"].get((verb, "namespace"), 0) for verb in ("LIST", "WATCH"))
    steady = sum(agents["steady"].values())
    overall = sum(agents["overall"].values())
    seed_total = sum(seed["rates"].values())
    count = max(1, agents["agents"])
    per_loop = seed_total / max(1, seed["loops"])

    def ratio(ours):
        return "%8.0fx" % (per_loop / ours) if ours > 0 else "%9s" % "no req"

    print("%6d %7d %8.0f %10.0f %10.2f %10.4f %10.4f %9.1f %9.2f %s %s %4.0f/%-4.0f" % (
        seed["loops"], agents["agents"], agents["startup_s"], startup, steady, steady / count, overall / count,
        seed_total, per_loop, ratio(overall / count), ratio(steady / count), agents["rss"], agents["pss"]))
    if agents["skipped"] or agents["alive"] < agents["agents"] or agents["ready"] < agents["agents"]:
        print("       (N=%d: %d not started for memory, %d said started, %d still running at the end)"
              % (seed["loops"], agents["skipped"], agents["ready"], agents["alive"]))
    if seed["errors"]:
        print("       (seed N=%d: %d LISTs failed, e.g. %s)" % (seed["loops"], seed["errors"], seed["first_error"]))
    sys.stdout.flush()


def report_api_footer(args):
    print("start L+W: LIST+WATCH started while the agents started; steady/min: all agents' requests per minute in a %.0f s"
          " window after they all started; overall/min and per agent: from the first start to the window's end."
          " A watch is renewed every 300 s, so a window shorter than that may see few or no renewals."
          " ratio = seed requests per loop per minute / agent requests per agent per minute (overall, steady)."
          " RSS/PSS: MiB per agent (mean of up to 20)." % args.api_window)
    sys.stdout.flush()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=50000, help="pods the agent watches (10%% of them dead)")
    parser.add_argument("--sizes", default="100,1000,50000", help="sweep sizes for part 3 (at most --pods)")
    parser.add_argument("--seed-full", type=int, default=1000, help="largest size the seed loop runs in full")
    parser.add_argument("--network-nodes", type=int, default=3, help="netlab nodes the pod namespaces spread over")
    parser.add_argument("--bench-nodes", type=int, default=5, help="Node objects (not KWOK's) the pods are bound to")
    parser.add_argument("--interval", type=float, default=5.0, help="the agent's --interval in part 1")
    parser.add_argument("--timeout", type=float, default=1.0, help="the agent's --timeout in part 1")
    parser.add_argument("--sweeps", type=int, default=6, help="sweeps of the agent in part 1")
    parser.add_argument("--api-agents", default="10,100,1000", help="agent counts (and seed loops) for part 2")
    parser.add_argument("--api-window", type=float, default=300, help="seconds of the agents' steady window (300: one watch renewal each)")
    parser.add_argument("--seed-window", type=float, default=60, help="seconds of the seed loops' window")
    parser.add_argument("--baseline-window", type=float, default=30, help="seconds of the baseline window")
    parser.add_argument("--api-pods", type=int, default=60, help="IP-less pods in the agents' namespace in part 2")
    parser.add_argument("--api-interval", type=float, default=60.0,
                        help="the agents' sweep interval in part 2 (their API use does not depend on it)")
    parser.add_argument("--stagger", type=float, default=0.05, help="seconds between agent starts in part 2")
    parser.add_argument("--reserve-mib", type=int, default=4096, help="start no agent when MemAvailable is below this")
    parser.add_argument("--skip-agent", action="store_true", help="skip parts 1 and 3 (the network)")
    parser.add_argument("--skip-api", action="store_true", help="skip part 2")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: the sweeps run in network namespaces")
    if not shutil.which("ping"):
        sys.exit("the seed loop needs ping: apt-get install -y iputils-ping")
    sizes = sorted(int(size) for size in args.sizes.split(","))
    if max(sizes) > args.pods:
        sys.exit("--sizes must be at most --pods")
    objects = Objects(args.bench_nodes)
    try:
        objects.setup()
        if not args.skip_agent:
            with netlab.Netlab() as lab:
                dead = args.pods // 10
                say("network: %d answering addresses in %d namespaces, %d dead" % (args.pods - dead, -(-(args.pods - dead) // PER_POD), dead))
                poker, up, down = build_network(lab, args.pods - dead, dead, args.network_nodes)
                sweeps = bench_sweeps(poker, up, down, sizes, args.seed_full)
                report_sweeps(sweeps)
                say("creating %d pods" % args.pods)
                create_s = objects.create_pods(objects.namespace, mixed(up, down, args.pods))
                say("created in %.0fs; starting the agent" % create_s)
                samples = bench_agent(lab, poker, objects, args)
                seed_list = seed_list_cost(objects)
                report_agent(samples, args.pods, create_s, seed_list, sweeps, args)
            say("deleting %d pods" % len(objects.pods))
            say("deleted in %.0fs" % objects.delete_pods())
        if not args.skip_api:
            objects.create_pods(objects.api_namespace, None, args.api_pods)
            say("baseline window %.0fs" % args.baseline_window)
            baseline = window(objects, args.baseline_window)
            report_api_header(baseline, args)
            for count in (int(size) for size in args.api_agents.split(",")):
                say("%d agents" % count)
                agents = bench_api_size(objects, count, args, baseline)
                say("%d seed loops" % count)
                report_api_row(agents, bench_seed_size(objects, count, args, baseline))
            report_api_footer(args)
    finally:
        objects.close()


if __name__ == "__main__":
    main()
