"""plan -> run -> report -> export on a tiny config, through the real CLI and a real store."""

from __future__ import annotations

import csv
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from fi_campaign.cli import main
from fi_campaign.engine import runner
from fi_campaign.report.summary import CSV_COLUMNS
from fi_campaign.store import Store


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def sites_and_outcomes(db: Path) -> list[tuple]:
    with sqlite3.connect(db) as con:
        return con.execute(
            "SELECT s.model, s.mode, s.layer, s.image, s.element, s.bit, s.width, s.value_seed, r.outcome, "
            "r.images_changed, r.nan, r.max_abs_diff FROM site s LEFT JOIN result r ON r.site_id = s.id "
            "ORDER BY s.id"
        ).fetchall()


def planned_and_run(tmp_path: Path, config: Path, name: str, *extra: str) -> Path:
    db = tmp_path / name
    assert cli("--db", str(db), "plan", str(config), *extra)[0] == 0
    code, out = cli("--db", str(db), "run")
    assert code == 0, out
    return db


def test_next_steps_name_the_store_they_ran_on(tmp_path, tiny_config, monkeypatch):
    """plan and run end with a command that can be pasted as it is: with the --db they were given
    (quoted for the shell), and without one on the default store."""
    db = tmp_path / "my store.db"
    code, out = cli("--db", str(db), "plan", str(tiny_config), "--injections", "2")
    assert code == 0 and out.strip().splitlines()[-1] == f"Next: fi-campaign --db '{db}' run", out
    code, out = cli("--db", str(db), "run", "--workers", "1")
    assert code == 0, out
    assert out.strip().splitlines()[-1] == f"Ran 8 injections. Next: fi-campaign --db '{db}' report --avf", out
    monkeypatch.chdir(tmp_path)
    assert cli("plan", str(tiny_config), "--injections", "1")[1].strip().endswith("Next: fi-campaign run")
    code, out = cli("run", "--workers", "1")
    assert code == 0 and out.strip().splitlines()[-1] == "Ran 4 injections. Next: fi-campaign report --avf", out
    assert (tmp_path / "fi-campaign.db").is_file()


