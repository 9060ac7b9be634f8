"""Rolling updates of an agent whose pods really run: new code in the ConfigMap rolls
the agents node by node with the role's progress lines, and a pod that crashes fails
the rollout with the pod's reason."""
from __future__ import annotations

import re

import pytest
from real_pods import agent_pods  # sibling helper module (tests/lab is on sys.path)

pytestmark = [pytest.mark.cluster, pytest.mark.netlab]

AGENT_NAMESPACE = "netmend-real-roll"
DAEMONSET = "netmend-pod-poke"
PLAY = {"role": "netmend.k8s.pod_poke"}
BASE = {"pod_poke_agent_namespace": AGENT_NAMESPACE, "pod_poke_interval": 2, "pod_poke_namespaces": ["none"],
        "pod_poke_wait_timeout": 600}
PROGRESS = re.compile(r"%s/%s: (\d+) of (\d+) updated, (\d+) available" % (AGENT_NAMESPACE, DAEMONSET))


@pytest.fixture
def rolled_agent(run_playbook, kube_admin, real_nodes):
    done = run_playbook(PLAY, extra_vars=BASE)
    assert done.returncode == 0, done.stdout
    yield
    gone = run_playbook(PLAY, extra_vars=dict(BASE, pod_poke_state="absent"))
    assert gone.returncode == 0, gone.stdout


def test_new_code_rolls_the_agents_node_by_node(rolled_agent, run_playbook, kube_admin, real_nodes):
    from kubernetes import client

    core = client.CoreV1Api(kube_admin)
    old = agent_pods(core, real_nodes, AGENT_NAMESPACE, DAEMONSET)
    # A collection upgrade ships more code: one more core file in the agent's ConfigMap.
    upgrade = dict(BASE, __pod_poke_code_files=["poke.py", "poke_agent.py", "mtu.py"])
    done = run_playbook(PLAY, extra_vars=upgrade)
    assert done.returncode == 0, done.stdout
    # The code ConfigMaps are immutable and named by content: the DaemonSet mounts the new one.
    daemonset = client.AppsV1Api(kube_admin).read_namespaced_daemon_set(DAEMONSET, AGENT_NAMESPACE)
    mounted = [volume.config_map.name for volume in daemonset.spec.template.spec.volumes if volume.config_map]
    codes = [cm for cm in core.list_namespaced_config_map(
        AGENT_NAMESPACE, label_selector="netmend.io/component=agent-code").items if cm.metadata.name in mounted]
    assert len(codes) == 1 and "mtu.py" in codes[0].data, mounted
    progress = [tuple(int(n) for n in found) for found in PROGRESS.findall(done.stdout)]
    assert progress, done.stdout
    desired = progress[-1][1]
    assert progress[-1] == (desired, desired, desired), done.stdout
    # Node by node: no line ever shows more than one node short of an available agent.
    assert all(available >= want - 1 for _updated, want, available in progress), progress
    assert any(updated < want for updated, want, _available in progress), progress
    new = agent_pods(core, real_nodes, AGENT_NAMESPACE, DAEMONSET)
    for node in real_nodes:
        assert new[node].metadata.uid != old[node].metadata.uid
        assert new[node].status.container_statuses[0].restart_count == 0


def test_a_crashing_agent_fails_the_rollout_with_its_reason(rolled_agent, run_playbook, real_nodes):
    # An argument the agent refuses: it exits at start, every time, on every node.
    broken = dict(BASE, __pod_poke_agent_args=["--no-such-option"])
    done = run_playbook(PLAY, extra_vars=broken)
    assert done.returncode != 0, done.stdout
    failure = [line for line in done.stdout.splitlines() if "[ERROR]" in line or "msg:" in line]
    message = "\n".join(failure)
    assert failure, done.stdout
    # The pod's own reason: argparse's exit code 2, seen by the real kubelet, on a real node.
    assert "CrashLoopBackOff" in message or "exit code 2" in message, done.stdout
    assert any("on node %s" % node in message for node in real_nodes), done.stdout
