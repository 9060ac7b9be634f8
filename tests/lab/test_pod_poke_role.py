# Copyright: netmend.k8s contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The pod_poke role against the lab API server: apply, idempotence, check mode, absent, host delivery."""
from __future__ import annotations

import os
import sys

import pytest

from real_pods import existing  # sibling helper module (tests/lab is on sys.path)
from test_pod_poke_agent_cluster import forward_api, make_pod  # sibling test module (tests/lab is on sys.path)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
AGENT_NAMESPACE = "netmend-test-pod-poke"

pytestmark = pytest.mark.cluster


@pytest.fixture
def playbook(run_playbook):
    """playbook(role_vars, check=False, interpreter=None) -> (rc, output, recap) of one role run."""
    def run(role_vars, check=False, interpreter=None):
        done = run_playbook({"role": "netmend.k8s.pod_poke", "vars": role_vars, "interpreter": interpreter}, check=check)
        return done.returncode, done.stdout + done.stderr, done.recap
    return run


@pytest.fixture
def cleanup(playbook):
    """Leave nothing behind even when the test fails half-way."""
    yield
    playbook({"pod_poke_state": "absent", "pod_poke_agent_namespace": AGENT_NAMESPACE})


def code_map(kube_admin):
    """The agent's code ConfigMap (content-addressed name, found by its labels)."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    maps = client.CoreV1Api(kube_admin).list_namespaced_config_map(
        AGENT_NAMESPACE, label_selector="app.kubernetes.io/name=netmend-pod-poke,netmend.io/component=agent-code").items
    if not maps:
        raise ApiException(status=404)
    assert len(maps) == 1, [m.metadata.name for m in maps]
    return maps[0]


def objects(kube_admin):
    """The role's objects that exist now, as "Kind/name"."""
    from kubernetes import client

    readers = [
        ("Namespace", lambda: client.CoreV1Api(kube_admin).read_namespace(AGENT_NAMESPACE)),
        ("DaemonSet", lambda: client.AppsV1Api(kube_admin).read_namespaced_daemon_set("netmend-pod-poke", AGENT_NAMESPACE)),
        ("ConfigMap", lambda: code_map(kube_admin)),
        ("ServiceAccount", lambda: client.CoreV1Api(kube_admin).read_namespaced_service_account("netmend-pod-poke", AGENT_NAMESPACE)),
        ("ClusterRole", lambda: client.RbacAuthorizationV1Api(kube_admin).read_cluster_role("netmend-pod-poke")),
        ("ClusterRoleBinding", lambda: client.RbacAuthorizationV1Api(kube_admin).read_cluster_role_binding("netmend-pod-poke")),
    ]
    return existing(readers)


