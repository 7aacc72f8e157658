"""Training of CIFAR ResNets, plain or fault-aware (Cavagnero et al., IOLTS 2022, Section IV-C).

Fault-aware training uses the campaign's own injector: for every batch one conv/linear layer is
drawn, ``fat_images`` of the batch's images get block noise at that layer's output, each channel
with probability ``fat_channel_p``, with a relative magnitude drawn from Uniform[0, max(1, epoch)]
(the maximum grows linearly with the epoch) and a random sign.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from models import data as cifar
from models import zoo
from models.faults import Injector, PlaneNoise
from models.resnet import Arch, CifarResNet, build

BLOCK = 2


@dataclass
class Recipe:
    """Everything that decides the weights besides the data; stored in the checkpoint."""

    epochs: int = 30
    batch_size: int = 128
    optimizer: str = "sgd"  # sgd | adamw
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "onecycle"  # onecycle | cosine
    label_smoothing: float = 0.0
    grad_clip: float | None = None
    augment: list[str] = field(default_factory=lambda: ["crop4", "hflip"])
    fault_aware: bool = False
    fat_images: float = 0.75
    fat_channel_p: float = 0.3
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class EpochStats:
    epoch: int
    loss: float
    accuracy: float
    seconds: float


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random 32x32 crop of the zero-padded (4 px) image and horizontal flip, per sample."""
    b = x.shape[0]
    padded = F.pad(x, (4, 4, 4, 4))
    oy = torch.randint(0, 9, (b,), generator=gen)
    ox = torch.randint(0, 9, (b,), generator=gen)
    ar = torch.arange(32)
    rows = (oy[:, None] + ar)[:, :, None]
    cols = (ox[:, None] + ar)[:, None, :]
    flip = torch.rand(b, generator=gen) < 0.5
    cols = torch.where(flip[:, None, None], cols.flip(-1), cols)
    out = padded[torch.arange(b)[:, None, None], :, rows, cols]  # (b, 32, 32, c)
    return out.permute(0, 3, 1, 2).contiguous()


def fault_aware_batch(n_layers: int, batch: int, epoch: int, recipe: Recipe, gen: torch.Generator) -> PlaneNoise:
    layer = int(torch.randint(0, n_layers, (1,), generator=gen))
    hit = torch.rand(batch, generator=gen) < recipe.fat_images
    rows = hit.nonzero().flatten().numpy()
    k = rows.size
    mags = torch.rand(k, generator=gen).numpy() * max(1, epoch)
    signs = np.where(torch.rand(k, generator=gen).numpy() < 0.5, -1.0, 1.0)
    return PlaneNoise(np.full(k, layer), rows, np.full(k, BLOCK), signs * mags,
                      channel_p=(recipe.fat_channel_p,) * 3, generator=gen)


def evaluate(model: CifarResNet, images: torch.Tensor, labels: torch.Tensor, batch: int = 500) -> float:
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(labels), batch):
            correct += int((model(images[i:i + batch]).argmax(1) == labels[i:i + batch]).sum())
    return correct / len(labels)


def _optimizer(model: CifarResNet, r: Recipe) -> torch.optim.Optimizer:
    if r.optimizer == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=r.lr, weight_decay=r.weight_decay)
    return torch.optim.SGD(model.parameters(), lr=r.lr, momentum=r.momentum, weight_decay=r.weight_decay, nesterov=True)


def _scheduler(opt: torch.optim.Optimizer, r: Recipe, steps: int):
    if r.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=r.lr, total_steps=steps, pct_start=0.25)


