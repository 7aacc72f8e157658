"""What every benchmark shares: the machine line, a planned store, alternating timings."""

from __future__ import annotations

import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import yaml

# the console script beside this interpreter, else the one on PATH (an install with pip --target,
# as bench/gpu_check.py makes on the GPU machine, puts it in the target's bin/)
_BESIDE = Path(sys.executable).with_name("fi-campaign")
EXE = str(_BESIDE) if _BESIDE.exists() else shutil.which("fi-campaign") or str(_BESIDE)


def machine(device: str = "cpu") -> str:
    line = f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    try:
        import torch

        line += f", torch {torch.__version__} ({torch.get_num_threads()} threads)"
        if device.startswith("cuda"):
            line += f", {torch.cuda.get_device_name(torch.device(device))}"
    except ImportError:
        pass
    return f"{line}, device {device}"


def plan_store(folder: Path, name: str, config: dict) -> Path:
    """A fresh store planned from ``config`` by the real CLI."""
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, **config}))
    db = folder / f"{name}.db"
    subprocess.run([EXE, "--db", str(db), "plan", str(path)], check=True, capture_output=True)
    return db


def alternating(fns: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Median seconds of each function, called in turn ``rounds`` times after one warm-up each,
    so drift on a shared machine hits every contender alike."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}
