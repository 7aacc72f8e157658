"""The campaign config: read once from YAML, validated into one frozen object, passed down.

Torch-free on purpose: ``plan`` validates a config before it imports anything heavy.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from campaign.errors import UserError

MODES = ("single_bit", "warp_random")
BACKENDS = ("pytorch", "nvbitfi")
ISOLATIONS = ("inprocess", "process")
WEIGHTINGS = ("elements", "macs")
TABLE_OPS = ("FADD", "FMUL", "FFMA", "IADD", "IMUL", "IMAD", "MUFU")
TABLE_SIZES = ("small", "common", "big", "by-value")
DEMO = "demo.yaml"


class ConfigError(UserError):
    pass


@dataclass(frozen=True)
class Images:
    """The workload's fixed image set: ``count`` test images drawn with ``seed`` from ``source``."""

    source: str = "bundled"
    count: int = 200
    seed: int = 0


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
    nvlabs (stock, no warp models), carol (UFRGS-CAROL fork) or pr2022 (the 2022 warp PR)."""

    home: str | None = None  # default: $NVBITFI_HOME
    dialect: str = "nvlabs"
    group: str = "fp32"  # instruction group the sites are drawn from
    powerlaw_line: bool = True  # warp_random: write the power-law value as an extra line
    reads_powerlaw: bool = False  # the build reads that line (else it injects its own value)
    dummy: bool = False  # attach the DUMMY injector: a dry campaign that must come back 100% masked


@dataclass(frozen=True)
class Config:
    name: str
    models: dict[str, str]  # name -> checkpoint reference (path or zoo:NAME)
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
    fault_model: FaultModel = field(default_factory=FaultModel)
    nvbitfi: Nvbitfi = field(default_factory=Nvbitfi)
    store: str | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Config":
        return parse(json.loads(text), "the stored config")

    def with_overrides(self, seed: int | None = None, injections: int | None = None,
                       isolation: str | None = None) -> "Config":
        c = self if isolation is None else replace(self, isolation=_choice(isolation, ISOLATIONS, "isolation", "--isolation"))
        if seed is not None:
            c = replace(c, seed=seed)
        if injections is not None:
            if injections < 1:
                raise ConfigError(f"--injections must be at least 1, not {injections}.")
            c = replace(c, injections=injections)
        return c


def _known(section: dict, cls: type, where: str) -> None:
    allowed = {f.name for f in fields(cls)}
    unknown = sorted(set(section) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(allowed))}).")


def _typed(value: Any, kind: type | tuple, key: str, where: str) -> Any:
    if isinstance(value, bool) and kind in (int, float, (int, float)):
        raise ConfigError(f"{where}: {key} must be a number, not {value!r}.")
    if not isinstance(value, kind):
        name = kind.__name__ if isinstance(kind, type) else "number"
        raise ConfigError(f"{where}: {key} must be a {name}, not {value!r}.")
    return value


def _choice(value: Any, choices: tuple, key: str, where: str) -> str:
    if value not in choices:
        raise ConfigError(f"{where}: {key} must be one of {', '.join(choices)}, not {value!r}.")
    return value


def parse(raw: Any, where: str) -> Config:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} is not a YAML mapping of campaign settings.")
    _known(raw, Config, where)
    if "models" not in raw:
        raise ConfigError(f"{where}: 'models' is missing; name at least one checkpoint, e.g. models: {{baseline: zoo:resnet20-cifar10-baseline}}.")
    models = raw["models"]
    if not isinstance(models, dict) or not models:
        raise ConfigError(f"{where}: models must map names to checkpoints, e.g. baseline: zoo:resnet20-cifar10-baseline.")
    for name, ref in models.items():
        if not isinstance(name, str) or not name.replace("-", "").replace("_", "").isalnum():
            raise ConfigError(f"{where}: model name {name!r} must be letters, digits, '-' or '_'.")
        _typed(ref, str, f"models.{name}", where)
    modes = raw.get("modes", list(MODES))
    if isinstance(modes, str):
        modes = [modes]
    _typed(modes, list, "modes", where)
    for m in modes:
        _choice(m, MODES, "each mode", where)
    if len(set(modes)) != len(modes) or not modes:
        raise ConfigError(f"{where}: modes must list each mode once and at least one.")
    images = raw.get("images", {}) or {}
    _typed(images, dict, "images", where)
    _known(images, Images, f"{where} images")
    img = Images(**{**asdict(Images()), **images})
    _typed(img.source, str, "images.source", where)
    if _typed(img.count, int, "images.count", where) < 1 or _typed(img.seed, int, "images.seed", where) < 0:
        raise ConfigError(f"{where}: images.count must be at least 1 and images.seed non-negative.")
    fm = raw.get("fault_model", {}) or {}
    _typed(fm, dict, "fault_model", where)
    _known(fm, FaultModel, f"{where} fault_model")
    fault_model = FaultModel(**{**asdict(FaultModel()), **fm})
    _choice(fault_model.op, TABLE_OPS, "fault_model.op", where)
    _choice(fault_model.size, TABLE_SIZES, "fault_model.size", where)
    nv = raw.get("nvbitfi", {}) or {}
    _typed(nv, dict, "nvbitfi", where)
    _known(nv, Nvbitfi, f"{where} nvbitfi")
    nvbitfi = Nvbitfi(**{**asdict(Nvbitfi()), **nv})
    _check_nvbitfi(nvbitfi, tuple(modes), raw.get("backend", "pytorch"), where)
    scalars = {k: raw[k] for k in ("name", "injections", "seed", "backend", "isolation", "device", "layer_weighting",
                                   "tolerance", "batch_size", "reference", "store", "golden_runs",
                                   "timeout_factor") if k in raw}
    c = Config(**{"name": Path(where).stem, **scalars, "models": dict(models), "modes": tuple(modes),
                  "images": img, "fault_model": fault_model, "nvbitfi": nvbitfi})
    _typed(c.name, str, "name", where)
    if _typed(c.injections, int, "injections", where) < 1:
        raise ConfigError(f"{where}: injections must be at least 1, not {c.injections}.")
    if _typed(c.seed, int, "seed", where) < 0:
        raise ConfigError(f"{where}: seed must be non-negative, not {c.seed}.")
    if _typed(c.batch_size, int, "batch_size", where) < 1:
        raise ConfigError(f"{where}: batch_size must be at least 1, not {c.batch_size}.")
    if _typed(c.tolerance, (int, float), "tolerance", where) < 0:
        raise ConfigError(f"{where}: tolerance must be non-negative, not {c.tolerance}.")
    _choice(c.backend, BACKENDS, "backend", where)
    _choice(c.isolation, ISOLATIONS, "isolation", where)
    if c.backend == "nvbitfi":
        if not c.device.startswith("cuda"):
            raise ConfigError(f"{where}: backend nvbitfi injects into GPU kernels, so device must be cuda or cuda:N.")
        c = replace(c, isolation="process")
    if _typed(c.golden_runs, int, "golden_runs", where) < 2:
        raise ConfigError(f"{where}: golden_runs must be at least 2 to check determinism, not {c.golden_runs}.")
    if _typed(c.timeout_factor, (int, float), "timeout_factor", where) <= 1:
        raise ConfigError(f"{where}: timeout_factor must be above 1, not {c.timeout_factor}.")
    _choice(c.layer_weighting, WEIGHTINGS, "layer_weighting", where)
    if not (c.device in ("cpu", "cuda", "auto") or c.device.startswith("cuda:")):
        raise ConfigError(f"{where}: device must be cpu, cuda, cuda:N or auto, not {c.device!r}.")
    if c.store is not None:
        _typed(c.store, str, "store", where)
    reference = c.reference or next(iter(models))
    if reference not in models:
        raise ConfigError(f"{where}: reference {reference!r} is not one of the models ({', '.join(models)}).")
    return replace(c, reference=reference, tolerance=float(c.tolerance))


def _check_nvbitfi(nv: Nvbitfi, modes: tuple[str, ...], backend: str, where: str) -> None:
    """Refuse, before anything runs, a mode the configured injector build cannot inject."""
    from nvbitfi_tools import isa

    _choice(nv.dialect, tuple(isa.DIALECTS), "nvbitfi.dialect", where)
    if backend != "nvbitfi":
        return
    for mode in modes:
        if not isa.can_inject(nv.dialect, mode):
            raise ConfigError(f"{where}: the {nv.dialect} NVBitFI build cannot inject {mode} "
                              f"(it supports {', '.join(isa.supported_modes(nv.dialect))}); "
                              "change nvbitfi.dialect or the modes.")


def load(path: str | None) -> Config:
    """Read and validate a config file; ``None`` gives the embedded demo campaign."""
    if path is None:
        text, where = resources.files("campaign").joinpath(DEMO).read_text(), "the demo config"
    else:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {path} does not exist.")
        text, where = p.read_text(), str(path)
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{where} is not valid YAML{at}.") from None
    return parse(raw, where)
