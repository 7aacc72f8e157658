"""What causes critical SDCs: each model x mode's critical SDCs split into those whose faulty
outputs hold NaN/Inf and the others, the reference-versus-candidate ratio with and without the
NaN/Inf ones, and for single_bit the flipped bit positions they come from.

A ReLU6 built on PyTorch's hardtanh passes NaN on, so a hardened model's critical single-bit
SDCs can be all NaN (an exponent bit flipped) while its finite ones are as rare as clipping
makes them; the split shows which of the two a hardening step changed.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, TextIO

from fi_campaign.classify import COUNTED, CRITICAL_SDC
from fi_campaign.models.formats import FLOAT32, number_format
from fi_campaign.stats import Ratio, proportion, rate_ratio
from fi_campaign.store import BitGroup, ResultGroup, StratumTally
from fi_campaign.stratified import StratifiedRate, StratumCount, effective_counts, stratified_proportion

if TYPE_CHECKING:
    from fi_campaign.outputs import Output

CONFIDENCE = 0.95
CSV_COLUMNS = ("model", "mode", "part", "reference", "bit", "k", "n", "value", "ci_low", "ci_high", "share", "nan_k")


@dataclass(frozen=True)
class CriticalSplit:
    """One model x mode's critical SDCs: with NaN/Inf in the faulty outputs, and finite."""

    model: str
    mode: str
    n: int  # counted injections: the AVF denominator
    critical: int
    nan: int
    nan_rate: float
    nan_low: float
    nan_high: float
    finite: int
    finite_rate: float
    finite_low: float
    finite_high: float
    nan_share: float  # nan / critical; NaN when there is no critical SDC
    # sampling stratified: the rates above are stratified estimates, and the ratios read these
    # effective (k, n) of the critical and the finite critical SDCs; None for a simple random plan
    critical_effective: tuple[float, float] | None = None
    finite_effective: tuple[float, float] | None = None


@dataclass(frozen=True)
class SplitComparison:
    """Reference over candidate critical-SDC rate, with and without the NaN/Inf ones."""

    mode: str
    reference: str
    candidate: str
    reference_k: int
    reference_finite: int
    reference_n: int
    candidate_k: int
    candidate_finite: int
    candidate_n: int
    with_nan: Ratio
    without_nan: Ratio


def bit_modes(rows: Sequence[BitRow]) -> str:
    """The modes a per-bit table holds, as its title names them: single_bit, or weight modes."""
    return ", ".join(dict.fromkeys(b.mode for b in rows))


@dataclass(frozen=True)
class BitRow:
    """Critical SDCs of the flips (single_bit, weight_bit) or stuck bits (weight_stuck_at) of one
    bit position (0 = least significant)."""

    model: str
    mode: str
    bit: int
    field: str  # of the model's dtype: float32 mantissa 0-22, exponent 23-30, sign 31 (models.formats)
    n: int  # counted injections that flipped this bit
    k: int  # of them critical SDCs
    nan: int  # of those, with NaN/Inf in the outputs
    rate: float
    ci_low: float
    ci_high: float
    share: float  # k / the stratum's critical SDCs
    dtype: str = FLOAT32  # the model's number format, whose bit this is


@dataclass(frozen=True)
class Causes:
    split: list[CriticalSplit]
    comparisons: list[SplitComparison]
    bits: list[BitRow]


def causes(
    reference: str,
    models: list[str],
    modes: list[str],
    groups: list[ResultGroup],
    bit_groups: list[BitGroup],
    tallies: list[StratumTally] | None = None,
    dtypes: dict[str, str] | None = None,
) -> Causes:
    """``tallies``: a stratified plan's sampling strata, whose shares weight the split and the
    bits' shares of the critical SDCs (the per-bit rates are within their bit either way);
    ``dtypes``: each model's number format (default float32), which names its bits' fields."""
    split = stratified_split(models, modes, tallies) if tallies else critical_split(models, modes, groups)
    bits = bit_rows(models, modes, bit_groups, dtypes)
    if tallies:
        bits = weighted_bit_shares(bits, tallies)
    return Causes(split, compare_split(reference, models, modes, split), bits)


