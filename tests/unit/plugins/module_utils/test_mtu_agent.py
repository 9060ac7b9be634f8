# Copyright: netmend.k8s contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

import json
import re
import types

import pytest

from ansible_collections.netmend.k8s.plugins.module_utils import mtu_agent
from ansible_collections.netmend.k8s.plugins.module_utils.kube_lite import KubeClient, KubeError
from ansible_collections.netmend.k8s.plugins.module_utils.mtu import veth_name

CONFLIST = '{\n  "plugins": [\n    {\n      "type": "calico"\n    }\n  ]\n}\n'


def pod(name, namespace="default", **extra):
    meta = {"name": name, "namespace": namespace, "uid": "uid-" + name}
    meta.update(extra.pop("meta", {}))
    return {"metadata": meta, "spec": dict({"nodeName": "node-a"}, **extra.pop("spec", {})),
            "status": dict({"phase": "Running"}, **extra.pop("status", {}))}


class FakeClient(KubeClient):
    """The real KubeClient logic over a fake API: pods by (namespace, name); ``refuse`` names pods
    a disruption budget protects. Evictions carry the pod UID as a precondition, checked as the API server does."""

    def __init__(self, pods, refuse=()):  # pylint: disable=super-init-not-called
        self.pods = {(p["metadata"]["namespace"], p["metadata"]["name"]): p for p in pods}
        self.refuse = set(refuse)
        self.calls = []

    def list(self, path, **query):
        self.calls.append(("list", path, query))
        return {"items": list(self.pods.values())}

    def request(self, method, path, query=None, body=None):
        parts = path.split("/")
        namespace, name = parts[4], parts[6]
        if method == "POST":
            uid = body["deleteOptions"]["preconditions"]["uid"]
            self.calls.append(("evict", namespace, name, uid))
            if (namespace, name) not in self.pods:
                raise KubeError("not found", status=404)
            if self.pods[(namespace, name)]["metadata"]["uid"] != uid:
                raise KubeError("precondition failed", status=409)
            if (namespace, name) in self.refuse:
                raise KubeError("disruption budget", status=429)
            self.pods.pop((namespace, name))
            return {}
        if (namespace, name) not in self.pods:
            raise KubeError("not found", status=404)
        return self.pods[(namespace, name)]


@pytest.fixture
def node(tmp_path):
    """A fake node: /sys/class/net with eth0 1460 and a CNI config without MTU."""
    net = tmp_path / "net"
    net.mkdir()
    path = tmp_path / "10-calico.conflist"
    path.write_text(CONFLIST)

    def add_link(name, mtu):
        (net / name).mkdir()
        (net / name / "mtu").write_text("%d\n" % mtu)
        (net / name / "flags").write_text("0x1003\n")
    add_link("eth0", 1460)
    return types.SimpleNamespace(path=path, net=net, add_link=add_link)


def make_agent(node, client, *extra):
    options = mtu_agent.parse_args(["--path", str(node.path), "--sys-root", str(node.net), "--eviction-timeout", "1", *extra])
    return mtu_agent.MtuAgent(client, "node-a", options, own_pod=("netmend-system", "netmend-calico-mtu-x"))


def evictions(client):
    return [(call[1], call[2]) for call in client.calls if call[0] == "evict"]


def test_evicts_exactly_the_wrong_mtu_pods(node, capsys):
    add_link = node.add_link
    pods = [
        pod("right"), pod("wrong-a"), pod("wrong-b", namespace="shop"),
        pod("no-veth"),
        pod("host", spec={"hostNetwork": True}),
        pod("calico-node-abcde", namespace="kube-system", meta={"labels": {"k8s-app": "calico-node"}}),
        pod("netmend-calico-mtu-x", namespace="netmend-system"),
        pod("static", meta={"annotations": {"kubernetes.io/config.mirror": "x"}}),
        pod("done", status={"phase": "Succeeded"}),
        pod("going", meta={"deletionTimestamp": "2026-01-01T00:00:00Z"}),
    ]
    for item in pods:
        namespace, name = item["metadata"]["namespace"], item["metadata"]["name"]
        if name != "no-veth":
            add_link(veth_name(namespace, name), 1440 if name == "right" else 1500)
    client = FakeClient(pods)
    make_agent(node, client).step()
    assert evictions(client) == [("default", "wrong-a"), ("shop", "wrong-b")]
    assert json.loads(node.path.read_text())["plugins"][0]["mtu"] == 1440
    lines = capsys.readouterr().out.splitlines()
    assert [re.match(r"\S+ calico_mtu (.*?)(?= \w+=|$)", line).group(1) for line in lines] == [
        "set conflist mtu", "evicted pod", "evicted pod"]
    assert 'pod="wrong-b"' in lines[2] and "interface_mtu=1500" in lines[2] and "mtu=1440" in lines[2]
    assert client.calls[0] == ("list", "/api/v1/pods", {"fieldSelector": "spec.nodeName=node-a"})


