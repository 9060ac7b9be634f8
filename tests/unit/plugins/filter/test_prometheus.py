# Copyright: netmend.k8s contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.netmend.k8s.plugins.filter import prometheus


def test_filter_is_registered():
    assert prometheus.FilterModule().filters() == {"prometheus_config_errors": prometheus.prometheus_config_errors}


@pytest.mark.parametrize("config, errors", [
    ({"scrape_configs": [{"job_name": "a"}]}, []),
    ({"scrape_configs": [{"job_name": "a"}, {"job_name": "a"}]},
     ["job 'a': job_name is used by more than one scrape config"]),
])
def test_prometheus_config_errors(config, errors):
    assert prometheus.prometheus_config_errors(config) == errors


def test_refuses_unparsed_text():
    with pytest.raises(AnsibleFilterError, match="from_yaml"):
        prometheus.prometheus_config_errors("scrape_configs: []")
