"""The campaign config: read once from YAML, validated into one frozen object, passed down.

Torch-free on purpose: ``plan`` validates a config before it imports anything heavy. Every key
has one spec (``SPECS``: type, range, finiteness, choices) checked when the file is read, so a
bad value is refused with one sentence before anything is planned.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from fi_campaign import limits
from fi_campaign.checks import Spec, finite, flag, integer, matching, number, one_of, optional, shown, text, whole
from fi_campaign.errors import UserError
from fi_campaign.models.sources import DTYPES, FILE_FUNCTION, MODULE_FUNCTION, Checkpoint, ModelSource, dtype_of
from fi_campaign.nvbitfi_tools import isa
from fi_campaign.nvbitfi_tools.errors import NvbitfiError

MODES = ("single_bit", "warp_random")
WEIGHT_MODES = ("weight_bit", "weight_stuck_at")  # faults in a target layer's parameters (docs/FAULT-MODELS.md)
SASS_MODES = ("warp_xor",)  # the carol / pr2022 uniform-mask warp model, for the fi-campaign NVBit tool only
BACKENDS = ("pytorch", "nvbitfi")
ISOLATIONS = ("inprocess", "process")
WEIGHTINGS = ("elements", "macs")
MATH = ("fp32", "tf32")
JUDGES = ("top1", "topk", "per_position", "values")
# torch.nn classes a fault hits when ``targets.types`` is not given
DEFAULT_TARGET_TYPES = ("Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d", "Linear")
TABLE_OPS = ("FADD", "FMUL", "FFMA", "IADD", "IMUL", "IMAD", "MUFU")
TABLE_SIZES = ("small", "common", "big", "by-value")
SAMPLINGS = ("simple", "stratified")
ALLOCATIONS = ("proportional", "neyman")
# what a stratum may be: the backend it exists at, and the modes (None: every mode)
STRATA_KEYS: dict[str, tuple[str, tuple[str, ...] | None]] = {
    "bit": ("", ("single_bit",)),
    "layer": ("pytorch", None),
    "image": ("pytorch", None),  # a stratum per drawn input: for inputs that differ in fragility
    "kernel": ("nvbitfi", None),
    "igid": ("nvbitfi", None),
}
DEMO = "demo.yaml"


class ConfigError(UserError):
    pass


@dataclass(frozen=True)
class Images:
    """The workload's fixed inputs (config key ``inputs``, or ``images``, its older name):
    ``count`` of them drawn with ``seed`` from ``source``. ``source`` is bundled or a CIFAR copy
    (as before), an ImageFolder directory or tar archive at any resolution (when ``size`` is
    given: resized and centre-cropped to size x size, normalised with ``mean`` and ``std``), a
    ``.npy`` or ``.pt`` tensor (N x ...), or ``FILE.py:FUNCTION`` returning one; ``labels`` a
    file of one class per input, for the clean accuracy."""

    source: str = "bundled"
    count: int = 200
    seed: int = 0
    size: int | None = None
    mean: tuple[float, ...] | None = None  # default: ImageNet's, as torchvision's networks expect
    std: tuple[float, ...] | None = None
    labels: str | None = None

    def __post_init__(self) -> None:
        for name in ("mean", "std"):  # YAML gives lists; a frozen record holds tuples
            value = getattr(self, name)
            if isinstance(value, list):
                object.__setattr__(self, name, tuple(value))

    @property
    def kind(self) -> str:
        """cifar (bundled or a CIFAR copy, as before), imagefolder, tensor or function."""
        if FILE_FUNCTION.fullmatch(self.source) or MODULE_FUNCTION.fullmatch(self.source):
            return "function"
        if self.source.lower().endswith((".npy", ".pt")):
            return "tensor"
        return "imagefolder" if self.size is not None else "cifar"


@dataclass(frozen=True)
class Targets:
    """Which modules a fault can hit: leaves of the ``types`` (class names; default
    DEFAULT_TARGET_TYPES), narrowed to qualified names matching a glob of ``names`` (if any),
    less those matching a glob of ``exclude``."""

    types: tuple[str, ...] | None = None
    names: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("types", "names", "exclude"):
            value = getattr(self, name)
            if isinstance(value, (list, str)):
                object.__setattr__(self, name, (value,) if isinstance(value, str) else tuple(value))

    @property
    def default(self) -> bool:
        return self == Targets()


@dataclass(frozen=True)
class Judge:
    """How an injection's outputs are judged against the golden ones (fi_campaign.classify):
    top1, topk (``k``), per_position, values, or the user's ``function`` (FILE.py:FUNCTION)."""

    kind: str = "top1"
    k: int | None = None
    function: str | None = None

    def spelt(self) -> Any:
        """As a config spells it."""
        if self.kind == "topk":
            return {"topk": self.k}
        return self.function if self.kind == "function" else self.kind


@dataclass(frozen=True)
class FaultModel:
    """Which power law drives warp_random: a built-in table entry (op, size bucket). ``size:
    by-value`` picks the bucket from each corrupted value's magnitude, as NVBitFI builds do."""

    table: str = "dsn2021-fu"
    op: str = "FFMA"
    size: str = "common"
    semantics: str = "per-lane r, random sign, value x (1 + s r)"


