# Copyright: netmend.k8s contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark of the calico_mtu fix on the lab (root, lab cluster up).

    .venv/bin/python bench/calico_mtu.py [--pods 40] [--right-share 0.75] [--rewrites 5] [--interval 1]

1. Pods restarted: ``--pods`` pods on kwok-node-0, of which ``--right-share`` already
   have a host-side veth at the right MTU in a lab node namespace, plus a calico-node
   pod and a host-network pod (as on every real node). This fix's agent runs one pass
   and evicts what it finds; the seed's approach restarts every pod on the node except
   calico-node, counted from the same pod list by its rule.
2. Repair time: the agent runs continuously; the CNI config is rewritten without an
   MTU (what install-cni does when calico-node starts) ``--rewrites`` times, and the
   seconds until the file carries the MTU again are measured.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

import yaml
from kubernetes import client, config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

NODE = "kwok-node-0"
AGENT = "ansible_collections.netmend.k8s.plugins.module_utils.agent"
KUBECONFIG = os.environ.get("NETMEND_LAB_KUBECONFIG", os.path.expanduser("~/.cache/netmend-lab/kubeconfig"))
CONFLIST = '{\n  "name": "k8s-pod-network",\n  "plugins": [\n    {\n      "type": "calico",\n' \
           '      "log_level": "info"\n    }\n  ]\n}\n'
RIGHT_MTU, WRONG_MTU = 1440, 1500


def agent_argv(netns, sys_dir, *args):
    """The agent in the root network namespace (to reach the API on loopback), reading a sysfs
    mounted from inside the node namespace in a private mount namespace."""
    script = 'nsenter --net=/run/netns/"$1" mount -t sysfs sysfs "$2" && shift 2 && exec "$@"'
    return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script, "sh", netns, sys_dir,
            sys.executable, "-m", AGENT, "calico_mtu", "--sys-root", os.path.join(sys_dir, "class", "net"), *args]


def pod(name, labels=None, host_network=False):
    return {"metadata": {"name": name, "labels": labels or {"app": "bench"}},
            "spec": {"nodeName": NODE, "hostNetwork": host_network, "terminationGracePeriodSeconds": 0,
                     "containers": [{"name": "c", "image": "registry.invalid/none:1"}]}}


