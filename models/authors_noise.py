"""The test-time noise of the authors' published injector (``evaluate --noise authors-2022``).

Cavagnero et al. (IOLTS 2022) made their figures with DieHardNET (github.com/diehardnet/
diehardnet), whose injector does not do what the paper's text says (models.regret follows the
text). This module reproduces what that code does at test time, so a regret can be compared
with the paper's figures. Line numbers are of commit 5aed2f5 (the paper's era; the test-time
path of ``hans_gruber.py`` is the same at the repository's HEAD). HG is
``pytorch_scripts/hg_noise_injector/hans_gruber.py``, HR ``pytorch_scripts/hard_resnet.py``.

1. One fault per forward pass, in one layer drawn uniformly among the conv and linear layers
   (HR 146-149 count them, HR 163 draws the index once per forward; HR 31-36 inject after the
   convolution, before BatchNorm, as the hooks here do). fi-campaign's ResNets use option-A
   shortcuts, so ResNet-20 has 20 such layers here against DieHardNET's 22 (two 1x1 shortcut
   convolutions).
2. Every image of the batch gets that same fault: at test time the sampling probability is 1
   (HG 228-230, 173-174), one error value is drawn per call (HG 179) and one 2-D mask is copied
   into every sampled image (HG 39-41). Images of a batch are therefore not independent.
3. Geometries: line, square or whole layer, one third each (HG 116, 187); the configured error
   model is ignored at test time (HG 181-188) and the single-value geometry (HG 62-69) is
   never drawn.
4. Line: a row or a column, 50/50 (HG 78-81), at an index drawn uniformly (HG 75), in each
   channel with probability 0.75 (HG 76-77).
5. Square: rows r0..r1 with r0 uniform in [0, H-2] and r1 uniform in [r0, H-1], columns the
   same way (HG 89-94). Its 0.3 per-channel draw is passed on as a boolean tensor, not as
   indices (HG 88, 95); indexing with each 0-d boolean selects every channel when it is True,
   so the rectangle is in every channel with probability 1 - 0.7^C and in none otherwise.
6. Whole layer: the same slip with 0.1 (HG 102-103): the entire output of the layer is hit
   with probability 1 - 0.9^C, nothing otherwise.
7. Magnitude: one of the 21 DSN 2021 functional-unit power laws, drawn uniformly (HG 138-147;
   the table models.powerlaw calls ``dsn2021-fu``, same values, same order), its two numbers
   unpacked as (alpha, x_min) while they are (x_min, alpha) (HG 147), then the inverse-CDF draw
   F = x_min (1 - r)^(-1 / (alpha - 1)) with those swapped values (HG 148-149). A swapped
   "alpha" below 1 makes the exponent positive: F is then below x_min, often below 1.
8. F is a plain factor, x -> F x (HG 185, 211): no sign (only the training error has one, HG
   154-159) and no 1 + r; F < 1, an attenuation, about half the time (``p_below_one``).
9. Linear layer: each output feature with probability 0.3 (HG 46-59), multiplied by F at HG 185
   and again at HG 211: F squared.
10. Noisy accuracy: one noisy pass per validation batch of 200 (DieHardNET
    ``pytorch_scripts/cifar_data_module.py`` 53-54, ``LightningModelWrapper.py`` 77-88): 50
    faults per 10,000 images, one pass, no repetition. Here one repetition is such a pass and
    the interval is over repetitions (``evaluate``).

Not reproduced, since regret is measured at test time: in training, HG 226 calls ``inject``
without the epoch, so the training magnitude stays uniform in [0, 1) with a random sign
instead of growing with the epoch (HG 154-159).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from fi_campaign.models.faults import FaultBatch, Injector, LayerInfo, describe_layers
from fi_campaign.models.noise_names import AUTHORS_BATCH as BATCH
from fi_campaign.models.powerlaw import TABLES
from fi_campaign.models.regret import Regret

GEOMETRIES = ("line", "square", "whole")  # conv layers, drawn uniformly
LINEAR = "linear"
LINE_CHANNEL_P = 0.75
SQUARE_CHANNEL_P = 0.3
WHOLE_CHANNEL_P = 0.1
LINEAR_FEATURE_P = 0.3
LAWS = TABLES["dsn2021-fu"]  # (x_min, alpha) as fi-campaign stores them


def factor(law: int, r: float) -> float:
    """F for uniform ``r`` in [0, 1) under law ``law`` of LAWS, read with x_min and alpha
    swapped as DieHardNET unpacks them (quirk 7)."""
    x_min, alpha = LAWS[law]
    read_alpha, read_x_min = x_min, alpha
    return read_x_min * (1.0 - r) ** (-1.0 / (read_alpha - 1.0))


def p_below_one() -> float:
    """P(F < 1) over the uniform choice of law (quirk 8), in closed form: with swapped values
    a, x (every x > 1 in this table), F < 1 needs a < 1 and then has probability x^(a - 1)."""
    total = 0.0
    for x_min, alpha in LAWS:
        a, x = x_min, alpha
        total += x ** (a - 1.0) if a < 1.0 else 0.0
    return total / len(LAWS)


def line_mask(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Quirk 4: one row or column in each channel drawn with probability 0.75."""
    c, h, w = shape
    mask = np.zeros(shape, dtype=bool)
    channels = rng.random(c) < LINE_CHANNEL_P
    if rng.random() < 0.5:
        mask[channels, :, int(rng.integers(w))] = True
    else:
        mask[channels, int(rng.integers(h)), :] = True
    return mask


