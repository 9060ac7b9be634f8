# Copyright: netmend.k8s contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

import pytest

from ansible_collections.netmend.k8s.plugins.module_utils import promconfig


def job(**overrides):
    base = {
        "job_name": "felix",
        "kubernetes_sd_configs": [{"role": "endpointslice", "namespaces": {"names": ["kube-system"]}}],
        "relabel_configs": [{"source_labels": ["__meta_kubernetes_service_name"], "regex": "felix-metrics-svc",
                             "action": "keep"}],
    }
    base.update(overrides)
    return base


@pytest.mark.parametrize("text, ms", [
    ("0", 0), ("15s", 15000), ("1m30s", 90000), ("500ms", 500), ("1h", 3600000), ("2d", 172800000),
    ("1w", 604800000), ("1y", 31536000000), ("1h0m5s", 3600000 + 5000),
])
def test_parse_duration(text, ms):
    assert promconfig.parse_duration(text) == ms


@pytest.mark.parametrize("text", ["", "15", "1.5s", "s", "5S", "30s1m", "1m1m", " 5s", "-5s", 5, None])
def test_parse_duration_refuses(text):
    with pytest.raises(ValueError):
        promconfig.parse_duration(text)


@pytest.mark.parametrize("config", [
    {"scrape_configs": []},
    {"global": {"scrape_interval": "15s"}, "scrape_configs": [job(), job(job_name="typha")]},
    # an inherited timeout longer than a job's interval is lowered to it, not an error
    {"global": {"scrape_interval": "30s", "scrape_timeout": "20s"}, "scrape_configs": [job(scrape_interval="5s")]},
    {"scrape_configs": [job(scrape_interval="5s", scrape_timeout="5s", scheme="https", metrics_path="/metrics")]},
    {"scrape_configs": [{"job_name": "prometheus", "static_configs": [{"targets": ["localhost:9090", "[::1]:9090"]}]}]},
    {"scrape_configs": [job(relabel_configs=[
        {"source_labels": ["__address__", "__meta_kubernetes_pod_container_port_number"], "separator": ";",
         "regex": r"([^:]+)(?::\d+)?;(\d+)", "replacement": "$1:$2", "target_label": "__address__", "action": "replace"},
        {"regex": "__meta_kubernetes_pod_label_(.+)", "action": "labelmap"},
        {"regex": "pod_template_hash", "action": "labeldrop"},
        {"source_labels": ["__address__"], "modulus": 4, "target_label": "__tmp_hash", "action": "hashmod"},
        {"source_labels": ["job"], "target_label": "${1}_copy", "action": "replace"},
        {"source_labels": ["__tmp_a"], "target_label": "__tmp_b", "action": "keepequal"},
    ])]},
])
def test_valid_configs(config):
    assert promconfig.validate(config) == []
    assert promconfig.check(config) is config


@pytest.mark.parametrize("config, message", [
    ([], "must be a mapping"),
    ({"scrape_config": []}, "unknown top-level keys: scrape_config"),
    ({"global": {"scrape_interval": "15"}}, "global: scrape_interval: '15' is not a Prometheus duration"),
    ({"global": {"scrape_interval": "5s", "scrape_timeout": "10s"}}, "global: scrape_timeout 10s is longer than scrape_interval 5s"),
    ({"scrape_configs": {"felix": {}}}, "scrape_configs must be a list"),
    ({"scrape_configs": [job(), job()]}, "job 'felix': job_name is used by more than one scrape config"),
    ({"scrape_configs": [job(job_name="")]}, "scrape_configs[0]: job_name is missing or empty"),
    ({"scrape_configs": [job(scrape_interval="5s", scrape_timeout="10s")]},
     "job 'felix': scrape_timeout 10s is longer than scrape_interval 5s"),
    ({"scrape_configs": [job(scrape_interval="five")]}, "job 'felix': scrape_interval: 'five' is not a Prometheus duration"),
    ({"scrape_configs": [job(scrape_timeout=10)]}, "job 'felix': scrape_timeout: a duration must be a string"),
    ({"scrape_configs": [job(scheme="tcp")]}, "job 'felix': scheme 'tcp' is not http or https"),
    ({"scrape_configs": [job(metrics_path="metrics")]}, "job 'felix': metrics_path 'metrics' must start with /"),
    ({"scrape_configs": [job(relabel_configs=[{"source_labels": ["a"], "action": "Keeep"}])]},
     "job 'felix' relabel_configs[0]: unknown action 'Keeep'"),
    ({"scrape_configs": [job(relabel_configs=[{"source_labels": ["a"], "regex": "([a-z", "action": "keep"}])]},
     "job 'felix' relabel_configs[0]: regex '([a-z' does not compile"),
    ({"scrape_configs": [job(relabel_configs=[{"source_labels": ["a"], "action": "replace"}])]},
     "job 'felix' relabel_configs[0]: action replace needs a target_label"),
    ({"scrape_configs": [job(relabel_configs=[{"source_labels": ["a"], "target_label": "b", "action": "hashmod"}])]},
     "action hashmod needs a non-zero modulus"),
    ({"scrape_configs": [job(relabel_configs=[{"regex": "x", "action": "drop"}])]},
     "job 'felix' relabel_configs[0]: action drop needs source_labels"),
    ({"scrape_configs": [job(relabel_configs=[{"source_labels": ["a"], "regex": "x", "action": "labeldrop"}])]},
     "action labeldrop takes only a regex, not source_labels"),
    ({"scrape_configs": [job(relabel_configs=[{"source_labels": ["a-b"], "action": "keep"}])]},
     "source label 'a-b' is not a valid label name"),
    ({"scrape_configs": [job(relabel_configs=[{"source_labels": ["a"], "target_label": "b c", "action": "replace"}])]},
     "target_label 'b c' is not a valid label name or template"),
    ({"scrape_configs": [job(relabel_configs=[{"source_labels": ["a"], "action": "keep", "regexp": "x"}])]},
     "job 'felix' relabel_configs[0]: unknown keys regexp"),
    ({"scrape_configs": [job(relabel_configs=[
        {"source_labels": ["a"], "target_label": "b", "regex": "x", "action": "keepequal"}])]},
     "action keepequal takes only source_labels and target_label, not regex"),
    ({"scrape_configs": [job(kubernetes_sd_configs=[{"role": "endpoint"}])]},
     "job 'felix' kubernetes_sd_configs[0]: role 'endpoint' is not one of"),
    ({"scrape_configs": [job(kubernetes_sd_configs=[{"role": "pod", "namespaces": {"names": "kube-system"}}])]},
     "namespaces.names must be a list of namespace names"),
    ({"scrape_configs": [{"job_name": "p", "static_configs": [{"targets": ["localhost"]}]}]},
     "job 'p' static_configs[0]: target 'localhost' is not host:port"),
])
def test_invalid_configs(config, message):
    errors = promconfig.validate(config)
    assert any(message in error for error in errors), errors
    with pytest.raises(promconfig.PromConfigError) as raised:
        promconfig.check(config)
    assert message in str(raised.value)


def test_every_error_is_reported_at_once():
    config = {"scrape_configs": [job(scrape_interval="5x"), job(relabel_configs=[{"action": "nope"}])]}
    errors = promconfig.validate(config)
    assert len(errors) == 3, errors  # bad interval, duplicate name, unknown action
