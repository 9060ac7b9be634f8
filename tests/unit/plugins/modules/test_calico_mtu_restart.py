# Copyright: netmend.k8s contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""run_module of calico_mtu_restart over the fake API of the agent's unit tests: which pods, in which order,
what check mode does and how a refusal is reported. The real API server is in tests/lab/test_calico_mtu_role.py."""
from __future__ import annotations

import pytest
from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.testing import patch_module_args

from ansible_collections.netmend.k8s.plugins.module_utils.mtu import veth_name
from ansible_collections.netmend.k8s.plugins.modules import calico_mtu_restart
from tests.unit.plugins.module_utils.test_mtu_agent import FakeClient, evictions, pod


def make_module(check_mode=False, **params):
    args = dict({"node": "node-a", "mtu": 1440, "_ansible_check_mode": check_mode}, **params)
    with patch_module_args(args):
        return AnsibleModule(argument_spec=calico_mtu_restart.ARGUMENT_SPEC, supports_check_mode=True)


def stale(*names):
    return [{"name": veth_name("default", name), "mtu": 1500} for name in names]


CASES = [
    # (pods, refused, reported stale interfaces, check mode, evictions asked, evicted, blocked, changed)
    ([pod("a"), pod("b"), pod("c")], (), stale("a", "c"), False, ["a", "c"], ["a", "c"], [], True),
    ([pod("a"), pod("b")], (), stale("a", "b"), True, [], ["a", "b"], [], True),
    ([pod("a"), pod("host", spec={"hostNetwork": True})], (), stale("a", "host"), False, ["a"], ["a"], [], True),
    ([pod("a"), pod("b")], {("default", "a")}, stale("a", "b"), False, ["a", "b"], ["b"], ["a"], True),
    ([pod("a")], {("default", "a")}, stale("a"), False, ["a"], [], ["a"], False),
    ([pod("a")], (), [], False, [], [], [], False),
]


@pytest.mark.parametrize("pods, refused, reported, check_mode, asked, evicted, blocked, changed", CASES)
def test_run_module(pods, refused, reported, check_mode, asked, evicted, blocked, changed):
    client = FakeClient(pods, refuse=refused)
    module = make_module(check_mode=check_mode, stale_interfaces=reported, eviction_timeout=1)
    result = calico_mtu_restart.run_module(module, client)
    assert [p["name"] for p in result["evicted"]] == evicted
    assert [p["name"] for p in result["blocked"]] == blocked
    assert result["changed"] is changed
    assert client.calls[0] == ("list", "/api/v1/pods", {"fieldSelector": "spec.nodeName=node-a"})
    assert [call[1] for call in evictions(client)] == asked
