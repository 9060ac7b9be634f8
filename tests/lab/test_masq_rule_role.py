# Copyright: netmend.k8s contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The netmend.k8s.masq_rule role against the lab API server, in both methods.

Each test runs the role with ansible-playbook (the same way site.yml does) and reads
the cluster back with the kubernetes client: second run changed=0, check mode writes
nothing, absent removes everything the role created. The agent's RBAC is checked with
its own service-account token. The agent tests use their own namespace so they never
touch other fixes' agents in netmend-system.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig

import kubernetes
import pytest
import yaml
from real_pods import LAB_IPTABLES_IMAGE  # sibling helper module (tests/lab is on sys.path)

from ansible_collections.netmend.k8s.plugins.filter.cidr import cidr_subtract
from ansible_collections.netmend.k8s.plugins.module_utils import masq
from ansible_collections.netmend.k8s.plugins.module_utils.kube_lite import KubeClient, KubeError

pytestmark = pytest.mark.cluster

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VENV_BIN = os.path.dirname(sys.executable)
KUBECONFIG = os.environ.get("NETMEND_LAB_KUBECONFIG", os.path.expanduser("~/.cache/netmend-lab/kubeconfig"))
NAMESPACE = "netmend-masq-test"
NAME = "netmend-masq-rule"
VPN = "10.11.0.0/24"
ORIGINAL_CONFIG = ("nonMasqueradeCIDRs:\n  - 10.0.0.0/8\n  - 100.64.0.0/10\nmasqLinkLocalIPv6: true\ncidrLimit: 80\n"
                   "resyncInterval: 30s\n")
PLAYBOOK = """
- name: Apply the masq_rule role
  hosts: localhost
  connection: local
  gather_facts: false
  vars:
    ansible_python_interpreter: "{{ ansible_playbook_python }}"
  module_defaults:
    group/kubernetes.core.k8s:
      kubeconfig: %s
  tasks:
    - name: Apply
      ansible.builtin.include_role:
        name: netmend.k8s.masq_rule
""" % json.dumps(KUBECONFIG)


@pytest.fixture(scope="module")
def api():
    client = kubernetes.config.new_client_from_config(config_file=KUBECONFIG)
    return type("Api", (), {"core": kubernetes.client.CoreV1Api(client), "apps": kubernetes.client.AppsV1Api(client),
                            "rbac": kubernetes.client.RbacAuthorizationV1Api(client), "client": client})()


@pytest.fixture
def play(tmp_path):
    playbook = tmp_path / "play.yml"
    playbook.write_text(PLAYBOOK)
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH="%s:%s" % (
        os.path.join(REPO, ".build", "collections"),
        sysconfig.get_paths()["purelib"]),
        ANSIBLE_STDOUT_CALLBACK="json", ANSIBLE_NOCOLOR="1", ANSIBLE_LOCALHOST_WARNING="0",
        # module_defaults reach modules only; the rollout wait's k8s lookup reads the environment.
        K8S_AUTH_KUBECONFIG=KUBECONFIG)

    def run(extra_vars, check=False, expect_failure=False):
        argv = [os.path.join(VENV_BIN, "ansible-playbook"), "-i", "localhost,", str(playbook),
                "-e", json.dumps(extra_vars)] + (["--check"] if check else [])
        proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600, check=False)
        assert (proc.returncode != 0) is expect_failure, proc.stdout[-4000:] + proc.stderr[-2000:]
        output = json.loads(proc.stdout)
        output["changed"] = output["stats"]["localhost"]["changed"]
        output["text"] = proc.stdout
        return output

    return run


def missing(read, *args):
    try:
        read(*args)
    except kubernetes.client.ApiException as exc:
        return exc.status == 404
    return False


CODE_SELECTOR = "app.kubernetes.io/name=%s,netmend.io/component=agent-code" % NAME


def code_config_maps(api):
    """The agent's code ConfigMaps: immutable, named by content, found by label."""
    return api.core.list_namespaced_config_map(NAMESPACE, label_selector=CODE_SELECTOR).items


def agent_objects_gone(api):
    return all([
        missing(api.apps.read_namespaced_daemon_set, NAME, NAMESPACE),
        not code_config_maps(api),
        missing(api.core.read_namespaced_service_account, NAME, NAMESPACE),
        missing(api.rbac.read_cluster_role, NAME),
        missing(api.rbac.read_cluster_role_binding, NAME),
    ])


def agent_vars(**extra):
    return dict({"masq_rule_cidrs": [VPN], "masq_rule_agent_namespace": NAMESPACE,
                 "masq_rule_agent_interval": 5, "masq_rule_agent_wait_timeout": 600}, **extra)


@pytest.fixture
def clean_agent(api, play):
    yield
    if not agent_objects_gone(api):
        play(agent_vars(masq_rule_state="absent"))


