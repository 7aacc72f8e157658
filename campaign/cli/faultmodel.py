"""``fi-campaign fault-model``: fit, inspect and choose the power-law models that drive warp_random.

pandas and matplotlib are imported inside the commands so ``fi-campaign --help`` stays quick.
"""
from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import TYPE_CHECKING

import click

from fi_campaign.cli.params import PathText
from fi_campaign.errors import UserError

if TYPE_CHECKING:
    from fi_campaign.outputs import Output

COLUMN = "relative_diff"
DEFAULT_BY = "micro,input_size"
PLOT_SUFFIXES = ("", ".png", ".svg", ".pdf")  # no suffix: matplotlib's default, PNG
MICRO_ORDER = ("FADD", "FMUL", "FFMA", "IADD", "IMUL", "IMAD", "FSIN", "FEXP")


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


def _read(csvs: tuple[str, ...], columns: list[str]):
    """The rows of every CSV, checked for the columns a fit or a comparison needs."""
    import pandas as pd

    frames = []
    for path in csvs:
        p = Path(path)
        if not p.is_file():
            raise UserError(f"CSV file {path} does not exist.")
        try:
            df = pd.read_csv(p, dtype=str, keep_default_na=False)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError):
            raise UserError(f"{path} is not a readable CSV file.") from None
        for col in [COLUMN, *columns]:
            if col not in df.columns:
                what = "relative-error" if col == COLUMN else "grouping"
                raise UserError(f"{path} has no {col} column for the {what} samples "
                                f"(its columns: {', '.join(map(str, df.columns)) or 'none'}).")
        df[COLUMN] = pd.to_numeric(df[COLUMN].str.strip(), errors="coerce")  # empty -> NaN -> dropped
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


def _order(col: str, value: str) -> tuple:
    """Groups in the injector table's order (op, then small/common/big), the rest by name."""
    from fi_campaign.models.powerlaw import SIZES

    known = {"micro": MICRO_ORDER, "input_size": SIZES}.get(col, ())
    return (known.index(value), "") if value in known else (len(known), value)


def _sources(csvs: tuple[str, ...], rows: list[int]) -> list[dict]:
    return [{"path": str(Path(p).resolve()), "sha256": hashlib.sha256(Path(p).read_bytes()).hexdigest(),
             "rows": n} for p, n in zip(csvs, rows)]


def _g(x: float) -> str:
    return f"{x:.8g}"


def _console():
    """A console wide enough for the tables even when piped (rich assumes 80 columns then)."""
    from rich.console import Console

    return Console(width=max(150, Console().width))


@fault_model.command()
@click.argument("csvs", nargs=-1, required=True, metavar="CSV...", type=PathText())
@click.option("--by", default=DEFAULT_BY, show_default=True,
              help="Comma-separated columns; one fit per group of rows sharing their values.")
@click.option("--out", type=PathText(), metavar="FILE", default="fault-model.yaml", show_default=True,
              help="Fault-model YAML to write.")
@click.option("--force", is_flag=True, help="Replace --out if it exists (never a store).")
@click.option("--name", help="The model's name, recorded by campaigns that use it. Default: the --out stem.")
@click.option("--ks", "ks_kind", type=click.Choice(["below", "sup"]), default="below", show_default=True,
              help="KS distance: at each sample with the empirical CDF counting the samples below it "
                   "(reproduces the published tables), or the exact two-sided supremum.")
