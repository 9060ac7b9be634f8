# Copyright: netmend.k8s contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""CIDR arithmetic on the controller (netaddr): merge, subtract, find overlaps.

The documentation of each filter lives next to this file in ``<filter name>.yml``.
"""
from __future__ import annotations

from ansible.errors import AnsibleFilterError

try:
    import netaddr
except ImportError:
    netaddr = None


def _networks(values, what):
    """Strict parse: a CIDR with host bits set (10.11.0.1/24) is refused, naming it."""
    if netaddr is None:
        raise AnsibleFilterError("the netmend.k8s CIDR filters need the Python library netaddr on the controller")
    if isinstance(values, str):
        values = [values]
    try:
        items = list(values)
    except TypeError:
        raise AnsibleFilterError("%s must be a list of CIDRs, got %r" % (what, values)) from None
    networks = []
    for value in items:
        try:
            network = netaddr.IPNetwork(str(value).strip())
        except (netaddr.AddrFormatError, ValueError, TypeError) as exc:
            raise AnsibleFilterError("invalid CIDR %r in %s: %s" % (value, what, exc)) from None
        if network.ip != network.network:
            raise AnsibleFilterError("misaligned CIDR %r in %s: host bits are set (did you mean %s?)"
                                     % (value, what, network.cidr))
        networks.append(network)
    return networks


def cidr_merge(cidrs):
    """The smallest list of CIDRs covering exactly the same addresses, sorted (IPv4 first)."""
    return [str(network) for network in netaddr.cidr_merge(_networks(cidrs, "cidr_merge input"))]


def cidr_subtract(cidrs, remove):
    """The addresses of ``cidrs`` minus those of ``remove``, as a minimal sorted list of CIDRs."""
    kept = netaddr.IPSet(_networks(cidrs, "cidr_subtract input")) - netaddr.IPSet(_networks(remove, "cidr_subtract argument"))
    return [str(network) for network in kept.iter_cidrs()]


def cidr_overlaps(cidrs, others):
    """The CIDRs of ``cidrs`` that share at least one address with any CIDR of ``others``, in input order."""
    others_set = netaddr.IPSet(_networks(others, "cidr_overlaps argument"))
    return [str(network) for network in _networks(cidrs, "cidr_overlaps input")
            if not netaddr.IPSet([network]).isdisjoint(others_set)]


class FilterModule:
    """netmend.k8s CIDR filters."""

    def filters(self):
        return {
            "cidr_merge": cidr_merge,
            "cidr_subtract": cidr_subtract,
            "cidr_overlaps": cidr_overlaps,
        }
