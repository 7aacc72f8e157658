"""Profiles whose counts are not the injector's: rejection against the injector's own counts,
and launches the injector cannot name (kernel names of 1,000 bytes or more)."""

from __future__ import annotations

import numpy as np
import pytest

from fi_campaign.nvbitfi_tools.errors import NvbitfiError
from fi_campaign.nvbitfi_tools.profile import parse_profile
from fi_campaign.nvbitfi_tools.rejection import settle
from fi_campaign.nvbitfi_tools.sites import Location, Proposals, draw_sites
from tests.test_nvbitfi_profile import KERNELS, base_counts, chi_square_threshold, profile_line

# what the injector executes per launch; the profile says 4x for most launches (CAROL's leader
# test on 4x4 blocks), 1x for the rest (launches with warp-wide blocks)
INJECTOR = np.array([30, 0, 120, 45, 300, 15, 75, 200, 60, 90])
RATIO = np.array([4, 1, 4, 4, 1, 4, 4, 1, 4, 4])


def profile_of(counts, names=None):
    names = names or [KERNELS[i % len(KERNELS)] for i in range(len(counts))]
    return parse_profile(
        "\n".join(profile_line(i, n, base_counts(int(c))) for i, (c, n) in enumerate(zip(counts, names, strict=False))),
        "carol",
    )


def settle_all(proposals, sites, known=None):
    """Each site through the product's rejection loop, against a stand-in that answers like the
    injector's log: 'Error not injected' with the launch's own count when iid is past it."""
    known = {} if known is None else known
    runs = []

    def run(loc: Location):
        runs.append(loc)
        c = int(INJECTOR[loc.kcount])
        return (c, "not_injected") if loc.iid >= c else (None, "injected")

    out = []
    for n, s in enumerate(sites):
        start = Location(s.kernel, s.kcount, s.iid)

        def redraw_rng(k: int, n: int = n) -> np.random.Generator:
            return np.random.default_rng([99, n, k])

        out.append(settle(start, proposals, known, redraw_rng, run))
    return out, runs


