"""Helpers shared by the real-node tests (tests/lab/test_real_*.py)."""
from __future__ import annotations

import time

import pytest

from plays import ansible_playbook  # tests/plays.py (tests is on sys.path)

LAB_IMAGE = "python:3.13-slim"  # lab/images.py: Debian's python3 under the agents' default name
LAB_IPTABLES_IMAGE = "netmend.lab/python-iptables:3.13"


def wait_for(predicate, what, timeout=90, interval=0.5):
    """Poll ``predicate`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    pytest.fail("timed out after %ss waiting for %s (last: %r)" % (timeout, what, last))


def wait_value(fetch, accept, what, timeout=90):
    """Poll ``fetch()`` until ``accept(value)`` holds for a truthy value; that value."""
    def check():
        value = fetch()
        return value if value and accept(value) else None
    return wait_for(check, what, timeout=timeout)


def agent_pods(core, real_nodes, namespace, name):
    """{node: pod} of a DaemonSet's pod on each real node, once each is Running and Ready."""

    def ready():
        pods = {}
        for pod in core.list_namespaced_pod(namespace, label_selector="app.kubernetes.io/name=%s" % name).items:
            if pod.spec.node_name in real_nodes and pod.status.phase == "Running" and any(
                    c.type == "Ready" and c.status == "True" for c in pod.status.conditions or []):
                pods[pod.spec.node_name] = pod
        return pods if set(pods) == set(real_nodes) else None

    return wait_for(ready, "a Ready %s pod on every real node" % name)


def existing(readers):
    """{kind: object} of the objects that exist now, from ``(kind, read)`` pairs (a 404 is absent)."""
    from kubernetes.client.rest import ApiException

    found = {}
    for kind, read in readers:
        try:
            found[kind] = read()
        except ApiException as exc:
            assert exc.status == 404
    return found


def run_role(ansible_env, folder, role, extra_vars):
    """ansible-playbook of one role with extra vars (for fixtures wider than one test,
    where the function-scoped run_playbook fixture cannot be used)."""
    return ansible_playbook(ansible_env, folder, {"role": role}, extra_vars=extra_vars)
