# Copyright: netmend.k8s contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""masq_rule core: MASQUERADE pod traffic to chosen destinations; standard library only.

We own one chain in the ``nat`` table (default ``NETMEND-MASQ``) holding one
commented MASQUERADE rule per destination CIDR, and one commented jump to it
from ``POSTROUTING`` that skips LOCAL destinations. Every change is one
``iptables-restore --noflush --wait`` transaction that names only our chain and
our jump, so kube-proxy's, kubelet's and ip-masq-agent's rules are never
rewritten. IPv6 CIDRs go to ip6tables in the same run.

Checks read only our chain and POSTROUTING (``iptables -t nat -S <chain>``),
never the whole table, because ``iptables-save`` grows with kube-proxy's rules.

The same functions serve the Ansible module and the in-cluster agent
(``agent_main``), which re-checks on an interval and repairs deletion or
reordering.
"""
from __future__ import annotations

import argparse
import errno
import fcntl
import ipaddress
import os
import re
import shlex
import subprocess
import time

DEFAULT_CHAIN = "NETMEND-MASQ"
DEFAULT_LOCK_FILE = "/run/netmend-masq.lock"
DEFAULT_LOCK_TIMEOUT = 5
DEFAULT_INTERVAL = 10.0
COMMENT = "netmend masq_rule"
JUMP_COMMENT = COMMENT + ": masquerade chosen destinations"
NSENTER_PREFIX = ("nsenter", "-t", "1", "-m", "-n", "--")
FAMILIES = ("ipv4", "ipv6")
BACKENDS = ("nft", "legacy")
POSITIONS = ("insert", "append")
# Chains kubelet creates in every table it touches, in the backend it uses;
# iptables-wrapper (kube-proxy's image) looks for the same two.
CANARY_CHAINS = ("KUBE-IPTABLES-HINT", "KUBE-KUBELET-CANARY")
MAX_CHAIN_LEN = 28  # iptables: "must be under 29 chars" (XT_EXTENSION_MAXNAMELEN incl. NUL)
# iptables refuses chain names that are builtin verdicts or chains, and names
# that clash with a target extension ("chain name may not clash with target name").
RESERVED_CHAIN_NAMES = frozenset((
    "ACCEPT", "DROP", "QUEUE", "RETURN", "NFQUEUE", "CONTINUE",
    "PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING",
    "MASQUERADE", "SNAT", "DNAT", "REDIRECT", "NETMAP", "REJECT", "LOG", "NFLOG",
    "MARK", "CONNMARK", "CT", "NOTRACK", "TRACE", "TCPMSS", "TPROXY", "CLASSIFY",
    "DSCP", "TOS", "TTL", "HL", "TEE", "AUDIT", "CHECKSUM", "SECMARK",
    "CONNSECMARK", "IDLETIMER", "LED", "SET", "SYNPROXY", "CLUSTERIP", "HMARK",
))
# Characters iptables-restore would split on or treat as quoting/comment.
_UNSAFE_CHAIN_CHARS = re.compile(r"[\s\"'#\\]")
_MISSING_CHAIN = re.compile(r"No chain/target/match|does not exist|incompatible", re.I)


class MasqError(Exception):
    """Bad input or a failed iptables command; ``cmd``/``rc``/``stdout``/``stderr`` when a command failed."""

    def __init__(self, message, cmd=None, rc=None, stdout="", stderr=""):
        super().__init__(message)
        self.cmd = cmd
        self.rc = rc
        self.stdout = stdout
        self.stderr = stderr


# --- input -------------------------------------------------------------------

def parse_cidr(value):
    """One CIDR, strictly: host bits set (10.11.0.1/24) or an invalid address is an error naming it."""
    text = str(value).strip()
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        try:
            loose = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise MasqError("invalid CIDR %r: %s" % (value, exc)) from None
        raise MasqError("misaligned CIDR %r: host bits are set (did you mean %s?)" % (value, loose)) from None


def normalise_cidrs(values):
    """Parse ``values`` and drop duplicates and CIDRs inside another one, keeping the given order.

    Returns ``(networks, warnings)``; each dropped value gets one warning.
    """
    parsed = [parse_cidr(value) for value in values]
    kept, warnings = [], []
    for index, net in enumerate(parsed):
        if net in kept:
            warnings.append("duplicate CIDR %s ignored" % net)
            continue
        container = next((other for other_index, other in enumerate(parsed)
                          if other_index != index and other != net and other.version == net.version
                          and net.subnet_of(other)), None)
        if container is not None:
            warnings.append("CIDR %s is inside %s and was merged into it" % (net, container))
            continue
        kept.append(net)
    return kept, warnings


def validate_chain(name):
    """Refuse a chain name the way ``iptables -N`` would, plus what iptables-restore cannot quote."""
    if not isinstance(name, str) or not name:
        raise MasqError("invalid chain name %r: it is empty" % (name,))
    if len(name) > MAX_CHAIN_LEN:
        raise MasqError("invalid chain name %r: %d characters, iptables allows at most %d"
                        % (name, len(name), MAX_CHAIN_LEN))
    if name[0] in "-!":
        raise MasqError("invalid chain name %r: it may not start with %r" % (name, name[0]))
    if _UNSAFE_CHAIN_CHARS.search(name) or not name.isprintable() or not name.isascii():
        raise MasqError("invalid chain name %r: whitespace, quotes, '#', '\\' and non-ASCII are not allowed" % (name,))
    if name.upper() in RESERVED_CHAIN_NAMES:
        raise MasqError("invalid chain name %r: it clashes with a builtin chain or target name" % (name,))
    return name


class Spec:
    """What the user asked for, validated; ``networks`` mixes IPv4 and IPv6."""

    def __init__(self, chain=DEFAULT_CHAIN, cidrs=(), source_cidrs=(), random_fully=False,
                 position="insert", state="present"):
        if state not in ("present", "absent"):
            raise MasqError("invalid state %r: use present or absent" % (state,))
        if position not in POSITIONS:
            raise MasqError("invalid position %r: use insert or append" % (position,))
        self.chain = validate_chain(chain)
        self.state = state
        self.position = position
        self.random_fully = bool(random_fully)
        self.warnings = []
        if state == "present" and not list(cidrs or ()):
            raise MasqError("cidrs is empty: state=present needs at least one destination CIDR")
        self.networks, warnings = normalise_cidrs(cidrs or ()) if state == "present" else ([], [])
        self.warnings.extend(warnings)
        self.sources, warnings = normalise_cidrs(source_cidrs or ())
        self.warnings.extend("source_cidrs: %s" % warning for warning in warnings)
        for family in FAMILIES:
            if self.sources_for(family) == [] and self.sources and self.destinations(family):
                raise MasqError("source_cidrs has no %s CIDR but cidrs has %s destinations %s"
                                % (family, family, ", ".join(map(str, self.destinations(family)))))

    def destinations(self, family):
        version = 4 if family == "ipv4" else 6
        return [net for net in self.networks if net.version == version]

    def sources_for(self, family):
        version = 4 if family == "ipv4" else 6
        return [net for net in self.sources if net.version == version]

    @property
    def cidrs(self):
        return [str(net) for net in self.networks]


# --- rendering -----------------------------------------------------------------

def rule_comment(network):
    return "%s: %s" % (COMMENT, network)


def chain_rules(spec, family):
    """Our chain's rules, as ``iptables -S`` prints them (token lists, in order)."""
    rules = []
    for dest in spec.destinations(family):
        for source in spec.sources_for(family) or [None]:
            tokens = ["-A", spec.chain]
            if source is not None:
                tokens += ["-s", str(source)]
            tokens += ["-d", str(dest), "-m", "comment", "--comment", rule_comment(dest), "-j", "MASQUERADE"]
            if spec.random_fully:
                tokens.append("--random-fully")
            rules.append(tokens)
    return rules


