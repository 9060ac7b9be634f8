# Copyright: netmend.k8s contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""calico_manifest_settings on manifests in the shapes of the official ones and kubespray's
(tests/lab/fixtures/calico, written for these tests)."""
from __future__ import annotations

import copy
import json
import os

import pytest
import yaml
from ansible.errors import AnsibleFilterError

from ansible_collections.netmend.k8s.plugins.filter import calico_manifest_settings as settings
from ansible_collections.netmend.k8s.plugins.filter import pod_cidr

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "..", "..", "lab", "fixtures", "calico")


def manifest(name):
    with open(os.path.join(FIXTURES, name + ".manifest"), encoding="utf-8") as handle:
        return pod_cidr.calico_manifest(list(yaml.safe_load_all(handle)))


def node_container(docs, name="calico-node"):
    return next(c for d in docs if d["kind"] == "DaemonSet" for c in d["spec"]["template"]["spec"]["containers"]
                if c["name"] == name)


def env_of(container):
    return {item["name"]: item.get("value", item.get("valueFrom")) for item in container["env"]}


def apply(docs, decided):
    """What the role does with the decision: the calico_manifest filter."""
    return pod_cidr.calico_manifest(docs, node_env=decided["node_env"], config_data=decided["config_data"],
                                    install_cni_env=decided["install_cni_env"])


@pytest.mark.parametrize("name, backend, encapsulation, cross_subnet", [
    ("calico", "bird", "ipip", False),
    ("calico-vxlan", "vxlan", "vxlan", False),
    ("calico-typha", "bird", "ipip", False),
    ("calico-bpf", "bird", "none", False),
    ("calico-policy-only", "none", "none", False),
    ("canal", "none", "none", False),
    ("kubespray", "bird", "ipip", False),
])
def test_without_a_choice_the_manifest_decides(name, backend, encapsulation, cross_subnet):
    docs = manifest(name)
    decided = settings.calico_manifest_settings(docs)
    assert (decided["backend"], decided["encapsulation"], decided["cross_subnet"]) == (backend, encapsulation, cross_subnet)
    assert decided["encapsulation_source"].startswith("the manifest")
    # the pool settings stay exactly as the manifest has them
    assert decided["node_env"] == {} and decided["config_data"] == {} and decided["install_cni_env"] == {}
    assert apply(docs, decided) == docs


def test_vxlan_manifest_names_its_backend_as_the_source():
    decided = settings.calico_manifest_settings(manifest("calico-vxlan"))
    assert decided["encapsulation_source"] == "the manifest (calico-config calico_backend)"


@pytest.mark.parametrize("name, encapsulation, cross_subnet, words", [
    # IP-in-IP routes come from BIRD; calico-vxlan.yaml runs without it
    ("calico-vxlan", "ipip", False, ["calico_encapsulation ipip", "calico_backend vxlan", "calico-config calico_backend",
                                     "no routes"]),
    ("calico-vxlan", "none", False, ["calico_encapsulation none", "calico_backend vxlan"]),
    ("calico-policy-only", "ipip", False, ["calico_encapsulation ipip", "calico_backend is none", "policy only"]),
    ("canal", "vxlan", True, ["calico_encapsulation vxlan", "calico_backend is none", "canal-config calico_backend"]),
    ("calico-bpf", None, True, ["calico_cross_subnet is true but the encapsulation is none"]),
])
def test_unroutable_choices_are_refused_naming_both_values(name, encapsulation, cross_subnet, words):
    with pytest.raises(AnsibleFilterError) as caught:
        settings.calico_manifest_settings(manifest(name), encapsulation=encapsulation, cross_subnet=cross_subnet)
    for word in words:
        assert word in str(caught.value)


@pytest.mark.parametrize("name, encapsulation, cross_subnet, ipip, vxlan", [
    ("calico-vxlan", "vxlan", True, "Never", "CrossSubnet"),
    ("calico-vxlan", None, True, "Never", "CrossSubnet"),
    ("calico", "vxlan", False, "Never", "Always"),
    ("calico-bpf", "ipip", False, "Always", "Never"),  # the user overrides the manifest's Never
])
def test_a_choice_sets_the_pool_env(name, encapsulation, cross_subnet, ipip, vxlan):
    docs = manifest(name)
    decided = settings.calico_manifest_settings(docs, encapsulation=encapsulation, cross_subnet=cross_subnet)
    assert decided["encapsulation_source"] == "calico_encapsulation"
    env = env_of(node_container(apply(docs, decided)))
    assert (env["CALICO_IPV4POOL_IPIP"], env["CALICO_IPV4POOL_VXLAN"]) == (ipip, vxlan)


def test_none_on_policy_only_changes_no_pool_env():
    docs = manifest("calico-policy-only")
    decided = settings.calico_manifest_settings(docs, encapsulation="none")
    assert decided["node_env"] == {}


def test_typha_moved_out_of_kube_system_is_found_again():
    docs = manifest("calico-typha")
    decided = settings.calico_manifest_settings(docs, namespace="calico-typha-test")
    assert decided["node_env"] == {"FELIX_TYPHAK8SNAMESPACE": "calico-typha-test"}
    assert decided["typha_namespace"] == "calico-typha-test"
    moved = pod_cidr.calico_manifest(docs, namespace="calico-typha-test", node_env=decided["node_env"])
    env = env_of(node_container(moved))
    assert env["FELIX_TYPHAK8SNAMESPACE"] == "calico-typha-test"
    assert {d["metadata"]["namespace"] for d in moved if d["kind"] in ("Service", "Deployment")} == {"calico-typha-test"}


@pytest.mark.parametrize("name, namespace", [("calico-typha", "kube-system"), ("calico-typha", None), ("calico", "elsewhere")])
def test_typha_namespace_only_when_typha_moves(name, namespace):
    decided = settings.calico_manifest_settings(manifest(name), namespace=namespace)
    assert "FELIX_TYPHAK8SNAMESPACE" not in decided["node_env"] and decided["typha_namespace"] is None


def test_kubespray_literal_mtus_all_get_the_new_value():
    docs = manifest("kubespray")
    decided = settings.calico_manifest_settings(docs, mtu=1410)
    changed = apply(docs, decided)
    env = env_of(node_container(changed))
    assert (env["FELIX_IPINIPMTU"], env["FELIX_VXLANMTU"], env["FELIX_WIREGUARDMTU"]) == ("1410", "1410", "1410")
    installer = next(c for d in changed if d["kind"] == "DaemonSet" for c in d["spec"]["template"]["spec"]["initContainers"])
    assert env_of(installer)["CNI_MTU"] == "1410"
    config = next(d for d in changed if d["kind"] == "ConfigMap")
    template = json.loads(config["data"]["cni_network_config"])
    assert template["plugins"][0]["mtu"] == 1410
    # the template is otherwise untouched, placeholders included
    original = next(d for d in docs if d["kind"] == "ConfigMap")["data"]["cni_network_config"]
    assert config["data"]["cni_network_config"] == original.replace('"mtu": 1440', '"mtu": 1410')
    assert decided["mtu_places"] == [
        "calico-node container calico-node env FELIX_IPINIPMTU (literal 1440)",
        "calico-node container calico-node env FELIX_VXLANMTU (literal 1440)",
        "calico-node container calico-node env FELIX_WIREGUARDMTU (literal 1440)",
        "calico-node container install-cni env CNI_MTU (literal 1440)",
        "calico-config veth_mtu",
        'calico-config cni_network_config (literal "mtu": 1440)',
    ]


@pytest.mark.parametrize("name, config_map", [("calico", "calico-config"), ("canal", "canal-config")])
def test_official_manifests_take_the_mtu_from_veth_mtu(name, config_map):
    docs = manifest(name)
    decided = settings.calico_manifest_settings(docs, mtu=0)
    assert decided["node_env"] == {} and decided["install_cni_env"] == {}
    assert decided["config_data"] == {"veth_mtu": "0"}
    changed = apply(docs, decided)
    assert next(d for d in changed if d["metadata"]["name"] == config_map)["data"]["veth_mtu"] == "0"


def test_an_mtu_from_elsewhere_is_refused_naming_where():
    docs = manifest("calico")
    broken = copy.deepcopy(docs)
    item = next(i for i in node_container(broken)["env"] if i["name"] == "FELIX_VXLANMTU")
    item["valueFrom"] = {"configMapKeyRef": {"name": "site-mtu", "key": "mtu"}}
    with pytest.raises(AnsibleFilterError, match=r"the MTU lives in calico-node container calico-node env FELIX_VXLANMTU, "
                                                 r"which takes its value from .*site-mtu"):
        settings.calico_manifest_settings(broken, mtu=1410)


@pytest.mark.parametrize("documents, message", [
    ("text", "must be the manifest's documents"),
    ([{"kind": "ConfigMap", "metadata": {"name": "x"}}], "no DaemonSet with a 'calico-node' container"),
])
def test_bad_input(documents, message):
    with pytest.raises(AnsibleFilterError, match=message):
        settings.calico_manifest_settings(documents)


def test_unknown_backend_is_named():
    docs = manifest("calico")
    next(d for d in docs if d["kind"] == "ConfigMap")["data"]["calico_backend"] = "gobgp"
    with pytest.raises(AnsibleFilterError, match=r"calico_backend 'gobgp' \(calico-config calico_backend\)"):
        settings.calico_manifest_settings(docs)
