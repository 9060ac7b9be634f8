# Copyright: netmend.k8s contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The shared agent loop: backoff, retry of transient failures, the readiness heartbeat and probe."""
from __future__ import annotations

import http.client
import json

import pytest

from ansible_collections.netmend.k8s.plugins.module_utils import agent
from ansible_collections.netmend.k8s.plugins.module_utils.kube_lite import KubeError


class Clock:
    def __init__(self, now=1000.0):
        self.now = now

    def __call__(self):
        return self.now


class CountingStopper(agent.Stopper):
    """Records every pause instead of sleeping."""

    def __init__(self):
        super().__init__()
        self.pauses = []

    def sleep(self, seconds):
        self.pauses.append(round(seconds, 3))
        return self.stopped


@pytest.mark.parametrize("rng_value, expected", [
    # No jitter drawn: 1, 2, 4, 8, 16, then the cap.
    (0.0, [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]),
    # The largest jitter shortens each delay by 30 %, never lengthens it past the cap.
    (1.0, [0.7, 1.4, 2.8, 5.6, 11.2, 21.0, 21.0]),
])
def test_backoff_is_exponential_capped_and_jittered(rng_value, expected):
    backoff = agent.Backoff(initial=1.0, cap=30.0, factor=2.0, jitter=0.3, rng=lambda: rng_value)
    assert [round(backoff.next_delay(), 3) for _delay in expected] == expected
    assert backoff.failures == len(expected)
    backoff.reset()
    assert backoff.next_delay() == pytest.approx(1.0 * (1 - 0.3 * rng_value))


def test_backoff_survives_a_very_long_outage():
    backoff = agent.Backoff(initial=1.0, cap=30.0, rng=lambda: 0.0)
    for _failure in range(2000):
        delay = backoff.next_delay()
    assert delay == 30.0


@pytest.mark.parametrize("exc, retry", [
    (KubeError("GET /api/v1/pods: [Errno 111] Connection refused"), True),
    (KubeError("GET /api/v1/pods: certificate verify failed"), True),
    (KubeError("too many requests", status=429), True),
    (KubeError("etcd leader changed", status=500), True),
    (KubeError("service unavailable", status=503), True),
    (KubeError("forbidden", status=403), False),
    (KubeError("not found", status=404), False),
    (KubeError("unauthorized", status=401), False),
    (ConnectionResetError(104, "Connection reset by peer"), True),
    (TimeoutError("timed out"), True),
    (http.client.IncompleteRead(b""), True),
    (ConnectionRefusedError(111, "Connection refused"), True),
    (FileNotFoundError(2, "No such file or directory: 'nsenter'"), False),
    (PermissionError(1, "Operation not permitted"), False),
    (ValueError("bad value"), False),
    (KeyError("items"), False),
])
def test_retryable(exc, retry):
    assert agent.retryable(exc) is retry


def test_run_every_retries_transient_failures_with_backoff_and_logs_each_once(capsys, tmp_path):
    outcomes = [KubeError("GET /api/v1/pods: connection refused"),
                KubeError("GET /api/v1/pods: connection refused"),
                KubeError("unavailable", status=503),
                None, None]

    def step():
        outcome = outcomes.pop(0)
        if outcome is not None:
            raise outcome

    stopper = CountingStopper()
    heartbeat = agent.Heartbeat(str(tmp_path / "heartbeat"))
    done = agent.run_every(step, 5.0, stopper, max_iterations=5, rng=lambda: 0.0, heartbeat=heartbeat, name="pod_poke")
    assert done == 5
    # 1, 2, 4 s of backoff after the three failures, then the 5 s interval (minus the step's time).
    assert stopper.pauses[:3] == [1.0, 2.0, 4.0]
    assert 4.9 < stopper.pauses[3] <= 5.0
    lines = capsys.readouterr().out.splitlines()
    failed = [line for line in lines if "pod_poke iteration failed, retrying" in line]
    assert len(failed) == 3
    assert 'attempt=1' in failed[0] and 'retry_s=1.0' in failed[0] and "connection refused" in failed[0]
    assert 'attempt=3' in failed[2] and 'retry_s=4.0' in failed[2]
    assert [line for line in lines if "pod_poke recovered" in line][0].endswith("failed_attempts=3")
    assert agent.readiness(heartbeat.path)[0]


