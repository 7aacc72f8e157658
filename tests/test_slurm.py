"""Workers as a Slurm array job on the local single-node cluster (.ci/slurm-up.sh) against a real
PostgreSQL store: every site gets exactly one result, the same outcomes as a local run, even
when a task is cancelled or preempted mid-run. And the refusals of ``submit``."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml
from click.testing import CliRunner

from fi_campaign.cli import main
from fi_campaign.engine import runner
from fi_campaign.store import Store
from tests.servers import missing

EXE = str(Path(sys.executable).with_name("fi-campaign"))
SCRIPT = Path(__file__).resolve().parent.parent / "docs" / "fi-campaign.sbatch"


@pytest.fixture(scope="session")
def slurm():
    from tests.servers import Slurm

    try:
        cluster = Slurm.up()
    except (FileNotFoundError, subprocess.CalledProcessError, RuntimeError) as e:
        missing(f"no local Slurm cluster: {e}")
    yield cluster
    cluster.down()


def campaign(tmp_path: Path, checkpoints, injections: int, isolation: str = "process") -> Path:
    path = tmp_path / "slurm.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "slurm",
                "seed": 8,
                "injections": injections,
                "batch_size": 4,
                "isolation": isolation,
                "models": {"baseline": str(checkpoints["baseline"])},
                "modes": ["single_bit"],
                "images": {"source": "bundled", "count": 4, "seed": 1},
                "slurm": {"time": 30, "cpus_per_task": 1},
                # four tasks share two cores: no injection may time out (a DUE) only because the CPU is busy
                "timeout_factor": 50,
            }
        )
    )
    return path


def outcomes(target: str) -> list[tuple]:
    with Store.open(target).engine.connect() as con:
        return [
            (a, b, c, bool(d))
            for a, b, c, d in con.execute(
                sa.text("SELECT site_id, outcome, images_changed, nan FROM result ORDER BY site_id")
            )
        ]


def reference(tmp_path: Path, config: Path) -> list[tuple]:
    """The same campaign run here, on SQLite, in-process: its outcomes are process isolation's
    (tests/test_process.py checks that), at a fraction of the time."""
    db = tmp_path / "local.db"
    assert CliRunner().invoke(main, ["--db", str(db), "plan", str(config)]).exit_code == 0
    runner.run(Store.open(db), isolation="inprocess", workers=1)
    return outcomes(str(db))


def submit(target: str, tasks: int) -> str:
    p = subprocess.run(
        [EXE, "--db", target, "submit", "--tasks", str(tasks)], capture_output=True, text=True, timeout=120
    )
    assert p.returncode == 0, p.stderr
    return p.stdout.strip().splitlines()[-1]


def wait_for(what, timeout_s: float, step_s: float = 1.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = what()
        if got:
            return got
        time.sleep(step_s)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what.__doc__ or what}")


def squeue(job: str) -> list[str]:
    p = subprocess.run(["squeue", "-h", "-j", job, "-o", "%i %T"], capture_output=True, text=True)
    return p.stdout.split("\n") if p.stdout.strip() else []


def task_worker(store: Store, index: int):
    return next((w for w in store.workers() if w.array_index == index and w.state == "running" and w.done), None)


def check_exactly_once(target: str, planned: int) -> None:
    with Store.open(target).engine.connect() as con:
        assert con.execute(sa.text("SELECT count(*), count(DISTINCT site_id) FROM result")).one() == (planned, planned)
        assert con.execute(sa.text("SELECT count(*) FROM site WHERE status != 'done'")).scalar() == 0


def run_disturbed(tmp_path, checkpoints, postgres, injections: int, tasks: int, preempt: bool) -> None:
    config = campaign(tmp_path, checkpoints, injections)
    target = postgres.create("slurm")
    assert CliRunner().invoke(main, ["--db", target, "plan", str(config)]).exit_code == 0
    job = submit(target, tasks)
    store = Store.open(target)
    wait_for(lambda: task_worker(store, 1), 600)
    subprocess.run(["scancel", f"{job}_1"], check=True)  # SIGTERM, then SIGKILL after KillWait
    if preempt:
        victim = wait_for(lambda: task_worker(store, 2), 600)
        # submitit's preemption: SIGTERM (the task gives its sites back), then USR2 (checkpoint, requeue)
        subprocess.run(["scancel", "--signal=TERM", f"{job}_2"], check=True)
        time.sleep(3)
        subprocess.run(["scancel", "--signal=USR2", f"{job}_2"], check=True)
    wait_for(lambda: store.unfinished() == (0, 0), 3600, 3)
    wait_for(lambda: not squeue(job), 300)
    check_exactly_once(target, injections)
    workers = store.workers()
    assert any(w.array_index == 1 and w.state == "released" for w in workers)
    # stopped: a run of a task that reached its time limit with sites left, then requeued
    assert all(w.state in ("finished", "released", "stopped") for w in workers), [(w.owner, w.state) for w in workers]
    assert all(w.job == job for w in workers)
    if preempt:
        runs = [w for w in workers if w.array_index == 2]
        assert victim.owner in {w.owner for w in runs} and len(runs) >= 2  # it ran again after the requeue
    assert outcomes(target) == reference(tmp_path, config)


@pytest.mark.slow  # the default run keeps the plain sbatch campaign below
def test_an_array_job_with_a_cancelled_task_runs_every_site_once(tmp_path, checkpoints, postgres, slurm, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_disturbed(tmp_path, checkpoints, postgres, 12, 2, preempt=False)


@pytest.mark.long  # 24 min on 2 cores: 800 workload processes and Slurm's requeue delays
def test_800_process_injections_on_4_tasks_with_one_cancelled_and_one_preempted(
    tmp_path, checkpoints, postgres, slurm, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    run_disturbed(tmp_path, checkpoints, postgres, 800, 4, preempt=True)


def test_the_plain_sbatch_script_runs_a_campaign_without_submitit(tmp_path, checkpoints, postgres, slurm, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = campaign(tmp_path, checkpoints, 16, isolation="inprocess")
    target = postgres.create("sbatch")
    assert CliRunner().invoke(main, ["--db", target, "plan", str(config)]).exit_code == 0
    p = subprocess.run(
        ["sbatch", "--parsable", "--array=0-1", "--time=10", str(SCRIPT)],
        capture_output=True,
        text=True,
        env={**os.environ, "FI_DB": target, "FI_CAMPAIGN": EXE},
        check=True,
    )
    job = p.stdout.strip().split(";")[0]
    store = Store.open(target)
    wait_for(lambda: store.unfinished() == (0, 0), 900, 2)
    wait_for(lambda: not squeue(job), 300)
    check_exactly_once(target, 16)
    workers = store.workers()
    assert {w.array_index for w in workers} <= {0, 1} and {w.job for w in workers} == {job}
    assert {w.state for w in workers} == {"finished"}
    assert outcomes(target) == reference(tmp_path, config)
    assert SCRIPT.read_text() in (SCRIPT.parent / "CLUSTER.md").read_text()  # the page shows the script run here


def one_sentence(args: list[str], env: dict | None = None) -> str:
    p = subprocess.run([EXE, *args], capture_output=True, text=True, timeout=120, env=env)
    assert p.returncode == 2, (p.stdout, p.stderr)
    assert "Traceback" not in p.stderr and p.stderr.startswith("Error: ")
    assert len(p.stderr.strip().splitlines()) == 1, p.stderr
    return p.stderr


def test_submit_refusals_are_one_sentence_and_lose_nothing(tmp_path, tiny_config, postgres, monkeypatch):
    monkeypatch.chdir(tmp_path)
    db = tmp_path / "laptop.db"
    assert CliRunner().invoke(main, ["--db", str(db), "plan", str(tiny_config)]).exit_code == 0
    assert "SQLite file" in one_sentence(["--db", str(db), "submit"])
    assert "SQLite file" in one_sentence(["--db", str(db), "run", "--slurm", "--workers", "2"])
    target = postgres.create("refuse")
    assert CliRunner().invoke(main, ["store", "copy", str(db), target]).exit_code == 0
    bare = tmp_path / "bin"
    bare.mkdir()
    os.symlink(sys.executable, bare / "python")
    no_slurm = {**os.environ, "PATH": str(bare)}
    assert "sbatch is not on the PATH" in one_sentence(["--db", target, "submit"], no_slurm)
    for option, value in (("--time", "0"), ("--time", "1:2"), ("--tasks", "100000"), ("--cpus-per-task", "100000")):
        assert one_sentence(["--db", target, "submit", option, value]).startswith(f"Error: {option} ")
    if shutil.which("sbatch") is None:  # the refusals below come after the one for a missing sbatch
        assert Store.open(target).unfinished() == (160, 0) and Store.open(db).unfinished() == (160, 0)
        missing("sbatch is not on the PATH, so submit refuses before it reads the store (apt-get install slurm-wlm)")
    store = Store.open(target)
    everything = store.claim("baseline", "single_bit", 10_000, "h:1:0", 600)
    everything += store.claim("baseline", "warp_random", 10_000, "h:1:0", 600)
    everything += store.claim("hardened", "single_bit", 10_000, "h:1:0", 600)
    everything += store.claim("hardened", "warp_random", 10_000, "h:1:0", 600)
    assert "no pending site" in one_sentence(["--db", target, "submit"])
    assert "no pending site of hardened" in one_sentence(["--db", target, "submit", "--model", "hardened"])
    assert Store.open(target).unfinished() == (0, 160) and Store.open(db).unfinished() == (160, 0)


def test_a_task_stops_claiming_before_its_deadline_and_asks_to_be_requeued(tmp_path, tiny_config):
    from fi_campaign.engine.slurm import ArrayTask

    db = tmp_path / "d.db"
    assert CliRunner().invoke(main, ["--db", str(db), "plan", str(tiny_config), "--injections", "8"]).exit_code == 0
    store = Store.open(db)
    late = runner.Job(str(db), deadline=0.0, wait=True, slurm_job="77", array_index=3)
    assert runner.work(late, store) == {}
    (w,) = store.workers()
    assert (w.state, w.done, w.job, w.array_index) == ("stopped", 0, "77", 3)
    task = ArrayTask(str(db), None, None, None, 600, 60)
    requeue = task.checkpoint(3)
    assert requeue is not None and requeue.args == (3,)  # unfinished: requeue
    runner.work(runner.Job(str(db), deadline=float("inf"), wait=True), store)
    assert store.unfinished() == (0, 0) and task.checkpoint(3) is None  # done: no requeue
