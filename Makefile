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
# X.Y of $(PYTHON), worked out at run time: the virtualenvs are built with it, and
# ansible-test and the collection path follow it. ansible-core 2.19 runs on 3.11-3.13.
PY_XY_CODE  := import sys; print("%d.%d" % sys.version_info[:2])
PY_XY       := $(shell $(PYTHON) -c '$(PY_XY_CODE)' 2>/dev/null)
PY_SUPPORTED := 3.11 3.12 3.13
GO_MIN      := 1.25
# A virtualenv remembers the Python that built it; another PYTHON gets a fresh one.
VENV_STAMP  := $(BIN)/.installed-py$(PY_XY)
COLL_ROOT   := $(abspath $(BUILD)/collections)
COLL_LINK   := $(COLL_ROOT)/ansible_collections/netmend/k8s
SANITY_ROOT := $(abspath $(BUILD)/sanity)
SANITY_COPY := $(SANITY_ROOT)/ansible_collections/netmend/k8s
SANITY_VENV := $(abspath $(BUILD)/sanity-venv-py$(PY_XY))
export ANSIBLE_COLLECTIONS_PATH := $(COLL_ROOT):$(abspath $(VENV))/lib/python$(PY_XY)/site-packages
# Everything Ansible, ansible-test and Molecule cache (collections, ansible-test's pip
# bootstrap, Molecule's scenario state) stays in the build tree, never in ~/.ansible.
export ANSIBLE_HOME := $(abspath $(BUILD)/ansible-home)
# Module files of local tasks too (its default is ~/.ansible/tmp whatever ANSIBLE_HOME says).
export ANSIBLE_REMOTE_TMP := $(ANSIBLE_HOME)/tmp
# Molecule (ansible-compat) caches in $$VIRTUAL_ENV/.ansible when one is active, else in ANSIBLE_HOME.
unexport VIRTUAL_ENV
# Molecule installs the collection under test into its cache unless a link to this
# checkout is already there: the link keeps the checkout the only copy.
MOLECULE_LINK := $(ANSIBLE_HOME)/collections/ansible_collections/netmend/k8s
export NETMEND_LAB_KUBECONFIG ?= $(HOME)/.cache/netmend-lab/kubeconfig
export PATH := $(abspath $(BIN)):$(PATH)
export ANSIBLE_FORCE_COLOR := 0
export PY_COLORS := 0

sysdeps: ## system packages the lab needs (iptables, iproute2), installed when missing
	lab/sysdeps.sh

.PHONY: help sysdeps prereqs-python prereqs prereqs-root venv collection unit sanity lint lab-up lab-down lab-status lab-test awx-test changelog molecule molecule-kind bench site test clean

help: ## list targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/'

prereqs-python: ## check PYTHON: a version ansible-core 2.19 supports, with its venv module
	@[ -n "$(PY_XY)" ] || { echo "prereqs: '$(PYTHON)' does not run: install Python $(firstword $(PY_SUPPORTED)) to $(lastword $(PY_SUPPORTED)) or set PYTHON=python3.X" >&2; exit 1; }
	@case " $(PY_SUPPORTED) " in *" $(PY_XY) "*) ;; *) echo "prereqs: $(PYTHON) is Python $(PY_XY); ansible-core 2.19 needs one of $(PY_SUPPORTED) (set PYTHON=python3.X)" >&2; exit 1;; esac
	@$(PYTHON) -c 'import venv, ensurepip' 2>/dev/null || { echo "prereqs: $(PYTHON) has no venv/ensurepip module: install python$(PY_XY)-venv (Debian/Ubuntu) or your distribution's equivalent" >&2; exit 1; }

prereqs: prereqs-python ## check what the lab build needs too (Go) and say what to install
	@command -v go >/dev/null || { echo "prereqs: the lab builds Kubernetes with Go $(GO_MIN) or newer: install Go (https://go.dev/dl/) and put it on PATH" >&2; exit 1; }
	@have=$$(go env GOVERSION | sed -E 's/^go([0-9]+\.[0-9]+).*/\1/'); \
	  [ "$$(printf '%s\n%s\n' "$(GO_MIN)" "$$have" | sort -V | head -n1)" = "$(GO_MIN)" ] || \
	  { echo "prereqs: Go $$have is too old; the lab needs Go $(GO_MIN) or newer" >&2; exit 1; }

