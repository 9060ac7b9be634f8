# Copyright: netmend.k8s contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""How Calico is installed in a cluster, read from its API objects. Standard library only.

The one detection every role uses (through the ``calico_install`` filter): the install
kind (operator, manifest, platform-reconciled or none), its namespace, where it keeps
its MTU, Typha and the pool encapsulation it asks for. The reading of a calico-node
workload's env is shared with the calico role's manifest settings, which read the same
containers in a manifest before it is applied.
"""
from __future__ import annotations

NODE_CONTAINER = "calico-node"
# calico.yaml and its variants keep their config in calico-config; canal.yaml in canal-config.
CONFIG_MAPS = ("calico-config", "canal-config")
MTU_KEY = "veth_mtu"
BACKENDS = ("bird", "vxlan", "none")
POOL_ENV = {"ipip": "CALICO_IPV4POOL_IPIP", "vxlan": "CALICO_IPV4POOL_VXLAN"}
# calico-node's own default when the env does not name a backend.
DEFAULT_BACKEND = "bird"
# Where installs live, operator first: the order detection prefers them in.
INSTALL_NAMESPACES = ("calico-system", "kube-system")
# A platform that reverts Calico's objects labels them so (GKE's addon manager).
RECONCILE_LABEL = "addonmanager.kubernetes.io/mode"
RECONCILE_VALUE = "Reconcile"
TYPHA_METRICS_ENV = "TYPHA_PROMETHEUSMETRICSENABLED"
# Installation spec.calicoNetwork.ipPools[].encapsulation -> (encapsulation, cross subnet).
OPERATOR_ENCAPSULATIONS = {
    "IPIP": ("ipip", False),
    "IPIPCrossSubnet": ("ipip", True),
    "VXLAN": ("vxlan", False),
    "VXLANCrossSubnet": ("vxlan", True),
    "None": ("none", False),
}
INSTALL_KINDS = ("operator", "manifest", "reconciled", "none")


class CalicoError(Exception):
    """Objects that are not what the detection reads."""


def containers(workloads, name, init=False):
    """``(workload name, container)`` of every workload's container called ``name``."""
    found = []
    key = "initContainers" if init else "containers"
    for workload in workloads:
        spec = ((workload.get("spec") or {}).get("template") or {}).get("spec") or {}
        for container in spec.get(key) or []:
            if isinstance(container, dict) and container.get("name") == name:
                found.append(((workload.get("metadata") or {}).get("name"), container))
    return found


def env(container):
    """A container's env by name: ``{name: item}``."""
    return {item.get("name"): item for item in container.get("env") or [] if isinstance(item, dict)}


def backend(workloads, config):
    """``(backend, where it was read)`` of calico-node in ``workloads``, with ``config`` its ConfigMap or None."""
    for workload, container in containers(workloads, NODE_CONTAINER):
        item = env(container).get("CALICO_NETWORKING_BACKEND")
        if item is None:
            continue
        if "value" in item:
            return str(item["value"]), "%s env CALICO_NETWORKING_BACKEND" % workload
        ref = (item.get("valueFrom") or {}).get("configMapKeyRef") or {}
        data = (config or {}).get("data") or {}
        if config is not None and ref.get("name") == config["metadata"]["name"] and ref.get("key") in data:
            return str(data[ref["key"]]), "%s %s" % (config["metadata"]["name"], ref["key"])
    return DEFAULT_BACKEND, "calico-node's default"


def pool_encapsulation(node_env):
    """``(encapsulation, cross subnet)`` the pool env of calico-node asks for."""
    for encapsulation, name in POOL_ENV.items():
        mode = str((node_env.get(name) or {}).get("value", "Never"))
        if mode.lower() not in ("never", "off", "false", ""):
            return encapsulation, mode.lower() == "crosssubnet"
    return "none", False


def _of_kind(objects, kind):
    return [obj for obj in objects if isinstance(obj, dict) and obj.get("kind") == kind]


def _namespace(obj):
    return (obj.get("metadata") or {}).get("namespace")


def _in(objects, namespace):
    return next((obj for obj in objects if _namespace(obj) == namespace), None)


def _reconciled(obj):
    return (((obj or {}).get("metadata") or {}).get("labels") or {}).get(RECONCILE_LABEL) == RECONCILE_VALUE


