"""Outcome of one injection against the golden run (docs/DESIGN.md "Outcomes"). Pure functions.

How an output difference is judged is the campaign's ``judge``: ``top1`` (critical when an
input's top-1 class changes; today's rule), ``topk`` (critical when an input's golden top-1
class is not among its faulty top K), ``per_position`` (outputs of shape N x ... x classes:
critical when any position's argmax changes, ``images_changed`` counting the changed positions),
``values`` (any difference beyond the tolerance is an SDC, nothing is critical), or the user's
function of the golden and faulty outputs, returning one outcome per input.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from fi_campaign.errors import UserError

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
    differs = (per_image > tolerance) | ~np.isfinite(faulty).all(axis=2)
    tolerable = (worst > tolerance) | nonfinite
    picks = _picks(moved, differs, shown)
    return _outcomes(moved, moved.sum(axis=1), tolerable, nonfinite, worst, picks, golden_top, faulty_top)


def _picks(moved: np.ndarray, differs: np.ndarray, shown: np.ndarray | None) -> np.ndarray:
    """The image each outcome shows (-1: none): ``shown``, else the first moved, else the first that differs."""
    if shown is not None:
        return np.asarray(shown, dtype=np.int64)
    first = np.where(moved.any(axis=1), moved.argmax(axis=1), differs.argmax(axis=1))
    return np.where(moved.any(axis=1) | differs.any(axis=1), first, -1)


_NONE = -2  # no class to show (-1 already means a NaN logit)


def _outcomes(
    moved: np.ndarray,
    changed: np.ndarray,
    tolerable: np.ndarray,
    nonfinite: np.ndarray,
    worst: np.ndarray,
    picks: np.ndarray,
    g_cls: np.ndarray | None,
    f_cls: np.ndarray | None,
) -> list[Outcome]:
    """One Outcome per injection from per-injection arrays, built from plain Python values: a
    chunk's outcomes must cost less than its judging arithmetic, however small the network."""
    kinds = np.where(moved.any(axis=1), CRITICAL_SDC, np.where(tolerable, TOLERABLE_SDC, MASKED)).tolist()
    rows, shown = np.arange(len(picks)), np.clip(picks, 0, None)
    gs = [_NONE] * len(picks) if g_cls is None else np.where(picks >= 0, g_cls[rows, shown], _NONE).tolist()
    fs = [_NONE] * len(picks) if f_cls is None else np.where(picks >= 0, f_cls[rows, shown], _NONE).tolist()
    return [
        Outcome(
            outcome=k,
            images_changed=c,
            nan=bad,
            max_abs_diff=w,
            golden_top1=None if g == _NONE else g,
            faulty_top1=None if f == _NONE else f,
        )
        for k, c, bad, w, g, f in zip(kinds, changed.tolist(), nonfinite.tolist(), worst.tolist(), gs, fs, strict=True)
    ]


def classify(golden: np.ndarray, faulty: np.ndarray, tolerance: float = 0.0) -> Outcome:
    """One injection: golden and faulty are (images, classes)."""
    return classify_batch(golden[None], faulty[None], tolerance)[0]


JUDGES = ("top1", "topk", "per_position", "values", "function")
JUDGED = (MASKED, TOLERABLE_SDC, CRITICAL_SDC)  # what a judge function may say of one input


class JudgeError(UserError):
    """A judge function that returned something else than one outcome per input."""


@dataclass(frozen=True, kw_only=True)
class Judge:
    """A campaign's judge (module docstring); ``function(golden, faulty)`` takes two float32
    arrays of the same shape, one row per input, and returns one of JUDGED per row."""

    kind: str = "top1"
    k: int = 1
    function: Callable[[np.ndarray, np.ndarray], Any] | None = None
    name: str = ""  # the function as the config names it


TOP1 = Judge()


def check_judge(judge: Judge, outputs: np.ndarray) -> None:
    """Whether a network's outputs (N x ...) fit the judge; ValueError saying why not. A judge
    function is called once, on the outputs against themselves."""
    per_input = outputs.shape[1:]
    if judge.kind in ("top1", "topk") and len(per_input) != 1:
        raise ValueError(
            f"{judge.kind} needs one score per class for each input (outputs of shape N x classes); "
            "use per_position for sequence or segmentation outputs, or values"
        )
    if judge.kind == "topk" and judge.k > per_input[0]:
        raise ValueError(f"topk {judge.k} asks for more classes than the {per_input[0]} the network scores")
    if judge.kind == "per_position" and len(per_input) < 2:
        raise ValueError("per_position needs outputs of shape N x positions x classes")
    if judge.kind == "function":
        judge_batch(judge, outputs[None], outputs[None])