def jump_rule(chain):
    """The jump from POSTROUTING, as ``iptables -S`` prints it."""
    return ["-A", "POSTROUTING", "-m", "comment", "--comment", JUMP_COMMENT,
            "-m", "addrtype", "!", "--dst-type", "LOCAL", "-j", chain]


def quote(token):
    """Quote one token for iptables-restore (which knows double quotes only)."""
    if token and not re.search(r"[\s\"\\]", token):
        return token
    return '"%s"' % token.replace("\\", "\\\\").replace('"', '\\"')


def render_line(tokens):
    return " ".join(quote(token) for token in tokens)


# --- reading ----------------------------------------------------------------------

def parse_rules(text, chain):
    """``iptables -S <chain>`` (or ``iptables-save``) output -> token lists of the ``-A <chain>`` lines."""
    rules = []
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("-A "):
            continue
        tokens = shlex.split(line)
        if len(tokens) > 1 and tokens[1] == chain:
            rules.append(tokens)
    return rules


def parse_save_chains(text, table="nat"):
    """``iptables-save`` output -> {chain: [rule token lists]} for one table (chains without rules too)."""
    chains, current = {}, None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("*"):
            current = line[1:]
        elif current != table or not line or line.startswith("#"):
            continue
        elif line.startswith(":"):
            chains.setdefault(line[1:].split()[0], [])
        elif line.startswith("-A "):
            tokens = shlex.split(line)
            chains.setdefault(tokens[1], []).append(tokens)
    return chains