def test_agent_method_nsenter(api, play, clean_agent):
    assert play(agent_vars(), check=True)["changed"] > 0
    assert agent_objects_gone(api)  # check mode wrote nothing

    assert play(agent_vars())["changed"] > 0
    ds = api.apps.read_namespaced_daemon_set(NAME, NAMESPACE)
    pod = ds.spec.template.spec
    container = pod.containers[0]
    assert pod.host_pid is True and not pod.host_network
    assert container.security_context.privileged is True
    assert container.image == "python:3.13-slim"
    assert container.args == ["--cidr=10.11.0.0/24", "--chain=NETMEND-MASQ", "--position=insert", "--backend=auto",
                              "--lock-timeout=5", "--interval=5", "--nsenter"]
    # besides the code and the readiness heartbeat's emptyDir ("state"), only the host's xtables lock
    assert [m.mount_path for m in container.volume_mounts if m.name not in ("code", "state")] == ["/run/netmend-masq.lock"]
    assert [t.operator for t in pod.tolerations] == ["Exists"]
    assert ds.status.desired_number_scheduled == ds.status.updated_number_scheduled > 0
    [code_map] = code_config_maps(api)
    code = code_map.data
    assert sorted(code) == ["agent.py", "kube_lite.py", "masq.py", "masq_agent.py"]
    assert not api.rbac.read_cluster_role(NAME).rules  # the agent needs no API access at all

    assert play(agent_vars())["changed"] == 0

    removed = play(agent_vars(masq_rule_state="absent"))
    assert removed["changed"] > 0
    # The last rollout ran every agent with --remove before the DaemonSet went.
    assert '"--remove"' in removed["text"]
    assert agent_objects_gone(api)
    assert play(agent_vars(masq_rule_state="absent"))["changed"] == 0


def test_agent_method_capabilities(api, play, clean_agent):
    # An image with python3 and iptables, as the mode needs: the agent really runs on the real nodes.
    variables = agent_vars(masq_rule_agent_mode="capabilities", masq_rule_agent_image=LAB_IPTABLES_IMAGE)
    assert play(variables)["changed"] > 0
    pod = api.apps.read_namespaced_daemon_set(NAME, NAMESPACE).spec.template.spec
    context = pod.containers[0].security_context
    assert pod.host_network is True and not pod.host_pid
    assert not context.privileged and context.allow_privilege_escalation is False
    assert context.capabilities.add == ["NET_ADMIN", "NET_RAW"] and context.capabilities.drop == ["ALL"]
    assert "--nsenter" not in pod.containers[0].args
    host_paths = sorted(v.host_path.path for v in pod.volumes if v.host_path)
    assert host_paths == ["/run/netmend-masq.lock", "/run/xtables.lock"]
    assert play(variables)["changed"] == 0
    play(dict(variables, masq_rule_state="absent"))
    assert agent_objects_gone(api)


def test_capabilities_mode_refuses_the_stock_image(api, play):
    result = play(agent_vars(masq_rule_agent_mode="capabilities"), expect_failure=True)
    assert "'python:3.13-slim' has none" in result["text"]
    assert agent_objects_gone(api)


def test_bad_input_writes_nothing(api, play):
    for variables, message in [
        (agent_vars(masq_rule_cidrs=["10.11.0.1/24"]), "misaligned CIDR '10.11.0.1/24'"),
        (agent_vars(masq_rule_cidrs=[]), "masq_rule_cidrs is empty"),
        (agent_vars(masq_rule_chain="-MASQ"), "masq_rule_chain: invalid chain name '-MASQ'"),
        (agent_vars(masq_rule_chain="IP-MASQ-AGENT"), "masq_rule_chain: invalid chain name 'IP-MASQ-AGENT'"),
        (agent_vars(masq_rule_cidrs=["fe80::%eth0/64"]), "invalid CIDR 'fe80::%eth0/64'"),
    ]:
        assert message in play(variables, expect_failure=True)["text"]
    assert agent_objects_gone(api)


def test_agent_token_is_refused_everything_that_matters(api, play, clean_agent):
    play(agent_vars(masq_rule_agent_wait=False))
    token = kubernetes.client.AuthenticationV1TokenRequest(spec=kubernetes.client.V1TokenRequestSpec(
        audiences=[], expiration_seconds=600))
    token = api.core.create_namespaced_service_account_token(NAME, NAMESPACE, token).status.token
    config = api.client.configuration
    agent = KubeClient(config.host, token=token, ca_file=config.ssl_ca_cert, insecure=not config.verify_ssl)
    for path in ("/api/v1/secrets", "/api/v1/namespaces/kube-system/secrets", "/api/v1/pods",
                 "/api/v1/namespaces/kube-system/configmaps", "/api/v1/nodes", "/apis/apps/v1/daemonsets"):
        with pytest.raises(KubeError) as err:
            agent.list(path)
        assert err.value.status == 403, path


