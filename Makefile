# Two commands do all set-up on a fresh machine:
#   make demo   - create .venv, install posetune (runtime only), run the quickstart sweep
#                 (local Ray, generated data)
#   make test   - create .venv, install posetune + dev tools, run ruff, mypy and the test suite
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin
OUT ?= posetune-demo

.PHONY: setup setup-dev demo test test-slow test-ci lint bench bench-sweep-cost clean study-smoke study-mini

# The runtime (what posetune needs to run) and, for tests and linting, the dev tools on top.
setup: $(VENV)/.installed
setup-dev: $(VENV)/.installed-dev

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

demo: setup
	$(BIN)/posetune demo --out $(OUT)

lint: setup-dev
	$(BIN)/ruff check pose_core orchestrator search_spaces tests benchmarks cluster
	$(BIN)/mypy pose_core orchestrator search_spaces

test: lint
	$(BIN)/python -m pytest -q

# Slow tests (every experiment in --smoke, fault injection, multi-node): minutes each.
test-slow: setup-dev
	$(BIN)/python -m pytest -q -m slow

# What CI runs: the default suite, then the slow tests.
test-ci: test test-slow

# The quick benchmarks (about 10 minutes on 2 cores); figures in BENCHMARKS.md.
bench: setup
	$(BIN)/python benchmarks/input_pipeline.py
	$(BIN)/python -m benchmarks.data_wait --device cpu --size 256 --batch 32 --steps 0 --images 64
	$(BIN)/python -m benchmarks.image_store
	$(BIN)/python benchmarks/train_throughput.py
	$(BIN)/python benchmarks/sweep_overhead.py
	$(BIN)/python benchmarks/gpu_packing.py

# P3: the hyperparameters grid vs successive halving and TPE + ASHA at CPU scale, 3 seeds (about 30 minutes).
bench-sweep-cost: setup
	$(BIN)/python benchmarks/sweep_cost.py --seeds 3

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache $(OUT)

# The study's seven experiments into one store, then every table, Figure 7 and the findings
# check in STORE/STUDY.md. study-mini: rows that differ, 3 seeds with subsets redrawn per
# seed (about an hour on 2 cores); study-smoke: the plumbing only (a few minutes).
study-mini: setup
	benchmarks/run_study.sh mini $(or $(SEEDS),3) $(or $(STUDY),runs/study-mini)
study-smoke: setup
	benchmarks/run_study.sh smoke $(or $(SEEDS),1) $(or $(STUDY),runs/study-smoke)
