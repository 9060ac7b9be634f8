# Copyright: netmend.k8s contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ClusterRole shipped for the job's credential grants exactly what the roles call.

Every kubernetes.core task in roles/ is read (blocks included): its module and state
give the verbs, its ``kind`` (literal, from a literal loop, or from the templates and
dicts it applies) gives the resources. The RBAC rules the roles hand to their own
agents and Prometheus are added too: Kubernetes lets a credential create a
ClusterRole only with rights it holds itself. The shipped ClusterRole must cover all
of it and grant nothing more. tests/awx/test_awx_runner.py runs the main job with a
token bound only to this ClusterRole against the lab API server.
"""
from __future__ import annotations

import os
import re

import pytest
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLUSTERROLE = os.path.join(REPO, "docs", "rbac", "clusterrole.yml")

# Kind -> (API group, resource). A kind a role starts using must be added here and
# to the ClusterRole: the test says which.
RESOURCES = {
    "ClusterRole": ("rbac.authorization.k8s.io", "clusterroles"),
    "ClusterRoleBinding": ("rbac.authorization.k8s.io", "clusterrolebindings"),
    "ConfigMap": ("", "configmaps"),
    "CustomResourceDefinition": ("apiextensions.k8s.io", "customresourcedefinitions"),
    "DaemonSet": ("apps", "daemonsets"),
    "EndpointSlice": ("discovery.k8s.io", "endpointslices"),
    "Deployment": ("apps", "deployments"),
    "FelixConfiguration": ("crd.projectcalico.org", "felixconfigurations"),
    "Installation": ("operator.tigera.io", "installations"),
    "IPPool": ("crd.projectcalico.org", "ippools"),
    "Namespace": ("", "namespaces"),
    "NetworkPolicy": ("networking.k8s.io", "networkpolicies"),
    "Node": ("", "nodes"),
    "Pod": ("", "pods"),
    "PriorityClass": ("scheduling.k8s.io", "priorityclasses"),
    "RuntimeClass": ("node.k8s.io", "runtimeclasses"),
    "Service": ("", "services"),
    "ServiceAccount": ("", "serviceaccounts"),
}

# kind or definition expressions the scan cannot read from the task itself.
EXPRESSIONS = {
    "{{ rollout_kind }}": ["DaemonSet", "Deployment"],  # roles/agent/tasks/rollout.yml callers
    "{{ __calico_installation }}": ["Installation"],  # roles/calico/tasks/render.yml
}
# roles/agent/tasks/owned.yml reads, and deletes when absent, objects its callers name in
# owned_objects (built at run time): only objects the collection created carry the mark it
# deletes by, so those loops cover every kind the roles create.
OWNED_LOOPS = {"{{ owned_objects }}", "{{ agent_owned_result.ours if owned_state == 'absent' else [] }}"}
# The calico role applies the Calico manifest the user gives: its contents (CRDs,
# Calico's own ClusterRoles) are the user's, so installing Calico needs a credential
# that may create them (cluster-admin); docs/rbac/clusterrole.yml says so.
USER_MANIFEST = {"{{ __calico_documents }}", "{{ __calico_documents | reverse | list }}"}

# Verbs of kubernetes.core.k8s per state (apply and server-side apply create what
# is missing, so present needs create and patch; every write reads first).
K8S_VERBS = {
    "present": {"get", "create", "patch"},
    "patched": {"get", "patch"},
    "absent": {"get", "delete"},
}
INFO_VERBS = {"get", "list"}
# kubernetes.core.k8s_drain: cordon/uncordon patch the node; drain lists the node's
# pods and evicts them.
DRAIN_RULES = {
    ("", "nodes"): {"get", "patch"},
    ("", "pods"): {"get", "list"},
    ("", "pods/eviction"): {"create"},
}

# The collection's own modules: those that call the API from the controller, with their calls,
# and those that work on a node only. cluster_summary's calls depend on its arguments (summary_rules).
API_MODULES = {
    "netmend.k8s.cluster_summary": {},
    "netmend.k8s.calico_mtu_restart": {("", "pods"): {"get", "list"}, ("", "pods/eviction"): {"create"}},
    "netmend.k8s.rollout_status": {("apps", "daemonsets"): {"get"}, ("apps", "deployments"): {"get"},
                                   ("", "pods"): {"list"}},
}
NODE_MODULES = {"netmend.k8s.calico_mtu", "netmend.k8s.masq_rule", "netmend.k8s.net_doctor", "netmend.k8s.pod_poke"}
# kubernetes.core.k8s_log reads the pod, then its log.
LOG_RULES = {("", "pods"): {"get"}, ("", "pods/log"): {"get"}}

TOP_LEVEL_KIND = re.compile(r"^kind:\s*([A-Za-z]+)\s*$", re.M)
TEMPLATE_LOOKUP = re.compile(r"lookup\('ansible\.builtin\.template',\s*'([^']+)'\)")


def _tasks(items):
    for task in items or []:
        for section in ("block", "rescue", "always"):
            if section in task:
                yield from _tasks(task[section])
        yield task


def _role_vars(role_dir):
    path = os.path.join(role_dir, "vars", "main.yml")
    if not os.path.exists(path):
        return {}
    with open(path, encoding="utf-8") as handle:
        return yaml.safe_load(handle) or {}


def _task_kinds(role_dir, args, loop):
    """The kinds one kubernetes.core.k8s/k8s_info task touches; None for the user's manifest,
    OWNED_LOOPS for every kind the roles create."""
    kind = args.get("kind")
    definition = args.get("definition")
    if isinstance(kind, str) and "{{" not in kind:
        return [kind]
    if kind in ("{{ item.kind }}", "{{ item.0.kind }}"):
        if isinstance(loop, list):
            return [item["kind"] for item in loop]
        if loop in OWNED_LOOPS:
            return OWNED_LOOPS
        # A loop over a list of {kind: ...} the role keeps in vars/main.yml (maybe combined with more).
        listed = re.match(r"\{\{\s*(__\w+)", loop or "")
        values = _role_vars(role_dir).get(listed.group(1)) if listed else None
        if isinstance(values, list):
            return [item["kind"] for item in values]
    if isinstance(kind, str):
        if kind not in EXPRESSIONS:
            raise AssertionError("%s: kind %r: add it to EXPRESSIONS in this test" % (role_dir, kind))
        return EXPRESSIONS[kind]
    if definition == "{{ item }}":  # a loop over the documents of a template
        definition = loop
    if isinstance(definition, dict):
        return [definition["kind"]]
    if isinstance(definition, str):
        template = TEMPLATE_LOOKUP.search(definition)
        if template:
            with open(os.path.join(role_dir, "templates", template.group(1)), encoding="utf-8") as handle:
                return TOP_LEVEL_KIND.findall(handle.read())
        if definition in USER_MANIFEST:
            return None
        if definition in EXPRESSIONS:
            return EXPRESSIONS[definition]
    raise AssertionError("%s: cannot tell the kind of %r" % (role_dir, args))


KIND_IN_TEXT = re.compile(r"'kind': '([A-Za-z]+)'")


def summary_rules(role_dir, args):
    """What one netmend.k8s.cluster_summary task reads: [(kind or (group, resource), verbs)], or OWNED_LOOPS
    when it reads its callers' owned_objects (get, of every kind the roles create)."""
    rules = []
    if args.get("nodes", True):
        rules.append((("", "nodes"), {"list"}))
    if args.get("count_pods") or args.get("pod_selector") is not None:
        rules.append((("", "pods"), {"list"}))
    objects = args.get("objects", [])
    if isinstance(objects, str):
        if "owned_objects" in objects:
            return OWNED_LOOPS
        # a role variable: the kinds it names, and those of the role lists it combines
        text = str(_role_vars(role_dir).get(re.match(r"\{\{\s*(__\w+)", objects).group(1)))
        kinds = KIND_IN_TEXT.findall(text)
        for listed in re.findall(r"__\w+", text):
            kinds += [item["kind"] for item in _role_vars(role_dir).get(listed) or []]
        assert kinds, "%s: cannot tell the kinds of objects %r" % (role_dir, objects)
        objects = [{"kind": kind, "name": "by name"} for kind in kinds]
    for wanted in objects:
        rules.append((wanted["kind"], {"get"} if wanted.get("name") else {"list"}))
    return rules


