# Copyright: netmend.k8s contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reading a DaemonSet or Deployment rollout the way ``kubectl rollout status`` does.

``rollout_progress`` turns the workload into counts, a done flag and the progress
line; ``rollout_pod_problems`` says why its pods are not available: a container
that cannot start (crash loop, image, configuration) or a pod that is not ready.
The module ``rollout_status`` polls with both. ``rollout_budget`` scales the wait
with the workload's size and rolling-update budget, ``rollout_not_ready`` sums up
the problems of thousands of pods in a bounded message. The filters of the same
names expose all four to templates. Bad input raises ValueError.
"""
from __future__ import annotations

import math

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


def _scaled(rolling, field, default, total, round_up):
    """An int-or-percent rolling-update field against ``total`` pods, rounded as the controllers round it."""
    value = rolling.get(field, default)
    text = value.strip() if isinstance(value, str) else None
    try:
        if text is not None and text.endswith("%"):
            exact = float(text[:-1]) * total / 100.0
            return int(math.ceil(exact) if round_up else math.floor(exact))
        return int(value or 0)
    except (TypeError, ValueError):
        raise ValueError("rollout: %s %r is not a number or a percentage" % (field, value)) from None


def _pace(kind, spec, status, desired, updated, observed):
    """(old pods still to replace, pods replaced at once) of a rollout, as its controller paces it."""
    if kind == "DaemonSet":
        strategy = spec.get("updateStrategy") or {}
        current = _int(status.get("currentNumberScheduled"))
        # A DaemonSet rounds both up; a Deployment rounds maxUnavailable down and maxSurge up.
        unavailable_default, surge_default, unavailable_up = 1, 0, True
    else:
        strategy = spec.get("strategy") or {}
        current = _int(status.get("replicas"))
        unavailable_default, surge_default, unavailable_up = "25%", "25%", False
    # Until the controller sees the new generation, every pod it counts may be an old one.
    to_replace = max(0, current - updated) if observed else current
    kind_of_update = strategy.get("type") or "RollingUpdate"
    if kind_of_update == "OnDelete":
        return 0, 1  # nothing is replaced until someone deletes the pods
    if kind_of_update == "Recreate":
        return to_replace, max(1, to_replace)  # every old pod goes at once
    rolling = strategy.get("rollingUpdate") or {}
    batch = (_scaled(rolling, "maxUnavailable", unavailable_default, desired, unavailable_up)
             + _scaled(rolling, "maxSurge", surge_default, desired, True))
    return to_replace, max(1, batch)


def rollout_progress(resources, kind="DaemonSet", name=""):
    """Counts, ``done``, the kubectl-like progress line and the pace of one workload's rollout.

    ``resources`` is ``k8s_info``'s list (empty when the workload does not exist).
    Available means ready for ``minReadySeconds`` (the controller's own count), and
    the status only counts once the controller has seen the latest generation.
    ``to_replace`` old pods are left, replaced ``batch`` at a time (``maxUnavailable``
    plus ``maxSurge``), each batch ready after ``min_ready_seconds``: what
    ``rollout_budget`` needs.
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
    to_replace, batch = _pace(kind, spec, status, desired, updated, observed)
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
        "to_replace": to_replace,
        "batch": batch,
        "min_ready_seconds": _int(spec.get("minReadySeconds")),
    }


# What rollout_budget reads of rollout_progress (or of the rollout_status module's result, which carries it).
BUDGET_INPUTS = ("desired", "to_replace", "batch", "min_ready_seconds")


def rollout_budget(progress, base_timeout=300, wave_seconds=15, pod_seconds=0.05, pods_per_check=500):
    """How long a rollout may take, and how often to read its pods, from ``rollout_progress``.

    Old pods are replaced ``batch`` at a time, each wave taking ``min_ready_seconds`` +
    ``wave_seconds``; every desired pod also costs ``pod_seconds`` of the controllers' API
    budget (the controller manager creates about 20 pods a second by default).
    ``timeout`` = ``base_timeout`` + waves * (min_ready_seconds + wave_seconds) + desired * pod_seconds.
    ``check_pods_every``: polls between two reads of the pods (one read lists every pod),
    so that a poll reads about ``pods_per_check`` pods on average whatever the size.
    """
    missing = [key for key in BUDGET_INPUTS if not isinstance(progress, dict) or key not in progress]
    if missing:
        raise ValueError("rollout_budget expects what rollout_progress or rollout_status returns; missing %s"
                         % ", ".join(missing))
    desired, batch, min_ready = _int(progress["desired"]), max(1, _int(progress["batch"])), _int(progress["min_ready_seconds"])
    try:
        base, wave, per_pod = _int(base_timeout), float(wave_seconds), float(pod_seconds)
    except (TypeError, ValueError):
        raise ValueError("rollout_budget: wave_seconds and pod_seconds must be numbers, got %r and %r"
                         % (wave_seconds, pod_seconds)) from None
    waves = int(math.ceil(_int(progress["to_replace"]) / float(batch)))
    timeout = int(math.ceil(base + waves * (min_ready + wave) + desired * per_pod))
    return {
        "timeout": timeout,
        "waves": waves,
        "check_pods_every": max(1, int(math.ceil(desired / float(max(1, _int(pods_per_check)))))),
        "text": "%ds (%ds + %d wave%s of %d pod%s x %gs + %d pods x %gs)" % (
            timeout, base, waves, "" if waves == 1 else "s", batch, "" if batch == 1 else "s",
            min_ready + wave, desired, per_pod),
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


def rollout_not_ready(problems, limit=10):
    """One bounded message from ``rollout_pod_problems``: how many pods are not ready, the nodes
    they are on (at most ``limit`` named, the rest counted), and the first ``limit`` pods'
    reasons, the fatal ones first. Empty when there is no problem."""
    if not isinstance(problems, list):
        raise ValueError("rollout_not_ready expects the list of rollout_pod_problems, got %s" % type(problems).__name__)
    limit = max(1, _int(limit))
    ordered = sorted(problems, key=lambda problem: not problem.get("fatal"))
    nodes = list(dict.fromkeys(problem.get("node") for problem in ordered))
    if not problems:
        return ""
    more = len(nodes) - limit
    parts = ["%d pod%s not ready, on node%s %s%s" % (
        len(problems), "" if len(problems) == 1 else "s", "" if len(nodes) == 1 else "s",
        ", ".join(nodes[:limit]), " and %d more" % more if more > 0 else "")]
    parts.extend(problem["text"] for problem in ordered[:limit])
    if len(ordered) > limit:
        parts.append("(%d more pods not listed)" % (len(ordered) - limit))
    return ". ".join(parts)
