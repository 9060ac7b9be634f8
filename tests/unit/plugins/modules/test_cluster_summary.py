# Copyright: netmend.k8s contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""run_module of cluster_summary over a fake paging server: which requests it makes and what it returns.
The real API server, 1,000 nodes and pods, is in tests/lab/test_scale.py."""
from __future__ import annotations

import json

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.netmend.k8s.plugins.modules import cluster_summary
from tests.unit.plugins.module_utils.test_kube_lite import NODE, PagingServer

PARAMS = {"count_pods": False, "pod_selector": None, "page_size": 500}


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
