# Copyright: netmend.k8s contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""masq_rule with real packets: a pod behind a GKE-like node, a VPN host behind the node.

Topology (all network namespaces of lab/netlab.py; the host's own iptables is never touched)::

    pod 10.4.0.5 --cali veth-- node --h-vpn-- vpn host   10.11.0.2 (node side 10.11.0.1)
                                   --h-peer-- peer host  10.12.0.2 (another 10.x range)
                                   --h-inet-- inet host  192.0.2.2 (outside 10/8)

The node's nat table is GKE-like: POSTROUTING jumps to KUBE-POSTROUTING and to
IP-MASQ, which RETURNs 10.0.0.0/8 and MASQUERADEs the rest, so pod traffic to the
VPN keeps the pod's address. The VPN host records the source of each ICMP echo.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time

import pytest

from ansible_collections.netmend.k8s.plugins.module_utils import masq

pytestmark = pytest.mark.netlab

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COLLECTIONS = os.path.join(REPO, ".build", "collections")
ANSIBLE = os.path.join(os.path.dirname(sys.executable), "ansible")
AGENT = "ansible_collections.netmend.k8s.plugins.module_utils.agent"
POD_IP = "10.4.0.5"
VPN = "10.11.0.0/24"
GKE_NAT = """*nat
:KUBE-POSTROUTING - [0:0]
:IP-MASQ - [0:0]
-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING
-A POSTROUTING -m comment --comment "ip-masq-agent: traffic to non-LOCAL destinations goes to IP-MASQ" -m addrtype ! --dst-type LOCAL -j IP-MASQ
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0
-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully
-A IP-MASQ -d 10.0.0.0/8 -m comment --comment "ip-masq-agent: local traffic is not subject to MASQUERADE" -j RETURN
-A IP-MASQ -m comment --comment "ip-masq-agent: outbound traffic is subject to MASQUERADE (must be last in chain)" -j MASQUERADE
COMMIT
"""


@pytest.fixture
def gke(netlab):
    """The topology above; returns a namespace-like object with node, pod, vpn, peer, inet."""
    node = netlab.add_node("node")
    pod = netlab.add_pod("node", "vpn-client", POD_IP)
    vpn = netlab.add_host("vpn", behind="node", subnet=VPN)
    peer = netlab.add_host("peer", behind="node", subnet="10.12.0.0/24")
    inet = netlab.add_host("inet", behind="node", subnet="192.0.2.0/24")
    node.run(["iptables-restore", "--noflush", "-w", "5"], input=GKE_NAT)
    lab = type("Gke", (), {})()
    lab.node, lab.pod, lab.vpn, lab.peer, lab.inet, lab.netlab = node, pod, vpn, peer, inet, netlab
    return lab


def source_seen(pod, host):
    """Send one echo from the pod to ``host``; the source address the host saw."""
    with host.icmp_capture() as capture:
        assert pod.reaches(host.ip), "no echo reply from %s" % host.ip
        sources = capture.sources(wait=2.0, count=1)
    assert sources, "%s saw no echo request" % host.name
    return sources[0]


def save(node):
    return "\n".join(line for family in ("iptables-save", "ip6tables-save")
                     for line in node.run([family]).stdout.splitlines() if not line.startswith("#"))


def run_module(node, args, check=False, diff=False, tmp_path=None):
    """``ansible localhost -m netmend.k8s.masq_rule`` inside the node's namespace; the JSON result."""
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS, ANSIBLE_STDOUT_CALLBACK="json",
               ANSIBLE_LOAD_CALLBACK_PLUGINS="1", ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_NOCOLOR="1",
               ANSIBLE_PYTHON_INTERPRETER=sys.executable, ANSIBLE_INVENTORY_UNPARSED_WARNING="0")
    argv = [ANSIBLE, "localhost", "-c", "local", "-i", "localhost,", "-m", "netmend.k8s.masq_rule",
            "-a", json.dumps(args)] + (["--check"] if check else []) + (["--diff"] if diff else [])
    proc = node.run(argv, check=False, env=env, timeout=120)
    output = json.loads(proc.stdout)
    return output["plays"][0]["tasks"][0]["hosts"]["localhost"]


