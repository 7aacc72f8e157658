"""AVF tables, baseline-versus-hardened comparisons, per-layer breakdowns and the campaign's
identity, computed from a store. Every output format (terminal, CSV, JSON, HTML) is rendered
from one StoreReport, so they cannot disagree; the store is read with two aggregate queries,
whatever its size.
"""
from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable

from campaign.classify import COUNTED, CRITICAL_SDC, NOT_INJECTED, OUTCOMES
from campaign.config import Config
from campaign.errors import UserError
from campaign.fit import FitRow, RawFit, fit_rows
from campaign.stats import Ratio, proportion, rate_ratio
from campaign.store import RegretRecord, ResultGroup, Store

CSV_COLUMNS = ("model", "mode", "outcome", "k", "n", "rate", "ci_low", "ci_high")
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


@dataclass(frozen=True)
class Comparison:
    mode: str
    reference: str
    candidate: str
    reference_rate: AvfRow
    candidate_rate: AvfRow
    ratio: Ratio


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


@dataclass(frozen=True)
class Identity:
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
    versions: dict
    models: dict
    workload: dict  # without the image index list (it can be long; its digest is kept)
    fault_model: dict
    results_by: tuple[str, ...]  # backend/isolation pairs found in the results


@dataclass(frozen=True)
class StoreReport:
    identity: Identity
    strata: list[Stratum]
    avf: list[AvfRow]
    comparisons: list[Comparison]
    unit_kind: str  # "layer" or "kernel"
    breakdown: list[UnitRow]
    regret: list[RegretRecord]

    def fit(self, raw: RawFit | None) -> list[FitRow]:
        return fit_rows(self.avf, raw) if raw else []


# --- pure computations ---------------------------------------------------------------------------


def avf_from_counts(models: Iterable[str], modes: Iterable[str],
                    counts: dict[tuple[str, str], dict[str, int]]) -> list[AvfRow]:
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
                rows.append(AvfRow(model, mode, outcome, k, total, r.rate, r.low, r.high))
    return rows


def compare(reference: str, models: Iterable[str], modes: Iterable[str], rows: list[AvfRow]) -> list[Comparison]:
    """Critical-SDC rate of the reference model over each other model's, per mode."""
    crit = {(r.model, r.mode): r for r in rows if r.outcome == CRITICAL_SDC}
    out = []
    for mode in modes:
        ref = crit[(reference, mode)]
        for model in models:
            if model != reference:
                cand = crit[(model, mode)]
                out.append(Comparison(mode, reference, model, ref, cand,
                                      rate_ratio(ref.k, ref.n, cand.k, cand.n, CONFIDENCE)))
    return out


def counts_by_stratum(groups: Iterable[ResultGroup]) -> dict[tuple[str, str], dict[str, int]]:
    out: dict[tuple[str, str], dict[str, int]] = {}
    for g in groups:
        c = out.setdefault((g.model, g.mode), {})
        c[g.outcome] = c.get(g.outcome, 0) + g.count
    return out


def strata(models: Iterable[str], modes: Iterable[str], progress: list[tuple[str, str, int, int]],
           groups: list[ResultGroup]) -> list[Stratum]:
    planned = {(a, b): (done, total) for a, b, done, total in progress}
    out = []
    for model in models:
        for mode in modes:
            mine = [g for g in groups if (g.model, g.mode) == (model, mode)]
            done, total = planned.get((model, mode), (0, 0))
            out.append(Stratum(model, mode, total, done, sum(g.count for g in mine if g.outcome in COUNTED),
                               sum(g.count for g in mine if g.outcome == NOT_INJECTED), sum(g.nan for g in mine)))
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
    crit = {(m, d): sum(c["k"] for (m2, d2, _), c in cells.items() if (m2, d2) == (m, d))
            for m in models for d in modes}
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
        out.append(UnitRow(model, mode, unit_label(kind, g), g.layer if kind == "layer" else None,
                           g.layer_name if kind == "layer" else None, g.kernel if kind == "kernel" else None,
                           g.igid if kind == "kernel" else None, c["n"], c["k"], r.rate, r.low, r.high,
                           c["k"] / total if total else math.nan, c["ni"], c["nan"]))
    return out


def identity(label: str, path: Path, record, config: Config, groups: list[ResultGroup]) -> Identity:
    workload = {k: v for k, v in record.workload.items() if k != "indices"}
    return Identity(
        label, str(path), record.name, record.seed, record.created,
        min((g.first for g in groups), default=None), max((g.last for g in groups), default=None),
        config.backend, config.isolation, config.device,
        config.nvbitfi.dialect if config.backend == "nvbitfi" else None,
        config.reference, config.injections, json.loads(config.to_json()), record.versions, record.models, workload,
        record.fault_model, tuple(sorted({f"{g.backend}/{g.isolation}" for g in groups})))


def store_labels(paths: list[Path]) -> list[str]:
    """Short names for stores side by side: the file name, or the whole path where two share one."""
    names = [p.name for p in paths]
    return [n if names.count(n) == 1 else str(p) for n, p in zip(names, paths)]


# --- from a store ----------------------------------------------------------------------------------


