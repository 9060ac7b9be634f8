# Copyright: netmend.k8s contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reading a DaemonSet or Deployment rollout the way ``kubectl rollout status`` does.

``rollout_progress`` turns the workload into counts, a done flag and the progress
line; ``rollout_pod_problems`` says why its pods are not available: a container
that cannot start (crash loop, image, configuration) or a pod that is not ready.
The module ``rollout_status`` polls with both, and the filters of the same names
expose them to templates. Bad input raises ValueError.
"""
from __future__ import annotations

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
        raise ValueError("rollout_progress kind must be one of %s, got %r" % (", ".join(KINDS), kind))
    if not isinstance(resources, list):
        raise ValueError("rollout_progress expects the resources list of k8s_info, got %r" % (resources,))
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
        raise ValueError("rollout_pod_problems expects a list of pods, got %r" % (pods,))
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
