"""In-process injection throughput against its limit and against PyTorchFI, measured in one run.

    python bench/inprocess.py [--quick] [--device cpu|cuda] [--batch 256] [--archs resnet20,resnet44] [--json F]

For each network (the committed ResNet-20 and ResNet-44 CIFAR-10 baselines):

- limit: fault-free inference of the batch (images/s);
- kernel: the faulted forward pass alone, one injection per batch row, both modes;
- resumed kernel (delayed start): one claim window (WINDOW_CHUNKS batches) of sites drawn with
  each layer weighting, sorted by layer as the runner sorts it, each pass starting from the golden activations of
  its earliest fault's layer; beside it the ratio expected from the layer costs (MACs left after
  the fault layer over a whole pass's, per site and for these passes);
- campaign: `fi-campaign`'s whole in-process loop (claim from SQLite, fault, forward, classify,
  record) on a planned store, one worker, after its start-up: whole passes (resume: false) and
  resumed passes with each weighting.

The PyTorchFI comparison (pip install '.[bench]') makes the same single-bit flips (same layers,
elements and bits; PyTorchFI's own single-bit model quantises to 8 bits, so a custom function
flips the float32 bit as fi-campaign does) on the same model and images, used two ways: one
fault per forward pass on a batch of one (its per-injection API), and one fault per batch row
(its batched API, the best it can do). The script checks that both produce fi-campaign's logits,
and that the resumed passes produce the whole passes' logits bit for bit. --json F also writes
every rate and check to F (bench/gpu_check.py reads it).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch

from bench.common import alternating, machine, plan_store
from fi_campaign.config import Config
from fi_campaign.engine.executors.inprocess import fault_batch
from fi_campaign.engine.grouping import WINDOW_CHUNKS, layer_chunks, window_size
from fi_campaign.heap import keep_freed_memory
from fi_campaign.models import zoo
from fi_campaign.models.faults import describe_layers, draw_sites, layer_weights
from fi_campaign.models.powerlaw import FaultModelRecord
from fi_campaign.models.resnet import build
from fi_campaign.models.resume import expected_work, resume_points
from fi_campaign.plan.planner import check_fault_model
from fi_campaign.store import Site, WorkloadRecord
from fi_campaign.workload.images import image_digest, workload_images
from fi_campaign.workload.model import Workload

IMAGES = 256
WEIGHTINGS = ("elements", "macs")
MODES = ("single_bit", "warp_random")
BUDGET_MB = Config("c", {}).resume_cache_mb  # the campaign default, per worker


def checkpoint(arch: str) -> str:
    return f"zoo:{arch}-cifar10-baseline"


def sites_for(layers, mode: str, n: int, seed: int = 1, weighting: str = "elements") -> list[Site]:
    d = draw_sites(layers, mode, n, IMAGES, weighting, np.random.default_rng(seed))
    bit = mode == "single_bit"
    return [
        Site(
            id=i,
            model="m",
            mode=mode,
            layer=int(d["layer"][i]),
            layer_name="",
            image=i % IMAGES,
            element=int(d["element"][i]),
            bit=int(d["bit"][i]) if bit else None,
            width=None if bit else int(d["width"][i]),
            value_seed=None if bit else int(d["value_seed"][i]),
        )
        for i in range(n)
    ]


def layer_of(s: Site) -> int:
    assert s.layer is not None  # every site drawn here is a framework-level one
    return s.layer


def element_of(s: Site) -> int:
    assert s.element is not None
    return s.element


def pass_work(points, kept: list[int], chunks: list[list[int]]) -> float:
    """Mean share of a whole pass that passes starting at each chunk's earliest layer run."""

    def start_share(layer: int) -> float:
        before = [k for k in kept if k <= layer]
        return points[before[-1]].macs_after / points[0].macs_total if before else 1.0

    return float(np.mean([start_share(min(c)) for c in chunks]))


def scheduled_work(points, kept: list[int], layers_by_id: list[int], batch: int) -> float:
    """pass_work of the passes the runner makes of sites claimed in id order (one worker)."""
    chunks, i = [], 0
    while i < len(layers_by_id):
        take = window_size(batch, len(layers_by_id) - i, 1)
        window = [
            Site(
                id=j,
                model="m",
                mode="x",
                layer=k,
                layer_name="",
                image=0,
                element=0,
                bit=0,
                width=None,
                value_seed=None,
            )
            for j, k in enumerate(layers_by_id[i : i + take])
        ]
        chunks += [[layer_of(s) for s in c] for c in layer_chunks(window, batch)]
        i += take
    return pass_work(points, kept, chunks)


