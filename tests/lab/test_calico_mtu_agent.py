# Copyright: netmend.k8s contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The calico_mtu agent against the lab API server, seeing a lab node's network namespace.

The node namespace holds Calico-style ``cali*`` veths named for real pods of
kwok-node-0, some at the right MTU and some not; the agent runs as a local process
reading that namespace's /sys/class/net (see ``run_agent``) with its own
service-account token. It must evict exactly the wrong-MTU pods of its node, while a
PodDisruptionBudget holds one of them back. A second test proves its RBAC.
"""
from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time

import pytest
import yaml

from ansible_collections.netmend.k8s.plugins.module_utils.kube_lite import KubeClient, KubeError, pods_path

# sibling test module (tests/lab is on sys.path)
from test_pod_poke_agent_cluster import wait_line

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NODE = "kwok-node-0"
AGENT = "ansible_collections.netmend.k8s.plugins.module_utils.agent"
CONFLIST = '{\n  "name": "k8s-pod-network",\n  "plugins": [\n    {\n      "type": "calico",\n' \
           '      "log_level": "info"\n    },\n    {\n      "type": "portmap"\n    }\n  ]\n}\n'

pytestmark = [pytest.mark.cluster, pytest.mark.netlab]


def rbac_rules():
    with open(os.path.join(REPO, "roles", "calico_mtu", "vars", "main.yml"), encoding="utf-8") as handle:
        return yaml.safe_load(handle)["__calico_mtu_rbac_rules"]


@pytest.fixture
def agent_account(kube_admin, namespace):
    """ServiceAccount `mtu-agent` in the test namespace, bound to the role's ClusterRole rules."""
    from kubernetes import client

    rbac = client.RbacAuthorizationV1Api(kube_admin)
    name = "netmend-test-calico-mtu-%s" % namespace
    rbac.create_cluster_role({"metadata": {"name": name}, "rules": rbac_rules()})
    rbac.create_cluster_role_binding({
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": "mtu-agent", "namespace": namespace}],
    })
    yield "mtu-agent"
    rbac.delete_cluster_role_binding(name)
    rbac.delete_cluster_role(name)


def make_pod(name, node=NODE, labels=None, host_network=False):
    return {
        "metadata": {"name": name, "labels": labels or {"app": name.rsplit("-", 1)[0]}},
        "spec": {"nodeName": node, "hostNetwork": host_network, "terminationGracePeriodSeconds": 0,
                 "containers": [{"name": "c", "image": "registry.invalid/none:1"}]},
    }


def agent_argv(netns, tmp_path, *args):
    """Run the agent seeing the node namespace's interfaces while reaching the API server on loopback.

    The lab API server listens on the root namespace's loopback, which a process
    inside the node namespace cannot reach. So the agent runs in the root network
    namespace but in a private mount namespace where /sys is a sysfs mounted from
    inside the node namespace: sysfs shows the network namespace of whoever
    mounted it, so --sys-root reads exactly the node's links and MTUs.
    """
    sys_dir = tmp_path / "node-sys"
    sys_dir.mkdir()
    script = 'nsenter --net=/run/netns/"$1" mount -t sysfs sysfs "$2" && shift 2 && exec "$@"'
    return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script, "sh", netns, str(sys_dir),
            sys.executable, "-m", AGENT, "calico_mtu", "--sys-root", str(sys_dir / "class" / "net"), *args]


def run_agent(netns, tmp_path, env, *args):
    return subprocess.run(agent_argv(netns, tmp_path, *args), env=env, capture_output=True, text=True, timeout=180,
                          check=False)


