#!/usr/bin/python
# Copyright: netmend.k8s contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
module: rollout_status
short_description: Read how far a DaemonSet or Deployment has rolled out, and why its pods are not ready
version_added: 0.1.0
description:
  - One poll of what C(kubectl rollout status) waits for. Reads the workload and returns its counts, whether the
    rollout is done and a kubectl-like progress line.
  - With O(wait), keeps reading the workload every O(interval) seconds until the rollout is done or O(wait) seconds
    have passed, in one module run. A waiter on a large cluster then starts a module, and prints a line, every
    O(wait) seconds rather than every few seconds, and still returns as soon as the rollout is done.
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
  wait:
    description:
      - Seconds to keep reading the workload until its rollout is done. V(0) reads it once.
      - The pods (O(read_pods)) are listed once, after the last read, if the rollout is not done by then.
    type: int
    default: 0
  interval:
    description:
      - Seconds between two reads of the workload within O(wait).
    type: int
    default: 2
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

- name: Wait for a DaemonSet on 5,000 nodes, one module run and one progress line every 20 seconds
  netmend.k8s.rollout_status:
    kind: DaemonSet
    name: netmend-pod-poke
    namespace: netmend-system
    wait: 20
    interval: 2
  register: rollout
  until: rollout.done or rollout.fatal
  retries: 30
  delay: 0

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
reads:
  description: How many times the workload was read (1 without O(wait)).
  returned: success
  type: int
  sample: 1
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

import time
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
    wait=dict(type="int", default=0),
    interval=dict(type="int", default=2),
)
ARGUMENT_SPEC.update(AUTH_SPEC)
RESOURCES = {"DaemonSet": "daemonsets", "Deployment": "deployments"}


def check_params(params):
    """A message naming the bad value, or None."""
    if params.get("wait", 0) < 0:
        return "wait must be 0 or more seconds, got %s" % params["wait"]
    if params.get("interval", 2) < 1:
        return "interval must be at least 1 second, got %s" % params["interval"]
    return None


def read_progress(params, client):
    """rollout_progress of the workload, read once (a missing workload is found=False)."""
    path = "/apis/apps/v1/namespaces/%s/%s/%s" % (quote(params["namespace"], safe=""), RESOURCES[params["kind"]],
                                                  quote(params["name"], safe=""))
    try:
        resources = [client.get(path)]
    except KubeError as exc:
        if exc.status != 404:
            raise
        resources = []
    return rollout_progress(resources, params["kind"], "%s/%s" % (params["namespace"], params["name"]))


def run_module(params, client, clock=time.monotonic, sleep=time.sleep):
    """The rollout's progress, read until it is done or ``wait`` seconds have passed, and while it is not done
    (and ``read_pods``) its pods' problems."""
    deadline = clock() + params.get("wait", 0)
    interval = params.get("interval", 2)
    progress, reads = read_progress(params, client), 1
    # A missing workload is not waited for: the caller decides whether it should exist.
    while progress["found"] and not progress["done"] and clock() + interval <= deadline:
        sleep(interval)
        progress, reads = read_progress(params, client), reads + 1
    result = dict(changed=False, reads=reads, **progress)
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
    bad = check_params(module.params)
    if bad:
        module.fail_json(msg=bad, **where)
    client = connect(module, **where)
    try:
        result = run_module(module.params, client)
    except (KubeError, ValueError) as exc:
        label = "%s %s/%s" % (where["kind"], where["namespace"], where["name"])
        module.fail_json(msg="Reading the rollout of %s: %s" % (label, exc), **where)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
