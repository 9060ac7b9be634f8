# Copyright: netmend.k8s contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The masq_rule core's chain-name rules for roles: one validator, in module_utils/masq.py.

The documentation of each filter lives next to this file in ``<filter name>.yml``.
"""
from __future__ import annotations

from ansible_collections.netmend.k8s.plugins.module_utils.masq import chain_error


def masq_chain_error(name):
    """Why the module and agent would refuse ``name`` as their chain; an empty string when they accept it."""
    return chain_error(name)


class FilterModule:
    """netmend.k8s masq_rule validators."""

    def filters(self):
        return {"masq_chain_error": masq_chain_error}
