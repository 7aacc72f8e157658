"""The strata of a stratified plan (docs/DESIGN.md, "Stratified sampling"): for one model x mode,
every combination of the configured keys' values, with its exact share of the fault population,
and the sites drawn within each.

A stratum's share is known from the plan alone: a bit is 1/32 of every flip (1/16 in a float16
or bfloat16 network, whose values have 16 bits); a layer is its
weight as the simple draw uses it (``faults.layer_weights``); an image is 1/count, as the simple
draw picks the image uniformly and independently of the layer; a kernel or an instruction group is
its part of the profile's dynamic instructions of the campaign's group. A combination's share is
the product, within the layer or kernel for a bit. Each stratum draws ``injections`` sites (the
most the allocation could ever give it) from its own generator, so adding a stratum changes no
other stratum's sites.
"""

from __future__ import annotations

import itertools
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from fi_campaign.config import Config
from fi_campaign.errors import UserError
from fi_campaign.limits import MAX_SITES
from fi_campaign.nvbitfi_tools.errors import NvbitfiError

if TYPE_CHECKING:
    from fi_campaign.nvbitfi_tools.profile import Profile
    from fi_campaign.nvbitfi_tools.sites import Site as NvSite

BITS = 32


@dataclass(frozen=True, kw_only=True)
class Stratum:
    """One stratum of a model x mode: its label, its share, and what it fixes."""

    label: str
    weight: float
    layer: int | None = None  # framework level
    image: int | None = None  # framework level: a row of the campaign's drawn inputs
    bit: int | None = None
    kernel: str | None = None  # SASS level: a kernel name
    igid: int | None = None  # SASS level: a base instruction group


def label(parts: list[tuple[str, object]]) -> str:
    """``key=value`` pairs in the configured order, one space apart (no name holds whitespace:
    layer names are module paths, kernel names come whitespace-free from the profile); one
    stratum of everything is ``all``."""
    return " ".join(f"{k}={v}" for k, v in parts) or "all"


def parse_label(text: str) -> dict[str, str]:
    """A label's ``key=value`` pairs (a value may hold "=", never whitespace)."""
    if text == "all":
        return {}
    return dict(part.split("=", 1) for part in text.split(" ") if "=" in part)


def stratum_rng(seed: int, model: str, mode: str, stratum: str) -> np.random.Generator:
    """One generator per stratum of a model x mode, so its sites depend on nothing else."""
    return np.random.default_rng(
        [seed, zlib.crc32(model.encode()), zlib.crc32(mode.encode()), zlib.crc32(stratum.encode())]
    )


