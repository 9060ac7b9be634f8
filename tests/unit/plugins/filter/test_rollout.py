# Copyright: netmend.k8s contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.netmend.k8s.plugins.filter.rollout import (
    rollout_budget, rollout_not_ready, rollout_pod_problems, rollout_progress)


def daemonset(generation=2, observed=2, desired=3, updated=3, available=3):
    return {"metadata": {"name": "agent", "namespace": "ns", "generation": generation},
            "spec": {"selector": {"matchLabels": {"b": "2", "a": "1"}}},
            "status": {"observedGeneration": observed, "desiredNumberScheduled": desired,
                       "updatedNumberScheduled": updated, "numberAvailable": available}}


@pytest.mark.parametrize("resources, kind, done, line", [
    ([daemonset()], "DaemonSet", True, "DaemonSet ns/agent: 3 of 3 updated, 3 available"),
    ([daemonset(available=2)], "DaemonSet", False, "DaemonSet ns/agent: 3 of 3 updated, 2 available"),
    ([daemonset(updated=1, available=3)], "DaemonSet", False, "DaemonSet ns/agent: 1 of 3 updated, 3 available"),
    # The status still describes the previous generation: not done, whatever it counts.
    ([daemonset(generation=3)], "DaemonSet", False, "DaemonSet ns/agent: waiting for the controller to see generation 3"),
    ([], "DaemonSet", False, "DaemonSet ns/gone: not found"),
    ([{"metadata": {"name": "web", "namespace": "ns", "generation": 1},
       "spec": {"replicas": 2}, "status": {"observedGeneration": 1, "updatedReplicas": 2, "availableReplicas": 2}}],
     "Deployment", True, "Deployment ns/web: 2 of 2 updated, 2 available"),
    # A DaemonSet on no node at all is done.
    ([daemonset(desired=0, updated=0, available=0)], "DaemonSet", True, "DaemonSet ns/agent: 0 of 0 updated, 0 available"),
])
def test_rollout_progress(resources, kind, done, line):
    progress = rollout_progress(resources, kind, "ns/gone")
    assert progress["done"] is done
    assert progress["line"] == line


def test_rollout_progress_selector_and_bad_input():
    assert rollout_progress([daemonset()])["selector"] == "a=1,b=2"
    with pytest.raises(AnsibleFilterError, match="'StatefulSet'"):
        rollout_progress([daemonset()], "StatefulSet")
    with pytest.raises(AnsibleFilterError, match="resources list"):
        rollout_progress({"items": []})


def pod(name, generation="2", ready=False, containers=(), node="node-1", **meta):
    return {"metadata": dict({"name": name, "namespace": "ns", "labels": {"pod-template-generation": generation}}, **meta),
            "spec": {"nodeName": node},
            "status": {"phase": "Running",
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False",
                                       "reason": "ContainersNotReady",
                                       "message": "containers with unready status: [agent]"}],
                       "containerStatuses": list(containers)}}


CRASHING = {"name": "agent", "ready": False, "restartCount": 4,
            "state": {"waiting": {"reason": "CrashLoopBackOff",
                                  "message": "back-off 40s restarting failed container=agent"}},
            "lastState": {"terminated": {"reason": "Error", "exitCode": 1}}}
NEVER_PULL = {"name": "agent", "ready": False, "restartCount": 0,
              "state": {"waiting": {"reason": "ErrImageNeverPull",
                                    "message": 'Container image "python:3.13-slim" is not present with pull policy of Never'}}}
UNREADY = {"name": "agent", "ready": False, "restartCount": 0, "state": {"running": {"startedAt": "x"}}}
CREATING = {"name": "agent", "ready": False, "state": {"waiting": {"reason": "ContainerCreating"}}}


