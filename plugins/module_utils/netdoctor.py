# Copyright: netmend.k8s contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Node network doctor: find the node-level faults of a Kubernetes node. Standard library only.

Read-only. Every check is a pure function of plain data (what was measured plus what
the cluster says the node should look like) that returns findings; :class:`NodeReader`
gathers that data from ``/proc``, ``/sys``, ``ip -j`` and ``iptables-save`` through
injectable roots and an injectable command runner, so tests point it at fixtures or
run it inside a network namespace. Where ``ip`` is missing (a stock python image),
routes and neighbours come from procfs instead.

Shared by the ``net_doctor`` module (run on a node), the run-once agent
(``netdoctor_agent``) and, for the cluster-level findings, the role's filter plugin.
MTU arithmetic and interface detection are calico_mtu's (``mtu.py``).
"""
from __future__ import annotations

import errno
import ipaddress
import json
import os
import selectors
import shutil
import socket
import subprocess
import threading
import time

from ansible_collections.netmend.k8s.plugins.module_utils import kube_lite
from ansible_collections.netmend.k8s.plugins.module_utils import mtu as mtu_core

SEVERITIES = ("error", "warning", "info")
NODE_CHECKS = ("arp_gc_thresh", "ip_forward", "rp_filter", "tcp_tw_recycle", "conntrack_full", "mtu_mismatch",
               "routes", "iptables_backend_mixed", "bgp_unreachable", "tunnel_down")
NODE_FINDING_IDS = ("arp_gc_thresh", "ip_forward", "rp_filter", "tcp_tw_recycle", "conntrack_full", "mtu_mismatch",
                    "route_missing", "route_wrong", "iptables_backend_mixed", "bgp_unreachable", "tunnel_down")
CLUSTER_FINDING_IDS = ("cni_agent_missing", "dns_unhealthy", "pod_cidr_overlap", "mtu_inconsistent")

# Tunnel devices of the common CNIs and the encapsulation each one means.
TUNNEL_DEVICES = {
    "tunl0": "ipip",
    "vxlan.calico": "vxlan",
    "vxlan-v6.calico": "vxlan",
    "wireguard.cali": "wireguard",
    "flannel.1": "vxlan",
    "cilium_vxlan": "vxlan",
}
ENCAPSULATIONS = ("auto",) + mtu_core.ENCAPSULATIONS
DEFAULT_VETH_PREFIXES = ("cali", "veth", "lxc")
BGP_PORT = 179
ARP_WARN_RATIO = 0.8
CONNTRACK_WARN_RATIO = 0.8
CONNTRACK_ERROR_RATIO = 0.95
RP_FILTER_STRICT = 1
# tcp_tw_recycle was removed in Linux 4.12.
TW_RECYCLE_REMOVED = (4, 12)
# Route types that drop the traffic.
DROPPING_ROUTE_TYPES = ("blackhole", "unreachable", "prohibit")
IFF_UP = 0x1


class DoctorError(Exception):
    """Bad input or a node the doctor cannot read; nothing was sent, nothing changed."""


def finding(check_id, severity, subject, observed, expected, advice, fix=None):
    """One finding as the module, the agent and the role return it."""
    if severity not in SEVERITIES:
        raise ValueError("unknown severity %r" % severity)
    return {"id": check_id, "severity": severity, "subject": subject, "observed": observed,
            "expected": expected, "advice": advice, "fix": fix}


def sort_findings(findings):
    """Errors first, then warnings, then info; stable within a severity."""
    return sorted(findings, key=lambda item: SEVERITIES.index(item["severity"]))


# --------------------------------------------------------------------------- input


def _network(value, what):
    try:
        return ipaddress.ip_network(str(value).strip(), strict=True)
    except ValueError as exc:
        raise DoctorError("%s %r is not a valid CIDR: %s" % (what, value, exc)) from None


def _address(value, what):
    try:
        return ipaddress.ip_address(str(value).strip())
    except ValueError:
        raise DoctorError("%s %r is not an IP address (names are not resolved: give the node's address)"
                          % (what, value)) from None


def _positive_int(value, what):
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise DoctorError("%s must be a positive integer, not %r" % (what, value))
    return value


class Spec:
    """What the cluster says this node should look like; validated before anything is read.

    ``nodes`` are the cluster's nodes as ``{name, addresses | address, pod_cidrs, alive}``
    dicts; the one named ``node_name`` (or holding one of this host's addresses) is
    this node, the others are the peers whose pod CIDRs must be routed.
    """

    def __init__(self, node_name="", nodes=(), pod_count=None, bgp_peers=(), bgp_port=BGP_PORT, bgp_timeout=1.0,
                 encapsulation="auto", ip_family="ipv4", interface_pattern=mtu_core.FELIX_INTERFACE_PATTERN,
                 cni_config=mtu_core.DEFAULT_CONFLIST, expected_tunnels=(), veth_prefixes=DEFAULT_VETH_PREFIXES,
                 gc_thresh=None, conntrack_max=None, checks=NODE_CHECKS):
        self.node_name = node_name or ""
        self.nodes = [self._node(node, index) for index, node in enumerate(nodes or [])]
        self.pod_count = None if pod_count is None else self._count(pod_count, "pod_count")
        self.bgp_peers = []
        for peer in bgp_peers or []:
            address = _address(peer, "bgp_peers entry")
            if address not in self.bgp_peers:
                self.bgp_peers.append(address)
        if isinstance(bgp_port, bool) or not isinstance(bgp_port, int) or not 1 <= bgp_port <= 65535:
            raise DoctorError("bgp_port must be a TCP port from 1 to 65535, not %r" % (bgp_port,))
        self.bgp_port = bgp_port
        if isinstance(bgp_timeout, bool) or not isinstance(bgp_timeout, (int, float)) or not 0 < bgp_timeout <= 60:
            raise DoctorError("bgp_timeout must be more than 0 and at most 60 seconds, not %r" % (bgp_timeout,))
        self.bgp_timeout = float(bgp_timeout)
        if encapsulation not in ENCAPSULATIONS:
            raise DoctorError("unknown encapsulation %r: expected one of %s" % (encapsulation, ", ".join(ENCAPSULATIONS)))
        self.encapsulation = encapsulation
        if ip_family not in mtu_core.IP_FAMILIES:
            raise DoctorError("unknown ip_family %r: expected one of %s" % (ip_family, ", ".join(mtu_core.IP_FAMILIES)))
        self.ip_family = ip_family
        self.interface_pattern = interface_pattern
        self.cni_config = cni_config or ""
        self.expected_tunnels = list(expected_tunnels or [])
        for name in self.expected_tunnels:
            if not isinstance(name, str) or not 0 < len(name) <= 15 or "/" in name or " " in name:
                raise DoctorError("expected_tunnels entry %r is not an interface name" % (name,))
        self.veth_prefixes = tuple(veth_prefixes or ())
        self.gc_thresh = None
        if gc_thresh is not None:
            if not isinstance(gc_thresh, (list, tuple)) or len(gc_thresh) != 3:
                raise DoctorError("gc_thresh must be three integers [gc_thresh1, gc_thresh2, gc_thresh3], not %r"
                                  % (gc_thresh,))
            self.gc_thresh = tuple(_positive_int(value, "gc_thresh entry") for value in gc_thresh)
            if not self.gc_thresh[0] <= self.gc_thresh[1] <= self.gc_thresh[2]:
                raise DoctorError("gc_thresh %r must not decrease: gc_thresh1 <= gc_thresh2 <= gc_thresh3"
                                  % (list(self.gc_thresh),))
        self.conntrack_max = None if conntrack_max is None else _positive_int(conntrack_max, "conntrack_max")
        unknown = [check for check in checks if check not in NODE_CHECKS]
        if unknown:
            raise DoctorError("unknown check %s: expected some of %s"
                              % (", ".join(map(repr, unknown)), ", ".join(NODE_CHECKS)))
        self.checks = tuple(checks)

    @staticmethod
    def _count(value, what):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise DoctorError("%s must be a whole number of 0 or more, not %r" % (what, value))
        return value

    @staticmethod
    def _node(node, index):
        if not isinstance(node, dict):
            raise DoctorError("nodes[%d] must be a dict with name, addresses and pod_cidrs, not %r" % (index, node))
        name = str(node.get("name") or "nodes[%d]" % index)
        raw = node.get("addresses") or ([node["address"]] if node.get("address") else [])
        if isinstance(raw, str):
            raw = [raw]
        addresses = [_address(value, "address of node %s" % name) for value in raw]
        cidrs = node.get("pod_cidrs") or []
        if isinstance(cidrs, str):
            cidrs = [cidrs]
        pod_cidrs = [_network(value, "pod CIDR of node %s" % name) for value in cidrs if value]
        return {"name": name, "addresses": addresses, "pod_cidrs": pod_cidrs, "alive": bool(node.get("alive", True))}


# --------------------------------------------------------------------------- reading the node


def run_command(argv, timeout=10):
    """Default runner: ``(rc, stdout, stderr)``; rc 127 when the program is missing."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False,
                              env=dict(os.environ, LANG="C", LC_ALL="C"))
    except FileNotFoundError:
        return 127, "", "%s: not found" % argv[0]
    except subprocess.TimeoutExpired:
        return 124, "", "%s: timed out after %ss" % (argv[0], timeout)
    return done.returncode, done.stdout, done.stderr


