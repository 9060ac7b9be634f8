# Copyright: netmend.k8s contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The pod_poke agent: ping the cluster's pods from every node, keep the target set by watch.

The seed lists every pod every few seconds on every node, so the API load grows
with nodes × pods. Here each agent lists once, then follows a watch from that
resourceVersion (re-listing only when the server answers 410 Gone), and the
server filters by label and namespace. Every interval (with jitter, so nodes do
not sweep in step) all targets are pinged at once with ``poke.probe_addresses``; one log
line per sweep and one per newly unreachable pod, and Prometheus metrics.

Standard library only: it runs on a stock python image from a ConfigMap.
"""
from __future__ import annotations

import argparse
import collections
import http.client
import http.server
import os
import re
import sys
import threading
import time

from ansible_collections.netmend.k8s.plugins.module_utils import agent
from ansible_collections.netmend.k8s.plugins.module_utils import poke
from ansible_collections.netmend.k8s.plugins.module_utils.kube_lite import KubeClient, KubeError, condition_status, pods_path

FIX = "pod_poke"
RTT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
LIVE_PHASES = ("Pending", "Running", "Unknown")
LIST_PAGE_SIZE = 500

# One pod address to ping. A tuple, with the namespace and node names interned: the agent keeps tens of
# thousands of them (a dict per target cost about three times the memory).
Target = collections.namedtuple("Target", "ip namespace name node")

# --------------------------------------------------------------------------- label selectors

_REQUIREMENT = re.compile(
    r"^\s*(?:(?P<not>!)\s*(?P<absent>[\w./-]+)"
    r"|(?P<key>[\w./-]+)\s*(?:(?P<op>==|!=|=)\s*(?P<value>[\w.-]*)"
    r"|\s+(?P<setop>in|notin)\s*\((?P<values>[^)]*)\))?)\s*$")


def parse_selector(text):
    """A label selector string as a list of (key, operator, values) requirements.

    Supports what kubectl accepts: ``k=v``, ``k==v``, ``k!=v``, ``k``, ``!k``,
    ``k in (a,b)``, ``k notin (a,b)``, comma-separated.
    """
    requirements = []
    for part in _split_selector(text or ""):
        found = _REQUIREMENT.match(part)
        if not found:
            raise poke.PokeError("invalid label selector %r: cannot parse %r" % (text, part.strip()))
        if found.group("absent"):
            requirements.append((found.group("absent"), "!", ()))
        elif found.group("op"):
            operator = "!=" if found.group("op") == "!=" else "="
            requirements.append((found.group("key"), operator, (found.group("value"),)))
        elif found.group("setop"):
            values = tuple(value.strip() for value in found.group("values").split(",") if value.strip())
            requirements.append((found.group("key"), found.group("setop"), values))
        else:
            requirements.append((found.group("key"), "exists", ()))
    return requirements


def _split_selector(text):
    parts, depth, current = [], 0, ""
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    if current.strip():
        parts.append(current)
    return [part for part in parts if part.strip()]


def selector_matches(requirements, labels):
    for key, operator, values in requirements:
        present = key in labels
        if operator == "exists" and not present:
            return False
        if operator == "!" and present:
            return False
        if operator in ("=", "in") and labels.get(key) not in values:
            return False
        if operator in ("!=", "notin") and present and labels[key] in values:
            return False
    return True


# --------------------------------------------------------------------------- pod filtering


class PodFilter:
    """Which pods are targets: namespaces in/out, a label selector, optionally only not-Ready ones."""

    def __init__(self, namespaces=(), exclude_namespaces=("kube-system",), label_selector="", only_not_ready=False):
        self.namespaces = tuple(namespaces)
        self.exclude_namespaces = tuple(ns for ns in exclude_namespaces if ns not in self.namespaces)
        self.label_selector = label_selector or ""
        self.requirements = parse_selector(self.label_selector)
        self.only_not_ready = only_not_ready

    def path(self):
        """One namespace: watch just it; otherwise the cluster-wide collection."""
        return pods_path(self.namespaces[0] if len(self.namespaces) == 1 else None)

    def query(self):
        """Server-side selectors, so the API server sends only what we keep."""
        query = {}
        if self.label_selector:
            query["labelSelector"] = self.label_selector
        if self.exclude_namespaces and len(self.namespaces) != 1:
            query["fieldSelector"] = ",".join("metadata.namespace!=%s" % ns for ns in self.exclude_namespaces)
        return query

    def targets(self, pod):
        """The pod's ping targets (Target, one per pod IP), or () when the pod is not one of ours."""
        metadata = pod.get("metadata") or {}
        spec = pod.get("spec") or {}
        status = pod.get("status") or {}
        namespace = metadata.get("namespace", "")
        if self.namespaces and namespace not in self.namespaces:
            return ()
        if namespace in self.exclude_namespaces:
            return ()
        if not selector_matches(self.requirements, metadata.get("labels") or {}):
            return ()
        if status.get("phase") not in LIVE_PHASES or metadata.get("deletionTimestamp"):
            return ()
        if self.only_not_ready and condition_status(pod) == "True":
            return ()
        addresses = [entry.get("ip") for entry in status.get("podIPs") or []] or [status.get("podIP")]
        namespace, node = sys.intern(namespace), sys.intern(spec.get("nodeName", ""))
        return tuple(Target(ip, namespace, metadata.get("name", ""), node) for ip in map(_address, addresses) if ip)


