"""How fast the committed ResNet-20 runs in each number format fi-campaign supports.

    python bench/dtypes.py [--quick] [--device cpu|cuda] [--batch 64] [--threads 1] [--repeats 3]

For float32, float16 and bfloat16: the fault-free forward pass of one batch of CIFAR-10 test
images (``bundled``), and the same pass with one single_bit flip per batch row (the in-process
kernel), in milliseconds per batch and images (injections) per second, and whether the outputs
are finite; then one of its 3x3 convolutions (16 channels, 32 x 32) alone on a batch of that
shape (``--quick``: batch 16, one timed pass). PyTorch runs half-precision convolutions on
a CPU without native bfloat16 or float16 arithmetic through a slower path; this says how much
slower on the machine at hand.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch

from fi_campaign.heap import keep_freed_memory
from fi_campaign.models import zoo
from fi_campaign.models.data import normalise
from fi_campaign.models.faults import BitFlips, Injector, describe_layers
from fi_campaign.models.formats import DTYPES, width
from fi_campaign.models.sources import in_dtype, torch_dtype
from fi_campaign.workload.images import workload_images


def timed(fn, repeats: int) -> float:
    fn()  # warm-up: first-call allocations and kernel selection
    t = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t) / repeats


def main() -> None:
    keep_freed_memory()  # as every fi-campaign process does
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    if args.quick:
        args.batch, args.repeats = 16, 1
    torch.set_num_threads(args.threads)
    images, _ = workload_images("bundled", args.batch, 0)
    x32 = normalise(images.images, images.dataset).to(args.device)
    print(f"ResNet-20 (zoo:resnet20-cifar10-baseline), batch {args.batch}, {args.device}, {args.threads} thread(s)")
    for dtype in DTYPES:
        resnet, _ = zoo.load("zoo:resnet20-cifar10-baseline", device=args.device)
        model = in_dtype(resnet, dtype).eval()
        x = x32.to(torch_dtype(dtype))
        layers = describe_layers(model)
        rng = np.random.default_rng(0)
        at = rng.integers(0, len(layers), args.batch)
        flips = BitFlips(
            at,
            np.arange(args.batch),
            np.array([rng.integers(0, layers[k].numel) for k in at]),
            rng.integers(0, width(dtype), args.batch),
        )
        inj = Injector(model)
        out: dict[str, torch.Tensor] = {}

        def clean(model=model, x=x, out=out) -> None:
            with torch.inference_mode():
                out["y"] = model(x)

        def faulted(model=model, x=x, inj=inj, flips=flips) -> None:
            with torch.inference_mode(), inj.armed(flips):
                model(x)

        a, b = timed(clean, args.repeats), timed(faulted, args.repeats)
        finite = bool(torch.isfinite(out["y"].float()).all())
        print(
            f"  {dtype:9s} clean {1000 * a:8.1f} ms/batch ({args.batch / a:8.1f} images/s)   "
            f"single_bit {1000 * b:8.1f} ms/batch ({args.batch / b:8.1f} injections/s)   finite outputs: {finite}"
        )
        inj.remove()
        conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.in_channels == 16)
        act = torch.randn(args.batch, 16, 32, 32, generator=torch.Generator().manual_seed(0))
        act = act.to(args.device, torch_dtype(dtype))

        def alone(conv=conv, act=act) -> None:
            with torch.inference_mode():
                conv(act)

        c = timed(alone, args.repeats)
        print(f"  {'':9s} one 3x3 conv, 16 channels, {args.batch} x 16 x 32 x 32: {1000 * c:8.1f} ms")


if __name__ == "__main__":
    main()
