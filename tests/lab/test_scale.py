# Copyright: netmend.k8s contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The lab at scale: the report and one agent rollout on SCALE_NODES KWOK nodes.

The lab is brought to SCALE_NODES KWOK nodes (lab/cluster.py: parallel creates), the
cluster report runs, then the pod_poke agent rolls out on every KWOK node. Afterwards the
lab goes back to the KWOK node count it had: `up --nodes <found>` deletes kwok-node-<i>
for i >= found only, which are the nodes this test added. Timings are printed, not asserted.

SCALE_NODES is 1,000 in make test; NETMEND_LAB_SCALE_NODES=5000 runs the size of the issue. On an idle
2-core machine the whole test took 11 min 50 s at 5,000: lab up 296 s (65 s to create the nodes, the
rest KWOK readying them 4 at a time), the report 16.2 s, the rollout of 5,000 agent pods 169.6 s, back
to 3 nodes 28 s. Inside make test, beside the two other streams, it took over 30 minutes (KWOK readies
nodes and deletes pods 4 at a time, and the removal alone outlasted the 300 s it was given), which the
CI budget cannot hold next to the rest of its stream. KWOK renews 5,000 node leases every 150 s
(lab/cluster.py); with kwokctl's default of every 50 s it fell behind on a busy machine and 1,584
nodes went NotReady.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

import pytest

from lab import podcidrs

pytestmark = pytest.mark.cluster

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCALE_NODES = int(os.environ.get("NETMEND_LAB_SCALE_NODES", "1000"))
NAMESPACE = "netmend-test-scale"
NAME = "netmend-pod-poke"

REPORT = {"role": "netmend.k8s.cluster_report"}
AGENT = {"role": "netmend.k8s.agent"}


def agent_vars(state="present"):
    return {
        "agent_fix": "pod_poke",
        "agent_state": state,
        "agent_namespace": NAMESPACE,
        "agent_rbac_rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "watch"]}],
        "agent_args": ["--interval", "30"],
        "agent_max_unavailable": "10%",
        "agent_min_ready_seconds": 0,
        # Removing it waits for the namespace to go, which waits for KWOK to delete every pod, 4 at a time
        # (the rollout keeps the role's default base, which the test checks).
        "agent_wait_timeout": 300 + SCALE_NODES // 5 if state == "absent" else 300,
        # KWOK nodes only: their pods run nothing, so thousands of agents cost the API server, not the machine.
        "agent_node_selector": {"type": "kwok"},
    }


def kwok_nodes(kube_admin):
    from kubernetes import client

    names = [node.metadata.name for node in
             client.CoreV1Api(kube_admin).list_node(label_selector="type=kwok", _request_timeout=60).items]
    return sorted(name for name in names if re.fullmatch(r"kwok-node-\d+", name))


