# Copyright: netmend.k8s contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

import socket
import struct
import time

import pytest

from ansible_collections.netmend.k8s.plugins.module_utils import poke


def reference_checksum(data):
    """An independent RFC 1071 sum: byte pairs added as integers, end-around carry by modulo."""
    if len(data) % 2:
        data = data + b"\0"
    total = 0
    for index in range(0, len(data), 2):
        total += data[index] * 256 + data[index + 1]
    total = total % 0xFFFF if total % 0xFFFF or not total else 0xFFFF
    return 0xFFFF - total


@pytest.mark.parametrize("data, expected", [
    # RFC 1071 section 3 worked example: sum 0xddf2, checksum its complement.
    (bytes.fromhex("0001f203f4f5f6f7"), 0x220D),
    (b"", 0xFFFF),
    (b"\xff\xff", 0x0000),
    (b"\x01", 0xFEFF),  # odd length: padded with a zero byte
    # ICMP echo request, id 0x1234 seq 1, payload "abcd": 0x0800+0x1234+0x0001+0x6162+0x6364 = 0xdefb
    (bytes.fromhex("080000001234000161626364"), 0x2104),
])
def test_checksum_known_vectors(data, expected):
    assert poke.checksum(data) == expected
    assert reference_checksum(data) == expected


@pytest.mark.parametrize("size", [0, 1, 7, 56, 1472, 9000])
def test_checksum_agrees_with_reference_and_verifies_to_zero(size):
    packet = poke.build_echo_request(4, 0xBEEF, 0x0102, poke.payload_for(size, b"\x00\x11\x22\x33\xfe\xed\xfa\xce"))
    stored = struct.unpack("!H", packet[2:4])[0]
    assert stored == reference_checksum(packet[:2] + b"\0\0" + packet[4:])
    assert poke.checksum(packet) == 0


def test_echo_request_layout_ipv4():
    packet = poke.build_echo_request(4, 0x1234, 0x0001, b"abcd")
    assert packet == bytes.fromhex("080021041234000161626364")


def test_echo_request_layout_ipv6_leaves_checksum_to_kernel():
    packet = poke.build_echo_request(6, 0xABCD, 7, b"xy")
    assert packet == bytes([128, 0, 0, 0, 0xAB, 0xCD, 0, 7]) + b"xy"


def test_icmpv6_checksum_against_hand_computed_pseudo_header():
    src, dst = "fd00::1", "fd00::2"
    message = bytes([128, 0, 0, 0, 0, 1, 0, 1]) + b"ab"
    pseudo = (socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, dst)
              + len(message).to_bytes(4, "big") + b"\0\0\0" + bytes([58]))
    expected = reference_checksum(pseudo + message)
    assert poke.icmpv6_checksum(src, dst, message) == expected
    filled = message[:2] + expected.to_bytes(2, "big") + message[4:]
    assert poke.icmpv6_checksum(src, dst, filled) == 0


def ipv4_header(src, dst, payload_length, protocol=1):
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + payload_length, 0, 0x4000, 64, protocol, 0,
                         socket.inet_aton(src), socket.inet_aton(dst))
    return header


def echo_reply(version, ident, sequence, payload):
    kind = 0 if version == 4 else 129
    header = struct.pack("!BBHHH", kind, 0, 0, ident, sequence)
    return header + payload