@pytest.fixture
def ip_masq_configmap(api):
    """A GKE-like ip-masq-agent ConfigMap, removed afterwards whatever happened."""
    body = kubernetes.client.V1ConfigMap(metadata=kubernetes.client.V1ObjectMeta(name="ip-masq-agent"),
                                         data={"config": ORIGINAL_CONFIG})
    api.core.create_namespaced_config_map("kube-system", body)
    yield
    if not missing(api.core.read_namespaced_config_map, "ip-masq-agent", "kube-system"):
        api.core.delete_namespaced_config_map("ip-masq-agent", "kube-system")


def test_ip_masq_agent_method_edits_and_restores_the_configmap(api, play, ip_masq_configmap):
    variables = {"masq_rule_method": "ip_masq_agent", "masq_rule_cidrs": [VPN, "10.4.0.0/24"],
                 "masq_rule_pod_cidrs": ["10.4.0.0/14"], "masq_rule_service_cidrs": ["10.96.0.0/12"]}
    checked = play(variables, check=True)
    assert checked["changed"] > 0
    assert api.core.read_namespaced_config_map("ip-masq-agent", "kube-system").data == {"config": ORIGINAL_CONFIG}

    applied = play(variables)
    assert applied["changed"] > 0
    assert "WARNING: masq_rule_cidrs 10.4.0.0/24 overlap the cluster's pod or service" in applied["text"]
    configmap = api.core.read_namespaced_config_map("ip-masq-agent", "kube-system")
    config = yaml.safe_load(configmap.data["config"])
    # Only the list is ours to change: the user's other keys stay as they were.
    assert config == {"nonMasqueradeCIDRs": cidr_subtract(["10.0.0.0/8", "100.64.0.0/10"], [VPN, "10.4.0.0/24"]),
                      "masqLinkLocalIPv6": True, "cidrLimit": 80, "resyncInterval": "30s"}
    assert "10.11.0.0/24" not in config["nonMasqueradeCIDRs"] and "100.64.0.0/10" in config["nonMasqueradeCIDRs"]
    assert configmap.metadata.annotations["netmend.io/masq-rule-original-config"] == ORIGINAL_CONFIG

    assert play(variables)["changed"] == 0
    # Dropping a destination puts it back: the base is the original list, not the edited one.
    narrowed = play(dict(variables, masq_rule_cidrs=[VPN]))
    assert narrowed["changed"] > 0
    config = yaml.safe_load(api.core.read_namespaced_config_map("ip-masq-agent", "kube-system").data["config"])
    assert config["nonMasqueradeCIDRs"] == cidr_subtract(["10.0.0.0/8", "100.64.0.0/10"], [VPN])

    assert play(dict(variables, masq_rule_state="absent"), check=True)["changed"] > 0
    assert "netmend.io/masq-rule-original-config" in api.core.read_namespaced_config_map(
        "ip-masq-agent", "kube-system").metadata.annotations
    assert play(dict(variables, masq_rule_state="absent"))["changed"] > 0
    restored = api.core.read_namespaced_config_map("ip-masq-agent", "kube-system")
    assert restored.data == {"config": ORIGINAL_CONFIG}
    assert not (restored.metadata.annotations or {})
    assert play(dict(variables, masq_rule_state="absent"))["changed"] == 0


def test_ip_masq_agent_method_creates_then_deletes_the_configmap(api, play):
    variables = {"masq_rule_method": "ip_masq_agent", "masq_rule_cidrs": [VPN]}
    assert missing(api.core.read_namespaced_config_map, "ip-masq-agent", "kube-system")
    try:
        assert play(variables)["changed"] > 0
        config = yaml.safe_load(api.core.read_namespaced_config_map("ip-masq-agent", "kube-system").data["config"])
        assert config["nonMasqueradeCIDRs"] == cidr_subtract(["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"], [VPN])
        assert play(variables)["changed"] == 0
        assert play(dict(variables, masq_rule_state="absent"))["changed"] > 0
        assert missing(api.core.read_namespaced_config_map, "ip-masq-agent", "kube-system")
    finally:
        if not missing(api.core.read_namespaced_config_map, "ip-masq-agent", "kube-system"):
            api.core.delete_namespaced_config_map("ip-masq-agent", "kube-system")


