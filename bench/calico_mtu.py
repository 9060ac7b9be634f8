# Copyright: netmend.k8s contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark of the calico_mtu fix on the lab (root, lab cluster up).

    .venv/bin/python bench/calico_mtu.py [--pods 40] [--real-pods 12] [--right-share 0.75] [--wrong-together]
                                         [--pdb] [--rewrites 5] [--interval 1]

1. Pods restarted and seconds until every workload is Ready again, both ways executed.
   Each run gets a fresh namespace holding, on one node, ``--pods`` pods owned by
   controllers (a StatefulSet of a tenth of them, the rest in Deployments of up to 6
   replicas, all pinned to the node), a ``calico-node`` DaemonSet pod and a host-network
   DaemonSet pod (``ip-masq-agent``), as on every real node. ``--right-share`` of the pods
   with a veth of their own already have their host-side veth (``cali`` + sha1("ns.pod")[:11])
   at the right MTU, the others at the MTU of before: spread at random over the workloads
   (a fixed seed: the same positions by name in every run of that size), or with
   ``--wrong-together`` the first pods by name (the StatefulSet, then one Deployment after
   the other), which shows whether a workload loses several pods at once. Then, timed from
   the start of the action:

   - ours: the calico_mtu agent (``agent calico_mtu --once``, a real process, with the
     role's RBAC through a ServiceAccount token) makes one pass: it fixes the conflist and
     evicts, one at a time, the pods whose veth has another MTU. With ``--pdb`` every
     Deployment and StatefulSet has a PodDisruptionBudget (maxUnavailable 1); a refused
     eviction waits for a later pass, so the agent then runs every second until the last
     wrong-MTU pod is gone (the seed's deletes do not ask the budgets);
   - the seed's way (seeds/000): the conflist is fixed, then ``kubectl delete pod``, one
     pod after the other as its script does, of every pod on the node except those named
     ``calico-node-*`` (host-network pods included). Only the run's own namespace is
     touched here, never other pods on the lab's node.

   Pods restarted are counted from the API (the pods' uids before the action that are gone
   after it, each re-created by its controller); the seconds run from the start of the
   action until, after it ended, every controller reports all its replicas ready and every
   pod of the namespace is Ready with none terminating. Followed with a watch during that time:
   the most pods not Ready (missing, not Ready or terminating) at once, in all and of any one
   workload.

   On KWOK (``kwok-node-0``; KWOK makes pods Ready after its stage delays) the host-side
   veths live in a lab node namespace (eth0 1460, IPIP: right MTU 1440, before 1500) and a
   small stand-in for the CNI plugin keeps them in step with the pods: a new pod gets a veth
   at the current CNI MTU (the right one, since both ways fix the config first), a deleted
   pod loses its veth. On a real node (``--real-pods``, ``real-node-0``: kubelet, containerd
   and the lab's CNI, which names the veths the Calico way and gives every new pod MTU 1500)
   the right MTU is 1500 (the agent runs with ``--encapsulation none`` on the node's 1500-byte
   eth0) and the pods of before have their veth set to 1450. The agent reads the node's links
   through a sysfs mounted from inside its network namespace. A table prints, per way: the pods
   on the node, those at the wrong MTU, the pods restarted, the seconds the action took and
   until all was Ready, the most pods unready at once; then the ratio seed/ours of the pods
   restarted and of the seconds until all Ready. Exit status 1 when ours did not evict and restart
   exactly the wrong-MTU pods, each once, or left one at a wrong MTU.
2. Repair time: the agent runs continuously; the CNI config is rewritten without an
   MTU (what install-cni does when calico-node starts) ``--rewrites`` times, and the
   seconds until the file carries the MTU again are measured.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid

import yaml
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

NODE = "kwok-node-0"
AGENT = "ansible_collections.netmend.k8s.plugins.module_utils.agent"
KUBECONFIG = os.environ.get("NETMEND_LAB_KUBECONFIG", os.path.expanduser("~/.cache/netmend-lab/kubeconfig"))
CONFLIST = '{\n  "name": "k8s-pod-network",\n  "plugins": [\n    {\n      "type": "calico",\n' \
           '      "log_level": "info"\n    }\n  ]\n}\n'
RIGHT_MTU, WRONG_MTU = 1440, 1500  # KWOK: the lab node's eth0 1460 minus IPIP; the MTU of before
REAL_RIGHT_MTU, REAL_WRONG_MTU = 1500, 1450  # real node: what the lab's CNI gives new pods; the MTU of before
IMAGE = "python:3.13-slim"  # the lab's image (lab/images.py); KWOK runs nothing
SLEEP = ["sh", "-c", "trap 'exit 0' TERM; sleep infinity & wait"]
CALICO_NODE = "calico-node"
READY_TIMEOUT = 600


def agent_argv(netns, sys_dir, *args):
    """The agent in the root network namespace (to reach the API on loopback), reading a sysfs
    mounted from inside the node namespace in a private mount namespace."""
    script = 'nsenter --net=/run/netns/"$1" mount -t sysfs sysfs "$2" && shift 2 && exec "$@"'
    return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script, "sh", netns, sys_dir,
            sys.executable, "-m", AGENT, "calico_mtu", "--sys-root", os.path.join(sys_dir, "class", "net"), *args]


# ---------------------------------------------------------------------------
# Workloads
# ---------------------------------------------------------------------------

def template(labels, node, host_network=False, daemon=False):
    """A pod template pinned to ``node``: by nodeName, or (DaemonSets) by node affinity on its name."""
    spec = {"hostNetwork": host_network, "terminationGracePeriodSeconds": 10, "tolerations": [{"operator": "Exists"}],
            "containers": [{"name": "main", "image": IMAGE, "imagePullPolicy": "Never", "command": SLEEP}]}
    if daemon:
        spec["affinity"] = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}]}}}
    else:
        spec["nodeName"] = node
    return {"metadata": {"labels": labels}, "spec": spec}


