# Copyright: netmend.k8s contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The calico_monitoring role by ansible-playbook against the lab API server.

FelixConfiguration comes from a minimal CRD (any fields kept). Every test works on its own
FelixConfiguration name and its own namespace, so the shared `default` object is never touched.
Another field manager stands in for calicoctl or a GitOps tool to check field ownership.
"""
from __future__ import annotations

import os
import subprocess
import time
import uuid

import pytest
import yaml

pytestmark = pytest.mark.cluster

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PREPARE = os.path.join(REPO, "extensions", "molecule", "default", "prepare_calico.yml")
GROUP, VERSION, PLURAL = "crd.projectcalico.org", "v1", "felixconfigurations"
MANAGER = "netmend.k8s/calico-monitoring"
OTHER = "gitops-tool"
PREVIOUS = "netmend.io/calico-monitoring-previous"
PROMETHEUS = "netmend-calico-prometheus"

PLAY = {"role": "netmend.k8s.calico_monitoring"}
PROM_FIXTURES = os.path.join(REPO, "tests", "unit", "fixtures", "prometheus")


def lab_promtool():
    """The promtool lab/build.sh builds from Prometheus's Go module (Debian's lacks Kubernetes discovery)."""
    from lab import images

    version = images.versions()["PROMETHEUS_VERSION"]
    path = os.path.join(images.CACHE, "bin", "promtool-" + version, "promtool")
    if not os.path.exists(os.path.join(os.path.dirname(path), ".ok")):
        subprocess.run([os.path.join(REPO, "lab", "build.sh"), "promtool"], check=True, stdout=subprocess.DEVNULL)
    return path


PREPARE_PLAY = {"tasks": PREPARE}

FELIX_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "%s.%s" % (PLURAL, GROUP)},
    "spec": {
        "group": GROUP,
        "scope": "Cluster",
        "names": {"plural": PLURAL, "singular": "felixconfiguration", "kind": "FelixConfiguration",
                  "listKind": "FelixConfigurationList"},
        "versions": [{"name": VERSION, "served": True, "storage": True,
                      "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}}],
    },
}


@pytest.fixture(scope="module")
def felix_crd(kube_admin):
    """The FelixConfiguration CRD, created when missing. It stays: the calico role's tests may use it too."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    try:
        client.ApiextensionsV1Api(kube_admin).create_custom_resource_definition(FELIX_CRD)
    except ApiException as exc:
        if exc.status != 409:
            raise
    custom = client.CustomObjectsApi(kube_admin)
    deadline = time.monotonic() + 30
    while True:
        try:
            custom.list_cluster_custom_object(GROUP, VERSION, PLURAL)
            return
        except ApiException as exc:  # the CRD takes a moment to be served
            if exc.status != 404 or time.monotonic() > deadline:
                raise
            time.sleep(0.5)


