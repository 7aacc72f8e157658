"""How an NVBit tool is attached to the workload: the environment a profiled or injected
process starts with (docs/NVBITFI-INTERFACE.md, "Attaching a tool")."""

from __future__ import annotations

import os
from pathlib import Path


def tool_env(tool: Path, gpu: str | None = None) -> dict[str, str]:
    """Both LD_PRELOAD and CUDA_INJECTION64_PATH (PyTorch can reset the former); NVBit's banner
    and the tools' verbosity off, so nothing but the fault changes a run's output."""
    env = dict(os.environ)
    env.update(
        {
            "LD_PRELOAD": str(tool),
            "CUDA_INJECTION64_PATH": str(tool),
            "NOBANNER": "1",
            "TOOL_VERBOSE": "0",
            "ACK_CTX_INIT_LIMITATION": "1",
        }
    )
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpu
    return env


def gpu_of(device: str) -> str | None:
    """One CUDA_VISIBLE_DEVICES per worker: cuda:N runs on GPU N only."""
    return device.split(":", 1)[1] if ":" in device else None
