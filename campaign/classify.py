"""Outcome of one injection against the golden run (docs/DESIGN.md "Outcomes"). Pure functions."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MASKED = "masked"
TOLERABLE_SDC = "tolerable_sdc"
CRITICAL_SDC = "critical_sdc"
DUE = "due"
NOT_INJECTED = "not_injected"
OUTCOMES = (MASKED, TOLERABLE_SDC, CRITICAL_SDC, DUE, NOT_INJECTED)
# Outcomes that count in the AVF denominator: a fault that was never applied tells nothing.
COUNTED = (MASKED, TOLERABLE_SDC, CRITICAL_SDC, DUE)


@dataclass(frozen=True)
class Outcome:
    outcome: str
    images_changed: int = 0
    nan: bool = False  # NaN or Inf anywhere in the outputs
    max_abs_diff: float = 0.0


def top1(logits: np.ndarray) -> np.ndarray:
    """Predicted class per image; -1 where a logit is NaN, since NaN has no order."""
    pred = np.argmax(np.nan_to_num(logits, nan=-np.inf), axis=-1)
    return np.where(np.isnan(logits).any(axis=-1), -1, pred)


def classify_batch(golden: np.ndarray, faulty: np.ndarray, tolerance: float = 0.0) -> list[Outcome]:
    """golden, faulty: (injections, images, classes). Masked means every output within
    ``tolerance`` of the golden one (0: bit-identical values); critical means some image's
    top-1 class changed."""
    if golden.shape != faulty.shape:
        raise ValueError(f"golden {golden.shape} and faulty {faulty.shape} outputs differ in shape")
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.abs(faulty.astype(np.float64) - golden.astype(np.float64))
    nonfinite = ~np.isfinite(faulty).all(axis=(1, 2))
    worst = np.where(np.isnan(diff), np.inf, diff).max(axis=(1, 2))
    changed = (top1(faulty) != top1(golden)).sum(axis=1)
    out = []
    for w, c, bad in zip(worst, changed, nonfinite):
        if c > 0:
            kind = CRITICAL_SDC
        elif w > tolerance or bad:
            kind = TOLERABLE_SDC
        else:
            kind = MASKED
        out.append(Outcome(kind, int(c), bool(bad), float(w)))
    return out


def classify(golden: np.ndarray, faulty: np.ndarray, tolerance: float = 0.0) -> Outcome:
    """One injection: golden and faulty are (images, classes)."""
    return classify_batch(golden[None], faulty[None], tolerance)[0]
