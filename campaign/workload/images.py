"""The campaign's fixed input images: drawn once from a source, identified by their digest."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

import numpy as np

from fi_campaign.errors import UserError
from fi_campaign.models import data as cifar

if TYPE_CHECKING:
    from fi_campaign.store import WorkloadRecord


def image_digest(images: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(images).tobytes()).hexdigest()


def workload_images(source: str, count: int, seed: int) -> tuple[cifar.ImageSet, np.ndarray]:
    full = cifar.load(source, "test")
    indices = cifar.select(len(full), count, seed)
    return full.subset(indices), indices


def workload_inputs(workload: WorkloadRecord) -> np.ndarray:
    """The campaign's normalised input images, checked against the digest stored at plan time."""
    images, _ = workload_images(workload.source, workload.count, workload.seed)
    if image_digest(images.images) != workload.images_sha256:
        raise UserError(f"the images at {workload.source} differ from those the campaign was planned on.")
    return cifar.normalise(images.images, images.dataset).numpy()


def check_checkpoint(checkpoint: str, found_sha256: str, expect_sha256: str) -> None:
    if expect_sha256 and found_sha256 != expect_sha256:
        raise UserError(
            f"{checkpoint} has changed since the campaign was planned (sha256 differs); "
            "restore it or plan a new campaign."
        )
