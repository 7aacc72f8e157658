"""AVF tables, baseline-versus-hardened comparisons, per-layer breakdowns and the campaign's
identity, computed from a store. Every output format (terminal, CSV, JSON, HTML) is rendered
from one StoreReport, so they cannot disagree; the store is read with three aggregate queries,
whatever its size.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import TextIO

from fi_campaign.classify import COUNTED, CRITICAL_SDC, NOT_INJECTED, OUTCOMES
from fi_campaign.config import Config
from fi_campaign.errors import UserError
from fi_campaign.outputs import Output, replacing, write_text
from fi_campaign.report.causes import Causes
from fi_campaign.report.causes import causes as find_causes
from fi_campaign.report.causes import csv_rows as cause_rows
from fi_campaign.report.causes import sentence as cause_sentence
from fi_campaign.report.causes import write_csv as write_cause_table
from fi_campaign.report.fit import FitRow, RawFit, fit_rows
from fi_campaign.stats import Ratio, proportion, rate_ratio
from fi_campaign.store import (
    CampaignRecord,
    CountCheck,
    FaultModelRecord,
    ModelRecord,
    RegretRecord,
    ResultGroup,
    Store,
    StratumTally,
    Versions,
    WorkloadRecord,
)
from fi_campaign.stratified import StratumCount, stratified_proportion

CSV_COLUMNS = ("model", "mode", "outcome", "k", "n", "rate", "ci_low", "ci_high")
STRATIFIED_INTERVAL = (
    "stratified estimate sum W_h k_h / n_h; Clopper-Pearson at the effective sample size p (1 - p) / v "
    "(Korn-Graubard), strata without an event (or with nothing else) at an empirical-Bayes shrunk rate in v"
)
CONFIDENCE = 0.95
JSON_FORMAT = "fi-campaign-report"
JSON_VERSION = 1


@dataclass(frozen=True)
class AvfRow:
    model: str
    mode: str
    outcome: str
    k: int
    n: int  # results that count: every outcome but not_injected (for not_injected: all results)
    rate: float
    ci_low: float
    ci_high: float
    # sampling stratified: the simple random sample of the same precision (NaN until every
    # stratum has a result); None for a simple random plan, whose k/n is that sample
    srs_equivalent: float | None = None


@dataclass(frozen=True)
class Comparison:
    mode: str
    reference: str
    candidate: str
    reference_rate: AvfRow
    candidate_rate: AvfRow
    ratio: Ratio
    undefined: str | None = None  # why the ratio is undefined, in words; None when it is defined


@dataclass(frozen=True)
class Stratum:
    """What happened to one model x mode's planned sites."""

    model: str
    mode: str
    planned: int
    done: int
    counted: int  # results in the AVF denominator
    not_injected: int
    nan: int  # results with NaN/Inf in the outputs, whatever their outcome


@dataclass(frozen=True, kw_only=True)
class SamplingRow:
    """A stratified model x mode: how it was stratified, what its critical-SDC estimate cost, and
    what a simple random sample would have needed for the same interval."""

    model: str
    mode: str
    by: tuple[str, ...]
    strata: int
    unsampled: int  # strata without a counted result yet
    injections: int  # counted injections run
    rate: float
    ci_low: float
    ci_high: float
    srs_equivalent: float  # NaN while a stratum has no result

    @property
    def saving(self) -> float:
        """How many times fewer injections than a simple random sample of the same precision."""
        return self.srs_equivalent / self.injections if self.injections and self.srs_equivalent > 0 else math.nan


@dataclass(frozen=True, kw_only=True)
class StratumRow:
    """One sampling stratum of a stratified model x mode: its share and its critical SDCs."""

    model: str
    mode: str
    stratum: str
    weight: float
    n: int
    k: int
    rate: float


@dataclass(frozen=True)
class UnitRow:
    """Critical SDCs of the injections that landed in one unit: a layer (framework level) or a
    kernel and instruction group (NVBitFI). ``rate`` is conditional on a fault landing there;
    ``share`` is the unit's part of the stratum's critical SDCs."""

    model: str
    mode: str
    unit: str
    layer: int | None
    layer_name: str | None
    kernel: str | None
    igid: int | None
    n: int
    k: int
    rate: float
    ci_low: float
    ci_high: float
    share: float
    not_injected: int
    nan: int


