# Copyright: netmend.k8s contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The calico role by ansible-playbook against the lab API server: the manifest path with a
Calico-shaped manifest (tests/lab/fixtures/calico), the operator path with the Installation CRD,
the CIDR refusals, check mode, idempotence and absent.

Every test installs into its own namespace (``calico_namespace``), so the calico_mtu tests'
calico-config/calico-node never meet these. The cluster-scoped objects of the fixtures (the
IPPool and Installation CRDs, calico ClusterRoles) are removed after each test.
"""
from __future__ import annotations

import functools
import hashlib
import http.server
import os
import threading
import time

import pytest
import yaml

pytestmark = pytest.mark.cluster

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(REPO, "tests", "lab", "fixtures", "calico")
MANIFEST = os.path.join(FIXTURES, "calico.manifest")
OPERATOR = os.path.join(FIXTURES, "operator.yaml")
POD_CIDR = "10.244.0.0/22"  # the span of the lab nodes' podCIDRs
# KWOK nodes' 10.244.{0,1,2}.0/24 and the real nodes' /26s of 10.244.3.0/24 (lab/realnodes.py)
NODE_RANGES = "(10.244.0.0/24, 10.244.1.0/24, 10.244.2.0/24, 10.244.3.0/26, 10.244.3.64/26)"
INSTALLATION_CRD = "installations.operator.tigera.io"
IPPOOL_CRD = "ippools.crd.projectcalico.org"

PLAY = {"role": "netmend.k8s.calico"}


def load(path):
    with open(path, encoding="utf-8") as handle:
        return [doc for doc in yaml.safe_load_all(handle) if doc]


def flat(text):
    return " ".join(text.split())


@pytest.fixture
def dynamic(kube_admin):
    from kubernetes import dynamic as kube_dynamic

    return kube_dynamic.DynamicClient(kube_admin)


def read(dynamic, doc, namespace=None):
    """The live object of a manifest document (moved to ``namespace``), or None."""
    from kubernetes.dynamic.exceptions import NotFoundError, ResourceNotFoundError

    try:
        resource = dynamic.resources.get(api_version=doc["apiVersion"], kind=doc["kind"])
    except ResourceNotFoundError:  # the CRD of that kind is gone
        return None
    try:
        return resource.get(name=doc["metadata"]["name"],
                            namespace=namespace if resource.namespaced else None).to_dict()
    except NotFoundError:
        return None


def resource_versions(dynamic, docs, namespace):
    return {(d["kind"], d["metadata"]["name"]): (read(dynamic, d, namespace) or {}).get("metadata", {}).get("resourceVersion")
            for d in docs}


def node_env(dynamic, namespace):
    node = read(dynamic, {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "calico-node"}}, namespace)
    return {e["name"]: e.get("value") for e in node["spec"]["template"]["spec"]["containers"][0]["env"]}, node


def delete_crd(kube_admin, name):
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    extensions = client.ApiextensionsV1Api(kube_admin)
    try:
        extensions.delete_custom_resource_definition(name)
    except ApiException as exc:
        if exc.status != 404:
            raise
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            extensions.read_custom_resource_definition(name)
        except ApiException as exc:
            if exc.status == 404:
                return
            raise
        time.sleep(0.5)
    raise AssertionError("CRD %s was not deleted within 60s" % name)


@pytest.fixture
def cluster_scoped_cleanup(kube_admin):
    """Remove the fixtures' cluster-scoped objects whatever the test did."""
    yield
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    rbac = client.RbacAuthorizationV1Api(kube_admin)
    for name in ("calico-node", "calico-kube-controllers"):
        for delete in (rbac.delete_cluster_role, rbac.delete_cluster_role_binding):
            try:
                delete(name)
            except ApiException as exc:
                if exc.status != 404:
                    raise
    for crd in (IPPOOL_CRD, INSTALLATION_CRD):
        delete_crd(kube_admin, crd)


