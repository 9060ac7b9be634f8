# Copyright: netmend.k8s contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The connectivity check's verdicts: expected path outcomes against probe readiness.

A probe pod is Ready only while its target answers, so a path's observed outcome is
read from the readiness of that path's probe pods. Pure functions on plain data (the
path table and the pods from kubernetes.core.k8s_info); the documentation of each
filter lives next to this file in ``<filter name>.yml``.
"""
from __future__ import annotations

from ansible.errors import AnsibleFilterError

PATH_LABEL = "netmend.io/connectivity-path"
OUTCOMES = ("allowed", "denied")
_COLUMNS = (("path", "PATH"), ("source", "FROM"), ("destination", "TO"), ("expected", "EXPECTED"),
            ("observed", "OBSERVED"), ("verdict", "VERDICT"))

# What to look at, by the way a path went wrong (seed 003's checklist for the first two).
_ADVICE = {
    "blocked": [
        "CNI pods on every node: is calico-node Ready on the probe's node and the echo's node "
        "(kubectl get pods -A -o wide -l k8s-app=calico-node)?",
        "routes both ways: from the probe pod's node to the echo pod's address and back (ip route get <pod IP>); "
        "missing routes between nodes mean BGP (TCP 179) or the VXLAN/IPIP tunnel is down",
        "MTU: a pod MTU above the underlay's minus the encapsulation overhead drops large packets "
        "(the calico_mtu fix; pod_poke with an MTU probe finds the black hole)",
        "is a NetworkPolicy selecting the echo pods that should not (kubectl get networkpolicy -A)?",
    ],
    "leaking": [
        "NetworkPolicy is not enforced on this path: is the CNI policy-capable and running on every node "
        "(calico-node, Felix), and does the deny-all policy exist in the isolated namespace?",
        "host-network traffic to a pod on the same node is always allowed by Kubernetes NetworkPolicy",
    ],
    "missing": [
        "the path's probe pods are not running: look at their events (kubectl describe pod), image pulls, "
        "the RuntimeClass for gVisor variants, and Pod Security admission for host-network probes",
    ],
    "flapping": [
        "some probes of the path reach the target and some do not: compare the nodes in this row; "
        "one node without working CNI, routes or MTU is the usual cause",
    ],
}


def _is_ready(pod):
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _is_running(pod):
    return (pod.get("status") or {}).get("phase") == "Running" and not (pod.get("metadata") or {}).get("deletionTimestamp")


def _check_text(filter_name, what, name, key, value):
    """Refuse a cell that is not text (a YAML ``source:`` left empty is null), naming the path and key."""
    if not isinstance(value, str):
        raise AnsibleFilterError("%s: %s %r has %s %r; it must be a string"
                                 % (filter_name, what, name, key, value))


def connectivity_verdicts(paths, pods):
    """One row per path: expected and observed outcome, verdict and the probe pods behind it."""
    if not isinstance(paths, list) or not isinstance(pods, list):
        raise AnsibleFilterError("connectivity_verdicts needs the path list and the probe pod list")
    for number, path in enumerate(paths):
        if not isinstance(path, dict):
            raise AnsibleFilterError("connectivity_verdicts: path number %d is %r, not a mapping" % (number + 1, path))
        _check_text("connectivity_verdicts", "path", path.get("name"), "name", path.get("name"))
        for key in ("source", "destination"):
            _check_text("connectivity_verdicts", "path", path["name"], key, path.get(key, ""))
    by_path = {}
    for pod in pods:
        name = ((pod.get("metadata") or {}).get("labels") or {}).get(PATH_LABEL)
        if name and _is_running(pod):
            by_path.setdefault(name, []).append(pod)
    rows = []
    for path in paths:
        if path.get("expected") not in OUTCOMES:
            raise AnsibleFilterError("path %r expects %r; expected must be one of %s"
                                     % (path.get("name"), path.get("expected"), ", ".join(OUTCOMES)))
        probes = by_path.get(path["name"], [])
        ready = [pod for pod in probes if _is_ready(pod)]
        if not probes:
            observed = "no probes"
        elif len(ready) == len(probes):
            observed = "allowed"
        elif not ready:
            observed = "denied"
        else:
            observed = "partial"
        rows.append({
            "path": path["name"],
            "source": path.get("source", ""),
            "destination": path.get("destination", ""),
            "expected": path["expected"],
            "observed": observed,
            "verdict": "ok" if observed == path["expected"] else "FAIL",
            "ready": len(ready),
            "probes": len(probes),
            "nodes": sorted({(pod.get("spec") or {}).get("nodeName") or "?" for pod in probes}),
            "not_ready_nodes": sorted({(pod.get("spec") or {}).get("nodeName") or "?"
                                       for pod in probes if not _is_ready(pod)}),
        })
    return rows


def connectivity_matrix(rows):
    """The verdict rows as an aligned text table, one string per line (header first)."""
    if not isinstance(rows, list):
        raise AnsibleFilterError("connectivity_matrix needs the list of verdict rows, not %r" % (rows,))
    cells = [[title for _key, title in _COLUMNS]]
    for row in rows:
        for key in ("path", "source", "destination", "expected", "observed", "verdict"):
            _check_text("connectivity_matrix", "row of path", row.get("path"), key, row.get(key))
        observed = row["observed"]
        if row.get("probes"):
            observed = "%s (%d/%d ready)" % (observed, row["ready"], row["probes"])
        cells.append([row["path"], row["source"], row["destination"], row["expected"], observed, row["verdict"]])
    widths = [max(len(line[i]) for line in cells) for i in range(len(_COLUMNS))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in cells]


def connectivity_advice(rows):
    """What to look at for each failed path, one string per line; empty when every path is as expected."""
    lines = []
    for row in rows:
        if row["verdict"] == "ok":
            continue
        if row["observed"] == "no probes":
            kind = "missing"
        elif row["observed"] == "partial":
            kind = "flapping"
        elif row["expected"] == "allowed":
            kind = "blocked"
        else:
            kind = "leaking"
        nodes = ", ".join(row["not_ready_nodes"] if kind in ("blocked", "flapping") else row["nodes"]) or "none"
        lines.append("%s: expected %s, observed %s (probe nodes: %s). Look at:"
                     % (row["path"], row["expected"], row["observed"], nodes))
        advice = _ADVICE[kind]
        if kind == "flapping":
            advice = advice + _ADVICE["blocked" if row["expected"] == "allowed" else "leaking"]
        lines.extend("  - " + item for item in advice)
    return lines


class FilterModule:
    """netmend.k8s connectivity check filters."""

    def filters(self):
        return {
            "connectivity_verdicts": connectivity_verdicts,
            "connectivity_matrix": connectivity_matrix,
            "connectivity_advice": connectivity_advice,
        }
