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

Ownership: a chain is ours only when every rule in it carries our comment
(``netmend masq_rule: ...``), or, while empty, when a POSTROUTING jump carrying our
comment leads to it. Any other existing chain of that name is refused, whatever
the state asked for, and left byte for byte; so are the prefixes other node
components reserve (``RESERVED_CHAIN_PREFIXES``).

Position: with ``insert`` the jump must come before every POSTROUTING rule that
could end traversal for the traffic we NAT (``ends_traversal``); a jump to another
component's chain above ours (Felix keeps ``cali-POSTROUTING`` first) is not
drift, so we coexist with components that insert at the top instead of fighting them.

The same functions serve the Ansible module and the in-cluster agent
(``masq_agent.py``), which re-checks on an interval and repairs deletion or
reordering.
"""
from __future__ import annotations

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
# Prefixes other components create chains under; refused case-insensitively so that no name we
# write can be taken for (or collide with) theirs.
RESERVED_CHAIN_PREFIXES = (
    ("KUBE-", "kube-proxy and kubelet"),
    ("IP-MASQ", "ip-masq-agent"),
    ("CALI-", "Calico (Felix)"),
    ("CILIUM", "Cilium"),
    ("DOCKER", "Docker"),
)
# Targets that end POSTROUTING traversal for the packets they match (RETURN from a builtin chain
# applies its policy); a rule with one of these above our jump can keep our MASQUERADE from running.
TERMINATING_TARGETS = frozenset((
    "ACCEPT", "DROP", "REJECT", "RETURN", "QUEUE", "NFQUEUE",
    "MASQUERADE", "SNAT", "DNAT", "REDIRECT", "NETMAP",
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
    if "%" in text:
        raise MasqError("invalid CIDR %r: an IPv6 zone index (%s) names a link, and iptables matches "
                        "addresses only" % (value, text[text.index("%"):].split("/", maxsplit=1)[0]))
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        try:
            loose = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise MasqError("invalid CIDR %r: %s" % (value, exc)) from None
        raise MasqError("misaligned CIDR %r: host bits are set (did you mean %s?)" % (value, loose)) from None


def network_text(network):
    """A network as ``iptables-save`` prints it, so what we write compares equal to what we read back.

    iptables formats addresses with inet_ntop, which writes an IPv4-mapped (``::ffff:a.b.c.d``) or
    IPv4-compatible (``::a.b.c.d``) IPv6 address with its last 32 bits dotted; Python's
    ``ipaddress`` writes hex before 3.13. Every other address prints the same both ways.
    """
    if network.version == 4:
        return str(network)
    words = [int(network.network_address) >> (16 * (7 - index)) & 0xFFFF for index in range(8)]
    zero_run = 0
    while zero_run < 8 and words[zero_run] == 0:
        zero_run += 1
    # inet_ntop picks the longest run of zero words; a leading run of 6 (or 5 then ffff) is the embedded form.
    if zero_run == 6 or (zero_run == 5 and words[5] == 0xFFFF):
        packed = network.network_address.packed
        return "::%s%s/%d" % ("ffff:" if zero_run == 5 else "", ipaddress.IPv4Address(packed[12:]),
                              network.prefixlen)
    return "%s/%d" % (network.network_address.compressed, network.prefixlen)


def normalise_cidrs(values):
    """Parse ``values`` and drop duplicates and CIDRs inside another one, keeping the given order.

    Returns ``(networks, warnings)``; each dropped value gets one warning.
    """
    parsed = [parse_cidr(value) for value in values]
    kept, warnings = [], []
    for index, net in enumerate(parsed):
        if net in kept:
            warnings.append("duplicate CIDR %s ignored" % network_text(net))
            continue
        container = next((other for other_index, other in enumerate(parsed)
                          if other_index != index and other != net and other.version == net.version
                          and net.subnet_of(other)), None)
        if container is not None:
            warnings.append("CIDR %s is inside %s and was merged into it"
                            % (network_text(net), network_text(container)))
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
    for prefix, owner in RESERVED_CHAIN_PREFIXES:
        if name.upper().startswith(prefix):
            raise MasqError("invalid chain name %r: names starting with %s (any case) belong to %s"
                            % (name, prefix, owner))
    return name


def chain_error(name):
    """The reason ``validate_chain`` refuses ``name``, or an empty string; for role preflights."""
    try:
        validate_chain(name)
    except MasqError as exc:
        return str(exc)
    return ""


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
                                % (family, family, ", ".join(map(network_text, self.destinations(family)))))

    def destinations(self, family):
        version = 4 if family == "ipv4" else 6
        return [net for net in self.networks if net.version == version]

    def sources_for(self, family):
        version = 4 if family == "ipv4" else 6
        return [net for net in self.sources if net.version == version]

    @property
    def cidrs(self):
        return [network_text(net) for net in self.networks]


# --- rendering -----------------------------------------------------------------

def rule_comment(network):
    return "%s: %s" % (COMMENT, network_text(network))


def address_match(option, network):
    """``-d``/``-s`` tokens; none for a /0, which iptables prints as no match at all."""
    return [] if network.prefixlen == 0 else [option, network_text(network)]


def chain_rules(spec, family):
    """Our chain's rules, as ``iptables -S`` prints them (token lists, in order)."""
    rules = []
    for dest in spec.destinations(family):
        for source in spec.sources_for(family) or [None]:
            tokens = ["-A", spec.chain]
            if source is not None:
                tokens += address_match("-s", source)
            tokens += address_match("-d", dest) + ["-m", "comment", "--comment", rule_comment(dest), "-j", "MASQUERADE"]
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


