# Copyright: netmend.k8s contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""kube_lite's paged reads and summaries over a fake server that pages as the API server does. The real
API server pages and counts 1,000 nodes and pods in tests/lab/test_scale.py."""
from __future__ import annotations

import pytest

from ansible_collections.netmend.k8s.plugins.module_utils.kube_lite import (KubeClient, condition_status, node_summary,
                                                                            pod_summary)


class PagingServer(KubeClient):
    """Answers list requests from ``objects`` as the API server does: ``limit`` items, a ``continue`` token
    while more remain, and ``remainingItemCount`` unless ``count_remaining`` is false (as with selectors)."""

    def __init__(self, items, count_remaining=True):  # pylint: disable=super-init-not-called
        self.objects, self.count_remaining = items, count_remaining
        self.calls = []

    def request(self, method, path, query=None, body=None):
        query = dict(query or {})
        self.calls.append((method, path, query))
        start = int(query.get("continue", 0))
        end = start + int(query["limit"]) if "limit" in query else len(self.objects)
        metadata = {"resourceVersion": "7"}
        if end < len(self.objects):
            metadata["continue"] = str(end)
            if self.count_remaining:
                metadata["remainingItemCount"] = len(self.objects) - end
        return {"items": self.objects[start:end], "metadata": metadata}


@pytest.mark.parametrize("total, page_size, requests", [
    (0, 500, 1),
    (1, 500, 1),
    (500, 500, 1),
    (501, 500, 2),
    (5000, 500, 10),
    (7, 3, 3),
])
def test_pages_yield_every_item_once_in_order(total, page_size, requests):
    server = PagingServer([{"n": index} for index in range(total)])
    assert [item["n"] for item in server.items("/api/v1/nodes", page_size, labelSelector="a=b")] == list(range(total))
    assert len(server.calls) == requests
    assert all(query["limit"] == str(page_size) and query["labelSelector"] == "a=b" for _m, _p, query in server.calls)
    assert "continue" not in server.calls[0][2]


@pytest.mark.parametrize("total, count_remaining, requests", [
    (0, True, 1),
    (1, True, 1),
    (50000, True, 1),     # one item read and the server's remainingItemCount
    (1200, False, 4),     # no remainingItemCount (selectors): the first item, then every page of 500
    (1, False, 1),
])
def test_count_asks_once_where_the_server_says(total, count_remaining, requests):
    server = PagingServer([{}] * total, count_remaining)
    assert server.count("/api/v1/pods") == total
    assert len(server.calls) == requests
    assert server.calls[0][2] == {"limit": "1"}


NODE = {
    "metadata": {"name": "worker-1", "labels": {"big": "x" * 1000}},
    "spec": {"podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24", "fd00:1::/64"]},
    "status": {"addresses": [{"type": "Hostname", "address": "worker-1"}, {"type": "InternalIP", "address": "192.0.2.11"},
                             {"type": "InternalIP", "address": "2001:db8::11"}],
               "conditions": [{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "Unknown"}],
               "nodeInfo": {"kubeletVersion": "v1.31.4"}, "images": [{"names": ["a" * 200]}] * 50},
}


@pytest.mark.parametrize("node, expected", [
    (NODE, {"name": "worker-1", "ready": "Unknown", "pod_cidrs": ["10.244.1.0/24", "fd00:1::/64"],
            "internal_ip": "192.0.2.11", "addresses": ["192.0.2.11", "2001:db8::11"], "kubelet": "v1.31.4"}),
    # a cluster from before dual stack: podCIDR alone
    ({"metadata": {"name": "old"}, "spec": {"podCIDR": "10.244.2.0/24"}, "status": {}},
     {"name": "old", "ready": None, "pod_cidrs": ["10.244.2.0/24"], "internal_ip": None, "addresses": [], "kubelet": None}),
    # just registered: no spec, no status
    ({"metadata": {"name": "new"}},
     {"name": "new", "ready": None, "pod_cidrs": [], "internal_ip": None, "addresses": [], "kubelet": None}),
])
def test_node_summary(node, expected):
    assert node_summary(node) == expected


@pytest.mark.parametrize("pod, expected", [
    ({"metadata": {"namespace": "calico-system", "name": "calico-node-a"}, "spec": {"nodeName": "worker-1"},
      "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}},
     {"namespace": "calico-system", "name": "calico-node-a", "node": "worker-1", "phase": "Running", "ready": True}),
    ({"metadata": {"namespace": "ns", "name": "pending"}, "spec": {}, "status": {"phase": "Pending"}},
     {"namespace": "ns", "name": "pending", "node": None, "phase": "Pending", "ready": False}),
    ({"metadata": {"namespace": "ns", "name": "unready"}, "spec": {"nodeName": "w"},
      "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "False"}]}},
     {"namespace": "ns", "name": "unready", "node": "w", "phase": "Running", "ready": False}),
])
def test_pod_summary(pod, expected):
    assert pod_summary(pod) == expected


def test_condition_status_of_another_type():
    assert condition_status(NODE, "MemoryPressure") == "False"
    assert condition_status(NODE, "DiskPressure") is None


def test_pages_carry_the_lists_resource_version():
    server = PagingServer([{}] * 5)
    answers = list(server.pages("/api/v1/pods", 2))
    assert [len(answer["items"]) for answer in answers] == [2, 2, 1]
    assert {answer["metadata"]["resourceVersion"] for answer in answers} == {"7"}
