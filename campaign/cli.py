"""The fi-campaign command line: parses, calls and prints. Heavy imports live in the commands."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from campaign import __version__
from campaign.errors import UserError, mark_model_errors

if TYPE_CHECKING:
    from campaign.fit import RawFit
    from campaign.report import StoreReport

DEFAULT_DB = "fi-campaign.db"


class Cli(click.Group):
    """Turns a user-facing error into one sentence and exit code 2, never a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except Exception as e:  # noqa: BLE001 - only user-facing errors are caught below
            if getattr(e, "user_facing", False) or getattr(type(e), "user_facing", False):
                click.echo(f"Error: {e}", err=True)
                ctx.exit(2)
            raise


@click.group(cls=Cli, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="fi-campaign")
@click.option("--db", type=click.Path(dir_okay=False), default=None,
              help=f"Campaign store (SQLite). Default: the config's 'store', else ./{DEFAULT_DB}.")
@click.pass_context
def main(ctx: click.Context, db: str | None) -> None:
    """Fault-injection campaigns on baseline and hardened CIFAR ResNets.

    A campaign is planned, run and reported from one store (an SQLite file):

    \b
      fi-campaign plan                 # the embedded demo: 2 models x 2 modes
      fi-campaign run                  # every pending injection; Ctrl-C and rerun to resume
      fi-campaign report --avf         # Masked / SDC / DUE rates with 95% intervals

    Every planned injection site is stored before anything runs, and each result is
    committed with its site, so an interrupted run loses nothing and repeats nothing.
    """
    from campaign.heap import keep_freed_memory

    keep_freed_memory()
    ctx.obj = {"db": db}


def _db(ctx: click.Context) -> str:
    return ctx.obj["db"] or DEFAULT_DB


def _open(ctx: click.Context):
    from campaign.store import Store

    return Store.open(_db(ctx))


@main.command()
@click.argument("config", required=False, type=click.Path(dir_okay=False))
@click.option("--seed", type=click.IntRange(min=0), help="Override the config's seed.")
@click.option("--injections", type=click.IntRange(min=1), help="Override injections per model x mode.")
@click.option("--margin", type=click.FloatRange(min=0, min_open=True, max=0.5),
              help="Size the campaign for this error margin (e.g. 0.01) instead of 'injections'.")
@click.option("--confidence", type=click.FloatRange(min=0.5, max=0.9999), default=0.95, show_default=True,
              help="Confidence level of --margin.")
@click.option("--profile", "profiles", multiple=True, metavar="[MODEL=]FILE",
              help="backend nvbitfi: reuse an existing nvbitfi-igprofile.txt instead of profiling "
                   "(slow); MODEL=FILE per model, or FILE for every model. Repeatable.")
@click.pass_context
def plan(ctx: click.Context, config: str | None, seed: int | None, injections: int | None,
         margin: float | None, confidence: float, profiles: tuple[str, ...]) -> None:
    """Draw every injection site of CONFIG (default: the demo) and store it before anything runs.

    Sites are drawn per model x mode from the seed alone, so the same config and seed give
    the same sites on any machine. The store must be new: a plan never overwrites results.
    --margin E sizes every model x mode after Leveugle et al. (DATE 2009) and prints the
    numbers it used. With backend nvbitfi, sites are dynamic instructions drawn from the
    workload's NVBitFI profile, uniform over all kernel launches, as NVBitFI's scripts do.
    """
    from campaign import config as cfg
    from campaign.store import Store

    c = cfg.load(config).with_overrides(seed, injections)
    db = ctx.obj["db"] or c.store or DEFAULT_DB
    Store.check_new(db)  # before any slow work: the store is taken, or not a store at all
    mark_model_errors()
    from campaign.planner import plan as draw, size

    given = dict(p.split("=", 1) if "=" in p else ("*", p) for p in profiles)
    if margin is not None:
        if injections is not None:
            raise click.UsageError("give either --injections or --margin, not both.")
        from campaign.stats import z_value

        sized = size(c, margin, confidence, given)
        click.echo(f"Campaign size after Leveugle et al. (DATE 2009): n = N / (1 + e^2 (N - 1) / (t^2 p (1 - p))), "
                   f"e = {margin}, confidence {confidence} (t = {z_value(confidence):.4f}), p = 0.5")
        for z in sized:
            click.echo(f"  {z.model} {z.mode}: N = {z.population:.4g} fault sites -> n = {z.injections}")
        c = c.with_overrides(injections=max(z.injections for z in sized))
    from campaign.runner import runs_dir

    record, sites = draw(c, given, runs_dir(Path(db)))
    n = Store.create(db).write_plan(record, sites)
    click.echo(f"Planned {n} injections ({len(c.models)} models x {len(c.modes)} modes x {c.injections}) "
               f"with seed {c.seed} in {db}.")
    click.echo("Next: fi-campaign" + (f" --db {db}" if db != DEFAULT_DB else "") + " run")


