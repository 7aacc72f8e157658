"""The workload program: one model, the campaign's fixed inputs, one optional fault -> outputs.

    python -m fi_campaign.workload.program RUN_ROOT [FAULT.json] --out logits.npy

RUN_ROOT holds ``workload.json`` (checkpoint, batch size, device, float32 math mode, the dtype
of a network that does not run in float32; for a network other than a CIFAR ResNet also its
recorded source, weights digest and target names) and
``images.npy`` (the inputs as the network is given them), written once per campaign run. It is
what every process-isolated injection starts — and, for NVBitFI, what the injector attaches to —
so it imports only torch, numpy and the model code, sets deterministic kernels, and launches
exactly the same kernels in the golden, profiling and injection runs: the fault is applied by a
forward hook that only edits a tensor, never by a different code path.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fi_campaign.models.formats import DTYPES
from fi_campaign.models.powerlaw import FaultModelRecord

if TYPE_CHECKING:
    from fi_campaign.store import ModelRecord, WorkloadRecord


def write_root(
    root: Path,
    model: ModelRecord,
    name: str,
    workload: WorkloadRecord,
    batch_size: int,
    device: str,
    fault_model: FaultModelRecord,
    math: str = "fp32",
) -> Path:
    """The folder every workload process of one model reads: images.npy and workload.json. A
    float32 CIFAR ResNet's workload.json is as before (so golden runs cached by earlier versions
    stay valid); any other network's adds what loads it again, and its dtype."""
    from fi_campaign.models import zoo
    from fi_campaign.workload.images import workload_inputs

    root = root.resolve()
    root.mkdir(parents=True, exist_ok=True)
    own: dict = {}
    if model.source is not None or model.targets is not None:
        own = {
            "name": name,
            "sha256": model.sha256,
            "source": None if model.source is None else model.source.to_dict(),
            "targets": None if model.targets is None else list(model.targets.names),
        }
    checkpoint = model.checkpoint if model.source is not None else str(zoo.resolve(model.checkpoint).resolve())
    spec = json.dumps(
        {
            "checkpoint": checkpoint,
            "batch_size": batch_size,
            "device": device,
            "fault_model": fault_model.to_dict(),
            "math": math,
        }
        | own
        | ({"dtype": model.dtype} if model.dtype != "float32" else {})
    )
    # several workers write the same root while others' processes read it: replace atomically
    tmp = root / f".images.{os.getpid()}.npy"
    np.save(tmp, workload_inputs(workload))
    os.replace(tmp, root / "images.npy")
    (root / f".workload.{os.getpid()}.json").write_text(spec)
    os.replace(root / f".workload.{os.getpid()}.json", root / "workload.json")
    return root


def interpreter() -> str:
    """What starts workload processes: this Python, or FI_WORKLOAD_PYTHON when set (another
    interpreter, or a host program that takes a python3 command line, such as
    bench/gpucheck/pyhost.c, which starts CUDA before the interpreter so that NVBit sees a C
    executable; docs/NVBITFI.md)."""
    return os.environ.get("FI_WORKLOAD_PYTHON") or sys.executable


def command(root: Path, fault: Path | None = None, out: str = "logits.npy") -> list[str]:
    """The workload program's command line; the same program for golden, profiling and injection runs."""
    return (
        [interpreter(), "-m", "fi_campaign.workload.program", str(root)]
        + ([str(fault)] if fault else [])
        + ["--out", out]
    )


class BadInput(Exception):
    """A run directory file the program cannot use; its one sentence goes to stderr, exit 2."""


