"""The strata of a stratified plan (docs/DESIGN.md, "Stratified sampling"): for one model x mode,
every combination of the configured keys' values, with its exact share of the fault population,
and the sites drawn within each.

A stratum's share is known from the plan alone: a bit is 1/32 of every flip; a layer is its
weight as the simple draw uses it (``faults.layer_weights``); a kernel or an instruction group is
its part of the profile's dynamic instructions of the campaign's group. A combination's share is
the product, within the layer or kernel for a bit. Each stratum draws ``injections`` sites (the
most the allocation could ever give it) from its own generator, so adding a stratum changes no
other stratum's sites.
"""

from __future__ import annotations

import itertools
import zlib
from dataclasses import dataclass

import numpy as np

from fi_campaign.config import Config
from fi_campaign.errors import UserError
from fi_campaign.limits import MAX_SITES

BITS = 32


@dataclass(frozen=True, kw_only=True)
class Stratum:
    """One stratum of a model x mode: its label, its share, and what it fixes."""

    label: str
    weight: float
    layer: int | None = None  # framework level
    bit: int | None = None
    kernel: str | None = None  # SASS level: a kernel name
    igid: int | None = None  # SASS level: a base instruction group


def label(parts: list[tuple[str, object]]) -> str:
    """``key=value`` pairs in the configured order, one space apart (no name holds whitespace:
    layer names are module paths, kernel names come whitespace-free from the profile); one
    stratum of everything is ``all``."""
    return " ".join(f"{k}={v}" for k, v in parts) or "all"


def stratum_rng(seed: int, model: str, mode: str, stratum: str) -> np.random.Generator:
    """One generator per stratum of a model x mode, so its sites depend on nothing else."""
    return np.random.default_rng(
        [seed, zlib.crc32(model.encode()), zlib.crc32(mode.encode()), zlib.crc32(stratum.encode())]
    )


def framework_strata(layer_names: list[str], layer_weights: list[float], keys: tuple[str, ...]) -> list[Stratum]:
    """Every combination of ``keys`` (layer, bit) for a framework-level model x mode."""
    options: dict[str, list[tuple[object, float, dict]]] = {
        "layer": [(name, w, {"layer": i}) for i, (name, w) in enumerate(zip(layer_names, layer_weights, strict=True))],
        "bit": [(b, 1 / BITS, {"bit": b}) for b in range(BITS)],
    }
    return _combine(keys, options)


def _combine(keys: tuple[str, ...], options: dict[str, list[tuple[object, float, dict]]]) -> list[Stratum]:
    out = []
    for combo in itertools.product(*(options[k] for k in keys)):
        weight, fixed = 1.0, {}
        for _, w, f in combo:
            weight *= w
            fixed.update(f)
        if weight > 0:
            out.append(
                Stratum(label=label([(k, c[0]) for k, c in zip(keys, combo, strict=True)]), weight=weight, **fixed)
            )
    return out


def check_size(config: Config, strata_per_cell: int) -> None:
    """A stratified plan holds ``injections`` sites in every stratum; refuse one past the ceiling."""
    sites = strata_per_cell * config.injections
    if sites > MAX_SITES:
        raise UserError(
            f"stratified sampling plans {config.injections:,} sites in each stratum, {sites:,} in all, but a "
            f"campaign holds at most {MAX_SITES:,}; lower injections or stratify by fewer keys."
        )


def framework_sites(config: Config, model: str, layers: list, n_images: int) -> list[dict]:
    """The sites of every stratum of every mode of a framework-level model, each row with its
    stratum's label and share."""
    from fi_campaign.models.faults import draw_sites, layer_weights

    weights = layer_weights(layers, config.layer_weighting).tolist()
    names = [li.name for li in layers]
    cells = {m: framework_strata(names, weights, config.sampling.keys(m)) for m in config.modes}
    check_size(config, len(config.models) * sum(len(c) for c in cells.values()))
    rows: list[dict] = []
    for mode, strata in cells.items():
        for s in strata:
            drawn = draw_sites(
                layers,
                mode,
                config.injections,
                n_images,
                config.layer_weighting,
                stratum_rng(config.seed, model, mode, s.label),
                layer=s.layer,
                bit=s.bit,
            )
            keys = list(drawn)
            columns = [drawn[k].tolist() for k in keys]
            for values in zip(*columns, strict=True):
                row = dict(zip(keys, values, strict=True))
                rows.append(
                    {
                        "model": model,
                        "mode": mode,
                        "layer_name": layers[row["layer"]].name,
                        **row,
                        "stratum": s.label,
                        "stratum_weight": s.weight,
                    }
                )
    return rows
