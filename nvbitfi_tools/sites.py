"""Draws injection sites the way NVBitFI's generate_injection_list.py does
(docs/NVBITFI-INTERFACE.md, "Site selection").

For one instruction group a site is a dynamic thread-instruction drawn uniformly over the whole
run: a launch is chosen with probability proportional to its count for that group and the
instruction index is uniform within it. Three deliberate differences from the script: the draw
is over [0, total) (the script's inclusive ``randint`` can return ``total``, a site that maps
to nothing); launches of kernels whose names are 1000 bytes or more are left out, since the
injector's ``char[1000]`` name buffer would overflow (:attr:`Proposals.excluded` says how many
instructions that removes); and the two seeds are float32 values, so the injector's ``float``
reads exactly the value stored here and never rounds a seed up to 1.0f (which would shift a
mask by 32).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from fi_campaign.nvbitfi_tools.errors import NvbitfiError
from fi_campaign.nvbitfi_tools.isa import Dialect, injectable_igid, mode_spec
from fi_campaign.nvbitfi_tools.isa import dialect as get_dialect
from fi_campaign.nvbitfi_tools.profile import Profile


@dataclass(frozen=True)
class Site:
    """One injection site, named as in the injection-info file and the injection list."""

    kernel: str  # whitespace-free kernel name of the launch
    kcount: int  # global dynamic launch index (the profile's ``index``)
    igid: int  # instruction group
    iid: int  # 0-based index among the group's dynamic thread-instructions of that launch
    op_id_seed: float  # opIDSeed in [0, 1): selects the destination register
    bit_id_seed: float  # bitIDSeed in [0, 1): selects the bit (bfm 0) or the mask (random models)


KERNEL_NAME_BYTES = 1000  # the injector's kernelName buffer, terminator included


@dataclass(frozen=True)
class Location:
    """Where a site is: the launch (by kernel name and global index) and the instruction in it."""

    kernel: str
    kcount: int
    iid: int


@dataclass(frozen=True)
class Exclusion:
    """What the draw leaves out: launches whose kernel name the injector cannot hold."""

    launches: int
    instructions: int  # of the group
    total: int  # the group's instructions in the whole profile

    @property
    def share(self) -> float:
        return self.instructions / self.total if self.total else 0.0


class Proposals:
    """One group's dynamic thread-instructions of a profile, each equally likely: the plan's
    draw, and the proposal distribution sites are re-drawn from when the injector's own count
    of a launch is smaller than the profile's (docs/NVBITFI.md, "Counts")."""

    def __init__(self, profile: Profile, group: str | int, kernel: str | None = None) -> None:
        """``kernel``: only the launches of that kernel (a stratum of a stratified plan)."""
        d = get_dialect(profile.dialect)
        self.igid = injectable_igid(d, group)
        self.group = d.group_name(self.igid)
        self.launches = profile.launches
        raw = np.array(profile.counts(self.igid), dtype=np.int64)
        if kernel is not None:
            raw = np.where([launch.kernel == kernel for launch in self.launches], raw, 0)
        fits = np.array([len(launch.kernel.encode()) < KERNEL_NAME_BYTES for launch in self.launches])
        self.counts = np.where(fits, raw, 0)
        self.ends = np.cumsum(self.counts)
        self.total = int(self.counts.sum())
        self.excluded = Exclusion(int(((raw > 0) & ~fits).sum()), int(raw[~fits].sum()), int(raw.sum()))
        if self.total == 0:
            why = (
                f"; all {self.excluded.instructions} are in kernels whose names are {KERNEL_NAME_BYTES} bytes or "
                "more, which the injector cannot hold"
                if self.excluded.instructions
                else ""
            )
            raise NvbitfiError(
                f"the profile has no {self.group} instructions, so no {self.group} site can be drawn{why}."
            )

    def profile_count(self, kcount: int) -> int:
        """The profile's count of the group in launch ``kcount`` (0 for a left-out launch)."""
        return int(self.counts[kcount]) if 0 <= kcount < len(self.counts) else 0

    def draw(self, rng: np.random.Generator, n: int) -> list[Location]:
        flat = rng.integers(0, self.total, size=n, dtype=np.int64)
        which = np.searchsorted(self.ends, flat, side="right")
        iids = flat - (self.ends[which] - self.counts[which])
        return [
            Location(self.launches[w].kernel, self.launches[w].index, int(i))
            for w, i in zip(which.tolist(), iids.tolist(), strict=False)
        ]


