"""Agents on real nodes through faults: the control plane restarts, a kubelet restarts,
a node joins while the agent's DaemonSet exists."""
from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
import test_real_pod_poke  # sibling test module (tests/lab is on sys.path)
from real_pods import agent_pods, wait_for  # sibling helper module
from test_real_pod_poke import AGENT_NAMESPACE, DAEMONSET, METRICS_PORT, metric

from lab import images, realnodes

pytestmark = [pytest.mark.cluster, pytest.mark.netlab]

# The pod_poke agent of test_real_pod_poke, deployed once for this module too.
poke_agent = test_real_pod_poke.poke_agent
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def restart_control_plane():
    """etcd, the API server, the controllers and KWOK stopped and started (lab/cluster.py restart,
    which also hands the KWOK nodes to the restarted KWOK controller)."""
    done = subprocess.run([sys.executable, os.path.join(REPO, "lab", "cluster.py"), "restart"],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def restarts(core, names_by_node):
    return {node: core.read_namespaced_pod(pod.metadata.name, AGENT_NAMESPACE).status.container_statuses[0].restart_count
            for node, pod in names_by_node.items()}


def sees_targets(pod_exec, namespace, reader, agent_pod, node, count):
    url = "http://%s:%d/metrics" % (agent_pod.status.pod_ip, METRICS_PORT)
    code = "import urllib.request; print(urllib.request.urlopen(%r, timeout=5).read().decode())" % url
    text, rc = pod_exec(namespace, reader, ["python3", "-c", code])
    return rc == 0 and metric(text, "targets", node) == count and metric(text, "unreachable", node) == 0


def test_agents_survive_a_control_plane_restart(poke_agent, kube_admin, real_pod, pod_exec, module_namespace,
                                                real_nodes):
    namespace = module_namespace
    from kubernetes import client

    core = client.CoreV1Api(kube_admin)
    real_pod(namespace, "reader", real_nodes[1], ["sleep", "3600"])
    real_pod(namespace, "before", real_nodes[1], ["sleep", "3600"], labels={"role": "target"})
    agent = poke_agent[real_nodes[0]]
    wait_for(lambda: sees_targets(pod_exec, namespace, "reader", agent, real_nodes[0], 1), "one target")
    before = restarts(core, poke_agent)

    restart_control_plane()
    wait_for(lambda: realnodes_ready(core, real_nodes), "the real nodes Ready again", timeout=120)

    # The watch is re-established: a pod created after the restart becomes a target.
    real_pod(namespace, "after", real_nodes[1], ["sleep", "3600"], labels={"role": "target"})
    wait_for(lambda: sees_targets(pod_exec, namespace, "reader", agent, real_nodes[0], 2),
             "the agent to find the pod created after the restart", timeout=120)
    assert restarts(core, poke_agent) == before, "an agent restarted (crashed) across the API server restart"


def realnodes_ready(core, names):
    ready = {n.metadata.name for n in core.list_node(label_selector=realnodes.LABEL).items
             if any(c.type == "Ready" and c.status == "True" for c in n.status.conditions or [])}
    return set(names) <= ready


def test_agents_survive_a_kubelet_restart(poke_agent, kube_admin, real_pod, pod_exec, module_namespace, real_nodes,
                                          real_topology):
    namespace = module_namespace
    from kubernetes import client

    core = client.CoreV1Api(kube_admin)
    node = real_nodes[1]
    kubelets = [pid for pid in realnodes.node_processes(real_topology, node)
                if realnodes._read("/proc/%d/comm" % pid).strip() == "kubelet"]
    assert len(kubelets) == 1, kubelets
    before = restarts(core, poke_agent)
    os.kill(kubelets[0], signal.SIGKILL)
    wait_for(lambda: [pid for pid in realnodes.node_processes(real_topology, node)
                      if realnodes._read("/proc/%d/comm" % pid).strip() == "kubelet" and pid != kubelets[0]],
             "the node to start a new kubelet")
    # The running agent kept running (same container, no restart), and the node still runs new pods.
    real_pod(namespace, "reader2", node, ["sleep", "3600"])
    real_pod(namespace, "target2", real_nodes[1], ["sleep", "3600"], labels={"role": "target"})
    wait_for(lambda: sees_targets(pod_exec, namespace, "reader2", poke_agent[real_nodes[0]], real_nodes[0], 1),
             "the agent to find the pod started by the new kubelet")
    assert restarts(core, poke_agent) == before
    assert core.read_namespaced_pod(poke_agent[node].metadata.name, AGENT_NAMESPACE).metadata.uid == \
        poke_agent[node].metadata.uid


def test_a_node_joining_gets_the_agent(poke_agent, kube_admin, kubeconfig, real_nodes, real_topology):
    from kubernetes import client

    core = client.CoreV1Api(kube_admin)
    name = real_topology.node_name(len(real_nodes))
    bins = os.path.join(realnodes.CACHE, "bin", "kube-%s" % images.versions()["KUBE_VERSION"])
    archives = [images.archive_path(image) for image in images.image_specs()]
    try:
        assert realnodes.start_node(real_topology, name, kubeconfig, bins, archives, kube_admin)
        realnodes.sync_routes(real_topology)
        realnodes.wait_ready(kube_admin, [name])
        pods = agent_pods(core, real_nodes + [name], AGENT_NAMESPACE, DAEMONSET)
        assert pods[name].status.container_statuses[0].restart_count == 0
    finally:
        realnodes.stop_node(real_topology, name)
        realnodes.forget(kube_admin, name)
        realnodes.sync_routes(real_topology)
    assert realnodes.node_processes(real_topology, name) == []
    assert real_topology.netns(name) not in os.listdir("/run/netns")
