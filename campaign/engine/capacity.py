"""Whether this machine can hold the workers and batches a run asks for, checked before any
worker starts: too many workers are capped (one sentence says why), a batch or image set that
would not fit in memory at all is refused. The per-worker base is measured
(bench/workers_memory.py); the buffers are estimated from the model's activation sizes
(``fi_campaign.models.faults.describe_layers``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fi_campaign.errors import UserError

if TYPE_CHECKING:
    from fi_campaign.models.arch import Arch
    from fi_campaign.store import ModelRecord

MiB = 2**20
# unique memory (USS) of one ResNet-20 worker less its buffers, from bench/workers_memory.py on
# this project's 2-core CPU machine (torch 2.14.1): peak USS 457 MiB at batch_size 32 and 624 at
# 256 in-process; 893 at 256 for a process-isolated worker with its workload process. Shared
# library pages, mapped once for all workers, are left out.
BASE = {"inprocess": 430 * MiB, "process": 700 * MiB}
INPUT_BYTES = 3 * 32 * 32 * 4  # one normalised CIFAR image, float32


@dataclass(frozen=True)
class Footprint:
    """Estimated bytes one worker holds."""

    base: int
    images: int  # the workload's inputs and golden logits
    batch: int  # one forward pass: batch_size rows of every layer's outputs
    golden: int = 0  # delayed start: the golden activations kept (the campaign record's resume plan)

    @property
    def total(self) -> int:
        return self.base + self.images + self.batch + self.golden


def activation_bytes(arch: Arch) -> int:
    """Bytes of every conv/linear output of one image: what a forward pass may hold per row."""
    from fi_campaign.models.faults import describe_layers
    from fi_campaign.models.resnet import build

    return 4 * sum(layer.numel for layer in describe_layers(build(arch)))


def _sizes(m: ModelRecord) -> tuple[int, int, int]:
    """Per input: bytes of every target's output, of the input, of the network's output. A
    CIFAR ResNet's from its architecture; any other network's from its planned targets."""
    if m.targets is not None:
        t = m.targets
        item = 8 if t.input_dtype == "int64" else 4
        return 4 * t.activation_numel, item * math.prod(t.input_shape), 4 * math.prod(t.output_shape)
    if m.arch is None:  # the user's own program (config workload): its memory is its own process's
        return 0, 0, 0
    return activation_bytes(m.arch), INPUT_BYTES, 4 * m.arch.num_classes


def footprint(models: dict[str, ModelRecord], isolation: str, batch_size: int, images: int, on_gpu: bool) -> Footprint:
    """The largest of the campaign's models decides; on a GPU the batch lives in GPU memory."""
    sizes = [_sizes(m) for m in models.values()]
    per_row = max(a for a, _, _ in sizes)
    inputs = max(i for _, i, _ in sizes)
    outputs = max(o for _, _, o in sizes)
    copies = 2 if isolation == "process" else 1  # a workload process holds the inputs too
    batch = 0 if on_gpu else batch_size * (per_row + inputs)
    kept = [m.resume.cache_mb if m.resume else 0 for m in models.values()]
    golden = 0 if on_gpu or isolation == "process" else int(max(kept, default=0) * MiB)
    return Footprint(
        base=BASE["process" if isolation == "process" else "inprocess"],
        images=images * (copies * inputs + outputs),
        batch=batch,
        golden=golden,
    )


def check_batch(fp: Footprint, batch_size: int, images: int, available: int) -> None:
    """Refuse a run whose single worker could not fit in memory."""
    if fp.total <= available:
        return
    if fp.golden >= max(fp.batch, fp.images):
        raise UserError(
            f"the golden activations kept for delayed start need about {_gib(fp.golden)} per worker "
            f"(one worker about {_gib(fp.total)}) and {_gib(available)} is available; plan the campaign "
            "again with a lower resume_cache_mb, or resume: false."
        )
    if fp.batch >= fp.images:
        raise UserError(
            f"batch_size {batch_size} needs about {_gib(fp.batch)} of memory per forward pass "
            f"(one worker about {_gib(fp.total)}) and {_gib(available)} is available; lower batch_size "
            "in the config and plan the campaign again."
        )
    raise UserError(
        f"images.count {images} needs about {_gib(fp.images)} of memory per worker (one worker about "
        f"{_gib(fp.total)}) and {_gib(available)} is available; plan the campaign with fewer images."
    )


def fit_workers(requested: int, fp: Footprint, cores: int | None, available: int) -> tuple[int, str | None]:
    """(workers to start, why fewer than requested, if so). ``cores``: the CPU cores they share,
    None when each worker drives a GPU."""
    by_memory = max(1, available // max(fp.total, 1))
    n = min(requested, by_memory, cores or requested)
    if n == requested:
        return n, None
    if cores is not None and n == cores and cores <= by_memory:
        why = f"this machine has {cores} CPU cores"
    else:
        why = f"each worker needs about {_gib(fp.total)} of memory and {_gib(available)} is available"
    return n, f"running {n} workers, not {requested}: {why}."


def requested_workers(device: str, workers: int | None, per_gpu: int) -> tuple[int, list[str] | None]:
    """(worker count, device per worker) before the machine's limits: GPUs round-robin,
    ``per_gpu`` workers each, else one worker per core; ``fit_workers`` caps the count later."""
    if device.startswith("cuda") or device == "auto":
        import torch

        n = torch.cuda.device_count()
        if n and device in ("cuda", "auto"):
            devices = [f"cuda:{i}" for i in range(n) for _ in range(per_gpu)]
            return workers or len(devices), devices
        if n:
            return workers or per_gpu, [device]
    return workers or cores(), None


def cores() -> int:
    """CPU cores this process may run on (a container's or taskset's share, not the machine's)."""
    import os

    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def available_memory() -> int:
    import psutil

    return int(psutil.virtual_memory().available)


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / MiB:.0f} MiB"
