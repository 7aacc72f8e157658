# The two README commands: `make demo` and `make test`. Both create .venv when it is missing.
PYTHON ?= python3
VENV ?= .venv
# torch/torchvision pinned to the builds this project is developed and tested with; override
# TORCH_SPEC for another build, e.g. TORCH_SPEC="torch torchvision --index-url ...".
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
BIN := $(VENV)/bin
DEMO_DB ?= demo.db

.PHONY: demo test test-slow test-long services browser lint bench bench-quick venv clean gpu-wheels gpu-nvbit gpu-check

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
# outcomes, the GPU check's whole dry run and its GPU steps against a stand-in tool, the second backend of some
# engine tests, and the tests over 30 s listed in docs/TESTING.md (CI runs them after make test); pytest's exit 5
# means none were selected
test-slow: venv services
	$(BIN)/python -m pytest -q -rs -m slow || [ $$? -eq 5 ]

# tests marked @pytest.mark.long, longer than CI allows for: the 800-injection Slurm campaign, the
# 100,000-result store copy
test-long: venv services
	$(BIN)/python -m pytest -q -rs -m long || [ $$? -eq 5 ]

# every benchmark of bench/, in its quick mode (a few minutes on 2 cores) or its full mode;
# docs/BENCHMARKS.md holds their figures. PyTorchFI comes with the bench extra.
BENCHES := inprocess heap process workers training report fit store own_models stratified dtypes weight_faults
bench-quick bench: venv
	$(BIN)/python -m pip install -q -e '.[test,cluster,bench]'
	for b in $(BENCHES); do echo "== bench/$$b.py"; $(BIN)/python bench/$$b.py $(if $(filter bench-quick,$@),--quick) || exit 1; done

# The GPU check (docs/NVBITFI.md, "Verified and not yet"). On this CPU machine, gpu-wheels and
# gpu-nvbit fill the git-ignored folders that travel to a lent GPU machine (.whl/: the wheels
# the GPU image lacks, for its Python 3.12; .nvbit/: an NVBit release and the tool prebuilt
# here); there, `make gpu-check OUT=$$OUT` runs every step in under 8 minutes. DRY=1 rehearses
# here every step that needs no GPU (FULL=1 adds the tool's build against .nvbit).
OUT ?= gpu-check-out
GPU_PLATFORMS := manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64 \
	manylinux2014_x86_64 manylinux1_x86_64
# NVBit is published only as release tarballs; this one is NVBit 1.7.7.3's core/ as the public
# repository below vendors it (fetched with the search tool's fetch into NVBIT_MIRROR).
# NVBIT_TARBALL=path/to/nvbit-Linux-x86_64-<version>.tar.bz2 uses an official tarball instead.
NVBIT_VERSION := 1.7.7.3
NVBIT_REPO := prabsy96/SODA---System-Offload-Dynamics-Analyzer
NVBIT_COMMIT := 0aa2e141fcc56c1d15d210144b9d1461dddbe1b7
NVBIT_CORE := src/soda/moe/nvbit_tool/nvbit_release_x86_64/core
NVBIT_SHA256 := 78d410b0d2adbb056f85d2809e42c61fcd115fba96946b5c1ea62ad7bbc39750
NVBIT_MIRROR ?= /work/.mirror/prabsy96+SODA---System-Offload-Dynamics-Analyzer/repo
NVBIT_TARBALL ?=

gpu-wheels:
	rm -rf .whl
	$(PYTHON) -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp --abi cp312 \
		$(foreach p,$(GPU_PLATFORMS),--platform $(p)) -d .whl -r bench/gpucheck/wheels.txt
	@du -sh .whl

gpu-nvbit: venv
	@mkdir -p .nvbit
	@if [ -f .nvbit/core/libnvbit.a ]; then \
		echo "NVBit already in .nvbit: $$(grep -o 'NVBIT_VERSION "[^"]*"' .nvbit/core/nvbit.h)"; \
	elif [ -n "$(NVBIT_TARBALL)" ]; then \
		tmp=$$(mktemp -d) && tar -xjf "$(NVBIT_TARBALL)" -C $$tmp && cp -r $$tmp/nvbit_release*/core .nvbit/ && \
		rm -rf $$tmp && echo "$(NVBIT_TARBALL)" > .nvbit/SOURCE; \
	elif [ -d "$(NVBIT_MIRROR)" ]; then \
		git --git-dir="$(NVBIT_MIRROR)" archive $(NVBIT_COMMIT) $(NVBIT_CORE) | tar -x --strip-components=5 -C .nvbit && \
		{ sha256sum .nvbit/core/libnvbit.a | grep -q "^$(NVBIT_SHA256) " || \
		  { echo "libnvbit.a does not have the sha256 recorded in the Makefile"; rm -rf .nvbit/core; exit 1; }; } && \
		echo "NVBit $(NVBIT_VERSION): core/ of $(NVBIT_REPO) at $(NVBIT_COMMIT)" > .nvbit/SOURCE; \
	else \
		echo "No NVBit release here. With the search tool: fetch github:$(NVBIT_REPO), then make gpu-nvbit"; \
		echo "(it reads $(NVBIT_MIRROR)); or make gpu-nvbit NVBIT_TARBALL=nvbit-Linux-x86_64-<version>.tar.bz2."; \
		exit 2; \
	fi
	@cat .nvbit/SOURCE 2>/dev/null || true
	$(BIN)/fi-campaign injector build --nvbit .nvbit --arch sm_90 --out .nvbit/prebuilt-sm_90
	cd .nvbit/prebuilt-sm_90 && rm -rf obj CMakeFiles CMakeCache.txt Makefile cmake_install.cmake build.ninja .ninja_*
	@du -sh .nvbit

gpu-check: $(if $(DRY),venv)
	$(if $(DRY),$(BIN)/python,$(PYTHON)) bench/gpu_check.py $(if $(DRY),--dry) $(if $(FULL),--full) --out "$(OUT)"

clean:
	rm -rf $(VENV) *.egg-info $(DEMO_DB) $(DEMO_DB)-wal $(DEMO_DB)-shm
