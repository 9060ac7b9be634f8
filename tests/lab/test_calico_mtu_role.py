# Copyright: netmend.k8s contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The calico_mtu role by ansible-playbook against the lab API server, for the three install styles:
manifest (calico-config + calico-node), operator (Installation) and platform-reconciled (-> agent)."""
from __future__ import annotations

import os
import sys
import time

import pytest
import yaml

pytestmark = pytest.mark.cluster

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PREPARE = os.path.join(REPO, "extensions", "molecule", "default", "prepare_calico.yml")
AGENT_NAMESPACE = "netmend-test-calico-mtu"
ANNOTATION = "netmend.io/calico-mtu"

PLAY = {"role": "netmend.k8s.calico_mtu"}

PREPARE_PLAY = {"tasks": PREPARE}

INSTALLATION_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "installations.operator.tigera.io"},
    "spec": {
        "group": "operator.tigera.io",
        "scope": "Cluster",
        "names": {"plural": "installations", "singular": "installation", "kind": "Installation",
                  "listKind": "InstallationList"},
        "versions": [{"name": "v1", "served": True, "storage": True,
                      "schema": {"openAPIV3Schema": {"type": "object",
                                                     "x-kubernetes-preserve-unknown-fields": True}}}],
    },
}


def role_vars(namespace, **extra):
    return dict({"calico_mtu_calico_namespace": namespace, "calico_mtu_agent_namespace": AGENT_NAMESPACE}, **extra)


def prepare(run_playbook, namespace, labels=None):
    done = run_playbook(PREPARE_PLAY, extra_vars={"calico_fixture_namespace": namespace,
                                                  "calico_fixture_labels": labels or {}})
    assert done.returncode == 0, done.stdout


def calico_state(kube_admin, namespace):
    from kubernetes import client

    config = client.CoreV1Api(kube_admin).read_namespaced_config_map("calico-config", namespace)
    node = client.AppsV1Api(kube_admin).read_namespaced_daemon_set("calico-node", namespace)
    return config.data["veth_mtu"], (node.spec.template.metadata.annotations or {}).get(ANNOTATION)


@pytest.fixture
def agent_cleanup(run_playbook):
    yield
    done = run_playbook(PLAY, extra_vars={"calico_mtu_state": "absent", "calico_mtu_agent_namespace": AGENT_NAMESPACE})
    assert done.returncode == 0, done.stdout


def test_manifest_install_gets_veth_mtu_and_a_rolling_restart(run_playbook, kube_admin, namespace):
    from kubernetes import client

    prepare(run_playbook, namespace)
    params = role_vars(namespace, calico_mtu_host_mtu=1460)

    checked = run_playbook(PLAY, extra_vars=params, check=True, diff=True)
    assert checked.returncode == 0, checked.stdout
    assert "Calico install: manifest; setting the MTU with: config" in checked.stdout
    assert calico_state(kube_admin, namespace) == ("0", None)  # check mode wrote nothing
    per_node = run_playbook(PLAY, extra_vars=role_vars(namespace), check=True)
    assert "Calico install: manifest; setting the MTU with: agent" in per_node.stdout  # no cluster-wide MTU given

    first = run_playbook(PLAY, extra_vars=params)
    assert first.returncode == 0, first.stdout
    assert first.recap["changed"] == 2, first.stdout
    assert calico_state(kube_admin, namespace) == ("1440", "1440")
    assert "DaemonSet %s/calico-node: 3 of 3 updated, 3 available" % namespace in first.stdout
    status = client.AppsV1Api(kube_admin).read_namespaced_daemon_set("calico-node", namespace).status
    assert status.updated_number_scheduled == status.number_available == 3

    second = run_playbook(PLAY, extra_vars=params)
    assert second.returncode == 0 and second.recap["changed"] == 0, second.stdout

    # a new MTU (VXLAN over the same underlay) restarts calico-node again
    third = run_playbook(PLAY, extra_vars=dict(params, calico_mtu_encapsulation="vxlan"))
    assert third.returncode == 0 and third.recap["changed"] == 2, third.stdout
    assert calico_state(kube_admin, namespace) == ("1410", "1410")


def test_operator_install_gets_installation_mtu(run_playbook, kube_admin, namespace):
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    extensions = client.ApiextensionsV1Api(kube_admin)
    extensions.create_custom_resource_definition(INSTALLATION_CRD)
    try:
        custom = client.CustomObjectsApi(kube_admin)
        deadline = time.monotonic() + 30
        while True:
            try:
                custom.create_cluster_custom_object("operator.tigera.io", "v1", "installations", {
                    "apiVersion": "operator.tigera.io/v1", "kind": "Installation", "metadata": {"name": "default"},
                    "spec": {"variant": "Calico", "calicoNetwork": {"bgp": "Enabled"}}})
                break
            except ApiException as exc:  # the CRD takes a moment to be served
                if exc.status != 404 or time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        params = role_vars(namespace, calico_mtu_mtu=1410, calico_mtu_encapsulation="vxlan")

        def spec():
            return custom.get_cluster_custom_object("operator.tigera.io", "v1", "installations", "default")["spec"]

        checked = run_playbook(PLAY, extra_vars=params, check=True)
        assert checked.returncode == 0, checked.stdout
        assert "Calico install: operator; setting the MTU with: config" in checked.stdout
        assert spec() == {"variant": "Calico", "calicoNetwork": {"bgp": "Enabled"}}

        first = run_playbook(PLAY, extra_vars=params)
        assert first.returncode == 0 and first.recap["changed"] == 1, first.stdout
        assert spec() == {"variant": "Calico", "calicoNetwork": {"bgp": "Enabled", "mtu": 1410}}
        second = run_playbook(PLAY, extra_vars=params)
        assert second.returncode == 0 and second.recap["changed"] == 0, second.stdout
        # 0, Calico's auto-detect, is the Installation without an MTU: the operator's own detection
        auto = run_playbook(PLAY, extra_vars=dict(params, calico_mtu_mtu=0))
        assert auto.returncode == 0 and auto.recap["changed"] == 1, auto.stdout
        assert spec() == {"variant": "Calico", "calicoNetwork": {"bgp": "Enabled"}}
        auto_again = run_playbook(PLAY, extra_vars=dict(params, calico_mtu_mtu=0))
        assert auto_again.returncode == 0 and auto_again.recap["changed"] == 0, auto_again.stdout
    finally:
        extensions.delete_custom_resource_definition("installations.operator.tigera.io")


def test_auto_detect_zero_is_written_to_calico_config_only(run_playbook, kube_admin, namespace):
    prepare(run_playbook, namespace)
    fixed = run_playbook(PLAY, extra_vars=role_vars(namespace, calico_mtu_mtu=1440))
    assert fixed.returncode == 0, fixed.stdout
    assert calico_state(kube_admin, namespace) == ("1440", "1440")

    # back to the official manifests' "0": calico-node detects the MTU again
    auto = run_playbook(PLAY, extra_vars=role_vars(namespace, calico_mtu_mtu=0))
    assert auto.returncode == 0 and auto.recap["changed"] == 2, auto.stdout
    assert calico_state(kube_admin, namespace) == ("0", "0")
    again = run_playbook(PLAY, extra_vars=role_vars(namespace, calico_mtu_mtu=0))
    assert again.returncode == 0 and again.recap["changed"] == 0, again.stdout

    # a CNI config file never gets 0: the agent method refuses it and writes nothing
    refused = run_playbook(PLAY, extra_vars=role_vars(namespace, calico_mtu_mtu=0, calico_mtu_method="agent"))
    assert refused.returncode != 0
    assert ("calico_mtu_mtu is 0, Calico's auto-detect, which only the config method can set"
            in " ".join(refused.stdout.split())), refused.stdout
    assert calico_state(kube_admin, namespace) == ("0", "0")


def test_reconciled_install_gets_the_agent(run_playbook, kube_admin, namespace, agent_cleanup):
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    prepare(run_playbook, namespace, labels={"addonmanager.kubernetes.io/mode": "Reconcile"})
    params = role_vars(namespace, calico_mtu_agent_interval=5)
    apps, rbac = client.AppsV1Api(kube_admin), client.RbacAuthorizationV1Api(kube_admin)

    checked = run_playbook(PLAY, extra_vars=params, check=True)
    assert checked.returncode == 0, checked.stdout
    assert "Calico install: reconciled; setting the MTU with: agent" in checked.stdout
    with pytest.raises(ApiException):
        apps.read_namespaced_daemon_set("netmend-calico-mtu", AGENT_NAMESPACE)

    first = run_playbook(PLAY, extra_vars=params)
    assert first.returncode == 0, first.stdout
    assert first.recap["changed"] >= 2, first.stdout
    ds = apps.read_namespaced_daemon_set("netmend-calico-mtu", AGENT_NAMESPACE)
    pod = ds.spec.template.spec
    container = pod.containers[0]
    assert pod.host_network is True
    assert container.command[-1] == "calico_mtu"
    assert container.args == ["--path", "/etc/cni/net.d/10-calico.conflist", "--encapsulation", "ipip",
                              "--ip-family", "ipv4", "--interface-pattern",
                              "^((en|wl|ww|sl|ib)[Pcopsvx].*|(eth|wlan|wwan).*)", "--interval", "5"]
    assert not (container.security_context.privileged or False)
    assert container.security_context.capabilities.drop == ["ALL"] and not container.security_context.capabilities.add
    # The folder above net.d, type Directory: a node without net.d still runs an agent, which waits.
    assert [(v.name, v.host_path.path, v.host_path.type) for v in pod.volumes if v.host_path] == [
        ("cni-dir", "/etc/cni", "Directory")]
    assert {m.name: m.mount_path for m in container.volume_mounts}["cni-dir"] == "/etc/cni"
    with open(os.path.join(REPO, "roles", "calico_mtu", "vars", "main.yml"), encoding="utf-8") as handle:
        expected_rules = yaml.safe_load(handle)["__calico_mtu_rbac_rules"]
    rules = [{"apiGroups": r.api_groups, "resources": r.resources, "verbs": r.verbs}
             for r in rbac.read_cluster_role("netmend-calico-mtu").rules]
    assert rules == expected_rules
    code = client.CoreV1Api(kube_admin).read_namespaced_config_map(pod.volumes[0].config_map.name, AGENT_NAMESPACE)
    assert code.immutable is True and pod.priority_class_name == "netmend-node-critical"
    assert set(code.data) == {"agent.py", "kube_lite.py", "mtu.py", "mtu_agent.py"}
    assert calico_state(kube_admin, namespace) == ("0", None)  # the platform would revert it: left alone

    second = run_playbook(PLAY, extra_vars=params)
    assert second.returncode == 0 and second.recap["changed"] == 0, second.stdout

    gone = run_playbook(PLAY, extra_vars={"calico_mtu_state": "absent", "calico_mtu_agent_namespace": AGENT_NAMESPACE})
    assert gone.returncode == 0, gone.stdout
    with pytest.raises(ApiException) as missing:
        rbac.read_cluster_role("netmend-calico-mtu")
    assert missing.value.status == 404
    assert calico_state(kube_admin, namespace) == ("0", None)  # absent removes only what the role created
    again = run_playbook(PLAY, extra_vars={"calico_mtu_state": "absent", "calico_mtu_agent_namespace": AGENT_NAMESPACE})
    assert again.returncode == 0 and again.recap["changed"] == 0, again.stdout


def test_numbers_and_booleans_given_as_strings(run_playbook, kube_admin, namespace):
    """-e calico_mtu_mtu=1440 and an AWX survey give strings; they are the numbers and booleans they spell."""
    prepare(run_playbook, namespace)
    params = role_vars(namespace, calico_mtu_method="config")

    done = run_playbook(PLAY, extra_vars=params, extra_args=("-e", "calico_mtu_mtu=1440", "-e", "calico_mtu_force=false",
                                                             "-e", "calico_mtu_rollout_timeout=120"))
    assert done.returncode == 0, done.stdout
    assert calico_state(kube_admin, namespace) == ("1440", "1440")
    again = run_playbook(PLAY, extra_vars=dict(params, calico_mtu_mtu="1440", calico_mtu_host_mtu="1460"))
    assert again.returncode == 0 and again.recap["changed"] == 0, again.stdout

    # "false" is false: the MTU that does not fit the underlay is refused, naming the numbers
    refused = run_playbook(PLAY, extra_vars=params, extra_args=(
        "-e", "calico_mtu_mtu=1460", "-e", "calico_mtu_host_mtu=1460", "-e", "calico_mtu_force=false"))
    assert refused.returncode != 0
    assert "calico_mtu_mtu 1460 is larger than calico_mtu_host_mtu 1460 minus the ipip overhead 20" in " ".join(
        refused.stdout.split()), refused.stdout
    for bad in ("14x0", "1440.5"):
        wrong = run_playbook(PLAY, extra_vars=params, extra_args=("-e", "calico_mtu_mtu=" + bad))
        assert wrong.returncode != 0
        # the argument spec refuses it before the preflight, naming the option and the value
        text = " ".join(wrong.stdout.split())
        assert "calico_mtu_mtu" in text and repr(bad) in text and "unable to convert to int" in text, wrong.stdout
    assert calico_state(kube_admin, namespace) == ("1440", "1440")


@pytest.mark.parametrize("extra, message", [
    ({"calico_mtu_mtu": 60}, "calico_mtu_mtu is 60: MTU 60 is outside 68-65535 (the range for ipv4)"),
    ({"calico_mtu_mtu": 1300, "calico_mtu_ip_family": "ipv6", "calico_mtu_host_mtu": 1200},
     "calico_mtu_host_mtu is 1200: MTU 1200 is outside 1280-65535 (the range for ipv6)"),
    ({"calico_mtu_mtu": 1460, "calico_mtu_host_mtu": 1460},
     "calico_mtu_mtu 1460 is larger than calico_mtu_host_mtu 1460 minus the ipip overhead 20"),
    ({"calico_mtu_method": "config"}, "set calico_mtu_mtu, or calico_mtu_host_mtu to compute it from (neither is set)"),
    ({"calico_mtu_encapsulation": "gre"}, "calico_mtu_encapsulation"),
    ({"calico_mtu_conflist_path": "/10-calico.conflist", "calico_mtu_method": "agent"},
     "calico_mtu_conflist_path /10-calico.conflist must be an absolute path at least two folders deep"),
])
def test_bad_input_fails_early_and_writes_nothing(run_playbook, kube_admin, namespace, extra, message):
    prepare(run_playbook, namespace)
    done = run_playbook(PLAY, extra_vars=role_vars(namespace, **extra))
    assert done.returncode != 0
    assert message in " ".join(done.stdout.split()), done.stdout
    assert calico_state(kube_admin, namespace) == ("0", None)


HOST_PLAY = """
- hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Calico MTU on the nodes
      ansible.builtin.include_role:
        name: netmend.k8s.calico_mtu
      vars:
        calico_mtu_method: agent
        calico_mtu_delivery: host
        calico_mtu_hosts: [node0]
        calico_mtu_conflist_path: %s