def test_plan_run_report_export(tmp_path, tiny_config):
    db = tmp_path / "c.db"
    code, out = cli("--db", str(db), "plan", str(tiny_config))
    assert code == 0, out
    assert "Planned 160 injections" in out
    with sqlite3.connect(db) as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert con.execute("SELECT count(*) FROM site WHERE status='pending'").fetchone()[0] == 160
        assert con.execute("SELECT count(*) FROM result").fetchone()[0] == 0

    code, out = cli("--db", str(db), "run")
    assert code == 0, out
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT count(*) FROM result").fetchone()[0] == 160
        assert con.execute("SELECT count(*) FROM site WHERE status != 'done'").fetchone()[0] == 0

    code, out = cli("--db", str(db), "report", "--avf", "--csv", str(tmp_path / "avf.csv"))
    assert code == 0, out
    assert "critical SDC baseline/hardened" in out.replace("\n", " ") or "critical-SDC ratio" in out
    with open(tmp_path / "avf.csv") as f:
        table = list(csv.DictReader(f))
    assert tuple(table[0]) == CSV_COLUMNS

    code, out = cli("--db", str(db), "export", str(tmp_path / "inj.csv"))
    assert code == 0, out
    with open(tmp_path / "inj.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 160
    assert {"site_id", "model", "mode", "backend", "layer", "outcome", "images_changed", "nan"} <= set(rows[0])
    assert {r["backend"] for r in rows} == {"pytorch"}
    # the report's counts are exactly the export's counts
    counts = Counter((r["model"], r["mode"], r["outcome"]) for r in rows)
    for t in table:
        assert int(t["k"]) == counts[(t["model"], t["mode"], t["outcome"])]
        if t["outcome"] != "not_injected":
            assert int(t["n"]) == 40


@pytest.mark.slow  # over 30 s in the default run (docs/TESTING.md); CI runs it in make test-slow
def test_same_config_and_seed_same_sites_and_outcomes(tmp_path, tiny_config):
    a = sites_and_outcomes(planned_and_run(tmp_path, tiny_config, "a.db"))
    b = sites_and_outcomes(planned_and_run(tmp_path, tiny_config, "b.db"))
    assert a == b
    assert any(row[8] != "masked" for row in a)  # the faults really did something
    c = tmp_path / "c.db"
    assert cli("--db", str(c), "plan", str(tiny_config), "--seed", "12")[0] == 0
    assert [r[:8] for r in sites_and_outcomes(c)] != [r[:8] for r in a]


def test_injections_override(tmp_path, tiny_config):
    db = tmp_path / "o.db"
    code, out = cli("--db", str(db), "plan", str(tiny_config), "--injections", "7")
    assert code == 0 and "Planned 28 injections" in out


@pytest.mark.slow  # over 30 s in the default run (docs/TESTING.md); CI runs it in make test-slow
def test_batched_injections_equal_one_at_a_time(tmp_path, tiny_config):
    """Vectorisation is sound: a site's outcome does not depend on the other faults in its batch."""
    batched = sites_and_outcomes(planned_and_run(tmp_path, tiny_config, "batched.db"))
    db = tmp_path / "single.db"
    assert cli("--db", str(db), "plan", str(tiny_config))[0] == 0
    runner.run(Store.open(db), model="baseline", chunk=1)
    runner.run(Store.open(db), model="hardened", chunk=1)
    assert sites_and_outcomes(db) == batched


@pytest.mark.slow  # over 30 s in the default run (docs/TESTING.md); CI runs it in make test-slow
def test_interrupted_run_resumes_without_loss_or_repeat(tmp_path, tiny_config, monkeypatch):
    reference = sites_and_outcomes(planned_and_run(tmp_path, tiny_config, "ref.db"))
    monkeypatch.setattr(runner, "RECORD_EVERY_S", 0.0)  # each chunk recorded as it ends: stop after the second
    db = tmp_path / "int.db"
    assert cli("--db", str(db), "plan", str(tiny_config))[0] == 0
    seen = []

    def stop_after_two_chunks(p: runner.Progress) -> None:
        seen.append(p.done)
        if p.done == 30:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        runner.run(Store.open(db), on_progress=stop_after_two_chunks, chunk=15)
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT count(*) FROM result").fetchone()[0] == 30
    code, out = cli("--db", str(db), "run")
    assert code == 0, out
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT count(*), count(DISTINCT site_id) FROM result").fetchone() == (160, 160)
    assert sites_and_outcomes(db) == reference
    code, out = cli("--db", str(db), "run")
    assert code == 0 and "Nothing to run" in out


def test_run_filters_by_model_and_mode(tmp_path, tiny_config):
    db = tmp_path / "f.db"
    assert cli("--db", str(db), "plan", str(tiny_config))[0] == 0
    assert cli("--db", str(db), "run", "--model", "hardened", "--mode", "warp_random")[0] == 0
    with sqlite3.connect(db) as con:
        done = con.execute(
            "SELECT model, mode, count(*) FROM site JOIN result ON site_id = id GROUP BY 1, 2"
        ).fetchall()
    assert done == [("hardened", "warp_random", 40)]


def _assert_clean_error(code: int, out: str, *words: str) -> None:
    assert code == 2, out
    assert "Traceback" not in out
    lines = [line for line in out.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), out
    for w in words:
        assert w in out, out


def test_bad_config_inputs(tmp_path, tiny_config, checkpoints):
    db = str(tmp_path / "x.db")
    _assert_clean_error(*cli("--db", db, "plan", str(tmp_path / "missing.yaml")), "does not exist")
    bad = tmp_path / "bad.yaml"
    bad.write_text("models: [unclosed\n")
    _assert_clean_error(*cli("--db", db, "plan", str(bad)), "not valid YAML")
    bad.write_text(tiny_config.read_text() + "modes: [single_bit, triple_bit]\n")
    _assert_clean_error(*cli("--db", db, "plan", str(bad)), "triple_bit")
    bad.write_text(tiny_config.read_text() + "injections: many\n")
    _assert_clean_error(*cli("--db", db, "plan", str(bad)), "injections")
    bad.write_text(tiny_config.read_text() + "colour: blue\n")
    _assert_clean_error(*cli("--db", db, "plan", str(bad)), "colour")
    bad.write_text(f"models: {{a: {tmp_path / 'nowhere.pt'}}}\n")
    _assert_clean_error(*cli("--db", db, "plan", str(bad)), "nowhere.pt", "does not exist")
    bad.write_text(f"models: {{a: {bad}}}\n")
    _assert_clean_error(
        *cli("--db", db, "plan", str(bad)), "not an fi-campaign checkpoint", "fi-campaign train", "zoo:"
    )
    (tmp_path / "notcifar").mkdir()
    (tmp_path / "notcifar" / "readme.txt").write_text("hello")
    bad.write_text(f"models: {{a: {checkpoints['baseline']}}}\nimages: {{source: {tmp_path / 'notcifar'}}}\n")
    _assert_clean_error(*cli("--db", db, "plan", str(bad)), "notcifar")
    assert not Path(db).exists()


def test_bad_store_inputs_lose_nothing(tmp_path, tiny_config):
    db = planned_and_run(tmp_path, tiny_config, "kept.db")
    before = sites_and_outcomes(db)
    _assert_clean_error(*cli("--db", str(db), "plan", str(tiny_config)), "already holds a campaign")
    _assert_clean_error(*cli("--db", str(db), "run", "--model", "nosuch"), "nosuch")
    _assert_clean_error(*cli("--db", str(db), "run", "--mode", "nosuch"), "nosuch")
    assert sites_and_outcomes(db) == before
    _assert_clean_error(*cli("--db", str(tmp_path / "absent.db"), "report"), "no campaign store")
    not_sqlite = tmp_path / "text.db"
    not_sqlite.write_text("just text, definitely not a database file " * 20)
    _assert_clean_error(*cli("--db", str(not_sqlite), "report"), "not a campaign store")
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as con:
        con.execute("CREATE TABLE t (x)")
    _assert_clean_error(*cli("--db", str(other), "run"), "not a campaign store")
    _assert_clean_error(*cli("--db", str(other), "plan", str(tiny_config)), "not a campaign store")
    with sqlite3.connect(other) as con:
        assert con.execute("SELECT name FROM sqlite_master").fetchall() == [("t",)]


def test_changed_checkpoint_is_refused(tmp_path, tiny_config, checkpoints):
    import torch

    from fi_campaign.models import zoo

    db = tmp_path / "m.db"
    assert cli("--db", str(db), "plan", str(tiny_config))[0] == 0
    model, meta = zoo.load(str(checkpoints["hardened"]))
    with torch.no_grad():
        model.fc.bias.add_(1.0)
    swapped = tmp_path / "swapped.pt"
    zoo.save(swapped, model, meta)
    with sqlite3.connect(db) as con:
        row = con.execute("SELECT models FROM campaign").fetchone()[0]
        con.execute("UPDATE campaign SET models = ?", (row.replace(str(checkpoints["hardened"]), str(swapped)),))
    _assert_clean_error(
        *cli("--db", str(db), "run", "--model", "hardened"), "has changed since the campaign was planned"
    )


def test_help_does_not_import_torch():
    code = "import sys, fi_campaign.cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_console_script_runs_the_real_cli(tmp_path, tiny_config):
    exe = Path(sys.executable).with_name("fi-campaign")
    db = tmp_path / "s.db"
    p = subprocess.run(
        [str(exe), "--db", str(db), "plan", str(tiny_config), "--injections", "3"], capture_output=True, text=True
    )
    assert p.returncode == 0, p.stderr
    p = subprocess.run([str(exe), "--db", str(db), "run", "--mode", "nope"], capture_output=True, text=True)
    assert p.returncode == 2 and "Traceback" not in p.stderr and "nope" in p.stderr