def _option(tokens, *names):
    """``(value, negated)`` of the first of ``names`` in a rule's tokens, or ``(None, False)``."""
    for index, token in enumerate(tokens[:-1]):
        if token in names:
            return tokens[index + 1], index > 0 and tokens[index - 1] == "!"
    return None, False


def carries_our_comment(tokens):
    """True when a rule has a comment match written by this collection."""
    return any(token == "--comment" and value.startswith(COMMENT + ":")
               for token, value in zip(tokens, tokens[1:]))


def ownership_problem(chain, state):
    """Why the existing ``chain`` cannot be shown to be ours; None when it is ours or does not exist.

    Ours means every rule carries our comment. An empty chain is ours only while a jump
    with our comment leads to it (our chain after its last rule was deleted by hand);
    an empty chain nothing of ours points at may be anyone's, so it is not touched either.
    """
    if state.chain_rules is None:
        return None
    foreign = [rule for rule in state.chain_rules if not carries_our_comment(rule)]
    if foreign:
        return ("chain %s exists in the nat table and is not ours: its rule '%s' lacks the comment '%s'"
                % (chain, render_line(foreign[0]), COMMENT + ": ..."))
    if not state.chain_rules and not any(carries_our_comment(tokens)
                                         for _position, tokens in jumps_to(state.postrouting, chain)):
        return ("chain %s exists in the nat table, empty, and no POSTROUTING jump with our comment leads to it: "
                "nothing shows it is ours" % chain)
    return None


def ends_traversal(tokens, destinations):
    """Whether a POSTROUTING rule can stop packets to ``destinations`` before a later rule sees them.

    True for a terminating target (``TERMINATING_TARGETS``) or a goto, unless the rule's
    ``-d`` cannot match any of the destinations. Any other match (interface, mark, source...)
    is assumed to match. A jump (``-j``) to a user-defined chain is not counted: a RETURN
    there comes back to POSTROUTING, and the components that own such chains (kube-proxy,
    ip-masq-agent, Felix's cali-POSTROUTING) end traversal in them only by NATing the packet
    themselves, which hides the pod address as ours would. Their chains are not read.
    """
    goto, _negated = _option(tokens, "-g", "--goto")
    target, _negated = _option(tokens, "-j", "--jump")
    if goto is None and target not in TERMINATING_TARGETS:
        return False
    value, negated = _option(tokens, "-d", "--destination")
    if value is None:
        return True
    try:
        matched = ipaddress.ip_network(value, strict=False)
    except ValueError:
        return True
    if negated:
        return any(dest.version != matched.version or not dest.subnet_of(matched) for dest in destinations)
    return any(dest.version == matched.version and dest.overlaps(matched) for dest in destinations)


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
    blocking = None
    if len(jumps) == 1 and spec.position == "insert":
        blocking = next(((position, tokens) for position, tokens in enumerate(postrouting[:jumps[0][0] - 1], start=1)
                         if ends_traversal(tokens, spec.destinations(family))), None)
    if len(jumps) != 1 or jumps[0][1] != jump or blocking is not None:
        if not jumps:
            drift.append("jump from POSTROUTING missing")
        elif len(jumps) > 1:
            drift.append("%d jumps to %s in POSTROUTING instead of one" % (len(jumps), chain))
        elif jumps[0][1] != jump:
            drift.append("jump from POSTROUTING differs: %s" % render_line(jumps[0][1]))
        else:
            drift.append("rule %d of POSTROUTING can end traversal before our jump (rule %d): %s"
                         % (blocking[0], jumps[0][0], render_line(blocking[1])))
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
        # Read and judge every family before writing any, so a refusal leaves every table as it was.
        current = []
        for family in families:
            ipt = Iptables(run, family, backend, lock_timeout)
            try:
                before = ipt.read(spec.chain)
            except MasqError:
                if spec.destinations(family):
                    raise
                continue
            problem = ownership_problem(spec.chain, before)
            if problem and spec.destinations(family):
                raise MasqError("%s: %s; refusing to change it (choose another chain)" % (family, problem))
            if problem:
                result["warnings"].append("%s: %s; left alone" % (family, problem))
                continue
            current.append((ipt, before))
        for ipt, before in current:
            family = ipt.family
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
