# Copyright: netmend.k8s contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The net_doctor run-once agent: diagnose this node once and print the result as one JSON line.

Run by the net_doctor role's short-lived DaemonSet (host network, read-only host
mounts, no capabilities) as::

    python3 -m ansible_collections.netmend.k8s.plugins.module_utils.agent net_doctor --spec '<json>' [--hold]

``--spec`` carries what the cluster says (nodes, pod CIDRs, BGP peers, expected
tunnels), the same keys as the module's options, plus ``bgp_nodes``: probe TCP 179
of every node but this one (one spec serves every node of a DaemonSet). The result line starts with
``RESULT_MARKER`` so the role finds it in the pod log. With ``--hold`` the agent then
waits until it is stopped, so the DaemonSet's pod stays Running (not restarted in a
loop) until the role has read every node's log and deletes it. Standard library only.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from ansible_collections.netmend.k8s.plugins.module_utils.agent import HEARTBEAT_GRACE, Heartbeat, Stopper
from ansible_collections.netmend.k8s.plugins.module_utils.netdoctor import DoctorError, NodeReader, Spec, diagnose

FIX = "net_doctor"
RESULT_MARKER = "NETMEND_NET_DOCTOR_RESULT "
SPEC_KEYS = ("nodes", "bgp_nodes", "pod_count", "bgp_peers", "bgp_port", "bgp_timeout", "encapsulation", "ip_family",
             "interface_pattern", "cni_config", "expected_tunnels", "veth_prefixes", "gc_thresh", "conntrack_max",
             "checks")


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="agent net_doctor", description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--spec", default="{}", help="JSON object with the module's options")
    parser.add_argument("--node-name", default=os.environ.get("NODE_NAME", ""),
                        help="this node's name (default: NODE_NAME from the downward API)")
    parser.add_argument("--proc-root", default="/proc")
    parser.add_argument("--sys-root", default="/sys")
    parser.add_argument("--hold", action="store_true", help="after printing, wait until stopped (DaemonSet)")
    return parser.parse_args(argv)


def build_spec(text, node_name):
    """A validated :class:`Spec` from the ``--spec`` JSON; DoctorError names what is wrong."""
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise DoctorError("--spec is not valid JSON: %s" % exc) from None
    if not isinstance(raw, dict):
        raise DoctorError("--spec must be a JSON object, not %s" % type(raw).__name__)
    unknown = sorted(set(raw) - set(SPEC_KEYS))
    if unknown:
        raise DoctorError("--spec has unknown keys %s: expected some of %s" % (", ".join(unknown), ", ".join(SPEC_KEYS)))
    if raw.pop("bgp_nodes", False):
        # every other node is a BGP peer (Calico's full mesh); which ones are "other" only the node knows
        raw["bgp_peers"] = list(raw.get("bgp_peers") or []) + [
            address for node in raw.get("nodes") or [] if isinstance(node, dict) and node.get("name") != node_name
            for address in node.get("addresses") or []]
    return Spec(node_name=node_name, **raw)


def run_once(options, reader=None):
    """``(exit code, result dict)``: 0 with findings and facts, 2 with the error when the input is bad."""
    try:
        spec = build_spec(options.spec, options.node_name)
        result = diagnose(spec, reader or NodeReader(proc=options.proc_root, sys=options.sys_root))
    except DoctorError as exc:
        return 2, {"node": options.node_name, "error": str(exc)}
    result["node"] = options.node_name
    return 0, result


def agent_main(argv, stopper=None, out=None):
    options = parse_args(argv)
    out = out or sys.stdout
    code, result = run_once(options)
    out.write(RESULT_MARKER + json.dumps(result, sort_keys=True) + "\n")
    out.flush()
    if options.hold:
        stopper = stopper or Stopper().install()
        # Its one run is done: ready (the DaemonSet's readiness probe reads this heartbeat) while held.
        heartbeat = Heartbeat.from_environment()
        while True:
            if heartbeat is not None:
                heartbeat.beat(2 * 3600 + HEARTBEAT_GRACE)
            if stopper.sleep(3600):
                break
    return code
