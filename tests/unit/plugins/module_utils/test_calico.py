# Copyright: netmend.k8s contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one Calico detection over the objects of real install shapes: the manifests of
tests/lab/fixtures/calico as the API server would return them, and an operator install and
GKE's managed Calico from tests/unit/fixtures/calico/installs.yml."""
from __future__ import annotations

import copy
import os

import pytest
import yaml

from ansible_collections.netmend.k8s.plugins.module_utils import calico
from ansible_collections.netmend.k8s.plugins.module_utils.calico import CalicoError, detect_install

HERE = os.path.dirname(__file__)
MANIFESTS = os.path.join(HERE, "..", "..", "..", "lab", "fixtures", "calico")
with open(os.path.join(HERE, "..", "..", "fixtures", "calico", "installs.yml"), encoding="utf-8") as _handle:
    INSTALLS = yaml.safe_load(_handle)
# What the cluster_report role's calico entry point reads, by name, in every namespace it searches.
READ = {("DaemonSet", "calico-node"), ("ConfigMap", "calico-config"), ("Deployment", "calico-typha")}


def manifest_install(name, namespace=None, labels=None):
    """The objects a manifest install leaves that the role reads, as the API server returns them."""
    with open(os.path.join(MANIFESTS, name + ".manifest"), encoding="utf-8") as handle:
        docs = [doc for doc in yaml.safe_load_all(handle) if doc]
    found = []
    for doc in docs:
        if (doc["kind"], doc["metadata"]["name"]) not in READ:
            continue
        doc = copy.deepcopy(doc)
        if namespace:
            doc["metadata"]["namespace"] = namespace
        doc["metadata"].setdefault("labels", {}).update(labels or {})
        if doc["kind"] == "DaemonSet":
            doc["status"] = {"desiredNumberScheduled": 3, "numberAvailable": 2}
        found.append(doc)
    return found


def summary(result):
    return {key: result[key] for key in ("install", "reconciled_by_platform", "namespace", "installation", "config_map",
                                         "mtu_target", "veth_mtu", "installation_mtu", "encapsulation", "cross_subnet")}


@pytest.mark.parametrize("objects, expected", [
    pytest.param(manifest_install("calico"), {
        "install": "manifest", "reconciled_by_platform": False, "namespace": "kube-system", "installation": None,
        "config_map": "kube-system/calico-config", "mtu_target": "config_map", "veth_mtu": "0", "installation_mtu": None,
        "encapsulation": "ipip", "cross_subnet": False}, id="calico.yaml"),
    pytest.param(manifest_install("calico-vxlan"), {
        "install": "manifest", "reconciled_by_platform": False, "namespace": "kube-system", "installation": None,
        "config_map": "kube-system/calico-config", "mtu_target": "config_map", "veth_mtu": "0", "installation_mtu": None,
        "encapsulation": "vxlan", "cross_subnet": False}, id="calico-vxlan.yaml"),
    pytest.param(manifest_install("calico-policy-only"), {
        "install": "manifest", "reconciled_by_platform": False, "namespace": "kube-system", "installation": None,
        "config_map": "kube-system/calico-config", "mtu_target": "config_map", "veth_mtu": "1440",
        "installation_mtu": None, "encapsulation": "none", "cross_subnet": False}, id="calico-policy-only.yaml"),
    pytest.param(manifest_install("kubespray"), {
        "install": "manifest", "reconciled_by_platform": False, "namespace": "kube-system", "installation": None,
        "config_map": "kube-system/calico-config", "mtu_target": "config_map", "veth_mtu": None,
        "installation_mtu": None, "encapsulation": "ipip", "cross_subnet": False}, id="kubespray"),
    pytest.param(INSTALLS["operator"], {
        "install": "operator", "reconciled_by_platform": False, "namespace": "calico-system", "installation": "default",
        "config_map": None, "mtu_target": "installation", "veth_mtu": None, "installation_mtu": 1410,
        "encapsulation": "vxlan", "cross_subnet": True}, id="operator"),
    pytest.param(INSTALLS["gke"], {
        "install": "reconciled", "reconciled_by_platform": True, "namespace": "kube-system", "installation": None,
        "config_map": None, "mtu_target": None, "veth_mtu": None, "installation_mtu": None,
        "encapsulation": "none", "cross_subnet": False}, id="gke-managed"),
    pytest.param(manifest_install("calico", labels={calico.RECONCILE_LABEL: "Reconcile"}), {
        "install": "reconciled", "reconciled_by_platform": True, "namespace": "kube-system", "installation": None,
        "config_map": "kube-system/calico-config", "mtu_target": "config_map", "veth_mtu": "0",
        "installation_mtu": None, "encapsulation": "ipip", "cross_subnet": False}, id="manifest-reconciled"),
    pytest.param([], {
        "install": "none", "reconciled_by_platform": False, "namespace": None, "installation": None,
        "config_map": None, "mtu_target": None, "veth_mtu": None, "installation_mtu": None,
        "encapsulation": None, "cross_subnet": False}, id="none"),
])
def test_detect_install(objects, expected):
    assert summary(detect_install(objects)) == expected