class NodeReader:
    """Reads one node (the network namespace it runs in). Roots and the runner are injectable.

    ``which`` says whether a program exists (so a missing ``ip`` or ``iptables-*-save``
    is a fallback or a skipped check, not an error).
    """

    def __init__(self, proc="/proc", sys="/sys", run=run_command, which=shutil.which):
        self.proc = proc
        self.sys = sys
        self.run = run
        self.which = which

    def text(self, *parts):
        """The stripped text of a file under /proc, or None when it does not exist."""
        try:
            with open(os.path.join(self.proc, *parts), encoding="utf-8") as handle:
                return handle.read().strip()
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ENOTDIR):
                return None
            raise DoctorError("cannot read %s: %s" % (os.path.join(self.proc, *parts), exc.strerror)) from None

    def sysctl(self, key):
        """An integer sysctl (``net/ipv4/ip_forward``), or None when absent."""
        value = self.text("sys", *key.split("/"))
        if value is None:
            return None
        try:
            return int(value.split()[0])
        except (ValueError, IndexError):
            raise DoctorError("sysctl %s holds %r, not an integer" % (key.replace("/", "."), value)) from None

    def kernel(self):
        return self.text("sys", "kernel", "osrelease") or ""

    def interfaces(self):
        """``{name: {mtu, up, kind}}`` from /sys/class/net (calico_mtu's reader)."""
        root = os.path.join(self.sys, "class", "net")
        try:
            links = mtu_core.read_interfaces(root)
        except mtu_core.MtuError as exc:
            raise DoctorError(str(exc)) from None
        return {link["name"]: {"mtu": link["mtu"], "up": link["up"]} for link in links}

    def host_mtu(self, pattern):
        """``(mtu, interface)`` Felix would pick: calico_mtu's detection on this /sys."""
        try:
            return mtu_core.detect_host_mtu(pattern, os.path.join(self.sys, "class", "net"))
        except mtu_core.MtuError as exc:
            raise DoctorError(str(exc)) from None

    @staticmethod
    def is_local(address):
        """True when ``address`` is one of this host's (network namespace's) own addresses."""
        family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            try:
                sock.bind((str(address), 0))
            except OSError:
                return False
        return True

    def ip_json(self, *args):
        """``ip -j <args>`` parsed, or None when ``ip`` is not installed."""
        if not self.which("ip"):
            return None
        rc, out, err = self.run(["ip", "-j"] + list(args))
        if rc != 0:
            raise DoctorError("ip -j %s exited %d: %s" % (" ".join(args), rc, err.strip()))
        try:
            return json.loads(out or "[]")
        except ValueError as exc:
            raise DoctorError("ip -j %s printed something that is not JSON: %s" % (" ".join(args), exc)) from None

    def routes(self):
        """Main-table routes of both families as ``[{dst, gateway, dev, type}]``."""
        found = []
        for family in ("-4", "-6"):
            listed = self.ip_json(family, "route", "show", "table", "main")
            if listed is None:
                return parse_proc_routes(self.text("net", "route") or "", self.text("net", "ipv6_route") or "")
            found += [normalise_route(route, family) for route in listed]
        return found

    def neighbours(self):
        """Neighbour counts: this namespace's entries and the kernel's table totals (what gc_thresh bounds)."""
        counts = {}
        for family, flag, stat in (("ipv4", "-4", "arp_cache"), ("ipv6", "-6", "ndisc_cache")):
            # IPv4 from /proc/net/arp (one line per entry, no process to start); IPv6 has no procfs view
            arp = self.text("net", "arp") if family == "ipv4" else None
            if arp is not None:
                namespace = max(0, len(arp.splitlines()) - 1)
            else:
                listed = self.ip_json(flag, "neigh", "show")
                namespace = None if listed is None else len(listed)
            # /proc/net/stat exists in the initial network namespace only; through PID 1 (in the host's
            # namespace on a node, or in a hostNetwork pod) it is the kernel's table all the same
            table = self.text("net", "stat", stat) or self.text("1", "net", "stat", stat)
            counts[family] = {"namespace": namespace, "table": parse_neigh_stat(table)}
        return counts

    def gc_thresh(self):
        found = {}
        for family in ("ipv4", "ipv6"):
            values = [self.sysctl("net/%s/neigh/default/gc_thresh%d" % (family, level)) for level in (1, 2, 3)]
            found[family] = None if None in values else tuple(values)
        return found

    def iptables_rules(self):
        """Rule counts per backend and family ``{"legacy": {"ipv4": n}, ...}``; None where the tool is missing."""
        counts = {}
        for backend in ("legacy", "nft"):
            counts[backend] = {}
            for family, tool in (("ipv4", "iptables"), ("ipv6", "ip6tables")):
                program = "%s-%s-save" % (tool, backend)
                if not self.which(program):
                    counts[backend][family] = None
                    continue
                rc, out, err = self.run([program])
                if rc != 0:
                    raise DoctorError("%s exited %d: %s" % (program, rc, err.strip()))
                counts[backend][family] = count_rules(out)
        return counts