def test_manifest_install_aligns_the_pool_and_is_idempotent(run_playbook, dynamic, namespace, cluster_scoped_cleanup):
    docs = load(MANIFEST)
    params = {"calico_manifest": MANIFEST, "calico_namespace": namespace}

    checked = run_playbook(PLAY, extra_vars=params, check=True)
    assert checked.returncode == 0, checked.stdout
    assert "Changed 10 of 10 objects" in flat(checked.stdout)
    assert set(resource_versions(dynamic, docs, namespace).values()) == {None}  # check mode created nothing

    first = run_playbook(PLAY, extra_vars=params)
    assert first.returncode == 0, first.stdout
    out = flat(first.stdout)
    assert "Pod CIDR %s from the span of the nodes' spec.podCIDR %s" % (POD_CIDR, NODE_RANGES) in out
    assert "Service CIDR 10.96.0.0/12 from Kubernetes' default" in out
    assert "Calico manifest install: pool %s, encapsulation IPIP, MTU left as it is" % POD_CIDR in out
    assert "Changed 10 of 10 objects" in out
    assert "DaemonSet %s/calico-node: 3 of 3 updated, 3 available" % namespace in out
    assert "Deployment %s/calico-kube-controllers: 1 of 1 updated, 1 available" % namespace in out
    env, node = node_env(dynamic, namespace)
    assert env["CALICO_IPV4POOL_CIDR"] == POD_CIDR
    assert (env["CALICO_IPV4POOL_IPIP"], env["CALICO_IPV4POOL_VXLAN"]) == ("Always", "Never")
    assert env["FELIX_IPINIPMTU"] is None  # valueFrom calico-config, as the manifest has it
    assert node["status"]["numberAvailable"] == node["status"]["desiredNumberScheduled"] == 3
    managers = {m["manager"] for m in node["metadata"]["managedFields"] if m["operation"] == "Apply"}
    assert managers == {"netmend-calico"}
    binding = read(dynamic, {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                             "metadata": {"name": "calico-node"}})
    assert [s["namespace"] for s in binding["subjects"]] == [namespace]
    config = read(dynamic, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "calico-config"}}, namespace)
    assert config["data"]["veth_mtu"] == "0"

    second = run_playbook(PLAY, extra_vars=params)
    assert second.returncode == 0 and second.recap["changed"] == 0, second.stdout
    assert "Changed 0 of 10 objects" in flat(second.stdout)

    vxlan = dict(params, calico_encapsulation="vxlan", calico_cross_subnet=True, calico_veth_mtu=1410)
    before = resource_versions(dynamic, docs, namespace)
    checked = run_playbook(PLAY, extra_vars=vxlan, check=True, diff=True)
    assert checked.returncode == 0, checked.stdout
    assert ("Changed 2 of 10 objects: ConfigMap/%s/calico-config, DaemonSet/%s/calico-node" % (namespace, namespace)
            in flat(checked.stdout))
    assert resource_versions(dynamic, docs, namespace) == before  # check mode wrote nothing
    assert node_env(dynamic, namespace)[0]["CALICO_IPV4POOL_VXLAN"] == "Never"

    changed = run_playbook(PLAY, extra_vars=vxlan)
    assert changed.returncode == 0 and changed.recap["changed"] == 1, changed.stdout
    assert "encapsulation VXLANCrossSubnet, MTU 1410" in flat(changed.stdout)
    env, node = node_env(dynamic, namespace)
    assert (env["CALICO_IPV4POOL_IPIP"], env["CALICO_IPV4POOL_VXLAN"]) == ("Never", "CrossSubnet")
    assert env["CALICO_IPV4POOL_CIDR"] == POD_CIDR
    # the same fields and restart annotation the calico_mtu role writes
    assert node["spec"]["template"]["metadata"]["annotations"] == {"netmend.io/calico-mtu": "1410"}
    config = read(dynamic, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "calico-config"}}, namespace)
    assert config["data"]["veth_mtu"] == "1410"
    assert "DaemonSet %s/calico-node: 3 of 3 updated, 3 available" % namespace in flat(changed.stdout)
    again = run_playbook(PLAY, extra_vars=vxlan)
    assert again.returncode == 0 and again.recap["changed"] == 0, again.stdout

    # without calico_veth_mtu the live MTU stays (a calico_mtu role run is not undone)
    keep = run_playbook(PLAY, extra_vars=dict(params, calico_encapsulation="vxlan", calico_cross_subnet=True))
    assert keep.returncode == 0, keep.stdout
    config = read(dynamic, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "calico-config"}}, namespace)
    assert config["data"]["veth_mtu"] == "1410"

    absent = dict(params, calico_state="absent")
    checked = run_playbook(PLAY, extra_vars=absent, check=True)
    assert checked.returncode == 0 and checked.recap["changed"] == 1, checked.stdout
    assert None not in resource_versions(dynamic, docs, namespace).values()
    gone = run_playbook(PLAY, extra_vars=absent)
    assert gone.returncode == 0 and gone.recap["changed"] == 1, gone.stdout
    assert set(resource_versions(dynamic, docs, namespace).values()) == {None}
    again = run_playbook(PLAY, extra_vars=absent)
    assert again.returncode == 0 and again.recap["changed"] == 0, again.stdout


