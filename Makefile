# The two README commands: `make demo` (set up everything, boot a real
# multi-host plan on the local provider) and `make test` (the whole suite).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
export CLOUDINITD_IMAGE_CACHE ?= $(CURDIR)/.cache/images
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: all deps system-deps venv image demo demo-down test test-fast mutate lint bench clean

all: test

system-deps:
	bash scripts/install-system-deps.sh

$(VENV)/.installed: pyproject.toml setup.py
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

venv: $(VENV)/.installed

deps: system-deps venv

# The base image is slow to build the first time; it is cached in .cache/ (ignored by git).
image: deps
	$(VENV)/bin/cloudinitd image build debian-12 --provider local
	$(VENV)/bin/cloudinitd image build debian-12 --provider qemu

demo: deps image
	bash scripts/demo.sh

demo-down:
	bash scripts/demo.sh down

# The suite's own temporary folder, not pytest's shared /tmp/pytest-of-USER: any
# other pytest starting there (another checkout's tests, mutmut) chmods that
# folder 0700, which masks the ACL entries that let the containers' root reach
# their files under it (lxc-start: "Could not access /tmp/pytest-of-root").
# Kept after a failure (the logs), removed after a pass.
TEST_TMP ?= /tmp/cid-tests-$(shell id -u)

test: deps image
	$(PY) -m ruff check cloudinitd tests bench
	$(VENV)/bin/lint-imports --no-cache
	mkdir -p $(TEST_TMP)
	tmp=$(TEST_TMP)/run-$$$$; $(PY) -m pytest -v --durations=15 --basetemp=$$tmp tests; \
	  rc=$$?; if [ $$rc -eq 0 ]; then rm -rf $$tmp; else echo "test files kept in $$tmp"; fi; \
	  exit $$rc

# Pure and loopback-SSH tests only: no containers, no VMs.
test-fast: venv
	$(PY) -m pytest -q -m "not lxc and not qemu" tests

# Mutation testing (mutmut) of the pure core and the security-critical modules, with
# the fast in-process tests (pyproject.toml [tool.mutmut]). Results are cached in
# mutants/: a re-run tests only mutants of changed code. One module:
#   make mutate MUTATE='cloudinitd.schedule.*'      (a name given is always re-run)
MUTATE ?=
MUTATE_JOBS ?= 2
mutate: venv
	set -f; $(VENV)/bin/mutmut run --max-children $(MUTATE_JOBS) $(MUTATE) \
	  | tr '\r' '\n' | grep -v '^[⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏]' | grep -v '^\s*$$' | tail -n 4
	$(PY) -m tests.support.mutation_report
	@echo "survivors: $(VENV)/bin/mutmut results; one diff: $(VENV)/bin/mutmut show NAME"

lint: venv
	$(PY) -m ruff check cloudinitd tests bench
	$(VENV)/bin/lint-imports --no-cache

bench: deps image
	$(PY) bench/bench_fanout.py
	$(PY) bench/round_trips.py
	$(PY) bench/bench_local.py
	$(PY) bench/bench_ec2.py
	$(PY) bench/bench_nfs.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache mutants