def lab_up(count):
    started = time.monotonic()
    done = subprocess.run([sys.executable, os.path.join(REPO, "lab", "cluster.py"), "up", "--nodes", str(count)],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    print("lab up --nodes %d: %.1f s; %s" % (count, time.monotonic() - started, done.stdout.strip().splitlines()[-2:]))


@pytest.fixture(scope="module")
def scaled_lab(kube_admin):
    """The lab at SCALE_NODES KWOK nodes; afterwards back to the count it had."""
    from kubernetes import client

    found = len(kwok_nodes(kube_admin))
    assert found < SCALE_NODES, "the lab already has %d KWOK nodes" % found
    # Another DaemonSet would get a pod on every new node too and double what is measured (make site leaves its
    # agents running): the test starts only on a lab without one.
    running = ["%s/%s" % (ds.metadata.namespace, ds.metadata.name)
               for ds in client.AppsV1Api(kube_admin).list_daemon_set_for_all_namespaces(_request_timeout=60).items
               if not ds.metadata.deletion_timestamp
               and (ds.spec.template.spec.node_selector or {}).get("type", "kwok") == "kwok"]
    assert not running, "DaemonSets would put a pod on each of %d nodes: %s; remove them first" % (SCALE_NODES, running)
    try:
        lab_up(SCALE_NODES)
        yield found
    finally:
        lab_up(found)


def test_the_lab_holds_every_kwok_node_with_its_own_pod_cidr(scaled_lab, kube_admin):
    from kubernetes import client

    nodes = {node.metadata.name: node for node in
             client.CoreV1Api(kube_admin).list_node(label_selector="type=kwok", _request_timeout=60).items}
    names = ["kwok-node-%d" % index for index in range(SCALE_NODES)]
    assert set(names) <= set(nodes)
    for index in (0, 2, 3, SCALE_NODES - 1):
        assert nodes[names[index]].spec.pod_cidrs == [podcidrs.kwok_pod_cidr(index)]
    ready = [name for name in names
             if any(c.type == "Ready" and c.status == "True" for c in nodes[name].status.conditions or [])]
    assert len(ready) == SCALE_NODES


def test_report_at_scale_counts_and_keeps_the_list(scaled_lab, kube_admin, run_playbook, tmp_path):
    listing = tmp_path / "nodes.json"
    started = time.monotonic()
    done = run_playbook(REPORT, extra_vars={"cluster_report_nodes_file": str(listing)})
    print("report at %d nodes: %.1f s" % (SCALE_NODES, time.monotonic() - started))
    assert done.returncode == 0, done.stdout[-3000:]
    total = len(client_nodes(kube_admin))
    flat = re.sub(r"\s+", " ", done.stdout)  # the YAML callback folds long lines
    assert re.search(r"nodes: %d \(\d+ Ready\); every node in the fact cluster_report_result.nodes and in %s"
                     % (total, re.escape(str(listing))), flat), done.stdout[-3000:]
    # Counts and anomalies, not a line per node: the last KWOK node is named nowhere in the output.
    assert "kwok-node-%d" % (SCALE_NODES - 1) not in done.stdout
    kept = json.loads(listing.read_text())
    assert len(kept) == total
    by_name = {node["name"]: node for node in kept}
    last = "kwok-node-%d" % (SCALE_NODES - 1)
    assert by_name[last]["pod_cidrs"] == [podcidrs.kwok_pod_cidr(SCALE_NODES - 1)]
    assert by_name[last]["ready"] == "True"


def client_nodes(kube_admin):
    from kubernetes import client

    return client.CoreV1Api(kube_admin).list_node(_request_timeout=60).items


def test_agent_rollout_at_scale(scaled_lab, kube_admin, run_playbook, tmp_path):
    from kubernetes import client

    try:
        started = time.monotonic()
        done = run_playbook(AGENT, extra_vars=agent_vars())
        took = time.monotonic() - started
        print("agent rollout on %d nodes: %.1f s" % (SCALE_NODES, took))
        assert done.returncode == 0, done.stdout[-3000:]
        status = client.AppsV1Api(kube_admin).read_namespaced_daemon_set(NAME, NAMESPACE).status
        assert status.desired_number_scheduled == status.number_available == len(kwok_nodes(kube_admin))
        lines = re.findall(r"\(item=DaemonSet %s/%s: (\d+) of (\d+) updated, (\d+) available\)" % (NAMESPACE, NAME),
                           done.stdout)
        assert lines and lines[-1] == (str(SCALE_NODES),) * 3, lines[-5:]
        # A poll (one module run, one line) reads for rollout_poll_wait (10 s) unless the rollout is done.
        print("%d polls" % len(lines))
        assert len(lines) <= 2 + took / 10, lines
        # The wait scaled with the size: the 300 s base plus 0.05 s a pod.
        budget = re.search(r"Wait for the rollout of %s/%s, at most (\d+)s \(300s \+" % (NAMESPACE, NAME), done.stdout)
        assert budget and int(budget.group(1)) >= 300 + SCALE_NODES * 0.05, done.stdout[-3000:]
        summary_matches_full_lists(kube_admin, run_playbook, tmp_path)
    finally:
        gone = run_playbook(AGENT, extra_vars=agent_vars("absent"))
        assert gone.returncode == 0, gone.stdout[-3000:]


SUMMARY_PLAY = """
- hosts: localhost
  connection: local
  gather_facts: false
  vars:
    ansible_python_interpreter: "{{ ansible_playbook_python }}"
  tasks:
    - name: Read the cluster in short, in pages smaller than it
      netmend.k8s.cluster_summary:
        count_pods: true
        pod_selector: app.kubernetes.io/name=%s
        page_size: 300
      register: summary
    - name: Keep it for the test
      ansible.builtin.copy:
        content: "{{ summary | to_json }}"
        dest: %s
        mode: "0600"
"""


def summary_matches_full_lists(kube_admin, run_playbook, tmp_path):
    """cluster_summary, paged and counted, says what whole LISTs of the same cluster say (pods: the agents'
    SCALE_NODES pods and the rest; the count comes from one request and the server's remainingItemCount)."""
    from kubernetes import client

    kept = tmp_path / "summary.json"
    done = run_playbook(SUMMARY_PLAY % (NAME, kept))
    assert done.returncode == 0 and done.recap.get("changed") == 1, done.stdout[-3000:]  # the copy only
    summary = json.loads(kept.read_text())
    core = client.CoreV1Api(kube_admin)
    nodes = core.list_node(_request_timeout=60).items
    assert [node["name"] for node in summary["nodes"]] == [node.metadata.name for node in nodes]
    assert sum(node["ready"] == "True" for node in summary["nodes"]) == sum(
        any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or []) for node in nodes)
    assert summary["pod_count"] == len(core.list_pod_for_all_namespaces(_request_timeout=60).items)
    agents = core.list_pod_for_all_namespaces(label_selector="app.kubernetes.io/name=%s" % NAME, _request_timeout=60).items
    assert len(agents) >= SCALE_NODES
    assert sorted((pod["namespace"], pod["name"], pod["node"]) for pod in summary["pods"]) == sorted(
        (pod.metadata.namespace, pod.metadata.name, pod.spec.node_name) for pod in agents)
