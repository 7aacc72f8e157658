"""How injections per second grow with workers, measured in one run.

    python bench/workers.py [--quick] [--isolation process|inprocess] [--device cpu|cuda]
                            [--workers 1,2] [--injections N]

Each worker count runs the same planned sites (same config and seed) in a fresh store, so the
work is identical; the figure is injections per second of wall time of the whole
`fi-campaign run`, including its start-up and the golden runs. On a GPU every worker shares the
one GPU (`--per-gpu` = workers); the default counts there are 1, 2, 4, 8, 16.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import EXE, machine, plan_store


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--isolation", choices=["process", "inprocess"], default="process")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--workers", help="comma-separated counts (default 1,2; 1,2,4,8,16 on cuda)")
    ap.add_argument("--injections", type=int, help="per mode (process: 8 quick, 40 full; inprocess: 100x that)")
    args = ap.parse_args()
    counts = [int(w) for w in (args.workers or ("1,2,4,8,16" if args.device.startswith("cuda") else "1,2")).split(",")]
    n = args.injections or (8 if args.quick else 40) * (100 if args.isolation == "inprocess" else 1)
    batch = 64
    print(machine(args.device))
    print(
        f"workload: zoo:resnet20-cifar10-baseline, 64 bundled CIFAR-10 images, batch {batch}, "
        f"{2 * n} {args.isolation} injections (single_bit + warp_random)"
    )
    config = {
        "seed": 1,
        "isolation": args.isolation,
        "injections": n,
        "batch_size": batch,
        "golden_runs": 2,
        "device": args.device,
        "models": {"baseline": "zoo:resnet20-cifar10-baseline"},
        "images": {"source": "bundled", "count": 64},
    }
    rates = {}
    with tempfile.TemporaryDirectory() as tmp:
        for w in counts:
            db = plan_store(Path(tmp), f"workers{w}", config)
            t0 = time.perf_counter()
            subprocess.run(
                [EXE, "--db", str(db), "run", "--workers", str(w), "--per-gpu", str(w)], check=True, capture_output=True
            )
            wall = time.perf_counter() - t0
            rates[w] = 2 * n / wall
            print(
                f"workers={w}: {2 * n} injections in {wall:.1f} s -> {rates[w]:.3f} inj/s, "
                f"{rates[w] / rates[counts[0]]:.2f}x {counts[0]} worker(s)"
            )


if __name__ == "__main__":
    main()
