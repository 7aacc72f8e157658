"""In-process injection throughput against its limit and against PyTorchFI, measured in one run.

    python bench/inprocess.py [--quick] [--device cpu|cuda] [--batch 256] [--archs resnet20,resnet44]

For each network (ResNet-20: the committed baseline; ResNet-44: an untrained network of the same
shape, as no ResNet-44 checkpoint is committed; weights do not change the arithmetic):

- limit: fault-free inference of the batch (images/s);
- kernel: the faulted forward pass alone, one injection per batch row, both modes;
- campaign: `fi-campaign`'s whole in-process loop (claim from SQLite, fault, forward, classify,
  record) on a planned store, one worker, after its start-up.

The PyTorchFI comparison (pip install '.[bench]') makes the same single-bit flips (same layers,
elements and bits; PyTorchFI's own single-bit model quantises to 8 bits, so a custom function
flips the float32 bit as fi-campaign does) on the same model and images, used two ways: one
fault per forward pass on a batch of one (its per-injection API), and one fault per batch row
(its batched API, the best it can do). The script checks that both produce fi-campaign's logits.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench.common import alternating, machine, plan_store  # noqa: E402
from campaign.heap import keep_freed_memory  # noqa: E402
from campaign.runner import fault_batch  # noqa: E402
from campaign.store import Site  # noqa: E402
from campaign.workload import Workload, image_digest, workload_images  # noqa: E402
from models import powerlaw, zoo  # noqa: E402
from models.faults import describe_layers, draw_sites  # noqa: E402
from models.resnet import Arch, build  # noqa: E402

IMAGES = 256


def checkpoint(arch: str, folder: Path) -> str:
    if arch == "resnet20":
        return "zoo:resnet20-cifar10-baseline"
    path = folder / f"{arch}-untrained.pt"
    torch.manual_seed(0)
    zoo.save(path, build(Arch(int(arch[6:]))).eval(), zoo.Meta(Arch(int(arch[6:])), "cifar10"))
    return str(path)


def sites_for(layers, mode: str, n: int, seed: int = 1) -> list[Site]:
    d = draw_sites(layers, mode, n, IMAGES, "elements", np.random.default_rng(seed))
    bit = mode == "single_bit"
    return [Site(i, "m", mode, int(d["layer"][i]), "", i % IMAGES, int(d["element"][i]),
                 int(d["bit"][i]) if bit else None, None if bit else int(d["width"][i]),
                 None if bit else int(d["value_seed"][i])) for i in range(n)]


def pytorchfi_contenders(ckpt: str, w: Workload, layers, sites: list[Site], per_injection: int,
                         device: str) -> dict[str, tuple[int, Callable[[], np.ndarray]]]:
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
                    word = out[pfi.corrupt_batch[i]].view(-1).view(torch.int32)
                    word[s.element] ^= int(np.uint32(1 << s.bit).view(np.int32))
            pfi.updateLayer()
            if pfi.get_current_layer() >= pfi.get_total_layers():
                pfi.reset_current_layer()

        at = [tuple(np.unravel_index(s.element, layers[s.layer].shape)) + (None, None) for s in chosen]
        return pfi.declare_neuron_fi(batch=list(range(len(chosen))), layer_num=[s.layer for s in chosen],
                                     dim1=[a[0] for a in at], dim2=[a[1] for a in at], dim3=[a[2] for a in at],
                                     function=flip)

    cuda = device != "cpu"
    one = fault_injection(model, 1, input_shape=[3, 32, 32], layer_types=kinds, use_cuda=cuda)
    many = fault_injection(model, len(sites), input_shape=[3, 32, 32], layer_types=kinds, use_cuda=cuda)

    def per_site() -> np.ndarray:
        with torch.inference_mode():
            return np.concatenate([declare(one, [s])(x[i:i + 1]).float().cpu().numpy()
                                   for i, s in enumerate(sites[:per_injection])])

    def batched() -> np.ndarray:
        with torch.inference_mode():
            return declare(many, sites)(x).float().cpu().numpy()

    return {"PyTorchFI, one per pass": (per_injection, per_site), "PyTorchFI, one per row": (len(sites), batched)}


def kernel_rates(ckpt: str, w: Workload, layers, batch: int, rounds: int, per_injection: int,
                 device: str) -> dict[str, float]:
    """Injections (images) per second of each contender, timed alternately in one run."""
    law = powerlaw.entry("dsn2021-fu", "FFMA", "common")
    fm = {"size": "common", "entries": {"common": [law.x_min, law.alpha]}}
    rows = np.arange(batch) % IMAGES
    sites = {m: sites_for(layers, m, batch) for m in ("single_bit", "warp_random")}
    contenders: dict[str, tuple[int, Callable[[], np.ndarray]]] = {"fault-free": (batch, lambda: w.forward(rows))}
    contenders |= {m: (batch, lambda s=s: w.forward(rows, fault_batch(s, fm))) for m, s in sites.items()}
    try:
        contenders |= pytorchfi_contenders(ckpt, w, layers, sites["single_bit"], per_injection, device)
    except ImportError:
        print("  PyTorchFI: not installed (pip install '.[bench]')")
    for name in [c for c in contenders if c.startswith("PyTorchFI")]:
        ours = contenders["single_bit"][1]()
        theirs = contenders[name][1]()
        same = np.array_equal(theirs.view(np.uint32), ours[: len(theirs)].view(np.uint32))
        top1 = (theirs.argmax(1) == ours[: len(theirs)].argmax(1)).mean()
        print(f"  {name}: logits {'bit for bit' if same else 'not bit for bit'} fi-campaign's, "
              f"top-1 agrees on {top1:.1%} of {len(theirs)} injections")
    med = alternating({k: f for k, (_, f) in contenders.items()}, rounds)
    return {k: contenders[k][0] / t for k, t in med.items()}


def campaign_rate(ckpt: str, folder: Path, batch: int, device: str, n: int) -> dict[str, float]:
    from campaign import runner
    from campaign.store import Store

    db = plan_store(folder, f"bench-{Path(ckpt).stem.replace(':', '-')}", {
        "seed": 1, "injections": n, "batch_size": batch, "device": device, "models": {"m": ckpt},
        "images": {"source": "bundled", "count": IMAGES}})
    store = Store.open(db)
    stamps: dict[str, list[float]] = {}
    runner.work(runner.Job(str(db)), store, lambda p: stamps.setdefault(p.mode, []).append(time.perf_counter()))
    # each mode's first progress call comes before its first chunk, the last after its last
    return {m: n / (s[-1] - s[0]) for m, s in stamps.items()}


def main() -> None:
    keep_freed_memory()  # as every fi-campaign process does
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--archs", default="resnet20,resnet44")
    args = ap.parse_args()
    rounds, per_injection, n = (3, 30, 1024) if args.quick else (10, 200, 4096)
    print(machine(args.device))
    print(f"{IMAGES} bundled CIFAR-10 test images, batch {args.batch}; kernel: median of {rounds} alternating "
          f"passes; campaign: {n} injections per mode")
    digest = image_digest(workload_images("bundled", IMAGES, 0)[0].images)
    with tempfile.TemporaryDirectory() as tmp:
        for arch in args.archs.split(","):
            ckpt = checkpoint(arch, Path(tmp))
            w = Workload.open(ckpt, "", {"source": "bundled", "count": IMAGES, "seed": 0, "images_sha256": digest},
                              args.device, args.batch)
            layers = describe_layers(w.model)
            print(f"\n{arch} ({ckpt}):")
            k = kernel_rates(ckpt, w, layers, args.batch, rounds, per_injection, args.device)
            limit = k["fault-free"]
            print(f"  fault-free inference {limit:,.0f} images/s")
            for mode in ("single_bit", "warp_random"):
                print(f"  kernel   {mode:<12} {k[mode]:8,.0f} inj/s = {k[mode] / limit:.1%} of the limit")
            loop = campaign_rate(ckpt, Path(tmp), args.batch, args.device, n)
            for mode, rate in loop.items():
                print(f"  campaign {mode:<12} {rate:8,.0f} inj/s = {rate / limit:.1%} of the limit")
            for name in [c for c in k if c.startswith("PyTorchFI")]:
                print(f"  {name}: {k[name]:,.1f} inj/s; fi-campaign single_bit is {k['single_bit'] / k[name]:,.1f}x "
                      f"(kernel), {loop['single_bit'] / k[name]:,.1f}x (campaign loop)")


if __name__ == "__main__":
    main()
