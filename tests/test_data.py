"""models.data: reading CIFAR from torchvision pickles and ImageFolder tars; select; normalise."""

from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path
from typing import Literal

import numpy as np
import pytest
import torch
from PIL import Image

from fi_campaign.models.data import MEAN_STD, DataError, ImageSet, load, normalise, select
from tests.conftest import shared_data

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _batch(rng: np.random.Generator, n: int, label_key: bytes = b"labels", classes: int = 10) -> dict:
    return {
        b"batch_label": b"fake",
        label_key: rng.integers(0, classes, n).tolist(),
        b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        b"filenames": [b"x.png"] * n,
    }


def _dump(path: Path, d: dict) -> None:
    with open(path, "wb") as f:
        pickle.dump(d, f)


@pytest.fixture
def pickles(tmp_path) -> tuple[Path, dict[str, dict]]:
    rng = np.random.default_rng(0)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    batches = {f"data_batch_{i}": _batch(rng, 3) for i in range(1, 6)}
    batches["test_batch"] = _batch(rng, 4)
    for name, d in batches.items():
        _dump(folder / name, d)
    _dump(folder / "batches.meta", {b"label_names": [c.encode() for c in CLASSES]})
    return tmp_path, batches


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _write_tar(path: Path, members: dict[str, bytes], mode: Literal["w", "w:gz", "w:xz"] = "w:xz") -> None:
    with tarfile.open(path, mode) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def _image_folder(classes: list[str], per_class: int, split: str = "test", size: int = 32, seed: int = 1):
    rng = np.random.default_rng(seed)
    members, truth = {}, {}
    # write classes in reverse order so the labels must come from sorting, not from tar order
    for c in reversed(classes):
        for i in range(per_class):
            arr = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            name = f"{split}/{c}/{i:04d}.png"
            members[name] = _png(arr)
            truth[name] = arr
    return members, truth


# --- torchvision pickle layout ----------------------------------------------------------------


def test_pickle_test_split(pickles):
    root, batches = pickles
    s = load(str(root))
    assert isinstance(s, ImageSet)
    assert (len(s), s.dataset) == (4, "cifar10")
    assert s.images.shape == (4, 32, 32, 3) and s.images.dtype == np.uint8
    assert s.labels.dtype == np.int64
    assert s.labels.tolist() == batches["test_batch"][b"labels"]
    raw = batches["test_batch"][b"data"]
    # CIFAR rows are 1024 red, 1024 green, 1024 blue values, each plane row-major
    for i, y, x, c in [(0, 0, 0, 0), (1, 5, 7, 1), (3, 31, 30, 2), (2, 17, 0, 2)]:
        assert s.images[i, y, x, c] == raw[i, c * 1024 + y * 32 + x]


def test_pickle_train_split_concatenates_five_batches(pickles):
    root, batches = pickles
    s = load(str(root), "train")
    assert len(s) == 15
    expected: list[int] = sum((batches[f"data_batch_{i}"][b"labels"] for i in range(1, 6)), [])
    assert s.labels.tolist() == expected
    raw = batches["data_batch_5"][b"data"]
    assert s.images[12, 3, 4, 1] == raw[0, 1024 + 3 * 32 + 4]


def test_pickle_folder_itself(pickles):
    root, batches = pickles
    s = load(str(root / "cifar-10-batches-py"))
    assert s.labels.tolist() == batches["test_batch"][b"labels"]


def test_pickle_cifar100(tmp_path):
    rng = np.random.default_rng(2)
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    test = _batch(rng, 5, b"fine_labels", 100)
    _dump(folder / "test", test)
    _dump(folder / "train", _batch(rng, 2, b"fine_labels", 100))
    s = load(str(tmp_path))
    assert (len(s), s.dataset) == (5, "cifar100")
    assert s.labels.tolist() == test[b"fine_labels"]
    assert len(load(str(tmp_path), "train")) == 2


# --- ImageFolder tar --------------------------------------------------------------------------


def test_image_folder_tar_xz(tmp_path):
    members, truth = _image_folder(CLASSES, per_class=2)
    members["test/README"] = b"not an image member: fewer than 3 path parts below the split"
    _write_tar(tmp_path / "test.tar.xz", members)
    for source in (tmp_path, tmp_path / "test.tar.xz"):  # the folder or the archive itself
        s = load(str(source))
        assert (len(s), s.dataset) == (20, "cifar10")
        assert s.images.shape == (20, 32, 32, 3) and s.images.dtype == np.uint8
        assert np.bincount(s.labels).tolist() == [2] * 10
        # each image carries the label of its class's position in sorted order, pixels exact (PNG)
        names = [n for n in members if n.endswith(".png")]
        for k, name in enumerate(names):
            cls = name.split("/")[1]
            assert s.labels[k] == CLASSES.index(cls)
            assert np.array_equal(s.images[k], truth[name])


def test_image_folder_plain_tar_and_split(tmp_path):
    test_members, _ = _image_folder(CLASSES, 1, "test")
    train_members, _ = _image_folder(CLASSES, 3, "train", seed=5)
    _write_tar(tmp_path / "test.tar", test_members, "w")
    _write_tar(tmp_path / "train.tar.gz", train_members, "w:gz")
    assert len(load(str(tmp_path))) == 10
    assert len(load(str(tmp_path), "train")) == 30


