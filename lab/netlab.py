"""Network-namespace topologies for the lab tests: nodes, Calico-wired pods, an
underlay (bridge or VXLAN) between nodes, routed hosts (the "VPN" host), MTU per link.

Standard library only; runs as root and drives ``ip``, ``bridge``, ``iptables`` and
``ip netns exec``.  Every namespace a :class:`Netlab` creates is named
``<base><pid>-<n>-<name>`` (e.g. ``nm4711-3-node1``), so parallel test runs never
collide, and :meth:`Netlab.close` removes all of them, even when the test raised.
Links are only ever created inside those namespaces (veth peers are created straight
into their target namespace), so deleting the namespaces deletes every link; the root
namespace is never touched.  :func:`leftovers` lists whatever is still present.

Pods are wired the way Calico wires them: a veth pair whose host end is
``cali`` + sha1("<namespace>.<pod>")[:11] with MAC ``ee:ee:ee:ee:ee:ee``, ``proxy_arp``
on and a /32 (/128) route to the pod in the node; in the pod ``eth0`` carries the pod
address and the default route goes ``via 169.254.1.1 dev eth0 onlink`` (IPv6: via
``fe80::ecee:eeff:feee:eeee``, the link-local address of that MAC).  The pod also gets a
permanent neighbour entry for the gateway, because proxy ARP only answers for
addresses the node has a route to, and a lab node has no default route.

Pods may be dual stack (pass a list of addresses); the underlay carries IPv4 and
IPv6, so pods, nodes and routed hosts reach each other over both.

There is no ``ping`` binary on the lab machine: :meth:`Host.ping` sends ICMP echo from a
raw socket (optionally with don't-fragment set), :meth:`Host.icmp_capture` records the
source addresses of ICMP echo requests arriving at a host, and :meth:`Host.udp_echo` runs
a UDP server that reports each peer address it sees.
"""
from __future__ import annotations

import hashlib
import ipaddress
import itertools
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time

LAB_BASE = "nm"
NETNS_DIR = "/run/netns"
GATEWAY4 = "169.254.1.1"
GATEWAY6 = "fe80::ecee:eeff:feee:eeee"
HOST_VETH_MAC = "ee:ee:ee:ee:ee:ee"
VXLAN_DEVICE = "vxlan.calico"
VXLAN_OVERHEAD = 50
VXLAN_PORT = 4789
VXLAN_VNI = 4096
IFNAMSIZ = 15
DEFAULT_TIMEOUT = 30

_COUNTER = itertools.count(1)


class NetlabError(Exception):
    """A lab command failed; the message carries the command and its stderr."""


def calico_veth_name(name, namespace="default", prefix="cali"):
    """Host-side veth name Calico derives for a pod: prefix + sha1("ns.name")[:11]."""
    return prefix + hashlib.sha1(f"{namespace}.{name}".encode()).hexdigest()[:11]


def _run(argv, input=None, check=True, timeout=DEFAULT_TIMEOUT, env=None):
    proc = subprocess.run(argv, input=input, capture_output=True, text=True,
                          timeout=timeout, env=env, check=False)
    if check and proc.returncode != 0:
        detail = proc.stderr.strip() or proc.stdout.strip()
        if input:
            detail += f"\n--- input ---\n{input}"
        raise NetlabError(f"{' '.join(argv)} exited {proc.returncode}: {detail}")
    return proc


def _batch(tool, lines, netns=None):
    """Run many ``ip``/``bridge`` commands in one process (stops at the first error)."""
    if not lines:
        return
    argv = [tool] + (["-n", netns] if netns else []) + ["-batch", "-"]
    _run(argv, input="\n".join(lines) + "\n")


def _namespaces():
    try:
        return sorted(os.listdir(NETNS_DIR))
    except FileNotFoundError:
        return []


def _matcher(prefix):
    # "nm" alone matches every lab's names (nm<pid>-<n>-...); a longer prefix such as
    # a session's "nm4711-" or an instance's "nm4711-3-" is matched literally.
    if prefix == LAB_BASE:
        return re.compile(re.escape(prefix) + r"\d+-\d+-").match
    return lambda name: name.startswith(prefix)


