# Copyright: netmend.k8s contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The calico_mtu core's table and range check for roles: one of each, in module_utils/mtu.py.

The documentation of each filter lives next to this file in ``<filter name>.yml``.
"""
from __future__ import annotations

import re

from ansible.errors import AnsibleFilterError

from ansible_collections.netmend.k8s.plugins.module_utils.mtu import MtuError, check_mtu_range, overhead

_WHOLE_NUMBER = re.compile(r"^[0-9]+$")


def calico_mtu_overhead(encapsulation, ip_family="ipv4"):
    """Bytes the encapsulation adds on this underlay family, from the core's table."""
    try:
        return overhead(encapsulation, ip_family)
    except MtuError as exc:
        raise AnsibleFilterError(str(exc)) from None


def calico_mtu_error(value, ip_family="ipv4", auto=False):
    """Why the module and agent would refuse ``value`` as an MTU; an empty string when they accept it.

    Unset (None or empty text) is accepted; whole numbers may come as text, as extra vars and
    surveys send them. ``auto`` accepts 0, Calico's own auto-detect.
    """
    if value is None or value == "":
        return ""
    text = str(value).strip()
    if isinstance(value, bool) or not _WHOLE_NUMBER.match(text):
        return "MTU %r is not a whole number" % (value,)
    if auto and int(text) == 0:
        return ""
    try:
        check_mtu_range(int(text), ip_family)
    except MtuError as exc:
        return str(exc)
    return ""


class FilterModule:
    """netmend.k8s calico_mtu table and validators."""

    def filters(self):
        return {"calico_mtu_overhead": calico_mtu_overhead, "calico_mtu_error": calico_mtu_error}