def ippool_crd_with_pool(kube_admin, dynamic, cidr):
    """The fixture manifest's IPPool CRD and one pool, as a cluster with Calico already running has."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    crd = next(d for d in load(MANIFEST) if d["kind"] == "CustomResourceDefinition")
    client.ApiextensionsV1Api(kube_admin).create_custom_resource_definition(crd)
    deadline = time.monotonic() + 30
    while True:
        try:
            client.CustomObjectsApi(kube_admin).create_cluster_custom_object("crd.projectcalico.org", "v1", "ippools", {
                "apiVersion": "crd.projectcalico.org/v1", "kind": "IPPool", "metadata": {"name": "default-ipv4-ippool"},
                "spec": {"cidr": cidr, "ipipMode": "Always", "natOutgoing": True}})
            return
        except ApiException as exc:  # the CRD takes a moment to be served
            if exc.status != 404 or time.monotonic() > deadline:
                raise
            time.sleep(0.5)


@pytest.mark.parametrize("extra, pool, message", [
    ({"calico_ipv4pool_cidr": "10.245.0.0/16"}, None,
     "calico_ipv4pool_cidr 10.245.0.0/16 does not sit inside the cluster's pod CIDR %s" % POD_CIDR),
    ({"calico_ipv4pool_cidr": "10.244.0.0/16"}, None,
     "calico_ipv4pool_cidr 10.244.0.0/16 does not sit inside the cluster's pod CIDR %s" % POD_CIDR),
    ({}, "192.168.0.0/16",
     "IPPool default-ipv4-ippool 192.168.0.0/16 does not sit inside the cluster's pod CIDR %s" % POD_CIDR),
    ({"calico_service_cidr": "10.244.2.0/24"}, None,
     "The pool CIDR %s overlaps the service CIDR 10.244.2.0/24 (from calico_service_cidr)" % POD_CIDR),
    ({"calico_ipv4pool_cidr": "10.244.1.0/24", "calico_service_cidr": "10.244.0.0/23"}, None,
     "calico_ipv4pool_cidr 10.244.1.0/24 overlaps the service CIDR 10.244.0.0/23"),
    ({"calico_ipv4pool_cidr": "10.244.1.7/24"}, None, "misaligned CIDR '10.244.1.7/24'"),
    ({"calico_ipv4pool_cidr": "fd00:10:244::/64"}, None, "calico_ipv4pool_cidr fd00:10:244::/64 is not an IPv4 CIDR"),
    ({"calico_cross_subnet": True, "calico_encapsulation": "none"}, None,
     "calico_cross_subnet is true but calico_encapsulation is none"),
    ({"calico_veth_mtu": 40}, None, "calico_mtu_mtu is 40: MTU 40 is outside 68-65535"),
    ({"calico_encapsulation": "gre"}, None, "calico_encapsulation gre is not one of ipip, vxlan, none"),
    ({"calico_manifest": None}, None, "calico_install is manifest but calico_manifest is not set"),
    ({"calico_install": "operator"}, None, "the cluster has no CRD installations.operator.tigera.io"),
])
def test_bad_input_is_refused_and_nothing_is_written(run_playbook, kube_admin, dynamic, namespace,
                                                     cluster_scoped_cleanup, extra, pool, message):
    if pool:
        ippool_crd_with_pool(kube_admin, dynamic, pool)
    params = dict({"calico_manifest": MANIFEST, "calico_namespace": namespace}, **extra)
    done = run_playbook(PLAY, extra_vars=params)
    assert done.returncode != 0 and done.recap.get("changed") == 0, done.stdout
    assert message in flat(done.stdout), done.stdout
    live = {key for key, version in resource_versions(dynamic, load(MANIFEST), namespace).items() if version}
    assert live == ({("CustomResourceDefinition", IPPOOL_CRD)} if pool else set())


def test_aligned_existing_pool_is_accepted_and_reported(run_playbook, kube_admin, dynamic, namespace,
                                                        cluster_scoped_cleanup):
    ippool_crd_with_pool(kube_admin, dynamic, "10.244.0.0/23")
    done = run_playbook(PLAY, extra_vars={"calico_manifest": MANIFEST, "calico_namespace": namespace,
                                          "calico_wait": False}, check=True)
    assert done.returncode == 0, done.stdout
    assert "Existing IP pools: IPPool default-ipv4-ippool 10.244.0.0/23" in flat(done.stdout)


@pytest.fixture
def served_manifest():
    """The fixture manifest over HTTP on loopback."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=FIXTURES)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield "http://127.0.0.1:%d/calico.manifest" % server.server_address[1]
    server.shutdown()
    server.server_close()


