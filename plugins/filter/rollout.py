# Copyright: netmend.k8s contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The rollout reading of ``plugins/module_utils/rollout.py`` as filters.

``rollout_progress`` turns the workload (as ``k8s_info`` returns it) into counts,
a done flag and the progress line; ``rollout_pod_problems`` says why its pods are
not available; ``rollout_budget`` scales a wait with the workload's size and
rolling-update budget; ``rollout_not_ready`` sums up thousands of pods that are not
ready in a bounded message. The module ``rollout_status`` polls with the same code.
The documentation of each filter lives next to this file in ``<filter name>.yml``.
"""
from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.netmend.k8s.plugins.module_utils import rollout


def _filter(function):
    def wrapped(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except ValueError as exc:
            raise AnsibleFilterError(str(exc)) from None
    wrapped.__name__ = function.__name__
    wrapped.__doc__ = function.__doc__
    return wrapped


rollout_progress = _filter(rollout.rollout_progress)
rollout_pod_problems = _filter(rollout.rollout_pod_problems)
rollout_budget = _filter(rollout.rollout_budget)
rollout_not_ready = _filter(rollout.rollout_not_ready)


class FilterModule:
    def filters(self):
        return {
            "rollout_progress": rollout_progress,
            "rollout_pod_problems": rollout_pod_problems,
            "rollout_budget": rollout_budget,
            "rollout_not_ready": rollout_not_ready,
        }
