# Copyright: netmend.k8s contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""kube_lite's client for the modules that call the API from the controller.

The same calls as the agents make, over the kubernetes dynamic client, so the
controller's credentials (kubeconfig, K8S_AUTH_*, exec plugins, client
certificates, proxies) work as for kubernetes.core modules. ``AUTH_SPEC`` is the
argument spec of those connection options; its documentation is the
``netmend.k8s.attributes.k8s_auth`` fragment.
"""
from __future__ import annotations

import json

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.netmend.k8s.plugins.module_utils.kube_lite import KubeClient, KubeError

try:
    from ansible_collections.kubernetes.core.plugins.module_utils.k8s.client import get_api_client
    from ansible_collections.kubernetes.core.plugins.module_utils.k8s.exceptions import CoreException
    from kubernetes.client.rest import ApiException
except ImportError as import_error:
    K8S_IMPORT_ERROR = import_error
else:
    K8S_IMPORT_ERROR = None

# The K8S_AUTH_* environment variables fill these as for kubernetes.core (get_api_client reads them).
AUTH_SPEC = dict(
    kubeconfig=dict(type="raw", no_log=True),
    context=dict(type="str"),
    host=dict(type="str"),
    api_key=dict(type="str", no_log=True),
    validate_certs=dict(type="bool", aliases=["verify_ssl"]),
    ca_cert=dict(type="path", aliases=["ssl_ca_cert"]),
    client_cert=dict(type="path", aliases=["cert_file"]),
    client_key=dict(type="path", aliases=["key_file"]),
)


class ControllerClient(KubeClient):
    """kube_lite's calls over the kubernetes dynamic client."""

    def __init__(self, dynamic_client):  # pylint: disable=super-init-not-called
        self.api = dynamic_client
        self.host = dynamic_client.configuration.host

    def request(self, method, path, query=None, body=None):
        try:
            response = self.api.request(method, path, body=body, query_params=list((query or {}).items()),
                                        serialize=False)
        except ApiException as exc:
            # As kube_lite does: the API server's Status message says who may not do what.
            status = exc.status or 0
            try:
                status_body = json.loads(exc.body or b"{}")
            except ValueError:
                status_body = {}
            if not isinstance(status_body, dict):
                status_body = {}
            message = status_body.get("message") or exc.reason
            raise KubeError("%s %s: %s %s" % (method, path, status, message), status=status,
                            reason=status_body.get("reason", ""), body=status_body) from None
        return json.loads(response.data or b"{}")


def connect(module, **context):
    """The module's ControllerClient from its AUTH_SPEC parameters; fails the module with ``context`` if it cannot."""
    if K8S_IMPORT_ERROR is not None:
        module.fail_json(msg=missing_required_lib("kubernetes and the kubernetes.core collection"),
                         exception=str(K8S_IMPORT_ERROR), **context)
    auth = {key: module.params[key] for key in AUTH_SPEC}
    try:
        return ControllerClient(get_api_client(**auth).client)
    except CoreException as exc:
        module.fail_json(msg=str(exc), **context)
    return None
