"""`fi-campaign doctor`: what an NVBitFI campaign needs on this machine, one line per piece,
each missing piece with one sentence saying what to do."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fi_campaign.nvbitfi_tools.install import Install

HOPPER = (9, 0)


@dataclass(frozen=True)
class Line:
    ok: bool
    text: str
    required: bool = True


def _smi() -> list[list[str]] | None:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        out = subprocess.run(
            [exe, "--query-gpu=name,compute_cap,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    return [[f.strip() for f in row.split(",")] for row in out.stdout.strip().splitlines() if row.strip()]


def gpu_lines() -> tuple[list[Line], bool]:
    import torch

    gpus = _smi()
    cuda = torch.version.cuda
    if not gpus and not torch.cuda.is_available():
        return [
            Line(
                False,
                "GPU: none found (no working nvidia-smi, and PyTorch sees no CUDA device); NVBitFI "
                "needs an NVIDIA GPU and driver. The pytorch backend runs without one.",
            )
        ], False
    lines = []
    for i, (name, cc, driver) in enumerate(gpus or []):
        major, minor = (int(x) for x in cc.split("."))
        lines.append(Line(True, f"GPU {i}: {name}, compute capability {cc}, driver {driver}"))
        if (major, minor) >= HOPPER:
            lines.append(
                Line(
                    False,
                    f"GPU {i} is Hopper-class or newer: stock NVBitFI (NVBit 1.5.x) does not support "
                    "it; use fi-campaign's own tool ('fi-campaign injector build', NVBit >= 1.7; docs/NVBITFI.md).",
                    required=False,
                )
            )
    lines.append(Line(cuda is not None, f"CUDA (PyTorch build): {cuda or 'none: this PyTorch is a CPU build'}"))
    return lines, True


def install_lines(home: str | None, dialect: str | None) -> tuple[list[Line], Install]:
    from fi_campaign.nvbitfi_tools.install import kernel_log_readable, locate

    inst = locate(home, dialect)
    lines = []
    if inst.home is not None and inst.home.is_dir():
        lines.append(
            Line(True, f"NVBitFI build: {inst.home}")
            if inst.ok
            else Line(
                False, f"NVBitFI build: {inst.home} is not a usable build yet; what it lacks follows.", required=False
            )
        )
    for label, path in (
        ("profiler", inst.profiler),
        ("injector", inst.injector),
        ("DUMMY injector", inst.dummy_injector),
    ):
        if path is not None:
            lines.append(Line(True, f"{label}: {path}"))
    if inst.dialect:
        lines.append(Line(True, f"dialect: {inst.dialect} (from {inst.dialect_from})"))
    lines += [Line(False, m.advice, m.required) for m in inst.missing]
    lines += [Line(False, w, False) for w in inst.warnings]
    readable = kernel_log_readable()
    lines.append(
        Line(
            readable,
            "kernel log: readable, Xid errors will be recorded as DUEs"
            if readable
            else "kernel log: not readable, so GPU Xid errors cannot be detected; run as root or set "
            "sysctl kernel.dmesg_restrict=0.",
            required=False,
        )
    )
    return lines, inst


def own_tool_lines(inst: Install) -> list[Line]:
    """fi-campaign's own NVBit tool: what a build folder was built from and whether it fits this
    GPU, or, for any other build, whether this machine could build the own tool."""
    from fi_campaign.nvbitfi_tools import build

    if inst.dialect != "fi-campaign" or inst.home is None:
        nvcc, cmake = build.find_nvcc(), shutil.which("cmake")
        have = nvcc is not None and cmake is not None
        return [
            Line(
                have,
                (
                    "own NVBit tool: nvcc and cmake found; 'fi-campaign injector build --nvbit DIR' builds "
                    "it against an NVBit >= 1.7 release"
                    if have
                    else "own NVBit tool: cannot be built here, it needs nvcc and cmake on PATH"
                ),
                required=False,
            )
        ]
    marker = build.read_marker(inst.home)
    if marker is None:
        return [Line(False, f"{inst.home} has no {build.MARKER}; rebuild it with 'fi-campaign injector build'.")]
    lines = [
        Line(
            True, f"own NVBit tool: NVBit {marker['nvbit_version']}, nvcc {marker['nvcc_version']}, sm_{marker['arch']}"
        )
    ]
    gpu = build.gpu_arch()
    if gpu is not None and gpu != marker["arch"]:
        lines.append(
            Line(
                False,
                f"the tool was built for sm_{marker['arch']} but this GPU is sm_{gpu}; rebuild "
                f"with 'fi-campaign injector build --arch sm_{gpu}'.",
            )
        )
    if marker.get("sources_sha256") != build.sources_digest(build.tool_sources()):
        lines.append(
            Line(
                False,
                "the tool was built from other sources than this fi-campaign's; rebuild it with "
                "'fi-campaign injector build'.",
                required=False,
            )
        )
    return lines


def dry_campaign(inst: Install, injections: int = 20) -> Line:
    """A campaign with the DUMMY injector (it runs the whole injection path but writes no
    fault): anything but 100% masked means the workload or the setup is not deterministic."""
    import yaml

    from fi_campaign import config as cfg
    from fi_campaign.engine import runner
    from fi_campaign.plan.planner import plan
    from fi_campaign.store import Store

    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "dry.db"
        raw = {
            "name": "doctor-dry-run",
            "backend": "nvbitfi",
            "device": "cuda",
            "modes": ["single_bit"],
            "injections": injections,
            "models": {"baseline": "zoo:resnet20-cifar10-baseline"},
            "images": {"source": "bundled", "count": 16},
            "batch_size": 16,
            "nvbitfi": {"home": str(inst.home), "dialect": inst.dialect, "dummy": True},
        }
        config = cfg.parse(yaml.safe_load(yaml.safe_dump(raw)), "the doctor's dry run")
        record, sites = plan(config, runs=Path(tmp) / "runs")
        store = Store.create(db)
        store.write_plan(record, sites)
        counts = runner.run(store)
    masked = counts.get("masked", 0)
    ok = masked == sum(counts.values())
    return Line(
        ok,
        f"dry campaign with the DUMMY injector: {masked}/{sum(counts.values())} masked"
        + ("" if ok else "; expected all: the workload is not deterministic under NVBit"),
    )


def diagnose(home: str | None, dialect: str | None, dry_run: bool = True) -> list[Line]:
    from fi_campaign.errors import UserError

    lines, gpu = gpu_lines()
    more, inst = install_lines(home, dialect)
    lines += more + own_tool_lines(inst)
    if not dry_run:
        lines.append(Line(False, "dry campaign: not run (--no-dry-run).", required=False))
    elif gpu and inst.ok and inst.dummy_injector is not None:
        try:
            lines.append(dry_campaign(inst))
        except UserError as e:
            lines.append(Line(False, f"dry campaign failed: {e}"))
    elif inst.dummy_injector is None:
        lines.append(Line(False, "dry campaign: skipped, it needs a GPU and a DUMMY injector build.", required=False))
    return lines


def ready(lines: list[Line]) -> bool:
    """Whether every required piece is there (notes may still say what is missing)."""
    return all(line.ok or not line.required for line in lines)
