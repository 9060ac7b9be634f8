# Copyright: netmend.k8s contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The AWX job template, run by ansible-runner (AWX's engine) against the lab cluster.

Each job is laid out as AWX lays out a job's private data directory: the project
(examples/awx) under project/, the collection installed from the release tarball
under requirements_collections/, an inventory, the survey's answers in env/extravars
as the survey sends them (text), the Kubernetes credential's K8S_AUTH_* variables in
env/envvars, and --check in env/cmdline for a check job. ansible-runner runs as a
separate process with nothing of the checkout in its environment. The credential's
token belongs to a ServiceAccount bound only to docs/rbac/clusterrole.yml, so a job
that succeeds proves the ClusterRole is enough. Results are read from the job events
ansible-runner writes under artifacts/, and from the API server.
"""
from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import uuid

import pytest
import yaml

from awx_helpers import REPO, VENV_BIN, clean_env

pytestmark = pytest.mark.cluster

CLUSTERROLE = os.path.join(REPO, "docs", "rbac", "clusterrole.yml")
PROJECT = os.path.join(REPO, "examples", "awx")
NAMESPACE = "netmend-awx-test"
JOB_SA = "awx-job"
NO_RIGHTS_SA = "awx-no-rights"
BINDING = "netmend-awx-test-job"
AGENT_NAMESPACE = "netmend-system"
POD_POKE_DS = "netmend-pod-poke"
MASQ_DS = "netmend-masq-rule"
CONNECTIVITY_NAMESPACE = "netmend-connectivity"


def survey_answers(**answers):
    """Extra vars as the survey sends them: every question's default, then the answers, all text."""
    with open(os.path.join(PROJECT, "survey.json"), encoding="utf-8") as handle:
        spec = json.load(handle)["spec"]
    values = {question["variable"]: question["default"] for question in spec if question["default"] != ""}
    values.update(answers)
    assert all(isinstance(value, str) for value in values.values())
    return values


@pytest.fixture(scope="module")
def credentials(kube_admin, kube_server, tmp_path_factory):
    """{'job': env, 'none': env}: K8S_AUTH_* as AWX's Kubernetes credential injects them."""
    from kubernetes import client, utils
    from kubernetes.client.rest import ApiException

    core = client.CoreV1Api(kube_admin)
    rbac = client.RbacAuthorizationV1Api(kube_admin)
    with open(CLUSTERROLE, encoding="utf-8") as handle:
        role = yaml.safe_load(handle)
    try:
        rbac.delete_cluster_role(role["metadata"]["name"])
    except ApiException as exc:
        if exc.status != 404:
            raise
    utils.create_from_dict(kube_admin, role)
    core.create_namespace({"metadata": {"name": NAMESPACE}})
    for name in (JOB_SA, NO_RIGHTS_SA):
        core.create_namespaced_service_account(NAMESPACE, {"metadata": {"name": name}})
    rbac.create_cluster_role_binding({
        "metadata": {"name": BINDING},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role["metadata"]["name"]},
        "subjects": [{"kind": "ServiceAccount", "name": JOB_SA, "namespace": NAMESPACE}],
    })
    host, ca_file = kube_server
    folder = tmp_path_factory.mktemp("credential")
    ca_copy = folder / "ca.crt"
    shutil.copyfile(ca_file, ca_copy)

    def env(name):
        token = core.create_namespaced_service_account_token(
            name, NAMESPACE, {"spec": {"expirationSeconds": 3600}}).status.token
        return {"K8S_AUTH_HOST": host, "K8S_AUTH_API_KEY": token,
                "K8S_AUTH_SSL_CA_CERT": str(ca_copy), "K8S_AUTH_VERIFY_SSL": "True"}

    yield {"job": env(JOB_SA), "none": env(NO_RIGHTS_SA)}
    rbac.delete_cluster_role_binding(BINDING)
    core.delete_namespace(NAMESPACE)
    rbac.delete_cluster_role(role["metadata"]["name"])


class Job:
    """One finished ansible-runner job: status, rc and the job events from its artifacts."""

    def __init__(self, artifacts):
        with open(os.path.join(artifacts, "status"), encoding="utf-8") as handle:
            self.status = handle.read().strip()
        with open(os.path.join(artifacts, "rc"), encoding="utf-8") as handle:
            self.rc = int(handle.read().strip())
        self.events = []
        for path in glob.glob(os.path.join(artifacts, "job_events", "*.json")):
            with open(path, encoding="utf-8") as handle:
                self.events.append(json.load(handle))
        self.events.sort(key=lambda event: event["counter"])
        with open(os.path.join(artifacts, "stdout"), encoding="utf-8") as handle:
            self.stdout = handle.read()

    def stats(self):
        (stats,) = [event["event_data"] for event in self.events if event["event"] == "playbook_on_stats"]
        return {key: stats.get(key, {}).get("localhost", 0) for key in ("ok", "changed", "failures", "skipped")}

    def results(self, task):
        return [event["event_data"]["res"] for event in self.events
                if event["event"] == "runner_on_ok" and event["event_data"].get("task") == task]

    def failures(self):
        return [event["event_data"]["res"].get("msg", "") for event in self.events
                if event["event"] == "runner_on_failed" and not event["event_data"].get("ignore_errors")]


