"""Real nodes for the lab cluster: a real kubelet and containerd that run real pods.

Each real node lives in its own network, PID, mount and UTS namespaces, so nothing on
the machine changes:

- network: the node namespace ``nmr-<cluster>-<node>`` has ``eth0`` on the lab
  underlay, a bridge in the namespace ``nmr-<cluster>-switch``; one veth
  (``nmr<key>``) joins that bridge to the machine, where it carries the underlay's
  gateway address, on which the API server already listens. The only link the
  machine gets is that veth; it has no route to the pods.
- pods: the standard CNI plugins (``bridge`` + ``host-local``, Debian's
  containernetworking-plugins) on ``cni0``, each node its own /26 of
  :data:`POD_SUPERNET`, the other nodes' CIDRs routed over the underlay. A chained
  plugin (lab/cni_veth.py) names the host-side veth the Calico way.
  Calico's own CNI plugin cannot be built here (a Go module it needs is not served),
  so Calico stays a configuration the lab installs and inspects, not the pod network.
- the ``kubernetes`` Service: there is no kube-proxy; the node's nat table DNATs
  :data:`SERVICE_IP`:443 to the API server on the gateway (chain ``LAB-SERVICES``)
  and masquerades pod traffic to the gateway (chain ``LAB-POSTROUTING``).
- processes: ``nsenter --net`` + ``unshare --pid --mount --uts`` starts
  ``realnodes.py init`` as the namespace's PID 1. In its mount namespace it mounts a
  fresh sysfs (the node's links) keeping the machine's cgroup hierarchies, a tmpfs on
  ``/run``, copy-on-write overlays on ``/etc`` and ``/var`` (the node's
  ``/etc/cni/net.d``, ``/var/lib/cni``, ``/var/log/pods``), and masks the global
  sysctls kubelet writes at start. It runs containerd (own root, state and socket;
  CRI ``restrict_oom_score_adj``, since this VM drops CAP_SYS_RESOURCE), imports the
  lab images (lab/images.py), then kubelet (own ``--root-dir``, cgroup root
  ``/netmend-lab-<cluster>-<node>``, ``failCgroupV1: false``), and restarts either
  when it exits.
- KWOK: the node's Lease is created, held by the node, before kubelet registers, so
  KWOK's controller leaves the node alone. Nodes carry the label
  ``netmend.lab/real=true`` and the taint ``netmend.lab/real=true:NoSchedule``.

Killing the namespace's PID 1 ends every process of the node; :func:`down` then
removes the cgroups, namespaces and the veth, and :func:`leftovers` lists whatever
is still there (a lab test checks it is nothing).
"""
from __future__ import annotations

import datetime
import hashlib
import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CACHE = os.environ.get("NETMEND_LAB_CACHE", os.path.expanduser("~/.cache/netmend-lab"))
CLUSTER = os.environ.get("NETMEND_LAB_CLUSTER", "netmend-lab")
NODE_PREFIX = "real-node-"
POD_SUPERNET = "10.244.3.0/24"  # KWOK nodes take 10.244.<i>.0/24 (i < 3); real node i gets the i-th /26 of this
# (up to 4), so every node's podCIDR stays inside the cluster pod CIDR 10.244.0.0/22, as in a real cluster.
POD_PREFIX = 26
SERVICE_IP = "10.0.0.1"  # kwokctl's API server: service range 10.0.0.0/24, `kubernetes` is its first address
SERVICE_PORT = 443
LABEL = "netmend.lab/real"
TAINT = {"key": LABEL, "value": "true", "effect": "NoSchedule"}
LAB_CONFLIST = "00-netmend-lab.conflist"  # sorts first: containerd uses the first file of the CNI dir
# What kubelet writes at start unless protectKernelDefaults; global, so masked per node.
MASKED_SYSCTLS = ("vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops",
                  "kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes")
CGROUP_FS = "/sys/fs/cgroup"


