# Copyright: netmend.k8s contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The connectivity_check role by ansible-playbook against the lab API server.

KWOK's simulated kubelet runs no containers and no readiness probes, so the tests play the
network: they set each probe pod's Ready condition themselves. KWOK's `pod-ready` stage marks a
pod Ready once, while it is Pending with no running container; after that no stage of KWOK's
default set selects a Running pod of a Deployment (`pod-complete` only selects pods owned by
Jobs), so a Ready condition patched through the pods/status subresource stays as the test set it.
The test waits for KWOK to finish with a pod (Running, container started) before patching it.
"""
from __future__ import annotations

import time
import uuid

import pytest

pytestmark = pytest.mark.cluster

PATH_LABEL = "netmend.io/connectivity-path"

PLAY = {"role": "netmend.k8s.connectivity_check"}


@pytest.fixture
def names(run_playbook):
    base = "t-cc-" + uuid.uuid4().hex[:6]
    params = {"connectivity_check_namespace": base, "connectivity_check_isolated_namespace": base + "-isolated"}
    yield params
    done = run_playbook(PLAY, extra_vars=dict(params, connectivity_check_state="absent"))
    assert done.returncode == 0, done.stdout


@pytest.fixture
def runtime_class(kube_admin):
    from kubernetes import client

    name = "t-gvisor-" + uuid.uuid4().hex[:6]
    node = client.NodeV1Api(kube_admin)
    node.create_runtime_class({"metadata": {"name": name}, "handler": "runsc"})
    yield name
    node.delete_runtime_class(name)


def probe_pods(kube_admin, namespace, count):
    """The probe pods, once KWOK has started every one of them (its pod-ready stage is done with them)."""
    from kubernetes import client

    core = client.CoreV1Api(kube_admin)
    deadline = time.monotonic() + 90
    while True:
        pods = [p for p in core.list_namespaced_pod(namespace, label_selector=PATH_LABEL).items
                if p.status.phase == "Running" and p.status.container_statuses
                and all(s.state.running for s in p.status.container_statuses) and not p.metadata.deletion_timestamp]
        if len(pods) == count:
            return pods
        assert time.monotonic() < deadline, "%d of %d probe pods started" % (len(pods), count)
        time.sleep(1)


def set_ready(kube_admin, pods, path, ready):
    """What the readiness probe would report: the path's target answers (True) or not (False)."""
    from kubernetes import client

    status = "True" if ready else "False"
    core = client.CoreV1Api(kube_admin)
    chosen = [p for p in pods if p.metadata.labels[PATH_LABEL] == path]
    assert chosen, path
    for pod in chosen:
        core.patch_namespaced_pod_status(pod.metadata.name, pod.metadata.namespace, {"status": {"conditions": [
            {"type": "Ready", "status": status}, {"type": "ContainersReady", "status": status}]}})


def row(stdout, path):
    """The matrix line of a path, whitespace-normalised."""
    for line in stdout.splitlines():
        words = line.replace('"', " ").replace(",", " ").split()
        if words and words[0] == path:
            return " ".join(words)
    raise AssertionError("no matrix row for %s in:\n%s" % (path, stdout))


