"""`report` (terminal, CSV, JSON, HTML, FIT, several stores) and `export` (CSV, Parquet) on real
stores planned and run by the real CLI; every number is recomputed here from the exported
rows with formulas written out in this file, and the HTML page is rendered in headless
Chromium and read back from its DOM.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import math
import os
import shutil
import sqlite3
import subprocess
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from fi_campaign.cli import main

Z95 = 1.959963984540054  # Phi^-1(0.975)
COUNTED = ("masked", "tolerable_sdc", "critical_sdc", "due")
OUTCOMES = COUNTED + ("not_injected",)


def cli(*args: str) -> tuple[int, str]:
    r = CliRunner().invoke(main, list(args))
    return r.exit_code, r.output


def ok(*args: str) -> str:
    code, out = cli(*args)
    assert code == 0, out
    return out


def one_sentence_error(code: int, out: str, *words: str) -> None:
    assert code != 0, out
    assert "Traceback" not in out
    lines = [line for line in out.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), out
    for w in words:
        assert w in out, out


# --- independent arithmetic ----------------------------------------------------------------------


def interval(k: int, n: int) -> tuple[float, float, float]:
    """rate, low, high: Wilson score, exact Clopper-Pearson at k = 0 or k = n (closed forms)."""
    if n == 0:
        return math.nan, 0.0, 1.0
    if k == 0:
        return 0.0, 0.0, 1 - 0.025 ** (1 / n)
    if k == n:
        return 1.0, 0.025 ** (1 / n), 1.0
    p = k / n
    z2 = Z95 * Z95
    centre = (2 * n * p + z2) / (2 * (n + z2))
    half = Z95 * math.sqrt(z2 + 4 * n * p * (1 - p)) / (2 * (n + z2))
    return p, centre - half, centre + half


def katz(k1: float, n1: float, k2: float, n2: float) -> tuple[float, float, float]:
    if k1 == 0 or k2 == 0:
        k1, k2, n1, n2 = k1 + 0.5, k2 + 0.5, n1 + 0.5, n2 + 0.5
    r = (k1 / n1) / (k2 / n2)
    se = math.sqrt(1 / k1 - 1 / n1 + 1 / k2 - 1 / n2)
    return r, r * math.exp(-Z95 * se), r * math.exp(Z95 * se)


def same6(x: float, printed: str) -> bool:
    """x equals a value printed with six decimals, to that precision."""
    return printed == "" if x != x else abs(x - float(printed)) <= 5e-7 + 1e-12


# --- stores ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stores(tmp_path_factory, checkpoints) -> tuple[Path, Path]:
    """Two finished campaigns on the tiny config: a (40 per model x mode) and b (another seed, 12)."""
    folder = tmp_path_factory.mktemp("report")
    config = folder / "tiny.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "name": "tiny",
                "seed": 11,
                "injections": 40,
                "batch_size": 32,
                "models": {k: str(v) for k, v in checkpoints.items()},
                "images": {"source": "bundled", "count": 20, "seed": 3},
            }
        )
    )
    a, b = folder / "a.db", folder / "b.db"
    ok("--db", str(a), "plan", str(config))
    ok("--db", str(a), "run", "--workers", "1")
    ok("--db", str(b), "plan", str(config), "--seed", "12", "--injections", "12")
    ok("--db", str(b), "run", "--workers", "1")
    return a, b


def snapshot(db: Path) -> list[tuple]:
    with sqlite3.connect(db) as con:
        return (
            con.execute("SELECT * FROM site ORDER BY id").fetchall()
            + con.execute("SELECT * FROM result ORDER BY site_id").fetchall()
        )


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def outputs(stores, tmp_path_factory) -> dict:
    """report --csv/--json/--html and export (CSV and Parquet) of store a, made once."""
    a, _ = stores
    out = tmp_path_factory.mktemp("out")
    ok(
        "--db",
        str(a),
        "report",
        "--csv",
        str(out / "avf.csv"),
        "--json",
        str(out / "r.json"),
        "--html",
        str(out / "html"),
    )
    ok("--db", str(a), "export", str(out / "inj.csv"))
    ok("--db", str(a), "export", str(out / "inj.parquet"))
    return {
        "avf": read_csv(out / "avf.csv"),
        "json": json.loads((out / "r.json").read_text()),
        "html": out / "html",
        "export": read_csv(out / "inj.csv"),
        "parquet": out / "inj.parquet",
    }


# --- the numbers, recomputed from the export -------------------------------------------------------


def test_avf_table_recomputed_from_the_csv_export(outputs):
    rows = outputs["export"]
    assert len(rows) == 160
    counts = Counter((r["model"], r["mode"], r["outcome"]) for r in rows)
    for t in outputs["avf"]:
        key = (t["model"], t["mode"])
        n = sum(counts[key + (o,)] for o in COUNTED)
        k = counts[key + (t["outcome"],)]
        if t["outcome"] == "not_injected":
            n += k
        rate, low, high = interval(k, n)
        assert (int(t["k"]), int(t["n"])) == (k, n)
        assert same6(rate, t["rate"]) and same6(low, t["ci_low"]) and same6(high, t["ci_high"]), t
    assert len(outputs["avf"]) == 2 * 2 * len(OUTCOMES)


def test_parquet_export_holds_the_csv_export_rows(outputs):
    import pandas as pd

    frame = pd.read_parquet(outputs["parquet"])
    rows = outputs["export"]
    assert list(frame.columns) == list(rows[0])
    assert len(frame) == len(rows)
    assert frame["nan"].dtype == bool and frame["layer_index"].dtype == "int64"
    for col in ("site_id", "layer_index", "image", "element", "images_changed"):
        assert frame[col].tolist() == [int(r[col]) for r in rows], col
    for col in ("model", "mode", "outcome", "layer", "backend", "finished"):
        assert frame[col].tolist() == [r[col] for r in rows], col
    assert frame["nan"].tolist() == [r["nan"] == "1" for r in rows]
    assert frame["max_abs_diff"].tolist() == pytest.approx([float(r["max_abs_diff"]) for r in rows], rel=0, abs=0)
    assert frame["kernel"].isna().all()  # framework-level sites have no kernel


def test_per_layer_breakdown_recomputed_from_the_parquet_export(outputs):
    import pandas as pd

    frame = pd.read_parquet(outputs["parquet"])
    n: Counter[tuple[str, str, int, str]] = Counter()
    k: Counter[tuple[str, str, int, str]] = Counter()
    nan: Counter[tuple[str, str, int, str]] = Counter()
    crit: Counter[tuple[str, str]] = Counter()
    for r in frame.to_dict("records"):
        key = (r["model"], r["mode"], int(r["layer_index"]), r["layer"])
        n[key] += r["outcome"] in COUNTED
        k[key] += r["outcome"] == "critical_sdc"
        nan[key] += bool(r["nan"])
        crit[(r["model"], r["mode"])] += r["outcome"] == "critical_sdc"
    store = outputs["json"]["stores"][0]
    assert store["breakdown"]["unit"] == "layer"
    got = store["breakdown"]["rows"]
    assert {(u["model"], u["mode"], u["layer"], u["layer_name"]) for u in got} == set(n)
    for u in got:
        key = (u["model"], u["mode"], u["layer"], u["layer_name"])
        rate, low, high = interval(k[key], n[key])
        assert (u["n"], u["k"], u["nan"]) == (n[key], k[key], nan[key])
        assert u["rate"] == pytest.approx(rate, abs=1e-12)
        assert (u["ci_low"], u["ci_high"]) == pytest.approx((low, high), abs=1e-12)
        total = crit[(u["model"], u["mode"])]
        assert u["share"] == (None if total == 0 else pytest.approx(k[key] / total, abs=1e-12))
        assert u["unit"] == f"{u['layer']} {u['layer_name']}"
    # rows come in model x mode order, then layer order
    order = [(u["model"], u["mode"], u["layer"]) for u in got]
    assert order == sorted(order, key=lambda t: (["baseline", "hardened"].index(t[0]), t[1], t[2]))


def test_json_report_shape_and_numbers(outputs, stores):
    doc = outputs["json"]
    assert doc["format"] == "fi-campaign-report" and doc["version"] == 1 and doc["confidence"] == 0.95
    assert doc["fit_input"] is None and len(doc["stores"]) == 1
    s = doc["stores"][0]
    assert set(s) == {
        "label",
        "identity",
        "strata",
        "avf",
        "comparisons",
        "breakdown",
        "fit",
        "regret",
        "causes",
        "launch_counts",
        "sampling",
    }
    assert s["sampling"] == {"method": "simple"}  # a simple random plan has no estimates of its own
    assert s["launch_counts"] == []  # a framework-level store has no injector counts
    assert s["label"] == "a.db" and s["fit"] == [] and s["regret"] == []
    ident = s["identity"]
    with sqlite3.connect(stores[0]) as con:
        name, seed, config, models, created = con.execute(
            "SELECT name, seed, config, models, created FROM campaign"
        ).fetchone()
    assert (ident["name"], ident["seed"], ident["created"]) == (name, seed, created)
    assert ident["config"] == json.loads(config)
    stored_models = json.loads(models)
    assert {m: v["sha256"] for m, v in ident["models"].items()} == {m: v["sha256"] for m, v in stored_models.items()}
    assert ident["backend"] == "pytorch" and ident["dialect"] is None and ident["results_by"] == ["pytorch/inprocess"]
    assert "indices" not in ident["workload"] and ident["workload"]["count"] == 20
    assert ident["first_result"] <= ident["last_result"]
    # the AVF rows are the CSV's, at full precision
    for j, c in zip(s["avf"], outputs["avf"], strict=False):
        assert (j["model"], j["mode"], j["outcome"], str(j["k"]), str(j["n"])) == (
            c["model"],
            c["mode"],
            c["outcome"],
            c["k"],
            c["n"],
        )
        assert same6(j["rate"], c["rate"]) and same6(j["ci_low"], c["ci_low"]) and same6(j["ci_high"], c["ci_high"])
    # strata: planned / done / not injected / NaN from the export
    rows = outputs["export"]
    for st in s["strata"]:
        mine = [r for r in rows if (r["model"], r["mode"]) == (st["model"], st["mode"])]
        assert (st["planned"], st["done"]) == (40, 40)
        assert st["counted"] == sum(r["outcome"] in COUNTED for r in mine)
        assert st["not_injected"] == sum(r["outcome"] == "not_injected" for r in mine)
        assert st["nan"] == sum(r["nan"] == "1" for r in mine)
    # comparisons: Katz ratio of the reference over the candidate, recomputed
    crit = {(r["model"], r["mode"]): r for r in s["avf"] if r["outcome"] == "critical_sdc"}
    assert [(c["mode"], c["reference"], c["candidate"]) for c in s["comparisons"]] == [
        ("single_bit", "baseline", "hardened"),
        ("warp_random", "baseline", "hardened"),
    ]
    for c in s["comparisons"]:
        ref, cand = crit[("baseline", c["mode"])], crit[("hardened", c["mode"])]
        counts = (c["reference_k"], c["reference_n"], c["candidate_k"], c["candidate_n"])
        assert counts == (ref["k"], ref["n"], cand["k"], cand["n"])
        if ref["k"] == 0 and cand["k"] == 0:
            assert c["ratio"] is None and not c["significant"]
            continue
        r, lo, hi = katz(ref["k"], ref["n"], cand["k"], cand["n"])
        assert (c["ratio"], c["ci_low"], c["ci_high"]) == pytest.approx((r, lo, hi), rel=1e-12)
        assert c["significant"] == (lo > 1 or hi < 1)
        assert c["corrected"] == (ref["k"] == 0 or cand["k"] == 0)
        assert ("is significant" in c["sentence"]) == c["significant"]


def test_terminal_report_states_nan_and_not_injected_counts(stores, tmp_path):
    """A store with NaN/Inf and not-injected results says so in the terminal, the JSON and the HTML."""
    db = tmp_path / "flags.db"
    with sqlite3.connect(stores[1]) as src, sqlite3.connect(db) as dst:
        src.backup(dst)  # a WAL store's latest results may still be in its -wal file: copy through SQLite
    with sqlite3.connect(db) as con:
        ids = [
            r[0]
            for r in con.execute(
                "SELECT r.site_id FROM result r JOIN site s ON s.id = r.site_id "
                "WHERE s.model = 'hardened' AND s.mode = 'single_bit' ORDER BY r.site_id LIMIT 3"
            )
        ]
        con.execute("UPDATE result SET nan = 1 WHERE site_id = ?", (ids[0],))
        con.execute("UPDATE result SET outcome = 'not_injected' WHERE site_id IN (?, ?)", (ids[1], ids[2]))
    out = ok("--db", str(db), "report")
    assert "NaN/Inf in the outputs: hardened single_bit: 1 injections" in out
    assert "Not injected (kept out of n): hardened single_bit: 2 injections" in out
    ok("--db", str(db), "report", "--json", str(tmp_path / "f.json"), "--html", str(tmp_path / "h"))
    st = {(x["model"], x["mode"]): x for x in json.loads((tmp_path / "f.json").read_text())["stores"][0]["strata"]}
    assert (st[("hardened", "single_bit")]["nan"], st[("hardened", "single_bit")]["not_injected"]) == (1, 2)
    assert st[("hardened", "single_bit")]["counted"] == 10
    page = Dom.of((tmp_path / "h" / "index.html").read_text())
    row = page.row("stratum", model="hardened", mode="single_bit")
    assert (row["nan"]["text"], row["not_injected"]["text"], row["counted"]["text"]) == ("1", "2", "10")
    assert "2 not injected; 1 with NaN/Inf in the outputs" in " ".join(page.text.split())


# --- FIT -----------------------------------------------------------------------------------------


def test_fit_rollup_per_bit(stores, outputs, tmp_path):
    a, _ = stores
    out = ok(
        "--db",
        str(a),
        "report",
        "--fit-raw",
        "2e-4",
        "--fit-per",
        "bit",
        "--bits",
        "1000000",
        "--json",
        str(tmp_path / "f.json"),
        "--html",
        str(tmp_path / "h"),
    )
    text = " ".join(out.split())
    assert "raw FIT 0.0002 per bit x 1,000,000 bits = 200 per device" in text
    assert "FIT = raw device FIT x AVF" in text
    doc = json.loads((tmp_path / "f.json").read_text())
    assert doc["fit_input"] == {
        "rate": 2e-4,
        "per": "bit",
        "bits": 1_000_000,
        "device_rate": 200.0,
        "formula": "FIT = raw device FIT x AVF",
    }
    avf = {(r["model"], r["mode"], r["outcome"]): r for r in outputs["avf"]}
    fits = doc["stores"][0]["fit"]
    assert {f["outcome"] for f in fits} == {"critical_sdc", "tolerable_sdc", "due"} and len(fits) == 12
    for f in fits:
        a_row = avf[(f["model"], f["mode"], f["outcome"])]
        for mine, given in (("fit", "rate"), ("fit_low", "ci_low"), ("fit_high", "ci_high")):
            assert abs(f[mine] - 200 * float(a_row[given])) <= 200 * 5e-7
    page = Dom.of((tmp_path / "h" / "index.html").read_text())
    inputs = page.by_id["fit-inputs"]
    assert (inputs["data-rate"], inputs["data-per"], inputs["data-bits"], inputs["data-device-rate"]) == (
        "0.0002",
        "bit",
        "1000000",
        "200.0",
    )
    assert len(page.rows("fit")) == 12


def test_fit_per_device_is_the_default(stores, tmp_path):
    out = ok("--db", str(stores[0]), "report", "--fit-raw", "150", "--json", str(tmp_path / "f.json"))
    assert "raw FIT 150 per device" in " ".join(out.split())
    doc = json.loads((tmp_path / "f.json").read_text())
    assert doc["fit_input"]["device_rate"] == 150.0 and doc["fit_input"]["bits"] is None


# --- several stores --------------------------------------------------------------------------------


def test_several_stores_side_by_side(stores, tmp_path):
    a, b = stores
    ok(
        "report",
        str(a),
        str(b),
        "--csv",
        str(tmp_path / "both.csv"),
        "--json",
        str(tmp_path / "both.json"),
        "--html",
        str(tmp_path / "h"),
    )
    ok("--db", str(b), "report", "--csv", str(tmp_path / "b.csv"))
    ok("--db", str(a), "report", "--csv", str(tmp_path / "a.csv"))
    both = read_csv(tmp_path / "both.csv")
    assert list(both[0]) == ["store", "model", "mode", "outcome", "k", "n", "rate", "ci_low", "ci_high"]
    for label, single in (("a.db", "a.csv"), ("b.db", "b.csv")):
        mine = [{k: v for k, v in r.items() if k != "store"} for r in both if r["store"] == label]
        assert mine == read_csv(tmp_path / single)
    doc = json.loads((tmp_path / "both.json").read_text())
    assert [s["label"] for s in doc["stores"]] == ["a.db", "b.db"]
    assert [s["identity"]["seed"] for s in doc["stores"]] == [11, 12]
    page = Dom.of((tmp_path / "h" / "index.html").read_text())
    assert {s["data-store"] for s in page.sections} == {"a.db", "b.db"}
    assert {r["attrs"]["data-store"] for r in page.rows("avf")} == {"a.db", "b.db"}
    assert len(page.rows("avf")) == 2 * 20
    assert {f.name for f in (tmp_path / "h").iterdir()} >= {
        "index.html",
        "avf.png",
        "avf.svg",
        "units-1.png",
        "units-1.svg",
        "units-2.png",
        "units-2.svg",
    }


def test_several_stores_render_in_chromium(stores, tmp_path):
    a, b = stores
    ok("report", str(a), str(b), "--html", str(tmp_path / "h"), "--csv", str(tmp_path / "both.csv"))
    shot, dom = render_in_chromium(tmp_path / "h" / "index.html", tmp_path)
    check_screenshot(shot)
    page = Dom.of(dom)
    check_figures(page, {"avf", "units-1", "units-2", "bits-1", "bits-2"})
    check_avf_rows(page, read_csv(tmp_path / "both.csv"))


# --- bad input -------------------------------------------------------------------------------------


def test_bad_inputs_are_one_sentence_and_lose_nothing(stores, tmp_path):
    a, _ = stores
    before = snapshot(a)
    db = str(a)
    one_sentence_error(*cli("report", str(tmp_path / "absent.db")), "no campaign store")
    absent = str(tmp_path / "absent.db")
    one_sentence_error(*cli("--db", absent, "report", "--html", str(tmp_path / "h")), "no campaign store")
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as con:
        con.execute("CREATE TABLE t (x)")
    one_sentence_error(*cli("report", db, str(other)), "not a campaign store")
    text = tmp_path / "text.db"
    text.write_text("not a database, only words " * 40)
    one_sentence_error(*cli("report", str(text), "--json", str(tmp_path / "x.json")), "not a campaign store")
    assert not (tmp_path / "x.json").exists()
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    one_sentence_error(*cli("--db", db, "report", "--html", str(blocker)), "cannot write", "not a folder")
    one_sentence_error(*cli("--db", db, "report", "--html", str(blocker / "sub")), "cannot write")
    one_sentence_error(*cli("--db", db, "report", "--csv", str(blocker / "avf.csv")), "cannot write")
    one_sentence_error(*cli("--db", db, "report", "--json", str(tmp_path)), "cannot write", "folder")
    one_sentence_error(*cli("--db", db, "report", "--fit-raw", "-3"), "--fit-raw", "positive")
    one_sentence_error(*cli("--db", db, "report", "--fit-raw", "0"), "--fit-raw", "positive")
    one_sentence_error(*cli("--db", db, "report", "--fit-raw", "lots"), "--fit-raw", "number")
    one_sentence_error(*cli("--db", db, "report", "--fit-raw", "nan"), "--fit-raw")
    one_sentence_error(*cli("--db", db, "report", "--fit-raw", "5", "--fit-per", "bit"), "--bits")
    one_sentence_error(*cli("--db", db, "report", "--fit-raw", "5", "--fit-per", "bit", "--bits", "0"), "--bits")
    one_sentence_error(*cli("--db", db, "report", "--fit-raw", "5", "--fit-per", "bit", "--bits", "1.5"), "--bits")
    one_sentence_error(*cli("--db", db, "report", "--fit-raw", "5", "--bits", "64"), "--bits", "--fit-per bit")
    one_sentence_error(*cli("--db", db, "report", "--fit-raw", "5", "--fit-per", "chip"), "--fit-per")
    one_sentence_error(*cli("--db", db, "report", "--bits", "64"), "--fit-raw")
    one_sentence_error(*cli("--db", db, "report", db), "either")
    one_sentence_error(*cli("report", db, str(Path(db).parent / "." / Path(db).name)), "given twice")
    one_sentence_error(*cli("--db", db, "export", str(blocker / "x.parquet")), "cannot write")
    one_sentence_error(*cli("--db", str(other), "export", str(tmp_path / "x.parquet")), "not a campaign store")
    assert not (tmp_path / "x.parquet").exists() and not list(tmp_path.glob("*.partial"))
    assert not (tmp_path / "h").exists()
    assert snapshot(a) == before


def test_export_streams_in_batches(stores):
    from fi_campaign.report.export import EXPORT_COLUMNS, batches
    from fi_campaign.store import Store

    store = Store.open(stores[0])
    got = list(batches(store, size=7))
    assert all(len(b) <= 7 for b in got) and sum(map(len, got)) == 160
    rows = [r for b in got for r in b]
    assert all(len(r) == len(EXPORT_COLUMNS) for r in rows)
    assert [r[0] for r in rows] == sorted(r[0] for r in rows)
    assert [dict(zip(EXPORT_COLUMNS, r, strict=False))["layer"] for r in rows] == [
        d["layer_name"] for d in store.export_rows()
    ]


# --- NVBitFI units: kernel and instruction group -----------------------------------------------------


def test_nvbitfi_breakdown_is_per_kernel_and_instruction_group(tmp_path, checkpoints):
    """A store as the NVBitFI backend leaves it (site.kernel, site.igid; no layer), written
    through the real Store API: the breakdown and the page are per kernel / igid."""
    from dataclasses import replace

    from bench import zero_cost
    from fi_campaign.config import Config, Nvbitfi
    from fi_campaign.models.arch import Arch
    from fi_campaign.models.powerlaw import PowerLaw, TableOrigin
    from fi_campaign.store import FaultModelRecord, ModelRecord, Result, Store

    config = Config(
        "nv",
        {"baseline": str(checkpoints["baseline"])},
        ("single_bit",),
        6,
        1,
        backend="nvbitfi",
        isolation="process",
        device="cuda",
        reference="baseline",
        nvbitfi=Nvbitfi(dialect="carol"),
    )
    fm = FaultModelRecord(
        table="dsn2021-fu",
        op="FFMA",
        size="common",
        semantics="s",
        entries={"common": PowerLaw(2.0, 1.45)},
        origin=TableOrigin(name="dsn2021-fu", kind="built-in"),
    )
    model = ModelRecord(
        checkpoint="c.pt", sha256="ab" * 32, arch=Arch(depth=20), dataset="cifar10", clean_accuracy=None, accuracy_on=""
    )
    record = replace(
        zero_cost.record("nv"), seed=1, config=config.to_json(), models={"baseline": model}, fault_model=fm
    )
    kernels = ["sgemm_128x64", "sgemm_128x64", "sgemm_128x64", "implicit_conv", "implicit_conv", "implicit_conv"]
    igids = [1, 1, 1, 1, 2, 2]
    store = Store.create(tmp_path / "nv.db")
    store.write_plan(
        record,
        [
            {
                "model": "baseline",
                "mode": "single_bit",
                "kernel": k,
                "kcount": i,
                "igid": g,
                "iid": i,
                "op_seed": 0.5,
                "bit_seed": 0.5,
            }
            for i, (k, g) in enumerate(zip(kernels, igids, strict=False))
        ],
    )
    outcomes = ["critical_sdc", "masked", "not_injected", "critical_sdc", "due", "critical_sdc"]
    store.record(
        [
            Result(
                site_id=i + 1,
                outcome=o,
                images_changed=int(o == "critical_sdc"),
                nan=False,
                max_abs_diff=None,
                backend="nvbitfi",
                isolation="process",
                semantics="carol",
                runtime_s=0.1,
            )
            for i, o in enumerate(outcomes)
        ]
    )
    ok("--db", str(tmp_path / "nv.db"), "report", "--json", str(tmp_path / "nv.json"), "--html", str(tmp_path / "h"))
    s = json.loads((tmp_path / "nv.json").read_text())["stores"][0]
    assert s["identity"]["dialect"] == "carol" and s["breakdown"]["unit"] == "kernel"
    rows = {(u["kernel"], u["igid"]): u for u in s["breakdown"]["rows"]}
    assert set(rows) == {("implicit_conv", 1), ("implicit_conv", 2), ("sgemm_128x64", 1)}
    assert [(u["kernel"], u["igid"]) for u in s["breakdown"]["rows"]] == sorted(rows)
    sg = rows[("sgemm_128x64", 1)]
    assert (sg["n"], sg["k"], sg["not_injected"], sg["layer"]) == (2, 1, 1, None)
    assert sg["unit"] == "sgemm_128x64 / igid 1"
    assert sg["share"] == pytest.approx(1 / 3)
    ic2 = rows[("implicit_conv", 2)]
    assert (ic2["n"], ic2["k"]) == (2, 1)
    avf = {r["outcome"]: r for r in s["avf"]}
    assert (avf["due"]["k"], avf["due"]["n"], avf["not_injected"]["n"]) == (1, 5, 6)
    page = Dom.of((tmp_path / "h" / "index.html").read_text())
    assert page.by_id["identity"] is not None
    assert "NVBitFI injector dialect" in page.text and "carol" in page.text
    assert {r["attrs"]["data-unit"] for r in page.rows("unit")} == {u["unit"] for u in rows.values()}


# --- reading the page ------------------------------------------------------------------------------


class Dom(HTMLParser):
    """Rows (tr with a class), their cells (td with data-field), images, sections and elements
    with an id, from the page or from Chromium's rendered DOM."""

    def __init__(self) -> None:
        super().__init__()
        self.all_rows: list[dict] = []
        self.images: list[dict] = []
        self.sections: list[dict] = []
        self.by_id: dict[str, dict] = {}
        self._row: dict | None = None
        self._cell: dict | None = None
        self._text: list[str] = []

    @classmethod
    def of(cls, html: str) -> Dom:
        d = cls()
        d.feed(html)
        return d

    @property
    def text(self) -> str:
        return "".join(self._text)

    def handle_starttag(self, tag, attrs):
        a = {k: v or "" for k, v in attrs}
        if "id" in a:
            self.by_id[a["id"]] = a
        if tag == "tr" and "class" in a:
            self._row = {"class": a["class"], "attrs": a, "cells": {}}
            self.all_rows.append(self._row)
        elif tag == "td" and self._row is not None and "data-field" in a:
            self._cell = {**a, "text": ""}
            self._row["cells"][a["data-field"]] = self._cell
        elif tag == "img":
            self.images.append(a)
        elif tag == "section":
            self.sections.append(a)

    def handle_endtag(self, tag):
        if tag == "td":
            self._cell = None
        elif tag == "tr":
            self._row = None

    def handle_data(self, data):
        self._text.append(data)
        if self._cell is not None:
            self._cell["text"] += data.strip()

    def rows(self, kind: str) -> list[dict]:
        return [r for r in self.all_rows if r["class"] == kind]

    def row(self, kind: str, **where: str) -> dict:
        found = [r for r in self.rows(kind) if all(r["attrs"].get(f"data-{k}") == v for k, v in where.items())]
        assert len(found) == 1, (kind, where, len(found))
        return found[0]["cells"]


