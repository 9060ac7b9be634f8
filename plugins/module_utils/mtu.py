# Copyright: netmend.k8s contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Calico MTU: arithmetic, host interface detection and CNI config editing. Standard library only.

Shared by the ``calico_mtu`` module (run on a node) and the in-cluster agent
(``mtu_agent``). Everything touching the OS takes an injectable root or path so
tests can point it at a fixture tree or a network namespace.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import tempfile

# Felix's default MTU interface pattern (FELIX_MTUIFACEPATTERN).
FELIX_INTERFACE_PATTERN = r"^((en|wl|ww|sl|ib)[Pcopsvx].*|(eth|wlan|wwan).*)"
# What Felix assumes when no interface matches the pattern.
FALLBACK_HOST_MTU = 1460
DEFAULT_CONFLIST = "/etc/cni/net.d/10-calico.conflist"
SYS_CLASS_NET = "/sys/class/net"
VETH_PREFIX = "cali"

# Bytes each encapsulation adds, per address family of the underlay.
OVERHEAD = {
    "ipip": {"ipv4": 20, "ipv6": 20},
    "vxlan": {"ipv4": 50, "ipv6": 70},
    "wireguard": {"ipv4": 60, "ipv6": 80},
    "none": {"ipv4": 0, "ipv6": 0},
}
IP_FAMILIES = ("ipv4", "ipv6", "dual")
ENCAPSULATIONS = tuple(OVERHEAD)
MAX_MTU = 65535
MIN_MTU = {"ipv4": 68, "ipv6": 1280, "dual": 1280}

IFF_UP = 0x1


class MtuError(Exception):
    """Bad input or an unusable CNI config; nothing was written."""


def overhead(encapsulation, ip_family="ipv4"):
    """Bytes of encapsulation overhead; dual stack takes the larger of the two families."""
    if encapsulation not in OVERHEAD:
        raise MtuError("unknown encapsulation %r: expected one of %s" % (encapsulation, ", ".join(ENCAPSULATIONS)))
    if ip_family not in IP_FAMILIES:
        raise MtuError("unknown ip_family %r: expected one of %s" % (ip_family, ", ".join(IP_FAMILIES)))
    families = ("ipv4", "ipv6") if ip_family == "dual" else (ip_family,)
    return max(OVERHEAD[encapsulation][family] for family in families)


def check_mtu_range(mtu, ip_family="ipv4"):
    """Raise MtuError unless ``mtu`` is an int a pod interface of this family can carry."""
    low = MIN_MTU.get(ip_family)
    if low is None:
        raise MtuError("unknown ip_family %r: expected one of %s" % (ip_family, ", ".join(IP_FAMILIES)))
    if isinstance(mtu, bool) or not isinstance(mtu, int):
        raise MtuError("MTU %r is not an integer" % (mtu,))
    if not low <= mtu <= MAX_MTU:
        raise MtuError("MTU %d is outside %d-%d (the range for %s)" % (mtu, low, MAX_MTU, ip_family))
    return mtu


def pod_mtu(host_mtu, encapsulation, ip_family="ipv4"):
    """The pod MTU Felix would choose on a host whose smallest matching interface has ``host_mtu``."""
    return host_mtu - overhead(encapsulation, ip_family)


def read_interfaces(root=SYS_CLASS_NET):
    """Every interface under ``root`` as dicts ``{name, mtu, up}``, sorted by name.

    ``up`` is the administrative IFF_UP flag, what Felix's netlink filter looks at.
    Interfaces that vanish while being read are left out.
    """
    interfaces = []
    try:
        names = sorted(os.listdir(root))
    except OSError as exc:
        raise MtuError("cannot list network interfaces in %s: %s" % (root, exc.strerror)) from None
    for name in names:
        try:
            mtu = int(_read(os.path.join(root, name, "mtu")))
            flags = int(_read(os.path.join(root, name, "flags")), 16)
        except (OSError, ValueError):
            continue
        interfaces.append({"name": name, "mtu": mtu, "up": bool(flags & IFF_UP)})
    return interfaces


