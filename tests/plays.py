"""The one way tests build and run a playbook: a play on localhost (or on an inventory's hosts)
that includes a role or a tasks file, run by the virtualenv's ansible-playbook.

Used by the ``run_playbook`` fixture (tests/conftest.py) and by wider fixtures through
``run_role`` (tests/lab/real_pods.py); ``tests`` is on sys.path as the folder of the root conftest.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV_BIN = os.path.dirname(sys.executable)  # the virtualenv running the tests, whichever Python made it


def local_play(spec):
    """One play that includes a role ({'role': fqcn}, with ``tasks_from`` for another entry point) or a
    tasks file ({'tasks': path}).

    Optional keys: ``vars``, the include's variables; ``hosts``, another host pattern than
    localhost (the inventory then says how each host is reached); ``interpreter``, localhost's
    Python (the controller's own by default).
    """
    hosts = spec.get("hosts", "localhost")
    play = {"hosts": hosts, "gather_facts": False}
    if hosts == "localhost":
        play["connection"] = "local"
        play["vars"] = {"ansible_python_interpreter": spec.get("interpreter") or "{{ ansible_playbook_python }}"}
    if "role" in spec:
        task = {"name": spec["role"], "ansible.builtin.include_role": {"name": spec["role"]}}
        if spec.get("tasks_from"):
            task["ansible.builtin.include_role"]["tasks_from"] = spec["tasks_from"]
    else:
        task = {"name": os.path.basename(spec["tasks"]), "ansible.builtin.include_tasks": spec["tasks"]}
    if spec.get("vars"):
        task["vars"] = spec["vars"]
    play["tasks"] = [task]
    return yaml.safe_dump([play], sort_keys=False)


def ansible_playbook(env, folder, playbook, extra_vars=None, check=False, diff=False, extra_args=(),
                     inventory="localhost,"):
    """Run ``playbook`` -> CompletedProcess with ``recap``: {'ok': n, 'changed': n, ...} of localhost.

    ``playbook`` is a spec for local_play(), a whole playbook as YAML text (written to ``folder``),
    or an existing path.
    """
    if isinstance(playbook, dict):
        playbook = local_play(playbook)
    path = playbook
    if not os.path.exists(str(playbook)):
        path = os.path.join(str(folder), "play-%s.yml" % uuid.uuid4().hex[:6])
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(playbook)
    argv = [os.path.join(VENV_BIN, "ansible-playbook"), "-i", str(inventory), str(path)]
    if extra_vars:
        argv += ["-e", json.dumps(extra_vars)]
    if check:
        argv.append("--check")
    if diff:
        argv.append("--diff")
    argv += list(extra_args)
    done = subprocess.run(argv, env=env, cwd=REPO, capture_output=True, text=True, timeout=900, check=False)
    recap = {}
    match = re.search(r"^localhost\s*:\s*(.*)$", done.stdout, re.M)
    if match:
        recap = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", match.group(1))}
    done.recap = recap
    return done