@pytest.fixture
def felix(kube_admin, felix_crd):
    """A FelixConfiguration name of this test's own; the object is deleted afterwards."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    name = "t-" + uuid.uuid4().hex[:8]
    yield name
    try:
        client.CustomObjectsApi(kube_admin).delete_cluster_custom_object(GROUP, VERSION, PLURAL, name)
    except ApiException as exc:
        if exc.status != 404:
            raise


def apply_as(kube_admin, manager, name, spec):
    """Server-side apply a FelixConfiguration as another field manager."""
    body = {"apiVersion": "%s/%s" % (GROUP, VERSION), "kind": "FelixConfiguration", "metadata": {"name": name}, "spec": spec}
    from kubernetes.dynamic import DynamicClient

    api = DynamicClient(kube_admin).resources.get(api_version="%s/%s" % (GROUP, VERSION), kind="FelixConfiguration")
    api.server_side_apply(body=body, name=name, field_manager=manager)


def read_felix(kube_admin, name):
    from kubernetes import client

    return client.CustomObjectsApi(kube_admin).get_cluster_custom_object(GROUP, VERSION, PLURAL, name)


def owners(felix_object, field):
    """Managers whose managedFields include spec.<field>."""
    return sorted(entry["manager"] for entry in felix_object["metadata"].get("managedFields", [])
                  if "f:" + field in entry.get("fieldsV1", {}).get("f:spec", {}))


def services(kube_admin, namespace):
    from kubernetes import client

    items = client.CoreV1Api(kube_admin).list_namespaced_service(namespace).items
    return {s.metadata.name: s.spec.ports[0].port for s in items}


def prepare(run_playbook, namespace, kube_admin=None, typha=False, typha_metrics=True):
    done = run_playbook(PREPARE_PLAY, extra_vars={"calico_fixture_namespace": namespace})
    assert done.returncode == 0, done.stdout
    if typha:
        from kubernetes import client

        client.AppsV1Api(kube_admin).create_namespaced_deployment(namespace, {
            "metadata": {"name": "calico-typha"},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"k8s-app": "calico-typha"}},
                     "template": {"metadata": {"labels": {"k8s-app": "calico-typha"}},
                                  "spec": {"containers": [{
                                      "name": "typha", "image": "quay.io/calico/typha:v3.28.0",
                                      "env": [{"name": "TYPHA_PROMETHEUSMETRICSENABLED",
                                               "value": "true" if typha_metrics else "false"}]}]}}}})


def role_vars(felix, **extra):
    return dict({"calico_monitoring_felix_configuration": felix, "calico_monitoring_promtool": lab_promtool()}, **extra)


def test_apply_keeps_other_managers_fields_and_absent_restores(run_playbook, kube_admin, namespace, felix):
    prepare(run_playbook, namespace)
    apply_as(kube_admin, OTHER, felix, {"logSeverityScreen": "Info"})
    # detection: no calico-node in the first candidate namespace, one in the test's namespace
    params = role_vars(felix, __calico_monitoring_install_namespaces=[namespace + "-operator", namespace])

    checked = run_playbook(PLAY, extra_vars=params, check=True)
    assert checked.returncode == 0, checked.stdout
    assert "Calico in %s;" % namespace in checked.stdout
    assert read_felix(kube_admin, felix)["spec"] == {"logSeverityScreen": "Info"}  # check mode wrote nothing
    assert services(kube_admin, namespace) == {}

    first = run_playbook(PLAY, extra_vars=params)
    assert first.returncode == 0, first.stdout
    assert "prometheusMetricsEnabled before this role: unset" in first.stdout
    obj = read_felix(kube_admin, felix)
    assert obj["spec"] == {"logSeverityScreen": "Info", "prometheusMetricsEnabled": True}
    assert obj["metadata"]["annotations"][PREVIOUS] == "unset"
    assert owners(obj, "logSeverityScreen") == [OTHER]
    assert owners(obj, "prometheusMetricsEnabled") == [MANAGER]
    # no calico-typha Deployment: no Typha Service
    assert services(kube_admin, namespace) == {"felix-metrics-svc": 9091, "kube-controllers-metrics-svc": 9094}

    second = run_playbook(PLAY, extra_vars=params)
    assert second.returncode == 0 and second.recap["changed"] == 0, second.stdout

    before = read_felix(kube_admin, felix)
    checked_absent = run_playbook(PLAY, extra_vars=dict(params, calico_monitoring_state="absent"), check=True)
    assert checked_absent.returncode == 0 and checked_absent.recap["changed"] >= 2, checked_absent.stdout
    assert read_felix(kube_admin, felix)["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert len(services(kube_admin, namespace)) == 2  # check mode deleted nothing

    gone = run_playbook(PLAY, extra_vars=dict(params, calico_monitoring_state="absent"))
    assert gone.returncode == 0, gone.stdout
    obj = read_felix(kube_admin, felix)
    assert obj["spec"] == {"logSeverityScreen": "Info"}
    assert PREVIOUS not in (obj["metadata"].get("annotations") or {})
    assert owners(obj, "logSeverityScreen") == [OTHER]
    assert services(kube_admin, namespace) == {}
    again = run_playbook(PLAY, extra_vars=dict(params, calico_monitoring_state="absent"))
    assert again.returncode == 0 and again.recap["changed"] == 0, again.stdout


def test_conflict_is_reported_not_stolen_unless_forced(run_playbook, kube_admin, namespace, felix):
    prepare(run_playbook, namespace, kube_admin, typha=True)
    apply_as(kube_admin, OTHER, felix, {"prometheusMetricsEnabled": False})
    params = role_vars(felix, calico_monitoring_calico_namespace=namespace)

    refused = run_playbook(PLAY, extra_vars=params)
    assert refused.returncode != 0
    text = " ".join(refused.stdout.split())
    assert "prometheusMetricsEnabled is owned by field manager %s with another value (False)" % OTHER in text, refused.stdout
    assert "calico_monitoring_force: true" in text
    obj = read_felix(kube_admin, felix)
    assert obj["spec"] == {"prometheusMetricsEnabled": False} and owners(obj, "prometheusMetricsEnabled") == [OTHER]

    forced = run_playbook(PLAY, extra_vars=dict(params, calico_monitoring_force=True))
    assert forced.returncode == 0, forced.stdout
    obj = read_felix(kube_admin, felix)
    assert obj["spec"] == {"prometheusMetricsEnabled": True}
    assert obj["metadata"]["annotations"][PREVIOUS] == "false"
    assert owners(obj, "prometheusMetricsEnabled") == [MANAGER]
    # a calico-typha Deployment: its metrics Service too
    assert services(kube_admin, namespace) == {
        "felix-metrics-svc": 9091, "kube-controllers-metrics-svc": 9094, "typha-metrics-svc": 9093}
    again = run_playbook(PLAY, extra_vars=dict(params, calico_monitoring_force=True))
    assert again.returncode == 0 and again.recap["changed"] == 0, again.stdout

    gone = run_playbook(PLAY, extra_vars=dict(params, calico_monitoring_state="absent"))
    assert gone.returncode == 0, gone.stdout
    assert read_felix(kube_admin, felix)["spec"] == {"prometheusMetricsEnabled": False}
    assert services(kube_admin, namespace) == {}


def test_same_value_owned_by_another_manager_is_shared(run_playbook, kube_admin, namespace, felix):
    prepare(run_playbook, namespace)
    apply_as(kube_admin, OTHER, felix, {"prometheusMetricsEnabled": True})
    params = role_vars(felix, calico_monitoring_calico_namespace=namespace)
    done = run_playbook(PLAY, extra_vars=params)
    assert done.returncode == 0, done.stdout
    assert owners(read_felix(kube_admin, felix), "prometheusMetricsEnabled") == sorted([MANAGER, OTHER])
    gone = run_playbook(PLAY, extra_vars=dict(params, calico_monitoring_state="absent"))
    assert gone.returncode == 0, gone.stdout
    obj = read_felix(kube_admin, felix)
    assert obj["spec"] == {"prometheusMetricsEnabled": True} and owners(obj, "prometheusMetricsEnabled") == [OTHER]


def test_prometheus_stack(run_playbook, kube_admin, namespace, felix, tmp_path):
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    prepare(run_playbook, namespace, kube_admin, typha=True)
    prom_ns = namespace + "-prom"
    params = role_vars(felix, calico_monitoring_calico_namespace=namespace, calico_monitoring_prometheus=True,
                       calico_monitoring_prometheus_namespace=prom_ns)
    core, rbac = client.CoreV1Api(kube_admin), client.RbacAuthorizationV1Api(kube_admin)

    checked = run_playbook(PLAY, extra_vars=params, check=True)
    assert checked.returncode == 0, checked.stdout
    with pytest.raises(ApiException):
        core.read_namespace(prom_ns)

    first = run_playbook(PLAY, extra_vars=params)
    assert first.returncode == 0, first.stdout
    assert "Deployment %s/%s: 1 of 1 updated, 1 available" % (prom_ns, PROMETHEUS) in first.stdout
    with open(os.path.join(REPO, "roles", "calico_monitoring", "vars", "main.yml"), encoding="utf-8") as handle:
        expected_rules = yaml.safe_load(handle)["__calico_monitoring_prometheus_rules"]
    rules = [{"apiGroups": r.api_groups, "resources": r.resources, "verbs": r.verbs}
             for r in rbac.read_cluster_role(PROMETHEUS).rules]
    assert rules == expected_rules
    assert all(set(rule["verbs"]) == {"get", "list", "watch"} for rule in rules)
    binding = rbac.read_cluster_role_binding(PROMETHEUS)
    assert [(s.kind, s.namespace, s.name) for s in binding.subjects] == [("ServiceAccount", prom_ns, PROMETHEUS)]
    deployment = client.AppsV1Api(kube_admin).read_namespaced_deployment(PROMETHEUS, prom_ns)
    assert deployment.spec.template.spec.service_account_name == PROMETHEUS
    assert deployment.spec.template.spec.containers[0].image == "docker.io/prom/prometheus:v3.15.0"

    text = core.read_namespaced_config_map(PROMETHEUS, prom_ns).data["prometheus.yml"]
    config = yaml.safe_load(text)
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert sorted(jobs) == ["felix", "kube-controllers", "netmend-agents", "prometheus", "typha"]
    assert jobs["felix"]["kubernetes_sd_configs"] == [{"role": "endpointslice", "namespaces": {"names": [namespace]}}]
    assert jobs["typha"]["relabel_configs"][0]["regex"] == "typha-metrics-svc"
    keeps = [(r["source_labels"], r["regex"]) for r in jobs["netmend-agents"]["relabel_configs"] if r["action"] == "keep"]
    assert keeps == [(["__meta_kubernetes_pod_label_app_kubernetes_io_part_of"], "netmend"),
                     (["__meta_kubernetes_pod_container_port_name"], "metrics")]
    # what the role checked before applying is what the ConfigMap holds, and real promtool accepts it
    config_file = os.path.join(str(tmp_path), "prometheus.yml")
    with open(config_file, "w", encoding="utf-8") as handle:
        handle.write(text)
    checked_again = subprocess.run([lab_promtool(), "check", "config", "--syntax-only", config_file],
                                   capture_output=True, text=True, check=False)
    assert checked_again.returncode == 0, checked_again.stdout + checked_again.stderr
    assert config["global"] == {"scrape_interval": "15s", "scrape_timeout": "10s"}

    second = run_playbook(PLAY, extra_vars=params)
    assert second.returncode == 0 and second.recap["changed"] == 0, second.stdout

    gone = run_playbook(PLAY, extra_vars=dict(params, calico_monitoring_state="absent"))
    assert gone.returncode == 0, gone.stdout
    for read in (lambda: core.read_namespace(prom_ns), lambda: rbac.read_cluster_role(PROMETHEUS),
                 lambda: rbac.read_cluster_role_binding(PROMETHEUS)):
        with pytest.raises(ApiException) as missing:
            read()
        assert missing.value.status == 404
    assert services(kube_admin, namespace) == {}
    assert "prometheusMetricsEnabled" not in read_felix(kube_admin, felix).get("spec", {})


@pytest.mark.parametrize("extra, message", [
    ({"calico_monitoring_scrape_interval": "5s", "calico_monitoring_scrape_timeout": "10s"},
     "The Prometheus configuration is invalid (promtool check config): FAILED: parsing YAML file"),
    ({"calico_monitoring_scrape_interval": "5s", "calico_monitoring_scrape_timeout": "10s"},
     "global scrape timeout greater than scrape interval"),
    ({"calico_monitoring_extra_scrape_configs": [{"job_name": "felix", "static_configs": [{"targets": ["x:1"]}]}]},
     'found multiple scrape configs with job name "felix"'),
    ({"calico_monitoring_extra_scrape_configs": [{"job_name": "x", "relabel_configs": [{"action": "keeep"}]}]},
     'unknown relabel action "keeep"'),
    ({"calico_monitoring_promtool": "/nonexistent/promtool"}, "Cannot run calico_monitoring_promtool /nonexistent/promtool"),
    ({"calico_monitoring_prometheus_retention": "1 day"},
     "calico_monitoring_prometheus_retention 1 day is not a Prometheus duration (like 24h)"),
    ({"calico_monitoring_felix_api_version": "projectcalico.org/v1"}, "calico_monitoring_felix_api_version"),
])
def test_invalid_prometheus_config_fails_before_anything_is_applied(run_playbook, kube_admin, namespace, felix,
                                                                    extra, message):
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    prepare(run_playbook, namespace)
    apply_as(kube_admin, OTHER, felix, {"logSeverityScreen": "Info"})
    params = role_vars(felix, calico_monitoring_calico_namespace=namespace, calico_monitoring_prometheus=True,
                       calico_monitoring_prometheus_namespace=namespace + "-prom", **extra)
    done = run_playbook(PLAY, extra_vars=params)
    assert done.returncode != 0
    assert message in " ".join(done.stdout.split()), done.stdout
    assert read_felix(kube_admin, felix)["spec"] == {"logSeverityScreen": "Info"}
    assert services(kube_admin, namespace) == {}
    with pytest.raises(ApiException):
        client.CoreV1Api(kube_admin).read_namespace(namespace + "-prom")


def test_foreign_prometheus_namespace_survives_present_and_absent(
        run_playbook, kube_admin, namespace, felix, foreign_namespace):
    """A namespace of the Prometheus's name that someone else made: a default run (no Prometheus) used to
    delete it; now every run leaves it, its labels and its ConfigMap alone and says so."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    prepare(run_playbook, namespace)
    prom_ns = namespace + "-prom"
    check = foreign_namespace(prom_ns)
    params = role_vars(felix, calico_monitoring_calico_namespace=namespace, calico_monitoring_prometheus_namespace=prom_ns)
    apps, core = client.AppsV1Api(kube_admin), client.CoreV1Api(kube_admin)
    # the Service Calico's docs tell users to create by hand, under the name the role uses
    core.create_namespaced_service(namespace, {
        "metadata": {"name": "felix-metrics-svc", "labels": {"team": "theirs"}},
        "spec": {"selector": {"k8s-app": "calico-node"}, "ports": [{"port": 9091, "targetPort": 9091}]}})
    theirs = core.read_namespaced_service("felix-metrics-svc", namespace).metadata

    def check_service():
        now = core.read_namespaced_service("felix-metrics-svc", namespace).metadata
        assert (now.uid, now.labels, now.annotations) == (theirs.uid, theirs.labels, theirs.annotations)

    default = run_playbook(PLAY, extra_vars=params)
    assert default.returncode == 0, default.stdout
    check()
    check_service()
    assert services(kube_admin, namespace) == {"felix-metrics-svc": 9091, "kube-controllers-metrics-svc": 9094}
    assert "Namespace %s exists but was not created by %s" % (prom_ns, MANAGER) in " ".join(default.stdout.split())

    with_prometheus = run_playbook(PLAY, extra_vars=dict(params, calico_monitoring_prometheus=True))
    assert with_prometheus.returncode == 0, with_prometheus.stdout
    check()  # no Pod Security labels forced onto it
    assert apps.read_namespaced_deployment(PROMETHEUS, prom_ns).metadata.annotations[
        "netmend.io/owned-by"] == MANAGER

    gone = run_playbook(PLAY, extra_vars=dict(params, calico_monitoring_prometheus=True, calico_monitoring_state="absent"))
    assert gone.returncode == 0, gone.stdout
    check()
    for read in (lambda: apps.read_namespaced_deployment(PROMETHEUS, prom_ns),
                 lambda: client.CoreV1Api(kube_admin).read_namespaced_config_map(PROMETHEUS, prom_ns),
                 lambda: client.RbacAuthorizationV1Api(kube_admin).read_cluster_role(PROMETHEUS)):
        with pytest.raises(ApiException) as missing:
            read()
        assert missing.value.status == 404
    again = run_playbook(PLAY, extra_vars=dict(params, calico_monitoring_state="absent"))
    assert again.returncode == 0 and again.recap["changed"] == 0, again.stdout
    check()
    check_service()
    assert services(kube_admin, namespace) == {"felix-metrics-svc": 9091}


