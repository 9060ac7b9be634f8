# Copyright: netmend.k8s contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The net_doctor role's controller side: cluster-level findings from API objects, and the report.

``net_doctor_cluster`` turns what the role read (nodes and CNI agent pods as API objects or
as ``netmend.k8s.cluster_summary`` gives them, the pod count, the DNS Service's EndpointSlices,
Calico IPPools) into the per-node checks'
input and the cluster-level findings; ``net_doctor_report`` merges every node's
result into findings, one table per severity, and JSON/JUnit for CI. The checks
themselves are the core's (``module_utils/netdoctor.py``); pod CIDR overlaps use
netaddr like the other CIDR filters. Documentation lives in ``<filter name>.yml``.
"""
from __future__ import annotations

import json
from xml.etree import ElementTree

from ansible.errors import AnsibleFilterError

from ansible_collections.netmend.k8s.plugins.filter.cidr import _networks
from ansible_collections.netmend.k8s.plugins.module_utils import netdoctor
from ansible_collections.netmend.k8s.plugins.module_utils.netdoctor_agent import RESULT_MARKER

COLUMNS = ("node", "id", "subject", "observed", "expected", "fix")
MAX_CELL = 60


def _objects(api, key):
    value = api.get(key) or []
    if not isinstance(value, list):
        raise AnsibleFilterError("net_doctor_cluster: %s must be a list of API objects, got %r" % (key, value))
    return value


def pod_cidr_overlaps(nodes):
    """``pod_cidr_overlap``: two nodes whose pod CIDRs share addresses."""
    found = []
    parsed = [(node["name"], cidr, _networks([cidr], "pod CIDR of node %s" % node["name"])[0])
              for node in nodes for cidr in node["pod_cidrs"]]
    # A sweep in address order, not every pair: 5,000 nodes are 12.5 million pairs. `active` holds the
    # ranges that still reach the current start; the pairs come out in the input's order, as before.
    pairs = []
    active = []
    for index in sorted(range(len(parsed)), key=lambda i: (parsed[i][2].version, parsed[i][2].first)):
        network = parsed[index][2]
        active = [other for other in active
                  if parsed[other][2].version == network.version and parsed[other][2].last >= network.first]
        pairs.extend((min(other, index), max(other, index)) for other in active
                     if parsed[other][0] != parsed[index][0])
        active.append(index)
    for first, second in sorted(pairs):
        (name, cidr, _network), (other_name, other_cidr, _other) = parsed[first], parsed[second]
        found.append(dict(netdoctor.finding(
            "pod_cidr_overlap", "error", "%s / %s" % (name, other_name),
            "%s (%s) overlaps %s (%s)" % (cidr, name, other_cidr, other_name), "disjoint pod CIDRs",
            "Two nodes hand out the same pod addresses: routes to one node's pods capture the other's. "
            "Usually a node registered with a static podCIDR beside the controller manager's allocator.",
            fix="netmend.k8s.calico (align the pool with the cluster's pod CIDR); re-register the node"),
            node=name))
    return found


def net_doctor_cluster(api, dns_service="kube-system/kube-dns", cni_agent="calico-node"):
    """The per-node checks' input and the cluster-level findings (all but mtu_inconsistent)."""
    if not isinstance(api, dict):
        raise AnsibleFilterError("net_doctor_cluster expects a dict of API object lists, got %r" % (api,))
    try:
        nodes = netdoctor.nodes_from_api(_objects(api, "nodes"))
        calico = netdoctor.calico_expectations(_objects(api, "ippools"))
    except (KeyError, TypeError) as exc:
        raise AnsibleFilterError("net_doctor_cluster: an API object lacks %s" % exc) from None
    findings = netdoctor.cni_agent_findings(nodes, _objects(api, "cni_pods"), cni_agent)
    if api.get("dns_service_found", True):
        findings += netdoctor.dns_findings(_objects(api, "dns_slices"), dns_service)
    findings += pod_cidr_overlaps(nodes)
    pod_count = api.get("pod_count")
    if pod_count is None and "pods" in api:
        pod_count = len(_objects(api, "pods"))
    elif pod_count is not None and (isinstance(pod_count, bool) or not isinstance(pod_count, int) or pod_count < 0):
        raise AnsibleFilterError("net_doctor_cluster: pod_count must be a number of pods, got %r" % (pod_count,))
    return {"nodes": nodes, "calico": calico, "pod_count": pod_count, "findings": findings}