def test_vpn_sees_pod_ip_before_and_node_ip_after(gke):
    assert source_seen(gke.pod, gke.vpn) == POD_IP  # the field report's fault
    assert source_seen(gke.pod, gke.inet) == "192.0.2.1"  # the GKE-like table masquerades outside 10/8

    first = run_module(gke.node, {"cidrs": [VPN]})
    assert first["changed"] is True, first
    assert first["backend"] == "nft"
    assert first["cidrs"] == [VPN]
    assert first["rules"] == ["-N NETMEND-MASQ", '-A NETMEND-MASQ -d 10.11.0.0/24 -m comment --comment '
                              '"netmend masq_rule: 10.11.0.0/24" -j MASQUERADE']

    assert source_seen(gke.pod, gke.vpn) == gke.vpn.gateway  # the node's address on the VPN link
    assert source_seen(gke.pod, gke.peer) == POD_IP  # other 10.x destinations are still not NATed
    postrouting = gke.node.run(["iptables", "-t", "nat", "-S", "POSTROUTING"]).stdout.splitlines()
    assert postrouting[1].endswith("-j NETMEND-MASQ")  # first rule, before kube-proxy's and ip-masq-agent's
    assert len(postrouting) == 4

    second = run_module(gke.node, {"cidrs": [VPN]})
    assert second["changed"] is False, second
    assert second["drift"] == []


def test_check_mode_and_diff_change_nothing(gke):
    before = save(gke.node)
    result = run_module(gke.node, {"cidrs": [VPN, "10.11.0.0/25"]}, check=True, diff=True)
    assert result["changed"] is True
    assert "-A NETMEND-MASQ -d 10.11.0.0/24" in result["diff"]["after"]
    assert "NETMEND-MASQ" not in result["diff"]["before"]
    assert save(gke.node) == before
    assert source_seen(gke.pod, gke.vpn) == POD_IP


@pytest.mark.parametrize("args, message", [
    ({"cidrs": ["10.11.0.1/24"]}, "misaligned CIDR '10.11.0.1/24'"),
    ({"cidrs": ["10.11.0.999/24"]}, "invalid CIDR '10.11.0.999/24'"),
    ({"cidrs": []}, "cidrs is empty"),
    ({"cidrs": [VPN], "chain": "-BAD"}, "invalid chain name '-BAD'"),
    ({"cidrs": [VPN], "chain": "NETMEND-MASQUERADE-FOR-THE-VPN"}, "invalid chain name 'NETMEND-MASQUERADE-FOR-THE-VPN'"),
])
def test_bad_input_leaves_iptables_save_identical(gke, args, message):
    run_module(gke.node, {"cidrs": [VPN]})  # an existing chain must survive bad input too
    before = save(gke.node)
    result = run_module(gke.node, args)
    assert result.get("failed") is True
    assert message in result["msg"]
    assert save(gke.node) == before


def test_absent_removes_only_ours(gke):
    pristine = save(gke.node)
    run_module(gke.node, {"cidrs": [VPN, "fd00:11::/64"]})
    assert "NETMEND-MASQ" in gke.node.run(["ip6tables-save", "-t", "nat"]).stdout
    result = run_module(gke.node, {"state": "absent"})
    assert result["changed"] is True
    # The IPv4 table is back byte for byte; IPv6 keeps only its (now empty) builtin nat chains,
    # which iptables-nft created when our chain was first written.
    assert save(gke.node).split("\n*nat\n", maxsplit=1)[0] == pristine
    ip6 = gke.node.run(["ip6tables-save", "-t", "nat"]).stdout
    assert "NETMEND-MASQ" not in ip6 and "\n-A " not in ip6
    assert run_module(gke.node, {"state": "absent"})["changed"] is False


