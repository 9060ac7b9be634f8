# Copyright: netmend.k8s contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Aligning Calico's IP pool with the cluster's pod CIDR on the controller.

``cidr_span`` finds the pod CIDR from the nodes' ``spec.podCIDR`` ranges (netaddr);
``calico_manifest`` changes the structured fields of a parsed Calico manifest, so no
text substitution ever touches the YAML. The documentation of each filter lives next
to this file in ``<filter name>.yml``.
"""
from __future__ import annotations

import copy

from ansible.errors import AnsibleFilterError
from ansible.module_utils.common.text.converters import to_text

from ansible_collections.netmend.k8s.plugins.filter.calico_manifest_settings import CONFIG_MAPS, INSTALL_CNI_CONTAINER
from ansible_collections.netmend.k8s.plugins.filter.cidr import _networks

try:
    import netaddr
except ImportError:
    netaddr = None

# The container of Calico's node DaemonSet; its name is the same in every Calico manifest.
NODE_CONTAINER = "calico-node"
BINDING_KINDS = ("RoleBinding", "ClusterRoleBinding")


def cidr_span(cidrs, version=None):
    """The smallest single CIDR covering all of ``cidrs``, one per address family (IPv4 first).

    Nodes' pod ranges 10.244.0.0/24, 10.244.1.0/24 and 10.244.2.0/24 span 10.244.0.0/22. With
    ``version`` (4 or 6) only that family's span is returned, so the list has at most one item.
    """
    if version not in (None, 4, 6, "4", "6"):
        raise AnsibleFilterError("cidr_span version must be 4 or 6, got %r" % (version,))
    families = {}
    for network in _networks(cidrs, "cidr_span input"):
        families.setdefault(network.version, []).append(network)
    wanted = sorted(families) if version is None else [int(version)]
    # spanning_cidr wants two or more addresses: a family's first and last address always are.
    return [str(netaddr.spanning_cidr([netaddr.IPAddress(min(n.first for n in families[family]), family),
                                       netaddr.IPAddress(max(n.last for n in families[family]), family)]))
            for family in wanted if family in families]


def _set_env(container, env):
    """Set each name of ``env`` in the container's env list: in place when present (a value
    replaces a valueFrom), appended in ``env`` order when not."""
    result = []
    for item in container.get("env") or []:
        name = item.get("name")
        result.append({"name": name, "value": to_text(env[name])} if name in env else item)
    present = {item.get("name") for item in result}
    result.extend({"name": name, "value": to_text(value)} for name, value in env.items() if name not in present)
    container["env"] = result


def calico_manifest(documents, namespace=None, node_env=None, config_data=None, node_annotations=None,
                    install_cni_env=None):
    """Return a copy of a parsed Calico manifest with its structured fields changed.

    ``documents`` is the list ``from_yaml_all`` gives (empty documents are dropped).
    ``namespace`` moves every object that names a namespace, and the ServiceAccount subjects
    of its bindings, there. ``node_env`` sets environment variables of the ``calico-node``
    container, ``install_cni_env`` those of its ``install-cni`` init container, ``config_data``
    keys of the ``calico-config`` ConfigMap (``canal-config`` in canal) and ``node_annotations``
    annotations of the calico-node pod template (a changed annotation rolls the DaemonSet).
    """
    if isinstance(documents, (str, bytes, dict)) or documents is None:
        raise AnsibleFilterError("calico_manifest input must be the list of a manifest's documents, got %r"
                                 % (type(documents).__name__,))
    docs = []
    for index, doc in enumerate(documents):
        if doc is None:
            continue
        if not isinstance(doc, dict) or not doc.get("kind") or not isinstance(doc.get("metadata"), dict):
            raise AnsibleFilterError("document %d of the manifest is not a Kubernetes object (no kind or metadata)"
                                     % (index + 1))
        docs.append(copy.deepcopy(doc))

    nodes = []
    configs = []
    for doc in docs:
        if namespace:
            template = doc.get("spec", {}).get("template") if isinstance(doc.get("spec"), dict) else None
            for metadata in (doc["metadata"], (template or {}).get("metadata") or {}):
                if metadata.get("namespace"):
                    metadata["namespace"] = namespace
        if namespace and doc["kind"] in BINDING_KINDS:
            for subject in doc.get("subjects") or []:
                if subject.get("kind") == "ServiceAccount":
                    subject["namespace"] = namespace
        if doc["kind"] == "ConfigMap" and doc["metadata"].get("name") in CONFIG_MAPS:
            configs.append(doc)
        if doc["kind"] == "DaemonSet":
            pod = doc.get("spec", {}).get("template", {})
            containers = [c for c in pod.get("spec", {}).get("containers") or [] if c.get("name") == NODE_CONTAINER]
            installers = [c for c in pod.get("spec", {}).get("initContainers") or []
                          if c.get("name") == INSTALL_CNI_CONTAINER]
            if containers:
                nodes.append((pod, containers[0], installers))

    if (node_env or node_annotations) and not nodes:
        raise AnsibleFilterError("the manifest has no DaemonSet with a %r container: is it a Calico manifest?"
                                 % NODE_CONTAINER)
    if config_data and not configs:
        raise AnsibleFilterError("the manifest has no ConfigMap %s to set %s in"
                                 % (" or ".join(CONFIG_MAPS), ", ".join(sorted(config_data))))
    if install_cni_env and not any(installers for _pod, _container, installers in nodes):
        raise AnsibleFilterError("the manifest's calico-node has no %r init container to set %s in"
                                 % (INSTALL_CNI_CONTAINER, ", ".join(sorted(install_cni_env))))
    for pod, container, installers in nodes:
        if node_env:
            _set_env(container, node_env)
        for installer in installers if install_cni_env else []:
            _set_env(installer, install_cni_env)
        if node_annotations:
            annotations = pod.setdefault("metadata", {}).setdefault("annotations", {}) or {}
            annotations.update({key: to_text(value) for key, value in node_annotations.items()})
            pod["metadata"]["annotations"] = annotations
    for config in configs:
        if config_data:
            data = config.get("data") or {}
            data.update({key: to_text(value) for key, value in config_data.items()})
            config["data"] = data
    return docs


class FilterModule:
    """netmend.k8s Calico pool alignment filters."""

    def filters(self):
        return {
            "cidr_span": cidr_span,
            "calico_manifest": calico_manifest,
        }
