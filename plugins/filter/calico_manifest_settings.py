# Copyright: netmend.k8s contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a parsed Calico manifest already decides, and what the calico role must change in it.

Official manifests differ in what they decide for themselves: the networking backend
(``calico_backend`` bird, vxlan or none), the pool encapsulation of the node's env
(IP-in-IP, VXLAN, Never), where Typha is looked for, and where the MTU lives
(``veth_mtu`` through ``valueFrom``, or literal numbers as kubespray renders them).
``calico_manifest_settings`` reads them and returns the changes that keep the
manifest routable, or refuses a change Calico could not route, naming the values.
The documentation of the filter lives next to this file in ``calico_manifest_settings.yml``.
"""
from __future__ import annotations

import re

from ansible.errors import AnsibleFilterError
from ansible.module_utils.common.text.converters import to_text

from ansible_collections.netmend.k8s.plugins.module_utils import calico
from ansible_collections.netmend.k8s.plugins.module_utils.calico import BACKENDS, CONFIG_MAPS, MTU_KEY, NODE_CONTAINER, POOL_ENV

INSTALL_CNI_CONTAINER = "install-cni"
CNI_TEMPLATE_KEY = "cni_network_config"
ENCAPSULATIONS = ("ipip", "vxlan", "none")
# Felix looks for Typha's Service here unless FELIX_TYPHAK8SNAMESPACE says otherwise.
DEFAULT_TYPHA_NAMESPACE = "kube-system"
TYPHA_NAMESPACE_ENV = "FELIX_TYPHAK8SNAMESPACE"
TYPHA_NAME = "calico-typha"
# Felix's tunnel MTUs (v4 and v6); the official manifests take them all from veth_mtu.
FELIX_MTU_ENV = re.compile(r"^FELIX_(IPINIP|VXLAN|WIREGUARD)MTU(V6)?$")
CNI_MTU_ENV = "CNI_MTU"
# A number after "mtu" in the CNI config template: kubespray renders the MTU there instead of __CNI_MTU__.
_CNI_LITERAL_MTU = re.compile(r'("mtu"\s*:\s*)(-?\d+)')


def _config_maps(documents):
    return [doc for doc in documents if doc.get("kind") == "ConfigMap" and doc["metadata"].get("name") in CONFIG_MAPS]


def _follows_mtu_key(item):
    """Whether an env item takes its value from veth_mtu of the manifest's config map."""
    ref = (item.get("valueFrom") or {}).get("configMapKeyRef") or {}
    return ref.get("name") in CONFIG_MAPS and ref.get("key") == MTU_KEY


def _refuse_unroutable(encapsulation, cross_subnet, backend, backend_source):
    if backend == "none" and encapsulation != "none":
        raise AnsibleFilterError(
            "calico_encapsulation %s cannot apply: the manifest's calico_backend is none (%s), so Calico does not carry "
            "pod traffic between nodes (policy only, or canal, where flannel does); leave calico_encapsulation unset"
            % (encapsulation, backend_source))
    if backend == "vxlan" and encapsulation in ("ipip", "none"):
        what = "IP-in-IP" if encapsulation == "ipip" else "unencapsulated pod traffic"
        raise AnsibleFilterError(
            "calico_encapsulation %s with the manifest's calico_backend vxlan (%s): %s needs routes from BGP (BIRD, "
            "calico_backend bird), so traffic between nodes would have no routes; use calico_encapsulation vxlan, or a "
            "manifest with calico_backend bird" % (encapsulation, backend_source, what))
    if cross_subnet and encapsulation == "none":
        raise AnsibleFilterError("calico_cross_subnet is true but the encapsulation is none (%s): CrossSubnet needs ipip "
                                 "or vxlan" % backend_source)