PARSE_CASES = [
    ("v4 echo reply", 4, echo_reply(4, 0x0102, 3, b"pay"),
     {"kind": "reply", "ident": 0x0102, "sequence": 3, "payload": b"pay"}),
    ("v6 echo reply", 6, echo_reply(6, 9, 65535, b""),
     {"kind": "reply", "ident": 9, "sequence": 65535, "payload": b""}),
    ("v4 our own request looping back", 4, poke.build_echo_request(4, 1, 1, b""), None),
    ("v6 neighbour solicitation", 6, bytes([135, 0, 0, 0]) + b"\0" * 20, None),
    ("truncated", 4, b"\0\0\0", None),
    ("v4 frag needed quoting our request", 4,
     struct.pack("!BBHHH", 3, 4, 0, 0, 1400) + ipv4_header("10.0.0.1", "10.9.8.7", 1472)
     + poke.build_echo_request(4, 0x4242, 2, b""),
     {"kind": "error", "destination": "10.9.8.7", "ident": 0x4242, "sequence": 2,
      "reason": "fragmentation needed", "mtu": 1400}),
    ("v4 host unreachable", 4,
     struct.pack("!BBHI", 3, 1, 0, 0) + ipv4_header("10.0.0.1", "10.9.8.6", 64)
     + poke.build_echo_request(4, 7, 0, b""),
     {"kind": "error", "destination": "10.9.8.6", "ident": 7, "sequence": 0,
      "reason": "host unreachable", "mtu": None}),
    ("v4 error quoting a UDP packet", 4,
     struct.pack("!BBHI", 3, 3, 0, 0) + ipv4_header("10.0.0.1", "10.9.8.6", 16, protocol=17) + b"\0" * 8, None),
    ("v6 packet too big", 6,
     struct.pack("!BBHI", 2, 0, 0, 1280) + bytes([0x60, 0, 0, 0, 0, 8, 58, 64])
     + socket.inet_pton(socket.AF_INET6, "fd00::1") + socket.inet_pton(socket.AF_INET6, "fd00::99")
     + poke.build_echo_request(6, 5, 1, b""),
     {"kind": "error", "destination": "fd00::99", "ident": 5, "sequence": 1,
      "reason": "packet too big", "mtu": 1280}),
]


@pytest.mark.parametrize("version, message, expected", [case[1:] for case in PARSE_CASES],
                         ids=[case[0] for case in PARSE_CASES])
def test_parse_icmp(version, message, expected):
    assert poke.parse_icmp(version, message) == expected


def test_strip_ipv4_header_honours_options():
    with_options = bytes([0x46]) + b"\0" * 23 + b"icmp"
    assert poke.strip_ipv4_header(with_options) == b"icmp"
    assert poke.strip_ipv4_header(b"\x60" + b"\0" * 30) is None


@pytest.mark.parametrize("raw, expected", [
    (["10.0.0.1", {"ip": "fd00::0001", "name": "web", "namespace": "shop", "node": "n1"}],
     [{"ip": "10.0.0.1"}, {"ip": "fd00::1", "name": "web", "namespace": "shop", "node": "n1"}]),
    (["10.0.0.1", {"ip": "10.0.0.1", "name": "dup"}], [{"ip": "10.0.0.1"}]),
    ([], []),
])
def test_parse_targets(raw, expected):
    assert poke.parse_targets(raw) == expected


@pytest.mark.parametrize("raw, named", [
    (["10.0.0.1", "10.0.0.300"], "'10.0.0.300' is not an IP address"),
    (["pod-a"], "'pod-a' is not an IP address"),
    ([{"name": "x"}], "has no 'ip'"),
    (["224.0.0.1"], "'224.0.0.1' is not a unicast address"),
    (["0.0.0.0"], "'0.0.0.0' is not a unicast address"),
    ([{"ip": "10.0.0.2", "port": 80}], "unknown keys: port"),
])
def test_parse_targets_names_the_bad_value(raw, named):
    with pytest.raises(poke.PokeError, match="invalid targets") as caught:
        poke.parse_targets(raw)
    assert named in str(caught.value)


@pytest.mark.parametrize("options, named", [
    (dict(timeout=0, count=1, size=56, mtu_probe=None, rate=None), "timeout must be greater than 0, got 0"),
    (dict(timeout=1, count=0, size=56, mtu_probe=None, rate=None), "count must be at least 1, got 0"),
    (dict(timeout=1, count=1, size=-1, mtu_probe=None, rate=None), "got -1"),
    (dict(timeout=1, count=1, size=56, mtu_probe=40, rate=None), "mtu_probe must be"),
    (dict(timeout=1, count=1, size=56, mtu_probe=None, rate=0), "rate must be greater than 0"),
])
def test_check_options(options, named):
    with pytest.raises(poke.PokeError, match=named):
        poke.check_options(**options)


