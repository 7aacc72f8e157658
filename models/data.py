"""CIFAR-10 / CIFAR-100 test and training images from any of the layouts a user may hold.

Accepted sources, all read in place (nothing is extracted to disk):
- torchvision's original layout: a folder holding ``cifar-10-batches-py/`` or
  ``cifar-100-python/`` (or that folder itself);
- ImageFolder tar archives ``<split>.tar[.xz|.gz]`` holding ``<split>/<class>/<image>``, or a
  folder holding such archives (../shared/data/cifar10-jpeg, ../shared/data/cifar100-png);
- the bundled sample ``bundled`` (a few hundred CIFAR-10 test images shipped with the
  package, so the demo runs anywhere).
"""
from __future__ import annotations

import io
import pickle
import tarfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

BUNDLED = "bundled"
BUNDLED_PATH = Path(__file__).parent / "samples" / "cifar10-test-sample.npz"

MEAN_STD = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}
NUM_CLASSES = {"cifar10": 10, "cifar100": 100}
SPLITS = ("train", "test")


class DataError(ValueError):
    """A data source that is missing or is not CIFAR; the message is one sentence for a user."""


@dataclass(frozen=True)
class ImageSet:
    images: np.ndarray  # uint8, (N, 32, 32, 3)
    labels: np.ndarray  # int64, (N,)
    dataset: str  # cifar10 | cifar100
    source: str  # where it was read from, for the record

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices: np.ndarray) -> "ImageSet":
        return ImageSet(self.images[indices], self.labels[indices], self.dataset, self.source)


def dataset_for_classes(n: int, where: str) -> str:
    for name, count in NUM_CLASSES.items():
        if count == n:
            return name
    raise DataError(f"{where} has {n} classes; CIFAR-10 has 10 and CIFAR-100 has 100.")


def _check(images: np.ndarray, where: str) -> None:
    if images.ndim != 4 or images.shape[1:] != (32, 32, 3):
        raise DataError(f"{where} holds images of shape {images.shape[1:]}, not CIFAR's 32x32 RGB.")


def _from_pickles(folder: Path, split: str) -> ImageSet:
    if (folder / "cifar-10-batches-py").is_dir():
        folder = folder / "cifar-10-batches-py"
    elif (folder / "cifar-100-python").is_dir():
        folder = folder / "cifar-100-python"
    if (folder / "test_batch").exists():
        names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
        key, dataset = b"labels", "cifar10"
    else:
        names, key, dataset = [split], b"fine_labels", "cifar100"
    chunks, labels = [], []
    for name in names:
        with open(folder / name, "rb") as f:
            d = pickle.load(f, encoding="bytes")
        chunks.append(np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        labels.extend(d[key])
    return ImageSet(np.ascontiguousarray(np.concatenate(chunks)), np.asarray(labels, np.int64), dataset, str(folder))


def _find_archive(path: Path, split: str) -> Path | None:
    if path.is_file():
        return path
    for suffix in (".tar.xz", ".tar.gz", ".tar"):
        if (path / f"{split}{suffix}").is_file():
            return path / f"{split}{suffix}"
    return None


def _from_tar(archive: Path, split: str) -> ImageSet:
    from PIL import Image

    images, class_names = [], []
    try:
        with tarfile.open(archive) as tar:
            for member in tar:
                if not member.isfile():
                    continue
                parts = Path(member.name).parts
                if len(parts) < 3 or parts[-3] != split:
                    continue
                data = tar.extractfile(member).read()
                images.append(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))
                class_names.append(parts[-2])
    except (tarfile.TarError, OSError) as e:
        raise DataError(f"{archive} is not a readable tar archive of CIFAR images ({e}).") from None
    if not images:
        raise DataError(f"{archive} holds no '{split}/<class>/<image>' members, so it is not a CIFAR ImageFolder archive.")
    classes = sorted(set(class_names))
    dataset = dataset_for_classes(len(classes), str(archive))
    lookup = {c: i for i, c in enumerate(classes)}
    labels = np.asarray([lookup[c] for c in class_names], np.int64)
    try:
        stacked = np.stack(images)
    except ValueError:
        raise DataError(f"{archive} holds images of different sizes, so it is not CIFAR.") from None
    _check(stacked, str(archive))
    return ImageSet(stacked, labels, dataset, str(archive))


def _from_bundled() -> ImageSet:
    with np.load(BUNDLED_PATH) as z:
        return ImageSet(z["images"], z["labels"].astype(np.int64), str(z["dataset"]), BUNDLED)


@lru_cache(maxsize=4)
def load(source: str, split: str = "test") -> ImageSet:
    """Read one split of CIFAR from ``source``; raises DataError with a user-facing sentence."""
    if split not in SPLITS:
        raise DataError(f"split must be one of {SPLITS}, not {split!r}.")
    if source == BUNDLED:
        if split != "test":
            raise DataError("the bundled sample holds test images only; point --data at a CIFAR copy to train.")
        return _from_bundled()
    path = Path(source).expanduser()
    if not path.exists():
        raise DataError(f"image source {source} does not exist.")
    if path.is_dir() and any((path / p).exists() for p in ("cifar-10-batches-py", "cifar-100-python", "test_batch", "test", "meta", "batches.meta")):
        if not (path / "test").is_dir():
            try:
                return _from_pickles(path, split)
            except (OSError, KeyError, pickle.UnpicklingError, ValueError):
                pass
    archive = _find_archive(path, split)
    if archive is None:
        raise DataError(f"{source} holds neither torchvision's CIFAR batches nor a {split}.tar[.xz] ImageFolder archive.")
    return _from_tar(archive, split)


def normalise(images: np.ndarray, dataset: str):
    """uint8 NHWC -> normalised float32 NCHW torch tensor, with the dataset's standard statistics."""
    import torch

    mean, std = MEAN_STD[dataset]
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255)
    m = torch.tensor(mean).view(1, 3, 1, 1)
    s = torch.tensor(std).view(1, 3, 1, 1)
    return ((x - m) / s).contiguous()


def select(n_available: int, count: int, seed: int) -> np.ndarray:
    """A fixed, seeded choice of image indices: the same seed gives the same workload."""
    if count > n_available:
        raise DataError(f"asked for {count} images but the source holds only {n_available}.")
    return np.sort(np.random.default_rng(seed).choice(n_available, size=count, replace=False))