"""


@pytest.mark.netlab
def test_host_delivery_evicts_only_wrong_mtu_pods(run_playbook, kube_admin, namespace, netlab, tmp_path):
    """The module runs "on the node" through an interpreter that enters the node's network namespace."""
    from kubernetes import client

    apps, core = client.AppsV1Api(kube_admin), client.CoreV1Api(kube_admin)
    apps.create_namespaced_deployment(namespace, {
        "metadata": {"name": "web"},
        "spec": {"replicas": 6, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"nodeSelector": {"kubernetes.io/hostname": "kwok-node-0"},
                                       "terminationGracePeriodSeconds": 0,
                                       "containers": [{"name": "c", "image": "registry.invalid/none:1"}]}}}})
    deadline = time.monotonic() + 60
    while True:
        pods = [p for p in core.list_namespaced_pod(namespace).items if p.status.phase == "Running"]
        if len(pods) == 6:
            break
        assert time.monotonic() < deadline, "web pods did not start"
        time.sleep(0.5)
    names = sorted(p.metadata.name for p in pods)
    wrong, right = names[:3], names[3:]
    # a bare pod (no controller: k8s_drain refused it) and a pod a PodDisruptionBudget protects, both on the wrong MTU
    core.create_namespaced_pod(namespace, {
        "metadata": {"name": "bare", "labels": {"app": "bare"}},
        "spec": {"nodeName": "kwok-node-0", "terminationGracePeriodSeconds": 0,
                 "containers": [{"name": "c", "image": "registry.invalid/none:1"}]}})
    core.create_namespaced_pod(namespace, {
        "metadata": {"name": "guarded", "labels": {"app": "guarded"}},
        "spec": {"nodeName": "kwok-node-0", "terminationGracePeriodSeconds": 0,
                 "containers": [{"name": "c", "image": "registry.invalid/none:1"}]}})
    client.PolicyV1Api(kube_admin).create_namespaced_pod_disruption_budget(namespace, {
        "metadata": {"name": "guarded"},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "guarded"}}}})
    deadline = time.monotonic() + 60
    while {p.metadata.name for p in core.list_namespaced_pod(namespace).items
           if p.status.phase == "Running"} < {"bare", "guarded"}:
        assert time.monotonic() < deadline, "bare/guarded did not start"
        time.sleep(0.5)
    deadline = time.monotonic() + 60
    while (client.PolicyV1Api(kube_admin).read_namespaced_pod_disruption_budget("guarded", namespace).status
           .observed_generation or 0) < 1:
        assert time.monotonic() < deadline, "the PodDisruptionBudget was not observed"
        time.sleep(0.5)
    wrong = wrong + ["bare"]
    names = names + ["bare", "guarded"]
    node = netlab.add_node("node0")
    node.ip_cmd("link", "add", "eth0", "mtu", "1460", "type", "veth", "peer", "name", "uplink")
    node.ip_cmd("link", "set", "eth0", "up")
    for number, name in enumerate(names):
        netlab.add_pod(node, name, "10.244.1.%d" % (number + 10), namespace=namespace,
                       mtu=1500 if name in wrong or name == "guarded" else 1440)
    conflist = tmp_path / "10-calico.conflist"
    conflist.write_text('{\n  "plugins": [\n    {\n      "type": "calico"\n    }\n  ]\n}\n')
    interpreter = tmp_path / "node0-python"
    interpreter.write_text('#!/bin/sh\nexec ip netns exec %s %s "$@"\n' % (node.netns, sys.executable))
    interpreter.chmod(0o755)
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(yaml.safe_dump({"all": {"hosts": {
        # the interpreter as a host variable, not a play variable: play variables would win over node0's
        "localhost": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable},
        "node0": {"ansible_connection": "local", "ansible_python_interpreter": str(interpreter),
                  "calico_mtu_node_name": "kwok-node-0"}}}}))

    checked = run_playbook(HOST_PLAY % conflist, inventory=str(inventory), check=True)
    assert checked.returncode == 0, checked.stdout
    assert '"mtu"' not in conflist.read_text()
    assert {p.metadata.name for p in core.list_namespaced_pod(namespace).items} == set(names)  # nothing evicted

    first = run_playbook(HOST_PLAY % conflist, inventory=str(inventory))
    assert first.returncode == 0, first.stdout
    assert '"mtu": 1440' in conflist.read_text()
    remaining = {p.metadata.name for p in core.list_namespaced_pod(namespace).items if not p.metadata.deletion_timestamp}
    assert set(right) <= remaining and not set(wrong) & remaining, (wrong, remaining)
    assert "guarded" in remaining  # refused by its budget: warned about, never forced
    assert "Eviction of pod %s/guarded refused by a PodDisruptionBudget" % namespace in " ".join(first.stderr.split())
    assert not client.CoreV1Api(kube_admin).read_node("kwok-node-0").spec.unschedulable

    second = run_playbook(HOST_PLAY % conflist, inventory=str(inventory))
    assert second.returncode == 0, second.stdout
    assert second.recap["changed"] == 0, second.stdout  # only the guarded pod is left, still refused
