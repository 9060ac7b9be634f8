# Copyright: netmend.k8s contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The pod_poke core's option check for roles: one validator, in module_utils/poke.py.

The documentation of the filter lives next to this file in ``pod_poke_error.yml``.
"""
from __future__ import annotations

from ansible_collections.netmend.k8s.plugins.module_utils.poke import PokeError, check_options

# The options check_options takes, and the type each is given as on the command line and to the module.
NUMBERS = (("timeout", float), ("count", int), ("size", int), ("mtu_probe", int), ("rate", float))


def pod_poke_error(options):
    """Why the module and agent would refuse these sweep options; an empty string when they accept them.

    ``options`` maps timeout, count, size, mtu_probe and rate to numbers or their text (extra vars and
    surveys send text); a rate of 0 means no cap and an mtu_probe of 0 no probe, as in the role.
    """
    values = {}
    for name, kind in NUMBERS:
        raw = options.get(name)
        try:
            if isinstance(raw, bool):
                raise ValueError(raw)
            values[name] = kind(raw if isinstance(raw, (int, float)) else str(raw).strip())
        except ValueError:
            return "%s must be a number, got %r" % (name, raw)
    try:
        check_options(values["timeout"], values["count"], values["size"], values["mtu_probe"], values["rate"] or None)
    except PokeError as exc:
        return str(exc)
    return ""


class FilterModule:
    """netmend.k8s pod_poke validators."""

    def filters(self):
        return {"pod_poke_error": pod_poke_error}
