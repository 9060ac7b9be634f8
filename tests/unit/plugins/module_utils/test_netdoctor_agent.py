# Copyright: netmend.k8s contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

import io
import json

import pytest

from ansible_collections.netmend.k8s.plugins.module_utils import agent, netdoctor_agent
from ansible_collections.netmend.k8s.plugins.module_utils.netdoctor_agent import RESULT_MARKER


def result_line(text):
    (line,) = [line for line in text.splitlines() if line.startswith(RESULT_MARKER)]
    return json.loads(line[len(RESULT_MARKER):])


def test_dispatched_by_the_shared_entry_point():
    assert agent.FIXES["net_doctor"] == "netdoctor_agent"


def test_run_once_prints_one_result_line(monkeypatch):
    out = io.StringIO()
    code = netdoctor_agent.agent_main(["--spec", json.dumps({"checks": ["tunnel_down"],
                                                             "expected_tunnels": ["nm-no-such0"]}),
                                       "--node-name", "node-7"], out=out)
    assert code == 0
    result = result_line(out.getvalue())
    assert result["node"] == "node-7"
    assert [(item["id"], item["subject"]) for item in result["findings"]] == [("tunnel_down", "nm-no-such0")]


@pytest.mark.parametrize("spec, message", [
    ("{", "--spec is not valid JSON"),
    ("[]", "--spec must be a JSON object, not list"),
    ('{"peers": []}', "--spec has unknown keys peers"),
    ('{"bgp_peers": ["10.0.0.999"]}', "'10.0.0.999' is not an IP address"),
])
def test_bad_spec_prints_the_error_and_exits_2(spec, message):
    out = io.StringIO()
    code = netdoctor_agent.agent_main(["--spec", spec], out=out)
    assert code == 2
    assert message in result_line(out.getvalue())["error"]


def test_hold_waits_until_stopped():
    class Stopped:
        calls = 0

        def sleep(self, seconds):
            Stopped.calls += 1
            return Stopped.calls >= 2

    out = io.StringIO()
    assert netdoctor_agent.agent_main(["--spec", '{"checks": []}', "--hold"], stopper=Stopped(), out=out) == 0
    assert Stopped.calls == 2 and result_line(out.getvalue())["findings"] == []


def test_bgp_nodes_probes_every_node_but_this_one():
    spec = netdoctor_agent.build_spec(json.dumps({"bgp_nodes": True, "nodes": [
        {"name": "n1", "addresses": ["10.0.0.1"]}, {"name": "n2", "addresses": ["10.0.0.2", "fd00::2"]},
        {"name": "n3", "addresses": ["10.0.0.3"]}]}), "n1")
    assert [str(address) for address in spec.bgp_peers] == ["10.0.0.2", "fd00::2", "10.0.0.3"]
    assert netdoctor_agent.build_spec(json.dumps({"bgp_nodes": False, "nodes": [
        {"name": "n2", "addresses": ["10.0.0.2"]}]}), "n1").bgp_peers == []


def test_held_agent_is_ready(tmp_path, monkeypatch):
    from ansible_collections.netmend.k8s.plugins.module_utils import agent

    class StopAtOnce:
        def sleep(self, seconds):
            return True

    monkeypatch.setenv(agent.HEARTBEAT_ENV, str(tmp_path / "heartbeat"))
    netdoctor_agent.agent_main(["--spec", '{"checks": []}', "--hold"], stopper=StopAtOnce(), out=io.StringIO())
    assert agent.readiness(str(tmp_path / "heartbeat"))[0]
