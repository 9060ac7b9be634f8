# Copyright: netmend.k8s contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

import re
import threading
import urllib.request

import pytest

from ansible_collections.netmend.k8s.plugins.module_utils import agent
from ansible_collections.netmend.k8s.plugins.module_utils import poke
from ansible_collections.netmend.k8s.plugins.module_utils import poke_agent
from ansible_collections.netmend.k8s.plugins.module_utils.kube_lite import KubeError


def pod(name, namespace="default", ip="10.0.0.1", labels=None, phase="Running", ready=True, ips=None,
        uid=None, version="1", deleting=False, node="n1"):
    status = {"phase": phase, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}
    if ip:
        status["podIP"] = ip
    if ips:
        status["podIPs"] = [{"ip": address} for address in ips]
    metadata = {"name": name, "namespace": namespace, "labels": labels or {}, "uid": uid or namespace + "/" + name,
                "resourceVersion": version}
    if deleting:
        metadata["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": metadata, "spec": {"nodeName": node}, "status": status}


@pytest.mark.parametrize("selector, labels, matches", [
    ("", {}, True),
    ("app=web", {"app": "web"}, True),
    ("app==web", {"app": "web"}, True),
    ("app=web", {"app": "db"}, False),
    ("app!=web", {"app": "db"}, True),
    ("app!=web", {}, True),
    ("app!=web", {"app": "web"}, False),
    ("tier", {"tier": "x"}, True),
    ("tier", {}, False),
    ("!tier", {}, True),
    ("!tier", {"tier": ""}, False),
    ("env in (prod, stage),app", {"env": "stage", "app": "a"}, True),
    ("env in (prod,stage)", {"env": "dev"}, False),
    ("env notin (prod)", {}, True),
    ("env notin (prod)", {"env": "prod"}, False),
    ("app.kubernetes.io/name=web,env=prod", {"app.kubernetes.io/name": "web", "env": "prod"}, True),
    ("app.kubernetes.io/name=web,env=prod", {"app.kubernetes.io/name": "web"}, False),
])
def test_label_selector(selector, labels, matches):
    assert poke_agent.selector_matches(poke_agent.parse_selector(selector), labels) is matches


@pytest.mark.parametrize("selector", ["app=(web", "a b", "=x", "env in prod"])
def test_bad_label_selector_is_named(selector):
    with pytest.raises(poke.PokeError, match=re.escape(repr(selector))):
        poke_agent.parse_selector(selector)


def T(ip, namespace, name, node):
    return poke_agent.Target(ip, namespace, name, node)


FILTER_CASES = [
    ("default excludes kube-system", {}, pod("dns", "kube-system"), []),
    ("default takes other namespaces", {}, pod("web", "shop", ip="10.0.0.5"),
     [T("10.0.0.5", "shop", "web", "n1")]),
    ("no IP yet", {}, pod("web", ip=None, phase="Pending"), ()),
    ("an address that is not one is skipped", {}, pod("web", ip="10.0.0.256"), ()),
    ("addresses are written as poke writes them", {}, pod("web", ips=["fd00:0::7"]), (T("fd00::7", "default", "web", "n1"),)),
    ("finished pods are not pinged", {}, pod("job", phase="Succeeded"), []),
    ("terminating pods are not pinged", {}, pod("old", deleting=True), []),
    ("dual stack gives one target per IP", {}, pod("web", ips=["10.0.0.7", "fd00::7"]),
     [T("10.0.0.7", "default", "web", "n1"),
      T("fd00::7", "default", "web", "n1")]),
    ("namespace list", {"namespaces": ["a"]}, pod("web", "b"), []),
    ("explicit kube-system wins over the default exclusion", {"namespaces": ["kube-system"]},
     pod("dns", "kube-system", ip="10.0.0.10"),
     [T("10.0.0.10", "kube-system", "dns", "n1")]),
    ("no exclusions", {"exclude_namespaces": []}, pod("dns", "kube-system"),
     [T("10.0.0.1", "kube-system", "dns", "n1")]),
    ("selector", {"label_selector": "app=web"}, pod("db", labels={"app": "db"}), []),
    ("only not ready skips ready pods", {"only_not_ready": True}, pod("web", ready=True), []),
    ("only not ready keeps unready pods", {"only_not_ready": True}, pod("web", ready=False),
     [T("10.0.0.1", "default", "web", "n1")]),
]


