# Copyright: netmend.k8s contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The agent role's rollout wait against the lab API server and its KWOK pods.

KWOK stops touching a pod once it has given it an address, so a test can then say
what the pod's kubelet would have said: a container in CrashLoopBackOff, or running
but not ready. The DaemonSet controller of the lab reacts to that exactly as it does
to a real kubelet's report, and the role must read it the same way.
"""
from __future__ import annotations

import re
import threading
import time

import pytest

pytestmark = pytest.mark.cluster

PLAY = {"role": "netmend.k8s.agent"}
NAME = "netmend-pod-poke"


def play_vars(namespace, interval="5", timeout=120, min_ready=4):
    return {
        "agent_fix": "pod_poke",
        "agent_namespace": namespace,
        "agent_rbac_rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "watch"]}],
        "agent_args": ["--interval", interval],
        "agent_min_ready_seconds": min_ready,
        "agent_wait_timeout": timeout,
        # KWOK nodes only: the test plays their kubelet. The real nodes' kubelets speak for themselves.
        "agent_node_selector": {"type": "kwok"},
    }


@pytest.fixture
def agent_namespace(kube_admin):
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    name = "netmend-test-rollout"
    yield name
    try:
        client.CoreV1Api(kube_admin).delete_namespace(name)
    except ApiException as exc:
        assert exc.status == 404
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            client.CoreV1Api(kube_admin).read_namespace(name)
        except ApiException:
            break
        time.sleep(1)


def progress_lines(stdout):
    return re.findall(r"DaemonSet [\w-]+/%s: (\d+) of (\d+) updated, (\d+) available" % NAME, stdout)


def new_pods(core, namespace, generation):
    pods = core.list_namespaced_pod(namespace, label_selector="app.kubernetes.io/name=%s" % NAME).items
    return [pod for pod in pods if pod.metadata.labels.get("pod-template-generation") == str(generation)
            and pod.status.pod_ip and not pod.metadata.deletion_timestamp]


def report_as_kubelet(core, pod, container_state, ready=False, last_state=None, restarts=0):
    """Write the status a kubelet would report for the pod's one container."""
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    status = {
        "conditions": [
            {"type": "Ready", "status": "True" if ready else "False", "lastTransitionTime": now,
             "reason": "" if ready else "ContainersNotReady",
             "message": "" if ready else "containers with unready status: [agent]"},
            {"type": "ContainersReady", "status": "True" if ready else "False", "lastTransitionTime": now},
        ],
        "containerStatuses": [{
            "name": "agent", "image": pod.spec.containers[0].image, "imageID": "", "ready": ready,
            "restartCount": restarts, "started": "running" in container_state,
            "state": container_state, "lastState": last_state or {},
        }],
    }
    core.patch_namespaced_pod_status(pod.metadata.name, pod.metadata.namespace, {"status": status})


def in_background(function):
    outcome = {}

    def body():
        try:
            outcome["value"] = function()
        except Exception as exc:  # handed back to the test
            outcome["error"] = exc
    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    return thread, outcome


def wait_for(predicate, what, timeout=90):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError("timed out waiting for %s" % what)


def test_pods_count_available_only_after_min_ready_seconds(run_playbook, kube_admin, agent_namespace):
    from kubernetes import client

    # Long enough that the first poll comes before it ends, even on a loaded machine.
    first = run_playbook(PLAY, extra_vars=play_vars(agent_namespace, min_ready=25))
    assert first.returncode == 0, first.stdout
    lines = progress_lines(first.stdout)
    # A line per poll: KWOK makes the pods Ready at once, minReadySeconds holds them back as unavailable.
    assert len(lines) >= 2, first.stdout
    assert lines[0][2] == "0" and lines[-1] == ("3", "3", "3"), lines
    ds = client.AppsV1Api(kube_admin).read_namespaced_daemon_set(NAME, agent_namespace)
    assert ds.spec.min_ready_seconds == 25
    container = ds.spec.template.spec.containers[0]
    probe = container.readiness_probe
    assert probe.var_exec.command == ["python3", "-m", "ansible_collections.netmend.k8s.plugins.module_utils.agent", "ready"]
    assert probe.period_seconds == 5 and probe.failure_threshold == 2 and probe.initial_delay_seconds == 3
    env = {item.name: item.value for item in container.env}
    assert env["NETMEND_HEARTBEAT"] == "/run/netmend/heartbeat"
    mounts = {mount.name: mount.mount_path for mount in container.volume_mounts}
    assert mounts["state"] == "/run/netmend"
    state = [volume for volume in ds.spec.template.spec.volumes if volume.name == "state"][0]
    assert state.empty_dir.medium == "Memory"