def wait_running(core, namespace, count, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        running = [p for p in core.list_namespaced_pod(namespace).items if p.status.phase == "Running"]
        if len(running) >= count:
            return
        time.sleep(0.5)
    raise SystemExit("pods did not become Running in %ss" % timeout)


def seed_restarts(pods):
    """The seed's rule: every pod on the node except those named calico-node-*."""
    return [p for p in pods if not p.metadata.name.startswith("calico-node-")]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--pods", type=int, default=40)
    parser.add_argument("--right-share", type=float, default=0.75)
    parser.add_argument("--rewrites", type=int, default=5)
    parser.add_argument("--interval", type=float, default=1.0)
    args = parser.parse_args()
    if REPO not in sys.path:
        sys.path.insert(0, REPO)
    from lab.netlab import Netlab  # the repository's lab package, not an installed one

    configuration = client.Configuration()
    config.load_kube_config(config_file=KUBECONFIG, client_configuration=configuration)
    api = client.ApiClient(configuration)
    core, rbac = client.CoreV1Api(api), client.RbacAuthorizationV1Api(api)
    namespace = "bench-mtu-" + uuid.uuid4().hex[:6]
    role = "netmend-bench-" + namespace
    with open(os.path.join(REPO, "roles", "calico_mtu", "vars", "main.yml"), encoding="utf-8") as handle:
        rules = yaml.safe_load(handle)["__calico_mtu_rbac_rules"]

    core.create_namespace({"metadata": {"name": namespace}})
    rbac.create_cluster_role({"metadata": {"name": role}, "rules": rules})
    rbac.create_cluster_role_binding({
        "metadata": {"name": role},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": [{"kind": "ServiceAccount", "name": "agent", "namespace": namespace}]})
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "agent"}})
    token = core.create_namespaced_service_account_token("agent", namespace, {"spec": {}}).status.token
    right = int(round(args.pods * args.right_share))
    names = ["app-%03d" % number for number in range(args.pods)]
    work = tempfile.mkdtemp(prefix="bench-calico-mtu-")
    try:
        for name in names:
            core.create_namespaced_pod(namespace, pod(name))
        core.create_namespaced_pod(namespace, pod("calico-node-bench", labels={"k8s-app": "calico-node"},
                                                  host_network=True))
        core.create_namespaced_pod(namespace, pod("kube-proxy-bench", host_network=True))
        wait_running(core, namespace, args.pods + 2)
        token_file = os.path.join(work, "token")
        with open(token_file, "w", encoding="utf-8") as handle:
            handle.write(token)
        conflist = os.path.join(work, "10-calico.conflist")
        with open(conflist, "w", encoding="utf-8") as handle:
            handle.write(CONFLIST)
        env = dict(os.environ, NODE_NAME=NODE, NETMEND_KUBE_HOST=configuration.host,
                   NETMEND_KUBE_TOKEN_FILE=token_file, NETMEND_KUBE_CA_FILE=configuration.ssl_ca_cert or "",
                   PYTHONPATH=os.path.join(REPO, ".build", "collections"))

        with Netlab() as lab:
            node = lab.add_node("bench")
            node.ip_cmd("link", "add", "eth0", "mtu", "1460", "type", "veth", "peer", "name", "uplink")
            node.ip_cmd("link", "set", "eth0", "up")
            for number, name in enumerate(names):
                lab.add_pod(node, name, "10.250.%d.%d" % (number // 250, number % 250 + 2), namespace=namespace,
                            mtu=RIGHT_MTU if number < right else WRONG_MTU)

            # 1. pods restarted
            on_node = core.list_namespaced_pod(namespace, field_selector="spec.nodeName=%s" % NODE).items
            seed = len(seed_restarts(on_node))
            sys_dir = os.path.join(work, "sys-once")
            os.mkdir(sys_dir)
            started = time.monotonic()
            once = subprocess.run(agent_argv(node.netns, sys_dir, "--path", conflist, "--once",
                                             "--eviction-timeout", "30"),
                                  env=env, capture_output=True, text=True, timeout=600, check=True)
            pass_seconds = time.monotonic() - started
            ours = sum(" evicted pod " in line for line in once.stdout.splitlines())

            # 2. seconds from a rewrite to its repair
            sys_dir = os.path.join(work, "sys-loop")
            os.mkdir(sys_dir)
            with open(os.path.join(work, "agent.log"), "w", encoding="utf-8") as log:
                loop = subprocess.Popen(agent_argv(node.netns, sys_dir, "--path", conflist,
                                                   "--interval", str(args.interval)),
                                        env=env, stdout=log, stderr=subprocess.STDOUT)
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
        rbac.delete_cluster_role_binding(role)
        rbac.delete_cluster_role(role)
        core.delete_namespace(namespace)

    wrong = args.pods - right
    result = {
        "pods_on_node": len(on_node),
        "pods_with_wrong_mtu": wrong,
        "restarted_by_this_fix": ours,
        "restarted_by_seed_approach": seed,
        "restart_ratio_seed_to_fix": round(seed / ours, 2) if ours else None,
        "one_pass_seconds": round(pass_seconds, 2),
        "agent_interval_seconds": args.interval,
        "repair_seconds": [round(value, 3) for value in repairs],
        "repair_seconds_median": round(statistics.median(repairs), 3),
        "repair_seconds_max": round(max(repairs), 3),
    }
    print("pods on %s: %d (%d with a wrong MTU, %d right, 1 calico-node, 1 host-network)"
          % (NODE, len(on_node), wrong, right))
    print("restarted by this fix: %d; by the seed's restart-all: %d; ratio %.2f"
          % (ours, seed, result["restart_ratio_seed_to_fix"] or 0))
    print("conflist rewrite to repair (interval %.1fs): median %.3fs, max %.3fs over %d rewrites"
          % (args.interval, result["repair_seconds_median"], result["repair_seconds_max"], len(repairs)))
    print(json.dumps(result))
    return 0 if ours == wrong else 1


if __name__ == "__main__":
    sys.exit(main())
