"""From a config to a campaign record and every site, drawn before anything runs."""

from __future__ import annotations

import hashlib
import math
import platform
import sys
import zlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fi_campaign import __version__
from fi_campaign.config import WEIGHT_MODES, Config
from fi_campaign.errors import UserError
from fi_campaign.plan.nvbitfi import nvbitfi_sites
from fi_campaign.stats import sample_size
from fi_campaign.store import CampaignRecord, FaultModelRecord, ModelRecord, ProfileRecord, Versions, WorkloadRecord
from fi_campaign.workload.images import Inputs, planned

if TYPE_CHECKING:
    import torch

    from fi_campaign.models.faults import LayerInfo
    from fi_campaign.models.sources import Checkpoint, ModelSource


def stratum_rng(seed: int, model: str, mode: str) -> np.random.Generator:
    """One generator per model x mode, so a stratum's sites do not depend on the others."""
    return np.random.default_rng([seed, zlib.crc32(model.encode()), zlib.crc32(mode.encode())])


def versions() -> Versions:
    import torch

    return Versions(
        fi_campaign=__version__,
        torch=torch.__version__,
        numpy=np.__version__,
        python=sys.version.split()[0],
        platform=platform.platform(),
    )


def check_fault_model(config: Config) -> FaultModelRecord:
    """The power-law entries warp_random will draw from, refusing degenerate ones up front, and
    which model they belong to (a built-in name, or a fitted file's name, path and digest), so a
    report can say which model drove the campaign after the file has changed or gone."""
    from fi_campaign.models import powerlaw, sampler

    fm = config.fault_model
    try:
        sizes = powerlaw.SIZES if fm.size == "by-value" else (fm.size,)
        laws = {s: powerlaw.entry(fm.table, fm.op, s) for s in sizes}
        origin = powerlaw.describe(fm.table, fm.op, sizes)
    except powerlaw.TableError as e:
        raise UserError(f"fault_model: {e}.") from None
    if "warp_random" in config.modes:
        for bucket, law in laws.items():
            why = law.degenerate_reason()
            if why:
                raise UserError(
                    f"fault_model {origin.name} {fm.op} {bucket} (x_min {law.x_min:g}, alpha "
                    f"{law.alpha:g}) is degenerate: {why}; choose another op or size for warp_random."
                )
    return FaultModelRecord(
        table=fm.table,
        op=fm.op,
        size=fm.size,
        semantics=fm.semantics,
        entries=laws,
        sampler=sampler.SPEC,
        origin=origin,
    )


def plan(
    config: Config, profiles: dict[str, str] | None = None, runs: Path | None = None
) -> tuple[CampaignRecord, list[dict]]:
    """``profiles``: model name (or ``*`` for all) -> an existing nvbitfi-igprofile.txt, for
    backend nvbitfi; a model without one is profiled now under profiler.so in ``runs``."""
    from fi_campaign.models.faults import draw_sites
    from fi_campaign.models.formats import width

    fault_model = check_fault_model(config)
    if config.workload is not None:
        workload, drawn = program_workload(config), None
    else:
        workload, drawn = planned(config.images)
    models: dict[str, ModelRecord] = {}
    sites: list[dict] = []
    inputs: list[torch.Tensor] = []  # normalised once, when a network other than a CIFAR ResNet needs them
    for name, ref in config.models.items():
        layers: list[LayerInfo] = []
        if drawn is None:
            info = program_model(config)
        else:
            info, layers = model_plan(config, name, ref, workload, drawn, inputs)
        profile = None
        if config.backend == "nvbitfi":
            path = _profile(config, name, info, profiles or {}, runs, workload, fault_model)
            nv_sites, left_out = nvbitfi_sites(config, path, name, fault_model, stratum_rng)
            profile = ProfileRecord(
                path=str(path.resolve()), sha256=hashlib.sha256(path.read_bytes()).hexdigest(), left_out=left_out
            )
            sites.extend(nv_sites)
        elif config.sampling.stratified:
            from fi_campaign.plan.strata import framework_sites

            slots = _parameter_slots(config, name, ref, info)
            sites.extend(framework_sites(config, name, layers, workload.indices, width(info.dtype), slots))
        else:
            slots = _parameter_slots(config, name, ref, info)
            for mode in config.modes:
                assert drawn is not None, "an own program is injected by NVBitFI only"
                columns = draw_sites(
                    layers,
                    mode,
                    config.injections,
                    len(drawn.indices),
                    config.layer_weighting,
                    stratum_rng(config.seed, name, mode),
                    bits=width(info.dtype),
                    slots=slots,
                )
                sites.extend(
                    {"model": name, "mode": mode, "layer_name": layers[k].name, **row}
                    for k, row in zip(columns["layer"], _rows(columns), strict=False)
                )
        models[name] = replace(info, profile=profile)
    record = CampaignRecord(
        name=config.name,
        seed=config.seed,
        config=config.to_json(),
        versions=versions(),
        models=models,
        workload=workload,
        fault_model=fault_model,
    )
    return record, sites


