"""Process-isolated injections: real workloads that fail, crash, hang and leave children behind."""

from __future__ import annotations

import signal
import sqlite3
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest
from click.testing import CliRunner

from fi_campaign.cli import main
from fi_campaign.engine import runner
from fi_campaign.errors import UserError
from fi_campaign.store import Store, runs_dir
from fi_campaign.workload import process


def script(tmp_path: Path, body: str) -> list[str]:
    path = tmp_path / f"w{abs(hash(body))}.py"
    path.write_text(textwrap.dedent(body))
    return [sys.executable, str(path)]


def signals_sent(monkeypatch) -> list[signal.Signals]:
    """The signals ``kill_group`` sends to a group, in order (each still sent for real)."""
    sent: list[signal.Signals] = []
    send = process._signal_group

    def recording(pgid: int, sig: int) -> bool:
        sent.append(signal.Signals(sig))
        return send(pgid, sig)

    monkeypatch.setattr(process, "_signal_group", recording)
    return sent


def assert_gone(pids: list[int], within_s: float = 30) -> None:
    """Every process of ``pids`` ends (or is a zombie) within ``within_s``; a kill is asynchronous."""
    deadline = time.monotonic() + within_s
    while alive := [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]:
        assert time.monotonic() < deadline, f"processes {alive} still running {within_s} s after their group was ended"
        time.sleep(0.05)


def test_normal_exit(tmp_path):
    ended = process.run(script(tmp_path, "print('ok')"), tmp_path / "r", 30)
    assert ended.due_reason() is None and ended.returncode == 0
    assert (tmp_path / "r" / "stdout.txt").read_text() == "ok\n"


def test_nonzero_exit_is_due(tmp_path):
    ended = process.run(script(tmp_path, "import sys; sys.exit(3)"), tmp_path / "r", 30)
    assert ended.due_reason() == "exit code 3"


def test_segfault_is_due(tmp_path):
    ended = process.run(script(tmp_path, "import ctypes; ctypes.string_at(0)"), tmp_path / "r", 30)
    assert ended.due_reason() == "signal SIGSEGV"


def test_cuda_error_text_is_due_even_with_exit_zero(tmp_path):
    body = "import sys; sys.stderr.write('RuntimeError: CUDA error: an illegal memory access was encountered\\n')"
    assert process.run(script(tmp_path, body), tmp_path / "r", 30).due_reason() == "CUDA error in stderr"


def test_hang_past_timeout_kills_the_whole_group(tmp_path, monkeypatch):
    """A workload that ignores SIGINT and SIGTERM, hangs, and has started children and a
    grandchild that ignore them too: only SIGKILL ends them, and it reaches every one."""
    pids = tmp_path / "pids"
    deaf = "import signal; [signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)]; "
    body = f"""
        import os, signal, subprocess, sys, time
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        kids = [subprocess.Popen([sys.executable, "-c", {deaf!r} + "import subprocess, sys, time; "
                 "subprocess.Popen([sys.executable, '-c', {deaf!r} + 'import time; time.sleep(300)']); "
                 "time.sleep(300)"])
                for _ in range(2)]
        time.sleep(1.0)
        import psutil
        me = psutil.Process()
        open({str(pids)!r}, "w").write(" ".join(str(p.pid) for p in me.children(recursive=True)))
        time.sleep(300)
    """
    sent = signals_sent(monkeypatch)
    ended = process.run(script(tmp_path, body), tmp_path / "r", timeout_s=8)  # time to start 5 interpreters
    assert ended.timed_out and ended.due_reason() == "timeout"
    # the group outlived SIGINT and SIGTERM and was killed, not waited for (it would sleep 300 s)
    assert sent == [signal.SIGINT, signal.SIGTERM, signal.SIGKILL]
    children = [int(p) for p in pids.read_text().split()]
    assert len(children) == 4
    assert_gone(children)


def test_a_hang_is_sent_sigint_first_and_what_its_handler_writes_is_kept(tmp_path, monkeypatch):
    """NVBitFI's injector writes its record from a SIGINT handler; SIGTERM would skip it."""
    body = """
        import signal, sys, time
        def record(sig, frame):
            open("record.txt", "w").write(signal.Signals(sig).name)
            sys.exit(255)
        signal.signal(signal.SIGINT, record)
        signal.signal(signal.SIGTERM, record)
        time.sleep(300)
    """
    sent = signals_sent(monkeypatch)
    ended = process.run(script(tmp_path, body), tmp_path / "r", timeout_s=4)  # the handler is in place by then
    assert ended.timed_out and ended.due_reason() == "timeout"
    assert (tmp_path / "r" / "record.txt").read_text() == "SIGINT"
    assert sent == [signal.SIGINT]  # the leader exited and was reaped: no SIGTERM to its zombie


def test_children_left_by_a_finished_workload_are_ended(tmp_path):
    pid_file = tmp_path / "pid"
    body = f"""
        import subprocess, sys
        p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
        open({str(pid_file)!r}, "w").write(str(p.pid))
    """
    assert process.run(script(tmp_path, body), tmp_path / "r", 30).due_reason() is None
    assert_gone([int(pid_file.read_text())])


