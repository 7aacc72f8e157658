"""The stratified estimate of a rate and its interval (docs/DESIGN.md, "Stratified sampling").
Pure functions, shared by the runner's stopping rule, the reports and the coverage simulation.

A model x mode's fault population is split into strata of known shares W_h (a bit position, a
layer, a kernel, an instruction group). Stratum h ran n_h counted injections, k_h of them with
the outcome; the rate is p = sum W_h k_h / n_h. Its interval is the exact (Clopper-Pearson) one at an
effective sample size n_eff = p (1 - p) / v, v the estimate's variance (Korn and Graubard 1998),
so that n_eff is the size of the simple random sample with the same precision: what the report
shows as the simple-random equivalent.

The variance is where small counts go wrong: a stratum with no event (k_h = 0) has the sample
variance 0, and an estimate that trusts it treats a stratum it has seen ten times as if its rate
were known to be 0. Such a stratum's rate (and one's with nothing but events) is therefore taken
in the variance as shrunk towards the overall rate, as much as the strata's own spread allows
(empirical Bayes with a beta prior whose strength is estimated by moments, Kleinman 1973): where
the strata's rates differ a lot, a stratum of zeros is near 0; where they look alike, it borrows
the others' rate until it has been sampled enough to tell. A stratum that has shown both
outcomes keeps its own rate. The allocation steers by the same shrunk rates.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from fi_campaign.stats import Ratio, rate_ratio

MIN_PRIOR = 1.0  # the shrinkage's least strength, in pseudo-injections: never less than one


class Counted(Protocol):
    """A stratum's share and its results for one outcome (``StratumCount``, or the allocation's
    ``StratumState``): ``k`` of ``n`` counted injections."""

    @property
    def weight(self) -> float: ...
    @property
    def n(self) -> int: ...
    @property
    def k(self) -> int: ...


@dataclass(frozen=True, kw_only=True)
class StratumCount:
    """One stratum's results for one outcome: ``k`` of ``n`` counted injections."""

    label: str
    weight: float  # the stratum's exact share of the fault population
    n: int
    k: int


@dataclass(frozen=True, kw_only=True)
class StratifiedRate:
    """A stratified rate with its interval. ``srs_equivalent`` is the size of the simple random
    sample whose interval would be as wide (NaN while a stratum has no result yet)."""

    k: int  # events over all strata (not the estimate's numerator: strata are weighted)
    n: int  # counted injections over all strata: what the estimate cost
    rate: float
    low: float
    high: float
    srs_equivalent: float
    strata: int
    unsampled: int  # strata without a counted result; their share is left anywhere in [0, 1]

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    @property
    def design_effect(self) -> float:
        """Injections used over the simple random sample that gives the same interval (< 1: a gain)."""
        return self.n / self.srs_equivalent if self.srs_equivalent > 0 else math.nan


def shrunk_rates(strata: Sequence[Counted]) -> list[float]:
    """Each stratum's rate pulled towards the overall rate m by c pseudo-injections,
    (k_h + c m) / (n_h + c), with c from the strata's spread: their weighted variance around m
    less what binomial noise explains is the between-strata variance tau^2 of a beta prior with
    mean m, whose strength is c = m (1 - m) / tau^2 - 1 (at least MIN_PRIOR; no spread beyond
    noise: every stratum gets m). A stratum without results gets m. Rates where m is 0 or 1 are
    left as they are: no stratum has shown anything else."""
    sampled = [s for s in strata if s.n > 0]
    total = sum(s.weight for s in sampled)
    if not sampled or total <= 0:
        return [math.nan for _ in strata]
    m = sum(s.weight * s.k / s.n for s in sampled) / total
    if m <= 0 or m >= 1:
        return [s.k / s.n if s.n else m for s in strata]
    spread = sum(s.weight * ((s.k / s.n - m) ** 2 - m * (1 - m) / s.n) for s in sampled) / total
    noise_free = sum(s.weight * (1 - 1 / s.n) for s in sampled) / total
    tau2 = spread / noise_free if noise_free > 0 else 0.0
    if tau2 <= 0:
        return [m for _ in strata]
    c = max(m * (1 - m) / tau2 - 1, MIN_PRIOR)
    return [(s.k + c * m) / (s.n + c) if s.n else m for s in strata]


def stratified_proportion(strata: Sequence[Counted], confidence: float = 0.95) -> StratifiedRate:
    """The stratified rate and its interval: Clopper-Pearson at the effective sample size, which
    is Kish's (from the weights alone) when no stratum, or every one, has an event. Strata
    without results widen the interval by their whole share until the pilot reaches them."""
    k = sum(s.k for s in strata)
    n = sum(s.n for s in strata)
    whole = sum(s.weight for s in strata)
    sampled = [s for s in strata if s.n > 0]
    unsampled = len(strata) - len(sampled)
    if not sampled or whole <= 0:
        return StratifiedRate(
            k=k, n=n, rate=math.nan, low=0.0, high=1.0, srs_equivalent=math.nan, strata=len(strata), unsampled=unsampled
        )
    seen = sum(s.weight for s in sampled)
    w = [s.weight / seen for s in sampled]
    p = sum(wh * s.k / s.n for wh, s in zip(w, sampled, strict=True))
    p = min(max(p, 0.0), 1.0)
    shrunk = shrunk_rates(sampled)
    own = [s.k / s.n if 0 < s.k < s.n else q for q, s in zip(shrunk, sampled, strict=True)]
    v = sum(wh * wh * q * (1 - q) / s.n for wh, q, s in zip(w, own, sampled, strict=True))
    if 0 < p < 1 and v > 0:
        n_eff = p * (1 - p) / v
    else:
        n_eff = 1 / sum(wh * wh / s.n for wh, s in zip(w, sampled, strict=True))  # Kish's, from the weights
    low, high = clopper_pearson(p * n_eff, n_eff, confidence)
    left = 1 - seen / whole
    if left > 0:
        low, high = low * (1 - left), high * (1 - left) + left
        n_eff = math.nan
    return StratifiedRate(
        k=k, n=n, rate=p, low=low, high=high, srs_equivalent=n_eff, strata=len(strata), unsampled=unsampled
    )


def clopper_pearson(k: float, n: float, confidence: float = 0.95) -> tuple[float, float]:
    """The exact binomial interval of k events in n trials, both possibly fractional (beta
    quantiles need no whole numbers): k = 0 gives [0, 1 - (a/2)^(1/n)] as ``proportion`` does."""
    from scipy.special import betaincinv

    a = 1 - confidence
    low = 0.0 if k <= 0 else float(betaincinv(k, n - k + 1, a / 2))
    high = 1.0 if k >= n else float(betaincinv(k + 1, n - k, 1 - a / 2))
    return low, high


def effective_counts(r: StratifiedRate) -> tuple[float, float]:
    """(events, trials) of the simple random sample with the same rate and interval."""
    if not r.srs_equivalent > 0:
        return 0.0, 0.0
    return r.rate * r.srs_equivalent, r.srs_equivalent


def stratified_ratio(reference: StratifiedRate, candidate: StratifiedRate, confidence: float = 0.95) -> Ratio:
    """reference / candidate with the log-scale (Katz) interval of their effective counts: the
    delta method on log p with each estimate's own variance, and the same 0.5 correction as
    ``rate_ratio`` when one of them has no event."""
    k1, n1 = effective_counts(reference)
    k2, n2 = effective_counts(candidate)
    return rate_ratio(k1, n1, k2, n2, confidence)
