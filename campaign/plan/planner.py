"""From a config to a campaign record and every site, drawn before anything runs."""

from __future__ import annotations

import hashlib
import math
import platform
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fi_campaign import __version__
from fi_campaign.config import Config
from fi_campaign.errors import UserError
from fi_campaign.plan.nvbitfi import nvbitfi_sites
from fi_campaign.stats import sample_size
from fi_campaign.store import CampaignRecord, FaultModelRecord, ModelRecord, ProfileRecord, Versions, WorkloadRecord
from fi_campaign.workload.images import image_digest, workload_images


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
    from fi_campaign.models import zoo
    from fi_campaign.models.faults import describe_layers, draw_sites
    from fi_campaign.models.resnet import build

    fault_model = check_fault_model(config)
    images, indices = workload_images(config.images.source, config.images.count, config.images.seed)
    workload = WorkloadRecord(
        source=config.images.source,
        dataset=images.dataset,
        count=config.images.count,
        seed=config.images.seed,
        indices=tuple(indices.tolist()),
        images_sha256=image_digest(images.images),
    )
    models: dict[str, ModelRecord] = {}
    sites: list[dict] = []
    for name, ref in config.models.items():
        _, meta = zoo.load(ref)  # loads fully: a broken checkpoint is refused at plan time
        if meta.dataset != images.dataset:
            raise UserError(
                f"model {name} was trained on {meta.dataset} but the images at "
                f"{config.images.source} are {images.dataset}."
            )
        layers = describe_layers(build(meta.arch))
        resume = None
        if config.resumes:
            from fi_campaign.workload.resume import resume_plan

            resume = resume_plan(build(meta.arch), config.layer_weighting, len(indices), config.resume_cache_mb)
        profile = None
        if config.backend == "nvbitfi":
            path = _profile(config, name, ref, profiles or {}, runs, workload, fault_model)
            drawn, left_out = nvbitfi_sites(config, path, name, fault_model, stratum_rng)
            profile = ProfileRecord(
                path=str(path.resolve()), sha256=hashlib.sha256(path.read_bytes()).hexdigest(), left_out=left_out
            )
            sites.extend(drawn)
        elif config.sampling.stratified:
            from fi_campaign.plan.strata import framework_sites

            sites.extend(framework_sites(config, name, layers, len(indices)))
        else:
            for mode in config.modes:
                columns = draw_sites(
                    layers,
                    mode,
                    config.injections,
                    len(indices),
                    config.layer_weighting,
                    stratum_rng(config.seed, name, mode),
                )
                sites.extend(
                    {"model": name, "mode": mode, "layer_name": layers[k].name, **row}
                    for k, row in zip(columns["layer"], _rows(columns), strict=False)
                )
        models[name] = ModelRecord(
            checkpoint=ref,
            sha256=meta.sha256,
            arch=meta.arch,
            dataset=meta.dataset,
            clean_accuracy=meta.clean_accuracy,
            accuracy_on=meta.accuracy_on,
            resume=resume,
            profile=profile,
        )
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


def _profile(
    config: Config,
    name: str,
    ref: str,
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

    return profile_model(config, ref, workload, fault_model, (runs or Path("fi-campaign.db.runs")) / name)


def _rows(drawn: dict[str, np.ndarray]) -> list[dict]:
    keys = list(drawn)
    cols = [drawn[k].tolist() for k in keys]
    return [dict(zip(keys, vals, strict=False)) for vals in zip(*cols, strict=False)]


@dataclass(frozen=True, kw_only=True)
class Sizing:
    model: str
    mode: str
    population: float  # fault sites the campaign samples from (inf: a continuous value space)
    injections: int


def size(config: Config, margin: float, confidence: float, profiles: dict[str, str] | None = None) -> list[Sizing]:
    """Injections per stratum for ``margin`` at ``confidence`` (Leveugle et al., DATE 2009, with
    p = 0.5, the worst case). single_bit's population is every bit of every output value (or of
    every profiled FP32 thread-instruction, for NVBitFI); warp_random draws a continuous value,
    so its population is infinite."""
    from fi_campaign.models import zoo
    from fi_campaign.models.faults import describe_layers
    from fi_campaign.models.resnet import build

    out = []
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
        else:
            meta, _ = zoo.read(ref)
            sites = sum(li.numel for li in describe_layers(build(meta.arch))) * config.images.count
        for mode in config.modes:
            population = sites * 32 if mode == "single_bit" else math.inf
            out.append(
                Sizing(
                    model=name, mode=mode, population=population, injections=sample_size(population, margin, confidence)
                )
            )
    return out