def test_manifest_from_a_url_with_its_checksum(run_playbook, dynamic, namespace, served_manifest):
    with open(MANIFEST, "rb") as handle:
        checksum = hashlib.sha256(handle.read()).hexdigest()
    params = {"calico_manifest": served_manifest, "calico_namespace": namespace, "calico_manifest_checksum": checksum}
    done = run_playbook(PLAY, extra_vars=params, check=True)
    assert done.returncode == 0, done.stdout
    assert "Changed 10 of 10 objects" in flat(done.stdout)

    wrong = run_playbook(PLAY, extra_vars=dict(params, calico_manifest_checksum="0" * 64), check=True)
    assert wrong.returncode != 0
    assert "%s has sha256 %s, not calico_manifest_checksum %s" % (served_manifest, checksum, "0" * 64) in flat(wrong.stdout)
    assert set(resource_versions(dynamic, load(MANIFEST), namespace).values()) == {None}


def simulate_operator(kube_admin, namespace):
    """What the operator would run in calico-system: calico-node and calico-kube-controllers."""
    from kubernetes import utils

    for doc in load(MANIFEST):
        if doc["kind"] in ("DaemonSet", "Deployment"):
            doc["metadata"]["namespace"] = namespace
            doc["spec"]["template"]["metadata"].pop("namespace", None)
            doc["spec"]["template"]["spec"].pop("serviceAccountName")
            utils.create_from_dict(kube_admin, doc, namespace=namespace)


def test_operator_install_sets_the_installation_pool(run_playbook, kube_admin, dynamic, namespace, cluster_scoped_cleanup):
    installation = {"apiVersion": "operator.tigera.io/v1", "kind": "Installation", "metadata": {"name": "default"}}
    params = {"calico_install": "operator", "calico_manifest": OPERATOR, "calico_operator_namespace": namespace,
              "calico_encapsulation": "vxlan", "calico_cross_subnet": True, "calico_veth_mtu": 1400,
              "calico_installation_spec": {"variant": "Calico", "calicoNetwork": {"bgp": "Disabled"}}}

    checked = run_playbook(PLAY, extra_vars=params, check=True)
    assert checked.returncode == 0, checked.stdout
    assert read(dynamic, load(OPERATOR)[0]) is None

    simulate_operator(kube_admin, namespace)
    first = run_playbook(PLAY, extra_vars=params)
    assert first.returncode == 0, first.stdout
    out = flat(first.stdout)
    assert "Changed 2 of 2 objects: CustomResourceDefinition/%s, Installation/default" % INSTALLATION_CRD in out
    assert "DaemonSet %s/calico-node: 3 of 3 updated, 3 available" % namespace in out
    assert "Deployment %s/calico-kube-controllers: 1 of 1 updated, 1 available" % namespace in out
    assert read(dynamic, installation)["spec"] == {
        "variant": "Calico",
        "calicoNetwork": {
            "bgp": "Disabled",
            "mtu": 1400,
            "ipPools": [{"name": "default-ipv4-ippool", "cidr": POD_CIDR, "encapsulation": "VXLANCrossSubnet",
                         "natOutgoing": "Enabled", "nodeSelector": "all()"}],
        },
    }

    second = run_playbook(PLAY, extra_vars=params)
    assert second.returncode == 0 and second.recap["changed"] == 0, second.stdout

    before = read(dynamic, installation)["metadata"]["resourceVersion"]
    checked = run_playbook(PLAY, extra_vars=dict(params, calico_encapsulation="ipip", calico_cross_subnet=False),
                           check=True)
    assert checked.returncode == 0 and checked.recap["changed"] == 1, checked.stdout
    assert read(dynamic, installation)["metadata"]["resourceVersion"] == before

    refused = run_playbook(PLAY, extra_vars=dict(params, calico_ipv4pool_cidr="192.168.0.0/16"))
    assert refused.returncode != 0
    assert "calico_ipv4pool_cidr 192.168.0.0/16 does not sit inside the cluster's pod CIDR %s" % POD_CIDR in flat(refused.stdout)
    assert read(dynamic, installation)["metadata"]["resourceVersion"] == before

    absent = {"calico_install": "operator", "calico_manifest": OPERATOR, "calico_state": "absent"}
    gone = run_playbook(PLAY, extra_vars=absent)
    assert gone.returncode == 0 and gone.recap["changed"] == 2, gone.stdout
    assert read(dynamic, load(OPERATOR)[0]) is None
    again = run_playbook(PLAY, extra_vars=absent)
    assert again.returncode == 0 and again.recap["changed"] == 0, again.stdout


