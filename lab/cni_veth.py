"""CNI plugin ``netmend-lab-veth``, chained after ``bridge`` on the lab's real nodes: renames the pod's
host-side veth to the name Calico would give it, ``cali`` + sha1("<namespace>.<pod>")[:11],
so node-side code that maps pods to veths the Calico way (the calico_mtu agent) works
on the standard plugins. Standard library only; runs in the node's network namespace, started by a wrapper
that lab/realnodes.py writes into the node's CNI bin directory.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

VERSIONS = ["0.3.0", "0.3.1", "0.4.0", "1.0.0"]


def fail(config, message):
    json.dump({"cniVersion": config.get("cniVersion", "1.0.0"), "code": 100, "msg": message}, sys.stdout)
    sys.exit(1)


def main():
    command = os.environ.get("CNI_COMMAND", "")
    if command == "VERSION":
        json.dump({"cniVersion": "1.0.0", "supportedVersions": VERSIONS}, sys.stdout)
        return
    config = json.load(sys.stdin)
    if command != "ADD":  # DEL and CHECK: the veth goes with the pod's namespace
        return
    result = config.get("prevResult")
    if not result:
        fail(config, "netmend-lab-veth must be chained after a plugin that creates the veth")
    args = dict(item.split("=", 1) for item in os.environ.get("CNI_ARGS", "").split(";") if "=" in item)
    try:
        pod = "%s.%s" % (args["K8S_POD_NAMESPACE"], args["K8S_POD_NAME"])
    except KeyError as exc:
        fail(config, "CNI_ARGS lacks %s" % exc)
    wanted = config.get("prefix", "cali") + hashlib.sha1(pod.encode()).hexdigest()[:11]
    bridge = config.get("bridge", "cni0")
    for interface in result.get("interfaces", []):
        if interface.get("sandbox") or interface["name"] in (bridge, wanted):
            continue
        old = interface["name"]
        for argv in (["ip", "link", "set", "dev", old, "down"],
                     ["ip", "link", "set", "dev", old, "name", wanted],
                     ["ip", "link", "set", "dev", wanted, "up"]):
            done = subprocess.run(argv, capture_output=True, text=True, check=False)
            if done.returncode:
                fail(config, "%s: %s" % (" ".join(argv), done.stderr.strip()))
        interface["name"] = wanted
        break
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