def interface_mtu(name, root=SYS_CLASS_NET):
    """The MTU of one interface, or None when it does not exist."""
    try:
        return int(_read(os.path.join(root, name, "mtu")))
    except (OSError, ValueError):
        return None


def detect_host_mtu(pattern=FELIX_INTERFACE_PATTERN, root=SYS_CLASS_NET):
    """``(mtu, interface)`` of the smallest-MTU up interface matching ``pattern``; ``(None, None)`` if none."""
    try:
        matcher = re.compile(pattern)
    except re.error as exc:
        raise MtuError("interface_pattern %r is not a valid regular expression: %s" % (pattern, exc)) from None
    best = None
    for interface in read_interfaces(root):
        if interface["up"] and matcher.search(interface["name"]):
            if best is None or interface["mtu"] < best["mtu"]:
                best = interface
    if best is None:
        return None, None
    return best["mtu"], best["name"]


def plan_mtu(mtu=None, encapsulation="ipip", ip_family="ipv4", interface_pattern=FELIX_INTERFACE_PATTERN,
             force=False, root=SYS_CLASS_NET):
    """Decide the pod MTU.

    Returns a dict: ``mtu``, ``mtu_source`` (explicit | detected | fallback),
    ``host_mtu``, ``interface`` and ``warnings`` (list of strings).
    An explicit MTU larger than the detected host MTU minus the overhead is
    refused unless ``force``: such pods would black-hole full-size packets.
    """
    extra = overhead(encapsulation, ip_family)
    host_mtu, interface = detect_host_mtu(interface_pattern, root)
    warnings = []
    if host_mtu is None:
        warnings.append("no up interface matches %r: assuming host MTU %d as Felix does"
                        % (interface_pattern, FALLBACK_HOST_MTU))
        ceiling = None
        computed, source = FALLBACK_HOST_MTU - extra, "fallback"
    else:
        ceiling = host_mtu - extra
        computed, source = ceiling, "detected"
    if mtu is not None:
        check_mtu_range(mtu, ip_family)
        if ceiling is not None and mtu > ceiling and not force:
            raise MtuError("MTU %d is larger than host MTU %d of %s minus the %s overhead %d (at most %d); "
                           "set force to use it anyway" % (mtu, host_mtu, interface, encapsulation, extra, ceiling))
        computed, source = mtu, "explicit"
    else:
        check_mtu_range(computed, ip_family)
    return {"mtu": computed, "mtu_source": source, "host_mtu": host_mtu, "interface": interface,
            "warnings": warnings}


def stale_interfaces(mtu, prefix=VETH_PREFIX, root=SYS_CLASS_NET):
    """Pod veths (names starting with ``prefix``) whose MTU is not ``mtu``: ``[{name, mtu}]``."""
    return [{"name": link["name"], "mtu": link["mtu"]} for link in read_interfaces(root)
            if link["name"].startswith(prefix) and link["mtu"] != mtu]


def veth_name(namespace, pod, prefix=VETH_PREFIX):
    """Calico's host-side interface name for a pod: prefix + 11 hex digits of sha1("ns.pod")."""
    digest = hashlib.sha1(("%s.%s" % (namespace, pod)).encode("utf-8")).hexdigest()
    return prefix + digest[:11]


# --- CNI config editing -------------------------------------------------------------------

_WHITESPACE = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()


def _skip(text, index):
    return _WHITESPACE.match(text, index).end()


def _members(text, start):
    """Spans of an object's members: ``[(key, key_start, value_start, value_end)]``.

    ``start`` is the index of the ``{``; the text is already known to be valid JSON,
    so this only walks it, to edit in place without re-serialising.
    """
    members = []
    index = _skip(text, start + 1)
    if text[index] == "}":
        return members
    while True:
        key, key_end = _DECODER.raw_decode(text, index)
        key_start = index
        index = _skip(text, key_end) + 1  # past ':'
        value_start = _skip(text, index)
        value_end = _DECODER.raw_decode(text, value_start)[1]
        members.append((key, key_start, value_start, value_end))
        index = _skip(text, value_end)
        if text[index] == "}":
            return members
        index = _skip(text, index + 1)


