# The two README commands: `make demo` and `make test`. Both create .venv when it is missing.
PYTHON ?= python3
VENV ?= .venv
# torch/torchvision pinned to the builds this project is developed and tested with; override
# TORCH_SPEC for another build, e.g. TORCH_SPEC="torch torchvision --index-url ...".
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
BIN := $(VENV)/bin
DEMO_DB ?= demo.db

.PHONY: demo test test-slow test-long services browser lint bench bench-quick venv clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH_SPEC)
	$(BIN)/python -m pip install -q -e '.[test,cluster]'
	touch $@

demo: venv
	test -f $(DEMO_DB) || $(BIN)/fi-campaign --db $(DEMO_DB) plan
	$(BIN)/fi-campaign --db $(DEMO_DB) run
	$(BIN)/fi-campaign --db $(DEMO_DB) report --avf

# -rs lists every skipped test with its reason at the end, so nothing is skipped silently; the
# linters run after the tests, so a finding never hides a test's result
test: venv services
	$(BIN)/python -m pytest -q -rs
	$(MAKE) --no-print-directory lint

# What the tests drive for real (.ci/services.sh): the headless Chromium the HTML report tests
# render in, PostgreSQL's initdb for a throwaway server, and the local Slurm cluster. Each is
# installed when missing and possible (root with apt-get), as CI needs, and Slurm is started;
# otherwise a line says which tests will be skipped and how to get them. Under CI=1 a part that
# cannot be had fails.
services:
	@.ci/services.sh

browser:
	@.ci/services.sh browser

# ruff (lint, and the format check) and mypy, as configured in pyproject.toml
lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# tests marked @pytest.mark.slow: a Slurm array job with a cancelled task, the ResNet-44 resume equality,
# a training smoke run, two concurrent runners, the own-tool campaign, process-isolated against in-process
# outcomes, and the second backend of some engine tests (CI runs them after make test); pytest's exit 5 means none were selected
test-slow: venv services
	$(BIN)/python -m pytest -q -rs -m slow || [ $$? -eq 5 ]

# tests marked @pytest.mark.long, longer than CI allows for: the 800-injection Slurm campaign, the
# 100,000-result store copy
test-long: venv services
	$(BIN)/python -m pytest -q -rs -m long || [ $$? -eq 5 ]

# every benchmark of bench/, in its quick mode (a few minutes on 2 cores) or its full mode;
# docs/BENCHMARKS.md holds their figures. PyTorchFI comes with the bench extra.
BENCHES := inprocess heap process workers training report fit store
bench-quick bench: venv
	$(BIN)/python -m pip install -q -e '.[test,cluster,bench]'
	for b in $(BENCHES); do echo "== bench/$$b.py"; $(BIN)/python bench/$$b.py $(if $(filter bench-quick,$@),--quick) || exit 1; done

clean:
	rm -rf $(VENV) *.egg-info $(DEMO_DB) $(DEMO_DB)-wal $(DEMO_DB)-shm
