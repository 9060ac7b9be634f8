# Copyright: netmend.k8s contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Entry point and shared loop of the in-cluster agents: standard library only.

Started by the agent DaemonSet as::

    python3 -m ansible_collections.netmend.k8s.plugins.module_utils.agent <fix> [options]

with the collection's core files mounted at that package path from a ConfigMap.
Each fix keeps its agent in its own core file as ``agent_main(argv) -> int``;
this file only dispatches and offers what every agent shares: one-line logs,
an interruptible interval loop with jitter, a capped exponential backoff for
transient failures, the readiness heartbeat, and the node's name.

Readiness: the loop rewrites a small file (``$NETMEND_HEARTBEAT``, on an
emptyDir) after every iteration that did its job, saying until when that
holds. The DaemonSet's exec probe runs::

    python3 -m ansible_collections.netmend.k8s.plugins.module_utils.agent ready

so an agent that crashes, hangs, or keeps failing (API server unreachable,
iptables refusing) is not counted available by a rollout.
"""
from __future__ import annotations

import argparse
import http.client
import importlib
import json
import os
import random
import signal
import ssl
import sys
import tempfile
import threading
import time

from ansible_collections.netmend.k8s.plugins.module_utils.kube_lite import KubeError

# fix name -> core module (in this package) whose agent_main(argv) runs it.
FIXES = {
    "calico_mtu": "mtu_agent",
    "masq_rule": "masq",
    "pod_poke": "poke_agent",
}
HEARTBEAT_ENV = "NETMEND_HEARTBEAT"
# Seconds a heartbeat outlives the longest expected pause between two iterations:
# room for the iteration itself and for a probe that runs just before the next beat.
HEARTBEAT_GRACE = 15.0
# The fix main() dispatched to; names the loop's own log lines.
_running = {"fix": "agent"}


def log(fix, message, **fields):
    """One line per event on stdout: a timestamp, the fix, a message, then key=value pairs."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    extra = "".join(" %s=%s" % (key, json.dumps(value) if not isinstance(value, (int, float)) else value)
                    for key, value in sorted(fields.items()))
    sys.stdout.write("%s %s %s%s\n" % (stamp, fix, message, extra))
    sys.stdout.flush()


class Stopper:
    """Set by SIGTERM/SIGINT so loops end between iterations, not in the middle of a write."""

    def __init__(self):
        self.event = threading.Event()

    def install(self):
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: self.event.set())
        return self

    @property
    def stopped(self):
        return self.event.is_set()

    def sleep(self, seconds):
        """Sleep up to ``seconds``; True when woken by a stop."""
        return self.event.wait(max(0.0, seconds))


class Backoff:
    """Capped exponential backoff with jitter: ``initial``, × ``factor`` per failure, at most ``cap``.

    Each delay is shortened by a random fraction up to ``jitter`` so the agents of
    many nodes do not retry in step against an API server that is coming back.
    """

    def __init__(self, initial=1.0, cap=30.0, factor=2.0, jitter=0.3, rng=random.random):
        self.initial = initial
        self.cap = cap
        self.factor = factor
        self.jitter = jitter
        self.rng = rng
        self.failures = 0

    def next_delay(self):
        """Count one failure; the seconds to wait before the next try."""
        base = min(self.cap, self.initial * self.factor ** min(self.failures, 64))
        self.failures += 1
        return base * (1.0 - self.jitter * self.rng())

    def reset(self):
        self.failures = 0


def retryable(exc):
    """Failures worth retrying: no answer or a "later" from the API server, a broken connection or stream."""
    if isinstance(exc, KubeError):
        return exc.transient
    # Not every OSError: a missing binary or a refused permission is no outage, and a crash shows it best.
    return isinstance(exc, (ConnectionError, TimeoutError, ssl.SSLError, http.client.HTTPException))


class Heartbeat:
    """The readiness file: rewritten (atomically) after each iteration that did its job."""

    def __init__(self, path, clock=time.time):
        self.path = path
        self.clock = clock

    @classmethod
    def from_environment(cls, environ=None):
        """The heartbeat at ``$NETMEND_HEARTBEAT``, or None when the variable is not set."""
        environ = os.environ if environ is None else environ
        path = environ.get(HEARTBEAT_ENV, "")
        return cls(path) if path else None

    def beat(self, valid_for):
        """Say the agent is doing its job, for ``valid_for`` seconds from now."""
        now = self.clock()
        folder = os.path.dirname(self.path) or "."
        handle, temporary = tempfile.mkstemp(dir=folder, prefix=".heartbeat-")
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as stream:
                json.dump({"at": now, "until": now + valid_for}, stream)
            os.replace(temporary, self.path)
        except BaseException:
            os.unlink(temporary)
            raise

    def clear(self):
        """Forget an earlier container's beat (an emptyDir outlives a container restart)."""
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