def framework_strata(
    layer_names: list[str],
    layer_weights: list[float],
    keys: tuple[str, ...],
    images: Sequence[int] = (),
    bits: int = BITS,
) -> list[Stratum]:
    """Every combination of ``keys`` (layer, image, bit) for a framework-level model x mode.
    ``images``: the drawn inputs' indices in their source, which name the image strata as the
    export's ``image`` column names a site's input; ``bits``: the width of the network's values."""
    options: dict[str, list[tuple[object, float, dict]]] = {
        "layer": [(name, w, {"layer": i}) for i, (name, w) in enumerate(zip(layer_names, layer_weights, strict=True))],
        "image": [(source, 1 / len(images), {"image": row}) for row, source in enumerate(images)],
        "bit": [(b, 1 / bits, {"bit": b}) for b in range(bits)],
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
    """A stratified plan holds ``stratum_sites`` sites in every stratum; refuse one past the ceiling."""
    sites = strata_per_cell * config.stratum_sites
    if sites > MAX_SITES:
        raise UserError(
            f"stratified sampling plans {config.stratum_sites:,} sites in each stratum, {sites:,} in all, but a "
            f"campaign holds at most {MAX_SITES:,}; lower injections or sampling.sites, or stratify by fewer keys."
        )


def framework_sites(
    config: Config,
    model: str,
    layers: list,
    images: Sequence[int],
    bits: int = BITS,
    slots: list | None = None,
) -> list[dict]:
    """The sites of every stratum of every mode of a framework-level model, each row with its
    stratum's label and share; ``images`` holds the drawn inputs' indices in their source,
    ``bits`` the width of the network's values (16 for float16 and bfloat16) and ``slots`` the
    targets' parameters, for weight modes."""
    from fi_campaign.models.faults import draw_sites, layer_weights
    from fi_campaign.models.weight_faults import WEIGHT_MODES, WEIGHT_STUCK_AT, parameter_weights

    names = [li.name for li in layers]
    cells = {}
    for m in config.modes:
        by = config.sampling.keys(m)
        if m == WEIGHT_STUCK_AT and "image" in by:
            raise UserError(f"sampling: {m} faults every image at once; stratify it by layer or bit, not image.")
        weights = (
            parameter_weights(slots or [], layers, config.layer_weighting)
            if m in WEIGHT_MODES
            else layer_weights(layers, config.layer_weighting)
        )
        cells[m] = framework_strata(names, weights.tolist(), by, images, bits)
    check_size(config, len(config.models) * sum(len(c) for c in cells.values()))
    rows: list[dict] = []
    for mode, strata in cells.items():
        for s in strata:
            drawn = draw_sites(
                layers,
                mode,
                config.stratum_sites,
                len(images),
                config.layer_weighting,
                stratum_rng(config.seed, model, mode, s.label),
                layer=s.layer,
                bit=s.bit,
                image=s.image,
                bits=bits,
                slots=slots,
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


def group_members(profile: Profile, group: str) -> list[str]:
    """The base instruction groups a group is made of: itself, or for gppr every base group with
    a destination register and for gp those less the predicate group (NVBitFI's definitions)."""
    from fi_campaign.nvbitfi_tools.isa import dialect

    d = dialect(profile.dialect)
    name = d.group_name(group)
    if name not in ("gp", "gppr"):
        return [name]
    dropped = {"nodest"} | ({"pr"} if name == "gp" else set())
    return [g for g in d.base_groups if g not in dropped and profile.total(g) > 0]


def nvbitfi_strata(profile: Profile, group: str, keys: tuple[str, ...]) -> list[Stratum]:
    """Every combination of ``keys`` (kernel, igid, bit) that has instructions, each with its
    share of the group's profiled dynamic instructions (launches the injector cannot name left
    out, as the simple draw leaves them out), times 1/32 for a bit."""
    from fi_campaign.nvbitfi_tools.isa import dialect, injectable_igid
    from fi_campaign.nvbitfi_tools.sites import Proposals

    d = dialect(profile.dialect)
    members = group_members(profile, group) if "igid" in keys else [d.group_name(group)]
    for m in members:
        try:
            injectable_igid(d, m)
        except NvbitfiError as e:
            raise UserError(
                f"igid strata of {group} need sites of {m} as their own group, which the injector cannot take "
                f"({e}); stratify by kernel, or choose another group."
            ) from None
    counts: dict[tuple[str | None, str], int] = {}
    for m in members:
        proposals = Proposals(profile, m)
        for launch, c in zip(proposals.launches, proposals.counts.tolist(), strict=True):
            if c:
                key = (launch.kernel if "kernel" in keys else None, m)
                counts[key] = counts.get(key, 0) + int(c)
    total = sum(counts.values())
    out = []
    bits: list[int | None] = list(range(BITS)) if "bit" in keys else [None]
    for (kernel, m), c in counts.items():
        for bit in bits:
            values = {"kernel": kernel, "igid": m, "bit": bit}
            out.append(
                Stratum(
                    label=label([(k, values[k]) for k in keys]),
                    weight=c / total / (BITS if bit is not None else 1),
                    kernel=kernel,
                    igid=d.igid(m),
                    bit=bit,
                )
            )
    return out


def nvbitfi_rows(
    config: Config, profile: Profile, model: str, mode: str, strata: list[Stratum]
) -> list[tuple[Stratum, list[NvSite], np.random.Generator]]:
    """Each stratum's sites (uniform over its instructions, the bit fixed where it is one) and the
    stratum's generator, which draws the sites' power-law values next."""
    from fi_campaign.nvbitfi_tools.sites import Proposals, draw_within

    out = []
    for s in strata:
        rng = stratum_rng(config.seed, model, mode, s.label)
        assert s.igid is not None, "every SASS-level stratum names its group"
        out.append((s, draw_within(Proposals(profile, s.igid, kernel=s.kernel), config.stratum_sites, rng, s.bit), rng))
    return out
