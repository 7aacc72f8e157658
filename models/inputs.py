"""A campaign's inputs from the user's own data: an ImageFolder directory or tar archive at any
resolution, a ``.npy`` or ``.pt`` tensor (N x ...) with optional labels, or a function returning
one. (CIFAR copies and the bundled sample are ``models.data``'s.)

Every source is listed first and only the drawn inputs are decoded, so a campaign of 200 images
from a folder of a million reads 200 files. Nothing read here runs code: ``.npy`` files are read
with ``allow_pickle=False``, ``.pt`` files with ``torch.load(weights_only=True)``; only a
function source runs the user's code, which the user named.
"""

from __future__ import annotations

import io
import tarfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fi_campaign.errors import UserError
from fi_campaign.limits import MAX_INPUT_BYTES

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".gif", ".webp", ".tif", ".tiff")
MAX_FILES = 10_000_000  # an image folder listed beyond this is not a campaign's test set
MAX_FILE_BYTES = 64 << 20  # one image file
# what torchvision's networks are trained with, the default normalisation of an image folder
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class InputsError(UserError):
    """Inputs that cannot be read or are not what a campaign can run; one sentence naming the key."""


@dataclass(frozen=True)
class Drawn:
    """The drawn inputs as read, before normalisation: uint8 (N, H, W, 3) images of an image
    folder, or a tensor source's rows (float32 or int64); ``labels`` one class per input, or None."""

    data: np.ndarray
    labels: np.ndarray | None
    total: int  # inputs in the whole source


def _refuse(key: str, text: str) -> InputsError:
    return InputsError(f"{key}: {text}")


# --- image folders ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Listing:
    names: list[str]  # member or file path, sorted by (class, name)
    classes: list[str]  # class per entry
    read: Callable[[str], bytes]
    close: Callable[[], None]


def _list_folder(root: Path, key: str) -> _Listing:
    entries = []
    for cls in sorted(p for p in root.iterdir() if p.is_dir()):
        for f in sorted(cls.rglob("*")):
            if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES:
                entries.append((cls.name, str(f)))
                if len(entries) > MAX_FILES:
                    raise _refuse(key, f"{root} holds more than {MAX_FILES:,} images.")
    if not entries:
        raise _refuse(key, f"{root} holds no <class>/<image> files, so it is not an ImageFolder directory.")

    def read(name: str) -> bytes:
        path = Path(name)
        if path.stat().st_size > MAX_FILE_BYTES:
            raise _refuse(key, f"{name} is larger than {MAX_FILE_BYTES:,} bytes, too large for one image.")
        return path.read_bytes()

    return _Listing([e[1] for e in entries], [e[0] for e in entries], read, lambda: None)


def _list_tar(archive: Path, key: str) -> _Listing:
    try:
        tar = tarfile.open(archive)
        members = {}
        for count, m in enumerate(tar, 1):
            if count > MAX_FILES:
                raise _refuse(key, f"{archive} holds more than {MAX_FILES:,} members.")
            parts = Path(m.name).parts
            if m.isfile() and len(parts) >= 2 and Path(m.name).suffix.lower() in IMAGE_SUFFIXES:
                members[m.name] = m
    except (tarfile.TarError, OSError, EOFError) as e:
        raise _refuse(key, f"{archive} is not a readable tar archive ({e}).") from None
    names = sorted(members, key=lambda n: (Path(n).parts[-2], n))
    if not names:
        tar.close()
        raise _refuse(key, f"{archive} holds no <class>/<image> members, so it is not an ImageFolder archive.")

    def read(name: str) -> bytes:
        m = members[name]
        if m.size > MAX_FILE_BYTES:
            raise _refuse(key, f"{archive}: {name} is larger than {MAX_FILE_BYTES:,} bytes, too large for one image.")
        f = tar.extractfile(m)
        assert f is not None, "extractfile gives every regular member a reader"
        return f.read()

    return _Listing(names, [Path(n).parts[-2] for n in names], read, tar.close)


def _decode(data: bytes, name: str, size: int, key: str) -> np.ndarray:
    """One image as RGB, its shorter side resized to ``size`` (bilinear), centre-cropped to size x size."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            rgb = img.convert("RGB")
    except Image.DecompressionBombError:
        raise _refuse(key, f"{name} claims more pixels than any image should.") from None
    except Exception as e:  # noqa: BLE001 - PIL raises many kinds for a damaged image
        raise _refuse(key, f"{name} is not a readable image ({type(e).__name__}).") from None
    w, h = rgb.size
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    if (nw, nh) != (w, h):
        rgb = rgb.resize((nw, nh), Image.Resampling.BILINEAR)
    left, top = (nw - size) // 2, (nh - size) // 2
    return np.asarray(rgb.crop((left, top, left + size, top + size)), dtype=np.uint8)


def image_folder(source: str, size: int, select: Callable[[int], np.ndarray], key: str) -> tuple[Drawn, np.ndarray]:
    """The drawn images of an ImageFolder directory (``DIR/<class>/<image>``) or tar archive
    (``[...]/<class>/<image>`` members): entries sorted by class, then name; the index of an
    input is its place in that order. Labels are the class folders' ranks in sorted order."""
    path = Path(source).expanduser()
    try:
        if not path.exists():
            raise _refuse(key, f"{source} does not exist.")
        listing = _list_folder(path, key) if path.is_dir() else _list_tar(path, key)
    except OSError as e:
        raise _refuse(key, f"cannot read {source} ({e.strerror}).") from None
    try:
        indices = select(len(listing.names))
        classes = sorted(set(listing.classes))
        rank = {c: i for i, c in enumerate(classes)}
        images = np.stack([_decode(listing.read(listing.names[i]), listing.names[i], size, key) for i in indices])
        labels = np.array([rank[listing.classes[i]] for i in indices], dtype=np.int64)
    finally:
        listing.close()
    return Drawn(images, labels, len(listing.names)), indices