def program_workload(config: Config) -> WorkloadRecord:
    """The user's own program brings its own inputs: the record names the program, no images."""
    assert config.workload is not None, "only an own-program campaign"
    return WorkloadRecord(
        source=config.workload.spelt, dataset="", count=0, seed=0, indices=(), images_sha256="", kind="program"
    )


def program_model(config: Config) -> ModelRecord:
    """The user's program as the campaign's one model, its scripts checked now (a missing
    run.sh, a script without its execute bit, a program not found, a rule that cannot load)."""
    from fi_campaign.workload import own, rules

    spec = config.workload
    assert spec is not None, "only an own-program campaign"
    own.check(spec)
    rules.rule(spec.compare, "compare", "tolerance")
    rules.rule(spec.critical, "critical", "relative_error")
    return ModelRecord(
        checkpoint=spec.spelt, sha256=own.digest(spec), arch=None, dataset="", clean_accuracy=None, accuracy_on=""
    )


def model_plan(
    config: Config,
    name: str,
    given: str | Checkpoint | ModelSource,
    workload: WorkloadRecord,
    drawn: Inputs,
    inputs: list[torch.Tensor],
) -> tuple[ModelRecord, list[LayerInfo]]:
    """One model's record and its targets. A fi-campaign checkpoint with the default targets is
    planned as before (its CIFAR ResNet's conv and linear layers, delayed start by resume
    points); any other network is loaded, run once on the campaign's batch shape, and its
    targets described from that pass (``workload.network.plan_targets``). ``inputs`` caches the
    normalised inputs across models."""
    from fi_campaign.models.sources import dtype_of, named

    key, dtype, ref = f"models.{name}", dtype_of(given), named(given)
    if _cifar_resnet(config, ref):
        assert isinstance(ref, str), "_cifar_resnet holds for checkpoint paths only"
        return _checkpoint_plan(config, name, ref, workload, dtype)
    import torch

    from fi_campaign.models.targets import Selection
    from fi_campaign.workload.images import normalised
    from fi_campaign.workload.network import as_inputs, load, plan_targets

    if not inputs:
        inputs.append(torch.from_numpy(normalised(drawn.raw, drawn.dataset, workload.mean, workload.std)))
    loaded = load(ref, key, "cpu", dtype)
    meta = loaded.meta
    if meta is not None and workload.dataset.startswith("cifar") and meta.dataset != workload.dataset:
        raise UserError(
            f"model {name} was trained on {meta.dataset} but the images at {config.images.source} "
            f"are {workload.dataset}."
        )
    t = config.targets
    targets, layers, outputs = plan_targets(
        loaded, Selection(types=t.types, names=t.names, exclude=t.exclude), key, inputs[0], config.batch_size
    )
    _check_judge(config, key, outputs)
    accuracy = (
        _accuracy(config, loaded.model, as_inputs(inputs[0], dtype), drawn)
        if targets.output_shape and len(targets.output_shape) == 1
        else None
    )
    info = ModelRecord(
        checkpoint=ref if isinstance(ref, str) else ref.build,
        sha256=loaded.sha256,
        arch=None if meta is None else meta.arch,
        dataset=workload.dataset if meta is None else meta.dataset,
        clean_accuracy=accuracy if meta is None else meta.clean_accuracy,
        accuracy_on=(f"the campaign's {len(drawn.raw)} inputs" if accuracy is not None else "")
        if meta is None
        else meta.accuracy_on,
        source=loaded.source,
        targets=targets,
        dtype=dtype,
    )
    return info, layers