def jumps_to(rules, chain):
    """The rules (with 1-based positions) in a chain's listing that jump to ``chain``."""
    found = []
    for position, tokens in enumerate(rules, start=1):
        if "-j" in tokens and tokens[tokens.index("-j") + 1:tokens.index("-j") + 2] == [chain]:
            found.append((position, tokens))
    return found


class State:
    """One family's current state: our chain's rules (None: no chain) and POSTROUTING's rules."""

    def __init__(self, chain_rules=None, postrouting=None):
        self.chain_rules = chain_rules
        self.postrouting = postrouting or []

    def lines(self, chain):
        """Chain and jump as ``iptables -S`` lines, for diffs and return values."""
        lines = [] if self.chain_rules is None else ["-N %s" % chain] + [render_line(r) for r in self.chain_rules]
        return lines + [render_line(tokens) for _position, tokens in jumps_to(self.postrouting, chain)]


# --- planning -------------------------------------------------------------------------

class Plan:
    """What to change in one family: the drift found, the restore payload, the expected state."""

    def __init__(self, family, drift, payload, after):
        self.family = family
        self.drift = drift
        self.payload = payload
        self.after = after

    @property
    def changed(self):
        return bool(self.drift)


def plan_family(spec, family, state):
    """Compare ``state`` with what ``spec`` wants in ``family``; build one restore payload that fixes it all."""
    chain = spec.chain
    wanted = chain_rules(spec, family) if spec.state == "present" else []
    jumps = jumps_to(state.postrouting, chain)
    drift, lines = [], []
    if not wanted:
        if state.chain_rules is None and not jumps:
            return Plan(family, [], "", State(None, state.postrouting))
        drift.append("chain %s and its jump removed" % chain)
        lines += ["-D " + render_line(tokens[1:]) for _position, tokens in jumps]
        lines += [":%s - [0:0]" % chain, "-X %s" % chain]
        gone = {position for position, _tokens in jumps}
        after = [tokens for position, tokens in enumerate(state.postrouting, start=1) if position not in gone]
        return Plan(family, drift, _payload(lines), State(None, after))

    if state.chain_rules is None:
        drift.append("chain %s missing" % chain)
    elif state.chain_rules != wanted:
        missing = [rule for rule in wanted if rule not in state.chain_rules]
        extra = [rule for rule in state.chain_rules if rule not in wanted]
        for rule in missing:
            drift.append("rule missing: %s" % render_line(rule))
        for rule in extra:
            drift.append("unexpected rule: %s" % render_line(rule))
        if not missing and not extra:
            drift.append("rules of %s out of order" % chain)
    if drift:
        # Declaring an existing chain in a --noflush restore flushes it: the chain is rewritten whole.
        lines.append(":%s - [0:0]" % chain)
        lines += [render_line(rule) for rule in wanted]

    jump = jump_rule(chain)
    postrouting = state.postrouting
    in_place = (len(jumps) == 1 and jumps[0][1] == jump
                and (spec.position == "append" or jumps[0][0] == 1))
    if not in_place:
        if not jumps:
            drift.append("jump from POSTROUTING missing")
        elif len(jumps) > 1:
            drift.append("%d jumps to %s in POSTROUTING instead of one" % (len(jumps), chain))
        elif jumps[0][1] != jump:
            drift.append("jump from POSTROUTING differs: %s" % render_line(jumps[0][1]))
        else:
            drift.append("jump not first in POSTROUTING (rule %d)" % jumps[0][0])
        # Every jump goes and one comes back: deleting by rule spec is immune to rules others
        # added meanwhile, and N deletes of N identical jumps remove exactly those.
        lines += ["-D " + render_line(tokens[1:]) for _position, tokens in jumps]
        lines.append(("-I POSTROUTING 1 " if spec.position == "insert" else "-A POSTROUTING ") + render_line(jump[2:]))
        gone = {position for position, _tokens in jumps}
        postrouting = [tokens for position, tokens in enumerate(postrouting, start=1) if position not in gone]
        postrouting = [jump] + postrouting if spec.position == "insert" else postrouting + [jump]
    return Plan(family, drift, _payload(lines) if lines else "", State(wanted, postrouting))