def pytorchfi_contenders(
    ckpt: str, w: Workload, layers, sites: list[Site], per_injection: int, device: str
) -> dict[str, tuple[int, Callable[[], np.ndarray]]]:
    """PyTorchFI making fi-campaign's single-bit flips ``sites``: (injections, call) per usage."""
    from pytorchfi.core import fault_injection

    model, _ = zoo.load(ckpt, device=device)  # the same weights without fi-campaign's hooks
    x = w.inputs[torch.from_numpy(np.array([s.image for s in sites])).to(w.inputs.device)]
    kinds = [torch.nn.Conv2d, torch.nn.Linear]

    def declare(pfi, chosen: list[Site]):
        def flip(module, inputs, out):
            layer = pfi.get_current_layer()
            for i, s in enumerate(chosen):
                if s.layer == layer:
                    assert s.bit is not None  # single-bit sites
                    word = out[pfi.corrupt_batch[i]].view(-1).view(torch.int32)
                    word[element_of(s)] ^= int(np.uint32(1 << s.bit).view(np.int32))
            pfi.updateLayer()
            if pfi.get_current_layer() >= pfi.get_total_layers():
                pfi.reset_current_layer()

        at = [tuple(np.unravel_index(element_of(s), layers[layer_of(s)].shape)) + (None, None) for s in chosen]
        return pfi.declare_neuron_fi(
            batch=list(range(len(chosen))),
            layer_num=[s.layer for s in chosen],
            dim1=[a[0] for a in at],
            dim2=[a[1] for a in at],
            dim3=[a[2] for a in at],
            function=flip,
        )

    cuda = device != "cpu"
    one = fault_injection(model, 1, input_shape=[3, 32, 32], layer_types=kinds, use_cuda=cuda)
    many = fault_injection(model, len(sites), input_shape=[3, 32, 32], layer_types=kinds, use_cuda=cuda)

    def per_site() -> np.ndarray:
        with torch.inference_mode():
            return np.concatenate(
                [declare(one, [s])(x[i : i + 1]).float().cpu().numpy() for i, s in enumerate(sites[:per_injection])]
            )

    def batched() -> np.ndarray:
        with torch.inference_mode():
            return declare(many, sites)(x).float().cpu().numpy()

    return {"PyTorchFI, one per pass": (per_injection, per_site), "PyTorchFI, one per row": (len(sites), batched)}


def resumed_contenders(
    w: Workload, layers, batch: int, fm: FaultModelRecord, expected: dict[str, float], checks: dict[str, bool]
) -> dict[str, tuple[int, Callable[[], np.ndarray]]]:
    """Delayed start: a claim window of sites per weighting and mode, run sorted by layer; checks
    that they give the whole passes' logits bit for bit, and fills ``expected``."""
    assert w.values is not None  # open_workload keeps every layer's
    points, kept = resume_points(w.model), w.kept
    out: dict[str, tuple[int, Callable[[], np.ndarray]]] = {}
    for weighting in WEIGHTINGS:
        per_site = expected_work(points, layer_weights(layers, weighting), kept)
        for mode in MODES:
            chunks = layer_chunks(sites_for(layers, mode, WINDOW_CHUNKS * batch, seed=2, weighting=weighting), batch)
            rows = [np.array([s.image for s in c]) for c in chunks]

            def run(chunks=chunks, rows=rows, resume=True) -> np.ndarray:
                return np.concatenate(
                    [w.forward(r, fault_batch(c, fm), resume) for c, r in zip(chunks, rows, strict=False)]
                )

            same = np.array_equal(run().view(np.uint32), run(resume=False).view(np.uint32))
            print(
                f"  resumed {mode} {weighting}: logits {'bit for bit' if same else 'NOT bit for bit'} the whole passes'"
            )
            name = f"resumed {mode} {weighting}"
            checks[f"{name}: logits bit for bit the whole passes'"] = bool(same)
            out[name] = (WINDOW_CHUNKS * batch, run)
            expected[name] = 1 / pass_work(points, kept, [[layer_of(s) for s in c] for c in chunks])
            expected[f"{weighting} per site"] = 1 / per_site
    return out