def say(message):
    print("[lab real nodes] %s" % message, flush=True)


class LabError(Exception):
    """A real-node step failed; the message names the step."""


def run(argv, check=True, input=None, timeout=60):
    done = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout, check=False)
    if check and done.returncode:
        raise LabError("%s exited %d: %s" % (" ".join(argv), done.returncode, (done.stderr or done.stdout).strip()))
    return done


class Topology:
    """Every name and address of one cluster's real nodes, derived from the cluster name."""

    def __init__(self, cluster=CLUSTER):
        self.cluster = cluster
        self.key = hashlib.sha1(cluster.encode()).hexdigest()[:6]
        octet = int(self.key, 16) % 250 + 1
        self.underlay = ipaddress.ip_network("10.246.%d.0/24" % octet)
        self.gateway = str(self.underlay[1])
        self.root_link = "nmr" + self.key
        self.switch_ns = "nmr-%s-switch" % cluster
        self.state = os.path.join(CACHE, "real", cluster)

    @staticmethod
    def node_name(index):
        return "%s%d" % (NODE_PREFIX, index)

    @staticmethod
    def index(name):
        return int(name[len(NODE_PREFIX):])

    def node_ip(self, index):
        return str(self.underlay[10 + index])

    def host_ip(self, number):
        """Underlay address for a test's extra host (a "VPN" host), 0-based."""
        return str(self.underlay[200 + number])

    @staticmethod
    def pod_cidr(index):
        return str(list(ipaddress.ip_network(POD_SUPERNET).subnets(new_prefix=POD_PREFIX))[index])

    def netns(self, name):
        return "nmr-%s-%s" % (self.cluster, name)

    def node_dir(self, name):
        return os.path.join(self.state, name)

    def cgroup_root(self, name):
        return "/netmend-lab-%s-%s" % (self.cluster, name)

    def nodes_netns(self, netns):
        """Whether a network namespace name is one of this cluster's nodes' (real-node-<index>)."""
        prefix = self.netns(NODE_PREFIX)
        return netns.startswith(prefix) and netns[len(prefix):].isdigit()

    def nodes(self):
        """Names of the nodes whose namespace exists, by index."""
        prefix = self.netns(NODE_PREFIX)
        found = [n[len(prefix) - len(NODE_PREFIX):] for n in _netns_list() if self.nodes_netns(n)]
        return sorted(found, key=self.index)


def _netns_list():
    try:
        return os.listdir("/run/netns")
    except FileNotFoundError:
        return []


def _ns_id(path):
    try:
        info = os.stat(path)
    except OSError:
        return None
    return (info.st_dev, info.st_ino)


def _pids():
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def _read(path, default=""):
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError:
        return default


def node_processes(topo, name):
    """PIDs of every process of a node: in its network namespace, its PID namespace
    (found through those), or its cgroups (containers in namespaces of their own)."""
    netns = _ns_id("/run/netns/" + topo.netns(name))
    marker = topo.cgroup_root(name) + "/"
    members, pidns = set(), set()
    for pid in _pids():
        if netns and _ns_id("/proc/%d/ns/net" % pid) == netns:
            members.add(pid)
            pidns.add(_ns_id("/proc/%d/ns/pid" % pid))
        elif marker in _read("/proc/%d/cgroup" % pid):
            members.add(pid)
    pidns.discard(_ns_id("/proc/self/ns/pid"))  # the machine's (unshare itself lives there)
    pidns.discard(None)
    if pidns:
        members.update(p for p in _pids() if _ns_id("/proc/%d/ns/pid" % p) in pidns)
    members.discard(os.getpid())
    return sorted(members)


