"""Pod CIDRs of the lab's KWOK nodes, at any node count (standard library only).

kwok-node-0..2 keep 10.244.<i>.0/24, the layout every lab test, the Molecule default scenario
and the calico role's expectations know (with the real nodes' /26s of 10.244.3.0/24,
realnodes.POD_SUPERNET, the nodes span the cluster pod CIDR 10.244.0.0/22). Every further
node gets a /28 from 10.244.4.0 on, inside 10.244.0.0/15: room for 8,128 more nodes of 14 pods
each (a GKE node with a small max-pods gets a /28 too), so 5,000 nodes hold 50,000 pods, and the
whole stays clear of the real nodes' underlay (10.246.0.0/16) and the Services (10.0.0.0/24).
The span of the nodes' podCIDRs (the cluster pod CIDR the calico role derives) grows with the
count: 10.244.0.0/22 at 3 nodes, 10.244.0.0/15 at 5,000. A podCIDR never changes once set,
so a node's block depends on its index only, whatever count the lab is brought to.
"""
from __future__ import annotations

import ipaddress

BASE_KWOK_NODES = 3
BASE_PODS = 110
SCALE_POOL = ipaddress.ip_network("10.244.0.0/15")
SCALE_FIRST = ipaddress.ip_address("10.244.4.0")
SCALE_PREFIX = 28
SCALE_BLOCK = 2 ** (32 - SCALE_PREFIX)
MAX_KWOK_NODES = BASE_KWOK_NODES + (int(SCALE_POOL.broadcast_address) + 1 - int(SCALE_FIRST)) // SCALE_BLOCK


def kwok_pod_cidr(index):
    """The podCIDR of kwok-node-<index>."""
    if not 0 <= index < MAX_KWOK_NODES:
        raise ValueError("the lab holds 0 to %d KWOK nodes (pod CIDRs inside %s); node index %d does not fit"
                         % (MAX_KWOK_NODES, SCALE_POOL, index))
    if index < BASE_KWOK_NODES:
        return "10.244.%d.0/24" % index
    return "%s/%d" % (SCALE_FIRST + (index - BASE_KWOK_NODES) * SCALE_BLOCK, SCALE_PREFIX)


def kwok_max_pods(index):
    """The node's allocatable pods: a /28 holds as many pods as it has host addresses, because
    KWOK hands out pod IPs past the end of a node's block."""
    return BASE_PODS if index < BASE_KWOK_NODES else SCALE_BLOCK - 2
