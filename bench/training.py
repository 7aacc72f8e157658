"""Cost of hardening, measured in one run on this machine:
- epoch time of fault-aware training over plain training (same network, data and recipe: the
  committed zoo's, bench/zoo-resnet20.yaml, with one epoch);
- inference time of the committed hardened ResNet-20 over the baseline (same batch, images),
  of its NaN-safe twin (the same weights with relu6-nansafe) over the hardened one, and of each
  activation x block order (untrained networks) over ReLU/conv-bn-act.

    python bench/training.py [--data ../shared/data/cifar10-jpeg] [--images 5000] [--quick]
                             [--inference-only] [--arch resnet20] [--device cpu]

Runs alternate (plain, FAT, plain, FAT, ...) so drift on a shared machine hits both alike.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from bench.common import alternating, machine
from fi_campaign.heap import keep_freed_memory
from fi_campaign.models import data, zoo
from fi_campaign.models.resnet import ACTIVATIONS, ORDERS, Arch, build
from fi_campaign.models.train import Recipe, preset, train

ZOO_RECIPE = Path(__file__).with_name("zoo-resnet20.yaml")


def epoch_seconds(name: str, depth: int, source: str, images: int, out: Path, device: str) -> float:
    """One epoch of the committed zoo's recipe (gradient clipping included)."""
    arch, recipe = preset(name, depth, 10, Recipe.read(ZOO_RECIPE, epochs=1, seed=3))
    meta = train(arch, recipe, source, out, device, images)
    return meta.recipe["history"][0]["seconds"]


def main() -> None:
    keep_freed_memory()  # as every fi-campaign process does
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="../shared/data/cifar10-jpeg")
    ap.add_argument("--images", type=int, default=5000)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--inference-only", action="store_true")
    ap.add_argument(
        "--arch",
        choices=["resnet20", "resnet32", "resnet44", "resnet56"],
        default="resnet20",
        help="network of the training measurement",
    )
    ap.add_argument("--device", default="cpu", help="device of the training measurement (cpu, cuda)")
    args = ap.parse_args()
    rounds = 2 if args.quick else 4
    print(machine(args.device))
    if not args.inference_only:
        training_cost(int(args.arch[6:]), args.data, args.images, rounds, args.device)
    inference_cost(10 if args.quick else 30)


def training_cost(depth: int, source: str, n_images: int, rounds: int, device: str) -> None:
    times: dict[str, list[float]] = {"relu6": [], "relu6-fat": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            for name in times:
                times[name].append(epoch_seconds(name, depth, source, n_images, Path(tmp) / f"{name}{r}.pt", device))
    plain, fat = statistics.median(times["relu6"]), statistics.median(times["relu6-fat"])
    print(
        f"one epoch of ResNet-{depth} (ReLU6) on {device}, {n_images} CIFAR-10 training images, batch 128, "
        f"{rounds} rounds:"
    )
    print(f"  plain:       {', '.join(f'{t:.1f}' for t in times['relu6'])} s (median {plain:.1f})")
    print(f"  fault-aware: {', '.join(f'{t:.1f}' for t in times['relu6-fat'])} s (median {fat:.1f})")
    print(f"  fault-aware / plain: {fat / plain:.3f}")


def inference_cost(reps: int) -> None:
    images = data.load("bundled")
    x = data.normalise(images.images[:256], images.dataset)
    models = {n: zoo.load(f"zoo:resnet20-cifar10-{n}")[0] for n in ("baseline", "hardened", "hardened-nansafe")}
    models |= {f"{a}/{o}": build(Arch(20, a, o)).eval() for a in ACTIVATIONS for o in ORDERS}
    with torch.inference_mode():
        med = alternating({n: partial(m, x) for n, m in models.items()}, reps)
    print(f"inference, batch 256, {reps} alternating passes (medians):")
    print(
        f"  committed: baseline {1000 * med['baseline']:.1f} ms, hardened {1000 * med['hardened']:.1f} ms; "
        f"hardened / baseline = {med['hardened'] / med['baseline']:.3f}"
    )
    print(
        f"  committed: hardened-nansafe {1000 * med['hardened-nansafe']:.1f} ms; "
        f"hardened-nansafe / hardened = {med['hardened-nansafe'] / med['hardened']:.3f}"
    )
    ref = med["relu/conv-bn-act"]
    for a in ACTIVATIONS:
        for o in ORDERS:
            print(
                f"  untrained {a}/{o}: {1000 * med[f'{a}/{o}']:.1f} ms = {med[f'{a}/{o}'] / ref:.3f} x relu/conv-bn-act"
            )


if __name__ == "__main__":
    main()
