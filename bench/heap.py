"""What keeping freed memory in the heap (campaign/heap.py) is worth, measured in one run.

    python bench/heap.py [--quick]

Alternating fresh processes, with glibc's defaults and with fi-campaign's tuning, each timing
fault-free inference of the committed ResNet-20s (baseline, hardened) on a batch of 256 bundled
images and counting the page faults of those passes. The allocator can only be set per process,
hence one process per measurement.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import machine

PROGRAM = """
import json, resource, statistics, sys, time
if sys.argv[1] == "kept":
    from fi_campaign.heap import keep_freed_memory
    keep_freed_memory()
import torch
from fi_campaign.models import data, zoo
images = data.load("bundled")
x = data.normalise(images.images[:256], images.dataset)
models = {n: zoo.load(f"zoo:resnet20-cifar10-{n}")[0] for n in ("baseline", "hardened")}
t = {n: [] for n in models}
with torch.inference_mode():
    for m in models.values():
        m(x)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(int(sys.argv[2])):
        for n, m in models.items():
            t0 = time.perf_counter(); m(x); t[n].append(time.perf_counter() - t0)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
print(json.dumps({"faults": faults / (2 * int(sys.argv[2]))} | {n: statistics.median(v) for n, v in t.items()}))
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    rounds, passes = (2, 5) if args.quick else (5, 10)
    print(machine())
    runs: dict[str, list[dict]] = {"defaults": [], "kept": []}
    for _ in range(rounds):
        for how in runs:
            out = subprocess.run(
                [sys.executable, "-c", PROGRAM, how, str(passes)],
                check=True,
                capture_output=True,
                text=True,
                cwd=Path(__file__).resolve().parent.parent,
            )
            runs[how].append(json.loads(out.stdout))
    print(
        f"ResNet-20 inference, batch 256, {rounds} alternating processes per allocator x {passes} passes; "
        "medians over processes of each process's median:"
    )
    med = {how: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for how, rs in runs.items()}
    for how, m in med.items():
        spread = ", ".join(f"{1000 * r['baseline']:.0f}" for r in runs[how])
        print(
            f"  {how:<9} baseline {1000 * m['baseline']:6.1f} ms (per process: {spread}), hardened "
            f"{1000 * m['hardened']:6.1f} ms, hardened/baseline {m['hardened'] / m['baseline']:.3f}, "
            f"{m['faults']:,.0f} page faults per pass"
        )
    print(f"  kept / defaults, baseline inference time: {med['kept']['baseline'] / med['defaults']['baseline']:.3f}")


if __name__ == "__main__":
    main()