def _address(text):
    """A pod IP as poke writes addresses (so replies match), or None for a missing or unusable one."""
    try:
        return poke.unicast_address(text or "")
    except ValueError:
        return None


# --------------------------------------------------------------------------- target set by watch


class PodTargets:
    """The current targets, kept by list-then-watch; ``follow`` runs in a thread."""

    def __init__(self, client, pod_filter, watch_timeout=300, metrics=None, log=agent.log, max_stale=120.0,
                 clock=time.monotonic, backoff=None):
        self.client = client
        self.filter = pod_filter
        self.watch_timeout = watch_timeout
        self.metrics = metrics or Metrics()
        self.log = log
        self.max_stale = max_stale
        self.clock = clock
        self.resource_version = None
        self.synced = threading.Event()
        self.failing_since = None
        self.backoff = backoff or agent.Backoff()
        self._pods = {}
        self._lock = threading.Lock()

    def snapshot(self):
        """Every target, one per address: pods that share one (host-network pods share their node's) are
        pinged once, named by the first of them."""
        unique = {}
        with self._lock:
            for targets in self._pods.values():
                for target in targets:
                    unique.setdefault(target.ip, target)
        return list(unique.values())

    def relist(self):
        """Every target, read LIST_PAGE_SIZE pods at a time: the agent keeps a few strings of each pod, and
        never holds a whole list of tens of thousands of pods (one answer of 50,000 is over 100 MB parsed)."""
        pods = {}
        version = None
        for answer in self.client.pages(self.filter.path(), LIST_PAGE_SIZE, **self.filter.query()):
            self.metrics.count_request("list")
            for pod in answer.get("items") or []:
                targets = self.filter.targets(pod)
                if targets:
                    pods[_key(pod)] = targets
            version = (answer.get("metadata") or {}).get("resourceVersion") or version
        with self._lock:
            self._pods = pods
        self.resource_version = version
        self.synced.set()

    def apply(self, event):
        """One watch event; returns nothing, updates the set and the resourceVersion."""
        pod = event.get("object") or {}
        version = (pod.get("metadata") or {}).get("resourceVersion")
        if version:
            self.resource_version = version
        kind = event.get("type")
        if kind == "BOOKMARK":
            return
        key = _key(pod)
        targets = self.filter.targets(pod) if kind in ("ADDED", "MODIFIED") else []
        with self._lock:
            if targets:
                self._pods[key] = targets
            else:
                self._pods.pop(key, None)

    def watch_once(self):
        """List when we have no resourceVersion, then follow one watch until the server ends it."""
        if self.resource_version is None:
            self.relist()
            self.connected()
        self.metrics.count_request("watch")
        try:
            for event in self.client.watch(self.filter.path(), self.resource_version, timeout_seconds=self.watch_timeout,
                                           on_open=self.connected, **self.filter.query()):
                self.apply(event)
        except KubeError as exc:
            if exc.status != 410:
                raise
            self.log(FIX, "watch expired, listing again", resource_version=self.resource_version or "")
            self.resource_version = None

    def current(self):
        """True once listed, and while the watch has not been failing for longer than ``max_stale`` seconds."""
        if not self.synced.is_set():
            return False
        return self.failing_since is None or self.clock() - self.failing_since <= self.max_stale

    def connected(self):
        """The API server answered (a list, or a watch it accepted): a failure streak ends here."""
        if self.failing_since is not None:
            self.log(FIX, "API server answers again", failed_attempts=self.backoff.failures,
                     resource_version=self.resource_version or "")
        self.failing_since = None
        self.backoff.reset()

    def follow(self, stopper):
        """List, then watch, until stopped; a failed list or a broken watch is retried after a backoff.

        The last target set is kept meanwhile and the watch resumes from the same
        resourceVersion, so an API server restart costs no re-list unless it answers 410.
        """
        while not stopper.stopped:
            started = self.clock()
            try:
                self.watch_once()
            except (KubeError, OSError, http.client.HTTPException, ValueError) as exc:
                # ValueError: a stream cut inside a JSON line.
                if self.failing_since is None:
                    self.failing_since = self.clock()
                pause = self.backoff.next_delay()
                self.log(FIX, "cannot list pods, retrying" if not self.synced.is_set() else "watch failed, retrying",
                         error=str(exc) or type(exc).__name__, attempt=self.backoff.failures, retry_s=round(pause, 2))
                if stopper.sleep(pause):
                    return
                continue
            if self.clock() - started < 1.0 and stopper.sleep(1.0):
                return  # a server that ends every watch at once is not polled in a tight loop