@pytest.mark.parametrize("options, obj, expected", [case[1:] for case in FILTER_CASES],
                         ids=[case[0] for case in FILTER_CASES])
def test_pod_filter_targets(options, obj, expected):
    assert list(poke_agent.PodFilter(**options).targets(obj)) == list(expected)


@pytest.mark.parametrize("options, path, query", [
    ({}, "/api/v1/pods", {"fieldSelector": "metadata.namespace!=kube-system"}),
    ({"namespaces": ["shop"]}, "/api/v1/namespaces/shop/pods", {}),
    ({"namespaces": ["a", "b"], "label_selector": "app=web"}, "/api/v1/pods",
     {"labelSelector": "app=web", "fieldSelector": "metadata.namespace!=kube-system"}),
    ({"exclude_namespaces": ["kube-system", "monitoring"]}, "/api/v1/pods",
     {"fieldSelector": "metadata.namespace!=kube-system,metadata.namespace!=monitoring"}),
    ({"exclude_namespaces": []}, "/api/v1/pods", {}),
])
def test_pod_filter_server_side_selectors(options, path, query):
    pod_filter = poke_agent.PodFilter(**options)
    assert pod_filter.path() == path
    assert pod_filter.query() == query


class FakeClient:
    """Answers list with ``pods`` and each watch with the next batch of events (or an exception)."""

    def __init__(self, pods, watches, version="100"):
        self.idle = threading.Event()  # an exhausted watch blocks like a quiet one, until this is set
        self.pods = pods
        self.watches = list(watches)
        self.version = version
        self.calls = []

    def pages(self, path, page_size=500, **query):
        self.calls.append(("list", path, dict(query, limit=page_size)))
        pods = list(self.pods)
        for start in range(0, max(len(pods), 1), page_size):
            yield {"items": pods[start:start + page_size], "metadata": {"resourceVersion": self.version}}

    def watch(self, path, resource_version, timeout_seconds=60, on_open=None, **query):
        self.calls.append(("watch", resource_version, query))
        if not self.watches:
            self.idle.wait(5)
            return
        batch = self.watches.pop(0)
        if isinstance(batch, Exception):
            raise batch
        on_open()
        yield from batch


def ips(targets):
    return sorted(target.ip for target in targets.snapshot())


def test_targets_follow_watch_events_without_relisting():
    client = FakeClient([pod("a", ip="10.0.0.1", uid="u1"), pod("dns", "kube-system", ip="10.0.0.2")], [
        [{"type": "ADDED", "object": pod("b", ip="10.0.0.3", uid="u2", version="101")},
         {"type": "MODIFIED", "object": pod("a", ip="10.0.0.1", uid="u1", version="102", deleting=True)},
         {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "150"}}}],
        [{"type": "ADDED", "object": pod("c", ip="10.0.0.4", uid="u3", version="151")},
         {"type": "DELETED", "object": pod("b", ip="10.0.0.3", uid="u2", version="152")}],
    ])
    targets = poke_agent.PodTargets(client, poke_agent.PodFilter(), log=lambda *a, **k: None)
    targets.relist()
    assert ips(targets) == ["10.0.0.1"]
    targets.watch_once()
    assert ips(targets) == ["10.0.0.3"]
    assert targets.resource_version == "150"
    targets.watch_once()
    assert ips(targets) == ["10.0.0.4"]
    assert [call[0] for call in client.calls] == ["list", "watch", "watch"]
    assert [call[1] for call in client.calls[1:]] == ["100", "150"]
    assert targets.metrics.requests == {"list": 1, "watch": 2}