@dataclass(frozen=True, kw_only=True)
class Identity:
    """Which campaign a report is of: the store, the plan's record and what the results hold."""

    label: str
    path: str
    name: str
    seed: int
    created: str
    first_result: str | None
    last_result: str | None
    backend: str
    isolation: str
    device: str
    dialect: str | None  # backend nvbitfi: which injector build
    reference: str
    injections: int  # planned per model x mode
    config: dict
    versions: Versions
    models: dict[str, ModelRecord]
    workload: WorkloadRecord
    fault_model: FaultModelRecord
    results_by: tuple[str, ...]  # backend/isolation pairs found in the results

    def to_dict(self) -> dict:
        """The JSON report's identity: the records as the store holds them, the workload without
        its image index list (it can be long; its digest is kept)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        workload = self.workload.to_dict()
        del workload["indices"]
        return {
            **out,
            "versions": self.versions.to_dict(),
            "models": {k: m.to_dict() for k, m in self.models.items()},
            "workload": workload,
            "fault_model": self.fault_model.to_dict(),
            "results_by": list(self.results_by),
        }


@dataclass(frozen=True)
class StoreReport:
    identity: Identity
    strata: list[Stratum]
    avf: list[AvfRow]
    comparisons: list[Comparison]
    unit_kind: str  # "layer" or "kernel"
    breakdown: list[UnitRow]
    regret: list[RegretRecord]
    counts: list[CountCheck] = field(default_factory=list)  # backend nvbitfi: injector vs profile counts
    count_notes: list[str] = field(default_factory=list)  # the same, one sentence each
    causes: Causes = field(default_factory=lambda: Causes([], [], []))
    sampling: list[SamplingRow] = field(default_factory=list)  # sampling stratified: per model x mode
    sampling_strata: list[StratumRow] = field(default_factory=list)

    def fit(self, raw: RawFit | None) -> list[FitRow]:
        return fit_rows(self.avf, raw) if raw else []


# --- pure computations ---------------------------------------------------------------------------


def avf_from_counts(
    models: Iterable[str], modes: Iterable[str], counts: dict[tuple[str, str], dict[str, int]]
) -> list[AvfRow]:
    """Each outcome of each model x mode as k/n with its interval; not_injected is a share of
    all results and stays out of every other denominator."""
    rows = []
    for model in models:
        for mode in modes:
            c = counts.get((model, mode), {})
            n = sum(c.get(o, 0) for o in COUNTED)
            for outcome in OUTCOMES:
                k = c.get(outcome, 0)
                total = n + c.get(NOT_INJECTED, 0) if outcome == NOT_INJECTED else n
                r = proportion(k, total, CONFIDENCE)
                rows.append(
                    AvfRow(
                        model=model, mode=mode, outcome=outcome, k=k, n=total, rate=r.rate, ci_low=r.low, ci_high=r.high
                    )
                )
    return rows


def stratified_avf(models: Iterable[str], modes: Iterable[str], tallies: list[StratumTally]) -> list[AvfRow]:
    """``avf_from_counts`` for a stratified plan: each outcome's stratified estimate over the
    strata's results (not_injected: a share of each stratum's results), its interval, and the
    simple random sample of the same precision."""
    rows = []
    for model in models:
        for mode in modes:
            mine = [t for t in tallies if (t.model, t.mode) == (model, mode)]
            for outcome in OUTCOMES:
                r = stratified_proportion(
                    [
                        StratumCount(
                            label=t.stratum,
                            weight=t.weight,
                            n=sum(t.outcomes.values()) if outcome == NOT_INJECTED else counted(t.outcomes),
                            k=t.outcomes.get(outcome, 0),
                        )
                        for t in mine
                    ],
                    CONFIDENCE,
                )
                rows.append(
                    AvfRow(
                        model=model,
                        mode=mode,
                        outcome=outcome,
                        k=r.k,
                        n=r.n,
                        rate=r.rate,
                        ci_low=r.low,
                        ci_high=r.high,
                        srs_equivalent=r.srs_equivalent,
                    )
                )
    return rows


def counted(outcomes: dict[str, int]) -> int:
    return sum(outcomes.get(o, 0) for o in COUNTED)


def sampling_rows(config: Config, avf: list[AvfRow], tallies: list[StratumTally]) -> list[SamplingRow]:
    """One row per stratified model x mode; none for a simple random plan."""
    if not config.sampling.stratified:
        return []
    out = []
    for r in avf:
        if r.outcome != CRITICAL_SDC:
            continue
        mine = [t for t in tallies if (t.model, t.mode) == (r.model, r.mode)]
        out.append(
            SamplingRow(
                model=r.model,
                mode=r.mode,
                by=config.sampling.keys(r.mode),
                strata=len(mine),
                unsampled=sum(counted(t.outcomes) == 0 for t in mine),
                injections=r.n,
                rate=r.rate,
                ci_low=r.ci_low,
                ci_high=r.ci_high,
                srs_equivalent=math.nan if r.srs_equivalent is None else r.srs_equivalent,
            )
        )
    return out


def strata_rows(tallies: list[StratumTally]) -> list[StratumRow]:
    return [
        StratumRow(
            model=t.model,
            mode=t.mode,
            stratum=t.stratum,
            weight=t.weight,
            n=counted(t.outcomes),
            k=t.outcomes.get(CRITICAL_SDC, 0),
            rate=t.outcomes.get(CRITICAL_SDC, 0) / counted(t.outcomes) if counted(t.outcomes) else math.nan,
        )
        for t in tallies
    ]


def effective(row: AvfRow) -> tuple[float, float]:
    """(k, n) of a row as the ratio's interval reads it: the counts of a simple random plan, the
    effective counts (rate x, and, the simple-random equivalent) of a stratified one."""
    if row.srs_equivalent is None:
        return row.k, row.n
    if not row.srs_equivalent > 0:
        return 0.0, 0.0
    return row.rate * row.srs_equivalent, row.srs_equivalent


def compare(reference: str, models: Iterable[str], modes: Iterable[str], rows: list[AvfRow]) -> list[Comparison]:
    """Critical-SDC rate of the reference model over each other model's, per mode (for a
    stratified plan, the Katz interval of the effective counts: ``stratified.stratified_ratio``)."""
    crit = {(r.model, r.mode): r for r in rows if r.outcome == CRITICAL_SDC}
    out = []
    for mode in modes:
        ref = crit[(reference, mode)]
        for model in models:
            if model != reference:
                cand = crit[(model, mode)]
                out.append(
                    Comparison(
                        mode=mode,
                        reference=reference,
                        candidate=model,
                        reference_rate=ref,
                        candidate_rate=cand,
                        ratio=rate_ratio(*effective(ref), *effective(cand), CONFIDENCE),
                        undefined=why_undefined(ref, cand),
                    )
                )
    return out


def why_undefined(ref: AvfRow, cand: AvfRow) -> str | None:
    """Why two critical-SDC rates have no ratio: a model without results yet is not a model
    without critical SDCs, and a reader must not take one for the other."""
    empty = [r.model for r in (ref, cand) if r.n == 0]
    if len(empty) == 2:
        return f"no results yet for {ref.model} or {cand.model}"
    if empty:
        return f"no results yet for {empty[0]}"
    if ref.k == 0 and cand.k == 0:
        return f"both have results ({ref.n} and {cand.n}) and neither has a critical SDC"
    return None


def counts_by_stratum(groups: Iterable[ResultGroup]) -> dict[tuple[str, str], dict[str, int]]:
    out: dict[tuple[str, str], dict[str, int]] = {}
    for g in groups:
        c = out.setdefault((g.model, g.mode), {})
        c[g.outcome] = c.get(g.outcome, 0) + g.count
    return out


def strata(
    models: Iterable[str], modes: Iterable[str], progress: list[tuple[str, str, int, int]], groups: list[ResultGroup]
) -> list[Stratum]:
    planned = {(a, b): (done, total) for a, b, done, total in progress}
    out = []
    for model in models:
        for mode in modes:
            mine = [g for g in groups if (g.model, g.mode) == (model, mode)]
            done, total = planned.get((model, mode), (0, 0))
            out.append(
                Stratum(
                    model=model,
                    mode=mode,
                    planned=total,
                    done=done,
                    counted=sum(g.count for g in mine if g.outcome in COUNTED),
                    not_injected=sum(g.count for g in mine if g.outcome == NOT_INJECTED),
                    nan=sum(g.nan for g in mine),
                )
            )
    return out


def unit_label(kind: str, g: ResultGroup) -> str:
    if kind == "layer":
        return f"{g.layer} {g.layer_name}" if g.layer is not None else "(no layer)"
    return f"{g.kernel or '(no kernel)'} / igid {g.igid}"


def breakdown(kind: str, models: Iterable[str], modes: Iterable[str], groups: list[ResultGroup]) -> list[UnitRow]:
    """Critical-SDC rate per unit with its interval, in layer order (or kernel, igid order)."""
    cells: dict[tuple, dict] = {}
    for g in groups:
        unit = (g.layer, g.layer_name) if kind == "layer" else (g.kernel, g.igid)
        c = cells.setdefault((g.model, g.mode, unit), {"g": g, "n": 0, "k": 0, "ni": 0, "nan": 0})
        c["n"] += g.count if g.outcome in COUNTED else 0
        c["k"] += g.count if g.outcome == CRITICAL_SDC else 0
        c["ni"] += g.count if g.outcome == NOT_INJECTED else 0
        c["nan"] += g.nan
    crit = {
        (m, d): sum(c["k"] for (m2, d2, _), c in cells.items() if (m2, d2) == (m, d)) for m in models for d in modes
    }
    rank = {(m, d): i for i, (m, d) in enumerate((m, d) for m in models for d in modes)}

    def order(key: tuple) -> tuple:
        model, mode, unit = key
        missing_last = [(x is None, x if x is not None else 0) for x in unit]
        return (rank.get((model, mode), len(rank)), model, mode, *missing_last)

    out = []
    for key in sorted(cells, key=order):
        model, mode, _ = key
        c, g = cells[key], cells[key]["g"]
        r = proportion(c["k"], c["n"], CONFIDENCE)
        total = crit.get((model, mode), 0)
        out.append(
            UnitRow(
                model=model,
                mode=mode,
                unit=unit_label(kind, g),
                layer=g.layer if kind == "layer" else None,
                layer_name=g.layer_name if kind == "layer" else None,
                kernel=g.kernel if kind == "kernel" else None,
                igid=g.igid if kind == "kernel" else None,
                n=c["n"],
                k=c["k"],
                rate=r.rate,
                ci_low=r.low,
                ci_high=r.high,
                share=c["k"] / total if total else math.nan,
                not_injected=c["ni"],
                nan=c["nan"],
            )
        )
    return out


def identity(
    label: str, path: str | Path, record: CampaignRecord, config: Config, groups: list[ResultGroup]
) -> Identity:
    return Identity(
        label=label,
        path=str(path),
        name=record.name,
        seed=record.seed,
        created=record.created,
        first_result=min((g.first for g in groups), default=None),
        last_result=max((g.last for g in groups), default=None),
        backend=config.backend,
        isolation=config.isolation,
        device=config.device,
        dialect=config.nvbitfi.dialect if config.backend == "nvbitfi" else None,
        reference=config.reference,
        injections=config.injections,
        config=json.loads(config.to_json()),
        versions=record.versions,
        models=record.models,
        workload=record.workload,
        fault_model=record.fault_model,
        results_by=tuple(sorted({f"{g.backend}/{g.isolation}" for g in groups})),
    )


def store_labels(paths: list[Path]) -> list[str]:
    """Short names for stores side by side: the file name, or the whole path where two share one."""
    names = [p.name for p in paths]
    return [n if names.count(n) == 1 else str(p) for n, p in zip(names, paths, strict=False)]


# --- from a store ----------------------------------------------------------------------------------


def build(store: Store, label: str | None = None, reference: str | None = None) -> StoreReport:
    """``reference`` replaces the campaign's reference model in every comparison."""
    record = store.campaign()
    config = Config.from_json(record.config)
    models, modes = list(config.models), list(config.modes)
    if reference is not None and reference not in models:
        raise UserError(
            f"--reference {reference} is not a model of campaign '{record.name}' in {store.path} "
            f"(its models: {', '.join(models)})."
        )
    ref = reference or config.reference
    groups = store.result_groups()
    tallies = store.stratum_tallies() if config.sampling.stratified else []
    rows = (
        stratified_avf(models, modes, tallies)
        if config.sampling.stratified
        else avf_from_counts(models, modes, counts_by_stratum(groups))
    )
    kind = "kernel" if config.backend == "nvbitfi" else "layer"
    checks = store.count_checks() if config.backend == "nvbitfi" else []
    ident = replace(identity(label or store.name, store.label, record, config, groups), reference=ref)
    return StoreReport(
        identity=ident,
        strata=strata(models, modes, [(a, b, d, config.budget(p)) for a, b, d, p in store.progress()], groups),
        avf=rows,
        comparisons=compare(ref, models, modes, rows),
        unit_kind=kind,
        breakdown=breakdown(kind, models, modes, groups),
        regret=store.regret_rows(),
        counts=checks,
        count_notes=[count_sentence(c, config.nvbitfi.dialect) for c in checks] + _program_notes(config),
        causes=find_causes(
            ref, models, modes, groups, store.bit_groups(), tallies, {k: m.dtype for k, m in record.models.items()}
        ),
        sampling=sampling_rows(config, rows, tallies),
        sampling_strata=strata_rows(tallies),
    )


