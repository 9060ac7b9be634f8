"""Make the collection importable as ansible_collections.netmend.k8s in every test.

`make collection` links the repository into .build/collections; when that link is
missing (a bare `pytest` run) it is created here, so imports never depend on
where the checkout lives.
"""
from __future__ import annotations

import os
import sys
import sysconfig
import uuid

import pytest

from plays import ansible_playbook  # tests/plays.py (tests is on sys.path)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLLECTIONS = os.path.join(REPO, ".build", "collections")
LINK = os.path.join(COLLECTIONS, "ansible_collections", "netmend", "k8s")

if not os.path.exists(LINK):
    os.makedirs(os.path.dirname(LINK), exist_ok=True)
    os.symlink(REPO, LINK)
if COLLECTIONS not in sys.path:
    sys.path.insert(0, COLLECTIONS)
if REPO not in sys.path:
    sys.path.insert(0, REPO)  # for `import lab.netlab`


# --- CNI config fixtures (tests/unit/fixtures/cni) ---------------------------------------
# Shapes install-cni, the operator and GKE write. CRLF and BOM files are made from stored LF/plain
# ones at test time: ansible-test sanity refuses both in a collection's files, with reason.
CNI_FIXTURES = os.path.join(REPO, "tests", "unit", "fixtures", "cni")
CNI_DERIVED = {
    # an editor on Windows: every line ends in CRLF, some carry trailing blanks
    "install-cni-crlf.conflist": ("install-cni-trailing-blanks.conflist", lambda data: data.replace(b"\n", b"\r\n")),
    # a UTF-8 byte order mark before the JSON (Go's decoder rejects it; we keep it and warn)
    "install-cni-bom.conflist": ("install-cni-mtu1500.conflist", lambda data: b"\xef\xbb\xbf" + data),
}


def cni_fixture_bytes(name):
    """The bytes of CNI config fixture ``name``, derived ones (CRLF, BOM) included."""
    stored, derive = CNI_DERIVED.get(name, (name, lambda data: data))
    with open(os.path.join(CNI_FIXTURES, stored), "rb") as handle:
        return derive(handle.read())


@pytest.fixture
def cni_fixture():
    """cni_fixture(name) -> the bytes of a CNI config fixture (see CNI_DERIVED)."""
    return cni_fixture_bytes


# --- the lab cluster ------------------------------------------------------------------
# Fixtures for tests marked `cluster`: the admin kubeconfig of lab/cluster.py, API
# clients, and service-account tokens so an agent can run with exactly its own RBAC.
LAB_KUBECONFIG = os.environ.get(
    "NETMEND_LAB_KUBECONFIG", os.path.expanduser("~/.cache/netmend-lab/kubeconfig"))
VENV_BIN = os.path.dirname(sys.executable)  # the virtualenv running the tests, whichever Python made it


@pytest.fixture(scope="session")
def kubeconfig():
    """Path of the lab cluster's admin kubeconfig; fails (never skips) when the lab is down."""
    from kubernetes import client, config

    if not os.path.exists(LAB_KUBECONFIG):
        pytest.fail("the lab cluster is not up (no %s): run `lab/cluster.sh up`" % LAB_KUBECONFIG)
    configuration = client.Configuration()
    config.load_kube_config(config_file=LAB_KUBECONFIG, client_configuration=configuration)
    try:
        client.VersionApi(client.ApiClient(configuration)).get_code(_request_timeout=5)
    except Exception as exc:  # the message says what is wrong
        pytest.fail("the lab cluster does not answer (%s): run `lab/cluster.sh up`" % exc)
    return LAB_KUBECONFIG


@pytest.fixture(scope="session")
def kube_admin(kubeconfig):
    """An admin ApiClient for the lab cluster."""
    from kubernetes import client, config

    configuration = client.Configuration()
    config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    return client.ApiClient(configuration)


@pytest.fixture(scope="session")
def kube_server(kube_admin):
    """(host, ca_file) of the lab API server."""
    configuration = kube_admin.configuration
    return configuration.host, configuration.ssl_ca_cert


def _fresh_namespace(kube_admin):
    from kubernetes import client

    name = "t-" + uuid.uuid4().hex[:8]
    core = client.CoreV1Api(kube_admin)
    core.create_namespace({"metadata": {"name": name}})
    yield name
    core.delete_namespace(name)


