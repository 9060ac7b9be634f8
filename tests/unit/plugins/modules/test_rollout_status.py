# Copyright: netmend.k8s contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""run_module of rollout_status over a fake API: which calls it makes, when it reads the pods and what it
returns. The real API server and real crash-looping pods are in tests/lab/test_agent_rollout.py and
tests/lab/test_real_rollout.py, which wait through the agent role."""
from __future__ import annotations

import json

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.netmend.k8s.plugins.module_utils.kube_lite import KubeError
from ansible_collections.netmend.k8s.plugins.modules import rollout_status
from tests.unit.plugins.filter.test_rollout import CRASHING, daemonset, pod

PARAMS = {"kind": "DaemonSet", "name": "agent", "namespace": "ns", "read_pods": True}


class FakeApi:
    def __init__(self, workload, pods=(), error=None):
        self.workload, self.pods, self.error = workload, list(pods), error
        self.calls = []

    def get(self, path, **query):
        self.calls.append(("get", path, query))
        if self.error:
            raise self.error
        if self.workload is None:
            raise KubeError("GET %s: 404 Not Found" % path, status=404)
        return self.workload

    def list(self, path, **query):
        self.calls.append(("list", path, query))
        return {"items": self.pods}


def test_done_rollout_reads_no_pods():
    api = FakeApi(daemonset())
    result = rollout_status.run_module(PARAMS, api)
    assert result["done"] and not result["fatal"] and result["problems"] == [] and result["pods_read"] is False
    assert api.calls == [("get", "/apis/apps/v1/namespaces/ns/daemonsets/agent", {})]
    assert result["changed"] is False


def test_unfinished_rollout_names_its_current_pods_problems():
    api = FakeApi(daemonset(available=2), [pod("crash", containers=[CRASHING], node="real-1"),
                                           pod("old", generation="1", containers=[CRASHING]),
                                           pod("fine", ready=True)])
    result = rollout_status.run_module(PARAMS, api)
    assert api.calls[1] == ("list", "/api/v1/namespaces/ns/pods", {"labelSelector": "a=1,b=2"})
    assert [problem["pod"] for problem in result["problems"]] == ["ns/crash"]
    assert result["fatal"] is True and result["pods_read"] is True
    assert "real-1" in result["problems"][0]["text"]
    assert result["line"] == "DaemonSet ns/agent: 3 of 3 updated, 2 available"


def test_missing_and_unobserved_workloads_read_no_pods():
    api = FakeApi(None)
    result = rollout_status.run_module(dict(PARAMS, name="gone"), api)
    assert (result["found"], result["done"], result["line"]) == (False, False, "DaemonSet ns/gone: not found")
    api = FakeApi(daemonset(generation=3))
    result = rollout_status.run_module(PARAMS, api)
    assert not result["observed"] and len(api.calls) == 1


def test_deployment_path_and_other_errors():
    api = FakeApi({"metadata": {"name": "web", "namespace": "ns", "generation": 1}, "spec": {"replicas": 1},
                   "status": {"observedGeneration": 1, "updatedReplicas": 1, "availableReplicas": 1}})
    assert rollout_status.run_module(dict(PARAMS, kind="Deployment", name="web"), api)["done"]
    assert api.calls[0][1] == "/apis/apps/v1/namespaces/ns/deployments/web"
    with pytest.raises(KubeError, match="403"):
        rollout_status.run_module(PARAMS, FakeApi(None, error=KubeError("GET x: 403 Forbidden", status=403)))


def test_read_pods_false_reads_the_workload_only_and_says_so():
    api = FakeApi(daemonset(available=2), [pod("crash", containers=[CRASHING])])
    result = rollout_status.run_module(dict(PARAMS, read_pods=False), api)
    assert [call[0] for call in api.calls] == ["get"]
    assert (result["problems"], result["fatal"], result["pods_read"], result["done"]) == ([], False, False, False)


def test_the_rollout_pace_for_the_budget():
    workload = daemonset(updated=1, available=1)
    workload["spec"].update(minReadySeconds=10, updateStrategy={"rollingUpdate": {"maxUnavailable": "50%"}})
    workload["status"]["currentNumberScheduled"] = 3
    result = rollout_status.run_module(dict(PARAMS, read_pods=False), FakeApi(workload))
    # 2 old pods left, ceil(50% of 3) = 2 at a time.
    assert (result["to_replace"], result["batch"], result["min_ready_seconds"]) == (2, 2, 10)


def test_main_fails_naming_the_workload_on_a_bad_rolling_update_field(monkeypatch, capsys):
    workload = daemonset(available=2)
    workload["spec"]["updateStrategy"] = {"rollingUpdate": {"maxUnavailable": "ten%"}}
    api = FakeApi(workload)
    monkeypatch.setattr(rollout_status, "connect", lambda module, **where: api)
    with patch_module_args({"name": "agent", "namespace": "ns"}), pytest.raises(SystemExit) as exited:
        rollout_status.main()
    result = json.loads(capsys.readouterr().out)
    assert exited.value.code == 1 and result["failed"]
    assert result["msg"] == "Reading the rollout of DaemonSet ns/agent: rollout: maxUnavailable 'ten%' is not a number or a percentage"
    assert [call[0] for call in api.calls] == ["get"]


def test_main_reads_the_pods_by_default(monkeypatch, capsys):
    api = FakeApi(daemonset(available=2), [pod("slow", containers=[])])
    monkeypatch.setattr(rollout_status, "connect", lambda module, **where: api)
    with patch_module_args({"name": "agent", "namespace": "ns"}), pytest.raises(SystemExit) as exited:
        rollout_status.main()
    result = json.loads(capsys.readouterr().out)
    assert exited.value.code == 0 and result["pods_read"] and [p["pod"] for p in result["problems"]] == ["ns/slow"]


class Workloads(FakeApi):
    """A workload that reads as each of ``states`` in turn, then as the last one."""

    def __init__(self, states, pods=()):
        super().__init__(states[0], pods)
        self.states = list(states)

    def get(self, path, **query):
        self.workload = self.states.pop(0) if len(self.states) > 1 else self.states[0]
        return super().get(path, **query)


class Clock:
    def __init__(self):
        self.now, self.slept = 100.0, []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.slept.append(seconds)
        self.now += seconds + 0.5  # a read takes time too


def test_wait_reads_until_done_then_stops_without_listing_pods():
    api = Workloads([daemonset(available=0), daemonset(available=2), daemonset()], [pod("slow", containers=[])])
    clock = Clock()
    result = rollout_status.run_module(dict(PARAMS, wait=30, interval=2), api, clock=clock, sleep=clock.sleep)
    assert result["done"] and result["reads"] == 3 and clock.slept == [2, 2]
    assert [call[0] for call in api.calls] == ["get"] * 3 and not result["pods_read"]


def test_wait_ends_at_its_time_with_one_list_of_the_pods():
    api = Workloads([daemonset(available=2)], [pod("crash", containers=[CRASHING])])
    clock = Clock()
    result = rollout_status.run_module(dict(PARAMS, wait=10, interval=3), api, clock=clock, sleep=clock.sleep)
    # Reads at 100, 103.5, 107 and 110.5 (a sleep that would end past 110 is not taken); then one list of the pods.
    assert result["reads"] == 4 and clock.slept == [3, 3, 3] and clock.now == 110.5
    assert [call[0] for call in api.calls] == ["get"] * 4 + ["list"]
    assert result["fatal"] and result["line"] == "DaemonSet ns/agent: 3 of 3 updated, 2 available"


def test_wait_does_not_wait_for_a_missing_workload():
    clock = Clock()
    result = rollout_status.run_module(dict(PARAMS, wait=60), FakeApi(None), clock=clock, sleep=clock.sleep)
    assert not result["found"] and result["reads"] == 1 and clock.slept == []


@pytest.mark.parametrize("args, message", [
    ({"wait": -5}, "wait must be 0 or more seconds, got -5"),
    ({"interval": 0}, "interval must be at least 1 second, got 0"),
])
def test_main_refuses_a_bad_wait_or_interval_before_connecting(monkeypatch, capsys, args, message):
    monkeypatch.setattr(rollout_status, "connect", lambda module, **where: pytest.fail("connected"))
    with patch_module_args(dict({"name": "agent", "namespace": "ns"}, **args)), pytest.raises(SystemExit) as exited:
        rollout_status.main()
    result = json.loads(capsys.readouterr().out)
    assert exited.value.code == 1 and result["msg"] == message and result["name"] == "agent"
