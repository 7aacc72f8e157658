"""``fi-campaign fault-model``: fit, inspect and choose the power-law models that drive warp_random.

The work is in fi_campaign.report.faultmodel; pandas and matplotlib are imported there, inside
the functions, so ``fi-campaign --help`` stays quick.
"""

from __future__ import annotations

from pathlib import Path

import click

from fi_campaign.cli.params import PathText
from fi_campaign.errors import UserError

DEFAULT_BY = "micro,input_size"
PLOT_SUFFIXES = ("", ".png", ".svg", ".pdf")  # no suffix: matplotlib's default, PNG


@click.group("fault-model")
def fault_model() -> None:
    """Power-law relative-error models for warp_random: the built-in DSN 2021 tables, or your own.

    \b
      fi-campaign fault-model show                       # the built-in tables, degenerate entries flagged
      fi-campaign fault-model fit RAW.csv --out fu.yaml  # fit x_min, alpha per micro x input_size
      fi-campaign fault-model show fu.yaml --data RAW.csv --plot fu.png

    A campaign config names a model by table, op and size, e.g.
    fault_model: {table: fu.yaml, op: FFMA, size: common} (a path is read relative to the
    directory plan runs in; the campaign stores the parameters it used).
    """


def _store(ctx: click.Context) -> str | None:
    """The global --db, if given: an output path must never name it."""
    return (ctx.find_root().obj or {}).get("db")


@fault_model.command()
@click.argument("csvs", nargs=-1, required=True, metavar="CSV...", type=PathText())
@click.option(
    "--by",
    default=DEFAULT_BY,
    show_default=True,
    help="Comma-separated columns; one fit per group of rows sharing their values.",
)
@click.option(
    "--out",
    type=PathText(),
    metavar="FILE",
    default="fault-model.yaml",
    show_default=True,
    help="Fault-model YAML to write.",
)
@click.option("--force", is_flag=True, help="Replace --out if it exists (never a store).")
@click.option("--name", help="The model's name, recorded by campaigns that use it. Default: the --out stem.")
@click.option(
    "--ks",
    "ks_kind",
    type=click.Choice(["below", "sup"]),
    default="below",
    show_default=True,
    help="KS distance: at each sample with the empirical CDF counting the samples below it "
    "(reproduces the published tables), or the exact two-sided supremum.",
)
@click.pass_context
def fit(
    ctx: click.Context, csvs: tuple[str, ...], by: str, out: str, force: bool, name: str | None, ks_kind: str
) -> None:
    """Fit a power law per group of samples and write a fault-model YAML.

    x_min is chosen by the KS distance, alpha by maximum likelihood, from the relative_diff
    samples of each group of rows of CSV... (e.g. the DSN 2021 RTL raw_data_*.csv files).

    All CSVs are pooled before grouping, so fit one fault site (file) at a time to get the
    published tables' grouping. Empty, non-finite and non-positive samples are dropped and
    counted. A group with fewer than 2 distinct usable samples is reported and left out.
    """
    from fi_campaign.cli.tables import print_blocks
    from fi_campaign.outputs import check
    from fi_campaign.report.faultmodel import fit_model, fit_text, write_model

    target = check(out, force, [_store(ctx)])
    cols = [c.strip() for c in by.split(",") if c.strip()]
    if len(set(cols)) != len(cols):
        raise UserError(f"--by {by} names a column twice.")
    model = fit_model(list(csvs), cols, ks_kind, name or Path(out).stem)
    write_model(model, target)
    print_blocks(fit_text(model))
    click.echo(f"Wrote fault model '{model.name}' ({len(model.fits)} entries) to {out}.")
    if example := model.example:
        click.echo(
            f"Use it in a campaign config: fault_model: {{table: {out}, op: {example['op']}, size: {example['size']}}}"
        )


@fault_model.command()
@click.argument("name", required=False, type=PathText())
@click.option(
    "--data",
    "csvs",
    multiple=True,
    metavar="CSV",
    type=PathText(),
    help="Samples to compare each entry with (repeatable): refit, agreement and KS.",
)
@click.option("--plot", type=PathText(), metavar="FILE", help="Write a log-log CCDF plot of data vs model (PNG).")
@click.option("--force", is_flag=True, help="Replace the --plot file if it exists (never a store).")
@click.option("--op", "ops", multiple=True, help="Only this op (repeatable).")
@click.option("--size", "sizes", multiple=True, help="Only this size (repeatable).")
@click.pass_context
def show(
    ctx: click.Context,
    name: str | None,
    csvs: tuple[str, ...],
    plot: str | None,
    force: bool,
    ops: tuple[str, ...],
    sizes: tuple[str, ...],
) -> None:
    """Show a fault model's entries, optionally against data and as a plot.

    NAME is a built-in table or a fitted fault-model YAML; without NAME, the built-in tables
    are shown. Degenerate entries, which warp_random refuses, are flagged.

    With --data, each entry is compared with the samples of its group: the entry's KS distance
    to them, a refit, and the largest relative difference between the entry and the refit.
    """
    from fi_campaign.models import powerlaw

    if csvs and not name:
        raise UserError(
            "--data needs a NAME to compare with, e.g. fi-campaign fault-model show dsn2021-fu --data FILE.csv."
        )
    if plot and not csvs:
        raise UserError("--plot needs --data CSV: the plot shows the data against the model.")
    if plot and Path(plot).suffix.lower() not in PLOT_SUFFIXES:
        raise UserError(f"--plot {plot}: the plot is written as PNG, SVG or PDF, so name it .png, .svg or .pdf.")
    from fi_campaign.cli.tables import print_blocks
    from fi_campaign.outputs import check
    from fi_campaign.report.faultmodel import data_columns, entries, read_samples, show_text, write_plot

    target = check(plot, force, [_store(ctx)]) if plot else None
    for table in [name] if name else list(powerlaw.TABLES):
        found = entries(table, ops, sizes)
        data = read_samples(csvs, data_columns(found)) if csvs else None
        print_blocks(show_text(table, found, data))
        if target and data is not None:
            write_plot(found, data, table, target)
            click.echo(f"Wrote {plot}")
    if not name:
        click.echo("A fitted model is shown by its path: fi-campaign fault-model show FILE.yaml")