@pytest.fixture
def kubeadm_config(kube_admin):
    """kube-system/kubeadm-config as kubeadm writes it (dual stack); deleted after the test."""
    from kubernetes import client

    core = client.CoreV1Api(kube_admin)
    cluster_configuration = {
        "apiVersion": "kubeadm.k8s.io/v1beta3", "kind": "ClusterConfiguration", "kubernetesVersion": "v1.30.0",
        "networking": {"dnsDomain": "cluster.local", "podSubnet": "10.32.0.0/16,fd00:10:32::/56",
                       "serviceSubnet": "10.33.0.0/16,fd00:10:33::/112"}}
    core.create_namespaced_config_map("kube-system", {
        "metadata": {"name": "kubeadm-config"},
        "data": {"ClusterConfiguration": yaml.safe_dump(cluster_configuration)}})
    yield
    core.delete_namespaced_config_map("kubeadm-config", "kube-system")


def test_kubeadm_config_decides_the_pod_and_service_cidrs(run_playbook, dynamic, namespace, kubeadm_config):
    params = {"calico_manifest": MANIFEST, "calico_namespace": namespace}
    done = run_playbook(PLAY, extra_vars=params, check=True)
    assert done.returncode == 0, done.stdout
    out = flat(done.stdout)
    assert "Pod CIDR 10.32.0.0/16, fd00:10:32::/56 from kubeadm-config ClusterConfiguration networking.podSubnet" in out
    assert "Service CIDR 10.33.0.0/16, fd00:10:33::/112 from kubeadm-config ClusterConfiguration networking.serviceSubnet" in out
    assert "Calico manifest install: pool 10.32.0.0/16, encapsulation IPIP" in out

    # the nodes' 10.244.0.0/22 is not what kubeadm says the cluster routes
    refused = run_playbook(PLAY, extra_vars=dict(params, calico_ipv4pool_cidr=POD_CIDR), check=True)
    assert refused.returncode != 0
    assert ("calico_ipv4pool_cidr %s does not sit inside the cluster's pod CIDR 10.32.0.0/16, fd00:10:32::/56" % POD_CIDR
            in flat(refused.stdout))
    assert set(resource_versions(dynamic, load(MANIFEST), namespace).values()) == {None}