@pytest.fixture
def namespace(kube_admin):
    """A fresh namespace, deleted after the test."""
    yield from _fresh_namespace(kube_admin)


@pytest.fixture(scope="module")
def module_namespace(kube_admin):
    """A namespace shared by the tests of one module, deleted after them."""
    yield from _fresh_namespace(kube_admin)


@pytest.fixture
def sa_token(kube_admin):
    """sa_token(namespace, name) -> a bearer token of that ServiceAccount (created if missing)."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    core = client.CoreV1Api(kube_admin)

    def make(namespace, name, seconds=3600):
        try:
            core.create_namespaced_service_account(namespace, {"metadata": {"name": name}})
        except ApiException as exc:
            if exc.status != 409:
                raise
        request = {"spec": {"expirationSeconds": seconds}}
        return core.create_namespaced_service_account_token(name, namespace, request).status.token

    return make


@pytest.fixture
def agent_env(kube_server, sa_token, tmp_path):
    """agent_env(namespace, sa) -> environment for kube_lite.KubeClient.from_environment()."""

    def make(namespace, name):
        host, ca_file = kube_server
        token_file = tmp_path / ("token-%s-%s" % (namespace, name))
        token_file.write_text(sa_token(namespace, name))
        env = dict(os.environ)
        env.update({
            "NETMEND_KUBE_HOST": host,
            "NETMEND_KUBE_TOKEN_FILE": str(token_file),
            "NETMEND_KUBE_CA_FILE": ca_file or "",
            "PYTHONPATH": COLLECTIONS,
        })
        return env

    return make


@pytest.fixture(scope="session")
def ansible_env(kubeconfig):
    """Environment for running ansible-playbook against the lab cluster."""
    env = dict(os.environ)
    env.update({
        "ANSIBLE_COLLECTIONS_PATH": "%s:%s" % (
            COLLECTIONS, sysconfig.get_paths()["purelib"]),
        "K8S_AUTH_KUBECONFIG": kubeconfig,
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.default",
        "ANSIBLE_CALLBACK_RESULT_FORMAT": "yaml",
        "ANSIBLE_LOCALHOST_WARNING": "0",
        "ANSIBLE_INVENTORY_UNPARSED_WARNING": "0",
        "PATH": VENV_BIN + os.pathsep + env.get("PATH", ""),
    })
    return env


@pytest.fixture
def run_playbook(ansible_env, tmp_path):
    """run_playbook(playbook, extra_vars=None, check=False, diff=False, extra_args=(), inventory="localhost,", env=None)
    -> CompletedProcess with ``recap``; see plays.ansible_playbook. ``env`` adds to the Ansible environment."""

    def run(playbook, extra_vars=None, check=False, diff=False, extra_args=(), inventory="localhost,", env=None):
        return ansible_playbook(dict(ansible_env, **(env or {})), tmp_path, playbook, extra_vars=extra_vars, check=check,
                                diff=diff, extra_args=extra_args, inventory=inventory)

    return run


@pytest.fixture
def foreign_namespace(kube_admin):
    """foreign_namespace(name) -> check(): a namespace someone else made, with a ConfigMap in it.

    ``check()`` asserts it still exists with exactly its own labels and annotations and its ConfigMap
    unchanged. The namespaces are deleted after the test.
    """
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    core = client.CoreV1Api(kube_admin)
    made = []

    def make(name):
        core.create_namespace({"metadata": {"name": name, "labels": {"team": "theirs"},
                                            "annotations": {"owner": "someone else"}}})
        made.append(name)
        core.create_namespaced_config_map(name, {"metadata": {"name": "precious"}, "data": {"keep": "me"}})
        before = core.read_namespace(name).metadata

        def check():
            after = core.read_namespace(name).metadata
            assert after.deletion_timestamp is None, "namespace %s is being deleted" % name
            assert after.uid == before.uid, "namespace %s was recreated" % name
            assert after.labels == before.labels, (name, after.labels)
            assert after.annotations == before.annotations, (name, after.annotations)
            assert core.read_namespaced_config_map("precious", name).data == {"keep": "me"}

        return check

    yield make
    for name in made:
        try:
            core.delete_namespace(name)
        except ApiException as exc:
            assert exc.status == 404
