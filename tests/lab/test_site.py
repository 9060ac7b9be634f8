# Copyright: netmend.k8s contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""playbooks/site.yml, the main job, against the lab API server: safe by default, and the user's own
Kubernetes configuration."""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest

pytestmark = pytest.mark.cluster

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SITE = os.path.join(REPO, "playbooks", "site.yml")
LAB_VARS = os.path.join(REPO, "playbooks", "vars", "lab.yml")
AUTH_VARIABLES = ("K8S_AUTH_KUBECONFIG", "KUBECONFIG", "NETMEND_LAB_KUBECONFIG", "K8S_AUTH_HOST", "K8S_AUTH_CONTEXT")


def snapshot(kube_admin):
    """Every object the fixes could write, by kind/namespace/name and resourceVersion."""
    from kubernetes import client

    core, apps = client.CoreV1Api(kube_admin), client.AppsV1Api(kube_admin)
    rbac, scheduling = client.RbacAuthorizationV1Api(kube_admin), client.SchedulingV1Api(kube_admin)
    listings = {
        "Namespace": core.list_namespace().items,
        "ConfigMap": core.list_config_map_for_all_namespaces().items,
        "DaemonSet": apps.list_daemon_set_for_all_namespaces().items,
        "Deployment": apps.list_deployment_for_all_namespaces().items,
        "ClusterRole": rbac.list_cluster_role().items,
        "PriorityClass": scheduling.list_priority_class().items,
    }
    going = {item.metadata.name for item in listings["Namespace"] if item.metadata.deletion_timestamp}
    return going, {(kind, item.metadata.namespace, item.metadata.name): item.metadata.resource_version
                   for kind, items in listings.items() for item in items}


def unchanged(before, after):
    """The objects that changed, leaving out namespaces an earlier test is still deleting."""
    going = before[0] | after[0]
    changed = {key for key in set(before[1]) | set(after[1]) if before[1].get(key) != after[1].get(key)}
    return sorted(key for key in changed
                  if key[1] not in going and not (key[0] == "Namespace" and key[2] in going))


def test_no_toggle_reports_and_changes_nothing(run_playbook, kube_admin):
    before = snapshot(kube_admin)
    done = run_playbook(SITE)
    assert done.returncode == 0, done.stdout
    assert done.recap["changed"] == 0, done.stdout
    text = " ".join(done.stdout.split())
    assert "present: no fix enabled; not enabled: calico, calico_mtu, masq_rule, pod_poke" in text, done.stdout
    assert "Nothing was changed. Each fix runs only when enabled" in text
    assert unchanged(before, snapshot(kube_admin)) == []


def test_lab_vars_enable_the_fixes(run_playbook):
    done = run_playbook(SITE, check=True, extra_args=("-e", "@" + LAB_VARS))
    assert done.returncode == 0, done.stdout
    assert "present: pod_poke" in " ".join(done.stdout.split()), done.stdout


def test_plain_kube_config_in_home_is_used(ansible_env, kubeconfig, tmp_path):
    """A user with only ~/.kube/config: no lab path, no K8S_AUTH_* variable."""
    home = tmp_path / "home"
    (home / ".kube").mkdir(parents=True)
    shutil.copy(kubeconfig, home / ".kube" / "config")
    env = {key: value for key, value in ansible_env.items() if key not in AUTH_VARIABLES}
    env.update({"HOME": str(home), "ANSIBLE_LOCAL_TEMP": str(tmp_path / "tmp"), "ANSIBLE_HOME": str(home / ".ansible")})
    done = subprocess.run([os.path.join(REPO, ".venv", "bin", "ansible-playbook"), "-i", "localhost,", SITE],
                          env=env, cwd=REPO, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "lab" not in done.stderr.lower(), done.stderr
    assert "nodes: " in done.stdout and "no fix enabled" in done.stdout, done.stdout