def kernel_rates(
    ckpt: str,
    w: Workload,
    layers,
    batch: int,
    rounds: int,
    per_injection: int,
    device: str,
    expected: dict[str, float],
    checks: dict[str, bool],
) -> dict[str, float]:
    """Injections (images) per second of each contender, timed alternately in one run."""
    fm = check_fault_model(Config("c", {}))  # dsn2021-fu FFMA common, as a campaign stores it
    rows = np.arange(batch) % IMAGES
    sites = {m: sites_for(layers, m, batch) for m in MODES}
    contenders: dict[str, tuple[int, Callable[[], np.ndarray]]] = {"fault-free": (batch, lambda: w.forward(rows))}

    def faulted(chosen: list[Site]) -> Callable[[], np.ndarray]:
        return lambda: w.forward(rows, fault_batch(chosen, fm), resume=False)  # the faults built in the timing

    contenders |= {m: (batch, faulted(s)) for m, s in sites.items()}
    contenders |= resumed_contenders(w, layers, batch, fm, expected, checks)
    try:
        contenders |= pytorchfi_contenders(ckpt, w, layers, sites["single_bit"], per_injection, device)
    except ImportError:
        print("  PyTorchFI: not installed (pip install '.[bench]')")
    for name in [c for c in contenders if c.startswith("PyTorchFI")]:
        ours = contenders["single_bit"][1]()
        theirs = contenders[name][1]()
        same = np.array_equal(theirs.view(np.uint32), ours[: len(theirs)].view(np.uint32))
        top1 = (theirs.argmax(1) == ours[: len(theirs)].argmax(1)).mean()
        print(
            f"  {name}: logits {'bit for bit' if same else 'not bit for bit'} fi-campaign's, "
            f"top-1 agrees on {top1:.1%} of {len(theirs)} injections"
        )
        checks[f"{name}: logits bit for bit fi-campaign's"] = bool(same)
        checks[f"{name}: top-1 agrees on every injection"] = bool(top1 == 1.0)
    med = alternating({k: f for k, (_, f) in contenders.items()}, rounds)
    return {k: contenders[k][0] / t for k, t in med.items()}


def campaign_rate(
    ckpt: str, folder: Path, batch: int, device: str, n: int, resume: bool, weighting: str
) -> tuple[dict[str, float], dict[str, float]]:
    """Injections per second of each mode's loop, and the rate expected from the layer costs
    of the passes it makes (relative to fault-free inference)."""
    import sqlite3

    from fi_campaign.engine import runner
    from fi_campaign.store import Store

    name = f"bench-{Path(ckpt).stem.replace(':', '-')}-{'resume' if resume else 'whole'}-{weighting}"
    db = plan_store(
        folder,
        name,
        {
            "seed": 1,
            "injections": n,
            "batch_size": batch,
            "device": device,
            "models": {"m": ckpt},
            "images": {"source": "bundled", "count": IMAGES},
            "resume": resume,
            "layer_weighting": weighting,
        },
    )
    store = Store.open(db)
    expected = {m: 1.0 for m in MODES}
    if resume:
        record = store.campaign()
        arch = record.models["m"].arch
        assert arch is not None  # a committed CIFAR ResNet
        points = resume_points(build(arch))
        plan = record.models["m"].resume
        assert plan is not None  # resume: true plans a delayed start
        print(
            f"  campaign plan ({weighting}): {len(plan.layers)} of {len(points)} layers kept, "
            f"{plan.cache_mb:,.0f} MB of {plan.budget_mb} MB"
        )
        with sqlite3.connect(db) as con:
            for m in MODES:
                layers = [k for (k,) in con.execute("SELECT layer FROM site WHERE mode = ? ORDER BY id", (m,))]
                expected[m] = 1 / scheduled_work(points, list(plan.layers), layers, batch)
    stamps: dict[str, list[float]] = {}

    def stamp(p: runner.Progress) -> None:
        if p.phase == runner.INJECTING:
            stamps.setdefault(p.mode, []).append(time.perf_counter())

    runner.work(runner.Job(str(db)), store, stamp)
    # each mode's first injecting progress call comes before its first chunk, the last after its last
    return {m: n / (s[-1] - s[0]) for m, s in stamps.items()}, expected