@pytest.fixture
def run_job(installed_collections, tmp_path):
    """run_job(credential_env, extravars, check=False) -> Job, in a fresh private data dir."""

    def run(credential_env, extravars, check=False):
        private = tmp_path / ("job-" + uuid.uuid4().hex[:6])
        shutil.copytree(PROJECT, private / "project")
        (private / "inventory").mkdir()
        (private / "inventory" / "hosts").write_text("localhost ansible_connection=local\n")
        (private / "env").mkdir()
        (private / "env" / "extravars").write_text(yaml.safe_dump(extravars))
        (private / "env" / "envvars").write_text(yaml.safe_dump(dict(
            credential_env,
            ANSIBLE_COLLECTIONS_PATH=str(installed_collections),
            # AWX's own callback settings: events come from ansible-runner's plugin.
            ANSIBLE_LOCALHOST_WARNING="False")))
        if check:
            (private / "env" / "cmdline").write_text("--check --diff")
        env = clean_env(private / "ansible-home", PATH=VENV_BIN + os.pathsep + os.environ["PATH"])
        done = subprocess.run([os.path.join(VENV_BIN, "ansible-runner"), "run", str(private),
                               "-p", "site.yml", "--ident", "job"],
                              capture_output=True, text=True, env=env, timeout=1200, check=False)
        artifacts = private / "artifacts" / "job"
        assert (artifacts / "status").exists(), done.stdout + done.stderr
        return Job(str(artifacts))

    return run


def daemonset_exists(kube_admin, name):
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    try:
        client.AppsV1Api(kube_admin).read_namespaced_daemon_set(name, AGENT_NAMESPACE)
        return True
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise


def namespace_exists(kube_admin, name):
    from kubernetes import client

    return name in [item.metadata.name for item in client.CoreV1Api(kube_admin).list_namespace().items]


def test_job_template_with_the_shipped_clusterrole(credentials, run_job, kube_admin):
    from kubernetes import client

    # KWOK runs no containers, so the connectivity check's verdicts are off: the survey's
    # "false" must reach the role as a boolean for the job to pass.
    answers = survey_answers(netmend_pod_poke="true", netmend_pod_poke_namespaces="default\nkube-system\n",
                             netmend_masq_rule="true", netmend_masq_rule_cidrs="10.11.0.0/24\n10.12.0.0/24\n",
                             netmend_connectivity_check="true", netmend_connectivity_check_verify="false")
    try:
        # A check job changes nothing in the cluster.
        check = run_job(credentials["job"], answers, check=True)
        assert check.status == "successful", check.stdout[-3000:]
        assert check.stats()["changed"] > 0
        assert not daemonset_exists(kube_admin, POD_POKE_DS)
        assert not daemonset_exists(kube_admin, MASQ_DS)
        assert not namespace_exists(kube_admin, CONNECTIVITY_NAMESPACE)

        job = run_job(credentials["job"], answers)
        assert job.status == "successful", job.stdout[-3000:]
        assert job.rc == 0
        assert job.stats()["failures"] == 0 and job.stats()["changed"] > 0
        (decided,) = job.results("Say which fixes run")
        assert all(fix in decided["msg"] for fix in ("masq_rule", "pod_poke", "connectivity_check"))
        # The survey's text became the roles' lists and reached the cluster.
        apps = client.AppsV1Api(kube_admin)
        masq_args = apps.read_namespaced_daemon_set(MASQ_DS, AGENT_NAMESPACE).spec.template.spec.containers[0].args
        assert "--cidr=10.11.0.0/24" in masq_args and "--cidr=10.12.0.0/24" in masq_args
        poke_args = " ".join(apps.read_namespaced_daemon_set(POD_POKE_DS, AGENT_NAMESPACE)
                             .spec.template.spec.containers[0].args)
        assert "default" in poke_args and "kube-system" in poke_args
        assert apps.list_namespaced_deployment(CONNECTIVITY_NAMESPACE).items

        again = run_job(credentials["job"], answers)
        assert again.status == "successful", again.stdout[-3000:]
        assert again.stats()["changed"] == 0, again.stdout[-3000:]
    finally:
        removed = run_job(credentials["job"], dict(answers, netmend_state="absent"))
    assert removed.status == "successful", removed.stdout[-3000:]
    assert not daemonset_exists(kube_admin, POD_POKE_DS)
    assert not daemonset_exists(kube_admin, MASQ_DS)
    assert not namespace_exists(kube_admin, CONNECTIVITY_NAMESPACE)


def test_a_token_without_rights_fails_with_a_clear_message(credentials, run_job):
    job = run_job(credentials["none"], survey_answers())
    assert job.status == "failed"
    assert job.rc != 0
    (message,) = job.failures()[-1:]
    assert "system:serviceaccount:%s:%s" % (NAMESPACE, NO_RIGHTS_SA) in message
    assert "forbidden" in message.lower()
    assert "docs/rbac/clusterrole.yml" in message


def test_a_bad_survey_answer_fails_before_any_change(credentials, run_job, kube_admin):
    job = run_job(credentials["job"], survey_answers(netmend_pod_poke="perhaps"))
    assert job.status == "failed"
    (message,) = job.failures()[-1:]
    assert "netmend_pod_poke" in message and "perhaps" in message
    assert not daemonset_exists(kube_admin, POD_POKE_DS)