def _span(n: int, rng: np.random.Generator) -> slice:
    first = int(rng.integers(max(n - 1, 1)))  # DieHardNET's draw fails on a 1-wide map; row 0 here
    return slice(first, int(rng.integers(first, n)) + 1)


def square_mask(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Quirk 5: a rectangle in every channel or in none."""
    c, h, w = shape
    mask = np.zeros(shape, dtype=bool)
    rows, cols = _span(h, rng), _span(w, rng)
    if (rng.random(c) < SQUARE_CHANNEL_P).any():
        mask[:, rows, cols] = True
    return mask


def whole_mask(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Quirk 6: the whole output or nothing."""
    return np.full(shape, bool((rng.random(shape[0]) < WHOLE_CHANNEL_P).any()))


def linear_mask(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Quirk 9: each output feature (the last dimension) with probability 0.3."""
    return np.broadcast_to(rng.random(shape[-1]) < LINEAR_FEATURE_P, shape).copy()


MASKS: dict[str, Callable[[tuple[int, ...], np.random.Generator], np.ndarray]] = {
    "line": line_mask,
    "square": square_mask,
    "whole": whole_mask,
    LINEAR: linear_mask,
}


@dataclass(frozen=True, kw_only=True, eq=False)
class SharedFault(FaultBatch):
    """One fault that every image of a batch carries (quirk 2): the same cells of one layer's
    output, each multiplied by ``factor``, twice on a linear layer (quirk 9)."""

    layer: int
    geometry: str  # line | square | whole | linear
    law: int  # index into LAWS
    factor: float
    mask: np.ndarray = field(repr=False)  # one image's output shape

    @property
    def times(self) -> int:
        return 2 if self.geometry == LINEAR else 1

    def touches(self, layer: int) -> bool:
        return layer == self.layer

    def apply(self, layer: int, out: torch.Tensor) -> torch.Tensor:
        if layer != self.layer:
            return out
        mask = torch.from_numpy(self.mask).to(out.device)
        for _ in range(self.times):
            out = torch.where(mask, out * self.factor, out)
        return out


def draw(layers: list[LayerInfo], rng: np.random.Generator) -> SharedFault:
    """The fault of one batch: layer (quirk 1), law and r (quirk 7), geometry (quirk 3)."""
    k = int(rng.integers(len(layers)))
    law = int(rng.integers(len(LAWS)))
    f = factor(law, float(rng.random()))
    info = layers[k]
    geometry = LINEAR if info.kind == "linear" else GEOMETRIES[int(rng.integers(len(GEOMETRIES)))]
    return SharedFault(layer=k, geometry=geometry, law=law, factor=f, mask=MASKS[geometry](info.shape, rng))


def t_interval(values: np.ndarray, low: float, high: float, confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean and Student-t interval over repetitions, the independent units here (one image's
    outcome shares its batch's fault with 199 others), cut to [low, high], the range the
    quantity can take; NaN bounds for a single repetition."""
    from scipy import stats

    m = float(values.mean())
    if len(values) < 2:
        return m, math.nan, math.nan
    t = float(stats.t.ppf(0.5 + confidence / 2, len(values) - 1))
    half = t * float(values.std(ddof=1)) / math.sqrt(len(values))
    return m, max(m - half, low), min(m + half, high)


def evaluate(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, repeats: int = 5, seed: int = 0) -> Regret:
    """Clean accuracy, and ``repeats`` independent noisy passes over the images in batches of
    200 with one shared fault per batch (quirk 10); noisy accuracy and regret are the mean over
    passes with a 95% t interval (cut to the range an accuracy, or a regret, can take)."""
    model.eval()
    layers = describe_layers(model, tuple(inputs.shape[1:]))
    injector = Injector(model)
    rng = np.random.default_rng(seed)
    n = len(labels)
    clean = 0
    noisy = np.zeros(repeats)
    try:
        with torch.inference_mode():
            for i in range(0, n, BATCH):
                clean += int((model(inputs[i : i + BATCH]).argmax(1) == labels[i : i + BATCH]).sum())
            for rep in range(repeats):
                hits = 0
                for i in range(0, n, BATCH):
                    with injector.armed(draw(layers, rng)):
                        hits += int((model(inputs[i : i + BATCH]).argmax(1) == labels[i : i + BATCH]).sum())
                noisy[rep] = hits / n
    finally:
        injector.remove()
    c = clean / n
    nm, nl, nh = t_interval(noisy, 0.0, 1.0)
    rm, rl, rh = t_interval(c - noisy, c - 1.0, c)
    return Regret(c, nm, nl, nh, rm, rl, rh, n, repeats)