@dataclass(frozen=True)
class Nvbitfi:
    """The user's NVBitFI build (backend: nvbitfi). ``dialect`` says which injector it is:
    nvlabs (stock, no warp models), carol (UFRGS-CAROL fork), pr2022 (the 2022 warp PR) or
    fi-campaign (this project's own NVBit tool, built by ``fi-campaign injector build``)."""

    home: str | None = None  # default: $NVBITFI_HOME
    dialect: str = "nvlabs"
    group: str = "fp32"  # instruction group the sites are drawn from
    powerlaw_line: bool = True  # warp_random: write the power-law value as an extra line
    reads_powerlaw: bool = False  # the build reads that line (else it injects its own value)
    dummy: bool = False  # attach the DUMMY injector: a dry campaign that must come back 100% masked
    max_not_injected: float = 0.2  # a stratum stops once more of its results than this are not_injected


STDOUT_CHOICES = ("compare", "ignore")


@dataclass(frozen=True)
class OwnWorkload:
    """The user's own GPU program (config key ``workload``), injected as it is, at SASS level:
    an NVBitFI test-app directory (``app``: run.sh, sdc_check.sh, golden files optional) or a
    ``command`` whose ``outputs`` (files it writes in its run directory) and stdout are compared
    as ``compare`` says. ``critical`` decides which SDCs are critical_sdc (docs/NVBITFI.md,
    "Your own program")."""

    app: str | None = None
    command: tuple[str, ...] | None = None
    name: str | None = None  # the campaign's model name for it; default: from the folder or program
    args: tuple[str, ...] = ()  # app: extra arguments to run.sh (NVBitFI's params.py entry)
    bin: str | None = None  # app: BIN_DIR (default: the app folder)
    dataset: str | None = None  # app: DATASET_DIR (default: the app folder)
    outputs: tuple[str, ...] = ()
    stdout: str = "compare"
    ignore_lines: tuple[str, ...] = ()
    compare: Any = "exact"  # exact | {tolerance: X} | FILE.py:FUNCTION | SCRIPT
    critical: Any = None  # FILE.py:FUNCTION | SCRIPT | {relative_error: X}; None: every SDC critical

    def __post_init__(self) -> None:
        for name in ("command", "args", "outputs", "ignore_lines"):
            value = getattr(self, name)
            if isinstance(value, list):
                object.__setattr__(self, name, tuple(value))

    @property
    def label(self) -> str:
        """The model name the campaign stores it under."""
        if self.name:
            return self.name
        base = Path(self.app).resolve().name if self.app else Path((self.command or ("program",))[0]).name
        return re.sub(r"[^A-Za-z0-9_-]", "-", base)[:64] or "program"

    @property
    def spelt(self) -> str:
        """What it runs, in one string (the model's ``checkpoint`` in the store)."""
        if self.app:
            return f"app:{Path(self.app).resolve()}"
        return "command:" + " ".join(self.command or ())


@dataclass(frozen=True)
class Sampling:
    """How sites are drawn: ``simple`` random sampling (every site equally likely, the sites of
    earlier versions), or ``stratified``, drawn per stratum and run in the order an allocation
    decides from the stored results (docs/DESIGN.md, "Stratified sampling"). ``by`` holds, per
    mode, the keys whose values make the strata (no key: one stratum)."""

    method: str = "simple"
    by: dict[str, tuple[str, ...]] = field(default_factory=dict)
    allocation: str = "neyman"
    pilot: int = 10  # injections every stratum gets before the estimates steer the rest
    floor: float = 0.25  # the least share Neyman gives a stratum, as a fraction of its proportional one
    # sites planned in each stratum (None: injections, as many as one stratum could ever need);
    # fewer keep a large plan small, and a stratum that runs out leaves its share to the others
    sites: int | None = None

    @property
    def stratified(self) -> bool:
        return self.method == "stratified"

    def keys(self, mode: str) -> tuple[str, ...]:
        return self.by.get(mode, ())


@dataclass(frozen=True)
class Slurm:
    """What ``submit`` asks Slurm for: one array job of ``tasks`` workers, each requeued until
    the store has no pending site. ``time`` is minutes per run of a task."""

    tasks: int = 4
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    time: int = 60
    gpus_per_task: int = 0
    cpus_per_task: int = 1
    parallelism: int | None = None  # array tasks running at once (default: all)

    def __post_init__(self) -> None:
        object.__setattr__(self, "time", _minutes(self.time) or self.time)  # "HH:MM:SS" kept as minutes


