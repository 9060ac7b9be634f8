#!/usr/bin/python
# Copyright: netmend.k8s contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
module: rollout_status
short_description: Read once how far a DaemonSet or Deployment has rolled out, and why its pods are not ready
version_added: 0.1.0
description:
  - One poll of what C(kubectl rollout status) waits for. Reads the workload and returns its counts, whether the
    rollout is done and a kubectl-like progress line.
  - While the rollout is not done, also lists the workload's pods (by its selector; for a DaemonSet only those of the
    current template generation) and says why each one that is not ready is not, and whether waiting can cure it
    (RV(fatal)); a container in C(CrashLoopBackOff), an image that cannot be pulled or a configuration error cannot.
    With O(read_pods=false) it does not, so that a waiter can list thousands of pods every few polls only rather than
    at every poll.
  - Also returns how the controller paces the rollout (RV(to_replace), RV(batch), RV(min_ready_seconds)), from which
    P(netmend.k8s.rollout_budget#filter) computes how long to wait.
  - Changes nothing. Call it in a loop with C(until) or C(loop_control.break_when) to wait; the C(netmend.k8s.agent)
    role does.
author:
  - netmend developers (@netmend)
options:
  kind:
    description:
      - Kind of the workload.
    type: str
    choices: [DaemonSet, Deployment]
    default: DaemonSet
  name:
    description:
      - Name of the workload.
    type: str
    required: true
  namespace:
    description:
      - Namespace of the workload.
    type: str
    required: true
  read_pods:
    description:
      - Whether to list the workload's pods, when its controller has seen the latest generation and the rollout is not
        done, to fill RV(problems) and RV(fatal).
      - With V(false) the module reads the workload only; RV(problems) is empty, RV(fatal) false and RV(pods_read) false.
    type: bool
    default: true
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
- name: Wait up to 5 minutes for the agent DaemonSet, printing its progress at each poll
  netmend.k8s.rollout_status:
    kind: DaemonSet
    name: netmend-pod-poke
    namespace: netmend-system
  register: rollout
  until: rollout.done or rollout.fatal
  retries: 60
  delay: 5

- name: Say why it did not finish
  ansible.builtin.fail:
    msg: "{{ rollout.line }}: {{ rollout.problems | netmend.k8s.rollout_not_ready(10) }}"
  when: not rollout.done

- name: Read a DaemonSet on 5,000 nodes without listing its pods
  netmend.k8s.rollout_status:
    kind: DaemonSet
    name: netmend-pod-poke
    namespace: netmend-system
    read_pods: false
  register: rollout

- name: Wait as long as its size and rolling-update budget need
  ansible.builtin.debug:
    msg: "{{ (rollout | netmend.k8s.rollout_budget(300)).text }}"
"""

RETURN = r"""
found:
  description: Whether the workload exists.
  returned: success
  type: bool
  sample: true
observed:
  description: Whether its controller has seen its latest generation; the counts mean nothing before.
  returned: success
  type: bool
  sample: true
desired:
  description: Pods wanted (nodes the DaemonSet should run on, or the Deployment's replicas).
  returned: success
  type: int
  sample: 5
updated:
  description: Pods made from the current template.
  returned: success
  type: int
  sample: 4
available:
  description: Pods ready for the workload's C(minReadySeconds).
  returned: success
  type: int
  sample: 4
generation:
  description: The workload's generation.
  returned: success
  type: int
  sample: 2
selector:
  description: Its pods' label selector, as C(key=value,...).
  returned: success
  type: str
  sample: app.kubernetes.io/name=netmend-pod-poke
done:
  description: Whether every desired pod is updated and available.
  returned: success
  type: bool
  sample: false
line:
  description: The progress line, as C(kubectl rollout status) would print it.
  returned: success
  type: str
  sample: "DaemonSet netmend-system/netmend-pod-poke: 4 of 5 updated, 4 available"
to_replace:
  description: Old pods the rollout still replaces; every pod counted until the controller has seen the latest generation,
    none for an C(OnDelete) DaemonSet.
  returned: success
  type: int
  sample: 1
batch:
  description: Pods replaced at once, C(maxUnavailable) plus C(maxSurge) (a percentage taken of RV(desired), rounded as the
    controller rounds it), at least 1; every old pod for a C(Recreate) Deployment.
  returned: success
  type: int
  sample: 1
min_ready_seconds:
  description: The workload's C(minReadySeconds).
  returned: success
  type: int
  sample: 10
pods_read:
  description: Whether the pods were listed (see O(read_pods)).
  returned: success
  type: bool
  sample: true
problems:
  description: Each pod that is not ready, and why; empty when the rollout is done or its pods were not read.
  returned: success
  type: list
  elements: dict
  contains:
    pod:
      description: Namespace and name of the pod.
      type: str
    node:
      description: Its node.
      type: str
    fatal:
      description: Whether waiting cannot cure it.
      type: bool
    reasons:
      description: Its containers' waiting reasons.
      type: list
      elements: str
    text:
      description: One line naming the pod, its node and each container's reason, message and last termination.
      type: str
  sample: []
fatal:
  description: Whether a pod has a problem that waiting cannot cure.
  returned: success
  type: bool
  sample: false
"""

from urllib.parse import quote

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.netmend.k8s.plugins.module_utils.kube_controller import AUTH_SPEC, connect
from ansible_collections.netmend.k8s.plugins.module_utils.kube_lite import KubeError, pods_path
from ansible_collections.netmend.k8s.plugins.module_utils.rollout import rollout_pod_problems, rollout_progress

ARGUMENT_SPEC = dict(
    kind=dict(type="str", choices=["DaemonSet", "Deployment"], default="DaemonSet"),
    name=dict(type="str", required=True),
    namespace=dict(type="str", required=True),
    read_pods=dict(type="bool", default=True),
)
ARGUMENT_SPEC.update(AUTH_SPEC)
RESOURCES = {"DaemonSet": "daemonsets", "Deployment": "deployments"}


def run_module(params, client):
    """The rollout's progress, and while it is not done (and ``read_pods``) its pods' problems."""
    path = "/apis/apps/v1/namespaces/%s/%s/%s" % (quote(params["namespace"], safe=""), RESOURCES[params["kind"]],
                                                  quote(params["name"], safe=""))
    try:
        resources = [client.get(path)]
    except KubeError as exc:
        if exc.status != 404:
            raise
        resources = []
    label = "%s/%s" % (params["namespace"], params["name"])
    result = dict(changed=False, **rollout_progress(resources, params["kind"], label))
    problems = []
    pods_read = (params["read_pods"] and result["found"] and result["observed"] and not result["done"]
                 and bool(result["selector"]))
    if pods_read:
        pods = client.list(pods_path(params["namespace"]), labelSelector=result["selector"])["items"]
        generation = result["generation"] if params["kind"] == "DaemonSet" else None
        problems = rollout_pod_problems(pods, generation)
    result.update(problems=problems, fatal=any(problem["fatal"] for problem in problems), pods_read=pods_read)
    return result


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    where = dict(kind=module.params["kind"], name=module.params["name"], namespace=module.params["namespace"])
    client = connect(module, **where)
    try:
        result = run_module(module.params, client)
    except (KubeError, ValueError) as exc:
        label = "%s %s/%s" % (where["kind"], where["namespace"], where["name"])
        module.fail_json(msg="Reading the rollout of %s: %s" % (label, exc), **where)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