def readiness(path, max_age=None, clock=time.time):
    """(ready, reason) from the heartbeat at ``path``.

    Ready while the last beat's own ``until`` has not passed, or, with ``max_age``,
    while the last beat is at most that many seconds old.
    """
    try:
        with open(path, encoding="utf-8") as handle:
            beat = json.load(handle)
        at, until = float(beat["at"]), float(beat["until"])
    except FileNotFoundError:
        return False, "no successful iteration yet (%s does not exist)" % path
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return False, "unreadable heartbeat %s: %s" % (path, exc)
    now = clock()
    age = now - at
    if max_age is not None:
        until = at + max_age
    if now > until:
        return False, "last successful iteration %.0fs ago, stale for %.0fs" % (age, now - until)
    return True, "last successful iteration %.0fs ago" % age


def ready_main(argv, environ=None, clock=time.time):
    """The readiness probe: exit 0 when the agent's heartbeat is current, else 1 with the reason."""
    environ = os.environ if environ is None else environ
    parser = argparse.ArgumentParser(prog="agent ready", description=ready_main.__doc__)
    parser.add_argument("--file", default=environ.get(HEARTBEAT_ENV, ""), help="the heartbeat file")
    parser.add_argument("--max-age", type=float, help="seconds a beat counts; default: until the agent said")
    args = parser.parse_args(argv)
    if not args.file:
        sys.stdout.write("not ready: no heartbeat file (--file or %s)\n" % HEARTBEAT_ENV)
        return 1
    ok, reason = readiness(args.file, args.max_age, clock)
    sys.stdout.write("%s: %s\n" % ("ready" if ok else "not ready", reason))
    return 0 if ok else 1


_FROM_ENVIRONMENT = object()


def run_every(step, interval, stopper, jitter=0.0, max_iterations=None, rng=random.random,
              heartbeat=_FROM_ENVIRONMENT, backoff=None, name=None):
    """Call ``step()`` every ``interval`` seconds (plus up to ``jitter`` × interval) until stopped.

    The time ``step`` takes counts against the interval, so a slow step does not
    stretch the period. After each iteration that did its job (``step`` returned
    anything but ``False``) the heartbeat says so. A transient failure
    (:func:`retryable`) is logged, once per try, and retried after a capped
    exponential backoff instead of ending the agent; other exceptions propagate:
    the pod restarts and the restart is visible.
    """
    name = name or _running["fix"]
    if heartbeat is _FROM_ENVIRONMENT:
        heartbeat = Heartbeat.from_environment()
    backoff = backoff or Backoff(initial=min(1.0, interval), cap=max(30.0, interval), rng=rng)
    valid_for = 2 * interval * (1.0 + jitter) + HEARTBEAT_GRACE
    done = 0
    while not stopper.stopped:
        started = time.monotonic()
        try:
            outcome = step()
        except Exception as exc:  # only the retryable ones are kept; see below
            if not retryable(exc):
                raise
            pause = backoff.next_delay()
            log(name, "iteration failed, retrying", error=str(exc) or type(exc).__name__,
                attempt=backoff.failures, retry_s=round(pause, 2))
        else:
            if backoff.failures:
                log(name, "recovered", failed_attempts=backoff.failures)
                backoff.reset()
            if outcome is not False and heartbeat is not None:
                heartbeat.beat(valid_for)
            pause = interval * (1.0 + jitter * rng()) - (time.monotonic() - started)
        done += 1
        if max_iterations is not None and done >= max_iterations:
            return done
        if stopper.sleep(pause):
            break
    return done


def node_name(environ=None):
    """The node this agent runs on, from the downward API (NODE_NAME)."""
    environ = os.environ if environ is None else environ
    name = environ.get("NODE_NAME", "")
    if not name:
        raise SystemExit("NODE_NAME is not set: the DaemonSet must pass spec.nodeName through the downward API")
    return name


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "ready":
        return ready_main(argv[1:])
    if not argv or argv[0] not in FIXES:
        sys.stderr.write("usage: agent {%s} [options] | agent ready [--max-age SECONDS]\n" % ",".join(sorted(FIXES)))
        return 2
    fix = argv[0]
    _running["fix"] = fix
    heartbeat = Heartbeat.from_environment()
    if heartbeat is not None:
        heartbeat.clear()
    # __package__, not __name__: under `python3 -m ...agent` the name is "__main__".
    package = __package__ or None
    module = importlib.import_module("%s.%s" % (package, FIXES[fix]) if package else FIXES[fix])
    return module.agent_main(argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