def _program_notes(config: Config) -> list[str]:
    """What decides critical_sdc for the user's own program (config workload), said plainly."""
    if config.workload is None:
        return []
    from fi_campaign.workload.own import critical_note

    return [critical_note(config.workload)]


def count_sentence(c: CountCheck, dialect: str) -> str:
    """How the injector's own counts compared with the profile's, for one model and group."""
    from fi_campaign.nvbitfi_tools.isa import dialect as get_dialect

    group = get_dialect(dialect).group_name(c.igid)
    head = f"{c.model} {group}: the injector's count of {c.launches} launch{'es' if c.launches != 1 else ''} is known"
    if not c.over and not c.under:
        return head + " and each equals the profile's."
    ratio = f"{c.ratio_low:.2f}x" if c.ratio_low == c.ratio_high else f"{c.ratio_low:.2f}x to {c.ratio_high:.2f}x"
    text = (
        f"{head}; {c.over + c.under} disagree with the profile (profile/injector {ratio}): "
        f"{c.redrawn} sites were re-drawn within the injector's counts ({c.rejected_runs} runs spent on rejected "
        "sites)"
    )
    if c.under:
        text += (
            f"; in {c.under} launches the injector executes more than the profile counts, and those extra "
            "instructions are never drawn"
        )
    return text + "."