def test_hundred_classes_is_cifar100(tmp_path):
    members, _ = _image_folder([f"c{i:03d}" for i in range(100)], 1, size=32)
    _write_tar(tmp_path / "test.tar", members, "w")
    s = load(str(tmp_path))
    assert (len(s), s.dataset) == (100, "cifar100")
    assert sorted(s.labels.tolist()) == list(range(100))


def test_three_classes_is_not_cifar(tmp_path):
    members, _ = _image_folder(["cat", "dog", "frog"], 2)
    _write_tar(tmp_path / "test.tar.xz", members)
    with pytest.raises(DataError, match="3 classes"):
        load(str(tmp_path))


def test_wrong_image_size_is_not_cifar(tmp_path):
    members, _ = _image_folder(CLASSES, 1, size=16)
    _write_tar(tmp_path / "test.tar", members, "w")
    with pytest.raises(DataError, match="32x32"):
        load(str(tmp_path))


def test_mixed_image_sizes_are_not_cifar(tmp_path):
    members, _ = _image_folder(CLASSES, 1)
    members["test/cat/big.png"] = _png(np.zeros((40, 40, 3), np.uint8))
    _write_tar(tmp_path / "test.tar", members, "w")
    with pytest.raises(DataError, match="40x40, not CIFAR.s 32x32"):
        load(str(tmp_path))


def test_archive_without_the_split_raises(tmp_path):
    members, _ = _image_folder(CLASSES, 1, "train")
    _write_tar(tmp_path / "data.tar", members, "w")
    with pytest.raises(DataError, match="'test/<class>/<image>'"):
        load(str(tmp_path / "data.tar"))


def test_file_that_is_not_a_tar_raises(tmp_path):
    bad = tmp_path / "test.tar.xz"
    bad.write_bytes(b"definitely not xz")
    with pytest.raises(DataError, match="not a readable tar"):
        load(str(bad))


# --- sources that are not CIFAR ---------------------------------------------------------------


def test_folder_with_unrelated_files(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "weights.bin").write_bytes(b"\0" * 64)
    with pytest.raises(DataError, match="holds neither"):
        load(str(tmp_path))


def test_folder_with_broken_test_batch(tmp_path):
    (tmp_path / "test_batch").write_bytes(b"not a pickle")
    with pytest.raises(DataError):
        load(str(tmp_path))


def test_train_split_missing_from_a_test_only_folder(tmp_path):
    members, _ = _image_folder(CLASSES, 1)
    _write_tar(tmp_path / "test.tar", members, "w")
    with pytest.raises(DataError, match="train.tar"):
        load(str(tmp_path), "train")


def test_nonexistent_path(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load(str(tmp_path / "missing"))


def test_bad_split(pickles):
    with pytest.raises(DataError, match="split"):
        load(str(pickles[0]), "validation")


def test_shared_cifar10_jpeg_test_split():
    s = load(str(shared_data("cifar10-jpeg", "test.tar.xz")))
    assert (len(s), s.dataset) == (10_000, "cifar10")
    assert s.images.shape == (10_000, 32, 32, 3) and s.images.dtype == np.uint8
    assert np.bincount(s.labels, minlength=10).tolist() == [1000] * 10


# --- select -----------------------------------------------------------------------------------


def test_select_is_deterministic_sorted_and_distinct():
    a = select(10_000, 256, seed=42)
    assert np.array_equal(a, select(10_000, 256, seed=42))
    assert not np.array_equal(a, select(10_000, 256, seed=43))
    assert a.shape == (256,)
    assert np.all(np.diff(a) > 0)  # sorted and without repeats
    assert a.min() >= 0 and a.max() < 10_000


def test_select_everything_and_nothing():
    assert select(7, 7, seed=0).tolist() == list(range(7))
    assert select(7, 0, seed=0).size == 0


def test_select_too_many_raises():
    with pytest.raises(DataError, match="only 100"):
        select(100, 101, seed=0)


def test_subset_keeps_images_and_labels_together(pickles):
    s = load(str(pickles[0]))
    idx = np.array([3, 1])
    sub = s.subset(idx)
    assert np.array_equal(sub.images, s.images[idx]) and sub.labels.tolist() == s.labels[idx].tolist()
    assert sub.dataset == s.dataset


# --- normalise --------------------------------------------------------------------------------


@pytest.mark.parametrize("dataset", ["cifar10", "cifar100"])
def test_normalise_pixel_values(dataset):
    rng = np.random.default_rng(9)
    images = rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    images[1, 4, 7] = (0, 128, 255)
    x = normalise(images, dataset)
    assert isinstance(x, torch.Tensor)
    assert x.shape == (2, 3, 32, 32) and x.dtype == torch.float32 and x.is_contiguous()
    mean, std = MEAN_STD[dataset]
    for c, v in enumerate((0, 128, 255)):
        assert x[1, c, 4, 7].item() == pytest.approx((v / 255 - mean[c]) / std[c], abs=1e-6)
    # NHWC -> NCHW: pixel (i, y, x, c) lands at (i, c, y, x)
    i, y, xx, c = 0, 20, 3, 2
    assert x[i, c, y, xx].item() == pytest.approx((images[i, y, xx, c] / 255 - mean[c]) / std[c], abs=1e-6)


def test_normalise_known_cifar10_constants():
    images = np.zeros((1, 32, 32, 3), np.uint8)
    x = normalise(images, "cifar10")
    # black pixel: -mean / std with the standard CIFAR-10 statistics
    assert x[0, :, 0, 0].tolist() == pytest.approx([-0.4914 / 0.2470, -0.4822 / 0.2435, -0.4465 / 0.2616], abs=1e-6)