def test_crash_looping_pod_fails_the_rollout_with_its_reason(run_playbook, kube_admin, agent_namespace):
    from kubernetes import client

    core = client.CoreV1Api(kube_admin)
    apps = client.AppsV1Api(kube_admin)
    assert run_playbook(PLAY, extra_vars=play_vars(agent_namespace)).returncode == 0
    generation = apps.read_namespaced_daemon_set(NAME, agent_namespace).metadata.generation

    started = time.monotonic()
    thread, outcome = in_background(lambda: run_playbook(PLAY, extra_vars=play_vars(agent_namespace, interval="7")))
    victim = wait_for(lambda: new_pods(core, agent_namespace, generation + 1), "a pod of the new template")[0]
    report_as_kubelet(core, victim, {"waiting": {"reason": "CrashLoopBackOff",
                                                 "message": "back-off 20s restarting failed container=agent"}},
                      last_state={"terminated": {"reason": "Error", "exitCode": 1, "startedAt": None,
                                                 "finishedAt": None}}, restarts=3)
    thread.join(timeout=150)
    failed = outcome["value"]
    elapsed = time.monotonic() - started
    assert failed.returncode != 0, failed.stdout
    assert elapsed < 100, "the rollout waited for its whole timeout instead of failing on the crash loop"
    message = re.search(r"has a pod that cannot start: .*", failed.stdout).group(0)
    assert "pod %s/%s on node %s" % (agent_namespace, victim.metadata.name, victim.spec.node_name) in message
    assert "container agent waiting: CrashLoopBackOff: back-off 20s restarting failed container=agent" in message
    assert "last terminated: Error (exit code 1)" in message
    # It was never counted available: not every pod was ever available under the new template.
    assert ("3", "3", "3") not in progress_lines(failed.stdout)


def test_pod_that_never_gets_ready_times_out_naming_it(run_playbook, kube_admin, agent_namespace):
    from kubernetes import client

    core = client.CoreV1Api(kube_admin)
    apps = client.AppsV1Api(kube_admin)
    assert run_playbook(PLAY, extra_vars=play_vars(agent_namespace)).returncode == 0
    generation = apps.read_namespaced_daemon_set(NAME, agent_namespace).metadata.generation

    thread, outcome = in_background(
        lambda: run_playbook(PLAY, extra_vars=play_vars(agent_namespace, interval="9", timeout=25)))
    victim = wait_for(lambda: new_pods(core, agent_namespace, generation + 1), "a pod of the new template")[0]
    # Running, but its agent never gets its loop going: the readiness probe keeps failing.
    report_as_kubelet(core, victim, {"running": {"startedAt": "2026-01-01T00:00:00Z"}})
    thread.join(timeout=150)
    failed = outcome["value"]
    assert failed.returncode != 0, failed.stdout
    # The wait is 25 s plus what the rollout of 3 pods, one at a time, needs (rollout_budget).
    message = re.search(r"did not finish rolling out within \d+s \(25s \+ \d+ waves? of 1 pod x 19s \+ 3 pods x 0.05s\): .*",
                        failed.stdout).group(0)
    assert "pod %s/%s on node %s: container agent running, not ready (restarts 0)" % (
        agent_namespace, victim.metadata.name, victim.spec.node_name) in message
    lines = progress_lines(failed.stdout)
    assert len(lines) >= 2, failed.stdout  # one per poll until the deadline
    assert all(line[2] != "3" or line[0] != "3" for line in lines)


@pytest.mark.parametrize("poll_wait, interval", [(-1, 2), (10, 0)])
def test_a_bad_poll_pace_fails_naming_it_before_any_read(run_playbook, poll_wait, interval):
    done = run_playbook({"role": "netmend.k8s.agent", "tasks_from": "rollout",
                         "vars": {"rollout_name": NAME, "rollout_namespace": "netmend-test-rollout",
                                  "rollout_poll_wait": poll_wait, "rollout_interval": interval}})
    assert done.returncode != 0, done.stdout
    said = " ".join(done.stdout.split())  # the YAML callback wraps long messages
    assert ("rollout_interval must be a whole number of seconds from 1 and rollout_poll_wait one from 0, not %s and %s"
            % (interval, poll_wait)) in said, done.stdout[-2000:]
    assert "Read the workload once its controller has seen it" not in done.stdout