def normalise_route(route, family="-4"):
    dst = route.get("dst", "")
    if dst == "default":
        dst = "0.0.0.0/0" if family == "-4" else "::/0"
    elif dst and "/" not in dst:
        dst += "/32" if ":" not in dst else "/128"
    return {"dst": dst, "gateway": route.get("gateway"), "dev": route.get("dev"),
            "type": route.get("type", "unicast")}


def _hex_ipv4(value):
    return str(ipaddress.IPv4Address(int(value, 16).to_bytes(4, "little")))


def parse_proc_routes(route_text, ipv6_text):
    """Routes from /proc/net/route and /proc/net/ipv6_route (for hosts without ``ip``).

    procfs shows a blackhole or unreachable route on the device ``*`` or ``lo`` with
    the reject flag; both are reported as type ``blackhole``.
    """
    routes = []
    for line in route_text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 8:
            continue
        flags = int(fields[3], 16)
        mask = bin(int(fields[7], 16)).count("1")
        gateway = _hex_ipv4(fields[2]) if flags & 0x2 else None
        rejected = fields[0] == "*" or flags & 0x200
        routes.append({"dst": "%s/%d" % (_hex_ipv4(fields[1]), mask), "gateway": gateway,
                       "dev": None if rejected else fields[0], "type": "blackhole" if rejected else "unicast"})
    for line in ipv6_text.splitlines():
        fields = line.split()
        if len(fields) < 10:
            continue
        dst = str(ipaddress.IPv6Address(bytes.fromhex(fields[0])))
        gateway = str(ipaddress.IPv6Address(bytes.fromhex(fields[4])))
        flags = int(fields[8], 16)
        if int(fields[5], 16) == 0xffffffff or fields[9] == "lo" and not dst.startswith("fe80"):
            # the local table's entries and the kernel's own unreachable default show up here too
            if not flags & 0x200:
                continue
        rejected = bool(flags & 0x200)
        routes.append({"dst": "%s/%d" % (dst, int(fields[1], 16)), "gateway": gateway if flags & 0x2 else None,
                       "dev": None if rejected else fields[9], "type": "blackhole" if rejected else "unicast"})
    return routes


def parse_neigh_stat(text):
    """The ``entries`` column of /proc/net/stat/arp_cache (the kernel's whole table), or None."""
    if not text:
        return None
    lines = text.splitlines()
    if len(lines) < 2 or lines[0].split()[0] != "entries":
        return None
    return int(lines[1].split()[0], 16)


def count_rules(save_text):
    """Rules (``-A`` lines) in an iptables-save dump."""
    return sum(1 for line in save_text.splitlines() if line.startswith("-A "))


# --------------------------------------------------------------------------- the checks (pure)


def recommended_gc_thresh(nodes, pods):
    """Thresholds that keep the expected neighbour count under 80 % of gc_thresh2.

    On a VXLAN or flat layer-2 network a node may keep one entry per node and per
    pod it talks to; the worst case is all of them.
    """
    needed = max(1, nodes + pods)
    thresh2 = 1024
    while needed > thresh2 * ARP_WARN_RATIO:
        thresh2 *= 2
    return thresh2 // 2, thresh2, thresh2 * 2


