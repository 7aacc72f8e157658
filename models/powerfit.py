"""Maximum-likelihood power-law fits of relative-error samples (Clauset, Shalizi & Newman 2009).

For a candidate x_min the continuous MLE is alpha = 1 + n / sum(ln(x_i / x_min)) over the n
samples x_i >= x_min; x_min is the distinct sample value whose fitted tail is closest to the
empirical tail in Kolmogorov-Smirnov distance. Every candidate is scored in one vectorised pass
over the sorted samples (suffix sums of logs give every alpha at once; the KS distances are
computed a block of candidates at a time), so thousands of samples fit in well under a second.

The KS distance is taken at each tail sample, with the empirical CDF counting the tail samples
strictly *below* it (``ks="below"``, the default). That is the convention which reproduces the
published DSN 2021 tables (docs/FAULT-MODELS.md); ``ks="sup"`` is the exact supremum of the step
function (both sides of every step), which picks a different x_min on some of those groups.
Torch-free and pandas-free on purpose, so the CLI and tests import it cheaply.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import numpy.typing as npt

from fi_campaign.errors import UserError

_BLOCK = 1 << 21  # elements per KS block: bounds memory at ~16 MiB per temporary
KS_KINDS = ("below", "sup")


class FitError(UserError):
    """The samples cannot support a power-law fit; the message is one plain sentence."""


@dataclass(frozen=True)
class Fit:
    """One fitted tail: pdf ∝ x^-alpha for x >= x_min, and how it was obtained."""

    x_min: float
    alpha: float
    n_tail: int  # samples >= x_min, the ones alpha is estimated from
    n: int  # usable samples (after dropping the unusable ones)
    ks: float  # KS distance between the empirical and the fitted tail CDF
    dropped: int = 0  # empty, non-finite or non-positive samples left out

    @property
    def sigma(self) -> float:
        """Asymptotic standard error of alpha, (alpha - 1) / sqrt(n_tail)."""
        return (self.alpha - 1.0) / np.sqrt(self.n_tail)

    def to_dict(self) -> dict:
        return {**asdict(self), "sigma": float(self.sigma)}


def clean(samples: npt.ArrayLike) -> tuple[np.ndarray, int]:
    """The usable samples, sorted, and how many were dropped (NaN/empty, ±inf, <= 0)."""
    x = np.asarray(samples, dtype=np.float64).ravel()
    ok = np.isfinite(x) & (x > 0)
    return np.sort(x[ok]), int(x.size - ok.sum())


def mle_alpha(samples: npt.ArrayLike, x_min: float) -> float:
    """alpha-hat over the samples >= x_min; inf when they all equal x_min."""
    x = np.asarray(samples, dtype=np.float64)
    tail = x[x >= x_min]
    s = float(np.log(tail / x_min).sum())
    return np.inf if s <= 0 else 1.0 + tail.size / s


def ks_distance(tail: np.ndarray, x_min: float, alpha: float, ks: str = "below") -> float:
    """Distance between the tail's empirical CDF and the fitted one (see the module note)."""
    tail = np.sort(np.asarray(tail, dtype=np.float64))
    m = tail.size
    below = np.searchsorted(tail, tail, "left") / m
    f = 1.0 - (tail / x_min) ** (1.0 - alpha)
    if ks == "below":
        return float(np.abs(f - below).max())
    upto = np.searchsorted(tail, tail, "right") / m
    return float(max((f - below).max(), (upto - f).max()))


def fit(samples: npt.ArrayLike, x_min: float | None = None, ks: str = "below") -> Fit:
    """Fit a power law; ``x_min=None`` chooses it by the KS distance among the distinct samples.

    Raises FitError when fewer than two distinct usable values remain: with one value the
    tail has no spread and alpha would be infinite.
    """
    if ks not in KS_KINDS:
        raise FitError(f"ks must be one of {', '.join(KS_KINDS)}, not {ks!r}")
    x, dropped = clean(samples)
    distinct = np.unique(x)
    if distinct.size < 2:
        raise FitError(
            f"a power-law fit needs at least 2 distinct positive finite samples, "
            f"found {distinct.size} ({x.size} usable, {dropped} dropped)"
        )
    if x_min is not None:
        if not (np.isfinite(x_min) and x_min > 0):
            raise FitError(f"x_min must be a positive finite number, not {x_min!r}")
        tail = x[x >= x_min]
        if np.unique(tail).size < 2:
            raise FitError(f"fewer than 2 distinct samples are >= x_min = {x_min:g}")
        alpha = mle_alpha(tail, x_min)
        return Fit(float(x_min), alpha, int(tail.size), int(x.size), ks_distance(tail, x_min, alpha, ks), dropped)
    starts = np.searchsorted(x, distinct[:-1], "left")  # the largest value alone has no spread
    dist = _scan(x, starts, ks)
    if np.isnan(dist).all():
        raise FitError(
            f"the {distinct.size} distinct samples are too close together for a power-law fit "
            f"(from {x[0]:.17g} to {x[-1]:.17g})"
        )
    best = int(np.nanargmin(dist))
    i = int(starts[best])
    x_best = float(x[i])
    tail = x[i:]
    alpha = mle_alpha(tail, x_best)  # recomputed directly: the scan's suffix sums lose digits
    return Fit(x_best, alpha, int(tail.size), int(x.size), ks_distance(tail, x_best, alpha, ks), dropped)


def _scan(x: np.ndarray, starts: np.ndarray, ks: str) -> np.ndarray:
    """The KS distance of the fit to the tail beginning at each index in ``starts`` of sorted x
    (NaN where that tail has no spread)."""
    n = x.size
    logs = np.log(x) - np.log(x[0])  # non-negative, so suffix sums cancel less
    suffix = np.cumsum(logs[::-1])[::-1]
    m = n - starts
    spread = suffix[starts] - m * logs[starts]
    with np.errstate(divide="ignore"):
        alphas = 1.0 + m / np.maximum(spread, 0.0)
    first = np.searchsorted(x, x, "left")
    after = np.searchsorted(x, x, "right")
    dist = np.empty(starts.size)
    rows = max(1, _BLOCK // n)
    cols = np.arange(n)
    for lo in range(0, starts.size, rows):
        s = starts[lo : lo + rows, None]
        j0 = int(s[0, 0])
        j = cols[None, j0:]
        mm = (n - s).astype(np.float64)
        with np.errstate(over="ignore", invalid="ignore"):
            fitted = 1.0 - np.exp((1.0 - alphas[lo : lo + rows, None]) * (logs[None, j0:] - logs[s]))
        gap = fitted - (first[None, j0:] - s) / mm
        if ks == "below":
            gap = np.abs(gap)
        else:
            gap = np.maximum(gap, (after[None, j0:] - s) / mm - fitted)
        dist[lo : lo + rows] = np.where(j >= s, gap, -np.inf).max(axis=1)
    dist[~np.isfinite(alphas)] = np.nan
    return dist
