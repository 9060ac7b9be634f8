"""The internal agent role against the lab API server: apply, idempotence, check mode, rollout, absent."""
from __future__ import annotations

import time

import pytest

pytestmark = pytest.mark.cluster

PLAY = {"role": "netmend.k8s.agent"}


def play_vars(namespace, state="present"):
    return {
        "agent_fix": "pod_poke",
        "agent_namespace": namespace,
        "agent_state": state,
        "agent_rbac_rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "watch"]}],
        "agent_args": ["--interval", "5"],
        # The real nodes run the agent: it needs its fix's code and NET_RAW, as the pod_poke role gives it.
        "agent_code_files": ["poke.py", "poke_agent.py"],
        "agent_container_security_context": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                             "capabilities": {"add": ["NET_RAW"], "drop": ["ALL"]}},
    }


@pytest.fixture
def agent_namespace(kube_admin):
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    name = "netmend-test-agent"
    yield name
    try:
        client.CoreV1Api(kube_admin).delete_namespace(name)
    except ApiException as exc:
        assert exc.status == 404


def test_agent_role_lifecycle(run_playbook, kube_admin, agent_namespace):
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    apps = client.AppsV1Api(kube_admin)
    core = client.CoreV1Api(kube_admin)

    checked = run_playbook(PLAY, extra_vars=play_vars(agent_namespace), check=True)
    assert checked.returncode == 0, checked.stdout
    with pytest.raises(ApiException):
        core.read_namespace(agent_namespace)

    first = run_playbook(PLAY, extra_vars=play_vars(agent_namespace))
    assert first.returncode == 0, first.stdout
    assert first.recap["changed"] >= 2
    nodes = len(core.list_node().items)  # KWOK nodes and real nodes: the agent runs on every one
    assert "%d of %d updated, %d available" % (nodes, nodes, nodes) in first.stdout

    ds = apps.read_namespaced_daemon_set("netmend-pod-poke", agent_namespace)
    spec = ds.spec.template.spec
    assert spec.containers[0].command[-1] == "pod_poke"
    assert spec.tolerations[0].operator == "Exists"
    assert spec.automount_service_account_token is True
    managers = {(m.manager, m.operation) for m in ds.metadata.managed_fields}
    assert ("netmend.k8s", "Apply") in managers, managers
    assert ds.spec.update_strategy.rolling_update.max_unavailable == 1
    code_name = spec.volumes[0].config_map.name
    assert code_name.startswith("netmend-pod-poke-code-") and len(code_name) == len("netmend-pod-poke-code-") + 10
    cm = core.read_namespaced_config_map(code_name, agent_namespace)
    assert cm.immutable is True
    assert set(cm.data) == {"agent.py", "kube_lite.py", "poke.py", "poke_agent.py"}
    with open("plugins/module_utils/kube_lite.py", encoding="utf-8") as handle:
        assert cm.data["kube_lite.py"] == handle.read()
    assert spec.priority_class_name == "netmend-node-critical"
    priority = client.SchedulingV1Api(kube_admin).read_priority_class("netmend-node-critical")
    assert priority.value == 1000000000 and priority.metadata.annotations["netmend.io/owned-by"] == "netmend.k8s/agent"
    labels = core.read_namespace(agent_namespace).metadata.labels
    assert labels["pod-security.kubernetes.io/enforce"] == "privileged"

    second = run_playbook(PLAY, extra_vars=play_vars(agent_namespace))
    assert second.returncode == 0, second.stdout
    assert second.recap["changed"] == 0, second.stdout

    gone = run_playbook(PLAY, extra_vars=play_vars(agent_namespace, "absent"))
    assert gone.returncode == 0, gone.stdout
    rbac = client.RbacAuthorizationV1Api(kube_admin)
    for read in (lambda: rbac.read_cluster_role("netmend-pod-poke"), lambda: core.read_namespace(agent_namespace)):
        with pytest.raises(ApiException) as missing:
            read()
        assert missing.value.status == 404
    again = run_playbook(PLAY, extra_vars=play_vars(agent_namespace, "absent"))
    assert again.returncode == 0 and again.recap["changed"] == 0, again.stdout


def code_maps(core, namespace):
    return sorted(m.metadata.name for m in core.list_namespaced_config_map(
        namespace, label_selector="netmend.io/component=agent-code").items)