@main.command()
@click.option("--model", help="Run only this model's sites.")
@click.option("--mode", help="Run only this mode's sites (single_bit or warp_random).")
@click.option("--isolation", type=click.Choice(["inprocess", "process"]),
              help="inprocess: many injections per forward pass (fast). process: one workload process per "
                   "injection, with timeouts and crash detection (the NVBitFI path). Default: the config's.")
@click.option("--keep-runs", is_flag=True, help="Keep the run directories of masked process runs too.")
@click.option("--workers", type=click.IntRange(min=1),
              help="Parallel workers; they claim sites atomically from the store, so several 'run' "
                   "commands on one store never run a site twice. Default: one per visible GPU "
                   "(times --per-gpu), else one per CPU core.")
@click.option("--per-gpu", type=click.IntRange(min=1), default=1, show_default=True,
              help="Workers sharing each GPU.")
@click.option("--until-ci", type=click.FloatRange(min=0, min_open=True, max=0.5),
              help="Stop a model x mode once the 95% interval half-width of its critical-SDC rate is at "
                   "most this fraction (e.g. 0.02), even if planned sites remain.")
@click.pass_context
def run(ctx: click.Context, model: str | None, mode: str | None, isolation: str | None, keep_runs: bool,
        workers: int | None, per_gpu: int, until_ci: float | None) -> None:
    """Execute the pending injections of the store, committing results as they come.

    Interrupt it at any time (Ctrl-C, or even kill -9); run it again to resume where it
    stopped: sites held by a dead worker go back to pending, none is run twice. Each
    injection is logged as a JSON line in STORE.log.jsonl; process runs keep the run
    directories of SDC and DUE injections in STORE.runs/.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from campaign import runner

    from campaign.config import Config

    store = _open(ctx)
    config = runner.check_selection(Config.from_json(store.campaign().config), model, mode)
    mark_model_errors()
    workers, devices = _workers(config, workers, per_gpu)
    bars: dict[tuple[str, str], int] = {}
    started: dict[tuple[str, str], tuple[float, int]] = {}
    import time

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[rate]}"), TimeRemainingColumn(), TextColumn("{task.fields[outcomes]}"),
                  transient=False) as bar:
        def show(p: runner.Progress) -> None:
            key = (p.model, p.mode)
            now = time.perf_counter()
            if key not in bars:
                bars[key] = bar.add_task(f"{p.model} {p.mode}", total=p.planned, rate="", outcomes="")
                started[key] = (now, p.done)
            t0, d0 = started[key]
            rate = (p.done - d0) / max(now - t0, 1e-9)
            bar.update(bars[key], completed=p.done, rate=f"{rate:,.0f} inj/s",
                       outcomes=" ".join(f"{k}={v}" for k, v in sorted(p.outcomes.items())))

        try:
            totals = runner.run(store, model, mode, show, isolation=isolation, keep_runs=keep_runs,
                                workers=workers, until_ci=until_ci, devices=devices)
        except KeyboardInterrupt:
            click.echo("Interrupted; every finished chunk is stored. Run again to resume.", err=True)
            sys.exit(130)
        except Exception:
            for task in list(bar.task_ids):  # leave the error alone on the screen
                bar.remove_task(task)
            raise
    if not totals:
        click.echo("Nothing to run: every selected site already has a result.")
    else:
        click.echo(f"Ran {sum(totals.values())} injections. Next: fi-campaign report --avf")


def _workers(config, workers: int | None, per_gpu: int) -> tuple[int, list[str] | None]:
    """(worker count, device per worker): GPUs round-robin, ``per_gpu`` workers each."""
    import os

    if config.device.startswith("cuda") or config.device == "auto":
        import torch

        n = torch.cuda.device_count()
        if n and config.device in ("cuda", "auto"):
            devices = [f"cuda:{i}" for i in range(n) for _ in range(per_gpu)]
            return workers or len(devices), devices
        if n:
            return workers or per_gpu, [config.device]
    return workers or os.cpu_count() or 1, None


@main.command()
@click.argument("stores", nargs=-1)
@click.option("--avf", is_flag=True, help="Print the AVF table (the default when no file is asked for).")
@click.option("--csv", "csv_path", metavar="FILE", help="Write the AVF table as CSV.")
@click.option("--json", "json_path", metavar="FILE",
              help="Write the whole report as JSON: identity, AVF, comparisons, per-layer breakdown, FIT, regret.")
@click.option("--html", "html_dir", metavar="DIR",
              help="Write DIR/index.html (figures embedded) and each figure as PNG and SVG beside it.")
@click.option("--fit-raw", metavar="X",
              help="Raw FIT rate (failures per 10^9 hours) of the exposed hardware: adds FIT = raw x AVF.")
@click.option("--fit-per", metavar="device|bit", help="What --fit-raw is per (default: device).")
@click.option("--bits", metavar="N", help="With --fit-per bit: how many bits the raw rate applies to.")
@click.pass_context
def report(ctx: click.Context, stores: tuple[str, ...], avf: bool, csv_path: str | None, json_path: str | None,
           html_dir: str | None, fit_raw: str | None, fit_per: str | None, bits: str | None) -> None:
    """AVF per model x mode: each outcome as k/n, rate and 95% interval, and the reference
    model's critical-SDC rate over each other model's, with its interval.

    STORES: one or more campaign stores to report side by side (default: --db or
    ./fi-campaign.db). n counts the injections that were applied (not_injected is kept out
    of it); rates use the Wilson interval, or the exact Clopper-Pearson one at k = 0 or
    k = n. --fit-raw X [--fit-per bit --bits N] rolls AVF up into FIT = raw device FIT x AVF
    (a per-bit rate is multiplied by N bits first). See docs/REPORTS.md.
    """
    from datetime import datetime, timezone

    from campaign import fit
    from campaign import report as rep
    from campaign.store import Store

    raw = fit.parse(fit_raw, fit_per, bits)
    if stores and ctx.obj["db"]:
        raise UserError("give the stores either as arguments or with --db, not both.")
    paths = [Path(s) for s in stores] or [Path(_db(ctx))]
    twice = [p for i, p in enumerate(paths) if p.resolve() in [q.resolve() for q in paths[:i]]]
    if twice:
        raise UserError(f"{twice[0]} is given twice; name each store once.")
    opened = [Store.open(p) for p in paths]  # every store is checked before anything is written
    for out, folder in ((csv_path, False), (json_path, False), (html_dir, True)):
        if out:
            rep.check_writable(Path(out), folder)
    reports = [rep.build(s, label) for s, label in zip(opened, rep.store_labels(paths))]
    generated = datetime.now(timezone.utc).isoformat(timespec="seconds")
    if csv_path:
        rep.write_avf_csv(reports, Path(csv_path))
        click.echo(f"Wrote {csv_path}")
    if json_path:
        rep.write_json(rep.to_json(reports, raw, generated), Path(json_path))
        click.echo(f"Wrote {json_path}")
    if html_dir:
        from campaign import html_report

        written = html_report.write(reports, Path(html_dir), raw, generated)
        click.echo(f"Wrote {written.page} and {len(written.files)} figure files beside it")
    if avf or not (csv_path or json_path or html_dir):
        for r in reports:
            _print_avf(r, len(reports) > 1)
    if raw:
        _print_fit(reports, raw)


def _print_avf(report: StoreReport, multi: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    ident = report.identity
    table = Table(title=(f"{ident.label}: " if multi else "")
                  + f"AVF of campaign '{ident.name}' (seed {ident.seed}), 95% intervals")
    for col in ("model", "mode", "outcome", "k/n", "rate", "95% CI"):
        table.add_column(col, justify="right" if col in ("k/n", "rate", "95% CI") else "left", no_wrap=True)
    last = None
    for r in report.avf:
        if last and (r.model, r.mode) != last:
            table.add_section()
        last = (r.model, r.mode)
        rate = "-" if r.n == 0 else f"{100 * r.rate:.2f}%"
        table.add_row(r.model, r.mode, r.outcome, f"{r.k}/{r.n}", rate,
                      f"[{100 * r.ci_low:.2f}, {100 * r.ci_high:.2f}]%")
    console.print(table)
    fm = ident.fault_model
    if any(r.mode == "warp_random" for r in report.avf):
        entries = ", ".join(f"{size}: x_min {x:.6g}, alpha {a:.6g}" for size, (x, a) in fm["entries"].items())
        origin = f"fitted, {fm['path']}" if fm.get("kind") == "fitted" else "built-in"
        console.print(f"warp_random fault model: {fm.get('name', fm['table'])} ({origin}) {fm['op']} ({entries}); "
                      f"{fm['semantics']}", markup=False)
    for s in report.strata:
        if s.nan:
            console.print(f"NaN/Inf in the outputs: {s.model} {s.mode}: {s.nan} injections", markup=False)
        if s.not_injected:
            console.print(f"Not injected (kept out of n): {s.model} {s.mode}: {s.not_injected} injections", markup=False)
    for c in report.comparisons:
        r = c.ratio
        if r.value != r.value:
            console.print(f"{c.mode}: critical-SDC ratio {c.reference}/{c.candidate} undefined (no critical SDC in either).")
            continue
        verdict = "significant" if r.significant else "not significant"
        note = " (0.5 added to each count: a zero count)" if r.corrected else ""
        console.print(f"{c.mode}: critical SDC {c.reference}/{c.candidate} = {r.value:.2f}x "
                      f"[95% CI {r.low:.2f}, {r.high:.2f}], {verdict}{note}")


def _print_fit(reports: list[StoreReport], raw: RawFit) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(f"FIT roll-up: {raw.describe()} (failures per 10^9 device-hours; interval = AVF interval x raw).",
                  markup=False)
    if not any(r.fit(raw) for r in reports):
        console.print("No injection has a result yet: nothing to roll up.")
        return
    table = Table(title="FIT per model x mode, 95% intervals")
    multi = len(reports) > 1
    for col in (("store",) if multi else ()) + ("model", "mode", "outcome", "AVF", "FIT", "95% CI"):
        table.add_column(col, justify="right" if col in ("AVF", "FIT", "95% CI") else "left", no_wrap=True)
    for r in reports:
        for f in r.fit(raw):
            table.add_row(*([r.identity.label] if multi else []), f.model, f.mode, f.outcome, f"{100 * f.avf:.2f}%",
                          f"{f.fit:.4g}", f"[{f.fit_low:.4g}, {f.fit_high:.4g}]")
    console.print(table)


@main.command()
@click.argument("file")
@click.pass_context
def export(ctx: click.Context, file: str) -> None:
    """Write one row per injection (its site, backend, layer, outcome and observations) to
    FILE: Parquet when FILE ends in .parquet or .pq, CSV otherwise. Streamed in batches, so
    a store of millions of results needs little memory."""
    from campaign.export import export as write

    n = write(_open(ctx), Path(file))
    click.echo(f"Wrote {n} rows to {file}")


from campaign.cli_faultmodel import fault_model  # noqa: E402
from campaign.cli_models import evaluate, train  # noqa: E402

main.add_command(train)
main.add_command(evaluate)
main.add_command(fault_model)


@main.command()
@click.option("--home", help="NVBitFI build to check (default: $NVBITFI_HOME).")
@click.option("--dialect", help="Injector dialect, if it cannot be read from the build: nvlabs, carol, pr2022.")
def doctor(home: str | None, dialect: str | None) -> None:
    """Check what a SASS-level (NVBitFI) campaign needs on this machine: the GPU, its compute
    capability, driver and CUDA versions, the NVBitFI build (profiler, injector, dialect) and
    whether the kernel log can be read for Xid errors. With a DUMMY injector build present it
    runs a dry campaign that must come back 100% masked. Exit code 2 when something is missing.
    """
    from campaign.doctor import diagnose

    ok = True
    for line in diagnose(home, dialect):
        click.echo(("  ok    " if line.ok else "  MISS  " if line.required else "  note  ") + line.text)
        ok &= line.ok or not line.required
    if not ok:
        click.echo("Something an NVBitFI campaign needs is missing; see the lines marked MISS.", err=True)
        sys.exit(2)
    click.echo("Ready for NVBitFI campaigns.")


@main.command()
@click.pass_context
def status(ctx: click.Context) -> None:
    """Progress of a store without running anything: done / planned per model x mode,
    sites held by workers, outcomes so far, the critical-SDC interval, rate and ETA."""
    from rich.console import Console
    from rich.table import Table

    from campaign.classify import COUNTED, CRITICAL_SDC
    from campaign.stats import proportion

    store = _open(ctx)
    table = Table(title=f"campaign '{store.campaign().name}' in {store.path}")
    for col in ("model", "mode", "done/planned", "running", "outcomes", "critical SDC [95% CI]", "inj/s", "ETA"):
        table.add_column(col, no_wrap=col in ("model", "mode", "done/planned"))
    for s in store.stratum_status():
        n = sum(s.outcomes.get(o, 0) for o in COUNTED)
        r = proportion(s.outcomes.get(CRITICAL_SDC, 0), n)
        crit = "-" if n == 0 else f"{100 * r.rate:.2f}% [{100 * r.low:.2f}, {100 * r.high:.2f}]"
        rate = s.done / s.span_s if s.span_s > 0 else None
        eta = "-" if not rate or s.done == s.planned else f"{(s.planned - s.done) / rate:,.0f} s"
        table.add_row(s.model, s.mode, f"{s.done}/{s.planned}", str(s.running),
                      " ".join(f"{k}={v}" for k, v in sorted(s.outcomes.items())), crit,
                      "-" if rate is None else f"{rate:,.1f}", eta)
    Console().print(table)

