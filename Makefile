# Two commands from a fresh clone:
#   make demo   - create .venv, pretrain + linear-evaluate on the embedded synthetic ECG data
#   make test   - create .venv, lint, run the test suite under the tensorflow, jax and torch backends
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
BACKENDS ?= tensorflow jax torch
PYTEST_ARGS ?= -n 2 --dist worksteal -q

.PHONY: venv demo test lint format clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# The CPU build of torch first: a bare `torch` requirement would pull a multi-GB CUDA build.
	$(PY) -m pip install -q "torch==2.13.0"
	$(PY) -m pip install -q -e ".[jax,torch,hub,dev,formats]"
	touch $@

venv: $(VENV)/.installed

demo: venv
	KERAS_BACKEND=$${KERAS_BACKEND:-tensorflow} $(PY) -m keras_ecg.cli demo $(DEMO_ARGS)

lint: venv
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: venv
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

test: lint
	@set -e; for b in $(BACKENDS); do \
	  echo "=== KERAS_BACKEND=$$b ==="; \
	  KERAS_BACKEND=$$b $(PY) -m pytest $(PYTEST_ARGS) tests; \
	done

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
