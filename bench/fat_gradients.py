"""Where fault-aware training's gradient comes from: for a trained checkpoint, the mean loss and
gradient norm of a training batch when each conv/linear layer is the one drawn for noise, at the
noise of a given epoch (default: the recipe's last), next to a clean batch.

    python bench/fat_gradients.py zoo:resnet20-cifar10-hardened [--data ../shared/data/cifar10-jpeg]
                                  [--epoch E] [--batches 5]

A layer whose noisy batches carry a gradient many times a clean batch's dominates the update:
the network is taught to survive noise it cannot correct, at the cost of clean accuracy.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch
import torch.nn.functional as F

from bench.common import machine
from fi_campaign.heap import keep_freed_memory
from fi_campaign.models import data, zoo
from fi_campaign.models.faults import Injector
from fi_campaign.models.train import Recipe, augment, fault_aware_batch


def batch_gradient(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    model.zero_grad(set_to_none=True)
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    squares = [(p.grad**2).sum() for p in model.parameters() if p.grad is not None]
    norm = torch.stack(squares).sum().sqrt()
    return float(loss.detach()), float(norm)


def main() -> None:
    keep_freed_memory()
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--data", default="../shared/data/cifar10-jpeg")
    ap.add_argument("--epoch", type=int, help="0-based epoch whose noise to apply (default: the last)")
    ap.add_argument("--batches", type=int, default=5)
    args = ap.parse_args()
    model, meta = zoo.load(args.model)
    recipe = Recipe.of_checkpoint(meta.recipe)
    epoch = recipe.epochs - 1 if args.epoch is None else args.epoch
    train_set = data.load(args.data, "train")
    x_all = data.normalise(train_set.images, meta.dataset)
    y_all = torch.from_numpy(train_set.labels)
    injector = Injector(model)
    model.train()
    gen = torch.Generator().manual_seed(0)
    print(machine())
    print(
        f"{args.model}: noise of epoch {epoch + 1} (magnitude up to {max(1, epoch)}), "
        f"{args.batches} batches of {recipe.batch_size} per row"
    )
    print(f"{'layer drawn':<22} {'loss':>7} {'grad norm':>10}")
    for layer in [None, *range(len(injector.layers))]:
        losses, norms = [], []
        for _ in range(args.batches):
            idx = torch.randint(0, len(y_all), (recipe.batch_size,), generator=gen)
            x, y = augment(x_all[idx], gen, recipe.augment), y_all[idx]
            if layer is None:
                loss, norm = batch_gradient(model, x, y)
            else:
                noise = fault_aware_batch(len(injector.layers), len(idx), epoch, recipe, gen, layer)
                with injector.armed(noise):
                    loss, norm = batch_gradient(model, x, y)
            losses.append(loss)
            norms.append(norm)
        name = "none (clean)" if layer is None else injector.layers[layer][0]
        print(f"{name:<22} {statistics.mean(losses):>7.3f} {statistics.mean(norms):>10.3f}")


if __name__ == "__main__":
    main()
