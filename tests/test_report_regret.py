"""`evaluate --regret` recorded in a campaign store (the `regret` table), including stores
planned before that table existed, and shown by `report`."""

from __future__ import annotations

import csv
import json
import sqlite3
from pathlib import Path

import pytest

from tests.test_report import Dom, cli, ok, one_sentence_error


def tables(db: Path) -> set[str]:
    with sqlite3.connect(db) as con:
        return {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def contents(db: Path) -> list[list[tuple]]:
    with sqlite3.connect(db) as con:
        return [con.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall() for t in ("campaign", "site", "result")]


@pytest.fixture
def older_store(tmp_path, tiny_config) -> Path:
    """A planned store as versions before the regret table (and before migrations) left it:
    only the campaign, its sites and results."""
    db = tmp_path / "old.db"
    ok("--db", str(db), "plan", str(tiny_config), "--injections", "2")
    with sqlite3.connect(db) as con:
        for table in tables(db) - {"campaign", "site", "result"}:
            con.execute(f"DROP TABLE {table}")
    return db


def test_regret_rows_are_recorded_in_an_older_store_and_reported(older_store, checkpoints, tmp_path):
    from fi_campaign.models import zoo

    db = older_store
    before = contents(db)
    ok("--db", str(db), "report", "--json", str(tmp_path / "before.json"))  # an older store reads as before
    assert json.loads((tmp_path / "before.json").read_text())["stores"][0]["regret"] == []
    assert contents(db) == before  # opening it upgraded the schema (migrations) and nothing else

    base, hard = str(checkpoints["baseline"]), str(checkpoints["hardened"])
    out = ok(
        "evaluate",
        "--regret",
        "--db",
        str(db),
        base,
        hard,
        "--images",
        "12",
        "--repeats",
        "2",
        "--device",
        "cpu",
        "--seed",
        "4",
        "--csv",
        str(tmp_path / "ev.csv"),
    )
    assert f"Recorded 2 regret rows in {db}" in " ".join(out.split())
    out = ok("--db", str(db), "evaluate", "--regret", base, "--images", "12", "--repeats", "1", "--device", "cpu")
    assert "Recorded 1 regret rows" in out
    assert "regret" in tables(db)
    assert contents(db) == before  # the campaign, its sites and results are untouched

    with open(tmp_path / "ev.csv", newline="") as f:
        printed = list(csv.DictReader(f))
    with sqlite3.connect(db) as con:
        con.row_factory = sqlite3.Row
        stored = [dict(r) for r in con.execute("SELECT * FROM regret ORDER BY id")]
    assert [r["model"] for r in stored] == [base, hard, base]
    for row, p in zip(stored, printed, strict=False):
        assert row["model"] == p["model"] and row["label"] == p["preset"]
        for column in ("clean", "noisy", "noisy_low", "noisy_high", "regret", "regret_low", "regret_high"):
            assert row[column] == pytest.approx(float(p[column]), rel=1e-12), column
        assert row["sha256"] == zoo.read(row["model"])[0].sha256
        setting = (row["images"], row["repeats"], row["seed"], row["dataset"], row["source"])
        assert setting == (12, 2, 4, "cifar10", "bundled")
        assert "dsn2021-fu FFMA common" in row["fault_model"] and row["created"]
    assert (stored[2]["repeats"], stored[2]["seed"]) == (1, 0)
    assert stored[0]["regret"] == pytest.approx(stored[0]["clean"] - stored[0]["noisy"], abs=1e-12)

    ok("--db", str(db), "report", "--json", str(tmp_path / "after.json"), "--html", str(tmp_path / "h"))
    reported = json.loads((tmp_path / "after.json").read_text())["stores"][0]["regret"]
    assert reported == [{k: v for k, v in r.items() if k != "id"} for r in stored]
    assert {p.name for p in (tmp_path / "h").iterdir()} >= {"regret.png", "regret.svg"}
    page = Dom.of((tmp_path / "h" / "index.html").read_text())
    rows = page.rows("regret")
    assert len(rows) == 3
    labels = [r["cells"]["label"]["text"] for r in rows]
    assert [
        t.startswith(want) for t, want in zip(labels, ("baseline #1", "hardened", "baseline #2"), strict=False)
    ] == [True] * 3
    for r, s in zip(rows, stored, strict=False):
        assert r["cells"]["regret"]["data-value"] == f"{s['regret']:.6f}"
        assert r["cells"]["sha256"]["text"] == s["sha256"]


def test_regret_store_errors_come_before_the_evaluation(older_store, checkpoints, tmp_path):
    base = str(checkpoints["baseline"])
    one_sentence_error(*cli("evaluate", "--db", str(older_store), base), "--regret")
    one_sentence_error(*cli("evaluate", "--regret", "--db", str(tmp_path / "none.db"), base), "no campaign store")
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as con:
        con.execute("CREATE TABLE t (x)")
    one_sentence_error(*cli("evaluate", "--regret", "--db", str(other), base), "not a campaign store")
    one_sentence_error(*cli("--db", str(older_store), "evaluate", "--regret", "--db", str(other), base), "two stores")
    assert "regret" not in tables(older_store)
    ok("--db", str(older_store), "evaluate", base, "--images", "4", "--device", "cpu")  # plain accuracy: nothing stored
    assert "regret" not in tables(older_store)


def test_each_row_says_its_noise_and_the_report_draws_one_figure_per_noise(older_store, checkpoints, tmp_path):
    from fi_campaign.store import Store

    db, base = older_store, str(checkpoints["baseline"])
    common = ("--regret", "--db", str(db), base, "--images", "12", "--repeats", "2", "--device", "cpu")
    ok("evaluate", *common)
    out = ok("evaluate", "--noise", "authors-2022", *common, "--csv", str(tmp_path / "a.csv"))
    assert "authors-2022 noise" in " ".join(out.split())
    with open(tmp_path / "a.csv", newline="") as f:
        assert [r["noise"] for r in csv.DictReader(f)] == ["authors-2022"]
    with sqlite3.connect(db) as con:
        stored = con.execute("SELECT noise, fault_model FROM regret ORDER BY id").fetchall()
        assert [n for n, _ in stored] == ["paper", "authors-2022"]
        assert "dsn2021-fu FFMA common" in stored[0][1] and "hans_gruber.py" in stored[1][1]
        con.execute("UPDATE regret SET noise = NULL WHERE id = 1")  # as a row of a store before migration 0006
    assert [r.noise for r in Store.open(db).regret_rows()] == ["paper", "authors-2022"]

    ok("--db", str(db), "report", "--html", str(tmp_path / "h"))
    names = {p.name for p in (tmp_path / "h").iterdir()}
    assert {"regret.png", "regret-authors-2022.png"} <= names
    page = Dom.of((tmp_path / "h" / "index.html").read_text())
    assert [r["attrs"]["data-noise"] for r in page.rows("regret")] == ["paper", "authors-2022"]
    assert [r["cells"]["noise"]["data-value"] for r in page.rows("regret")] == ["paper", "authors-2022"]
    # one evaluation per noise: each figure shows the model once, so no #1, #2
    assert not any("#" in r["cells"]["label"]["text"] for r in page.rows("regret"))


def test_a_regret_row_of_a_store_before_migration_0006_reads_as_the_papers(older_store, checkpoints):
    import sqlalchemy as sa

    from fi_campaign.store import Store, migrate
    from tests.test_store import raw

    db = older_store
    ok("evaluate", "--regret", "--db", str(db), str(checkpoints["baseline"]), "--images", "4", "--repeats", "1")
    engine = raw(str(db))
    with engine.begin() as con:  # back to revision 0005: the column did not exist
        con.execute(sa.text("ALTER TABLE regret DROP COLUMN noise"))
        con.execute(sa.text("UPDATE alembic_version SET version_num = '0005'"))
    engine.dispose()
    rows = Store.open(db).regret_rows()  # upgrades it
    assert [r.noise for r in rows] == ["paper"]
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT version_num FROM alembic_version").fetchone()[0] == migrate.HEAD
        assert con.execute("SELECT noise FROM regret").fetchall() == [(None,)]


def test_bad_noise_options_are_refused(checkpoints):
    base = str(checkpoints["baseline"])
    code, out = cli("evaluate", "--regret", "--noise", "foo", base)
    assert code == 2 and "Traceback" not in out and "Invalid value for '--noise': 'foo' is not one of" in out
    one_sentence_error(
        *cli("evaluate", "--regret", "--noise", "authors-2022", "--op", "FADD", base), "--op", "leave it out"
    )
    one_sentence_error(
        *cli("evaluate", "--regret", "--noise", "authors-2022", "--table", "dsn2021-fu", "--size", "big", base),
        "--table and --size",
    )


def test_the_regret_figure_sets_each_datasets_ablation_in_a_panel_of_its_own():
    """As the paper's Fig. 5: CIFAR-10 and CIFAR-100 side by side, each in the evaluation order."""
    from matplotlib.container import BarContainer

    from fi_campaign.report.plots import regret_figure
    from fi_campaign.store import RegretRecord

    def row(model: str, dataset: str, clean: float, noisy: float) -> tuple[str, RegretRecord]:
        nan = float("nan")
        return model, RegretRecord(
            model=f"zoo:{model}", sha256="0" * 64, label=model, dataset=dataset, source="test", images=10,
            repeats=5, seed=0, fault_model="f", clean=clean, noisy=noisy, noisy_low=nan, noisy_high=nan,
            regret=clean - noisy, regret_low=nan, regret_high=nan,
        )  # fmt: skip

    rows = [
        row("c10-baseline", "cifar10", 0.9, 0.7),
        row("c100-baseline", "cifar100", 0.6, 0.3),
        row("c10-hardened", "cifar10", 0.9, 0.85),
        row("c100-relu6", "cifar100", 0.6, 0.4),
        row("c100-hardened", "cifar100", 0.6, 0.55),
    ]
    axes = regret_figure(rows).axes
    assert [ax.get_title() for ax in axes] == ["CIFAR-10", "CIFAR-100"]
    assert [[t.get_text() for t in ax.get_xticklabels()] for ax in axes] == [
        ["c10-baseline", "c10-hardened"],
        ["c100-baseline", "c100-relu6", "c100-hardened"],
    ]
    heights = [
        [round(b.get_height(), 6) for c in ax.containers if isinstance(c, BarContainer) for b in c] for ax in axes
    ]
    assert heights == [[90.0, 70.0, 90.0, 85.0], [60.0, 30.0, 60.0, 40.0, 60.0, 55.0]]
    single = regret_figure(rows[:1]).axes
    assert len(single) == 1 and single[0].get_title() == ""