def start_agent(node, args, tmp_path):
    """The agent as the DaemonSet runs it, inside the node's namespace; its log lines fill the returned list."""
    env = dict(os.environ, PYTHONPATH=COLLECTIONS)
    agent = node.popen([sys.executable, "-u", "-m", AGENT, "masq_rule", "--lock-file", str(tmp_path / "lock")] + args,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines = []
    reader = threading.Thread(target=lambda: lines.extend(iter(agent.stdout.readline, "")), daemon=True)
    reader.start()
    return agent, lines, reader


def run_agent_to_end(node, args, tmp_path):
    """A bounded agent run (``--max-iterations`` in ``args``); its log lines."""
    agent, lines, reader = start_agent(node, args, tmp_path)
    assert agent.wait(60) == 0, "".join(lines)
    reader.join(5)
    return lines


def test_agent_repairs_deletion_and_reordering_within_its_interval(gke, tmp_path):
    interval = 0.5
    agent, lines, _reader = start_agent(gke.node, ["--cidr", VPN, "--interval", str(interval),
                                                   "--max-iterations", "60"], tmp_path)
    try:
        wait_for(lambda: any(" repaired " in line for line in lines), 10, lines)
        assert source_seen(gke.pod, gke.vpn) == gke.vpn.gateway

        damages = [
            (["-D", "NETMEND-MASQ", "1"], "rule missing: -A NETMEND-MASQ -d 10.11.0.0/24"),
            (["-D", "POSTROUTING", "1"], "jump from POSTROUTING missing"),
            # reordering: a rule that ends traversal for the VPN's traffic pushed on top of ours
            (["-I", "POSTROUTING", "1", "-d", "10.0.0.0/8", "-j", "RETURN"],
             "rule 1 of POSTROUTING can end traversal before our jump (rule 2): -A POSTROUTING -d 10.0.0.0/8 -j RETURN"),
        ]
        for damage, finding in damages:
            repairs = [line for line in lines if " repaired " in line]
            gke.node.iptables("-t", "nat", *damage)
            broken_at = time.monotonic()
            wait_for(lambda: len([line for line in lines if " repaired " in line]) > len(repairs), interval * 3, lines)
            assert time.monotonic() - broken_at <= interval * 3
            new = [line for line in lines if " repaired " in line][len(repairs):]
            assert len(new) == 1 and finding in new[0], new  # one log line per repair, naming what it found
        assert len([line for line in lines if " repaired " in line]) == 4  # the first apply + three repairs
        # a kube-proxy-like jump pushed on top of ours is not drift: nothing to repair
        gke.node.iptables("-t", "nat", "-I", "POSTROUTING", "1", "-j", "KUBE-POSTROUTING")
        time.sleep(interval * 3)
        assert len([line for line in lines if " repaired " in line]) == 4
        assert gke.node.run(["iptables", "-t", "nat", "-S", "POSTROUTING"]).stdout.splitlines()[2].endswith(
            "-j NETMEND-MASQ")
        assert source_seen(gke.pod, gke.vpn) == gke.vpn.gateway
        assert source_seen(gke.pod, gke.peer) == POD_IP
    finally:
        gke.netlab.kill(agent)


def wait_for(predicate, timeout, lines):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out; agent said:\n" + "".join(lines)
        time.sleep(0.05)


def test_two_writers_at_once_leave_one_consistent_chain(gke, tmp_path):
    run = masq.Runner(["ip", "netns", "exec", gke.node.netns])
    spec = masq.Spec(cidrs=[VPN, "10.13.0.0/16"])
    lock = str(tmp_path / "lock")
    for _round in range(5):
        barrier = threading.Barrier(2)
        errors = []

        def writer():
            barrier.wait()
            try:
                masq.reconcile(spec, run, backend="nft", lock_file=lock)
            except masq.MasqError as exc:  # pragma: no cover - reported by the assertion below
                errors.append(exc)

        threads = [threading.Thread(target=writer) for _writer in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert errors == []
        nat = gke.node.run(["iptables-save", "-t", "nat"]).stdout
        assert len(re.findall(r"^-A POSTROUTING .*-j NETMEND-MASQ$", nat, re.M)) == 1
        assert len(re.findall(r"^-A NETMEND-MASQ ", nat, re.M)) == 2
        result = masq.reconcile(spec, run, backend="nft", lock_file=lock)[0]
        assert result["changed"] is False
        masq.reconcile(masq.Spec(state="absent"), run, backend="nft", lock_file=lock)
        assert "NETMEND-MASQ" not in gke.node.run(["iptables-save", "-t", "nat"]).stdout


HOST_PLAY = """
- name: Apply the masq_rule role with host delivery
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Apply
      ansible.builtin.include_role:
        name: netmend.k8s.masq_rule
"""


def test_role_host_delivery_runs_the_module_on_each_node(gke, tmp_path):
    """masq_rule_delivery=host: the role runs the module on inventory nodes (here: lab node namespaces,
    reached with a local connection whose Python runs under ``ip netns exec``)."""
    other = gke.netlab.add_node("other")
    nodes = {"node-a": gke.node, "node-b": other}
    for name, host in nodes.items():
        wrapper = tmp_path / ("python-" + name)
        wrapper.write_text('#!/bin/sh\nexec ip netns exec %s %s "$@"\n' % (host.netns, sys.executable))
        wrapper.chmod(0o755)
    inventory = {"all": {"hosts": dict(
        {name: {"ansible_connection": "local", "ansible_become_method": "su",
                "ansible_python_interpreter": str(tmp_path / ("python-" + name))}
         for name in nodes},
        localhost={"ansible_connection": "local", "ansible_python_interpreter": sys.executable})}}
    (tmp_path / "inventory.yml").write_text(json.dumps(inventory))
    (tmp_path / "play.yml").write_text(HOST_PLAY)
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS, ANSIBLE_STDOUT_CALLBACK="json", ANSIBLE_NOCOLOR="1")

    def play(**extra):
        variables = dict({"masq_rule_cidrs": [VPN], "masq_rule_delivery": "host",
                          "masq_rule_hosts": sorted(nodes)}, **extra)
        proc = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i",
                               str(tmp_path / "inventory.yml"), str(tmp_path / "play.yml"), "-e", json.dumps(variables)],
                              capture_output=True, text=True, env=env, timeout=300, check=False)
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
        return json.loads(proc.stdout)["stats"]["localhost"]["changed"]

    assert play() == 1
    for host in nodes.values():
        assert "-d 10.11.0.0/24" in host.run(["iptables", "-t", "nat", "-S", "NETMEND-MASQ"]).stdout
    assert source_seen(gke.pod, gke.vpn) == gke.vpn.gateway
    assert play() == 0
    assert play(masq_rule_state="absent") == 1
    for host in nodes.values():
        assert "NETMEND-MASQ" not in host.run(["iptables-save", "-t", "nat"]).stdout
    assert source_seen(gke.pod, gke.vpn) == POD_IP


