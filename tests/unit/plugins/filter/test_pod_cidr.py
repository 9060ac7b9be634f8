# Copyright: netmend.k8s contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

import copy
import os

import pytest
import yaml
from ansible.errors import AnsibleFilterError

from ansible_collections.netmend.k8s.plugins.filter import pod_cidr

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
MANIFEST = os.path.join(REPO, "tests", "lab", "fixtures", "calico", "calico.manifest")


@pytest.fixture(scope="module")
def documents():
    with open(MANIFEST, encoding="utf-8") as handle:
        return list(yaml.safe_load_all(handle))


def find(docs, kind, name):
    return next(d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name)


def node_env(docs):
    container = find(docs, "DaemonSet", "calico-node")["spec"]["template"]["spec"]["containers"][0]
    return container["env"]


@pytest.mark.parametrize("cidrs, version, span", [
    (["10.244.0.0/24", "10.244.1.0/24", "10.244.2.0/24"], None, ["10.244.0.0/22"]),
    (["10.244.0.0/24", "10.244.1.0/24"], None, ["10.244.0.0/23"]),
    (["10.244.0.0/16"], None, ["10.244.0.0/16"]),
    (["10.244.3.0/24", "10.244.4.0/24"], None, ["10.244.0.0/21"]),  # not aligned on a /23: the span grows
    (["fd00:10:244:1::/64", "10.244.1.0/24", "fd00:10:244::/64"], None, ["10.244.1.0/24", "fd00:10:244::/63"]),
    (["fd00:10:244:1::/64", "10.244.1.0/24"], 4, ["10.244.1.0/24"]),
    (["fd00:10:244:1::/64", "10.244.1.0/24"], "6", ["fd00:10:244:1::/64"]),
    (["fd00:10:244:1::/64"], 4, []),
    ("10.96.0.0/12", None, ["10.96.0.0/12"]),
    ([], None, []),
])
def test_cidr_span(cidrs, version, span):
    assert pod_cidr.cidr_span(cidrs, version) == span


@pytest.mark.parametrize("cidrs, version, message", [
    (["10.244.0.1/24"], None, "misaligned CIDR '10.244.0.1/24' in cidr_span input"),
    (["10.244.0.0/33"], None, "invalid CIDR '10.244.0.0/33' in cidr_span input"),
    (["10.244.0.0/24"], 5, "cidr_span version must be 4 or 6, got 5"),
])
def test_cidr_span_refuses_bad_input(cidrs, version, message):
    with pytest.raises(AnsibleFilterError) as raised:
        pod_cidr.cidr_span(cidrs, version)
    assert message in str(raised.value)


ENV_CASES = [
    # (env to set, expected (name, value-or-None-for-valueFrom) list of the calico-node container)
    ({"CALICO_IPV4POOL_CIDR": "10.244.0.0/22", "CALICO_IPV4POOL_IPIP": "Always", "CALICO_IPV4POOL_VXLAN": "Never"},
     {"CALICO_IPV4POOL_CIDR": ("10.244.0.0/22", 16), "CALICO_IPV4POOL_IPIP": ("Always", 6),
      "CALICO_IPV4POOL_VXLAN": ("Never", 7)}),
    ({"CALICO_IPV4POOL_IPIP": "Never", "CALICO_IPV4POOL_VXLAN": "CrossSubnet", "CALICO_IPV4POOL_CIDR": "10.244.0.0/16"},
     {"CALICO_IPV4POOL_CIDR": ("10.244.0.0/16", 16), "CALICO_IPV4POOL_IPIP": ("Never", 6),
      "CALICO_IPV4POOL_VXLAN": ("CrossSubnet", 7)}),
    # a value replaces a valueFrom, in place
    ({"FELIX_VXLANMTU": 1410}, {"FELIX_VXLANMTU": ("1410", 10)}),
]


