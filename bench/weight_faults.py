"""Weight faults on the zoo ResNet-20: the weight_bit campaign loop against fault-free inference,
and how close batched weight faults come to networks that really hold the flipped bit.

    python bench/weight_faults.py [--quick] [--device cpu|cuda] [--batch 64] [--json F]

- fault-free: the workload's own forward, ``batch`` rows a pass, inputs per second, before and
  after the campaigns (their mean is the reference);
- campaign: `fi-campaign`'s in-process loop (one worker, after its start-up) on stores planned
  with `modes: [single_bit, weight_bit]`, whole passes and delayed start, injections per second
  (single_bit beside it, same run, for comparison);
- agreement: ``sites`` drawn weight_bit sites, each row of the batched pass against the network
  whose parameter really holds that bit (its own pass of the same batch): how many differ in outcome
  class (tolerance 0), the largest relative logit difference, how many critical SDCs differ.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch

from bench.common import machine, plan_store
from bench.own_models import campaign, fault_free
from fi_campaign.heap import keep_freed_memory

MODEL = "zoo:resnet20-cifar10-baseline"
MODES = ("single_bit", "weight_bit")
KINDS = ("whole", "resumed")


def agreement(sites: int, batch: int, seed: int = 0) -> dict[str, float]:
    from fi_campaign.models import zoo
    from fi_campaign.models.faults import describe_layers
    from fi_campaign.models.resnet import injectable_layers
    from fi_campaign.models.weight_faults import (
        WEIGHT_BIT,
        describe_parameters,
        draw_weight_sites,
        flipped,
        weight_faults,
    )
    from fi_campaign.workload.model import Workload

    model, _ = zoo.load(MODEL)
    torch.manual_seed(seed)
    x = torch.randn(batch, 3, 32, 32)
    w = Workload.of_model(model, None, x, batch)
    slots, infos = describe_parameters(injectable_layers(model)), describe_layers(model)
    rng = np.random.default_rng(seed)
    classes = critical = 0
    worst = 0.0
    for start in range(0, sites, batch):
        n = min(batch, sites - start)
        drawn = draw_weight_sites(slots, infos, WEIGHT_BIT, n, batch, "elements", rng)
        rows = [dict(mode=WEIGHT_BIT, **{k: v[i] for k, v in drawn.items()}) for i in range(n)]
        faulty = torch.from_numpy(w.forward(drawn["image"], weight_faults(rows, np.arange(n), w.injector.layers)))
        golden = torch.from_numpy(w.golden[drawn["image"]])
        for i, s in enumerate(rows):
            m = copy.deepcopy(model)
            p = dict(m.named_parameters())[s["parameter"]]
            with torch.no_grad():
                p.copy_(flipped(p, int(s["element"]), int(s["bit"])))
                ref = m(x)[int(s["image"])]  # the batch shape of the golden run, whose bits it is judged against
            classes += outcome(faulty[i], golden[i]) != outcome(ref, golden[i])
            critical += (outcome(faulty[i], golden[i]) == "critical") != (outcome(ref, golden[i]) == "critical")
            fin = torch.isfinite(ref) & torch.isfinite(faulty[i])
            if fin.any():
                worst = max(worst, float(((faulty[i] - ref).abs()[fin] / ref.abs()[fin].clamp_min(1)).max()))
    return {"sites": sites, "class_differs": classes, "critical_differs": critical, "worst_relative": worst}


def outcome(y: torch.Tensor, golden: torch.Tensor) -> str:
    if torch.equal(y, golden):
        return "masked"
    if torch.isnan(y).any() or int(y.argmax()) != int(golden.argmax()):
        return "critical"
    return "tolerable"


def main() -> None:
    keep_freed_memory()
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="4 passes per mode instead of 16, 128 agreement sites")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--json", type=Path, help="also write every figure to this file")
    args = ap.parse_args()
    passes = 4 if args.quick else 16
    n = passes * args.batch
    print(machine(args.device))
    print(f"{MODEL}, batch {args.batch}, {n} injections per mode, {2 * args.batch} bundled CIFAR-10 images")
    with tempfile.TemporaryDirectory() as tmp:
        stores = {
            kind: plan_store(
                Path(tmp),
                f"weights-{kind}",
                {
                    "seed": 1,
                    "injections": n,
                    "batch_size": args.batch,
                    "device": args.device,
                    "modes": list(MODES),
                    "models": {"net": MODEL},
                    "inputs": {"source": "bundled", "count": 2 * args.batch},
                    "resume": kind == "resumed",
                },
            )
            for kind in KINDS
        }
        before = fault_free(stores["whole"], "net", args.device, args.batch, passes)
        rates = {kind: campaign(db, n) for kind, db in stores.items()}
        after = fault_free(stores["whole"], "net", args.device, args.batch, passes)
    free = (before + after) / 2
    print(f"fault-free {free:8.1f} inputs/s (before {before:.1f}, after {after:.1f})")
    for kind in KINDS:
        said = (f"{m} {rates[kind][m]:8.1f} inj/s = {rates[kind][m] / free:.2f}x" for m in MODES)
        print(f"  {kind:8s} " + "; ".join(said))
    t0 = time.perf_counter()
    agree = agreement(128 if args.quick else 512, args.batch)
    print(
        f"agreement, {agree['sites']} weight_bit sites on random inputs: outcome class differs in "
        f"{agree['class_differs']}, critical SDC in {agree['critical_differs']}, largest relative logit "
        f"difference {agree['worst_relative']:.2g} ({time.perf_counter() - t0:.0f} s)"
    )
    out = {"fault_free": [before, after], "rates": rates, "agreement": agree}
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(args.device), **out}, indent=2))


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
