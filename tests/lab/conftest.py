"""Fixtures for the lab tests (root, network namespaces, the lab cluster).

Importable without a cluster and without root: nothing here runs at import time.
"""
from __future__ import annotations

import os
import subprocess

import pytest

from lab import netlab as _netlab
from real_pods import LAB_IMAGE, wait_for  # sibling helper module (tests/lab is on sys.path)

# ---------------------------------------------------------------------------
# Network lab (lab/netlab.py)
# ---------------------------------------------------------------------------


@pytest.fixture(scope="session", autouse=True)
def netlab_leftover_check():
    """Fail the session if any lab namespace or link this process created survived.

    Namespaces of earlier runs that died without cleaning up are reaped first;
    only this process's names (``nm<pid>-...``) are checked, so parallel runs
    don't see each other's live labs.
    """
    _netlab.reap_stale()
    yield
    left = _netlab.leftovers(_netlab.session_prefix())
    assert not left, f"the lab tests left network namespaces/links behind: {left}"


@pytest.fixture
def netlab():
    """A fresh :class:`lab.netlab.Netlab`; every namespace it made is deleted
    after the test, whether it passed or not."""
    with _netlab.Netlab() as lab:
        yield lab


# ---------------------------------------------------------------------------
# Lab cluster fixtures (added below by the lead)
# ---------------------------------------------------------------------------


# ---------------------------------------------------------------------------
# Real nodes (lab/realnodes.py): a real kubelet and containerd each
# ---------------------------------------------------------------------------

REAL_NODE_COUNT = int(os.environ.get("NETMEND_LAB_REAL_NODES", "2"))
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="session")
def real_nodes(kubeconfig):
    """Names of the lab's real nodes, Ready; brought up when they are not (never skipped).

    One fixture for the whole session: every real-pod test shares the same nodes.
    """
    from lab import realnodes

    if REAL_NODE_COUNT < 2:
        pytest.fail("the real-node tests need NETMEND_LAB_REAL_NODES >= 2 (is %d)" % REAL_NODE_COUNT)
    topo = realnodes.Topology()
    names = [topo.node_name(i) for i in range(REAL_NODE_COUNT)]
    if not all(realnodes.running(topo, name) for name in names):
        done = subprocess.run([os.path.join(REPO, "lab", "cluster.sh"), "up"], capture_output=True, text=True,
                              check=False, env=dict(os.environ, NETMEND_LAB_REAL_NODES=str(REAL_NODE_COUNT)))
        assert done.returncode == 0, done.stdout + done.stderr
    return names


@pytest.fixture(scope="session")
def real_topology(real_nodes):
    """The :class:`lab.realnodes.Topology` of the running real nodes."""
    from lab import realnodes

    return realnodes.Topology()


@pytest.fixture
def real_pod(kube_admin, real_nodes):
    """real_pod(namespace, name, node, command, **spec) -> the Running pod, on that real node.

    The pod tolerates the real-node taint, runs the lab image unless ``image`` is given,
    and is deleted after the test.
    """
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    core = client.CoreV1Api(kube_admin)
    made = []

    def make(namespace, name, node, command, image=LAB_IMAGE, wait=True, **spec):
        container = {"name": "main", "image": image, "imagePullPolicy": "Never", "command": command}
        container.update(spec.pop("container", {}))
        body = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "labels": spec.pop("labels", {"app": name})},
            "spec": {"nodeName": node, "terminationGracePeriodSeconds": 1,
                     "tolerations": [{"operator": "Exists"}], "containers": [container], **spec},
        }
        core.create_namespaced_pod(namespace, body)
        made.append((namespace, name))
        if not wait:
            return None

        def running():
            pod = core.read_namespaced_pod(name, namespace)
            return pod if pod.status.phase == "Running" and pod.status.pod_ip else None

        return wait_for(running, "pod %s/%s Running on %s" % (namespace, name, node))

    yield make
    for namespace, name in made:
        try:
            core.delete_namespaced_pod(name, namespace, grace_period_seconds=0)
        except ApiException as exc:
            if exc.status != 404:
                raise


@pytest.fixture
def pod_exec(kube_admin):
    """pod_exec(namespace, name, argv) -> (stdout+stderr, exit code), through the API server and kubelet."""
    from kubernetes import client
    from kubernetes.stream import stream

    core = client.CoreV1Api(kube_admin)

    def run(namespace, name, argv, timeout=30):
        ws = stream(core.connect_get_namespaced_pod_exec, name, namespace, command=argv,
                    stderr=True, stdout=True, stdin=False, tty=False, _preload_content=False)
        ws.run_forever(timeout=timeout)
        code = ws.returncode  # before read_all(), which drops the error channel that carries it
        output = ws.read_all()
        ws.close()
        return output, code

    return run