def train(
    arch: Arch,
    recipe: Recipe,
    source: str,
    out: Path,
    device: str = "cpu",
    limit: int | None = None,
    on_batch: Callable[[int, int, float, float], None] | None = None,
    on_epoch: Callable[[EpochStats], None] | None = None,
) -> zoo.Meta:
    """Train and write ``out`` (with metadata and clean test accuracy); resumable from ``out``.partial.pt.

    ``limit`` trains on the first ``limit`` images only (smoke runs).
    """
    torch.manual_seed(recipe.seed)
    gen = torch.Generator().manual_seed(recipe.seed)
    train_set = cifar.load(source, "train")
    test_set = cifar.load(source, "test")
    dataset = train_set.dataset
    if arch.num_classes != cifar.NUM_CLASSES[dataset]:
        raise cifar.DataError(f"{source} is {dataset} but the network has {arch.num_classes} outputs.")
    if limit is not None and limit < len(train_set):
        train_set = train_set.subset(cifar.select(len(train_set), limit, recipe.seed))
    n = len(train_set)
    x_train = cifar.normalise(train_set.images, dataset)
    y_train = torch.from_numpy(train_set.labels)
    x_test = cifar.normalise(test_set.images, dataset).to(device)
    y_test = torch.from_numpy(test_set.labels).to(device)

    model = build(arch).to(device)
    injector = Injector(model) if recipe.fault_aware else None
    steps_per_epoch = math.ceil(n / recipe.batch_size)
    opt = _optimizer(model, recipe)
    sched = _scheduler(opt, recipe, recipe.epochs * steps_per_epoch)
    partial = out.with_suffix(".partial.pt")
    start, history = 0, []
    if partial.exists():
        state = torch.load(partial, map_location=device, weights_only=False)
        if state["recipe"] == recipe.to_dict() and state["arch"] == arch.to_dict():
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["opt"])
            sched.load_state_dict(state["sched"])
            gen.set_state(state["gen"])
            start, history = state["epoch"], state["history"]

    for epoch in range(start, recipe.epochs):
        model.train()
        t0 = time.perf_counter()
        perm = torch.randperm(n, generator=gen)
        loss_sum, correct = 0.0, 0
        for step in range(steps_per_epoch):
            idx = perm[step * recipe.batch_size:(step + 1) * recipe.batch_size]
            x = augment(x_train[idx], gen).to(device)
            y = y_train[idx].to(device)
            if injector is not None:
                with injector.armed(fault_aware_batch(len(injector.layers), len(idx), epoch, recipe, gen)):
                    logits = model(x)
            else:
                logits = model(x)
            loss = F.cross_entropy(logits, y, label_smoothing=recipe.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if recipe.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
            opt.step()
            sched.step()
            batch_loss = float(loss.detach())
            loss_sum += batch_loss * len(idx)
            correct += int((logits.argmax(1) == y).sum())
            if on_batch:
                on_batch(epoch, step, batch_loss, correct / min(n, (step + 1) * recipe.batch_size))
        stats = EpochStats(epoch + 1, loss_sum / n, correct / n, time.perf_counter() - t0)
        history.append(asdict(stats))
        torch.save({"recipe": recipe.to_dict(), "arch": arch.to_dict(), "model": model.state_dict(),
                    "opt": opt.state_dict(), "sched": sched.state_dict(), "gen": gen.get_state(),
                    "epoch": epoch + 1, "history": history}, partial)
        if on_epoch:
            on_epoch(stats)

    if injector is not None:
        injector.remove()
    accuracy = evaluate(model, x_test, y_test)
    kind = "gpu" if str(device).startswith("cuda") else f"cpu ({torch.get_num_threads()} threads)"
    meta = zoo.Meta(arch, dataset, {**recipe.to_dict(), "train_images": n, "history": history}, accuracy,
                    f"{dataset} test split at {test_set.source} ({len(test_set)} images)",
                    f"{kind}, {recipe.epochs} epochs, {sum(h['seconds'] for h in history):.0f} s")
    meta = zoo.save(out, model.cpu(), meta)
    partial.unlink(missing_ok=True)
    return meta


PRESETS: dict[str, tuple[str, str, bool]] = {
    # name: (activation, order, fault-aware) - the paper's incremental ablation
    "baseline": ("relu", "conv-bn-act", False),
    "relu6": ("relu6", "conv-bn-act", False),
    "relu6-fat": ("relu6", "conv-bn-act", True),
    "hardened": ("relu6", "conv-act-bn", True),
}


def preset(name: str, depth: int, num_classes: int, recipe: Recipe) -> tuple[Arch, Recipe]:
    activation, order, fat = PRESETS[name]
    recipe = Recipe(**{**recipe.to_dict(), "fault_aware": fat})
    return Arch(depth, activation, order, num_classes), recipe
