"""Commands for campaigns that leave one machine: ``submit`` (workers as a Slurm array job) and
``store copy`` (a campaign between SQLite and PostgreSQL). See docs/CLUSTER.md."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import click

from fi_campaign.cli.common import open_store

if TYPE_CHECKING:
    from fi_campaign.config import Slurm

F = TypeVar("F", bound=Callable[..., object])

SLURM_OPTIONS = ("tasks", "partition", "account", "qos", "time", "gpus_per_task", "cpus_per_task", "parallelism")


def submit_options(f: F) -> F:
    for name, kind, text in reversed(
        (
            ("partition", str, "Slurm partition."),
            ("account", str, "Slurm account."),
            ("qos", str, "Slurm quality of service."),
            ("time", str, "Time limit of one run of a task: minutes or HH:MM:SS (a task is requeued until done)."),
            ("gpus-per-task", click.IntRange(min=0), "GPUs per array task (one worker each)."),
            ("cpus-per-task", click.IntRange(min=1), "CPUs per array task."),
            ("parallelism", click.IntRange(min=1), "Array tasks running at once (default: all)."),
        )
    ):
        f = click.option(f"--{name}", type=kind, default=None, help=text + " Default: the config's slurm: section.")(f)
    return f


def slurm_settings(stored: Slurm, given: Mapping[str, object]) -> Slurm:
    """The plan's ``slurm:`` section with the command line's options laid over it."""
    from fi_campaign.config import parse_slurm

    over = {k: v for k, v in given.items() if v is not None}
    if isinstance(time := over.get("time"), str) and time.isdigit():
        over["time"] = int(time)
    # the stored section was checked at plan time, so a problem is an option's: named as typed
    return parse_slurm(
        {**{k: getattr(stored, k) for k in SLURM_OPTIONS}, **over},
        "the submit options",
        spelt=lambda key: "--" + key.replace("_", "-"),
    )


def do_submit(
    ctx: click.Context,
    model: str | None,
    mode: str | None,
    isolation: str | None,
    folder: str | None,
    given: Mapping[str, object],
) -> None:
    from fi_campaign.config import Config
    from fi_campaign.engine import runner, slurm

    store = open_store(ctx)
    config = runner.check_selection(Config.from_json(store.campaign().config), model, mode)
    settings = slurm_settings(config.slurm, given)
    slurm.check_submit(store, model, mode)  # before the config's checkpoints are read
    out = Path(folder) if folder else store.path.with_name(store.path.name + ".slurm")
    done = slurm.submit(store, settings, out.resolve(), model, mode, isolation)
    click.echo(
        f"Submitted array job {done.job_id}: {done.tasks} workers ({slurm.describe(settings)}); logs in {done.folder}."
    )
    click.echo(f"Follow it with: fi-campaign --db {store.label} status")
    click.echo(done.job_id)


def array_task(ctx: click.Context, model: str | None, mode: str | None, isolation: str | None) -> int:
    """``run --array-task``: the worker of a plain sbatch array script; the exit code says what next."""
    from fi_campaign.engine import runner, slurm

    store = open_store(ctx, write=True)
    end = slurm.job_end()
    _, ended = slurm.task_loop(
        store.target.address,
        model,
        mode,
        isolation,
        runner.LEASE_S,
        None if end is None else end - slurm.SIGNAL_DELAY_S,
    )
    return {"done": 0, "stopped": slurm.REQUEUE_EXIT, "terminated": 143}[ended]


@click.command()
@click.option(
    "--tasks",
    "-n",
    type=click.IntRange(min=1),
    help="Workers (array tasks). Default: the config's slurm: section, else 4.",
)
@submit_options
@click.option("--model", help="Run only this model's sites.")
@click.option("--mode", help="Run only this mode's sites.")
@click.option("--isolation", type=click.Choice(["inprocess", "process"]), help="Override the config's isolation.")
@click.option("--folder", help="Where submitit keeps its files and the tasks' logs. Default: DBNAME.slurm here.")
@click.pass_context
def submit(
    ctx: click.Context,
    tasks: int | None,
    model: str | None,
    mode: str | None,
    isolation: str | None,
    folder: str | None,
    **options: object,
) -> None:
    """Submit workers for the pending sites of a PostgreSQL store as one Slurm array job, print
    its job id and return.

    Each array task runs the same worker loop as 'run' on the GPUs Slurm gave it; it stops
    claiming when its next chunk could not finish before its time limit and is requeued until
    the store has no pending site. SIGTERM (scancel, preemption) makes a task give back the sites
    it holds; a task that vanishes loses them when their lease runs out. 'status' shows every
    worker. An SQLite store is refused: copy it first with 'fi-campaign store copy'.
    """
    do_submit(ctx, model, mode, isolation, folder, {**options, "tasks": tasks})


@click.group()
def store() -> None:
    """Move a campaign between stores."""


@store.command("copy")
@click.argument("source")
@click.argument("destination")
def copy(source: str, destination: str) -> None:
    """Copy the whole campaign in SOURCE into a new store DESTINATION, verified row for row.

    Either may be an SQLite path or a PostgreSQL URL (postgresql+psycopg://USER@HOST/DB): plan on
    a laptop, copy to the cluster's database, run there, copy back, report anywhere. A
    destination that already holds a campaign is refused; sites a worker holds in SOURCE are
    pending in the copy.
    """
    from fi_campaign.store import Store, parse_target
    from fi_campaign.store.copy import copy as copy_store

    src = Store.open(source)
    done = copy_store(src, destination)
    counts = ", ".join(f"{n} {t}" for t, n in done.rows.items() if n)
    click.echo(
        f"Copied {src.label} to {parse_target(destination).label}: {counts}; every table verified "
        "(row count and digest)."
    )
    if done.released:
        click.echo(f"{done.released} sites held by workers in the source are pending in the copy.")
