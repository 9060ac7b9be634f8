# Copyright: netmend.k8s contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The AWX project in examples/awx: execution environment, survey and wrapper playbook.

ansible-builder writes the execution environment's build context (no image is built
here: no container engine), and the context's own introspection script reads the
collection installed from the release tarball, as the image build would.
"""
from __future__ import annotations

import json
import os
import subprocess

import pytest
import yaml

from awx_helpers import REPO, VENV_BIN, clean_env

PROJECT = os.path.join(REPO, "examples", "awx")
# Question types and keys of the controller's survey_spec API.
SURVEY_TYPES = {"text", "textarea", "password", "integer", "float", "multiplechoice", "multiselect"}
QUESTION_KEYS = {"question_name", "question_description", "variable", "type", "default", "required",
                 "choices", "min", "max"}


def load(name):
    with open(os.path.join(PROJECT, name), encoding="utf-8") as handle:
        return json.load(handle) if name.endswith(".json") else yaml.safe_load(handle)


@pytest.fixture(scope="module")
def context(tmp_path_factory):
    out = tmp_path_factory.mktemp("ee") / "context"
    done = subprocess.run([os.path.join(VENV_BIN, "ansible-builder"), "create", "-f", "execution-environment.yml",
                           "-c", str(out), "--output-filename", "Containerfile"],
                          cwd=PROJECT, capture_output=True, text=True, check=False,
                          env=clean_env(out.parent / "ansible-home"))
    assert done.returncode == 0, done.stdout + done.stderr
    return out


def test_execution_environment_is_builder_v3():
    definition = load("execution-environment.yml")
    assert definition["version"] == 3
    assert definition["dependencies"]["galaxy"] == "collections/requirements.yml"
    assert definition["dependencies"]["ansible_core"]["package_pip"].startswith("ansible-core>=2.19")


def test_builder_context_builds_from_the_base_image_with_the_project_requirements(context):
    containerfile = (context / "Containerfile").read_text()
    base = load("execution-environment.yml")["images"]["base_image"]["name"]
    assert 'ARG EE_BASE_IMAGE="%s"' % base in containerfile
    assert "FROM $EE_BASE_IMAGE AS base" in containerfile
    assert "ansible-galaxy collection install" in containerfile
    assert "introspect.py introspect" in containerfile
    assert yaml.safe_load((context / "_build" / "requirements.yml").read_text()) == load("collections/requirements.yml")


def test_builder_introspection_finds_the_collection_dependencies(context, installed_collections, tmp_path):
    pip, bindep = tmp_path / "requirements.txt", tmp_path / "bindep.txt"
    done = subprocess.run([os.path.join(VENV_BIN, "python"), str(context / "_build" / "scripts" / "introspect.py"),
                           "introspect", str(installed_collections), "--write-pip", str(pip),
                           "--write-bindep", str(bindep)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    with open(os.path.join(REPO, "requirements.txt"), encoding="utf-8") as handle:
        wanted = [line.strip() for line in handle if line.strip() and not line.startswith("#")]
    got = pip.read_text()
    for requirement in wanted:
        assert "%s  # from collection netmend.k8s" % requirement in got
    assert "python3 [platform:dpkg platform:rpm]  # from collection netmend.k8s" in bindep.read_text()


def test_survey_spec_is_what_the_controller_api_takes():
    survey = load("survey.json")
    assert set(survey) == {"name", "description", "spec"}
    variables = [question["variable"] for question in survey["spec"]]
    assert len(variables) == len(set(variables))
    for question in survey["spec"]:
        assert set(question) <= QUESTION_KEYS, question
        assert question["type"] in SURVEY_TYPES
        assert isinstance(question["required"], bool)
        # Text answers: the job converts them (tests/awx/test_awx_runner.py sends them so).
        assert isinstance(question["default"], str)
        if question["type"] == "multiplechoice":
            assert question["default"] in question["choices"]


def test_survey_variables_are_the_main_jobs(tmp_path):
    """Every survey variable is one the main job's argument spec declares."""
    with open(os.path.join(REPO, "playbooks", "vars", "site_argument_specs.yml"), encoding="utf-8") as handle:
        spec = yaml.safe_load(handle)["argument_specs"]["site"]["options"]
    for question in load("survey.json")["spec"]:
        assert question["variable"] in spec, question["variable"]
        option = spec[question["variable"]]
        if question["type"] == "multiplechoice" and option.get("type") == "bool":
            assert set(question["choices"]) == {"true", "false"}
        elif question["type"] == "multiplechoice":
            assert set(question["choices"]) == set(option["choices"])


def test_wrapper_playbook_imports_the_collection_job(installed_collections, tmp_path):
    done = subprocess.run([os.path.join(VENV_BIN, "ansible-playbook"), "--syntax-check", "-i", "localhost,",
                           os.path.join(PROJECT, "site.yml")], capture_output=True, text=True, check=False,
                          env=clean_env(tmp_path, ANSIBLE_COLLECTIONS_PATH=str(installed_collections)))
    assert done.returncode == 0, done.stdout + done.stderr
    playbook = load("site.yml")
    assert playbook == [{"name": "Run the netmend.k8s main job", "ansible.builtin.import_playbook": "netmend.k8s.site"}]


def test_every_fix_has_its_tag(installed_collections, tmp_path):
    done = subprocess.run([os.path.join(VENV_BIN, "ansible-playbook"), "--list-tags", "-i", "localhost,",
                           os.path.join(PROJECT, "site.yml")], capture_output=True, text=True, check=False,
                          env=clean_env(tmp_path, ANSIBLE_COLLECTIONS_PATH=str(installed_collections)))
    assert done.returncode == 0, done.stdout + done.stderr
    tags = set(done.stdout.split("TASK TAGS: [")[1].split("]")[0].split(", "))
    with open(os.path.join(REPO, "playbooks", "vars", "site_argument_specs.yml"), encoding="utf-8") as handle:
        options = yaml.safe_load(handle)["argument_specs"]["site"]["options"]
    toggles = {name[len("netmend_"):] for name, option in options.items()
               if option.get("type") == "bool" and option.get("default") is False}
    assert toggles and toggles <= tags
    assert "always" in tags
