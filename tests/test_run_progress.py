"""What `run` shows: count, rate and ETA per model x mode at 80 columns, on a terminal (a real
pseudo-terminal) and piped; what it is doing before the first injection; Ctrl-C with several
workers, whose "Interrupted" line must come after the live display has stopped."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import signal
import sqlite3
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from fi_campaign.cli import main
from fi_campaign.cli.progress import Line, Pace
from fi_campaign.engine import runner
from fi_campaign.store import Store

EXE = str(Path(sys.executable).with_name("fi-campaign"))
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
INTERRUPTED = "Interrupted; every finished chunk is stored. Run again to resume."


def planned(tmp_path: Path, checkpoints, injections: int, batch: int, modes=("single_bit", "warp_random")) -> Path:
    config = tmp_path / "p.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "name": "progress",
                "seed": 3,
                "injections": injections,
                "batch_size": batch,
                "modes": list(modes),
                "models": {k: str(v) for k, v in checkpoints.items()},
                "images": {"source": "bundled", "count": 16},
            }
        )
    )
    db = tmp_path / "p.db"
    r = CliRunner().invoke(main, ["--db", str(db), "plan", str(config)])
    assert r.exit_code == 0, r.output
    return db


def results(db: Path) -> tuple[int, int]:
    with sqlite3.connect(db) as con:
        return con.execute("SELECT count(*), count(DISTINCT site_id) FROM result").fetchone()


def env80() -> dict[str, str]:
    return {**os.environ, "COLUMNS": "80", "LINES": "24", "TERM": "xterm"}


def progress(done: int, phase: str = runner.INJECTING, outcomes: dict | None = None, planned: int = 1000):
    return runner.Progress(
        model="m", mode="single_bit", done=done, planned=planned, outcomes=outcomes or {}, phase=phase
    )


def test_pace_counts_from_the_first_injection_not_from_model_loading():
    pace = Pace()
    pace.see(progress(100, runner.PREPARING), now=0.0)
    assert Line.of(pace).info == "loading the model, computing golden outputs"
    pace.see(progress(100), now=12.0)  # golden outputs took 12 s
    assert Line.of(pace).info == "resuming"  # 100 done by an earlier run: not "0 inj/s", not "starting"
    pace.see(progress(300, outcomes={"masked": 200}), now=14.0)
    assert pace.rate() == pytest.approx(100.0)  # 200 in 2 s; neither the 12 s nor the earlier 100 count
    line = Line.of(pace)
    assert (line.count, line.info) == ("300/1000", "100 inj/s, ETA 0:00:07")
    fitted = line.fitted(80).plain
    assert len(fitted) < 80 and "300/1000" in fitted and "ETA 0:00:07" in fitted and "masked=200" in fitted
    narrow = Line("resnet20-cifar10-baseline-long warp_random", "300/1000", line.info, "masked=200", 0.3).fitted(60)
    assert "300/1000 100 inj/s, ETA 0:00:07" in narrow.plain  # no room for the bar: the count stays


def test_a_stratum_says_starting_only_at_zero_and_injecting_once_this_run_has_results():
    fresh = Pace()
    fresh.see(progress(0, runner.PREPARING), now=0.0)
    fresh.see(progress(0), now=5.0)
    assert Line.of(fresh).info == "starting"
    polled = Pace()  # several workers: the first report that shows injecting already has this run's results
    polled.see(progress(768, runner.WAITING), now=0.0)
    polled.see(progress(800), now=1.0)
    assert Line.of(polled).info == "injecting"


def test_plain_lines_never_repeat_and_a_new_count_waits_its_turn(monkeypatch):
    from rich.console import Console

    from fi_campaign.cli import progress as shown

    clock = [0.0]
    monkeypatch.setattr(shown.time, "monotonic", lambda: clock[0])
    console = Console(record=True, force_terminal=False, width=80)
    display = shown.Display(console)
    with console.capture() as out:
        for t, report in [
            (0, progress(768, runner.PREPARING)),
            (6, progress(768, runner.PREPARING)),  # still loading
            (13, progress(768, runner.PREPARING)),
            (14, progress(768)),
            (15, progress(800)),
            (17, progress(832)),
            (21, progress(900)),
            (22, progress(1000)),
            (30, progress(1000)),
        ]:
            clock[0] = float(t)
            display(report)
    assert out.get().splitlines() == [
        "m single_bit: 768/1000, loading the model, computing golden outputs",
        "m single_bit: 768/1000, resuming",  # the phase changed
        "m single_bit: 900/1000, 19 inj/s, ETA 0:00:05",  # 5 s after the last line: 800 and 832 were skipped
        "m single_bit: 1000/1000, done, 29 inj/s",
    ]  # once, though the poll goes on


def test_a_note_during_a_live_display_gets_a_line_of_its_own(capfd):
    """The runner's notes (a worker cap, a repaired log) arrive while the bars are drawn; the
    cursor then sits at the end of the last bar, so a note written past the display ran on from
    that bar's line (a CI run's 80-column check caught one)."""
    import io

    from rich.console import Console

    from fi_campaign.cli import progress as shown

    screen = io.StringIO()
    with shown.Display(Console(file=screen, force_terminal=True, width=80)) as display:
        display(progress(0, runner.PREPARING))
        assert display.live is not None
        display.live.refresh()
        display.note("2 workers, not 4: this machine has 2 cores.")
        display.live.refresh()
    frames = [ANSI.sub("", x) for x in re.split(r"[\r\n]+", screen.getvalue())]
    assert "Note: 2 workers, not 4: this machine has 2 cores." in frames
    bars = [x for x in frames if x.startswith("m single_bit ")]
    assert bars and all(x.endswith("loading the model, computing golden outputs") for x in bars), bars
    assert capfd.readouterr().err == ""  # nothing went past the display
    display.note("after the display")  # the bars are gone: stderr, as before
    assert capfd.readouterr().err == "Note: after the display\n"


def test_the_runner_reports_preparing_before_injecting(tmp_path, checkpoints):
    db = planned(tmp_path, checkpoints, 8, 8)
    seen: list[runner.Progress] = []
    runner.run(Store.open(db), model="baseline", on_progress=seen.append)
    assert [(p.mode, p.phase, p.done) for p in seen[:2]] == [
        ("single_bit", runner.PREPARING, 0),
        ("single_bit", runner.INJECTING, 0),
    ]
    assert seen[-1].phase == runner.INJECTING and (seen[-1].mode, seen[-1].done) == ("warp_random", 8)
    # several workers: the runner polls the store; nothing held or recorded yet means preparing
    store = Store.open(db)
    polled: list[runner.Progress] = []
    runner._poll(store, "hardened", None, polled.append, {k[:2]: k[2] for k in store.progress()})
    assert {p.phase for p in polled} == {runner.PREPARING}
    store.claim("hardened", "single_bit", 2, "test:1:0", 60)
    polled.clear()
    runner._poll(store, "hardened", None, polled.append, {k[:2]: k[2] for k in store.progress()})
    assert {p.mode: p.phase for p in polled} == {"single_bit": runner.INJECTING, "warp_random": runner.WAITING}


def test_piped_run_at_80_columns_prints_count_rate_and_done(tmp_path, checkpoints):
    db = planned(tmp_path, checkpoints, 24, 8)
    p = subprocess.run(
        [EXE, "--db", str(db), "run", "--model", "baseline", "--workers", "1"],
        capture_output=True,
        text=True,
        env=env80(),
        timeout=600,
    )
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    for mode in ("single_bit", "warp_random"):
        mine = [x for x in lines if x.startswith(f"baseline {mode}: ")]
        assert re.fullmatch(rf"baseline {mode}: 24/24, done, [\d,]+ inj/s, .*=\d+.*", mine[-1]), mine
        assert f"baseline {mode}: 0/24, starting" in mine
    assert lines[0] == "baseline single_bit: 0/24, loading the model, computing golden outputs"
    assert " 0 inj/s" not in p.stdout and lines[-1].startswith("Ran 48 injections.")


def read_pty(master: int, proc: subprocess.Popen, until, timeout: float) -> bytes:
    """Everything the process writes to its terminal, until ``until(out)`` or its exit."""
    out, deadline = b"", time.monotonic() + timeout
    while time.monotonic() < deadline:
        if select.select([master], [], [], 0.2)[0]:
            try:
                out += os.read(master, 65536)
            except OSError:  # the process closed the terminal
                return out
        elif proc.poll() is not None:
            return out
        if until(out):
            return out
    raise AssertionError(f"no end after {timeout} s: {out[-2000:]!r}")


def _ctrl_c_heard() -> None:
    """A suite started in the background (``cmd &``) ignores SIGINT, and so would the runner it starts."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.slow  # over 30 s in the default run (docs/TESTING.md); CI runs it in make test-slow