def _payload(lines):
    return "*nat\n%s\nCOMMIT\n" % "\n".join(lines)


# --- running commands ---------------------------------------------------------------------

class Runner:
    """Runs argv lists with LANG=C; ``prefix`` reaches the host (nsenter) or a netns (``ip netns exec``)."""

    def __init__(self, prefix=()):
        self.prefix = list(prefix)

    def __call__(self, argv, data=None):
        env = dict(os.environ, LANG="C", LC_ALL="C")
        try:
            proc = subprocess.run(self.prefix + list(argv), input=data, capture_output=True, text=True,
                                  env=env, check=False)
        except FileNotFoundError as exc:
            return 127, "", str(exc)
        return proc.returncode, proc.stdout, proc.stderr


def binary(family, backend, tool=""):
    """``iptables-nft``, ``ip6tables-legacy-restore``..."""
    return "%s-%s%s" % ("iptables" if family == "ipv4" else "ip6tables", backend, tool)


def detect_backend(run):
    """The backend kubelet uses, found by its canary chains in the mangle table; nft when none is found."""
    for backend in BACKENDS:
        for canary in CANARY_CHAINS:
            if run([binary("ipv4", backend), "-t", "mangle", "-S", canary])[0] == 0:
                return backend
    return "nft"


class Iptables:
    """The few iptables calls we make for one family and backend, all with the xtables lock (``--wait``)."""

    def __init__(self, run, family, backend, lock_timeout=DEFAULT_LOCK_TIMEOUT):
        self.run = run
        self.family = family
        self.backend = backend
        self.wait = ["--wait", str(int(lock_timeout))]

    def list_chain(self, chain):
        """``-S`` lines' rules of ``chain`` in nat, or None when it does not exist."""
        cmd = [binary(self.family, self.backend), *self.wait, "-t", "nat", "-S", chain]
        rc, out, err = self.run(cmd)
        if rc == 1 and _MISSING_CHAIN.search(err):
            return None
        if rc != 0:
            raise MasqError("%s failed: %s" % (" ".join(cmd), err.strip() or "rc=%d" % rc),
                            cmd=cmd, rc=rc, stdout=out, stderr=err)
        return parse_rules(out, chain)

    def read(self, chain):
        rules = self.list_chain(chain)
        # No chain means no jump either: iptables refuses to delete a chain something jumps to.
        postrouting = self.list_chain("POSTROUTING") if rules is not None else []
        return State(rules, postrouting)

    def restore(self, payload):
        cmd = [binary(self.family, self.backend, "-restore"), "--noflush", *self.wait]
        rc, out, err = self.run(cmd, data=payload)
        if rc != 0:
            raise MasqError("%s failed: %s" % (" ".join(cmd), err.strip() or "rc=%d" % rc),
                            cmd=cmd, rc=rc, stdout=out, stderr=err)


class FileLock:
    """Serialises our own read-compare-write cycles (module runs and agents) on one host.

    The xtables lock only covers a single iptables call, and iptables-nft ignores it;
    without this, two writers that both saw no jump would both insert one.
    """

    def __init__(self, path=DEFAULT_LOCK_FILE, timeout=DEFAULT_LOCK_TIMEOUT):
        self.path = path
        self.timeout = timeout
        self.fd = None

    def __enter__(self):
        if not self.path:
            return self
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return self
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES) or time.monotonic() >= deadline:
                    os.close(self.fd)
                    self.fd = None
                    raise MasqError("could not take %s within %ss: %s" % (self.path, self.timeout, exc)) from None
                time.sleep(0.05)

    def __exit__(self, *exc):
        if self.fd is not None:
            os.close(self.fd)  # closing releases the flock
            self.fd = None