def _elements(text, start):
    """Start indices of an array's elements; ``start`` is the index of the ``[``."""
    elements = []
    index = _skip(text, start + 1)
    if text[index] == "]":
        return elements
    while True:
        elements.append(index)
        index = _skip(text, _DECODER.raw_decode(text, index)[1])
        if text[index] == "]":
            return elements
        index = _skip(text, index + 1)


_BOM = "\ufeff"


def _split_bom(text):
    """``(bom, body)``: a leading UTF-8 byte order mark is kept apart so the JSON offsets start at the body."""
    return (_BOM, text[1:]) if text.startswith(_BOM) else ("", text)


def parse_cni_config(text, path="CNI config"):
    """Decode a .conf/.conflist text; MtuError names the file, line and column when it is not JSON."""
    try:
        data = json.loads(_split_bom(text)[1])
    except json.JSONDecodeError as exc:
        raise MtuError("%s is not valid JSON: %s at line %d column %d" % (path, exc.msg, exc.lineno, exc.colno)) from None
    if not isinstance(data, dict):
        raise MtuError("%s holds a JSON %s, not an object" % (path, type(data).__name__))
    return data


def _calico_plugin_starts(text, data, path, warnings):
    """Index of the ``{`` of each plugin entry of type calico (the top object for a .conf)."""
    top = _skip(text, 0)
    if "plugins" not in data:
        if data.get("type") == "calico":
            return [top]
        raise MtuError("%s has no plugin of type calico (a single-plugin config of type %r)" % (path, data.get("type")))
    if not isinstance(data["plugins"], list):
        raise MtuError("%s: \"plugins\" is a JSON %s, not a list" % (path, type(data["plugins"]).__name__))
    # Every JSON decoder the runtimes use (Go's encoding/json included) keeps the last of duplicate keys.
    plugin_lists = [member[2] for member in _members(text, top) if member[0] == "plugins"]
    if len(plugin_lists) > 1:
        warnings.append("%s has %d \"plugins\" keys; container runtimes use only the last one, so that one was "
                        "edited and the others were left as they are" % (path, len(plugin_lists)))
    starts = [index for index, plugin in zip(_elements(text, plugin_lists[-1]), data["plugins"])
              if isinstance(plugin, dict) and plugin.get("type") == "calico"]
    if not starts:
        types = [plugin.get("type") for plugin in data["plugins"] if isinstance(plugin, dict)]
        raise MtuError("%s has no plugin of type calico (plugin types: %s)" % (path, ", ".join(map(str, types)) or "none"))
    return starts


def _current_mtu(value):
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def edit_config_mtu(text, mtu, path="CNI config"):
    """Return ``(new_text, previous_mtu, warnings)`` with ``"mtu": mtu`` in every calico plugin entry.

    Only the MTU's value changes, or one member is added after the entry's
    ``"type"`` with the same indentation and separators as that member; every
    other byte of the file stays as it was: line endings (CRLF too), a UTF-8
    byte order mark, indentation and trailing whitespace. ``previous_mtu`` is
    None when absent (0 is Calico's "auto-detect"). ``warnings`` lists what the
    runtimes may read differently from what a reader expects (duplicate keys, a BOM).
    """
    data = parse_cni_config(text, path)
    bom, text = _split_bom(text)
    warnings = []
    if bom:
        warnings.append("%s starts with a UTF-8 byte order mark, which Go's encoding/json (containerd and CRI-O "
                        "load CNI configs with it) rejects; it was kept as it was" % path)
    starts = _calico_plugin_starts(text, data, path, warnings)
    edits = []  # (start, end, replacement), applied back to front
    previous = None
    literal = json.dumps(mtu)
    for number, start in enumerate(starts):
        members = _members(text, start)
        found = [m for m in members if m[0] == "mtu"]
        if found:
            value_start, value_end = found[-1][2:]  # JSON's last duplicate wins
            value = _DECODER.raw_decode(text, value_start)[0]
            if number == 0:
                previous = _current_mtu(value)
            if text[value_start:value_end] != literal:
                edits.append((value_start, value_end, literal))
            continue
        key_start, value_start, value_end = next(m for m in members if m[0] == "type")[1:]
        key_end = _DECODER.raw_decode(text, key_start)[1]
        lead = _lead(text, key_start)
        separator = text[key_end:value_start]
        edits.append((value_end, value_end, ",%s%s%s%s" % (lead, json.dumps("mtu"), separator, literal)))
    for start, end, replacement in sorted(edits, reverse=True):
        text = text[:start] + replacement + text[end:]
    return bom + text, previous, warnings


