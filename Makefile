# Two commands do all set-up on a fresh machine:
#   make demo   - create .venv, install posetune, run the quickstart sweep (local Ray, generated data)
#   make test   - create .venv, install posetune + dev tools, run ruff, mypy and the test suite
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin
OUT ?= posetune-demo

.PHONY: setup demo test test-slow test-ci lint bench clean study-smoke

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

demo: setup
	$(BIN)/posetune demo --out $(OUT)

lint: setup
	$(BIN)/ruff check pose_core orchestrator search_spaces tests benchmarks cluster
	$(BIN)/mypy pose_core orchestrator search_spaces

test: lint
	$(BIN)/python -m pytest -q

# Slow tests (every experiment in --smoke, fault injection, multi-node): minutes each.
test-slow: setup
	$(BIN)/python -m pytest -q -m slow

# What CI runs: the default suite, then the slow tests.
test-ci: test test-slow

bench: setup
	$(BIN)/python benchmarks/input_pipeline.py
	$(BIN)/python benchmarks/train_throughput.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache $(OUT)

# The whole study in --smoke on local Ray (~25 min on 2 cores), then its tables and Figure 7.
STUDY ?= runs/study-smoke
study-smoke: setup
	for e in $$($(BIN)/posetune list --json | $(BIN)/python -c "import json,sys; print(' '.join(r['name'] for r in json.load(sys.stdin)))"); do \
		$(BIN)/posetune sweep $$e --smoke --results $(STUDY) || exit 1; done
	$(BIN)/posetune table two_stage $(STUDY)
	$(BIN)/posetune plot synthetic_amount $(STUDY) --out $(STUDY)/figure7.png