def _add(needed, group_resource, verbs, where):
    needed.setdefault(group_resource, {})
    for verb in verbs:
        needed[group_resource].setdefault(verb, set()).add(where)


def scan_roles():
    """{(group, resource): {verb: {where, ...}}} the roles need."""
    needed, owned_calls, created = {}, [], set()
    roles = os.path.join(REPO, "roles")
    for role in sorted(os.listdir(roles)):
        role_dir = os.path.join(roles, role)
        tasks_dir = os.path.join(role_dir, "tasks")
        for name in sorted(os.listdir(tasks_dir)):
            with open(os.path.join(tasks_dir, name), encoding="utf-8") as handle:
                tasks = yaml.safe_load(handle) or []
            for task in _tasks(tasks):
                where = "roles/%s/tasks/%s: %s" % (role, name, task.get("name"))
                ours = [key for key in task if key.startswith("netmend.k8s.")]
                for module in ours:
                    assert module in API_MODULES or module in NODE_MODULES, (
                        "%s: add %s to API_MODULES (with its API calls) or NODE_MODULES" % (where, module))
                    for group_resource, verbs in API_MODULES.get(module, {}).items():
                        _add(needed, group_resource, verbs, where)
                    if module == "netmend.k8s.cluster_summary":
                        rules = summary_rules(role_dir, task[module] or {})
                        if rules is OWNED_LOOPS:
                            owned_calls.append(({"get"}, where))
                            continue
                        for kind, verbs in rules:
                            assert isinstance(kind, tuple) or kind in RESOURCES, "%s: kind %s: add it to RESOURCES" % (where, kind)
                            _add(needed, kind if isinstance(kind, tuple) else RESOURCES[kind], verbs, where)
                if "kubernetes.core.k8s_log" in task:
                    for group_resource, verbs in LOG_RULES.items():
                        _add(needed, group_resource, verbs, where)
                    continue
                if "kubernetes.core.k8s_drain" in task:
                    for group_resource, verbs in DRAIN_RULES.items():
                        _add(needed, group_resource, verbs, where)
                    continue
                if "kubernetes.core.k8s_info" in task:
                    args, verbs = task["kubernetes.core.k8s_info"], INFO_VERBS
                elif "kubernetes.core.k8s" in task:
                    args = task["kubernetes.core.k8s"]
                    verbs = K8S_VERBS[args.get("state", "present")]
                else:
                    assert not any(key.startswith("kubernetes.core.") for key in task), (
                        "%s uses a kubernetes.core module this test does not know" % where)
                    continue
                kinds = _task_kinds(role_dir, args, task.get("loop"))
                if kinds is OWNED_LOOPS:
                    owned_calls.append((verbs, where))
                    continue
                if "create" in verbs:
                    created.update(kinds or [])
                for kind in kinds or []:
                    assert kind in RESOURCES, "%s: kind %s: add it to RESOURCES and the ClusterRole" % (where, kind)
                    _add(needed, RESOURCES[kind], verbs, where)
        # RBAC the role grants its agents or Prometheus: the credential must hold it.
        for name, value in _role_vars(role_dir).items():
            if name.endswith("_rules") and isinstance(value, list):
                for rule in value:
                    for group in rule["apiGroups"]:
                        for resource in rule["resources"]:
                            _add(needed, (group, resource), rule["verbs"], "roles/%s/vars/main.yml: %s" % (role, name))
    for verbs, where in owned_calls:
        for kind in created:
            _add(needed, RESOURCES[kind], verbs, where)
    return needed


