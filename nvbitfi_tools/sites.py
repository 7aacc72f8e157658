"""Draws injection sites the way NVBitFI's generate_injection_list.py does (protocol doc 3.4).

For one instruction group a site is a dynamic thread-instruction drawn uniformly over the whole
run: a launch is chosen with probability proportional to its count for that group and the
instruction index is uniform within it. Two deliberate differences from the script: the draw is
over [0, total) (the script's inclusive ``randint`` can return ``total``, a site that maps to
nothing), and the two seeds are float32 values, so the injector's ``float`` reads exactly the
value stored here and never rounds a seed up to 1.0f (which would shift a mask by 32).
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Iterable

import numpy as np

from campaign.errors import UserError
from nvbitfi_tools.isa import Dialect, dialect as get_dialect, injectable_igid, mode_spec
from nvbitfi_tools.profile import Profile


@dataclass(frozen=True)
class Site:
    """One injection site, named as in the injection-info file and the injection list."""

    kernel: str  # whitespace-free kernel name of the launch
    kcount: int  # global dynamic launch index (the profile's ``index``)
    igid: int  # instruction group
    iid: int  # 0-based index among the group's dynamic thread-instructions of that launch
    op_id_seed: float  # opIDSeed in [0, 1): selects the destination register
    bit_id_seed: float  # bitIDSeed in [0, 1): selects the bit (bfm 0) or the mask (random models)


def draw_sites(profile: Profile, group: str | int, n: int, rng: np.random.Generator) -> list[Site]:
    """``n`` sites of one group, uniform over all its dynamic thread-instructions in the run."""
    d = get_dialect(profile.dialect)
    igid = injectable_igid(d, group)
    name = d.group_name(igid)
    if n < 0:
        raise ValueError(f"n must be >= 0, not {n}")
    counts = np.array(profile.counts(igid), dtype=np.int64)
    total = int(counts.sum())
    if total == 0:
        raise UserError(f"the profile has no {name} instructions, so no {name} site can be drawn.")
    ends = np.cumsum(counts)
    flat = rng.integers(0, total, size=n, dtype=np.int64)
    which = np.searchsorted(ends, flat, side="right")
    iids = flat - (ends[which] - counts[which])
    op_seeds = rng.random(n, dtype=np.float32)
    bit_seeds = rng.random(n, dtype=np.float32)
    launches = profile.launches
    return [Site(launches[w].kernel, launches[w].index, igid, int(i), float(o), float(b))
            for w, i, o, b in zip(which.tolist(), iids.tolist(), op_seeds, bit_seeds)]


def stratum_rng(seed: int, igid: int, mode: str) -> np.random.Generator:
    """One generator per (group, mode), so a stratum's sites do not depend on which others exist."""
    return np.random.default_rng([seed, igid, zlib.crc32(mode.encode())])


def draw_stratified(profile: Profile, strata: Iterable[tuple[str | int, str]], n: int,
                    seed: int) -> dict[tuple[int, str], list[Site]]:
    """``n`` sites per (group, mode) stratum, refusing a mode the profile's dialect cannot inject."""
    d = get_dialect(profile.dialect)
    out: dict[tuple[int, str], list[Site]] = {}
    for group, mode in strata:
        spec = mode_spec(d, mode, group)
        out[(spec.igid, mode)] = draw_sites(profile, spec.igid, n, stratum_rng(seed, spec.igid, mode))
    return out


def group_shares(profile: Profile, groups: Iterable[str | int]) -> dict[int, float]:
    """Each group's share of the given groups' dynamic instructions: the stratum weights for an AVF."""
    d = get_dialect(profile.dialect)
    totals = {d.igid(g): profile.total(g) for g in groups}
    whole = sum(totals.values())
    return {g: (t / whole if whole else 0.0) for g, t in totals.items()}


def bit_position(bit_id_seed: float) -> int:
    """The bit FLIP_SINGLE_BIT flips: (int)(32 * seed) in float32, as the injector computes it."""
    return int(np.float32(32.0) * np.float32(bit_id_seed))


def dest_index(op_id_seed: float, total_dest: int) -> int:
    """Which of ``total_dest`` destination registers the injector picks: (int)(total * seed)."""
    return int(np.float32(total_dest) * np.float32(op_id_seed))


def random_mask(bit_id_seed: float) -> int:
    """RANDOM_VALUE / carol WARP_RANDOM_VALUE mask: (unsigned)(4294967295 * seed) in float32."""
    return int(np.float32(4294967295.0) * np.float32(bit_id_seed)) & 0xFFFFFFFF


def format_seed(value: float) -> str:
    """Shortest text that reads back as the same float32 (what the injector parses into)."""
    return np.format_float_positional(np.float32(value), unique=True, trim="0")


def injection_list_line(site: Site) -> str:
    """The site as a line of NVBitFI's injection list: ``<kname> <kcount> <iid> <opid> <bid> ``."""
    return f"{site.kernel} {site.kcount} {site.iid} {format_seed(site.op_id_seed)} {format_seed(site.bit_id_seed)} "


def check_site(site: Site, d: Dialect | str) -> None:
    """Refuse a site the injector would reject or misread (asserts, buffer, float rounding)."""
    d = get_dialect(d)
    injectable_igid(d, site.igid)
    if not site.kernel or any(c.isspace() for c in site.kernel):
        raise UserError(f"kernel name '{site.kernel[:60]}' is empty or has whitespace; the injector "
                        "reads field 3 only up to the first space.")
    if len(site.kernel.encode()) >= 1000:
        raise UserError(f"kernel name of launch {site.kcount} is {len(site.kernel.encode())} bytes, but "
                        "the injector's buffer holds 999; this site cannot be injected.")
    if not 0 <= site.kcount < 2**31:
        raise UserError(f"launch index {site.kcount} does not fit the injector's int.")
    if not 0 <= site.iid < 2**64:
        raise UserError(f"instruction index {site.iid} does not fit the injector's 64-bit counter.")
    for label, seed in (("opIDSeed", site.op_id_seed), ("bitIDSeed", site.bit_id_seed)):
        if not 0.0 <= float(np.float32(seed)) < 1.0:
            raise UserError(f"{label} {seed!r} is not in [0, 1) as a float32.")
