"""The lab cluster: real etcd, kube-apiserver, kube-controller-manager and kube-scheduler
built from Go modules, with KWOK simulating many nodes and a few real nodes (a real
kubelet and containerd each, see realnodes.py) running real pods.

    python lab/cluster.py up [--nodes N] [--real-nodes M]   build (cached) and start with exactly N KWOK
                                                            nodes (default 3, at most 8,131: podcidrs.py); idempotent
    python lab/cluster.py down             stop and delete, real nodes included; idempotent
    python lab/cluster.py restart          stop and start the control plane (an outage, for tests)
    python lab/cluster.py status           exit 0 when the API answers and nodes are Ready

The kubeconfig is written to one known path (NETMEND_LAB_KUBECONFIG, default
~/.cache/netmend-lab/kubeconfig). Runs with the project's virtualenv Python
(it reads the kubeconfig with the kubernetes client). Nodes are created and deleted with
parallel plain HTTPS requests after one LIST: 5,000 nodes take seconds, not minutes.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import http.client
import json
import os
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse

import images
import podcidrs
import realnodes

HERE = os.path.dirname(os.path.abspath(__file__))
CACHE = os.environ.get("NETMEND_LAB_CACHE", os.path.expanduser("~/.cache/netmend-lab"))
KUBECONFIG = os.environ.get("NETMEND_LAB_KUBECONFIG", os.path.join(CACHE, "kubeconfig"))
CLUSTER = os.environ.get("NETMEND_LAB_CLUSTER", "netmend-lab")
WORKDIR = os.path.join(CACHE, "kwok")
NODE_PREFIX = "kwok-node-"
KWOK_ANNOTATION = ("kwok.x-k8s.io/node", "fake")  # the nodes KWOK simulates; real nodes lack it


def say(message):
    print("[lab cluster] %s" % message, flush=True)


def build():
    """Run the cached builds of what the cluster runs: binaries and the real nodes' images
    (promtool is the tests'). Returns the binaries' directory."""
    done = subprocess.run([os.path.join(HERE, "build.sh"), "etcd", "kwok", "kube", "images"], check=True,
                          stdout=subprocess.PIPE, text=True)
    return done.stdout.strip().splitlines()[-1]


def kwokctl(bins, *args, check=True, capture=False):
    v = images.versions()
    env = dict(os.environ, KWOK_WORKDIR=WORKDIR)
    argv = [os.path.join(bins, "kwok-%s" % v["KWOK_VERSION"], "kwokctl"), "--name", CLUSTER, *args]
    return subprocess.run(argv, check=check, env=env, text=True,
                          stdout=subprocess.PIPE if capture else None,
                          stderr=subprocess.PIPE if capture else None)


def api(timeout=5):
    from kubernetes import client, config  # the virtualenv's; only this script needs it

    configuration = client.Configuration()
    config.load_kube_config(config_file=KUBECONFIG, client_configuration=configuration)
    configuration.retries = 0
    return client.ApiClient(configuration)


def api_ready():
    if not os.path.exists(KUBECONFIG):
        return False
    try:
        from kubernetes import client

        client.VersionApi(api()).get_code(_request_timeout=3)
        return True
    except Exception:  # any failure means "not up"; status reports it
        return False


CONTROLLER_QPS = 300
NODE_LEASE_SECONDS = 600
# KWOK's stage and Lease workers (default 4; pods on nodes synced 1 at a time). At 16 a DaemonSet on 5,000
# KWOK nodes is Ready in about 2 minutes. (0eb6c74 once reverted a raise to 32 for pods left Terminating after
# a control plane restart; that was the Lease handover `restart` now does, not the parallelism.)
KWOK_PARALLELISM = 16
# Parallel requests while creating or deleting nodes: enough to keep the API server busy on two cores.
WORKERS = 16


def kwok_node_name(index):
    return "%s%d" % (NODE_PREFIX, index)


def kwok_node_index(name):
    """The index of a lab KWOK node's name, None for any other name."""
    suffix = name[len(NODE_PREFIX):] if name.startswith(NODE_PREFIX) else ""
    return int(suffix) if suffix.isdigit() and str(int(suffix)) == suffix else None


def kwok_node(index):
    name = kwok_node_name(index)
    cidr = podcidrs.kwok_pod_cidr(index)
    pods = str(podcidrs.kwok_max_pods(index))
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            # kwok's controller manages nodes carrying this annotation.
            "annotations": {"node.alpha.kubernetes.io/ttl": "0", KWOK_ANNOTATION[0]: KWOK_ANNOTATION[1]},
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "type": "kwok",
            },
        },
        "spec": {"podCIDR": cidr, "podCIDRs": [cidr]},
        "status": {"allocatable": {"cpu": "32", "memory": "256Gi", "pods": pods},
                   "capacity": {"cpu": "32", "memory": "256Gi", "pods": pods}},
    }