def _key(pod):
    metadata = pod.get("metadata") or {}
    return metadata.get("uid") or "%s/%s" % (metadata.get("namespace"), metadata.get("name"))


# --------------------------------------------------------------------------- metrics


class Metrics:
    """The agent's Prometheus metrics, rendered in the text exposition format."""

    def __init__(self, node=""):
        self.node = node
        self._lock = threading.Lock()
        self.sweeps = 0
        self.targets = 0
        self.unreachable = 0
        self.blackholed = 0
        self.duration = 0.0
        self.requests = {"list": 0, "watch": 0}
        self.buckets = [0] * len(RTT_BUCKETS)
        self.rtt_count = 0
        self.rtt_sum = 0.0

    def count_request(self, verb):
        with self._lock:
            self.requests[verb] += 1

    def observe(self, result):
        """One sweep's summary (see ``summarize``)."""
        with self._lock:
            self.sweeps += 1
            self.targets = result["total"]
            self.unreachable = len(result["unreachable"])
            self.blackholed = len(result["mtu_blackholed"])
            self.duration = result["duration_s"]
            for seconds in result["round_trips"]:
                self.rtt_count += 1
                self.rtt_sum += seconds
                for index, bound in enumerate(RTT_BUCKETS):
                    if seconds <= bound:
                        self.buckets[index] += 1

    def render(self):
        with self._lock:
            label = '{node="%s"}' % self.node.replace("\\", "\\\\").replace('"', '\\"')
            lines = []

            def metric(name, kind, help_text, samples):
                lines.append("# HELP netmend_pod_poke_%s %s" % (name, help_text))
                lines.append("# TYPE netmend_pod_poke_%s %s" % (name, kind))
                lines.extend("netmend_pod_poke_%s %s" % (sample, _number(value)) for sample, value in samples)

            metric("sweeps_total", "counter", "Sweeps completed.", [("sweeps_total" + label, self.sweeps)])
            metric("targets", "gauge", "Pod addresses in the last sweep.", [("targets" + label, self.targets)])
            metric("unreachable", "gauge", "Pod addresses that did not answer in the last sweep.",
                   [("unreachable" + label, self.unreachable)])
            metric("mtu_blackholed", "gauge", "Pod addresses that answered small pings but not the DF probe.",
                   [("mtu_blackholed" + label, self.blackholed)])
            metric("sweep_duration_seconds", "gauge", "Wall time of the last sweep.",
                   [("sweep_duration_seconds" + label, self.duration)])
            metric("api_requests_total", "counter", "Kubernetes API list and watch requests made.",
                   [('api_requests_total{node="%s",verb="%s"}' % (self.node, verb), count)
                    for verb, count in sorted(self.requests.items())])
            samples = [('rtt_seconds_bucket{node="%s",le="%s"}' % (self.node, _number(bound)), count)
                       for bound, count in zip(RTT_BUCKETS, self.buckets)]
            samples.append(('rtt_seconds_bucket{node="%s",le="+Inf"}' % self.node, self.rtt_count))
            samples += [("rtt_seconds_sum" + label, self.rtt_sum), ("rtt_seconds_count" + label, self.rtt_count)]
            metric("rtt_seconds", "histogram", "Round-trip time of answered echo requests.", samples)
            return "\n".join(lines) + "\n"