def wait_running(core, namespace, names, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pods = core.list_namespaced_pod(namespace).items
        running = {p.metadata.name for p in pods if p.status.phase == "Running"}
        if set(names) <= running:
            return
        time.sleep(0.5)
    pytest.fail("pods %s did not become Running" % sorted(set(names) - running))


def test_agent_evicts_exactly_the_wrong_mtu_pods(kube_admin, namespace, agent_account, agent_env, netlab, tmp_path):
    from kubernetes import client

    core = client.CoreV1Api(kube_admin)
    policy = client.PolicyV1Api(kube_admin)
    # name -> (node, host-side veth MTU, extras)
    pods = {
        "right-0": (NODE, 1440, {}), "right-1": (NODE, 1440, {}),
        "wrong-0": (NODE, 1500, {}), "wrong-1": (NODE, 1500, {}), "wrong-2": (NODE, 9000, {}),
        "guarded-0": (NODE, 1500, {}),
        "elsewhere-0": ("kwok-node-1", 1500, {}),  # another node's pod: not this agent's to restart
        "calico-node-0": (NODE, 1500, {"labels": {"k8s-app": "calico-node"}}),
        "hostnet-0": (NODE, 1500, {"host_network": True}),
    }
    for name, (node, _mtu, extras) in pods.items():
        core.create_namespaced_pod(namespace, make_pod(name, node, **extras))
    policy.create_namespaced_pod_disruption_budget(namespace, {
        "metadata": {"name": "guarded"},
        "spec": {"maxUnavailable": 0, "selector": {"matchLabels": {"app": "guarded"}}},
    })
    wait_running(core, namespace, pods)
    conflist = tmp_path / "10-calico.conflist"
    conflist.write_text(CONFLIST)

    node = netlab.add_node("node0")
    node.ip_cmd("link", "add", "eth0", "mtu", "1460", "type", "veth", "peer", "name", "uplink")
    node.ip_cmd("link", "set", "eth0", "up")
    for number, (name, (_node, mtu, _extras)) in enumerate(pods.items()):
        netlab.add_pod(node, name, "10.244.0.%d" % (number + 10), namespace=namespace, mtu=mtu)
    env = dict(agent_env(namespace, agent_account), NODE_NAME=NODE)
    done = run_agent(node.netns, tmp_path, env, "--path", str(conflist), "--interval", "1",
                     "--eviction-timeout", "30", "--max-iterations", "2")
    assert done.returncode == 0, done.stdout + done.stderr

    lines = done.stdout.splitlines()
    evicted = sorted(json.loads(line.split(" pod=")[1].split(" ")[0]) for line in lines if " evicted pod " in line)
    refused = [line for line in lines if "eviction refused by a PodDisruptionBudget" in line]
    assert evicted == ["wrong-0", "wrong-1", "wrong-2"], done.stdout
    assert len(refused) == 2 and all('pod="guarded-0"' in line for line in refused), done.stdout  # both passes
    assert sum(" set conflist mtu " in line for line in lines) == 1, done.stdout
    assert json.loads(conflist.read_text())["plugins"][0]["mtu"] == 1440  # eth0 1460 - IPIP 20
    assert conflist.read_text() == CONFLIST.replace('"log_level"', '"mtu": 1440,\n      "log_level"')
    remaining = {p.metadata.name for p in core.list_namespaced_pod(namespace).items if not p.metadata.deletion_timestamp}
    assert remaining == set(pods) - {"wrong-0", "wrong-1", "wrong-2"}


def test_agent_rbac_is_least_privilege(kube_admin, namespace, agent_account, agent_env):
    from kubernetes import client

    core = client.CoreV1Api(kube_admin)
    core.create_namespaced_pod(namespace, make_pod("target-0"))
    core.create_namespaced_secret(namespace, {"metadata": {"name": "private"}, "stringData": {"k": "v"}})
    agent = KubeClient.from_environment(agent_env(namespace, agent_account))

    # allowed: exactly what the agent does
    assert agent.get(pods_path(namespace) + "/target-0")["metadata"]["name"] == "target-0"
    listed = agent.list(pods_path(), fieldSelector="spec.nodeName=%s" % NODE)
    assert "target-0" in {p["metadata"]["name"] for p in listed["items"]}
    version = listed["metadata"]["resourceVersion"]
    assert list(agent.watch(pods_path(namespace), version, timeout_seconds=1)) is not None
    assert agent.evict(namespace, "target-0", dry_run=True) is True
    assert core.read_namespaced_pod("target-0", namespace).metadata.deletion_timestamp is None

    # refused: everything else
    refused = [
        ("GET", "/api/v1/namespaces/%s/secrets/private" % namespace, None),
        ("GET", "/api/v1/secrets", None),
        ("PATCH", "/api/v1/nodes/%s" % NODE, {"metadata": {"labels": {"x": "y"}}}),
        ("DELETE", pods_path(namespace) + "/target-0", None),
        ("PATCH", pods_path(namespace) + "/target-0", {"metadata": {"labels": {"x": "y"}}}),
        ("POST", pods_path(namespace), make_pod("intruder-0")),
    ]
    for method, path, body in refused:
        with pytest.raises(KubeError) as denied:
            agent.request(method, path, body=body)
        assert denied.value.status == 403, (method, path, str(denied.value))
    assert core.read_namespaced_pod("target-0", namespace).metadata.name == "target-0"


def test_agent_without_calico_config_waits_ready_then_applies(kube_admin, namespace, agent_account, agent_env,
                                                              netlab, tmp_path):
    """No net.d folder at all on the node: the agent runs, says so once, is ready, and acts when Calico arrives."""
    from kubernetes import client

    core = client.CoreV1Api(kube_admin)
    core.create_namespaced_pod(namespace, make_pod("wrong-0"))
    wait_running(core, namespace, ["wrong-0"])
    node = netlab.add_node("node0")
    node.ip_cmd("link", "add", "eth0", "mtu", "1460", "type", "veth", "peer", "name", "uplink")
    node.ip_cmd("link", "set", "eth0", "up")
    netlab.add_pod(node, "wrong-0", "10.244.0.10", namespace=namespace, mtu=1500)
    net_d = tmp_path / "cni" / "net.d"  # the folder the DaemonSet mounts is tmp_path / "cni"; net.d is missing
    (tmp_path / "cni").mkdir()
    conflist = net_d / "10-calico.conflist"
    env = dict(agent_env(namespace, agent_account), NODE_NAME=NODE, NETMEND_HEARTBEAT=str(tmp_path / "heartbeat"))

    def ready():
        done = subprocess.run([sys.executable, "-m", AGENT, "ready"], env=env, capture_output=True, text=True,
                              timeout=30, check=False)
        return done.returncode == 0

    proc = subprocess.Popen(agent_argv(node.netns, tmp_path, "--path", str(conflist), "--interval", "0.5",
                                       "--eviction-timeout", "30"),
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    try:
        wait_line(lines, r"calico_mtu no Calico CNI config on this node, waiting for it", timeout=30)
        deadline = time.monotonic() + 30
        while not ready():
            assert time.monotonic() < deadline, "the waiting agent never reported ready"
            time.sleep(0.5)
        time.sleep(2)  # several more passes: still waiting, still running, nothing touched
        assert proc.poll() is None
        assert not net_d.exists()
        assert ready()
        net_d.mkdir()
        conflist.write_text(CONFLIST)  # calico-node's install-cni arrives
        wait_line(lines, r"calico_mtu Calico CNI config appeared", timeout=30)
        wait_line(lines, r"calico_mtu set conflist mtu .*mtu=1440", timeout=30)
        wait_line(lines, r'calico_mtu evicted pod .*pod="wrong-0"', timeout=30)
        assert json.loads(conflist.read_text())["plugins"][0]["mtu"] == 1440
        assert ready()
    finally:
        proc.kill()
        proc.wait()
    seen = []
    while not lines.empty():
        seen.append(lines.get())
    assert sum("waiting for it" in line for line in seen) == 0  # logged once, before the part drained above