def test_sites_are_accepted_uniformly_over_the_injectors_counts():
    """Chi-square of the accepted launches against the injector's counts, not the profile's."""
    profile = profile_of(INJECTOR * RATIO)
    proposals = Proposals(profile, "fp32")
    n = 6000
    sites = draw_sites(profile, "fp32", n, np.random.default_rng(2024))
    settled, runs = settle_all(proposals, sites)
    assert all(s.outcome == "injected" for s in settled)
    locs = [s.location for s in settled]
    assert all(loc.iid < INJECTOR[loc.kcount] for loc in locs)  # every site is executed
    live = INJECTOR > 0
    observed = np.bincount([loc.kcount for loc in locs], minlength=len(INJECTOR))[live]
    expected = n * INJECTOR[live] / INJECTOR.sum()
    assert expected.min() >= 5
    limit = chi_square_threshold(int(live.sum()) - 1)
    assert float(((observed - expected) ** 2 / expected).sum()) < limit
    # keeping the drawn launch and re-drawing its index would weight launches by the profile
    by_profile = n * (INJECTOR * RATIO)[live] / (INJECTOR * RATIO).sum()
    assert float(((by_profile - expected) ** 2 / expected).sum()) > 10 * limit
    # within a launch the accepted index is uniform over the injector's count
    big = np.array([loc.iid for loc in locs if loc.kcount == 4])
    bins = np.bincount(big * 10 // INJECTOR[4], minlength=10)
    assert float(((bins - len(big) / 10) ** 2 / (len(big) / 10)).sum()) < chi_square_threshold(9)
    # each launch costs at most one run to learn: afterwards proposals past it are rejected unrun
    rejected_runs = sum(r.ran for s in settled for r in s.rejected)
    assert rejected_runs == len({r.location.kcount for s in settled for r in s.rejected if r.ran})
    assert rejected_runs == int(((RATIO > 1) & (INJECTOR > 0)).sum())  # every over-counted launch, once
    assert len(runs) == n + rejected_runs
    assert sum(len(s.learned) for s in settled) == rejected_runs


def test_a_sites_chain_of_proposals_is_reproducible_whoever_learned_the_counts():
    profile = profile_of(INJECTOR * RATIO)
    proposals = Proposals(profile, "fp32")
    sites = draw_sites(profile, "fp32", 300, np.random.default_rng(5))
    cold, _ = settle_all(proposals, sites)
    warm, runs = settle_all(proposals, sites, known={i: int(c) for i, c in enumerate(INJECTOR)})
    assert [s.location for s in cold] == [s.location for s in warm]
    assert len(runs) == len(sites)  # with every count known, no run is spent on a rejected site


def test_a_launch_set_the_injector_never_reaches_gives_up_within_the_limits():
    profile = profile_of([40, 40])
    proposals = Proposals(profile, "fp32")

    def never(loc):
        return 0, "not_injected"

    out = settle(Location(KERNELS[0], 0, 3), proposals, {}, lambda k: np.random.default_rng(k), never, max_runs=5)
    assert out.outcome is None and sum(r.ran for r in out.rejected) == 2  # both launches learned, then no run
    assert out.learned == {0: 0, 1: 0}


def test_launches_with_kernel_names_the_injector_cannot_hold_are_left_out():
    long_name = "void" + "k" * 1157 + "(float*)"  # 1,169 bytes, as C++ templates of cuDNN can be
    assert len(long_name.encode()) == 1169
    profile = profile_of([100, 300, 50], [KERNELS[0], long_name, KERNELS[2]])
    proposals = Proposals(profile, "fp32")
    assert (proposals.excluded.launches, proposals.excluded.instructions, proposals.excluded.total) == (1, 300, 450)
    assert proposals.excluded.share == pytest.approx(300 / 450)
    sites = draw_sites(profile, "fp32", 2000, np.random.default_rng(1))
    assert {s.kcount for s in sites} == {0, 2}
    only_long = profile_of([0, 300], [KERNELS[0], long_name])
    with pytest.raises(NvbitfiError, match="all 300 are in kernels whose names are 1000 bytes or more"):
        draw_sites(only_long, "fp32", 1, np.random.default_rng(1))


def test_the_store_keeps_counts_redraws_and_lanes_and_adds_its_tables_to_an_older_store(tmp_path):
    import sqlite3

    from bench import zero_cost
    from fi_campaign.store import InjectionRecord, LaunchCount, Redraw, Relocation, Result, Store

    store = Store.create(tmp_path / "old.db")
    store.write_plan(
        zero_cost.record("nv"),
        [
            {
                "model": "baseline",
                "mode": "warp_random",
                "kernel": "k",
                "kcount": 3,
                "igid": 1,
                "iid": 900,
                "op_seed": 0.5,
                "bit_seed": 0.5,
            }
        ]
        * 2,
    )
    with sqlite3.connect(store.path) as con:  # a store planned before these tables and migrations existed
        for table in ("launch_count", "redraw", "injection", "worker", "alembic_version"):
            con.execute(f"DROP TABLE {table}")
    store = Store.open(store.path)
    assert store.launch_counts() == [] and store.count_checks() == [] and store.injections() == {}
    lanes = tuple((i, 0x3F800000 + i, (0x3F800000 + i) ^ 0x80000000) for i in range(12, 32))

    def masked(site_id: int, runtime_s: float, **nvbitfi) -> Result:
        return Result(
            site_id=site_id,
            outcome="masked",
            images_changed=0,
            nan=False,
            max_abs_diff=0.0,
            backend="nvbitfi",
            isolation="process",
            semantics="s",
            runtime_s=runtime_s,
            **nvbitfi,
        )

    moved = masked(
        1,
        2.0,
        injection=InjectionRecord(
            state="injected",
            lanes_injected=20,
            lanes_reported=32,
            opcode="FFMA",
            reg=12,
            mask=0x80000000,
            lanes=lanes,
            log_index=5,
            log_kernel="k",
        ),
        relocated=Relocation(kernel="k", kcount=5, iid=17),
        redraws=(Redraw(site_id=1, kernel="k", kcount=3, iid=900, injector_count=250, ran=True),),
        launch_counts=(
            LaunchCount(
                model="baseline", igid=1, kcount=3, kernel="k", profile_count=1000, injector_count=250, site_id=1
            ),
            LaunchCount(model="baseline", igid=1, kcount=5, kernel="k", profile_count=80, injector_count=80, site_id=1),
        ),
    )
    assert store.record([moved, masked(2, 1.0)]) != []
    with sqlite3.connect(store.path) as con:
        assert con.execute("SELECT kernel, kcount, iid FROM site WHERE id = 1").fetchone() == ("k", 5, 17)
        assert con.execute("SELECT kcount, iid FROM site WHERE id = 2").fetchone() == (3, 900)
    got = store.injections()
    assert set(got) == {1} and got[1].lanes_injected == 20 and got[1].lanes == lanes
    assert [(c.kcount, c.injector_count) for c in store.launch_counts("baseline", 1)] == [(3, 250), (5, 80)]
    (check,) = store.count_checks()
    assert (check.launches, check.over, check.under, check.ratio_low, check.ratio_high) == (2, 1, 0, 4.0, 4.0)
    assert (check.redrawn, check.rejected_runs) == (1, 1)
