"""Campaigns on the user's own networks: the in-process campaign loop against fault-free inference.

    python bench/own_models.py [--quick] [--seconds S] [--rounds R] [--device cpu|cuda] [--batch 64]
                               [--networks resnet18,vit] [--json F]

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

measured in the same process in rounds (``measure``): fault-free, the four campaigns on fresh
stores, fault-free again; each campaign's ratio is against the fault-free rate either side of it,
and the figures are medians over the rounds, with their spread. The ratio campaign / fault-free
is what one injection costs against one inference.
"""

from __future__ import annotations

import argparse
import json
import statistics
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


def plan(tmp: Path, root: Path, name: str, kind: str, n: int, batch: int, device: str, label: str = "") -> Path:
    inputs, judge = NETWORKS[name]
    return plan_store(
        tmp,
        f"{name}-{kind}{label}-{n}",
        {
            "seed": 1,
            "injections": n,
            "batch_size": batch,
            "device": device,
            "models": {name: {"build": f"{root / 'build.py'}:{name}"}},
            "inputs": {"source": str(root / inputs), "count": 2 * batch},
            "judge": judge,
            "resume": kind == "resumed",
            "layer_weighting": "elements",
        },
    )


def main() -> None:
    keep_freed_memory()
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="0.5 s per measurement and 2 rounds instead of 2 s and 3")
    ap.add_argument("--seconds", type=float, help="about how long each measurement lasts")
    ap.add_argument("--rounds", type=int, help="rounds of fault-free, whole and resumed measurements")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--networks", default=",".join(NETWORKS))
    ap.add_argument("--json", type=Path, help="also write every rate to this file")
    args = ap.parse_args()
    seconds = args.seconds or (0.5 if args.quick else 2.0)
    rounds = args.rounds or (2 if args.quick else 3)
    print(machine(args.device))
    print(f"batch {args.batch}, {2 * args.batch} inputs, {rounds} rounds of about {seconds:g} s per measurement")
    out: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = project(Path(tmp) / "project", inputs=2 * args.batch)
        for name in args.networks.split(","):
            out[name] = measure(Path(tmp), root, name, args.batch, args.device, seconds, rounds)
            row = out[name]
            print(
                f"{name:10s} fault-free {row['fault_free']:8.1f} inputs/s (rounds {row['fault_free_spread']}), "
                f"{int(row['injections'])} injections per mode and round"
            )
            for kind in KINDS:
                print(
                    f"  {kind:8s} "
                    + "; ".join(
                        f"{m} {row[f'{kind}_{m}']:8.1f} inj/s = {row[f'{kind}_{m}_ratio']:.2f}x "
                        f"({row[f'{kind}_{m}_spread']})"
                        for m in MODES
                    )
                )
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(args.device), "batch": args.batch, "rates": out}, indent=2))


def measure(tmp: Path, root: Path, name: str, batch: int, device: str, seconds: float, rounds: int) -> dict:
    """Rounds of fault-free inference, then a whole-pass and a resumed campaign of each mode on
    fresh stores, then fault-free again: each campaign's ratio is against the mean of the
    fault-free measurements either side of it, and the figures are medians over the rounds, so
    the drift of a shared machine hits both sides of a ratio alike. Each measurement lasts about
    ``seconds``: a run of a few passes on a small network measures the machine's noise."""
    probe = plan(tmp, root, name, "whole", batch, batch, device, "-probe")
    passes = max(4, round(fault_free(probe, name, device, batch, 4) * seconds / batch))
    n = passes * batch
    free = [fault_free(probe, name, device, batch, passes)]
    rates: dict[str, list[float]] = {}
    ratios: dict[str, list[float]] = {}
    for r in range(rounds):
        got = {}
        for kind in KINDS:
            for mode, rate in campaign(plan(tmp, root, name, kind, n, batch, device, str(r)), n).items():
                got[f"{kind}_{mode}"] = rate
        free.append(fault_free(probe, name, device, batch, passes))
        for key, rate in got.items():
            rates.setdefault(key, []).append(rate)
            ratios.setdefault(key, []).append(rate / ((free[-2] + free[-1]) / 2))
    row: dict = {"injections": float(n), "fault_free": statistics.median(free), "fault_free_spread": _spread(free)}
    for key in rates:
        row[key] = statistics.median(rates[key])
        row[f"{key}_ratio"] = statistics.median(ratios[key])
        row[f"{key}_spread"] = _spread(ratios[key], "x")
    return row


def _spread(values: list[float], unit: str = "") -> str:
    return f"{min(values):.2f}{unit} to {max(values):.2f}{unit}" if unit else f"{min(values):.0f} to {max(values):.0f}"


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
