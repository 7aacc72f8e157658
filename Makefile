# The two README commands: `make demo` and `make test`. Both create .venv when it is missing.
PYTHON ?= python3
VENV ?= .venv
# torch/torchvision pinned to the builds this project is developed and tested with; override
# TORCH_SPEC for another build, e.g. TORCH_SPEC="torch torchvision --index-url ...".
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
BIN := $(VENV)/bin
DEMO_DB ?= demo.db

.PHONY: demo test test-slow bench bench-quick venv clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH_SPEC)
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

demo: venv
	test -f $(DEMO_DB) || $(BIN)/fi-campaign --db $(DEMO_DB) plan
	$(BIN)/fi-campaign --db $(DEMO_DB) run
	$(BIN)/fi-campaign --db $(DEMO_DB) report --avf

test: venv
	$(BIN)/python -m pytest -q

# tests marked @pytest.mark.slow (none yet); pytest's exit 5 means none were selected
test-slow: venv
	$(BIN)/python -m pytest -q -m slow || [ $$? -eq 5 ]

# every benchmark of bench/, in its quick mode (a few minutes on 2 cores) or its full mode;
# docs/BENCHMARKS.md holds their figures. PyTorchFI comes with the bench extra.
BENCHES := inprocess heap process workers training report
bench-quick bench: venv
	$(BIN)/python -m pip install -q -e '.[test,bench]'
	for b in $(BENCHES); do echo "== bench/$$b.py"; $(BIN)/python bench/$$b.py $(if $(filter bench-quick,$@),--quick) || exit 1; done

clean:
	rm -rf $(VENV) *.egg-info $(DEMO_DB) $(DEMO_DB)-wal $(DEMO_DB)-shm
