"""The report's figures, drawn with matplotlib's object API on the Agg canvas: no pyplot, so no
global figure state and no GUI backend. matplotlib is imported inside the functions, so the CLI
starts without it.

Every rate is drawn with its 95% interval from campaign.stats (the numbers of the tables).
"""

from __future__ import annotations

import io
from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from fi_campaign.classify import CRITICAL_SDC, DUE, MASKED, TOLERABLE_SDC

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from fi_campaign.report.causes import BitRow
    from fi_campaign.report.summary import AvfRow, UnitRow
    from fi_campaign.store import RegretRecord

STACK = (MASKED, TOLERABLE_SDC, CRITICAL_SDC, DUE)  # bottom to top, as in the paper's Fig. 6
NAMES = {MASKED: "Masked", TOLERABLE_SDC: "Tolerable SDC", CRITICAL_SDC: "Critical SDC", DUE: "DUE"}
COLOURS = {MASKED: "#9cc5a1", TOLERABLE_SDC: "#f2c14e", CRITICAL_SDC: "#d1495b", DUE: "#5b5f97"}
MODEL_COLOURS = ("#2f6690", "#d1495b", "#3a7d44", "#f2a541", "#6c4f77", "#7f7f7f")
TOP_UNITS = 25  # kernels shown in a chart (the table lists them all)

H = TypeVar("H", bound=Hashable)


@dataclass(frozen=True)
class Rendered:
    name: str  # file stem in the report folder
    title: str
    caption: str
    png: bytes
    svg: bytes


