# Copyright: netmend.k8s contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The lab's restart hands the KWOK nodes' Leases to the restarted KWOK controller: only the Leases of
the KWOK nodes the lab made, only those the old controller holds (tests/lab/test_real_faults.py
restarts a real lab)."""
from __future__ import annotations

import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "..", "lab"))
import cluster  # noqa: E402  (lab/cluster.py, a script's module)


class FakeRaw:
    """The Lease list and deletes of cluster.RawApi.request, recorded."""

    def __init__(self, holders):
        self.holders = dict(holders)
        self.deleted = []

    def request(self, method, path, body=None, ok=(200, 201), raw=False):
        if method == "GET":
            assert path == cluster.LEASES
            return 200, {"items": [{"metadata": {"name": name}, "spec": {"holderIdentity": holder} if holder else {}}
                                   for name, holder in self.holders.items()]}
        assert method == "DELETE" and path.startswith(cluster.LEASES + "/") and 404 in ok
        name = path.rsplit("/", 1)[1]
        self.deleted.append(name)
        self.holders.pop(name, None)
        return 200, {}


def test_only_the_old_controllers_leases_of_our_kwok_nodes_are_released():
    ours = {"kwok-node-0", "kwok-node-1", "kwok-node-2"}
    # kwok-node-9: a KWOK-named node the lab did not make (no mark), its Lease held by the same identity
    raw = FakeRaw({"kwok-node-0": "host_old", "kwok-node-1": "host_new", "kwok-node-2": None,
                   "real-node-0": "real-node-0", "kwok-node-9": "host_old", "other": "host_old"})
    names = [lease["metadata"]["name"] for lease in cluster.kwok_leases(raw, ours)]
    assert names == ["kwok-node-0", "kwok-node-1", "kwok-node-2"]
    assert cluster.release_leases(raw, ours, {"host_old"}) is False  # one was held: deleted, not yet handed over
    assert raw.deleted == ["kwok-node-0"]
    # a real node's Lease (its kubelet's) and those of nodes that are not the lab's are never touched
    assert set(raw.holders) == {"kwok-node-1", "kwok-node-2", "real-node-0", "kwok-node-9", "other"}
    assert cluster.release_leases(raw, ours, {"host_old"}) is True
    assert raw.deleted == ["kwok-node-0"]


def test_the_restart_waits_for_the_processes_kwokctl_recorded(tmp_path, monkeypatch):
    """kwokctl stop signals without waiting; the restart waits until every recorded PID has exited."""
    monkeypatch.setattr(cluster, "WORKDIR", str(tmp_path))
    folder = tmp_path / "clusters" / cluster.CLUSTER / "pids"
    folder.mkdir(parents=True)
    child = subprocess.Popen(["sleep", "0"])  # exits at once; not waited for, it stays a zombie
    (folder / "etcd.pid").write_text(str(os.getpid()))
    (folder / "kube-apiserver.pid").write_text(str(child.pid))
    (folder / "kwok-controller.pid").write_text("")
    assert cluster.control_plane_pids() == [os.getpid(), child.pid]
    deadline = time.monotonic() + 10
    while cluster.alive(child.pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert cluster.alive(os.getpid())
    assert not cluster.alive(child.pid)  # a zombie has closed its sockets: its port is free
    child.wait()
    assert not cluster.alive(child.pid)
