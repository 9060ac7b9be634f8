"""The pod_poke agent as a real pod on the lab's real nodes, deployed by its role.

Its targets are real pods on the other real node; its metrics are read from another
pod over the pod network; its API access is its own projected service-account token.
"""
from __future__ import annotations

import re

import pytest
from real_pods import agent_pods, run_role, wait_value  # sibling helper module (tests/lab is on sys.path)

pytestmark = [pytest.mark.cluster, pytest.mark.netlab]

AGENT_NAMESPACE = "netmend-real-poke"
DAEMONSET = "netmend-pod-poke"
METRICS_PORT = 9477


def metric(text, name, node):
    found = re.search(r'^netmend_pod_poke_%s\{node="%s"\} (\S+)$' % (name, re.escape(node)), text, re.M)
    return float(found.group(1)) if found else None


@pytest.fixture(scope="module")
def poke_agent(ansible_env, tmp_path_factory, kube_admin, module_namespace, real_nodes):
    """The pod_poke role's agent (deployed once per module), watching ``module_namespace``
    for pods labelled role=target."""
    from kubernetes import client

    folder = tmp_path_factory.mktemp("poke")
    play_vars = {
        "pod_poke_agent_namespace": AGENT_NAMESPACE,
        "pod_poke_namespaces": [module_namespace],
        "pod_poke_label_selector": "role=target",
        "pod_poke_interval": 2,
        "pod_poke_metrics_port": METRICS_PORT,
    }
    done = run_role(ansible_env, folder, "netmend.k8s.pod_poke", play_vars)
    assert done.returncode == 0, done.stdout
    yield agent_pods(client.CoreV1Api(kube_admin), real_nodes, AGENT_NAMESPACE, DAEMONSET)
    gone = run_role(ansible_env, folder, "netmend.k8s.pod_poke", dict(play_vars, pod_poke_state="absent"))
    assert gone.returncode == 0, gone.stdout


def test_pod_poke_agent_runs_on_every_real_node(poke_agent, kube_admin, real_nodes):
    from kubernetes import client

    core = client.CoreV1Api(kube_admin)
    for node, pod in poke_agent.items():
        status = pod.status.container_statuses[0]
        assert status.ready and status.restart_count == 0, (node, status)
        log = core.read_namespaced_pod_log(pod.metadata.name, AGENT_NAMESPACE)
        assert "started" in log and "serving metrics" in log, log


def test_pod_poke_agent_finds_real_targets_across_nodes(poke_agent, real_pod, pod_exec, kube_admin, module_namespace,
                                                        real_nodes):
    namespace = module_namespace
    from kubernetes import client

    core = client.CoreV1Api(kube_admin)
    target = real_pod(namespace, "target", real_nodes[1], ["sleep", "3600"], labels={"role": "target"})
    reader = real_pod(namespace, "reader", real_nodes[1], ["sleep", "3600"])
    agent = poke_agent[real_nodes[0]]
    url = "http://%s:%d/metrics" % (agent.status.pod_ip, METRICS_PORT)
    fetch = ["python3", "-c", "import urllib.request; print(urllib.request.urlopen(%r, timeout=5).read().decode())" % url]

    def metrics():
        text, code = pod_exec(namespace, reader.metadata.name, fetch)
        return text if code == 0 else None

    # The agent on node 0 pings the pod on node 1 and finds it reachable.
    text = wait_value(metrics, lambda t: metric(t, "targets", real_nodes[0]) == 1
                      and metric(t, "unreachable", real_nodes[0]) == 0,
                      "the agent on %s to sweep %s" % (real_nodes[0], target.status.pod_ip))
    assert metric(text, "rtt_seconds_count", real_nodes[0]) >= 1
    log = core.read_namespaced_pod_log(agent.metadata.name, AGENT_NAMESPACE)
    sweeps = [line for line in log.splitlines() if " sweep " in line]
    assert any(" reachable=1" in line and " targets=1" in line for line in sweeps), log
    # A deleted pod's address leaves the agent's targets (its watch saw the deletion).
    core.delete_namespaced_pod("target", namespace, grace_period_seconds=0)
    wait_value(metrics, lambda t: metric(t, "targets", real_nodes[0]) == 0,
               "the deleted pod to leave the agent's targets")
    log = core.read_namespaced_pod_log(agent.metadata.name, AGENT_NAMESPACE)
    assert target.status.pod_ip not in re.findall(r'unreachable ip="([^"]+)"', log)


TOKEN_PROBE = """
import ssl, urllib.error, urllib.request
sa = "/var/run/secrets/kubernetes.io/serviceaccount/"
context = ssl.create_default_context(cafile=sa + "ca.crt")
for path in ("/api/v1/pods", "/api/v1/secrets"):
    request = urllib.request.Request("https://%s:443" + path,
                                     headers={"Authorization": "Bearer " + open(sa + "token").read()})
    try:
        print(path, urllib.request.urlopen(request, context=context, timeout=10).status)
    except urllib.error.HTTPError as exc:
        print(path, exc.code)
"""


def test_pod_poke_agent_uses_its_own_projected_token(poke_agent, pod_exec, real_nodes):
    from lab import realnodes

    pod = poke_agent[real_nodes[1]]
    volumes = [v for v in pod.spec.volumes if v.projected]
    assert volumes and any(s.service_account_token for s in volumes[0].projected.sources)
    assert pod.spec.service_account_name == DAEMONSET
    # The pod's own token may list pods (its RBAC) and nothing else.
    output, code = pod_exec(AGENT_NAMESPACE, pod.metadata.name,
                            ["python3", "-c", TOKEN_PROBE % realnodes.SERVICE_IP])
    assert code == 0, output
    assert output.split("\n")[:2] == ["/api/v1/pods 200", "/api/v1/secrets 403"], output
