"""Process-isolated injection (`isolation: process`, the path NVBitFI campaigns take): where the
time goes, measured in one run.

    python bench/process.py [--quick] [--injections N] [--device cpu|cuda] [--json F]

1. Start-up of the workload program (`python -m fi_campaign.workload.program`), split by running its stages
   as separate programs, alternating: the interpreter alone; + its imports (torch, numpy, the
   model code); + loading the checkpoint and the inputs; + the faulted inference itself and
   writing the logits (the whole program).
2. Orchestration overhead: one worker runs N planned injections; everything outside the
   workload processes (claiming, writing the fault, spawning, waiting, comparing, storing) is
   wall time minus the processes' own run time. The fixed start (opening the store, writing
   the workload, the golden runs) is reported apart: it is paid once per campaign and model.

--device cuda runs the workload processes on the GPU (each pays CUDA's start-up too); --json F
also writes the figures to F (bench/gpu_check.py reads it).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import alternating, machine, plan_store

CONFIG = {
    "seed": 1,
    "isolation": "process",
    "batch_size": 64,
    "golden_runs": 2,
    "models": {"baseline": "zoo:resnet20-cifar10-baseline"},
    "images": {"source": "bundled", "count": 64},
}


def stage_programs(root: Path, fault: Path, out: Path) -> dict[str, list[str]]:
    imports = (
        "import numpy, torch; from fi_campaign.models import zoo; "
        "from fi_campaign.models.faults import Injector, site_faults"
    )
    load = (
        f"{imports}; import json; s = json.load(open('{root}/workload.json')); "
        f"zoo.load(s['checkpoint'], device=s['device']); numpy.load('{root}/images.npy')"
    )
    py = sys.executable
    return {
        "interpreter": [py, "-c", "pass"],
        "imports": [py, "-c", imports],
        "load": [py, "-c", load],
        "whole program": [py, "-m", "fi_campaign.workload.program", str(root), str(fault), "--out", str(out)],
    }


def startup(root: Path, fault: Path, rounds: int) -> dict[str, float]:
    import subprocess

    programs = stage_programs(root, fault, root.parent / "bench-logits.npy")
    med = alternating({k: partial(subprocess.run, c, check=True) for k, c in programs.items()}, rounds)
    print(f"\nworkload start-up (ResNet-20, 64 images, batch 64), median of {rounds} alternating runs:")
    prev = 0.0
    for k, t in med.items():
        print(f"  {k:<14} {t:6.3f} s   (+{t - prev:.3f} s)")
        prev = t
    return med


def overhead(db: Path, figures: dict) -> tuple[Path, Path]:
    from fi_campaign.engine import runner
    from fi_campaign.store import Store, runs_dir

    stamps: list[float] = []
    t0 = time.perf_counter()
    store = Store.open(db)

    def stamp(p: runner.Progress) -> None:
        if p.phase == runner.INJECTING:
            stamps.append(time.perf_counter())

    runner.work(runner.Job(str(db), keep_runs=True), store, stamp)
    end = time.perf_counter()
    rows = list(store.export_rows())
    inside = sum(r["runtime_s"] for r in rows)
    first = stamps[0]  # the first injecting progress call comes once the executor is ready (golden runs done)
    steady = end - first
    n = len(rows)
    print(f"\norchestration, 1 worker, {n} injections (single_bit + warp_random):")
    print(f"  fixed start (store, workload root, 2 golden runs): {first - t0:.2f} s once per model")
    print(f"  injections: {steady:.2f} s wall, {inside:.2f} s inside workload processes")
    print(
        f"  orchestration overhead: {steady - inside:.3f} s = {(steady - inside) / steady:.2%} of wall, "
        f"{1000 * (steady - inside) / n:.1f} ms per injection"
    )
    print(f"  throughput: {n / steady:.3f} inj/s ({steady / n:.2f} s per injection)")
    figures.update(
        injections=n,
        fixed_start_s=first - t0,
        wall_s=steady,
        inside_s=inside,
        overhead_share=(steady - inside) / steady,
        overhead_ms_per_injection=1000 * (steady - inside) / n,
        injections_per_s=n / steady,
    )
    runs = runs_dir(db) / "baseline"
    fault = next(runs.glob("*/fault.json"))
    return runs, fault


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--injections", type=int, help="per mode (default 6 quick, 30 full)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", type=Path, help="also write the figures to this file")
    args = ap.parse_args()
    n = args.injections or (6 if args.quick else 30)
    print(machine(args.device))
    figures: dict = {"machine": machine(args.device), "device": args.device}
    with tempfile.TemporaryDirectory() as tmp:
        db = plan_store(Path(tmp), "bench-process", CONFIG | {"injections": n, "device": args.device})
        root, fault = overhead(db, figures)
        figures["startup_s"] = startup(root, fault, 3 if args.quick else 10)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
