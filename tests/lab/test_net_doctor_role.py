# Copyright: netmend.k8s contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The net_doctor role against the lab API server: cluster-level findings, host delivery on the
KWOK nodes with each node played by a network namespace, the run-once agent's objects and their
removal, and read-only RBAC.

Host delivery runs the module in a namespace through an interpreter wrapper
(``ip netns exec <ns> python3``), so the node checks read that namespace while the
cluster is the real lab API server.
"""
from __future__ import annotations

import json
import sys
import threading
import time
import uuid

import pytest
import yaml

from real_pods import existing  # sibling helper module (tests/lab is on sys.path)

AGENT_NAMESPACE = "netmend-test-net-doctor"

pytestmark = pytest.mark.cluster


@pytest.fixture
def role(run_playbook, tmp_path):
    """role(role_vars, hosts='localhost', inventory=None, kubeconfig=None, check=False) -> (rc, output, report)."""
    def run(role_vars, hosts="localhost", inventory=None, kubeconfig=None, check=False):
        report = tmp_path / ("report-%s.json" % uuid.uuid4().hex[:6])
        role_vars = dict({"net_doctor_report_file": str(report), "net_doctor_fail_on": "never"}, **role_vars)
        done = run_playbook({"role": "netmend.k8s.net_doctor", "vars": role_vars, "hosts": hosts}, check=check,
                            inventory=inventory or "localhost,",
                            env={"K8S_AUTH_KUBECONFIG": str(kubeconfig)} if kubeconfig else None)
        parsed = json.loads(report.read_text()) if report.exists() and role_vars.get("net_doctor_report_format", "json") == "json" \
            else None
        return done.returncode, done.stdout + done.stderr, parsed
    return run


@pytest.fixture
def read_only_kubeconfig(kube_admin, kube_server, sa_token, namespace, tmp_path):
    """A kubeconfig for a ServiceAccount that may only get/list/watch what the role reads."""
    from kubernetes import client

    rbac = client.RbacAuthorizationV1Api(kube_admin)
    name = "nd-read-" + namespace
    rules = [{"apiGroups": [""], "resources": ["nodes", "pods", "services"], "verbs": ["get", "list", "watch"]},
             {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["get", "list", "watch"]},
             {"apiGroups": ["crd.projectcalico.org"], "resources": ["ippools"], "verbs": ["get", "list", "watch"]}]
    rbac.create_cluster_role({"metadata": {"name": name}, "rules": rules})
    rbac.create_cluster_role_binding({"metadata": {"name": name},
                                      "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                                  "name": name},
                                      "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": namespace}]})
    host, ca_file = kube_server
    config = {"apiVersion": "v1", "kind": "Config", "current-context": "reader",
              "clusters": [{"name": "lab", "cluster": {"server": host, "certificate-authority": ca_file}}],
              "users": [{"name": "reader", "user": {"token": sa_token(namespace, "reader")}}],
              "contexts": [{"name": "reader", "context": {"cluster": "lab", "user": "reader"}}]}
    path = tmp_path / "reader.kubeconfig"
    path.write_text(yaml.safe_dump(config))
    yield path
    rbac.delete_cluster_role_binding(name)
    rbac.delete_cluster_role(name)


@pytest.fixture
def dns_and_cni(kube_admin, namespace):
    """In a fresh namespace: a DNS Service whose only endpoint is not ready, and a CNI agent pod on kwok-node-0 only."""
    from kubernetes import client

    core = client.CoreV1Api(kube_admin)
    label = "nd-cni-%s" % namespace
    core.create_namespaced_service(namespace, {"metadata": {"name": "nd-dns"},
                                               "spec": {"ports": [{"port": 53, "protocol": "UDP"}]}})
    client.DiscoveryV1Api(kube_admin).create_namespaced_endpoint_slice(namespace, {
        "metadata": {"name": "nd-dns-1", "labels": {"kubernetes.io/service-name": "nd-dns"}},
        "addressType": "IPv4", "ports": [{"port": 53, "protocol": "UDP"}],
        "endpoints": [{"addresses": ["10.244.0.53"], "conditions": {"ready": False}}]})
    core.create_namespaced_pod(namespace, {
        "metadata": {"name": "cni-agent", "labels": {"k8s-app": label}},
        "spec": {"nodeName": "kwok-node-0", "tolerations": [{"operator": "Exists"}],
                 "containers": [{"name": "agent", "image": "python:3.13-slim"}]}})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        conditions = core.read_namespaced_pod("cni-agent", namespace).status.conditions or []
        if any(c.type == "Ready" and c.status == "True" for c in conditions):
            break
        time.sleep(0.5)
    else:
        pytest.fail("KWOK did not make the CNI agent stand-in Ready")
    return {"net_doctor_dns_namespace": namespace, "net_doctor_dns_service": "nd-dns",
            "net_doctor_cni_agent_selector": "k8s-app=%s" % label, "net_doctor_cni_agent_name": "calico-node"}


@pytest.fixture
def overlapping_node(kube_admin):
    """A Node (not KWOK-managed) whose pod CIDR overlaps kwok-node-1's."""
    from kubernetes import client

    core = client.CoreV1Api(kube_admin)
    name = "nd-overlap-" + uuid.uuid4().hex[:6]
    core.create_node({"metadata": {"name": name}, "spec": {"podCIDR": "10.244.1.128/25",
                                                           "podCIDRs": ["10.244.1.128/25"]}})
    yield name
    core.delete_node(name)


