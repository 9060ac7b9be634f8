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

# Outcomes of an eviction.
EVICTED = "evicted"
BLOCKED = "blocked"  # a PodDisruptionBudget refuses it now
GONE = "gone"  # that pod no longer exists
STILL_TERMINATING = "still terminating"  # evicted, but not gone within the wait


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

    def pages(self, path, page_size=500, **query):
        """The answers of a list call, ``page_size`` items each, in turn: a caller that keeps a little of each
        item never holds the whole list (5,000 Nodes or 50,000 Pods are tens of megabytes of JSON). Every
        page has the list's ``metadata.resourceVersion``, from which a watch can follow."""
        query = dict(query, limit=str(page_size))
        while True:
            answer = self.request("GET", path, query)
            yield answer
            token = (answer.get("metadata") or {}).get("continue")
            if not token:
                return
            query = dict(query, **{"continue": token})

    def items(self, path, page_size=500, **query):
        """Every item of a list call, read ``page_size`` at a time (see ``pages``)."""
        for answer in self.pages(path, page_size, **query):
            yield from answer.get("items") or []

    def count(self, path, **query):
        """How many items a list call holds: one item read, plus the server's ``remainingItemCount``; where
        the server does not say (it never does with a label or field selector), every page counted."""
        answer = self.request("GET", path, dict(query, limit="1"))
        metadata = answer.get("metadata") or {}
        read = len(answer.get("items") or [])
        if metadata.get("remainingItemCount") is not None:
            return read + int(metadata["remainingItemCount"])
        if not metadata.get("continue"):
            return read
        return sum(1 for _item in self.items(path, **query))

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

    def evict(self, namespace, name, uid=None, dry_run=False):
        """Ask for an eviction, so PodDisruptionBudgets are honoured.

        With ``uid`` the eviction carries it as a precondition: a pod recreated under
        the same name (a StatefulSet's) is another pod and is not evicted. Returns
        EVICTED when the pod is being evicted, BLOCKED when a disruption budget
        refuses it now (HTTP 429; the caller retries later, never forces), GONE when
        that pod no longer exists (404, or 409 because the name now holds another pod).
        """
        body = {
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": {"name": name, "namespace": namespace},
        }
        options = {}
        if uid:
            options["preconditions"] = {"uid": uid}
        if dry_run:
            options["dryRun"] = ["All"]
        if options:
            body["deleteOptions"] = options
        try:
            self.request("POST", "%s/%s/eviction" % (pods_path(namespace), name), body=body)
        except KubeError as exc:
            if exc.status == 429:
                return BLOCKED
            if exc.status == 404 or (uid and exc.status == 409):
                return GONE
            raise
        return EVICTED

    def wait_pod_gone(self, namespace, name, uid, timeout, sleep, clock):
        """Wait until the pod with this uid no longer exists.

        ``sleep(seconds)`` returns True when the caller is stopping. False on timeout or stop.
        """
        deadline = clock() + timeout
        while clock() < deadline:
            try:
                pod = self.get("%s/%s" % (pods_path(namespace), name))
            except KubeError as exc:
                if exc.status == 404:
                    return True
                raise
            if (pod.get("metadata") or {}).get("uid") != uid:
                return True  # a new pod under the same name (StatefulSet)
            if sleep(0.5):
                return False
        return False


def evict_in_turn(client, pods, timeout, sleep, clock, report):
    """Evict ``pods`` (dicts with namespace, name, uid) one at a time, waiting for each to go.

    By eviction, so PodDisruptionBudgets hold: a workload's budget is what keeps it
    available, since a pod gone is not its replacement Ready, and without a budget the
    next pod of the same workload may be evicted before that. One at a time so we never
    have more than one eviction of ours in flight. ``report(outcome, pod)`` is called
    once per pod with EVICTED, BLOCKED, GONE or STILL_TERMINATING. ``sleep(seconds)``
    returns True when the caller is stopping: a pod whose wait that cuts short counts as
    EVICTED (the eviction stands), and the pods not reached are left out.
    Returns ``{outcome: [pod, ...]}``.
    """
    outcomes = {EVICTED: [], BLOCKED: [], GONE: [], STILL_TERMINATING: []}
    for pod in pods:
        if sleep(0):
            break
        outcome = client.evict(pod["namespace"], pod["name"], uid=pod["uid"])
        stopping = False
        if outcome == EVICTED and not client.wait_pod_gone(pod["namespace"], pod["name"], pod["uid"],
                                                           timeout, sleep, clock):
            stopping = sleep(0)
            outcome = EVICTED if stopping else STILL_TERMINATING
        outcomes[outcome].append(pod)
        report(outcome, pod)
        if stopping:
            break
    return outcomes


def group_path(api_version):
    """The discovery path of an API group version: ``v1`` is the core group at /api/v1."""
    return "/api/%s" % api_version if "/" not in api_version else "/apis/%s" % api_version


def api_resource(client, api_version, kind, served=None):
    """The discovery entry (``name``, ``namespaced``, ...) of ``kind`` in ``api_version``; None when the
    cluster does not serve that kind (its CRD not installed).

    ``served`` caches the discovery answers between calls (a dict the caller keeps).
    """
    served = {} if served is None else served
    if api_version not in served:
        try:
            served[api_version] = client.get(group_path(api_version)).get("resources") or []
        except KubeError as exc:
            if exc.status != 404:
                raise
            served[api_version] = []
    for resource in served[api_version]:
        if resource.get("kind") == kind and "/" not in resource.get("name", ""):
            return resource
    return None


def resource_path(api_version, resource, namespace=None):
    """The collection path of a discovery entry's objects, in one namespace if given and it is namespaced."""
    path = group_path(api_version)
    if resource.get("namespaced") and namespace:
        path += "/namespaces/%s" % urllib.parse.quote(namespace, safe="")
    return path + "/" + resource["name"]


def pods_path(namespace=None):
    """The pods collection, cluster-wide or in one namespace."""
    if namespace:
        return "/api/v1/namespaces/%s/pods" % namespace
    return "/api/v1/pods"


def condition_status(obj, kind="Ready"):
    """The ``status`` ("True", "False", "Unknown") of an object's condition of that type; None without one."""
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind:
            return condition.get("status")
    return None


def node_summary(node):
    """What reports and checks read of a Node, a few hundred bytes of its several kilobytes.

    ``ready`` is the Ready condition's status as the API gives it (None when the node has none yet);
    ``pod_cidrs`` is ``spec.podCIDRs``, else ``[spec.podCIDR]``, else empty; ``addresses`` are its
    InternalIPs and ``internal_ip`` the first of them.
    """
    spec, status = node.get("spec") or {}, node.get("status") or {}
    internal = [entry["address"] for entry in status.get("addresses") or []
                if entry.get("type") == "InternalIP" and entry.get("address")]
    return {"name": node["metadata"]["name"], "ready": condition_status(node),
            "pod_cidrs": list(spec.get("podCIDRs") or ([spec["podCIDR"]] if spec.get("podCIDR") else [])),
            "internal_ip": internal[0] if internal else None, "addresses": internal,
            "kubelet": (status.get("nodeInfo") or {}).get("kubeletVersion")}


def pod_summary(pod):
    """What checks read of a Pod: where it runs, its phase, and whether it is Ready."""
    metadata = pod.get("metadata") or {}
    return {"namespace": metadata.get("namespace"), "name": metadata.get("name"),
            "node": (pod.get("spec") or {}).get("nodeName"), "phase": (pod.get("status") or {}).get("phase"),
            "ready": condition_status(pod) == "True"}
