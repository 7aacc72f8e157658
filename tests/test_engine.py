"""The campaign engine under abuse: kill -9 at random moments, concurrent runners, a full or
read-only store, and the adaptive stop. The tests taking ``new_store`` run on SQLite and on a
real PostgreSQL server (tests/conftest.py); where one backend's run is marked slow (make
test-slow, which CI runs too), the default run keeps SQLite's; PostgreSQL's concurrent claims
(SKIP LOCKED) stay in the default run through tests/test_store.py's sixteen worker processes."""

from __future__ import annotations

import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from fi_campaign.cli import main
from fi_campaign.engine import runner
from fi_campaign.store import Store, StoreError, log_path
from fi_campaign.store.backends import engine_for, parse_target

EXE = str(Path(sys.executable).with_name("fi-campaign"))


@pytest.fixture(scope="module")
def engine_config(tmp_path_factory, checkpoints) -> Path:
    path = tmp_path_factory.mktemp("engine") / "e.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "engine",
                "seed": 21,
                "injections": 400,
                "batch_size": 4,
                "models": {k: str(v) for k, v in checkpoints.items()},
                "images": {"source": "bundled", "count": 16},
            }
        )
    )
    return path


def plan(db: Path | str, config: Path, *extra: str) -> None:
    r = CliRunner().invoke(main, ["--db", str(db), "plan", str(config), *extra])
    assert r.exit_code == 0, r.output


def query(db: Path | str, sql: str) -> list[tuple]:
    engine = engine_for(parse_target(db))
    try:
        with engine.connect() as con:
            return [tuple(r) for r in con.exec_driver_sql(sql)]
    finally:
        engine.dispose()


def results(db: Path | str) -> list[tuple]:
    """Outcomes per site. Exact logit differences are left out: 1- and 2-worker runs use
    different torch thread counts, which may change the last bits, not the outcome class."""
    return [
        (a, b, c, bool(d))
        for a, b, c, d in query(db, "SELECT site_id, outcome, images_changed, nan FROM result ORDER BY site_id")
    ]


def intact(db: Path | str) -> None:
    if parse_target(db).path is not None:
        with sqlite3.connect(db) as con:
            assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


@pytest.fixture(scope="module")
def reference(tmp_path_factory, engine_config) -> list[tuple]:
    """The outcomes of an undisturbed run, once for the module: the abused runs must match them."""
    db = tmp_path_factory.mktemp("reference") / "ref.db"
    plan(db, engine_config)
    runner.run(Store.open(db), workers=2)
    return results(db)


def start_run(db: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [EXE, "--db", str(db), "run", *extra], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )


def stderr_of(p: subprocess.Popen) -> str:
    """What a ``start_run`` process wrote to its stderr (a pipe) so far."""
    assert p.stderr is not None
    return p.stderr.read().decode()


@pytest.mark.slow  # over 30 s in the default run (docs/TESTING.md); CI runs it in make test-slow
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_kill_9_at_random_moments_then_resume(new_store, engine_config, reference):
    db = new_store("k")
    plan(db, engine_config)
    rng = random.Random(4)
    seen: list[int] = []
    for _ in range(3):
        p = start_run(db, "--workers", "2")
        # a random number of new results, not a random delay: a fast machine finishes 1,600 in seconds
        target, deadline = (seen[-1] if seen else 0) + rng.randint(1, 300), time.monotonic() + 60
        while time.monotonic() < deadline and query(db, "SELECT count(*) FROM result")[0][0] < target:
            time.sleep(0.01)
        os.killpg(p.pid, signal.SIGKILL)  # the runner and its workers: a power cut
        p.wait()
        seen.append(len(results(db)))
        intact(db)
    assert 0 < seen[0] and seen == sorted(seen)
    assert seen[-1] < len(reference), "the runs finished before the last kill: nothing was tested"
    p = start_run(db, "--workers", "2")
    assert p.wait(timeout=300) == 0, stderr_of(p)
    assert query(db, "SELECT count(*), count(DISTINCT site_id) FROM result") == [(1600, 1600)]
    assert query(db, "SELECT count(*) FROM site WHERE status != 'done'") == [(0,)]
    assert results(db) == reference