def _cgroup_dirs(topo, name=None):
    """Our cgroup directories in every hierarchy, deepest first."""
    found = []
    if name:
        def ours(entry):
            return "/" + entry == topo.cgroup_root(name)
    else:  # every node of this cluster, and only of this one: netmend-lab-b's are not netmend-lab's
        prefix = topo.cgroup_root(NODE_PREFIX)

        def ours(entry):
            return ("/" + entry).startswith(prefix) and ("/" + entry)[len(prefix):].isdigit()
    try:
        hierarchies = sorted(os.listdir(CGROUP_FS))
    except FileNotFoundError:
        return found
    for hierarchy in hierarchies:
        base = os.path.join(CGROUP_FS, hierarchy)
        if not os.path.isdir(base) or os.path.islink(base):
            continue
        for entry in os.listdir(base):
            if ours(entry) and os.path.isdir(os.path.join(base, entry)):
                for root, _dirs, _files in os.walk(os.path.join(base, entry), topdown=False):
                    found.append(root)
    return found


def _remove_cgroups(topo, name=None, timeout=60):
    """Remove our cgroup directories (one node's, or every node's), deepest first. A
    directory stays busy for a while after its last task is reaped, and a process can
    still sit in one (a container whose node died first): kill what is in ours, retry."""
    deadline = time.monotonic() + timeout
    while True:
        busy = []
        for path in _cgroup_dirs(topo, name):
            for pid in _read(os.path.join(path, "cgroup.procs")).split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            try:
                os.rmdir(path)
            except FileNotFoundError:
                pass
            except OSError:
                busy.append(path)
        if not busy:
            return
        if time.monotonic() > deadline:
            raise LabError("cgroups stay busy after %ss: %s" % (timeout, busy[:5]))
        time.sleep(0.2)


def _make_cgroup_root(topo, name):
    """Create the node's cgroup root in every v1 hierarchy (kubelet requires it)."""
    for hierarchy in sorted(os.listdir(CGROUP_FS)):
        base = os.path.join(CGROUP_FS, hierarchy)
        if hierarchy == "unified" or os.path.islink(base) or not os.path.isdir(base):
            continue
        path = base + topo.cgroup_root(name)
        os.makedirs(path, exist_ok=True)
        if hierarchy.startswith("cpuset"):
            for knob in ("cpuset.cpus", "cpuset.mems"):
                value = _read(os.path.join(base, knob)).strip()
                with open(os.path.join(path, knob), "w", encoding="utf-8") as handle:
                    handle.write(value)


# ---------------------------------------------------------------------------
# Network
# ---------------------------------------------------------------------------


def _link_exists(name, netns=None):
    return run(["ip"] + (["-n", netns] if netns else []) + ["link", "show", "dev", name], check=False).returncode == 0


def ensure_switch(topo):
    """The underlay bridge and the machine's veth to it (idempotent)."""
    if topo.switch_ns in _netns_list() and _link_exists(topo.root_link):
        return
    remove_switch(topo)
    taken = json.loads(run(["ip", "-j", "-4", "addr", "show"]).stdout or "[]")
    for link in taken:
        for address in link.get("addr_info", []):
            if ipaddress.ip_address(address["local"]) in topo.underlay:
                raise LabError("the underlay %s of cluster %s is in use on %s (another lab cluster?); "
                               "pick another NETMEND_LAB_CLUSTER" % (topo.underlay, topo.cluster, link["ifname"]))
    run(["ip", "netns", "add", topo.switch_ns])
    batch = [
        "link set lo up",
        "link add br0 type bridge",
        "link set br0 up",
    ]
    run(["ip", "-n", topo.switch_ns, "-batch", "-"], input="\n".join(batch) + "\n")
    run(["ip", "link", "add", topo.root_link, "type", "veth", "peer", "name", "up0", "netns", topo.switch_ns])
    run(["ip", "-n", topo.switch_ns, "link", "set", "up0", "master", "br0", "up"])
    run(["ip", "addr", "add", "%s/%d" % (topo.gateway, topo.underlay.prefixlen), "dev", topo.root_link])
    run(["ip", "link", "set", topo.root_link, "up"])