def test_created_namespace_comes_and_goes_with_the_install(run_playbook, kube_admin, dynamic, cluster_scoped_cleanup):
    import uuid

    from kubernetes import client
    from kubernetes.client.rest import ApiException

    core = client.CoreV1Api(kube_admin)
    name = "t-calico-" + uuid.uuid4().hex[:6]
    params = {"calico_manifest": MANIFEST, "calico_namespace": name, "calico_create_namespace": True}
    try:
        checked = run_playbook(PLAY, extra_vars=params, check=True)
        assert checked.returncode == 0, checked.stdout
        assert "Changed 11 of 11 objects: Namespace/%s, CustomResourceDefinition" % name in flat(checked.stdout)
        with pytest.raises(ApiException):
            core.read_namespace(name)

        first = run_playbook(PLAY, extra_vars=params)
        assert first.returncode == 0, first.stdout
        assert core.read_namespace(name).metadata.labels["pod-security.kubernetes.io/enforce"] == "privileged"
        assert "DaemonSet %s/calico-node: 3 of 3 updated, 3 available" % name in flat(first.stdout)
        second = run_playbook(PLAY, extra_vars=params)
        assert second.returncode == 0 and second.recap["changed"] == 0, second.stdout

        gone = run_playbook(PLAY, extra_vars=dict(params, calico_state="absent"))
        assert gone.returncode == 0, gone.stdout
        with pytest.raises(ApiException) as missing:
            core.read_namespace(name)
        assert missing.value.status == 404
    finally:
        try:
            core.delete_namespace(name)
        except ApiException as exc:
            if exc.status != 404:
                raise

    refused = run_playbook(PLAY, extra_vars=dict(params, calico_namespace="kube-system"))
    assert refused.returncode != 0
    assert "calico_create_namespace is true but calico_namespace is kube-system, which absent must never delete" in flat(
        refused.stdout)
    missing_ns = run_playbook(PLAY, extra_vars=dict(params, calico_create_namespace=False))
    assert missing_ns.returncode != 0
    assert "calico_namespace %s does not exist: create it, or set calico_create_namespace" % name in flat(missing_ns.stdout)


# --- manifests in the shapes of the official variants and kubespray's (issue 11) -----------------

def variant(name):
    return os.path.join(FIXTURES, name + ".manifest")


def workload_env(dynamic, namespace, name="calico-node", container="calico-node", init=False):
    node = read(dynamic, {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": name}}, namespace)
    containers = node["spec"]["template"]["spec"]["initContainers" if init else "containers"]
    return {e["name"]: e.get("value") for e in next(c for c in containers if c["name"] == container)["env"]}


def test_vxlan_manifest_keeps_its_backend_and_ipip_is_refused(run_playbook, dynamic, namespace):
    params = {"calico_manifest": variant("calico-vxlan"), "calico_namespace": namespace, "calico_wait": False}
    done = run_playbook(PLAY, extra_vars=params)
    assert done.returncode == 0, done.stdout
    out = flat(done.stdout)
    assert "encapsulation VXLAN, MTU left as it is" in out
    assert "Encapsulation from the manifest (calico-config calico_backend)" in out
    env = workload_env(dynamic, namespace)
    assert (env["CALICO_IPV4POOL_IPIP"], env["CALICO_IPV4POOL_VXLAN"]) == ("Never", "Always")
    assert env["CALICO_IPV4POOL_CIDR"] == POD_CIDR

    docs = load(variant("calico-vxlan"))
    before = resource_versions(dynamic, docs, namespace)
    refused = run_playbook(PLAY, extra_vars=dict(params, calico_encapsulation="ipip"))
    assert refused.returncode != 0
    assert ("calico_encapsulation ipip with the manifest's calico_backend vxlan (calico-config calico_backend): "
            "IP-in-IP needs routes from BGP" in flat(refused.stdout)), refused.stdout
    assert resource_versions(dynamic, docs, namespace) == before  # nothing written


@pytest.mark.parametrize("name, workload, pool_env", [
    ("calico-bpf", "calico-node", {"CALICO_IPV4POOL_IPIP": "Never", "CALICO_IPV4POOL_VXLAN": "Never"}),
    ("calico-policy-only", "calico-node", {"CALICO_IPV4POOL_IPIP": "Never"}),
    ("canal", "canal", {}),
])
def test_own_pool_settings_are_kept(run_playbook, dynamic, namespace, name, workload, pool_env):
    params = {"calico_manifest": variant(name), "calico_namespace": namespace, "calico_wait": False}
    done = run_playbook(PLAY, extra_vars=params)
    assert done.returncode == 0, done.stdout
    assert "encapsulation None, MTU left as it is" in flat(done.stdout)
    env = workload_env(dynamic, namespace, workload)
    assert {key: value for key, value in env.items() if key.startswith("CALICO_IPV4POOL_") and key != "CALICO_IPV4POOL_CIDR"} \
        == pool_env
    again = run_playbook(PLAY, extra_vars=params)
    assert again.returncode == 0 and again.recap["changed"] == 0, again.stdout


def test_typha_moved_out_of_kube_system_is_found(run_playbook, dynamic, namespace):
    params = {"calico_manifest": variant("calico-typha"), "calico_namespace": namespace, "calico_wait": False}
    done = run_playbook(PLAY, extra_vars=params)
    assert done.returncode == 0, done.stdout
    assert "calico-node finds Typha in %s" % namespace in flat(done.stdout)
    assert workload_env(dynamic, namespace)["FELIX_TYPHAK8SNAMESPACE"] == namespace
    assert read(dynamic, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "calico-typha"}}, namespace)


