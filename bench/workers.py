"""Throughput of process-isolated injections with 1 and 2 (or more) workers, measured in one run.

    python bench/workers.py [--injections N] [--workers 1,2] [--quick]

Each configuration runs the same planned sites (same config and seed) in a fresh store, so
the work is identical; the figure is injections per second of wall time for `fi-campaign run`
including its start-up, the golden runs and every workload process.
"""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

EXE = str(Path(sys.executable).with_name("fi-campaign"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--injections", type=int, default=None, help="per mode (default 8 quick, 40 full)")
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    n = args.injections or (8 if args.quick else 40)
    counts = [int(w) for w in args.workers.split(",")]
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"workload: zoo:resnet20-cifar10-baseline, 64 bundled CIFAR-10 images, batch 64, "
          f"{2 * n} process-isolated injections (single_bit + warp_random)")
    rates = {}
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "bench.yaml"
        config.write_text(yaml.safe_dump({
            "name": "bench-workers", "seed": 1, "isolation": "process", "injections": n, "batch_size": 64,
            "golden_runs": 2, "models": {"baseline": "zoo:resnet20-cifar10-baseline"},
            "images": {"source": "bundled", "count": 64}}))
        for w in counts:
            db = Path(tmp) / f"w{w}.db"
            subprocess.run([EXE, "--db", str(db), "plan", str(config)], check=True, capture_output=True)
            t0 = time.perf_counter()
            subprocess.run([EXE, "--db", str(db), "run", "--workers", str(w)], check=True, capture_output=True)
            wall = time.perf_counter() - t0
            rates[w] = 2 * n / wall
            print(f"workers={w}: {2 * n} injections in {wall:.1f} s -> {rates[w]:.3f} inj/s")
    base = rates[counts[0]]
    for w in counts[1:]:
        print(f"speed-up {w} vs {counts[0]} workers: {rates[w] / base:.2f}x")


if __name__ == "__main__":
    main()
