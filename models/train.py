"""Training of CIFAR ResNets, plain or fault-aware (Cavagnero et al., IOLTS 2022, Section IV-C).

Fault-aware training uses the campaign's own injector: for every batch one conv/linear layer is
drawn, ``fat_images`` of the batch's images get block noise at that layer's output, each channel
with probability ``fat_channel_p``, with a relative magnitude drawn from Uniform[0, max(1, epoch)]
(the maximum grows linearly with the epoch) and a random sign. The gradient norm is clipped
(``grad_clip``): without it, the batches whose noise corrupts the logits dominate training and
cost the hardened ResNet-20 1.55 points of clean accuracy.
"""

from __future__ import annotations

import math
import pickle
import reprlib
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import yaml

from fi_campaign.errors import UserError
from fi_campaign.models import data as cifar
from fi_campaign.models import zoo
from fi_campaign.models.faults import Injector, PlaneNoise
from fi_campaign.models.resnet import Arch, CifarResNet, build

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
    grad_clip: float | None = 2.0
    augment: list[str] = field(default_factory=lambda: ["crop4", "hflip"])
    fault_aware: bool = False
    fat_images: float = 0.75
    fat_channel_p: float = 0.3
    seed: int = 0

    def __post_init__(self) -> None:
        problem = _recipe_problem(self)
        if problem:
            raise RecipeError(f"recipe field {problem}.")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def read(cls, path: str | Path | None = None, **overrides: object) -> Recipe:
        """The recipe of a YAML file (any subset of the fields), with ``overrides`` on top."""
        raw: dict[str, object] = {}
        if path:
            try:
                if Path(path).stat().st_size > MAX_RECIPE_BYTES:
                    raise RecipeError(
                        f"recipe {path} is larger than {MAX_RECIPE_BYTES:,} bytes, too large for a recipe."
                    )
                loaded = yaml.safe_load(Path(path).read_bytes().decode("utf-8-sig")) or {}
            except RecipeError:
                raise
            except (OSError, UnicodeDecodeError, yaml.YAMLError, ValueError, RecursionError):
                raise RecipeError(f"recipe {path} is not a readable UTF-8 YAML file.") from None
            known = {f.name for f in fields(cls)}
            if not isinstance(loaded, dict) or any(k not in known for k in loaded):
                raise RecipeError(f"recipe {path} must map some of {', '.join(sorted(known))} to values.")
            raw = loaded
        # values of any type: __post_init__ refuses a wrong one in one sentence
        given: dict[str, Any] = {**raw, **{k: v for k, v in overrides.items() if v is not None}}
        try:
            return cls(**given)
        except RecipeError as e:
            raise RecipeError(f"{path}: {e}" if path else str(e)) from None

    @classmethod
    def of_checkpoint(cls, recorded: dict) -> Recipe:
        """The recipe in a checkpoint's metadata, without what training added (history, image count)."""
        return cls(**{f.name: recorded[f.name] for f in fields(cls) if f.name in recorded})


class RecipeError(UserError):
    """A recipe value that training would choke on, found before any work starts."""


AUGMENTATIONS = ("crop4", "hflip")


MAX_EPOCHS = 100_000
MAX_BATCH = 65_536
MAX_SEED = 2**63 - 1
MAX_RECIPE_BYTES = 1_000_000


def _number(v: object) -> bool:
    """A finite int or float; inf and nan would train nothing and say nothing."""
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        return False
    try:
        return math.isfinite(v)
    except OverflowError:
        return False


