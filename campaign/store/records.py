"""The plain records that cross the store's border: what is planned, run and reported.

Frozen dataclasses rather than pydantic models: every value is checked once where it enters
(the config's specs, the checkpoint's metadata, the injector's log), the store hands back what
it was given, and the records must stay cheap to build by the million (sites, results) with
nothing to install. The campaign record's sections are stored as JSON columns; each section's
``from_dict`` reads what every earlier version wrote and ``to_dict`` gives back exactly that
mapping. Records are built with keywords.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any, Protocol, TypeVar

from fi_campaign.models.arch import Arch
from fi_campaign.models.noise_names import PAPER
from fi_campaign.models.powerlaw import FaultModelRecord
from fi_campaign.models.sources import SourceRecord

T = TypeVar("T")

__all__ = [
    "BitGroup",
    "CampaignRecord",
    "Columns",
    "CountCheck",
    "FaultModelRecord",
    "InjectionRecord",
    "LaunchCount",
    "LeftOut",
    "ModelRecord",
    "ProfileRecord",
    "Redraw",
    "RegretRecord",
    "Relocation",
    "Result",
    "ResultGroup",
    "ResumePlan",
    "SITE_NAMES",
    "Site",
    "SourceRecord",
    "StratumStatus",
    "StratumTally",
    "TargetsRecord",
    "Versions",
    "Worker",
    "WorkerStatus",
    "WorkloadRecord",
    "unchecked",
]


class Columns(Protocol):
    """A database row by column name: a SQLAlchemy ``RowMapping`` (keyed by names or columns)
    or a plain dict."""

    def __getitem__(self, key: str, /) -> Any: ...


@dataclass(frozen=True, kw_only=True)
class Versions:
    """What planned the campaign: fi-campaign, torch, numpy, Python and the platform."""

    fi_campaign: str
    torch: str
    numpy: str
    python: str
    platform: str

    def to_dict(self) -> dict[str, str]:
        return {
            "fi-campaign": self.fi_campaign,
            "torch": self.torch,
            "numpy": self.numpy,
            "python": self.python,
            "platform": self.platform,
        }

    @classmethod
    def from_dict(cls, d: dict) -> Versions:
        return cls(
            fi_campaign=d["fi-campaign"], torch=d["torch"], numpy=d["numpy"], python=d["python"], platform=d["platform"]
        )


@dataclass(frozen=True, kw_only=True)
class WorkloadRecord:
    """The campaign's fixed inputs: ``count`` of them drawn with ``seed`` from ``source``, their
    indices in the source (the test split for CIFAR) and the digest of what was read. ``kind``
    and the keys after it say how the source is read (the config's ``inputs`` section); a CIFAR
    record writes none of them, as before."""

    source: str
    dataset: str
    count: int
    seed: int
    indices: tuple[int, ...]
    images_sha256: str
    kind: str = "cifar"  # cifar | imagefolder | tensor | function
    size: int | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    labels: str | None = None

    def to_dict(self) -> dict:
        out: dict[str, Any] = {
            "source": self.source,
            "dataset": self.dataset,
            "count": self.count,
            "seed": self.seed,
            "indices": list(self.indices),
            "images_sha256": self.images_sha256,
        }
        if self.kind != "cifar":
            out |= {
                "kind": self.kind,
                "size": self.size,
                "mean": None if self.mean is None else list(self.mean),
                "std": None if self.std is None else list(self.std),
                "labels": self.labels,
            }
        return out

    @classmethod
    def from_dict(cls, d: dict) -> WorkloadRecord:
        return cls(
            source=d["source"],
            dataset=d["dataset"],
            count=d["count"],
            seed=d["seed"],
            indices=tuple(d["indices"]),
            images_sha256=d["images_sha256"],
            kind=d.get("kind", "cifar"),
            size=d.get("size"),
            mean=None if d.get("mean") is None else tuple(d["mean"]),
            std=None if d.get("std") is None else tuple(d["std"]),
            labels=d.get("labels"),
        )


@dataclass(frozen=True, kw_only=True)
class TargetsRecord:
    """The modules a network's faults land in, as planned from its golden run: qualified names
    in the order the sites' layer indices count them, each one's kind (conv, convtranspose,
    linear or other), per-input output shape and multiply-accumulates, and the shapes of one
    input and one output of the network. ``note`` says what the selection left out and why."""

    names: tuple[str, ...]
    kinds: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    macs: tuple[int, ...]
    input_shape: tuple[int, ...]
    input_dtype: str  # float32 | int64
    output_shape: tuple[int, ...]
    note: str | None = None

    def to_dict(self) -> dict:
        return {
            "names": list(self.names),
            "kinds": list(self.kinds),
            "shapes": [list(s) for s in self.shapes],
            "macs": list(self.macs),
            "input_shape": list(self.input_shape),
            "input_dtype": self.input_dtype,
            "output_shape": list(self.output_shape),
            "note": self.note,
        }

    @classmethod
    def from_dict(cls, d: dict) -> TargetsRecord:
        return cls(
            names=tuple(d["names"]),
            kinds=tuple(d["kinds"]),
            shapes=tuple(tuple(s) for s in d["shapes"]),
            macs=tuple(d["macs"]),
            input_shape=tuple(d["input_shape"]),
            input_dtype=d["input_dtype"],
            output_shape=tuple(d["output_shape"]),
            note=d.get("note"),
        )

    @property
    def activation_numel(self) -> int:
        """Per input: every target's output, what a forward pass holds at least."""
        return sum(math.prod(s) for s in self.shapes)


@dataclass(frozen=True, kw_only=True)
class ResumePlan:
    """Delayed start for one model: the resume points kept within ``budget_mb``, what their golden
    tensors take, and the expected share of a whole pass an injection still runs with them
    (``work``) and with every point kept (``work_all``)."""

    layers: tuple[int, ...]
    budget_mb: int
    cache_mb: float
    all_mb: float
    work: float
    work_all: float

    def to_dict(self) -> dict:
        return {
            "layers": list(self.layers),
            "budget_mb": self.budget_mb,
            "cache_mb": self.cache_mb,
            "all_mb": self.all_mb,
            "work": self.work,
            "work_all": self.work_all,
        }

    @classmethod
    def from_dict(cls, d: dict) -> ResumePlan:
        return cls(
            layers=tuple(d["layers"]),
            budget_mb=d["budget_mb"],
            cache_mb=d["cache_mb"],
            all_mb=d["all_mb"],
            work=d["work"],
            work_all=d["work_all"],
        )


@dataclass(frozen=True, kw_only=True)
class LeftOut:
    """Launches an NVBitFI plan left out of the draw, and their share of the group's instructions."""

    launches: int
    instructions: int
    total: int  # the group's instructions in the whole profile
    group: str
    why: str


@dataclass(frozen=True, kw_only=True)
class ProfileRecord:
    """The NVBitFI profile a model's sites were drawn from; re-drawn sites come from the same one."""

    path: str
    sha256: str | None = None
    left_out: LeftOut | None = None  # None: planned before launches were left out

    def to_dict(self) -> dict:
        out: dict = {"path": self.path, "sha256": self.sha256}
        if self.left_out is not None:
            lo = self.left_out
            out["left_out"] = {
                "launches": lo.launches,
                "instructions": lo.instructions,
                "total": lo.total,
                "group": lo.group,
                "why": lo.why,
            }
        return out

    @classmethod
    def from_dict(cls, d: dict) -> ProfileRecord:
        lo = d.get("left_out")
        return cls(
            path=d["path"],
            sha256=d.get("sha256"),
            left_out=None
            if lo is None
            else LeftOut(
                launches=lo["launches"],
                instructions=lo["instructions"],
                total=lo["total"],
                group=lo["group"],
                why=lo["why"],
            ),
        )


@dataclass(frozen=True, kw_only=True)
class ModelRecord:
    """One model of a campaign as planned: its checkpoint (or other source) and the hash of its
    weights, its network, where its accuracy was measured, and what the plan decided for it.

    A fi-campaign checkpoint has an ``arch`` and no ``source``; any other network (a TorchScript
    or exported program, a build function) has its ``source`` and no ``arch``. ``targets`` is
    None when the faults land in every conv and linear output of a CIFAR ResNet, as before.
    ``dtype`` is the number format the network runs in and single_bit flips a bit of; stores
    planned before dtypes existed hold none and read as float32."""

    checkpoint: str  # a path or zoo:NAME, as the config gave it; another source: its file or build
    sha256: str  # of the weights (models.zoo.weights_digest)
    arch: Arch | None
    dataset: str
    clean_accuracy: float | None
    accuracy_on: str
    resume: ResumePlan | None = None  # delayed start; None: whole passes, or planned before it existed
    profile: ProfileRecord | None = None  # backend nvbitfi
    source: SourceRecord | None = None
    targets: TargetsRecord | None = None
    dtype: str = "float32"  # float32 | float16 | bfloat16

    def to_dict(self) -> dict:
        out: dict[str, Any] = {
            "checkpoint": self.checkpoint,
            "sha256": self.sha256,
            "arch": None if self.arch is None else self.arch.to_dict(),
            "dataset": self.dataset,
            "clean_accuracy": self.clean_accuracy,
            "accuracy_on": self.accuracy_on,
        }
        if self.resume is not None:
            out["resume"] = self.resume.to_dict()
        if self.profile is not None:
            out["profile"] = self.profile.to_dict()
        if self.source is not None:
            out["source"] = self.source.to_dict()
        if self.targets is not None:
            out["targets"] = self.targets.to_dict()
        if self.dtype != "float32":
            out["dtype"] = self.dtype
        return out

    @classmethod
    def from_dict(cls, d: dict) -> ModelRecord:
        return cls(
            checkpoint=d["checkpoint"],
            sha256=d["sha256"],
            arch=None if d["arch"] is None else Arch(**d["arch"]),
            dataset=d["dataset"],
            clean_accuracy=d["clean_accuracy"],
            accuracy_on=d["accuracy_on"],
            resume=ResumePlan.from_dict(d["resume"]) if d.get("resume") is not None else None,
            profile=ProfileRecord.from_dict(d["profile"]) if d.get("profile") is not None else None,
            source=SourceRecord.from_dict(d["source"]) if d.get("source") is not None else None,
            targets=TargetsRecord.from_dict(d["targets"]) if d.get("targets") is not None else None,
            dtype=d.get("dtype", "float32"),
        )


@dataclass(frozen=True, kw_only=True)
class CampaignRecord:
    """The campaign row: its config (the config's own JSON) and what the plan recorded beside it."""

    name: str
    seed: int
    config: str  # Config JSON (fi_campaign.config.Config.from_json)
    versions: Versions
    models: dict[str, ModelRecord]
    workload: WorkloadRecord
    fault_model: FaultModelRecord
    created: str = ""

    def json_columns(self) -> dict[str, str]:
        """The campaign table's JSON columns."""
        return {
            "versions": json.dumps(self.versions.to_dict()),
            "models": json.dumps({k: m.to_dict() for k, m in self.models.items()}),
            "workload": json.dumps(self.workload.to_dict()),
            "fault_model": json.dumps(self.fault_model.to_dict()),
        }

    @classmethod
    def from_columns(cls, row: Columns) -> CampaignRecord:
        """From the campaign table's row, as any version wrote it; ValueError if it cannot be read."""
        try:
            return cls(
                name=row["name"],
                seed=row["seed"],
                config=row["config"],
                versions=Versions.from_dict(json.loads(row["versions"])),
                models={k: ModelRecord.from_dict(m) for k, m in json.loads(row["models"]).items()},
                workload=WorkloadRecord.from_dict(json.loads(row["workload"])),
                fault_model=FaultModelRecord.from_dict(json.loads(row["fault_model"])),
                created=row["created"],
            )
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ValueError(f"{type(e).__name__}: {e}") from None


def unchecked(cls: type[T], values: dict[str, Any]) -> T:
    """A frozen dataclass from a value for every one of its fields, without ``__init__``'s one
    ``object.__setattr__`` per field (about 0.4 µs each): for the records the campaign loop makes
    once per injection."""
    obj = object.__new__(cls)
    obj.__dict__.update(values)
    return obj


@dataclass(frozen=True, kw_only=True)
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
    parameter: str | None = None  # weight modes: the qualified parameter name; element indexes it
    stuck: int | None = None  # weight_stuck_at: the value the bit is stuck at
    kernel: str | None = None
    kcount: int | None = None
    igid: int | None = None
    iid: int | None = None
    op_seed: float | None = None
    bit_seed: float | None = None
    value: float | None = None
    stratum: str | None = None  # sampling stratified: the site's stratum and its share
    stratum_weight: float | None = None

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> Site:
        """A site from its values in SITE_NAMES order: a claim of a window of thousands of sites
        spent 10 µs a site in ``__init__`` (timeit, 2-core CPU), more than the claim's SQL."""
        return unchecked(cls, dict(zip(SITE_NAMES, row, strict=True)))


SITE_NAMES = tuple(f.name for f in fields(Site))  # the store's site columns, id first, in field order


@dataclass(frozen=True, kw_only=True)
class LaunchCount:
    """The injector's own count of a group in one launch, next to the profile's."""

    model: str
    igid: int
    kcount: int
    kernel: str
    profile_count: int
    injector_count: int
    site_id: int | None = None  # the run whose log showed it


@dataclass(frozen=True, kw_only=True)
class Redraw:
    """A proposal rejected because its instruction index lay past its launch's injector count."""

    site_id: int
    kernel: str
    kcount: int
    iid: int
    injector_count: int
    ran: bool  # a GPU run showed it; False: the count was known from an earlier run


@dataclass(frozen=True, kw_only=True)
class Relocation:
    """Where a re-drawn site ended up: the accepted proposal, stored in place of the planned one."""

    kernel: str
    kcount: int
    iid: int


@dataclass(frozen=True, kw_only=True)
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


@dataclass(frozen=True, kw_only=True)
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
    # top-1 class of the golden and the faulty outputs of one image (-1: a NaN logit, no class);
    # which image: docs/REPORTS.md. None where there is no such image or output (a DUE's faulty one)
    golden_top1: int | None = None
    faulty_top1: int | None = None
    # backend nvbitfi: stored beside the result, in the same transaction
    injection: InjectionRecord | None = None
    relocated: Relocation | None = None
    redraws: tuple[Redraw, ...] = ()
    launch_counts: tuple[LaunchCount, ...] = ()


@dataclass(frozen=True, kw_only=True)
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


@dataclass(frozen=True, kw_only=True)
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
    noise: str = PAPER  # models.noise_names: rows of stores before migration 0006 read as the paper's


@dataclass(frozen=True, kw_only=True)
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


@dataclass(frozen=True, kw_only=True)
class BitGroup:
    """Results of single-bit sites sharing model, mode, flipped bit and outcome: the per-bit
    breakdown's input (framework level only: an NVBitFI site stores a bit seed, not the bit)."""

    model: str
    mode: str
    bit: int
    outcome: str
    count: int
    nan: int  # results with NaN/Inf in the outputs


@dataclass(frozen=True, kw_only=True)
class StratumStatus:
    model: str
    mode: str
    done: int
    planned: int
    running: int  # held by a worker now (or by one that died; freed at the next run)
    outcomes: dict[str, int]
    busy_s: float  # seconds its injections ran, pauses between runs left out (store.timing)


@dataclass(frozen=True, kw_only=True)
class StratumTally:
    """One sampling stratum of a stratified model x mode (``sampling: stratified``): its share of
    the fault population, its results by outcome, the sites workers hold and the sites left."""

    model: str
    mode: str
    stratum: str
    weight: float
    outcomes: dict[str, int]
    nan: dict[str, int]  # of those results, the ones with NaN/Inf in the outputs, by outcome
    running: int
    pending: int


@dataclass(frozen=True, kw_only=True)
class Worker:
    """Who a worker is, as it registers with the store: the owner name of the sites it claims,
    and the Slurm job and array index it runs in (None outside Slurm)."""

    owner: str
    host: str
    pid: int
    lease_s: float
    job: str | None = None
    array_index: int | None = None


@dataclass(frozen=True, kw_only=True)
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
