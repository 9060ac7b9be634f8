"""The lab cluster: real etcd, kube-apiserver, kube-controller-manager and kube-scheduler
built from Go modules, with KWOK simulating many nodes and a few real nodes (a real
kubelet and containerd each, see realnodes.py) running real pods.

    python lab/cluster.py up [--nodes N] [--real-nodes M]   build (cached) and start; idempotent
    python lab/cluster.py down             stop and delete, real nodes included; idempotent
    python lab/cluster.py status           exit 0 when the API answers and nodes are Ready

The kubeconfig is written to one known path (NETMEND_LAB_KUBECONFIG, default
~/.cache/netmend-lab/kubeconfig). Runs with the project's virtualenv Python
(it uses the kubernetes client to create the simulated nodes).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import images
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


def ensure_nodes(count):
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    core = client.CoreV1Api(api())
    for index in range(count):
        name = "%s%d" % (NODE_PREFIX, index)
        body = {
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
            "spec": {"podCIDR": "10.244.%d.0/24" % index, "podCIDRs": ["10.244.%d.0/24" % index]},
            "status": {"allocatable": {"cpu": "32", "memory": "256Gi", "pods": "110"},
                       "capacity": {"cpu": "32", "memory": "256Gi", "pods": "110"}},
        }
        try:
            core.read_node(name)
        except ApiException as exc:
            if exc.status != 404:
                raise
            core.create_node(body)
            say("node %s created" % name)


def nodes_ready(count):
    from kubernetes import client

    ready = 0
    for node in client.CoreV1Api(api()).list_node().items:
        if node.metadata.name.startswith(NODE_PREFIX):
            if any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or []):
                ready += 1
    return ready >= count


def wait(predicate, what, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(1)
    raise SystemExit("[lab cluster] timed out after %ss waiting for %s" % (timeout, what))


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
            "componentsPatches:",
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
            if "manage-nodes-with-annotation-selector" not in handle.read():
                say("%s was created before the real nodes (no SANs or KWOK node selector): recreating" % CLUSTER)
                realnodes.down()
                kwokctl(bins, "delete", "cluster", check=False, capture=True)
    if not api_ready():
        # A cluster that exists but does not answer (a reboot, a killed process) is recreated.
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
    wait(lambda: nodes_ready(count), "%d Ready nodes" % count)
    realnodes.up(real, KUBECONFIG, os.path.join(bins, "kube-%s" % v["KUBE_VERSION"]),
                 [images.build(name) for name in images.image_specs()], api())
    say("up in %.1fs; KUBECONFIG=%s" % (time.monotonic() - started, KUBECONFIG))


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
    names = [n.metadata.name for n in client.CoreV1Api(api()).list_node().items]
    say("up: %s, nodes %s, KUBECONFIG=%s" % (info.git_version, ",".join(sorted(names)), KUBECONFIG))
    topo = realnodes.Topology(CLUSTER)
    stopped = [n for n in topo.nodes() if not realnodes.running(topo, n)]
    if stopped:
        say("real nodes whose processes are gone: %s" % ",".join(stopped))
        return 1
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["up", "down", "status"])
    parser.add_argument("--nodes", type=int, default=int(os.environ.get("NETMEND_LAB_NODES", "3")))
    parser.add_argument("--real-nodes", type=int, default=int(os.environ.get("NETMEND_LAB_REAL_NODES", "2")))
    args = parser.parse_args(argv)
    if args.action == "up":
        up(args.nodes, args.real_nodes)
        return 0
    if args.action == "down":
        return down()
    return status()


if __name__ == "__main__":
    sys.exit(main())