def by_id(report):
    found = {}
    for item in report["findings"]:
        found.setdefault(item["id"], []).append(item)
    return found


def test_cluster_level_findings_read_only(kube_admin, role, dns_and_cni, overlapping_node, read_only_kubeconfig):
    from kubernetes import client

    before = {n.metadata.name: n.metadata.resource_version for n in client.CoreV1Api(kube_admin).list_node().items}
    rc, out, report = role(dict(dns_and_cni, net_doctor_delivery="cluster"), kubeconfig=read_only_kubeconfig)
    assert rc == 0, out
    found = by_id(report)
    assert set(found) == {"cni_agent_missing", "dns_unhealthy", "pod_cidr_overlap"}, out
    # kwok-node-0 has a Ready agent; the other Ready nodes (KWOK's and the lab's real ones) have none.
    # The overlapping Node is not Ready (KWOK manages only its own nodes): no agent is expected there.
    missing = sorted(item["subject"] for item in found["cni_agent_missing"])
    assert missing == sorted(name for name in before if name not in ("kwok-node-0", overlapping_node))
    assert found["dns_unhealthy"][0]["observed"] == "0 of 1 DNS endpoints ready"
    assert found["dns_unhealthy"][0]["severity"] == "error"
    assert found["pod_cidr_overlap"][0]["observed"] == "10.244.1.0/24 (kwok-node-1) overlaps 10.244.1.128/25 (%s)" \
        % overlapping_node
    assert "ERROR: %d finding(s)" % (len(missing) + 2) in out  # one table per severity: missing agents, DNS, overlap
    after = {n.metadata.name: n.metadata.resource_version for n in client.CoreV1Api(kube_admin).list_node().items}
    assert set(after) == set(before)

    rc, out, _report = role(dict(dns_and_cni, net_doctor_delivery="cluster", net_doctor_fail_on="error"),
                            kubeconfig=read_only_kubeconfig)
    assert rc != 0 and "net_doctor found %d finding(s) of severity error or worse" % (len(missing) + 2) in out, out


def test_junit_report_and_bad_input(role, dns_and_cni, tmp_path):
    junit = tmp_path / "net-doctor.xml"
    rc, out, _report = role(dict(dns_and_cni, net_doctor_delivery="cluster", net_doctor_report_file=str(junit),
                                 net_doctor_report_format="junit"))
    assert rc == 0, out
    from xml.etree import ElementTree
    suite = ElementTree.parse(junit).getroot()
    failed = sorted(case.get("name") for case in suite.iter("testcase") if case.find("failure") is not None)
    assert "dns_unhealthy" in failed and "cni_agent_missing" in failed

    rc, out, _report = role({"net_doctor_delivery": "cluster", "net_doctor_gc_thresh": [512, 128, 1024]})
    assert rc != 0 and "not [512, 128, 1024]" in out
    rc, out, _report = role({"net_doctor_delivery": "sideways"})
    assert rc != 0 and "sideways" in out


