"""Write a NaN-safe twin of a committed hardened checkpoint: the same weights, recorded with the
relu6-nansafe activation, but only after checking that fault-free the two networks give
bit-identical logits on every test image (then no retraining is needed: the activations differ
only where a value is NaN, which a fault-free pass never makes).

    python bench/zoo_nansafe.py [--source zoo:resnet20-cifar10-hardened] [--data ../shared/data/cifar10-jpeg]

Writes models/zoo/<source name>-nansafe.pt; exits 1 without writing when any logit differs.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from bench.common import machine
from fi_campaign.heap import keep_freed_memory
from fi_campaign.models import data, zoo
from fi_campaign.models.resnet import build


def main() -> int:
    keep_freed_memory()
    ap = argparse.ArgumentParser()
    ap.add_argument("--source", default="zoo:resnet20-cifar10-hardened")
    ap.add_argument("--data", default="../shared/data/cifar10-jpeg")
    args = ap.parse_args()
    print(machine())
    plain, meta = zoo.load(args.source)
    if meta.arch.activation != "relu6":
        print(f"{args.source} has activation {meta.arch.activation}, not relu6.")
        return 1
    recorded = meta.clean_accuracy
    if recorded is None:
        print(f"{args.source} records no clean accuracy to compare with.")
        return 1
    arch = dataclasses.replace(meta.arch, activation="relu6-nansafe")
    safe = build(arch).eval()
    safe.load_state_dict(plain.state_dict())
    images = data.load(args.data, "test")
    if images.dataset != meta.dataset:
        print(f"{args.data} holds {images.dataset}, but {args.source} was trained on {meta.dataset}.")
        return 1
    x = data.normalise(images.images, images.dataset)
    y = torch.from_numpy(images.labels)
    differing, correct = 0, 0
    with torch.inference_mode():
        for i in range(0, len(y), 500):
            a, b = plain(x[i : i + 500]), safe(x[i : i + 500])
            differing += int((a.view(torch.int32) != b.view(torch.int32)).any(1).sum())
            correct += int((b.argmax(1) == y[i : i + 500]).sum())
    accuracy = correct / len(y)
    print(
        f"{len(y)} {images.dataset} test images from {images.source}: {differing} with logits that differ "
        f"in any bit; accuracy with relu6-nansafe {100 * accuracy:.2f}% (recorded {100 * recorded:.2f}%)"
    )
    if differing or accuracy != recorded:
        print("not bit-identical: retrain with fi-campaign train --preset hardened-nansafe instead.")
        return 1
    name = (
        args.source.removeprefix(zoo.ZOO_PREFIX) if args.source.startswith(zoo.ZOO_PREFIX) else Path(args.source).stem
    )
    out = zoo.ZOO_DIR / f"{name}-nansafe.pt"
    derived = (
        f"the weights of {args.source} (sha256 {meta.sha256[:12]}), not retrained: fault-free, its logits "
        f"are bit-identical with relu6 and relu6-nansafe on the {len(y)} test images "
        f"of {images.source} (bench/zoo_nansafe.py)"
    )
    zoo.save(out, safe, dataclasses.replace(meta, arch=arch, derived_from=derived))
    print(f"Wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