def check_arp(neighbours, thresholds, nodes=None, pods=None):
    """``arp_gc_thresh``: neighbour entries against gc_thresh2 × 0.8 (warning) and gc_thresh3 (error)."""
    findings = []
    for family in ("ipv4", "ipv6"):
        limits = thresholds.get(family)
        counts = neighbours.get(family) or {}
        observed = max(value for value in (counts.get("namespace"), counts.get("table"), 0) if value is not None)
        if not limits:
            continue
        thresh1, thresh2, thresh3 = limits
        if observed >= thresh3:
            severity = "error"
        elif observed > thresh2 * ARP_WARN_RATIO:
            severity = "warning"
        else:
            continue
        sysctl = "net.%s.neigh.default" % family
        if nodes is not None or pods is not None:
            rec = recommended_gc_thresh(nodes or 0, pods or 0)
            sizing = "for %d nodes and %d pods set %s.gc_thresh1=%d, gc_thresh2=%d, gc_thresh3=%d" % (
                nodes or 0, pods or 0, sysctl, rec[0], rec[1], rec[2])
        else:
            sizing = "raise %s.gc_thresh1/2/3 (for example double them) so the node and pod count stays " \
                     "well below gc_thresh2" % sysctl
        findings.append(finding(
            "arp_gc_thresh", severity, "%s neighbour table" % family,
            "%d entries (gc_thresh1=%d, gc_thresh2=%d, gc_thresh3=%d)" % (observed, thresh1, thresh2, thresh3),
            "at most %d entries (80%% of gc_thresh2)" % int(thresh2 * ARP_WARN_RATIO),
            "The kernel drops neighbour entries it still needs above gc_thresh2 and refuses new ones at "
            "gc_thresh3 ('neighbour table overflow', 'no buffer space available'): %s." % sizing,
            fix="sysctl %s.gc_thresh1/2/3" % sysctl))
    return findings


def routed_families(spec_nodes, routes):
    """Families this node routes: those of the cluster's pod CIDRs, else IPv4 when it has any IPv4 route."""
    families = {("ipv4" if cidr.version == 4 else "ipv6") for node in spec_nodes for cidr in node["pod_cidrs"]}
    if not families and any(":" not in route["dst"] for route in routes):
        families.add("ipv4")
    return families


def check_ip_forward(forwarding, families):
    """``ip_forward``: forwarding off for a routed family. ``forwarding`` is ``{ipv4: 0|1, ipv6: ...}``."""
    findings = []
    keys = {"ipv4": "net.ipv4.ip_forward", "ipv6": "net.ipv6.conf.all.forwarding"}
    for family in sorted(families):
        value = forwarding.get(family)
        if value is not None and value == 0:
            findings.append(finding(
                "ip_forward", "error", keys[family], "%s = 0" % keys[family], "%s = 1" % keys[family],
                "The node does not forward %s packets, so its pods reach nothing beyond the node and nothing "
                "reaches them. Set %s=1 (and persist it in /etc/sysctl.d)." % (family, keys[family]),
                fix="sysctl %s=1" % keys[family]))
    return findings


def check_rp_filter(rp_all, per_interface, interfaces):
    """``rp_filter``: strict (1) reverse-path filtering on an interface that carries tunnel or pod traffic.

    The kernel applies the larger of ``conf.all`` and the interface's own value.
    ``interfaces`` maps each checked interface to why it is checked.
    """
    findings = []
    for name in sorted(interfaces):
        own = per_interface.get(name)
        if own is None:
            continue
        effective = max(rp_all or 0, own)
        if effective == RP_FILTER_STRICT:
            findings.append(finding(
                "rp_filter", "warning", name,
                "effective rp_filter 1 (strict; all=%s, %s=%s)" % (rp_all, name, own), "0 or 2 (loose)",
                "%s carries %s; strict reverse-path filtering drops packets whose source is routed through "
                "another interface (asymmetric pod, tunnel or multi-homed paths). Set "
                "net.ipv4.conf.%s.rp_filter=2 and net.ipv4.conf.all.rp_filter to 0 or 2."
                % (name, interfaces[name], name.replace(".", "/")),
                fix="sysctl net.ipv4.conf.%s.rp_filter=2" % name.replace(".", "/")))
    return findings


def check_tw_recycle(value, release):
    """``tcp_tw_recycle``: present (kernels before 4.12) and on."""
    if value is None or value == 0:
        return []
    return [finding(
        "tcp_tw_recycle", "error", "net.ipv4.tcp_tw_recycle", "net.ipv4.tcp_tw_recycle = %d (kernel %s)" % (value, release),
        "0 (the setting is gone from Linux 4.12 on)",
        "tcp_tw_recycle drops SYNs whose TCP timestamps go backwards for an address. Behind NAT (pods "
        "masqueraded to the node, clients behind a load balancer or ingress) many hosts share one address, "
        "so connections fail at random; Linux 4.10 also randomised timestamps per connection, breaking it "
        "completely. Set it to 0; use tcp_tw_reuse if TIME_WAIT is the worry.",
        fix="sysctl net.ipv4.tcp_tw_recycle=0")]


def check_conntrack(count, maximum):
    """``conntrack_full``: nf_conntrack_count at 80 % (warning) / 95 % (error) of nf_conntrack_max."""
    if count is None or not maximum:
        return []
    ratio = count / maximum
    if ratio >= CONNTRACK_ERROR_RATIO:
        severity = "error"
    elif ratio >= CONNTRACK_WARN_RATIO:
        severity = "warning"
    else:
        return []
    return [finding(
        "conntrack_full", severity, "nf_conntrack",
        "%d of %d entries (%d%%)" % (count, maximum, int(ratio * 100)),
        "below %d (80%% of nf_conntrack_max)" % int(maximum * CONNTRACK_WARN_RATIO),
        "A full connection-tracking table drops new connections ('nf_conntrack: table full, dropping packet'); "
        "NAT, Services and NetworkPolicy all need it. Raise net.netfilter.nf_conntrack_max (kube-proxy's "
        "conntrack.maxPerCore) or find what opens so many connections.",
        fix="sysctl net.netfilter.nf_conntrack_max")]


