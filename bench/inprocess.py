"""In-process injection throughput against its limit, fault-free inference of the same model and
batch on the same device, measured in one run.

    python bench/inprocess.py [--model zoo:resnet20-cifar10-baseline] [--batch 256] [--quick] [--device cpu]
"""
from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import torch

from campaign.runner import fault_batch
from campaign.store import Site
from campaign.workload import Workload
from models import data, powerlaw
from models.faults import describe_layers, draw_sites


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t0) / repeats


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="zoo:resnet20-cifar10-baseline")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    repeats = 3 if args.quick else 10
    images = data.load("bundled")
    workload = {"source": "bundled", "count": 500, "seed": 0}
    from campaign.workload import image_digest, workload_images

    workload["images_sha256"] = image_digest(workload_images("bundled", 500, 0)[0].images)
    w = Workload.open(args.model, "", workload, args.device, args.batch)
    layers = describe_layers(w.model)
    law = powerlaw.entry("dsn2021-fu", "FFMA", "common")
    fault_model = {"size": "common", "entries": {"common": [law.x_min, law.alpha]}}
    rows = np.arange(args.batch) % len(images)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), device {args.device}")
    clean = timed(lambda: w.forward(rows), repeats)
    print(f"{args.model}, batch {args.batch}: fault-free inference {args.batch / clean:,.0f} images/s")
    for mode in ("single_bit", "warp_random"):
        drawn = draw_sites(layers, mode, args.batch, len(images), "elements", np.random.default_rng(1))
        sites = [Site(i, "m", mode, int(drawn["layer"][i]), "", int(rows[i]), int(drawn["element"][i]),
                      int(drawn["bit"][i]) if mode == "single_bit" else None,
                      int(drawn["width"][i]) if mode != "single_bit" else None,
                      int(drawn["value_seed"][i]) if mode != "single_bit" else None) for i in range(args.batch)]
        faulty = timed(lambda: w.forward(rows, fault_batch(sites, fault_model)), repeats)
        print(f"  {mode}: {args.batch / faulty:,.0f} injections/s = {clean / faulty:.1%} of fault-free inference")


if __name__ == "__main__":
    main()