def test_duplicate_and_foreign_jumps_converge_in_one_run(gke, tmp_path):
    run = masq.Runner(["ip", "netns", "exec", gke.node.netns])
    spec = masq.Spec(cidrs=[VPN])
    lock = str(tmp_path / "lock")
    masq.reconcile(spec, run, backend="nft", lock_file=lock)
    jump = ["-m", "comment", "--comment", masq.JUMP_COMMENT, "-m", "addrtype", "!", "--dst-type", "LOCAL",
            "-j", "NETMEND-MASQ"]
    gke.node.iptables("-t", "nat", "-A", "POSTROUTING", *jump)       # an identical copy at the end
    gke.node.iptables("-t", "nat", "-I", "POSTROUTING", "2", "-j", "NETMEND-MASQ")  # a hand-made one
    result = masq.reconcile(spec, run, backend="nft", lock_file=lock)[0]
    assert result["drift"] == ["ipv4: 3 jumps to NETMEND-MASQ in POSTROUTING instead of one"]
    postrouting = gke.node.run(["iptables", "-t", "nat", "-S", "POSTROUTING"]).stdout.splitlines()
    assert [line for line in postrouting if line.endswith("-j NETMEND-MASQ")] == [postrouting[1]]
    assert postrouting[1] == masq.render_line(masq.jump_rule("NETMEND-MASQ"))
    assert len(postrouting) == 4  # policy, our jump, kube-proxy's, ip-masq-agent's
    assert masq.reconcile(spec, run, backend="nft", lock_file=lock)[0]["changed"] is False
    assert source_seen(gke.pod, gke.vpn) == gke.vpn.gateway