def verdict(c: Comparison) -> str:
    """One sentence a reader can quote: how the critical-SDC rates compare, and whether the
    difference is beyond chance at the report's confidence."""
    r, pct = c.ratio, f"{100 * CONFIDENCE:g}%"
    if r.value != r.value:
        return f"{c.mode}: the ratio of critical-SDC rates {c.reference}/{c.candidate} is undefined ({c.undefined})."
    note = " (0.5 added to each count because one is zero)" if r.corrected else ""
    size = (
        f"{c.candidate}'s critical-SDC rate is {r.value:.2f}x lower than {c.reference}'s"
        if r.value >= 1
        else f"{c.candidate}'s critical-SDC rate is {1 / r.value:.2f}x higher than {c.reference}'s"
    )
    if r.significant:
        change = "reduction" if r.value > 1 else "increase"
        judged = f"the {change} is significant (the {pct} interval excludes 1)"
    else:
        judged = f"the difference is not significant (the {pct} interval includes 1)"
    return f"{c.mode}: {size} (ratio {r.value:.2f}, {pct} CI [{r.low:.2f}, {r.high:.2f}]){note}; {judged}."


# --- CSV and JSON ----------------------------------------------------------------------------------


def write_csv(rows: list[AvfRow], out: Output, stores: list[str] | None = None) -> None:
    """The AVF table; with ``stores`` (one label per row) a leading store column, for reports
    of several stores."""
    with replacing(out) as temp, open(temp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow((("store",) if stores else ()) + CSV_COLUMNS)
        for i, r in enumerate(rows):
            w.writerow(
                ([stores[i]] if stores else [])
                + [r.model, r.mode, r.outcome, r.k, r.n, num(r.rate), num(r.ci_low), num(r.ci_high)]
            )


def write_avf_csv(reports: list[StoreReport], out: Output) -> None:
    if len(reports) == 1:
        return write_csv(reports[0].avf, out)
    rows = [(rep.identity.label, r) for rep in reports for r in rep.avf]
    write_csv([r for _, r in rows], out, [label for label, _ in rows])


def write_causes_csv(reports: list[StoreReport], out: Output) -> None:
    multi = len(reports) > 1
    write_cause_table(
        [(rep.identity.label if multi else None, cause_rows(rep.causes)) for rep in reports], out, _csv_file
    )


@contextmanager
def _csv_file(out: Output) -> Iterator[TextIO]:
    with replacing(out) as temp, open(temp, "w", newline="") as f:
        yield f


def to_json(reports: list[StoreReport], raw: RawFit | None, generated: str) -> dict:
    """The documented shape (docs/REPORTS.md); NaN (a rate of nothing) becomes null."""
    doc = {
        "format": JSON_FORMAT,
        "version": JSON_VERSION,
        "generated": generated,
        "confidence": CONFIDENCE,
        "interval": "Wilson score; exact Clopper-Pearson at k = 0 or k = n",
        "ratio_interval": "Katz log-scale; 0.5 added to each k and n when a count is zero",
        "fit_input": None
        if raw is None
        else {**asdict(raw), "device_rate": raw.device_rate, "formula": "FIT = raw device FIT x AVF"},
        "stores": [_store_json(rep, raw) for rep in reports],
    }
    return {k: _finite(v) for k, v in doc.items()}


def _store_json(rep: StoreReport, raw: RawFit | None) -> dict:
    return {
        "label": rep.identity.label,
        "identity": rep.identity.to_dict(),
        "strata": [asdict(s) for s in rep.strata],
        "avf": [asdict(r) for r in rep.avf],
        "comparisons": [
            {
                "mode": c.mode,
                "reference": c.reference,
                "candidate": c.candidate,
                "reference_k": c.reference_rate.k,
                "reference_n": c.reference_rate.n,
                "candidate_k": c.candidate_rate.k,
                "candidate_n": c.candidate_rate.n,
                "ratio": c.ratio.value,
                "ci_low": c.ratio.low,
                "ci_high": c.ratio.high,
                "corrected": c.ratio.corrected,
                "significant": c.ratio.significant,
                "sentence": verdict(c),
            }
            for c in rep.comparisons
        ],
        "breakdown": {"unit": rep.unit_kind, "rows": [asdict(u) for u in rep.breakdown]},
        "fit": [asdict(f) for f in rep.fit(raw)],
        "regret": [asdict(r) for r in rep.regret],
        "launch_counts": [{**asdict(c), "sentence": t} for c, t in zip(rep.counts, rep.count_notes, strict=False)],
        "causes": _causes_json(rep.causes),
        "sampling": _sampling_json(rep),
    }


def _sampling_json(rep: StoreReport) -> dict:
    """How the store's sites were drawn, and for a stratified plan each model x mode's estimate,
    its cost and its simple-random equivalent, and every stratum's share and results."""
    sampling = rep.identity.config.get("sampling") or {"method": "simple"}
    if sampling.get("method") != "stratified":
        return {"method": "simple"}
    return {
        **sampling,
        "interval": STRATIFIED_INTERVAL,
        "estimates": [{**asdict(r), "saving": r.saving} for r in rep.sampling],
        "strata": [asdict(t) for t in rep.sampling_strata],
    }


def _causes_json(c: Causes) -> dict:
    def ratio(r: Ratio) -> dict:
        return {
            "ratio": r.value,
            "ci_low": r.low,
            "ci_high": r.high,
            "corrected": r.corrected,
            "significant": r.significant,
        }

    return {
        "split": [asdict(s) for s in c.split],
        "comparisons": [
            {
                "mode": x.mode,
                "reference": x.reference,
                "candidate": x.candidate,
                "reference_k": x.reference_k,
                "reference_finite": x.reference_finite,
                "reference_n": x.reference_n,
                "candidate_k": x.candidate_k,
                "candidate_finite": x.candidate_finite,
                "candidate_n": x.candidate_n,
                "with_nan": ratio(x.with_nan),
                "without_nan": ratio(x.without_nan),
                "sentence": cause_sentence(x),
            }
            for x in c.comparisons
        ],
        "bits": [asdict(b) for b in c.bits],
    }


def _finite(x: object) -> object:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    return x


def write_json(doc: dict, out: Output) -> None:
    write_text(out, json.dumps(doc, indent=2) + "\n")


def num(x: float) -> str:
    """The CSV's number format: six decimals of a fraction; empty for an undefined rate."""
    return "" if x != x else f"{x:.6f}"
