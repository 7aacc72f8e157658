"""Workers as one Slurm array job, through submitit: ``fi-campaign submit``.

Each array task runs the same worker loop as ``run`` on the GPUs Slurm gave it, against a
PostgreSQL store. Slurm sends USR2 ``SIGNAL_DELAY_S`` before a task's time limit; a task stops
claiming when its next chunk could not finish by then, and submitit's handler asks
``ArrayTask.checkpoint`` whether to requeue it: yes while the store has unfinished sites. SIGTERM
(scancel, preemption) makes the task give back the sites it holds; a task that is simply killed
loses its sites only until their lease runs out, when any other worker takes them back.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from fi_campaign.config import Slurm
from fi_campaign.errors import UserError
from fi_campaign.store import Store, StoreError

if TYPE_CHECKING:
    from types import FrameType

    from submitit.helpers import DelayedSubmission

SIGNAL_DELAY_S = 90  # USR2 comes this long before the time limit: time to finish a chunk and requeue
MAX_REQUEUES = 1000  # submitit counts requeues at the time limit; the store says when to stop
REQUEUE_EXIT = 3  # `run --array-task`: stopped at the time limit with sites left; the script requeues
LINGER_S = 30.0  # after SIGTERM, how long a task waits for a preemption's USR2 (and its requeue)


class Terminated(KeyboardInterrupt):
    """SIGTERM in a worker: unwinds the worker loop like Ctrl-C, which gives back its sites."""


def _terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated()


@dataclass(frozen=True)
class Submitted:
    job_id: str  # the array job's id; its tasks are JOBID_0 .. JOBID_{tasks-1}
    tasks: int
    folder: Path  # submitit's pickles and the tasks' logs


def check_submit(store: Store, model: str | None, mode: str | None) -> None:
    """The refusals of ``submit``, before anything is sent to Slurm."""
    if not store.target.server:
        raise UserError(
            f"{store.label} is an SQLite file, which workers on other hosts cannot share (SQLite's "
            "locking is unreliable on network filesystems); copy it to PostgreSQL with "
            "'fi-campaign store copy' and submit with --db postgresql+psycopg://USER@HOST/DB."
        )
    if shutil.which("sbatch") is None:
        raise UserError(
            "sbatch is not on the PATH: submit from a Slurm login node, or run the workers "
            "yourself with the sbatch script of docs/CLUSTER.md."
        )
    pending, running = store.unfinished(model, mode)
    if pending == 0:
        which = " of " + " ".join(x for x in (model, mode) if x) if model or mode else ""
        held = f" ({running} held by running workers)" if running else ""
        raise UserError(f"{store.label} has no pending site{which}{held}; there is nothing to submit.")


def submit(
    store: Store,
    slurm: Slurm,
    folder: Path,
    model: str | None = None,
    mode: str | None = None,
    isolation: str | None = None,
    lease_s: float | None = None,
) -> Submitted:
    """Submit ``slurm.tasks`` workers as one array job and return without waiting."""
    check_submit(store, model, mode)
    import submitit

    from fi_campaign.engine.runner import LEASE_S

    if slurm.time * 60 <= 2 * SIGNAL_DELAY_S:
        raise UserError(
            f"a time limit of {slurm.time} min leaves no time to work before Slurm's "
            f"{SIGNAL_DELAY_S} s warning; ask for at least {2 * SIGNAL_DELAY_S // 60 + 1} min."
        )
    folder.mkdir(parents=True, exist_ok=True)
    executor = submitit.SlurmExecutor(folder=folder, max_num_timeout=MAX_REQUEUES)
    params = {
        "time": slurm.time,
        "cpus_per_task": slurm.cpus_per_task,
        "signal_delay_s": SIGNAL_DELAY_S,
        "job_name": f"fi-{store.campaign().name}",
        "array_parallelism": slurm.parallelism or slurm.tasks,
    }
    params.update(
        {k: v for k, v in (("partition", slurm.partition), ("account", slurm.account), ("qos", slurm.qos)) if v}
    )
    if slurm.gpus_per_task:
        params["gpus_per_task"] = slurm.gpus_per_task
    executor.update_parameters(**params)
    task = ArrayTask(store.target.address, model, mode, isolation, slurm.time * 60, lease_s or LEASE_S)
    try:
        jobs = executor.map_array(task, list(range(slurm.tasks)))
    except Exception as e:  # noqa: BLE001 - sbatch's refusal (a partition, an account) is the user's to fix
        lines = [ln for ln in str(e).splitlines() if "error" in ln.lower()] or str(e).splitlines() or [type(e).__name__]
        raise UserError(f"Slurm refused the job: {lines[-1].strip()}") from None
    return Submitted(jobs[0].job_id.split("_")[0], len(jobs), folder)


def visible_gpus() -> list[str]:
    """The GPUs Slurm gave this task (it sets CUDA_VISIBLE_DEVICES), as torch devices."""
    ids = [x for x in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if x.strip()]
    return [f"cuda:{i}" for i in range(len(ids))]


def job_end() -> float | None:
    """When Slurm ends this job (epoch seconds), from squeue; None outside Slurm or if unknown."""
    import subprocess
    from datetime import datetime

    job = os.environ.get("SLURM_JOB_ID")
    if not job or shutil.which("squeue") is None:
        return None
    try:
        out = subprocess.run(["squeue", "-h", "-j", job, "-o", "%e"], capture_output=True, text=True, timeout=30)
        return datetime.fromisoformat(out.stdout.strip().splitlines()[0]).timestamp()  # local time, as Slurm prints
    except (OSError, ValueError, IndexError, subprocess.SubprocessError):
        return None


def task_loop(
    db: str, model: str | None, mode: str | None, isolation: str | None, lease_s: float, deadline: float | None
) -> tuple[dict[str, int], str]:
    """One array task's work: the worker loop of ``run`` on the GPUs Slurm gave it, staying while
    other workers hold sites, claiming nothing that could not finish by ``deadline``. Returns its
    outcome counts and how it ended: "done" (nothing left), "stopped" (time is up, sites are
    left: requeue it) or "terminated" (SIGTERM; its sites were given back)."""
    from fi_campaign.config import Config
    from fi_campaign.engine import runner

    signal.signal(signal.SIGTERM, _terminated)
    store = Store.open(db)
    config = Config.from_json(store.campaign().config)
    devices = visible_gpus() if config.device != "cpu" else []
    cpus = int(os.environ.get("SLURM_CPUS_PER_TASK", "0") or 0)
    base = runner.Job(
        "",
        lease_s=lease_s,
        deadline=deadline,
        wait=True,
        threads=max(1, cpus // max(1, len(devices))) if cpus else None,
    )
    print(f"fi-campaign worker on {os.uname().nodename}: {store.label}, devices {devices or ['cpu']}", flush=True)
    try:
        totals = runner.run(
            store, model, mode, isolation=isolation, workers=max(1, len(devices)), devices=devices or None, base=base
        )
    except Terminated:
        print("SIGTERM: gave back the sites this task held", flush=True)
        return {}, "terminated"
    pending, running = store.unfinished(model, mode)
    print(f"worker loop ended: {sum(totals.values())} results; store: {pending} pending, {running} running", flush=True)
    return totals, "stopped" if pending or running else "done"


@dataclass(frozen=True)
class ArrayTask:
    """One array task as submitit runs it: plain data, pickled by submitit and run on the node."""

    db: str
    model: str | None
    mode: str | None
    isolation: str | None
    time_s: float
    lease_s: float

    def __call__(self, index: int) -> dict[str, int]:
        started = time.time()
        end = job_end() or started + self.time_s
        totals, ended = task_loop(self.db, self.model, self.mode, self.isolation, self.lease_s, end - SIGNAL_DELAY_S)
        if ended == "terminated":
            _linger(time.time() + LINGER_S)  # a preemption's USR2 may follow: submitit requeues then
        elif ended == "stopped":
            _linger(end)  # the USR2 at the deadline asks checkpoint(), which requeues the task
        return totals

    def checkpoint(self, index: int) -> DelayedSubmission | None:
        """submitit's question at USR2: requeue this task? While the store has unfinished sites."""
        import submitit

        try:
            pending, running = Store.open(self.db).unfinished(self.model, self.mode)
        except StoreError:
            pending, running = 1, 0  # the database is away: requeue, the next run will see
        print(f"USR2: {pending} pending, {running} running: {'requeue' if pending or running else 'done'}", flush=True)
        return submitit.helpers.DelayedSubmission(self, index) if pending or running else None


def _linger(until: float) -> None:
    while time.time() < until:
        time.sleep(1.0)


def describe(slurm: Slurm) -> str:
    return ", ".join(f"{k} {v}" for k, v in asdict(slurm).items() if v not in (None, 0))