@pytest.mark.parametrize("env, expected", ENV_CASES)
def test_node_env_is_set_in_place_or_appended(documents, env, expected):
    before = copy.deepcopy(documents)
    docs = pod_cidr.calico_manifest(documents, node_env=env)
    assert documents == before  # the input is not changed
    result = node_env(docs)
    assert len(result) == len(node_env(before)) + sum(1 for name in env if name not in {e["name"] for e in node_env(before)})
    for name, (value, index) in expected.items():
        assert result[index] == {"name": name, "value": value}
    untouched = [e for e in result if e["name"] not in env]
    assert untouched == [e for e in node_env(before) if e["name"] not in env]


def test_second_pass_is_identical(documents):
    env = {"CALICO_IPV4POOL_CIDR": "10.244.0.0/22", "CALICO_IPV4POOL_IPIP": "CrossSubnet"}
    once = pod_cidr.calico_manifest(documents, node_env=env, config_data={"veth_mtu": 1440})
    assert pod_cidr.calico_manifest(once, node_env=env, config_data={"veth_mtu": 1440}) == once


def test_config_data_annotations_and_namespace(documents):
    docs = pod_cidr.calico_manifest(documents, namespace="calico-lab", config_data={"veth_mtu": 1440},
                                    node_annotations={"netmend.io/calico-mtu": 1440})
    assert len(docs) == len(documents)
    config = find(docs, "ConfigMap", "calico-config")
    assert config["data"]["veth_mtu"] == "1440"
    assert config["data"]["calico_backend"] == "bird"
    node = find(docs, "DaemonSet", "calico-node")
    assert node["spec"]["template"]["metadata"]["annotations"] == {"netmend.io/calico-mtu": "1440"}
    assert node["spec"]["template"]["metadata"]["labels"] == {"k8s-app": "calico-node"}
    namespaces = {(d["kind"], d["metadata"]["name"]): d["metadata"].get("namespace") for d in docs}
    assert namespaces[("CustomResourceDefinition", "ippools.crd.projectcalico.org")] is None
    assert namespaces[("ClusterRole", "calico-node")] is None
    assert {ns for ns in namespaces.values() if ns} == {"calico-lab"}
    controllers = find(docs, "Deployment", "calico-kube-controllers")
    assert controllers["spec"]["template"]["metadata"]["namespace"] == "calico-lab"
    subjects = [s for d in docs if d["kind"] == "ClusterRoleBinding" for s in d["subjects"]]
    assert [(s["name"], s["namespace"]) for s in subjects] == [
        ("calico-kube-controllers", "calico-lab"), ("calico-node", "calico-lab")]


def test_empty_documents_are_dropped_and_nothing_asked_changes_nothing(documents):
    assert pod_cidr.calico_manifest([None] + documents + [None]) == documents


@pytest.mark.parametrize("docs, kwargs, message", [
    ([{"kind": "ConfigMap", "metadata": {"name": "calico-config"}, "data": {}}], {"node_env": {"A": "1"}},
     "the manifest has no DaemonSet with a 'calico-node' container: is it a Calico manifest?"),
    ([{"kind": "DaemonSet", "metadata": {"name": "calico-node"},
       "spec": {"template": {"spec": {"containers": [{"name": "calico-node"}]}}}}],
     {"config_data": {"veth_mtu": 1440}}, "the manifest has no ConfigMap calico-config or canal-config to set veth_mtu in"),
    ([{"metadata": {"name": "x"}}], {}, "document 1 of the manifest is not a Kubernetes object"),
    ([None, "just text"], {}, "document 2 of the manifest is not a Kubernetes object"),
    ("kind: ConfigMap", {}, "calico_manifest input must be the list of a manifest's documents, got 'str'"),
])
def test_calico_manifest_refuses(docs, kwargs, message):
    with pytest.raises(AnsibleFilterError) as raised:
        pod_cidr.calico_manifest(docs, **kwargs)
    assert message in str(raised.value)


def test_filters_are_registered():
    assert set(pod_cidr.FilterModule().filters()) == {"cidr_span", "calico_manifest"}
