# netmend.k8s developer entry points. `make test` is the one command that does
# everything from nothing: virtualenv, pinned tools, Go builds of the lab cluster,
# lab up, every test suite, lab down. CI runs exactly that.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PYTHON      ?= python3
VENV        ?= .venv
BIN         := $(VENV)/bin
BUILD       := .build
COLL_ROOT   := $(abspath $(BUILD)/collections)
COLL_LINK   := $(COLL_ROOT)/ansible_collections/netmend/k8s
SANITY_ROOT := $(abspath $(BUILD)/sanity)
SANITY_COPY := $(SANITY_ROOT)/ansible_collections/netmend/k8s
SANITY_VENV := $(abspath $(BUILD)/sanity-venv)
export ANSIBLE_COLLECTIONS_PATH := $(COLL_ROOT):$(abspath $(VENV))/lib/python3.11/site-packages
export NETMEND_LAB_KUBECONFIG ?= $(HOME)/.cache/netmend-lab/kubeconfig
export PATH := $(abspath $(BIN)):$(PATH)
export ANSIBLE_FORCE_COLOR := 0
export PY_COLORS := 0

sysdeps: ## system packages the lab needs (iptables, iproute2), installed when missing
	lab/sysdeps.sh

.PHONY: help sysdeps venv collection unit sanity lint lab-up lab-down lab-status lab-test molecule bench site test clean

help: ## list targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/'

$(BIN)/.installed: requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

venv: $(BIN)/.installed ## virtualenv with the pinned development requirements

collection: ## lay the repository out as ansible_collections/netmend/k8s
	mkdir -p $(dir $(COLL_LINK))
	ln -sfn $(CURDIR) $(COLL_LINK)

unit: venv collection ## unit tests (pure logic, no root, no cluster)
	$(BIN)/pytest tests/unit --junitxml=$(BUILD)/junit/unit.xml

# ansible-test gets a virtualenv of its own: --requirements installs its pinned
# linters there, and its --venv/--docker modes need downloads this machine lacks.
$(SANITY_VENV)/.installed: requirements-dev.txt
	$(PYTHON) -m venv $(SANITY_VENV)
	$(SANITY_VENV)/bin/pip install --quiet --disable-pip-version-check "$$(grep '^ansible-core==' requirements-dev.txt)"
	# ansible-test names its cached pip bootstrap after the pip version it pins.
	version=$$(grep -oE "pip='[0-9.]+'" $(SANITY_VENV)/lib/python3.11/site-packages/ansible_test/_internal/python_requirements.py | grep -oE "[0-9.]+"); \
	  mkdir -p $(HOME)/.ansible/test/cache && cp lab/ansible_test_pip.py $(HOME)/.ansible/test/cache/get_pip_$${version//./_}.py
	touch $@

sanity: sysdeps $(SANITY_VENV)/.installed ## ansible-test sanity (local mode, in its own virtualenv)
	rm -rf $(SANITY_COPY); mkdir -p $(SANITY_COPY)
	git ls-files -z --cached --others --exclude-standard | tar --null -T - -cf - | tar -xf - -C $(SANITY_COPY)
	cd $(SANITY_COPY) && git init -q && git add -A && \
	  PATH=$(SANITY_VENV)/bin:$$PATH ansible-test sanity --local --python 3.11 --requirements --color no

lint: venv collection ## ansible-lint (production profile) and yamllint
	$(BIN)/ansible-lint --offline
	$(BIN)/antsibull-changelog lint

lab-up: venv ## build (cached) and start the lab cluster
	lab/cluster.sh up

lab-down: ## stop the lab cluster
	lab/cluster.sh down

lab-status: ## is the lab cluster up
	lab/cluster.sh status

lab-test: sysdeps venv collection ## lab tests: real netns/iptables/packets and the lab API server (root)
	$(BIN)/pytest tests/lab --junitxml=$(BUILD)/junit/lab.xml

molecule: venv collection ## Molecule default scenario against the lab cluster
	# A scenario remembers it was prepared; start from nothing so prepare always runs.
	$(BIN)/molecule reset -s default
	$(BIN)/molecule test -s default

bench: sysdeps venv collection ## every benchmark: figures and ratios, each measured side by side in one run (root, lab up)
	lab/cluster.sh up
	for script in bench/*.py; do echo "== $$script"; $(BIN)/python $$script; done

site: venv collection ## the main job against the lab cluster
	lab/cluster.sh up
	$(BIN)/ansible-playbook -i localhost, playbooks/site.yml -e @playbooks/vars/lab.yml

test: sysdeps venv collection ## everything, from nothing: CI runs this
	rm -rf $(BUILD)/junit
	$(MAKE) unit
	$(MAKE) lint
	$(MAKE) sanity
	lab/cluster.sh up
	trap 'lab/cluster.sh down' EXIT; $(MAKE) lab-test && $(MAKE) molecule && $(MAKE) site
	$(BIN)/python lab/summary.py $(BUILD)/junit

clean: ## remove the virtualenv and build tree (the Go binary cache stays)
	rm -rf $(VENV) $(BUILD) tests/output