class FakeChannel:
    """Stands in for an ICMP socket: answers for ``alive`` addresses, drops DF probes over ``path_mtu``."""

    def __init__(self, version, alive, path_mtu=None, ident=0x5151, errors=None):
        self.version = version
        self.ident = ident
        self.raw = True
        self.alive = alive
        self.path_mtu = path_mtu
        self.errors = errors or {}
        self.reader, self.writer = socket.socketpair()
        self.reader.setblocking(False)
        self.queue = []
        self.sent = []
        self.dont_fragment = False

    def fileno(self):
        return self.reader.fileno()

    def set_dont_fragment(self, enabled):
        self.dont_fragment = enabled

    def send(self, packet, ip):
        self.sent.append((ip, packet, self.dont_fragment))
        if ip in self.errors:
            raise self.errors[ip]
        header = poke.IP_HEADER[self.version]
        if ip not in self.alive or (self.path_mtu and self.dont_fragment and len(packet) + header > self.path_mtu):
            return
        kind = 0 if self.version == 4 else 129
        self.queue.append((ip, poke.parse_icmp(self.version, bytes([kind]) + packet[1:])))
        # Our own request must never be taken for an answer.
        self.queue.append((ip, poke.parse_icmp(self.version, packet)))
        self.writer.send(b"x")

    def receive(self):
        try:
            self.reader.recv(65536)
        except BlockingIOError:
            pass
        taken = [(ip, message) for ip, message in self.queue if message]
        self.queue = []
        return taken

    def close(self):
        self.reader.close()
        self.writer.close()


def fake_factory(alive, **kwargs):
    made = {}

    def factory(version):
        made[version] = FakeChannel(version, alive, **kwargs)
        return made[version]
    return factory, made


def test_sweep_classifies_and_matches_every_probe():
    alive = {"10.1.0.%d" % index for index in range(0, 200, 2)} | {"fd00::2"}
    targets = ["10.1.0.%d" % index for index in range(200)] + ["fd00::2", "fd00::3"]
    factory, made = fake_factory(alive)
    started = time.monotonic()
    result = poke.sweep(targets, timeout=0.3, count=2, channel_factory=factory)
    elapsed = time.monotonic() - started
    assert result["total"] == 202
    assert sorted(entry["ip"] for entry in result["reachable"]) == sorted(alive)
    assert len(result["unreachable"]) == 101
    assert all(entry["reason"] == "timeout" and entry["rtt_ms"] is None for entry in result["unreachable"])
    assert all(entry["received"] == 2 and entry["sent"] == 2 for entry in result["reachable"])
    assert 0.3 <= elapsed < 0.6
    # one channel per family, sequence numbers per target
    assert set(made) == {4, 6}
    sequences = [struct.unpack("!H", packet[6:8])[0] for ip, packet, _df in made[4].sent if ip == "10.1.0.7"]
    assert sequences == [0, 1]


def test_sweep_ends_early_when_all_answer():
    factory, _made = fake_factory({"10.2.0.1", "10.2.0.2"})
    result = poke.sweep(["10.2.0.1", "10.2.0.2"], timeout=5, channel_factory=factory)
    assert result["duration_s"] < 1
    assert [entry["ip"] for entry in result["reachable"]] == ["10.2.0.1", "10.2.0.2"]


def test_sweep_rate_cap_spaces_packets_and_stretches_deadline():
    targets = ["10.3.0.%d" % index for index in range(1, 21)]
    factory, _made = fake_factory(set(targets[:10]))
    result = poke.sweep(targets, timeout=0.2, rate=100, channel_factory=factory)
    # 20 packets at 100/s: the last leaves ~0.19 s in, the deadline is 0.2 s after that.
    assert 0.38 <= result["duration_s"] < 0.7
    assert len(result["reachable"]) == 10


class SlowChannel(FakeChannel):
    """Each send takes ``cost`` seconds, as tens of thousands of sends from Python on a busy node do; after
    ``full_after`` sends the socket stays full for good."""

    def __init__(self, version, alive, cost, full_after=None):
        super().__init__(version, alive)
        self.cost, self.full_after = cost, full_after

    def send(self, packet, ip):
        if self.full_after is not None and len(self.sent) >= self.full_after:
            raise BlockingIOError()
        time.sleep(self.cost)
        super().send(packet, ip)