def _cell(value):
    text = "" if value is None else str(value)
    return text if len(text) <= MAX_CELL else text[:MAX_CELL - 1] + "…"


def table(findings):
    """Aligned text lines (header first) of some findings."""
    rows = [COLUMNS] + [tuple(_cell(item.get(column)) for column in COLUMNS) for item in findings]
    widths = [max(len(row[index]) for row in rows) for index in range(len(COLUMNS))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]


def junit(findings, nodes):
    """A JUnit XML report: one test case per node and check, failed by its findings."""
    suite = ElementTree.Element("testsuite", name="net_doctor")
    failures = 0
    cases = 0
    checks = sorted(set(netdoctor.NODE_FINDING_IDS) | set(netdoctor.CLUSTER_FINDING_IDS))
    for node in sorted(set(nodes) | {""}):
        for check in checks:
            mine = [item for item in findings if item.get("node", "") == node and item["id"] == check]
            # the cluster gets a case per cluster-level check; a node one per node check, and any cluster-level
            # check that found something on it (cni_agent_missing names the node)
            wanted = check in netdoctor.NODE_FINDING_IDS if node else check in netdoctor.CLUSTER_FINDING_IDS
            if not (wanted or mine):
                continue
            cases += 1
            case = ElementTree.SubElement(suite, "testcase", classname="net_doctor.%s" % (node or "cluster"), name=check)
            bad = [item for item in mine if item["severity"] in ("error", "warning")]
            if bad:
                failures += 1
                failure = ElementTree.SubElement(case, "failure", type=bad[0]["severity"],
                                                 message="; ".join("%s: %s" % (i["subject"], i["observed"]) for i in bad))
                failure.text = "\n".join("%s\nexpected: %s\nadvice: %s\nfix: %s" % (
                    i["subject"], i["expected"], i["advice"], i.get("fix")) for i in bad)
    suite.set("tests", str(cases))
    suite.set("failures", str(failures))
    return ElementTree.tostring(suite, encoding="unicode")


def agent_result(value):
    """A node's result: as given, or parsed from the run-once agent's log (a k8s_log result with ``log``)."""
    if not isinstance(value, dict) or "findings" in value or not isinstance(value.get("log"), str):
        return value
    lines = [line for line in value["log"].splitlines() if line.startswith(RESULT_MARKER)]
    if not lines:
        return {"error": "no result line in the agent's log"}
    try:
        return json.loads(lines[-1][len(RESULT_MARKER):])
    except ValueError as exc:
        return {"error": "the agent's result line is not JSON: %s" % exc}


def net_doctor_report(node_results, cluster_findings=None):
    """Every finding (node-level ones tagged with their node), tables per severity, counts, JSON and JUnit."""
    if not isinstance(node_results, dict):
        raise AnsibleFilterError("net_doctor_report expects a dict of node name to result, got %r" % (node_results,))
    findings = list(cluster_findings or [])
    facts, undiagnosed = {}, {}
    for node, result in sorted(node_results.items()):
        result = agent_result(result)
        if not isinstance(result, dict) or "findings" not in result:
            # the agent's {"error"}, a failed module's {"msg"}, or nothing at all
            detail = (result.get("error") or result.get("msg")) if isinstance(result, dict) else result
            undiagnosed[node] = str(detail or "no result")
            continue
        facts[node] = result.get("facts") or {}
        findings += [dict(item, node=node) for item in result["findings"]]
    findings += netdoctor.mtu_inconsistent_findings(facts)
    findings = netdoctor.sort_findings(findings)
    counts = {severity: sum(1 for item in findings if item["severity"] == severity)
              for severity in netdoctor.SEVERITIES}
    report = {"findings": findings, "counts": counts, "facts": facts, "undiagnosed": undiagnosed,
              "tables": {severity: table([item for item in findings if item["severity"] == severity])
                         for severity in netdoctor.SEVERITIES if counts[severity]}}
    report["json"] = json.dumps({key: report[key] for key in ("findings", "counts", "facts", "undiagnosed")},
                                indent=2, sort_keys=True)
    report["junit"] = junit(findings, set(facts) | {item.get("node", "") for item in findings} - {""})
    return report


class FilterModule:
    """netmend.k8s net_doctor filters."""

    def filters(self):
        return {
            "net_doctor_cluster": net_doctor_cluster,
            "net_doctor_report": net_doctor_report,
        }