def test_refused_eviction_is_retried_next_pass_not_forced(node, capsys):
    add_link = node.add_link
    add_link(veth_name("default", "guarded"), 1500)
    add_link(veth_name("default", "free"), 1500)
    client = FakeClient([pod("guarded"), pod("free")], refuse={("default", "guarded")})
    agent = make_agent(node, client)
    passes = iter(range(0, 1000, 10))  # each pass one 10 s interval later
    agent.clock = lambda: float(next(passes))
    agent.step()
    assert evictions(client) == [("default", "guarded"), ("default", "free")]
    assert "eviction refused by a PodDisruptionBudget" in capsys.readouterr().out
    agent.step()  # the config is right now, but the refused pod keeps pod checks due
    assert evictions(client)[2:] == [("default", "guarded")]
    client.refuse.clear()
    agent.step()
    assert evictions(client)[3:] == [("default", "guarded")]
    assert agent.pending == set()
    agent.step()  # nothing pending, nothing changed, resync not due: no list call
    assert [call[0] for call in client.calls].count("list") == 3


def test_rewritten_config_is_repaired_and_pods_rechecked(node, capsys):
    path = node.path
    clock = [0.0]
    client = FakeClient([])
    agent = make_agent(node, client, "--interval", "10")
    agent.clock = lambda: clock[0]
    agent.step()
    clock[0] = 100.0
    path.write_text(CONFLIST)  # install-cni starts again and rewrites the file
    agent.step()
    assert json.loads(path.read_text())["plugins"][0]["mtu"] == 1440
    assert [call[0] for call in client.calls] == ["list", "list"]
    assert capsys.readouterr().out.count("set conflist mtu") == 2


def test_bad_config_logs_and_evicts_nothing(node, capsys):
    path, add_link = node.path, node.add_link
    path.write_text('{"plugins": [{"type": "flannel"}]}')
    add_link(veth_name("default", "wrong"), 1500)
    client = FakeClient([pod("wrong")])
    make_agent(node, client).step()
    assert client.calls == []
    assert "cannot set the MTU, will retry" in capsys.readouterr().out
    assert path.read_text() == '{"plugins": [{"type": "flannel"}]}'


def test_unreachable_api_is_left_to_the_loops_backoff(node):
    class Down(FakeClient):
        def list(self, path, **query):
            raise KubeError("GET /api/v1/pods: connection refused")
    agent = make_agent(node, Down([]))
    with pytest.raises(KubeError):
        agent.step()
    assert agent.next_pod_check is None
    assert json.loads(node.path.read_text())["plugins"][0]["mtu"] == 1440  # the file was still fixed


def test_refusing_api_is_logged_and_makes_the_agent_not_ready(node, capsys):
    class Refusing(FakeClient):
        def list(self, path, **query):
            raise KubeError("GET /api/v1/pods: 403 forbidden", status=403)
    agent = make_agent(node, Refusing([]))
    assert agent.step() is False
    assert "API call refused, will retry" in capsys.readouterr().out
    assert agent.next_pod_check is None


def test_bad_config_makes_the_agent_not_ready(node):
    node.path.write_text('{"plugins": [{"type": "flannel"}]}')
    assert make_agent(node, FakeClient([])).step() is False


def test_node_without_calico_config_waits_ready_then_applies(node, capsys):
    node.path.unlink()
    node.add_link(veth_name("default", "wrong"), 1500)
    client = FakeClient([pod("wrong")])
    agent = make_agent(node, client)
    assert agent.step() is True and agent.step() is True  # nothing to do is not a fault
    out = capsys.readouterr().out
    assert out.count("no Calico CNI config on this node, waiting for it") == 1
    assert client.calls == [] and not node.path.exists()
    node.path.write_text(CONFLIST)  # calico-node's install-cni arrives
    assert agent.step() is True
    assert "Calico CNI config appeared" in capsys.readouterr().out
    assert json.loads(node.path.read_text())["plugins"][0]["mtu"] == 1440
    assert evictions(client) == [("default", "wrong")]