def _whole(v: object, low: int, high: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and low <= v <= high


def _recipe_problem(r: Recipe) -> str | None:
    checks = [
        ("epochs", _whole(r.epochs, 1, MAX_EPOCHS), f"a whole number from 1 to {MAX_EPOCHS:,}"),
        ("batch_size", _whole(r.batch_size, 1, MAX_BATCH), f"a whole number from 1 to {MAX_BATCH:,}"),
        ("optimizer", r.optimizer in ("sgd", "adamw"), "sgd or adamw"),
        ("lr", _number(r.lr) and r.lr > 0, "a positive number"),
        ("momentum", _number(r.momentum) and 0 <= r.momentum < 1, "a number in [0, 1)"),
        ("weight_decay", _number(r.weight_decay) and r.weight_decay >= 0, "a number of at least 0"),
        ("schedule", r.schedule in ("onecycle", "cosine"), "onecycle or cosine"),
        ("label_smoothing", _number(r.label_smoothing) and 0 <= r.label_smoothing < 1, "a number in [0, 1)"),
        (
            "grad_clip",
            r.grad_clip is None or (_number(r.grad_clip) and r.grad_clip > 0),
            "a positive number or null (no clipping)",
        ),
        (
            "augment",
            isinstance(r.augment, list) and all(isinstance(a, str) and a in AUGMENTATIONS for a in r.augment),
            f"a list drawn from {', '.join(AUGMENTATIONS)}",
        ),
        ("fault_aware", isinstance(r.fault_aware, bool), "true or false"),
        ("fat_images", _number(r.fat_images) and 0 < r.fat_images <= 1, "a fraction in (0, 1]"),
        ("fat_channel_p", _number(r.fat_channel_p) and 0 < r.fat_channel_p <= 1, "a probability in (0, 1]"),
        ("seed", _whole(r.seed, 0, MAX_SEED), "a whole number from 0 to 2^63 - 1"),
    ]
    for name, ok, expected in checks:
        if not ok:
            return f"{name} is {reprlib.repr(getattr(r, name))}; it must be {expected}"
    return None


@dataclass
class EpochStats:
    epoch: int
    loss: float
    accuracy: float
    seconds: float


def augment(x: torch.Tensor, gen: torch.Generator, kinds: tuple[str, ...] | list[str] = AUGMENTATIONS) -> torch.Tensor:
    """Per sample, a random 32x32 crop of the zero-padded (4 px) image ("crop4") and a horizontal
    flip with probability 0.5 ("hflip"), whichever ``kinds`` names."""
    if not kinds:
        return x
    b = x.shape[0]
    padded = F.pad(x, (4, 4, 4, 4))
    crop = "crop4" in kinds
    oy = torch.randint(0, 9, (b,), generator=gen) if crop else torch.full((b,), 4)
    ox = torch.randint(0, 9, (b,), generator=gen) if crop else torch.full((b,), 4)
    ar = torch.arange(32)
    rows = (oy[:, None] + ar)[:, :, None]
    cols = (ox[:, None] + ar)[:, None, :]
    flip = (torch.rand(b, generator=gen) < 0.5) if "hflip" in kinds else torch.zeros(b, dtype=torch.bool)
    cols = torch.where(flip[:, None, None], cols.flip(-1), cols)
    out = padded[torch.arange(b)[:, None, None], :, rows, cols]  # (b, 32, 32, c)
    return out.permute(0, 3, 1, 2).contiguous()


def fault_aware_batch(
    n_layers: int, batch: int, epoch: int, recipe: Recipe, gen: torch.Generator, layer: int | None = None
) -> PlaneNoise:
    """One training batch's noise; ``layer`` pins the drawn layer (for diagnostics)."""
    if layer is None:
        layer = int(torch.randint(0, n_layers, (1,), generator=gen))
    hit = torch.rand(batch, generator=gen) < recipe.fat_images
    rows = hit.nonzero().flatten().numpy()
    k = rows.size
    mags = torch.rand(k, generator=gen).numpy() * max(1, epoch)
    signs = np.where(torch.rand(k, generator=gen).numpy() < 0.5, -1.0, 1.0)
    return PlaneNoise(
        np.full(k, layer), rows, np.full(k, BLOCK), signs * mags, channel_p=(recipe.fat_channel_p,) * 3, generator=gen
    )


def evaluate(model: CifarResNet, images: torch.Tensor, labels: torch.Tensor, batch: int = 500) -> float:
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(labels), batch):
            correct += int((model(images[i : i + batch]).argmax(1) == labels[i : i + batch]).sum())
    return correct / len(labels)


def _optimizer(model: CifarResNet, r: Recipe) -> torch.optim.Optimizer:
    if r.optimizer == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=r.lr, weight_decay=r.weight_decay)
    return torch.optim.SGD(model.parameters(), lr=r.lr, momentum=r.momentum, weight_decay=r.weight_decay, nesterov=True)


def _scheduler(opt: torch.optim.Optimizer, r: Recipe, steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    if r.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=r.lr, total_steps=steps, pct_start=0.25)


STATE_KEYS = frozenset({"recipe", "arch", "model", "opt", "sched", "gen", "epoch", "history"})


def partial_path(out: Path) -> Path:
    return out.with_suffix(".partial.pt")


