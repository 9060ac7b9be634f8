# Copyright: netmend.k8s contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Structural checks of a Prometheus configuration, on plain data (the parsed YAML).

Standard library only. It catches what a template can get wrong before anything is
applied: duplicate job names, durations Prometheus would not parse, a scrape timeout
longer than the interval, relabel rules with an unknown action or a missing field the
action needs, regexes that do not compile, malformed targets and discovery roles.
It is a subset of ``promtool check config`` (which the lab tests also run), with two
deliberate approximations: regexes are compiled with Python's ``re`` (Prometheus uses
RE2, fully anchored), and label names are checked against the classic
``[a-zA-Z_][a-zA-Z0-9_]*`` form, which is stricter than Prometheus 3's UTF-8 names.
"""
from __future__ import annotations

import re

__all__ = ["PromConfigError", "parse_duration", "validate", "check"]

# Prometheus's model.ParseDuration: units largest first, each at most once, "0" allowed.
_DURATION = re.compile(r"^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$")
_UNIT_MS = (365 * 86400000, 7 * 86400000, 86400000, 3600000, 60000, 1000, 1)
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
# A replace target may use capture-group references (${1}, $name).
_RELABEL_TARGET = re.compile(r"^(?:(?:[a-zA-Z_]|\$(?:\{\w+\}|\w+))+\w*)+$")
_TARGET = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})$")

RELABEL_ACTIONS = frozenset([
    "replace", "keep", "drop", "keepequal", "dropequal", "hashmod",
    "labelmap", "labeldrop", "labelkeep", "lowercase", "uppercase",
])
_NEEDS_TARGET = frozenset(["replace", "hashmod", "lowercase", "uppercase", "keepequal", "dropequal"])
_RELABEL_KEYS = frozenset(["source_labels", "separator", "regex", "modulus", "target_label", "replacement", "action"])
_RELABEL_DEFAULTS = {"separator": ";", "regex": "(.*)", "replacement": "$1"}
SD_ROLES = frozenset(["node", "service", "pod", "endpoints", "endpointslice", "ingress"])
_TOP_KEYS = frozenset([
    "global", "runtime", "rule_files", "scrape_config_files", "scrape_configs", "alerting",
    "remote_write", "remote_read", "storage", "tracing", "otlp",
])
_GLOBAL_DURATIONS = ("scrape_interval", "scrape_timeout", "evaluation_interval", "rule_query_offset")
_DEFAULT_INTERVAL = "1m"
_DEFAULT_TIMEOUT = "10s"


class PromConfigError(Exception):
    """The configuration has structural errors; ``errors`` lists every one."""

    def __init__(self, errors):
        self.errors = list(errors)
        super().__init__("invalid Prometheus configuration: " + "; ".join(self.errors))


def parse_duration(value):
    """Milliseconds of a Prometheus duration such as ``15s``, ``1m30s`` or ``0``; ValueError otherwise."""
    if not isinstance(value, str):
        raise ValueError("a duration must be a string like '15s', not %r" % (value,))
    if value == "0":
        return 0
    match = _DURATION.match(value)
    if not value or not match:
        raise ValueError("%r is not a Prometheus duration (like 30s, 1m30s, 500ms)" % value)
    return sum(int(count) * unit for count, unit in zip(match.groups(), _UNIT_MS) if count)


def _duration(errors, where, key, value):
    try:
        return parse_duration(value)
    except ValueError as exc:
        errors.append("%s: %s: %s" % (where, key, exc))
        return None


def _check_regex(errors, where, pattern):
    if not isinstance(pattern, str):
        errors.append("%s: regex must be a string, not %r" % (where, pattern))
        return
    try:
        re.compile("^(?:%s)$" % pattern)
    except re.error as exc:
        errors.append("%s: regex %r does not compile: %s" % (where, pattern, exc))


def _check_relabel(errors, where, rule):
    if not isinstance(rule, dict):
        errors.append("%s: a relabel rule must be a mapping, not %r" % (where, rule))
        return
    unknown = sorted(set(rule) - _RELABEL_KEYS)
    if unknown:
        errors.append("%s: unknown keys %s" % (where, ", ".join(unknown)))
    action = str(rule.get("action", "replace")).lower()
    if action not in RELABEL_ACTIONS:
        errors.append("%s: unknown action %r (one of %s)" % (where, rule.get("action"), ", ".join(sorted(RELABEL_ACTIONS))))
        return
    sources = rule.get("source_labels", [])
    if not isinstance(sources, list):
        errors.append("%s: source_labels must be a list, not %r" % (where, sources))
        sources = []
    for name in sources:
        if not isinstance(name, str) or not _LABEL_NAME.match(name):
            errors.append("%s: source label %r is not a valid label name" % (where, name))
    if "regex" in rule:
        _check_regex(errors, where, rule["regex"])
    target = rule.get("target_label")
    if action in _NEEDS_TARGET and not target:
        errors.append("%s: action %s needs a target_label" % (where, action))
    elif target and action in ("replace",) and not _RELABEL_TARGET.match(str(target)):
        errors.append("%s: target_label %r is not a valid label name or template" % (where, target))
    elif target and action in _NEEDS_TARGET - {"replace"} and not _LABEL_NAME.match(str(target)):
        errors.append("%s: target_label %r is not a valid label name" % (where, target))
    if action == "hashmod" and not rule.get("modulus"):
        errors.append("%s: action hashmod needs a non-zero modulus" % where)
    if action in ("keep", "drop", "hashmod", "keepequal", "dropequal", "lowercase", "uppercase") and not sources:
        errors.append("%s: action %s needs source_labels" % (where, action))
    if action in ("labeldrop", "labelkeep"):
        extra = [key for key in ("source_labels", "target_label", "modulus") if rule.get(key)]
        extra += [key for key, default in _RELABEL_DEFAULTS.items() if key != "regex" and key in rule and rule[key] != default]
        if extra:
            errors.append("%s: action %s takes only a regex, not %s" % (where, action, ", ".join(extra)))
    if action in ("keepequal", "dropequal"):
        extra = [key for key, default in _RELABEL_DEFAULTS.items() if key in rule and rule[key] != default]
        if rule.get("modulus"):
            extra.append("modulus")
        if extra:
            errors.append("%s: action %s takes only source_labels and target_label, not %s" % (where, action, ", ".join(extra)))


def _check_discovery(errors, where, sd_configs):
    if not isinstance(sd_configs, list):
        errors.append("%s: kubernetes_sd_configs must be a list" % where)
        return
    for index, sd in enumerate(sd_configs):
        here = "%s kubernetes_sd_configs[%d]" % (where, index)
        if not isinstance(sd, dict):
            errors.append("%s: must be a mapping" % here)
            continue
        if sd.get("role") not in SD_ROLES:
            errors.append("%s: role %r is not one of %s" % (here, sd.get("role"), ", ".join(sorted(SD_ROLES))))
        names = (sd.get("namespaces") or {}).get("names", [])
        if not isinstance(names, list) or not all(isinstance(name, str) and name for name in names):
            errors.append("%s: namespaces.names must be a list of namespace names, not %r" % (here, names))


def _check_static(errors, where, static_configs):
    if not isinstance(static_configs, list):
        errors.append("%s: static_configs must be a list" % where)
        return
    for index, group in enumerate(static_configs):
        for target in (group or {}).get("targets", []) if isinstance(group, dict) else [group]:
            match = _TARGET.match(str(target))
            if not match or not 0 < int(match.group(2)) < 65536:
                errors.append("%s static_configs[%d]: target %r is not host:port" % (where, index, target))


def _check_job(errors, index, job, default_interval, default_timeout, seen):
    if not isinstance(job, dict):
        errors.append("scrape_configs[%d]: must be a mapping, not %r" % (index, job))
        return
    name = job.get("job_name")
    where = "job %r" % name if name else "scrape_configs[%d]" % index
    if not isinstance(name, str) or not name:
        errors.append("%s: job_name is missing or empty" % where)
    elif name in seen:
        errors.append("%s: job_name is used by more than one scrape config" % where)
    else:
        seen.add(name)
    interval = _duration(errors, where, "scrape_interval", job["scrape_interval"]) if "scrape_interval" in job else default_interval
    timeout = _duration(errors, where, "scrape_timeout", job["scrape_timeout"]) if "scrape_timeout" in job else None
    if timeout is None and "scrape_timeout" not in job and default_timeout is not None and interval is not None:
        # Prometheus lowers an inherited timeout to a shorter job interval; only an explicit one is an error.
        timeout = min(default_timeout, interval)
    if interval is not None and timeout is not None and timeout > interval:
        errors.append("%s: scrape_timeout %s is longer than scrape_interval %s"
                      % (where, job.get("scrape_timeout"), job.get("scrape_interval", "(global)")))
    if job.get("scheme", "http") not in ("http", "https"):
        errors.append("%s: scheme %r is not http or https" % (where, job.get("scheme")))
    if not str(job.get("metrics_path", "/")).startswith("/"):
        errors.append("%s: metrics_path %r must start with /" % (where, job.get("metrics_path")))
    for key in ("relabel_configs", "metric_relabel_configs"):
        rules = job.get(key, [])
        if not isinstance(rules, list):
            errors.append("%s: %s must be a list" % (where, key))
            continue
        for number, rule in enumerate(rules):
            _check_relabel(errors, "%s %s[%d]" % (where, key, number), rule)
    if "kubernetes_sd_configs" in job:
        _check_discovery(errors, where, job["kubernetes_sd_configs"])
    if "static_configs" in job:
        _check_static(errors, where, job["static_configs"])


def validate(config):
    """Every structural error of a parsed Prometheus configuration, as a list of messages (empty: fine)."""
    if not isinstance(config, dict):
        return ["the configuration must be a mapping, not %s" % type(config).__name__]
    errors = []
    unknown = sorted(set(config) - _TOP_KEYS)
    if unknown:
        errors.append("unknown top-level keys: %s" % ", ".join(unknown))
    global_ = config.get("global") or {}
    if not isinstance(global_, dict):
        errors.append("global must be a mapping")
        global_ = {}
    durations = {}
    for key in _GLOBAL_DURATIONS:
        if key in global_:
            durations[key] = _duration(errors, "global", key, global_[key])
    interval = durations.get("scrape_interval", parse_duration(_DEFAULT_INTERVAL))
    timeout = durations.get("scrape_timeout", min(parse_duration(_DEFAULT_TIMEOUT), interval or 0))
    if "scrape_timeout" in global_ and interval is not None and timeout is not None and timeout > interval:
        errors.append("global: scrape_timeout %s is longer than scrape_interval %s"
                      % (global_["scrape_timeout"], global_.get("scrape_interval", _DEFAULT_INTERVAL)))
    jobs = config.get("scrape_configs") or []
    if not isinstance(jobs, list):
        return errors + ["scrape_configs must be a list"]
    seen = set()
    for index, job in enumerate(jobs):
        _check_job(errors, index, job, interval, timeout, seen)
    return errors


def check(config):
    """Raise PromConfigError listing every structural error; return the config when there is none."""
    errors = validate(config)
    if errors:
        raise PromConfigError(errors)
    return config