def test_role_daemonset_lifecycle(kube_admin, playbook, cleanup):
    from kubernetes import client

    role_vars = {"pod_poke_agent_namespace": AGENT_NAMESPACE, "pod_poke_interval": 10, "pod_poke_mtu_probe": 1450,
                 "pod_poke_only_not_ready": True}

    rc, out, _recap = playbook(role_vars, check=True)
    assert rc == 0, out
    assert objects(kube_admin) == {}, "check mode wrote objects"

    rc, out, recap = playbook(role_vars)
    assert rc == 0, out
    assert recap["changed"] >= 1
    nodes = len(client.CoreV1Api(kube_admin).list_node().items)  # KWOK nodes and real nodes: one pod each
    assert "%d of %d updated, %d available" % (nodes, nodes, nodes) in out
    found = objects(kube_admin)
    assert sorted(found) == sorted(["Namespace", "DaemonSet", "ConfigMap", "ServiceAccount", "ClusterRole",
                                    "ClusterRoleBinding"])
    rules = [(r.api_groups, r.resources, sorted(r.verbs)) for r in found["ClusterRole"].rules]
    assert rules == [([""], ["pods"], ["list", "watch"])]
    spec = found["DaemonSet"].spec.template.spec
    container = spec.containers[0]
    assert not spec.host_network and not spec.host_pid
    assert container.security_context.capabilities.add == ["NET_RAW"]
    assert container.security_context.capabilities.drop == ["ALL"]
    assert not container.security_context.privileged
    assert container.security_context.allow_privilege_escalation is False
    assert [(p.name, p.container_port) for p in container.ports] == [("metrics", 9477)]
    args = container.args
    assert args[args.index("--interval") + 1] == "10"
    assert args[args.index("--mtu-probe") + 1] == "1450"
    assert "--only-not-ready" in args
    assert set(found["ConfigMap"].data) == {"agent.py", "kube_lite.py", "poke.py", "poke_agent.py"}
    with open(os.path.join(REPO, "plugins", "module_utils", "poke.py"), encoding="utf-8") as handle:
        assert found["ConfigMap"].data["poke.py"] == handle.read()

    rc, out, recap = playbook(role_vars)
    assert rc == 0, out
    assert recap["changed"] == 0, out

    changed_vars = dict(role_vars, pod_poke_interval=20)
    rc, out, recap = playbook(changed_vars, check=True)
    assert rc == 0, out
    assert recap["changed"] >= 1, "check mode did not report the pending change"
    args = objects(kube_admin)["DaemonSet"].spec.template.spec.containers[0].args
    assert args[args.index("--interval") + 1] == "10", "check mode changed the DaemonSet"

    absent = {"pod_poke_state": "absent", "pod_poke_agent_namespace": AGENT_NAMESPACE}
    rc, out, recap = playbook(absent)
    assert rc == 0, out
    assert recap["changed"] >= 1
    assert objects(kube_admin) == {}
    rc, out, recap = playbook(absent)
    assert rc == 0, out
    assert recap["changed"] == 0, out


@pytest.mark.parametrize("bad, named", [
    ({"pod_poke_mtu_probe": 20}, "pod_poke_mtu_probe must be a packet size between 68 and 65535 bytes, got 20"),
    ({"pod_poke_interval": 0}, "pod_poke_interval must be more than 0 seconds, not 0"),
    ({"pod_poke_delivery": "sidecar"}, "sidecar"),
])
def test_role_bad_input_fails_naming_it_and_writes_nothing(kube_admin, playbook, cleanup, bad, named):
    rc, out, _recap = playbook(dict(bad, pod_poke_agent_namespace=AGENT_NAMESPACE))
    assert rc != 0
    assert named in out
    assert objects(kube_admin) == {}


@pytest.mark.netlab
def test_role_host_delivery_pings_the_selected_pods(kube_admin, namespace, netlab, playbook, tmp_path):
    """Host delivery, its modules run in a namespace with only loopback: the simulated pod IPs are never really pinged."""
    api_port = int(kube_admin.configuration.host.rsplit(":", 1)[1])
    box = netlab.add_node("controller")
    forwarder = forward_api(box.netns, api_port)
    interpreter = tmp_path / "python-in-netns"
    interpreter.write_text('#!/bin/sh\nexec ip netns exec %s %s "$@"\n' % (box.netns, sys.executable))
    interpreter.chmod(0o755)
    for name in ("web-0", "web-1"):
        make_pod(kube_admin, namespace, name, {"app": "web"})
    make_pod(kube_admin, namespace, "db-0", {"app": "db"})
    try:
        role_vars = {"pod_poke_delivery": "host", "pod_poke_namespaces": [namespace],
                     "pod_poke_label_selector": "app=web", "pod_poke_timeout": 0.3}
        for _attempt in range(30):  # KWOK hands out pod IPs a moment after creation
            rc, out, recap = playbook(role_vars, interpreter=str(interpreter))
            if "0 of 2 pod addresses answered" in out:
                break
        assert rc == 0, out
        assert "0 of 2 pod addresses answered" in out, out
        assert "%s/web-0" % namespace in out and "%s/web-1" % namespace in out
        assert "db-0" not in out
        assert recap["changed"] == 0

        rc, out, recap = playbook(dict(role_vars, pod_poke_fail_on_unreachable=True), interpreter=str(interpreter))
        assert rc != 0
        assert "2 of 2 targets unreachable" in out
    finally:
        forwarder.close()
