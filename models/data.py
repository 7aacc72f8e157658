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
from typing import TYPE_CHECKING

import numpy as np

from fi_campaign.errors import UserError

if TYPE_CHECKING:
    import torch

BUNDLED = "bundled"
BUNDLED_PATH = Path(__file__).parent / "samples" / "cifar10-test-sample.npz"

MEAN_STD = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}
NUM_CLASSES = {"cifar10": 10, "cifar100": 100}
SPLITS = ("train", "test")


class DataError(UserError):
    """A data source that is missing or is not CIFAR; the message is one sentence for a user."""


@dataclass(frozen=True)
class ImageSet:
    images: np.ndarray  # uint8, (N, 32, 32, 3)
    labels: np.ndarray  # int64, (N,)
    dataset: str  # cifar10 | cifar100
    source: str  # where it was read from, for the record

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices: np.ndarray) -> ImageSet:
        return ImageSet(self.images[indices], self.labels[indices], self.dataset, self.source)


def dataset_for_classes(n: int, where: str) -> str:
    for name, count in NUM_CLASSES.items():
        if count == n:
            return name
    raise DataError(f"{where} has {n} classes; CIFAR-10 has 10 and CIFAR-100 has 100.")


# What torchvision's CIFAR batches (and numpy arrays pickled by any protocol) need; nothing that
# can run code. Builtins (dict, list, bytes) are opcodes and need no lookup.
BATCH_GLOBALS = frozenset(
    {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),  # bytes pickled by Python 3 at protocol 2
    }
)
MAX_BATCH_BYTES = 256 << 20  # a CIFAR batch file is ~31 MB (CIFAR-100 train: ~155 MB)
MAX_IMAGE_BYTES = 1 << 20  # a 32x32 image, compressed or not, is a few KB
MAX_MEMBERS = 250_000  # CIFAR's largest split has 50,000 images; folders and stray files besides


class _Refused(Exception):
    def __init__(self, module: str, name: str) -> None:
        self.what = f"{module}.{name}"


class _BatchUnpickler(pickle.Unpickler):
    """An unpickler that admits only what a CIFAR batch holds, so a crafted file cannot run code."""

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in BATCH_GLOBALS:
            raise _Refused(module, name)
        if module.startswith("numpy.core.") and hasattr(np, "_core"):
            module = "numpy._core." + module.removeprefix("numpy.core.")  # numpy 2 warns on numpy.core
        return super().find_class(module, name)


def _read_batch(path: Path, key: bytes) -> tuple[np.ndarray, list[int]]:
    """One batch's images (N, 32, 32, 3) and labels, every value checked before it is used."""
    try:
        size = path.stat().st_size
        if size > MAX_BATCH_BYTES:
            raise DataError(f"{path} is {size:,} bytes, more than any CIFAR batch ({MAX_BATCH_BYTES:,} at most).")
        with open(path, "rb") as f:
            d = _BatchUnpickler(f, encoding="bytes").load()
    except _Refused as e:
        raise DataError(
            f"{path} was not loaded: it asks for {e.what}, which no CIFAR batch holds "
            "and which could run code when unpickled."
        ) from None
    except FileNotFoundError:
        raise DataError(f"{path} is missing, so {path.parent} is not a complete CIFAR copy.") from None
    except OSError as e:
        raise DataError(f"cannot read {path} ({e.strerror}).") from None
    except DataError:
        raise
    except Exception as e:  # noqa: BLE001 - a damaged pickle fails in many ways
        raise DataError(f"{path} is not a readable CIFAR batch ({type(e).__name__}).") from None
    data = d.get(b"data") if isinstance(d, dict) else None
    labels = d.get(key) if isinstance(d, dict) else None
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2 and data.shape[1] == 3072):
        raise DataError(f"{path} is not a CIFAR batch: it holds no uint8 (N, 3072) {b'data'!r} array.")
    if not (
        isinstance(labels, list)
        and len(labels) == len(data)
        and all(isinstance(x, int) and not isinstance(x, bool) and 0 <= x < 100 for x in labels)
    ):
        raise DataError(f"{path} is not a CIFAR batch: its {key!r} are not one class number per image.")
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


def _pickle_folder(path: Path) -> Path | None:
    """The folder of torchvision's CIFAR batches that ``path`` is or holds, if any."""
    if not path.is_dir():
        return None
    for folder in (path / "cifar-10-batches-py", path / "cifar-100-python"):
        if folder.is_dir():
            return folder
    if any((path / name).is_file() for name in ("test_batch", "batches.meta", "test", "meta")):
        return path
    return None