def test_manifest_node_without_its_config_map_is_a_manifest_install_with_nowhere_to_keep_the_mtu():
    objects = [obj for obj in manifest_install("calico") if obj["kind"] == "DaemonSet"]
    result = detect_install(objects)
    assert (result["install"], result["mtu_target"], result["config_map"]) == ("manifest", None, None)


def test_operator_default_encapsulation_is_the_operators():
    installation = copy.deepcopy(INSTALLS["operator"][0])
    del installation["spec"]["calicoNetwork"]["ipPools"]
    del installation["status"]
    result = detect_install([installation])
    assert (result["install"], result["encapsulation"], result["encapsulation_source"]) == (
        "operator", None, "the operator's default")
    assert result["namespace"] is None and result["typha"] == {"found": False, "namespace": None, "metrics": False}


def test_operator_encapsulation_from_the_computed_status_when_the_spec_leaves_it():
    installation = copy.deepcopy(INSTALLS["operator"][0])
    del installation["spec"]["calicoNetwork"]["ipPools"]
    installation["status"]["computed"]["calicoNetwork"]["ipPools"][0]["encapsulation"] = "IPIP"
    result = detect_install([installation])
    assert (result["encapsulation"], result["cross_subnet"]) == ("ipip", False)
    assert result["encapsulation_source"] == "Installation status.computed calicoNetwork.ipPools[0].encapsulation IPIP"


@pytest.mark.parametrize("objects, typha", [
    (INSTALLS["operator"], {"found": True, "namespace": "calico-system", "metrics": True}),
    (INSTALLS["gke"], {"found": True, "namespace": "kube-system", "metrics": False}),
    (manifest_install("calico-typha"), {"found": True, "namespace": "kube-system", "metrics": False}),
    (manifest_install("calico"), {"found": False, "namespace": None, "metrics": False}),
])
def test_typha(objects, typha):
    assert detect_install(objects)["typha"] == typha


def test_the_first_namespace_searched_that_holds_calico_node_is_the_installs():
    # mid-migration from a manifest install to the operator: both calico-nodes exist
    objects = manifest_install("calico") + INSTALLS["operator"]
    assert detect_install(objects)["namespace"] == "calico-system"
    assert detect_install(objects, ["kube-system", "calico-system"])["namespace"] == "kube-system"
    assert detect_install(manifest_install("calico", namespace="team-calico"), ["elsewhere", "team-calico"])[
        "namespace"] == "team-calico"
    nodes = detect_install(objects)["calico_node"]
    assert nodes == [{"name": "calico-node", "namespace": "kube-system", "desired": 3, "available": 2},
                     {"name": "calico-node", "namespace": "calico-system", "desired": 3, "available": 3}]


def test_objects_outside_the_namespaces_searched_do_not_count():
    result = detect_install(manifest_install("calico"), ["calico-system"])
    assert (result["install"], result["namespace"]) == ("none", None)


@pytest.mark.parametrize("objects, namespaces, message", [
    ({"kind": "DaemonSet"}, calico.INSTALL_NAMESPACES, "expected a list of API objects"),
    ([], "kube-system", "namespaces must be a list of namespace names, got 'kube-system'"),
])
def test_bad_input_is_named(objects, namespaces, message):
    with pytest.raises(CalicoError, match=message):
        detect_install(objects, namespaces)
