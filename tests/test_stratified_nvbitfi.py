"""sampling: stratified on backend nvbitfi, through the stand-in injector of
tests/test_nvbitfi_campaign.py: strata by kernel, instruction group and bit with the profile's
shares, a bit stratum's seeds flipping its bit, and re-draws against the injector's own counts
that stay inside the site's stratum."""

from __future__ import annotations

import sqlite3
from collections import defaultdict

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from fi_campaign.cli import main
from fi_campaign.nvbitfi_tools.profile import read_profile
from fi_campaign.nvbitfi_tools.sites import bit_position, bit_seeds_for
from fi_campaign.plan.strata import group_members, nvbitfi_strata, parse_label
from tests.test_nvbitfi_campaign import FP32, _plan_and_run, fake_config, nvbitfi_setup  # noqa: F401 (a fixture)
from tests.test_nvbitfi_profile import KERNELS


def stratify(config, **sampling) -> None:
    raw = yaml.safe_load(config.read_text())
    raw["modes"] = ["single_bit"]
    raw["sampling"] = {"method": "stratified", **sampling}
    config.write_text(yaml.safe_dump(raw))


def kernel_counts() -> dict[str, int]:
    out: dict[str, int] = defaultdict(int)
    for i, c in enumerate(FP32):
        if c:
            out[KERNELS[i % len(KERNELS)]] += c
    return out


@pytest.mark.parametrize("bit", [0, 7, 23, 30, 31])
def test_a_bit_strata_seeds_flip_its_bit(bit):
    seeds = bit_seeds_for(bit, np.random.default_rng(bit), 20_000)
    assert seeds.dtype == np.float32 and {bit_position(s) for s in seeds.tolist()} == {bit}
    assert seeds.min() < (bit + 0.01) / 32 and seeds.max() > (bit + 0.99) / 32  # the whole range


def test_strata_by_kernel_and_bit_carry_the_profiles_shares(nvbitfi_setup):  # noqa: F811 (the imported fixture)
    _, profile_path, _ = nvbitfi_setup
    profile = read_profile(profile_path, "carol")
    strata = nvbitfi_strata(profile, "fp32", ("kernel", "bit"))
    counts = kernel_counts()
    assert len(strata) == 32 * len(counts)
    assert sum(s.weight for s in strata) == pytest.approx(1.0)
    for s in strata:
        parts = parse_label(s.label)
        assert parts == {"kernel": s.kernel, "bit": str(s.bit)}
        assert s.kernel is not None and s.weight == pytest.approx(counts[s.kernel] / sum(counts.values()) / 32)
    by_group = nvbitfi_strata(profile, "gp", ("igid",))
    assert [parse_label(s.label)["igid"] for s in by_group] == group_members(profile, "gp") == ["fp32", "ld", "others"]
    totals = {g: profile.total(g) for g in ("fp32", "ld", "others")}
    assert [s.weight for s in by_group] == pytest.approx([totals[g] / sum(totals.values()) for g in totals])


def test_gppr_by_group_is_refused_for_its_predicate_sites(tmp_path, nvbitfi_setup):  # noqa: F811 (the imported fixture)
    config, profile, _ = nvbitfi_setup
    raw = yaml.safe_load(config.read_text())
    raw["nvbitfi"]["group"] = "gppr"
    raw["modes"] = ["single_bit"]
    raw["sampling"] = {"method": "stratified", "by": "igid"}
    config.write_text(yaml.safe_dump(raw))
    r = CliRunner().invoke(main, ["--db", str(tmp_path / "g.db"), "plan", str(config), "--profile", str(profile)])
    assert r.exit_code == 2 and "igid strata of gppr need sites of pr as their own group" in r.output
    assert "Traceback" not in r.output


@pytest.mark.slow  # over 30 s in the default run (docs/TESTING.md); CI runs it in make test-slow
def test_redraws_stay_in_the_stratum_and_inside_the_injectors_counts(tmp_path, nvbitfi_setup):  # noqa: F811 (the imported fixture)
    """CAROL's profiler counting 4x on three launches: sites past the injector's count are
    re-drawn from their own kernel's launches, so the stratum's share still weights them."""
    config, profile, _ = nvbitfi_setup
    injector = [c // 4 if i in (0, 2, 4) else c for i, c in enumerate(FP32)]
    fake_config(tmp_path / "fake.json", injector=injector, miss_every=0, vary=False)
    stratify(config, by=["kernel", "bit"], pilot=1, allocation="proportional")
    db, planned, _ = _plan_and_run(tmp_path, config, profile, "--injections", "200")
    assert "single_bit by kernel x bit (128 strata)" in planned.output
    with sqlite3.connect(db) as con:
        done = con.execute(
            "SELECT s.id, s.kernel, s.kcount, s.iid, s.bit_seed, s.stratum, s.stratum_weight FROM site s "
            "JOIN result r ON r.site_id = s.id"
        ).fetchall()
        redraws = con.execute("SELECT site_id, kernel FROM redraw").fetchall()
    assert len(done) == 200
    stratum_of = {i: label for i, *_, label, _ in done}
    for _, kernel, kcount, iid, bit_seed, label, weight in done:
        parts = parse_label(label)
        assert parts["kernel"] == kernel == KERNELS[kcount % len(KERNELS)]
        assert bit_position(bit_seed) == int(parts["bit"])
        assert iid < injector[kcount]
        assert weight == pytest.approx(kernel_counts()[kernel] / sum(FP32) / 32)
    assert redraws and all(parse_label(stratum_of[s])["kernel"] == k for s, k in redraws)
    r = CliRunner().invoke(main, ["--db", str(db), "report", "--avf"], env={"COLUMNS": "200"})
    assert r.exit_code == 0 and "128 by kernel x bit" in r.output