def infer_encapsulation(interfaces):
    """The encapsulation the tunnel devices present imply, ``none`` when there is none."""
    for name in ("wireguard.cali", "vxlan.calico", "flannel.1", "cilium_vxlan", "tunl0"):
        if name in interfaces:
            return TUNNEL_DEVICES[name]
    return "none"


def check_mtu(interfaces, spec, cni_mtu, host_mtu, host_if):
    """``mtu_mismatch``: tunnel, pod veths and the CNI config against the host MTU minus the overhead.

    ``host_mtu``/``host_if`` come from calico_mtu's detection (:meth:`NodeReader.host_mtu`);
    the overhead table is calico_mtu's too. Returns ``(findings, facts)``.
    """
    encapsulation = spec.encapsulation if spec.encapsulation != "auto" else infer_encapsulation(interfaces)
    try:
        extra = mtu_core.overhead(encapsulation, spec.ip_family)
    except mtu_core.MtuError as exc:
        raise DoctorError(str(exc)) from None
    facts = {"encapsulation": encapsulation, "host_mtu": host_mtu, "host_interface": host_if, "overhead": extra,
             "pod_mtu": None, "cni_mtu": cni_mtu, "tunnels": {}, "veths": {}}
    findings = []
    if host_mtu is None:
        return findings, facts
    expected = host_mtu - extra
    facts["pod_mtu"] = expected
    fix = "netmend.k8s.calico_mtu"
    where = "host MTU %d (%s) minus the %s overhead %d" % (host_mtu, host_if, encapsulation, extra)
    for name, link in sorted(interfaces.items()):
        if name in TUNNEL_DEVICES:
            facts["tunnels"][name] = link["mtu"]
            tunnel_expected = host_mtu - mtu_core.overhead(TUNNEL_DEVICES[name], spec.ip_family)
            if link["mtu"] > tunnel_expected:
                findings.append(finding(
                    "mtu_mismatch", "error", name, "MTU %d" % link["mtu"], "at most %d" % tunnel_expected,
                    "The tunnel device is larger than %s: encapsulated packets exceed the host MTU and are "
                    "dropped or fragmented." % where, fix=fix))
    veths = {name: link["mtu"] for name, link in interfaces.items() if name.startswith(spec.veth_prefixes)}
    facts["veths"] = _summary(veths)
    too_big = {name: value for name, value in veths.items() if value > expected}
    if too_big:
        findings.append(finding(
            "mtu_mismatch", "error", "pod veths (%d)" % len(too_big),
            "MTU %s on %s" % ("/".join(str(v) for v in sorted(set(too_big.values()))), _names(too_big)),
            "at most %d (%s)" % (expected, where),
            "Pods send packets larger than the path carries: small requests work, large responses hang "
            "(MTU black hole). Fix the CNI MTU and restart the pods on this node.", fix=fix))
    if cni_mtu is not None:
        if cni_mtu > expected:
            findings.append(finding(
                "mtu_mismatch", "error", "CNI config %s" % spec.cni_config, "mtu %d" % cni_mtu, "at most %d (%s)"
                % (expected, where), "New pods get an MTU the path cannot carry.", fix=fix))
        stale = {name: value for name, value in veths.items() if value != cni_mtu and name not in too_big}
        if stale and cni_mtu <= expected:
            findings.append(finding(
                "mtu_mismatch", "warning", "pod veths (%d)" % len(stale),
                "MTU %s on %s" % ("/".join(str(v) for v in sorted(set(stale.values()))), _names(stale)),
                "%d (the CNI config's mtu)" % cni_mtu,
                "These pods started before the CNI MTU changed; restart them to pick it up.", fix=fix))
    return findings, facts


def _names(values, limit=5):
    names = sorted(values)
    return ", ".join(names[:limit]) + (" and %d more" % (len(names) - limit) if len(names) > limit else "")


def _summary(veths):
    counts = {}
    for value in veths.values():
        counts[str(value)] = counts.get(str(value), 0) + 1
    return counts


def _pod_routes(routes, cidr):
    found = []
    for route in routes:
        try:
            dst = ipaddress.ip_network(route["dst"], strict=False)
        except ValueError:
            continue
        if dst.version == cidr.version and dst.prefixlen > 0 and dst.overlaps(cidr):
            found.append((dst, route))
    return found


def _connected_device(routes, address):
    """The device of the on-link (no gateway) route that holds ``address``, longest prefix first."""
    best = None
    for route in routes:
        if route.get("gateway") or route.get("type") not in ("unicast", None) or not route.get("dev"):
            continue
        try:
            dst = ipaddress.ip_network(route["dst"], strict=False)
        except ValueError:
            continue
        if dst.version == address.version and address in dst and (best is None or dst.prefixlen > best[0]):
            best = (dst.prefixlen, route["dev"])
    return best[1] if best else None


