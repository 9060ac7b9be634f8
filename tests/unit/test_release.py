# Copyright: netmend.k8s contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Release hygiene: version_added, the changelog the tarball ships, galaxy.yml's links.

``make changelog`` (antsibull-changelog release --update-existing) writes the release
named in galaxy.yml from every fragment; these tests fail when a fragment, a plugin or a
role is not in it, or CHANGELOG.rst is not what antsibull-changelog makes of
changelogs/changelog.yaml.
"""
from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import sys

import pytest
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VENV_BIN = os.path.dirname(sys.executable)


def load(path):
    with open(os.path.join(REPO, path), encoding="utf-8") as handle:
        return yaml.safe_load(handle)


GALAXY = load("galaxy.yml")
RELEASES = load("changelogs/changelog.yaml")["releases"]


def version_key(version):
    return tuple(int(part) for part in version.split("."))


def plugin_docs():
    """(kind, name, version_added) of every module, filter and role entry point."""
    for path in sorted(glob.glob(os.path.join(REPO, "plugins", "modules", "*.py"))):
        with open(path, encoding="utf-8") as handle:
            source = handle.read()
        doc = yaml.safe_load(re.search(r'DOCUMENTATION = r?"""(.*?)"""', source, re.S).group(1))
        yield "module", doc["module"], doc.get("version_added")
    for path in sorted(glob.glob(os.path.join(REPO, "plugins", "filter", "*.yml"))):
        doc = load(path)["DOCUMENTATION"]
        yield "filter", doc["name"], doc.get("version_added")
    for path in sorted(glob.glob(os.path.join(REPO, "roles", "*", "meta", "argument_specs.yml"))):
        role = path.split(os.sep)[-3]
        for entry, spec in load(path)["argument_specs"].items():
            yield "role", "%s:%s" % (role, entry), spec.get("version_added")


@pytest.mark.parametrize("kind, name, version_added", list(plugin_docs()))
def test_version_added_is_a_released_version(kind, name, version_added):
    assert version_added is not None, "%s %s has no version_added" % (kind, name)
    assert str(version_added) in RELEASES, "%s %s: version_added %s is no release" % (kind, name, version_added)
    assert version_key(str(version_added)) <= version_key(GALAXY["version"])


def test_the_galaxy_version_is_released_with_a_summary():
    release = RELEASES[GALAXY["version"]]
    assert release["changes"]["release_summary"].strip()


def test_every_fragment_is_in_the_release():
    released = set(RELEASES[GALAXY["version"]]["fragments"])
    fragments = {os.path.basename(path) for path in glob.glob(os.path.join(REPO, "changelogs", "fragments", "*.yml"))}
    assert fragments - released == set(), "run `make changelog`: fragments not in %s" % GALAXY["version"]


def test_every_module_filter_and_role_is_listed_as_new_in_its_release():
    listed = set()
    for release in RELEASES.values():
        for entry in release.get("modules", []) + release.get("objects", {}).get("role", []):
            listed.add(entry["name"])
        for entry in release.get("plugins", {}).get("filter", []):
            listed.add(entry["name"])
    wanted = {doc[1].split(":")[0] for doc in plugin_docs()}
    assert wanted - listed == set()


def test_changelog_rst_is_generated_from_changelog_yaml(tmp_path):
    for name in ("galaxy.yml", "CHANGELOG.rst"):
        shutil.copy(os.path.join(REPO, name), tmp_path)
    shutil.copytree(os.path.join(REPO, "changelogs"), tmp_path / "changelogs")
    done = subprocess.run([os.path.join(VENV_BIN, "antsibull-changelog"), "generate"], cwd=tmp_path,
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    with open(os.path.join(REPO, "CHANGELOG.rst"), encoding="utf-8") as handle:
        assert (tmp_path / "CHANGELOG.rst").read_text() == handle.read()


def test_galaxy_yml_has_no_placeholder_links():
    text = yaml.safe_dump(GALAXY)
    for url in re.findall(r"https?://[^\s'\"]+", text):
        host = url.split("/")[2]
        assert not host.endswith((".invalid", ".example", ".test", "example.com", "example.org")), url


def test_the_tarball_ships_the_user_docs():
    kept = [pattern for pattern in GALAXY["build_ignore"] if pattern in {"README.md", "CHANGELOG.rst", "docs", "LICENSE"}]
    assert kept == []
