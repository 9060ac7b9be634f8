# Copyright: netmend.k8s contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""ICMP echo to many addresses at once, with one deadline: standard library only.

One ICMP socket per address family carries every probe of a sweep. Replies are
matched to probes by identifier (one per sweep and socket), sequence number
(the probe's number within its target) and source address, so the number of
targets changes how many packets go out, not how long the sweep lasts.

Raw sockets need CAP_NET_RAW. Without it the kernel's unprivileged ICMP
("ping") sockets are used when ``net.ipv4.ping_group_range`` admits one of our
groups; the kernel then picks the identifier and strips the IP header.

An optional don't-fragment probe of a given total size finds MTU black holes:
paths that answer small pings but silently drop larger packets because the
router's ICMP "fragmentation needed" never comes back.
"""
from __future__ import annotations

import array
import errno
import ipaddress
import os
import random
import select
import socket
import struct
import time

# Linux values; the socket module does not export all of them on every Python.
IP_MTU_DISCOVER = getattr(socket, "IP_MTU_DISCOVER", 10)
IP_PMTUDISC_DONT = getattr(socket, "IP_PMTUDISC_DONT", 0)
IP_PMTUDISC_DO = getattr(socket, "IP_PMTUDISC_DO", 2)
IPV6_MTU_DISCOVER = getattr(socket, "IPV6_MTU_DISCOVER", 23)
IPV6_PMTUDISC_DONT = getattr(socket, "IPV6_PMTUDISC_DONT", 0)
IPV6_PMTUDISC_DO = getattr(socket, "IPV6_PMTUDISC_DO", 2)
IPV6_DONTFRAG = getattr(socket, "IPV6_DONTFRAG", 62)
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
SO_SNDBUFFORCE = getattr(socket, "SO_SNDBUFFORCE", 32)

ICMP_ECHO_REPLY = 0
ICMP_DEST_UNREACH = 3
ICMP_ECHO_REQUEST = 8
ICMP_TIME_EXCEEDED = 11
ICMP_FRAG_NEEDED = 4  # code of ICMP_DEST_UNREACH
ICMP6_DEST_UNREACH = 1
ICMP6_PACKET_TOO_BIG = 2
ICMP6_TIME_EXCEEDED = 3
ICMP6_ECHO_REQUEST = 128
ICMP6_ECHO_REPLY = 129

ICMP_HEADER = 8
ECHO_REQUEST = {4: bytes([ICMP_ECHO_REQUEST]), 6: bytes([ICMP6_ECHO_REQUEST])}
IP_HEADER = {4: 20, 6: 40}
MAX_PAYLOAD = 65507
SOCKET_BUFFER = 8 * 1024 * 1024
SEND_BATCH = 256

UNREACH_REASONS = {
    4: {0: "network unreachable", 1: "host unreachable", 2: "protocol unreachable",
        3: "port unreachable", 9: "network prohibited", 10: "host prohibited",
        13: "administratively prohibited"},
    6: {0: "no route", 1: "administratively prohibited", 3: "address unreachable",
        4: "port unreachable", 5: "source address failed policy", 6: "reject route"},
}


class PokeError(Exception):
    """Bad targets or options, or no usable ICMP socket."""


# --------------------------------------------------------------------------- packets


def checksum(data):
    """The Internet checksum (RFC 1071) of ``data``: one's complement of the one's complement sum."""
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def icmpv6_checksum(source, destination, message):
    """ICMPv6 checksum over the IPv6 pseudo-header (RFC 4443 section 2.3).

    The kernel fills it in for raw and ping ICMPv6 sockets; this is for
    building and checking whole packets in tests and captures.
    """
    pseudo = (ipaddress.IPv6Address(source).packed + ipaddress.IPv6Address(destination).packed
              + struct.pack("!I3xB", len(message), socket.IPPROTO_ICMPV6))
    return checksum(pseudo + message)


def payload_for(size, token):
    """``size`` payload bytes: the sweep's token repeated, so stale or foreign echoes are told apart."""
    if size <= 0:
        return b""
    return (token * (size // len(token) + 1))[:size]


def build_echo_request(version, ident, sequence, payload):
    """An ICMP (v4) or ICMPv6 echo request.

    The IPv4 checksum is computed here; the ICMPv6 one needs the source
    address, which only the kernel knows for sure, and the kernel fills it.
    """
    kind = ICMP_ECHO_REQUEST if version == 4 else ICMP6_ECHO_REQUEST
    header = struct.pack("!BBHHH", kind, 0, 0, ident & 0xFFFF, sequence & 0xFFFF)
    if version == 6:
        return header + payload
    total = checksum(header + payload)
    return struct.pack("!BBHHH", kind, 0, total, ident & 0xFFFF, sequence & 0xFFFF) + payload


def strip_ipv4_header(data):
    """The IPv4 payload (raw ICMP sockets hand over the IP header too)."""
    if len(data) < 20 or data[0] >> 4 != 4:
        return None
    length = (data[0] & 0x0F) * 4
    if length < 20 or len(data) < length:
        return None
    return data[length:]


def parse_icmp(version, message):
    """Classify one received ICMP message (IP header already removed).

    Returns a dict with ``kind`` one of ``reply`` (an echo reply: ``ident``,
    ``sequence``, ``payload``), ``error`` (an error quoting one of our echo
    requests: ``destination``, ``ident``, ``sequence``, ``reason``, and
    ``mtu`` for fragmentation-needed / packet-too-big), or None for anything
    else (other people's traffic, our own requests looping back, truncation).
    """
    if len(message) < ICMP_HEADER:
        return None
    kind, code, _sum, rest = struct.unpack("!BBHI", message[:ICMP_HEADER])
    if version == 4:
        if kind == ICMP_ECHO_REPLY:
            return _reply(message)
        if kind in (ICMP_DEST_UNREACH, ICMP_TIME_EXCEEDED):
            quoted = message[ICMP_HEADER:]
            inner = strip_ipv4_header(quoted)
            if inner is None or quoted[9] != socket.IPPROTO_ICMP:
                return None
            destination = socket.inet_ntop(socket.AF_INET, quoted[16:20])
            mtu = None
            if kind == ICMP_TIME_EXCEEDED:
                reason = "time exceeded"
            elif code == ICMP_FRAG_NEEDED:
                reason = "fragmentation needed"
                mtu = rest & 0xFFFF
            else:
                reason = UNREACH_REASONS[4].get(code, "destination unreachable (code %d)" % code)
            return _quoted_error(4, destination, inner, reason, mtu)
        return None
    if kind == ICMP6_ECHO_REPLY:
        return _reply(message)
    if kind in (ICMP6_DEST_UNREACH, ICMP6_PACKET_TOO_BIG, ICMP6_TIME_EXCEEDED):
        quoted = message[ICMP_HEADER:]
        if len(quoted) < 40 + ICMP_HEADER or quoted[0] >> 4 != 6 or quoted[6] != socket.IPPROTO_ICMPV6:
            return None
        destination = socket.inet_ntop(socket.AF_INET6, quoted[24:40])
        mtu = None
        if kind == ICMP6_PACKET_TOO_BIG:
            reason = "packet too big"
            mtu = rest
        elif kind == ICMP6_TIME_EXCEEDED:
            reason = "time exceeded"
        else:
            reason = UNREACH_REASONS[6].get(code, "destination unreachable (code %d)" % code)
        return _quoted_error(6, destination, quoted[40:], reason, mtu)
    return None


def _reply(message):
    ident, sequence = struct.unpack("!HH", message[4:8])
    return {"kind": "reply", "ident": ident, "sequence": sequence, "payload": message[ICMP_HEADER:]}


def _quoted_error(version, destination, inner, reason, mtu):
    if len(inner) < ICMP_HEADER:
        return None
    request = ICMP_ECHO_REQUEST if version == 4 else ICMP6_ECHO_REQUEST
    if inner[0] != request:
        return None
    ident, sequence = struct.unpack("!HH", inner[4:8])
    return {"kind": "error", "destination": destination, "ident": ident, "sequence": sequence,
            "reason": reason, "mtu": mtu}


# --------------------------------------------------------------------------- targets


BROADCAST_V4 = ipaddress.IPv4Address("255.255.255.255")


def unicast_address(value):
    """``value`` as the sweep writes addresses (replies are matched on that text); a ValueError naming it
    when it is not an IP address or not a unicast one."""
    try:
        address = ipaddress.ip_address(str(value).strip())
    except ValueError:
        raise ValueError("%r is not an IP address" % (value,)) from None
    if address.is_multicast or address.is_unspecified or address == BROADCAST_V4:
        raise ValueError("%r is not a unicast address" % (value,))
    return str(address)


def parse_targets(raw):
    """Validated targets from strings or dicts (``ip`` plus optional ``name``, ``namespace``, ``node``).

    Every bad entry is named in one error, before anything is sent. Duplicate
    addresses are probed once (the first entry's fields win).
    """
    targets = []
    seen = set()
    bad = []
    for position, entry in enumerate(raw or []):
        fields = {"ip": entry} if isinstance(entry, str) else dict(entry) if isinstance(entry, dict) else None
        if fields is None or "ip" not in fields:
            bad.append("entry %d (%r) has no 'ip'" % (position, entry))
            continue
        value = fields["ip"]
        try:
            ip = unicast_address(value)
        except ValueError as exc:
            bad.append(str(exc))
            continue
        unknown = sorted(set(fields) - {"ip", "name", "namespace", "node"})
        if unknown:
            bad.append("entry %d (%s) has unknown keys: %s" % (position, value, ", ".join(unknown)))
            continue
        if ip in seen:
            continue
        seen.add(ip)
        fields["ip"] = ip
        targets.append(fields)
    if bad:
        raise PokeError("invalid targets: " + "; ".join(bad))
    return targets


def family_of(ip):
    return 6 if ":" in ip else 4


def check_options(timeout, count, size, mtu_probe, rate):
    """Range checks with the bad value in the message."""
    if not timeout > 0:
        raise PokeError("timeout must be greater than 0, got %r" % (timeout,))
    if count < 1:
        raise PokeError("count must be at least 1, got %r" % (count,))
    if not 0 <= size <= MAX_PAYLOAD - 40:
        raise PokeError("size must be between 0 and %d bytes, got %r" % (MAX_PAYLOAD - 40, size))
    if mtu_probe and not 68 <= mtu_probe <= 65535:
        raise PokeError("mtu_probe must be a packet size between 68 and 65535 bytes, got %r" % (mtu_probe,))
    if rate is not None and not rate > 0:
        raise PokeError("rate must be greater than 0 packets per second, got %r" % (rate,))


# --------------------------------------------------------------------------- sockets


class IcmpChannel:
    """One ICMP socket for one address family, raw or unprivileged ("ping").

    ``ident`` is the echo identifier replies carry back: ours on a raw
    socket, the kernel's (the socket's local "port") on a ping socket, which
    also means the kernel drops other people's replies for us.
    """

    def __init__(self, version, sock, raw):
        self.version = version
        self.sock = sock
        self.raw = raw
        self.dont_fragment = None
        if raw:
            self.ident = random.SystemRandom().randrange(1, 0x10000)
        else:
            sock.bind(("0.0.0.0", 0) if version == 4 else ("::", 0))
            self.ident = sock.getsockname()[1]
        sock.setblocking(False)
        for option, force in ((socket.SO_RCVBUF, SO_RCVBUFFORCE), (socket.SO_SNDBUF, SO_SNDBUFFORCE)):
            try:
                sock.setsockopt(socket.SOL_SOCKET, force, SOCKET_BUFFER)
            except OSError:
                sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER)
        self.set_dont_fragment(False)

    def fileno(self):
        return self.sock.fileno()

    def set_dont_fragment(self, enabled):
        """DF on IPv4 (IP_PMTUDISC_DO); on IPv6 no local fragmentation either (IPV6_DONTFRAG)."""
        if self.dont_fragment is enabled:
            return
        if self.version == 4:
            self.sock.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DO if enabled else IP_PMTUDISC_DONT)
        else:
            self.sock.setsockopt(socket.IPPROTO_IPV6, IPV6_MTU_DISCOVER, IPV6_PMTUDISC_DO if enabled else IPV6_PMTUDISC_DONT)
            self.sock.setsockopt(socket.IPPROTO_IPV6, IPV6_DONTFRAG, 1 if enabled else 0)
        self.dont_fragment = enabled

    def send(self, packet, ip):
        """Send one packet; raises BlockingIOError when the socket buffer is full."""
        self.sock.sendto(packet, (ip, 0))

    def receive(self):
        """Parsed messages waiting on the socket, as (source ip, parsed dict), until it would block."""
        messages = []
        while True:
            try:
                data, address = self.sock.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return messages
            except OSError:
                # A ping socket reports a queued ICMP error this way; the probe just times out.
                continue
            if self.version == 4 and self.raw:
                data = strip_ipv4_header(data)
                if data is None:
                    continue
            if data[:1] == ECHO_REQUEST[self.version]:
                continue  # our own requests, seen again when a target is on this host
            parsed = parse_icmp(self.version, data)
            if parsed is not None:
                messages.append((address[0], parsed))

    def close(self):
        self.sock.close()


def ping_group_range(path="/proc/sys/net/ipv4/ping_group_range"):
    try:
        with open(path, encoding="ascii") as handle:
            return handle.read().split()
    except OSError:
        return ["?", "?"]


def open_channel(version, socket_factory=socket.socket):
    """A raw ICMP socket, else a ping socket, else a PokeError that says what is missing."""
    family = socket.AF_INET if version == 4 else socket.AF_INET6
    protocol = socket.IPPROTO_ICMP if version == 4 else socket.IPPROTO_ICMPV6
    try:
        return IcmpChannel(version, socket_factory(family, socket.SOCK_RAW, protocol), raw=True)
    except PermissionError as raw_error:
        try:
            return IcmpChannel(version, socket_factory(family, socket.SOCK_DGRAM, protocol), raw=False)
        except PermissionError as ping_error:
            low, high = ping_group_range()
            raise PokeError(
                "cannot open an ICMP socket for IPv%d: a raw socket needs CAP_NET_RAW (%s), and an "
                "unprivileged ping socket is refused (%s) because group %d is outside "
                "net.ipv4.ping_group_range (%s %s). Run with CAP_NET_RAW, or widen ping_group_range."
                % (version, raw_error.strerror, ping_error.strerror, os.getgid(), low, high)) from None
    except OSError as exc:
        raise PokeError("cannot open an ICMP socket for IPv%d: %s" % (version, exc.strerror)) from None


# --------------------------------------------------------------------------- sweep


class Outcome:
    """What a sweep found, per address, in flat arrays: tens of thousands of targets cost a few MB.

    Probe ``k`` of a sweep is target ``k % n`` in round ``k // n``: rounds ``0 .. count-1`` are
    the small echoes (that number is the echo's sequence number), round ``count`` the DF
    probe. Every probe of a round carries the same packet, so a sweep builds a handful of
    packets, not one per probe. ``sent_at`` is 0 until the probe leaves; ``done`` marks a
    probe answered (or refused); ``errors`` holds the rare ICMP or send errors by probe.
    """

    def __init__(self, addresses, count, mtu_probe):
        self.addresses = addresses
        self.count = count
        self.mtu_probe = mtu_probe
        self.rounds = count + (1 if mtu_probe else 0)
        probes = len(addresses) * self.rounds
        self.sent_at = array.array("d", bytes(8 * probes))
        self.answered_at = array.array("d", bytes(8 * probes))
        self.done = bytearray(probes)
        self.errors = {}  # probe -> (reason, path MTU or None)
        self.duration = 0.0

    def probes(self, index):
        """The probe numbers of target ``index``: its small echoes, then its DF probe (if any)."""
        return range(index, len(self.addresses) * self.rounds, len(self.addresses))

    def small(self, index):
        """(sent, answered, mean round-trip time in ms or None, first error or None) of the small echoes."""
        sent = received = 0
        total = 0.0
        error = None
        for probe in self.probes(index)[:self.count]:
            if self.sent_at[probe]:
                sent += 1
            if probe in self.errors:
                error = error or self.errors[probe][0]
            elif self.done[probe]:
                received += 1
                total += self.answered_at[probe] - self.sent_at[probe]
        return sent, received, (round(total * 1000.0 / received, 3) if received else None), error

    def reachable(self, index):
        return any(self.done[probe] and probe not in self.errors for probe in self.probes(index)[:self.count])

    def unreachable(self):
        """Indices of the targets no small echo of which was answered."""
        return [index for index in range(len(self.addresses)) if not self.reachable(index)]

    def round_trips(self):
        """Round-trip times in seconds of every answered small echo."""
        limit = len(self.addresses) * self.count
        sent_at, answered_at, errors = self.sent_at, self.answered_at, self.errors
        return [answered_at[probe] - sent_at[probe] for probe in range(limit)
                if self.done[probe] and probe not in errors]

    def mtu_result(self, index):
        """How the DF probe of a reachable target fared: ``passed``, ``blackholed`` (vanished without an
        ICMP error) or the error it got, with the path MTU reported (None without one)."""
        probe = self.probes(index)[self.count]
        if probe in self.errors:
            return self.errors[probe]
        if self.done[probe]:
            return "passed", None
        return "blackholed", None


def plan_packets(channels, count, size, mtu_probe, token):
    """The packets of a sweep, per address family: one per round (see Outcome)."""
    small = payload_for(size, token)
    packets = {}
    for version, channel in channels.items():
        packets[version] = [build_echo_request(version, channel.ident, sequence, small) for sequence in range(count)]
        if mtu_probe:
            big = payload_for(mtu_probe - IP_HEADER[version] - ICMP_HEADER, token)
            packets[version].append(build_echo_request(version, channel.ident, count, big))
    return packets


class Matcher:
    """Maps received messages to probe numbers by (source ip, identifier, sequence) and checks the payload."""

    def __init__(self, outcome, channels, packets):
        self.outcome = outcome
        self.idents = {version: channel.ident for version, channel in channels.items()}
        self.payloads = {version: [packet[ICMP_HEADER:] for packet in rounds] for version, rounds in packets.items()}
        self.index = {ip: index for index, ip in enumerate(outcome.addresses)}

    def match(self, version, source, message):
        """The probe number this message answers (or reports an error for), else None."""
        if message["ident"] != self.idents.get(version):
            return None
        sequence = message["sequence"]
        if sequence >= self.outcome.rounds:
            return None
        ip = message["destination"] if message["kind"] == "error" else source
        if version == 6:  # the kernel's text of an IPv6 address may differ from ours (scope, mapped IPv4)
            ip = str(ipaddress.ip_address(ip.split("%")[0]))
        index = self.index.get(ip)
        if index is None:
            return None
        probe = sequence * len(self.outcome.addresses) + index
        if not self.outcome.sent_at[probe] or self.outcome.done[probe]:
            return None
        if message["kind"] == "reply" and message["payload"] != self.payloads[version][sequence]:
            return None
        return probe


def sweep(targets, timeout=1.0, count=1, size=56, dont_fragment=False, mtu_probe=None, rate=None,
          channel_factory=open_channel, clock=time.monotonic, poll_factory=select.poll):
    """Probe every target and return the classified result (see ``classify``).

    All probes leave as fast as the sockets (or ``rate``, packets per second)
    allow; the sweep ends when every probe is answered or at its deadline:
    ``timeout`` after the last probe left, or was scheduled to leave. Every probe
    gets its whole ``timeout``, however long tens of thousands of them take to
    leave; one that cannot leave (a socket that stays full) within ``timeout`` of
    the one before is reported unsent.
    """
    check_options(timeout, count, size, mtu_probe, rate)
    targets = parse_targets(targets)
    outcome = probe_addresses([target["ip"] for target in targets], timeout, count, size, dont_fragment, mtu_probe,
                              rate, channel_factory, clock, poll_factory)
    return classify(targets, outcome)


def probe_addresses(addresses, timeout=1.0, count=1, size=56, dont_fragment=False, mtu_probe=None, rate=None,
                    channel_factory=open_channel, clock=time.monotonic, poll_factory=select.poll):
    """``sweep`` without the per-target dicts: ``addresses`` are unique addresses as ``parse_targets`` writes
    them, the answer an Outcome. For callers that keep many targets (the agent)."""
    check_options(timeout, count, size, mtu_probe, rate)
    started = clock()
    outcome = Outcome(addresses, count, mtu_probe)
    channels = {}
    try:
        for version in sorted({family_of(ip) for ip in addresses}):
            channels[version] = channel_factory(version)
        packets = plan_packets(channels, count, size, mtu_probe, os.urandom(8))
        _exchange(outcome, channels, packets, timeout, dont_fragment, rate, clock, poll_factory)
    finally:
        for channel in channels.values():
            channel.close()
    outcome.duration = clock() - started
    return outcome


def _exchange(outcome, channels, packets, timeout, dont_fragment, rate, clock, poll_factory):
    matcher = Matcher(outcome, channels, packets)
    poller = poll_factory()
    by_fd = {}
    for version, channel in channels.items():
        poller.register(channel.fileno(), select.POLLIN)
        by_fd[channel.fileno()] = channel
    addresses = outcome.addresses
    targets = len(addresses)
    total = targets * outcome.rounds
    sent_at, done, errors = outcome.sent_at, outcome.done, outcome.errors
    start = clock()
    span = (total - 1) / rate if rate and total else 0.0
    deadline = start + span + timeout
    pending = total
    next_probe = 0
    blocked = set()
    while pending and clock() < deadline:
        now = clock()
        allowed = total if not rate else min(total, int((now - start) * rate) + 1)
        limit = min(allowed, next_probe + SEND_BATCH)
        while next_probe < limit:
            sequence, index = divmod(next_probe, targets)
            ip = addresses[index]
            channel = channels[family_of(ip)]
            if channel.version in blocked:
                break
            channel.set_dont_fragment(sequence == outcome.count or dont_fragment)
            try:
                channel.send(packets[channel.version][sequence], ip)
            except (BlockingIOError, InterruptedError):
                blocked.add(channel.version)
                poller.modify(channel.fileno(), select.POLLIN | select.POLLOUT)
                break
            except OSError as exc:
                # No route, EMSGSIZE from a known smaller path MTU, ...: an answer of sorts, now.
                sent_at[next_probe] = clock()
                done[next_probe] = 1
                errors[next_probe] = (_send_error(exc), _path_mtu(channel, ip) if exc.errno == errno.EMSGSIZE else None)
                pending -= 1
            else:
                sent_at[next_probe] = clock()
            # A sender slower than the targets are many pushes the end out: a probe still queued here at the
            # first deadline has not had its timeout, and reporting it unreachable would be a false alarm.
            deadline = max(deadline, sent_at[next_probe] + timeout)
            next_probe += 1
        if not pending:
            break
        now = clock()
        if next_probe < total and not blocked:
            wait = 0.0 if next_probe < allowed else min(deadline, start + next_probe / rate) - now
        else:
            wait = deadline - now
        for fd, events in poller.poll(max(0, int(wait * 1000 + 0.999))):
            channel = by_fd[fd]
            if events & select.POLLOUT:
                blocked.discard(channel.version)
                poller.modify(fd, select.POLLIN)
            if events & select.POLLIN:
                pending -= _take(channel, matcher, outcome, clock)


def _take(channel, matcher, outcome, clock):
    answered = 0
    for source, message in channel.receive():
        probe = matcher.match(channel.version, source, message)
        if probe is None:
            continue
        outcome.answered_at[probe] = clock()
        outcome.done[probe] = 1
        if message["kind"] == "error":
            outcome.errors[probe] = (message["reason"], message["mtu"])
        answered += 1
    return answered


def _send_error(exc):
    if exc.errno == errno.EMSGSIZE:
        return "fragmentation needed"
    return "send failed: %s" % (exc.strerror or exc)


def _path_mtu(channel, ip):
    """The kernel's cached path MTU toward ``ip`` (IP_MTU on a connected UDP socket), or None."""
    family = socket.AF_INET if channel.version == 4 else socket.AF_INET6
    level, option = (socket.IPPROTO_IP, getattr(socket, "IP_MTU", 14)) if channel.version == 4 \
        else (socket.IPPROTO_IPV6, getattr(socket, "IPV6_MTU", 24))
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect((ip, 9))
            return probe.getsockopt(level, option)
    except OSError:
        return None


def classify(targets, outcome):
    """The sweep's result, a dict per target.

    ``reachable``: targets that answered at least one small echo, with the mean
    round-trip time and, with ``mtu_probe``, how the DF probe fared
    (``passed``, ``blackholed``, or ``fragmentation needed`` with the reported
    ``path_mtu``). ``unreachable``: the others, with a ``reason`` (``timeout``,
    ``unsent`` when no probe could leave, or the ICMP error / send error received). ``mtu_blackholed``: reachable targets
    whose DF probe vanished without any ICMP error; ``mtu_limited``: those
    whose DF probe got "fragmentation needed" / "packet too big".
    """
    reachable, unreachable, blackholed, limited = [], [], [], []
    for index, target in enumerate(targets):
        entry = dict(target)
        entry["sent"], entry["received"], entry["rtt_ms"], error = outcome.small(index)
        if not entry["received"]:
            # unsent: the socket stayed full (see sweep); not a silent target, so not a timeout
            entry["reason"] = error or ("timeout" if entry["sent"] else "unsent")
            unreachable.append(entry)
            continue
        if outcome.mtu_probe:
            entry["mtu_probe"], mtu = outcome.mtu_result(index)
            if entry["mtu_probe"] == "blackholed":
                blackholed.append(dict(entry))
            elif entry["mtu_probe"] != "passed":
                entry["path_mtu"] = mtu
                limited.append(dict(entry))
        reachable.append(entry)
    return {
        "total": len(targets),
        "reachable": reachable,
        "unreachable": unreachable,
        "mtu_blackholed": blackholed,
        "mtu_limited": limited,
        "duration_s": round(outcome.duration, 3),
    }
