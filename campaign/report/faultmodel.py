"""`fault-model fit` and `fault-model show`: power laws fitted per group of relative-error samples
and written as a fault-model YAML; a table's entries compared with samples (KS, refit) and drawn
against them as complementary CDFs.

pandas and matplotlib are imported inside the functions so ``fi-campaign --help`` stays quick.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from fi_campaign.errors import UserError
from fi_campaign.report.text import Block, Col, TextTable

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from fi_campaign.models.powerlaw import FittedTable, PowerLaw
    from fi_campaign.outputs import Output

COLUMN = "relative_diff"
MICRO_ORDER = ("FADD", "FMUL", "FFMA", "IADD", "IMUL", "IMAD", "FSIN", "FEXP")


def read_samples(csvs: list[str] | tuple[str, ...], columns: list[str]) -> pd.DataFrame:
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
                raise UserError(
                    f"{path} has no {col} column for the {what} samples "
                    f"(its columns: {', '.join(map(str, df.columns)) or 'none'})."
                )
        df[COLUMN] = pd.to_numeric(df[COLUMN].str.strip(), errors="coerce")  # empty -> NaN -> dropped
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


def _order(col: str, value: str) -> tuple:
    """Groups in the injector table's order (op, then small/common/big), the rest by name."""
    from fi_campaign.models.powerlaw import SIZES

    known = {"micro": MICRO_ORDER, "input_size": SIZES}.get(col, ())
    return (known.index(value), "") if value in known else (len(known), value)


def _sources(csvs: list[str], rows: list[int]) -> list[dict]:
    return [
        {"path": str(Path(p).resolve()), "sha256": hashlib.sha256(Path(p).read_bytes()).hexdigest(), "rows": n}
        for p, n in zip(csvs, rows, strict=False)
    ]


def _g(x: float) -> str:
    return f"{x:.8g}"


# --- fit -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FittedModel:
    name: str
    by: list[str]
    ks: str
    document: dict  # the YAML mapping (models.powerlaw.table_document)
    fits: list[dict]  # per group, in the document's order: group, n, dropped, x_min, alpha, sigma, n_tail, ks
    skipped: list[tuple[dict, str]] = field(default_factory=list)  # (group, why) of groups too small to fit

    @property
    def example(self) -> dict | None:
        """An entry a campaign config can name (an injector op and size), if any."""
        from fi_campaign.models import powerlaw

        return next(
            (e for e in self.document["entries"] if e["op"] in powerlaw.OPS and e["size"] in powerlaw.SIZES), None
        )


def fit_model(csvs: list[str], by: list[str], ks: str, name: str) -> FittedModel:
    """One power law per group of rows sharing the ``by`` columns' values, all CSVs pooled."""
    import pandas as pd

    from fi_campaign.models import powerfit, powerlaw

    counts, frames = [], []
    for path in csvs:
        frames.append(read_samples((path,), by))
        counts.append(len(frames[-1]))
    data = pd.concat(frames, ignore_index=True)
    groups = data.groupby(by, sort=False)[COLUMN] if by else [((), data[COLUMN])]
    fits, skipped = [], []
    for key, samples in groups:
        key = key if isinstance(key, tuple) else (key,)
        group = dict(zip(by, map(str, key), strict=False))
        try:
            f = powerfit.fit(samples.to_numpy(), ks=ks)
            fits.append({"group": group, **f.to_dict()})
        except powerfit.FitError as e:
            skipped.append((group, str(e)))
    if not fits:
        raise UserError(
            f"no group of {', '.join(csvs)} has enough samples for a fit "
            f"({skipped[0][1]} in {' '.join(skipped[0][0].values()) or 'the only group'})."
        )

    def order(group: dict) -> tuple:
        return tuple(_order(c, group[c]) for c in by)

    fits.sort(key=lambda f: order(f["group"]))
    skipped.sort(key=lambda s: order(s[0]))
    doc = powerlaw.table_document(name, by, _sources(csvs, counts), fits, ks)
    return FittedModel(name, by, ks, doc, fits, skipped)


def write_model(model: FittedModel, out: Output) -> None:
    import yaml

    from fi_campaign.outputs import write_text

    write_text(out, yaml.safe_dump(model.document, sort_keys=False))


