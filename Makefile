# One command each on a fresh Debian 12 machine: `make demo`, `make test`. Both run `make setup`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.clap-ros-setup
REQS := requirements/runtime.txt requirements/training.txt requirements/dev.txt requirements/constraints.txt
# DDS stays on loopback; tests pick their own ROS_DOMAIN_ID per run.
export ROS_AUTOMATIC_DISCOVERY_RANGE ?= LOCALHOST
export MUJOCO_GL ?= egl
export PYOPENGL_PLATFORM ?= egl

.PHONY: setup test test-fast lint demo bench model lock clean help
help:
	@echo "make setup   build $(VENV) from the pinned requirements (run by demo/test when needed)"
	@echo "make demo    run the main job on the simulated robot"
	@echo "make test    run the whole test suite (linters included)"
	@echo "make lint    ruff check, ruff format --check and mypy only"
	@echo "make bench   print the benchmark figures"
	@echo "make model   re-record the sim data and retrain models/default (about an hour on 1 core)"

setup: $(STAMP)

$(STAMP): $(REQS) setup.py training/pyproject.toml
	./scripts/install_system_deps.sh
	[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch is pinned in this same command (training.txt) so nothing pulls a CUDA build.
	$(PY) -m pip install -q -r requirements/runtime.txt -r requirements/training.txt \
		-r requirements/dev.txt -c requirements/constraints.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e . -e training
	touch $(STAMP)

test: setup lerobot-env
	$(PY) -m pytest tests

test-fast: setup
	$(PY) -m pytest tests -m "not slow"

# The linters on their own (make test runs them too, in tests/unit/test_lint.py).
lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

demo: setup
	$(VENV)/bin/clap-ros demo

bench: setup
	$(VENV)/bin/clap-ros bench

# Rebuild the shipped bundle from sim data (knobs: EPISODES, HUMAN_CLIPS, THREADS; see the script).
model: setup
	VENV=$(VENV) ./scripts/train_default_model.sh

# The issue-6 experiments at CPU scale (hours), then docs/RESULTS.md (clap-train experiment --help).
# JOBS parallel processes of one torch thread each (the sim data is recorded once, first).
JOBS ?= 3
.PHONY: experiments
experiments: setup
	OMP_NUM_THREADS=1 $(VENV)/bin/clap-train experiment all --scale cpu --jobs $(JOBS)

# Regenerate the lock file from the current venv (after changing requirements/*.txt).
lock:
	$(PY) -m pip freeze --exclude-editable | grep -vE '^(clap[-_]ros|clap[-_]train)' > requirements/constraints.txt

# The reference LeRobot reader in its own environment (its pins clash with .venv's; see
# requirements/lerobot.txt), for tests/unit/test_lerobot_reference.py.
LEROBOT_VENV ?= .venv-lerobot
LEROBOT_STAMP := $(LEROBOT_VENV)/.clap-ros-lerobot
.PHONY: lerobot-env
lerobot-env: $(LEROBOT_STAMP)

$(LEROBOT_STAMP): requirements/lerobot.txt scripts/setup_lerobot_env.sh
	PYTHON=$(PYTHON) ./scripts/setup_lerobot_env.sh $(LEROBOT_VENV)
	touch $(LEROBOT_STAMP)

clean:
	rm -rf $(VENV) $(LEROBOT_VENV) build *.egg-info training/*.egg-info