def _mtu_places(documents, config, mtu):
    """Env and config changes that put ``mtu`` in every place the manifest holds one, and those places."""
    node_env, install_env, config_data, places = {}, {}, {}, []
    for container_name, target, names in ((NODE_CONTAINER, node_env, FELIX_MTU_ENV),
                                          (INSTALL_CNI_CONTAINER, install_env, re.compile("^%s$" % CNI_MTU_ENV))):
        init = container_name == INSTALL_CNI_CONTAINER
        for workload, container in calico.containers(documents, container_name, init=init):
            for name, item in calico.env(container).items():
                if not names.match(name or ""):
                    continue
                where = "%s container %s env %s" % (workload, container_name, name)
                if "value" in item:
                    target[name] = mtu
                    places.append("%s (literal %s)" % (where, item["value"]))
                elif _follows_mtu_key(item):
                    places.append("%s (from %s)" % (where, MTU_KEY))
                else:
                    raise AnsibleFilterError(
                        "the MTU lives in %s, which takes its value from %s; the role can set a literal or %s of %s, "
                        "not that: change it in the manifest, or leave calico_veth_mtu unset"
                        % (where, item.get("valueFrom"), MTU_KEY, "/".join(CONFIG_MAPS)))
    if config is None and not places:
        raise AnsibleFilterError("calico_veth_mtu is set but the manifest has no %s ConfigMap and no literal MTU in "
                                 "calico-node or install-cni: there is nowhere to set it" % " or ".join(CONFIG_MAPS))
    if config is not None:
        data = config.get("data") or {}
        config_data[MTU_KEY] = mtu
        places.append("%s %s" % (config["metadata"]["name"], MTU_KEY))
        template = data.get(CNI_TEMPLATE_KEY)
        literal = _CNI_LITERAL_MTU.search(template) if isinstance(template, str) else None
        if literal:
            config_data[CNI_TEMPLATE_KEY] = _CNI_LITERAL_MTU.sub(lambda match: match.group(1) + mtu, template)
            places.append("%s %s (literal \"mtu\": %s)" % (config["metadata"]["name"], CNI_TEMPLATE_KEY, literal.group(2)))
    return node_env, install_env, config_data, places


def calico_manifest_settings(documents, encapsulation=None, cross_subnet=False, namespace=None, mtu=None):
    """Decide the changes the calico role makes to a manifest; see calico_manifest_settings.yml."""
    if not isinstance(documents, list) or not all(isinstance(doc, dict) and isinstance(doc.get("metadata"), dict)
                                                  for doc in documents):
        raise AnsibleFilterError("calico_manifest_settings input must be the manifest's documents, as calico_manifest "
                                 "returns them")
    if encapsulation is not None and encapsulation not in ENCAPSULATIONS:
        raise AnsibleFilterError("calico_encapsulation %r is not one of %s" % (encapsulation, ", ".join(ENCAPSULATIONS)))
    nodes = calico.containers(documents, NODE_CONTAINER)
    if not nodes:
        raise AnsibleFilterError("the manifest has no DaemonSet with a %r container: is it a Calico manifest?"
                                 % NODE_CONTAINER)
    configs = _config_maps(documents)
    config = configs[0] if configs else None
    backend, backend_source = calico.backend(documents, config)
    if backend not in BACKENDS:
        raise AnsibleFilterError("the manifest's calico_backend %r (%s) is not one of %s"
                                 % (backend, backend_source, ", ".join(BACKENDS)))
    node_env_items = calico.env(nodes[0][1])
    manifest_encapsulation, manifest_cross_subnet = calico.pool_encapsulation(node_env_items)
    if backend in ("vxlan", "none"):
        manifest_encapsulation = backend
    node_env = {}
    if encapsulation is None and not cross_subnet:
        chosen, chosen_cross, source = manifest_encapsulation, manifest_cross_subnet, "the manifest (%s)" % backend_source
    else:
        chosen = manifest_encapsulation if encapsulation is None else encapsulation
        chosen_cross, source = bool(cross_subnet), "calico_encapsulation"
        _refuse_unroutable(chosen, chosen_cross, backend, backend_source)
        if backend != "none":
            mode = "CrossSubnet" if chosen_cross else "Always"
            node_env = {name: (mode if kind == chosen else "Never") for kind, name in POOL_ENV.items()}

    moved_typha = namespace and namespace != DEFAULT_TYPHA_NAMESPACE and any(
        doc.get("kind") in ("Deployment", "Service") and doc["metadata"].get("name") == TYPHA_NAME for doc in documents)
    if moved_typha:
        node_env[TYPHA_NAMESPACE_ENV] = namespace

    install_env, config_data, mtu_places = {}, {}, []
    if mtu is not None:
        mtu_env, install_env, config_data, mtu_places = _mtu_places(documents, config, to_text(mtu))
        node_env.update(mtu_env)
    return {
        "backend": backend,
        "backend_source": backend_source,
        "encapsulation": chosen,
        "cross_subnet": chosen_cross,
        "encapsulation_source": source,
        "config_map": config["metadata"]["name"] if config is not None else None,
        "node_env": node_env,
        "install_cni_env": install_env,
        "config_data": config_data,
        "mtu_places": mtu_places,
        "typha_namespace": namespace if moved_typha else None,
    }


class FilterModule:
    """netmend.k8s Calico manifest settings filter."""

    def filters(self):
        return {"calico_manifest_settings": calico_manifest_settings}