def fit_text(model: FittedModel) -> list[Block]:
    cols = tuple(Col(c, key=True) for c in model.by) + (
        Col("entry", key=not model.by),
        Col("n", right=True),
        Col("dropped", right=True),
        Col("x_min", right=True),
        Col("alpha ± σ", right=True),
        Col("n_tail", right=True),
        Col("KS", right=True),
    )
    rows = tuple(
        (
            *f["group"].values(),
            f"{e['op']} {e['size']}",
            str(f["n"]),
            str(f["dropped"]),
            _g(f["x_min"]),
            f"{_g(f['alpha'])} ± {f['sigma']:.2g}",
            str(f["n_tail"]),
            f"{f['ks']:.4f}",
        )
        for f, e in zip(model.fits, model.document["entries"], strict=False)
    )
    title = f"Power-law fits of {COLUMN} per {', '.join(model.by) or 'file'} (KS '{model.ks}'), model '{model.name}'"
    return [TextTable(title, cols, rows)] + [
        f"Skipped {' '.join(group.values())}: {why}." for group, why in model.skipped
    ]


# --- show ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """One entry of a table: the law for an op and size, the group of data it stands for and,
    for a fitted table, its fit statistics."""

    op: str
    size: str
    law: PowerLaw
    group: dict[str, str]
    ks_kind: str = "below"
    table: FittedTable | None = None  # None: a built-in table
    n_tail: int | None = None
    n: int | None = None
    ks: float | None = None


def entries(table: str, ops: tuple[str, ...] = (), sizes: tuple[str, ...] = ()) -> list[Entry]:
    """A built-in table's or a fitted YAML's entries, only the ops and sizes asked for (all when none)."""
    from fi_campaign.models import powerlaw

    if table in powerlaw.TABLES:
        found = [
            Entry(
                op,
                size,
                powerlaw.entry(table, op, size),
                {"micro": powerlaw.DATA_MICRO.get(op, op), "input_size": size},
            )
            for op in powerlaw.OPS
            for size in powerlaw.SIZES
        ]
    else:
        try:
            t = powerlaw.read_table(table)
        except powerlaw.TableError as e:
            raise UserError(f"{e}.") from None
        found = [Entry(e.op, e.size, e.law, e.group, t.ks, t, e.n_tail, e.n, e.ks) for e in t.entries]
    found = [e for e in found if (not ops or e.op in ops) and (not sizes or e.size in sizes)]
    if not found:
        raise UserError(f"{table} has no entry for op {'/'.join(ops) or 'any'} and size {'/'.join(sizes) or 'any'}.")
    return found


def group_samples(data: pd.DataFrame, group: dict[str, str]) -> np.ndarray:
    mask = None
    for col, value in group.items():
        m = data[col].astype(str) == value
        mask = m if mask is None else mask & m
    return data[COLUMN].to_numpy() if mask is None else data.loc[mask, COLUMN].to_numpy()


def data_columns(found: list[Entry]) -> list[str]:
    """The columns the entries' groups are told apart by: what --data files must have."""
    return sorted({c for e in found for c in e.group})


def note(law: PowerLaw) -> str:
    """A few words on an entry that cannot be drawn from or is nearly constant."""
    from fi_campaign.models.powerlaw import FLT_MAX

    if law.degenerate_reason():
        if not math.isfinite(law.x_min) or law.x_min >= FLT_MAX:
            return "degenerate: x_min = FLT_MAX"
        return f"degenerate: {'x_min' if law.x_min <= 0 else 'alpha'} = {law.x_min if law.x_min <= 0 else law.alpha:g}"
    if law.alpha < 100:
        return ""
    spread = math.expm1(math.log(2.0**53) / (law.alpha - 1.0))  # largest draw / x_min - 1 at u = 1 - 2^-53
    return f"near-constant: r <= x_min (1 + {spread:.1g})" if spread < 0.05 else ""


