#!/usr/bin/python
# Copyright: netmend.k8s contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
module: calico_mtu_restart
short_description: Restart, by eviction, the pods of a node whose Calico interface has another MTU
version_added: 0.1.0
description:
  - Lists the pods of O(node) and picks those whose host-side Calico veth is one of O(stale_interfaces), the
    RV(netmend.k8s.calico_mtu#module:stale_interfaces) that M(netmend.k8s.calico_mtu) returned for that node.
  - Evicts them one at a time, waiting for each to go before the next, so PodDisruptionBudgets hold and a workload never
    loses more than one pod to it at once. Each eviction carries the pod's UID as a precondition, so a pod recreated
    under the same name since the listing is left alone. The node is not cordoned.
  - Host-network pods, calico-node, static pods and pods already terminating or finished are never evicted.
  - The same selection and eviction code as the C(calico_mtu) agent (C(plugins/module_utils/mtu_agent.py) and
    C(kube_lite.py)), run from the controller with the usual Kubernetes credentials.
author:
  - netmend developers (@netmend)
options:
  node:
    description:
      - Name of the Kubernetes node whose pods are restarted.
    type: str
    required: true
  mtu:
    description:
      - The MTU the node's CNI configuration now carries (RV(netmend.k8s.calico_mtu#module:mtu)).
    type: int
    required: true
  stale_interfaces:
    description:
      - The node's host-side pod interfaces with another MTU, as RV(netmend.k8s.calico_mtu#module:stale_interfaces) returns them.
    type: list
    elements: dict
    required: true
  veth_prefix:
    description:
      - Prefix of the host-side pod interfaces (Felix's C(interfacePrefix)).
    type: str
    default: cali
  eviction_timeout:
    description:
      - Seconds to wait for an evicted pod to go before evicting the next one.
    type: int
    default: 120
extends_documentation_fragment:
  - netmend.k8s.attributes
  - netmend.k8s.attributes.k8s_auth
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  platform:
    platforms: posix
notes:
  - A pod a PodDisruptionBudget protects now is listed in RV(blocked) with a warning, never forced; run again later.
seealso:
  - module: netmend.k8s.calico_mtu
"""

EXAMPLES = r"""
- name: Set the MTU on the node
  netmend.k8s.calico_mtu:
    encapsulation: vxlan
  register: node_mtu

- name: Restart the pods of that node still on another MTU
  netmend.k8s.calico_mtu_restart:
    node: "{{ inventory_hostname }}"
    mtu: "{{ node_mtu.mtu }}"
    stale_interfaces: "{{ node_mtu.stale_interfaces }}"
  delegate_to: localhost
"""

RETURN = r"""
evicted:
  description: Pods evicted (in check mode, that would be evicted), in order.
  returned: success
  type: list
  elements: dict
  contains:
    namespace:
      description: Namespace of the pod.
      type: str
      sample: shop
    name:
      description: Name of the pod.
      type: str
      sample: web-7d9c6b5f4-x2x8q
    interface:
      description: Its host-side interface.
      type: str
      sample: calic440f455693
    interface_mtu:
      description: The MTU that interface had.
      type: int
      sample: 1500
  sample: [{"namespace": "shop", "name": "web-7d9c6b5f4-x2x8q", "interface": "calic440f455693", "interface_mtu": 1500}]
blocked:
  description: Pods whose eviction a PodDisruptionBudget refused; same keys as RV(evicted).
  returned: success
  type: list
  elements: dict
  sample: []
replaced:
  description: Pods that were replaced under the same name before their eviction, so were not evicted; same keys as RV(evicted).
  returned: success
  type: list
  elements: dict
  sample: []
"""

import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.netmend.k8s.plugins.module_utils.kube_controller import AUTH_SPEC, connect
from ansible_collections.netmend.k8s.plugins.module_utils.kube_lite import (
    BLOCKED,
    EVICTED,
    GONE,
    STILL_TERMINATING,
    KubeError,
    evict_in_turn,
    pods_path,
)
from ansible_collections.netmend.k8s.plugins.module_utils.mtu import VETH_PREFIX
from ansible_collections.netmend.k8s.plugins.module_utils.mtu_agent import stale_pods

ARGUMENT_SPEC = dict(
    node=dict(type="str", required=True),
    mtu=dict(type="int", required=True),
    stale_interfaces=dict(type="list", elements="dict", required=True),
    veth_prefix=dict(type="str", default=VETH_PREFIX),
    eviction_timeout=dict(type="int", default=120),
)
ARGUMENT_SPEC.update(AUTH_SPEC)
REPORTED_KEYS = ("namespace", "name", "interface", "interface_mtu")


def run_module(module, client):
    params = module.params
    reported = {item.get("name"): item.get("mtu") for item in params["stale_interfaces"]}
    listing = client.list(pods_path(), fieldSelector="spec.nodeName=%s" % params["node"])
    pods = stale_pods(listing["items"], reported.get, params["mtu"], params["veth_prefix"])
    result = dict(changed=bool(pods), evicted=[], blocked=[], replaced=[])
    if module.check_mode:
        result["evicted"] = [{key: pod[key] for key in REPORTED_KEYS} for pod in pods]
        return result

    def no_stop(seconds):
        time.sleep(seconds)
        return False

    outcomes = evict_in_turn(client, pods, params["eviction_timeout"], no_stop, time.monotonic, lambda *_: None)
    for key, outcome in (("evicted", EVICTED), ("evicted", STILL_TERMINATING), ("blocked", BLOCKED),
                         ("replaced", GONE)):
        result[key] += [{field: pod[field] for field in REPORTED_KEYS} for pod in outcomes[outcome]]
    result["changed"] = bool(result["evicted"])
    for pod in result["blocked"]:
        module.warn("Eviction of pod %s/%s refused by a PodDisruptionBudget: not forced; run again later"
                    % (pod["namespace"], pod["name"]))
    return result


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    client = connect(module, node=module.params["node"])
    try:
        result = run_module(module, client)
    except KubeError as exc:
        module.fail_json(msg=str(exc), node=module.params["node"])
    module.exit_json(**result)


if __name__ == "__main__":
    main()