def _function_outcomes(judge: Judge, golden: np.ndarray, faulty: np.ndarray) -> np.ndarray:
    """The judge function's outcome per input: (injections, images) strings, every one checked."""
    assert judge.function is not None, "a function judge has its function"
    n = golden.shape[0] * golden.shape[1]
    flat_g = golden.reshape(n, *golden.shape[2:])
    flat_f = faulty.reshape(n, *faulty.shape[2:])
    try:
        said = judge.function(flat_g.copy(), flat_f.copy())
    except Exception as e:  # noqa: BLE001 - the user's function may raise anything
        raise JudgeError(f"judge {judge.name} raised {type(e).__name__}: {str(e)[:200]}.") from None
    if isinstance(said, np.ndarray):
        said = said.tolist()
    if not isinstance(said, (list, tuple)) or len(said) != n:
        got = f"{len(said)} values" if isinstance(said, (list, tuple)) else f"a {type(said).__name__}"
        raise JudgeError(
            f"judge {judge.name} returned {got} for {n} inputs; it must return one of "
            f"{', '.join(JUDGED)} per input (a list of {n})."
        )
    wrong = [v for v in said if not (isinstance(v, str) and v in JUDGED)]
    if wrong:
        raise JudgeError(f"judge {judge.name} returned {wrong[0]!r}; each outcome must be one of {', '.join(JUDGED)}.")
    return np.array(said, dtype=object).reshape(golden.shape[:2])


def _positions(logits: np.ndarray) -> np.ndarray:
    """Argmax over the last axis at every position; -1 where a score is NaN."""
    return top1(logits)


def judge_batch(
    judge: Judge,
    golden: np.ndarray,
    faulty: np.ndarray,
    tolerance: float = 0.0,
    shown: np.ndarray | None = None,
) -> list[Outcome]:
    """golden, faulty: (injections, images, *outputs). The top1 judge is ``classify_batch``;
    the others follow the module docstring, each outcome carrying, where the outputs are class
    scores, the golden and faulty class of one image (``shown``, or the first that changed)."""
    if judge.kind == "top1":
        return classify_batch(golden, faulty, tolerance, shown)
    if golden.shape != faulty.shape:
        raise ValueError(f"golden {golden.shape} and faulty {faulty.shape} outputs differ in shape")
    inj, images = golden.shape[:2]
    axes = tuple(range(2, golden.ndim))
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.abs(faulty.astype(np.float64) - golden.astype(np.float64))
    finite = np.isfinite(faulty).all(axis=axes) if axes else np.isfinite(faulty)
    per_image = (
        np.where(np.isnan(diff), np.inf, diff).max(axis=axes) if axes else np.where(np.isnan(diff), np.inf, diff)
    )
    worst = per_image.max(axis=1)
    nonfinite = ~finite.all(axis=1)
    differs = (per_image > tolerance) | ~finite
    counts = np.zeros((inj, images), dtype=np.int64)  # what changed per image: 1 per class, positions
    g_cls = f_cls = None
    if judge.kind == "topk":
        g_cls, f_cls = top1(golden), top1(faulty)
        order = np.argsort(-np.nan_to_num(faulty.astype(np.float64), nan=-np.inf), axis=-1, kind="stable")
        in_top = (order[..., : judge.k] == g_cls[..., None]).any(axis=-1)
        counts = (~in_top | np.isnan(faulty).any(axis=-1) | (g_cls < 0)).astype(np.int64)
    elif judge.kind == "per_position":
        gp, fp = _positions(golden), _positions(faulty)
        changed = gp != fp
        counts = changed.reshape(inj, images, -1).sum(axis=2)
        first = changed.reshape(inj, images, -1).argmax(axis=2)
        g_cls = np.take_along_axis(gp.reshape(inj, images, -1), first[..., None], 2)[..., 0]
        f_cls = np.take_along_axis(fp.reshape(inj, images, -1), first[..., None], 2)[..., 0]
    elif judge.kind == "function":
        said = _function_outcomes(judge, golden, faulty)
        counts = (said == CRITICAL_SDC).astype(np.int64)
        differs = said != MASKED
    if judge.kind == "values" or (judge.kind == "function" and golden.ndim == 3):
        g_cls, f_cls = (top1(golden), top1(faulty)) if golden.ndim == 3 else (None, None)
    tolerable = differs.any(axis=1) if judge.kind == "function" else (worst > tolerance) | nonfinite
    moved = counts > 0
    picks = _picks(moved, differs, shown)
    return _outcomes(moved, counts.sum(axis=1), tolerable, nonfinite, worst, picks, g_cls, f_cls)