# --- ownership: a chain named like ours that someone else made -------------------------------------

FOREIGN_CHAINS = {
    "rules without our comment": ["-N NETMEND-MASQ", "-A NETMEND-MASQ -d 10.99.0.0/16 -j MASQUERADE",
                                  "-I POSTROUTING 1 -j NETMEND-MASQ"],
    "our rule plus one of theirs": ["-N NETMEND-MASQ", "-A NETMEND-MASQ -d 10.11.0.0/24 -m comment --comment "
                                    "'netmend masq_rule: 10.11.0.0/24' -j MASQUERADE",
                                    "-A NETMEND-MASQ -d 10.99.0.0/16 -j RETURN"],
    "empty, nothing of ours leads to it": ["-N NETMEND-MASQ"],
}


@pytest.mark.parametrize("family", ["4", "6"])
@pytest.mark.parametrize("made", sorted(FOREIGN_CHAINS))
def test_a_chain_that_is_not_ours_is_refused_by_module_and_agent(gke, tmp_path, made, family):
    """Someone else's NETMEND-MASQ (in nat of either family): present fails naming it, absent and the agent
    leave it; iptables-save stays byte for byte."""
    tool = "iptables" if family == "4" else "ip6tables"
    script = "\n".join(FOREIGN_CHAINS[made]).replace("10.11.0.0/24", VPN if family == "4" else "fd00:11::/64")
    script = script.replace("10.99.0.0/16", "10.99.0.0/16" if family == "4" else "fd00:99::/64")
    gke.node.run(["sh", "-ec", "\n".join("%s -w -t nat %s" % (tool, line) for line in script.splitlines())])
    before = save(gke.node)
    family_name = "ipv4" if family == "4" else "ipv6"
    cidrs = [VPN, "fd00:11::/64"]

    present = run_module(gke.node, {"cidrs": cidrs})
    assert present.get("failed") is True, present
    assert present["msg"].startswith("%s: chain NETMEND-MASQ exists in the nat table" % family_name), present["msg"]
    assert save(gke.node) == before

    absent = run_module(gke.node, {"state": "absent"})
    assert absent.get("failed") is not True and absent["changed"] is False, absent
    assert any("NETMEND-MASQ exists in the nat table" in warning and warning.endswith("left alone")
               for warning in absent.get("warnings", [])), absent
    assert save(gke.node) == before

    lines = run_agent_to_end(gke.node, ["--cidr", VPN, "--cidr", "fd00:11::/64", "--interval", "0.1",
                                        "--max-iterations", "5"], tmp_path)
    failures = [line for line in lines if " check failed " in line]
    assert len(failures) == 1 and "chain NETMEND-MASQ exists in the nat table" in failures[0], lines
    assert not [line for line in lines if " repaired " in line]
    assert save(gke.node) == before
    assert source_seen(gke.pod, gke.vpn) == POD_IP  # nothing of ours was written, in either family