def _read_json(path: Path, keys: dict[str, type | tuple[type, ...]]) -> dict:
    """A JSON object from a run directory, with the keys the program uses checked for type."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise BadInput(f"{path} is not a readable JSON file ({type(e).__name__}).") from None
    if not isinstance(value, dict):
        raise BadInput(f"{path} does not hold a JSON object.")
    for key, kind in keys.items():
        if not isinstance(value.get(key), kind) or isinstance(value.get(key), bool):
            raise BadInput(f"{path}: {key} is missing or not of the expected type.")
    return value


def _inputs(path: Path) -> np.ndarray:
    try:
        inputs = np.load(path, allow_pickle=False)  # a run directory is no place to run code from
    except (OSError, ValueError) as e:
        raise BadInput(f"{path} is not a readable .npy array ({type(e).__name__}).") from None
    if inputs.dtype not in (np.float32, np.int64) or inputs.ndim < 1 or len(inputs) == 0:
        raise BadInput(f"{path} does not hold the campaign's inputs (float32 or int64, N x ...).")
    return inputs


def _read_run(root: Path, fault: Path | None) -> tuple[dict, np.ndarray, dict | None, FaultModelRecord | None]:
    """The run's spec, images, fault and fault model, checked before torch is imported (so a bad
    file costs no start-up)."""
    spec = _read_json(
        root / "workload.json", {"checkpoint": str, "batch_size": int, "device": str, "fault_model": dict}
    )
    if spec["batch_size"] < 1:
        raise BadInput(f"{root / 'workload.json'}: batch_size must be at least 1.")
    if spec.get("dtype", "float32") not in DTYPES:
        raise BadInput(f"{root / 'workload.json'}: dtype must be one of {', '.join(DTYPES)}.")
    images = _inputs(root / "images.npy")
    if fault is None:
        return spec, images, None, None
    site = _read_json(fault, {"mode": str})
    if site["mode"] == "weight_stuck_at":  # a permanent fault: every image, no image of its own
        site = _read_json(fault, {"mode": str, "stuck": int})
        site["image"] = None
    elif not isinstance(site.get("image"), int) or isinstance(site["image"], bool):
        raise BadInput(f"{fault}: image is missing or not of the expected type.")
    elif not 0 <= site["image"] < len(images):
        raise BadInput(f"{fault}: image {site['image']} is not one of the {len(images)} workload images.")
    try:
        fault_model = FaultModelRecord.from_dict(spec["fault_model"])
    except (KeyError, TypeError, ValueError, AttributeError):
        raise BadInput(f"{root / 'workload.json'}: fault_model is not a stored fault model.") from None
    return spec, images, site, fault_model


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m fi_campaign.workload.program")
    ap.add_argument("root", type=Path)
    ap.add_argument("fault", type=Path, nargs="?")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)

    from fi_campaign.heap import keep_freed_memory

    keep_freed_memory()
    try:
        spec, images, site, fault_model = _read_run(args.root, args.fault)
    except BadInput as e:
        print(f"workload program: {e}", file=sys.stderr)
        return 2
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS on GPUs
    import torch

    # deterministic convolutions without torch.use_deterministic_algorithms, whose import of
    # torch._dynamo doubled the program's start-up (bench/process.py); golden runs verify it
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    from fi_campaign.errors import UserError
    from fi_campaign.models.faults import Injector, site_faults
    from fi_campaign.models.sources import SourceRecord
    from fi_campaign.models.targets import network_output
    from fi_campaign.workload.mathmode import set_math
    from fi_campaign.workload.network import as_inputs, load_recorded

    set_math(spec.get("math", "fp32"))
    dtype = spec.get("dtype", "float32")
    inputs = as_inputs(torch.from_numpy(images).to(spec["device"]), dtype)
    b = spec["batch_size"]
    try:
        source = SourceRecord.from_dict(spec["source"]) if spec.get("source") else None
        targets = tuple(spec["targets"]) if spec.get("targets") is not None else None
    except (KeyError, TypeError, ValueError):
        print(
            f"workload program: {args.root / 'workload.json'}: source is not a recorded model source.", file=sys.stderr
        )
        return 2
    try:
        key = f"models.{spec.get('name', 'model')}"
        net = load_recorded(spec["checkpoint"], spec.get("sha256", ""), source, targets, key, spec["device"], dtype)
    except UserError as e:
        print(f"workload program: {e}", file=sys.stderr)
        return 2
    model = net.model
    injector = Injector(model, net.layers)
    faults, target = None, -1
    if site is not None and fault_model is not None:
        target = site["image"]
        rows = np.arange(b) if target is None else np.array([target % b])
        faults = site_faults([site], rows, fault_model, injector.layers)
    out = []
    with torch.inference_mode():
        for i in range(0, len(inputs), b):
            chunk = inputs[i : i + b]
            x = torch.cat([chunk, inputs[:1].expand(b - len(chunk), *chunk.shape[1:])]) if len(chunk) < b else chunk
            if faults is not None and (target is None or i <= target < i + b):
                with injector.armed(faults):
                    y = network_output(model(x))
            else:
                y = network_output(model(x))
            out.append(y[: len(chunk)].float().cpu().numpy())
    np.save(args.out, np.concatenate(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