def test_ctrl_c_with_two_workers_on_an_80_column_terminal(tmp_path, checkpoints):
    n = 1000
    db = planned(tmp_path, {"baseline": checkpoints["baseline"]}, n, 16, ("single_bit",))
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    proc = subprocess.Popen(
        [EXE, "--db", str(db), "run", "--workers", "2"],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env80(),
        start_new_session=True,
        preexec_fn=_ctrl_c_heard,
    )
    os.close(slave)
    try:
        out = read_pty(master, proc, lambda _: results(db)[0] > 0, 300)
        proc.send_signal(signal.SIGINT)  # the runner only, as a user's Ctrl-C reaches it
        out += read_pty(master, proc, lambda _: False, 120)
        assert proc.wait(timeout=60) == 130
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        os.close(master)
    text = out.decode()
    stopped = text.rfind("\x1b[?25h")  # the live display shows the cursor again when it stops
    assert 0 <= stopped < text.find(INTERRUPTED), text[-1500:]
    assert "\x1b[2K" not in text[stopped:]  # and draws nothing after that
    frames = [ANSI.sub("", x) for x in re.split(r"[\r\n]+", text[:stopped])]
    bars = [x for x in frames if x.startswith("baseline single_bit ")]
    bad = [x for x in bars if len(x) > 80 or not re.search(rf" \d+/{n} ", x)]
    assert bars and not bad, (bad, text[:stopped][-3000:])
    assert any("loading the model, computing golden outputs" in x for x in bars)
    done = results(db)[0]
    assert 0 < done < n
    rerun = subprocess.run([EXE, "--db", str(db), "run", "--workers", "1"], capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    assert results(db) == (n, n)


USER_BUILD = """
import warnings

import torch


def net():
    print("building the user's net")
    warnings.warn("a user's warning")
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(4 * 30 * 30, 10)
    )
"""


@pytest.mark.filterwarnings("ignore:a user.s warning")  # the plan builds the net in this process
def test_what_workers_print_goes_above_the_live_bars(tmp_path):
    """A user's build function that prints and warns, in two spawned workers: each line comes out
    whole, on a line of its own, and no bar is run on into."""
    (tmp_path / "user.py").write_text(USER_BUILD)
    config = tmp_path / "p.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "name": "printing",
                "seed": 3,
                "injections": 32,
                "batch_size": 16,
                "modes": ["single_bit"],
                "models": {"net": {"build": f"{tmp_path / 'user.py'}:net"}},
                "images": {"source": "bundled", "count": 16},
            }
        )
    )
    db = tmp_path / "p.db"
    assert CliRunner().invoke(main, ["--db", str(db), "plan", str(config)]).exit_code == 0
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    proc = subprocess.Popen(
        [EXE, "--db", str(db), "run", "--workers", "2"], stdin=slave, stdout=slave, stderr=slave, env=env80()
    )
    os.close(slave)
    try:
        out = read_pty(master, proc, lambda _: False, 300)
        assert proc.wait(timeout=60) == 0, out.decode()[-2000:]
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    text = out.decode()
    frames = [ANSI.sub("", x) for x in re.split(r"[\r\n]+", text)]
    bars = [x for x in frames if x.startswith("net single_bit ")]
    bad = [x for x in bars if len(x) > 80 or not re.fullmatch(r"net single_bit .* \d+/32 .*", x)]
    assert bars and not bad, (bad, text[-3000:])
    assert frames.count("building the user's net") == 2, text[-3000:]  # once per worker
    assert sum(x.endswith("UserWarning: a user's warning") for x in frames) == 2, text[-3000:]
    assert results(db) == (32, 32)


def test_a_worker_that_dies_at_start_up_is_an_error_not_nothing_to_run(tmp_path, checkpoints):
    db = planned(tmp_path, {"baseline": checkpoints["baseline"]}, 64, 16, ("single_bit",))
    site = tmp_path / "site"
    site.mkdir()
    # only the spawned workers die, before they import anything of fi-campaign
    (site / "sitecustomize.py").write_text(
        "import os, sys\nif any('spawn_main' in a for a in sys.orig_argv):\n    os._exit(3)\n"
    )
    env = {**env80(), "PYTHONPATH": f"{site}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    r = subprocess.run([EXE, "--db", str(db), "run", "--workers", "2"], env=env, capture_output=True, text=True)
    assert r.returncode != 0
    assert "exited with status 3 before it finished" in r.stderr
    assert "Nothing to run" not in r.stdout + r.stderr
    assert results(db) == (0, 0)
    r = subprocess.run([EXE, "--db", str(db), "run", "--workers", "2"], env=env80(), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert results(db) == (64, 64)