def _figure(width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def render(fig: Figure, name: str, title: str, caption: str) -> Rendered:
    """PNG (for the page and slides) and SVG (for papers); the SVG carries no date, so the
    same store gives the same file."""
    png, svg = io.BytesIO(), io.BytesIO()
    fig.savefig(png, format="png", dpi=110)
    fig.savefig(svg, format="svg", metadata={"Date": None})
    return Rendered(name, title, caption, png.getvalue(), svg.getvalue())


def _unique(items: Iterable[H]) -> list[H]:
    return list(dict.fromkeys(items))


def _err(rate: float, low: float, high: float) -> list[list[float]]:
    return [[100 * (rate - low)], [100 * (high - rate)]]


def avf_figure(rows: list[tuple[str, AvfRow]], with_store: bool) -> Figure:
    """Per mode, one stacked bar per (store,) model: Masked / Tolerable SDC / Critical SDC / DUE
    in percent of the injections applied, each segment's 95% interval drawn at its top."""
    from matplotlib.patches import Patch

    modes = _unique(r.mode for _, r in rows)
    bars = _unique((s, r.model) for s, r in rows)
    cell = {(s, r.model, r.mode, r.outcome): r for s, r in rows}
    fig = _figure(1.0 + len(modes) * max(3.0, 1.1 * len(bars)), 4.8)
    axes = fig.subplots(1, len(modes), sharey=True, squeeze=False)[0]
    top = 100.0
    for ax, mode in zip(axes, modes, strict=False):
        for i, (store, model) in enumerate(bars):
            bottom = 0.0
            for j, outcome in enumerate(STACK):
                r = cell.get((store, model, mode, outcome))
                if r is None or r.k == 0:  # no segment to hang an interval on; the table has its bound
                    continue
                h = 100 * r.rate
                ax.bar(i, h, bottom=bottom, width=0.62, color=COLOURS[outcome], edgecolor="white", linewidth=0.5)
                ax.errorbar(
                    i - 0.21 + 0.14 * j,
                    bottom + h,
                    yerr=_err(r.rate, r.ci_low, r.ci_high),
                    fmt="none",
                    ecolor="black",
                    elinewidth=0.8,
                    capsize=2.5,
                )
                if h >= 6:
                    ax.text(i, bottom + h / 2, f"{h:.1f}", ha="center", va="center", fontsize=7)
                bottom += h
                top = max(top, bottom + 100 * (r.ci_high - r.rate))
            if bottom == 0:
                ax.text(i, 50, "no results", ha="center", va="center", rotation=90, fontsize=8, color="grey")
        ax.set_xticks(range(len(bars)), [f"{s}\n{m}" if with_store else m for s, m in bars], fontsize=8)
        ax.set_xlim(-0.6, len(bars) - 0.4)
        ax.set_title(mode, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylim(0, top + 2)
    axes[0].set_ylabel("share of injections (%)")
    fig.legend(
        handles=[Patch(color=COLOURS[o], label=NAMES[o]) for o in STACK],
        loc="outside upper center",
        ncols=len(STACK),
        frameon=False,
        fontsize=9,
    )
    return fig


def shown_units(rows: list[UnitRow], kind: str) -> list[str]:
    """The units a chart shows: every layer in order; for kernels, the TOP_UNITS with the most
    critical SDCs (ties: the most injections), since a GPU workload can launch hundreds."""
    units = _unique(u.unit for u in rows)
    if kind == "layer" or len(units) <= TOP_UNITS:
        return units
    k: dict[str, tuple[int, int]] = {}
    for u in rows:
        a, b = k.get(u.unit, (0, 0))
        k[u.unit] = (a + u.k, b + u.n)
    return sorted(units, key=lambda name: (-k[name][0], -k[name][1], name))[:TOP_UNITS]


def unit_figure(rows: list[UnitRow], kind: str) -> Figure:
    """Per mode, the critical-SDC rate of faults landing in each layer (or kernel / instruction
    group), one bar per model, with 95% intervals."""
    modes = _unique(u.mode for u in rows)
    models = _unique(u.model for u in rows)
    units = shown_units(rows, kind)
    cell = {(u.model, u.mode, u.unit): u for u in rows}
    fig = _figure(min(15.0, max(7.0, 0.3 * len(units) * max(1, len(models)) + 2)), 1.0 + 3.0 * len(modes))
    axes = fig.subplots(len(modes), 1, sharex=True, squeeze=False)[:, 0]
    width = 0.8 / max(1, len(models))
    for ax, mode in zip(axes, modes, strict=False):
        for m, model in enumerate(models):
            xs, ys, lo, hi = [], [], [], []
            for i, unit in enumerate(units):
                u = cell.get((model, mode, unit))
                if u is None or u.n == 0:
                    continue
                xs.append(i - 0.4 + width * (m + 0.5))
                ys.append(100 * u.rate)
                lo.append(100 * (u.rate - u.ci_low))
                hi.append(100 * (u.ci_high - u.rate))
            ax.bar(
                xs,
                ys,
                width=width * 0.92,
                yerr=[lo, hi],
                color=MODEL_COLOURS[m % len(MODEL_COLOURS)],
                error_kw={"elinewidth": 0.8, "capsize": 2},
                label=model,
            )
        ax.set_title(mode, fontsize=10)
        ax.set_ylabel("critical SDC (%)")
        ax.set_ylim(bottom=0)
        ax.grid(axis="y", alpha=0.3)
    labels = [u if len(u) <= 38 else u[:35] + "..." for u in units]
    axes[-1].set_xticks(range(len(units)), labels, rotation=60, ha="right", fontsize=7)
    axes[-1].set_xlim(-0.6, len(units) - 0.4)
    axes[0].legend(fontsize=8, frameon=False, ncols=len(models))
    return fig


def regret_figure(rows: list[tuple[str, RegretRecord]]) -> Figure:
    """Clean and noisy accuracy per evaluated model (paper Fig. 5), the noisy one with its 95%
    interval, and the regret (clean - noisy) with its interval written above; one panel per
    dataset, as the paper sets its CIFAR-10 and CIFAR-100 ablations side by side, the models in
    the order they were evaluated (the ablation's order when evaluated as the zoo lists it)."""
    datasets = _unique(r.dataset for _, r in rows)
    panels = [[(label, r) for label, r in rows if r.dataset == d] for d in datasets]
    widest = max(len(p) for p in panels)
    fig = _figure(max(5.0, 1.6 * widest + 1.5) * (1 if len(panels) == 1 else 0.8 * len(panels)), 4.4)
    axes = fig.subplots(1, len(panels), sharey=True, squeeze=False)[0]
    for ax, dataset, panel in zip(axes, datasets, panels, strict=True):
        _regret_panel(ax, panel)
        if len(panels) > 1:
            ax.set_title(dataset.upper().replace("CIFAR", "CIFAR-"), fontsize=10)
    axes[0].set_ylabel("test accuracy (%)")
    axes[0].legend(fontsize=8, frameon=False, loc="upper right")
    return fig


def _regret_panel(ax: Axes, rows: list[tuple[str, RegretRecord]]) -> None:
    for i, (_, r) in enumerate(rows):
        ax.bar(i - 0.19, 100 * r.clean, width=0.36, color="#2f6690", label="clean" if i == 0 else None)
        ax.bar(
            i + 0.19,
            100 * r.noisy,
            width=0.36,
            color="#d1495b",
            label="noisy" if i == 0 else None,
            yerr=None if r.noisy_low != r.noisy_low else _err(r.noisy, r.noisy_low, r.noisy_high),
            error_kw={"elinewidth": 0.8, "capsize": 3},
        )
        ci = "" if r.regret_low != r.regret_low else f"\n[{100 * r.regret_low:.2f}, {100 * r.regret_high:.2f}]"
        ax.text(
            i,
            100 * max(r.clean, r.noisy) + 3,
            f"regret {100 * r.regret:.2f} pts{ci}",
            ha="center",
            va="bottom",
            fontsize=7,
        )
    ax.set_xticks(range(len(rows)), [label for label, _ in rows], fontsize=7, rotation=15 if len(rows) > 3 else 0)
    ax.set_ylim(0, 118)
    ax.grid(axis="y", alpha=0.3)


def bit_figure(rows: list[BitRow]) -> Figure:
    """Per model (one panel each), the critical-SDC rate of single-bit flips at each bit position,
    split into NaN/Inf and finite critical SDCs, the 95% interval of the whole rate on top; the
    fields of each model's number format (float32, float16, bfloat16) are marked in its panel."""
    from fi_campaign.models.formats import number_format

    panels = _unique((b.model, b.mode) for b in rows)
    formats = {b.model: number_format(b.dtype) for b in rows}
    fig = _figure(9.0, 0.8 + 2.2 * len(panels))
    axes = fig.subplots(len(panels), 1, sharex=True, sharey=True, squeeze=False)[:, 0]
    for ax, (model, mode) in zip(axes, panels, strict=False):
        mine = [b for b in rows if (b.model, b.mode) == (model, mode)]
        xs = [b.bit for b in mine]
        finite = [100 * (b.k - b.nan) / b.n if b.n else 0.0 for b in mine]
        nan = [100 * b.nan / b.n if b.n else 0.0 for b in mine]
        ax.bar(xs, finite, width=0.8, color=COLOURS[CRITICAL_SDC], label="critical SDC, finite outputs")
        ax.bar(xs, nan, bottom=finite, width=0.8, color="#5b5f97", label="critical SDC, NaN/Inf in the outputs")
        ax.errorbar(
            xs,
            [100 * b.rate for b in mine],
            yerr=[[100 * (b.rate - b.ci_low) for b in mine], [100 * (b.ci_high - b.rate) for b in mine]],
            fmt="none",
            ecolor="black",
            elinewidth=0.7,
            capsize=1.5,
        )
        fmt = formats[model]
        for edge in (fmt.mantissa - 0.5, fmt.sign - 0.5):
            ax.axvline(edge, color="grey", linewidth=0.6, linestyle=":")
        ax.set_title(f"{model}, {mode}" + (f", {fmt.name}" if len(set(formats.values())) > 1 else ""), fontsize=9)
        ax.set_ylabel("critical SDC (%)", fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    # the panels share one axis, set once it is known to hold every panel's highest interval
    top = max([100 * b.ci_high for b in rows if b.n], default=100.0)
    axes[0].set_ylim(0, top * 1.08)
    widest = max(f.bits for f in formats.values())
    axes[-1].set_xticks(range(widest))
    axes[-1].tick_params(axis="x", labelsize=7)
    axes[-1].set_xlim(-0.7, widest - 0.3)
    shown = sorted(set(formats.values()), key=lambda f: (-f.bits, f.name))
    layouts = "; ".join(f.layout if [f.name] == ["float32"] else f"{f.name}: {f.layout}" for f in shown)
    axes[-1].set_xlabel(f"flipped bit ({layouts})", fontsize=8)
    handles, labels = axes[0].get_legend_handles_labels()  # above the panels: never over a bar or its interval
    fig.legend(handles, labels, loc="outside upper center", ncols=2, frameon=False, fontsize=7)
    return fig
