"""`status`: a store's progress without running anything, per model x mode (done / planned, sites
held, outcomes so far, the critical-SDC interval, the injection rate and the ETA) and per worker.

Two rates measure different things and are labelled so: a model x mode's is its results over the
time its injections ran (store.timing: pauses, model loading and golden runs left out); a
worker's is its results over its whole life, from its start to its last heartbeat, loading,
golden runs and every model x mode it ran included. A worker is therefore slower than the
strata it ran.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from fi_campaign.classify import COUNTED, CRITICAL_SDC
from fi_campaign.report.text import Block, Col, TextTable
from fi_campaign.stats import Rate, proportion
from fi_campaign.store import Store, StratumTally, WorkerStatus
from fi_campaign.stratified import StratifiedRate, StratumCount, stratified_proportion

RATE_NOTE = (
    "inj/s: a model x mode's results over the time its injections ran; a worker's over its whole "
    "life, from its start to its last heartbeat (model loading, golden runs and waits included)."
)


@dataclass(frozen=True)
class StratumProgress:
    model: str
    mode: str
    done: int
    planned: int
    running: int  # sites held by a worker now
    outcomes: dict[str, int]
    # critical SDCs of the counted results with their 95% interval (the stratified estimate, for a
    # stratified plan); None: no result
    critical: Rate | StratifiedRate | None
    rate: float | None  # results per second of injection time; None before any was timed
    eta_s: float | None  # injection time the remaining sites need at that rate; None: done or no rate


@dataclass(frozen=True)
class Status:
    name: str
    label: str
    strata: list[StratumProgress]
    workers: list[WorkerStatus]
    count_notes: list[str]  # backend nvbitfi: the injector's launch counts against the profile's


def stratum_progress(
    model: str, mode: str, done: int, planned: int, running: int, outcomes: dict[str, int], busy_s: float
) -> StratumProgress:
    n = sum(outcomes.get(o, 0) for o in COUNTED)
    rate = done / busy_s if busy_s > 0 else None
    return StratumProgress(
        model,
        mode,
        done,
        planned,
        running,
        outcomes,
        proportion(outcomes.get(CRITICAL_SDC, 0), n) if n else None,
        rate,
        (planned - done) / rate if rate and done < planned else None,
    )


def campaign_status(store: Store) -> Status:
    from fi_campaign.config import Config
    from fi_campaign.report.summary import count_sentence

    record = store.campaign()
    config = Config.from_json(record.config)
    strata = [
        stratum_progress(s.model, s.mode, s.done, config.budget(s.planned), s.running, s.outcomes, s.busy_s)
        for s in store.stratum_status()
    ]
    if config.sampling.stratified:
        tallies = store.stratum_tallies()
        strata = [replace(s, critical=stratified_critical(s, tallies)) for s in strata]
    notes = (
        [count_sentence(c, config.nvbitfi.dialect) for c in store.count_checks()] if config.backend == "nvbitfi" else []
    )
    return Status(record.name, store.label, strata, store.workers(), notes)


def stratified_critical(s: StratumProgress, tallies: list[StratumTally]) -> StratifiedRate | None:
    mine = [t for t in tallies if (t.model, t.mode) == (s.model, s.mode)]
    counts = [
        StratumCount(
            label=t.stratum,
            weight=t.weight,
            n=sum(t.outcomes.get(o, 0) for o in COUNTED),
            k=t.outcomes.get(CRITICAL_SDC, 0),
        )
        for t in mine
    ]
    return stratified_proportion(counts) if any(c.n for c in counts) else None


def status_text(status: Status) -> list[Block]:
    cols: tuple[Col, ...] = (
        Col("model", key=True),
        Col("mode", key=True),
        Col("done/planned", key=True, right=True),
        Col("running", right=True, spill=1),
        Col("outcomes", spill=2),
        Col("critical SDC [95% CI]"),
        Col("inj/s", right=True),
        Col("ETA", right=True),
    )
    stratified = any(isinstance(s.critical, StratifiedRate) for s in status.strata)
    if stratified:
        cols += (Col("simple random", right=True, spill=3),)
    rows = tuple(
        (
            s.model,
            s.mode,
            f"{s.done}/{s.planned}",
            str(s.running),
            " ".join(f"{k}={v}" for k, v in sorted(s.outcomes.items())) or "-",
            "-"
            if s.critical is None
            else f"{100 * s.critical.rate:.2f}% [{100 * s.critical.low:.2f}, {100 * s.critical.high:.2f}]",
            "-" if s.rate is None else f"{s.rate:,.1f}",
            "-" if s.eta_s is None else f"{s.eta_s:,.0f} s",
        )
        + ((srs_text(s.critical),) if stratified else ())
        for s in status.strata
    )
    out: list[Block] = [TextTable(f"campaign '{status.name}' in {status.label}", cols, rows)]
    if stratified:
        out.append(
            "Stratified sampling: the critical-SDC rate is the stratified estimate; done/planned counts "
            "injections; simple random: the injections a simple random sample needs for the same precision."
        )
    if status.workers:
        out += [workers_table(status.workers), RATE_NOTE]
    return out + status.count_notes


def srs_text(critical: Rate | StratifiedRate | None) -> str:
    if not isinstance(critical, StratifiedRate) or not critical.srs_equivalent > 0:
        return "-"
    return f"{critical.srs_equivalent:,.0f} ({critical.srs_equivalent / critical.n:.1f}x)"


def workers_table(workers: list[WorkerStatus]) -> TextTable:
    """Per worker: where it runs (host, Slurm job and array index), its state, its last
    heartbeat and its rate over its whole life; a running worker silent past its lease shows as lost."""
    cols = (
        Col("worker", key=True),
        Col("host"),
        Col("job"),
        Col("array", right=True),
        Col("state", key=True),
        Col("heartbeat", right=True),
        Col("done", right=True),
        Col("inj/s since start", right=True),
    )
    rows = tuple(
        (
            w.owner,
            w.host,
            w.job or "-",
            "-" if w.array_index is None else str(w.array_index),
            w.state,
            f"{w.heartbeat_age_s:,.0f} s ago",
            str(w.done),
            f"{w.rate:,.2f}",
        )
        for w in workers
    )
    return TextTable(f"{len(workers)} workers ({sum(w.state == 'running' for w in workers)} running)", cols, rows)
