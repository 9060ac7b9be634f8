"""The lab cluster is a real Kubernetes API: scheduling, RBAC and versions really work."""
from __future__ import annotations

import time

import pytest

from ansible_collections.netmend.k8s.plugins.module_utils.kube_lite import KubeClient, KubeError

pytestmark = pytest.mark.cluster


def wait_for(predicate, timeout=60, interval=0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return predicate()


def test_version_is_the_pinned_release(kube_admin):
    from kubernetes import client

    with open("lab/versions.env", encoding="utf-8") as handle:
        pinned = dict(line.strip().split("=", 1) for line in handle if "=" in line and not line.startswith("#"))
    assert client.VersionApi(kube_admin).get_code().git_version == pinned["KUBE_VERSION"]


def test_daemonset_runs_one_pod_per_node_each_with_an_ip(kube_admin, namespace):
    from kubernetes import client

    apps = client.AppsV1Api(kube_admin)
    core = client.CoreV1Api(kube_admin)
    nodes = {n.metadata.name for n in core.list_node().items}
    apps.create_namespaced_daemon_set(namespace, {
        "metadata": {"name": "probe"},
        "spec": {
            "selector": {"matchLabels": {"app": "probe"}},
            "template": {
                "metadata": {"labels": {"app": "probe"}},
                "spec": {"tolerations": [{"operator": "Exists"}],
                         "containers": [{"name": "c", "image": "python:3.13-slim"}]},
            },
        },
    })

    def running():
        pods = core.list_namespaced_pod(namespace, label_selector="app=probe").items
        done = [p for p in pods if p.status.phase == "Running" and p.status.pod_ip]
        return done if len(done) == len(nodes) else None

    pods = wait_for(running)
    assert pods, "the DaemonSet did not get one Running pod per node"
    assert {p.spec.node_name for p in pods} == nodes
    assert len({p.status.pod_ip for p in pods}) == len(nodes)

    def available():
        status = apps.read_namespaced_daemon_set(namespace=namespace, name="probe").status
        return status if status.number_available == len(nodes) else None

    status = wait_for(available)
    assert status is not None and status.desired_number_scheduled == len(nodes)


def test_service_account_rbac_is_enforced(kube_admin, kube_server, namespace, sa_token):
    from kubernetes import client

    rbac = client.RbacAuthorizationV1Api(kube_admin)
    rbac.create_namespaced_role(namespace, {
        "metadata": {"name": "pod-reader"},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}],
    })
    rbac.create_namespaced_role_binding(namespace, {
        "metadata": {"name": "pod-reader"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader"},
        "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": namespace}],
    })
    host, ca_file = kube_server
    reader = KubeClient(host, token=sa_token(namespace, "reader"), ca_file=ca_file)

    def allowed():
        try:
            return reader.list("/api/v1/namespaces/%s/pods" % namespace)
        except KubeError:
            return None

    assert wait_for(allowed, timeout=10) is not None
    for path in ("/api/v1/namespaces/%s/secrets" % namespace, "/api/v1/pods", "/api/v1/nodes"):
        with pytest.raises(KubeError) as refused:
            reader.list(path)
        assert refused.value.status == 403, path
