# Copyright: netmend.k8s contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The pod_poke agent survives an API server it cannot reach, against the lab API server.

The agent runs in a network namespace with only loopback (its pings go nowhere) and
reaches the API server through a forwarder on that namespace's 127.0.0.1 which the
test opens and closes: closed, connections are refused as from an API server that is
restarting; closing it also cuts the agent's open watch mid-stream. The agent must
keep running, retry with a growing backoff, report itself not ready meanwhile (the
same probe the DaemonSet runs), and pick up where it left off once the API answers.
"""
from __future__ import annotations

import os
import queue
import socket
import subprocess
import sys
import threading

import pytest

# sibling test module (tests/lab is on sys.path)
from test_pod_poke_agent_cluster import in_netns, make_pod, pump, rbac_rules, wait_line

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COLLECTIONS = os.path.join(REPO, ".build", "collections")
AGENT = "ansible_collections.netmend.k8s.plugins.module_utils.agent"

pytestmark = [pytest.mark.cluster, pytest.mark.netlab]


@pytest.fixture
def poker_token(kube_admin, sa_token, namespace):
    """A token of a ServiceAccount bound to exactly the pod_poke role's rules."""
    from kubernetes import client

    rbac = client.RbacAuthorizationV1Api(kube_admin)
    name = "netmend-test-outage-%s" % namespace
    rbac.create_cluster_role({"metadata": {"name": name}, "rules": rbac_rules()})
    rbac.create_cluster_role_binding({
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": "poker", "namespace": namespace}],
    })
    try:
        yield sa_token(namespace, "poker")
    finally:
        rbac.delete_cluster_role_binding(name)
        rbac.delete_cluster_role(name)


class Forwarder:
    """127.0.0.1:<port> inside a namespace -> the API server on the machine's loopback, switchable."""

    def __init__(self, netns, port):
        self.netns = netns
        self.port = port
        self.server = None
        self.connections = []
        self.lock = threading.Lock()

    def open(self):
        def listen():
            server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            server.bind(("127.0.0.1", self.port))
            server.listen(64)
            return server
        self.server = in_netns(self.netns, listen)
        threading.Thread(target=self._accept, args=(self.server,), daemon=True).start()

    def _accept(self, server):
        while True:
            try:
                inside, _address = server.accept()
            except OSError:
                return
            outside = socket.create_connection(("127.0.0.1", self.port))
            with self.lock:
                self.connections += [inside, outside]
            threading.Thread(target=pump, args=(inside, outside), daemon=True).start()
            threading.Thread(target=pump, args=(outside, inside), daemon=True).start()

    def close(self):
        """Refuse new connections and cut every open one (the watch included)."""
        # shutdown first: a plain close leaves the socket listening while accept() blocks on it.
        try:
            self.server.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.server.close()
        with self.lock:
            connections, self.connections = self.connections, []
        for sock in connections:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()


def probe(env):
    """The DaemonSet's readiness probe, run as the kubelet runs it: exit code and output."""
    done = subprocess.run([sys.executable, "-m", AGENT, "ready"], env=env, capture_output=True, text=True,
                          timeout=30, check=False)
    return done.returncode, done.stdout.strip()


def test_agent_waits_out_an_unreachable_api_and_resumes_its_watch(kube_admin, kube_server, namespace, poker_token,
                                                                  netlab, tmp_path):
    from kubernetes import client

    token = poker_token
    host, ca_file = kube_server
    api_port = int(host.rsplit(":", 1)[1])
    box = netlab.add_node("agent")
    forwarder = Forwarder(box.netns, api_port)  # closed: the API server "is down" when the agent starts
    make_pod(kube_admin, namespace, "before", {"app": "poke-target"})
    env = dict(os.environ, PYTHONPATH=COLLECTIONS, NETMEND_KUBE_HOST="https://127.0.0.1:%d" % api_port,
               NETMEND_KUBE_TOKEN=token, NETMEND_KUBE_CA_FILE=ca_file, NODE_NAME="kwok-node-0",
               NETMEND_HEARTBEAT=str(tmp_path / "heartbeat"))
    proc = box.popen([sys.executable, "-m", AGENT, "pod_poke", "--namespaces", namespace,
                      "--label-selector", "app=poke-target", "--interval", "0.5", "--jitter", "0",
                      "--timeout", "0.2", "--metrics-port", "-1", "--watch-timeout", "60"],
                     env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines, everything = queue.Queue(), []
    threading.Thread(target=lambda: [(lines.put(line), everything.append(line)) for line in proc.stdout],
                     daemon=True).start()
    try:
        # Refused: retried with a growing, capped, jittered delay, one line per try, never an exit.
        delays = []
        for attempt in (1, 2, 3, 4):
            found = wait_line(lines, r"pod_poke cannot list pods, retrying .*attempt=%d .*retry_s=([0-9.]+)" % attempt,
                              timeout=40)
            assert "Connection refused" in found.string
            delays.append(float(found.group(1)))
        assert 0.7 <= delays[0] <= 1.0 and 1.4 <= delays[1] <= 2.0 and 2.8 <= delays[2] <= 4.0 \
            and 5.6 <= delays[3] <= 8.0, delays
        assert proc.poll() is None, "the agent exited instead of waiting for the API server"
        code, said = probe(env)
        assert code == 1 and said.startswith("not ready: no successful iteration yet"), said

        forwarder.open()  # the API server is back
        wait_line(lines, r"pod_poke API server answers again failed_attempts=[45]", timeout=20)
        wait_line(lines, r"pod_poke sweep .*targets=1 ", timeout=20)
        code, said = probe(env)
        assert code == 0, said

        # A restart while the agent watches: the stream is cut, new connections refused.
        forwarder.close()
        wait_line(lines, r"pod_poke watch failed, retrying .*attempt=1 ", timeout=20)
        make_pod(kube_admin, namespace, "during", {"app": "poke-target"})  # happens while the agent is cut off
        wait_line(lines, r"pod_poke watch failed, retrying .*attempt=2 .*Connection refused", timeout=20)
        assert proc.poll() is None
        forwarder.open()
        wait_line(lines, r"pod_poke API server answers again failed_attempts=", timeout=30)
        # Resumed from its resourceVersion: the pod created meanwhile arrives by the watch, no exit, no crash.
        wait_line(lines, r"pod_poke sweep .*targets=2 ", timeout=20)
        client.CoreV1Api(kube_admin).delete_namespaced_pod("before", namespace, grace_period_seconds=0)
        wait_line(lines, r"pod_poke sweep .*targets=1 ", timeout=20)
        assert probe(env)[0] == 0
        assert proc.poll() is None
        assert not [line for line in everything if "Traceback" in line], "".join(everything)
        # One list in all: the outage was bridged by resuming the watch, not by listing again.
        assert not [line for line in everything if "watch expired, listing again" in line], "".join(everything)
    finally:
        netlab.kill(proc)
        if forwarder.server:
            forwarder.close()