def test_kubespray_literal_mtus_all_get_the_new_mtu(run_playbook, dynamic, namespace):
    params = {"calico_manifest": variant("kubespray"), "calico_namespace": namespace, "calico_wait": False,
              "calico_veth_mtu": 1410}
    done = run_playbook(PLAY, extra_vars=params)
    assert done.returncode == 0, done.stdout
    out = flat(done.stdout)
    assert "MTU set in calico-node container calico-node env FELIX_IPINIPMTU (literal 1440)" in out
    assert 'calico-config cni_network_config (literal "mtu": 1440)' in out
    env = workload_env(dynamic, namespace)
    assert [env[name] for name in ("FELIX_IPINIPMTU", "FELIX_VXLANMTU", "FELIX_WIREGUARDMTU")] == ["1410"] * 3
    assert workload_env(dynamic, namespace, container="install-cni", init=True)["CNI_MTU"] == "1410"
    config = read(dynamic, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "calico-config"}}, namespace)
    assert '"mtu": 1410' in config["data"]["cni_network_config"] and "1440" not in config["data"]["cni_network_config"]
    again = run_playbook(PLAY, extra_vars=params)
    assert again.returncode == 0 and again.recap["changed"] == 0, again.stdout


def test_operator_v330_layout_with_operator_crds(run_playbook, kube_admin, dynamic, namespace, cluster_scoped_cleanup):
    crds, operator = os.path.join(FIXTURES, "operator-crds.manifest"), os.path.join(FIXTURES, "tigera-operator.manifest")
    installation = {"apiVersion": "operator.tigera.io/v1", "kind": "Installation", "metadata": {"name": "default"}}
    params = {"calico_install": "operator", "calico_manifest": operator, "calico_operator_namespace": namespace,
              "calico_wait": False}
    delete_crd(kube_admin, INSTALLATION_CRD)  # a cluster without the operator's CRDs, whatever ran before

    refused = run_playbook(PLAY, extra_vars=params)
    assert refused.returncode != 0
    assert "operator-crds.yaml: give that as calico_operator_crds" in flat(refused.stdout), refused.stdout
    assert read(dynamic, load(operator)[0]) is None  # the tigera-operator Namespace was not created

    with_crds = dict(params, calico_operator_crds=crds)
    try:
        done = run_playbook(PLAY, extra_vars=with_crds)
        assert done.returncode == 0, done.stdout
        assert ("Changed 6 of 6 objects: CustomResourceDefinition/apiservers.operator.tigera.io, "
                "CustomResourceDefinition/%s, Namespace/tigera-operator" % INSTALLATION_CRD in flat(done.stdout))
        spec = read(dynamic, installation)["spec"]
        # no encapsulation chosen: the operator's default stays
        assert spec["calicoNetwork"]["ipPools"][0]["cidr"] == POD_CIDR
        assert "encapsulation" not in spec["calicoNetwork"]["ipPools"][0]
        again = run_playbook(PLAY, extra_vars=with_crds)
        assert again.returncode == 0 and again.recap["changed"] == 0, again.stdout
    finally:
        gone = run_playbook(PLAY, extra_vars=dict(with_crds, calico_state="absent"))
        assert gone.returncode == 0, gone.stdout
    assert read(dynamic, installation) is None and read(dynamic, load(crds)[0]) is None
