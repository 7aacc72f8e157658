"""The campaign's fixed inputs: drawn once from a source, identified by their digest.

CIFAR copies and the bundled sample are read as before (``models.data``); an image folder at any
resolution, a tensor file or a function are the user's own data (``models.inputs``). The drawn
inputs' digest is taken before normalisation, over what was read."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from fi_campaign.errors import UserError
from fi_campaign.models import data as cifar

if TYPE_CHECKING:
    from fi_campaign.config import Images
    from fi_campaign.store import WorkloadRecord

KEY = "inputs.source"


def image_digest(images: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(images).tobytes()).hexdigest()


def workload_images(source: str, count: int, seed: int) -> tuple[cifar.ImageSet, np.ndarray]:
    full = cifar.load(source, "test")
    indices = cifar.select(len(full), count, seed)
    return full.subset(indices), indices


@dataclass(frozen=True)
class Inputs:
    """The drawn inputs as read (``raw``, whose digest identifies them), their labels if known,
    and what the campaign record says of them."""

    raw: np.ndarray
    labels: np.ndarray | None
    dataset: str  # cifar10 | cifar100, or imagefolder | tensor | function
    indices: np.ndarray  # each input's index in its source


def draw(
    kind: str,
    source: str,
    count: int,
    seed: int,
    size: int | None = None,
    labels: str | None = None,
) -> Inputs:
    """``count`` inputs drawn with ``seed`` from ``source`` (kind: cifar, imagefolder, tensor or function)."""
    from fi_campaign.models import inputs as own

    def select(n: int) -> np.ndarray:
        return cifar.select(n, count, seed)

    if kind == "cifar":
        images, indices = workload_images(source, count, seed)
        return Inputs(images.images, images.labels, images.dataset, indices)
    if kind == "imagefolder":
        assert size is not None, "an image folder is read at inputs.size"
        drawn, indices = own.image_folder(source, size, select, KEY)
        return Inputs(drawn.data, drawn.labels, kind, indices)
    if kind == "tensor":
        data, found = own.tensor_file(source, labels, KEY, "inputs.labels")
    else:
        from fi_campaign.models.sources import import_function

        data, found = own.from_function(import_function(source, KEY), source, KEY)
    indices = select(len(data))
    return Inputs(data[indices], None if found is None else found[indices], kind, indices)


def normalised(
    inputs: np.ndarray, dataset: str, mean: tuple[float, ...] | None, std: tuple[float, ...] | None
) -> np.ndarray:
    """What the network is given: CIFAR images with their dataset's statistics, an image
    folder's with ``mean`` and ``std`` (default ImageNet's), a tensor source as it is."""
    from fi_campaign.models import inputs as own

    if dataset in cifar.MEAN_STD:
        return cifar.normalise(inputs, dataset).numpy()
    if dataset == "imagefolder":
        return own.normalise_images(inputs, mean or own.IMAGENET_MEAN, std or own.IMAGENET_STD, KEY)
    return inputs


def planned(images: Images) -> tuple[WorkloadRecord, Inputs]:
    """The campaign's inputs and the record that lets any process draw them again."""
    from fi_campaign.store import WorkloadRecord

    drawn = draw(images.kind, images.source, images.count, images.seed, images.size, images.labels)
    record = WorkloadRecord(
        source=images.source,
        dataset=drawn.dataset,
        count=images.count,
        seed=images.seed,
        indices=tuple(drawn.indices.tolist()),
        images_sha256=image_digest(drawn.raw),
        kind=images.kind,
        size=images.size,
        mean=images.mean,
        std=images.std,
        labels=images.labels,
    )
    return record, drawn


def workload_inputs(workload: WorkloadRecord) -> np.ndarray:
    """The campaign's inputs as the network is given them, checked against the digest stored at plan time."""
    drawn = draw(workload.kind, workload.source, workload.count, workload.seed, workload.size, workload.labels)
    if image_digest(drawn.raw) != workload.images_sha256:
        what = "images" if workload.kind in ("cifar", "imagefolder") else "inputs"
        raise UserError(f"the {what} at {workload.source} differ from those the campaign was planned on.")
    return normalised(drawn.raw, drawn.dataset, workload.mean, workload.std)


def check_checkpoint(checkpoint: str, found_sha256: str, expect_sha256: str) -> None:
    if expect_sha256 and found_sha256 != expect_sha256:
        raise UserError(
            f"{checkpoint} has changed since the campaign was planned (sha256 differs); "
            "restore it or plan a new campaign."
        )
