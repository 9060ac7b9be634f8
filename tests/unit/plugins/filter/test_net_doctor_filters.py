# Copyright: netmend.k8s contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""net_doctor's controller side: cluster-level findings from API objects, and the merged report."""
from __future__ import annotations

import json
from xml.etree import ElementTree

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.netmend.k8s.plugins.filter.net_doctor import net_doctor_cluster, net_doctor_report, pod_cidr_overlaps
from ansible_collections.netmend.k8s.plugins.module_utils import netdoctor
from ansible_collections.netmend.k8s.plugins.module_utils.kube_lite import node_summary, pod_summary


def node(name, cidrs, ip, ready=True):
    return {"metadata": {"name": name}, "spec": {"podCIDRs": cidrs, "podCIDR": cidrs[0] if cidrs else None},
            "status": {"addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}],
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def pod(node_name, ready=True):
    return {"metadata": {"name": "calico-node-" + node_name}, "spec": {"nodeName": node_name},
            "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def dns_slice(*ready):
    return {"endpoints": [{"addresses": ["10.244.0.%d" % i], "conditions": {"ready": flag}}
                          for i, flag in enumerate(ready, start=2)]}


NODES = [node("n1", ["10.244.1.0/24"], "192.168.1.11"), node("n2", ["10.244.2.0/24"], "192.168.1.12"),
         node("n3", ["10.244.3.0/24"], "192.168.1.13", ready=False)]


def found(result):
    return sorted((item["id"], item["severity"], item["node"]) for item in result["findings"])


CLUSTER = [
    pytest.param({"nodes": NODES, "cni_pods": [pod("n1"), pod("n2")], "dns_slices": [dns_slice(True, True)]},
                 [], id="healthy"),
    pytest.param({"nodes": NODES, "cni_pods": [pod("n1")], "dns_slices": [dns_slice(True)]},
                 [("cni_agent_missing", "error", "n2")], id="calico-node-missing-on-a-ready-node"),
    pytest.param({"nodes": NODES, "cni_pods": [pod("n1"), pod("n2", ready=False)], "dns_slices": [dns_slice(True)]},
                 [("cni_agent_missing", "error", "n2")], id="calico-node-not-ready"),
    pytest.param({"nodes": NODES, "cni_pods": [], "dns_slices": [dns_slice(True)]}, [], id="no-calico-no-finding"),
    pytest.param({"nodes": NODES, "dns_slices": [dns_slice(False, False)]},
                 [("dns_unhealthy", "error", "")], id="no-dns-endpoint-ready"),
    pytest.param({"nodes": NODES, "dns_slices": [dns_slice(True, False)]},
                 [("dns_unhealthy", "warning", "")], id="one-dns-endpoint-not-ready"),
    pytest.param({"nodes": NODES, "dns_slices": []}, [("dns_unhealthy", "error", "")], id="no-dns-endpoints"),
    pytest.param({"nodes": NODES, "dns_slices": [], "dns_service_found": False}, [], id="no-dns-service"),
    pytest.param({"nodes": NODES + [node("n4", ["10.244.2.128/25"], "192.168.1.14")], "dns_slices": [dns_slice(True)]},
                 [("pod_cidr_overlap", "error", "n2")], id="pod-cidr-overlap"),
]


@pytest.mark.parametrize("api, expected", CLUSTER)
def test_cluster_findings(api, expected):
    assert found(net_doctor_cluster(api)) == expected


@pytest.mark.parametrize("api, expected", CLUSTER)
def test_cluster_findings_from_summaries_are_the_same(api, expected):
    """What netmend.k8s.cluster_summary returns (the role's input) gives what the whole objects give."""
    short = dict(api, nodes=[node_summary(item) for item in api["nodes"]],
                 cni_pods=[pod_summary(item) for item in api.get("cni_pods", [])])
    assert net_doctor_cluster(short) == net_doctor_cluster(api)
    assert found(net_doctor_cluster(short)) == expected


def test_a_pod_count_stands_for_the_pods():
    assert net_doctor_cluster({"nodes": NODES, "pod_count": 48213})["pod_count"] == 48213
    assert net_doctor_cluster({"nodes": NODES, "pod_count": 0, "pods": [{}]})["pod_count"] == 0
    assert net_doctor_cluster({"nodes": NODES})["pod_count"] is None


def test_cluster_builds_the_node_checks_input():
    result = net_doctor_cluster({"nodes": NODES, "pods": [{}] * 7, "ippools": [
        {"spec": {"cidr": "10.244.0.0/16", "ipipMode": "Always", "vxlanMode": "Never"}}]})
    assert result["nodes"][0] == {"name": "n1", "addresses": ["192.168.1.11"], "pod_cidrs": ["10.244.1.0/24"],
                                  "alive": True}
    assert result["nodes"][2]["alive"] is False
    assert result["calico"] == {"pools": 1, "encapsulation": "ipip", "expected_tunnels": ["tunl0"], "bgp": True}
    assert result["pod_count"] == 7


@pytest.mark.parametrize("pools, expected", [
    ([], {"pools": 0, "encapsulation": "auto", "expected_tunnels": [], "bgp": False}),
    ([{"spec": {"vxlanMode": "Always"}}], {"pools": 1, "encapsulation": "vxlan", "expected_tunnels": ["vxlan.calico"],
                                           "bgp": False}),
    ([{"spec": {"ipipMode": "CrossSubnet"}}, {"spec": {"vxlanMode": "Always"}}],
     {"pools": 2, "encapsulation": "vxlan", "expected_tunnels": ["tunl0", "vxlan.calico"], "bgp": True}),
    ([{"spec": {"ipipMode": "Never", "vxlanMode": "Never"}}],
     {"pools": 1, "encapsulation": "none", "expected_tunnels": [], "bgp": True}),
    ([{"spec": {"vxlanMode": "Always", "disabled": True}}],
     {"pools": 0, "encapsulation": "auto", "expected_tunnels": [], "bgp": False}),
])
def test_calico_expectations(pools, expected):
    assert netdoctor.calico_expectations(pools) == expected


@pytest.mark.parametrize("api, message", [
    ([], "expects a dict"),
    ({"nodes": "n1"}, "nodes must be a list"),
    ({"nodes": [node("n1", ["10.244.1.1/24"], "192.168.1.11")]}, "'10.244.1.1/24'"),
    ({"nodes": [{"spec": {}}]}, "lacks 'name'"),
    ({"nodes": [], "pod_count": "7"}, "pod_count must be a number of pods, got '7'"),
    ({"nodes": [], "pod_count": -1}, "got -1"),
])
def test_cluster_bad_input_names_it(api, message):
    with pytest.raises(AnsibleFilterError, match=message):
        net_doctor_cluster(api)


def result(*findings, pod_mtu=1450, veths=None):
    return {"findings": [netdoctor.finding(check, severity, "s", "o", "e", "a") for check, severity in findings],
            "facts": {"mtu": {"pod_mtu": pod_mtu, "veths": veths or {}}}, "skipped": {}}


def test_report_merges_tags_sorts_and_tabulates():
    cluster = [dict(netdoctor.finding("dns_unhealthy", "warning", "kube-system/kube-dns", "1 of 2", "2", "a"), node="")]
    agent_log = {"log": "starting\n" + "NETMEND_NET_DOCTOR_RESULT " + json.dumps(result(("ip_forward", "error"))) + "\n"}
    report = net_doctor_report({"n1": result(("rp_filter", "warning")), "n2": agent_log,
                                "n3": {"msg": "python3: not found"}, "n4": {"log": "crashed\n"}}, cluster)
    assert [(item["id"], item["node"]) for item in report["findings"]] == [
        ("ip_forward", "n2"), ("dns_unhealthy", ""), ("rp_filter", "n1")]
    assert report["counts"] == {"error": 1, "warning": 2, "info": 0}
    assert report["undiagnosed"] == {"n3": "python3: not found", "n4": "no result line in the agent's log"}
    assert report["tables"]["error"][0].split() == ["node", "id", "subject", "observed", "expected", "fix"]
    assert report["tables"]["error"][1].split()[:2] == ["n2", "ip_forward"]
    assert set(report["tables"]) == {"error", "warning"}
    assert json.loads(report["json"])["counts"] == report["counts"]


def test_report_finds_nodes_that_disagree_on_the_mtu():
    report = net_doctor_report({"n1": result(pod_mtu=1450, veths={"1450": 3}), "n2": result(pod_mtu=1480)})
    (item,) = report["findings"]
    assert item["id"] == "mtu_inconsistent"
    assert item["observed"] == "MTU 1450 on n1; MTU 1480 on n2"
    same = net_doctor_report({"n1": result(pod_mtu=1450, veths={"1450": 3}), "n2": result(pod_mtu=1450)})
    assert same["findings"] == []


def test_report_junit_fails_one_case_per_node_and_check():
    report = net_doctor_report({"n1": result(("ip_forward", "error"), ("ip_forward", "info")), "n2": result()})
    suite = ElementTree.fromstring(report["junit"])
    failed = [(case.get("classname"), case.get("name")) for case in suite.iter("testcase") if case.find("failure") is not None]
    assert failed == [("net_doctor.n1", "ip_forward")]
    assert suite.get("failures") == "1"
    assert int(suite.get("tests")) == 2 * len(netdoctor.NODE_FINDING_IDS) + len(netdoctor.CLUSTER_FINDING_IDS)


def test_report_bad_input():
    with pytest.raises(AnsibleFilterError, match="expects a dict"):
        net_doctor_report(["n1"])


def test_report_junit_keeps_cluster_findings_about_nodes():
    cluster = net_doctor_cluster({"nodes": NODES, "cni_pods": [pod("n1")], "dns_service_found": False})["findings"]
    suite = ElementTree.fromstring(net_doctor_report({}, cluster)["junit"])
    failed = [(case.get("classname"), case.get("name")) for case in suite.iter("testcase") if case.find("failure") is not None]
    assert failed == [("net_doctor.n2", "cni_agent_missing")]


def brute_force_overlaps(nodes):
    import ipaddress

    parsed = [(node["name"], cidr, ipaddress.ip_network(cidr)) for node in nodes for cidr in node["pod_cidrs"]]
    return ["%s (%s) overlaps %s (%s)" % (cidr, name, other_cidr, other_name)
            for index, (name, cidr, network) in enumerate(parsed)
            for other_name, other_cidr, other in parsed[index + 1:]
            if other_name != name and network.version == other.version and network.overlaps(other)]


def test_pod_cidr_overlaps_finds_every_pair_in_input_order_without_comparing_every_pair():
    # 600 disjoint /28s, then nodes that overlap some of them, each other, and a dual-stack node.
    nodes = [{"name": "n%d" % index, "pod_cidrs": ["10.%d.%d.%d/28" % (index // 4096, index // 16 % 256, index % 16 * 16)]}
             for index in range(600)]
    nodes += [{"name": "wide", "pod_cidrs": ["10.0.1.0/26", "fd00::/64"]},
              {"name": "twin", "pod_cidrs": ["10.0.1.16/28"]},
              {"name": "v6", "pod_cidrs": ["fd00::/80"]},
              {"name": "far", "pod_cidrs": ["192.168.0.0/24"]},
              {"name": "wide", "pod_cidrs": ["10.0.1.32/28"]}]
    found = [finding["observed"] for finding in pod_cidr_overlaps(nodes)]
    assert found == brute_force_overlaps(nodes)
    # n16-n19 x wide's /26, n17 x twin, twin x wide's /26, n18 x wide's /28, wide's fd00::/64 x v6; never wide x wide.
    assert len(found) == 8
    assert "10.0.1.16/28 (n17) overlaps 10.0.1.16/28 (twin)" in found
    assert "fd00::/64 (wide) overlaps fd00::/80 (v6)" in found