def granted_rules():
    """{(group, resource): {verb, ...}} of the shipped ClusterRole."""
    with open(CLUSTERROLE, encoding="utf-8") as handle:
        document = yaml.safe_load(handle)
    assert document["kind"] == "ClusterRole"
    granted = {}
    for rule in document["rules"]:
        assert set(rule) == {"apiGroups", "resources", "verbs"}, "no resourceNames or wildcards: %r" % rule
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                assert "*" not in (group, resource) and "*" not in rule["verbs"], "no wildcards: %r" % rule
                granted.setdefault((group, resource), set()).update(rule["verbs"])
    return granted


def test_the_scan_finds_what_the_roles_are_known_to_call():
    needed = scan_roles()
    # Spot checks that fail if the scan stops reading a source of rights.
    assert "delete" in needed[("apps", "daemonsets")]  # agent absent: item.kind loop
    assert "create" in needed[("rbac.authorization.k8s.io", "clusterroles")]  # agent-base.yml.j2
    assert "create" in needed[("", "pods/eviction")]  # the calico_mtu agent's rules and k8s_drain
    assert "watch" in needed[("", "pods")]  # the pod_poke agent's rules
    assert "patch" in needed[("operator.tigera.io", "installations")]  # calico_mtu config.yml
    assert "get" in needed[("apps", "deployments")]  # Typha, in the Calico detection's cluster_summary objects
    assert "list" in needed[("apps", "daemonsets")]  # the report's netmend agents, by label selector
    assert "get" in needed[("", "serviceaccounts")]  # owned.yml's cluster_summary objects: every created kind


def test_the_clusterrole_grants_every_call_the_roles_make():
    granted = granted_rules()
    missing = {
        "%s/%s %s (%s)" % (group or "core", resource, verb, sorted(where)[0])
        for (group, resource), verbs in scan_roles().items()
        for verb, where in verbs.items()
        if verb not in granted.get((group, resource), set())
    }
    assert not missing, "docs/rbac/clusterrole.yml lacks: %s" % sorted(missing)


def test_the_clusterrole_grants_nothing_the_roles_do_not_call():
    needed = scan_roles()
    surplus = {
        "%s/%s %s" % (group or "core", resource, verb)
        for (group, resource), verbs in granted_rules().items()
        for verb in verbs
        if verb not in needed.get((group, resource), {})
    }
    assert not surplus, "docs/rbac/clusterrole.yml grants what no role calls: %s" % sorted(surplus)


@pytest.mark.parametrize("kind, expression", [("{{ something_new }}", "kind")])
def test_an_unreadable_kind_fails_the_scan_by_name(kind, expression):
    with pytest.raises(AssertionError, match="something_new"):
        _task_kinds(os.path.join(REPO, "roles", "agent"), {expression: kind}, None)