def remove_switch(topo):
    if _link_exists(topo.root_link):
        run(["ip", "link", "del", topo.root_link])
    if topo.switch_ns in _netns_list():
        run(["ip", "netns", "del", topo.switch_ns])


def sync_routes(topo):
    """Route every node's pod CIDR to it from every other node."""
    nodes = topo.nodes()
    supernet = ipaddress.ip_network(POD_SUPERNET)
    for name in nodes:
        wanted = {topo.pod_cidr(topo.index(other)): topo.node_ip(topo.index(other)) for other in nodes if other != name}
        lines = ["route replace %s via %s" % item for item in sorted(wanted.items())]
        routes = json.loads(run(["ip", "-n", topo.netns(name), "-j", "route", "show"]).stdout or "[]")
        for route in routes:
            dst = route.get("dst", "")
            if route.get("gateway") and "/" in dst and ipaddress.ip_network(dst).subnet_of(supernet) \
                    and dst not in wanted:
                lines.append("route del %s" % dst)  # a node that left
        if lines:
            run(["ip", "-n", topo.netns(name), "-batch", "-"], input="\n".join(lines) + "\n")


def _node_network(topo, name, api_port):
    index = topo.index(name)
    netns = topo.netns(name)
    run(["ip", "netns", "add", netns])
    run(["ip", "-n", topo.switch_ns, "link", "add", "p%d" % index, "type", "veth", "peer", "name", "eth0",
         "netns", netns])
    run(["ip", "-n", topo.switch_ns, "link", "set", "p%d" % index, "master", "br0", "up"])
    lines = [
        "link set lo up",
        "addr add %s/%d dev eth0" % (topo.node_ip(index), topo.underlay.prefixlen),
        "link set eth0 up",
        "route add default via %s" % topo.gateway,
    ]
    run(["ip", "-n", netns, "-batch", "-"], input="\n".join(lines) + "\n")
    run(["ip", "netns", "exec", netns, "sysctl", "-qw", "net.ipv4.ip_forward=1"])
    rules = "\n".join([
        "*nat",
        ":LAB-SERVICES - [0:0]",
        ":LAB-POSTROUTING - [0:0]",
        "-A PREROUTING -j LAB-SERVICES",
        "-A OUTPUT -j LAB-SERVICES",
        "-A POSTROUTING -j LAB-POSTROUTING",
        "-A LAB-SERVICES -d %s/32 -p tcp --dport %d -j DNAT --to-destination %s:%d"
        % (SERVICE_IP, SERVICE_PORT, topo.gateway, api_port),
        "-A LAB-POSTROUTING -s %s -d %s/32 -j MASQUERADE" % (POD_SUPERNET, topo.gateway),
        "COMMIT",
        "",
    ])
    run(["ip", "netns", "exec", netns, "iptables-restore", "--noflush"], input=rules)


# ---------------------------------------------------------------------------
# Node files
# ---------------------------------------------------------------------------


def _conflist(topo, index):
    return {
        "cniVersion": "1.0.0",
        "name": "netmend-lab",
        "plugins": [
            {
                "type": "bridge",
                "bridge": "cni0",
                "isGateway": True,
                "ipMasq": False,
                "hairpinMode": True,
                "mtu": 1500,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": topo.pod_cidr(index)}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                },
            },
            {"type": "netmend-lab-veth", "prefix": "cali", "bridge": "cni0"},
        ],
    }


def _cni_bin(topo):
    """Debian's plugins plus ours, in one directory (containerd takes one)."""
    path = os.path.join(topo.state, "cni-bin")
    os.makedirs(path, exist_ok=True)
    wanted = {name: os.path.join("/usr/lib/cni", name) for name in os.listdir("/usr/lib/cni")}
    for name, target in wanted.items():
        link = os.path.join(path, name)
        if os.path.islink(link) and os.readlink(link) == target:
            continue
        if os.path.lexists(link):
            os.unlink(link)
        os.symlink(target, link)
    wrapper = os.path.join(path, "netmend-lab-veth")
    with open(wrapper + ".tmp", "w", encoding="utf-8") as handle:
        handle.write('#!/bin/sh\nexec /usr/bin/python3 %s "$@"\n' % os.path.join(HERE, "cni_veth.py"))
    os.chmod(wrapper + ".tmp", 0o755)
    os.replace(wrapper + ".tmp", wrapper)
    return path