@click.pass_context
def fit(ctx: click.Context, csvs: tuple[str, ...], by: str, out: str, force: bool, name: str | None,
        ks_kind: str) -> None:
    """Fit a power law per group of samples and write a fault-model YAML.

    x_min is chosen by the KS distance, alpha by maximum likelihood, from the relative_diff
    samples of each group of rows of CSV... (e.g. the DSN 2021 RTL raw_data_*.csv files).

    All CSVs are pooled before grouping, so fit one fault site (file) at a time to get the
    published tables' grouping. Empty, non-finite and non-positive samples are dropped and
    counted. A group with fewer than 2 distinct usable samples is reported and left out.
    """
    import pandas as pd
    import yaml
    from rich.table import Table

    from fi_campaign.outputs import check, write_text
    from fi_campaign.models import powerfit, powerlaw

    target = check(out, force, [_store(ctx)])
    cols = [c.strip() for c in by.split(",") if c.strip()]
    if len(set(cols)) != len(cols):
        raise UserError(f"--by {by} names a column twice.")
    counts, frames = [], []
    for path in csvs:
        frames.append(_read((path,), cols))
        counts.append(len(frames[-1]))
    data = pd.concat(frames, ignore_index=True)
    groups = data.groupby(cols, sort=False)[COLUMN] if cols else [((), data[COLUMN])]
    fits, skipped = [], []
    for key, samples in groups:
        key = key if isinstance(key, tuple) else (key,)
        group = dict(zip(cols, map(str, key)))
        try:
            f = powerfit.fit(samples.to_numpy(), ks=ks_kind)
            fits.append({"group": group, **f.to_dict()})
        except powerfit.FitError as e:
            skipped.append((group, str(e)))
    if not fits:
        raise UserError(f"no group of {', '.join(csvs)} has enough samples for a fit "
                        f"({skipped[0][1]} in {' '.join(skipped[0][0].values()) or 'the only group'}).")

    def order(group: dict) -> tuple:
        return tuple(_order(c, group[c]) for c in cols)

    fits.sort(key=lambda f: order(f["group"]))
    skipped.sort(key=lambda s: order(s[0]))
    name = name or Path(out).stem
    doc = powerlaw.table_document(name, cols, _sources(csvs, counts), fits, ks_kind)
    write_text(target, yaml.safe_dump(doc, sort_keys=False))
    table = Table(title=f"Power-law fits of {COLUMN} per {', '.join(cols) or 'file'} "
                        f"(KS '{ks_kind}'), model '{name}'")
    for c in [*cols, "entry", "n", "dropped", "x_min", "alpha ± σ", "n_tail", "KS"]:
        table.add_column(c, justify="left" if c in (*cols, "entry") else "right", no_wrap=True)
    for f, e in zip(fits, doc["entries"]):
        table.add_row(*f["group"].values(), f"{e['op']} {e['size']}", str(f["n"]), str(f["dropped"]),
                      _g(f["x_min"]), f"{_g(f['alpha'])} ± {f['sigma']:.2g}", str(f["n_tail"]), f"{f['ks']:.4f}")
    console = _console()
    console.print(table)
    for group, why in skipped:
        console.print(f"Skipped {' '.join(group.values())}: {why}.")
    example = next((e for e in doc["entries"] if e["op"] in powerlaw.OPS and e["size"] in powerlaw.SIZES), None)
    click.echo(f"Wrote fault model '{name}' ({len(fits)} entries) to {out}.")
    if example:
        click.echo(f"Use it in a campaign config: fault_model: {{table: {out}, op: {example['op']}, "
                   f"size: {example['size']}}}")


def _note(law) -> str:
    """A few words on an entry that cannot be drawn from or is nearly constant."""
    from fi_campaign.models.powerlaw import FLT_MAX

    if law.degenerate_reason():
        if not math.isfinite(law.x_min) or law.x_min >= FLT_MAX:
            return "[red]degenerate[/red]: x_min = FLT_MAX"
        return f"[red]degenerate[/red]: {'x_min' if law.x_min <= 0 else 'alpha'} = {law.x_min if law.x_min <= 0 else law.alpha:g}"
    if law.alpha < 100:
        return ""
    spread = math.expm1(math.log(2.0 ** 53) / (law.alpha - 1.0))  # largest draw / x_min - 1 at u = 1 - 2^-53
    return f"near-constant: r <= x_min (1 + {spread:.1g})" if spread < 0.05 else ""


@fault_model.command()
@click.argument("name", required=False, type=PathText())
@click.option("--data", "csvs", multiple=True, metavar="CSV", type=PathText(),
              help="Samples to compare each entry with (repeatable): refit, agreement and KS.")
