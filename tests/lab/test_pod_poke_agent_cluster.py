# Copyright: netmend.k8s contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The pod_poke agent against the lab API server, with its own service-account token.

The agent process runs inside a network namespace that has only a loopback
device: the lab's pod addresses are simulated (KWOK) and belong to nobody, so
its echo requests must go nowhere (they fail at once with "network is
unreachable", which the test checks). The namespace reaches the API server
through a forwarder that listens on the namespace's 127.0.0.1 and connects to
the real one.
"""
from __future__ import annotations

import ctypes
import os
import queue
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid

import pytest
import yaml

from ansible_collections.netmend.k8s.plugins.module_utils.kube_lite import KubeClient, KubeError, pods_path

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COLLECTIONS = os.path.join(REPO, ".build", "collections")
AGENT = "ansible_collections.netmend.k8s.plugins.module_utils.agent"
CLONE_NEWNET = 0x40000000

pytestmark = [pytest.mark.cluster, pytest.mark.netlab]


def rbac_rules():
    with open(os.path.join(REPO, "roles", "pod_poke", "vars", "main.yml"), encoding="utf-8") as handle:
        return yaml.safe_load(handle)["__pod_poke_rbac_rules"]


def in_netns(netns, function):
    """Run ``function()`` in a thread that has joined ``netns``; sockets it opens stay there."""
    outcome = {}

    def body():
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open("/run/netns/%s" % netns, os.O_RDONLY)
        try:
            if libc.setns(fd, CLONE_NEWNET) != 0:
                outcome["error"] = OSError(ctypes.get_errno(), "setns")
                return
        finally:
            os.close(fd)
        try:
            outcome["value"] = function()
        except Exception as exc:  # handed to the caller's thread
            outcome["error"] = exc

    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def pump(source, sink):
    try:
        while True:
            data = source.recv(65536)
            if not data:
                break
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (source, sink):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def forward_api(netns, api_port):
    """Listen on 127.0.0.1:<api_port> inside ``netns``; connect each client to the real API server."""
    def listen():
        server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", api_port))
        server.listen(64)
        return server

    server = in_netns(netns, listen)

    def accept():
        while True:
            try:
                inside, _address = server.accept()
            except OSError:
                return
            outside = socket.create_connection(("127.0.0.1", api_port))
            threading.Thread(target=pump, args=(inside, outside), daemon=True).start()
            threading.Thread(target=pump, args=(outside, inside), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return server


@pytest.fixture
def poker_account(kube_admin, kube_server, sa_token, namespace):
    """ServiceAccount bound to exactly the role's rules; yields (KubeClient, token, host, ca_file)."""
    from kubernetes import client

    rbac = client.RbacAuthorizationV1Api(kube_admin)
    name = "netmend-test-pod-poke-%s" % uuid.uuid4().hex[:6]
    token = sa_token(namespace, "poker")
    host, ca_file = kube_server
    rbac.create_cluster_role({"metadata": {"name": name}, "rules": rbac_rules()})
    rbac.create_cluster_role_binding({
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": "poker", "namespace": namespace}],
    })
    try:
        yield KubeClient(host, token=token, ca_file=ca_file), token, host, ca_file
    finally:
        rbac.delete_cluster_role_binding(name)
        rbac.delete_cluster_role(name)


def make_pod(kube_admin, namespace, name, labels):
    from kubernetes import client

    client.CoreV1Api(kube_admin).create_namespaced_pod(namespace, {
        "metadata": {"name": name, "labels": labels},
        "spec": {"tolerations": [{"operator": "Exists"}],
                 "containers": [{"name": "c", "image": "python:3.13-slim"}]},
    })


def test_rbac_is_exactly_list_and_watch_pods(kube_admin, namespace, poker_account):
    kube, _token, _host, _ca = poker_account
    make_pod(kube_admin, namespace, "target", {"app": "poke-target"})
    listed = kube.list(pods_path())
    assert any(item["metadata"]["name"] == "target" for item in listed["items"])
    assert kube.list(pods_path(namespace))["items"]
    events = list(kube.watch(pods_path(namespace), listed["metadata"]["resourceVersion"], timeout_seconds=1))
    assert isinstance(events, list)
    refused = [
        ("GET", "/api/v1/namespaces/%s/pods/target" % namespace, None),
        ("GET", "/api/v1/namespaces/%s/secrets" % namespace, None),
        ("GET", "/api/v1/secrets", None),
        ("DELETE", "/api/v1/namespaces/%s/pods/target" % namespace, None),
        ("POST", "/api/v1/namespaces/%s/pods/target/eviction" % namespace,
         {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "target", "namespace": namespace}}),
        ("GET", "/api/v1/nodes", None),
        ("GET", "/api/v1/namespaces/%s/pods/target/log" % namespace, None),
    ]
    for method, path, body in refused:
        with pytest.raises(KubeError) as caught:
            kube.request(method, path, body=body)
        assert caught.value.status == 403, (method, path, caught.value)