@dataclass(frozen=True)
class Config:
    name: str
    # name -> a checkpoint (path or zoo:NAME), a TorchScript or .pt2 file, or a mapping: one of
    # those with its dtype (Checkpoint), or a build (ModelSource)
    models: dict[str, str | Checkpoint | ModelSource]
    modes: tuple[str, ...] = MODES
    injections: int = 1000  # per model x mode
    seed: int = 0
    backend: str = "pytorch"
    isolation: str = "inprocess"  # process: one workload process per injection
    device: str = "cpu"
    images: Images = field(default_factory=Images)
    layer_weighting: str = "elements"
    tolerance: float = 0.0
    batch_size: int = 256
    reference: str = ""  # the model the others are compared with; default: the first
    golden_runs: int = 3  # process isolation: fault-free runs that must agree bit for bit
    timeout_factor: float = 5.0  # process isolation: timeout = max(10 s, factor x golden runtime)
    # float32 convolutions and matmuls: fp32 (no TF32, the Titan V arithmetic) or tf32 (PyTorch's
    # default for cuDNN convolutions on sm_80 and newer, which then run as HMMA tensor-core code)
    math: str = "fp32"
    fault_model: FaultModel = field(default_factory=FaultModel)
    nvbitfi: Nvbitfi = field(default_factory=Nvbitfi)
    slurm: Slurm = field(default_factory=Slurm)
    sampling: Sampling = field(default_factory=Sampling)
    store: str | None = None
    resume: bool = True  # backend pytorch in-process: start each injection from the golden activations
    resume_cache_mb: int = 512  # per worker: memory for those activations; layers beyond it start earlier
    targets: Targets = field(default_factory=Targets)
    judge: Judge = field(default_factory=Judge)
    workload: OwnWorkload | None = None  # the user's own GPU program instead of models

    @property
    def resumes(self) -> bool:
        """Whether injections start from golden activations: only in-process framework-level
        runs can; process isolation and NVBitFI always run whole programs."""
        return self.resume and self.backend == "pytorch" and self.isolation == "inprocess"

    def budget(self, planned: int) -> int:
        """What a model x mode runs of its ``planned`` sites: every one, or for a stratified plan
        (``injections`` sites in every stratum) the campaign's injections."""
        return min(planned, self.injections) if self.sampling.stratified else planned

    @property
    def stratum_sites(self) -> int:
        """Sites a stratified plan holds in each stratum."""
        return min(self.sampling.sites or self.injections, self.injections)

    def to_json(self) -> str:
        d = asdict(self)
        d["models"] = {k: v if isinstance(v, str) else v.spelt() for k, v in self.models.items()}
        d["judge"] = self.judge.spelt()
        if self.workload is None:
            del d["workload"]  # a models campaign's stored config reads as before
        else:
            del d["models"]  # the program is the one model; its name comes from the workload
            default = asdict(OwnWorkload())
            d["workload"] = {k: v for k, v in d["workload"].items() if v != default[k]}
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Config:
        try:
            raw = json.loads(text)
        except (TypeError, ValueError):
            raise ConfigError("the store's config is not valid JSON; the store is damaged.") from None
        return parse(raw, "the stored config")

    def with_overrides(
        self, seed: int | None = None, injections: int | None = None, isolation: str | None = None
    ) -> Config:
        """The config with command-line values on top, checked by the same specs as the file's."""
        given = {"seed": seed, "injections": injections, "isolation": isolation}
        for key, value in given.items():
            if value is not None and (problem := SPECS[key].problem(f"--{key}", value)):
                raise ConfigError(f"{problem}.")
        c = replace(
            self,
            seed=self.seed if seed is None else seed,
            injections=self.injections if injections is None else injections,
            isolation=self.isolation if isolation is None else isolation,
        )
        _check_size(c, "--injections")
        return c


CHECKPOINT = text("a checkpoint path, zoo:NAME, a TorchScript or .pt2 file, or a mapping with checkpoint or build")
CHECKPOINT_FILE = text("a checkpoint path, zoo:NAME, a TorchScript or .pt2 file")
NAMES = Spec(
    lambda v: isinstance(v, list) and len(v) <= 1000 and all(text().accepts(x) for x in v),
    "a list of glob patterns over qualified module names (strings)",
)
TYPE_NAMES = Spec(
    lambda v: (
        isinstance(v, list)
        and 0 < len(v) <= 1000
        and all(isinstance(x, str) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,199}", x) for x in v)
    ),
    "a list of module class names (e.g. Conv2d, Linear), at least one",
)
NORMALISATION = Spec(
    lambda v: isinstance(v, list) and 0 < len(v) <= 16 and all(finite(x) for x in v),
    "a list of 1 to 16 finite numbers, one per channel",
)
MODEL_NAME = matching(r"[A-Za-z0-9_-]{1,64}", "letters, digits, '-' or '_' (at most 64)")
SPECS: dict[str, Spec] = {
    "name": text(),
    "injections": integer(1, limits.MAX_INJECTIONS),
    "seed": integer(0, limits.MAX_SEED),
    "backend": one_of(BACKENDS),
    "isolation": one_of(ISOLATIONS),
    "device": matching(r"cpu|cuda|auto|cuda:[0-9]{1,4}", "cpu, cuda, cuda:N or auto"),
    "layer_weighting": one_of(WEIGHTINGS),
    "tolerance": number(0),
    "batch_size": integer(1, limits.MAX_BATCH),
    "reference": text("a string naming one of the models"),
    "golden_runs": integer(2, limits.MAX_GOLDEN_RUNS),
    "timeout_factor": number(1, limits.MAX_TIMEOUT_FACTOR, low_open=True),
    "math": one_of(MATH),
    "resume": flag(),
    "resume_cache_mb": integer(0, limits.MAX_RESUME_CACHE_MB),
    "store": optional(text("a path")),
    "images.source": text("bundled, a path, or FILE.py:FUNCTION"),
    "images.count": integer(1, limits.MAX_IMAGES),
    "images.seed": integer(0, limits.MAX_SEED),
    "images.size": optional(integer(1, limits.MAX_IMAGE_SIDE)),
    "images.mean": optional(NORMALISATION),
    "images.std": optional(NORMALISATION),
    "images.labels": optional(text("a path")),
    "judge": Spec(
        lambda v: _judge_value(v) is not None,
        f"top1, {{topk: K}} (K from 1 to {limits.MAX_TOPK:,}), per_position, values, or FILE.py:FUNCTION "
        "(a function of the golden and faulty outputs)",
    ),
    "targets.types": optional(TYPE_NAMES),
    "targets.names": NAMES,
    "targets.exclude": NAMES,
    "fault_model.table": text("a built-in table name or a fault-model file"),
    "fault_model.op": one_of(TABLE_OPS),
    "fault_model.size": one_of(TABLE_SIZES),
    "fault_model.semantics": one_of((FaultModel.semantics,)),
    "nvbitfi.home": optional(text("a path")),
    "nvbitfi.dialect": one_of(tuple(isa.DIALECTS)),
    "nvbitfi.group": text("an instruction group name"),
    "nvbitfi.powerlaw_line": flag(),
    "nvbitfi.reads_powerlaw": flag(),
    "nvbitfi.dummy": flag(),
    "nvbitfi.max_not_injected": number(0, 1),
    # its keys are checked together by _workload, as a models.NAME build mapping's are
    "workload": optional(
        Spec(
            lambda v: isinstance(v, dict),
            "a mapping with app (an NVBitFI test-app folder) or command (a program and its arguments)",
        )
    ),
    "slurm.tasks": integer(1, limits.MAX_WORKERS),
    "slurm.partition": optional(text()),
    "slurm.account": optional(text()),
    "slurm.qos": optional(text()),
    "slurm.time": Spec(lambda v: _minutes(v) is not None, "minutes (e.g. 120) or [D-]HH:MM:SS, at least a minute"),
    "slurm.gpus_per_task": integer(0, limits.MAX_WORKERS),
    "slurm.cpus_per_task": integer(1, limits.MAX_WORKERS),
    "slurm.parallelism": optional(integer(1, limits.MAX_WORKERS)),
    "sampling.method": one_of(SAMPLINGS),
    "sampling.allocation": one_of(ALLOCATIONS),
    "sampling.pilot": integer(1, limits.MAX_PILOT),
    "sampling.floor": number(0, 1),
    "sampling.sites": optional(integer(1, limits.MAX_INJECTIONS)),
}
SECTIONS: dict[str, type] = {
    "images": Images,
    "fault_model": FaultModel,
    "nvbitfi": Nvbitfi,
    "slurm": Slurm,
    "targets": Targets,
}