prereqs-root: prereqs ## as prereqs, and root (the lab's network namespaces, iptables and nodes)
	@[ "$$(id -u)" -eq 0 ] || { echo "prereqs: this target runs the network lab and needs root: run it with sudo" >&2; exit 1; }

# X.Y of an existing interpreter, in a recipe (empty when it does not exist).
PY_XY_OF = $$($(1) -c '$(PY_XY_CODE)' 2>/dev/null)
$(VENV_STAMP): requirements-dev.txt | prereqs-python
	[ "$(call PY_XY_OF,$(BIN)/python)" = "$(PY_XY)" ] || { rm -rf $(VENV); $(PYTHON) -m venv $(VENV); }
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

venv: $(VENV_STAMP) ## virtualenv with the pinned development requirements, built with PYTHON

collection: ## lay the repository out as ansible_collections/netmend/k8s
	mkdir -p $(dir $(COLL_LINK))
	ln -sfn $(CURDIR) $(COLL_LINK)

unit: venv collection ## unit tests (pure logic, no root, no cluster)
	$(BIN)/pytest tests/unit --junitxml=$(BUILD)/junit/unit.xml

# ansible-test gets a virtualenv of its own: --requirements installs its pinned
# linters there, and its --venv/--docker modes need downloads this machine lacks.
# ansible-test reads its pip bootstrap from ~/.ansible/test/cache (a fixed path), so
# it runs with HOME in the build tree; pip keeps the user's download cache.
SANITY_HOME := $(abspath $(BUILD)/sanity-home)
SANITY_STAMP := $(SANITY_VENV)/.installed
$(SANITY_STAMP): requirements-dev.txt | prereqs-python
	[ "$(call PY_XY_OF,$(SANITY_VENV)/bin/python)" = "$(PY_XY)" ] || { rm -rf $(SANITY_VENV); $(PYTHON) -m venv $(SANITY_VENV); }
	$(SANITY_VENV)/bin/pip install --quiet --disable-pip-version-check "$$(grep '^ansible-core==' requirements-dev.txt)"
	# ansible-test names its cached pip bootstrap after the pip version it pins.
	version=$$(grep -oE "pip='[0-9.]+'" $(SANITY_VENV)/lib/python$(PY_XY)/site-packages/ansible_test/_internal/python_requirements.py | grep -oE "[0-9.]+"); \
	  mkdir -p $(SANITY_HOME)/.ansible/test/cache && cp lab/ansible_test_pip.py $(SANITY_HOME)/.ansible/test/cache/get_pip_$${version//./_}.py
	touch $@

sanity: sysdeps $(SANITY_STAMP) ## ansible-test sanity (local mode, in its own virtualenv)
	rm -rf $(SANITY_COPY); mkdir -p $(SANITY_COPY)
	git ls-files -z --cached --others --exclude-standard | tar --null -T - -cf - | tar -xf - -C $(SANITY_COPY)
	cd $(SANITY_COPY) && git init -q && git add -A && \
	  PIP_CACHE_DIR=$${PIP_CACHE_DIR:-$(HOME)/.cache/pip} HOME=$(SANITY_HOME) PATH=$(SANITY_VENV)/bin:$$PATH \
	  ansible-test sanity --local --python $(PY_XY) --requirements --color no

lint: venv collection ## ansible-lint (production profile) and yamllint
	$(BIN)/ansible-lint --offline
	$(BIN)/antsibull-changelog lint

changelog: venv collection ## CHANGELOG.rst for the version in galaxy.yml, from every fragment (run after adding one)
	# The version is not out yet: its notes are rebuilt from every fragment and every plugin and role of that version_added.
	# Fragments are checked first: a bad one would otherwise fail the rebuild after the release was taken out.
	$(BIN)/antsibull-changelog lint
	$(BIN)/python -c 'import sys, yaml; p = "changelogs/changelog.yaml"; d = yaml.safe_load(open(p)); d["releases"].pop(sys.argv[1], None); yaml.safe_dump(d, open(p, "w"), sort_keys=True)' "$$(sed -n 's/^version: //p' galaxy.yml)"
	$(BIN)/antsibull-changelog release --reload-plugins

# KWOK nodes of the lab: `make lab-up NODES=5000` (default 3, or NETMEND_LAB_NODES); `up` makes
# exactly that many, so `make lab-up` afterwards takes the lab back to its default size.
NODES ?= $(or $(NETMEND_LAB_NODES),3)

lab-up: venv ## build (cached) and start the lab cluster with NODES KWOK nodes (default 3, at most 8131)
	lab/cluster.sh up --nodes $(NODES)

lab-down: ## stop the lab cluster
	lab/cluster.sh down

lab-status: ## is the lab cluster up
	lab/cluster.sh status

# `make lab-test LAB_TESTS="tests/lab/test_x.py ..." LAB_JUNIT=name` runs a part (make test runs two parts at once).
LAB_TESTS ?= tests/lab
LAB_JUNIT ?= lab
lab-test: prereqs-root sysdeps venv collection ## lab tests: real netns/iptables/packets and the lab API server (root)
	$(BIN)/pytest $(LAB_TESTS) --junitxml=$(BUILD)/junit/$(LAB_JUNIT).xml

awx-test: prereqs venv collection ## AWX job templates run by ansible-runner, and the built tarball in a clean virtualenv, against the lab cluster
	$(BIN)/pytest tests/awx --junitxml=$(BUILD)/junit/awx.xml

$(MOLECULE_LINK):
	mkdir -p $(dir $@)
	ln -sfn $(CURDIR) $@

molecule: venv collection $(MOLECULE_LINK) ## Molecule default scenario against the lab cluster
	# A scenario remembers it was prepared; start from nothing so prepare always runs.
	$(BIN)/molecule reset -s default
	$(BIN)/molecule test -s default

# Needs kind and Docker or Podman, which this target checks first, and a Calico
# manifest pinned by checksum: NETMEND_KIND_CALICO_MANIFEST (URL or path) and
# NETMEND_KIND_CALICO_SHA256. See extensions/molecule/kind/molecule.yml.
molecule-kind: venv collection $(MOLECULE_LINK) ## Molecule kind scenario: a kind cluster with real Calico (needs kind and a container engine)
	$(BIN)/molecule reset -s kind
	$(BIN)/molecule test -s kind

bench: sysdeps venv collection ## every benchmark: figures and ratios, each measured side by side in one run (root, lab up)
	lab/cluster.sh up
	for script in bench/*.py; do echo "== $$script"; $(BIN)/python $$script; done

site: prereqs venv collection ## the main job against the lab cluster
	lab/cluster.sh up
	# The play's environment reaches modules, not lookups: the rollout wait's k8s lookup needs it here.
	K8S_AUTH_KUBECONFIG=$(NETMEND_LAB_KUBECONFIG) $(BIN)/ansible-playbook -i localhost, playbooks/site.yml -e @playbooks/vars/lab.yml

# make test runs three streams side by side, each on a lab cluster of its own (own API server, real
# nodes, underlay; lab tests name their network namespaces by process): lab tests part 1, part 2, and
# part 3 followed by the AWX, Molecule and main-job runs (which, as before, come after lab tests on
# their cluster). When all three have ended, labs b and c are stopped and tests/lab/test_scale.py runs
# alone on the first lab at SCALE_NODES KWOK nodes: beside the two other streams on 2 cores, KWOK did
# not ready 5,000 agent pods within the rollout's budget (1,059 still Pending after 550 s).
# Most of the time is waiting for pods and rollouts.
LAB_TESTS_1 := $(sort $(wildcard tests/lab/test_real_*.py tests/lab/test_agent_*.py tests/lab/test_masq_rule_*.py))
LAB_TESTS_3 := $(addprefix tests/lab/,test_connectivity_check_role.py test_net_doctor_role.py test_pod_poke_role.py test_site.py)
LAB_TESTS_2 := $(filter-out $(LAB_TESTS_1) $(LAB_TESTS_3) tests/lab/test_scale.py,$(sort $(wildcard tests/lab/test_*.py)))
SCALE_NODES := 5000
LAB_B := NETMEND_LAB_CLUSTER=netmend-lab-b NETMEND_LAB_KUBECONFIG=$(HOME)/.cache/netmend-lab/kubeconfig-b
LAB_C := NETMEND_LAB_CLUSTER=netmend-lab-c NETMEND_LAB_KUBECONFIG=$(HOME)/.cache/netmend-lab/kubeconfig-c
LOGS := $(BUILD)/logs

test: prereqs-root sysdeps venv collection ## everything, from nothing: CI runs this
	rm -rf $(BUILD)/junit $(LOGS)
	mkdir -p $(LOGS)
	@date +'== %T unit'
	$(MAKE) unit
	@date +'== %T lint'
	$(MAKE) lint
	@date +'== %T sanity'
	$(MAKE) sanity
	@date +'== %T lab up, then the three streams'
	# The trap comes first: a lab that fails to start half-way is stopped too. Stopping's output goes to a
	# log (shown only when it fails) so the last lines of a run are the failures and the totals.
	down() { downrc=0; for lab in "$$@"; do env $$lab lab/cluster.sh down >> $(LOGS)/down.log 2>&1 || \
	  { downrc=1; echo "stopping the lab failed: $$lab"; tail -n 20 $(LOGS)/down.log; }; done; return $$downrc; }; \
	trap 'down "" "$(LAB_B)" "$(LAB_C)"' EXIT; \
	  lab/cluster.sh up && $(LAB_B) lab/cluster.sh up && $(LAB_C) lab/cluster.sh up || exit 1; \
	  start=$$(date +%s); took() { echo "== $$1 ended after $$(( $$(date +%s) - start )) s"; }; \
	  date +'== %T streams start'; \
	  { rc=0; $(MAKE) lab-test LAB_TESTS="$(LAB_TESTS_1)" LAB_JUNIT=lab-1 || rc=$$?; took lab-1; exit $$rc; } > $(LOGS)/lab-1.log 2>&1 & one=$$!; \
	  { rc=0; $(LAB_B) $(MAKE) lab-test LAB_TESTS="$(LAB_TESTS_2)" LAB_JUNIT=lab-2 || rc=$$?; took lab-2; exit $$rc; } > $(LOGS)/lab-2.log 2>&1 & two=$$!; \
	  { $(LAB_C) $(MAKE) lab-test LAB_TESTS="$(LAB_TESTS_3)" LAB_JUNIT=lab-3 && took lab-3 && \
	    $(LAB_C) $(MAKE) awx-test && took awx && $(LAB_C) $(MAKE) molecule && took molecule && \
	    $(LAB_C) $(MAKE) site && took site; } > $(LOGS)/jobs.log 2>&1 & three=$$!; \
	  rc1=0; rc2=0; rc3=0; rc4=0; wait $$one || rc1=$$?; wait $$two || rc2=$$?; wait $$three || rc3=$$?; \
	  { down "$(LAB_B)" "$(LAB_C)" && \
	    NETMEND_LAB_SCALE_NODES=$(SCALE_NODES) $(MAKE) lab-test LAB_TESTS=tests/lab/test_scale.py LAB_JUNIT=scale; \
	  } > $(LOGS)/scale.log 2>&1 || rc4=$$?; took scale >> $(LOGS)/scale.log; \
	  for log in lab-1 lab-2 jobs scale; do echo "===== $$log"; cat $(LOGS)/$$log.log; done; \
	  $(BIN)/python lab/summary.py $(BUILD)/junit || true; \
	  echo "lab-1: exit $$rc1, lab-2: exit $$rc2, lab-3/awx/molecule/site: exit $$rc3, scale: exit $$rc4"; \
	  [ $$rc1 = 0 ] && [ $$rc2 = 0 ] && [ $$rc3 = 0 ] && [ $$rc4 = 0 ]

clean: ## remove the virtualenv and build tree (the Go binary cache stays)
	rm -rf $(VENV) $(BUILD) tests/output
