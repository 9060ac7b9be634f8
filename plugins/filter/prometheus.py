# Copyright: netmend.k8s contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Structural validation of a Prometheus configuration on the controller.

The checks live in the core file plugins/module_utils/promconfig.py (standard library
only); the documentation of the filter is prometheus_config_errors.yml next to this file.
"""
from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.netmend.k8s.plugins.module_utils.promconfig import validate


def prometheus_config_errors(config):
    """Every structural error of a parsed Prometheus configuration (an empty list when there is none)."""
    if isinstance(config, str):
        raise AnsibleFilterError("prometheus_config_errors needs the parsed configuration (use from_yaml first), not a string")
    return validate(config)


class FilterModule:
    """netmend.k8s Prometheus filters."""

    def filters(self):
        return {"prometheus_config_errors": prometheus_config_errors}