@pytest.mark.parametrize("chain", ["IP-MASQ", "KUBE-POSTROUTING", "cali-POSTROUTING", "DOCKER-USER", "CILIUM_POST_nat"])
def test_reserved_chains_are_refused_before_any_command(gke, chain):
    before = save(gke.node)
    result = run_module(gke.node, {"cidrs": [VPN], "chain": chain})
    assert result.get("failed") is True
    assert result["msg"].startswith("invalid chain name %r: names starting with" % chain), result["msg"]
    assert save(gke.node) == before
    assert source_seen(gke.pod, gke.peer) == POD_IP


# --- IPv6 -------------------------------------------------------------------------------------------

def ip6_nat(node):
    return node.run(["ip6tables-save", "-t", "nat"]).stdout


def test_last_ipv6_destination_removed_takes_chain_and_jump_module_and_agent(gke, tmp_path):
    run_module(gke.node, {"cidrs": [VPN, "fd00:11::/64"]})
    assert "-A POSTROUTING" in ip6_nat(gke.node) and "-A NETMEND-MASQ -d fd00:11::/64" in ip6_nat(gke.node)
    result = run_module(gke.node, {"cidrs": [VPN]})
    assert result["changed"] is True and result["drift"] == ["ipv6: chain NETMEND-MASQ and its jump removed"]
    assert "NETMEND-MASQ" not in ip6_nat(gke.node)
    assert "-A NETMEND-MASQ -d 10.11.0.0/24" in gke.node.run(["iptables-save", "-t", "nat"]).stdout

    # The agent: started with an IPv6 range, restarted (the role's next rollout) without it.
    run_agent_to_end(gke.node, ["--cidr", VPN, "--cidr", "fd00:11::/64", "--interval", "0.1",
                                "--max-iterations", "2"], tmp_path)
    assert "-A NETMEND-MASQ -d fd00:11::/64" in ip6_nat(gke.node)
    assert "-j NETMEND-MASQ" in ip6_nat(gke.node)
    lines = run_agent_to_end(gke.node, ["--cidr", VPN, "--interval", "0.1", "--max-iterations", "3"], tmp_path)
    repairs = [line for line in lines if " repaired " in line]
    assert len(repairs) == 1 and 'family="ipv6"' in repairs[0] and "and its jump removed" in repairs[0], lines
    assert "NETMEND-MASQ" not in ip6_nat(gke.node)
    assert source_seen(gke.pod, gke.vpn) == gke.vpn.gateway  # IPv4 untouched


IPV6_FORMS = ["::ffff:a00:0/104", "::ffff:10.0.0.0/104", "0:0:0:0:0:ffff:ffff:0/112", "::10.0.0.0/104",
              "::0.0.0.1/128", "2001:db8:0:0:1:0:0:1/128", "fd00:0:0:1::/64", "64:ff9b::1.2.3.0/120"]


def test_network_text_matches_what_ip6tables_prints(gke):
    """What the core writes for each form is exactly what the kernel's ip6tables-save prints back."""
    node = gke.node
    node.iptables("-t", "nat", "-N", "PROBE", family="6")
    for cidr in IPV6_FORMS:
        node.iptables("-t", "nat", "-A", "PROBE", "-d", cidr, "-j", "RETURN", family="6")
    printed = [line.split()[3] for line in ip6_nat(node).splitlines() if line.startswith("-A PROBE ")]
    assert printed == [masq.network_text(masq.ipaddress.ip_network(cidr)) for cidr in IPV6_FORMS]