def wait_line(lines, pattern, timeout=60):
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            break
        seen.append(line)
        found = re.search(pattern, line)
        if found:
            return found
    raise AssertionError("no line matching %r in %d s; saw:\n%s" % (pattern, timeout, "".join(seen[-20:])))


def test_agent_follows_pods_by_watch_with_its_own_token(kube_admin, namespace, poker_account, netlab):
    from kubernetes import client

    _kube, token, host, ca_file = poker_account
    api_port = int(host.rsplit(":", 1)[1])
    box = netlab.add_node("agent")  # a namespace with only loopback: the pings go nowhere
    forwarder = forward_api(box.netns, api_port)
    make_pod(kube_admin, namespace, "before-0", {"app": "poke-target"})
    make_pod(kube_admin, namespace, "other", {"app": "something-else"})
    env = dict(os.environ, PYTHONPATH=COLLECTIONS, NETMEND_KUBE_HOST="https://127.0.0.1:%d" % api_port,
               NETMEND_KUBE_TOKEN=token, NETMEND_KUBE_CA_FILE=ca_file, NODE_NAME="kwok-node-0")
    proc = box.popen([sys.executable, "-m", AGENT, "pod_poke", "--namespaces", namespace,
                      "--label-selector", "app=poke-target", "--interval", "0.5", "--jitter", "0",
                      "--timeout", "0.2", "--metrics-address", "127.0.0.1", "--metrics-port", "0",
                      "--max-iterations", "400"],
                     env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    try:
        port = int(wait_line(lines, r"serving metrics port=(\d+)").group(1))
        wait_line(lines, r"pod_poke sweep .*targets=1 ")
        for index in range(3):
            make_pod(kube_admin, namespace, "after-%d" % index, {"app": "poke-target"})
        found = wait_line(lines, r'pod_poke unreachable .*pod="%s/after-2" reason="([^"]+)"' % namespace)
        assert found.group(1) == "send failed: Network is unreachable"
        wait_line(lines, r"pod_poke sweep .*targets=4 ")
        core = client.CoreV1Api(kube_admin)
        core.delete_namespaced_pod("before-0", namespace, grace_period_seconds=0)
        core.delete_namespaced_pod("after-0", namespace, grace_period_seconds=0)
        wait_line(lines, r"pod_poke sweep .*targets=2 ")
        core.patch_namespaced_pod("after-1", namespace, {"metadata": {"labels": {"app": "something-else"}}})
        wait_line(lines, r"pod_poke sweep .*targets=1 ")

        def scrape():
            with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5) as response:
                return response.read().decode()
        metrics = in_netns(box.netns, scrape)
        sweeps = int(re.search(r'^netmend_pod_poke_sweeps_total\{node="kwok-node-0"\} (\d+)$', metrics, re.M).group(1))
        lists = int(re.search(r'verb="list"\} (\d+)$', metrics, re.M).group(1))
        watches = int(re.search(r'verb="watch"\} (\d+)$', metrics, re.M).group(1))
        assert sweeps >= 4  # one per target count waited for: 1, 4, 2, 1
        assert lists == 1, metrics  # one list at start; every change since came by watch
        assert watches == 1, metrics
        assert 'netmend_pod_poke_unreachable{node="kwok-node-0"} 1' in metrics
    finally:
        netlab.kill(proc)
        forwarder.close()
