"""The lab's real nodes: real kubelets and containerd in namespaces of their own,
real pods on them, pod networking across them, and `down` leaving nothing behind."""
from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import uuid

import pytest

from lab import realnodes
from lab.netlab import calico_veth_name

pytestmark = [pytest.mark.cluster, pytest.mark.netlab]

KUBELET_SYSCTLS = {"vm/overcommit_memory": "1", "kernel/panic": "10", "kernel/panic_on_oops": "1"}


def node_init_pid(topo, name):
    """PID (seen from the machine) of the node's PID 1: the child of the recorded unshare."""
    with open(os.path.join(topo.node_dir(name), "pid"), encoding="utf-8") as handle:
        unshare = handle.read().strip()
    with open("/proc/%s/task/%s/children" % (unshare, unshare), encoding="utf-8") as handle:
        return int(handle.read().split()[0])


def test_real_nodes_registered_by_their_kubelets(kube_admin, real_nodes, real_topology):
    from kubernetes import client

    core = client.CoreV1Api(kube_admin)
    leases = client.CoordinationV1Api(kube_admin)
    for index, name in enumerate(real_nodes):
        node = core.read_node(name)
        assert node.metadata.labels[realnodes.LABEL] == "true"
        assert [(t.key, t.effect) for t in node.spec.taints] == [(realnodes.LABEL, "NoSchedule")]
        assert node.spec.pod_cidr == realnodes.Topology.pod_cidr(index)
        info = node.status.node_info
        assert info.kubelet_version == "v1.36.3", info
        assert info.container_runtime_version.startswith("containerd://1.6"), info
        internal = [a.address for a in node.status.addresses if a.type == "InternalIP"]
        assert internal == [real_topology.node_ip(index)]
        assert any(c.type == "Ready" and c.status == "True" for c in node.status.conditions)
        # The node's own kubelet holds its Lease, not KWOK.
        assert leases.read_namespaced_lease(name, "kube-node-lease").spec.holder_identity == name


def test_kubelet_sysctls_stay_inside_the_node(real_nodes, real_topology):
    for name in real_nodes:
        with open(os.path.join(real_topology.node_dir(name), "machine-sysctls.json"), encoding="utf-8") as handle:
            machine_before = json.load(handle)
        pid = node_init_pid(real_topology, name)
        for key, wanted in KUBELET_SYSCTLS.items():
            seen = subprocess.run(["nsenter", "-t", str(pid), "-m", "cat", "/proc/sys/" + key],
                                  capture_output=True, text=True, check=True).stdout.strip()
            assert seen == wanted, (name, key)
            with open("/proc/sys/" + key, encoding="utf-8") as handle:
                assert handle.read() == machine_before[key], key


def test_pods_on_two_real_nodes_reach_each_other(real_pod, pod_exec, namespace, real_nodes, real_topology):
    server = real_pod(namespace, "server", real_nodes[0], ["python3", "-m", "http.server", "8080"])
    client_pod = real_pod(namespace, "client", real_nodes[1], ["sleep", "3600"])
    assert ipaddress.ip_address(server.status.pod_ip) in ipaddress.ip_network(realnodes.Topology.pod_cidr(0))
    assert ipaddress.ip_address(client_pod.status.pod_ip) in ipaddress.ip_network(realnodes.Topology.pod_cidr(1))
    fetch = "import urllib.request; print(urllib.request.urlopen('http://%s:8080/', timeout=5).status)"
    output, code = pod_exec(namespace, "client", ["python3", "-c", fetch % server.status.pod_ip])
    assert (output.strip(), code) == ("200", 0)
    # The host side of each pod's veth carries Calico's name for it, on the node (not the machine).
    veth = calico_veth_name("server", namespace)
    links = json.loads(subprocess.run(["ip", "-n", real_topology.netns(real_nodes[0]), "-j", "link", "show", veth],
                                      capture_output=True, text=True, check=True).stdout)
    assert links[0]["master"] == "cni0"
    assert subprocess.run(["ip", "link", "show", veth], capture_output=True, check=False).returncode != 0