def test_ipv4_mapped_destination_converges_and_zone_index_is_refused(gke):
    first = run_module(gke.node, {"cidrs": [VPN, "::ffff:a00:0/104"]})
    assert first["changed"] is True, first
    assert first["cidrs"] == [VPN, "::ffff:10.0.0.0/104"]
    assert "-A NETMEND-MASQ -d ::ffff:10.0.0.0/104" in ip6_nat(gke.node)
    second = run_module(gke.node, {"cidrs": [VPN, "::ffff:10.0.0.0/104"]})
    assert second["changed"] is False and second["drift"] == [], second

    before = save(gke.node)
    refused = run_module(gke.node, {"cidrs": [VPN, "fe80::%eth0/64"]})
    assert refused.get("failed") is True
    assert refused["msg"].startswith("invalid CIDR 'fe80::%eth0/64': an IPv6 zone index (%eth0)"), refused["msg"]
    assert save(gke.node) == before


# --- Felix coexistence ----------------------------------------------------------------------------------

FELIX_CHAINS = """*nat
:cali-POSTROUTING - [0:0]
:cali-nat-outgoing - [0:0]
-A cali-POSTROUTING -m comment --comment "cali:Z-c7XtVd2Bq7s_hA" -j cali-nat-outgoing
-A cali-POSTROUTING -m comment --comment "cali:nYKhEzDlr11Jccal" -m mark --mark 0x10000/0x10000 -j RETURN
-A cali-nat-outgoing -s 10.244.0.0/16 ! -d 10.244.0.0/16 -m comment --comment "cali:flqWnvo8yq4ULQLa" -j MASQUERADE
-I POSTROUTING 1 -m comment --comment "cali:O3lYWMrLQYEMJtB5" -j cali-POSTROUTING
COMMIT
"""
FELIX_JUMP = '-m comment --comment "cali:O3lYWMrLQYEMJtB5" -j cali-POSTROUTING'
# Felix with ChainInsertMode=Insert: every second its jump goes (back) to the top, atomically.
FELIX_WRITER = """
import subprocess, sys, time
payload = "*nat\\n-D POSTROUTING %s\\n-I POSTROUTING 1 %s\\nCOMMIT\\n" % (sys.argv[2], sys.argv[2])
for _ in range(int(sys.argv[1])):
    subprocess.run(["iptables-restore", "--noflush", "-w", "5"], input=payload, text=True, check=True)
    print("reinserted", flush=True)
    time.sleep(1)
"""


def test_felix_keeping_its_jump_first_causes_no_repair_loop(gke, tmp_path):
    """A Felix-like writer re-inserts its jump at the top of nat POSTROUTING every second for a minute while
    our agent (position insert, 0.5 s interval) runs: at most one repair, and the VPN keeps seeing the node."""
    agent, lines, _reader = start_agent(gke.node, ["--cidr", VPN, "--interval", "0.5", "--max-iterations", "400"],
                                        tmp_path)
    felix = None
    try:
        wait_for(lambda: any(" repaired " in line for line in lines), 10, lines)
        applied = len([line for line in lines if " repaired " in line])
        gke.node.run(["iptables-restore", "--noflush", "-w", "5"], input=FELIX_CHAINS)
        felix = gke.node.popen([sys.executable, "-u", "-c", FELIX_WRITER, "60", FELIX_JUMP],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        sources = []
        for _check in range(6):
            time.sleep(9)
            sources.append(source_seen(gke.pod, gke.vpn))
        assert felix.wait(60) == 0
        assert felix.stdout.read().count("reinserted") == 60
        repairs = [line for line in lines if " repaired " in line][applied:]
        assert len(repairs) <= 1, repairs
        assert sources == [gke.vpn.gateway] * 6
        postrouting = gke.node.run(["iptables", "-t", "nat", "-S", "POSTROUTING"]).stdout.splitlines()
        assert postrouting[1].endswith("-j cali-POSTROUTING") and postrouting[2].endswith("-j NETMEND-MASQ")
        assert source_seen(gke.pod, gke.peer) == POD_IP
    finally:
        if felix is not None:
            gke.netlab.kill(felix)
        gke.netlab.kill(agent)