def test_sweep_gives_every_probe_its_timeout_however_long_sending_takes():
    targets = ["10.5.%d.%d" % (index // 200, index % 200) for index in range(300)]
    result = poke.sweep(targets, timeout=0.2, channel_factory=lambda version: SlowChannel(version, set(targets[30:]), 0.002))
    # Sending takes about 0.6 s, three timeouts: probes that left after the first 0.2 s still count.
    assert len(result["reachable"]) == 270
    assert [entry["reason"] for entry in result["unreachable"]] == ["timeout"] * 30
    assert result["duration_s"] >= 0.2


def test_sweep_gives_up_on_a_socket_that_stays_full():
    targets = ["10.6.0.%d" % index for index in range(1, 41)]
    result = poke.sweep(targets, timeout=0.2, channel_factory=lambda version: SlowChannel(version, set(targets), 0, 10))
    assert len(result["reachable"]) == 10
    assert {entry["reason"] for entry in result["unreachable"]} == {"unsent"}
    assert result["duration_s"] < 5


def test_sweep_mtu_probe_finds_black_hole_and_sets_df_only_there():
    factory, made = fake_factory({"10.4.0.1", "10.4.0.2"}, path_mtu=1400)
    result = poke.sweep(["10.4.0.1", "10.4.0.2", "10.4.0.3"], timeout=0.2, mtu_probe=1500,
                        channel_factory=factory)
    assert [entry["ip"] for entry in result["mtu_blackholed"]] == ["10.4.0.1", "10.4.0.2"]
    assert all(entry["mtu_probe"] == "blackholed" for entry in result["reachable"])
    assert [entry["ip"] for entry in result["unreachable"]] == ["10.4.0.3"]
    sizes = [(len(packet), df) for _ip, packet, df in made[4].sent]
    assert sizes.count((64, False)) == 3
    assert sizes.count((1480, True)) == 3


def test_sweep_mtu_probe_passes_on_a_wide_path():
    factory, _made = fake_factory({"10.4.0.1"}, path_mtu=9000)
    result = poke.sweep(["10.4.0.1"], timeout=0.2, mtu_probe=1500, channel_factory=factory)
    assert result["mtu_blackholed"] == []
    assert result["reachable"][0]["mtu_probe"] == "passed"


def test_sweep_send_errors_are_reasons_not_crashes():
    factory, _made = fake_factory({"10.5.0.1"}, errors={"10.5.0.9": OSError(113, "No route to host")})
    result = poke.sweep(["10.5.0.1", "10.5.0.9"], timeout=0.2, channel_factory=factory)
    assert result["unreachable"][0]["ip"] == "10.5.0.9"
    assert result["unreachable"][0]["reason"] == "send failed: No route to host"


def test_sweep_invalid_target_fails_before_any_socket():
    def factory(version):
        raise AssertionError("a socket was opened")
    with pytest.raises(poke.PokeError, match="'10.0.0.256'"):
        poke.sweep(["10.0.0.1", "10.0.0.256"], channel_factory=factory)


class Idents:
    def __init__(self, ident):
        self.ident = ident


def two_probes(ident=77, payload=b"abc"):
    """One target, two rounds (sequences 0 and 1), both sent: probe numbers 0 and 1."""
    outcome = poke.Outcome(["10.0.0.1"], 2, None)
    outcome.sent_at[0] = outcome.sent_at[1] = 1.0
    packets = {4: [poke.build_echo_request(4, ident, sequence, payload) for sequence in (0, 1)]}
    return outcome, poke.Matcher(outcome, {4: Idents(ident)}, packets)


@pytest.mark.parametrize("source, message, matched", [
    ("10.0.0.1", {"kind": "reply", "ident": 77, "sequence": 0, "payload": b"abc"}, 0),
    ("10.0.0.1", {"kind": "reply", "ident": 77, "sequence": 1, "payload": b"abc"}, 1),
    ("10.0.0.1", {"kind": "reply", "ident": 78, "sequence": 0, "payload": b"abc"}, None),  # other pinger
    ("10.0.0.2", {"kind": "reply", "ident": 77, "sequence": 0, "payload": b"abc"}, None),  # other host
    ("10.0.0.1", {"kind": "reply", "ident": 77, "sequence": 0, "payload": b"old"}, None),  # stale sweep
    ("10.0.0.1", {"kind": "reply", "ident": 77, "sequence": 5, "payload": b"abc"}, None),
    ("192.0.2.1", {"kind": "error", "ident": 77, "sequence": 1, "destination": "10.0.0.1",
                   "reason": "host unreachable", "mtu": None}, 1),
])
def test_matcher(source, message, matched):
    _outcome, matcher = two_probes()
    assert matcher.match(4, source, message) == matched


def test_matcher_ignores_duplicates_and_unsent():
    outcome, matcher = two_probes()
    outcome.done[0] = 1
    outcome.sent_at[1] = 0.0
    for sequence in (0, 1):
        assert matcher.match(4, "10.0.0.1", {"kind": "reply", "ident": 77, "sequence": sequence,
                                             "payload": b"abc"}) is None


def test_outcome_reads_per_target_from_the_probe_arrays():
    # three targets, two echoes each and a DF probe: probe k is target k % 3 in round k // 3
    outcome = poke.Outcome(["10.0.0.1", "10.0.0.2", "10.0.0.3"], 2, 1500)
    for probe in range(9):
        outcome.sent_at[probe] = 10.0
    for probe, answered in ((0, 10.002), (3, 10.004), (6, 10.001)):  # target 0: both echoes and the DF probe
        outcome.answered_at[probe], outcome.done[probe] = answered, 1
    outcome.answered_at[4], outcome.done[4] = 10.010, 1  # target 1: its second echo only; DF probe silent
    outcome.done[2], outcome.errors[2] = 1, ("host unreachable", None)  # target 2: an error
    assert outcome.small(0) == (2, 2, 3.0, None)
    assert outcome.small(1) == (2, 1, 10.0, None)
    assert outcome.small(2) == (2, 0, None, "host unreachable")
    assert outcome.unreachable() == [2]
    assert sorted(round(rtt, 6) for rtt in outcome.round_trips()) == [0.002, 0.004, 0.01]
    assert outcome.mtu_result(0) == ("passed", None)
    assert outcome.mtu_result(1) == ("blackholed", None)
    outcome.done[7], outcome.errors[7] = 1, ("fragmentation needed", 1400)
    assert outcome.mtu_result(1) == ("fragmentation needed", 1400)


def test_probe_addresses_builds_one_packet_per_round_not_per_target():
    targets = ["10.7.0.%d" % index for index in range(1, 101)]
    factory, made = fake_factory(set(targets))
    outcome = poke.probe_addresses(targets, timeout=0.5, count=2, channel_factory=factory)
    assert outcome.unreachable() == []
    packets = {id(packet) for _ip, packet, _df in made[4].sent}
    assert len(made[4].sent) == 200 and len(packets) == 2
    # round-major: every target's first echo leaves before any second one
    assert [ip for ip, _packet, _df in made[4].sent[:100]] == targets


class RefusingFactory:
    def __call__(self, family, kind, protocol):
        raise PermissionError(1, "Operation not permitted")


def test_open_channel_names_cap_net_raw_when_neither_socket_works(monkeypatch):
    monkeypatch.setattr(poke, "ping_group_range", lambda: ["1", "0"])
    with pytest.raises(poke.PokeError) as caught:
        poke.open_channel(4, socket_factory=RefusingFactory())
    message = str(caught.value)
    assert "CAP_NET_RAW" in message and "ping_group_range (1 0)" in message


def test_open_channel_falls_back_to_ping_socket():
    opened = []

    def factory(family, kind, protocol):
        opened.append(kind)
        if kind == socket.SOCK_RAW:
            raise PermissionError(1, "Operation not permitted")
        return FakeDatagram()

    channel = poke.open_channel(4, socket_factory=factory)
    assert opened == [socket.SOCK_RAW, socket.SOCK_DGRAM]
    assert channel.raw is False and channel.ident == 4321


class FakeDatagram:
    """Just enough of a ping socket: the kernel-chosen identifier is the bound port."""

    def __init__(self):
        self.options = {}

    def bind(self, address):
        self.bound = address

    def getsockname(self):
        return ("0.0.0.0", 4321)

    def setblocking(self, flag):
        self.blocking = flag

    def setsockopt(self, level, option, value):
        self.options[(level, option)] = value


def test_channel_dont_fragment_socket_options():
    sock = FakeDatagram()
    channel = poke.IcmpChannel(4, sock, raw=False)
    assert sock.options[(socket.IPPROTO_IP, poke.IP_MTU_DISCOVER)] == poke.IP_PMTUDISC_DONT
    channel.set_dont_fragment(True)
    assert sock.options[(socket.IPPROTO_IP, poke.IP_MTU_DISCOVER)] == poke.IP_PMTUDISC_DO
    sock6 = FakeDatagram()
    channel6 = poke.IcmpChannel(6, sock6, raw=False)
    channel6.set_dont_fragment(True)
    assert sock6.options[(socket.IPPROTO_IPV6, poke.IPV6_DONTFRAG)] == 1
    assert sock6.options[(socket.IPPROTO_IPV6, poke.IPV6_MTU_DISCOVER)] == poke.IPV6_PMTUDISC_DO
