"""Interval estimates for AVF rates and their ratios; campaign sizing. Pure functions."""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist


def z_value(confidence: float) -> float:
    return NormalDist().inv_cdf(1 - (1 - confidence) / 2)


@dataclass(frozen=True)
class Rate:
    k: int
    n: int
    rate: float
    low: float
    high: float

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


def proportion(k: int, n: int, confidence: float = 0.95) -> Rate:
    """k/n with a Wilson score interval; exact Clopper-Pearson at k = 0 or k = n (docs/DESIGN.md),
    where the normal approximation behind Wilson is weakest."""
    if not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return Rate(0, 0, math.nan, 0.0, 1.0)
    a = 1 - confidence
    if k == 0:
        return Rate(0, n, 0.0, 0.0, 1 - (a / 2) ** (1 / n))
    if k == n:
        return Rate(k, n, 1.0, (a / 2) ** (1 / n), 1.0)
    z = z_value(confidence)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return Rate(k, n, p, max(0.0, centre - half), min(1.0, centre + half))


@dataclass(frozen=True)
class Ratio:
    value: float
    low: float
    high: float
    corrected: bool  # 0.5 added to each k and n because a count was zero

    @property
    def significant(self) -> bool:
        """The interval excludes 1: the two rates differ at the chosen confidence. An undefined
        (NaN) ratio is never significant."""
        return self.low > 1.0 or self.high < 1.0


def rate_ratio(k1: float, n1: float, k2: float, n2: float, confidence: float = 0.95) -> Ratio:
    """(k1/n1) / (k2/n2) with the log-scale (Katz) interval. A zero count gets the
    Haldane-Anscombe-style correction (0.5 added to each k and n) so the ratio stays finite.
    Counts may be effective ones, not whole (``stratified.stratified_ratio``)."""
    if n1 == 0 or n2 == 0 or (k1 == 0 and k2 == 0):
        return Ratio(math.nan, math.nan, math.nan, False)
    corrected = k1 == 0 or k2 == 0
    c = 0.5 if corrected else 0.0
    a1, a2, m1, m2 = k1 + c, k2 + c, n1 + c, n2 + c
    value = (a1 / m1) / (a2 / m2)
    se = math.sqrt(1 / a1 - 1 / m1 + 1 / a2 - 1 / m2)
    z = z_value(confidence)
    return Ratio(value, value * math.exp(-z * se), value * math.exp(z * se), corrected)


def sample_size(population: float, margin: float, confidence: float = 0.95, p: float = 0.5) -> int:
    """Injections needed for error margin ``margin`` at ``confidence`` over a fault population
    (Leveugle et al., DATE 2009): n = N / (1 + e^2 (N - 1) / (t^2 p (1 - p)))."""
    t = z_value(confidence)
    if math.isinf(population):
        return math.ceil(t * t * p * (1 - p) / (margin * margin))
    return math.ceil(population / (1 + margin * margin * (population - 1) / (t * t * p * (1 - p))))