def reconcile(spec, run, backend="auto", lock_timeout=DEFAULT_LOCK_TIMEOUT, check_mode=False,
              lock_file=DEFAULT_LOCK_FILE, families=FAMILIES):
    """Read, compare and (unless ``check_mode``) fix every family; returns ``(result dict, plans)``.

    Families with no CIDR are driven to absent, so a CIDR removed from the list
    leaves no stale chain behind; reading a chain that does not exist costs one call,
    and a host without a working ip6tables is fine as long as no IPv6 CIDR is asked for.
    """
    if backend == "auto":
        backend = detect_backend(run)
    elif backend not in BACKENDS:
        raise MasqError("invalid backend %r: use auto, nft or legacy" % (backend,))
    result = {"changed": False, "chain": spec.chain, "cidrs": spec.cidrs, "backend": backend,
              "rules": [], "rules_ipv6": [], "drift": [], "warnings": list(spec.warnings),
              "before": {}, "after": {}}
    plans = []
    with FileLock(None if check_mode else lock_file, lock_timeout):
        for family in families:
            ipt = Iptables(run, family, backend, lock_timeout)
            try:
                before = ipt.read(spec.chain)
            except MasqError:
                if spec.destinations(family):
                    raise
                continue
            plan = plan_family(spec, family, before)
            if plan.changed and not check_mode:
                ipt.restore(plan.payload)
            result["changed"] = result["changed"] or plan.changed
            result["drift"] += ["%s: %s" % (family, item) for item in plan.drift]
            if family == "ipv4" or spec.destinations(family) or plan.changed:
                result["before"][family] = before.lines(spec.chain)
                result["after"][family] = plan.after.lines(spec.chain)
            result["rules" if family == "ipv4" else "rules_ipv6"] = (
                [] if plan.after.chain_rules is None
                else ["-N %s" % spec.chain] + [render_line(rule) for rule in plan.after.chain_rules])
            plans.append(plan)
    return result, plans


def diff_text(lines_by_family):
    return "".join("# %s nat\n%s" % (family, "".join(line + "\n" for line in lines))
                   for family, lines in sorted(lines_by_family.items()))


# --- agent ------------------------------------------------------------------------------------

def build_parser():
    parser = argparse.ArgumentParser(prog="agent masq_rule",
                                     description="Keep the MASQUERADE chain for chosen destinations in place.")
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


def agent_main(argv, run=None, stopper=None):
    """The reconcile loop: apply once, then every interval read our chain and POSTROUTING and repair drift."""
    from ansible_collections.netmend.k8s.plugins.module_utils import agent

    args = build_parser().parse_args(argv)
    try:
        spec = Spec(chain=args.chain, cidrs=args.cidrs, source_cidrs=args.source_cidrs,
                    random_fully=args.random_fully, position=args.position,
                    state="absent" if args.remove else "present")
    except MasqError as exc:
        agent.log("masq_rule", "bad configuration", error=str(exc))
        return 2
    run = run or Runner(NSENTER_PREFIX if args.nsenter else ())
    stopper = stopper or agent.Stopper().install()
    for warning in spec.warnings:
        agent.log("masq_rule", "warning", detail=warning)
    backend = detect_backend(run) if args.backend == "auto" else args.backend
    if args.remove:
        result = reconcile(spec, run, backend, args.lock_timeout, lock_file=args.lock_file)[0]
        agent.log("masq_rule", "removed" if result["changed"] else "nothing to remove", chain=spec.chain)
        # A DaemonSet pod must keep running: idle until the role deletes the DaemonSet.
        agent.run_every(lambda: None, args.interval, stopper, max_iterations=args.max_iterations)
        return 0
    families = [family for family in FAMILIES if spec.destinations(family)]
    agent.log("masq_rule", "started", chain=spec.chain, cidrs=spec.cidrs, backend=backend,
              interval=args.interval, nsenter=args.nsenter)

    def step():
        try:
            plans = reconcile(spec, run, backend, args.lock_timeout, lock_file=args.lock_file, families=families)[1]
        except MasqError as exc:
            agent.log("masq_rule", "check failed", error=str(exc))
            return
        for plan in plans:
            if plan.changed:
                agent.log("masq_rule", "repaired", family=plan.family, chain=spec.chain, drift=plan.drift)

    agent.run_every(step, args.interval, stopper, jitter=0.1, max_iterations=args.max_iterations)
    agent.log("masq_rule", "stopped")
    return 0