@pytest.mark.slow  # over 30 s in the default run (docs/TESTING.md); CI runs it in make test-slow
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_orphaned_workers_stop_when_the_runner_is_killed(new_store, engine_config, reference):
    db = new_store("o")
    plan(db, engine_config)
    p = start_run(db, "--workers", "2")
    deadline = time.monotonic() + 300
    while len(results(db)) == 0:
        assert p.poll() is None, f"the run ended before its first result: {stderr_of(p)}"
        assert time.monotonic() < deadline, "no result within 300 s of starting the run"
        time.sleep(0.2)
    p.kill()  # only the runner; its workers notice and stop claiming
    p.wait()
    settled, deadline = len(results(db)), time.monotonic() + 120
    while True:  # until nothing more is written for 3 s
        assert time.monotonic() < deadline, "the orphaned workers still wrote results 120 s after their runner died"
        time.sleep(3)
        now = len(results(db))
        if now == settled:
            break
        settled = now
    assert settled < 1600, "the orphaned workers finished the campaign: they did not stop claiming"
    assert start_run(db).wait(timeout=300) == 0
    assert results(db) == reference


@pytest.mark.slow  # both backends; the default run keeps tests/test_store.py's 16 claiming processes
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_two_concurrent_runners_never_run_a_site_twice(new_store, engine_config, reference):
    db = new_store("c")
    plan(db, engine_config)
    a, b = start_run(db, "--workers", "1"), start_run(db, "--workers", "1")
    assert a.wait(timeout=300) == 0 and b.wait(timeout=300) == 0
    assert query(db, "SELECT count(*), count(DISTINCT site_id) FROM result") == [(1600, 1600)]
    assert results(db) == reference
    log = log_path(Store.open(db)).read_text().splitlines()
    workers = {line.split('"worker": "')[1].split('"')[0] for line in log}
    assert len(workers) == 2  # both really worked
    assert {w.owner for w in Store.open(db).workers() if w.done} == workers


@pytest.mark.slow  # over 30 s in the default run (docs/TESTING.md); CI runs it in make test-slow
def test_a_full_store_gives_a_clear_error_and_still_opens(tmp_path, engine_config):
    from sqlalchemy import event

    db = tmp_path / "f.db"
    plan(db, engine_config)
    runner.run(Store.open(db), model="baseline", mode="single_bit")
    before = results(db)
    store = Store.open(db)

    @event.listens_for(store.engine, "connect")
    def full(dbapi_conn, _):  # SQLite's own SQLITE_FULL, as on a full disk
        pages = dbapi_conn.execute("PRAGMA page_count").fetchone()[0]
        dbapi_conn.execute(f"PRAGMA max_page_count = {pages}")

    store.engine.dispose()
    with pytest.raises(StoreError, match="full"):
        runner.run(store, model="hardened")
    after = Store.open(db)
    assert results(db)[: len(before)] == before
    with sqlite3.connect(db) as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert CliRunner().invoke(main, ["--db", str(db), "run", "--workers", "1"]).exit_code == 0
    assert len(results(db)) == 1600 and after.progress()


@pytest.mark.skipif(os.geteuid() == 0 and shutil.which("setpriv") is None, reason="needs a non-root user")
def test_a_read_only_store_gives_a_clear_error(engine_config, checkpoints):
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="fi-ro-"))  # outside pytest's private (0700) folders
    os.chmod(folder, 0o755)
    raw = yaml.safe_load(engine_config.read_text())
    for name, path in checkpoints.items():
        shutil.copy(path, folder / path.name)
        raw["models"][name] = str(folder / path.name)
    config = folder / "ro.yaml"
    config.write_text(yaml.safe_dump(raw))
    db = folder / "r.db"
    plan(db, config)
    for f in folder.iterdir():
        os.chmod(f, 0o444)
    cmd = [EXE, "--db", str(db), "run", "--workers", "1"]
    if os.geteuid() == 0:  # root ignores file modes: run as nobody
        cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"] + cmd
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert p.returncode == 2, p.stderr
    assert "Traceback" not in p.stderr and p.stderr.startswith("Error: ")
    assert f"cannot write to {db}: its folder {folder} is not writable" in p.stderr
    assert "nothing was written" in p.stderr and len(p.stderr.strip().splitlines()) == 1
    assert not [f for f in folder.iterdir() if f.name.endswith(("-wal", "-shm", "-journal"))]
    assert Store.open(db).progress()
    shutil.rmtree(folder)


