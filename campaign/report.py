"""AVF tables, baseline-versus-hardened comparisons and exports, computed from the store."""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from campaign.classify import COUNTED, CRITICAL_SDC, NOT_INJECTED, OUTCOMES
from campaign.config import Config
from campaign.errors import UserError
from campaign.stats import Ratio, proportion, rate_ratio
from campaign.store import Store

CSV_COLUMNS = ("model", "mode", "outcome", "k", "n", "rate", "ci_low", "ci_high")
EXPORT_COLUMNS = ("site_id", "model", "mode", "backend", "isolation", "layer", "layer_index", "image", "element",
                  "bit", "width", "value_seed", "kernel", "kcount", "igid", "iid", "op_seed", "bit_seed", "value",
                  "outcome", "images_changed", "nan", "max_abs_diff", "semantics",
                  "detail", "runtime_s", "finished")


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


def avf_rows(store: Store) -> list[AvfRow]:
    counts = store.outcome_counts()
    config = Config.from_json(store.campaign().config)
    rows = []
    for model in config.models:
        for mode in config.modes:
            c = counts.get((model, mode), {})
            n = sum(c.get(o, 0) for o in COUNTED)
            for outcome in OUTCOMES:
                k = c.get(outcome, 0)
                total = n + c.get(NOT_INJECTED, 0) if outcome == NOT_INJECTED else n
                r = proportion(k, total)
                rows.append(AvfRow(model, mode, outcome, k, total, r.rate, r.low, r.high))
    return rows


def comparisons(store: Store, rows: list[AvfRow]) -> list[Comparison]:
    """Critical-SDC rate of the reference model over each other model's, per mode."""
    config = Config.from_json(store.campaign().config)
    crit = {(r.model, r.mode): r for r in rows if r.outcome == CRITICAL_SDC}
    out = []
    for mode in config.modes:
        ref = crit[(config.reference, mode)]
        for model in config.models:
            if model == config.reference:
                continue
            cand = crit[(model, mode)]
            out.append(Comparison(mode, config.reference, model, ref, cand, rate_ratio(ref.k, ref.n, cand.k, cand.n)))
    return out


def write_csv(rows: list[AvfRow], path: Path) -> None:
    with _open_for_writing(path) as f:
        w = csv.writer(f)
        w.writerow(CSV_COLUMNS)
        for r in rows:
            w.writerow([r.model, r.mode, r.outcome, r.k, r.n, _num(r.rate), _num(r.ci_low), _num(r.ci_high)])


def export(store: Store, path: Path) -> int:
    """One row per injection; returns the number of rows written."""
    n = 0
    with _open_for_writing(path) as f:
        w = csv.writer(f)
        w.writerow(EXPORT_COLUMNS)
        for r in store.export_rows():
            r["layer_index"], r["layer"] = r["layer"], r.pop("layer_name")
            r["nan"] = int(r["nan"])
            w.writerow([r[c] if r[c] is not None else "" for c in EXPORT_COLUMNS])
            n += 1
    return n


def _num(x: float) -> str:
    return "" if x != x else f"{x:.6f}"


def _open_for_writing(path: Path):
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return open(path, "w", newline="")
    except OSError as e:
        raise UserError(f"cannot write {path} ({e.strerror}).") from None
