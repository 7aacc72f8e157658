# The two README commands: `make demo` and `make test`. Both create .venv when it is missing.
PYTHON ?= python3
VENV ?= .venv
# torch/torchvision pinned to the builds this project is developed and tested with; override
# TORCH_SPEC for another build, e.g. TORCH_SPEC="torch torchvision --index-url ...".
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
BIN := $(VENV)/bin
DEMO_DB ?= demo.db

.PHONY: demo test test-slow test-long browser bench bench-quick venv clean

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

# -rs lists every skipped test with its reason at the end, so nothing is skipped silently
test: venv browser
	$(BIN)/python -m pytest -q -rs

# The HTML report tests render the page in headless Chromium (Debian package "chromium").
# Installed when missing and possible (root with apt-get), as CI needs; otherwise this says
# which tests will skip and how to get them. Under CI=1 a browser that cannot be had fails.
BROWSER_TESTS := the HTML rendering tests (render_in_chromium in tests/test_report.py and tests/test_report_demo.py)
browser:
	@if command -v chromium >/dev/null 2>&1; then \
		:; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "chromium is missing: installing it for $(BROWSER_TESTS) (apt-get install chromium)"; \
		apt-get update -q && apt-get install -y -q --no-install-recommends chromium || { \
			echo "apt-get could not install chromium: $(BROWSER_TESTS) will be skipped." \
			"To run them: apt-get install chromium, then make test."; [ -z "$$CI" ] || exit 1; }; \
	else \
		echo "chromium is not installed and cannot be installed here (that needs root and apt-get):" \
			"$(BROWSER_TESTS) will be skipped. To run them: sudo apt-get install chromium" \
			"(or put a chromium executable on PATH), then make test."; \
		[ -z "$$CI" ] || exit 1; \
	fi

# tests marked @pytest.mark.slow: a Slurm array job with a cancelled task, the ResNet-44 resume equality,
# a training smoke run, two concurrent runners, the own-tool campaign, process-isolated against in-process
# outcomes, and the second backend of some engine tests (CI runs them after make test); pytest's exit 5 means none were selected
test-slow: venv
	$(BIN)/python -m pytest -q -rs -m slow || [ $$? -eq 5 ]

# tests marked @pytest.mark.long, longer than CI allows for: the 800-injection Slurm campaign, the
# 100,000-result store copy
test-long: venv
	$(BIN)/python -m pytest -q -rs -m long || [ $$? -eq 5 ]

# every benchmark of bench/, in its quick mode (a few minutes on 2 cores) or its full mode;
# docs/BENCHMARKS.md holds their figures. PyTorchFI comes with the bench extra.
BENCHES := inprocess heap process workers training report fit store
bench-quick bench: venv
	$(BIN)/python -m pip install -q -e '.[test,cluster,bench]'
	for b in $(BENCHES); do echo "== bench/$$b.py"; $(BIN)/python bench/$$b.py $(if $(filter bench-quick,$@),--quick) || exit 1; done

clean:
	rm -rf $(VENV) *.egg-info $(DEMO_DB) $(DEMO_DB)-wal $(DEMO_DB)-shm