def build(store: Store, label: str | None = None) -> StoreReport:
    record = store.campaign()
    config = Config.from_json(record.config)
    groups = store.result_groups()
    models, modes = list(config.models), list(config.modes)
    rows = avf_from_counts(models, modes, counts_by_stratum(groups))
    kind = "kernel" if config.backend == "nvbitfi" else "layer"
    return StoreReport(identity(label or store.path.name, store.path, record, config, groups),
                       strata(models, modes, store.progress(), groups), rows,
                       compare(config.reference, models, modes, rows), kind,
                       breakdown(kind, models, modes, groups), store.regret_rows())


def verdict(c: Comparison) -> str:
    """One sentence a reader can quote: how the critical-SDC rates compare, and whether the
    difference is beyond chance at the report's confidence."""
    r, pct = c.ratio, f"{100 * CONFIDENCE:g}%"
    if r.value != r.value:
        return (f"{c.mode}: the ratio of critical-SDC rates {c.reference}/{c.candidate} is undefined "
                "(no critical SDC in either model, or no injections).")
    note = " (0.5 added to each count because one is zero)" if r.corrected else ""
    size = (f"{c.candidate}'s critical-SDC rate is {r.value:.2f}x lower than {c.reference}'s" if r.value >= 1 else
            f"{c.candidate}'s critical-SDC rate is {1 / r.value:.2f}x higher than {c.reference}'s")
    if r.significant:
        change = "reduction" if r.value > 1 else "increase"
        judged = f"the {change} is significant (the {pct} interval excludes 1)"
    else:
        judged = f"the difference is not significant (the {pct} interval includes 1)"
    return (f"{c.mode}: {size} (ratio {r.value:.2f}, {pct} CI [{r.low:.2f}, {r.high:.2f}]){note}; {judged}.")


# --- CSV and JSON ----------------------------------------------------------------------------------


def write_csv(rows: list[AvfRow], path: Path, stores: list[str] | None = None) -> None:
    """The AVF table; with ``stores`` (one label per row) a leading store column, for reports
    of several stores."""
    with open_for_writing(path) as f:
        w = csv.writer(f)
        w.writerow((("store",) if stores else ()) + CSV_COLUMNS)
        for i, r in enumerate(rows):
            w.writerow(([stores[i]] if stores else []) +
                       [r.model, r.mode, r.outcome, r.k, r.n, num(r.rate), num(r.ci_low), num(r.ci_high)])


def write_avf_csv(reports: list[StoreReport], path: Path) -> None:
    if len(reports) == 1:
        return write_csv(reports[0].avf, path)
    rows = [(rep.identity.label, r) for rep in reports for r in rep.avf]
    write_csv([r for _, r in rows], path, [label for label, _ in rows])


def to_json(reports: list[StoreReport], raw: RawFit | None, generated: str) -> dict:
    """The documented shape (docs/REPORTS.md); NaN (a rate of nothing) becomes null."""
    doc = {
        "format": JSON_FORMAT, "version": JSON_VERSION, "generated": generated, "confidence": CONFIDENCE,
        "interval": "Wilson score; exact Clopper-Pearson at k = 0 or k = n",
        "ratio_interval": "Katz log-scale; 0.5 added to each k and n when a count is zero",
        "fit_input": None if raw is None else {**asdict(raw), "device_rate": raw.device_rate,
                                                "formula": "FIT = raw device FIT x AVF"},
        "stores": [_store_json(rep, raw) for rep in reports],
    }
    return _finite(doc)


def _store_json(rep: StoreReport, raw: RawFit | None) -> dict:
    return {
        "label": rep.identity.label,
        "identity": asdict(rep.identity),
        "strata": [asdict(s) for s in rep.strata],
        "avf": [asdict(r) for r in rep.avf],
        "comparisons": [{"mode": c.mode, "reference": c.reference, "candidate": c.candidate,
                         "reference_k": c.reference_rate.k, "reference_n": c.reference_rate.n,
                         "candidate_k": c.candidate_rate.k, "candidate_n": c.candidate_rate.n,
                         "ratio": c.ratio.value, "ci_low": c.ratio.low, "ci_high": c.ratio.high,
                         "corrected": c.ratio.corrected, "significant": c.ratio.significant,
                         "sentence": verdict(c)} for c in rep.comparisons],
        "breakdown": {"unit": rep.unit_kind, "rows": [asdict(u) for u in rep.breakdown]},
        "fit": [asdict(f) for f in rep.fit(raw)],
        "regret": [asdict(r) for r in rep.regret],
    }


def _finite(x):
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    return x


def write_json(doc: dict, path: Path) -> None:
    with open_for_writing(path) as f:
        json.dump(doc, f, indent=2)
        f.write("\n")


def num(x: float) -> str:
    """The CSV's number format: six decimals of a fraction; empty for an undefined rate."""
    return "" if x != x else f"{x:.6f}"


def open_for_writing(path: Path):
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return open(path, "w", newline="")
    except OSError as e:
        raise UserError(f"cannot write {path} ({e.strerror}).") from None


def check_writable(path: Path, folder: bool = False) -> None:
    """Refuse an output that cannot be written before any work is done (a folder for --html,
    a file otherwise), so a bad path costs nothing and leaves nothing half-written."""
    target = path if folder else path.parent
    try:
        if folder and path.exists() and not path.is_dir():
            raise UserError(f"cannot write the report into {path}: it is a file, not a folder.")
        if not folder and path.is_dir():
            raise UserError(f"cannot write {path}: it is a folder.")
        target.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot write {path} ({e.strerror or e}).") from None
    if not os.access(target, os.W_OK | os.X_OK):
        raise UserError(f"cannot write {path} (permission denied).")
