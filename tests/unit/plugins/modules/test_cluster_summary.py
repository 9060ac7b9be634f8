# Copyright: netmend.k8s contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""run_module of cluster_summary over a fake paging server: which requests it makes and what it returns.
The real API server, 1,000 nodes and pods, is in tests/lab/test_scale.py."""
from __future__ import annotations

import json

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.netmend.k8s.plugins.module_utils.kube_lite import KubeClient, KubeError
from ansible_collections.netmend.k8s.plugins.modules import cluster_summary
from tests.unit.plugins.module_utils.test_kube_lite import NODE, PagingServer

PARAMS = {"nodes": True, "objects": [], "count_pods": False, "pod_selector": None, "page_size": 500}


class Cluster(PagingServer):
    """Nodes and pods behind one fake server; label selectors filter pods on app=<value>."""

    def __init__(self, nodes, pods):  # pylint: disable=super-init-not-called
        self.collections = {"/api/v1/nodes": nodes, "/api/v1/pods": pods}
        self.calls = []
        self.count_remaining = True

    def request(self, method, path, query=None, body=None):
        items = self.collections[path]
        selector = (query or {}).get("labelSelector")
        if selector:
            items = [item for item in items if "app=%s" % item["metadata"].get("labels", {}).get("app") == selector]
        self.objects = items
        return super().request(method, path, query, body)


def pod(name, app="web", node="worker-1"):
    return {"metadata": {"namespace": "ns", "name": name, "labels": {"app": app}}, "spec": {"nodeName": node},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}


NODES = [dict(NODE, metadata={"name": "worker-%d" % index}) for index in range(1203)]
PODS = [pod("p%d" % index) for index in range(2000)] + [pod("calico-%d" % index, app="calico") for index in range(3)]


def test_nodes_only_by_default_in_pages():
    api = Cluster(NODES, PODS)
    result = cluster_summary.run_module(PARAMS, api)
    assert [node["name"] for node in result["nodes"]] == ["worker-%d" % index for index in range(1203)]
    assert result["nodes"][0]["ready"] == "Unknown" and result["changed"] is False
    assert "pod_count" not in result and "pods" not in result
    assert [(path, query.get("continue")) for _m, path, query in api.calls] == [
        ("/api/v1/nodes", None), ("/api/v1/nodes", "500"), ("/api/v1/nodes", "1000")]
    # far smaller than the objects it summarises
    assert len(json.dumps(result)) * 5 < len(json.dumps(NODES))


def test_pod_count_in_one_request_and_selected_pods_in_short():
    api = Cluster(NODES[:2], PODS)
    result = cluster_summary.run_module(dict(PARAMS, count_pods=True, pod_selector="app=calico", page_size=2), api)
    assert result["pod_count"] == 2003
    assert [call[2] for call in api.calls if call[1] == "/api/v1/pods"][0] == {"limit": "1"}
    assert result["pods"] == [{"namespace": "ns", "name": "calico-%d" % index, "node": "worker-1", "phase": "Running",
                               "ready": True} for index in range(3)]
    assert [call[2] for call in api.calls if call[2].get("labelSelector")] == [
        {"limit": "2", "labelSelector": "app=calico"}, {"limit": "2", "labelSelector": "app=calico", "continue": "2"}]


def test_an_empty_selector_is_no_selector_but_given_so_every_pod():
    api = Cluster([], PODS[:3])
    assert len(cluster_summary.run_module(dict(PARAMS, pod_selector=""), api)["pods"]) == 3


def test_page_size_below_one_is_refused_before_any_request():
    api = Cluster(NODES, PODS)
    with pytest.raises(ValueError, match="page_size must be 1 or more, got 0"):
        cluster_summary.run_module(dict(PARAMS, page_size=0), api)
    assert api.calls == []


def test_main_fails_naming_the_bad_page_size(monkeypatch, capsys):
    monkeypatch.setattr(cluster_summary, "connect", lambda module: Cluster([], []))
    with patch_module_args({"page_size": -3}), pytest.raises(SystemExit):
        cluster_summary.main()
    out = json.loads(capsys.readouterr().out)
    assert out["failed"] and "page_size must be 1 or more, got -3" in out["msg"]


DISCOVERY = {
    "/api/v1": {"resources": [{"name": "configmaps", "kind": "ConfigMap", "namespaced": True},
                              {"name": "nodes", "kind": "Node", "namespaced": False}]},
    "/apis/apps/v1": {"resources": [{"name": "daemonsets", "kind": "DaemonSet", "namespaced": True},
                                    {"name": "daemonsets/status", "kind": "DaemonSet", "namespaced": True},
                                    {"name": "deployments", "kind": "Deployment", "namespaced": True}]},
}


class Objects(KubeClient):
    """Discovery documents and objects by path; anything else is a 404, as from the API server."""

    def __init__(self, objects, discovery=None):  # pylint: disable=super-init-not-called
        self.discovery = DISCOVERY if discovery is None else discovery
        self.objects = objects
        self.calls = []

    def request(self, method, path, query=None, body=None):
        self.calls.append((path, dict(query or {})))
        if path in self.discovery:
            return self.discovery[path]
        if isinstance(self.objects.get(path), list):
            selector = (query or {}).get("labelSelector")
            return {"metadata": {}, "items": [item for item in self.objects[path]
                                              if not selector or selector in item["metadata"].get("labels", {}).values()]}
        if path in self.objects:
            return self.objects[path]
        raise KubeError("%s %s: 404 not found" % (method, path), status=404)


CALICO_NODE = {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "calico-node", "namespace": "kube-system"}}
AGENTS = [{"metadata": {"name": "netmend-pod-poke", "namespace": "netmend", "labels": {"part-of": "netmend"}}},
          {"metadata": {"name": "other", "namespace": "foreign", "labels": {"part-of": "someone"}}}]


def test_objects_by_name_and_by_selector_in_one_run_without_the_nodes():
    api = Objects({"/apis/apps/v1/namespaces/kube-system/daemonsets/calico-node": CALICO_NODE,
                   "/apis/apps/v1/daemonsets": AGENTS})
    wanted = [
        {"api_version": "apps/v1", "kind": "DaemonSet", "namespace": "kube-system", "name": "calico-node"},
        {"api_version": "apps/v1", "kind": "DaemonSet", "namespace": "calico-system", "name": "calico-node"},
        {"api_version": "v1", "kind": "ConfigMap", "namespace": "kube-system", "name": "ip-masq-agent"},
        {"api_version": "operator.tigera.io/v1", "kind": "Installation", "name": "default"},
        {"api_version": "apps/v1", "kind": "DaemonSet", "label_selector": "netmend"},
    ]
    result = cluster_summary.run_module(dict(PARAMS, nodes=False, objects=wanted), api)
    assert result["nodes"] == []
    assert [entry["resources"] for entry in result["objects"][:4]] == [[CALICO_NODE], [], [], []]
    # a kind the cluster does not serve (no operator CRD) is said so; a missing object of a served kind is not
    assert [entry["served"] for entry in result["objects"]] == [True, True, True, False, True]
    # list items get their apiVersion and kind, as objects read by name have them
    assert result["objects"][4]["resources"] == [dict(AGENTS[0], apiVersion="apps/v1", kind="DaemonSet")]
    assert result["objects"][0]["name"] == "calico-node" and result["objects"][0]["kind"] == "DaemonSet"
    # one discovery request per group version, whatever the number of objects; nothing of the nodes
    paths = [path for path, _query in api.calls]
    assert paths.count("/apis/apps/v1") == 1 and "/api/v1/nodes" not in paths


def test_a_namespaced_object_by_name_needs_its_namespace():
    api = Objects({})
    with pytest.raises(ValueError, match="ConfigMap ip-masq-agent is namespaced: give its namespace"):
        cluster_summary.run_module(dict(PARAMS, nodes=False, objects=[
            {"api_version": "v1", "kind": "ConfigMap", "name": "ip-masq-agent", "namespace": None}]), api)


def test_errors_other_than_not_found_are_not_hidden():
    class Refusing(Objects):
        def request(self, method, path, query=None, body=None):
            if path.startswith("/apis/apps/v1/"):
                raise KubeError("GET %s: 403 forbidden" % path, status=403)
            return super().request(method, path, query, body)
    with pytest.raises(KubeError, match="403"):
        cluster_summary.run_module(dict(PARAMS, nodes=False, objects=[
            {"api_version": "apps/v1", "kind": "DaemonSet", "namespace": "kube-system", "name": "calico-node"}]), Refusing({}))
