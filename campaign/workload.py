"""The workload of a campaign: one model, its fixed images and its golden outputs."""
from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from campaign.errors import UserError
from models import data as cifar
from models import zoo
from models.faults import FaultBatch, Injector
from models.resnet import CifarResNet


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device {device} was asked for but PyTorch sees no CUDA GPU here; use device: cpu.")
    return device


def image_digest(images: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(images).tobytes()).hexdigest()


def workload_images(source: str, count: int, seed: int) -> tuple[cifar.ImageSet, np.ndarray]:
    full = cifar.load(source, "test")
    indices = cifar.select(len(full), count, seed)
    return full.subset(indices), indices


def workload_inputs(workload: dict) -> np.ndarray:
    """The campaign's normalised input images, checked against the digest stored at plan time."""
    images, _ = workload_images(workload["source"], workload["count"], workload["seed"])
    if image_digest(images.images) != workload["images_sha256"]:
        raise UserError(f"the images at {workload['source']} differ from those the campaign was planned on.")
    return cifar.normalise(images.images, images.dataset).numpy()


def check_checkpoint(checkpoint: str, found_sha256: str, expect_sha256: str) -> None:
    if expect_sha256 and found_sha256 != expect_sha256:
        raise UserError(f"{checkpoint} has changed since the campaign was planned (sha256 differs); "
                        "restore it or plan a new campaign.")


def write_root(root: Path, checkpoint: str, workload: dict, batch_size: int, device: str, fault_model: dict) -> Path:
    """The folder every workload process of one model reads: images.npy and workload.json."""
    from models import zoo

    root = root.resolve()
    root.mkdir(parents=True, exist_ok=True)
    spec = json.dumps({"checkpoint": str(zoo.resolve(checkpoint).resolve()), "batch_size": batch_size,
                       "device": device, "fault_model": fault_model})
    # several workers write the same root while others' processes read it: replace atomically
    tmp = root / f".images.{os.getpid()}.npy"
    np.save(tmp, workload_inputs(workload))
    os.replace(tmp, root / "images.npy")
    (root / f".workload.{os.getpid()}.json").write_text(spec)
    os.replace(root / f".workload.{os.getpid()}.json", root / "workload.json")
    return root


def command(root: Path, fault: Path | None = None, out: str = "logits.npy") -> list[str]:
    """The workload program's command line; the same program for golden, profiling and injection runs."""
    return [sys.executable, "-m", "campaign.infer", str(root)] + ([str(fault)] if fault else []) + ["--out", out]


@dataclass
class Workload:
    model: CifarResNet
    meta: zoo.Meta
    inputs: torch.Tensor  # normalised, on the device
    golden: np.ndarray  # (images, classes) float32
    injector: Injector
    batch_size: int

    @classmethod
    def open(cls, checkpoint: str, expect_sha256: str, workload: dict, device: str, batch_size: int) -> "Workload":
        torch.backends.cudnn.benchmark = False  # the same kernels for the golden and every faulted pass
        torch.backends.cudnn.deterministic = True
        model, meta = zoo.load(checkpoint, device=device)
        check_checkpoint(checkpoint, meta.sha256, expect_sha256)
        inputs = torch.from_numpy(workload_inputs(workload)).to(device)
        w = cls(model, meta, inputs, np.empty(0), Injector(model), batch_size)
        w.golden = w.forward(np.arange(len(inputs)))
        return w

    def forward(self, rows: np.ndarray, faults: FaultBatch | None = None) -> np.ndarray:
        """Logits of the images ``rows`` (one batch row each), with ``faults`` armed if given.

        Every pass has exactly ``batch_size`` rows (a short chunk is padded with image 0):
        CPU and GPU kernels pick algorithms by shape, and a batch of 1 can differ from a
        batch of 256 in the last bits, which would read as an SDC.
        """
        out = []
        b = self.batch_size
        if faults is not None and len(rows) > b:
            raise ValueError(f"a faulted pass takes at most batch_size={b} rows, got {len(rows)}")
        with torch.inference_mode():
            for i in range(0, len(rows), b):
                chunk = rows[i:i + b]
                padded = np.concatenate([chunk, np.zeros(b - len(chunk), dtype=chunk.dtype)])
                x = self.inputs[torch.from_numpy(padded).to(self.inputs.device)]
                if faults is None:
                    y = self.model(x)
                else:
                    with self.injector.armed(faults):
                        y = self.model(x)
                out.append(y[: len(chunk)].float().cpu().numpy())
        return np.concatenate(out)

    def check_reproducible(self, tolerance: float) -> float:
        """Fault-free outputs of a reshuffled batch must equal the golden ones, or every
        comparison would mistake numerical noise for faults. Returns the largest difference."""
        n = len(self.golden)
        rows = np.random.default_rng(0).permutation(n)[: min(n, self.batch_size)]
        diff = float(np.abs(self.forward(rows) - self.golden[rows]).max())
        if diff > tolerance:
            raise UserError(f"fault-free outputs differ from the golden run by {diff:.3g} when images are batched "
                            f"differently on this device; set tolerance to at least {diff:.3g} in the config.")
        return diff