@pytest.mark.parametrize("fixture, job", [
    # the Prometheus Helm chart's annotation discovery: keep/drop rules with `regex: true`
    ("helm-chart-scrape-configs.yml", "kubernetes-service-endpoints"),
    # Prometheus's documented examples: relabel_configs with every item commented out (null)
    ("commented-relabel-scrape-configs.yml", "node"),
    # blackbox-exporter's documented config: URL targets relabelled into the target parameter
    ("blackbox-scrape-configs.yml", "blackbox"),
])
def test_real_scrape_configs_pass_promtool_and_are_applied(run_playbook, kube_admin, namespace, felix, fixture, job):
    """The hand-written checker this role had refused each of these; promtool accepts them."""
    from kubernetes import client

    with open(os.path.join(PROM_FIXTURES, fixture), encoding="utf-8") as handle:
        extra = yaml.safe_load(handle)
    prepare(run_playbook, namespace)
    prom_ns = namespace + "-prom"
    params = role_vars(felix, calico_monitoring_calico_namespace=namespace, calico_monitoring_prometheus=True,
                       calico_monitoring_prometheus_namespace=prom_ns, calico_monitoring_prometheus_wait=False,
                       calico_monitoring_extra_scrape_configs=extra)
    try:
        done = run_playbook(PLAY, extra_vars=params)
        assert done.returncode == 0, done.stdout
        text = client.CoreV1Api(kube_admin).read_namespaced_config_map(PROMETHEUS, prom_ns).data["prometheus.yml"]
        jobs = {item["job_name"]: item for item in yaml.safe_load(text)["scrape_configs"]}
        assert jobs[job] == extra[0]
    finally:
        gone = run_playbook(PLAY, extra_vars=dict(params, calico_monitoring_state="absent"))
        assert gone.returncode == 0, gone.stdout


def test_typha_without_metrics_gets_no_service(run_playbook, kube_admin, namespace, felix):
    prepare(run_playbook, namespace, kube_admin, typha=True, typha_metrics=False)
    params = role_vars(felix, calico_monitoring_calico_namespace=namespace)
    done = run_playbook(PLAY, extra_vars=params)
    assert done.returncode == 0, done.stdout
    assert "Typha: yes, metrics off (no Service: set TYPHA_PROMETHEUSMETRICSENABLED=true" in " ".join(done.stdout.split())
    assert services(kube_admin, namespace) == {"felix-metrics-svc": 9091, "kube-controllers-metrics-svc": 9094}
    gone = run_playbook(PLAY, extra_vars=dict(params, calico_monitoring_state="absent"))
    assert gone.returncode == 0, gone.stdout