def _containerd_toml(topo, folder):
    return "\n".join([
        "version = 2",
        'root = "%s"' % os.path.join(folder, "containerd"),
        'state = "/run/containerd"',
        "[grpc]",
        '  address = "%s"' % os.path.join(folder, "containerd.sock"),
        "[plugins]",
        '  [plugins."io.containerd.internal.v1.opt"]',
        '    path = "%s"' % os.path.join(folder, "opt"),
        '  [plugins."io.containerd.grpc.v1.cri"]',
        '    sandbox_image = "netmend.lab/pause:1"',
        "    restrict_oom_score_adj = true",
        "    enable_cdi = false",
        '    [plugins."io.containerd.grpc.v1.cri".cni]',
        '      bin_dir = "%s"' % _cni_bin(topo),
        '      conf_dir = "/etc/cni/net.d"',
        "      max_conf_num = 1",
        '    [plugins."io.containerd.grpc.v1.cri".containerd]',
        '      snapshotter = "overlayfs"',
        '      default_runtime_name = "runc"',
        '      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]',
        '        runtime_type = "io.containerd.runc.v2"',
        '        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]',
        "          SystemdCgroup = false",
        "",
    ])


def _kubelet_config(topo, name, folder):
    index = topo.index(name)
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "failCgroupV1": False,
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": topo.cgroup_root(name),
        "cgroupsPerQOS": True,
        "address": topo.node_ip(index),
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "authentication": {"anonymous": {"enabled": True}, "webhook": {"enabled": False}},
        "authorization": {"mode": "AlwaysAllow"},
        "containerRuntimeEndpoint": "unix://" + os.path.join(folder, "containerd.sock"),
        "resolvConf": "",
        "failSwapOn": False,
        "protectKernelDefaults": False,
        "serializeImagePulls": False,
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {"memory.available": "1Mi", "nodefs.available": "1%", "imagefs.available": "1%",
                         "nodefs.inodesFree": "1%"},
        "maxPods": 40,
        "nodeStatusUpdateFrequency": "5s",
        "syncFrequency": "10s",
        "fileCheckFrequency": "10s",
    }


def _kubeconfig(kubeconfig, server):
    import yaml  # the virtualenv's; cluster.py runs there

    with open(kubeconfig, encoding="utf-8") as handle:
        data = yaml.safe_load(handle)
    for entry in data.get("clusters", []):
        entry["cluster"]["server"] = server
    return yaml.safe_dump(data)


def api_port(kubeconfig):
    import yaml

    with open(kubeconfig, encoding="utf-8") as handle:
        server = yaml.safe_load(handle)["clusters"][0]["cluster"]["server"]
    return int(server.rsplit(":", 1)[1].strip("/"))


# ---------------------------------------------------------------------------
# API objects
# ---------------------------------------------------------------------------