def test_fatal_pods_are_named_with_node_reason_message_and_last_termination():
    pods = [pod("crash", containers=[CRASHING], node="real-1"), pod("pull", containers=[NEVER_PULL]),
            pod("slow", containers=[UNREADY]), pod("creating", containers=[CREATING]),
            pod("fine", ready=True, containers=[dict(UNREADY, ready=True)])]
    fatal = rollout_pod_problems(pods, fatal_only=True)
    assert [problem["pod"] for problem in fatal] == ["ns/crash", "ns/pull"]
    assert fatal[0]["text"] == ("pod ns/crash on node real-1: container agent waiting: CrashLoopBackOff: "
                                "back-off 40s restarting failed container=agent; last terminated: Error (exit code 1)")
    assert fatal[0]["node"] == "real-1" and fatal[0]["reasons"] == ["CrashLoopBackOff"]
    assert "ErrImageNeverPull" in fatal[1]["text"] and "pull policy of Never" in fatal[1]["text"]
    everything = rollout_pod_problems(pods)
    assert [problem["pod"] for problem in everything] == ["ns/crash", "ns/pull", "ns/slow", "ns/creating"]
    assert everything[2]["text"] == "pod ns/slow on node node-1: container agent running, not ready (restarts 0)"
    assert everything[3]["fatal"] is False


def test_only_the_current_template_generation_counts():
    pods = [pod("old", generation="1", containers=[CRASHING]), pod("new", generation="2", containers=[CRASHING])]
    assert [problem["pod"] for problem in rollout_pod_problems(pods, 2, fatal_only=True)] == ["ns/new"]
    assert len(rollout_pod_problems(pods, None, fatal_only=True)) == 2


def test_terminating_and_unscheduled_pods():
    pending = {"metadata": {"name": "p", "namespace": "ns"}, "spec": {},
               "status": {"phase": "Pending", "conditions": [
                   {"type": "PodScheduled", "status": "False"}]}}
    going = pod("going", containers=[CRASHING], deletionTimestamp="2026-01-01T00:00:00Z")
    problems = rollout_pod_problems([pending, going])
    assert [problem["text"] for problem in problems] == ["pod ns/p on node (not scheduled): Pending: no Ready condition yet"]
    with pytest.raises(AnsibleFilterError, match="list of pods"):
        rollout_pod_problems({"resources": []})


@pytest.mark.parametrize("state, restarts, exit_code, fatal", [
    # Between two back-offs a crash-looping container shows as running or terminated, not waiting.
    ({"running": {"startedAt": "x"}}, 2, 2, True),
    ({"terminated": {"reason": "Error", "exitCode": 2}}, 2, 2, True),
    ({"running": {"startedAt": "x"}}, 1, 2, False),  # one failure may be the API server restarting
    ({"running": {"startedAt": "x"}}, 5, 0, False),  # exited cleanly: restarted, not crashing
])
def test_a_container_that_keeps_failing_is_fatal_whatever_its_state(state, restarts, exit_code, fatal):
    container = {"name": "agent", "ready": False, "restartCount": restarts, "state": state,
                 "lastState": {"terminated": {"reason": "Error", "exitCode": exit_code}}}
    problems = rollout_pod_problems([pod("p", containers=[container], node="real-0")], fatal_only=True)
    assert [problem["pod"] for problem in problems] == (["ns/p"] if fatal else [])
    if fatal:
        assert "exit code 2" in problems[0]["text"] and "real-0" in problems[0]["text"]


def test_budget_and_not_ready_filters_wrap_the_core_and_name_bad_input():
    progress = rollout_progress([daemonset(updated=0, available=0)])
    assert rollout_budget(progress, 25)["timeout"] == 26  # no old pod counted: 25 s + 3 pods x 0.05 s, rounded up
    assert rollout_not_ready([]) == ""
    with pytest.raises(AnsibleFilterError, match="missing desired, to_replace, batch, min_ready_seconds"):
        rollout_budget([daemonset()])
    with pytest.raises(AnsibleFilterError, match="rollout_pod_problems"):
        rollout_not_ready({"pods": []})
