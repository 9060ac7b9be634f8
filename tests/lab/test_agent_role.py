"""The internal agent role against the lab API server: apply, idempotence, check mode, rollout, absent."""
from __future__ import annotations

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
    cm = core.read_namespaced_config_map("netmend-pod-poke-code", agent_namespace)
    assert set(cm.data) == {"agent.py", "kube_lite.py"}
    with open("plugins/module_utils/kube_lite.py", encoding="utf-8") as handle:
        assert cm.data["kube_lite.py"] == handle.read()
    labels = core.read_namespace(agent_namespace).metadata.labels
    assert labels["pod-security.kubernetes.io/enforce"] == "privileged"

    second = run_playbook(PLAY, extra_vars=play_vars(agent_namespace))
    assert second.returncode == 0, second.stdout
    assert second.recap["changed"] == 0, second.stdout

    gone = run_playbook(PLAY, extra_vars=play_vars(agent_namespace, "absent"))
    assert gone.returncode == 0, gone.stdout
    rbac = client.RbacAuthorizationV1Api(kube_admin)
    with pytest.raises(ApiException) as missing:
        rbac.read_cluster_role("netmend-pod-poke")
    assert missing.value.status == 404
    again = run_playbook(PLAY, extra_vars=play_vars(agent_namespace, "absent"))
    assert again.returncode == 0 and again.recap["changed"] == 0, again.stdout
