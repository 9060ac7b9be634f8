# Copyright: netmend.k8s contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reading a DaemonSet or Deployment rollout the way ``kubectl rollout status`` does.

``rollout_progress`` turns the workload (as ``k8s_info`` returns it) into counts,
a done flag and the progress line; ``rollout_pod_problems`` says why its pods are
not available: a container that cannot start (crash loop, image, configuration)
or a pod that is not ready. ``rollout_budget`` scales the wait with the workload's
size and its rolling-update budget, ``rollout_not_ready`` sums up the problems of
thousands of pods in a bounded message. The internal agent role's rollout wait uses
them all. The documentation of each filter lives next to this file in ``<filter name>.yml``.
"""
from __future__ import annotations

import math

from ansible.errors import AnsibleFilterError

# Waiting reasons that do not clear up by waiting: the rollout fails at once on them.
FATAL_REASONS = frozenset((
    "CrashLoopBackOff",
    "ImagePullBackOff",
    "ErrImageNeverPull",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
))
# A container that failed this often is crash-looping even in the moments the kubelet shows it
# running between back-offs (a real node shows "running, not ready" as often as CrashLoopBackOff).
CRASH_RESTARTS = 2
KINDS = ("DaemonSet", "Deployment")
# The DaemonSet controller labels each pod with the generation of the template it was made from.
TEMPLATE_GENERATION_LABEL = "pod-template-generation"


def _int(value):
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def rollout_progress(resources, kind="DaemonSet", name=""):
    """Counts, ``done`` and the kubectl-like progress line of one workload.

    ``resources`` is ``k8s_info``'s list (empty when the workload does not exist).
    Available means ready for ``minReadySeconds`` (the controller's own count), and
    the status only counts once the controller has seen the latest generation.
    """
    if kind not in KINDS:
        raise AnsibleFilterError("rollout_progress kind must be one of %s, got %r" % (", ".join(KINDS), kind))
    if not isinstance(resources, list):
        raise AnsibleFilterError("rollout_progress expects the resources list of k8s_info, got %r" % (resources,))
    workload = resources[0] if resources else {}
    metadata = workload.get("metadata") or {}
    spec = workload.get("spec") or {}
    status = workload.get("status") or {}
    label = "%s %s" % (kind, "%s/%s" % (metadata["namespace"], metadata["name"]) if metadata.get("name") else name)
    if kind == "DaemonSet":
        desired = _int(status.get("desiredNumberScheduled"))
        updated = _int(status.get("updatedNumberScheduled"))
        available = _int(status.get("numberAvailable"))
    else:
        desired = _int(spec.get("replicas", 1))
        updated = _int(status.get("updatedReplicas"))
        available = _int(status.get("availableReplicas"))
    generation = _int(metadata.get("generation"))
    observed = bool(workload) and _int(status.get("observedGeneration")) >= generation
    labels = ((spec.get("selector") or {}).get("matchLabels")) or {}
    if not workload:
        line = "%s: not found" % label
    elif not observed:
        line = "%s: waiting for the controller to see generation %d" % (label, generation)
    else:
        line = "%s: %d of %d updated, %d available" % (label, updated, desired, available)
    return {
        "found": bool(workload),
        "observed": observed,
        "desired": desired,
        "updated": updated,
        "available": available,
        "generation": generation,
        "selector": ",".join("%s=%s" % item for item in sorted(labels.items())),
        "done": observed and updated == desired and available == desired,
        "line": line,
    }


def _container_problem(container):
    """(fatal, text) for a container that is not running ready, else None."""
    state = container.get("state") or {}
    name = container.get("name", "?")
    last = ((container.get("lastState") or {}).get("terminated")) or {}
    last_text = ""
    if last:
        last_text = "; last terminated: %s (exit code %s)" % (last.get("reason") or "unknown", last.get("exitCode", "?"))
        if last.get("message"):
            last_text += ": %s" % last["message"].strip()
    restarts = _int(container.get("restartCount"))
    crashing = bool(last) and last.get("exitCode") not in (0, "0", None) and restarts >= CRASH_RESTARTS
    waiting = state.get("waiting")
    if waiting:
        reason = waiting.get("reason") or "Waiting"
        message = (waiting.get("message") or "").strip()
        text = "container %s waiting: %s%s%s" % (name, reason, ": " + message if message else "", last_text)
        return reason in FATAL_REASONS or crashing, text
    if state.get("terminated"):
        terminated = state["terminated"]
        failed = terminated.get("exitCode") not in (0, "0", None) and restarts >= CRASH_RESTARTS
        return failed, "container %s terminated: %s (exit code %s, restarts %d)" % (
            name, terminated.get("reason") or "unknown", terminated.get("exitCode", "?"), restarts)
    if not container.get("ready"):
        return crashing, "container %s running, not ready (restarts %d)%s" % (name, restarts, last_text)
    return None


def _pod_ready_message(status):
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Ready":
            return condition.get("status") == "True", (condition.get("message") or condition.get("reason") or "").strip()
    return False, "no Ready condition yet"


def rollout_pod_problems(pods, generation=None, fatal_only=False):
    """Why the workload's pods are not available: one entry per pod that is not ready.

    With ``generation`` only DaemonSet pods made from that template generation count
    (an old pod's crash loop is what a rollout replaces, not a reason to stop it).
    With ``fatal_only`` only pods with a container in a waiting state that waiting does
    not cure (``FATAL_REASONS``), or that has failed ``CRASH_RESTARTS`` times, whatever
    state the kubelet shows between its back-offs. Each entry has ``pod``, ``node``, ``fatal``, ``reasons``
    (the waiting reasons) and ``text``, one line naming the pod, its node and every
    container's reason, message and last termination.
    """
    if not isinstance(pods, list):
        raise AnsibleFilterError("rollout_pod_problems expects a list of pods, got %r" % (pods,))
    problems = []
    for pod in pods:
        metadata = pod.get("metadata") or {}
        status = pod.get("status") or {}
        if metadata.get("deletionTimestamp"):
            continue
        labels = metadata.get("labels") or {}
        if generation is not None and labels.get(TEMPLATE_GENERATION_LABEL) != str(generation):
            continue
        ready, ready_message = _pod_ready_message(status)
        if ready:
            continue
        containers = (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or [])
        found = [_container_problem(container) for container in containers]
        found = [problem for problem in found if problem]
        fatal = any(is_fatal for is_fatal, _text in found)
        if fatal_only and not fatal:
            continue
        details = [text for _fatal, text in found] or [
            "%s%s" % (status.get("phase") or "Pending", ": " + ready_message if ready_message else "")]
        node = (pod.get("spec") or {}).get("nodeName") or "(not scheduled)"
        name = "%s/%s" % (metadata.get("namespace", ""), metadata.get("name", ""))
        problems.append({
            "pod": name,
            "node": node,
            "fatal": fatal,
            "reasons": sorted({((c.get("state") or {}).get("waiting") or {}).get("reason") or ""
                               for c in containers} - {""}),
            "text": "pod %s on node %s: %s" % (name, node, "; ".join(details)),
        })
    return problems


def _scaled(value, total, round_up):
    """An int-or-percent rolling-update field against ``total`` pods, as the controllers read it."""
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            percent = float(value.strip()[:-1])
        except ValueError:
            raise AnsibleFilterError("rollout_budget: %r is not a number or a percentage" % (value,))
        exact = percent * total / 100.0
        return int(math.ceil(exact) if round_up else math.floor(exact))
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        raise AnsibleFilterError("rollout_budget: %r is not a number or a percentage" % (value,))


def rollout_budget(resources, kind="DaemonSet", base_timeout=300, wave_seconds=15, pod_seconds=0.05,
                   pods_per_check=500):
    """How long a rollout may take, and how often to read its pods, from the workload as it stands.

    Pods that replace old ones go ``maxUnavailable`` (+ ``maxSurge``) at a time, each wave
    taking ``minReadySeconds`` + ``wave_seconds``; every pod also costs ``pod_seconds`` of the
    controllers' API budget (the controller manager creates about 20 pods a second by default).
    ``timeout`` = ``base_timeout`` + waves * (minReadySeconds + wave_seconds) + desired * pod_seconds.
    ``check_pods_every``: poll count between two reads of the pods (one read is a LIST of every
    pod), so that on average a poll reads about ``pods_per_check`` pods whatever the size.
    """
    progress = rollout_progress(resources, kind)
    workload = resources[0] if resources else {}
    spec = workload.get("spec") or {}
    status = workload.get("status") or {}
    strategy = spec.get("updateStrategy" if kind == "DaemonSet" else "strategy") or {}
    rolling = strategy.get("rollingUpdate") or {}
    desired = progress["desired"]
    if kind == "DaemonSet":
        # Until the controller sees the new generation, every scheduled pod may be an old one.
        current = _int(status.get("currentNumberScheduled"))
        to_replace = current if not progress["observed"] else max(0, current - progress["updated"])
        unavailable = _scaled(rolling.get("maxUnavailable", 1), desired, True)
        surge = _scaled(rolling.get("maxSurge", 0), desired, True)
        if strategy.get("type") == "OnDelete":
            to_replace = 0  # nothing is replaced until someone deletes the pods
    else:
        to_replace = max(0, _int(status.get("replicas")) - progress["updated"]) if progress["observed"] \
            else _int(status.get("replicas"))
        unavailable = _scaled(rolling.get("maxUnavailable", "25%"), desired, False)
        surge = _scaled(rolling.get("maxSurge", "25%"), desired, True)
    budget = max(1, unavailable + surge)
    waves = int(math.ceil(to_replace / float(budget)))
    min_ready = _int(spec.get("minReadySeconds"))
    timeout = int(math.ceil(_int(base_timeout) + waves * (min_ready + float(wave_seconds)) + desired * float(pod_seconds)))
    return {
        "desired": desired,
        "to_replace": to_replace,
        "budget": budget,
        "waves": waves,
        "timeout": timeout,
        "check_pods_every": max(1, int(math.ceil(desired / float(max(1, _int(pods_per_check)))))),
        "text": "%ds (%ds + %d wave%s of %d pod%s x %gs + %d pods x %gs)" % (
            timeout, _int(base_timeout), waves, "" if waves == 1 else "s", budget, "" if budget == 1 else "s",
            min_ready + float(wave_seconds), desired, pod_seconds),
    }


def rollout_not_ready(problems, limit=10):
    """One bounded message from ``rollout_pod_problems``: how many pods are not ready, the nodes
    they are on (at most ``limit`` named, the rest counted), and the first ``limit`` pods'
    reasons, the fatal ones first. Empty when there is no problem."""
    if not isinstance(problems, list):
        raise AnsibleFilterError("rollout_not_ready expects the list of rollout_pod_problems, got %r" % (problems,))
    limit = max(1, _int(limit))
    ordered = sorted(problems, key=lambda problem: not problem.get("fatal"))
    nodes = []
    for problem in ordered:
        if problem.get("node") not in nodes:
            nodes.append(problem.get("node"))
    parts = []
    if problems:
        more = len(nodes) - limit
        parts.append("%d pod%s not ready, on node%s %s%s" % (
            len(problems), "" if len(problems) == 1 else "s", "" if len(nodes) == 1 else "s",
            ", ".join(nodes[:limit]), " and %d more" % more if more > 0 else ""))
        parts.extend(problem["text"] for problem in ordered[:limit])
        if len(ordered) > limit:
            parts.append("(%d more pods not listed)" % (len(ordered) - limit))
    return ". ".join(parts)


class FilterModule:
    def filters(self):
        return {
            "rollout_progress": rollout_progress,
            "rollout_pod_problems": rollout_pod_problems,
            "rollout_budget": rollout_budget,
            "rollout_not_ready": rollout_not_ready,
        }
