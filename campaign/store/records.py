"""The plain records that cross the store's border: what is planned, run and reported."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CampaignRecord:
    name: str
    seed: int
    config: str
    versions: dict
    models: dict
    workload: dict
    fault_model: dict
    created: str = ""


@dataclass(frozen=True)
class Site:
    id: int
    model: str
    mode: str
    layer: int | None
    layer_name: str | None
    image: int | None
    element: int | None
    bit: int | None
    width: int | None
    value_seed: int | None
    kernel: str | None = None
    kcount: int | None = None
    igid: int | None = None
    iid: int | None = None
    op_seed: float | None = None
    bit_seed: float | None = None
    value: float | None = None


@dataclass(frozen=True)
class LaunchCount:
    """The injector's own count of a group in one launch, next to the profile's."""

    model: str
    igid: int
    kcount: int
    kernel: str
    profile_count: int
    injector_count: int
    site_id: int | None = None  # the run whose log showed it


@dataclass(frozen=True)
class Redraw:
    """A proposal rejected because its instruction index lay past its launch's injector count."""

    site_id: int
    kernel: str
    kcount: int
    iid: int
    injector_count: int
    ran: bool  # a GPU run showed it; False: the count was known from an earlier run


@dataclass(frozen=True)
class Relocation:
    """Where a re-drawn site ended up: the accepted proposal, stored in place of the planned one."""

    kernel: str
    kcount: int
    iid: int


@dataclass(frozen=True)
class InjectionRecord:
    """The injector log's account of one run: what was written, to how many threads."""

    state: str  # injected | not_injected | no_report
    lanes_injected: int
    lanes_reported: int
    opcode: str | None = None
    reg: int | None = None
    mask: int | None = None
    lanes: tuple[tuple[int | None, int | None, int | None], ...] = ()  # (lane, before, after) injected
    log_index: int | None = None
    log_kernel: str | None = None


@dataclass(frozen=True)
class Result:
    site_id: int
    outcome: str
    images_changed: int
    nan: bool
    max_abs_diff: float | None
    backend: str
    isolation: str
    semantics: str
    runtime_s: float
    detail: str | None = None
    # backend nvbitfi: stored beside the result, in the same transaction
    injection: InjectionRecord | None = None
    relocated: Relocation | None = None
    redraws: tuple[Redraw, ...] = ()
    launch_counts: tuple[LaunchCount, ...] = ()


@dataclass(frozen=True)
class CountCheck:
    """Per model and group: how the injector's counts compared with the profile's."""

    model: str
    igid: int
    launches: int  # launches whose injector count is known
    over: int  # the profile counts more than the injector executes (sites re-drawn)
    under: int  # the profile counts less: instructions past its count are never drawn
    ratio_low: float  # profile / injector over the launches that disagree (inf: the injector ran none)
    ratio_high: float
    redrawn: int  # sites with at least one rejected proposal
    rejected_runs: int  # runs spent on proposals rejected by their log


@dataclass(frozen=True)
class RegretRecord:
    """One model's clean and noisy accuracy (paper Fig. 5); fractions, intervals at 95%."""

    model: str
    sha256: str
    label: str
    dataset: str
    source: str
    images: int
    repeats: int
    seed: int
    fault_model: str
    clean: float
    noisy: float
    noisy_low: float
    noisy_high: float
    regret: float
    regret_low: float
    regret_high: float
    created: str = ""


@dataclass(frozen=True)
class ResultGroup:
    """Results sharing model, mode, injection unit (layer, or kernel and instruction group),
    backend and outcome: what every report is computed from, aggregated in SQL so that a store
    of millions of results is one scan."""

    model: str
    mode: str
    layer: int | None
    layer_name: str | None
    kernel: str | None
    igid: int | None
    backend: str
    isolation: str
    outcome: str
    count: int
    nan: int  # results with NaN/Inf in the outputs
    first: str  # earliest and latest finish time (ISO, UTC)
    last: str


@dataclass(frozen=True)
class BitGroup:
    """Results of single-bit sites sharing model, mode, flipped bit and outcome: the per-bit
    breakdown's input (framework level only: an NVBitFI site stores a bit seed, not the bit)."""

    model: str
    mode: str
    bit: int
    outcome: str
    count: int
    nan: int  # results with NaN/Inf in the outputs


@dataclass(frozen=True)
class StratumStatus:
    model: str
    mode: str
    done: int
    planned: int
    running: int  # held by a worker now (or by one that died; freed at the next run)
    outcomes: dict[str, int]
    busy_s: float  # seconds its injections ran, pauses between runs left out (store.timing)


@dataclass(frozen=True)
class Worker:
    """Who a worker is, as it registers with the store: the owner name of the sites it claims,
    and the Slurm job and array index it runs in (None outside Slurm)."""

    owner: str
    host: str
    pid: int
    lease_s: float
    job: str | None = None
    array_index: int | None = None


@dataclass(frozen=True)
class WorkerStatus:
    owner: str
    host: str
    pid: int
    job: str | None
    array_index: int | None
    state: str  # running | finished | stopped | released | failed; "lost": running, silent past its lease
    heartbeat_age_s: float  # seconds since its last heartbeat, on the database's clock
    done: int
    rate: float  # results per second between its start and its last heartbeat