@click.option("--plot", type=PathText(), metavar="FILE", help="Write a log-log CCDF plot of data vs model (PNG).")
@click.option("--force", is_flag=True, help="Replace the --plot file if it exists (never a store).")
@click.option("--op", "ops", multiple=True, help="Only this op (repeatable).")
@click.option("--size", "sizes", multiple=True, help="Only this size (repeatable).")
@click.pass_context
def show(ctx: click.Context, name: str | None, csvs: tuple[str, ...], plot: str | None, force: bool,
         ops: tuple[str, ...], sizes: tuple[str, ...]) -> None:
    """Show a fault model's entries, optionally against data and as a plot.

    NAME is a built-in table or a fitted fault-model YAML; without NAME, the built-in tables
    are shown. Degenerate entries, which warp_random refuses, are flagged.

    With --data, each entry is compared with the samples of its group: the entry's KS distance
    to them, a refit, and the largest relative difference between the entry and the refit.
    """
    from fi_campaign.models import powerlaw

    if csvs and not name:
        raise UserError("--data needs a NAME to compare with, e.g. fi-campaign fault-model show dsn2021-fu --data FILE.csv.")
    if plot and not csvs:
        raise UserError("--plot needs --data CSV: the plot shows the data against the model.")
    if plot and Path(plot).suffix.lower() not in PLOT_SUFFIXES:
        raise UserError(f"--plot {plot}: the plot is written as PNG, SVG or PDF, so name it .png, .svg or .pdf.")
    from fi_campaign.outputs import check

    target = check(plot, force, [_store(ctx)]) if plot else None
    console = _console()
    for table in ([name] if name else list(powerlaw.TABLES)):
        rows = _rows(table)
        rows = [r for r in rows if (not ops or r["op"] in ops) and (not sizes or r["size"] in sizes)]
        if not rows:
            raise UserError(f"{table} has no entry for op {'/'.join(ops) or 'any'} and size {'/'.join(sizes) or 'any'}.")
        data = _read(csvs, sorted({c for r in rows for c in r["group"]})) if csvs else None
        _print_table(console, table, rows, data)
        if target:
            _plot(rows, data, table, target)
            click.echo(f"Wrote {plot}")
    if not name:
        console.print("A fitted model is shown by its path: fi-campaign fault-model show FILE.yaml")


def _rows(table: str) -> list[dict]:
    """One dict per entry: op, size, law, group of data it stands for, and fit statistics."""
    from fi_campaign.models import powerlaw

    if table in powerlaw.TABLES:
        return [{"op": op, "size": size, "law": powerlaw.entry(table, op, size), "stats": None,
                 "group": {"micro": powerlaw.DATA_MICRO.get(op, op), "input_size": size}}
                for op in powerlaw.OPS for size in powerlaw.SIZES]
    try:
        t = powerlaw.read_table(table)
    except powerlaw.TableError as e:
        raise UserError(f"{e}.") from None
    return [{"op": e.op, "size": e.size, "law": e.law, "group": e.group, "ks_kind": t.ks, "table": t,
             "stats": {"n_tail": e.n_tail, "n": e.n, "ks": e.ks}} for e in t.entries]


def _group_samples(data, group: dict):
    mask = None
    for col, value in group.items():
        m = data[col].astype(str) == value
        mask = m if mask is None else mask & m
    return data[COLUMN].to_numpy() if mask is None else data.loc[mask, COLUMN].to_numpy()


