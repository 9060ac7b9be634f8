"""The calico_mtu agent as a real pod on a real node, deployed by its role.

The node's CNI directory gets a Calico-shaped conflist beside the lab's own (which
sorts first, so containerd keeps wiring pods with the standard plugins). The lab names
each pod's host-side veth the Calico way (lab/cni_veth.py), so the agent maps
pods to veths exactly as on a Calico node. With VXLAN and the node's 1500-byte eth0
the agent computes 1450, writes it into the conflist, and evicts exactly the pods whose
veth has another MTU, while a PodDisruptionBudget holds one of them back.
"""
from __future__ import annotations

import json
import re
import subprocess

import pytest
from real_pods import agent_pods, wait_for, wait_value  # sibling helper module (tests/lab is on sys.path)
from test_real_nodes import node_init_pid

from lab.netlab import calico_veth_name

pytestmark = [pytest.mark.cluster, pytest.mark.netlab]

AGENT_NAMESPACE = "netmend-real-mtu"
DAEMONSET = "netmend-calico-mtu"
CONFLIST = "/etc/cni/net.d/10-calico.conflist"
CALICO = {"name": "k8s-pod-network", "cniVersion": "0.3.1",
          "plugins": [{"type": "calico", "mtu": 1500, "ipam": {"type": "calico-ipam"}}, {"type": "portmap"}]}
WANTED = 1500 - 50  # the node's eth0 minus VXLAN


def in_node(topo, node, argv, input=None):
    """Run argv in the node's mount namespace (its own /etc/cni/net.d)."""
    pid = node_init_pid(topo, node)
    return subprocess.run(["nsenter", "-t", str(pid), "-m", "--", *argv], input=input, capture_output=True,
                          text=True, check=True).stdout


@pytest.fixture
def calico_conflist(real_topology, real_nodes):
    node = real_nodes[0]
    in_node(real_topology, node, ["sh", "-c", "cat > %s" % CONFLIST], input=json.dumps(CALICO, indent=2))
    yield node
    in_node(real_topology, node, ["rm", "-f", CONFLIST])


def veth_mtu(topo, node, pod, namespace):
    link = json.loads(subprocess.run(["ip", "-n", topo.netns(node), "-j", "link", "show",
                                      calico_veth_name(pod, namespace)], capture_output=True, text=True,
                                     check=True).stdout)
    return link[0]["mtu"]


def test_calico_mtu_agent_evicts_exactly_the_wrong_mtu_pods(calico_conflist, run_playbook, kube_admin, namespace,
                                                            real_pod, real_nodes, real_topology):
    from kubernetes import client

    core = client.CoreV1Api(kube_admin)
    node = calico_conflist
    netns = real_topology.netns(node)
    pods = {name: real_pod(namespace, name, node, ["sleep", "3600"], labels={"app": "mtu", "name": name})
            for name in ("right", "wrong", "held")}
    subprocess.run(["ip", "-n", netns, "link", "set", calico_veth_name("right", namespace), "mtu", str(WANTED)],
                   check=True)
    assert veth_mtu(real_topology, node, "right", namespace) == WANTED
    assert veth_mtu(real_topology, node, "wrong", namespace) == 1500
    client.PolicyV1Api(kube_admin).create_namespaced_pod_disruption_budget(namespace, {
        "metadata": {"name": "hold"},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"name": "held"}}}})
    wait_for(lambda: client.PolicyV1Api(kube_admin).read_namespaced_pod_disruption_budget(
        "hold", namespace).status.observed_generation, "the PodDisruptionBudget to be observed")
    # Every other pod on the node with its own veth must already be right, or "exactly" would be unprovable.
    others = [p.metadata.namespace + "/" + p.metadata.name
              for p in core.list_pod_for_all_namespaces(field_selector="spec.nodeName=%s" % node).items
              if p.metadata.namespace != namespace and not p.spec.host_network]
    assert others == [], "other pods on %s would be evicted too: %s" % (node, others)

    play_vars = {
        "calico_mtu_method": "agent",
        "calico_mtu_encapsulation": "vxlan",
        "calico_mtu_agent_namespace": AGENT_NAMESPACE,
        "calico_mtu_agent_interval": 2,
    }
    done = run_playbook({"role": "netmend.k8s.calico_mtu"}, extra_vars=play_vars)
    try:
        assert done.returncode == 0, done.stdout
        agents = agent_pods(core, real_nodes, AGENT_NAMESPACE, DAEMONSET)
        agent = agents[node].metadata.name

        def conflist_mtu():
            return json.loads(in_node(real_topology, node, ["cat", CONFLIST]))["plugins"][0].get("mtu")

        wait_for(lambda: conflist_mtu() == WANTED, "the agent to write mtu %d into %s" % (WANTED, CONFLIST))

        def gone(name):
            now = core.list_namespaced_pod(namespace, field_selector="metadata.name=%s" % name).items
            return not now or now[0].metadata.uid != pods[name].metadata.uid

        wait_for(lambda: gone("wrong"), "the wrong-MTU pod to be evicted")
        log = wait_value(lambda: core.read_namespaced_pod_log(agent, AGENT_NAMESPACE),
                         lambda text: "eviction refused by a PodDisruptionBudget" in text,
                         "the PodDisruptionBudget to hold one back")
        evicted = set(re.findall(r'evicted pod .*pod="([^"]+)"', log))
        assert evicted == {"wrong"}, log
        assert not gone("right") and not gone("held")
        assert 'pod="right"' not in log
    finally:
        gone_play = run_playbook({"role": "netmend.k8s.calico_mtu"},
                                 extra_vars=dict(play_vars, calico_mtu_state="absent"))
    assert gone_play.returncode == 0, gone_play.stdout