def workloads(node, pods):
    """(kind, body) of the workloads: ``pods`` controller-owned pods, a calico-node and a host-network pod."""
    stateful = pods // 10
    rest = pods - stateful
    objects = []
    if stateful:
        objects.append(("statefulset", {
            "metadata": {"name": "db"},
            "spec": {"replicas": stateful, "serviceName": "db", "selector": {"matchLabels": {"app": "db"}},
                     "template": template({"app": "db"}, node)}}))
    number = 0
    while rest > 0:
        replicas = min(6, rest)
        name = "web-%d" % number
        objects.append(("deployment", {
            "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": template({"app": name}, node)}}))
        rest -= replicas
        number += 1
    for name, labels in ((CALICO_NODE, {"k8s-app": CALICO_NODE}), ("ip-masq-agent", {"k8s-app": "ip-masq-agent"})):
        objects.append(("daemonset", {
            "metadata": {"name": name},
            "spec": {"selector": {"matchLabels": labels}, "template": template(labels, node, True, daemon=True)}}))
    return objects


def pod_ready(pod):
    return pod.status.phase == "Running" and any(
        c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


def all_ready(core, apps, namespace, expected):
    """Whether every controller of the namespace has all its replicas ready and its ``expected`` pods are
    all Ready, none terminating; and the pods listed."""
    pods = core.list_namespaced_pod(namespace).items
    if len(pods) != expected or any(p.metadata.deletion_timestamp or not pod_ready(p) for p in pods):
        return False, pods
    for item in apps.list_namespaced_deployment(namespace).items + apps.list_namespaced_stateful_set(namespace).items:
        if (item.status.observed_generation or 0) < item.metadata.generation \
                or (item.status.ready_replicas or 0) != item.spec.replicas:
            return False, pods
    for item in apps.list_namespaced_daemon_set(namespace).items:
        if not item.status.desired_number_scheduled or item.status.number_ready != item.status.desired_number_scheduled:
            return False, pods
    return True, pods


def wait_all_ready(core, apps, namespace, expected, timeout=READY_TIMEOUT, interval=0.2):
    deadline = time.monotonic() + timeout
    while True:
        ready, pods = all_ready(core, apps, namespace, expected)
        if ready:
            return pods
        if time.monotonic() > deadline:
            raise SystemExit("the workloads of %s were not all Ready within %ss (%d pods, %d Ready)"
                             % (namespace, timeout, len(pods), sum(map(pod_ready, pods))))
        time.sleep(interval)


def own_veth(pod):
    """Whether the pod has a veth of its own (not host network)."""
    return not pod.spec.host_network


def delete_namespace(core, namespace, wait=True, timeout=180):
    try:
        core.delete_namespace(namespace)
    except ApiException as exc:
        if exc.status != 404:
            raise
    deadline = time.monotonic() + timeout
    while wait and time.monotonic() < deadline:
        try:
            core.read_namespace(namespace)
        except ApiException as exc:
            if exc.status == 404:
                return
            raise
        time.sleep(0.5)


# ---------------------------------------------------------------------------
# Veths: a CNI stand-in on KWOK, the real CNI's veths on a real node
# ---------------------------------------------------------------------------

class KwokCni(threading.Thread):
    """Keeps one host-side veth (peer in the same namespace) per pod with a veth of its own, in a lab node
    namespace: a new pod gets one at ``mtu`` (the current CNI MTU), a gone pod loses it."""

    def __init__(self, core, namespace, node_host, mtu, veth_name):
        super().__init__(daemon=True)
        self.core, self.namespace, self.node, self.mtu, self.veth_name = core, namespace, node_host, mtu, veth_name
        self.links = {}  # veth name -> pod uid
        self.stop = threading.Event()
        self.error = None

    def sync(self, mtu_of=None):
        pods = [p for p in self.core.list_namespaced_pod(self.namespace).items if own_veth(p)]
        wanted = {self.veth_name(p.metadata.name, self.namespace): p for p in pods}
        lines = []
        for veth, uid in list(self.links.items()):
            if veth not in wanted or wanted[veth].metadata.uid != uid:
                lines.append("link del %s" % veth)
                del self.links[veth]
        for veth, pod in sorted(wanted.items()):
            if veth not in self.links:
                mtu = mtu_of(pod) if mtu_of else self.mtu
                lines += ["link add %s mtu %d type veth peer name p%s mtu %d" % (veth, mtu, veth[4:], mtu),
                          "link set %s up" % veth]
                self.links[veth] = pod.metadata.uid
        self.node.batch(lines)

    def run(self):
        try:
            while not self.stop.wait(0.2):
                self.sync()
        except Exception as exc:  # reported by the bench after the run
            self.error = exc


def link_mtus(netns):
    """{name: mtu} of the links in a network namespace."""
    out = subprocess.run(["ip", "-n", netns, "-j", "link", "show"], capture_output=True, text=True, check=True).stdout
    return {link["ifname"]: link["mtu"] for link in json.loads(out)}


def wrong_mtu_left(pods, netns, right, veth_name):
    """How many of ``pods`` have a host-side veth at another MTU than ``right``."""
    mtus = link_mtus(netns)
    veths = [veth_name(p.metadata.name, p.metadata.namespace) for p in pods if own_veth(p)]
    return sum(1 for veth in veths if mtus.get(veth, right) != right)


class Unavailable(threading.Thread):
    """Follows the namespace's pods with a watch while an action runs and keeps the most pods not Ready
    (missing, not Ready or terminating) at once: in all, and of any one workload."""

    def __init__(self, core, namespace, expected):
        super().__init__(daemon=True)
        self.core, self.namespace, self.expected = core, namespace, expected
        self.most, self.most_of_one = 0, 0
        self.stop = threading.Event()
        self.error = None
        listed = core.list_namespaced_pod(namespace)  # before the action, when every pod is Ready
        self.version = listed.metadata.resource_version
        self.pods = dict(map(self.state, listed.items))
        self.wanted = self.count()

    @staticmethod
    def state(pod):
        labels = pod.metadata.labels or {}
        return pod.metadata.uid, (labels.get("app") or labels.get("k8s-app"),
                                  pod_ready(pod) and not pod.metadata.deletion_timestamp)

    def count(self):
        ready = {}
        for app, up in self.pods.values():
            ready[app] = ready.get(app, 0) + up
        return ready

    def run(self):
        try:
            while not self.stop.is_set():
                for event in watch.Watch().stream(self.core.list_namespaced_pod, self.namespace, timeout_seconds=1,
                                                  resource_version=self.version, allow_watch_bookmarks=False):
                    pod = event["object"]
                    self.version = pod.metadata.resource_version
                    uid, value = self.state(pod)
                    if event["type"] == "DELETED":
                        self.pods.pop(uid, None)
                    else:
                        self.pods[uid] = value
                    ready = self.count()
                    self.most = max(self.most, self.expected - sum(ready.values()))
                    self.most_of_one = max([self.most_of_one] + [count - ready.get(app, 0)
                                                                 for app, count in self.wanted.items()])
        except Exception as exc:  # reported by the bench after the run
            self.error = exc


# ---------------------------------------------------------------------------
# One run: set up, act (ours or the seed's), measure
# ---------------------------------------------------------------------------

class Run:
    """One way (ours or seed) on one kind of node (kwok or real), in a namespace of its own."""

    def __init__(self, bench, kind, way):
        self.bench, self.kind, self.way = bench, kind, way
        self.namespace = "%s-%s-%s" % (bench.prefix, way, kind)
        self.real = kind == "real"
        self.node = bench.real_node if self.real else NODE
        self.pods = bench.args.real_pods if self.real else bench.args.pods
        self.expected = self.pods + 2
        self.right, self.wrong = (REAL_RIGHT_MTU, REAL_WRONG_MTU) if self.real else (RIGHT_MTU, WRONG_MTU)
        self.result = None
        self.refused = 0
        self.evicted = []
        self.netns = self.cni = self.conflist = self.log = None
        self.wrong_count, self.wrong_uids = 0, set()

    def setup(self):
        bench = self.bench
        bench.core.create_namespace({"metadata": {"name": self.namespace, "labels": {"netmend.bench": "calico-mtu"}}})
        bench.namespaces.append(self.namespace)
        create = {"deployment": bench.apps.create_namespaced_deployment,
                  "statefulset": bench.apps.create_namespaced_stateful_set,
                  "daemonset": bench.apps.create_namespaced_daemon_set}
        for kind, body in workloads(self.node, self.pods):
            create[kind](self.namespace, body)
        if bench.args.pdb:
            for kind, body in workloads(self.node, self.pods):
                if kind != "daemonset":
                    bench.policy.create_namespaced_pod_disruption_budget(self.namespace, {
                        "metadata": {"name": body["metadata"]["name"]},
                        "spec": {"maxUnavailable": 1, "selector": body["spec"]["selector"]}})
        pods = wait_all_ready(bench.core, bench.apps, self.namespace, self.expected)
        if bench.args.pdb:
            deadline = time.monotonic() + READY_TIMEOUT
            while any(not item.status.disruptions_allowed
                      for item in bench.policy.list_namespaced_pod_disruption_budget(self.namespace).items):
                if time.monotonic() > deadline:
                    raise SystemExit("the PodDisruptionBudgets of %s allow no disruption" % self.namespace)
                time.sleep(0.5)
        with_veth = sorted(p.metadata.name for p in pods if own_veth(p))
        count = len(with_veth) - int(round(len(with_veth) * bench.args.right_share))
        # Spread at random over the workloads, or (--wrong-together) the first pods by name: whole workloads.
        wrong = set(with_veth[:count] if bench.args.wrong_together else random.Random(15).sample(with_veth, count))
        self.wrong_count = len(wrong)
        self.wrong_uids = {p.metadata.uid for p in pods if p.metadata.name in wrong}
        if self.real:
            self.netns = bench.topology.netns(self.node)
            veths = {bench.veth_name(name, self.namespace): name for name in with_veth}
            deadline = time.monotonic() + 60
            while not set(veths) <= set(link_mtus(self.netns)):
                if time.monotonic() > deadline:
                    raise SystemExit("the real pods' veths did not appear in %s" % self.netns)
                time.sleep(0.5)
            for veth, name in veths.items():
                if name in wrong:
                    subprocess.run(["ip", "-n", self.netns, "link", "set", veth, "mtu", str(self.wrong)], check=True)
            self.cni = None
        else:
            host = bench.lab.add_node("%s-%s" % (self.way, self.kind))
            host.ip_cmd("link", "add", "eth0", "mtu", "1460", "type", "veth", "peer", "name", "uplink")
            host.ip_cmd("link", "set", "eth0", "up")
            self.netns = host.netns
            self.cni = KwokCni(bench.core, self.namespace, host, self.right, bench.veth_name)
            self.cni.sync(lambda pod: self.wrong if pod.metadata.name in wrong else self.right)
        self.conflist = os.path.join(bench.work, "%s-%s.conflist" % (self.way, self.kind))
        with open(self.conflist, "w", encoding="utf-8") as handle:
            handle.write(CONFLIST)

    def act_ours(self):
        bench = self.bench
        sys_dir = os.path.join(bench.work, "sys-%s-%s" % (self.way, self.kind))
        os.mkdir(sys_dir)
        args = ["--path", self.conflist, "--eviction-timeout", "60"]
        if self.real:
            args += ["--encapsulation", "none"]
        env = dict(bench.env, NODE_NAME=self.node)
        if not bench.args.pdb:
            done = subprocess.run(agent_argv(self.netns, sys_dir, *args, "--once"), env=env, capture_output=True,
                                  text=True, timeout=900, check=True)
            self.log = done.stdout
        else:
            # A refused eviction waits for a later pass: the agent runs every second until the last wrong-MTU pod is gone.
            log_path = os.path.join(bench.work, "agent-%s-%s.log" % (self.way, self.kind))
            with open(log_path, "w", encoding="utf-8") as log:
                agent = subprocess.Popen(agent_argv(self.netns, sys_dir, *args, "--interval", "1"), env=env, stdout=log,
                                         stderr=subprocess.STDOUT)
            try:
                deadline = time.monotonic() + READY_TIMEOUT
                while self.wrong_uids & {p.metadata.uid for p in bench.core.list_namespaced_pod(self.namespace).items}:
                    if time.monotonic() > deadline or agent.poll() is not None:
                        raise SystemExit("the agent left wrong-MTU pods in %s" % self.namespace)
                    time.sleep(0.2)
            finally:
                agent.terminate()
                agent.wait(timeout=30)
            with open(log_path, encoding="utf-8") as log:
                self.log = log.read()
        lines = self.log.splitlines()
        self.refused = sum("eviction refused by a PodDisruptionBudget" in line for line in lines)
        self.evicted = [line.split(' pod="', 1)[1].split('"', 1)[0] for line in lines
                        if " evicted pod " in line and " evicted pod still terminating" not in line]
        return len(self.evicted)

    def act_seed(self):
        """The seed's script: the MTU into the conflist, then ``kubectl delete pod`` of every pod on the node
        but calico-node-*, one after the other."""
        with open(self.conflist, "w", encoding="utf-8") as handle:
            handle.write(CONFLIST.replace('"log_level": "info"', '"log_level": "info",\n      "mtu": %d' % self.right))
        listed = self.bench.core.list_namespaced_pod(self.namespace, field_selector="spec.nodeName=%s" % self.node).items
        deleted = 0
        for pod in listed:
            if pod.metadata.name.startswith(CALICO_NODE + "-"):
                continue  # "Calico Pod must not be restarted"
            subprocess.run([self.bench.kubectl, "--kubeconfig", KUBECONFIG, "delete", "pod", "-n", self.namespace,
                            pod.metadata.name], capture_output=True, text=True, timeout=300, check=True)
            deleted += 1
        return deleted

    def measure(self):
        bench = self.bench
        before = {p.metadata.uid for p in bench.core.list_namespaced_pod(self.namespace).items}
        if self.cni:
            self.cni.start()
        sampler = Unavailable(bench.core, self.namespace, self.expected)
        started = time.monotonic()
        sampler.start()
        acted = self.act_ours() if self.way == "ours" else self.act_seed()
        action = time.monotonic() - started
        pods = wait_all_ready(bench.core, bench.apps, self.namespace, self.expected)
        ready = time.monotonic() - started
        sampler.stop.set()
        sampler.join(timeout=10)
        if sampler.error:
            raise sampler.error
        if self.cni:
            self.cni.stop.set()
            self.cni.join(timeout=10)
            if self.cni.error:
                raise self.cni.error
            self.cni.sync()
        after = {p.metadata.uid for p in pods}
        self.result = {
            "kind": self.kind, "way": self.way, "node": self.node, "pods_on_node": len(before),
            "pods_at_wrong_mtu": self.wrong_count, "acted_on": acted, "evictions_refused_by_pdb": self.refused,
            "evicted": self.evicted,
            "pods_restarted": len(before - after), "pods_recreated": len(after - before),
            "action_seconds": round(action, 2), "seconds_until_all_ready": round(ready, 2),
            "most_pods_unready_at_once": sampler.most, "most_of_one_workload_unready_at_once": sampler.most_of_one,
            "wrong_mtu_left": wrong_mtu_left(pods, self.netns, self.right, bench.veth_name),
        }
        return self.result


class Bench:
    """What every run shares: the options, the API clients, the lab, the agent's environment."""

    def __init__(self, args):
        self.args = args
        self.namespaces = []  # every namespace created, deleted at the end
        self.lab = self.real_node = self.topology = None
        self.core = self.apps = self.policy = None
        self.veth_name = self.kubectl = self.prefix = self.work = self.env = None


def real_node_of(core):
    """The first Ready real node of the lab, or None."""
    names = sorted(n.metadata.name for n in core.list_node(label_selector="netmend.lab/real=true").items
                   if any(c.type == "Ready" and c.status == "True" for c in n.status.conditions or []))
    return names[0] if names else None


def print_table(results):
    header = ("nodes", "way", "node", "pods on node", "pods at wrong MTU", "pods restarted", "action s", "s until all Ready",
              "most unready at once (one workload)")
    rows = [header] + [(row["kind"], row["way"], row["node"], str(row["pods_on_node"]), str(row["pods_at_wrong_mtu"]),
                        str(row["pods_restarted"]), "%.2f" % row["action_seconds"], "%.2f" % row["seconds_until_all_ready"],
                        "%d (%d)" % (row["most_pods_unready_at_once"], row["most_of_one_workload_unready_at_once"]))
                       for row in results]
    widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
    for row in rows:
        print("  ".join(cell.ljust(width) if column < 3 else cell.rjust(width)
                        for column, (cell, width) in enumerate(zip(row, widths))))
    ratios = {}
    for kind in ("kwok", "real"):
        rows = {row["way"]: row for row in results if row["kind"] == kind}
        if set(rows) != {"ours", "seed"}:
            continue
        ours, seed = rows["ours"], rows["seed"]
        ratios[kind] = {
            "restarted_seed_to_ours": round(seed["pods_restarted"] / ours["pods_restarted"], 2)
            if ours["pods_restarted"] else None,
            "ready_seconds_seed_to_ours": round(seed["seconds_until_all_ready"] / ours["seconds_until_all_ready"], 2)
            if ours["seconds_until_all_ready"] else None}
        print("%-6s ratio seed/ours: pods restarted %s, seconds until all Ready %s"
              % (kind, ratios[kind]["restarted_seed_to_ours"], ratios[kind]["ready_seconds_seed_to_ours"]))
    return ratios


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--pods", type=int, default=40, help="controller-owned pods per KWOK run")
    parser.add_argument("--real-pods", type=int, default=12, help="controller-owned pods per real-node run (0: none)")
    parser.add_argument("--right-share", type=float, default=0.75)
    parser.add_argument("--pdb", action="store_true",
                        help="a PodDisruptionBudget (maxUnavailable 1) per Deployment and StatefulSet; ours runs until done")
    parser.add_argument("--wrong-together", action="store_true",
                        help="the wrong-MTU pods are the first by name (whole workloads), not spread at random")
    parser.add_argument("--rewrites", type=int, default=5)
    parser.add_argument("--interval", type=float, default=1.0)
    args = parser.parse_args()
    if REPO not in sys.path:
        sys.path.insert(0, REPO)
    from lab import images, realnodes  # the repository's lab package, not an installed one
    from lab.netlab import Netlab, calico_veth_name

    bench = Bench(args)
    configuration = client.Configuration()
    config.load_kube_config(config_file=KUBECONFIG, client_configuration=configuration)
    api = client.ApiClient(configuration)
    core, rbac = client.CoreV1Api(api), client.RbacAuthorizationV1Api(api)
    bench.core, bench.apps, bench.policy = core, client.AppsV1Api(api), client.PolicyV1Api(api)
    bench.veth_name = calico_veth_name
    bench.kubectl = os.path.join(realnodes.CACHE, "bin", "kube-%s" % images.versions()["KUBE_VERSION"], "kubectl")
    bench.prefix = "bench-mtu-" + uuid.uuid4().hex[:6]
    bench.topology = realnodes.Topology()  # its cluster name from NETMEND_LAB_CLUSTER, as lab/cluster.py reads it
    namespace = bench.prefix
    role = "netmend-bench-" + namespace
    with open(os.path.join(REPO, "roles", "calico_mtu", "vars", "main.yml"), encoding="utf-8") as handle:
        rules = yaml.safe_load(handle)["__calico_mtu_rbac_rules"]

    bench.work = work = tempfile.mkdtemp(prefix="bench-calico-mtu-")
    results, real_note = [], None
    core.create_namespace({"metadata": {"name": namespace}})
    bench.namespaces.append(namespace)
    try:
        rbac.create_cluster_role({"metadata": {"name": role}, "rules": rules})
        rbac.create_cluster_role_binding({
            "metadata": {"name": role},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": [{"kind": "ServiceAccount", "name": "agent", "namespace": namespace}]})
        core.create_namespaced_service_account(namespace, {"metadata": {"name": "agent"}})
        token = core.create_namespaced_service_account_token("agent", namespace, {"spec": {}}).status.token
        token_file = os.path.join(work, "token")
        with open(token_file, "w", encoding="utf-8") as handle:
            handle.write(token)
        bench.env = dict(os.environ, NETMEND_KUBE_HOST=configuration.host, NETMEND_KUBE_TOKEN_FILE=token_file,
                         NETMEND_KUBE_CA_FILE=configuration.ssl_ca_cert or "",
                         PYTHONPATH=os.path.join(REPO, ".build", "collections"))
        kinds = ["kwok"]
        if args.real_pods:
            bench.real_node = real_node_of(core)
            if bench.real_node:
                kinds.append("real")
            else:
                real_note = "no Ready real node (label netmend.lab/real=true) in this lab: real pods not measured"

        with Netlab() as lab:
            bench.lab = lab
            # 1. pods restarted and seconds until all Ready, each way executed on its own identical workloads
            for kind in kinds:
                for way in ("ours", "seed"):
                    run = Run(bench, kind, way)
                    run.setup()
                    results.append(run.measure())
                    print("%s: %s" % (run.namespace, json.dumps(run.result)), flush=True)
                    if way == "ours" and run.result["acted_on"] != run.result["pods_restarted"]:
                        print("the agent's log of that run:\n" + run.log, flush=True)
                    delete_namespace(core, run.namespace)

            # 2. seconds from a rewrite to its repair
            node = lab.add_node("rewrites")
            node.ip_cmd("link", "add", "eth0", "mtu", "1460", "type", "veth", "peer", "name", "uplink")
            node.ip_cmd("link", "set", "eth0", "up")
            conflist = os.path.join(work, "10-calico.conflist")
            with open(conflist, "w", encoding="utf-8") as handle:
                handle.write(CONFLIST)
            sys_dir = os.path.join(work, "sys-loop")
            os.mkdir(sys_dir)
            with open(os.path.join(work, "agent.log"), "w", encoding="utf-8") as log:
                loop = subprocess.Popen(agent_argv(node.netns, sys_dir, "--path", conflist,
                                                   "--interval", str(args.interval)),
                                        env=dict(bench.env, NODE_NAME=NODE), stdout=log, stderr=subprocess.STDOUT)
            repairs = []
            try:
                time.sleep(args.interval * 2)
                for _rewrite in range(args.rewrites):
                    with open(conflist, "w", encoding="utf-8") as handle:
                        handle.write(CONFLIST)
                    rewritten = time.monotonic()
                    while True:
                        with open(conflist, encoding="utf-8") as handle:
                            if '"mtu": %d' % RIGHT_MTU in handle.read():
                                break
                        if time.monotonic() - rewritten > 10 * args.interval + 10:
                            raise SystemExit("the agent did not repair the file")
                        time.sleep(0.01)
                    repairs.append(time.monotonic() - rewritten)
                    time.sleep(args.interval * 0.37)  # land the next rewrite at another point of the interval
            finally:
                loop.terminate()
                loop.wait(timeout=30)
    finally:
        for created in reversed(bench.namespaces):
            delete_namespace(core, created, wait=False)
        for delete in (rbac.delete_cluster_role_binding, rbac.delete_cluster_role):
            try:
                delete(role)
            except ApiException as exc:
                if exc.status != 404:
                    raise
        shutil.rmtree(work, ignore_errors=True)

    print()
    ratios = print_table(results)
    if real_note:
        print(real_note)
    print("conflist rewrite to repair (interval %.1fs): median %.3fs, max %.3fs over %d rewrites"
          % (args.interval, statistics.median(repairs), max(repairs), len(repairs)))
    print(json.dumps({"runs": results, "ratios_seed_to_ours": ratios, "real_nodes": real_note or bench.real_node,
                      "agent_interval_seconds": args.interval, "repair_seconds": [round(value, 3) for value in repairs],
                      "repair_seconds_median": round(statistics.median(repairs), 3),
                      "repair_seconds_max": round(max(repairs), 3)}))
    ours_right = all(row["pods_restarted"] == row["acted_on"] == row["pods_at_wrong_mtu"] and row["wrong_mtu_left"] == 0
                     for row in results if row["way"] == "ours")
    return 0 if ours_right else 1


if __name__ == "__main__":
    sys.exit(main())
