"""What causes critical SDCs, on a real single_bit campaign of the committed baseline, hardened and
NaN-safe hardened ResNet-20s: the NaN/Inf split, the ratios with and without the NaN/Inf ones
and the per-bit breakdown, recomputed here from `export` in every format (terminal, CSV, JSON,
HTML), and `--reference`.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter

import pytest
import yaml

from tests.test_report import COUNTED, Dom, cli, interval, katz, ok, one_sentence_error, read_csv, same6

MODELS = {
    "baseline": "zoo:resnet20-cifar10-baseline",
    "hardened": "zoo:resnet20-cifar10-hardened",
    "nansafe": "zoo:resnet20-cifar10-hardened-nansafe",
}


@pytest.fixture(scope="module")
def campaign(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("causes")
    config = folder / "c.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "name": "causes",
                "seed": 5,
                "injections": 500,
                "batch_size": 256,
                "models": MODELS,
                "modes": ["single_bit"],
                "images": {"source": "bundled", "count": 20, "seed": 0},
            }
        )
    )
    db = folder / "c.db"
    ok("--db", str(db), "plan", str(config))
    ok("--db", str(db), "run", "--workers", "1")
    ok("--db", str(db), "export", str(folder / "inj.csv"))
    ok(
        "--db",
        str(db),
        "report",
        "--json",
        str(folder / "r.json"),
        "--critical-csv",
        str(folder / "crit.csv"),
        "--html",
        str(folder / "html"),
    )
    return {
        "db": db,
        "folder": folder,
        "export": read_csv(folder / "inj.csv"),
        "json": json.loads((folder / "r.json").read_text())["stores"][0]["causes"],
        "csv": read_csv(folder / "crit.csv"),
        "html": folder / "html",
    }


def recount(rows: list[dict]) -> tuple[Counter, Counter, Counter]:
    """Counted injections, critical SDCs and NaN/Inf critical SDCs per (model, bit); bit None: all."""
    n: Counter[tuple[str, int | None]] = Counter()
    k: Counter[tuple[str, int | None]] = Counter()
    nan: Counter[tuple[str, int | None]] = Counter()
    for r in rows:
        for key in ((r["model"], None), (r["model"], int(r["bit"]))):
            n[key] += r["outcome"] in COUNTED
            k[key] += r["outcome"] == "critical_sdc"
            nan[key] += r["outcome"] == "critical_sdc" and r["nan"] == "1"
    return n, k, nan


def test_the_split_is_the_exported_nan_flags_of_the_critical_sdcs(campaign):
    n, k, nan = recount(campaign["export"])
    split = {s["model"]: s for s in campaign["json"]["split"]}
    assert list(split) == list(MODELS)
    for model, s in split.items():
        key = (model, None)
        assert (s["n"], s["critical"], s["nan"], s["finite"]) == (n[key], k[key], nan[key], k[key] - nan[key])
        for part, count in (("nan", nan[key]), ("finite", k[key] - nan[key])):
            rate, low, high = interval(count, n[key])
            assert (s[f"{part}_rate"], s[f"{part}_low"], s[f"{part}_high"]) == pytest.approx(
                (rate, low, high), abs=1e-12
            )
        assert s["nan_share"] == (None if k[key] == 0 else pytest.approx(nan[key] / k[key], abs=1e-12))
    # what the NaN-safe activation is for: the hardened model's critical SDCs here are NaN, the
    # same weights with the NaN-safe ReLU6 have none
    assert split["hardened"]["nan"] > 0 and split["nansafe"]["nan"] == 0
    assert split["baseline"]["finite"] > 0


def test_ratios_with_and_without_the_nan_ones_are_katz_of_the_counts(campaign):
    got = campaign["json"]["comparisons"]
    assert [(c["reference"], c["candidate"]) for c in got] == [("baseline", "hardened"), ("baseline", "nansafe")]
    split = {s["model"]: s for s in campaign["json"]["split"]}
    for c in got:
        ref, cand = split[c["reference"]], split[c["candidate"]]
        for part, a, b in (
            ("with_nan", ref["critical"], cand["critical"]),
            ("without_nan", ref["finite"], cand["finite"]),
        ):
            r = c[part]
            if a == 0 and b == 0:
                assert r["ratio"] is None and not r["significant"]
                continue
            assert (r["ratio"], r["ci_low"], r["ci_high"]) == pytest.approx(katz(a, ref["n"], b, cand["n"]), rel=1e-12)
            assert r["corrected"] == (a == 0 or b == 0) and r["significant"] == (r["ci_low"] > 1 or r["ci_high"] < 1)
        assert f"{c['reference']}/{c['candidate']}" in c["sentence"]


def test_per_bit_rows_recomputed_from_the_export(campaign):
    n, k, nan = recount(campaign["export"])
    bits = campaign["json"]["bits"]
    assert {(b["model"], b["bit"]) for b in bits} == {key for key in n if key[1] is not None}
    for b in bits:
        key = (b["model"], b["bit"])
        assert (b["n"], b["k"], b["nan"]) == (n[key], k[key], nan[key])
        assert (b["rate"], b["ci_low"], b["ci_high"]) == pytest.approx(interval(k[key], n[key]), abs=1e-12)
        total = k[(b["model"], None)]
        assert b["share"] == (None if total == 0 else pytest.approx(k[key] / total, abs=1e-12))
        assert b["field"] == ("sign" if b["bit"] == 31 else "exponent" if b["bit"] >= 23 else "mantissa")
    order = [(list(MODELS).index(b["model"]), b["bit"]) for b in bits]
    assert order == sorted(order)
    # a mantissa flip of a ReLU6-clipped value never changes a class here; the exponent's top bit does
    assert sum(b["k"] for b in bits if b["model"] == "hardened" and b["field"] == "mantissa") == 0


def test_the_critical_csv_holds_the_json_numbers(campaign):
    doc, rows = campaign["json"], campaign["csv"]
    assert list(rows[0]) == [
        "model",
        "mode",
        "part",
        "reference",
        "bit",
        "k",
        "n",
        "value",
        "ci_low",
        "ci_high",
        "share",
        "nan_k",
    ]
    by = {(r["model"], r["part"], r["bit"]): r for r in rows}
    assert len(by) == len(rows) == 2 * len(doc["split"]) + 2 * len(doc["comparisons"]) + len(doc["bits"])
    for s in doc["split"]:
        for part, k, rate, low, high in (
            ("nan_inf", s["nan"], s["nan_rate"], s["nan_low"], s["nan_high"]),
            ("finite", s["finite"], s["finite_rate"], s["finite_low"], s["finite_high"]),
        ):
            r = by[(s["model"], part, "")]
            assert (int(r["k"]), int(r["n"])) == (k, s["n"])
            assert same6(rate, r["value"]) and same6(low, r["ci_low"]) and same6(high, r["ci_high"])
    for c in doc["comparisons"]:
        for part, key in (("ratio_all", "with_nan"), ("ratio_finite", "without_nan")):
            r = by[(c["candidate"], part, "")]
            assert r["reference"] == c["reference"]
            x = c[key]
            assert same6(x["ratio"] if x["ratio"] is not None else float("nan"), r["value"])
    for b in doc["bits"]:
        r = by[(b["model"], "bit", str(b["bit"]))]
        assert (int(r["k"]), int(r["n"]), int(r["nan_k"])) == (b["k"], b["n"], b["nan"])
        assert same6(b["rate"], r["value"]) and same6(b["ci_high"], r["ci_high"])


def test_the_page_shows_the_split_the_ratios_and_the_bits(campaign):
    page = Dom.of((campaign["html"] / "index.html").read_text())
    doc = campaign["json"]
    for s in doc["split"]:
        cells = page.row("cause", model=s["model"], mode="single_bit")
        assert (int(cells["nan"]["text"]), int(cells["finite"]["text"])) == (s["nan"], s["finite"])
        assert cells["nan_rate"]["data-value"] == f"{s['nan_rate']:.6f}"
        assert cells["finite_ci"]["text"] == f"[{100 * s['finite_low']:.2f}, {100 * s['finite_high']:.2f}]"
    for c in doc["comparisons"]:
        cells = page.row("cause-comparison", mode="single_bit", reference=c["reference"], candidate=c["candidate"])
        for name, key in (("all", "with_nan"), ("finite", "without_nan")):
            r = c[key]
            assert cells[f"ratio_{name}"]["text"] == ("-" if r["ratio"] is None else f"{r['ratio']:.2f}")
        assert c["sentence"] in " ".join(page.text.split())
    # the page's table lists the bits with a critical SDC, every one of them (the JSON has all)
    hit = [b for b in doc["bits"] if b["k"]]
    assert 0 < len(hit) < len(doc["bits"]) and len(page.rows("bit")) == len(hit)
    for b in hit:
        cells = page.row("bit", model=b["model"], mode="single_bit", bit=str(b["bit"]))
        assert (int(cells["k"]["text"]), int(cells["nan"]["text"]), int(cells["n"]["text"])) == (
            b["k"],
            b["nan"],
            b["n"],
        )
    assert "bits" in {i.get("data-figure") for i in page.images}
    assert (campaign["html"] / "bits.png").stat().st_size > 0 and (campaign["html"] / "bits.svg").is_file()


def test_the_terminal_states_the_split_and_the_critical_bits(campaign):
    out = " ".join(ok("--db", str(campaign["db"]), "report").split())
    for c in campaign["json"]["comparisons"]:
        assert c["sentence"] in out
    assert "Critical SDCs with NaN/Inf in the outputs and without" in out
    assert "single_bit critical SDCs per flipped bit" in out


def test_reference_option_compares_with_another_model_and_refuses_an_unknown_one(campaign, tmp_path):
    db = str(campaign["db"])
    with sqlite3.connect(db) as con:
        before = con.execute("SELECT COUNT(*), SUM(nan) FROM result").fetchone()
    ok("--db", db, "report", "--reference", "hardened", "--json", str(tmp_path / "r.json"))
    store = json.loads((tmp_path / "r.json").read_text())["stores"][0]
    assert store["identity"]["reference"] == "hardened" and store["identity"]["config"]["reference"] == "baseline"
    assert [(c["reference"], c["candidate"]) for c in store["comparisons"]] == [
        ("hardened", "baseline"),
        ("hardened", "nansafe"),
    ]
    split = {s["model"]: s for s in store["causes"]["split"]}
    vs = store["causes"]["comparisons"][1]
    assert (vs["with_nan"]["ratio"], vs["with_nan"]["ci_low"]) == pytest.approx(
        katz(
            split["hardened"]["critical"], split["hardened"]["n"], split["nansafe"]["critical"], split["nansafe"]["n"]
        )[:2],
        rel=1e-12,
    )
    code, out = cli("--db", db, "report", "--reference", "hardend", "--csv", str(tmp_path / "x.csv"))
    one_sentence_error(code, out, "--reference hardend", "baseline, hardened, nansafe")
    assert code == 2 and not (tmp_path / "x.csv").exists()
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT COUNT(*), SUM(nan) FROM result").fetchone() == before


def test_the_bit_figure_holds_every_interval_and_labels_every_bit():
    """Panels share one axis: it reaches above the highest interval of any panel (not only the
    first one drawn), and every bit position 0-31 has its tick label."""
    from fi_campaign.report.causes import bit_rows
    from fi_campaign.report.plots import bit_figure
    from fi_campaign.store import BitGroup

    groups = [
        BitGroup(model="baseline", mode="single_bit", bit=5, outcome="masked", count=50, nan=0),
        BitGroup(model="baseline", mode="single_bit", bit=5, outcome="critical_sdc", count=1, nan=0),
        BitGroup(model="hardened", mode="single_bit", bit=30, outcome="critical_sdc", count=2, nan=2),
        BitGroup(model="hardened", mode="single_bit", bit=30, outcome="masked", count=2, nan=0),
        BitGroup(model="hardened", mode="single_bit", bit=31, outcome="tolerable_sdc", count=3, nan=0),
    ]
    rows = bit_rows(["baseline", "hardened"], ["single_bit"], groups)
    fig = bit_figure(rows)
    fig.canvas.draw()
    axes = fig.axes
    assert len(axes) == 2
    for ax, model in zip(axes, ("baseline", "hardened"), strict=False):
        highest = max(100 * b.ci_high for b in rows if b.model == model)
        assert ax.get_ylim()[0] == 0 and ax.get_ylim()[1] >= highest, (model, ax.get_ylim(), highest)
    labels = {t.get_text() for t in axes[-1].get_xticklabels() if t.get_visible()}
    assert {str(b) for b in range(32)} <= labels