def critical_split(models: Iterable[str], modes: Iterable[str], groups: Iterable[ResultGroup]) -> list[CriticalSplit]:
    tally: dict[tuple[str, str], list[int]] = {}
    for g in groups:
        t = tally.setdefault((g.model, g.mode), [0, 0, 0])
        if g.outcome in COUNTED:
            t[0] += g.count
        if g.outcome == CRITICAL_SDC:
            t[1] += g.count
            t[2] += g.nan
    out = []
    for model in models:
        for mode in modes:
            n, k, nan = tally.get((model, mode), [0, 0, 0])
            a, b = proportion(nan, n, CONFIDENCE), proportion(k - nan, n, CONFIDENCE)
            out.append(
                CriticalSplit(
                    model=model,
                    mode=mode,
                    n=n,
                    critical=k,
                    nan=nan,
                    nan_rate=a.rate,
                    nan_low=a.low,
                    nan_high=a.high,
                    finite=k - nan,
                    finite_rate=b.rate,
                    finite_low=b.low,
                    finite_high=b.high,
                    nan_share=nan / k if k else math.nan,
                )
            )
    return out


def stratified_split(models: Iterable[str], modes: Iterable[str], tallies: list[StratumTally]) -> list[CriticalSplit]:
    """``critical_split`` of a stratified plan: the NaN/Inf and the finite critical-SDC rates as
    stratified estimates over the strata, with their effective counts for the ratios."""
    out = []
    for model in models:
        for mode in modes:
            mine = [t for t in tallies if (t.model, t.mode) == (model, mode)]

            def part(k: Callable[[StratumTally], int], ts: list[StratumTally] = mine) -> StratifiedRate:
                return stratified_proportion(
                    [
                        StratumCount(
                            label=t.stratum, weight=t.weight, n=sum(t.outcomes.get(o, 0) for o in COUNTED), k=k(t)
                        )
                        for t in ts
                    ],
                    CONFIDENCE,
                )

            nan = part(lambda t: t.nan.get(CRITICAL_SDC, 0))
            finite = part(lambda t: t.outcomes.get(CRITICAL_SDC, 0) - t.nan.get(CRITICAL_SDC, 0))
            critical = part(lambda t: t.outcomes.get(CRITICAL_SDC, 0))
            out.append(
                CriticalSplit(
                    model=model,
                    mode=mode,
                    n=critical.n,
                    critical=critical.k,
                    nan=nan.k,
                    nan_rate=nan.rate,
                    nan_low=nan.low,
                    nan_high=nan.high,
                    finite=finite.k,
                    finite_rate=finite.rate,
                    finite_low=finite.low,
                    finite_high=finite.high,
                    nan_share=nan.rate / critical.rate if critical.rate > 0 else math.nan,
                    critical_effective=effective_counts(critical),
                    finite_effective=effective_counts(finite),
                )
            )
    return out


def weighted_bit_shares(bits: list[BitRow], tallies: list[StratumTally]) -> list[BitRow]:
    """A plan stratified by bit alone: each bit's share of the critical-SDC rate, W_b p_b / p,
    rather than of the critical SDCs run (bits sampled more would count more)."""
    by_bit = {(t.model, t.mode, t.stratum): t.weight for t in tallies}
    out = []
    for b in bits:
        w = by_bit.get((b.model, b.mode, f"bit={b.bit}"))
        cell = [x for x in bits if (x.model, x.mode) == (b.model, b.mode)]
        weights = [by_bit.get((x.model, x.mode, f"bit={x.bit}")) for x in cell]
        if w is None or any(v is None for v in weights):
            out.append(b)
            continue
        total = sum(v * x.rate for v, x in zip(weights, cell, strict=True) if v is not None and x.n)
        out.append(replace(b, share=w * b.rate / total if total > 0 and b.n else math.nan))
    return out


def compare_split(
    reference: str, models: Iterable[str], modes: Iterable[str], splits: list[CriticalSplit]
) -> list[SplitComparison]:
    cell = {(s.model, s.mode): s for s in splits}
    out = []
    for mode in modes:
        ref = cell[(reference, mode)]
        for model in models:
            if model == reference:
                continue
            c = cell[(model, mode)]
            out.append(
                SplitComparison(
                    mode=mode,
                    reference=reference,
                    candidate=model,
                    reference_k=ref.critical,
                    reference_finite=ref.finite,
                    reference_n=ref.n,
                    candidate_k=c.critical,
                    candidate_finite=c.finite,
                    candidate_n=c.n,
                    with_nan=_ratio(
                        ref.critical_effective or (ref.critical, ref.n), c.critical_effective or (c.critical, c.n)
                    ),
                    without_nan=_ratio(
                        ref.finite_effective or (ref.finite, ref.n), c.finite_effective or (c.finite, c.n)
                    ),
                )
            )
    return out


def _ratio(reference: tuple[float, float], candidate: tuple[float, float]) -> Ratio:
    return rate_ratio(reference[0], reference[1], candidate[0], candidate[1], CONFIDENCE)