class RawApi:
    """Plain JSON over keep-alive HTTPS, one connection per thread, with the kubeconfig's client
    certificate: the kubernetes client spends several milliseconds of CPU per request, which
    at thousands of nodes costs more than the API server's own work."""

    def __init__(self):
        from kubernetes import client, config

        configuration = client.Configuration()
        config.load_kube_config(config_file=KUBECONFIG, client_configuration=configuration)
        url = urllib.parse.urlsplit(configuration.host)
        self.address = (url.hostname, url.port or 443)
        self.context = ssl.create_default_context(cafile=configuration.ssl_ca_cert)
        if configuration.cert_file:
            self.context.load_cert_chain(configuration.cert_file, configuration.key_file)
        self.headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if configuration.api_key.get("authorization"):
            self.headers["Authorization"] = configuration.api_key["authorization"]
        self.local = threading.local()

    def request(self, method, path, body=None, ok=(200, 201), raw=False):
        """The answer's status and JSON (bytes with `raw`); any status outside `ok` raises."""
        data = None if body is None else json.dumps(body).encode()
        for attempt in (1, 2):  # a kept-alive connection the server closed is reopened once
            connection = getattr(self.local, "connection", None)
            if connection is None:
                connection = http.client.HTTPSConnection(*self.address, context=self.context, timeout=60)
                self.local.connection = connection
            try:
                connection.request(method, path, body=data, headers=self.headers)
                response = connection.getresponse()
                answer = response.read()
                break
            except (http.client.HTTPException, ConnectionError):
                connection.close()
                self.local.connection = None
                if attempt == 2:
                    raise
        if response.status not in ok:
            raise RuntimeError("%s %s: HTTP %d %s" % (method, path, response.status, answer[:300]))
        return response.status, answer if raw else json.loads(answer) if answer else {}


def list_nodes(raw=None):
    """Every node as plain JSON, in one LIST."""
    return (raw or RawApi()).request("GET", "/api/v1/nodes")[1]["items"]


def _ours(node):
    """A KWOK node this script made: its name, KWOK's annotation and our label."""
    metadata = node["metadata"]
    return (kwok_node_index(metadata["name"]) is not None
            and (metadata.get("annotations") or {}).get(KWOK_ANNOTATION[0]) == KWOK_ANNOTATION[1]
            and (metadata.get("labels") or {}).get("type") == "kwok")


def _parallel(call, items):
    """Run call(item) on WORKERS threads; the first error ends the run."""
    with concurrent.futures.ThreadPoolExecutor(WORKERS) as pool:
        for _done in pool.map(call, items):
            pass


def ensure_nodes(count):
    """Exactly `count` KWOK nodes: kwok-node-0..count-1 created where missing, and kwok-node-<i>
    for i >= count deleted when they carry our mark. One LIST, then parallel creates or deletes."""
    if not 0 <= count <= podcidrs.MAX_KWOK_NODES:
        raise SystemExit("[lab cluster] --nodes must be 0 to %d (pod CIDRs inside %s), not %d"
                         % (podcidrs.MAX_KWOK_NODES, podcidrs.SCALE_POOL, count))
    started = time.monotonic()
    raw = RawApi()
    present = {node["metadata"]["name"]: node for node in list_nodes(raw)}
    missing = [index for index in range(count) if kwok_node_name(index) not in present]
    extra = sorted((name for name, node in present.items() if _ours(node) and kwok_node_index(name) >= count),
                   key=kwok_node_index)
    # 409: another `up` made it meanwhile; 404: already gone.
    _parallel(lambda index: raw.request("POST", "/api/v1/nodes", kwok_node(index), ok=(201, 409)), missing)
    _parallel(lambda name: raw.request("DELETE", "/api/v1/nodes/" + name, ok=(200, 202, 404)), extra)
    if missing or extra:
        elapsed = time.monotonic() - started
        say("%d KWOK nodes: %d created, %d deleted in %.1fs" % (count, len(missing), len(extra), elapsed))