def read_partial(partial: Path, device: str = "cpu") -> dict | None:
    """The training state in ``partial``, or None without one; CheckpointError with one sentence
    (and the file left in place) for anything else.

    Read with ``weights_only``: the file sits beside the output, where anyone who can write
    there could plant a pickle that runs code.
    """
    try:
        if not partial.is_file():
            return None
    except OSError as e:
        raise zoo.CheckpointError(f"cannot read training state {partial} ({e.strerror}).") from None
    why = "it is damaged"
    try:
        state = torch.load(partial, map_location=device, weights_only=True)
        if isinstance(state, dict) and STATE_KEYS <= set(state):
            return state
    except pickle.UnpicklingError as e:
        why = zoo.refused_global(e) or why
    except OSError as e:
        why = f"it cannot be read ({e.strerror})"
    except Exception:  # noqa: BLE001 - torch raises many kinds for a damaged file
        pass
    raise zoo.CheckpointError(
        f"{partial} is not a training state this version wrote ({why}), so training did "
        "not resume from it; move or delete it to train from the first epoch."
    )


def _resume(
    partial: Path,
    recipe: Recipe,
    arch: Arch,
    device: str,
    model: CifarResNet,
    opt: torch.optim.Optimizer,
    sched: torch.optim.lr_scheduler.LRScheduler,
    gen: torch.Generator,
) -> tuple[int, list[dict]]:
    """(first epoch, history) after loading the state in ``partial`` into the training objects."""
    state = read_partial(partial, device)
    if state is None or state["recipe"] != recipe.to_dict() or state["arch"] != arch.to_dict():
        return 0, []  # none, or another run's: train afresh, and overwrite it after the first epoch
    epoch, history = state["epoch"], state["history"]
    try:
        if not (
            isinstance(epoch, int)
            and 0 <= epoch <= recipe.epochs
            and isinstance(history, list)
            and len(history) == epoch
            and all(isinstance(h, dict) for h in history)
        ):
            raise ValueError("inconsistent epochs")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        gen.set_state(state["gen"])
    except Exception:  # noqa: BLE001 - the state dicts raise many kinds for a damaged state
        raise zoo.CheckpointError(
            f"{partial} holds a damaged training state, so training did not resume from "
            "it; move or delete it to train from the first epoch."
        ) from None
    return epoch, history


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
    partial = partial_path(out)
    start, history = _resume(partial, recipe, arch, device, model, opt, sched, gen)

    for epoch in range(start, recipe.epochs):
        model.train()
        t0 = time.perf_counter()
        perm = torch.randperm(n, generator=gen)
        loss_sum, correct = 0.0, 0
        for step in range(steps_per_epoch):
            idx = perm[step * recipe.batch_size : (step + 1) * recipe.batch_size]
            x = augment(x_train[idx], gen, recipe.augment).to(device)
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
        torch.save(
            {
                "recipe": recipe.to_dict(),
                "arch": arch.to_dict(),
                "model": model.state_dict(),
                "opt": opt.state_dict(),
                "sched": sched.state_dict(),
                "gen": gen.get_state(),
                "epoch": epoch + 1,
                "history": history,
            },
            partial,
        )
        if on_epoch:
            on_epoch(stats)

    if injector is not None:
        injector.remove()
    accuracy = evaluate(model, x_test, y_test)
    kind = "gpu" if str(device).startswith("cuda") else f"cpu ({torch.get_num_threads()} threads)"
    meta = zoo.Meta(
        arch,
        dataset,
        {**recipe.to_dict(), "train_images": n, "history": history},
        accuracy,
        f"{dataset} test split at {test_set.source} ({len(test_set)} images)",
        f"{kind}, {recipe.epochs} epochs, {sum(h['seconds'] for h in history):.0f} s",
    )
    meta = zoo.save(out, model.cpu(), meta)
    partial.unlink(missing_ok=True)
    return meta


PRESETS: dict[str, tuple[str, str, bool]] = {
    # name: (activation, order, fault-aware) - the paper's incremental ablation
    "baseline": ("relu", "conv-bn-act", False),
    "relu6": ("relu6", "conv-bn-act", False),
    "relu6-fat": ("relu6", "conv-bn-act", True),
    "hardened": ("relu6", "conv-act-bn", True),
    # beyond the paper: the hardened recipe with a ReLU6 that squashes NaN as GPU min/max do
    "hardened-nansafe": ("relu6-nansafe", "conv-act-bn", True),
}


def preset(name: str, depth: int, num_classes: int, recipe: Recipe) -> tuple[Arch, Recipe]:
    activation, order, fat = PRESETS[name]
    recipe = replace(recipe, fault_aware=fat)
    return Arch(depth, activation, order, num_classes), recipe
