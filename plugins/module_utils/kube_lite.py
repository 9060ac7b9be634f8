# Copyright: netmend.k8s contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A minimal Kubernetes API client for the in-cluster agents: standard library only.

The agents run on a stock ``python3`` image, so they cannot count on the
``kubernetes`` package. They need only a handful of calls (get, list, watch,
evict), authenticated with the pod's service-account token. The same client is
pointed at the lab API server by tests, with a token and CA file given
explicitly.
"""
from __future__ import annotations

import json
import os
import ssl
import urllib.error
import urllib.parse
import urllib.request

SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
# 0: no answer at all (refused, reset, timed out, TLS failure).
TRANSIENT_STATUSES = frozenset((0, 408, 429, 500, 502, 503, 504))


class KubeError(Exception):
    """An API call failed; ``status`` is the HTTP status (0 when no answer came)."""

    def __init__(self, message, status=0, reason="", body=None):
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.body = body

    @property
    def transient(self):
        """No answer, or an answer that says "later": worth retrying with a backoff."""
        return self.status in TRANSIENT_STATUSES


class KubeClient:
    """Talks JSON to one API server with a bearer token."""

    def __init__(self, host, token=None, ca_file=None, insecure=False, token_file=None, timeout=30.0):
        if not host:
            raise KubeError("no API server address given")
        self.host = host.rstrip("/")
        self._token = token
        self._token_file = token_file
        self.timeout = timeout
        handlers = []
        if self.host.startswith("https://"):
            context = ssl.create_default_context(cafile=ca_file)
            if insecure:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            handlers.append(urllib.request.HTTPSHandler(context=context))
        # No proxy handler: an agent talks to its own API server, never through a proxy.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), *handlers)

    @classmethod
    def in_cluster(cls, environ=None, sa_dir=SERVICE_ACCOUNT_DIR):
        """The client a pod gets from its service account and KUBERNETES_SERVICE_* variables."""
        environ = os.environ if environ is None else environ
        host = environ.get("KUBERNETES_SERVICE_HOST")
        port = environ.get("KUBERNETES_SERVICE_PORT", "443")
        if not host:
            raise KubeError("KUBERNETES_SERVICE_HOST is not set: not running in a pod")
        if ":" in host:
            host = "[%s]" % host
        return cls(
            "https://%s:%s" % (host, port),
            token_file=os.path.join(sa_dir, "token"),
            ca_file=os.path.join(sa_dir, "ca.crt"),
        )

    @classmethod
    def from_environment(cls, environ=None):
        """NETMEND_KUBE_HOST/NETMEND_KUBE_TOKEN_FILE/NETMEND_KUBE_CA_FILE when set, else in-cluster.

        The explicit variables let an agent run outside a pod (the lab tests, a
        debugging session) with exactly the token a pod would have.
        """
        environ = os.environ if environ is None else environ
        host = environ.get("NETMEND_KUBE_HOST")
        if not host:
            return cls.in_cluster(environ)
        return cls(
            host,
            token_file=environ.get("NETMEND_KUBE_TOKEN_FILE"),
            token=environ.get("NETMEND_KUBE_TOKEN"),
            ca_file=environ.get("NETMEND_KUBE_CA_FILE") or None,
            insecure=environ.get("NETMEND_KUBE_INSECURE", "") in ("1", "true", "yes"),
        )

    def _bearer(self):
        # Projected tokens rotate: read the file on every call rather than once.
        if self._token_file:
            with open(self._token_file, encoding="utf-8") as handle:
                return handle.read().strip()
        return self._token

    def _open(self, method, path, query=None, body=None, timeout=None):
        url = self.host + path
        if query:
            url += "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
        data = None
        headers = {"Accept": "application/json"}
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        token = self._bearer()
        if token:
            headers["Authorization"] = "Bearer " + token
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            return self._opener.open(request, timeout=timeout or self.timeout)
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                status_body = json.loads(raw)
            except ValueError:
                status_body = {"message": raw.decode(errors="replace")}
            message = status_body.get("message") or exc.reason
            raise KubeError(
                "%s %s: %s %s" % (method, path, exc.code, message),
                status=exc.code,
                reason=status_body.get("reason", ""),
                body=status_body,
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            raise KubeError("%s %s: %s" % (method, path, getattr(exc, "reason", exc))) from None

    def request(self, method, path, query=None, body=None):
        """One call; the decoded JSON answer."""
        with self._open(method, path, query, body) as response:
            return json.loads(response.read() or b"{}")

    def get(self, path, **query):
        return self.request("GET", path, query)

    def list(self, path, **query):
        """A list call; follows ``continue`` tokens so the answer is whole."""
        items = []
        while True:
            answer = self.request("GET", path, query)
            items.extend(answer.get("items") or [])
            token = (answer.get("metadata") or {}).get("continue")
            if not token:
                answer["items"] = items
                return answer
            query = dict(query, **{"continue": token})

    def watch(self, path, resource_version, timeout_seconds=60, on_open=None, **query):
        """Yield watch events (dicts with ``type`` and ``object``) until the server closes.

        A ``410 Gone`` arrives either as an HTTP error or as an ERROR event; both
        raise KubeError with status 410 so the caller re-lists. ``on_open()`` is
        called once the server has accepted the watch, before any event.
        """
        query = dict(query, watch="1", resourceVersion=resource_version,
                     timeoutSeconds=str(int(timeout_seconds)), allowWatchBookmarks="true")
        with self._open("GET", path, query, timeout=timeout_seconds + 10) as response:
            if on_open is not None:
                on_open()
            for line in response:
                if not line.strip():
                    continue
                event = json.loads(line)
                if event.get("type") == "ERROR":
                    status = event.get("object") or {}
                    raise KubeError("watch %s: %s" % (path, status.get("message", "error")),
                                    status=status.get("code", 0), reason=status.get("reason", ""),
                                    body=status)
                yield event

    def evict(self, namespace, name, dry_run=False):
        """Ask for an eviction, so PodDisruptionBudgets are honoured.

        Returns True when the pod is being evicted (or is already gone), False
        when a disruption budget refuses it now (HTTP 429): the caller retries later.
        """
        body = {
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": {"name": name, "namespace": namespace},
        }
        if dry_run:
            body["deleteOptions"] = {"dryRun": ["All"]}
        try:
            self.request("POST", "/api/v1/namespaces/%s/pods/%s/eviction" % (namespace, name), body=body)
        except KubeError as exc:
            if exc.status == 429:
                return False
            if exc.status == 404:
                return True
            raise
        return True


def pods_path(namespace=None):
    """The pods collection, cluster-wide or in one namespace."""
    if namespace:
        return "/api/v1/namespaces/%s/pods" % namespace
    return "/api/v1/pods"
