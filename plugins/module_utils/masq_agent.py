# Copyright: netmend.k8s contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The masq_rule agent: keeps the MASQUERADE chain and its jump on a node. Standard library only.

Run by the DaemonSet (``nsenter`` into the host, or host network with NET_ADMIN) as::

    python3 -m ansible_collections.netmend.k8s.plugins.module_utils.agent masq_rule [options]

It applies once, then every interval reads our chain and POSTROUTING in both
families and repairs what drifted, logging one line per repair. A family without
destinations is driven to absent, so an IPv6 range dropped from the list takes
our ip6tables chain and jump with it. A chain of that name that is not ours is
refused (logged, never touched). With ``--remove`` it takes the chain and jump
away once and idles until the role deletes the DaemonSet.
"""
from __future__ import annotations

import argparse

from ansible_collections.netmend.k8s.plugins.module_utils.agent import Stopper, log, run_every
from ansible_collections.netmend.k8s.plugins.module_utils.masq import (
    BACKENDS,
    DEFAULT_CHAIN,
    DEFAULT_INTERVAL,
    DEFAULT_LOCK_FILE,
    DEFAULT_LOCK_TIMEOUT,
    NSENTER_PREFIX,
    POSITIONS,
    MasqError,
    Runner,
    Spec,
    detect_backend,
    reconcile,
)

FIX = "masq_rule"


def build_parser():
    parser = argparse.ArgumentParser(prog="agent masq_rule", description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--cidr", dest="cidrs", action="append", default=[],
                        help="destination CIDR to masquerade (repeat for more)")
    parser.add_argument("--remove", action="store_true",
                        help="remove the chain and its jump once, then idle until stopped (the role's absent state)")
    parser.add_argument("--source-cidr", dest="source_cidrs", action="append", default=[])
    parser.add_argument("--chain", default=DEFAULT_CHAIN)
    parser.add_argument("--random-fully", action="store_true")
    parser.add_argument("--position", choices=POSITIONS, default="insert")
    parser.add_argument("--backend", choices=("auto",) + BACKENDS, default="auto")
    parser.add_argument("--lock-timeout", type=int, default=DEFAULT_LOCK_TIMEOUT)
    parser.add_argument("--lock-file", default=DEFAULT_LOCK_FILE)
    parser.add_argument("--interval", type=float, default=DEFAULT_INTERVAL, help="seconds between checks")
    parser.add_argument("--nsenter", action="store_true",
                        help="run the host's own iptables in PID 1's mount and network namespaces (needs hostPID)")
    parser.add_argument("--max-iterations", type=int, default=None, help="stop after N checks (tests)")
    return parser


class MasqAgent:
    """One check per ``step()``: reconcile both families, log each repair, and each new failure or warning once."""

    def __init__(self, spec, run, backend, options):
        self.spec = spec
        self.run = run
        self.backend = backend
        self.options = options
        self.last_error = None
        self.last_warnings = []

    def step(self):
        try:
            result, plans = reconcile(self.spec, self.run, self.backend, self.options.lock_timeout,
                                      lock_file=self.options.lock_file)
        except MasqError as exc:
            # A foreign chain or a broken iptables stays broken for a while: say so once, not every interval.
            if str(exc) != self.last_error:
                log(FIX, "check failed", error=str(exc))
            self.last_error = str(exc)
            return
        if self.last_error is not None:
            log(FIX, "check passed again", chain=self.spec.chain)
        self.last_error = None
        warnings = result["warnings"][len(self.spec.warnings):]
        for warning in warnings:
            if warning not in self.last_warnings:
                log(FIX, "warning", detail=warning)
        self.last_warnings = warnings
        for plan in plans:
            if plan.changed:
                log(FIX, "repaired", family=plan.family, chain=self.spec.chain, drift=plan.drift)


def agent_main(argv, run=None, stopper=None):
    """Apply once, then every interval read our chain and POSTROUTING and repair drift."""
    args = build_parser().parse_args(argv)
    try:
        spec = Spec(chain=args.chain, cidrs=args.cidrs, source_cidrs=args.source_cidrs,
                    random_fully=args.random_fully, position=args.position,
                    state="absent" if args.remove else "present")
    except MasqError as exc:
        log(FIX, "bad configuration", error=str(exc))
        return 2
    run = run or Runner(NSENTER_PREFIX if args.nsenter else ())
    stopper = stopper or Stopper().install()
    for warning in spec.warnings:
        log(FIX, "warning", detail=warning)
    backend = detect_backend(run) if args.backend == "auto" else args.backend
    if args.remove:
        try:
            result = reconcile(spec, run, backend, args.lock_timeout, lock_file=args.lock_file)[0]
        except MasqError as exc:
            log(FIX, "remove failed", error=str(exc))
        else:
            for warning in result["warnings"]:
                log(FIX, "warning", detail=warning)
            log(FIX, "removed" if result["changed"] else "nothing to remove", chain=spec.chain)
        # A DaemonSet pod must keep running: idle until the role deletes the DaemonSet.
        run_every(lambda: None, args.interval, stopper, max_iterations=args.max_iterations)
        return 0
    log(FIX, "started", chain=spec.chain, cidrs=spec.cidrs, backend=backend, interval=args.interval,
        nsenter=args.nsenter)
    agent = MasqAgent(spec, run, backend, args)
    run_every(agent.step, args.interval, stopper, jitter=0.1, max_iterations=args.max_iterations)
    log(FIX, "stopped")
    return 0