def _number(value):
    return repr(float(value)) if isinstance(value, float) else str(value)


def serve_metrics(metrics, address, port, ready=lambda: True):
    """Serve /metrics and /healthz in a daemon thread; returns the server (its port may have been 0).

    /healthz answers 503 while ``ready()`` is false, for scrapers and humans; the
    kubelet's readiness probe reads the heartbeat instead, as for every agent.
    """

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path.split("?")[0] not in ("/metrics", "/healthz"):
                self.send_error(404)
                return
            status = 200
            if self.path.startswith("/metrics"):
                body = metrics.render().encode()
            else:
                status = 200 if ready() else 503
                body = b"ok\n" if status == 200 else b"not ready: no current pod list\n"
            self.send_response(status)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            return

    server = http.server.ThreadingHTTPServer((address, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server


# --------------------------------------------------------------------------- sweeps


def summarize(targets, outcome):
    """A sweep's figures, and a dict only for the targets that need one (unreachable, black-holed):
    at tens of thousands of targets a dict for each would be most of the agent's memory."""
    unreachable, blackholed, limited = [], [], 0
    for index, target in enumerate(targets):
        if not outcome.reachable(index):
            sent, _received, _rtt, error = outcome.small(index)
            unreachable.append(dict(target._asdict(), reason=error or ("timeout" if sent else "unsent")))
        elif outcome.mtu_probe:
            verdict, _mtu = outcome.mtu_result(index)
            if verdict == "blackholed":
                blackholed.append(target._asdict())
            elif verdict != "passed":
                limited += 1
    return {"total": len(targets), "reachable": len(targets) - len(unreachable), "unreachable": unreachable,
            "mtu_blackholed": blackholed, "mtu_limited": limited, "round_trips": outcome.round_trips(),
            "duration_s": round(outcome.duration, 3)}


class Sweeper:
    """One sweep per call: ping the current targets, update metrics, log what changed."""

    def __init__(self, targets, metrics, options, probe=poke.probe_addresses, log=agent.log):
        self.targets = targets
        self.metrics = metrics
        self.options = options
        self.probe = probe
        self.log = log
        self.down = set()

    def __call__(self):
        """One sweep; False (not doing its job) while the target set is stale."""
        targets = self.targets.snapshot()
        result = summarize(targets, self.probe([target.ip for target in targets], **self.options))
        self.metrics.observe(result)
        down = {}
        for entry in result["unreachable"]:
            down[(entry["ip"], entry.get("namespace", ""), entry.get("name", ""))] = entry
        for key in sorted(set(down) - self.down):
            entry = down[key]
            self.log(FIX, "unreachable", ip=entry["ip"], pod="%s/%s" % (entry.get("namespace"), entry.get("name")),
                     node=entry.get("node", ""), reason=entry["reason"])
        self.down = set(down)
        self.log(FIX, "sweep", targets=result["total"], reachable=result["reachable"],
                 unreachable=len(result["unreachable"]), mtu_blackholed=len(result["mtu_blackholed"]),
                 duration_s=result["duration_s"])
        return self.targets.current()


# --------------------------------------------------------------------------- entry point


def _csv(text):
    return [item.strip() for item in text.split(",") if item.strip()]


def build_parser():
    parser = argparse.ArgumentParser(prog="agent pod_poke", description=__doc__.splitlines()[0])
    parser.add_argument("--namespaces", type=_csv, default=[], help="only these namespaces (comma-separated; default all)")
    parser.add_argument("--exclude-namespaces", type=_csv, default=["kube-system"],
                        help="never these namespaces (default kube-system; empty string for none)")
    parser.add_argument("--label-selector", default="", help="only pods matching this label selector")
    parser.add_argument("--only-not-ready", action="store_true", help="skip pods that are Ready")
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between sweeps")
    parser.add_argument("--jitter", type=float, default=0.2, help="extra random fraction of the interval")
    parser.add_argument("--timeout", type=float, default=1.0, help="seconds to wait for answers")
    parser.add_argument("--count", type=int, default=1)
    parser.add_argument("--size", type=int, default=56)
    parser.add_argument("--mtu-probe", type=int, default=None, help="DF probe total packet size")
    parser.add_argument("--rate", type=float, default=None, help="packets per second cap")
    parser.add_argument("--metrics-address", default="", help="address to serve metrics on (default all)")
    parser.add_argument("--metrics-port", type=int, default=9477, help="0 picks a free port, -1 serves none")
    parser.add_argument("--watch-timeout", type=int, default=300, help="seconds per watch request")
    parser.add_argument("--max-stale", type=float, default=120.0,
                        help="seconds the watch may keep failing before the agent reports itself not ready")
    parser.add_argument("--max-iterations", type=int, default=None, help="stop after this many sweeps")
    parser.add_argument("--once", action="store_true", help="one sweep, then exit")
    return parser


def agent_main(argv, client=None, probe=poke.probe_addresses, stopper=None):
    args = build_parser().parse_args(argv)
    try:
        poke.check_options(args.timeout, args.count, args.size, args.mtu_probe, args.rate)
        pod_filter = PodFilter(args.namespaces, args.exclude_namespaces, args.label_selector, args.only_not_ready)
        client = client or KubeClient.from_environment()
    except (poke.PokeError, KubeError) as exc:
        agent.log(FIX, "cannot start", error=str(exc))
        return 2
    stopper = stopper or agent.Stopper().install()
    metrics = Metrics(os.environ.get("NODE_NAME", ""))
    # The first list happens in the watch thread, retried with a backoff: an API server
    # that is briefly unreachable makes the agent wait (not ready), not crash-loop.
    targets = PodTargets(client, pod_filter, args.watch_timeout, metrics, max_stale=args.max_stale)
    if args.metrics_port >= 0:
        server = serve_metrics(metrics, args.metrics_address, args.metrics_port, ready=targets.current)
        agent.log(FIX, "serving metrics", port=server.server_address[1])
    threading.Thread(target=targets.follow, args=(stopper,), name="watch", daemon=True).start()
    options = dict(timeout=args.timeout, count=args.count, size=args.size, mtu_probe=args.mtu_probe, rate=args.rate)
    sweeper = Sweeper(targets, metrics, options, probe=probe)
    while not targets.synced.wait(0.2):
        if stopper.stopped:
            return 0
    agent.log(FIX, "started", namespaces=",".join(args.namespaces) or "*",
              exclude=",".join(pod_filter.exclude_namespaces), selector=args.label_selector,
              only_not_ready=args.only_not_ready, interval=args.interval)
    try:
        agent.run_every(sweeper, args.interval, stopper, jitter=args.jitter,
                        max_iterations=1 if args.once else args.max_iterations)
    except poke.PokeError as exc:
        agent.log(FIX, "cannot ping", error=str(exc))
        return 1
    finally:
        stopper.event.set()
    return 0
