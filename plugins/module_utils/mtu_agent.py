# Copyright: netmend.k8s contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The calico_mtu agent: keeps a node's Calico CNI config at the right MTU and
restarts, by eviction, the pods whose interface still has another one. Standard library only.

Run by the DaemonSet (host network, the CNI config's parent folder, /etc/cni, mounted) as::

    python3 -m ansible_collections.netmend.k8s.plugins.module_utils.agent calico_mtu [options]

Each interval it re-applies the MTU to the config (calico-node's install-cni
rewrites the file whenever it starts), then, when the file was repaired, on start,
while evictions are pending and every ``--resync`` seconds, lists the pods of its
node and evicts those whose host-side ``cali*`` veth has a different MTU: one at a
time, waiting for each to go, so PodDisruptionBudgets hold. A refused eviction is
retried on a later pass, never forced.

A node without the Calico config (no Calico CNI there yet, or never) gets an
agent that waits: it logs once that there is nothing to do, stays ready, and
applies the MTU as soon as Calico's install-cni writes the file. A config it
cannot fix, or an API server that refuses it, makes it not ready; an API
server that is briefly unreachable is retried after a backoff.
"""
from __future__ import annotations

import argparse
import os
import time

from ansible_collections.netmend.k8s.plugins.module_utils.agent import Heartbeat, Stopper, log, node_name, run_every
from ansible_collections.netmend.k8s.plugins.module_utils.kube_lite import KubeClient, KubeError, pods_path
from ansible_collections.netmend.k8s.plugins.module_utils.mtu import (
    DEFAULT_CONFLIST,
    ENCAPSULATIONS,
    FELIX_INTERFACE_PATTERN,
    IP_FAMILIES,
    SYS_CLASS_NET,
    VETH_PREFIX,
    MtuError,
    ensure_config_mtu,
    interface_mtu,
    plan_mtu,
    veth_name,
)

FIX = "calico_mtu"
CALICO_NODE_LABEL = ("k8s-app", "calico-node")
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="agent calico_mtu", description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--path", default=DEFAULT_CONFLIST, help="the Calico CNI config file")
    parser.add_argument("--mtu", type=int, help="pod MTU; computed from the host interfaces when omitted")
    parser.add_argument("--encapsulation", choices=ENCAPSULATIONS, default="ipip")
    parser.add_argument("--ip-family", choices=IP_FAMILIES, default="ipv4")
    parser.add_argument("--interface-pattern", default=FELIX_INTERFACE_PATTERN)
    parser.add_argument("--force", action="store_true", help="accept an --mtu above the host MTU minus overhead")
    parser.add_argument("--sys-root", default=SYS_CLASS_NET, help="where the host's interfaces are listed")
    parser.add_argument("--veth-prefix", default=VETH_PREFIX, help="Felix's interfacePrefix")
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between config checks")
    parser.add_argument("--resync", type=float, default=300.0, help="seconds between pod checks when nothing changed")
    parser.add_argument("--eviction-timeout", type=float, default=120.0,
                        help="seconds to wait for an evicted pod to go before the next eviction")
    parser.add_argument("--max-iterations", type=int, help="stop after this many passes (tests)")
    parser.add_argument("--once", dest="max_iterations", action="store_const", const=1, help="one pass, then exit")
    return parser.parse_args(argv)


class MtuAgent:
    """One node's reconcile pass; ``step()`` is called every interval."""

    def __init__(self, client, node, options, own_pod=(None, None), stopper=None, clock=time.monotonic,
                 heartbeat=None):
        self.client = client
        self.node = node
        self.options = options
        self.own_pod = tuple(own_pod)
        self.stopper = stopper or Stopper()
        self.clock = clock
        self.heartbeat = heartbeat
        self.waiting = False  # no Calico config on this node (logged once)
        self.next_pod_check = None  # None: check on the next pass
        self.pending = set()  # (namespace, name) refused by a disruption budget
        self.settle_until = 0.0

    def step(self):
        """One pass; False when it could not do its job (readiness), transient API failures raised for the backoff."""
        options = self.options
        if not os.path.exists(options.path):
            if not self.waiting:
                log(FIX, "no Calico CNI config on this node, waiting for it", path=options.path)
                self.waiting = True
            return True  # nothing to fix here is not a fault
        if self.waiting:
            log(FIX, "Calico CNI config appeared", path=options.path)
            self.waiting = False
            self.next_pod_check = None
        try:
            plan = plan_mtu(options.mtu, options.encapsulation, options.ip_family, options.interface_pattern,
                            options.force, options.sys_root)
            outcome = ensure_config_mtu(options.path, plan["mtu"])
        except MtuError as exc:
            # New pods would get a wrong MTU too: evicting now would only repeat the fault.
            log(FIX, "cannot set the MTU, will retry", error=str(exc))
            return False
        if outcome["changed"]:
            log(FIX, "set conflist mtu", path=options.path, mtu=plan["mtu"], previous=outcome["previous_mtu"],
                source=plan["mtu_source"])
            # Pods created while the file was wrong may still be getting their veth: look again for a while.
            self.next_pod_check = None
            self.settle_until = self.clock() + 3 * options.interval
        if not self._pods_due():
            return True
        try:
            self.restart_stale_pods(plan["mtu"])
        except KubeError as exc:
            self.next_pod_check = None
            if exc.transient:
                raise  # run_every logs it and retries after a backoff
            log(FIX, "API call refused, will retry", error=str(exc))
            return False
        self.next_pod_check = self.clock() + options.resync
        return True

    def _pods_due(self):
        now = self.clock()
        return (self.next_pod_check is None or self.pending or now < self.settle_until
                or now >= self.next_pod_check)

    def stale_pods(self, mtu):
        """``[(namespace, name, uid, interface, interface_mtu)]`` of this node's pods with another MTU."""
        answer = self.client.list(pods_path(), fieldSelector="spec.nodeName=%s" % self.node)
        stale = []
        for pod in answer["items"]:
            meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
            namespace, name = meta.get("namespace"), meta.get("name")
            if not self._restartable(pod, meta, spec):
                continue
            interface = veth_name(namespace, name, self.options.veth_prefix)
            current = interface_mtu(interface, self.options.sys_root)
            if current is not None and current != mtu:
                stale.append((namespace, name, meta.get("uid"), interface, current))
        return stale

    def _restartable(self, pod, meta, spec):
        if spec.get("hostNetwork"):
            return False  # shares the host's interfaces: no veth of its own
        if (meta.get("namespace"), meta.get("name")) == self.own_pod:
            return False
        if (meta.get("labels") or {}).get(CALICO_NODE_LABEL[0]) == CALICO_NODE_LABEL[1]:
            return False
        if MIRROR_ANNOTATION in (meta.get("annotations") or {}):
            return False  # static pods cannot be evicted through the API
        if meta.get("deletionTimestamp"):
            return False  # already going
        return (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed")

    def restart_stale_pods(self, mtu):
        pending = set()
        for namespace, name, uid, interface, current in self.stale_pods(mtu):
            if self.stopper.stopped:
                break
            if not self.client.evict(namespace, name):
                pending.add((namespace, name))
                log(FIX, "eviction refused by a PodDisruptionBudget, will retry", namespace=namespace, pod=name,
                    interface=interface, interface_mtu=current, mtu=mtu)
                continue
            log(FIX, "evicted pod", namespace=namespace, pod=name, interface=interface, interface_mtu=current, mtu=mtu)
            if not self._wait_gone(namespace, name, uid):
                log(FIX, "evicted pod still terminating, going on", namespace=namespace, pod=name,
                    waited=self.options.eviction_timeout)
        self.pending = pending

    def _wait_gone(self, namespace, name, uid):
        """Wait until the pod with this uid no longer exists; False on timeout or stop."""
        deadline = self.clock() + self.options.eviction_timeout
        while self.clock() < deadline:
            try:
                pod = self.client.get("%s/%s" % (pods_path(namespace), name))
            except KubeError as exc:
                if exc.status == 404:
                    return True
                raise
            if (pod.get("metadata") or {}).get("uid") != uid:
                return True  # a new pod under the same name (StatefulSet)
            if self.heartbeat is not None:
                self.heartbeat.beat(self.options.interval + 15.0)  # evicting one by one is doing the job
            if self.stopper.sleep(0.5):
                return False
        return False


def agent_main(argv):
    options = parse_args(argv)
    stopper = Stopper().install()
    client = KubeClient.from_environment()
    own_pod = (os.environ.get("POD_NAMESPACE"), os.environ.get("POD_NAME"))
    heartbeat = Heartbeat.from_environment()
    agent = MtuAgent(client, node_name(), options, own_pod=own_pod, stopper=stopper, heartbeat=heartbeat)
    log(FIX, "started", node=agent.node, path=options.path, mtu=options.mtu if options.mtu else "auto",
        encapsulation=options.encapsulation, interval=options.interval)
    run_every(agent.step, options.interval, stopper, jitter=0.1, max_iterations=options.max_iterations,
              heartbeat=heartbeat)
    return 0
