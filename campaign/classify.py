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


@dataclass(frozen=True, kw_only=True)
class Outcome:
    """How one injection's outputs compare with the golden ones; what an executor's judge returns."""

    outcome: str
    images_changed: int = 0
    nan: bool = False  # NaN or Inf anywhere in the outputs
    max_abs_diff: float | None = 0.0  # None: no outputs to compare (a DUE, an injection not applied)
    # top-1 class of one image, golden and faulty (-1: a NaN logit); which image: classify_batch
    golden_top1: int | None = None
    faulty_top1: int | None = None
    reason: str | None = None  # why a DUE is a DUE, why an injection was not applied

    @classmethod
    def without_outputs(cls, outcome: str, reason: str, golden_top1: int | None = None) -> Outcome:
        """A run with no outputs to judge: a DUE (crash, hang, no valid file) or a fault never applied."""
        return cls(outcome=outcome, max_abs_diff=None, golden_top1=golden_top1, reason=reason)


def top1(logits: np.ndarray) -> np.ndarray:
    """Predicted class per image; -1 where a logit is NaN, since NaN has no order."""
    pred = np.argmax(np.nan_to_num(logits, nan=-np.inf), axis=-1)
    return np.where(np.isnan(logits).any(axis=-1), -1, pred)


def classify_batch(
    golden: np.ndarray, faulty: np.ndarray, tolerance: float = 0.0, shown: np.ndarray | None = None
) -> list[Outcome]:
    """golden, faulty: (injections, images, classes). Masked means every output within
    ``tolerance`` of the golden one (0: bit-identical values); critical means some image's
    top-1 class changed.

    Each outcome carries the golden and faulty top-1 class of one image: ``shown[i]`` for
    injection i (the image its fault landed in), or without ``shown`` the first image whose
    class changed, else the first whose outputs differ beyond ``tolerance``, else none."""
    if golden.shape != faulty.shape:
        raise ValueError(f"golden {golden.shape} and faulty {faulty.shape} outputs differ in shape")
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.abs(faulty.astype(np.float64) - golden.astype(np.float64))
    nonfinite = ~np.isfinite(faulty).all(axis=(1, 2))
    per_image = np.where(np.isnan(diff), np.inf, diff).max(axis=2)
    worst = per_image.max(axis=1)
    golden_top, faulty_top = top1(golden), top1(faulty)
    moved = faulty_top != golden_top
    changed = moved.sum(axis=1)
    if shown is None:
        differs = (per_image > tolerance) | ~np.isfinite(faulty).all(axis=2)
        picks = [_first(m) if m.any() else _first(d) for m, d in zip(moved, differs, strict=False)]
    else:
        picks = [int(i) for i in shown]
    out = []
    for i, (w, c, bad, k) in enumerate(zip(worst, changed, nonfinite, picks, strict=False)):
        if c > 0:
            kind = CRITICAL_SDC
        elif w > tolerance or bad:
            kind = TOLERABLE_SDC
        else:
            kind = MASKED
        out.append(
            Outcome(
                outcome=kind,
                images_changed=int(c),
                nan=bool(bad),
                max_abs_diff=float(w),
                golden_top1=None if k is None else int(golden_top[i, k]),
                faulty_top1=None if k is None else int(faulty_top[i, k]),
            )
        )
    return out


def _first(mask: np.ndarray) -> int | None:
    return int(np.argmax(mask)) if mask.any() else None


def classify(golden: np.ndarray, faulty: np.ndarray, tolerance: float = 0.0) -> Outcome:
    """One injection: golden and faulty are (images, classes)."""
    return classify_batch(golden[None], faulty[None], tolerance)[0]
