#!/usr/bin/python
# Copyright: netmend.k8s contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
module: cluster_summary
short_description: Read every node of a cluster, its pod count and some pods, in short
version_added: 0.1.0
description:
  - Lists the cluster's Nodes a page at a time and returns what reports and checks read of each (name, Ready, pod
    CIDRs, InternalIPs, kubelet version), a few hundred bytes per node instead of the several kilobytes of a whole
    Node object (140 bytes against 2.2 kB for the lab's bare KWOK nodes; real nodes also list their images). At 5,000
    nodes that is under 1 MB handed to Ansible instead of 11 MB to tens of MB, which is where C(kubernetes.core.k8s_info)
    of every node spent its time (the report took over 11 minutes at 5,000 nodes, 43 s with this module).
  - With O(count_pods), also counts the cluster's pods with one request (the server's C(remainingItemCount)) instead
    of listing them all.
  - With O(pod_selector), also returns the pods matching that label selector, in all namespaces, in short (node,
    phase, Ready).
  - With O(objects), also reads a few whole objects by kind and name or label selector, in one module run; the
    roles read Calico's DaemonSet, ConfigMap, Typha and Installation this way instead of in seven runs of
    C(kubernetes.core.k8s_info), each of which starts Python and the kubernetes client again.
  - Changes nothing.
author:
  - netmend developers (@netmend)
options:
  nodes:
    description:
      - Whether to list the nodes (RV(nodes) is empty when not).
    type: bool
    default: true
  objects:
    description:
      - Objects to read whole, returned in RV(objects) in the same order. Kinds are looked up in the API's discovery
        documents, so custom resources work too; a kind the cluster does not serve (its CRD is not installed) and an
        object that does not exist both come back with no resources, as with C(kubernetes.core.k8s_info).
    type: list
    elements: dict
    default: []
    suboptions:
      api_version:
        description: Its C(apiVersion) (C(v1), C(apps/v1), C(operator.tigera.io/v1)).
        type: str
        required: true
      kind:
        description: Its C(kind).
        type: str
        required: true
      name:
        description:
          - Its name; not given, every object of the kind (in O(objects[].namespace), else in all namespaces).
          - A namespaced kind read by name needs O(objects[].namespace).
        type: str
      namespace:
        description: Its namespace; ignored for a cluster-scoped kind.
        type: str
      label_selector:
        description: Only objects with these labels (C(app.kubernetes.io/part-of=netmend)); not with O(objects[].name).
        type: str
  count_pods:
    description:
      - Whether to count the pods of every namespace, returned as RV(pod_count).
    type: bool
    default: false
  pod_selector:
    description:
      - A label selector (C(k8s-app=calico-node)); the pods that match it, in all namespaces, are returned as RV(pods).
      - Not given, no pod is listed.
    type: str
  page_size:
    description:
      - How many objects each list request asks for (C(limit)).
    type: int
    default: 500
extends_documentation_fragment:
  - netmend.k8s.attributes
  - netmend.k8s.attributes.k8s_auth
attributes:
  check_mode:
    support: full
    details: Reads only, so it runs the same in check mode.
  diff_mode:
    support: none
  platform:
    platforms: posix
seealso:
  - module: kubernetes.core.k8s_info
"""

EXAMPLES = r"""
- name: Read the nodes, the pod count and the Calico agents' pods
  netmend.k8s.cluster_summary:
    count_pods: true
    pod_selector: k8s-app=calico-node
  register: summary

- name: Read Calico's DaemonSet and the operator's Installation (if its CRD is installed), not the nodes
  netmend.k8s.cluster_summary:
    nodes: false
    objects:
      - {api_version: apps/v1, kind: DaemonSet, namespace: calico-system, name: calico-node}
      - {api_version: operator.tigera.io/v1, kind: Installation, name: default}
  register: calico

- name: Name the nodes that are not Ready
  ansible.builtin.debug:
    msg: "{{ summary.nodes | rejectattr('ready', 'equalto', 'True') | map(attribute='name') | list }}"
"""

RETURN = r"""
nodes:
  description: Every node, in the order the API lists them; empty with O(nodes=false).
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The node's name.
      type: str
      sample: worker-1
    ready:
      description: The status of its C(Ready) condition, as the API gives it; null when it has none yet.
      type: str
      sample: "True"
    pod_cidrs:
      description: Its C(spec.podCIDRs), else C(spec.podCIDR) alone; empty when it has neither.
      type: list
      elements: str
      sample: [10.244.1.0/24]
    internal_ip:
      description: Its first C(InternalIP) address; null when it has none.
      type: str
      sample: 192.0.2.11
    addresses:
      description: All its C(InternalIP) addresses.
      type: list
      elements: str
      sample: [192.0.2.11]
    kubelet:
      description: Its kubelet's version.
      type: str
      sample: v1.31.4
  sample:
    - {name: worker-1, ready: "True", pod_cidrs: [10.244.1.0/24], internal_ip: 192.0.2.11, addresses: [192.0.2.11],
       kubelet: v1.31.4}