def leftovers(prefix=LAB_BASE):
    """Lab namespaces and root-namespace links whose names start with ``prefix``.

    Returns a list of strings ``netns:<name>`` / ``link:<name>``; empty when clean.
    """
    match = _matcher(prefix)
    found = [f"netns:{name}" for name in _namespaces() if match(name)]
    links = json.loads(_run(["ip", "-j", "link", "show"]).stdout or "[]")
    found += [f"link:{link['ifname']}" for link in links if match(link["ifname"])]
    return found


def session_prefix(base=LAB_BASE):
    """Prefix shared by every lab this process creates (for a session-end check)."""
    return f"{base}{os.getpid()}-"


def reap_stale(base=LAB_BASE):
    """Delete lab namespaces left by processes that no longer exist; returns their names."""
    stale = []
    for name in _namespaces():
        found = re.match(re.escape(base) + r"(\d+)-\d+-", name)
        if found and not os.path.exists(f"/proc/{found.group(1)}"):
            stale.append(name)
    _batch("ip", [f"netns del {name}" for name in stale])
    return stale


# Small programs run inside a namespace with the same interpreter as the tests.
_PING_SCRIPT = r"""
import json, os, select, socket, struct, sys, time
dst, count, size, df, timeout = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1", float(sys.argv[5])
v6 = ":" in dst
def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    s = (s >> 16) + (s & 0xffff)
    s += s >> 16
    return ~s & 0xffff
if v6:
    sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    sock.setsockopt(socket.IPPROTO_IPV6, 23, 2 if df else 0)  # IPV6_MTU_DISCOVER: DO / DONT
    req_type, rep_type = 128, 129
else:
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    sock.setsockopt(socket.IPPROTO_IP, 10, 2 if df else 0)  # IP_MTU_DISCOVER: DO / DONT
    req_type, rep_type = 8, 0
ident = os.getpid() & 0xffff
results = []
for seq in range(1, count + 1):
    payload = (b"netlab" * (size // 6 + 1))[:size]
    header = struct.pack("!BBHHH", req_type, 0, 0, ident, seq)
    packet = header + payload
    if not v6:  # the kernel fills in the ICMPv6 checksum
        packet = struct.pack("!BBHHH", req_type, 0, csum(packet), ident, seq) + payload
    start = time.monotonic()
    result = {"seq": seq, "ok": False}
    try:
        sock.sendto(packet, (dst, 0))
    except OSError as err:
        result["error"] = err.strerror
        results.append(result)
        continue
    deadline = start + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([sock], [], [], left)[0]:
            result["error"] = "timeout"
            break
        data, peer = sock.recvfrom(65535)
        icmp = data if v6 else data[(data[0] & 0x0f) * 4:]
        if len(icmp) < 8:
            continue
        rtype, _, _, rid, rseq = struct.unpack("!BBHHH", icmp[:8])
        if rtype == rep_type and rid == ident and rseq == seq:
            result.update(ok=True, rtt_ms=round((time.monotonic() - start) * 1000, 3), src=peer[0], size=len(icmp) - 8)
            break
    results.append(result)
print(json.dumps(results))
"""

_ICMP_CAPTURE_SCRIPT = r"""
import socket, sys
v6 = sys.argv[1] == "6"
if v6:
    sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
else:
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
print("ready", flush=True)
while True:
    data, peer = sock.recvfrom(65535)
    icmp = data if v6 else data[(data[0] & 0x0f) * 4:]
    if icmp and icmp[0] == (128 if v6 else 8):
        print(peer[0], len(data), flush=True)
"""

_UDP_ECHO_SCRIPT = r"""
import socket, sys
family = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
sock = socket.socket(family, socket.SOCK_DGRAM)
sock.bind((sys.argv[1], int(sys.argv[2])))
print("ready", flush=True)
while True:
    data, peer = sock.recvfrom(65535)
    print(peer[0], peer[1], data.decode(errors="replace").replace("\n", " "), flush=True)
    sock.sendto(data, peer)
"""

_UDP_SEND_SCRIPT = r"""
import socket, sys
dst, port, payload, timeout = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode(), float(sys.argv[4])
sock = socket.socket(socket.AF_INET6 if ":" in dst else socket.AF_INET, socket.SOCK_DGRAM)
sock.settimeout(timeout)
sock.sendto(payload, (dst, port))
try:
    data, peer = sock.recvfrom(65535)
    print(peer[0], data.decode(errors="replace"))
except socket.timeout:
    sys.exit(1)
"""


