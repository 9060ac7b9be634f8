# Copyright: netmend.k8s contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.netmend.k8s.plugins.filter import cidr

RFC1918 = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]


@pytest.mark.parametrize("values, merged", [
    (["10.11.0.0/25", "10.11.0.128/25", "10.11.0.0/24"], ["10.11.0.0/24"]),
    (["192.168.0.0/16", "10.0.0.0/8", "10.11.0.0/24"], ["10.0.0.0/8", "192.168.0.0/16"]),
    (["fd00::/64", "10.0.0.1"], ["10.0.0.1/32", "fd00::/64"]),
    ("10.0.0.0/8", ["10.0.0.0/8"]),
    ([], []),
])
def test_cidr_merge(values, merged):
    assert cidr.cidr_merge(values) == merged


@pytest.mark.parametrize("base, remove, left", [
    (["10.0.0.0/8"], ["10.11.0.0/24"], [
        "10.0.0.0/13", "10.8.0.0/15", "10.10.0.0/16", "10.11.1.0/24", "10.11.2.0/23", "10.11.4.0/22",
        "10.11.8.0/21", "10.11.16.0/20", "10.11.32.0/19", "10.11.64.0/18", "10.11.128.0/17", "10.12.0.0/14",
        "10.16.0.0/12", "10.32.0.0/11", "10.64.0.0/10", "10.128.0.0/9"]),
    (RFC1918, ["172.16.0.0/12"], ["10.0.0.0/8", "192.168.0.0/16"]),
    (RFC1918, ["203.0.113.0/24"], RFC1918),
    (["10.11.0.0/24"], ["10.0.0.0/8"], []),
    (["10.11.0.0/24", "fd00::/63"], ["fd00::/64"], ["10.11.0.0/24", "fd00:0:0:1::/64"]),
])
def test_cidr_subtract(base, remove, left):
    assert cidr.cidr_subtract(base, remove) == left


def test_cidr_subtract_keeps_every_other_address():
    left = cidr.cidr_subtract(RFC1918, ["10.11.0.0/24", "192.168.5.0/24"])
    assert cidr.cidr_merge(left + ["10.11.0.0/24", "192.168.5.0/24"]) == RFC1918
    assert cidr.cidr_overlaps(left, ["10.11.0.0/24", "192.168.5.0/24"]) == []


@pytest.mark.parametrize("values, others, overlapping", [
    (["10.11.0.0/24", "10.4.2.0/24"], ["10.4.0.0/14"], ["10.4.2.0/24"]),
    (["10.0.0.0/8"], ["10.4.0.0/14"], ["10.0.0.0/8"]),
    (["10.11.0.0/24"], ["10.4.0.0/14", "10.96.0.0/12"], []),
    (["fd00::/64"], ["10.0.0.0/8"], []),
    ([], ["10.0.0.0/8"], []),
])
def test_cidr_overlaps(values, others, overlapping):
    assert cidr.cidr_overlaps(values, others) == overlapping


@pytest.mark.parametrize("call, message", [
    (lambda: cidr.cidr_merge(["10.11.0.1/24"]), "misaligned CIDR '10.11.0.1/24' in cidr_merge input"),
    (lambda: cidr.cidr_subtract(RFC1918, ["10.11.0.300/24"]), "invalid CIDR '10.11.0.300/24' in cidr_subtract argument"),
    (lambda: cidr.cidr_overlaps(["vpn"], RFC1918), "invalid CIDR 'vpn' in cidr_overlaps input"),
    (lambda: cidr.cidr_merge(5), "cidr_merge input must be a list of CIDRs, got 5"),
])
def test_bad_input_names_the_value(call, message):
    with pytest.raises(AnsibleFilterError) as err:
        call()
    assert str(err.value).startswith(message)


def test_filter_module_exports_the_three():
    assert sorted(cidr.FilterModule().filters()) == ["cidr_merge", "cidr_overlaps", "cidr_subtract"]