@pytest.fixture
def small_config(tmp_path, checkpoints):
    import yaml

    path = tmp_path / "p.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "proc",
                "seed": 5,
                "injections": 3,
                "batch_size": 16,
                "golden_runs": 2,
                "models": {"baseline": str(checkpoints["baseline"])},
                "images": {"source": "bundled", "count": 12},
            }
        )
    )
    return path


def outcomes(db: Path) -> list[tuple]:
    with sqlite3.connect(db) as con:
        return con.execute(
            "SELECT site_id, outcome, images_changed, nan, max_abs_diff FROM result ORDER BY site_id"
        ).fetchall()


@pytest.mark.slow  # 13 s; the crash, hang and timeout tests stay in the default run
def test_process_isolated_and_in_process_agree(tmp_path, small_config):
    a, b = tmp_path / "a.db", tmp_path / "b.db"
    for db in (a, b):
        assert CliRunner().invoke(main, ["--db", str(db), "plan", str(small_config)]).exit_code == 0
    assert CliRunner().invoke(main, ["--db", str(a), "run"]).exit_code == 0
    result = CliRunner().invoke(main, ["--db", str(b), "run", "--isolation", "process"])
    assert result.exit_code == 0, result.output
    assert outcomes(a) == outcomes(b)
    with sqlite3.connect(b) as con:
        assert {r[0] for r in con.execute("SELECT isolation FROM result")} == {"process"}
        kept = con.execute("SELECT site_id, detail FROM result WHERE outcome != 'masked'").fetchall()
    runs = runs_dir(Store.open(b)) / "baseline"
    assert {p.name for p in runs.iterdir() if p.name.isdigit()} == {str(s) for s, _ in kept}


def test_workload_processes_start_with_fi_workload_python_when_it_is_set(monkeypatch):
    """The GPU check's C host (bench/gpucheck/pyhost.c) takes the interpreter's place this way."""
    from fi_campaign.workload import program

    monkeypatch.delenv("FI_WORKLOAD_PYTHON", raising=False)
    assert program.command(Path("root"))[0] == sys.executable
    monkeypatch.setenv("FI_WORKLOAD_PYTHON", "/opt/pyhost")
    assert program.command(Path("root"), Path("f.json"), out="x.npy") == [
        "/opt/pyhost",
        "-m",
        "fi_campaign.workload.program",
        "root",
        "f.json",
        "--out",
        "x.npy",
    ]


def _wrap_workload(monkeypatch, tmp_path, prelude: str) -> None:
    """Run the real workload behind a prelude that may crash or hang first, per site."""
    wrapper = tmp_path / "wrapper.py"
    wrapper.write_text(
        textwrap.dedent(prelude)
        + textwrap.dedent("""
        import runpy, sys
        sys.argv = ["fi_campaign.workload.program"] + sys.argv[1:]
        runpy.run_module("fi_campaign.workload.program", run_name="__main__")
    """)
    )
    from fi_campaign.workload import program

    real = program.command
    monkeypatch.setattr(program, "command", lambda *a, **k: [sys.executable, str(wrapper)] + real(*a, **k)[3:])


@pytest.mark.slow  # over 30 s in the default run (docs/TESTING.md); CI runs it in make test-slow
def test_crashing_and_hanging_injections_are_due_and_kept(tmp_path, small_config, monkeypatch):
    _wrap_workload(
        monkeypatch,
        tmp_path,
        """
        import ctypes, json, os, sys, time
        if len(sys.argv) > 2 and not sys.argv[2].startswith("--"):
            site = json.load(open(sys.argv[2]))
            if site["id"] % 3 == 1:
                ctypes.string_at(0)
            if site["id"] % 3 == 2:
                time.sleep(600)
    """,
    )
    db = tmp_path / "d.db"
    assert CliRunner().invoke(main, ["--db", str(db), "plan", str(small_config), "--injections", "2"]).exit_code == 0
    store = Store.open(db)
    runner.run(store, isolation="process")
    with sqlite3.connect(db) as con:
        rows = con.execute("SELECT site_id, outcome, detail FROM result ORDER BY site_id").fetchall()
    for site_id, outcome, detail in rows:
        if site_id % 3 == 1:
            assert (outcome, detail) == ("due", "signal SIGSEGV")
        elif site_id % 3 == 2:
            assert (outcome, detail) == ("due", "timeout")
        else:
            assert outcome != "due"
        if outcome == "due":
            assert (runs_dir(store) / "baseline" / str(site_id) / "stderr.txt").exists()


def test_non_deterministic_golden_runs_are_refused(tmp_path, small_config, monkeypatch):
    _wrap_workload(
        monkeypatch,
        tmp_path,
        """
        import sys, numpy as np
        out = sys.argv[sys.argv.index("--out") + 1]
        np.save(out, np.random.default_rng().random((12, 10)).astype(np.float32))
        sys.exit(0)
    """,
    )
    db = tmp_path / "n.db"
    assert CliRunner().invoke(main, ["--db", str(db), "plan", str(small_config)]).exit_code == 0
    with pytest.raises(UserError, match="disagree"):
        runner.run(Store.open(db), isolation="process")
    assert outcomes(db) == []