class Listener:
    """A line-printing server started in a namespace; ``lines()`` collects its output."""

    def __init__(self, host, argv):
        self.host = host
        self.proc = host.popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        first = self.proc.stdout.readline().strip()
        if first != "ready":
            self.stop()
            raise NetlabError(f"listener in {host.netns} did not start: {first} {self.proc.stderr.read()}")
        self._queue = queue.Queue()
        self._lines = []
        self.proc.netlab_reader = threading.Thread(target=self._pump, daemon=True)
        self.proc.netlab_reader.start()

    def _pump(self):
        for line in self.proc.stdout:
            self._queue.put(line.rstrip("\n"))

    def lines(self, wait=0.0, count=None):
        """Output lines so far; waits up to ``wait`` seconds for ``count`` lines
        (for any new line when ``count`` is None)."""
        deadline = time.monotonic() + wait
        while True:
            try:
                self._lines.append(self._queue.get(timeout=max(deadline - time.monotonic(), 0.001)))
            except queue.Empty:
                break
            if count is not None and len(self._lines) >= count:
                break
        while not self._queue.empty():
            self._lines.append(self._queue.get())
        return list(self._lines)

    def sources(self, wait=0.0, count=None):
        """Source addresses seen so far (first field of each line)."""
        return [line.split()[0] for line in self.lines(wait, count)]

    def stop(self):
        self.host.lab.kill(self.proc)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


class Host:
    """One network namespace: a node, a pod, a routed host or the underlay switch."""

    def __init__(self, lab, name, netns, kind):
        self.lab = lab
        self.name = name
        self.netns = netns
        self.kind = kind
        self.node = None        # pods, hosts: the node Host they hang off
        self.ips = []           # addresses (no prefix): pods, hosts; nodes: underlay ones
        self.mtu = None         # pods, hosts: MTU of their eth0 link
        self.host_veth = None   # pods: node-side veth name (cali...)
        self.pod_name = None    # pods: Kubernetes name and namespace
        self.namespace = None
        self.subnet = None      # hosts: their link's subnet, the node's address on it
        self.gateway = None     # and the node-side interface name
        self.node_ifname = None
        self.routed = []        # pods, hosts: [(destination, IP version)] peers route to their node

    def __repr__(self):
        return f"Host({self.kind} {self.name} netns={self.netns})"

    @property
    def ip(self):
        """First address (pods, routed hosts, nodes once connected)."""
        return self.ips[0] if self.ips else None

    def run(self, argv, check=True, input=None, timeout=DEFAULT_TIMEOUT, env=None):
        """Run ``argv`` inside the namespace; returns CompletedProcess (text)."""
        return _run(["ip", "netns", "exec", self.netns, *argv], input=input, check=check,
                    timeout=timeout, env=env)

    def popen(self, argv, **kwargs):
        """Start ``argv`` inside the namespace; the lab kills it (by PID) at teardown."""
        proc = subprocess.Popen(["ip", "netns", "exec", self.netns, *argv], **kwargs)
        self.lab.processes.append(proc)
        return proc

    def ip_cmd(self, *args, check=True):
        """``ip -n <netns> args...``"""
        return _run(["ip", "-n", self.netns, *args], check=check)

    def batch(self, lines):
        """Several ``ip`` commands in one process, inside this namespace."""
        _batch("ip", lines, self.netns)

    def sysctl(self, settings):
        """Write ``{"net/ipv4/ip_forward": 1, ...}`` under /proc/sys in this namespace."""
        script = []
        for key, value in settings.items():
            if not re.fullmatch(r"[\w.\-/]+", key) or not re.fullmatch(r"[\w.\-]+", str(value)):
                raise NetlabError(f"bad sysctl {key}={value}")
            script.append(f"echo {value} > /proc/sys/{key}")
        self.run(["sh", "-ec", "\n".join(script)])

    def read_sysctl(self, key):
        return self.run(["cat", f"/proc/sys/{key}"]).stdout.strip()

    def links(self):
        """``ip -j link`` of the namespace, keyed by interface name."""
        return {link["ifname"]: link for link in json.loads(self.ip_cmd("-j", "link", "show").stdout)}

    @property
    def addresses(self):
        """``{ifname: ["10.0.0.1/32", ...]}`` for every interface with an address."""
        out = json.loads(self.ip_cmd("-j", "addr", "show").stdout)
        return {link["ifname"]: [f"{a['local']}/{a['prefixlen']}" for a in link.get("addr_info", [])]
                for link in out if link.get("addr_info")}

    def routes(self, family="4"):
        return json.loads(self.ip_cmd(f"-{family}", "-j", "route", "show").stdout)

    def link_mtu(self, ifname):
        return int(self.links()[ifname]["mtu"])

    def set_mtu(self, ifname, mtu):
        self.ip_cmd("link", "set", "dev", ifname, "mtu", str(mtu))

    def iptables(self, *args, family="4"):
        tool = "iptables" if family == "4" else "ip6tables"
        return self.run([tool, "-w", *args])

    def drop_frag_needed(self, chains=("OUTPUT", "FORWARD")):
        """Drop ICMP "fragmentation needed" / ICMPv6 "packet too big" leaving or
        crossing this namespace: with a smaller MTU further on, that makes a PMTU
        black hole."""
        for chain in chains:
            self.iptables("-A", chain, "-p", "icmp", "--icmp-type", "fragmentation-needed", "-j", "DROP")
            self.iptables("-A", chain, "-p", "ipv6-icmp", "--icmpv6-type", "packet-too-big", "-j", "DROP",
                          family="6")

    def ping(self, dst, count=1, size=56, df=False, timeout=2.0):
        """ICMP echo from this namespace; returns a list of per-packet dicts
        (``ok``, ``rtt_ms``, ``src`` or ``error``).  ``size`` is the ICMP payload."""
        out = self.run([sys.executable, "-c", _PING_SCRIPT, str(dst), str(count), str(size),
                        "1" if df else "0", str(timeout)], timeout=count * timeout + 10).stdout
        return json.loads(out)

    def reaches(self, dst, size=56, df=False, timeout=2.0):
        """True when one echo to ``dst`` is answered."""
        return self.ping(dst, 1, size, df, timeout)[0]["ok"]

    def icmp_capture(self, family="4"):
        """Start recording ICMP echo requests arriving here; ``.sources(wait)`` lists
        their source addresses.  Use as a context manager or call ``.stop()``."""
        return Listener(self, [sys.executable, "-u", "-c", _ICMP_CAPTURE_SCRIPT, family])

    def udp_echo(self, port=9999, bind="0.0.0.0"):
        """UDP echo server; ``.lines(wait)`` gives ``"<peer ip> <peer port> <payload>"``
        per datagram, ``.sources(wait)`` the peer addresses."""
        return Listener(self, [sys.executable, "-u", "-c", _UDP_ECHO_SCRIPT, bind, str(port)])

    def udp_send(self, dst, port=9999, payload="netlab", timeout=2.0):
        """Send one datagram and wait for the echo; returns the replying address or None."""
        proc = self.run([sys.executable, "-c", _UDP_SEND_SCRIPT, str(dst), str(port), payload, str(timeout)],
                        check=False, timeout=timeout + 10)
        return proc.stdout.split()[0] if proc.returncode == 0 and proc.stdout else None