def _minutes(value: Any) -> int | None:
    """A Slurm time limit in whole minutes (seconds round up), from minutes or "[D-]HH:MM:SS"."""
    if isinstance(value, str) and re.fullmatch(r"(\d{1,4}-)?\d{1,5}:\d\d:\d\d", value):
        days, _, clock = value.rpartition("-")
        h, m, sec = (int(x) for x in clock.split(":"))
        value = (int(days or 0) * 24 + h) * 60 + m + (sec > 0)
    return value if whole(value) and 1 <= value <= limits.MAX_SLURM_MINUTES else None


def parse_slurm(section: Any, where: str, spelt: Callable[[str], str] | None = None) -> Slurm:
    """The config's ``slurm:`` section, or ``submit``'s options laid over it (same specs);
    ``spelt`` names a key as the user gave it (``time`` -> ``--time``), without ``where``."""
    return Slurm(**_mapping(section, Slurm, "slurm", where, spelt))


def _check(key: str, value: Any, where: str, spelt: str | None = None, named: str | None = None) -> Any:
    """``spelt``: the key as an option spells it (the sentence then names no file); ``named``:
    the key as the file spells it, when not as SPECS does (``inputs.count`` for ``images.count``)."""
    problem = SPECS[key].problem(spelt or named or key, value)
    if problem:
        raise ConfigError(f"{problem}." if spelt else f"{where}: {problem}.")
    return value


def _mapping(raw: Any, cls: type, key: str, where: str, spelt: Callable[[str], str] | None = None) -> dict:
    """The keys of one section, each checked against its spec; ``null`` is an empty section."""
    known = sorted(f.name for f in fields(cls))
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: {key} is {shown(raw)}; it must be a mapping of some of {', '.join(known)}.")
    unknown = sorted((k for k in raw if k not in known), key=str)
    if unknown:
        inside = f"{key}: " if key != "the config" else ""
        raise ConfigError(f"{where}: {inside}unknown key {shown(unknown[0])} (known: {', '.join(known)}).")
    section = next((name for name, c in SECTIONS.items() if c is cls), key)
    prefix = "" if cls is Config else f"{section}."
    for k, v in raw.items():
        if prefix + k in SPECS:
            named = f"{key}.{k}" if section != key else None
            _check(prefix + k, v, where, spelt(k) if spelt else None, named)
    return raw


def _models(raw: dict, where: str) -> dict[str, str | Checkpoint | ModelSource]:
    if "models" not in raw:
        raise ConfigError(
            f"{where}: 'models' is missing; name at least one checkpoint, "
            "e.g. models: {baseline: zoo:resnet20-cifar10-baseline}."
        )
    models = raw["models"]
    if not isinstance(models, dict) or not models:
        raise ConfigError(
            f"{where}: models is {shown(models)}; it must map names to checkpoints, "
            "e.g. baseline: zoo:resnet20-cifar10-baseline."
        )
    out: dict[str, str | Checkpoint | ModelSource] = {}
    for name, ref in models.items():
        if problem := MODEL_NAME.problem("a model name", name):
            raise ConfigError(f"{where}: {problem}.")
        if isinstance(ref, dict):
            out[name] = _model_mapping(ref, f"models.{name}", where)
            continue
        if problem := CHECKPOINT.problem(f"models.{name}", ref):
            raise ConfigError(f"{where}: {problem}.")
        out[name] = ref
    return out


