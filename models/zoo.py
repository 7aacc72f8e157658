"""Checkpoints that carry their own metadata, and the committed zoo under ``models/zoo/``.

A checkpoint is a torch file holding ``{"meta": {...}, "state_dict": {...}}``. The metadata
says what network the weights belong to, how they were trained and how accurate they are; its
``sha256`` covers the weights alone (names, dtypes, shapes, bytes) so it identifies the model
whatever the file around it, and a campaign can store it.
"""

from __future__ import annotations

import hashlib
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import torch

from fi_campaign.errors import UserError
from fi_campaign.models.resnet import Arch, CifarResNet, build

ZOO_DIR = Path(__file__).parent / "zoo"
ZOO_PREFIX = "zoo:"
# 2: the inverted (conv-act-bn) block lost its activation after the shortcut addition.
FORMAT = 2


class CheckpointError(UserError):
    """A checkpoint that is missing, corrupt or for another network; one sentence for a user."""


@dataclass
class Meta:
    arch: Arch
    dataset: str
    recipe: dict = field(default_factory=dict)
    clean_accuracy: float | None = None  # top-1 on the full test split, a fraction
    accuracy_on: str = ""  # which test set the accuracy was measured on
    trained_on: str = ""  # e.g. "cpu (2 cores), 12 epochs"
    sha256: str = ""
    derived_from: str = ""  # another checkpoint whose weights these are, and why they are reused

    def to_dict(self) -> dict:
        return {
            "arch": self.arch.to_dict(),
            "dataset": self.dataset,
            "recipe": self.recipe,
            "clean_accuracy": self.clean_accuracy,
            "accuracy_on": self.accuracy_on,
            "trained_on": self.trained_on,
            "sha256": self.sha256,
            "derived_from": self.derived_from,
        }

    @classmethod
    def from_dict(cls, d: dict) -> Meta:
        return cls(
            Arch(**d["arch"]),
            d["dataset"],
            dict(d.get("recipe") or {}),
            d.get("clean_accuracy"),
            d.get("accuracy_on", ""),
            d.get("trained_on", ""),
            d.get("sha256", ""),
            d.get("derived_from", ""),
        )


def weights_digest(state_dict: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name].detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.view(torch.int16).numpy().tobytes())
    return h.hexdigest()


def resolve(ref: str) -> Path:
    """``zoo:NAME`` -> the committed file; anything else is a path."""
    if ref.startswith(ZOO_PREFIX):
        return ZOO_DIR / f"{ref[len(ZOO_PREFIX) :]}.pt"
    return Path(ref).expanduser()


def zoo_names() -> list[str]:
    return sorted(ZOO_PREFIX + p.stem for p in ZOO_DIR.glob("*.pt"))


def refused_global(e: Exception) -> str | None:
    """What a ``weights_only`` load refused to import, said for a user, if that is why it failed."""
    found = re.search(r"GLOBAL (\S+)", str(e))
    return f"it asks for {found.group(1)}, which could run code and which no fi-campaign file holds" if found else None


VALID = (
    "a checkpoint is a file written by 'fi-campaign train', or a committed model named zoo:NAME "
    "(e.g. zoo:resnet20-cifar10-baseline)"
)


def held(blob: object) -> str:
    """What a loaded file that is not a checkpoint holds, in a few words."""
    if isinstance(blob, dict):
        lacks = [f"'{k}'" for k in ("meta", "state_dict") if not isinstance(blob.get(k), dict)]
        return f"a mapping without {' and '.join(lacks)}"
    return f"a {type(blob).__name__}"


def refused(ref: str, why: str) -> NoReturn:
    raise CheckpointError(f"{ref} is not an fi-campaign checkpoint ({why}), so it was not loaded; {VALID}.")


def save(path: Path, model: CifarResNet, meta: Meta) -> Meta:
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    meta.arch = model.arch
    meta.sha256 = weights_digest(state)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save({"format": FORMAT, "meta": meta.to_dict(), "state_dict": state}, tmp)
    tmp.replace(path)
    return meta


def read(ref: str) -> tuple[Meta, dict[str, torch.Tensor]]:
    path = resolve(ref)
    try:
        found = path.is_file()
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint {ref} ({e.strerror}).") from None
    if not found:
        hint = f" Committed models: {', '.join(zoo_names())}." if ref.startswith(ZOO_PREFIX) else ""
        raise CheckpointError(f"checkpoint {ref} does not exist.{hint}")
    try:
        with warnings.catch_warnings():  # torch warns about a file it then refuses; the refusal says it all
            warnings.simplefilter("ignore")
            blob = torch.load(path, map_location="cpu", weights_only=True)
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint {ref} ({e.strerror}).") from None
    except Exception as e:  # noqa: BLE001 - torch raises many kinds for a file that is not a checkpoint
        refused(ref, refused_global(e) or "it is not a file PyTorch can load")
    if not (isinstance(blob, dict) and isinstance(blob.get("state_dict"), dict) and isinstance(blob.get("meta"), dict)):
        refused(ref, f"it is a PyTorch file holding {held(blob)}")
    fmt, state, recorded = blob.get("format", 1), blob["state_dict"], blob["meta"]
    if not (isinstance(fmt, int) and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items())):
        refused(ref, "its state_dict is not a mapping of named tensors")
    try:
        digest = weights_digest(state)
    except Exception:  # noqa: BLE001 - a tensor type numpy cannot hold
        refused(ref, "its weights are not plain tensors")
    try:
        meta = Meta.from_dict(recorded)
    except ValueError as e:  # Arch refuses a value this version does not build (a newer activation)
        raise CheckpointError(f"{ref} records a network this version cannot build ({e}).") from None
    except Exception:  # noqa: BLE001 - any malformed metadata
        refused(ref, "its metadata does not describe a network")
    if fmt < 2 and meta.arch.order == "conv-act-bn":
        raise CheckpointError(
            f"{ref} was trained with the older inverted block (an activation after "
            "the shortcut addition), which this version no longer builds; retrain it."
        )
    if digest != meta.sha256:
        raise CheckpointError(f"{ref} is corrupt: its weights do not match the sha256 in its metadata.")
    return meta, state


def load(ref: str, expect: Arch | None = None, device: str = "cpu") -> tuple[CifarResNet, Meta]:
    """Build the network a checkpoint describes and load it, refusing an architecture mismatch."""
    meta, state = read(ref)
    if expect is not None and expect != meta.arch:
        raise CheckpointError(f"{ref} holds a {describe(meta.arch)} but {describe(expect)} was asked for.")
    model = build(meta.arch)
    try:
        model.load_state_dict(state)
    except RuntimeError:
        raise CheckpointError(f"{ref} does not fit a {describe(meta.arch)} although its metadata says so.") from None
    return model.to(device).eval(), meta


def describe(arch: Arch) -> str:
    return f"{arch.name} ({arch.activation}, {arch.order}, {arch.num_classes} classes)"