def check_routes(routes, peers, tunnel_names=tuple(TUNNEL_DEVICES), veth_prefixes=DEFAULT_VETH_PREFIXES):
    """``route_missing`` / ``route_wrong``: each peer's pod CIDRs must be routed towards that peer.

    A route leads to the peer when it goes through a tunnel device, or via the peer's
    address on the interface that holds it. A blackhole is wrong while the peer is alive.
    """
    findings = []
    for peer in peers:
        for cidr in peer["pod_cidrs"]:
            candidates = _pod_routes(routes, cidr)
            subject = "%s (node %s)" % (cidr, peer["name"])
            if not candidates:
                findings.append(finding(
                    "route_missing", "error" if peer["alive"] else "warning", subject, "no route",
                    "a route via %s" % (", ".join(map(str, peer["addresses"])) or "the node or a tunnel"),
                    "Pods on this node cannot reach pods on %s: the CNI's routing (Calico's BIRD over BGP, "
                    "flanneld) did not install it. Check that the CNI agent runs on both nodes and that BGP "
                    "(TCP 179) passes between them." % peer["name"],
                    fix="restart the CNI agent (calico-node) on both nodes"))
                continue
            for dst, route in candidates:
                problem = _route_problem(route, peer, routes, tunnel_names, veth_prefixes)
                if problem:
                    findings.append(finding(
                        "route_wrong", "error", "%s (node %s)" % (dst, peer["name"]), _describe_route(route),
                        problem, "Traffic to pods on %s goes the wrong way." % peer["name"],
                        fix="restart the CNI agent (calico-node) so it rewrites its routes"))
    return findings


def _route_problem(route, peer, routes, tunnel_names, veth_prefixes):
    kind = route.get("type") or "unicast"
    if kind in DROPPING_ROUTE_TYPES:
        return "not a %s route while node %s is alive" % (kind, peer["name"]) if peer["alive"] else None
    dev = route.get("dev") or ""
    if dev in tunnel_names:
        return None
    gateway = route.get("gateway")
    if dev.startswith(veth_prefixes) or dev == "lo":
        return "a route via %s, not into local device %s" % (_peer_addresses(peer), dev)
    if not gateway:
        return "a route via %s or a tunnel device, not on-link on %s" % (_peer_addresses(peer), dev)
    try:
        gateway_ip = ipaddress.ip_address(gateway)
    except ValueError:
        return "a route via %s" % _peer_addresses(peer)
    if peer["addresses"] and gateway_ip not in peer["addresses"]:
        return "a route via %s (the node), not via %s" % (_peer_addresses(peer), gateway)
    holder = _connected_device(routes, gateway_ip)
    if holder and holder != dev:
        return "a route via %s dev %s (the interface that holds it), not dev %s" % (gateway, holder, dev)
    return None


def _peer_addresses(peer):
    return ", ".join(map(str, peer["addresses"])) or "node %s" % peer["name"]


def _describe_route(route):
    kind = route.get("type") or "unicast"
    text = route["dst"] if kind == "unicast" else "%s %s" % (kind, route["dst"])
    if route.get("gateway"):
        text += " via %s" % route["gateway"]
    if route.get("dev"):
        text += " dev %s" % route["dev"]
    return text


def check_iptables_backends(counts):
    """``iptables_backend_mixed``: rules in both the legacy and the nft backend."""
    totals = {backend: sum(value for value in families.values() if value) for backend, families in counts.items()}
    if not totals.get("legacy") or not totals.get("nft"):
        return []
    return [finding(
        "iptables_backend_mixed", "error", "iptables",
        "%d rules in iptables-legacy, %d in iptables-nft" % (totals["legacy"], totals["nft"]),
        "rules in one backend only",
        "Two components write to different iptables backends (for example kube-proxy in an image with "
        "iptables-legacy on a host that uses nft): each sees only its own rules, and packets pass both in "
        "an order neither expects, a classic silent failure. Make every component use the host's backend.",
        fix="align the iptables mode of kube-proxy and the CNI with the host (kubelet's canary chains tell which)")]


def probe_tcp(addresses, port, timeout, clock=time.monotonic):
    """Connect to every ``address:port`` at once; one ``timeout`` bounds the whole probe.

    Returns ``{address: "open" | "refused" | "timeout" | <error>}``. Only a SYN and, when
    it is answered, the close are sent; no payload.
    """
    results = {}
    selector = selectors.DefaultSelector()
    sockets = []
    try:
        for address in addresses:
            family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
            try:
                sock = socket.socket(family, socket.SOCK_STREAM)
            except OSError as exc:
                results[str(address)] = _connect_error(exc.errno or errno.EAFNOSUPPORT)
                continue
            sockets.append(sock)
            sock.setblocking(False)
            code = sock.connect_ex((str(address), port))
            if code == 0:
                results[str(address)] = "open"
            elif code in (errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EALREADY):
                selector.register(sock, selectors.EVENT_WRITE, str(address))
            else:
                results[str(address)] = _connect_error(code)
        deadline = clock() + timeout
        while selector.get_map():
            left = deadline - clock()
            if left <= 0:
                break
            for key, _events in selector.select(left):
                code = key.fileobj.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                results[key.data] = "open" if code == 0 else _connect_error(code)
                selector.unregister(key.fileobj)
        for key in list(selector.get_map().values()):
            results[key.data] = "timeout"
    finally:
        selector.close()
        for sock in sockets:
            sock.close()
    return results


def _connect_error(code):
    return "refused" if code == errno.ECONNREFUSED else (os.strerror(code).lower() or "error %d" % code)


def check_bgp(results, port=BGP_PORT, timeout=1.0):
    """``bgp_unreachable``: a peer whose BGP port did not accept a connection."""
    findings = []
    for address, state in sorted(results.items()):
        if state == "open":
            continue
        detail = "no answer within %ss" % timeout if state == "timeout" else state
        findings.append(finding(
            "bgp_unreachable", "error", "%s:%d" % (address, port), "TCP %d: %s" % (port, detail), "TCP %d open" % port,
            "BIRD on this node cannot reach its BGP peer, so routes to that node's pods are not exchanged "
            "(calicoctl node status shows the session down). A firewall or security group blocking TCP %d, "
            "or calico-node not running on the peer, are the usual causes." % port,
            fix="allow TCP %d between nodes; check calico-node on the peer" % port))
    return findings