def _encapsulation(installation, node, config):
    """``(encapsulation, cross subnet, where it was read)``; encapsulation None when nothing says."""
    if installation is not None:
        network = (installation.get("spec") or {}).get("calicoNetwork") or {}
        computed = ((installation.get("status") or {}).get("computed") or {}).get("calicoNetwork") or {}
        for source, where in ((network, "spec"), (computed, "status.computed")):
            pools = source.get("ipPools") or []
            value = pools[0].get("encapsulation") if pools and isinstance(pools[0], dict) else None
            if value in OPERATOR_ENCAPSULATIONS:
                kind, cross = OPERATOR_ENCAPSULATIONS[value]
                return kind, cross, "Installation %s calicoNetwork.ipPools[0].encapsulation %s" % (where, value)
        return None, False, "the operator's default"
    if node is None:
        return None, False, "no calico-node"
    name, where = backend([node], config)
    if name in ("vxlan", "none"):
        return name, False, where
    found = containers([node], NODE_CONTAINER)
    kind, cross = pool_encapsulation(env(found[0][1]) if found else {})
    return kind, cross, "calico-node env %s" % ", ".join(sorted(POOL_ENV.values()))


def _typha(deployment):
    if deployment is None:
        return {"found": False, "namespace": None, "metrics": False}
    spec = ((deployment.get("spec") or {}).get("template") or {}).get("spec") or {}
    metrics = any(str(env(container).get(TYPHA_METRICS_ENV, {}).get("value", "")).lower() == "true"
                  for container in spec.get("containers") or [] if isinstance(container, dict))
    return {"found": True, "namespace": _namespace(deployment), "metrics": metrics}


def detect_install(objects, namespaces=INSTALL_NAMESPACES):
    """How Calico is installed, from the objects read where installs live.

    ``objects`` is every object found: the operator's Installation, calico-node
    DaemonSets, the install's ConfigMap and calico-typha Deployments, each read by
    name in the ``namespaces`` searched (the first namespace holding calico-node,
    else the install's ConfigMap, is the install's). Kinds other than those are
    ignored. Returns a dict; see the ``calico_install`` filter's documentation.
    """
    if not isinstance(objects, (list, tuple)):
        raise CalicoError("expected a list of API objects, got %r" % (objects,))
    if isinstance(namespaces, str) or not isinstance(namespaces, (list, tuple)):
        raise CalicoError("namespaces must be a list of namespace names, got %r" % (namespaces,))
    installations = _of_kind(objects, "Installation")
    nodes = _of_kind(objects, "DaemonSet")
    configs = _of_kind(objects, "ConfigMap")
    namespace = next((ns for ns in namespaces if _in(nodes, ns) is not None), None) or next(
        (ns for ns in namespaces if _in(configs, ns) is not None), None)
    installation = installations[0] if installations else None
    node = _in(nodes, namespace)
    config = _in(configs, namespace)
    reconciled = _reconciled(node) or _reconciled(config)
    if reconciled:
        install = "reconciled"
    elif installation is not None:
        install = "operator"
    elif node is not None or config is not None:
        install = "manifest"
    else:
        install = "none"
    network = ((installation or {}).get("spec") or {}).get("calicoNetwork") or {}
    encapsulation, cross_subnet, source = _encapsulation(installation, node, config)
    return {
        "install": install,
        "reconciled_by_platform": reconciled,
        "namespace": namespace,
        "installation": (installation or {}).get("metadata", {}).get("name"),
        "config_map": "%s/%s" % (namespace, config["metadata"]["name"]) if config is not None else None,
        # Where the MTU is kept for the whole cluster: the operator owns the node config when it runs.
        "mtu_target": "installation" if installation is not None else "config_map" if config is not None else None,
        "veth_mtu": ((config or {}).get("data") or {}).get(MTU_KEY),
        "installation_mtu": network.get("mtu"),
        "encapsulation": encapsulation,
        "cross_subnet": cross_subnet,
        "encapsulation_source": source,
        "typha": _typha(_in(_of_kind(objects, "Deployment"), namespace)),
        "calico_node": [{"name": item["metadata"].get("name"), "namespace": _namespace(item),
                         "desired": (item.get("status") or {}).get("desiredNumberScheduled"),
                         "available": (item.get("status") or {}).get("numberAvailable")} for item in nodes],
    }