BUILD_KEYS = ("build", "args", "weights", "dtype")
CHECKPOINT_KEYS = ("checkpoint", "dtype")
MAX_ARGS_DEPTH = 4


def _model_mapping(raw: dict, key: str, where: str) -> Checkpoint | ModelSource:
    """A ``models.NAME`` mapping: a checkpoint with its dtype, or a build (with args or weights
    and no build, read as a build that lacks its function)."""
    if "checkpoint" in raw and "build" in raw:
        raise ConfigError(f"{where}: {key} gives checkpoint and build; give one of them.")
    if "checkpoint" in raw:
        return _model_checkpoint(raw, key, where)
    if "build" in raw or any(k in raw for k in BUILD_KEYS if k != "dtype"):
        return _model_build(raw, key, where)
    unknown = sorted((k for k in raw if k != "dtype"), key=str)
    if unknown:
        raise ConfigError(
            f"{where}: {key}: unknown key {shown(unknown[0])} (known: {', '.join(CHECKPOINT_KEYS)}, "
            f"or {', '.join(k for k in BUILD_KEYS if k != 'dtype')})."
        )
    raise ConfigError(
        f"{where}: {key}.checkpoint is missing; a model given as a mapping names its checkpoint "
        "(zoo:NAME or a file) or its build (FILE.py:FUNCTION), e.g. {checkpoint: zoo:resnet20-cifar10-baseline, "
        "dtype: bfloat16}."
    )


def _model_checkpoint(raw: dict, key: str, where: str) -> Checkpoint:
    """A ``models.NAME`` mapping of checkpoint (what a model string names) and dtype."""
    unknown = sorted((k for k in raw if k not in CHECKPOINT_KEYS), key=str)
    if unknown:
        raise ConfigError(f"{where}: {key}: unknown key {shown(unknown[0])} (known: {', '.join(CHECKPOINT_KEYS)}).")
    if problem := CHECKPOINT_FILE.problem(f"{key}.checkpoint", raw["checkpoint"]):
        raise ConfigError(f"{where}: {problem}.")
    return Checkpoint(checkpoint=raw["checkpoint"], dtype=_dtype(raw, key, where))


def _dtype(raw: dict, key: str, where: str) -> str:
    dtype = raw.get("dtype", "float32")
    if not (isinstance(dtype, str) and dtype in DTYPES):
        raise ConfigError(f"{where}: {key}.dtype is {shown(dtype)}; it must be float32, float16 or bfloat16.")
    return str(dtype)