IN_CLUSTER = """
import json, os, ssl, urllib.request
sa = "/var/run/secrets/kubernetes.io/serviceaccount/"
host = os.environ["KUBERNETES_SERVICE_HOST"] + ":" + os.environ["KUBERNETES_SERVICE_PORT"]
request = urllib.request.Request("https://%s/api/v1/namespaces/%s/pods" % (host, open(sa + "namespace").read()),
                                 headers={"Authorization": "Bearer " + open(sa + "token").read()})
context = ssl.create_default_context(cafile=sa + "ca.crt")
pods = json.load(urllib.request.urlopen(request, context=context, timeout=10))
print(host, sorted(p["metadata"]["name"] for p in pods["items"]))
"""


def test_host_network_pod_sees_the_node_and_reaches_the_api(kube_admin, real_pod, pod_exec, namespace, real_nodes):
    from kubernetes import client

    rbac = client.RbacAuthorizationV1Api(kube_admin)
    rbac.create_namespaced_role(namespace, {"metadata": {"name": "pods"}, "rules": [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}]})
    rbac.create_namespaced_role_binding(namespace, {
        "metadata": {"name": "pods"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pods"},
        "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": namespace}]})
    name = "host-" + uuid.uuid4().hex[:5]
    real_pod(namespace, name, real_nodes[0], ["sleep", "3600"], hostNetwork=True, hostPID=True)
    links, code = pod_exec(namespace, name, ["ls", "/sys/class/net"])
    assert code == 0
    assert {"eth0", "cni0"} <= set(links.split()) and "ifb0" not in links.split()
    init = pod_exec(namespace, name, ["cat", "/proc/1/cmdline"])[0]
    assert "realnodes.py\0init" in init
    # The kubernetes Service address, the pod's projected token and the cluster CA, as an in-cluster client uses them.
    output, code = pod_exec(namespace, name, ["python3", "-c", IN_CLUSTER])
    assert code == 0, output
    assert output.split()[0] == "%s:%d" % (realnodes.SERVICE_IP, realnodes.SERVICE_PORT)
    assert name in output


def test_down_leaves_nothing_and_up_brings_them_back(kube_admin, real_nodes):
    from kubernetes import client

    assert realnodes.leftovers(), "the real nodes run, so something of theirs must be found"
    realnodes.down(kube_admin)
    assert realnodes.leftovers() == []
    done = subprocess.run([os.path.join(os.path.dirname(__file__), "..", "..", "lab", "cluster.sh"), "up"],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    nodes = client.CoreV1Api(kube_admin).list_node(label_selector=realnodes.LABEL).items
    ready = {n.metadata.name for n in nodes
             if any(c.type == "Ready" and c.status == "True" for c in n.status.conditions)}
    assert ready >= set(real_nodes)


def test_down_and_leftovers_keep_to_their_own_cluster():
    """Cluster names can prefix each other (netmend-lab, netmend-lab-b): one cluster's down and
    leftovers must not see, kill or remove the other's cgroups and namespaces (make test runs
    three clusters side by side)."""
    mine = realnodes.Topology("nm-own%d" % os.getpid())
    other = realnodes.Topology(mine.cluster + "-b")
    hierarchy = os.path.join(realnodes.CGROUP_FS, "pids")
    others_cgroup = hierarchy + other.cgroup_root(realnodes.Topology.node_name(0))
    others_netns = other.netns(realnodes.Topology.node_name(0))
    sleeper = subprocess.Popen(["sleep", "300"])
    try:
        os.makedirs(others_cgroup)
        with open(os.path.join(others_cgroup, "cgroup.procs"), "w", encoding="utf-8") as handle:
            handle.write(str(sleeper.pid))
        subprocess.run(["ip", "netns", "add", others_netns], check=True)
        assert realnodes.leftovers(mine.cluster) == []
        assert realnodes.leftovers(other.cluster) == sorted(
            ["cgroup:" + others_cgroup, "netns:" + others_netns, "mount:/run/netns/" + others_netns])
        realnodes.down(cluster=mine.cluster)
        assert sleeper.poll() is None, "down() of %s killed a process of %s" % (mine.cluster, other.cluster)
        assert os.path.isdir(others_cgroup)
        assert others_netns in os.listdir("/run/netns")
    finally:
        sleeper.kill()
        sleeper.wait()
        realnodes._remove_cgroups(other)  # the teardown's own retry, on the made-up cluster only
        subprocess.run(["ip", "netns", "del", others_netns], check=False)
