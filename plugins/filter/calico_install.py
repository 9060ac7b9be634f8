# Copyright: netmend.k8s contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one Calico detection, for roles: how Calico is installed, from what k8s_info read.

The detection is the core's (``module_utils/calico.py``); the roles read the objects
once, in the cluster_report role's ``calico`` entry point. The documentation of the
filter lives next to this file in ``calico_install.yml``.
"""
from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.netmend.k8s.plugins.module_utils.calico import INSTALL_NAMESPACES, CalicoError, detect_install


def calico_install(objects, namespaces=INSTALL_NAMESPACES):
    """How Calico is installed; see calico_install.yml."""
    try:
        return detect_install(objects, list(namespaces) if isinstance(namespaces, tuple) else namespaces)
    except CalicoError as exc:
        raise AnsibleFilterError("calico_install: %s" % exc) from None


class FilterModule:
    """netmend.k8s Calico detection."""

    def filters(self):
        return {"calico_install": calico_install}
