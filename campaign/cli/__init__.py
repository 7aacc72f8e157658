"""The fi-campaign command line: parses, calls and prints. Heavy imports live in the commands."""

from __future__ import annotations

import sys

import click

from fi_campaign import __version__, limits
from fi_campaign.cli.common import DEFAULT_DB, db_of, next_step, open_store
from fi_campaign.cli.params import FilePath, FiniteFloat, PathText
from fi_campaign.errors import UserError


class Cli(click.Group):
    """Turns a user-facing error into one sentence and exit code 2, never a traceback."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except UserError as e:
            click.echo(f"Error: {e}", err=True)
            ctx.exit(2)


@click.group(cls=Cli, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="fi-campaign")
@click.option(
    "--db",
    metavar="PATH|URL",
    type=PathText(),
    default=None,
    help=f"Campaign store: an SQLite file, or a PostgreSQL URL (postgresql+psycopg://USER@HOST/DB) "
    f"for workers on many hosts. Default: the config's 'store', else ./{DEFAULT_DB}.",
)
@click.pass_context
def main(ctx: click.Context, db: str | None) -> None:
    """Fault-injection campaigns: the zoo's baseline and hardened CIFAR ResNets, your own
    PyTorch network, or your own CUDA program under NVBitFI.

    A campaign is planned, run and reported from one store (an SQLite file, or a PostgreSQL
    database for 'submit' to Slurm):

    \b
      fi-campaign plan                 # the embedded demo: 2 models x 2 modes
      fi-campaign run                  # every pending injection; Ctrl-C and rerun to resume
      fi-campaign report --avf         # Masked / SDC / DUE rates with 95% intervals

    Every planned injection site is stored before anything runs, and each result is
    committed with its site, so an interrupted run loses nothing and repeats nothing.
    """
    from fi_campaign.heap import keep_freed_memory

    keep_freed_memory()
    ctx.obj = {"db": db}


@main.command()
@click.argument("config", required=False, type=FilePath(dir_okay=False))
@click.option("--seed", type=click.IntRange(0, limits.MAX_SEED), help="Override the config's seed.")
@click.option(
    "--injections", type=click.IntRange(1, limits.MAX_INJECTIONS), help="Override injections per model x mode."
)
@click.option(
    "--margin",
    type=FiniteFloat(min=0, min_open=True, max=0.5),
    help="Size the campaign for this error margin (e.g. 0.01) instead of 'injections'.",
)
@click.option(
    "--confidence",
    type=FiniteFloat(min=0.5, max=0.9999),
    default=0.95,
    show_default=True,
    help="Confidence level of --margin.",
)
@click.option(
    "--profile",
    "profiles",
    multiple=True,
    metavar="[MODEL=]FILE",
    type=PathText(),
    help="backend nvbitfi: reuse an existing nvbitfi-igprofile.txt instead of profiling "
    "(slow); MODEL=FILE per model, or FILE for every model. Repeatable.",
)
@click.pass_context
def plan(
    ctx: click.Context,
    config: str | None,
    seed: int | None,
    injections: int | None,
    margin: float | None,
    confidence: float,
    profiles: tuple[str, ...],
) -> None:
    """Draw every injection site of CONFIG (default: the demo) and store it before anything runs.

    Sites are drawn per model x mode from the seed alone, so the same config and seed give
    the same sites on any machine. The store must be new: a plan never overwrites results.
    A plan is all or nothing: it is written beside the store and renamed onto it when whole,
    so an interrupted plan leaves the file as it was.
    --margin E sizes every model x mode after Leveugle et al. (DATE 2009) and prints the
    numbers it used. With backend nvbitfi, sites are dynamic instructions drawn from the
    workload's NVBitFI profile, uniform over all kernel launches, as NVBitFI's scripts do.
    """
    from fi_campaign import config as cfg
    from fi_campaign.store import Store

    c = cfg.load(config).with_overrides(seed, injections)
    db = ctx.obj["db"] or c.store or DEFAULT_DB
    Store.check_new(db)  # before any slow work: the store is taken, or not a store at all
    from fi_campaign.plan.planner import plan as draw
    from fi_campaign.plan.planner import size

    given = dict(_profile(p) for p in profiles)
    if margin is not None:
        if injections is not None:
            raise click.UsageError("give either --injections or --margin, not both.")
        from fi_campaign.stats import z_value

        sized = size(c, margin, confidence, given)
        click.echo(
            f"Campaign size after Leveugle et al. (DATE 2009): n = N / (1 + e^2 (N - 1) / (t^2 p (1 - p))), "
            f"e = {margin}, confidence {confidence} (t = {z_value(confidence):.4f}), p = 0.5"
        )
        for z in sized:
            click.echo(f"  {z.model} {z.mode}: N = {z.population:.4g} fault sites -> n = {z.injections}")
        c = c.with_overrides(injections=max(z.injections for z in sized))
    from fi_campaign.store import parse_target, runs_dir

    target = parse_target(db)
    record, sites = draw(c, given, runs_dir(target.anchor))
    n = Store.create_planned(target, record, sites)
    if c.sampling.stratified:
        strata = {(s["mode"], s["stratum"]) for s in sites}
        per_mode = ", ".join(
            f"{m} by {' x '.join(c.sampling.keys(m)) or 'nothing'} ({sum(x == m for x, _ in strata)} strata)"
            for m in c.modes
        )
        click.echo(
            f"Planned {n} sites with seed {c.seed} in {target.label}: stratified, {per_mode}; up to "
            f"{c.injections} injections per model x mode, {c.sampling.allocation} allocation after a pilot of "
            f"{c.sampling.pilot} per stratum, from {c.injections} sites drawn in each stratum."
        )
    else:
        click.echo(
            f"Planned {n} injections ({len(c.models)} models x {len(c.modes)} modes x {c.injections}) "
            f"with seed {c.seed} in {target.label}."
        )
    for name, info in record.models.items():
        if info.dtype != "float32":
            from fi_campaign.models.formats import width

            click.echo(f"models.{name} runs in {info.dtype}: single_bit flips one of its {width(info.dtype)} bits.")
        if info.targets is not None and info.targets.note:
            click.echo(f"Note: {info.targets.note}")
        out = info.profile.left_out if info.profile else None
        if out and out.launches:
            click.echo(
                f"{name}: left {out.launches} launches out of the draw ({out.why}, which the injector "
                f"cannot hold): {out.instructions} of the profile's {out.total} {out.group} "
                f"instructions ({out.instructions / out.total:.2%})."
            )
    click.echo(next_step(db, target.label, "run"))


def _profile(given: str) -> tuple[str, str]:
    """A --profile value as (model, file); "*" is every model."""
    model, is_named, file = given.partition("=")
    return (model, file) if is_named else ("*", given)


@main.command()
@click.option("--model", help="Run only this model's sites.")
@click.option(
    "--mode",
    help="Run only this mode's sites (single_bit, warp_random, weight_bit, weight_stuck_at, or warp_xor with "
    "the own NVBit tool).",
)
@click.option(
    "--isolation",
    type=click.Choice(["inprocess", "process"]),
    help="inprocess: many injections per forward pass (fast). process: one workload process per "
    "injection, with timeouts and crash detection (the NVBitFI path). Default: the config's.",
)
@click.option("--keep-runs", is_flag=True, help="Keep the run directories of masked process runs too.")
@click.option(
    "--workers",
    type=click.IntRange(1, limits.MAX_WORKERS),
    help="Parallel workers; they claim sites atomically from the store, so several 'run' "
    "commands on one store never run a site twice. Default: one per visible GPU "
    "(times --per-gpu), else one per CPU core; more than the cores or the memory "
    "hold are capped, with a note saying why.",
)
@click.option(
    "--per-gpu",
    type=click.IntRange(1, limits.MAX_WORKERS),
    default=1,
    show_default=True,
    help="Workers sharing each GPU.",
)
@click.option(
    "--until-ci",
    type=FiniteFloat(min=0, min_open=True, max=0.5),
    help="Stop a model x mode once the 95% interval half-width of its critical-SDC rate is at "
    "most this fraction (e.g. 0.02), even if planned sites remain.",
)
@click.option(
    "--slurm",
    is_flag=True,
    help="Do not run here: submit --workers workers as a Slurm array job with the config's slurm: "
    "section (as 'fi-campaign submit --tasks N'; a PostgreSQL store only).",
)
@click.option(
    "--array-task",
    is_flag=True,
    help="Run as one task of a Slurm array job started by a plain sbatch script (docs/CLUSTER.md): "
    "stay while other workers hold sites, stop claiming 90 s before the job's time limit and "
    "exit 3 if sites are left (requeue me), give back held sites on SIGTERM (exit 143).",
)
@click.pass_context
def run(
    ctx: click.Context,
    model: str | None,
    mode: str | None,
    isolation: str | None,
    keep_runs: bool,
    workers: int | None,
    per_gpu: int,
    until_ci: float | None,
    slurm: bool,
    array_task: bool,
) -> None:
    """Execute the pending injections of the store, committing results as they come.

    Interrupt it at any time (Ctrl-C, or even kill -9); run it again to resume where it
    stopped: sites held by a dead worker go back to pending, none is run twice. Each
    injection is logged as a JSON line in STORE.log.jsonl; process runs keep the run
    directories of SDC and DUE injections in STORE.runs/.

    Each model x mode shows done/planned, the rate of this run (from its first injection:
    model loading and golden runs are shown as such, not as 0 inj/s) and the ETA: a live
    bar on a terminal, a plain line every few seconds when the output is piped.
    """
    if slurm:
        from fi_campaign.cli.cluster import do_submit

        return do_submit(ctx, model, mode, isolation, None, {"tasks": workers})
    if array_task:
        from fi_campaign.cli.cluster import array_task as as_task

        sys.exit(as_task(ctx, model, mode, isolation))
    from rich.console import Console

    from fi_campaign.cli.progress import Display
    from fi_campaign.config import Config
    from fi_campaign.engine import capacity, runner

    store = open_store(ctx, write=True)
    config = runner.check_selection(Config.from_json(store.campaign().config), model, mode)
    workers, devices = capacity.requested_workers(config.device, workers, per_gpu)
    interrupted = False
    with Display(Console()) as display:
        try:
            totals = runner.run(
                store,
                model,
                mode,
                display,
                isolation=isolation,
                keep_runs=keep_runs,
                workers=workers,
                until_ci=until_ci,
                devices=devices,
                on_note=display.note,
            )
        except KeyboardInterrupt:
            interrupted = True
        except Exception:
            display.discard()  # leave the error alone on the screen
            raise
    if interrupted:  # after the live display has stopped, so it cannot draw over the line
        click.echo("Interrupted; every finished chunk is stored. Run again to resume.", err=True)
        sys.exit(130)
    if not totals:
        click.echo("Nothing to run: every selected site already has a result.")
    else:
        click.echo(f"Ran {sum(totals.values())} injections. " + next_step(db_of(ctx), store.label, "report --avf"))


@main.command()
@click.argument("stores", nargs=-1, type=PathText())
@click.option("--avf", is_flag=True, help="Print the AVF table (the default when no file is asked for).")
@click.option("--csv", "csv_path", metavar="FILE", type=PathText(), help="Write the AVF table as CSV.")
@click.option(
    "--json",
    "json_path",
    metavar="FILE",
    type=PathText(),
    help="Write the whole report as JSON: identity, AVF, comparisons, per-layer breakdown, FIT, regret.",
)
@click.option(
    "--html",
    "html_dir",
    metavar="DIR",
    type=PathText(),
    help="Write DIR/index.html (figures embedded) and each figure as PNG and SVG beside it.",
)
@click.option(
    "--fit-raw",
    metavar="X",
    help="Raw FIT rate (failures per 10^9 hours) of the exposed hardware: adds FIT = raw x AVF.",
)
@click.option("--fit-per", metavar="device|bit", help="What --fit-raw is per (default: device).")
@click.option("--bits", metavar="N", help="With --fit-per bit: how many bits the raw rate applies to.")
@click.option(
    "--critical-csv",
    "critical_csv",
    metavar="FILE",
    type=PathText(),
    help="Write what causes the critical SDCs as CSV: NaN/Inf versus finite per model x mode, "
    "the ratios with and without the NaN/Inf ones, and per flipped bit for single_bit and the weight modes.",
)
@click.option(
    "--reference",
    "reference",
    metavar="MODEL",
    help="Compare the other models with MODEL instead of the campaign's reference model.",
)
@click.option("--force", is_flag=True, help="Replace existing output files (never a store).")
@click.pass_context
def report(
    ctx: click.Context,
    stores: tuple[str, ...],
    avf: bool,
    csv_path: str | None,
    json_path: str | None,
    html_dir: str | None,
    fit_raw: str | None,
    fit_per: str | None,
    bits: str | None,
    critical_csv: str | None,
    reference: str | None,
    force: bool,
) -> None:
    """AVF per model x mode: each outcome as k/n, rate and 95% interval, and the reference
    model's critical-SDC rate over each other model's, with its interval.

    STORES: one or more campaign stores to report side by side (default: --db or
    ./fi-campaign.db). n counts the injections that were applied (not_injected is kept out
    of it); rates use the Wilson interval, or the exact Clopper-Pearson one at k = 0 or
    k = n. --fit-raw X [--fit-per bit --bits N] rolls AVF up into FIT = raw device FIT x AVF
    (a per-bit rate is multiplied by N bits first). See docs/REPORTS.md.

    An existing output file is replaced only with --force (--html: the files it writes into
    DIR; other files there are left alone); no output may name a store or a file beside one.
    """
    from fi_campaign.cli.tables import print_blocks
    from fi_campaign.report import fit
    from fi_campaign.report.produce import Files, produce
    from fi_campaign.report.terminal import report_text

    raw = fit.parse(fit_raw, fit_per, bits)
    if stores and ctx.obj["db"]:
        raise UserError("give the stores either as arguments or with --db, not both.")
    files = Files(csv=csv_path, json=json_path, html=html_dir, critical=critical_csv)
    reports = produce(
        list(stores) or [db_of(ctx)],
        files,
        raw,
        reference,
        force,
        say=lambda text, err: click.echo(text, err=err),
    )
    print_blocks(report_text(reports, avf or not files, raw))


@main.command()
@click.argument("file", type=PathText())
@click.option("--force", is_flag=True, help="Replace FILE if it exists (never a store).")
@click.pass_context
def export(ctx: click.Context, file: str, force: bool) -> None:
    """Write one row per injection (its site, backend, layer, outcome and observations) to
    FILE: Parquet when FILE ends in .parquet or .pq, CSV otherwise. Streamed in batches, so
    a store of millions of results needs little memory. FILE appears only when complete; an
    existing one is replaced only with --force, and a store never."""
    from fi_campaign.outputs import check
    from fi_campaign.report.export import export as write

    store = open_store(ctx)
    out = check(file, force, [store.path])
    n = write(store, out)
    click.echo(f"Wrote {n} rows to {file}", err=out.stream)  # a stream (stdout, a pipe) holds rows only


from fi_campaign.cli.cluster import store, submit  # noqa: E402
from fi_campaign.cli.faultmodel import fault_model  # noqa: E402
from fi_campaign.cli.injector import injector  # noqa: E402
from fi_campaign.cli.models import evaluate, train  # noqa: E402

main.add_command(train)
main.add_command(evaluate)
main.add_command(fault_model)
main.add_command(injector)
main.add_command(submit)
main.add_command(store)


@main.command()
@click.option("--home", type=PathText(), help="NVBitFI build to check (default: $NVBITFI_HOME).")
@click.option(
    "--dialect", help="Injector dialect, if it cannot be read from the build: nvlabs, carol, pr2022, fi-campaign."
)
@click.option(
    "--no-dry-run", is_flag=True, help="Only check the machine and the build; skip the 20-injection dry campaign."
)
def doctor(home: str | None, dialect: str | None, no_dry_run: bool) -> None:
    """Check what a SASS-level (NVBitFI) campaign needs on this machine: the GPU, its compute
    capability, driver and CUDA versions, the NVBitFI build (profiler, injector, dialect) and
    whether the kernel log can be read for Xid errors. With a DUMMY injector build present it
    runs a dry campaign that must come back 100% masked (--no-dry-run skips it). Exit code 2
    when something is missing.
    """
    from fi_campaign.doctor import diagnose, ready

    lines = diagnose(home, dialect, dry_run=not no_dry_run)
    for line in lines:
        click.echo(("  ok    " if line.ok else "  MISS  " if line.required else "  note  ") + line.text)
    if not ready(lines):
        click.echo("Something an NVBitFI campaign needs is missing; see the lines marked MISS.", err=True)
        sys.exit(2)
    click.echo("Ready for NVBitFI campaigns.")


@main.command()
@click.pass_context
def status(ctx: click.Context) -> None:
    """Progress of a store without running anything: done / planned per model x mode,
    sites held by workers, outcomes so far, the critical-SDC interval, rate and ETA.

    inj/s is the stratum's results over the time its injections ran, summed over every run
    that produced them (each chunk of results counts from its finish time back by its
    runtimes; pauses between runs, model loading and golden runs are left out). ETA is the
    remaining sites at that rate: injection time still needed, start-up not included. A
    worker's "inj/s since start" counts its whole life instead, from its start to its last
    heartbeat, model loading, golden runs and every model x mode it ran included, so it is
    lower than the rates of the strata it ran. Columns that do not fit the terminal are printed below
    the table, one line per row.
    """
    from fi_campaign.cli.tables import print_blocks
    from fi_campaign.report.status import campaign_status, status_text

    print_blocks(status_text(campaign_status(open_store(ctx))))