def test_until_ci_stops_a_stratum_once_the_interval_is_narrow(tmp_path, checkpoints):
    from fi_campaign.classify import COUNTED, CRITICAL_SDC
    from fi_campaign.stats import proportion

    config = tmp_path / "ci.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "name": "ci",
                "seed": 2,
                "injections": 3000,
                "batch_size": 64,
                "modes": ["single_bit"],
                "models": {"baseline": str(checkpoints["baseline"])},
                "images": {"source": "bundled", "count": 64},
            }
        )
    )
    db = tmp_path / "ci.db"
    plan(db, config)
    r = CliRunner().invoke(main, ["--db", str(db), "run", "--workers", "1", "--until-ci", "0.02"])
    assert r.exit_code == 0, r.output
    counts = Store.open(db).stratum_counts("baseline", "single_bit")
    n = sum(counts.get(o, 0) for o in COUNTED)
    assert n < 3000
    assert proportion(counts.get(CRITICAL_SDC, 0), n).half_width <= 0.02


def test_plan_margin_sizes_the_campaign_and_prints_its_numbers(tmp_path, engine_config):
    from fi_campaign.stats import sample_size

    db = tmp_path / "m.db"
    r = CliRunner().invoke(
        main, ["--db", str(db), "plan", str(engine_config), "--margin", "0.05", "--confidence", "0.99"]
    )
    assert r.exit_code == 0, r.output
    n = sample_size(float("inf"), 0.05, 0.99)  # warp_random's population is a continuous value
    assert n == 664
    assert "Leveugle" in r.output and "e = 0.05" in r.output and "t = 2.5758" in r.output
    assert f"warp_random: N = inf fault sites -> n = {n}" in r.output
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT count(*) FROM site").fetchone()[0] == 4 * n
    r = CliRunner().invoke(
        main, ["--db", str(tmp_path / "x.db"), "plan", str(engine_config), "--margin", "0.05", "--injections", "9"]
    )
    assert r.exit_code == 2 and "either --injections or --margin" in r.output


def test_status_and_log_describe_a_store_without_running(new_store, engine_config):
    db = new_store("s")
    plan(db, engine_config, "--injections", "10")
    runner.run(Store.open(db), model="baseline")
    r = CliRunner().invoke(main, ["--db", str(db), "status"], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    rows = {tuple(line.split("│")[1:4]) for line in r.output.splitlines() if line.count("│") > 4}
    cells = {(a.strip(), b.strip(), c.strip()) for a, b, c in rows}
    assert ("baseline", "single_bit", "10/10") in cells and ("hardened", "warp_random", "0/10") in cells
    (worker,) = Store.open(db).workers()
    assert (worker.state, worker.done, worker.job) == ("finished", 20, None)
    assert worker.owner in r.output and "finished" in r.output
    lines = log_path(Store.open(db)).read_text().splitlines()
    assert len(lines) == 20
    import json

    entry = json.loads(lines[0])
    assert {"site", "model", "mode", "outcome", "runtime_s", "worker"} <= set(entry)


def test_a_window_is_recorded_in_few_transactions_and_a_stop_keeps_what_ran(tmp_path, engine_config, monkeypatch):
    """In-process results wait for one transaction (runner.RECORD_EVERY_S); when the worker is
    stopped mid-window (Ctrl-C), the chunks that already ran are recorded, not run again."""
    from fi_campaign.engine.executors.inprocess import InProcess

    db = tmp_path / "w.db"
    plan(db, engine_config, "--injections", "64")
    transactions: list[int] = []
    record, run_chunk = Store.record, InProcess.run

    def counted(self, results, owner=None):
        transactions.append(len(results))
        return record(self, results, owner)

    monkeypatch.setattr(Store, "record", counted)
    monkeypatch.setattr(runner, "RECORD_EVERY_S", 3600.0)
    runner.run(Store.open(db), mode="single_bit")
    planned = query(db, "SELECT count(*) FROM site WHERE mode = 'single_bit'")[0][0] // 2  # both models
    assert len(transactions) == 2 and transactions == [planned, planned], transactions  # one window each

    ran: list[int] = []

    def interrupted(self, sites, mode):
        if len(ran) == 3:
            raise KeyboardInterrupt
        ran.append(len(sites))
        return run_chunk(self, sites, mode)

    monkeypatch.setattr(InProcess, "run", interrupted)
    with pytest.raises(KeyboardInterrupt):
        runner.run(Store.open(db), mode="warp_random")
    stored = query(db, "SELECT count(*) FROM result JOIN site ON site.id = result.site_id WHERE mode = 'warp_random'")
    assert stored[0][0] == sum(ran) == 12  # three chunks of batch_size 4, recorded on the way out
    assert query(db, "SELECT count(*) FROM site WHERE status = 'running'")[0][0] == 0
    monkeypatch.setattr(InProcess, "run", run_chunk)
    runner.run(Store.open(db))
    assert query(db, "SELECT count(*) FROM result")[0][0] == query(db, "SELECT count(*) FROM site")[0][0]