@pytest.fixture
def kwok_addresses(kube_admin):
    """set(name, address): give a KWOK node the InternalIP of the namespace playing it; restored after."""
    from kubernetes import client

    core = client.CoreV1Api(kube_admin)
    saved = {}

    def set_address(name, address):
        node = core.read_node_status(name)
        saved.setdefault(name, [a.to_dict() for a in node.status.addresses or []])
        core.patch_node_status(name, {"status": {"addresses": [{"type": "InternalIP", "address": address},
                                                               {"type": "Hostname", "address": name}]}})
    yield set_address
    for name, addresses in saved.items():
        core.patch_node_status(name, {"status": {"addresses": addresses}})


def test_host_delivery_on_kwok_nodes_played_by_namespaces(netlab, role, kwok_addresses, read_only_kubeconfig, tmp_path,
                                                          kube_admin):
    nodes = [netlab.add_node("kwok-node-%d" % index) for index in (0, 1)]
    underlay = netlab.connect_nodes(nodes)
    for index, node in enumerate(nodes):
        netlab.add_pod(node, "web-%d" % index, "10.244.%d.2" % index)
        kwok_addresses(node.name, underlay.ips[node.name])
    # kwok-node-1's uplink is smaller: its expected pod MTU differs from kwok-node-0's
    nodes[1].set_mtu("eth0", 1400)
    hosts = {}
    for node in nodes:
        wrapper = tmp_path / ("python-%s" % node.name)
        wrapper.write_text('#!/bin/sh\nexec ip netns exec %s %s "$@"\n' % (node.netns, sys.executable))
        wrapper.chmod(0o755)
        hosts[node.name] = {"ansible_connection": "local", "ansible_python_interpreter": str(wrapper)}
    inventory = tmp_path / "nodes.yml"
    inventory.write_text(yaml.safe_dump({"all": {"hosts": hosts}}))
    role_vars = {"net_doctor_delivery": "host", "net_doctor_cni_config": str(tmp_path / "absent.conflist"),
                 "net_doctor_dns_service": "nd-no-such-dns", "net_doctor_bgp": "never"}

    rc, out, report = role(role_vars, hosts="all", inventory=inventory, kubeconfig=read_only_kubeconfig)
    assert rc == 0, out
    assert sorted(report["facts"]) == ["kwok-node-0", "kwok-node-1"] and report["undiagnosed"] == {}
    found = by_id(report)
    # kwok-node-2 and the lab's real nodes are in the cluster but not in this play's namespaces: no route to
    # their pod CIDRs on either node
    from kubernetes import client as kube_client

    elsewhere = ["%s (node %s)" % (node.spec.pod_cidr, node.metadata.name)
                 for node in kube_client.CoreV1Api(kube_admin).list_node().items
                 if node.metadata.name not in ("kwok-node-0", "kwok-node-1") and node.spec.pod_cidr]
    assert sorted((item["node"], item["subject"]) for item in found.pop("route_missing")) == sorted(
        (node, subject) for node in ("kwok-node-0", "kwok-node-1") for subject in elsewhere)
    (inconsistent,) = found.pop("mtu_inconsistent")
    assert inconsistent["observed"] == "MTU 1400 on kwok-node-1; MTU 1500 on kwok-node-0"
    # kwok-node-1's pod veth is still 1500 on a 1400 uplink
    (mismatch,) = found.pop("mtu_mismatch")
    assert mismatch["node"] == "kwok-node-1" and mismatch["observed"].startswith("MTU 1500")
    # no CNI agent pods, no DNS Service: nothing else; routes between the two namespaces are right
    assert found == {}, json.dumps(found, indent=1)
    assert report["facts"]["kwok-node-0"]["peers"] == sorted(
        ["kwok-node-1"] + [subject.split("(node ")[1].rstrip(")") for subject in elsewhere])

    rc, out, _report = role(dict(role_vars, net_doctor_fail_on="warning"), hosts="all", inventory=inventory, check=True)
    assert rc != 0 and "route_missing 10.244.2.0/24 (node kwok-node-2)" in out, out