class Underlay:
    """The link between connected nodes (what :meth:`Netlab.connect_nodes` returns)."""

    def __init__(self, kind, switch, subnet, mtu):
        self.kind = kind
        self.switch = switch          # the Host holding the bridge
        self.subnet = subnet
        self.mtu = mtu
        self.nodes = []
        self.ips = {}                 # node name -> underlay address
        self.ips6 = {}                # node name -> underlay IPv6 address
        self.ifname = {}              # node name -> underlay interface in the node
        self.tunnel_ips = {}          # vxlan: node name -> VTEP address on vxlan.calico
        self.tunnel_ips6 = {}
        self.tunnel_macs = {}
        self.device = VXLAN_DEVICE if kind == "vxlan" else None
        self.overlay_mtu = mtu - VXLAN_OVERHEAD if kind == "vxlan" else mtu

    def next_hop(self, node, version=4):
        """(gateway, device or None for the underlay link) other nodes use to reach ``node``."""
        if self.kind == "vxlan":
            return (self.tunnel_ips if version == 4 else self.tunnel_ips6)[node.name], VXLAN_DEVICE
        return (self.ips if version == 4 else self.ips6)[node.name], None


class Netlab:
    """A set of namespaces torn down together; use as a context manager.

    ``prefix`` is the base of the names; the instance's own prefix
    (``self.prefix``) adds this process's PID and a counter: ``nm4711-3-``."""

    def __init__(self, prefix=LAB_BASE):
        self.prefix = f"{session_prefix(prefix)}{next(_COUNTER)}-"
        self.hosts = {}
        self.processes = []
        self.underlays = []
        self._routes = {}   # node name -> set of route specs already installed
        self._closed = False

    # -- lifecycle -------------------------------------------------------------
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def kill(self, proc):
        if proc.poll() is None:
            try:
                os.kill(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait()
        reader = getattr(proc, "netlab_reader", None)
        if reader:  # let it drain to EOF before its pipe is closed
            reader.join(timeout=5)
        for stream in (proc.stdout, proc.stderr, proc.stdin):
            if stream:
                stream.close()

    def close(self):
        """Kill the lab's processes, then delete every namespace (and so every link)."""
        if self._closed:
            return
        self._closed = True
        for proc in self.processes:
            self.kill(proc)
        names = [name for name in _namespaces() if name.startswith(self.prefix)]
        for name in names:
            # Anything still running in a lab namespace was started by a test in it.
            pids = _run(["ip", "netns", "pids", name], check=False).stdout.split()
            for pid in pids:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass
        _batch("ip", [f"netns del {name}" for name in names])

    # -- building blocks -------------------------------------------------------
    def _netns_name(self, name):
        if not re.fullmatch(r"[A-Za-z0-9][\w.\-]*", name):
            raise NetlabError(f"bad lab name {name!r}")
        return self.prefix + name

    def _new(self, name, kind):
        if name in self.hosts:
            raise NetlabError(f"{name!r} already exists in this lab")
        host = Host(self, name, self._netns_name(name), kind)
        _run(["ip", "netns", "add", host.netns])
        self.hosts[name] = host
        return host

    def add_node(self, name):
        """A node: lo up, IPv4/IPv6 forwarding on, rp_filter loose."""
        node = self._new(name, "node")
        node.batch(["link set lo up"])
        node.sysctl({
            "net/ipv4/ip_forward": 1,
            "net/ipv4/conf/all/rp_filter": 2,
            "net/ipv4/conf/default/rp_filter": 2,
            "net/ipv6/conf/all/forwarding": 1,
            # no DAD, so the cali veth's fe80 gateway address is usable at once
            "net/ipv6/conf/default/accept_dad": 0,
        })
        self._routes[name] = set()
        return node

    def add_pod(self, node, name, ip, namespace="default", mtu=1500, prefix_len=None):
        """A pod wired to ``node`` like Calico does; ``ip`` may be a list (dual stack).

        ``prefix_len`` defaults to 32 (IPv4) / 128 (IPv6)."""
        node = self._host(node)
        ips = [ip] if isinstance(ip, str) else list(ip)
        addrs = [ipaddress.ip_address(a) for a in ips]
        veth = calico_veth_name(name, namespace)
        pod = self._new(f"pod.{namespace}.{name}", "pod")
        pod.node, pod.host_veth, pod.ips, pod.mtu = node, veth, [str(a) for a in addrs], mtu
        pod.pod_name, pod.namespace = name, namespace
        pod.routed = [(f"{a}/{a.max_prefixlen}", a.version) for a in addrs]
        node_lines = [
            f"link add {veth} address {HOST_VETH_MAC} mtu {mtu} type veth peer name eth0 mtu {mtu} netns {pod.netns}",
            f"link set {veth} up",
        ]
        pod_lines = ["link set lo up", "link set eth0 up"]
        for addr in addrs:
            full = prefix_len or addr.max_prefixlen
            node_lines.append(f"route replace {addr}/{addr.max_prefixlen} dev {veth} scope link")
            if addr.version == 4:
                pod_lines += [f"addr add {addr}/{full} dev eth0",
                              f"neigh replace {GATEWAY4} lladdr {HOST_VETH_MAC} dev eth0 nud permanent",
                              f"route replace default via {GATEWAY4} dev eth0 onlink"]
            else:
                pod_lines += [f"addr add {addr}/{full} dev eth0 nodad",
                              f"neigh replace {GATEWAY6} lladdr {HOST_VETH_MAC} dev eth0 nud permanent",
                              f"route replace default via {GATEWAY6} dev eth0"]
        node.batch(node_lines)
        pod.batch(pod_lines)
        node.sysctl({f"net/ipv4/conf/{veth}/proxy_arp": 1, f"net/ipv4/neigh/{veth}/proxy_delay": 0})
        self._sync_routes()
        return pod

    def add_host(self, name, behind, subnet="10.11.0.0/24", mtu=1500, default_route=True):
        """A routed host on its own link behind ``behind``: the node gets the subnet's
        first address (``host.gateway``, node side link ``host.node_ifname``), the host
        the second.  Other connected nodes route the subnet via ``behind``.

        With ``default_route=False`` the host only knows its own subnet, like a VPN
        peer that has no route back to the pod network: pod traffic reaches it but is
        only answered when the node source-NATs it to ``host.gateway``."""
        node = self._host(behind)
        net = ipaddress.ip_network(subnet)
        gw_ip, host_ip = net[1], net[2]
        host = self._new(name, "host")
        host.node, host.ips, host.mtu, host.subnet = node, [str(host_ip)], mtu, str(net)
        link = ("h-" + name)[:IFNAMSIZ]
        host.node_ifname = link
        host.routed = [(str(net), net.version)]
        node.batch([
            f"link add {link} mtu {mtu} type veth peer name eth0 mtu {mtu} netns {host.netns}",
            f"addr add {gw_ip}/{net.prefixlen} dev {link}" + (" nodad" if net.version == 6 else ""),
            f"link set {link} up",
        ])
        host.batch([
            "link set lo up",
            f"addr add {host_ip}/{net.prefixlen} dev eth0" + (" nodad" if net.version == 6 else ""),
            "link set eth0 up",
        ] + ([f"route replace default via {gw_ip} dev eth0"] if default_route else []))
        host.gateway = str(gw_ip)
        self._sync_routes()
        return host

    def connect_nodes(self, nodes, kind="bridge", subnet="192.168.200.0/24", mtu=1500,
                      tunnel_subnet="172.30.0.0/24", subnet6="fd00:c0a8:c800::/64",
                      tunnel_subnet6="fd00:ac1e::/64"):
        """Join ``nodes`` with a bridge in a separate "switch" namespace (node side
        ``eth0``, ``eth1``... for the node's first, second... underlay, port ``p<i>`` in
        the switch) and give node ``i`` host ``i + 1`` of ``subnet`` and ``subnet6``.
        For ``kind="vxlan"`` a ``vxlan.calico`` device (MTU ``mtu - 50``, VTEP
        addresses from ``tunnel_subnet``/``tunnel_subnet6``, static neighbour and FDB
        entries like Calico's) runs over it.  Each node then routes the other nodes'
        pods and hosts via the peer (IPv6 ones too).  Returns the :class:`Underlay`."""
        if kind not in ("bridge", "vxlan"):
            raise NetlabError(f"unknown underlay kind {kind!r} (bridge or vxlan)")
        nodes = [self._host(n) for n in nodes]
        if kind == "vxlan" and any(u.kind == "vxlan" and n in u.nodes for u in self.underlays for n in nodes):
            raise NetlabError(f"a node can be on one vxlan underlay only ({VXLAN_DEVICE})")
        net, net6 = ipaddress.ip_network(subnet), ipaddress.ip_network(subnet6)
        tunnels, tunnels6 = ipaddress.ip_network(tunnel_subnet), ipaddress.ip_network(tunnel_subnet6)
        switch = self._new(f"switch{len(self.underlays)}", "switch")
        underlay = Underlay(kind, switch, str(net), mtu)
        # The switch side is enslaved and up before the node side comes up, so the
        # bridge enables each port as soon as its carrier appears.
        switch_lines = ["link set lo up", f"link add br0 mtu {mtu} type bridge", "link set br0 up"]
        for index, node in enumerate(nodes):
            ifname = f"eth{sum(1 for u in self.underlays if node in u.nodes)}"
            switch_lines += [f"link add p{index} mtu {mtu} type veth peer name {ifname} mtu {mtu} netns {node.netns}",
                             f"link set p{index} master br0", f"link set p{index} up"]
            underlay.nodes.append(node)
            underlay.ifname[node.name] = ifname
            underlay.ips[node.name] = str(net[index + 1])
            underlay.ips6[node.name] = str(net6[index + 1])
            node.ips += [underlay.ips[node.name], underlay.ips6[node.name]]
            if kind == "vxlan":
                underlay.tunnel_ips[node.name] = str(tunnels[index + 1])
                underlay.tunnel_ips6[node.name] = str(tunnels6[index + 1])
                underlay.tunnel_macs[node.name] = f"02:6e:6d:{len(self.underlays):02x}:{index // 256:02x}:{index % 256:02x}"
        switch.batch(switch_lines)
        for node in nodes:
            ifname, address = underlay.ifname[node.name], underlay.ips[node.name]
            lines = [f"addr add {address}/{net.prefixlen} dev {ifname}",
                     f"addr add {underlay.ips6[node.name]}/{net6.prefixlen} dev {ifname} nodad",
                     f"link set {ifname} up"]
            fdb = []
            if kind == "vxlan":
                lines += [
                    f"link add {VXLAN_DEVICE} address {underlay.tunnel_macs[node.name]} mtu {underlay.overlay_mtu}"
                    f" type vxlan id {VXLAN_VNI} local {address} dev {ifname} dstport {VXLAN_PORT} nolearning",
                    f"addr add {underlay.tunnel_ips[node.name]}/32 dev {VXLAN_DEVICE}",
                    f"addr add {underlay.tunnel_ips6[node.name]}/128 dev {VXLAN_DEVICE} nodad",
                    f"link set {VXLAN_DEVICE} up",
                ]
                for peer in nodes:
                    if peer is node:
                        continue
                    mac = underlay.tunnel_macs[peer.name]
                    for vtep in (underlay.tunnel_ips[peer.name], underlay.tunnel_ips6[peer.name]):
                        # the route lets a node answer traffic sourced from a peer's VTEP address
                        lines += [f"neigh replace {vtep} lladdr {mac} dev {VXLAN_DEVICE} nud permanent",
                                  f"route replace {vtep} dev {VXLAN_DEVICE} scope link"]
                    fdb.append(f"fdb append {mac} dev {VXLAN_DEVICE} dst {underlay.ips[peer.name]}")
            node.batch(lines)
            _batch("bridge", fdb, node.netns)
        self._wait_forwarding(switch, [f"p{index}" for index in range(len(nodes))])
        self.underlays.append(underlay)
        self._sync_routes()
        return underlay

    def remove(self, host):
        """Delete a pod or routed host (its namespace, so its veth) and the routes
        other nodes had towards it, e.g. to recreate a pod with another MTU."""
        host = self._host(host)
        if host.kind not in ("pod", "host"):
            raise NetlabError(f"only pods and hosts can be removed, not {host!r}")
        del self.hosts[host.name]
        _run(["ip", "netns", "del", host.netns])
        desired = self._desired_routes()
        for name, installed in self._routes.items():
            stale = sorted(installed - desired[name])
            self.hosts[name].batch([f"route del {dest} via {gateway} dev {device}" for dest, gateway, device in stale])
            installed -= set(stale)

    @staticmethod
    def _wait_forwarding(switch, ports, timeout=5.0):
        # A new bridge port only starts forwarding once the kernel's link watcher
        # (rate limited to one run a second) has seen its carrier.
        deadline = time.monotonic() + timeout
        while True:
            states = {port["ifname"]: port.get("state")
                      for port in json.loads(switch.run(["bridge", "-j", "link", "show"]).stdout or "[]")}
            if all(states.get(port) == "forwarding" for port in ports):
                return
            if time.monotonic() > deadline:
                raise NetlabError(f"bridge ports in {switch.netns} not forwarding: {states}")
            time.sleep(0.05)

    # -- routing -----------------------------------------------------------------
    def _host(self, ref):
        if isinstance(ref, Host):
            return ref
        return self.hosts[ref]

    def _desired_routes(self):
        """node name -> {(destination, gateway, device)} for everything behind peers."""
        behind = {}   # node name -> [(destination, IP version)] of its pods and hosts
        for host in self.hosts.values():
            if host.routed:
                behind.setdefault(host.node.name, []).extend(host.routed)
        desired = {name: set() for name in self._routes}
        for underlay in self.underlays:
            for node in underlay.nodes:
                for peer in underlay.nodes:
                    if peer is node:
                        continue
                    for dest, version in behind.get(peer.name, []):
                        gateway, device = underlay.next_hop(peer, version)
                        desired[node.name].add((dest, gateway, device or underlay.ifname[node.name]))
        return desired

    def _sync_routes(self):
        for name, wanted in self._desired_routes().items():
            missing = sorted(wanted - self._routes[name])
            lines = [f"route replace {dest} via {gateway} dev {device}"
                     + (" onlink" if device == VXLAN_DEVICE else "")
                     for dest, gateway, device in missing]
            self.hosts[name].batch(lines)
            self._routes[name] |= set(missing)