def check_tunnels(interfaces, expected):
    """``tunnel_down``: an expected tunnel device missing, or any known tunnel device administratively down."""
    findings = []
    for name in sorted(set(expected) | {name for name in interfaces if name in TUNNEL_DEVICES}):
        link = interfaces.get(name)
        if link is None:
            findings.append(finding(
                "tunnel_down", "error", name, "missing", "present and up",
                "The CNI's configuration needs %s, but the node has no such device, so pod traffic to other "
                "nodes is not encapsulated. The CNI agent creates it when it starts." % name,
                fix="restart the CNI agent (calico-node) on this node"))
        elif not link["up"]:
            findings.append(finding(
                "tunnel_down", "error", name, "administratively down", "up",
                "Pod traffic to other nodes through %s is dropped while it is down." % name,
                fix="ip link set %s up, then find who set it down" % name))
    return findings


# --------------------------------------------------------------------------- one node, end to end


def split_nodes(spec, is_local):
    """The cluster's nodes other than this one: not named ``node_name``, holding no local address."""
    if spec.node_name:
        return [node for node in spec.nodes if node["name"] != spec.node_name]
    return [node for node in spec.nodes if not any(is_local(address) for address in node["addresses"])]


def diagnose(spec, reader=None, clock=time.monotonic):
    """Run the selected checks on this node. Returns ``{findings, facts, skipped}``; never changes anything."""
    reader = reader or NodeReader()
    started = clock()
    checks = set(spec.checks)
    findings = []
    facts = {"node": spec.node_name, "kernel": reader.kernel()}
    skipped = {}
    # The BGP probe can only end by its timeout when a peer is silent: run it while the other checks read.
    bgp = {}
    prober = None
    if "bgp_unreachable" in checks and spec.bgp_peers:
        prober = threading.Thread(target=lambda: bgp.update(probe_tcp(spec.bgp_peers, spec.bgp_port,
                                                                      spec.bgp_timeout)), daemon=True)
        prober.start()
    interfaces = reader.interfaces()
    facts["interfaces"] = len(interfaces)
    needs_routes = checks & {"routes", "ip_forward", "rp_filter"}
    routes = reader.routes() if needs_routes else []
    peers = split_nodes(spec, reader.is_local)
    facts["peers"] = [peer["name"] for peer in peers]
    if "arp_gc_thresh" in checks:
        neighbours = reader.neighbours()
        thresholds = reader.gc_thresh()
        if spec.gc_thresh:
            thresholds = {"ipv4": spec.gc_thresh, "ipv6": spec.gc_thresh}
        elif not any(thresholds.values()):
            skipped["arp_gc_thresh"] = ("gc_thresh* are kernel-wide and not readable in this network namespace: "
                                        "pass gc_thresh")
        facts["neighbours"] = neighbours
        facts["gc_thresh"] = {family: list(value) if value else None for family, value in thresholds.items()}
        node_count = len(spec.nodes) if spec.nodes else None
        findings += check_arp(neighbours, thresholds, node_count, spec.pod_count)
    if "ip_forward" in checks:
        forwarding = {"ipv4": reader.sysctl("net/ipv4/ip_forward"),
                      "ipv6": reader.sysctl("net/ipv6/conf/all/forwarding")}
        facts["forwarding"] = forwarding
        findings += check_ip_forward(forwarding, routed_families(spec.nodes, routes))
    if "rp_filter" in checks:
        carriers = {name: "tunnel traffic" for name in interfaces if name in TUNNEL_DEVICES}
        for peer in peers:
            for cidr in peer["pod_cidrs"]:
                for _dst, route in _pod_routes(routes, cidr):
                    if route.get("dev") and route["dev"] not in carriers:
                        carriers[route["dev"]] = "pod traffic to node %s" % peer["name"]
        rp_all = reader.sysctl("net/ipv4/conf/all/rp_filter")
        per_interface = {name: reader.sysctl("net/ipv4/conf/%s/rp_filter" % name) for name in carriers}
        facts["rp_filter"] = dict(per_interface, all=rp_all)
        findings += check_rp_filter(rp_all, per_interface, carriers)
    if "tcp_tw_recycle" in checks:
        value = reader.sysctl("net/ipv4/tcp_tw_recycle")
        facts["tcp_tw_recycle"] = value
        findings += check_tw_recycle(value, facts["kernel"])
    if "conntrack_full" in checks:
        count = reader.sysctl("net/netfilter/nf_conntrack_count")
        maximum = spec.conntrack_max or reader.sysctl("net/netfilter/nf_conntrack_max")
        facts["conntrack"] = {"count": count, "max": maximum}
        if count is None:
            skipped["conntrack_full"] = "no nf_conntrack_count (connection tracking not loaded)"
        findings += check_conntrack(count, maximum)
    if "mtu_mismatch" in checks:
        cni_mtu = _cni_mtu(spec.cni_config, skipped)
        host_mtu, host_if = reader.host_mtu(spec.interface_pattern)
        mtu_findings, facts["mtu"] = check_mtu(interfaces, spec, cni_mtu, host_mtu, host_if)
        findings += mtu_findings
    if "routes" in checks:
        facts["routes_checked"] = sum(len(peer["pod_cidrs"]) for peer in peers)
        findings += check_routes(routes, peers, veth_prefixes=spec.veth_prefixes)
    if "iptables_backend_mixed" in checks:
        try:
            counts = reader.iptables_rules()
        except DoctorError as exc:  # not root: reading iptables needs CAP_NET_ADMIN
            skipped["iptables_backend_mixed"] = str(exc)
            counts = {}
        facts["iptables_rules"] = counts
        if counts and all(value is None for families in counts.values() for value in families.values()):
            skipped["iptables_backend_mixed"] = "neither iptables-legacy-save nor iptables-nft-save is installed"
        findings += check_iptables_backends(counts)
    if "tunnel_down" in checks:
        findings += check_tunnels(interfaces, spec.expected_tunnels)
    if prober:
        prober.join()
        facts["bgp"] = bgp
        findings += check_bgp(bgp, spec.bgp_port, spec.bgp_timeout)
    facts["duration_s"] = round(clock() - started, 4)
    return {"findings": sort_findings(findings), "facts": facts, "skipped": skipped}