pod_count:
  description: How many pods the cluster holds, in every namespace and phase.
  returned: when O(count_pods=true)
  type: int
  sample: 48213
objects:
  description: What each of O(objects) found, in the same order.
  returned: always
  type: list
  elements: dict
  contains:
    api_version:
      description: As asked.
      type: str
      sample: apps/v1
    kind:
      description: As asked.
      type: str
      sample: DaemonSet
    name:
      description: As asked; null when not.
      type: str
      sample: calico-node
    namespace:
      description: As asked; null when not.
      type: str
      sample: calico-system
    label_selector:
      description: As asked; null when not.
      type: str
    served:
      description: Whether the cluster serves the kind.
      type: bool
      sample: true
    resources:
      description: The objects found, whole, each with its C(apiVersion) and C(kind); empty when none.
      type: list
      elements: dict
pods:
  description: The pods that match O(pod_selector).
  returned: when O(pod_selector) is given
  type: list
  elements: dict
  contains:
    namespace:
      description: Its namespace.
      type: str
      sample: calico-system
    name:
      description: Its name.
      type: str
      sample: calico-node-7x2kq
    node:
      description: The node it is bound to; null while it is not scheduled.
      type: str
      sample: worker-1
    phase:
      description: Its C(status.phase).
      type: str
      sample: Running
    ready:
      description: Whether its C(Ready) condition is C(True).
      type: bool
      sample: true
  sample:
    - {namespace: calico-system, name: calico-node-7x2kq, node: worker-1, phase: Running, ready: true}
"""

import urllib.parse

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.netmend.k8s.plugins.module_utils.kube_controller import AUTH_SPEC, connect
from ansible_collections.netmend.k8s.plugins.module_utils.kube_lite import KubeError, node_summary, pod_summary, pods_path
from ansible_collections.netmend.k8s.plugins.module_utils.kube_lite import api_resource, resource_path

OBJECT_SPEC = dict(
    api_version=dict(type="str", required=True),
    kind=dict(type="str", required=True),
    name=dict(type="str"),
    namespace=dict(type="str"),
    label_selector=dict(type="str"),
)
ARGUMENT_SPEC = dict(
    nodes=dict(type="bool", default=True),
    objects=dict(type="list", elements="dict", default=[], options=OBJECT_SPEC, mutually_exclusive=[("name", "label_selector")]),
    count_pods=dict(type="bool", default=False),
    pod_selector=dict(type="str"),
    page_size=dict(type="int", default=500),
)
ARGUMENT_SPEC.update(AUTH_SPEC)
NODES_PATH = "/api/v1/nodes"


def run_module(params, client):
    """The nodes in short; the pod count and the selected pods in short when asked."""
    if params["page_size"] < 1:
        raise ValueError("page_size must be 1 or more, got %d" % params["page_size"])
    nodes = client.items(NODES_PATH, params["page_size"]) if params["nodes"] else []
    result = dict(changed=False, nodes=[node_summary(node) for node in nodes])
    served = {}
    result["objects"] = [read_objects(client, dict(wanted), params["page_size"], served) for wanted in params["objects"]]
    if params["count_pods"]:
        result["pod_count"] = client.count(pods_path())
    if params["pod_selector"] is not None:
        pods = client.items(pods_path(), params["page_size"], labelSelector=params["pod_selector"])
        result["pods"] = [pod_summary(pod) for pod in pods]
    return result


def read_objects(client, wanted, page_size, served):
    """One entry of ``objects``: the objects it names, whole, with their apiVersion and kind."""
    resource = api_resource(client, wanted["api_version"], wanted["kind"], served)
    wanted.update(served=resource is not None, resources=[])
    if resource is None:
        return wanted
    path = resource_path(wanted["api_version"], resource, wanted.get("namespace"))
    if wanted.get("name"):
        if wanted.get("namespace") is None and resource.get("namespaced"):
            raise ValueError("objects: %s %s is namespaced: give its namespace" % (wanted["kind"], wanted["name"]))
        try:
            wanted["resources"] = [client.get(path + "/" + urllib.parse.quote(wanted["name"], safe=""))]
        except KubeError as exc:
            if exc.status != 404:
                raise
        return wanted
    query = {"labelSelector": wanted["label_selector"]} if wanted.get("label_selector") else {}
    wanted["resources"] = [dict(item, apiVersion=wanted["api_version"], kind=wanted["kind"])
                           for item in client.items(path, page_size, **query)]
    return wanted


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    client = connect(module)
    try:
        result = run_module(module.params, client)
    except (KubeError, ValueError) as exc:
        module.fail_json(msg="Reading the cluster's summary: %s" % exc)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
