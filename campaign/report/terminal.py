"""`report` on the terminal: the AVF table with its notes and comparisons, what causes the critical
SDCs, and the FIT roll-up, as tables and sentences (fi_campaign.report.text) rendered from the same
StoreReport as the CSV, JSON and HTML."""

from __future__ import annotations

from fi_campaign.models.formats import width
from fi_campaign.report.causes import bit_modes, sentence
from fi_campaign.report.fit import RawFit
from fi_campaign.report.summary import StoreReport
from fi_campaign.report.text import Block, Col, TextTable, interval, pct
from fi_campaign.store import ModelRecord


def report_text(reports: list[StoreReport], avf: bool, raw: RawFit | None) -> list[Block]:
    """What `report` prints: with ``avf``, each store's AVF and causes; with ``raw``, the FIT roll-up."""
    multi = len(reports) > 1
    out: list[Block] = []
    for r in reports if avf else ():
        out += avf_text(r, multi) + causes_text(r, multi)
    return out + (fit_text(reports, raw) if raw else [])


def avf_text(report: StoreReport, multi: bool) -> list[Block]:
    ident = report.identity
    cols = (
        Col("model", key=True),
        Col("mode", key=True),
        Col("outcome", key=True),
        Col("k/n", key=True, right=True),
        Col("rate", right=True),
        Col("95% CI", right=True),
    )
    rows = tuple(
        (
            r.model,
            r.mode,
            r.outcome,
            f"{r.k}/{r.n}",
            "-" if r.n == 0 else f"{100 * r.rate:.2f}%",
            interval(r.ci_low, r.ci_high),
        )
        for r in report.avf
    )
    sections = tuple(i for i in range(1, len(rows)) if rows[i][:2] != rows[i - 1][:2])
    out: list[Block] = [
        TextTable(
            (f"{ident.label}: " if multi else "")
            + f"AVF of campaign '{ident.name}' (seed {ident.seed}), 95% intervals",
            cols,
            rows,
            sections,
        )
    ]
    out += sampling_text(report, multi)
    fm = ident.fault_model
    if any(r.mode == "warp_random" for r in report.avf):
        entries = ", ".join(f"{size}: x_min {law.x_min:.6g}, alpha {law.alpha:.6g}" for size, law in fm.entries.items())
        origin = f"fitted, {fm.origin.path}" if fm.origin and fm.kind == "fitted" else "built-in"
        out.append(f"warp_random fault model: {fm.name} ({origin}) {fm.op} ({entries}); {fm.semantics}")
    out += dtype_notes(ident.models)
    out += report.count_notes
    for s in report.strata:
        if s.nan:
            out.append(f"NaN/Inf in the outputs: {s.model} {s.mode}: {s.nan} injections")
        if s.not_injected:
            out.append(f"Not injected (kept out of n): {s.model} {s.mode}: {s.not_injected} injections")
    for c in report.comparisons:
        r = c.ratio
        if r.value != r.value:
            out.append(f"{c.mode}: critical-SDC ratio {c.reference}/{c.candidate} undefined ({c.undefined}).")
            continue
        verdict = "significant" if r.significant else "not significant"
        note = " (0.5 added to each count: a zero count)" if r.corrected else ""
        out.append(
            f"{c.mode}: critical SDC {c.reference}/{c.candidate} = {r.value:.2f}x "
            f"[95% CI {r.low:.2f}, {r.high:.2f}], {verdict}{note}"
        )
    return out


def dtype_notes(models: dict[str, ModelRecord]) -> list[Block]:
    """The models that do not run in float32: their format, whose bits single_bit flips."""
    half = {name: m.dtype for name, m in models.items() if m.dtype != "float32"}
    if not half:
        return []
    formats = "; ".join(
        f"{name} runs in {dtype} (single_bit flips one of its {width(dtype)} bits)" for name, dtype in half.items()
    )
    rest = "; the others in float32" if len(half) < len(models) else ""
    return [f"Number formats: {formats}{rest}."]


