"""Which strata the next injections go to (docs/DESIGN.md, "Stratified sampling"). Pure
functions of what the store holds, so every worker and every resume decides alike without any
coordination beyond the store, and the coverage simulation runs the same decisions.

First a pilot: every stratum gets ``pilot`` injections, the stratum furthest behind first.
Then each batch goes where it brings the strata closest to their target shares: proportional
(W_h) or Neyman (W_h S_h, S_h the standard deviation of the stratum's critical-SDC indicator),
with S_h taken from the shrunk rates of ``stratified.shrunk_rates``, so that a stratum with a few
zeros keeps a share that reflects how little a few zeros say, and never less than ``floor``
times its proportional share.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass

from fi_campaign.stratified import shrunk_rates, stratified_proportion

PROPORTIONAL, NEYMAN = "proportional", "neyman"
ALLOCATIONS = (PROPORTIONAL, NEYMAN)
GROWTH = 4  # after the pilot a claim is at least done / GROWTH: the stopping rule overshoots by 25% at most


@dataclass(frozen=True, kw_only=True)
class Policy:
    allocation: str = NEYMAN
    pilot: int = 10  # injections every stratum gets before any estimate steers the rest
    floor: float = 0.25  # of a stratum's proportional share, the least Neyman gives it


@dataclass(frozen=True, kw_only=True)
class StratumState:
    """One stratum as the store holds it: its results, the sites workers hold, the sites left."""

    label: str
    weight: float
    n: int  # counted results (not_injected left out)
    k: int  # critical SDCs among them
    held: int = 0  # sites a worker holds now
    skipped: int = 0  # results that do not count (not_injected)
    pending: int  # sites not yet claimed

    @property
    def taken(self) -> int:
        """Every site the stratum has had: its results and the sites workers hold."""
        return self.n + self.skipped + self.held


def pilot_done(strata: Sequence[StratumState], policy: Policy) -> bool:
    """Every stratum has its pilot, or has no site left to give."""
    return all(s.n >= policy.pilot or s.pending == 0 for s in strata)


def shares(strata: Sequence[StratumState], policy: Policy) -> list[float]:
    """Each stratum's target share of the injections."""
    whole = sum(s.weight for s in strata)
    proportional = [s.weight / whole for s in strata]
    if policy.allocation == PROPORTIONAL:
        return proportional
    rates = shrunk_rates(strata)
    spread = [p * math.sqrt(q * (1 - q)) if q == q else 0.0 for p, q in zip(proportional, rates, strict=True)]
    total = sum(spread)
    if total <= 0:
        return proportional
    # Neyman's variance over proportional's, G: near 1 there is little to win, and what there is
    # comes from estimated S_h whose noise steers the allocation by the stratum's own results,
    # which biases its estimate; so the shares lean towards proportional by G
    ratio = total * total / sum(x * x / p for x, p in zip(spread, proportional, strict=True) if p > 0)
    mixed = [(1 - ratio) * x / total + ratio * p for x, p in zip(spread, proportional, strict=True)]
    floored = [max(x, policy.floor * p) for x, p in zip(mixed, proportional, strict=True)]
    scale = sum(floored)
    return [x / scale for x in floored]


def next_batch(strata: Sequence[StratumState], size: int, policy: Policy) -> dict[str, int]:
    """How many of the next ``size`` injections each stratum gets (strata left out get none):
    the pilot first, then the deficits against the target shares, never more than a stratum's
    pending sites. Ties go to the stratum listed first."""
    size = min(size, sum(s.pending for s in strata))
    if size <= 0:
        return {}
    need = [min(max(policy.pilot - s.n - s.held, 0), s.pending) for s in strata]
    if sum(need):
        return _fill_pilot(strata, need, size)
    target = shares(strata, policy)
    after = sum(s.taken for s in strata) + size
    deficit = [max(a * after - s.taken, 0.0) if s.pending else 0.0 for a, s in zip(target, strata, strict=True)]
    return _apportion(strata, deficit, size)


def _fill_pilot(strata: Sequence[StratumState], need: list[int], size: int) -> dict[str, int]:
    """Pilot injections, each to the stratum with the fewest so far (water-filling)."""
    got = [0] * len(strata)
    queue = [(strata[i].n + strata[i].held, i) for i in range(len(strata)) if need[i]]
    heapq.heapify(queue)
    for _ in range(size):
        if not queue:
            break
        have, i = heapq.heappop(queue)
        got[i] += 1
        if got[i] < need[i]:
            heapq.heappush(queue, (have + 1, i))
    return {s.label: g for s, g in zip(strata, got, strict=True) if g}


def _apportion(strata: Sequence[StratumState], deficit: list[float], size: int) -> dict[str, int]:
    """``size`` in proportion to the deficits by largest remainders, capped by what each stratum
    has pending; what a cap leaves goes to the next largest deficits."""
    got = [0] * len(strata)
    left = size
    while left > 0:
        open_ = [i for i, s in enumerate(strata) if s.pending > got[i]]
        if not open_:
            break
        weights = [deficit[i] for i in open_]
        if sum(weights) <= 0:
            weights = [strata[i].weight for i in open_]
        total = sum(weights)
        exact = [left * x / total for x in weights]
        whole = [math.floor(x) for x in exact]
        for j in sorted(range(len(open_)), key=lambda j: (-(exact[j] - whole[j]), j))[: left - sum(whole)]:
            whole[j] += 1
        for j, i in enumerate(open_):
            give = min(whole[j], strata[i].pending - got[i])
            got[i] += give
            left -= give
            deficit[i] = max(deficit[i] - give, 0.0)
    return {s.label: g for s, g in zip(strata, got, strict=True) if g}


def claim_size(done: int, chunk: int, limit: int) -> int:
    """Sites one claim takes once the pilot is done: at least a chunk, at least done / GROWTH, at
    most ``limit``, so the estimates steer every batch and the stopping rule is checked often."""
    return max(1, min(limit, max(chunk, -(-done // GROWTH))))


def next_claim(strata: Sequence[StratumState], policy: Policy, chunk: int, limit: int, budget: int) -> dict[str, int]:
    """What a worker claims next: a chunk while the pilot runs, then ``claim_size``, never past
    ``budget`` sites in all (the campaign's injections per model x mode)."""
    taken = sum(s.taken for s in strata)
    size = claim_size(taken, chunk, limit) if pilot_done(strata, policy) else chunk
    return next_batch(strata, min(size, budget - taken), policy)


def reached(strata: Sequence[StratumState], policy: Policy, half_width: float | None, confidence: float = 0.95) -> bool:
    """``run --until-ci``: the pilot is done and the stratified critical-SDC interval is at most
    ``half_width`` either side."""
    if half_width is None or not pilot_done(strata, policy):
        return False
    rate = stratified_proportion(strata, confidence)
    return rate.n > 0 and rate.half_width <= half_width