def test_new_code_is_a_new_immutable_config_map_and_the_old_one_goes(run_playbook, kube_admin, agent_namespace):
    """Write access to one ConfigMap must not be a way to run code as the agent on every node."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    core, apps = client.CoreV1Api(kube_admin), client.AppsV1Api(kube_admin)
    first = run_playbook(PLAY, extra_vars=play_vars(agent_namespace))
    assert first.returncode == 0, first.stdout
    [old] = code_maps(core, agent_namespace)
    with pytest.raises(ApiException) as refused:
        core.patch_namespaced_config_map(old, agent_namespace, {"data": {"agent.py": "import os; os.system('id')"}})
    assert refused.value.status == 422 and "immutable" in str(refused.value.body)

    newer = run_playbook(PLAY, extra_vars=dict(play_vars(agent_namespace),
                                               agent_code_files=["poke.py", "poke_agent.py", "mtu.py"]))
    assert newer.returncode == 0, newer.stdout
    [new] = code_maps(core, agent_namespace)
    assert new != old
    assert set(core.read_namespaced_config_map(new, agent_namespace).data) == {
        "agent.py", "kube_lite.py", "poke.py", "poke_agent.py", "mtu.py"}
    ds = apps.read_namespaced_daemon_set("netmend-pod-poke", agent_namespace)
    assert ds.spec.template.spec.volumes[0].config_map.name == new

    gone = run_playbook(PLAY, extra_vars=play_vars(agent_namespace, "absent"))
    assert gone.returncode == 0, gone.stdout


def test_foreign_namespace_survives_present_and_absent(run_playbook, kube_admin, foreign_namespace):
    """A namespace we did not create keeps its labels (no Pod Security labels forced) and is not deleted."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    name = "netmend-test-agent-theirs"
    check = foreign_namespace(name)
    apps = client.AppsV1Api(kube_admin)

    first = run_playbook(PLAY, extra_vars=play_vars(name))
    assert first.returncode == 0, first.stdout
    check()
    assert "Namespace %s exists but was not created by netmend.k8s/agent" % name in " ".join(first.stdout.split())
    assert apps.read_namespaced_daemon_set("netmend-pod-poke", name).metadata.annotations[
        "netmend.io/owned-by"] == "netmend.k8s/agent"
    again = run_playbook(PLAY, extra_vars=play_vars(name))
    assert again.returncode == 0 and again.recap["changed"] == 0, again.stdout

    gone = run_playbook(PLAY, extra_vars=play_vars(name, "absent"))
    assert gone.returncode == 0, gone.stdout
    check()
    with pytest.raises(ApiException) as missing:
        apps.read_namespaced_daemon_set("netmend-pod-poke", name)
    assert missing.value.status == 404
    assert code_maps(client.CoreV1Api(kube_admin), name) == []


GKE_QUOTA = {
    # What GKE puts in place: the system-* classes are admitted only where a quota covers them.
    "metadata": {"name": "gcp-critical-pods"},
    "spec": {"hard": {"pods": "0"},
             "scopeSelector": {"matchExpressions": [{"operator": "In", "scopeName": "PriorityClass",
                                                     "values": ["system-node-critical", "system-cluster-critical"]}]}},
}


def test_default_priority_class_schedules_under_a_gke_like_quota(run_playbook, kube_admin, foreign_namespace):
    from kubernetes import client

    name = "netmend-test-agent-gke"
    foreign_namespace(name)
    core, apps = client.CoreV1Api(kube_admin), client.AppsV1Api(kube_admin)
    core.create_namespaced_resource_quota(name, GKE_QUOTA)
    nodes = len(core.list_node().items)

    # system-node-critical, the former default: the quota refuses every pod, the rollout never starts
    confined = run_playbook(PLAY, extra_vars=dict(play_vars(name), agent_priority_class_name="system-node-critical",
                                                  agent_wait=False))
    assert confined.returncode == 0, confined.stdout
    deadline = time.monotonic() + 20
    while apps.read_namespaced_daemon_set("netmend-pod-poke", name).status.desired_number_scheduled != nodes:
        assert time.monotonic() < deadline
        time.sleep(0.5)
    time.sleep(3)
    status = apps.read_namespaced_daemon_set("netmend-pod-poke", name).status
    assert status.current_number_scheduled == 0, status
    events = core.list_namespaced_event(name).items
    assert any("exceeded quota: gcp-critical-pods" in (e.message or "") for e in events)

    # the default: our own PriorityClass, which the quota does not confine (a fresh DaemonSet: the
    # controller backs off from one whose pods kept failing)
    removed = run_playbook(PLAY, extra_vars=play_vars(name, "absent"))
    assert removed.returncode == 0, removed.stdout
    done = run_playbook(PLAY, extra_vars=play_vars(name))
    assert done.returncode == 0, done.stdout
    assert "%d of %d updated, %d available" % (nodes, nodes, nodes) in done.stdout
    pods = core.list_namespaced_pod(name).items
    assert len(pods) == nodes and {p.spec.priority_class_name for p in pods} == {"netmend-node-critical"}
    assert {p.spec.priority for p in pods} == {1000000000}

    gone = run_playbook(PLAY, extra_vars=play_vars(name, "absent"))
    assert gone.returncode == 0, gone.stdout