def _print_table(console, table: str, rows: list[dict], data) -> None:
    from rich.table import Table

    from fi_campaign.models import powerfit, powerlaw

    fitted = rows[0].get("table")
    title = (f"Fault model '{fitted.name}' ({fitted.path}), fitted per {', '.join(fitted.by) or 'file'}" if fitted
             else f"Built-in table {table} ({powerlaw.SOURCE})")
    out = Table(title=title)
    cols = ["op", "size", "x_min", "alpha"]
    if fitted:
        cols += ["n_tail/n", "KS"]
    if data is not None:
        cols += ["KS on data", "refit x_min", "refit alpha"] + ([] if fitted else ["refit tail/n"]) + ["rel. diff"]
    for c in [*cols, "note"]:
        out.add_column(c, justify="left" if c in ("op", "size", "note") else "right", no_wrap=c != "note")
    for r in rows:
        law = r["law"]
        cells = [r["op"], r["size"], _g(law.x_min), _g(law.alpha)]
        if fitted:
            s = r["stats"]
            cells += [f"{s['n_tail']}/{s['n']}", f"{s['ks']:.4f}"]
        if data is not None:
            samples, _ = powerfit.clean(_group_samples(data, r["group"]))
            kind = r.get("ks_kind", "below")
            tail = samples[samples >= law.x_min] if law.degenerate_reason() is None else samples[:0]
            cells.append(f"{powerfit.ks_distance(tail, law.x_min, law.alpha, kind):.4f}" if tail.size else "-")
            try:
                f = powerfit.fit(samples, ks=kind)
                diff = max(abs(f.x_min - law.x_min) / law.x_min if law.x_min > 0 else math.inf,
                           abs(f.alpha - law.alpha) / law.alpha)
                cells += [_g(f.x_min), _g(f.alpha)] + ([] if fitted else [f"{f.n_tail}/{f.n}"]) + [f"{diff:.1e}"]
            except powerfit.FitError:
                cells += ["-", "-"] + ([] if fitted else [f"0/{samples.size}"]) + ["too few samples"]
        out.add_row(*cells, _note(law))
    console.print(out)
    for r in rows:
        if why := r["law"].degenerate_reason():
            console.print(f"{r['op']} {r['size']} is degenerate ({why}): warp_random refuses it.")


def _plot(rows: list[dict], data, table: str, out: Output) -> None:
    """Log-log complementary CDF of each entry's samples, with the entry's law over its tail."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from fi_campaign.outputs import replacing
    from fi_campaign.models import powerfit

    panels = [(r, powerfit.clean(_group_samples(data, r["group"]))[0]) for r in rows]
    panels = [(r, x) for r, x in panels if x.size]
    if not panels:
        raise UserError(f"the --data files have no usable {COLUMN} samples for the entries of {table}.")
    ncols = min(3, len(panels))
    nrows = -(-len(panels) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.2 * nrows), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for ax, (r, x) in zip(axes.flat, panels):
        law = r["law"]
        ccdf = (x.size - np.searchsorted(x, x, "left")) / x.size  # P(X >= x)
        ax.loglog(x, ccdf, ".", ms=2, color="0.35", label=f"data (n={x.size})")
        why = law.degenerate_reason()
        tail = int((x >= law.x_min).sum()) if why is None else 0
        if tail:
            grid = np.geomspace(law.x_min, max(x[-1], law.x_min * 1.0001), 200)
            ax.loglog(grid, tail / x.size * (grid / law.x_min) ** (1.0 - law.alpha), "-", color="tab:red",
                      label=f"x_min={law.x_min:.3g}, α={law.alpha:.4g}")
            ax.axvline(law.x_min, color="tab:red", lw=0.6, ls=":")
        ax.set_ylim(0.3 / x.size, 1.6)  # steep laws would otherwise stretch the axis to 1e-300
        ax.set_title(f"{r['op']} {r['size']}" + (" (degenerate)" if why else "")
                     + ("" if tail or why else " (no data ≥ x_min)"), fontsize=9)
        ax.set_xlabel(COLUMN, fontsize=8)
        ax.set_ylabel("P(X ≥ x)", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7, loc="lower left")
    fig.suptitle(f"{table}: complementary CDF of the data vs the power law above x_min", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.4 / (3.2 * nrows)))  # 0.4 in for the title
    try:
        with replacing(out) as temp:
            fig.savefig(temp, dpi=110, format=out.path.suffix[1:].lower() or "png")  # not the temporary name's
    finally:
        plt.close(fig)
