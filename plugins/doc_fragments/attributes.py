# Copyright: netmend.k8s contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations


class ModuleDocFragment:
    """Attribute docs shared by every netmend.k8s module."""

    DOCUMENTATION = r"""
options: {}
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
  platform:
    description: Target OS/families that can be operated against.
    support: N/A
"""

    NODE = r"""
options: {}
attributes:
  platform:
    platforms: linux
    description: Runs on a Linux Kubernetes node (over SSH), or on any Linux host for pure computation.
"""

    # The connection options of the modules that call the API from the controller.
    K8S_AUTH = r"""
options:
  kubeconfig:
    description:
      - Path to a kubeconfig file, or its content as a dictionary.
      - When omitted, C(K8S_AUTH_KUBECONFIG), then C(KUBECONFIG), then C(~/.kube/config), then the pod's service account,
        as for C(kubernetes.core) modules.
    type: raw
  context:
    description:
      - The kubeconfig context to use; C(K8S_AUTH_CONTEXT) when omitted.
    type: str
  host:
    description:
      - URL of the API server; C(K8S_AUTH_HOST) when omitted.
    type: str
  api_key:
    description:
      - Bearer token; C(K8S_AUTH_API_KEY) when omitted.
    type: str
  validate_certs:
    description:
      - Verify the API server's certificate; C(K8S_AUTH_VERIFY_SSL) when omitted.
    type: bool
    aliases: [verify_ssl]
  ca_cert:
    description:
      - CA certificate of the API server; C(K8S_AUTH_SSL_CA_CERT) when omitted.
    type: path
    aliases: [ssl_ca_cert]
  client_cert:
    description:
      - Client certificate; C(K8S_AUTH_CERT_FILE) when omitted.
    type: path
    aliases: [cert_file]
  client_key:
    description:
      - Client key; C(K8S_AUTH_KEY_FILE) when omitted.
    type: path
    aliases: [key_file]
"""
