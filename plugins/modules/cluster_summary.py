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
  - Changes nothing.
author:
  - netmend developers (@netmend)
options:
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

- name: Name the nodes that are not Ready
  ansible.builtin.debug:
    msg: "{{ summary.nodes | rejectattr('ready', 'equalto', 'True') | map(attribute='name') | list }}"
"""

RETURN = r"""
nodes:
  description: Every node, in the order the API lists them.
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

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.netmend.k8s.plugins.module_utils.kube_controller import AUTH_SPEC, connect
from ansible_collections.netmend.k8s.plugins.module_utils.kube_lite import KubeError, node_summary, pod_summary, pods_path

ARGUMENT_SPEC = dict(
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
    result = dict(changed=False, nodes=[node_summary(node) for node in client.items(NODES_PATH, params["page_size"])])
    if params["count_pods"]:
        result["pod_count"] = client.count(pods_path())
    if params["pod_selector"] is not None:
        pods = client.items(pods_path(), params["page_size"], labelSelector=params["pod_selector"])
        result["pods"] = [pod_summary(pod) for pod in pods]
    return result


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