def test_ip_masq_agent_method_keys_given_win_and_too_many_cidrs_write_nothing(api, play, ip_masq_configmap):
    variables = {"masq_rule_method": "ip_masq_agent", "masq_rule_cidrs": [VPN], "masq_rule_masq_link_local": True,
                 "masq_rule_resync_interval": "90s"}
    assert play(variables)["changed"] > 0
    config = yaml.safe_load(api.core.read_namespaced_config_map("ip-masq-agent", "kube-system").data["config"])
    assert config == {"nonMasqueradeCIDRs": cidr_subtract(["10.0.0.0/8", "100.64.0.0/10"], [VPN]),
                      "masqLinkLocalIPv6": True, "cidrLimit": 80, "resyncInterval": "90s", "masqLinkLocal": True}
    assert play(variables)["changed"] == 0
    written = api.core.read_namespaced_config_map("ip-masq-agent", "kube-system").metadata.resource_version

    # Scattered /32s cut 10.0.0.0/8 into many pieces: more than the ConfigMap's cidrLimit of 80.
    scattered = ["10.%d.0.1/32" % (index * 60) for index in range(4)]
    pieces = cidr_subtract(["10.0.0.0/8", "100.64.0.0/10"], scattered)
    assert len(pieces) > 80
    failed = play(dict(variables, masq_rule_cidrs=scattered), expect_failure=True)
    assert ("the computed nonMasqueradeCIDRs has %d CIDRs, more than ip-masq-agent's limit of 80 (cidrLimit in the "
            "ConfigMap)" % len(pieces)) in failed["text"]
    assert api.core.read_namespaced_config_map("ip-masq-agent", "kube-system").metadata.resource_version == written


def test_ip_masq_agent_method_default_limit_is_64(api, play):
    scattered = ["10.%d.0.1/32" % (index * 50) for index in range(4)]
    pieces = cidr_subtract(["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"], scattered)
    assert len(pieces) > 64
    failed = play({"masq_rule_method": "ip_masq_agent", "masq_rule_cidrs": scattered}, expect_failure=True)
    assert "has %d CIDRs, more than ip-masq-agent's limit of 64:" % len(pieces) in failed["text"]
    assert missing(api.core.read_namespaced_config_map, "ip-masq-agent", "kube-system")


RESERVED_NAMES_PLAY = """
- name: Run the role's preflight once per chain name
  hosts: localhost
  connection: local
  gather_facts: false
  vars:
    ansible_python_interpreter: "{{ ansible_playbook_python }}"
    outcomes: {}
  tasks:
    - name: Preflight one name
      ansible.builtin.include_tasks: one.yml
      loop: "{{ names }}"
      loop_control:
        loop_var: chain_name
    - name: Write what the preflight said
      ansible.builtin.copy:
        content: "{{ outcomes | to_json }}"
        dest: "{{ out }}"
        mode: "0600"
"""
RESERVED_NAMES_ONE = """
- name: Preflight with one chain name
  block:
    - name: Include the preflight
      ansible.builtin.include_role:
        name: netmend.k8s.masq_rule
        tasks_from: preflight
      vars:
        masq_rule_chain: "{{ chain_name }}"
        masq_rule_cidrs: [10.11.0.0/24]
    - name: Accepted
      ansible.builtin.set_fact:
        outcomes: "{{ outcomes | combine({chain_name: ''}) }}"
  rescue:
    - name: Refused
      ansible.builtin.set_fact:
        outcomes: "{{ outcomes | combine({chain_name: ansible_failed_result.msg}) }}"
"""


def core_refused_names():
    """Every builtin name the core refuses, each reserved prefix in three spellings, and each syntax rule."""
    names = sorted(masq.RESERVED_CHAIN_NAMES) + ["masquerade", "Return"]
    for prefix, _owner in masq.RESERVED_CHAIN_PREFIXES:
        names += [prefix, prefix + "X1", prefix.lower() + "mine"]
    return names + ["A" * 29, "-MASQ", "!MASQ", "MY CHAIN", 'MY"CHAIN', "MY'CHAIN", "MY#CHAIN", "MY\\CHAIN", "MASQ-\u00e9"]


def test_role_preflight_refuses_every_name_the_core_refuses(run_playbook, tmp_path):
    refused = core_refused_names()
    accepted = ["NETMEND-MASQ", "A" * 28, "vpn_masq.1", "KUBEX", "MY-KUBE-MASQ", "CALICO", "IPMASQ"]
    assert all(masq.chain_error(name) for name in refused) and not any(masq.chain_error(name) for name in accepted)
    (tmp_path / "one.yml").write_text(RESERVED_NAMES_ONE)
    (tmp_path / "play.yml").write_text(RESERVED_NAMES_PLAY)
    out = tmp_path / "outcomes.json"
    done = run_playbook(str(tmp_path / "play.yml"), {"names": refused + accepted, "out": str(out)})
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    outcomes = json.loads(out.read_text())
    assert {name: outcomes[name] for name in refused} == {
        name: "masq_rule_chain: " + masq.chain_error(name) for name in refused}
    assert {name: outcomes[name] for name in accepted} == {name: "" for name in accepted}