def draw_sites(profile: Profile, group: str | int, n: int, rng: np.random.Generator) -> list[Site]:
    """``n`` sites of one group, uniform over all its dynamic thread-instructions in the run."""
    if n < 0:
        raise ValueError(f"n must be >= 0, not {n}")
    proposals = Proposals(profile, group)
    where = proposals.draw(rng, n)
    op_seeds = rng.random(n, dtype=np.float32)
    bit_seeds = rng.random(n, dtype=np.float32)
    return [
        Site(w.kernel, w.kcount, proposals.igid, w.iid, float(o), float(b))
        for w, o, b in zip(where, op_seeds, bit_seeds, strict=False)
    ]


def draw_within(proposals: Proposals, n: int, rng: np.random.Generator, bit: int | None = None) -> list[Site]:
    """``n`` sites of one stratum: uniform over ``proposals`` (a group, or one kernel's launches
    of it), with the bit FLIP_SINGLE_BIT flips fixed to ``bit`` when given: its seed is uniform
    over the float32 values the injector maps to that bit."""
    where = proposals.draw(rng, n)
    op_seeds = rng.random(n, dtype=np.float32)
    bit_seeds = rng.random(n, dtype=np.float32) if bit is None else bit_seeds_for(bit, rng, n)
    return [
        Site(w.kernel, w.kcount, proposals.igid, w.iid, float(o), float(b))
        for w, o, b in zip(where, op_seeds, bit_seeds, strict=True)
    ]


def bit_seeds_for(bit: int, rng: np.random.Generator, n: int) -> np.ndarray:
    """bitIDSeeds in [bit/32, (bit+1)/32) as float32, so that (int)(32 * seed) is ``bit``; a draw
    that rounds up onto the next bit's first value is moved one float32 down."""
    if not 0 <= bit < 32:
        raise ValueError(f"bit must be from 0 to 31, not {bit}")
    seeds = ((bit + rng.random(n)) / 32).astype(np.float32)
    top = np.float32((bit + 1) / 32)
    return np.where(seeds >= top, np.nextafter(top, np.float32(0)), seeds)


def stratum_rng(seed: int, igid: int, mode: str) -> np.random.Generator:
    """One generator per (group, mode), so a stratum's sites do not depend on which others exist."""
    return np.random.default_rng([seed, igid, zlib.crc32(mode.encode())])


def draw_stratified(
    profile: Profile, strata: Iterable[tuple[str | int, str]], n: int, seed: int
) -> dict[tuple[int, str], list[Site]]:
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
        raise NvbitfiError(
            f"kernel name '{site.kernel[:60]}' is empty or has whitespace; the injector "
            "reads field 3 only up to the first space."
        )
    if len(site.kernel.encode()) >= KERNEL_NAME_BYTES:
        raise NvbitfiError(
            f"kernel name of launch {site.kcount} is {len(site.kernel.encode())} bytes, but "
            f"the injector's buffer holds {KERNEL_NAME_BYTES - 1}; this site cannot be injected."
        )
    if not 0 <= site.kcount < 2**31:
        raise NvbitfiError(f"launch index {site.kcount} does not fit the injector's int.")
    if not 0 <= site.iid < 2**64:
        raise NvbitfiError(f"instruction index {site.iid} does not fit the injector's 64-bit counter.")
    for label, seed in (("opIDSeed", site.op_id_seed), ("bitIDSeed", site.bit_id_seed)):
        if not 0.0 <= float(np.float32(seed)) < 1.0:
            raise NvbitfiError(f"{label} {seed!r} is not in [0, 1) as a float32.")