def _parameter_slots(config: Config, name: str, ref: str | Checkpoint | ModelSource, info: ModelRecord) -> list | None:
    """The targets' parameters a weight fault can hit (None when no mode faults weights),
    refusing a model none of whose targets has one."""
    from fi_campaign.models.weight_faults import describe_parameters

    if not any(m in WEIGHT_MODES for m in config.modes):
        return None
    if info.targets is None:
        from fi_campaign.models.resnet import build, injectable_layers
        from fi_campaign.models.sources import in_dtype

        assert info.arch is not None, "a model without recorded targets is a CIFAR ResNet"
        slots = describe_parameters(injectable_layers(in_dtype(build(info.arch), info.dtype)))
    else:
        from fi_campaign.models.sources import named
        from fi_campaign.workload.network import load

        modules = dict(load(named(ref), f"models.{name}", "cpu", info.dtype).model.named_modules())
        slots = describe_parameters([(n, modules[n]) for n in info.targets.names])
    if not any(slots):
        raise UserError(
            f"modes: {', '.join(m for m in config.modes if m in WEIGHT_MODES)} fault parameters, but no target "
            f"layer of model {name} has a floating-point parameter; choose targets that have weights."
        )
    return slots


def _cifar_resnet(config: Config, ref: str | Checkpoint | ModelSource) -> bool:
    """Whether a model is planned as before: a fi-campaign checkpoint with the default targets."""
    from fi_campaign.models import sources

    ref = sources.named(ref)
    return isinstance(ref, str) and sources.ref_kind(ref) == sources.CHECKPOINT and config.targets.default


def _checkpoint_plan(
    config: Config, name: str, ref: str, workload: WorkloadRecord, dtype: str = "float32"
) -> tuple[ModelRecord, list[LayerInfo]]:
    from fi_campaign.models import zoo
    from fi_campaign.models.faults import describe_layers
    from fi_campaign.models.resnet import build

    _, meta = zoo.load(ref)  # loads fully: a broken checkpoint is refused at plan time
    if meta.dataset != workload.dataset:
        raise UserError(
            f"model {name} was trained on {meta.dataset} but the images at "
            f"{config.images.source} are {workload.dataset}."
        )
    layers = describe_layers(build(meta.arch))
    if config.judge.kind != "top1":
        _check_judge(config, f"models.{name}", np.zeros((2, meta.arch.num_classes), dtype=np.float32))
    resume = None
    if config.resumes:
        from fi_campaign.workload.resume import resume_plan

        resume = resume_plan(build(meta.arch), config.layer_weighting, len(workload.indices), config.resume_cache_mb)
    info = ModelRecord(
        checkpoint=ref,
        sha256=meta.sha256,
        arch=meta.arch,
        dataset=meta.dataset,
        clean_accuracy=meta.clean_accuracy,
        accuracy_on=meta.accuracy_on,
        resume=resume,
        dtype=dtype,
    )
    return info, layers


def _check_judge(config: Config, key: str, outputs: np.ndarray) -> None:
    """Refuse, at plan time, a judge the network's outputs do not fit, and a judge function
    that does not return one outcome per input (tried on the golden outputs against themselves)."""
    from fi_campaign.classify import check_judge
    from fi_campaign.workload.judge import judge_of

    try:
        check_judge(judge_of(config), outputs)
    except ValueError as e:
        raise UserError(f"judge: {e} ({key} returns outputs of shape {outputs.shape[1:]} per input).") from None


def _accuracy(config: Config, model: object, inputs: torch.Tensor, drawn: Inputs) -> float | None:
    """Top-1 accuracy on the campaign's inputs, when their labels are known."""
    if drawn.labels is None:
        return None
    import torch

    from fi_campaign.workload.network import first_batch, network_output

    b = config.batch_size
    right = 0
    with torch.inference_mode():
        for i in range(0, len(inputs), b):
            chunk = inputs[i : i + b]
            y = network_output(model(first_batch(chunk, b)))[: len(chunk)]  # type: ignore[operator]
            right += int((y.argmax(-1).numpy() == drawn.labels[i : i + b]).sum())
    return right / len(inputs)