def bit_rows(
    models: Iterable[str], modes: Iterable[str], groups: Iterable[BitGroup], dtypes: dict[str, str] | None = None
) -> list[BitRow]:
    """Every flipped bit position of every model x mode, in model, mode and bit order, each
    named by the field it is in the model's number format (``dtypes``; default float32)."""
    cells: dict[tuple[str, str, int], list[int]] = {}
    for g in groups:
        c = cells.setdefault((g.model, g.mode, g.bit), [0, 0, 0])
        if g.outcome in COUNTED:
            c[0] += g.count
        if g.outcome == CRITICAL_SDC:
            c[1] += g.count
            c[2] += g.nan
    critical: dict[tuple[str, str], int] = {}
    for (model, mode, _), (_, k, _) in cells.items():
        critical[(model, mode)] = critical.get((model, mode), 0) + k
    out = []
    for model in models:
        fmt = number_format((dtypes or {}).get(model, FLOAT32))
        for mode in modes:
            for bit in sorted(b for (m, d, b) in cells if (m, d) == (model, mode)):
                n, k, nan = cells[(model, mode, bit)]
                r = proportion(k, n, CONFIDENCE)
                total = critical[(model, mode)]
                out.append(
                    BitRow(
                        model=model,
                        mode=mode,
                        bit=bit,
                        field=fmt.field(bit),
                        n=n,
                        k=k,
                        nan=nan,
                        rate=r.rate,
                        ci_low=r.low,
                        ci_high=r.high,
                        share=k / total if total else math.nan,
                        dtype=fmt.name,
                    )
                )
    return out


def sentence(c: SplitComparison) -> str:
    """The ratio without the NaN/Inf critical SDCs, beside the one with them, in words."""
    pct = f"{100 * CONFIDENCE:g}%"

    def said(r: Ratio) -> str:
        if r.value != r.value:
            return "undefined (no such critical SDC in either model)"
        note = ", 0.5 added to each count because one is zero" if r.corrected else ""
        verdict = "significant" if r.significant else "not significant"
        return f"{r.value:.2f}x ({pct} CI [{r.low:.2f}, {r.high:.2f}]{note}; {verdict})"

    return (
        f"{c.mode}: critical-SDC rate {c.reference}/{c.candidate} {said(c.with_nan)} with the NaN/Inf ones "
        f"({c.reference_k - c.reference_finite} and {c.candidate_k - c.candidate_finite} of them), "
        f"{said(c.without_nan)} without."
    )


# --- CSV ---------------------------------------------------------------------------------------------


def csv_rows(c: Causes) -> list[list]:
    """One long table (docs/REPORTS.md): parts nan_inf and finite (rates of the counted
    injections), ratio_all and ratio_finite (reference over candidate, on the candidate's
    row), bit (the rate given that bit was flipped, and its share of the critical SDCs)."""
    rows: list[list] = []
    for s in c.split:
        rows.append(
            [
                s.model,
                s.mode,
                "nan_inf",
                "",
                "",
                s.nan,
                s.n,
                _num(s.nan_rate),
                _num(s.nan_low),
                _num(s.nan_high),
                _num(s.nan_share),
                s.nan,
            ]
        )
        rows.append(
            [
                s.model,
                s.mode,
                "finite",
                "",
                "",
                s.finite,
                s.n,
                _num(s.finite_rate),
                _num(s.finite_low),
                _num(s.finite_high),
                _num(1 - s.nan_share),
                "",
            ]
        )
    for cmp in c.comparisons:
        for part, k, r in (
            ("ratio_all", cmp.candidate_k, cmp.with_nan),
            ("ratio_finite", cmp.candidate_finite, cmp.without_nan),
        ):
            rows.append(
                [
                    cmp.candidate,
                    cmp.mode,
                    part,
                    cmp.reference,
                    "",
                    k,
                    cmp.candidate_n,
                    _num(r.value),
                    _num(r.low),
                    _num(r.high),
                    "",
                    "",
                ]
            )
    for b in c.bits:
        rows.append(
            [
                b.model,
                b.mode,
                "bit",
                "",
                b.bit,
                b.k,
                b.n,
                _num(b.rate),
                _num(b.ci_low),
                _num(b.ci_high),
                _num(b.share),
                b.nan,
            ]
        )
    return rows


def write_csv(
    tables: list[tuple[str | None, list[list]]], out: Output, opener: Callable[[Output], AbstractContextManager[TextIO]]
) -> None:
    """``tables``: (store label or None, rows) per store; a store column leads when labelled."""
    labelled = any(label for label, _ in tables)
    with opener(out) as f:
        w = csv.writer(f)
        w.writerow((("store",) if labelled else ()) + CSV_COLUMNS)
        for label, rows in tables:
            for row in rows:
                w.writerow(([label] if labelled else []) + row)


def _num(x: float) -> str:
    return "" if x != x else f"{x:.6f}"