def test_run_every_lets_other_failures_end_the_agent(tmp_path):
    def step():
        raise KubeError("forbidden", status=403)

    heartbeat = agent.Heartbeat(str(tmp_path / "heartbeat"))
    with pytest.raises(KubeError):
        agent.run_every(step, 1.0, CountingStopper(), max_iterations=3, heartbeat=heartbeat)
    assert not (tmp_path / "heartbeat").exists()


def test_heartbeat_only_after_iterations_that_did_their_job(tmp_path):
    outcomes = [False, None, False]
    clock = Clock()
    heartbeat = agent.Heartbeat(str(tmp_path / "heartbeat"), clock=clock)
    seen = []

    def step():
        outcome = outcomes.pop(0)
        seen.append((tmp_path / "heartbeat").exists())
        return outcome

    agent.run_every(step, 10.0, CountingStopper(), jitter=0.5, max_iterations=3, heartbeat=heartbeat)
    assert seen == [False, False, True]
    beat = json.loads((tmp_path / "heartbeat").read_text())
    # valid for two whole periods at the longest jitter, plus the grace.
    assert beat == {"at": 1000.0, "until": 1000.0 + 2 * 10.0 * 1.5 + agent.HEARTBEAT_GRACE}
    assert [p.name for p in tmp_path.iterdir()] == ["heartbeat"]  # no temporary file left


def test_run_every_writes_the_heartbeat_named_by_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(agent.HEARTBEAT_ENV, str(tmp_path / "beat"))
    agent.run_every(lambda: None, 1.0, CountingStopper(), max_iterations=1)
    assert agent.readiness(str(tmp_path / "beat"))[0]


@pytest.mark.parametrize("content, now, max_age, ready, reason", [
    (None, 1000, None, False, "no successful iteration yet"),
    ("{not json", 1000, None, False, "unreadable heartbeat"),
    ('{"at": 990}', 1000, None, False, "unreadable heartbeat"),
    ('{"at": 990, "until": 1030}', 1000, None, True, "last successful iteration 10s ago"),
    ('{"at": 990, "until": 1030}', 1031, None, False, "last successful iteration 41s ago, stale for 1s"),
    ('{"at": 990, "until": 1030}', 1000, 5, False, "stale for 5s"),
    ('{"at": 990, "until": 1030}', 1000, 60, True, "10s ago"),
])
def test_readiness(tmp_path, content, now, max_age, ready, reason):
    path = tmp_path / "heartbeat"
    if content is not None:
        path.write_text(content)
    ok, why = agent.readiness(str(path), max_age, clock=Clock(now))
    assert ok is ready
    assert reason in why


def test_ready_probe_exit_codes_and_messages(tmp_path, capsys):
    path = tmp_path / "heartbeat"
    environ = {agent.HEARTBEAT_ENV: str(path)}
    assert agent.ready_main([], environ=environ, clock=Clock(1000)) == 1
    assert capsys.readouterr().out.startswith("not ready: no successful iteration yet")
    agent.Heartbeat(str(path), clock=Clock(1000)).beat(30)
    assert agent.ready_main([], environ=environ, clock=Clock(1010)) == 0
    assert capsys.readouterr().out == "ready: last successful iteration 10s ago\n"
    assert agent.ready_main(["--max-age", "5"], environ=environ, clock=Clock(1010)) == 1
    assert agent.ready_main([], environ={}, clock=Clock(1010)) == 1
    assert "no heartbeat file" in capsys.readouterr().out.splitlines()[-1]


def test_dispatch_clears_an_earlier_containers_heartbeat(tmp_path, monkeypatch, capsys):
    path = tmp_path / "heartbeat"
    agent.Heartbeat(str(path)).beat(3600)
    monkeypatch.setenv(agent.HEARTBEAT_ENV, str(path))
    # Bad options end the agent before its loop: the old beat must not keep it ready.
    assert agent.main(["pod_poke", "--timeout", "0"]) == 2
    assert not path.exists()
    assert agent.main(["ready"]) == 1
    assert "not ready" in capsys.readouterr().out