def set_config_mtu(text, mtu, path="CNI config"):
    """Return ``(new_text, previous_mtu)``: :func:`edit_config_mtu` without its warnings."""
    return edit_config_mtu(text, mtu, path)[:2]


def _lead(text, key_start):
    """The whitespace between a member's preceding ``{``/``,`` and its key: its line break and indentation."""
    index = key_start
    while index > 0 and text[index - 1] in " \t\r\n":
        index -= 1
    return text[index:key_start]


def config_mtu(text, path="CNI config"):
    """The MTU of the first calico plugin entry (0: Calico auto-detects it), or None when it has none."""
    data = parse_cni_config(text, path)
    plugins = data["plugins"] if "plugins" in data else [data]
    for plugin in plugins if isinstance(plugins, list) else []:
        if isinstance(plugin, dict) and plugin.get("type") == "calico":
            return _current_mtu(plugin.get("mtu"))
    raise MtuError("%s has no plugin of type calico" % path)


def read_config(path):
    """The text of a CNI config file, line endings untranslated; MtuError names the path when it cannot be read."""
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            return handle.read()
    except OSError as exc:
        raise MtuError("cannot read CNI config %s: %s" % (path, exc.strerror)) from None
    except UnicodeDecodeError as exc:
        raise MtuError("CNI config %s is not UTF-8 text: %s" % (path, exc)) from None


def atomic_write(path, text):
    """Replace ``path`` with ``text``: temp file in the same folder, fsync, rename; mode and owner kept.

    The temp name ends in ``.tmp``: container runtimes load every ``*.conf``,
    ``*.conflist`` and ``*.json`` in the CNI folder and must never see a half file.
    A symbolic link is written through, as Ansible's file modules do: its target
    gets the new text and the link stays a link. The text is written as given,
    line endings untranslated.
    """
    path = os.path.realpath(path)
    folder = os.path.dirname(path)
    current = os.stat(path)
    handle, temp = tempfile.mkstemp(dir=folder, prefix=".%s." % os.path.basename(path), suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as stream:
            stream.write(text)
            stream.flush()
            os.fchmod(stream.fileno(), current.st_mode & 0o7777)
            try:
                os.fchown(stream.fileno(), current.st_uid, current.st_gid)
            except PermissionError:
                pass  # only root may give a file away; a non-root run keeps its own ownership
            os.fsync(stream.fileno())
        os.replace(temp, path)
    except BaseException:
        try:
            os.unlink(temp)
        except OSError as exc:
            if exc.errno != errno.ENOENT:
                raise
        raise
    directory = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def ensure_config_mtu(path, mtu, check_mode=False):
    """Make the calico entry of ``path`` carry ``mtu``.

    Returns a dict: ``changed``, ``previous_mtu``, ``before`` and ``after`` texts
    (exact, so a diff shows every byte that changes) and ``warnings``.
    Writes only when something changes and not in check mode; a symbolic link is
    written through to its target.
    """
    before = read_config(path)
    after, previous, warnings = edit_config_mtu(before, mtu, path)
    changed = after != before
    if changed and not check_mode:
        atomic_write(path, after)
    return {"changed": changed, "previous_mtu": previous, "before": before, "after": after, "warnings": warnings}


def _read(path):
    with open(path, encoding="ascii") as handle:
        return handle.read().strip()
