# Copyright: netmend.k8s contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A new user's install: the README's commands, the release tarball, a clean virtualenv.

The commands are read from the README's "Without access to Galaxy" block and run as
written, in an empty folder holding only the tarball, with a Python virtualenv of
their own and ANSIBLE_HOME in that folder. Then the main job runs from the installed
collection (``ansible-playbook netmend.k8s.site``) against the lab cluster.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest

from awx_helpers import REPO, clean_env, version

pytestmark = pytest.mark.cluster

BLOCK_HEADING = "### Without access to Galaxy"


def readme_block(heading):
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as handle:
        text = handle.read()
    section = text[text.index(heading):]
    return re.search(r"```bash\n(.*?)```", section, re.S).group(1)


def test_readme_install_runs_the_main_job(collection_tarball, kubeconfig, tmp_path):
    commands = readme_block(BLOCK_HEADING)
    assert "netmend-k8s-*.tar.gz" in commands or collection_tarball.name in commands
    shutil.copy(collection_tarball, tmp_path)
    # The README says python3; here that is the Python these tests run on.
    base_python = getattr(sys, "_base_executable", sys.executable)
    env = clean_env(tmp_path / "ansible-home", PATH=os.path.dirname(base_python) + os.pathsep + os.environ["PATH"])
    env.pop("VIRTUAL_ENV", None)
    script = "set -euo pipefail\npython3() { %s \"$@\"; }\n%s" % (base_python, commands)
    done = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=3600, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    installed = tmp_path / "ansible-home" / "collections" / "ansible_collections" / "netmend" / "k8s"
    assert (installed / "MANIFEST.json").exists(), done.stdout
    venv_bin = tmp_path / "netmend-venv" / "bin"
    # Only what the README installed: no development tool came along.
    assert not (venv_bin / "molecule").exists() and not (venv_bin / "pytest").exists()

    job = subprocess.run([str(venv_bin / "ansible-playbook"), "-i", "localhost,", "netmend.k8s.site"],
                         cwd=tmp_path, env=dict(env, K8S_AUTH_KUBECONFIG=kubeconfig), capture_output=True,
                         text=True, timeout=900, check=False)
    assert job.returncode == 0, job.stdout[-4000:] + job.stderr[-2000:]
    assert re.search(r"^localhost\s*:.*failed=0", job.stdout, re.M)
    # The report read the lab's nodes through the installed collection (it prints counts, not names).
    counted = re.search(r"nodes: ([0-9]+) \(([0-9]+) Ready\)", job.stdout)
    assert counted and int(counted.group(1)) >= 3, job.stdout[-4000:]
    listed = subprocess.run([str(venv_bin / "ansible-galaxy"), "collection", "list", "netmend.k8s"], env=env,
                            capture_output=True, text=True, check=True).stdout
    assert "# %s\n" % installed.parent.parent in listed
    assert re.search(r"^netmend\.k8s\s+%s\s*$" % re.escape(version()), listed, re.M)