def agent_objects(kube_admin):
    from kubernetes import client

    readers = [
        ("DaemonSet", lambda: client.AppsV1Api(kube_admin).read_namespaced_daemon_set("netmend-net-doctor", AGENT_NAMESPACE)),
        ("ConfigMap", lambda: client.CoreV1Api(kube_admin).read_namespaced_config_map("netmend-net-doctor-code",
                                                                                      AGENT_NAMESPACE)),
        ("ServiceAccount", lambda: client.CoreV1Api(kube_admin).read_namespaced_service_account("netmend-net-doctor",
                                                                                                AGENT_NAMESPACE)),
        ("ClusterRole", lambda: client.RbacAuthorizationV1Api(kube_admin).read_cluster_role("netmend-net-doctor")),
        ("Namespace", lambda: client.CoreV1Api(kube_admin).read_namespace(AGENT_NAMESPACE)),
    ]
    return existing(readers)


def test_agent_delivery_runs_once_and_leaves_nothing(kube_admin, role, real_nodes):
    """The run-once agent runs as a real pod on each real kubelet node and reports it; KWOK pods run
    no containers, so each KWOK node is reported as not diagnosed. Then nothing of it is left."""
    from kubernetes import client

    seen = {}
    stop = threading.Event()

    def watch_daemonset():
        apps = client.AppsV1Api(kube_admin)
        while not stop.is_set() and "spec" not in seen:
            try:
                seen["spec"] = apps.read_namespaced_daemon_set("netmend-net-doctor", AGENT_NAMESPACE).spec.to_dict()
            except client.rest.ApiException:
                time.sleep(0.2)

    watcher = threading.Thread(target=watch_daemonset, daemon=True)
    watcher.start()
    try:
        rc, out, report = role({"net_doctor_delivery": "agent", "net_doctor_agent_namespace": AGENT_NAMESPACE,
                                "net_doctor_dns_service": "nd-no-such-dns", "net_doctor_agent_timeout": 120})
    finally:
        stop.set()
        watcher.join(5)
    assert rc == 0, out
    kwok_nodes = sorted(n.metadata.name for n in client.CoreV1Api(kube_admin).list_node().items
                        if n.metadata.name.startswith("kwok-node-"))
    assert sorted(report["undiagnosed"]) == kwok_nodes
    # Read back from each real pod's log: the node's own namespace (lo and eth0 at least; it routes pods).
    assert sorted(report["facts"]) == sorted(real_nodes), report["facts"]
    for node in real_nodes:
        facts = report["facts"][node]
        assert facts["interfaces"] >= 2 and facts["forwarding"]["ipv4"] == 1, facts
    assert agent_objects(kube_admin) == {}, "the run-once agent was left behind"
    pod = seen["spec"]["template"]["spec"]
    assert pod["host_network"] is True and not pod["host_pid"]
    assert pod["automount_service_account_token"] is False
    (container,) = pod["containers"]
    assert container["security_context"]["capabilities"] == {"add": None, "drop": ["ALL"]}
    assert container["command"][-1] == "net_doctor" and container["args"][0] == "--hold"
    spec = json.loads(container["args"][container["args"].index("--spec") + 1])
    assert spec["cni_config"] == "/host/etc/cni/net.d/10-calico.conflist"
    # Every host mount read-only; "state" is the agent role's own emptyDir for the readiness heartbeat.
    assert [m["read_only"] for m in container["volume_mounts"] if m["name"] != "state"] == [True, True]
    host_paths = [v["host_path"]["path"] for v in pod["volumes"] if v.get("host_path")]
    assert host_paths == ["/etc/cni/net.d"]