def _from_pickles(folder: Path, split: str) -> ImageSet:
    if (folder / "test_batch").exists():
        names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
        key, dataset = b"labels", "cifar10"
    else:
        names, key, dataset = [split], b"fine_labels", "cifar100"
    chunks, labels = [], []
    for name in names:
        images, batch_labels = _read_batch(folder / name, key)
        chunks.append(images)
        labels.extend(batch_labels)
    if max(labels, default=0) >= NUM_CLASSES[dataset]:
        raise DataError(f"{folder} holds class {max(labels)}, but {dataset} has {NUM_CLASSES[dataset]} classes.")
    return ImageSet(np.ascontiguousarray(np.concatenate(chunks)), np.asarray(labels, np.int64), dataset, str(folder))


def _find_archive(path: Path, split: str) -> Path | None:
    if path.is_file():
        return path
    for suffix in (".tar.xz", ".tar.gz", ".tar"):
        if (path / f"{split}{suffix}").is_file():
            return path / f"{split}{suffix}"
    return None


def _image(data: bytes, name: str, archive: Path) -> np.ndarray:
    """One member as 32x32 RGB; its size is read from the header before any pixel is decoded."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.size != (32, 32):
                raise DataError(
                    f"{archive}: {name} is {img.size[0]}x{img.size[1]}, not CIFAR's 32x32, so this is not CIFAR."
                )
            return np.asarray(img.convert("RGB"))
    except DataError:
        raise
    except Image.DecompressionBombError:
        raise DataError(f"{archive}: {name} claims more pixels than any image should, so this is not CIFAR.") from None
    except Exception as e:  # noqa: BLE001 - PIL raises many kinds (OSError, SyntaxError, ...) for a damaged image
        raise DataError(f"{archive}: {name} is not a readable image ({type(e).__name__}).") from None


def _from_tar(archive: Path, split: str) -> ImageSet:
    images, class_names = [], []
    try:
        with tarfile.open(archive) as tar:
            for count, member in enumerate(tar, 1):
                if count > MAX_MEMBERS:
                    raise DataError(f"{archive} holds more than {MAX_MEMBERS:,} members, more than any CIFAR split.")
                if not member.isfile():
                    continue
                parts = Path(member.name).parts
                if len(parts) < 3 or parts[-3] != split:
                    continue
                if member.size > MAX_IMAGE_BYTES:
                    raise DataError(
                        f"{archive}: {member.name} is {member.size:,} bytes; a CIFAR image is a few KB "
                        f"(at most {MAX_IMAGE_BYTES:,} read)."
                    )
                f = tar.extractfile(member)
                assert f is not None  # extractfile gives every regular file (isfile above) a reader
                images.append(_image(f.read(), member.name, archive))
                class_names.append(parts[-2])
    except (tarfile.TarError, OSError, EOFError) as e:
        raise DataError(f"{archive} is not a readable tar archive of CIFAR images ({e}).") from None
    if not images:
        raise DataError(
            f"{archive} holds no '{split}/<class>/<image>' members, so it is not a CIFAR ImageFolder archive."
        )
    classes = sorted(set(class_names))
    dataset = dataset_for_classes(len(classes), str(archive))
    lookup = {c: i for i, c in enumerate(classes)}
    labels = np.asarray([lookup[c] for c in class_names], np.int64)
    return ImageSet(np.stack(images), labels, dataset, str(archive))


def _from_bundled() -> ImageSet:
    with np.load(BUNDLED_PATH, allow_pickle=False) as z:
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
    try:
        if not path.exists():
            raise DataError(f"image source {source} does not exist.")
        folder = _pickle_folder(path)
        archive = None if folder is not None else _find_archive(path, split)
    except OSError as e:  # e.g. a name too long for the file system
        raise DataError(f"cannot read image source {source} ({e.strerror}).") from None
    if folder is not None:
        return _from_pickles(folder, split)
    if archive is None:
        raise DataError(
            f"{source} holds neither torchvision's CIFAR batches nor a {split}.tar[.xz] ImageFolder archive."
        )
    return _from_tar(archive, split)


def normalise(images: np.ndarray, dataset: str) -> torch.Tensor:
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
