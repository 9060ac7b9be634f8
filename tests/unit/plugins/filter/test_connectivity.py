# Copyright: netmend.k8s contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.netmend.k8s.plugins.filter import connectivity

PATHS = [
    {"name": "pod-to-echo", "source": "netmend-connectivity", "destination": "echo", "expected": "allowed"},
    {"name": "pod-to-isolated", "source": "netmend-connectivity", "destination": "isolated/echo", "expected": "denied"},
]


def pod(path, ready, node="kwok-node-0", phase="Running", deleting=False):
    metadata = {"name": "%s-%s" % (path, node), "labels": {connectivity.PATH_LABEL: path}}
    if deleting:
        metadata["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": metadata, "spec": {"nodeName": node},
            "status": {"phase": phase, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


@pytest.mark.parametrize("pods, observed, verdicts", [
    # everything as expected
    ([pod("pod-to-echo", True), pod("pod-to-echo", True, "kwok-node-1"), pod("pod-to-isolated", False)],
     ["allowed", "denied"], ["ok", "ok"]),
    # the deny-all policy is not enforced
    ([pod("pod-to-echo", True), pod("pod-to-isolated", True)], ["allowed", "allowed"], ["ok", "FAIL"]),
    # one node cannot reach the echo server
    ([pod("pod-to-echo", True), pod("pod-to-echo", False, "kwok-node-2"), pod("pod-to-isolated", False)],
     ["partial", "denied"], ["FAIL", "ok"]),
    # no probe is running; pending and terminating pods do not count
    ([pod("pod-to-echo", True, phase="Pending"), pod("pod-to-echo", True, deleting=True), pod("pod-to-isolated", False)],
     ["no probes", "denied"], ["FAIL", "ok"]),
    # pods of other paths or without the label are ignored
    ([pod("other", True), {"metadata": {"name": "x"}, "status": {"phase": "Running"}}, pod("pod-to-echo", False),
      pod("pod-to-isolated", False)], ["denied", "denied"], ["FAIL", "ok"]),
])
def test_verdicts(pods, observed, verdicts):
    rows = connectivity.connectivity_verdicts(PATHS, pods)
    assert [row["observed"] for row in rows] == observed
    assert [row["verdict"] for row in rows] == verdicts
    assert [row["path"] for row in rows] == ["pod-to-echo", "pod-to-isolated"]


def test_verdict_counts_and_nodes():
    rows = connectivity.connectivity_verdicts(PATHS[:1], [pod("pod-to-echo", True), pod("pod-to-echo", False, "kwok-node-2")])
    assert rows[0]["ready"] == 1 and rows[0]["probes"] == 2
    assert rows[0]["nodes"] == ["kwok-node-0", "kwok-node-2"]
    assert rows[0]["not_ready_nodes"] == ["kwok-node-2"]


@pytest.mark.parametrize("paths, pods", [
    ([{"name": "a", "expected": "maybe"}], []),
    ("pod-to-echo", []),
    (PATHS, None),
])
def test_verdicts_refuse_bad_input(paths, pods):
    with pytest.raises(AnsibleFilterError):
        connectivity.connectivity_verdicts(paths, pods)


def test_matrix():
    rows = connectivity.connectivity_verdicts(PATHS, [pod("pod-to-echo", True), pod("pod-to-isolated", True)])
    assert connectivity.connectivity_matrix(rows) == [
        "PATH             FROM                  TO             EXPECTED  OBSERVED             VERDICT",
        "pod-to-echo      netmend-connectivity  echo           allowed   allowed (1/1 ready)  ok",
        "pod-to-isolated  netmend-connectivity  isolated/echo  denied    allowed (1/1 ready)  FAIL",
    ]


@pytest.mark.parametrize("path, words", [
    # a YAML "source:" left empty is null; it used to pass here and crash connectivity_matrix with a TypeError
    ({"name": "pod-to-echo", "source": None, "destination": "echo", "expected": "allowed"},
     ["'pod-to-echo'", "source None"]),
    ({"name": "pod-to-echo", "source": "a", "destination": 443, "expected": "allowed"}, ["'pod-to-echo'", "destination 443"]),
    ({"name": None, "expected": "allowed"}, ["name None"]),
    ("pod-to-echo", ["path number 1", "'pod-to-echo'"]),
])
def test_verdicts_name_the_bad_path(path, words):
    with pytest.raises(AnsibleFilterError) as caught:
        connectivity.connectivity_verdicts([path], [])
    for word in words:
        assert word in str(caught.value)


def test_matrix_names_the_row_with_a_null_source():
    rows = connectivity.connectivity_verdicts(PATHS[:1], [])
    rows[0]["source"] = None
    with pytest.raises(AnsibleFilterError, match=r"row of path 'pod-to-echo' has source None"):
        connectivity.connectivity_matrix(rows)


def test_matrix_without_probes():
    rows = connectivity.connectivity_verdicts(PATHS[:1], [])
    assert connectivity.connectivity_matrix(rows)[1].split() == ["pod-to-echo", "netmend-connectivity", "echo",
                                                                 "allowed", "no", "probes", "FAIL"]


@pytest.mark.parametrize("pods, first_line, checklist_word", [
    ([pod("pod-to-echo", True), pod("pod-to-isolated", True, "kwok-node-1")],
     "pod-to-isolated: expected denied, observed allowed (probe nodes: kwok-node-1). Look at:", "NetworkPolicy is not enforced"),
    ([pod("pod-to-echo", False, "kwok-node-2"), pod("pod-to-isolated", False)],
     "pod-to-echo: expected allowed, observed denied (probe nodes: kwok-node-2). Look at:", "routes both ways"),
    ([pod("pod-to-echo", True), pod("pod-to-echo", False, "kwok-node-1"), pod("pod-to-isolated", False)],
     "pod-to-echo: expected allowed, observed partial (probe nodes: kwok-node-1). Look at:", "one node"),
    ([pod("pod-to-isolated", False)],
     "pod-to-echo: expected allowed, observed no probes (probe nodes: none). Look at:", "not running"),
])
def test_advice(pods, first_line, checklist_word):
    lines = connectivity.connectivity_advice(connectivity.connectivity_verdicts(PATHS, pods))
    assert lines[0] == first_line
    assert all(line.startswith("  - ") for line in lines[1:])
    assert any(checklist_word in line for line in lines[1:])


def test_blocked_advice_is_seed_checklist():
    lines = connectivity.connectivity_advice(connectivity.connectivity_verdicts(PATHS[:1], [pod("pod-to-echo", False)]))
    text = "\n".join(lines)
    for item in ("CNI pods on every node", "routes both ways", "MTU"):
        assert item in text


def test_no_advice_when_all_ok():
    rows = connectivity.connectivity_verdicts(PATHS, [pod("pod-to-echo", True), pod("pod-to-isolated", False)])
    assert connectivity.connectivity_advice(rows) == []


def test_filters_registered():
    assert set(connectivity.FilterModule().filters()) == {"connectivity_verdicts", "connectivity_matrix", "connectivity_advice"}