def _register(api_client, topo, name):
    """The node's Lease (held by the node, so KWOK leaves it alone) and Node object."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    lease = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": name, "namespace": "kube-node-lease"},
        "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": now},
    }
    coordination = client.CoordinationV1Api(api_client)
    try:
        coordination.create_namespaced_lease("kube-node-lease", lease)
    except ApiException as exc:
        if exc.status != 409:
            raise
        coordination.patch_namespaced_lease(name, "kube-node-lease", {"spec": lease["spec"]})
    index = topo.index(name)
    node = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": node_labels(name)},
        "spec": {"podCIDR": topo.pod_cidr(index), "podCIDRs": [topo.pod_cidr(index)], "taints": [TAINT]},
    }
    core = client.CoreV1Api(api_client)
    try:
        core.create_node(node)
    except ApiException as exc:
        if exc.status != 409:
            raise


def forget(api_client, name):
    """Delete a real node's Node object and Lease (absent is fine)."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    for call in (lambda: client.CoreV1Api(api_client).delete_node(name),
                 lambda: client.CoordinationV1Api(api_client).delete_namespaced_lease(name, "kube-node-lease")):
        try:
            call()
        except ApiException as exc:
            if exc.status != 404:
                raise


def node_labels(name):
    return {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
            "type": "real", LABEL: "true"}


# ---------------------------------------------------------------------------
# Start and stop
# ---------------------------------------------------------------------------


def running(topo, name):
    pid = _read(os.path.join(topo.node_dir(name), "pid")).strip()
    if not pid.isdigit() or not os.path.exists("/proc/" + pid):
        return False
    return _ns_id("/proc/%s/ns/net" % pid) == _ns_id("/run/netns/" + topo.netns(name))


def start_node(topo, name, kubeconfig, bins, images, api_client):
    """Start one real node unless it runs; True when it was started."""
    if running(topo, name):
        return False
    stop_node(topo, name)
    folder = topo.node_dir(name)
    os.makedirs(folder)
    port = api_port(kubeconfig)
    ensure_switch(topo)
    _node_network(topo, name, port)
    _make_cgroup_root(topo, name)
    with open(os.path.join(folder, "containerd.toml"), "w", encoding="utf-8") as handle:
        handle.write(_containerd_toml(topo, folder))
    with open(os.path.join(folder, "kubelet.yaml"), "w", encoding="utf-8") as handle:
        json.dump(_kubelet_config(topo, name, folder), handle, indent=1)
    with open(os.path.join(folder, "kubeconfig"), "w", encoding="utf-8") as handle:
        handle.write(_kubeconfig(kubeconfig, "https://%s:%d" % (topo.gateway, port)))
    index = topo.index(name)
    spec = {
        "name": name,
        "folder": folder,
        "conflist": _conflist(topo, index),
        "images": images,
        "containerd": ["containerd", "--config", os.path.join(folder, "containerd.toml")],
        "kubelet": [
            os.path.join(bins, "kubelet"),
            "--config", os.path.join(folder, "kubelet.yaml"),
            "--kubeconfig", os.path.join(folder, "kubeconfig"),
            "--root-dir", os.path.join(folder, "kubelet"),
            "--cert-dir", os.path.join(folder, "pki"),
            "--hostname-override", name,
            "--node-ip", topo.node_ip(index),
            "--node-labels", ",".join("%s=%s" % kv for kv in sorted(node_labels(name).items())
                                      if not kv[0].startswith("kubernetes.io/")),
            "--v", "1",
        ],
    }
    with open(os.path.join(folder, "node.json"), "w", encoding="utf-8") as handle:
        json.dump(spec, handle, indent=1)
    _register(api_client, topo, name)
    log = open(os.path.join(folder, "init.log"), "ab")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(
        ["nsenter", "--net=/run/netns/" + topo.netns(name), "--",
         "unshare", "--pid", "--mount", "--uts", "--kill-child", "--propagation", "private", "--mount-proc",
         sys.executable, os.path.abspath(__file__), "init", folder],
        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    log.close()
    with open(os.path.join(folder, "pid"), "w", encoding="utf-8") as handle:
        handle.write(str(proc.pid))
    return True


def stop_node(topo, name, timeout=30):
    """Stop every process of the node and remove what it left: cgroups, namespace, files."""
    deadline = time.monotonic() + timeout
    while True:
        pids = node_processes(topo, name)
        if not pids:
            break
        if time.monotonic() > deadline:
            raise LabError("processes of %s survived SIGKILL: %s" % (name, pids))
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.2)
    _remove_cgroups(topo, name)
    if topo.netns(name) in _netns_list():
        run(["ip", "netns", "del", topo.netns(name)])
    folder = topo.node_dir(name)
    if os.path.isdir(folder):
        shutil.rmtree(folder)