def test_the_list_is_read_a_page_at_a_time_and_counted_per_request():
    many = [pod("p%d" % index, ip="10.1.%d.%d" % (index // 250, index % 250), uid="u%d" % index) for index in range(1203)]
    client = FakeClient(many, [])
    targets = poke_agent.PodTargets(client, poke_agent.PodFilter(), log=lambda *a, **k: None)
    targets.relist()
    assert len(targets.snapshot()) == 1203 and targets.resource_version == "100"
    assert client.calls == [("list", "/api/v1/pods", {"fieldSelector": "metadata.namespace!=kube-system",
                                                      "limit": poke_agent.LIST_PAGE_SIZE})]
    assert targets.metrics.requests["list"] == 3


def test_gone_relists_and_other_errors_propagate():
    logs = []
    client = FakeClient([pod("a", uid="u1")], [KubeError("too old", status=410), [], KubeError("boom", status=500)])
    targets = poke_agent.PodTargets(client, poke_agent.PodFilter(), log=lambda *a, **k: logs.append((a, k)))
    targets.relist()
    targets.watch_once()
    assert targets.resource_version is None and logs[0][0][1] == "watch expired, listing again"
    targets.watch_once()
    assert [call[0] for call in client.calls] == ["list", "watch", "list", "watch"]
    with pytest.raises(KubeError):
        targets.watch_once()


class FailingListClient(FakeClient):
    """The first ``failures`` lists fail as an unreachable API server does."""

    def __init__(self, pods, watches, failures):
        super().__init__(pods, watches)
        self.failures = failures

    def pages(self, path, page_size=500, **query):
        if self.failures:
            self.failures -= 1
            self.calls.append(("list-failed", path, query))
            raise KubeError("GET %s: [Errno 111] Connection refused" % path)
        yield from super().pages(path, page_size, **query)


class RecordingStopper(agent.Stopper):
    """Records pauses instead of sleeping; stops once the fake client has nothing more to say."""

    def __init__(self, client, stop_after):
        super().__init__()
        self.client = client
        self.stop_after = stop_after
        self.pauses = []

    def sleep(self, seconds):
        self.pauses.append(round(seconds, 3))
        if len(self.client.calls) >= self.stop_after:
            self.event.set()
        return self.stopped


def test_first_list_is_retried_with_backoff_not_fatal():
    client = FailingListClient([pod("a", ip="10.0.0.1", uid="u1")], [[]], failures=3)
    logs = []
    targets = poke_agent.PodTargets(client, poke_agent.PodFilter(), backoff=agent.Backoff(cap=4.0, rng=lambda: 0.0),
                                    log=lambda fix, message, **k: logs.append((message, k)))
    stopper = RecordingStopper(client, stop_after=5)
    assert not targets.current()
    targets.follow(stopper)
    assert [call[0] for call in client.calls] == ["list-failed"] * 3 + ["list", "watch"]
    assert stopper.pauses == [1.0, 2.0, 4.0, 1.0]  # backoff, then the quick-watch guard
    assert [message for message, _fields in logs] == ["cannot list pods, retrying"] * 3 + ["API server answers again"]
    assert logs[3][1]["failed_attempts"] == 3 and targets.backoff.failures == 0
    assert [fields["attempt"] for _message, fields in logs[:3]] == [1, 2, 3]
    assert "Connection refused" in logs[0][1]["error"]
    assert ips(targets) == ["10.0.0.1"] and targets.current()


def test_broken_watch_is_re_established_from_the_same_version():
    import http.client

    client = FakeClient([pod("a", ip="10.0.0.1", uid="u1")], [
        [{"type": "ADDED", "object": pod("b", ip="10.0.0.2", uid="u2", version="101")}],
        http.client.IncompleteRead(b""),  # the API server went away mid-stream
        ConnectionRefusedError(111, "Connection refused"),
        [{"type": "DELETED", "object": pod("a", ip="10.0.0.1", uid="u1", version="102")}],
    ])
    logs = []
    clock = [0.0]
    targets = poke_agent.PodTargets(client, poke_agent.PodFilter(), max_stale=10.0, clock=lambda: clock[0],
                                    backoff=agent.Backoff(rng=lambda: 0.0), log=lambda fix, message, **k: logs.append(message))
    stopper = RecordingStopper(client, stop_after=5)
    original_sleep = stopper.sleep

    def sleep(seconds):
        clock[0] += seconds
        assert targets.synced.is_set() and ips(targets)  # the last set is kept while failing
        return original_sleep(seconds)
    stopper.sleep = sleep
    targets.follow(stopper)
    assert [call[0] for call in client.calls] == ["list", "watch", "watch", "watch", "watch"]
    assert [call[1] for call in client.calls[1:]] == ["100", "101", "101", "101"]
    assert stopper.pauses == [1.0, 1.0, 2.0, 1.0]  # quick-watch guard, backoff 1 and 2, guard
    assert logs == ["watch failed, retrying", "watch failed, retrying", "API server answers again"]
    assert ips(targets) == ["10.0.0.2"]
    assert targets.failing_since is None and targets.current()


def test_target_set_is_not_current_after_failing_longer_than_max_stale():
    clock = [100.0]
    targets = poke_agent.PodTargets(FakeClient([pod("a")], []), poke_agent.PodFilter(), max_stale=60.0,
                                    clock=lambda: clock[0])
    targets.relist()
    targets.failing_since = 100.0
    clock[0] = 160.0
    assert targets.current()
    clock[0] = 160.5
    assert not targets.current()


def test_sweeper_reports_not_doing_its_job_on_a_stale_set():
    class Stale(StaticTargets):
        def current(self):
            return False
    sweeper = poke_agent.Sweeper(Stale(["10.0.0.1"]), poke_agent.Metrics(), {},
                                 probe=lambda addresses, **options: outcome_for(addresses, []),
                                 log=lambda *a, **k: None)
    assert sweeper() is False


def test_only_not_ready_drops_pods_that_become_ready():
    client = FakeClient([pod("a", uid="u1", ready=False)], [
        [{"type": "MODIFIED", "object": pod("a", uid="u1", ready=True, version="101")}]])
    targets = poke_agent.PodTargets(client, poke_agent.PodFilter(only_not_ready=True), log=lambda *a, **k: None)
    targets.relist()
    assert ips(targets) == ["10.0.0.1"]
    targets.watch_once()
    assert ips(targets) == []


def outcome_for(addresses, down, rtt=0.0007, mtu_probe=None, blackholed=()):
    """What poke.probe_addresses answers when every address but ``down`` answers in ``rtt`` seconds."""
    outcome = poke.Outcome(list(addresses), 1, mtu_probe)
    for index, ip in enumerate(addresses):
        for probe in outcome.probes(index):
            outcome.sent_at[probe] = 1.0
            if ip not in down and not (probe >= len(addresses) and ip in blackholed):
                outcome.answered_at[probe], outcome.done[probe] = 1.0 + rtt, 1
    outcome.duration = 1.0
    return outcome


class StaticTargets:
    def __init__(self, ips):
        self.ips = ips

    def snapshot(self):
        return [T(ip, "ns", "p", "n2") for ip in self.ips]

    def current(self):
        return True


def test_sweeper_logs_each_newly_unreachable_target_once():
    downs = [["10.0.0.2"], ["10.0.0.2"], ["10.0.0.1", "10.0.0.2"], []]
    logs = []
    sweeper = poke_agent.Sweeper(StaticTargets(["10.0.0.1", "10.0.0.2"]), poke_agent.Metrics(), {},
                                 probe=lambda addresses, **options: outcome_for(addresses, downs.pop(0)),
                                 log=lambda fix, message, **fields: logs.append((message, fields.get("ip"))))
    for _sweep in range(4):
        sweeper()
    assert logs == [("unreachable", "10.0.0.2"), ("sweep", None), ("sweep", None),
                    ("unreachable", "10.0.0.1"), ("sweep", None), ("sweep", None)]


def test_summary_has_entries_only_for_targets_that_need_one():
    targets = [T("10.0.0.%d" % index, "ns", "p%d" % index, "n1") for index in range(1, 6)]
    addresses = [target.ip for target in targets]
    result = poke_agent.summarize(targets, outcome_for(addresses, ["10.0.0.4"], mtu_probe=1500, blackholed=["10.0.0.2"]))
    assert result["total"] == 5 and result["reachable"] == 4
    assert result["unreachable"] == [{"ip": "10.0.0.4", "namespace": "ns", "name": "p4", "node": "n1", "reason": "timeout"}]
    assert result["mtu_blackholed"] == [{"ip": "10.0.0.2", "namespace": "ns", "name": "p2", "node": "n1"}]
    assert [round(rtt, 4) for rtt in result["round_trips"]] == [0.0007] * 4


def test_pods_that_share_an_address_are_one_target():
    # host-network pods have their node's address: ping it once, whatever the number of such pods
    client = FakeClient([pod("a", ip="10.0.0.9", uid="u1"), pod("b", ip="10.0.0.9", uid="u2"),
                         pod("c", ip="10.0.0.3", uid="u3")], [])
    targets = poke_agent.PodTargets(client, poke_agent.PodFilter(), log=lambda *a, **k: None)
    targets.relist()
    assert sorted((target.ip, target.name) for target in targets.snapshot()) == [("10.0.0.3", "c"), ("10.0.0.9", "a")]


def test_metrics_text_format():
    metrics = poke_agent.Metrics("node-1")
    metrics.count_request("list")
    metrics.observe(poke_agent.summarize([T(ip, "ns", "p", "n1") for ip in ("10.0.0.1", "10.0.0.2", "10.0.0.3")],
                                         outcome_for(["10.0.0.1", "10.0.0.2", "10.0.0.3"], ["10.0.0.3"])))
    text = metrics.render()
    assert 'netmend_pod_poke_sweeps_total{node="node-1"} 1\n' in text
    assert 'netmend_pod_poke_targets{node="node-1"} 3\n' in text
    assert 'netmend_pod_poke_unreachable{node="node-1"} 1\n' in text
    assert 'netmend_pod_poke_api_requests_total{node="node-1",verb="list"} 1\n' in text
    assert 'netmend_pod_poke_rtt_seconds_bucket{node="node-1",le="0.0005"} 0\n' in text
    assert 'netmend_pod_poke_rtt_seconds_bucket{node="node-1",le="0.001"} 2\n' in text
    assert 'netmend_pod_poke_rtt_seconds_bucket{node="node-1",le="+Inf"} 2\n' in text
    assert 'netmend_pod_poke_rtt_seconds_count{node="node-1"} 2\n' in text
    sample = re.compile(r'^netmend_pod_poke_[a-z_]+(\{[a-z]+="[^"]*"(,[a-z]+="[^"]*")*\})? [0-9.e+-]+$')
    for line in text.splitlines():
        assert line.startswith("# HELP ") or line.startswith("# TYPE ") or sample.match(line), line
    types = re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M)
    assert ("netmend_pod_poke_rtt_seconds", "histogram") in types
    assert ("netmend_pod_poke_sweeps_total", "counter") in types


def test_agent_main_bounded_run_serves_metrics(capsys):
    client = FakeClient([pod("a", ip="10.0.0.1", uid="u1"), pod("b", ip="10.0.0.2", uid="u2")],
                        [])
    seen = []

    def fake_probe(addresses, **options):
        seen.append((sorted(addresses), options))
        return outcome_for(addresses, ["10.0.0.2"])

    stopper = agent.Stopper()
    client.idle = stopper.event
    rc = poke_agent.agent_main(["--interval", "0.01", "--max-iterations", "3", "--metrics-port", "0",
                                "--metrics-address", "127.0.0.1", "--mtu-probe", "1400"],
                               client=client, probe=fake_probe, stopper=stopper)
    assert rc == 0
    assert len(seen) == 3 and seen[0][0] == ["10.0.0.1", "10.0.0.2"]
    assert seen[0][1] == {"timeout": 1.0, "count": 1, "size": 56, "mtu_probe": 1400, "rate": None}
    out = capsys.readouterr().out
    assert out.count(" pod_poke sweep ") == 3
    assert out.count(" pod_poke unreachable ") == 1
    port = int(re.search(r"serving metrics port=(\d+)", out).group(1))
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5) as response:
        body = response.read().decode()
    assert "netmend_pod_poke_sweeps_total{node=\"\"} 3" in body
    assert sum(1 for call in client.calls if call[0] == "list") == 1
    assert stopper.stopped


@pytest.mark.parametrize("argv, message", [
    (["--timeout", "0"], "timeout must be greater than 0"),
    (["--label-selector", "a b"], "invalid label selector"),
])
def test_agent_main_rejects_bad_options(capsys, argv, message):
    assert poke_agent.agent_main(argv, client=FakeClient([], []), stopper=agent.Stopper()) == 2
    assert message in capsys.readouterr().out


def test_agent_main_names_missing_cap_net_raw(capsys):
    def refused(addresses, **options):
        raise poke.PokeError("cannot open an ICMP socket for IPv4: a raw socket needs CAP_NET_RAW")
    stopper = agent.Stopper()
    client = FakeClient([pod("a")], [])
    client.idle = stopper.event
    rc = poke_agent.agent_main(["--once", "--metrics-port", "-1"], client=client, probe=refused, stopper=stopper)
    assert rc == 1
    assert "CAP_NET_RAW" in capsys.readouterr().out


def test_dispatch_from_the_agent_entry_point(capsys):
    assert agent.main(["pod_poke", "--timeout", "0"]) == 2
    assert "pod_poke cannot start" in capsys.readouterr().out
