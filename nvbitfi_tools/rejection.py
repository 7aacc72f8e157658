"""Sites the injector actually executes, when its own counts are not the profile's.

A site is drawn uniformly over the profile's instructions of a group (``sites.Proposals``).
When a build's profiler counts more than its injector (CAROL's leader test, pull request #19's
``profiler_ballot(1)``, callee code the injector never instruments), an index past the
injector's count of its launch is never reached and the run ends "Error not injected". The log
of such a run reports the injector's count of that launch, so the site is *rejected* and a new
one is proposed from the whole profile, until one lies within its launch's injector count.

This is rejection sampling with the profile as the proposal: a proposal (launch L, index i) is
accepted exactly when i < c_inj(L), so an accepted site is uniform over the set of executed
instructions {(L, i): i < c_inj(L)}, each launch drawn in proportion to c_inj(L), as long as
c_inj(L) <= c_prof(L) for every launch (a launch the injector counts *more* of than the profile
cannot have its extra instructions proposed; the campaign reports such launches). Keeping the
rejected launch and re-drawing only the index would weight launches by c_prof instead. Once a
launch's injector count is known, a proposal past it is rejected without spending a run: the
same decision the run would give, so the accepted site does not depend on which worker learned
the count first. The k-th re-draw of a site uses its own generator (``redraw_rng(k)``), so a
site's chain of proposals, and hence its accepted location, is reproducible from the seed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import numpy as np

from fi_campaign.nvbitfi_tools.sites import Location, Proposals

T = TypeVar("T")
MAX_RUNS = 64  # GPU runs one site may spend on rejected proposals
MAX_DRAWS = 10_000  # proposals one site may reject from known counts alone


@dataclass(frozen=True)
class Rejected:
    location: Location
    injector_count: int  # the injector's count of the group in that launch
    ran: bool  # a run showed it (False: a count known from an earlier run)


@dataclass(frozen=True)
class Settled(Generic[T]):
    location: Location  # the accepted proposal (the last one tried if ``outcome`` is None)
    outcome: T | None  # what ``run`` returned for it; None: no accepted proposal within the limits
    rejected: tuple[Rejected, ...] = ()
    learned: dict[int, int] = field(default_factory=dict)  # launch index -> injector count, first seen here


def reachable(proposals: Proposals, known: dict[int, int]) -> int:
    """How many proposals could still be accepted: the profile's count of each launch, capped
    by the injector's where it is known."""
    return proposals.total - sum(max(0, proposals.profile_count(k) - c) for k, c in known.items())


def settle(
    start: Location,
    proposals: Proposals,
    known: dict[int, int],
    redraw_rng: Callable[[int], np.random.Generator],
    run: Callable[[Location], tuple[int | None, T]],
    max_runs: int = MAX_RUNS,
    max_draws: int = MAX_DRAWS,
) -> Settled[T]:
    """Run ``start``, or the first proposal of its chain that the injector can reach.

    ``run(location)`` returns (the injector's count of that launch if the run showed it, else
    None; the caller's outcome). ``known`` (launch index -> injector count) is read and updated.
    """
    rejected: list[Rejected] = []
    learned: dict[int, int] = {}
    loc, runs = start, 0
    while True:
        count = known.get(loc.kcount)
        if count is not None and loc.iid >= count:
            rejected.append(Rejected(loc, count, ran=False))
            unrun = len(rejected) - runs
            if unrun > max_draws or (unrun % 1000 == 1 and reachable(proposals, known) == 0):
                return Settled(loc, None, tuple(rejected), learned)
            loc = proposals.draw(redraw_rng(len(rejected)), 1)[0]
            continue
        count, outcome = run(loc)
        runs += 1
        if count is not None:
            if loc.kcount not in known:
                learned[loc.kcount] = count
            known[loc.kcount] = count
            if loc.iid >= count:
                rejected.append(Rejected(loc, count, ran=True))
                if runs >= max_runs:
                    return Settled(loc, None, tuple(rejected), learned)
                loc = proposals.draw(redraw_rng(len(rejected)), 1)[0]
                continue
        return Settled(loc, outcome, tuple(rejected), learned)
