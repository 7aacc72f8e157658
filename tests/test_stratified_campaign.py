"""sampling: stratified through the real parts: the plan draws every stratum from its own
generator with its exact share, ``run`` claims what the allocation decides from the stored results
(one worker or several, on SQLite and PostgreSQL, across resumes) and stops at the campaign's
injections or at ``--until-ci``; a simple plan is what it always was."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from fi_campaign.allocation import reached
from fi_campaign.cli import main
from fi_campaign.config import Config, load
from fi_campaign.engine import runner
from fi_campaign.plan.planner import plan
from fi_campaign.store import Store

BASE = {"name": "strat", "seed": 5, "batch_size": 32, "images": {"source": "bundled", "count": 20, "seed": 3}}


def write(tmp_path: Path, checkpoints: dict, **extra: object) -> Path:
    path = tmp_path / f"c{len(list(tmp_path.glob('c*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump({**BASE, "models": {k: str(v) for k, v in checkpoints.items()}, **extra}))
    return path


def cells(rows: list[dict]) -> Counter:
    return Counter((r["model"], r["mode"], r["stratum"]) for r in rows)


def test_every_stratum_gets_its_own_sites(tmp_path, checkpoints):
    config = load(str(write(tmp_path, checkpoints, injections=30, sampling={"method": "stratified"})))
    _, rows = plan(config)
    count = cells(rows)
    assert set(count.values()) == {30}
    assert len([c for c in count if c[:2] == ("baseline", "single_bit")]) == 32
    assert len([c for c in count if c[:2] == ("baseline", "warp_random")]) == 20  # ResNet-20's conv/linear layers
    for model in checkpoints:
        for mode in config.modes:
            weights = {r["stratum"]: r["stratum_weight"] for r in rows if (r["model"], r["mode"]) == (model, mode)}
            assert sum(weights.values()) == pytest.approx(1.0)
    for r in rows:
        if r["mode"] == "single_bit":
            assert r["stratum"] == f"bit={r['bit']}" and r["stratum_weight"] == 1 / 32
        else:
            assert r["stratum"] == f"layer={r['layer_name']}"
    again = plan(config)[1]
    assert again == rows
    only = load(str(write(tmp_path, checkpoints, injections=30, modes=["single_bit"], sampling="stratified")))
    assert plan(only)[1] == [r for r in rows if r["mode"] == "single_bit"]  # a stratum's sites depend on nothing else


def test_layer_and_bit_together(tmp_path, checkpoints):
    config = load(
        str(
            write(
                tmp_path,
                {"baseline": checkpoints["baseline"]},
                injections=2,
                modes=["single_bit"],
                sampling={"method": "stratified", "by": ["layer", "bit"], "allocation": "proportional"},
            )
        )
    )
    rows = plan(config)[1]
    assert len(cells(rows)) == 20 * 32
    assert {r["stratum"] for r in rows if r["bit"] == 30 and r["layer_name"] == "fc"} == {"layer=fc bit=30"}
    assert sum({r["stratum"]: r["stratum_weight"] for r in rows}.values()) == pytest.approx(1.0)


def test_image_strata_are_the_drawn_inputs_each_its_share(tmp_path, checkpoints):
    """by image: a stratum per drawn input, named by its index in the source (as the export's
    ``image`` column names it), each 1/count of the population since the simple draw picks the
    image uniformly; combined with bit, each image x bit is 1/(count x 32)."""
    config = load(
        str(
            write(
                tmp_path,
                {"baseline": checkpoints["baseline"]},
                injections=6,
                sampling={"method": "stratified", "by": {"single_bit": ["image", "bit"], "warp_random": "image"}},
            )
        )
    )
    record, rows = plan(config)
    indices = record.workload.indices
    assert len(set(indices)) == 20 and indices != tuple(range(20))  # a source index is not the row
    warp = [r for r in rows if r["mode"] == "warp_random"]
    assert Counter(r["stratum"] for r in warp) == {f"image={i}": 6 for i in indices}
    for r in warp:
        assert r["stratum"] == f"image={indices[r['image']]}" and r["stratum_weight"] == pytest.approx(1 / 20)
    assert len({r["layer"] for r in warp}) > 5  # the layer is still drawn by its weight
    bits = [r for r in rows if r["mode"] == "single_bit"]
    assert len(cells(bits)) == 20 * 32
    for r in bits:
        assert r["stratum"] == f"image={indices[r['image']]} bit={r['bit']}"
        assert r["stratum_weight"] == pytest.approx(1 / (20 * 32))
    assert plan(config)[1] == rows


def test_a_simple_plan_is_unchanged(tmp_path, checkpoints):
    plain = plan(load(str(write(tmp_path, checkpoints, injections=50))))[1]
    named = plan(load(str(write(tmp_path, checkpoints, injections=50, sampling="simple"))))[1]
    assert plain == named
    assert all(r.get("stratum") is None for r in plain)


def test_too_many_strata_is_one_sentence(tmp_path, checkpoints):
    config = write(
        tmp_path,
        checkpoints,
        injections=20_000,
        modes=["single_bit"],
        sampling={"method": "stratified", "by": ["layer", "bit"]},
    )
    r = CliRunner().invoke(main, ["--db", str(tmp_path / "x.db"), "plan", str(config)])
    assert r.exit_code == 2
    assert "stratified sampling plans 20,000 sites in each stratum, 25,600,000 in all" in r.output
    assert "Traceback" not in r.output and not (tmp_path / "x.db").exists()


def planned(new_store, tmp_path, checkpoints, **extra: object) -> Store:
    db = new_store()
    config = write(
        tmp_path,
        {"baseline": checkpoints["baseline"]},
        modes=["single_bit"],
        injections=200,
        sampling={"method": "stratified", "by": "bit", "pilot": 4},
        **extra,
    )
    r = CliRunner().invoke(main, ["--db", str(db), "plan", str(config)])
    assert r.exit_code == 0, r.output
    assert "stratified, single_bit by bit (32 strata); up to 200 injections" in r.output
    return Store.open(db)


def tallies(store: Store) -> dict[str, int]:
    return {t.stratum: sum(t.outcomes.values()) for t in store.stratum_tallies("baseline", "single_bit")}


def test_a_run_spends_the_injections_not_the_sites(new_store, tmp_path, checkpoints):
    store = planned(new_store, tmp_path, checkpoints)
    assert store.progress() == [("baseline", "single_bit", 0, 32 * 200)]
    ran = runner.run(store)
    assert sum(ran.values()) == 200
    done = tallies(store)
    assert sum(done.values()) == 200 and min(done.values()) >= 4  # every stratum had its pilot
    held = [t.running for t in store.stratum_tallies()]
    assert held == [0] * 32
    assert runner.run(store) == {}  # the budget is spent: a second run has nothing to do


def test_fewer_sites_per_stratum_keep_the_budget(new_store, tmp_path, checkpoints):
    """sampling.sites plans 5 sites a stratum (160 in all) for a budget of 200: the run spends
    what the strata hold, never a site twice, and a stratum that runs out is simply full."""
    db = new_store()
    config = write(
        tmp_path,
        {"baseline": checkpoints["baseline"]},
        modes=["single_bit"],
        injections=200,
        sampling={"method": "stratified", "by": "bit", "pilot": 2, "sites": 5},
    )
    assert CliRunner().invoke(main, ["--db", str(db), "plan", str(config)]).exit_code == 0
    store = Store.open(db)
    assert store.progress() == [("baseline", "single_bit", 0, 32 * 5)]
    runner.run(store)
    done = tallies(store)
    assert sum(done.values()) == 160 and set(done.values()) == {5}


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)])
def test_until_ci_stops_on_the_stratified_interval_and_resumes(new_store, tmp_path, checkpoints):
    store = planned(new_store, tmp_path, checkpoints)
    policy = runner.policy(Config.from_json(store.campaign().config))
    assert policy.pilot == 4
    runner.run(store, until_ci=0.2)
    first = sum(tallies(store).values())
    assert first == 4 * 32  # the pilot alone reaches so wide an interval, and is always run whole
    assert reached(runner.sampling_states(store, "baseline", "single_bit"), policy, 0.2)
    runner.run(store, until_ci=0.01)  # a resume decides from what is stored
    second = sum(tallies(store).values())
    assert first < second <= 200
    assert reached(runner.sampling_states(store, "baseline", "single_bit"), policy, 0.01) or second == 200


@pytest.mark.slow  # two spawned workers; the claim's budget check is one transaction on either backend
def test_workers_share_one_budget(tmp_path, checkpoints):
    store = planned(lambda: str(tmp_path / "w.db"), tmp_path, checkpoints)
    runner.run(store, workers=2)
    done = tallies(store)
    assert sum(done.values()) == 200 and min(done.values()) >= 4
    ids = [r["site_id"] for batch in store.export_dicts() for r in batch]
    assert len(ids) == len(set(ids)) == 200


# --- what the reports say of a stratified store ------------------------------------------------------


@pytest.fixture(scope="module")
def ran(tmp_path_factory, checkpoints) -> Path:
    """Both models, single_bit by bit and warp_random by layer, 200 injections each, run to the end."""
    folder = tmp_path_factory.mktemp("ran")
    config = write(folder, checkpoints, injections=200, sampling={"method": "stratified", "pilot": 4})
    db = folder / "r.db"
    for args in (["plan", str(config)], ["run"]):
        r = CliRunner().invoke(main, ["--db", str(db), *args])
        assert r.exit_code == 0, r.output
    return db


def test_the_report_is_the_stratified_estimate(ran, tmp_path):
    import json

    from fi_campaign.stratified import StratumCount, stratified_proportion, stratified_ratio

    r = CliRunner().invoke(main, ["--db", str(ran), "report", "--avf", "--json", str(tmp_path / "r.json")])
    assert r.exit_code == 0, r.output
    assert "Stratified sampling: the critical-SDC estimate" in r.output
    doc = json.loads((tmp_path / "r.json").read_text())["stores"][0]
    assert doc["sampling"]["method"] == "stratified"
    store = Store.open(ran)
    rates = {}
    for model in ("baseline", "hardened"):
        for mode in ("single_bit", "warp_random"):
            tallies = store.stratum_tallies(model, mode)
            mine = stratified_proportion(
                [
                    StratumCount(
                        label=t.stratum,
                        weight=t.weight,
                        n=sum(v for o, v in t.outcomes.items() if o != "not_injected"),
                        k=t.outcomes.get("critical_sdc", 0),
                    )
                    for t in tallies
                ]
            )
            rates[(model, mode)] = mine
            row = next(a for a in doc["avf"] if (a["model"], a["mode"], a["outcome"]) == (model, mode, "critical_sdc"))
            assert (row["rate"], row["ci_low"], row["ci_high"]) == pytest.approx((mine.rate, mine.low, mine.high))
            assert row["n"] == 200 and row["srs_equivalent"] == pytest.approx(mine.srs_equivalent)
            masked = stratified_proportion(
                [
                    StratumCount(
                        label=t.stratum,
                        weight=t.weight,
                        n=sum(v for o, v in t.outcomes.items() if o != "not_injected"),
                        k=t.outcomes.get("masked", 0),
                    )
                    for t in tallies
                ]
            )
            row = next(a for a in doc["avf"] if (a["model"], a["mode"], a["outcome"]) == (model, mode, "masked"))
            assert (row["rate"], row["ci_low"], row["ci_high"]) == pytest.approx((masked.rate, masked.low, masked.high))
            est = next(e for e in doc["sampling"]["estimates"] if (e["model"], e["mode"]) == (model, mode))
            assert est["injections"] == 200 and est["saving"] == pytest.approx(mine.srs_equivalent / 200)
    for c in doc["comparisons"]:
        ratio = stratified_ratio(rates[("baseline", c["mode"])], rates[("hardened", c["mode"])])
        if ratio.value == ratio.value:
            assert (c["ratio"], c["ci_low"], c["ci_high"]) == pytest.approx((ratio.value, ratio.low, ratio.high))


def test_the_export_recomputes_the_estimate(ran, tmp_path):
    import json

    import pandas as pd

    out = tmp_path / "x.parquet"
    assert CliRunner().invoke(main, ["--db", str(ran), "export", str(out)]).exit_code == 0
    rows = pd.read_parquet(out)
    assert rows["stratum"].notna().all() and rows["stratum_weight"].between(0, 1).all()
    CliRunner().invoke(main, ["--db", str(ran), "report", "--json", str(tmp_path / "r.json")])
    doc = json.loads((tmp_path / "r.json").read_text())["stores"][0]
    for (model, mode), cell in rows[rows["outcome"] != "not_injected"].groupby(["model", "mode"]):
        per = cell.groupby("stratum").agg(
            w=("stratum_weight", "first"), k=("outcome", lambda s: (s == "critical_sdc").sum()), n=("outcome", "size")
        )
        row = next(a for a in doc["avf"] if (a["model"], a["mode"], a["outcome"]) == (model, mode, "critical_sdc"))
        assert (per.w * per.k / per.n).sum() == pytest.approx(row["rate"])


def test_status_and_the_page_show_the_simple_random_equivalent(ran, tmp_path):
    r = CliRunner().invoke(main, ["--db", str(ran), "status"])
    assert r.exit_code == 0, r.output
    assert "200/200" in r.output and "simple random" in r.output
    page = tmp_path / "html"
    page.mkdir()
    assert CliRunner().invoke(main, ["--db", str(ran), "report", "--html", str(page)]).exit_code == 0
    html = (page / "index.html").read_text()
    assert html.count('<tr class="sampling"') == 4 and 'data-field="srs_equivalent"' in html


def test_a_campaign_by_image_runs_to_its_interval_and_reports_its_strata(tmp_path, checkpoints):
    import json

    import pandas as pd

    db = tmp_path / "i.db"
    config = write(
        tmp_path,
        {"baseline": checkpoints["baseline"]},
        modes=["warp_random"],
        injections=300,
        sampling={"method": "stratified", "by": "image", "pilot": 3},
    )
    for args in (["plan", str(config)], ["run", "--until-ci", "0.15"]):
        r = CliRunner().invoke(main, ["--db", str(db), *args])
        assert r.exit_code == 0, r.output
    store = Store.open(db)
    indices = store.campaign().workload.indices
    policy = runner.policy(Config.from_json(store.campaign().config))
    states = runner.sampling_states(store, "baseline", "warp_random")
    assert {s.label for s in states} == {f"image={i}" for i in indices}
    assert min(s.n for s in states) >= 3 and reached(states, policy, 0.15)
    done = sum(s.n for s in states)
    assert done < 300  # stopped by the interval, not the budget
    out = tmp_path / "x.parquet"
    assert CliRunner().invoke(main, ["--db", str(db), "export", str(out)]).exit_code == 0
    rows = pd.read_parquet(out)
    assert len(rows) == done
    assert (rows["stratum"] == "image=" + rows["image"].astype(str)).all()
    assert (rows["stratum_weight"] == 1 / 20).all()
    r = CliRunner().invoke(main, ["--db", str(db), "report", "--avf", "--json", str(tmp_path / "r.json")])
    assert r.exit_code == 0 and "Stratified sampling" in r.output, r.output
    doc = json.loads((tmp_path / "r.json").read_text())["stores"][0]
    assert doc["sampling"]["by"] == {"warp_random": ["image"]}
    listed = {t["stratum"]: (t["weight"], t["n"], t["k"]) for t in doc["sampling"]["strata"]}
    n_of = rows.groupby("stratum").size()
    k_of = (rows["outcome"] == "critical_sdc").groupby(rows["stratum"]).sum()
    assert listed == {h: (pytest.approx(1 / 20), int(n_of[h]), int(k_of[h])) for h in n_of.index}
    est = next(e for e in doc["sampling"]["estimates"] if e["mode"] == "warp_random")
    assert est["injections"] == done
    row = next(a for a in doc["avf"] if (a["mode"], a["outcome"]) == ("warp_random", "critical_sdc"))
    per = rows.groupby("stratum").agg(
        w=("stratum_weight", "first"), k=("outcome", lambda s: (s == "critical_sdc").sum()), n=("outcome", "size")
    )
    assert (per.w * per.k / per.n).sum() == pytest.approx(row["rate"])
