# Copyright: netmend.k8s contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The kwokctl configuration the lab writes: what thousands of KWOK nodes need, as kwokctl reads it
(kwokctl multiplies lease and grace periods by its heartbeat factor, default 5, unless the factor is 1)."""
from __future__ import annotations

import os
import sys

import yaml

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "..", "lab"))
import cluster  # noqa: E402  (lab/cluster.py, a script's module)


def test_node_leases_are_long_enough_for_thousands_of_nodes(tmp_path, monkeypatch):
    monkeypatch.setattr(cluster, "CACHE", str(tmp_path))
    with open(cluster.kwokctl_config(), encoding="utf-8") as handle:
        config = next(yaml.safe_load_all(handle))
    options = config["options"]
    assert config["kind"] == "KwokctlConfiguration"
    assert options["heartbeatFactor"] == 1
    # KWOK renews a quarter of the way: 5,000 nodes / 150 s is 33 renewals a second
    assert 5000 / (options["nodeLeaseDurationSeconds"] / 4) < 40
    # the controller manager waits as long as a lease lasts before it declares a node NotReady
    assert options["kubeControllerManagerNodeMonitorGracePeriodMilliseconds"] == options["nodeLeaseDurationSeconds"] * 1000
    # a cluster made before this is recreated: its saved kwok.yaml lacks the flag kwokctl derives from the option
    assert "--node-lease-duration-seconds=%d" % options["nodeLeaseDurationSeconds"] in dict(cluster.CONFIG_MARKERS)
    controllers = {patch["name"]: {arg["key"]: arg["value"] for arg in patch["extraArgs"]}
                   for patch in config["componentsPatches"]}
    assert controllers["kube-controller-manager"]["kube-api-qps"] == str(cluster.CONTROLLER_QPS)
    assert controllers["kwok-controller"]["manage-nodes-with-annotation-selector"] == "%s=%s" % cluster.KWOK_ANNOTATION


def test_kwok_works_on_many_nodes_and_pods_at_once(tmp_path, monkeypatch):
    monkeypatch.setattr(cluster, "CACHE", str(tmp_path))
    with open(cluster.kwokctl_config(), encoding="utf-8") as handle:
        documents = list(yaml.safe_load_all(handle))
    kwok = [doc for doc in documents if doc["kind"] == "KwokConfiguration"]
    assert len(kwok) == 1 and kwok[0]["apiVersion"] == "config.kwok.x-k8s.io/v1alpha1"
    # KWOK takes the document as written: each worker count is set (one left out would be 0), above the default 4
    options = kwok[0]["options"]
    for field in ("podPlayStageParallelism", "nodePlayStageParallelism", "nodeLeaseParallelism"):
        assert options[field] == cluster.KWOK_PARALLELISM > 4
    assert options["podsOnNodeSyncParallelism"] >= 1
    # a cluster made before this is recreated: kwokctl saves the document in kwok.yaml as it is
    assert "podPlayStageParallelism: %d" % cluster.KWOK_PARALLELISM in dict(cluster.CONFIG_MARKERS)
