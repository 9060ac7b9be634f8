"""The masq_rule agent as a real pod on the lab's real nodes, in both of its modes.

A "VPN" host sits on the lab underlay beside the nodes. A pod on a real node sends UDP
to it: without the agent the VPN host sees the pod's address, with it the node's. The
agent changes the node's nat table (the node's network namespace, never the
machine's), repairs a deleted jump within its interval, and `absent` leaves the node's
table as it was.
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys

import pytest
from real_pods import LAB_IMAGE, LAB_IPTABLES_IMAGE, agent_pods, wait_for, wait_value  # sibling helper module

pytestmark = [pytest.mark.cluster, pytest.mark.netlab]

AGENT_NAMESPACE = "netmend-real-masq"
DAEMONSET = "netmend-masq-rule"
CHAIN = "NETMEND-MASQ"
INTERVAL = 2
UDP_PORT = 9999
LISTENER = """
import socket, sys
server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
server.bind(("0.0.0.0", %d))
print("ready", "-", flush=True)
while True:
    data, peer = server.recvfrom(512)
    print(data.decode(), peer[0], flush=True)
""" % UDP_PORT


class VpnHost:
    """A network namespace on the real nodes' underlay that records UDP senders."""

    def __init__(self, topo, nodes):
        self.topo = topo
        self.netns = topo.netns("vpn")
        self.ip = topo.host_ip(0)
        # An earlier test's VPN host had this address and another MAC: the nodes must not keep sending to it.
        for node in nodes:
            subprocess.run(["ip", "-n", topo.netns(node), "neigh", "flush", "to", self.ip], check=True)
        subprocess.run(["ip", "netns", "add", self.netns], check=True)
        subprocess.run(["ip", "-n", topo.switch_ns, "link", "add", "vpn0", "type", "veth", "peer", "name", "eth0",
                        "netns", self.netns], check=True)
        subprocess.run(["ip", "-n", topo.switch_ns, "link", "set", "vpn0", "master", "br0", "up"], check=True)
        subprocess.run(["ip", "-n", self.netns, "-batch", "-"], check=True, text=True, input="\n".join([
            "link set lo up", "addr add %s/%d dev eth0" % (self.ip, topo.underlay.prefixlen), "link set eth0 up", ""]))
        self.listener = subprocess.Popen(["ip", "netns", "exec", self.netns, sys.executable, "-c", LISTENER],
                                         stdout=subprocess.PIPE, text=True)
        assert self.listener.stdout.readline().split() == ["ready", "-"]
        os.set_blocking(self.listener.stdout.fileno(), False)
        self.seen = []

    def senders(self, tag):
        while True:
            line = self.listener.stdout.readline()
            if not line:
                break
            self.seen.append(line.split())
        return {peer for data, peer in self.seen if data == tag}

    def close(self):
        self.listener.kill()
        self.listener.wait()
        subprocess.run(["ip", "netns", "del", self.netns], check=True)


@pytest.fixture
def vpn_host(real_topology, real_nodes):
    host = VpnHost(real_topology, real_nodes)
    yield host
    host.close()


def nat_table(topo, node):
    """The node's nat table as iptables-save prints it, counters and comments left out."""
    out = subprocess.run(["ip", "netns", "exec", topo.netns(node), "iptables-save", "-t", "nat"],
                         capture_output=True, text=True, check=True).stdout
    return [re.sub(r"\[\d+:\d+\]", "", line) for line in out.splitlines() if not line.startswith("#")]


def send_and_see(pod_exec, vpn_host, namespace, pod, tag):
    # A few datagrams: the first may wait for ARP on the underlay.
    code = ("import socket, time\nsock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            "for _ in range(3):\n    sock.sendto(b%r, (%r, %d))\n    time.sleep(0.3)\n") % (tag, vpn_host.ip, UDP_PORT)
    output, rc = pod_exec(namespace, pod, ["python3", "-c", code])
    assert rc == 0, output
    return wait_for(lambda: vpn_host.senders(tag), "the VPN host to receive %s" % tag, timeout=10)


@pytest.mark.parametrize(("mode", "image"), [("nsenter", LAB_IMAGE), ("capabilities", LAB_IPTABLES_IMAGE)])
def test_masq_rule_agent_on_real_nodes(mode, image, run_playbook, kube_admin, namespace, real_pod, pod_exec,
                                       vpn_host, real_nodes, real_topology):
    from kubernetes import client

    node = real_nodes[0]
    node_ip = real_topology.node_ip(0)
    sender = real_pod(namespace, "sender", node, ["sleep", "3600"])
    machine_before = subprocess.run(["iptables-save", "-t", "nat"], capture_output=True, text=True, check=True).stdout
    before = nat_table(real_topology, node)
    assert send_and_see(pod_exec, vpn_host, namespace, "sender", "plain") == {sender.status.pod_ip}

    play_vars = {
        "masq_rule_cidrs": ["%s/32" % vpn_host.ip],
        "masq_rule_agent_mode": mode,
        "masq_rule_agent_image": image,
        "masq_rule_agent_namespace": AGENT_NAMESPACE,
        "masq_rule_agent_interval": INTERVAL,
    }
    try:
        done = run_playbook({"role": "netmend.k8s.masq_rule"}, extra_vars=play_vars)
        assert done.returncode == 0, done.stdout
        pods = agent_pods(client.CoreV1Api(kube_admin), real_nodes, AGENT_NAMESPACE, DAEMONSET)
        assert pods[node].spec.containers[0].image == image

        # The chain and its jump land in the node's nat table, not the machine's.
        table = wait_value(lambda: nat_table(real_topology, node),
                           lambda t: any(CHAIN in line and "POSTROUTING" in line for line in t),
                           "the agent's jump on %s" % node)
        assert ":%s - " % CHAIN in table
        assert any(("-d %s/32" % vpn_host.ip) in line and "MASQUERADE" in line for line in table), table
        machine_now = subprocess.run(["iptables-save", "-t", "nat"], capture_output=True, text=True, check=True).stdout
        assert CHAIN not in machine_now and machine_now.count("\n") == machine_before.count("\n")

        # The VPN host now sees the node's address.
        assert send_and_see(pod_exec, vpn_host, namespace, "sender", "masq-%s" % mode) == {node_ip}

        # A deleted jump comes back within the agent's interval.
        jump = [line for line in table if line.startswith("-A POSTROUTING") and CHAIN in line][0]
        subprocess.run(["ip", "netns", "exec", real_topology.netns(node), "iptables", "-t", "nat", "-D",
                        *shlex.split(jump)[1:]], check=True)
        assert not any(CHAIN in line and "POSTROUTING" in line and line.startswith("-A")
                       for line in nat_table(real_topology, node))
        wait_for(lambda: any(line == jump for line in nat_table(real_topology, node)),
                 "the agent to repair the jump", timeout=INTERVAL * 5, interval=0.2)
    finally:
        gone = run_playbook({"role": "netmend.k8s.masq_rule"}, extra_vars=dict(play_vars, masq_rule_state="absent"))
    assert gone.returncode == 0, gone.stdout
    # absent: the node's nat table is exactly as it was before the agent came.
    wait_for(lambda: nat_table(real_topology, node) == before, "the node's nat table to be as it was", timeout=30)
    assert send_and_see(pod_exec, vpn_host, namespace, "sender", "after-%s" % mode) == {sender.status.pod_ip}
