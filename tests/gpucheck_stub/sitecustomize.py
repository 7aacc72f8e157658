"""Loaded by every Python process of the GPU-step rehearsal (tests/test_gpu_check.py puts this
folder on PYTHONPATH and sets FI_GPU_CHECK_STUB=1): fi-campaign's GPU requirement and device
check pass on this machine without a GPU, while FI_WORKLOAD_PYTHON points the workload
processes at the stand-in (standin.py) that plays the workload and fi-campaign's tool."""

import os
import sys

if os.environ.get("FI_GPU_CHECK_STUB") == "1":
    import importlib.abc
    import importlib.util

    class _NoGpuNeeded(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name != "fi_campaign.workload.model":
                return None
            sys.meta_path.remove(self)
            try:
                spec = importlib.util.find_spec(name)
            finally:
                sys.meta_path.insert(0, self)
            if spec is None or spec.loader is None:
                return spec
            run = spec.loader.exec_module

            def exec_module(module):
                run(module)
                module.require_gpu = lambda: None
                module.resolve_device = lambda device: device

            # patches this one loader instance, so the module keeps its own loader
            spec.loader.exec_module = exec_module  # type: ignore[method-assign]
            return spec

    sys.meta_path.insert(0, _NoGpuNeeded())