def normalise_images(images: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...], key: str) -> np.ndarray:
    """uint8 NHWC -> float32 NCHW, (x / 255 - mean) / std per channel, as torchvision's
    ToTensor and Normalize compute it."""
    import torch

    if len(mean) != images.shape[-1] and len(mean) != 1:
        raise _refuse(key, f"mean and std give {len(mean)} numbers but the images have {images.shape[-1]} channels.")
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255)
    m = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    return ((x - m) / s).contiguous().numpy()


# --- tensors ---------------------------------------------------------------------------------------------


def as_inputs(value: Any, what: str, key: str) -> np.ndarray:
    """A tensor or array as a campaign's inputs: float32 for floating point, int64 for integers
    (token ids), one row per input."""
    import torch

    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        if value.dtype == torch.bfloat16:
            value = value.float()
        value = value.numpy()
    if not isinstance(value, np.ndarray):
        raise _refuse(key, f"{what} holds a {type(value).__name__}, not a tensor of inputs.")
    if value.ndim < 1 or len(value) == 0:
        raise _refuse(key, f"{what} holds an array of shape {value.shape}; it must have one row per input (N x ...).")
    if np.issubdtype(value.dtype, np.floating):
        out = value.astype(np.float32)
        if not np.isfinite(out).all():
            raise _refuse(key, f"{what} holds NaN or infinite values (or values beyond float32).")
        return np.ascontiguousarray(out)
    if np.issubdtype(value.dtype, np.integer) and value.dtype != np.uint64:
        return np.ascontiguousarray(value.astype(np.int64))
    raise _refuse(key, f"{what} holds {value.dtype} values; inputs must be floating point or integers (token ids).")


def as_labels(value: Any, n: int, what: str, key: str) -> np.ndarray:
    import torch

    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    if isinstance(value, (list, tuple)):
        value = np.asarray(value)
    if not (isinstance(value, np.ndarray) and value.ndim == 1 and np.issubdtype(value.dtype, np.integer)):
        raise _refuse(key, f"{what} holds no 1-D array of integer class labels.")
    if len(value) != n:
        raise _refuse(key, f"{what} holds {len(value)} labels for {n} inputs.")
    return value.astype(np.int64)


def _load_file(path: Path, key: str) -> Any:
    import torch

    from fi_campaign.models.zoo import refused_global

    try:
        size = path.stat().st_size
    except OSError as e:
        raise _refuse(key, f"cannot read {path} ({e.strerror}).") from None
    if size > MAX_INPUT_BYTES:
        raise _refuse(key, f"{path} is {size:,} bytes; inputs are held in memory, at most {MAX_INPUT_BYTES:,}.")
    if path.suffix.lower() == ".npy":
        try:
            return np.load(path, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise _refuse(key, f"{path} is not a .npy array readable without pickle ({type(e).__name__}).") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many kinds for a file it will not load
        why = refused_global(e) or f"it is not a file PyTorch loads without running code ({type(e).__name__})"
        raise _refuse(key, f"{path} was not loaded: {why}.") from None


def tensor_file(source: str, labels: str | None, key: str, labels_key: str) -> tuple[np.ndarray, np.ndarray | None]:
    """All rows of a ``.npy`` or ``.pt`` file (a tensor, or a mapping {inputs, labels}) and the
    labels, from ``labels`` or the mapping."""
    path = Path(source).expanduser()
    if not path.is_file():
        raise _refuse(key, f"{source} does not exist.")
    blob = _load_file(path, key)
    found = None
    if isinstance(blob, dict):
        if "inputs" not in blob:
            raise _refuse(key, f"{source} holds a mapping without 'inputs'; it must be a tensor or {{inputs, labels}}.")
        found = blob.get("labels")
        blob = blob["inputs"]
    data = as_inputs(blob, source, key)
    if labels is not None:
        lpath = Path(labels).expanduser()
        if not lpath.is_file():
            raise _refuse(labels_key, f"{labels} does not exist.")
        found = _load_file(lpath, labels_key)
        return data, as_labels(found, len(data), labels, labels_key)
    return data, None if found is None else as_labels(found, len(data), f"{source}'s labels", key)


def from_function(fn: Callable[[], Any], source: str, key: str) -> tuple[np.ndarray, np.ndarray | None]:
    """What the user's inputs function returns: a tensor, or (tensor, labels)."""
    try:
        value = fn()
    except Exception as e:  # noqa: BLE001 - the user's function may raise anything
        raise _refuse(key, f"{source} raised {type(e).__name__}: {str(e)[:200]}.") from None
    labels = None
    if isinstance(value, tuple) and len(value) == 2:
        value, labels = value
    data = as_inputs(value, f"what {source} returned", key)
    return data, None if labels is None else as_labels(labels, len(data), f"the labels {source} returned", key)