def _profile(
    config: Config,
    name: str,
    info: ModelRecord,
    profiles: dict[str, str],
    runs: Path | None,
    workload: WorkloadRecord,
    fault_model: FaultModelRecord,
) -> Path:
    given = profiles.get(name) or profiles.get("*")
    if given:
        path = Path(given)
        if not path.is_file():
            raise UserError(f"profile {given} for model {name} does not exist.")
        return path
    from fi_campaign.plan.nvbitfi import profile_model

    return profile_model(config, info, name, workload, fault_model, (runs or Path("fi-campaign.db.runs")) / name)


def _rows(drawn: dict[str, np.ndarray]) -> list[dict]:
    keys = list(drawn)
    cols = [drawn[k].tolist() for k in keys]
    return [dict(zip(keys, vals, strict=False)) for vals in zip(*cols, strict=False)]


def _weight_population(
    config: Config,
    name: str,
    ref: str | Checkpoint | ModelSource,
    mode: str,
    workload: WorkloadRecord | None,
    drawn: Inputs | None,
    inputs: list[torch.Tensor],
) -> float:
    """Every bit of every target parameter, times the images (weight_bit: the upset lasts one
    image's inference) or the two stuck values (weight_stuck_at)."""
    if workload is None or drawn is None:
        workload, drawn = planned(config.images)
    info, _ = model_plan(config, name, ref, workload, drawn, inputs)
    slots = _parameter_slots(config, name, ref, info) or []
    bits = sum(s.numel * s.bits for per in slots for s in per)
    return float(bits * (config.images.count if mode == "weight_bit" else 2))


@dataclass(frozen=True, kw_only=True)
class Sizing:
    model: str
    mode: str
    population: float  # fault sites the campaign samples from (inf: a continuous value space)
    injections: int


def size(config: Config, margin: float, confidence: float, profiles: dict[str, str] | None = None) -> list[Sizing]:
    """Injections per stratum for ``margin`` at ``confidence`` (Leveugle et al., DATE 2009, with
    p = 0.5, the worst case). single_bit's population is every bit of every output value (32 or,
    for float16 and bfloat16 networks, 16 per value; or of every profiled FP32
    thread-instruction, for NVBitFI); warp_random draws a continuous value, so its population
    is infinite."""
    out = []
    workload: WorkloadRecord | None = None
    drawn: Inputs | None = None
    inputs: list[torch.Tensor] = []
    for name, ref in config.models.items():
        if config.backend == "nvbitfi":
            given = (profiles or {}).get(name) or (profiles or {}).get("*")
            from fi_campaign.nvbitfi_tools.profile import read_profile
            from fi_campaign.nvbitfi_tools.sites import Proposals

            sites = (
                Proposals(read_profile(given, config.nvbitfi.dialect), config.nvbitfi.group).total
                if given
                else math.inf
            )
        elif _cifar_resnet(config, ref):
            from fi_campaign.models import zoo
            from fi_campaign.models.faults import describe_layers
            from fi_campaign.models.resnet import build
            from fi_campaign.models.sources import named

            path = named(ref)
            assert isinstance(path, str), "_cifar_resnet holds for checkpoint paths only"
            meta, _ = zoo.read(path)
            sites = sum(li.numel for li in describe_layers(build(meta.arch))) * config.images.count
        else:
            if workload is None or drawn is None:
                workload, drawn = planned(config.images)
            _, layers = model_plan(config, name, ref, workload, drawn, inputs)
            sites = sum(li.numel for li in layers) * config.images.count
        from fi_campaign.models.formats import width
        from fi_campaign.models.sources import dtype_of

        for mode in config.modes:
            population = sites * width(dtype_of(ref)) if mode == "single_bit" else math.inf
            if mode in WEIGHT_MODES:
                population = _weight_population(config, name, ref, mode, workload, drawn, inputs)
            out.append(
                Sizing(
                    model=name, mode=mode, population=population, injections=sample_size(population, margin, confidence)
                )
            )
    return out