def test_waiting_for_an_evicted_pod_keeps_the_heartbeat(node, tmp_path):
    from ansible_collections.netmend.k8s.plugins.module_utils import agent as agent_loop

    node.add_link(veth_name("default", "slow"), 1500)

    class Slow(FakeClient):
        def request(self, method, path, query=None, body=None):
            if method == "POST":
                self.calls.append(("evict", path))
                return {}  # accepted, but the pod stays until the timeout
            return super().request(method, path, query, body)

    heartbeat = agent_loop.Heartbeat(str(tmp_path / "heartbeat"))
    options = mtu_agent.parse_args(["--path", str(node.path), "--sys-root", str(node.net), "--eviction-timeout", "0.6"])
    mtu_agent.MtuAgent(Slow([pod("slow")]), "node-a", options, heartbeat=heartbeat).step()
    assert agent_loop.readiness(heartbeat.path)[0]


def test_explicit_mtu_and_arguments(node):
    add_link = node.add_link
    add_link(veth_name("default", "a"), 1410)
    client = FakeClient([pod("a")])
    make_agent(node, client, "--mtu", "1410", "--encapsulation", "vxlan", "--once").step()
    assert evictions(client) == []
    assert json.loads(node.path.read_text())["plugins"][0]["mtu"] == 1410
    assert mtu_agent.parse_args(["--once"]).max_iterations == 1


def test_eviction_carries_the_uid_and_spares_a_pod_recreated_under_the_name(node, capsys):
    node.add_link(veth_name("default", "web-0"), 1500)
    client = FakeClient([pod("web-0")])
    agent = make_agent(node, client)
    stale = agent.stale_pods(1440)
    assert [p["uid"] for p in stale] == ["uid-web-0"]
    # The StatefulSet controller replaces web-0 between our list and our eviction.
    client.pods[("default", "web-0")] = pod("web-0", meta={"uid": "uid-web-0-new"})
    outcomes = mtu_agent.evict_in_turn(client, stale, 1, agent.stopper.sleep, agent.clock, lambda *_: None)
    assert evictions(client) == [("default", "web-0")]
    assert client.calls[-1] == ("evict", "default", "web-0", "uid-web-0")
    assert [p["name"] for p in outcomes["gone"]] == ["web-0"] and not outcomes["evicted"]
    assert client.pods[("default", "web-0")]["metadata"]["uid"] == "uid-web-0-new"


def test_a_stop_during_the_wait_is_no_timeout(node):
    """Stopped while a pod it evicted is terminating: that pod counts as evicted (not 'still terminating'
    after a wait that never ran its course) and the next pod is not evicted."""
    node.add_link(veth_name("default", "a"), 1500)
    node.add_link(veth_name("default", "b"), 1500)

    class Lingering(FakeClient):
        def request(self, method, path, query=None, body=None):
            if method == "POST":
                self.calls.append(("evict", path))
                return {}  # accepted; the pod stays
            return super().request(method, path, query, body)

    client = Lingering([pod("a"), pod("b")])
    agent = make_agent(node, client)
    stale = agent.stale_pods(1440)
    reports = []
    stop_at = [None]

    def sleep(seconds):
        if seconds and stop_at[0] is None:
            stop_at[0] = len(client.calls)  # the first real pause of the wait: the agent is told to stop
        return stop_at[0] is not None

    outcomes = mtu_agent.evict_in_turn(client, stale, 60, sleep, agent.clock, lambda outcome, p: reports.append((outcome, p["name"])))
    assert reports == [("evicted", "a")]
    assert [p["name"] for p in outcomes["evicted"]] == ["a"] and not outcomes["still terminating"]
    assert [call for call in client.calls if call[0] == "evict"] == [("evict", "/api/v1/namespaces/default/pods/a/eviction")]


def test_stale_pods_from_a_reported_interface_list():
    """Host delivery knows the node's wrong interfaces from the module's result, not from /sys."""
    pods = [pod("a"), pod("b"), pod("host", spec={"hostNetwork": True})]
    reported = {veth_name("default", "a"): 1500, veth_name("default", "host"): 1500}
    stale = mtu_agent.stale_pods(pods, reported.get, 1440)
    assert stale == [{"namespace": "default", "name": "a", "uid": "uid-a",
                      "interface": veth_name("default", "a"), "interface_mtu": 1500}]
