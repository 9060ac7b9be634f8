# Copyright: netmend.k8s contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Entry point and shared loop of the in-cluster agents: standard library only.

Started by the agent DaemonSet as::

    python3 -m ansible_collections.netmend.k8s.plugins.module_utils.agent <fix> [options]

with the collection's core files mounted at that package path from a ConfigMap.
Each fix keeps its agent in its own core file as ``agent_main(argv) -> int``;
this file only dispatches and offers what every agent shares: one-line logs,
an interruptible interval loop with jitter, and the node's name.
"""
from __future__ import annotations

import importlib
import json
import os
import random
import signal
import sys
import threading
import time

# fix name -> core module (in this package) whose agent_main(argv) runs it.
FIXES = {
    "calico_mtu": "mtu_agent",
    "masq_rule": "masq_agent",
    "net_doctor": "netdoctor_agent",
    "pod_poke": "poke_agent",
}


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


def run_every(step, interval, stopper, jitter=0.0, max_iterations=None, rng=random.random):
    """Call ``step()`` every ``interval`` seconds (plus up to ``jitter`` × interval) until stopped.

    The time ``step`` takes counts against the interval, so a slow step does not
    stretch the period. Exceptions propagate: the pod restarts and the restart is visible.
    """
    done = 0
    while not stopper.stopped:
        started = time.monotonic()
        step()
        done += 1
        if max_iterations is not None and done >= max_iterations:
            return done
        pause = interval * (1.0 + jitter * rng()) - (time.monotonic() - started)
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
    if not argv or argv[0] not in FIXES:
        sys.stderr.write("usage: agent {%s} [options]\n" % ",".join(sorted(FIXES)))
        return 2
    fix = argv[0]
    # __package__, not __name__: under `python3 -m ...agent` the name is "__main__".
    package = __package__ or None
    module = importlib.import_module("%s.%s" % (package, FIXES[fix]) if package else FIXES[fix])
    return module.agent_main(argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
