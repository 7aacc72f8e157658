"""The workload program: one model, the campaign's fixed images, one optional fault -> logits.

    python -m campaign.infer RUN_ROOT [FAULT.json] --out logits.npy

RUN_ROOT holds ``workload.json`` (checkpoint, batch size, device) and ``images.npy`` (the
normalised inputs), written once per campaign run. It is what every process-isolated injection
starts — and, for NVBitFI, what the injector attaches to — so it imports only torch, numpy and
the model code, sets deterministic kernels, and launches exactly the same kernels in the
golden, profiling and injection runs: the fault is applied by a forward hook that only edits a
tensor, never by a different code path.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m campaign.infer")
    ap.add_argument("root", type=Path)
    ap.add_argument("fault", type=Path, nargs="?")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)

    import os

    from campaign.heap import keep_freed_memory

    keep_freed_memory()
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS on GPUs
    import torch

    # deterministic convolutions without torch.use_deterministic_algorithms, whose import of
    # torch._dynamo doubled the program's start-up (bench/process.py); golden runs verify it
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    from models import zoo
    from models.faults import Injector, site_faults

    spec = json.loads((args.root / "workload.json").read_text())
    model, _ = zoo.load(spec["checkpoint"], device=spec["device"])
    inputs = torch.from_numpy(np.load(args.root / "images.npy")).to(spec["device"])
    b = spec["batch_size"]
    faults, target = None, -1
    if args.fault:
        site = json.loads(args.fault.read_text())
        target = site["image"]
        faults = site_faults([site], np.array([target % b]), spec["fault_model"])
    injector = Injector(model)
    out = []
    with torch.inference_mode():
        for i in range(0, len(inputs), b):
            chunk = inputs[i:i + b]
            x = torch.cat([chunk, inputs[:1].expand(b - len(chunk), *chunk.shape[1:])]) if len(chunk) < b else chunk
            if faults is not None and i <= target < i + b:
                with injector.armed(faults):
                    y = model(x)
            else:
                y = model(x)
            out.append(y[: len(chunk)].float().cpu().numpy())
    np.save(args.out, np.concatenate(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