def _against_data(e: Entry, data: pd.DataFrame, fitted: bool) -> list[str]:
    """The entry's KS distance to its group's samples, a refit of them, and the largest relative
    difference between the entry and the refit."""
    from fi_campaign.models import powerfit

    law = e.law
    samples, _ = powerfit.clean(group_samples(data, e.group))
    tail = samples[samples >= law.x_min] if law.degenerate_reason() is None else samples[:0]
    cells = [f"{powerfit.ks_distance(tail, law.x_min, law.alpha, e.ks_kind):.4f}" if tail.size else "-"]
    try:
        f = powerfit.fit(samples, ks=e.ks_kind)
    except powerfit.FitError:
        return cells + ["-", "-"] + ([] if fitted else [f"0/{samples.size}"]) + ["too few samples"]
    diff = max(
        abs(f.x_min - law.x_min) / law.x_min if law.x_min > 0 else math.inf, abs(f.alpha - law.alpha) / law.alpha
    )
    return cells + [_g(f.x_min), _g(f.alpha)] + ([] if fitted else [f"{f.n_tail}/{f.n}"]) + [f"{diff:.1e}"]


def show_text(table: str, found: list[Entry], data: pd.DataFrame | None) -> list[Block]:
    from fi_campaign.models import powerlaw

    fitted = found[0].table
    title = (
        f"Fault model '{fitted.name}' ({fitted.path}), fitted per {', '.join(fitted.by) or 'file'}"
        if fitted
        else f"Built-in table {table} ({powerlaw.SOURCE})"
    )
    headers = ["x_min", "alpha"] + (["n_tail/n", "KS"] if fitted else [])
    if data is not None:
        headers += ["KS on data", "refit x_min", "refit alpha"] + ([] if fitted else ["refit tail/n"]) + ["rel. diff"]
    cols = (Col("op", key=True), Col("size", key=True), *(Col(h, right=True) for h in headers), Col("note"))
    rows = []
    for e in found:
        cells = [e.op, e.size, _g(e.law.x_min), _g(e.law.alpha)]
        if fitted:
            cells += [f"{e.n_tail}/{e.n}", f"{e.ks:.4f}"]
        if data is not None:
            cells += _against_data(e, data, fitted is not None)
        rows.append((*cells, note(e.law)))
    return [TextTable(title, cols, tuple(rows))] + [
        f"{e.op} {e.size} is degenerate ({why}): warp_random refuses it."
        for e in found
        if (why := e.law.degenerate_reason())
    ]


def write_plot(found: list[Entry], data: pd.DataFrame, table: str, out: Output) -> None:
    """Log-log complementary CDF of each entry's samples, with the entry's law over its tail."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from fi_campaign.models import powerfit
    from fi_campaign.outputs import replacing

    panels = [(e, powerfit.clean(group_samples(data, e.group))[0]) for e in found]
    panels = [(e, x) for e, x in panels if x.size]
    if not panels:
        raise UserError(f"the --data files have no usable {COLUMN} samples for the entries of {table}.")
    ncols = min(3, len(panels))
    nrows = -(-len(panels) // ncols)
    fig = Figure(figsize=(4.2 * ncols, 3.2 * nrows))
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax in axes.flat[len(panels) :]:
        ax.set_visible(False)
    for ax, (e, x) in zip(axes.flat, panels, strict=False):
        law = e.law
        ccdf = (x.size - np.searchsorted(x, x, "left")) / x.size  # P(X >= x)
        ax.loglog(x, ccdf, ".", ms=2, color="0.35", label=f"data (n={x.size})")
        why = law.degenerate_reason()
        tail = int((x >= law.x_min).sum()) if why is None else 0
        if tail:
            grid = np.geomspace(law.x_min, max(x[-1], law.x_min * 1.0001), 200)
            ax.loglog(
                grid,
                tail / x.size * (grid / law.x_min) ** (1.0 - law.alpha),
                "-",
                color="tab:red",
                label=f"x_min={law.x_min:.3g}, α={law.alpha:.4g}",
            )
            ax.axvline(law.x_min, color="tab:red", lw=0.6, ls=":")
        ax.set_ylim(0.3 / x.size, 1.6)  # steep laws would otherwise stretch the axis to 1e-300
        ax.set_title(
            f"{e.op} {e.size}" + (" (degenerate)" if why else "") + ("" if tail or why else " (no data ≥ x_min)"),
            fontsize=9,
        )
        ax.set_xlabel(COLUMN, fontsize=8)
        ax.set_ylabel("P(X ≥ x)", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7, loc="lower left")
    fig.suptitle(f"{table}: complementary CDF of the data vs the power law above x_min", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.4 / (3.2 * nrows)))  # 0.4 in for the title
    with replacing(out) as temp:
        fig.savefig(temp, dpi=110, format=out.path.suffix[1:].lower() or "png")  # not the temporary name's