def nodes_ready(count):
    ready = 0
    for node in list_nodes():
        if kwok_node_index(node["metadata"]["name"]) is not None:
            conditions = (node.get("status") or {}).get("conditions") or []
            if any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions):
                ready += 1
    return ready >= count


def wait(predicate, what, timeout=120, interval=1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise SystemExit("[lab cluster] timed out after %ss waiting for %s" % (timeout, what))


# What kwokctl_config() adds, as found in kwokctl's saved kwok.yaml: a cluster made without one is recreated.
CONFIG_MARKERS = (
    ("manage-nodes-with-annotation-selector", "the real nodes' SANs and KWOK node selector"),
    ("--kube-api-qps=%d" % CONTROLLER_QPS, "the controllers' API rate for thousands of nodes"),
    ("--node-lease-duration-seconds=%d" % NODE_LEASE_SECONDS, "KWOK's node leases for thousands of nodes"),
    ("podPlayStageParallelism: %d" % KWOK_PARALLELISM, "KWOK's parallelism for thousands of pods"),
)


def kwokctl_config():
    """kwokctl options the real nodes need: certificate SANs for the `kubernetes` Service
    address and the underlay gateway, and the API server reaching kubelets by address."""
    topo = realnodes.Topology(CLUSTER)
    path = os.path.join(CACHE, "kwokctl-%s.yaml" % CLUSTER)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("\n".join([
            "apiVersion: config.kwok.x-k8s.io/v1alpha1",
            "kind: KwokctlConfiguration",
            "options:",
            "  kubeApiserverCertSANs: [%s, %s]" % (realnodes.SERVICE_IP, topo.gateway),
            # KWOK renews every node's Lease each quarter of its duration, 4 at a time. kwokctl's 200 s (40 s
            # times its heartbeat factor 5) is 100 renewals a second at 5,000 nodes: on 2 busy cores KWOK fell
            # behind and 1,584 nodes went NotReady. 600 s is 33 a second; the controller manager's grace
            # period follows (a real node's kubelet keeps its own 40 s Lease, but is declared NotReady
            # only after 10 minutes too: no lab test stops one). The factor is 1 so these are the values.
            "  heartbeatFactor: 1",
            "  nodeLeaseDurationSeconds: %d" % NODE_LEASE_SECONDS,
            "  kubeControllerManagerNodeMonitorGracePeriodMilliseconds: %d" % (NODE_LEASE_SECONDS * 1000),
            "  kubeControllerManagerNodeMonitorPeriodMilliseconds: 25000",
            "componentsPatches:",
            # The controller manager and the scheduler send 20 and 50 requests a second by default: a
            # DaemonSet on 5,000 nodes would take minutes to get its pods created and bound. Large clusters
            # raise both; so does the lab (make lab-up NODES=5000).
            *("- name: %s\n  extraArgs:\n  - key: kube-api-qps\n    value: '%d'\n  - key: kube-api-burst\n"
              "    value: '%d'" % (component, CONTROLLER_QPS, 2 * CONTROLLER_QPS)
              for component in ("kube-controller-manager", "kube-scheduler")),
            "- name: kube-apiserver",
            "  extraArgs:",
            "  - key: kubelet-preferred-address-types",
            "    value: InternalIP,Hostname",
            # KWOK's binary runtime manages every node; a real node's kubelet must not
            # have to fight it for the node's Lease and pods (the KWOK nodes carry this annotation).
            "- name: kwok-controller",
            "  extraArgs:",
            "  - key: manage-all-nodes",
            "    value: 'false'",
            "    override: true",
            "  - key: manage-nodes-with-annotation-selector",
            "    value: %s=%s" % KWOK_ANNOTATION,
            # KWOK_PARALLELISM. kwokctl keeps this document as written (a field left out is 0, not its
            # default), so every worker count is set.
            "---",
            "apiVersion: config.kwok.x-k8s.io/v1alpha1",
            "kind: KwokConfiguration",
            "options:",
            "  podPlayStageParallelism: %d" % KWOK_PARALLELISM,
            "  nodePlayStageParallelism: %d" % KWOK_PARALLELISM,
            "  nodeLeaseParallelism: %d" % KWOK_PARALLELISM,
            "  podsOnNodeSyncParallelism: %d" % (KWOK_PARALLELISM // 4),
            "",
        ]))
    return path


def up(count, real):
    started = time.monotonic()
    bins = build()
    v = images.versions()
    saved = os.path.join(WORKDIR, "clusters", CLUSTER, "kwok.yaml")
    if api_ready() and os.path.exists(saved):
        with open(saved, encoding="utf-8") as handle:
            text = handle.read()
        lacking = [what for marker, what in CONFIG_MARKERS if marker not in text]
        if lacking:
            say("%s was created without %s: recreating" % (CLUSTER, " and ".join(lacking)))
            kwokctl(bins, "delete", "cluster", check=False, capture=True)  # its real nodes go below
    if not api_ready():
        # A cluster that exists but does not answer (a reboot, a killed process) is recreated, and its real
        # nodes with it: a kubelet registers its Node once, so one left running would never join the new one.
        realnodes.down()
        kwokctl(bins, "delete", "cluster", check=False, capture=True)
        os.makedirs(os.path.dirname(KUBECONFIG), exist_ok=True)
        kube = os.path.join(bins, "kube-%s" % v["KUBE_VERSION"])
        say("starting %s (Kubernetes %s, etcd %s, kwok %s)" % (CLUSTER, v["KUBE_VERSION"], v["ETCD_VERSION"], v["KWOK_VERSION"]))
        kwokctl(
            bins, "create", "cluster",
            "--runtime", "binary",
            "--kubeconfig", KUBECONFIG,
            "--config", kwokctl_config(),
            "--kube-apiserver-binary", os.path.join(kube, "kube-apiserver"),
            "--kube-controller-manager-binary", os.path.join(kube, "kube-controller-manager"),
            "--kube-scheduler-binary", os.path.join(kube, "kube-scheduler"),
            "--etcd-binary", os.path.join(bins, "etcd-%s" % v["ETCD_VERSION"], "etcd"),
            "--kwok-controller-binary", os.path.join(bins, "kwok-%s" % v["KWOK_VERSION"], "kwok"),
            "--wait", "120s",
        )
        wait(api_ready, "the API server")
    ensure_nodes(count)
    # Each check lists every node: fewer of them, and more time, for thousands. KWOK readies 4 nodes at a
    # time: 5,000 took 230 s on an idle machine, so a loaded one gets 0.2 s a node.
    wait(lambda: nodes_ready(count), "%d Ready nodes" % count, timeout=max(120, count // 5), interval=1 + count // 2500)
    realnodes.up(real, KUBECONFIG, os.path.join(bins, "kube-%s" % v["KUBE_VERSION"]),
                 [images.build(name) for name in images.image_specs()], api())
    say("up in %.1fs; KUBECONFIG=%s" % (time.monotonic() - started, KUBECONFIG))


LEASES = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases"


def kwok_leases(raw, names):
    """The Leases of the named nodes (a node's Lease has its name)."""
    return [lease for lease in raw.request("GET", LEASES)[1]["items"] if lease["metadata"]["name"] in names]


def release_leases(raw, names, holders):
    """Delete the named nodes' Leases that any of `holders` holds; True when none was left."""
    held = [lease["metadata"]["name"] for lease in kwok_leases(raw, names)
            if lease["spec"].get("holderIdentity") in holders]
    for name in held:
        raw.request("DELETE", "%s/%s" % (LEASES, name), ok=(200, 202, 404))
    return not held


def control_plane_pids():
    """The PIDs kwokctl recorded for the cluster's processes (etcd, the API server, the controllers, KWOK)."""
    folder = os.path.join(WORKDIR, "clusters", CLUSTER, "pids")
    pids = []
    for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        with open(os.path.join(folder, name), encoding="utf-8") as handle:
            text = handle.read().strip()
        if text.isdigit():
            pids.append(int(text))
    return pids


def alive(pid):
    """Whether a process runs (a zombie, its sockets closed, does not)."""
    try:
        with open("/proc/%d/stat" % pid, encoding="utf-8") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def restart():
    """Stop and start the whole control plane, KWOK included: the outage tests put agents through.

    A KWOK controller takes a new identity each time it starts and simulates only the nodes whose
    Lease it holds, so the restarted one would leave the KWOK nodes (their heartbeats, the deletion
    of their pods) alone until the old Leases expired: NODE_LEASE_SECONDS. The old controller's
    Leases are deleted before the stop, and again after the start should it have renewed one in
    between; the new controller creates its own at once (or on its next try, a quarter lease later)."""
    bins = build()
    raw = RawApi()
    # Only the Leases of the KWOK nodes this script made, and only their holders', are touched.
    names = {node["metadata"]["name"] for node in list_nodes(raw) if _ours(node)}
    holders = {lease["spec"].get("holderIdentity") for lease in kwok_leases(raw, names)} - {None}
    release_leases(raw, names, holders)
    stopped = control_plane_pids()
    kwokctl(bins, "stop", "cluster")
    # kwokctl signals and does not wait: an API server still shutting down holds its port, and the new one
    # fails to bind (seen at 5,000 nodes).
    wait(lambda: not any(map(alive, stopped)), "the stopped control plane's processes to exit")
    kwokctl(bins, "start", "cluster")
    wait(api_ready, "the API server")
    raw = RawApi()

    def taken_over():
        if not release_leases(raw, names, holders):
            return False
        return sum(1 for lease in kwok_leases(raw, names) if lease["spec"].get("holderIdentity")) == len(names)

    wait(taken_over, "KWOK's restarted controller to hold every KWOK node's Lease",
         timeout=NODE_LEASE_SECONDS // 4 + 60)
    say("restarted %s: %d KWOK nodes taken over" % (CLUSTER, len(names)))
    return 0


def down():
    bins = build()
    try:
        realnodes.down()
    finally:  # the control plane goes even when a real node leaves something behind
        result = kwokctl(bins, "delete", "cluster", check=False, capture=True)
        say("deleted %s" % CLUSTER if result.returncode == 0 else "nothing to delete")
    return 0


def status():
    if not api_ready():
        say("down")
        return 1
    from kubernetes import client

    info = client.VersionApi(api()).get_code()
    names = [n["metadata"]["name"] for n in list_nodes()]
    kwok = [name for name in names if kwok_node_index(name) is not None]
    say("up: %s, %d KWOK nodes, other nodes %s, KUBECONFIG=%s" % (
        info.git_version, len(kwok), ",".join(sorted(set(names) - set(kwok))) or "none", KUBECONFIG))
    topo = realnodes.Topology(CLUSTER)
    stopped = [n for n in topo.nodes() if not realnodes.running(topo, n)]
    if stopped:
        say("real nodes whose processes are gone: %s" % ",".join(stopped))
        return 1
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["up", "down", "status", "restart"])
    parser.add_argument("--nodes", type=int, default=int(os.environ.get("NETMEND_LAB_NODES", str(podcidrs.BASE_KWOK_NODES))),
                        help="KWOK nodes, exactly: missing ones are created, kwok-node-<i> for i >= N deleted "
                             "(default NETMEND_LAB_NODES or %d; at most %d, see podcidrs.py)"
                             % (podcidrs.BASE_KWOK_NODES, podcidrs.MAX_KWOK_NODES))
    parser.add_argument("--real-nodes", type=int, default=int(os.environ.get("NETMEND_LAB_REAL_NODES", "2")))
    args = parser.parse_args(argv)
    if args.action == "up":
        up(args.nodes, args.real_nodes)
        return 0
    if args.action == "down":
        return down()
    if args.action == "restart":
        return restart()
    return status()


if __name__ == "__main__":
    sys.exit(main())