def test_apply_verify_and_absent(run_playbook, kube_admin, names):
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    core, apps = client.CoreV1Api(kube_admin), client.AppsV1Api(kube_admin)
    namespace, isolated = names["connectivity_check_namespace"], names["connectivity_check_isolated_namespace"]

    checked = run_playbook(PLAY, extra_vars=names, check=True)
    assert checked.returncode == 0, checked.stdout
    for name in (namespace, isolated):
        with pytest.raises(ApiException):
            core.read_namespace(name)

    first = run_playbook(PLAY, extra_vars=dict(names, connectivity_check_verify=False))
    assert first.returncode == 0, first.stdout
    assert first.recap["changed"] == 2, first.stdout
    policy = client.NetworkingV1Api(kube_admin).read_namespaced_network_policy("deny-all", isolated)
    assert policy.spec.pod_selector.match_labels is None and policy.spec.policy_types == ["Ingress"]
    assert not policy.spec.ingress
    assert sorted(d.metadata.name for d in apps.list_namespaced_deployment(namespace).items) == [
        "echo", "probe-pod-to-echo", "probe-pod-to-isolated"]
    assert [d.metadata.name for d in apps.list_namespaced_deployment(isolated).items] == ["echo"]
    probe = apps.read_namespaced_deployment("probe-pod-to-isolated", namespace).spec.template.spec.containers[0]
    assert probe.readiness_probe._exec.command[-2] == "http://echo.%s.svc:8080/" % isolated

    # the network does what the policy says
    pods = probe_pods(kube_admin, namespace, 4)
    set_ready(kube_admin, pods, "pod-to-isolated", False)
    second = run_playbook(PLAY, extra_vars=dict(names, connectivity_check_verify_timeout=10))
    assert second.returncode == 0, second.stdout
    assert second.recap["changed"] == 0, second.stdout
    assert row(second.stdout, "pod-to-echo") == "pod-to-echo pod network %s/echo allowed allowed (2/2 ready) ok" % namespace
    assert row(second.stdout, "pod-to-isolated") == (
        "pod-to-isolated pod network %s/echo denied denied (0/2 ready) ok" % isolated)

    # the deny-all policy leaks: the play fails, naming the path and what to look at
    set_ready(kube_admin, pods, "pod-to-isolated", True)
    leaking = run_playbook(PLAY, extra_vars=dict(names, connectivity_check_verify_timeout=3,
                                                 connectivity_check_verify_interval=1))
    assert leaking.returncode != 0
    assert leaking.recap["failed"] == 1, leaking.stdout
    assert "Connectivity check failed on 1 path(s): pod-to-isolated (expected denied, observed allowed)." in " ".join(
        leaking.stdout.split()), leaking.stdout
    assert row(leaking.stdout, "pod-to-isolated") == (
        "pod-to-isolated pod network %s/echo denied allowed (2/2 ready) FAIL" % isolated)
    assert "pod-to-isolated: expected denied, observed allowed" in leaking.stdout
    assert "NetworkPolicy is not enforced" in leaking.stdout

    # an allowed path blocked on one node: the CNI checklist, naming that node
    set_ready(kube_admin, pods, "pod-to-isolated", False)
    blocked_pod = [p for p in pods if p.metadata.labels[PATH_LABEL] == "pod-to-echo"][0]
    set_ready(kube_admin, [blocked_pod], "pod-to-echo", False)
    blocked = run_playbook(PLAY, extra_vars=dict(names, connectivity_check_verify_timeout=3,
                                                 connectivity_check_verify_interval=1))
    assert blocked.returncode != 0
    assert row(blocked.stdout, "pod-to-echo").endswith("allowed partial (1/2 ready) FAIL")
    text = " ".join(blocked.stdout.split())
    assert "pod-to-echo: expected allowed, observed partial (probe nodes: %s)" % blocked_pod.spec.node_name in text
    for item in ("CNI pods on every node", "routes both ways", "MTU"):
        assert item in text, blocked.stdout

    checked_absent = run_playbook(PLAY, extra_vars=dict(names, connectivity_check_state="absent"), check=True)
    assert checked_absent.returncode == 0 and checked_absent.recap["changed"] == 1, checked_absent.stdout
    for name in (namespace, isolated):
        assert core.read_namespace(name).status.phase == "Active"  # check mode deleted nothing

    gone = run_playbook(PLAY, extra_vars=dict(names, connectivity_check_state="absent"))
    assert gone.returncode == 0, gone.stdout
    for name in (namespace, isolated):
        with pytest.raises(ApiException) as missing:
            core.read_namespace(name)
        assert missing.value.status == 404
    again = run_playbook(PLAY, extra_vars=dict(names, connectivity_check_state="absent"))
    assert again.returncode == 0 and again.recap["changed"] == 0, again.stdout


