"""`status` rates across separate runs, and the terminal tables of status / evaluate / report at
80 columns: key cells (names, checkpoint paths, done/planned) whole, nothing cut."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from fi_campaign.cli import main
from fi_campaign.engine import runner
from fi_campaign.store import Store
from fi_campaign.store.timing import busy_seconds


def cli(*args: str, columns: int = 80) -> str:
    r = CliRunner().invoke(main, list(args), env={"COLUMNS": str(columns)})
    assert r.exit_code == 0, r.output
    return r.output


def config(tmp_path: Path, models: dict[str, Path], injections: int, batch: int, modes=("single_bit",)) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "status",
                "seed": 5,
                "injections": injections,
                "batch_size": batch,
                "modes": list(modes),
                "models": {k: str(v) for k, v in models.items()},
                "images": {"source": "bundled", "count": 20, "seed": 1},
            }
        )
    )
    return path


def status_rows(out: str) -> dict[tuple[str, str], list[str]]:
    """The rows of the per-stratum table (the first one; the workers' table follows it)."""
    rows = {}
    for line in out.splitlines():
        if line.startswith("└"):
            break
        cells = [c.strip() for c in line.split("│")[1:-1]]
        if len(cells) > 3 and cells[0] and cells[1]:
            rows[(cells[0], cells[1])] = cells
    return rows


def test_busy_time_leaves_out_pauses_and_reads_second_resolution_stores():
    # two runs of three 0.4 s chunks (50 ms of store work between them), 60 s apart
    run = [f"2024-05-01T10:00:0{s}+00:00" for s in ("0.400", "0.850", "1.300")]
    later = [f"2024-05-01T10:01:0{s}+00:00" for s in ("0.400", "0.850", "1.300")]
    assert busy_seconds([(t, 0.4) for t in run + later]) == pytest.approx(2 * 1.3, abs=1e-6)
    # a store written before millisecond finish times: chunks share whole seconds
    old = [("2024-05-01T10:00:01+00:00", 0.8), ("2024-05-01T10:00:02+00:00", 0.8), ("2024-05-01T10:05:00+00:00", 0.5)]
    assert busy_seconds(old) == pytest.approx(1.8 + 0.5, abs=1e-6)
    # two workers at once: their chunks overlap and count once
    assert busy_seconds(
        [
            ("2024-05-01T10:00:01.000+00:00", 1.0),
            ("2024-05-01T10:00:01.000+00:00", 1.0),
            ("2024-05-01T10:00:01.500+00:00", 1.5),
        ]
    ) == pytest.approx(1.5, abs=1e-6)
    assert busy_seconds([]) == 0.0


def test_status_rate_leaves_out_the_pause_between_two_runs(tmp_path, checkpoints, monkeypatch):
    from fi_campaign.engine.executors.inprocess import InProcess
    from fi_campaign.workload.model import Workload

    db = tmp_path / "s.db"
    cli("--db", str(db), "plan", str(config(tmp_path, {"baseline": checkpoints["baseline"]}, 128, 32)))
    # each faulty forward takes at least 0.2 s, so injecting outweighs store I/O on a slow disk
    forward = Workload.forward

    def slow_forward(self, rows, faults=None, resume=True):
        if faults is not None:
            time.sleep(0.2)
        return forward(self, rows, faults, resume)

    monkeypatch.setattr(Workload, "forward", slow_forward)
    monkeypatch.setattr(runner, "RECORD_EVERY_S", 0.0)  # each chunk recorded as it ends: one stop per chunk
    calls: list[list[tuple[float, float]]] = []  # per run: (start, end) of each chunk the executor ran
    recorded: list[list[float]] = []  # per run: when each chunk's results were in the store
    run_chunk, record = InProcess.run, Store.record

    def timed_run(self, sites, mode):
        t0 = time.monotonic()
        out = run_chunk(self, sites, mode)
        calls[-1].append((t0, time.monotonic()))
        return out

    def timed_record(self, results, owner):
        out = record(self, results, owner)
        recorded[-1].append(time.monotonic())
        return out

    monkeypatch.setattr(InProcess, "run", timed_run)
    monkeypatch.setattr(Store, "record", timed_record)

    def stop_at(n: int):
        def on_progress(p: runner.Progress) -> None:
            if p.phase == runner.INJECTING and p.done >= n:
                raise KeyboardInterrupt

        return on_progress

    def next_run() -> None:
        calls.append([])
        recorded.append([])

    next_run()
    with pytest.raises(KeyboardInterrupt):
        runner.run(Store.open(db), on_progress=stop_at(64))
    time.sleep(3.0)
    next_run()
    runner.run(Store.open(db))
    assert [len(c) for c in calls] == [2, 2]
    row = status_rows(cli("--db", str(db), "status", columns=200))[("baseline", "single_bit")]
    assert row[2] == "128/128" and len(row) == 8  # model mode done/planned running outcomes critical inj/s ETA
    rate = float(row[6].replace(",", ""))
    # no faster than the executor's own time, no slower than each run's first chunk start to last
    # record; the 3 s pause (with model loading and golden runs) lies outside both bounds
    running = sum(b - a for c in calls for a, b in c)
    spans = sum(r[-1] - c[0][0] for c, r in zip(calls, recorded, strict=False))
    assert 0.95 * 128 / spans <= rate <= 1.05 * 128 / running, (rate, 128 / spans, 128 / running)
    assert "pauses between runs" in " ".join(cli("status", "--help").split())


def test_status_and_report_keep_long_names_whole_at_80_columns(tmp_path, checkpoints):
    names = {
        "resnet20-cifar10-baseline-reference": checkpoints["baseline"],
        "resnet20-cifar10-hardened-candidate": checkpoints["hardened"],
    }
    db = tmp_path / "w.db"
    cli("--db", str(db), "plan", str(config(tmp_path, names, 12, 12, ("single_bit", "warp_random"))))
    runner.run(Store.open(db), model="resnet20-cifar10-baseline-reference", mode="single_bit")
    out = cli("--db", str(db), "status")
    assert "…" not in out
    assert max(len(line) for line in out.splitlines() if line[:1] in "┏┃┡│└") <= 80  # the table fits the terminal
    rows = status_rows(out)
    assert set(rows) == {(m, d) for m in names for d in ("single_bit", "warp_random")}
    assert rows[("resnet20-cifar10-baseline-reference", "single_bit")][2] == "12/12"
    assert rows[("resnet20-cifar10-hardened-candidate", "warp_random")][2] == "0/12"
    outcomes = [line for line in out.splitlines() if line.startswith("resnet20-cifar10-baseline-reference single_bit")]
    assert len(outcomes) == 1 and "outcomes " in outcomes[0] and "=" in outcomes[0]  # moved below, not lost
    report = cli("--db", str(db), "report")
    assert "…" not in report
    lines = [line for line in report.splitlines() if "resnet20-cifar10-baseline-reference" in line and "│" in line]
    assert len(lines) == 10 and all(" single_bit " in x or " warp_random " in x for x in lines)
    assert any("/12 " in x for x in lines)


def test_evaluate_keeps_a_long_checkpoint_path_whole_at_80_columns(tmp_path, checkpoints):
    folder = tmp_path / "a-folder-with-a-long-name" / "another-level-of-checkpoints"
    folder.mkdir(parents=True)
    ckpt = folder / "resnet20-cifar10-hardened-fault-aware.pt"
    shutil.copy(checkpoints["hardened"], ckpt)
    out = cli("evaluate", str(ckpt), "--images", "8", "--device", "cpu")
    assert len(str(ckpt)) > 80 and "…" not in out
    row = next(line for line in out.splitlines() if str(ckpt) in line)  # whole, on one line
    assert row.rstrip().rstrip("│").rstrip().endswith("%")  # with its clean accuracy beside it
    assert any(
        line.startswith(f"{ckpt} ") and "%: preset relu6, conv-act-bn" in line for line in out.splitlines()
    )  # the preset, moved below the table
