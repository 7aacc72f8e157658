"""Campaigns on the user's own networks: the in-process campaign loop against fault-free inference.

    python bench/own_models.py [--quick] [--device cpu|cuda] [--batch 64] [--networks resnet18,vit] [--json F]

For each network of issue 25 (bench/own_networks.py: torchvision resnet18 and mobilenet_v3_small
at 64x64, a small VisionTransformer on 32x32, a transformer encoder tagging 12-token sequences,
random weights, built from a user's build file):

- fault-free: inference of the campaign's passes (``batch`` rows each, the workload's own forward
  with its hooks inert), inputs per second;
- campaign, whole passes (`resume: false`): `fi-campaign`'s in-process loop on a planned store,
  one worker, after its start-up (claim from SQLite, fault, forward, judge, record), injections
  per second per mode;
- campaign, resumed (`resume: true`, `layer_weighting: elements`, the default 512 MB bound): the
  same loop on a store planned alike, each pass started from its captured graph's golden values
  (models/graph_resume.py);

measured in the same process, fault-free before and after the campaigns (their mean is the
reference, so drift on a shared machine shows as their spread). The ratio campaign / fault-free
is what one injection costs against one inference.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch

from bench.common import machine, plan_store
from bench.own_networks import NETWORKS, project
from fi_campaign.heap import keep_freed_memory

MODES = ("single_bit", "warp_random")
KINDS = ("whole", "resumed")


def fault_free(db: Path, name: str, device: str, batch: int, passes: int) -> float:
    """Inputs per second of the workload's fault-free forward, ``passes`` passes of ``batch`` rows."""
    from fi_campaign.store import Store
    from fi_campaign.workload.model import Workload

    record = Store.open(str(db)).campaign()
    w = Workload.open_recorded(record.models[name], name, record.workload, device, batch)
    rows = np.arange(batch) % len(w.inputs)
    w.forward(rows)  # warm-up
    t0 = time.perf_counter()
    for _ in range(passes):
        w.forward(rows)
    rate = passes * batch / (time.perf_counter() - t0)
    w.close()
    return rate


def campaign(db: Path, n: int) -> dict[str, float]:
    """Injections per second of each mode's in-process loop, after its start-up."""
    from fi_campaign.engine import runner
    from fi_campaign.store import Store

    stamps: dict[str, list[float]] = {}

    def stamp(p: runner.Progress) -> None:
        if p.phase == runner.INJECTING:
            stamps.setdefault(p.mode, []).append(time.perf_counter())

    runner.work(runner.Job(str(db)), Store.open(str(db)), stamp)
    # each mode's first injecting progress call comes before its first chunk, the last after its last
    return {m: n / (s[-1] - s[0]) for m, s in stamps.items()}


def main() -> None:
    keep_freed_memory()
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="4 passes per mode instead of 16")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--networks", default=",".join(NETWORKS))
    ap.add_argument("--json", type=Path, help="also write every rate to this file")
    args = ap.parse_args()
    passes = 4 if args.quick else 16
    n = passes * args.batch
    print(machine(args.device))
    print(f"batch {args.batch}, {n} injections per mode, {2 * args.batch} inputs")
    out: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = project(Path(tmp) / "project", inputs=2 * args.batch)
        for name in args.networks.split(","):
            inputs, judge = NETWORKS[name]
            stores = {
                kind: plan_store(
                    Path(tmp),
                    f"{name}-{kind}",
                    {
                        "seed": 1,
                        "injections": n,
                        "batch_size": args.batch,
                        "device": args.device,
                        "models": {name: {"build": f"{root / 'build.py'}:{name}"}},
                        "inputs": {"source": str(root / inputs), "count": 2 * args.batch},
                        "judge": judge,
                        "resume": kind == "resumed",
                        "layer_weighting": "elements",
                    },
                )
                for kind in KINDS
            }
            before = fault_free(stores["whole"], name, args.device, args.batch, passes)
            rates = {kind: campaign(db, n) for kind, db in stores.items()}
            after = fault_free(stores["whole"], name, args.device, args.batch, passes)
            free = (before + after) / 2
            row = {"fault_free": free, "fault_free_before": before, "fault_free_after": after}
            for kind in KINDS:
                for mode in MODES:
                    row[f"{kind}_{mode}"] = rates[kind][mode]
                    row[f"{kind}_{mode}_ratio"] = rates[kind][mode] / free
            out[name] = row
            print(f"{name:10s} fault-free {free:8.1f} inputs/s (before {before:.1f}, after {after:.1f})")
            for kind in KINDS:
                print(
                    f"  {kind:8s} "
                    + "; ".join(f"{m} {rates[kind][m]:8.1f} inj/s = {rates[kind][m] / free:.2f}x" for m in MODES)
                )
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(args.device), "batch": args.batch, "rates": out}, indent=2))


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