def sampling_text(report: StoreReport, multi: bool) -> list[Block]:
    """A stratified store: what each critical-SDC estimate cost and what a simple random sample
    of the same precision would have needed."""
    if not report.sampling:
        return []
    cols = (
        Col("model", key=True),
        Col("mode", key=True),
        Col("strata", right=True),
        Col("critical SDC", right=True),
        Col("95% CI", right=True),
        Col("injections", key=True, right=True),
        Col("simple random", right=True),
        Col("fewer", right=True),
    )
    rows = tuple(
        (
            r.model,
            r.mode,
            f"{r.strata} by {' x '.join(r.by) or 'nothing'}",
            pct(r.rate),
            interval(r.ci_low, r.ci_high),
            f"{r.injections:,}",
            "-" if not r.srs_equivalent > 0 else f"{r.srs_equivalent:,.0f}",
            "-" if r.saving != r.saving else f"{r.saving:.1f}x",
        )
        for r in report.sampling
    )
    store = f"{report.identity.label}: " if multi else ""
    out: list[Block] = [
        TextTable(
            f"{store}Stratified sampling: the critical-SDC estimate, the injections it used, and the simple random "
            "sample of the same precision",
            cols,
            rows,
        ),
        "Stratified rates weight each stratum by its share of the fault population; k/n above is what ran. "
        "Per-layer and per-bit rates are within their unit; their shares are of the injections run.",
    ]
    waiting = [r for r in report.sampling if r.unsampled]
    out += [
        f"{r.model} {r.mode}: {r.unsampled} of {r.strata} strata have no result yet, so the interval spans their share."
        for r in waiting
    ]
    return out


def causes_text(report: StoreReport, multi: bool) -> list[Block]:
    """The NaN/Inf split of the critical SDCs, the ratios with and without them, and the bit
    positions single-bit critical SDCs came from (only bits with one; the CSV has all)."""
    c = report.causes
    if not any(s.critical for s in c.split):
        return []
    store = f"{report.identity.label}: " if multi else ""
    cols = (
        Col("model", key=True),
        Col("mode", key=True),
        Col("critical", right=True),
        Col("NaN/Inf k/n", right=True),
        Col("NaN/Inf rate", right=True),
        Col("NaN/Inf 95% CI", right=True, spill=1),
        Col("finite k/n", right=True),
        Col("finite rate", right=True),
        Col("finite 95% CI", right=True, spill=1),
    )
    rows = tuple(
        (
            s.model,
            s.mode,
            str(s.critical),
            f"{s.nan}/{s.n}",
            pct(s.nan_rate),
            interval(s.nan_low, s.nan_high),
            f"{s.finite}/{s.n}",
            pct(s.finite_rate),
            interval(s.finite_low, s.finite_high),
        )
        for s in c.split
    )
    out: list[Block] = [
        TextTable(f"{store}Critical SDCs with NaN/Inf in the outputs and without, 95% intervals", cols, rows)
    ]
    out += [store + sentence(x) for x in c.comparisons]
    hit = [b for b in c.bits if b.k]
    if hit:
        cols = (
            Col("model", key=True),
            Col("mode", key=True),
            Col("bit", key=True, right=True),
            Col("field", spill=1),
            Col("critical k/n", right=True),
            Col("rate", right=True),
            Col("95% CI", right=True, spill=2),
            Col("share", right=True),
            Col("NaN/Inf", right=True),
        )
        rows = tuple(
            (
                b.model,
                b.mode,
                str(b.bit),
                b.field,
                f"{b.k}/{b.n}",
                pct(b.rate),
                interval(b.ci_low, b.ci_high),
                pct(b.share),
                str(b.nan),
            )
            for b in hit
        )
        out.append(
            TextTable(
                f"{store}{bit_modes(hit)} critical SDCs per flipped bit (bits with none left out), 95% intervals",
                cols,
                rows,
            )
        )
    return out


def fit_text(reports: list[StoreReport], raw: RawFit) -> list[Block]:
    out: list[Block] = [
        f"FIT roll-up: {raw.describe()} (failures per 10^9 device-hours; interval = AVF interval x raw)."
    ]
    if not any(r.fit(raw) for r in reports):
        return out + ["No injection has a result yet: nothing to roll up."]
    multi = len(reports) > 1
    cols = ((Col("store", key=True),) if multi else ()) + (
        Col("model", key=True),
        Col("mode", key=True),
        Col("outcome", key=True),
        Col("AVF", right=True),
        Col("FIT", right=True),
        Col("95% CI", right=True),
    )
    rows = tuple(
        ((r.identity.label,) if multi else ())
        + (f.model, f.mode, f.outcome, f"{100 * f.avf:.2f}%", f"{f.fit:.4g}", f"[{f.fit_low:.4g}, {f.fit_high:.4g}]")
        for r in reports
        for f in r.fit(raw)
    )
    return out + [TextTable("FIT per model x mode, 95% intervals", cols, rows)]