def up(count, kubeconfig, bins, images, api_client, timeout=180):
    """Start real nodes 0..count-1 (those not running) and wait until they are Ready."""
    topo = Topology()
    if count <= 0:
        return
    ensure_switch(topo)
    started = [n for n in (topo.node_name(i) for i in range(count))
               if start_node(topo, n, kubeconfig, bins, images, api_client)]
    sync_routes(topo)
    if started:
        say("started %s" % ", ".join(started))
    wait_ready(api_client, [topo.node_name(i) for i in range(count)], timeout)


def wait_ready(api_client, names, timeout=180):
    from kubernetes import client

    core = client.CoreV1Api(api_client)
    deadline = time.monotonic() + timeout
    while True:
        ready = set()
        for node in core.list_node(label_selector=LABEL).items:
            if any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or []):
                ready.add(node.metadata.name)
        missing = sorted(set(names) - ready)
        if not missing:
            return
        if time.monotonic() > deadline:
            topo = Topology()
            tails = {n: _read(os.path.join(topo.node_dir(n), "kubelet.log"))[-1500:] for n in missing}
            raise LabError("real nodes not Ready after %ss: %s\n%s" % (timeout, missing, json.dumps(tails, indent=1)))
        time.sleep(1)


def down(api_client=None, cluster=CLUSTER):
    """Stop every real node of the cluster; with an API client, delete their Node objects and
    Leases too (a cluster being deleted needs no such cleanup)."""
    topo = Topology(cluster)
    names = set(topo.nodes())
    if os.path.isdir(topo.state):
        names.update(n for n in os.listdir(topo.state) if n.startswith(NODE_PREFIX))
    errors = []
    for name in sorted(names):
        try:
            stop_node(topo, name)
        except LabError as exc:  # go on: the other nodes, the switch and the files still go
            errors.append(str(exc))
        if api_client is not None:
            forget(api_client, name)
    for step in (_remove_cgroups, remove_switch):
        try:
            step(topo)
        except LabError as exc:
            errors.append(str(exc))
    if os.path.isdir(topo.state):
        shutil.rmtree(topo.state)
    if errors:
        raise LabError("real nodes stopped with leftovers:\n" + "\n".join(errors))
    if names:
        say("stopped %s" % ", ".join(sorted(names)))


def leftovers(cluster=CLUSTER):
    """Whatever of this cluster's real nodes exists: processes, mounts, namespaces,
    cgroups, links. Empty when the nodes are down."""
    topo = Topology(cluster)
    found = []
    names = set(topo.nodes())
    if os.path.isdir(topo.state):
        names.update(n for n in os.listdir(topo.state) if n.startswith(NODE_PREFIX))
    for name in sorted(names):
        found += ["process:%d %s" % (pid, _read("/proc/%d/comm" % pid).strip()) for pid in node_processes(topo, name)]
    # Names are matched whole: the state of cluster netmend-lab-b starts with netmend-lab's.
    state = topo.state + os.sep
    for pid in _pids():
        if state in _read("/proc/%d/cmdline" % pid).replace("\0", " "):
            found.append("process:%d %s" % (pid, _read("/proc/%d/comm" % pid).strip()))

    def our_netns(netns):
        return netns == topo.switch_ns or topo.nodes_netns(netns)

    for line in _read("/proc/self/mountinfo").splitlines():
        mountpoint = line.split()[4]
        if (mountpoint + os.sep).startswith(state) or (
                mountpoint.startswith("/run/netns/") and our_netns(mountpoint[len("/run/netns/"):])):
            found.append("mount:" + mountpoint)
    found += ["netns:" + n for n in _netns_list() if our_netns(n)]
    found += ["cgroup:" + p for p in _cgroup_dirs(topo)]
    if _link_exists(topo.root_link):
        found.append("link:" + topo.root_link)
    return sorted(set(found))