def _cni_mtu(path, skipped):
    if not path:
        return None
    if not os.path.exists(path):
        skipped["mtu_mismatch.cni_config"] = "%s does not exist" % path
        return None
    try:
        return mtu_core.config_mtu(mtu_core.read_config(path), path)
    except mtu_core.MtuError as exc:
        raise DoctorError(str(exc)) from None


# --------------------------------------------------------------------------- cluster level (pure, on API objects)

CALICO_TUNNELS = {"ipipMode": ("ipip", "tunl0"), "vxlanMode": ("vxlan", "vxlan.calico")}
ENCAPSULATING_MODES = ("Always", "CrossSubnet")


def _summaries(objects, summary):
    """API objects (with ``metadata``) made into their kube_lite summary; summaries as they are."""
    return [summary(obj) if "metadata" in obj else obj for obj in objects]


def nodes_from_api(nodes):
    """The module's ``nodes`` option from Node objects or their ``kube_lite.node_summary``: name,
    InternalIPs, pod CIDRs, Ready."""
    return [{"name": node["name"], "addresses": node["addresses"], "pod_cidrs": node["pod_cidrs"],
             "alive": node["ready"] == "True"} for node in _summaries(nodes, kube_lite.node_summary)]


def calico_expectations(ippools):
    """From Calico IPPools: the encapsulation the node checks expect, the tunnels, and whether BGP carries routes.

    BGP is in use unless every enabled pool encapsulates with VXLAN only.
    """
    encapsulations, tunnels = [], []
    pools = [pool for pool in ippools if not (pool.get("spec") or {}).get("disabled")]
    for pool in pools:
        spec = pool.get("spec") or {}
        for field, (encapsulation, device) in CALICO_TUNNELS.items():
            if spec.get(field) in ENCAPSULATING_MODES:
                encapsulations.append(encapsulation)
                if device not in tunnels:
                    tunnels.append(device)
    vxlan_only = bool(pools) and all((pool.get("spec") or {}).get("vxlanMode") in ENCAPSULATING_MODES for pool in pools)
    # the largest overhead wins when pools disagree: a pod may use either
    encapsulation = max(set(encapsulations), key=lambda name: mtu_core.OVERHEAD[name]["ipv4"], default="none")
    return {"pools": len(pools), "encapsulation": encapsulation if pools else "auto", "expected_tunnels": tunnels,
            "bgp": bool(pools) and not vxlan_only}


def cni_agent_findings(nodes, agent_pods, agent_name="calico-node"):
    """``cni_agent_missing``: a Ready node without a Ready CNI agent pod (when the CNI runs anywhere)."""
    if not agent_pods:
        return []
    agent_pods = _summaries(agent_pods, kube_lite.pod_summary)
    ready_on = {pod["node"] for pod in agent_pods if pod["ready"]}
    present_on = {pod["node"] for pod in agent_pods}
    findings = []
    for node in nodes:
        if not node["alive"] or node["name"] in ready_on:
            continue
        observed = "%s pod not Ready" % agent_name if node["name"] in present_on else "no %s pod" % agent_name
        findings.append(dict(finding(
            "cni_agent_missing", "error", node["name"], observed, "a Ready %s pod" % agent_name,
            "Without its CNI agent the node gets no routes to other nodes' pods (no BIRD, no BGP) and new pods "
            "on it get no network. Look at the DaemonSet's pod on this node (kubectl describe, logs), its "
            "tolerations and node selector.", fix="kubectl -n <namespace> describe pod -l k8s-app=%s" % agent_name),
            node=node["name"]))
    return findings


def dns_findings(slices, service="kube-system/kube-dns"):
    """``dns_unhealthy``: the DNS Service's EndpointSlices have no, or some not, ready endpoints."""
    endpoints = [endpoint for item in slices for endpoint in item.get("endpoints") or []]
    ready = [endpoint for endpoint in endpoints if (endpoint.get("conditions") or {}).get("ready") is not False]
    if ready and len(ready) == len(endpoints):
        return []
    severity = "error" if not ready else "warning"
    return [dict(finding(
        "dns_unhealthy", severity, service, "%d of %d DNS endpoints ready" % (len(ready), len(endpoints)),
        "every endpoint ready (and at least one)",
        "Every connection by name starts with a lookup: with DNS pods down or too few, pods fail or stall "
        "at random. Check the CoreDNS pods, and run enough replicas for the cluster (the seed's 'do you have "
        "enough DNS pods?').", fix="kubectl -n kube-system rollout status deployment/coredns"), node="")]


def mtu_inconsistent_findings(results):
    """``mtu_inconsistent``: nodes whose pod MTU (host MTU minus overhead) differs. ``results``: node -> facts.

    A pod veth that disagrees with its own node is that node's ``mtu_mismatch``.
    """
    by_mtu = {}
    for node, facts in sorted(results.items()):
        pod_mtu = ((facts or {}).get("mtu") or {}).get("pod_mtu")
        if pod_mtu:
            by_mtu.setdefault(int(pod_mtu), []).append(node)
    if len(by_mtu) < 2:
        return []
    observed = "; ".join("MTU %d on %s" % (value, ", ".join(nodes)) for value, nodes in sorted(by_mtu.items()))
    return [dict(finding(
        "mtu_inconsistent", "warning", "pod MTU across nodes", observed, "one pod MTU on every node",
        "The nodes' uplinks differ, so the right pod MTU differs per node, but a pod network has one MTU: "
        "traffic from a node with the larger one black-holes large packets on its way to the others. Use the "
        "smallest (%d) for the cluster." % min(by_mtu), fix="netmend.k8s.calico_mtu"), node="")]
