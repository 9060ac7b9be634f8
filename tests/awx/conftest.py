"""Fixtures for the AWX and installation tests: the collection as users get it.

``collection_tarball`` builds the release tarball with ansible-galaxy (what a user
downloads); ``installed_collections`` installs it offline into a collections path of
its own, as an AWX project sync or ``ansible-galaxy collection install`` does, so no
test reads the repository's own files through .build/collections.
"""
from __future__ import annotations

import os
import subprocess

import pytest

from awx_helpers import VENV_BIN, REPO, clean_env, version


@pytest.fixture(scope="session")
def collection_tarball(tmp_path_factory):
    """Path of netmend-k8s-<version>.tar.gz built from the checkout."""
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([os.path.join(VENV_BIN, "ansible-galaxy"), "collection", "build", "--output-path", str(out), REPO],
                   check=True, capture_output=True, text=True, env=clean_env(out / "ansible-home"))
    tarball = out / ("netmend-k8s-%s.tar.gz" % version())
    assert tarball.exists()
    return tarball


@pytest.fixture(scope="session")
def installed_collections(collection_tarball, tmp_path_factory):
    """A collections path holding netmend.k8s installed from the tarball.

    kubernetes.core and community.general come from the `ansible` package, as in an
    execution environment built on it (Galaxy is not reachable from every machine).
    """
    path = tmp_path_factory.mktemp("requirements_collections")
    done = subprocess.run(
        [os.path.join(VENV_BIN, "ansible-galaxy"), "collection", "install", "--offline",
         str(collection_tarball), "-p", str(path)],
        capture_output=True, text=True, env=clean_env(path / "ansible-home"), check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (path / "ansible_collections" / "netmend" / "k8s" / "MANIFEST.json").exists()
    return path
