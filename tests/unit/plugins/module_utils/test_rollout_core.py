# Copyright: netmend.k8s contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""rollout core: how the controllers pace a rollout, the wait's budget from it, and the bounded
message naming the nodes whose pods are not ready. The filters of the same names are wired in
tests/unit/plugins/filter/test_rollout.py (whose name this file cannot share: pytest imports test files
by their base name), the module in tests/unit/plugins/modules/test_rollout_status.py."""
from __future__ import annotations

import pytest

from ansible_collections.netmend.k8s.plugins.module_utils.rollout import (
    rollout_budget, rollout_not_ready, rollout_progress)


def daemonset(desired, updated, current, max_unavailable=1, max_surge=0, min_ready=10, generation=2, observed=2,
              strategy="RollingUpdate"):
    return {"metadata": {"name": "agent", "namespace": "ns", "generation": generation},
            "spec": {"minReadySeconds": min_ready,
                     "updateStrategy": {"type": strategy, "rollingUpdate": {"maxUnavailable": max_unavailable,
                                                                            "maxSurge": max_surge}}},
            "status": {"observedGeneration": observed, "desiredNumberScheduled": desired,
                       "updatedNumberScheduled": updated, "numberAvailable": updated,
                       "currentNumberScheduled": current}}


def deployment(replicas, updated, current, strategy=None, observed=2):
    spec = {"replicas": replicas}
    if strategy:
        spec["strategy"] = strategy
    return {"metadata": {"name": "web", "namespace": "ns", "generation": 2}, "spec": spec,
            "status": {"observedGeneration": observed, "replicas": current, "updatedReplicas": updated}}


@pytest.mark.parametrize("workload, kind, to_replace, batch, waves, timeout, check_every", [
    # A new DaemonSet on 5,000 nodes: no old pod to replace, only the pods' own cost.
    (daemonset(5000, 0, 0, generation=1, observed=1), "DaemonSet", 0, 1, 0, 300 + 250, 10),
    # The controller has not seen the new template: every scheduled pod is an old one.
    (daemonset(5000, 5000, 5000, max_unavailable="10%", generation=3, observed=2), "DaemonSet",
     5000, 500, 10, 300 + 10 * 25 + 250, 10),
    # maxUnavailable 1 on 100 nodes, 40 replaced already: 60 waves of 25 s.
    (daemonset(100, 40, 100), "DaemonSet", 60, 1, 60, 300 + 60 * 25 + 5, 1),
    # maxSurge adds to the batch; a DaemonSet rounds a percentage up.
    (daemonset(3, 0, 3, max_unavailable="1%", max_surge=1), "DaemonSet", 3, 2, 2, 300 + 2 * 25 + 1, 1),
    # OnDelete replaces nothing by itself.
    (daemonset(50, 0, 50, strategy="OnDelete"), "DaemonSet", 0, 1, 0, 303, 1),
    # A Deployment's defaults: 25% unavailable (rounded down) + 25% surge (rounded up); no minReadySeconds.
    (deployment(10, 0, 10), "Deployment", 10, 5, 2, 300 + 2 * 15 + 1, 1),
    # Recreate: every old pod goes in one wave.
    (deployment(10, 0, 10, strategy={"type": "Recreate"}), "Deployment", 10, 10, 1, 300 + 15 + 1, 1),
    # Not yet observed: every replica it counts may be an old one, whatever it says is updated.
    (deployment(4, 4, 4, strategy={"rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}, observed=1), "Deployment",
     4, 1, 4, 300 + 4 * 15 + 1, 1),
])
def test_budget_scales_with_size_and_batch(workload, kind, to_replace, batch, waves, timeout, check_every):
    progress = rollout_progress([workload], kind)
    assert (progress["to_replace"], progress["batch"]) == (to_replace, batch)
    found = rollout_budget(progress)
    assert (found["waves"], found["timeout"], found["check_pods_every"]) == (waves, timeout, check_every)
    assert found["text"].startswith("%ds (300s + %d wave" % (timeout, waves))


def test_a_percentage_keeps_its_waves_and_the_wait_grows_by_the_pods_only():
    small = rollout_budget(rollout_progress([daemonset(1000, 0, 1000, max_unavailable="10%")]))
    large = rollout_budget(rollout_progress([daemonset(5000, 0, 5000, max_unavailable="10%")]))
    assert small["waves"] == large["waves"] == 10
    assert large["timeout"] - small["timeout"] == 4000 * 0.05


def test_budget_text_and_its_knobs():
    progress = rollout_progress([daemonset(3, 0, 3, min_ready=4)])
    assert rollout_budget(progress, base_timeout=25)["text"] == "83s (25s + 3 waves of 1 pod x 19s + 3 pods x 0.05s)"
    assert rollout_budget(progress, 25, wave_seconds=0, pod_seconds=0)["timeout"] == 25 + 3 * 4
    assert rollout_budget(rollout_progress([daemonset(1001, 0, 0)]), pods_per_check=100)["check_pods_every"] == 11


def test_a_missing_workload_waits_the_base_only():
    progress = rollout_progress([], "DaemonSet", "ns/gone")
    assert (progress["to_replace"], progress["batch"], progress["min_ready_seconds"]) == (0, 1, 0)
    assert rollout_budget(progress, 30) == {"timeout": 30, "waves": 0, "check_pods_every": 1,
                                            "text": "30s (30s + 0 waves of 1 pod x 15s + 0 pods x 0.05s)"}


@pytest.mark.parametrize("call, message", [
    (lambda: rollout_progress([daemonset(10, 0, 10, max_unavailable="ten%")]), "maxUnavailable 'ten%' is not a number"),
    (lambda: rollout_progress([daemonset(10, 0, 10, max_surge=[1])]), r"maxSurge \[1\] is not a number"),
    (lambda: rollout_budget([daemonset(3, 0, 3)]), "missing desired, to_replace, batch, min_ready_seconds"),
    (lambda: rollout_budget({"desired": 3, "to_replace": 0}), "missing batch, min_ready_seconds$"),
    (lambda: rollout_budget(rollout_progress([]), wave_seconds="slow"), "'slow'"),
    (lambda: rollout_not_ready({"pods": []}), "list of rollout_pod_problems, got dict"),
])
def test_bad_input_raises_value_error_naming_it(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def problem(index, fatal=False):
    return {"pod": "ns/agent-%d" % index, "node": "kwok-node-%d" % index, "fatal": fatal, "reasons": [],
            "text": "pod ns/agent-%d on node kwok-node-%d: %s" % (index, index, "crash" if fatal else "Pending")}


def test_not_ready_names_a_bounded_list_of_nodes_fatal_first():
    problems = [problem(index) for index in range(4997)] + [problem(4999, fatal=True)]
    text = rollout_not_ready(problems, limit=3)
    assert text.startswith("4998 pods not ready, on nodes kwok-node-4999, kwok-node-0, kwok-node-1 and 4995 more. "
                           "pod ns/agent-4999 on node kwok-node-4999: crash. pod ns/agent-0 on node kwok-node-0: Pending")
    assert text.endswith("(4995 more pods not listed)")
    assert "kwok-node-2," not in text
    assert len(text) < 600


@pytest.mark.parametrize("problems, limit, text", [
    ([problem(1)], 10, "1 pod not ready, on node kwok-node-1. pod ns/agent-1 on node kwok-node-1: Pending"),
    ([], 10, ""),
    # Two pods on one node: the node is named once.
    ([problem(1), dict(problem(2), node="kwok-node-1")], 10,
     "2 pods not ready, on node kwok-node-1. pod ns/agent-1 on node kwok-node-1: Pending. "
     "pod ns/agent-2 on node kwok-node-2: Pending"),
    # A limit below 1 still names one.
    ([problem(1), problem(2)], 0, "2 pods not ready, on nodes kwok-node-1 and 1 more. "
                                  "pod ns/agent-1 on node kwok-node-1: Pending. (1 more pods not listed)"),
])
def test_not_ready_small_lists(problems, limit, text):
    assert rollout_not_ready(problems, limit) == text
