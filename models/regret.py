"""The paper's high-level robustness measure (Cavagnero et al., Fig. 5): regret = clean test
accuracy - noisy test accuracy, where every test image is corrupted once per repeat.

Each image gets its own fault (the injector is vectorised per row): one conv/linear layer drawn
uniformly, a geometry drawn among single value, line and block (channel probabilities 1.0, 0.75
and 0.3), and one power-law relative error r with a random sign, x -> x (1 + s r).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from fi_campaign.models.faults import Injector, PlaneNoise
from fi_campaign.models.powerlaw import PowerLaw

GEOMETRIES = ("single", "line", "block")


@dataclass(frozen=True)
class Regret:
    clean: float
    noisy: float
    noisy_low: float
    noisy_high: float
    regret: float
    regret_low: float
    regret_high: float
    images: int
    repeats: int


def _mean_ci(values: np.ndarray, z: float = 1.959963984540054) -> tuple[float, float, float]:
    """Mean over images with a normal interval: images are the independent units, the
    repeats of one image are averaged first because they share the image."""
    m = float(values.mean())
    half = z * float(values.std(ddof=1)) / math.sqrt(len(values)) if len(values) > 1 else math.nan
    return m, m - half, m + half


def noise_batch(n: int, n_layers: int, law: PowerLaw, rng: np.random.Generator, gen: torch.Generator) -> PlaneNoise:
    r = law.sample(rng.random(n))
    signs = np.where(rng.random(n) < 0.5, -1.0, 1.0)
    return PlaneNoise(
        rng.integers(0, n_layers, n),
        np.arange(n),
        rng.integers(0, len(GEOMETRIES), n),
        signs * r,
        (1.0, 0.75, 0.3),
        gen,
    )


def evaluate(
    model: torch.nn.Module,
    inputs: torch.Tensor,
    labels: torch.Tensor,
    law: PowerLaw,
    repeats: int = 5,
    seed: int = 0,
    batch_size: int = 500,
) -> Regret:
    model.eval()
    injector = Injector(model)
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    n = len(labels)
    clean = np.zeros(n)
    noisy = np.zeros((repeats, n))
    try:
        with torch.inference_mode():
            for i in range(0, n, batch_size):
                x, y = inputs[i : i + batch_size], labels[i : i + batch_size]
                clean[i : i + len(y)] = (model(x).argmax(1) == y).cpu().numpy()
                for rep in range(repeats):
                    with injector.armed(noise_batch(len(y), len(injector.layers), law, rng, gen)):
                        noisy[rep, i : i + len(y)] = (model(x).argmax(1) == y).cpu().numpy()
    finally:
        injector.remove()
    per_image_noisy = noisy.mean(axis=0)
    nm, nl, nh = _mean_ci(per_image_noisy)
    rm, rl, rh = _mean_ci(clean - per_image_noisy)
    return Regret(float(clean.mean()), nm, nl, nh, rm, rl, rh, n, repeats)
