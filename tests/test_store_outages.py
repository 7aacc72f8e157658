"""A PostgreSQL server that restarts or stops while fi-campaign works on it (issue 24): a run
with two workers rides out two restarts and a 20 s stop and ends with the same results as an
SQLite run of the same plan, site for site; export, status and report whose server stops
half-way say one sentence, exit 2 and leave no output file. Real servers (tests/servers.py),
real fi-campaign processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from fi_campaign.engine import runner
from fi_campaign.store import Store
from tests.test_engine import plan, query, results

EXE = str(Path(sys.executable).with_name("fi-campaign"))
PAUSED = str(Path(__file__).with_name("paused_cli.py"))


def one_sentence(p: subprocess.Popen | subprocess.CompletedProcess, stderr: str) -> str:
    assert p.returncode == 2, stderr
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.strip().splitlines() if not line.startswith("Note: ")]
    assert len(lines) == 1 and lines[0].startswith("Error: "), stderr
    return lines[0]


def wait_for(what: str, done, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.fixture
def outage_config(tmp_path, checkpoints) -> Path:
    path = tmp_path / "outage.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "outage",
                "seed": 23,
                "injections": 300,
                "batch_size": 4,
                "models": {k: str(v) for k, v in checkpoints.items()},
                "images": {"source": "bundled", "count": 16},
            }
        )
    )
    return path


@pytest.mark.slow
def test_a_run_with_two_workers_rides_out_two_restarts_and_a_20_s_stop(postgres, tmp_path, outage_config, monkeypatch):
    reference = tmp_path / "ref.db"
    plan(reference, outage_config)
    runner.run(Store.open(reference), workers=2)
    expected = results(reference)
    assert len(expected) == 1200

    monkeypatch.chdir(tmp_path)
    db = postgres.create("outage")
    plan(db, outage_config)
    count = lambda: query(db, "SELECT count(*) FROM result")[0][0]  # noqa: E731
    p = subprocess.Popen(
        [EXE, "--db", db, "run", "--workers", "2"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert p.stderr is not None
    seen: list[int] = []
    try:
        for event in ("restart", "restart", "stop"):
            target = (seen[-1] if seen else 0) + 40  # results, not seconds: every event finds the run mid-way
            wait_for(f"{target} results", lambda target=target: count() >= target or p.poll() is not None)
            assert p.poll() is None, p.stderr.read()
            seen.append(count())
            if event == "restart":
                postgres.restart("fast")
            else:
                postgres.halt("fast")
                time.sleep(20)  # the outage itself, not a wait for something to happen
                postgres.resume()
        assert p.wait(timeout=600) == 0, p.stderr.read()
    finally:
        if p.poll() is None:
            p.kill()
    assert seen[-1] < len(expected), "the run finished before the stop: nothing was tested"
    assert "Traceback" not in p.stderr.read()
    assert query(db, "SELECT count(*), count(DISTINCT site_id) FROM result") == [(1200, 1200)]
    assert results(db) == expected
    workers = Store.open(db).workers()
    assert len(workers) == 2 and {w.state for w in workers} == {"finished"}, workers


def test_export_status_and_report_whose_server_stops_half_way_say_one_sentence(
    postgres, tmp_path, checkpoints, monkeypatch
):
    """Each command is held at a point half-way through its reads (tests/paused_cli.py), the
    server is stopped, and the command goes on: it waits for the server (3 s here, 60 s in
    use), then gives up in one sentence."""
    config = tmp_path / "c.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "name": "halfway",
                "seed": 3,
                "injections": 8,
                "batch_size": 8,
                "modes": ["single_bit"],
                "models": {"baseline": str(checkpoints["baseline"])},
                "images": {"source": "bundled", "count": 8},
            }
        )
    )
    monkeypatch.chdir(tmp_path)
    db = postgres.create("halfway")
    plan(db, config)
    runner.run(Store.open(db))
    commands = {  # where each is held: between export batches, before the workers table, mid-report
        "export": ("export_batches", ["export", "out.csv"]),
        "status": ("workers", ["status"]),
        "report": ("bit_groups", ["report", "--avf", "--csv", "avf.csv"]),
    }
    before = sorted(f.name for f in tmp_path.iterdir())
    procs = {}
    for name, (method, args) in commands.items():
        (tmp_path / name).mkdir()
        procs[name] = subprocess.Popen(
            [sys.executable, PAUSED, str(tmp_path / name), method, "3", "--", "--db", db, *args],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "COLUMNS": "200"},
        )
    try:
        for name in commands:
            wait_for(
                f"{name} to pause",
                lambda name=name: (tmp_path / name / "paused").exists() or procs[name].poll() is not None,
            )
            assert procs[name].poll() is None, procs[name].communicate()
        postgres.halt("fast")
        for name in commands:
            (tmp_path / name / "go").touch()
        for name, p in procs.items():
            out, err = p.communicate(timeout=300)
            said = one_sentence(p, err)
            assert "did not come back within 3 s" in said, (name, said)
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
        postgres.resume()
    after = sorted(f.name for f in tmp_path.iterdir() if f.name not in commands)
    assert after == before  # no output file, whole or partial, and no temporary file
    assert len(query(db, "SELECT site_id FROM result")) == 8