def chromium_exe() -> str:
    exe = shutil.which("chromium")
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed; .ci/run installs it (apt-get install chromium)")
        pytest.skip("chromium is not installed (apt-get install chromium; under CI=1 this fails)")
    return exe


def render_in_chromium(page: Path, tmp: Path) -> tuple[Path, str]:
    """A screenshot and the DOM after the page's load event, from headless Chromium."""
    base = [
        chromium_exe(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp / 'chromium-profile'}",
    ]
    shot = tmp / "screenshot.png"
    p = subprocess.run(
        base + [f"--screenshot={shot}", "--window-size=1280,4000", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 0 and shot.exists(), p.stderr[-2000:]
    p = subprocess.run(base + ["--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and "<html" in p.stdout, p.stderr[-2000:]
    return shot, p.stdout


def check_screenshot(shot: Path) -> None:
    """Not blank: the pixels vary, and the figures' colours are on screen."""
    import numpy as np
    from PIL import Image

    from fi_campaign.report.plots import COLOURS

    img = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert img.shape == (4000, 1280, 3)
    assert img.std() > 20
    assert (img.min(axis=2) < 200).mean() > 0.02  # text, tables, figures: not a white page
    painted = 0
    for colour in COLOURS.values():
        rgb = np.array([int(colour[i : i + 2], 16) for i in (1, 3, 5)])
        painted += int((np.abs(img - rgb).max(axis=2) <= 12).sum())
    assert painted > 2000, painted


def check_figures(page: Dom, names: set[str]) -> None:
    """Each figure is an img the browser decoded, and its embedded PNG is a real image."""
    from PIL import Image

    figures = {i["data-figure"]: i for i in page.images if "data-figure" in i}
    assert set(figures) == names
    for name, img in figures.items():
        assert img["src"].startswith("data:image/png;base64,")
        png = Image.open(io.BytesIO(base64.b64decode(img["src"].split(",", 1)[1])))
        png.verify()
        png = Image.open(io.BytesIO(base64.b64decode(img["src"].split(",", 1)[1])))
        assert int(img["data-natural-width"]) == png.width > 300, name
        assert int(img["data-natural-height"]) == png.height > 200, name


def check_avf_rows(page: Dom, table: list[dict]) -> None:
    """Every CSV row is on the page, k and n exactly, each rate as its exact CSV value in
    data-value and as the percentage shown, to the shown precision."""
    got = page.rows("avf")
    assert len(got) == len(table)
    for t in table:
        where = {"model": t["model"], "mode": t["mode"], "outcome": t["outcome"]}
        if "store" in t:
            where["store"] = t["store"]
        cells = page.row("avf", **where)
        assert cells["k"]["text"] == t["k"] and cells["n"]["text"] == t["n"]
        for f in ("rate", "ci_low", "ci_high"):
            assert cells[f]["data-value"] == t[f]
            shown = cells[f]["text"]
            if t[f] == "":
                assert shown == "-"
            else:
                assert shown == f"{float(shown):.2f}" and abs(float(shown) - 100 * float(t[f])) <= 0.005 + 1e-9, (t, f)


def test_help_imports_neither_plotting_nor_data_libraries():
    import sys

    code = (
        "import sys; from click.testing import CliRunner; from fi_campaign.cli import main; "
        "r = CliRunner().invoke(main, ['report', '--help']); assert r.exit_code == 0, r.output; "
        "print(sorted(m for m in ('matplotlib', 'torch', 'pandas', 'pyarrow') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