def open_workload(ckpt: str, digest: str, device: str, batch: int) -> tuple[Workload, float, float]:
    """The workload with the golden activations of every layer, and the seconds its start takes
    without and with recording them."""
    images, indices = workload_images("bundled", IMAGES, 0)
    workload = WorkloadRecord(
        source="bundled",
        dataset=images.dataset,
        count=IMAGES,
        seed=0,
        indices=tuple(indices.tolist()),
        images_sha256=digest,
    )
    t0 = time.perf_counter()
    Workload.open(ckpt, "", workload, device, batch).close()
    t1 = time.perf_counter()
    meta, _ = zoo.read(ckpt)
    every = list(range(len(resume_points(build(meta.arch)))))
    w = Workload.open(ckpt, "", workload, device, batch, resume_layers=every)
    return w, t1 - t0, time.perf_counter() - t1


def main() -> None:
    keep_freed_memory()  # as every fi-campaign process does
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--archs", default="resnet20,resnet44")
    ap.add_argument("--json", type=Path, help="also write every rate and check to this file")
    args = ap.parse_args()
    report: dict = {
        "machine": machine(args.device),
        "device": args.device,
        "quick": args.quick,
        "batch": args.batch,
        "images": IMAGES,
        "archs": {},
    }
    rounds, per_injection, n = (3, 30, 1024) if args.quick else (10, 200, 8192)  # 8,192: one full window
    print(machine(args.device))
    print(
        f"{IMAGES} bundled CIFAR-10 test images, batch {args.batch}; kernel: median of {rounds} alternating "
        f"passes, every layer's golden activations kept; campaign: {n} injections per mode, "
        f"golden activations within the default {BUDGET_MB} MB"
    )
    digest = image_digest(workload_images("bundled", IMAGES, 0)[0].images)
    with tempfile.TemporaryDirectory() as tmp:
        for arch in args.archs.split(","):
            ckpt = checkpoint(arch)
            w, start, start_kept = open_workload(ckpt, digest, args.device, args.batch)
            layers = describe_layers(w.model)
            points = resume_points(w.model)
            print(f"\n{arch} ({ckpt}):")
            assert w.values is not None
            print(
                f"  golden activations: {len(w.kept)} of {len(points)} layers kept, "
                f"{w.values.nbytes / 2**20:,.0f} MB; workload start {start:.2f} s, with them {start_kept:.2f} s"
            )
            expected: dict[str, float] = {}
            checks: dict[str, bool] = {}
            k = kernel_rates(ckpt, w, layers, args.batch, rounds, per_injection, args.device, expected, checks)
            limit = k["fault-free"]
            print(f"  fault-free inference {limit:,.0f} images/s")
            for mode in MODES:
                print(f"  kernel   {mode:<12} {k[mode]:8,.0f} inj/s = {k[mode] / limit:.1%} of the limit")
            for weighting in WEIGHTINGS:
                for mode in MODES:
                    name = f"resumed {mode} {weighting}"
                    print(
                        f"  resumed  {mode:<12} {weighting:<8} {k[name]:8,.0f} inj/s = {k[name] / limit:.2f}x the "
                        f"limit (expected {expected[name]:.2f}x for these passes, "
                        f"{expected[weighting + ' per site']:.2f}x per site)"
                    )
            loops = {}
            for resume, weighting in ((False, "elements"), (True, "elements"), (True, "macs")):
                rates, exp = campaign_rate(ckpt, Path(tmp), args.batch, args.device, n, resume, weighting)
                loops[(resume, weighting)] = rates
                for mode, rate in rates.items():
                    how = f"resumed {weighting}" if resume else "whole passes"
                    print(
                        f"  campaign {mode:<12} {how:<17} {rate:8,.0f} inj/s = {rate / limit:.2f}x the limit "
                        f"(expected {exp[mode]:.2f}x)"
                    )
            for name in [c for c in k if c.startswith("PyTorchFI")]:
                print(
                    f"  {name}: {k[name]:,.1f} inj/s; fi-campaign single_bit is {k['single_bit'] / k[name]:,.1f}x "
                    f"(whole-pass kernel), {k['resumed single_bit elements'] / k[name]:,.2f}x (resumed kernel), "
                    f"{loops[(True, 'elements')]['single_bit'] / k[name]:,.2f}x (resumed campaign loop)"
                )
            w.close()
            report["archs"][arch] = {
                "checkpoint": ckpt,
                "fault_free_images_s": limit,
                "kernel_inj_s": k,
                "expected_x": expected,
                "campaign_inj_s": {("resumed " if r else "whole ") + wt: rates for (r, wt), rates in loops.items()},
                "pytorchfi": any(c.startswith("PyTorchFI") for c in k),
                "checks": checks,
            }
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
