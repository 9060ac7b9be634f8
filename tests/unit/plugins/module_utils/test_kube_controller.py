# Copyright: netmend.k8s contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The controller-side client's errors say what the API server said, as kube_lite's do. The real API server
refusing a token without rights is in tests/awx/test_awx_runner.py."""
from __future__ import annotations

import json

import pytest
from kubernetes.client.rest import ApiException

from ansible_collections.netmend.k8s.plugins.module_utils.kube_controller import ControllerClient
from ansible_collections.netmend.k8s.plugins.module_utils.kube_lite import KubeError

FORBIDDEN = json.dumps({"kind": "Status", "status": "Failure", "reason": "Forbidden", "code": 403,
                        "message": 'nodes is forbidden: User "system:serviceaccount:ns:job" cannot list resource "nodes"'})


class Configuration:
    host = "https://api.example.test:6443"


class DynamicClient:
    configuration = Configuration()

    def __init__(self, body, status=403, reason="Forbidden"):
        self.body, self.status, self.reason = body, status, reason

    def request(self, method, path, body=None, query_params=None, serialize=False):
        error = ApiException(status=self.status, reason=self.reason)
        error.body = self.body
        raise error


@pytest.mark.parametrize("body, message, reason", [
    (FORBIDDEN, 'GET /api/v1/nodes: 403 nodes is forbidden: User "system:serviceaccount:ns:job" cannot list resource "nodes"',
     "Forbidden"),
    ("<html>bad gateway</html>", "GET /api/v1/nodes: 403 Forbidden", ""),
    (None, "GET /api/v1/nodes: 403 Forbidden", ""),
    ("[]", "GET /api/v1/nodes: 403 Forbidden", ""),
])
def test_errors_carry_the_servers_message(body, message, reason):
    with pytest.raises(KubeError) as raised:
        ControllerClient(DynamicClient(body)).request("GET", "/api/v1/nodes")
    assert str(raised.value) == message
    assert raised.value.status == 403 and raised.value.reason == reason
