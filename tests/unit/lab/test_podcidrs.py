# Copyright: netmend.k8s contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The lab's KWOK pod CIDRs at any node count: the default layout unchanged, no overlaps,
the real nodes' blocks and the underlay left alone, and what the calico role derives."""
from __future__ import annotations

import ipaddress

import pytest

from ansible_collections.netmend.k8s.plugins.filter.pod_cidr import cidr_span
from lab import podcidrs, realnodes

CASES = [
    # index, podCIDR, allocatable pods
    (0, "10.244.0.0/24", 110),
    (1, "10.244.1.0/24", 110),
    (2, "10.244.2.0/24", 110),
    (3, "10.244.4.0/28", 14),
    (4, "10.244.4.16/28", 14),
    (4034, "10.244.255.240/28", 14),
    (4035, "10.245.0.0/28", 14),
    (4999, "10.245.60.64/28", 14),
    (8130, "10.245.255.240/28", 14),
]


@pytest.mark.parametrize("index, cidr, pods", CASES)
def test_node_blocks(index, cidr, pods):
    assert podcidrs.kwok_pod_cidr(index) == cidr
    assert podcidrs.kwok_max_pods(index) == pods


@pytest.mark.parametrize("index", [-1, podcidrs.MAX_KWOK_NODES])
def test_an_index_outside_the_pool_is_refused_by_name(index):
    with pytest.raises(ValueError, match="node index %d does not fit" % index):
        podcidrs.kwok_pod_cidr(index)


def real_blocks(count=4):
    return [ipaddress.ip_network(realnodes.Topology.pod_cidr(index)) for index in range(count)]


def test_5000_nodes_and_the_real_nodes_never_overlap_and_stay_off_the_underlay():
    kwok = [ipaddress.ip_network(podcidrs.kwok_pod_cidr(index)) for index in range(5000)]
    blocks = sorted(kwok + real_blocks(), key=lambda n: (int(n.network_address), n.prefixlen))
    for before, after in zip(blocks, blocks[1:]):
        assert not before.overlaps(after), (before, after)
    underlay = ipaddress.ip_network("10.246.0.0/16")
    services = ipaddress.ip_network("10.0.0.0/24")
    assert all(block.subnet_of(podcidrs.SCALE_POOL) and not block.overlaps(underlay)
               and not block.overlaps(services) for block in blocks)


def test_the_block_holds_its_pods():
    # KWOK gives a node's pods the block's addresses from .1 on: the allocatable count must fit.
    block = ipaddress.ip_network(podcidrs.kwok_pod_cidr(3))
    assert podcidrs.kwok_max_pods(3) == block.num_addresses - 2
    assert podcidrs.kwok_max_pods(3) * 5000 >= 50000


@pytest.mark.parametrize("count, span", [
    (3, "10.244.0.0/22"),  # the default lab: what test_calico_role and Molecule's verify expect
    (100, "10.244.0.0/20"),
    (1000, "10.244.0.0/17"),
    (5000, "10.244.0.0/15"),
])
def test_the_span_the_calico_role_derives(count, span):
    cidrs = [podcidrs.kwok_pod_cidr(index) for index in range(count)] + [str(b) for b in real_blocks(2)]
    assert cidr_span(cidrs) == [span]


@pytest.fixture(scope="module")
def cluster_script():
    """lab/cluster.py as its own script imports it (its siblings are top-level modules there)."""
    import importlib
    import os
    import sys

    lab_dir = os.path.dirname(podcidrs.__file__)
    sys.path.insert(0, lab_dir)
    try:
        yield importlib.import_module("cluster")
    finally:
        sys.path.remove(lab_dir)


@pytest.mark.parametrize("name, index", [
    ("kwok-node-0", 0), ("kwok-node-4999", 4999),
    ("kwok-node-01", None), ("kwok-node-", None), ("kwok-node-x", None), ("real-node-0", None), ("other", None),
])
def test_only_the_lab_s_own_node_names_have_an_index(cluster_script, name, index):
    # `up --nodes N` deletes kwok-node-<i> for i >= N: a name that merely looks alike is never one of them.
    assert cluster_script.kwok_node_index(name) == index


def test_node_bodies_carry_kwok_s_mark_their_block_and_the_pods_it_holds(cluster_script):
    small, scaled = cluster_script.kwok_node(2), cluster_script.kwok_node(4999)
    assert small["spec"] == {"podCIDR": "10.244.2.0/24", "podCIDRs": ["10.244.2.0/24"]}
    assert small["status"]["allocatable"]["pods"] == "110"
    assert scaled["metadata"]["name"] == "kwok-node-4999"
    assert scaled["spec"]["podCIDRs"] == ["10.245.60.64/28"]
    assert scaled["status"]["allocatable"]["pods"] == scaled["status"]["capacity"]["pods"] == "14"
    assert cluster_script._ours(scaled)
    assert not cluster_script._ours({"metadata": {"name": "kwok-node-7", "labels": {"type": "kwok"}}})