def _plain(value: Any, depth: int = 0) -> bool:
    """A value YAML and JSON both hold as they are: what a build function may be given."""
    if value is None or isinstance(value, (bool, str)) or whole(value):
        return not isinstance(value, str) or "\0" not in value
    if isinstance(value, float):
        return finite(value)
    if depth >= MAX_ARGS_DEPTH:
        return False
    if isinstance(value, list):
        return len(value) <= 1000 and all(_plain(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return len(value) <= 1000 and all(isinstance(k, str) and _plain(v, depth + 1) for k, v in value.items())
    return False


def _model_build(raw: dict, key: str, where: str) -> ModelSource:
    """A ``models.NAME`` mapping: build (FILE.py:FUNCTION or package.module:FUNCTION), args,
    weights, dtype; each value checked."""
    unknown = sorted((k for k in raw if k not in BUILD_KEYS), key=str)
    if unknown:
        raise ConfigError(f"{where}: {key}: unknown key {shown(unknown[0])} (known: {', '.join(BUILD_KEYS)}).")
    build = raw.get("build")
    if not (isinstance(build, str) and (FILE_FUNCTION.fullmatch(build) or MODULE_FUNCTION.fullmatch(build))):
        raise ConfigError(
            f"{where}: {key}.build is {shown(build)}; it must be FILE.py:FUNCTION or package.module:FUNCTION, "
            "a function returning the network (a torch.nn.Module)."
        )
    args = raw.get("args") or {}
    if not (isinstance(args, dict) and all(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", str(k)) for k in args)):
        raise ConfigError(
            f"{where}: {key}.args is {shown(args)}; it must map keyword names to the build function's arguments."
        )
    if not _plain(args):
        raise ConfigError(
            f"{where}: {key}.args is {shown(args)}; its values must be numbers, strings, true/false, null, "
            f"or lists and mappings of them (at most {MAX_ARGS_DEPTH} deep)."
        )
    weights = raw.get("weights")
    if weights is not None and (
        problem := text("a path to a .safetensors or .pt state_dict").problem(f"{key}.weights", weights)
    ):
        raise ConfigError(f"{where}: {problem}.")
    return ModelSource(build=build, args=dict(args), weights=weights, dtype=_dtype(raw, key, where))


def _judge_value(value: Any) -> Judge | None:
    """The judge a config value names, or None if it names none."""
    if isinstance(value, dict) and list(value) == ["topk"] and integer(1, limits.MAX_TOPK).accepts(value["topk"]):
        return Judge("topk", k=value["topk"])
    if isinstance(value, str) and value in JUDGES and value != "topk":
        return Judge(value)
    if isinstance(value, str) and (FILE_FUNCTION.fullmatch(value) or MODULE_FUNCTION.fullmatch(value)):
        return Judge("function", function=value)
    return None


def _inputs(raw: dict, where: str) -> tuple[str, Any]:
    """The inputs section under its key as given: ``inputs``, or ``images`` (its older name)."""
    if "inputs" in raw and "images" in raw:
        raise ConfigError(f"{where}: give inputs or images (its older name), not both.")
    key = "inputs" if "inputs" in raw else "images"
    return key, raw.get(key)


def _check_inputs(images: Images, key: str, where: str) -> None:
    """What the keys of the inputs section mean together: size, mean and std read an image
    source at any resolution; labels go with a tensor file."""
    kind = images.kind
    if kind in ("tensor", "function") and images.size is not None:
        raise ConfigError(f"{where}: {key}.size resizes images; a tensor source ({images.source}) is used as it is.")
    for name in ("mean", "std"):
        if getattr(images, name) is not None and kind != "imagefolder":
            raise ConfigError(
                f"{where}: {key}.{name} normalises an image folder read at {key}.size; "
                + ("give size too." if kind == "cifar" else "a tensor source is used as it is.")
            )
    if images.mean is not None and images.std is not None and len(images.mean) != len(images.std):
        raise ConfigError(f"{where}: {key}.mean and {key}.std must give one number per channel each.")
    if images.std is not None and not all(s > 0 for s in images.std):
        raise ConfigError(f"{where}: {key}.std is {shown(list(images.std))}; it must be numbers above 0.")
    if images.labels is not None and kind != "tensor":
        raise ConfigError(
            f"{where}: {key}.labels goes with a .npy or .pt tensor source; image folders take their labels "
            "from the class folders and a function returns (inputs, labels)."
        )


def _modes(raw: dict, where: str) -> tuple[str, ...]:
    modes = raw.get("modes", list(MODES))
    if isinstance(modes, str):
        modes = [modes]
    known = MODES + WEIGHT_MODES + SASS_MODES
    expected = f"a list of distinct modes from {', '.join(known)}, at least one"
    if not isinstance(modes, list) or not modes or len(modes) > len(known):
        raise ConfigError(f"{where}: modes is {shown(modes)}; it must be {expected}.")
    for m in modes:
        if not (isinstance(m, str) and m in known):
            raise ConfigError(f"{where}: each mode must be one of {', '.join(known)}, not {shown(m)}.")
        if m in SASS_MODES and raw.get("backend", "pytorch") != "nvbitfi":
            raise ConfigError(
                f"{where}: mode {m} is a SASS-level model of the fi-campaign NVBit tool; it needs "
                "backend nvbitfi with nvbitfi.dialect fi-campaign."
            )
        if m in WEIGHT_MODES and raw.get("backend", "pytorch") == "nvbitfi":
            raise ConfigError(
                f"{where}: mode {m} corrupts a layer's parameters at framework level; "
                "it needs backend pytorch, not nvbitfi."
            )
    if len(set(modes)) != len(modes):
        raise ConfigError(f"{where}: modes is {shown(modes)}; it must be {expected}.")
    return tuple(modes)


WORKLOAD_TEXTS = ("name", "bin", "dataset")
WORKLOAD_LISTS = ("command", "args", "outputs", "ignore_lines")


def _threshold(value: Any, key: str) -> float | None:
    """X of a one-key mapping {key: X}, X a finite number >= 0; None if ``value`` is not one."""
    if isinstance(value, dict) and list(value) == [key] and finite(value[key]) and not isinstance(value[key], bool):
        return float(value[key]) if value[key] >= 0 else None
    return None


def _rule(value: Any) -> bool:
    """A function (FILE.py:FUNCTION) or a script path: what compare and critical may name."""
    return isinstance(value, str) and 0 < len(value) <= 4096 and "\0" not in value


def _workload(raw: Any, where: str) -> OwnWorkload:
    """The ``workload`` section: an NVBitFI app folder or a command, each value checked."""
    data = _mapping(raw, OwnWorkload, "workload", where)
    if not data:
        raise ConfigError(
            f"{where}: workload must name an NVBitFI app folder (app: DIR) or a program (command: [...])."
        )
    if ("app" in data) == ("command" in data):
        raise ConfigError(f"{where}: workload takes app (an NVBitFI test-app folder) or command, not both.")
    for key in WORKLOAD_LISTS:
        value = data.get(key)
        if value is not None and not (
            isinstance(value, list)
            and len(value) <= 1000
            and all(isinstance(x, str) and x and "\0" not in x for x in value)
        ):
            raise ConfigError(f"{where}: workload.{key} is {shown(value)}; it must be a list of non-empty strings.")
    for key in ("app", *WORKLOAD_TEXTS):
        if key in data and (problem := text("a string").problem(f"workload.{key}", data[key])):
            raise ConfigError(f"{where}: {problem}.")
    if "command" in data and not data["command"]:
        raise ConfigError(f"{where}: workload.command is empty; give the program and its arguments as a list.")
    if "name" in data and (problem := MODEL_NAME.problem("workload.name", data["name"])):
        raise ConfigError(f"{where}: {problem}.")
    if data.get("stdout", "compare") not in STDOUT_CHOICES:
        raise ConfigError(f"{where}: workload.stdout is {shown(data['stdout'])}; it must be compare or ignore.")
    for pattern in data.get("ignore_lines") or []:
        try:
            re.compile(pattern)
        except re.error as e:
            raise ConfigError(
                f"{where}: workload.ignore_lines: {shown(pattern)} is not a regular expression ({e})."
            ) from None
    compare = data.get("compare", "exact")
    if not (compare == "exact" or _threshold(compare, "tolerance") is not None or _rule(compare)):
        raise ConfigError(
            f"{where}: workload.compare is {shown(compare)}; it must be exact, {{tolerance: X}} (X >= 0), "
            "FILE.py:FUNCTION or a script."
        )
    critical = data.get("critical")
    if critical is not None and not (_threshold(critical, "relative_error") is not None or _rule(critical)):
        raise ConfigError(
            f"{where}: workload.critical is {shown(critical)}; it must be FILE.py:FUNCTION, a script, "
            "or {relative_error: X} (X >= 0)."
        )
    if "app" in data:
        for key in ("outputs", "compare", "stdout", "ignore_lines"):
            if key in data:
                raise ConfigError(
                    f"{where}: workload.{key} goes with command; an app folder's sdc_check.sh decides what differs."
                )
    else:
        for key in ("args", "bin", "dataset"):
            if key in data:
                raise ConfigError(f"{where}: workload.{key} goes with app (an NVBitFI test-app folder).")
    # run directories are elsewhere: paths are fixed against the folder fi-campaign was started in
    fixed: dict[str, Any] = {
        k: str(Path(data[k]).expanduser().resolve()) for k in ("app", "bin", "dataset") if k in data
    }
    if "command" in data and "/" in data["command"][0]:
        fixed["command"] = [str(Path(data["command"][0]).expanduser().resolve()), *data["command"][1:]]
    return OwnWorkload(**(data | fixed))


def parse(raw: Any, where: str) -> Config:
    """A Config from a YAML (or stored JSON) mapping, every value checked before it is used."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} is not a YAML mapping of campaign settings.")
    inputs_key, inputs = _inputs(raw, where)
    raw = {("images" if k == "inputs" else k): v for k, v in raw.items()}
    _mapping(raw, Config, "the config", where)
    own = None
    if raw.get("workload") is not None:
        own = _workload(raw["workload"], where)
        if raw.get("models") is not None:
            raise ConfigError(f"{where}: give models (networks) or workload (your own program), not both.")
        if raw.get("backend", "pytorch") != "nvbitfi":
            raise ConfigError(
                f"{where}: workload (your own GPU program) is injected at SASS level; set backend: nvbitfi."
            )
        raw = raw | {"models": {own.label: own.spelt}}
    raw.pop("workload", None)
    models, modes = _models(raw, where), _modes(raw, where)
    judge = _judge_value(raw.get("judge", "top1"))
    assert judge is not None, "its spec accepts only the values that name a judge"
    sections = {
        key: cls(
            **_mapping(inputs if key == "images" else raw.get(key), cls, inputs_key if key == "images" else key, where)
        )
        for key, cls in SECTIONS.items()
    }
    _check_inputs(sections["images"], inputs_key, where)
    scalars = {k: v for k, v in raw.items() if k in SPECS}
    sampling = _sampling(raw.get("sampling"), modes, raw.get("backend", "pytorch"), where)
    c = Config(
        **{
            "name": Path(where).stem,
            **scalars,
            "models": models,
            "modes": modes,
            "judge": judge,
            **sections,
            "sampling": sampling,
        },
        workload=own,
    )
    reference = c.reference or next(iter(models))
    if reference not in models:
        raise ConfigError(
            f"{where}: reference is {shown(reference)}; it must be one of the models ({', '.join(models)})."
        )
    if c.backend == "nvbitfi":
        if not c.device.startswith("cuda"):
            raise ConfigError(f"{where}: backend nvbitfi injects into GPU kernels, so device must be cuda or cuda:N.")
        _check_nvbitfi(c.nvbitfi, modes, where)
        half = next((k for k, v in models.items() if dtype_of(v) != "float32"), None)
        if half is not None:
            raise ConfigError(
                f"{where}: models.{half}.dtype is {dtype_of(models[half])}, but backend nvbitfi flips bits of FP32 "
                "instructions only; give the model float32 or use backend pytorch."
            )
        c = replace(c, isolation="process")
    c = replace(c, reference=reference, tolerance=float(c.tolerance), timeout_factor=float(c.timeout_factor))
    _check_size(c, where)
    return c


def _sampling(raw: Any, modes: tuple[str, ...], backend: Any, where: str) -> Sampling:
    """``sampling: simple``, ``sampling: stratified`` (each mode by its default keys) or a
    mapping with ``method``, ``by`` (a key, a list of keys, or a mapping of mode to keys),
    ``allocation``, ``pilot`` and ``floor``. A listed key that does not apply to a mode (bit to
    warp_random) is left out for that mode; ``by`` is stored per mode."""
    if raw is None:
        return Sampling()
    if isinstance(raw, str):
        raw = {"method": raw}
    if isinstance(raw, dict) and "by" in raw:
        section = _mapping({k: v for k, v in raw.items() if k != "by"}, Sampling, "sampling", where)
        given = raw["by"]
    else:
        section, given = _mapping(raw, Sampling, "sampling", where), None
    sampling = Sampling(**section)
    if not sampling.stratified:
        if given:
            raise ConfigError(f"{where}: sampling.by needs sampling.method stratified.")
        return sampling
    backend = backend if backend in BACKENDS else "pytorch"
    by = {m: _strata_keys(given if not isinstance(given, dict) else given.get(m), m, backend, where) for m in modes}
    if given is not None and not isinstance(given, dict) and given != [] and not any(by.values()):
        raise ConfigError(
            f"{where}: sampling.by is {shown(given)}, which makes no strata for backend {backend} and modes "
            f"{', '.join(modes)} (bit: single_bit; layer, image: backend pytorch; kernel, igid: backend nvbitfi)."
        )
    if isinstance(given, dict):
        unknown = [m for m in given if m not in modes]
        if unknown:
            raise ConfigError(
                f"{where}: sampling.by names mode {shown(unknown[0])}, which is not one of the modes "
                f"({', '.join(modes)})."
            )
        for m in modes:
            if m in given:
                by[m] = _strata_keys(given[m], m, backend, where, strict=True)
    return replace(sampling, by=by)


def _strata_keys(given: Any, mode: str, backend: str, where: str, strict: bool = False) -> tuple[str, ...]:
    """The keys that make ``mode``'s strata; None gives the mode's default (bit for single_bit,
    layer or kernel for the others). ``strict``: a key that does not apply is refused."""
    if given is None:
        return ("bit",) if mode == "single_bit" else ("layer",) if backend == "pytorch" else ("kernel",)
    keys = [given] if isinstance(given, str) else given
    expected = f"a key or a list of distinct keys from {', '.join(STRATA_KEYS)}"
    if not isinstance(keys, list) or len(keys) > len(STRATA_KEYS):
        raise ConfigError(
            f"{where}: sampling.by is {shown(given)}; it must be {expected}, or a mapping of mode to keys."
        )
    for k in keys:
        if not (isinstance(k, str) and k in STRATA_KEYS):
            raise ConfigError(
                f"{where}: sampling.by: each key must be one of {', '.join(STRATA_KEYS)}, not {shown(k)}."
            )
    if len(set(keys)) != len(keys):
        raise ConfigError(f"{where}: sampling.by is {shown(given)}; it must be {expected}.")
    fits = [k for k in keys if _applies(k, mode, backend)]
    if strict and len(fits) != len(keys):
        k = next(k for k in keys if k not in fits)
        level, only = STRATA_KEYS[k]
        why = f"backend {level}" if level and level != backend else f"mode {', '.join(only or ())}"
        raise ConfigError(f"{where}: sampling.by: {k} strata exist only for {why}, so mode {mode} cannot use them.")
    return tuple(fits)


def _applies(key: str, mode: str, backend: str) -> bool:
    level, only = STRATA_KEYS[key]
    return (not level or level == backend) and (only is None or mode in only)


def _check_size(c: Config, where: str) -> None:
    sites = len(c.models) * len(c.modes) * c.injections
    if sites > limits.MAX_SITES:
        raise ConfigError(
            f"{where}: {len(c.models)} models x {len(c.modes)} modes x {c.injections:,} injections "
            f"is {sites:,} sites; a campaign holds at most {limits.MAX_SITES:,}."
        )


def _check_nvbitfi(nv: Nvbitfi, modes: tuple[str, ...], where: str) -> None:
    """Refuse, before anything runs, a mode or group the configured injector build cannot inject."""
    for mode in modes:
        if not isa.can_inject(nv.dialect, mode):
            raise ConfigError(
                f"{where}: the {nv.dialect} NVBitFI build cannot inject {mode} "
                f"(it supports {', '.join(isa.supported_modes(nv.dialect))}); "
                "change nvbitfi.dialect or the modes."
            )
    try:
        isa.injectable_igid(nv.dialect, nv.group)
    except NvbitfiError as e:
        raise ConfigError(f"{where}: nvbitfi.group: {e}") from None
    for mode in modes:
        try:
            isa.mode_spec(nv.dialect, mode, nv.group)
        except isa.UnsupportedMode as e:
            raise ConfigError(f"{where}: {e}") from None


def read_text(path: str, what: str, limit: int = limits.MAX_CONFIG_BYTES) -> str:
    """A small UTF-8 file's text, or one sentence saying why it cannot be a hand-written config."""
    p = Path(path)
    try:
        if not p.is_file():
            raise ConfigError(f"{what} {path} does not exist.")
        with open(p, "rb") as f:
            data = f.read(limit + 1)
    except OSError as e:
        raise ConfigError(f"cannot read {what} {path} ({e.strerror or e}).") from None
    if len(data) > limit:
        raise ConfigError(f"{what} {path} is larger than {limit:,} bytes, too large for a hand-written file.")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{what} {path} is not UTF-8 text (byte {e.start} is {data[e.start]:#04x}).") from None


def load_yaml(text: str, where: str) -> Any:
    """``yaml.safe_load`` (no Python objects), with every way it fails turned into one sentence."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{where} is not valid YAML{at}.") from None
    except RecursionError:
        raise ConfigError(f"{where} nests its values too deeply to be a config.") from None
    except (ValueError, OverflowError) as e:  # a timestamp-like value that is no date, e.g. 2022-13-01
        raise ConfigError(f"{where} holds a value YAML cannot build ({e}).") from None


def load(path: str | None) -> Config:
    """Read and validate a config file; ``None`` gives the embedded demo campaign."""
    if path is None:
        source, where = resources.files("fi_campaign").joinpath(DEMO).read_text(), "the demo config"
    else:
        source, where = read_text(path, "config file"), str(path)
    return parse(load_yaml(source, where), where)
