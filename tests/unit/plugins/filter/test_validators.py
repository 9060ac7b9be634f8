# Copyright: netmend.k8s contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The filters that hand roles the cores' tables, validators and Calico detection: the core's
answer and message, text numbers as extra vars and surveys send them, and errors named."""
from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.netmend.k8s.plugins.filter.calico_install import calico_install
from ansible_collections.netmend.k8s.plugins.filter.calico_mtu import calico_mtu_error, calico_mtu_overhead
from ansible_collections.netmend.k8s.plugins.filter.pod_poke import pod_poke_error
from ansible_collections.netmend.k8s.plugins.module_utils import mtu


@pytest.mark.parametrize("encapsulation, family", [(e, f) for e in mtu.ENCAPSULATIONS for f in mtu.IP_FAMILIES])
def test_overhead_is_the_cores(encapsulation, family):
    assert calico_mtu_overhead(encapsulation, family) == mtu.overhead(encapsulation, family)


@pytest.mark.parametrize("encapsulation, family, message", [
    ("geneve", "ipv4", "unknown encapsulation 'geneve'"),
    ("vxlan", "ipv5", "unknown ip_family 'ipv5'"),
])
def test_overhead_names_what_it_does_not_know(encapsulation, family, message):
    with pytest.raises(AnsibleFilterError, match=message):
        calico_mtu_overhead(encapsulation, family)


@pytest.mark.parametrize("value, family, auto, expected", [
    (None, "ipv4", False, ""),
    ("", "ipv4", False, ""),
    (1440, "ipv4", False, ""),
    ("1440", "ipv4", False, ""),
    (" 1440 ", "ipv4", False, ""),
    (68, "ipv4", False, ""),
    (0, "ipv4", True, ""),
    ("0", "ipv4", True, ""),
    (0, "ipv4", False, "MTU 0 is outside 68-65535 (the range for ipv4)"),
    (60, "ipv4", False, "MTU 60 is outside 68-65535 (the range for ipv4)"),
    ("1200", "ipv6", False, "MTU 1200 is outside 1280-65535 (the range for ipv6)"),
    (1200, "dual", False, "MTU 1200 is outside 1280-65535 (the range for dual)"),
    (65536, "ipv4", False, "MTU 65536 is outside 68-65535 (the range for ipv4)"),
    ("1440.5", "ipv4", False, "MTU '1440.5' is not a whole number"),
    ("-1", "ipv4", True, "MTU '-1' is not a whole number"),
    (True, "ipv4", False, "MTU True is not a whole number"),
])
def test_mtu_error(value, family, auto, expected):
    assert calico_mtu_error(value, family, auto=auto) == expected


GOOD = {"timeout": 1.0, "count": 1, "size": 56, "mtu_probe": 0, "rate": 0}


@pytest.mark.parametrize("changes, expected", [
    ({}, ""),
    ({"timeout": "0.3", "count": "2", "size": "1400", "mtu_probe": "1500", "rate": "50"}, ""),
    ({"timeout": 0}, "timeout must be greater than 0, got 0.0"),
    ({"count": 0}, "count must be at least 1, got 0"),
    ({"size": 65468}, "size must be between 0 and 65467 bytes, got 65468"),
    ({"mtu_probe": 20}, "mtu_probe must be a packet size between 68 and 65535 bytes, got 20"),
    ({"rate": -1}, "rate must be greater than 0 packets per second, got -1.0"),
    ({"count": "many"}, "count must be a number, got 'many'"),
    ({"count": True}, "count must be a number, got True"),
])
def test_pod_poke_error(changes, expected):
    assert pod_poke_error(dict(GOOD, **changes)) == expected


def test_calico_install_names_bad_input():
    assert calico_install([])["install"] == "none"
    with pytest.raises(AnsibleFilterError, match="calico_install: namespaces must be a list"):
        calico_install([], "kube-system")
