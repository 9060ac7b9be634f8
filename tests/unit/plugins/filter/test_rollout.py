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


def scaled_daemonset(desired, updated, current, max_unavailable=1, max_surge=0, min_ready=10, generation=2, observed=2,
                     strategy="RollingUpdate"):
    workload = daemonset(generation=generation, observed=observed, desired=desired, updated=updated, available=updated)
    workload["spec"].update({"minReadySeconds": min_ready,
                             "updateStrategy": {"type": strategy, "rollingUpdate": {"maxUnavailable": max_unavailable,
                                                                                    "maxSurge": max_surge}}})
    workload["status"]["currentNumberScheduled"] = current
    return [workload]


@pytest.mark.parametrize("resources, kind, to_replace, budget, waves, timeout, check_every", [
    # A new DaemonSet on 5,000 nodes: no old pod to replace, only the pods' own cost.
    (scaled_daemonset(5000, 0, 0, generation=1, observed=1), "DaemonSet", 0, 1, 0, 300 + 250, 10),
    # The controller has not seen the new template: every scheduled pod is an old one.
    (scaled_daemonset(5000, 5000, 5000, max_unavailable="10%", generation=3, observed=2), "DaemonSet",
     5000, 500, 10, 300 + 10 * 25 + 250, 10),
    # maxUnavailable 1 on 100 nodes, 40 replaced already: 60 waves of 25 s.
    (scaled_daemonset(100, 40, 100), "DaemonSet", 60, 1, 60, 300 + 60 * 25 + 5, 1),
    # maxSurge adds to the budget; a percentage rounds up for DaemonSets.
    (scaled_daemonset(3, 0, 3, max_unavailable="1%", max_surge=1), "DaemonSet", 3, 2, 2, 300 + 2 * 25 + 1, 1),
    # OnDelete replaces nothing by itself.
    (scaled_daemonset(50, 0, 50, strategy="OnDelete"), "DaemonSet", 0, 1, 0, 303, 1),
    # A Deployment's defaults: 25% unavailable (rounded down) + 25% surge (rounded up).
    ([{"metadata": {"name": "web", "namespace": "ns", "generation": 2},
       "spec": {"replicas": 10}, "status": {"observedGeneration": 2, "replicas": 10, "updatedReplicas": 0}}],
     "Deployment", 10, 5, 2, 300 + 2 * 15 + 1, 1),
])
def test_rollout_budget_scales_with_size_and_budget(resources, kind, to_replace, budget, waves, timeout, check_every):
    found = rollout_budget(resources, kind)
    assert (found["to_replace"], found["budget"], found["waves"], found["timeout"], found["check_pods_every"]) == \
        (to_replace, budget, waves, timeout, check_every)
    assert found["text"].startswith("%ds (300s + %d wave" % (timeout, waves))


def test_rollout_budget_with_a_percentage_keeps_its_waves_and_grows_by_the_pods_only():
    small = rollout_budget(scaled_daemonset(1000, 0, 1000, max_unavailable="10%"))
    large = rollout_budget(scaled_daemonset(5000, 0, 5000, max_unavailable="10%"))
    assert small["waves"] == large["waves"] == 10
    assert large["timeout"] - small["timeout"] == 4000 * 0.05


def test_rollout_budget_text():
    assert rollout_budget(scaled_daemonset(3, 0, 3, min_ready=4), base_timeout=25)["text"] == \
        "83s (25s + 3 waves of 1 pod x 19s + 3 pods x 0.05s)"


def test_rollout_budget_refuses_what_is_not_a_number():
    with pytest.raises(AnsibleFilterError, match="'ten%' is not a number"):
        rollout_budget(scaled_daemonset(10, 0, 10, max_unavailable="ten%"))


def problem(index, fatal=False):
    return {"pod": "ns/agent-%d" % index, "node": "kwok-node-%d" % index, "fatal": fatal, "reasons": [],
            "text": "pod ns/agent-%d on node kwok-node-%d: %s" % (index, index, "crash" if fatal else "Pending")}


def test_rollout_not_ready_names_a_bounded_list_of_nodes_fatal_first():
    problems = [problem(index) for index in range(4997)] + [problem(4999, fatal=True)]
    text = rollout_not_ready(problems, limit=3)
    assert text.startswith("4998 pods not ready, on nodes kwok-node-4999, kwok-node-0, kwok-node-1 and 4995 more. "
                           "pod ns/agent-4999 on node kwok-node-4999: crash. pod ns/agent-0 on node kwok-node-0: Pending")
    assert text.endswith("(4995 more pods not listed)")
    assert "kwok-node-2," not in text
    assert len(text) < 600


def test_rollout_not_ready_small_and_empty():
    assert rollout_not_ready([problem(1)]) == "1 pod not ready, on node kwok-node-1. pod ns/agent-1 on node kwok-node-1: Pending"
    assert rollout_not_ready([]) == ""
    with pytest.raises(AnsibleFilterError, match="rollout_pod_problems"):
        rollout_not_ready({"pods": []})