# ---------------------------------------------------------------------------
# The node's PID 1 (runs inside the node's namespaces)
# ---------------------------------------------------------------------------


def _mount(*args):
    run(["mount", *args])


def _node_mounts(spec):
    folder = spec["folder"]
    # sysfs of the node's network namespace, keeping the machine's cgroup hierarchies.
    hold = os.path.join(folder, "cgroup-hold")
    os.makedirs(hold, exist_ok=True)
    _mount("--rbind", CGROUP_FS, hold)
    _mount("-t", "sysfs", "sysfs", "/sys")
    _mount("--move", hold, CGROUP_FS)
    _mount("-t", "tmpfs", "-o", "mode=755", "tmpfs", "/run")
    for top in ("etc", "var"):
        upper, work = os.path.join(folder, "overlay", top), os.path.join(folder, "overlay", top + ".work")
        os.makedirs(upper, exist_ok=True)
        os.makedirs(work, exist_ok=True)
        _mount("-t", "overlay", "overlay", "-o", "lowerdir=/%s,upperdir=%s,workdir=%s" % (top, upper, work), "/" + top)
    masks = os.path.join(folder, "sysctl")
    os.makedirs(masks, exist_ok=True)
    machine = {}
    for key in MASKED_SYSCTLS:
        path = "/proc/sys/" + key
        if os.path.exists(path):
            machine[key] = _read(path)
            mask = os.path.join(masks, key.replace("/", "."))
            with open(mask, "w", encoding="utf-8") as handle:
                handle.write(machine[key])
            _mount("--bind", mask, path)
    with open(os.path.join(folder, "machine-sysctls.json"), "w", encoding="utf-8") as handle:
        json.dump(machine, handle)  # what the machine had; a test checks it still has it
    os.makedirs("/etc/cni/net.d", exist_ok=True)
    with open(os.path.join("/etc/cni/net.d", LAB_CONFLIST), "w", encoding="utf-8") as handle:
        json.dump(spec["conflist"], handle, indent=1)
    for path in ("/var/lib/cni", "/var/log/pods", "/var/log/containers"):
        os.makedirs(path, exist_ok=True)


def init(folder):
    """PID 1 of a real node: set the node up, run containerd and kubelet, reap, restart."""
    with open(os.path.join(folder, "node.json"), encoding="utf-8") as handle:
        spec = json.load(handle)
    socket.sethostname(spec["name"])
    _node_mounts(spec)
    children = {}

    def start(role):
        log = open(os.path.join(folder, role + ".log"), "ab")  # noqa: SIM115 - handed to the child
        children[role] = subprocess.Popen(spec[role], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        print("started %s pid %d" % (role, children[role].pid), flush=True)

    def stop(_signum, _frame):
        for proc in children.values():
            proc.kill()
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    start("containerd")
    sock = os.path.join(folder, "containerd.sock")
    deadline = time.monotonic() + 60
    while run(["ctr", "--address", sock, "version"], check=False).returncode:
        if time.monotonic() > deadline:
            raise LabError("containerd of %s did not answer on %s" % (spec["name"], sock))
        time.sleep(0.2)
    for archive in spec["images"]:
        run(["ctr", "--address", sock, "-n", "k8s.io", "images", "import", archive], timeout=300)
    start("kubelet")
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            time.sleep(1)
            continue
        for role, proc in list(children.items()):
            if proc.pid == pid:
                proc.returncode = status
                print("%s exited (status %d); restarting" % (role, status), flush=True)
                time.sleep(1)
                start(role)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "init":
        init(sys.argv[2])
    else:
        sys.exit("usage: realnodes.py init FOLDER (cluster.py starts the nodes)")