def test_gvisor_and_host_network_variants(run_playbook, kube_admin, names, runtime_class):
    from kubernetes import client

    apps, core = client.AppsV1Api(kube_admin), client.CoreV1Api(kube_admin)
    namespace, isolated = names["connectivity_check_namespace"], names["connectivity_check_isolated_namespace"]
    params = dict(names, connectivity_check_gvisor=True, connectivity_check_runtime_class=runtime_class,
                  connectivity_check_host_network=True, connectivity_check_probe_replicas=1,
                  connectivity_check_verify=False)
    first = run_playbook(PLAY, extra_vars=params)
    assert first.returncode == 0, first.stdout
    specs = {d.metadata.name: d.spec.template.spec for d in apps.list_namespaced_deployment(namespace).items}
    assert sorted(specs) == ["echo", "echo-gvisor", "probe-gvisor-to-echo", "probe-gvisor-to-isolated",
                             "probe-host-to-echo", "probe-pod-to-echo", "probe-pod-to-echo-gvisor",
                             "probe-pod-to-isolated"]
    assert {name for name, spec in specs.items() if spec.runtime_class_name == runtime_class} == {
        "echo-gvisor", "probe-gvisor-to-echo", "probe-gvisor-to-isolated"}
    assert {name for name, spec in specs.items() if spec.host_network} == {"probe-host-to-echo"}
    assert specs["probe-host-to-echo"].dns_policy == "ClusterFirstWithHostNet"
    assert core.read_namespace(namespace).metadata.labels["pod-security.kubernetes.io/enforce"] == "privileged"
    assert core.read_namespace(isolated).metadata.labels["pod-security.kubernetes.io/enforce"] == "restricted"

    pods = probe_pods(kube_admin, namespace, 6)
    set_ready(kube_admin, pods, "pod-to-isolated", False)
    set_ready(kube_admin, pods, "gvisor-to-isolated", False)
    verified = run_playbook(PLAY, extra_vars=dict(params, connectivity_check_verify=True,
                                                  connectivity_check_verify_timeout=10))
    assert verified.returncode == 0 and verified.recap["changed"] == 0, verified.stdout
    assert row(verified.stdout, "gvisor-to-isolated") == (
        "gvisor-to-isolated pod network (gVisor) %s/echo denied denied (0/1 ready) ok" % isolated)
    assert row(verified.stdout, "host-to-echo") == "host-to-echo host network %s/echo allowed allowed (1/1 ready) ok" % namespace


def test_missing_runtime_class_fails_before_anything_is_applied(run_playbook, kube_admin, names):
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    done = run_playbook(PLAY, extra_vars=dict(names, connectivity_check_gvisor=True,
                                              connectivity_check_runtime_class="t-no-such-class"))
    assert done.returncode != 0
    assert "RuntimeClass t-no-such-class does not exist" in " ".join(done.stdout.split()), done.stdout
    with pytest.raises(ApiException):
        client.CoreV1Api(kube_admin).read_namespace(names["connectivity_check_namespace"])


def test_foreign_namespaces_survive_present_and_absent(run_playbook, kube_admin, foreign_namespace):
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    base = "t-cc-theirs-" + uuid.uuid4().hex[:6]
    params = {"connectivity_check_namespace": base, "connectivity_check_isolated_namespace": base + "-isolated",
              "connectivity_check_verify": False}
    checks = [foreign_namespace(base), foreign_namespace(base + "-isolated")]
    apps = client.AppsV1Api(kube_admin)

    first = run_playbook(PLAY, extra_vars=params)
    assert first.returncode == 0, first.stdout
    for check in checks:
        check()  # no Pod Security labels forced onto them
    assert "Namespace %s exists but was not created by netmend.k8s/connectivity-check" % base in " ".join(
        first.stdout.split())
    assert [d.metadata.name for d in apps.list_namespaced_deployment(base + "-isolated").items] == ["echo"]

    gone = run_playbook(PLAY, extra_vars=dict(params, connectivity_check_state="absent"))
    assert gone.returncode == 0, gone.stdout
    for check in checks:
        check()
    for name in (base, base + "-isolated"):
        assert apps.list_namespaced_deployment(name).items == []
        assert client.CoreV1Api(kube_admin).list_namespaced_service(name).items == []
    with pytest.raises(ApiException) as missing:
        client.NetworkingV1Api(kube_admin).read_namespaced_network_policy("deny-all", base + "-isolated")
    assert missing.value.status == 404
