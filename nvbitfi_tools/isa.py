"""NVBitFI enums per injector build ("dialect"), what each build can inject and how its
profiler and injector count (docs/NVBITFI-INTERFACE.md; read from the
sources of all three builds):

- ``nvlabs``: stock NVlabs/nvbitfi (HEAD e6fbace, NVBit 1.5.5). Four bfms, no warp models.
  Profiler and injector both skip predicated-off thread-instructions (0dc3232) and the
  profiler's warp leader is a lane id (2f558ff): the profile's counts are the injector's.
- ``carol``: UFRGS-CAROL/nvbitfi (8f7e48a, dsn_2021 f1566c8). Nine bfms: FlexGrip
  relative-error models 4/5 and the warp models, WARP_RANDOM_VALUE = 7. Both tools count
  predicated-off thread-instructions; its profiler keeps the old leader test
  ``threadIdx.x % 32 == leader``, so its counts are not its injector's.
- ``pr2022``: NVlabs/nvbitfi pull request #19 (Fernandes dos Santos, 10/2022, head 17653af).
  Ten instruction groups, WARP_RANDOM_VALUE = 4, WARP_ZERO_VALUE = 5. Its injector skips
  predicated-off thread-instructions, its profiler counts them (``profiler_ballot(1)``).
- ``fi-campaign``: this project's own NVBit tool (``nvbitfi_tools/tool``, NVBit >= 1.7). The
  2022 fork's ten groups; single_bit, the paper's power-law warp_random and the CAROL-style
  warp_xor. Profiler and injector share one counting rule. Its injection-info file and log
  have their own format (``render``, ``toollog``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from fi_campaign.nvbitfi_tools.errors import NvbitfiError

MODES = ("single_bit", "warp_random", "warp_xor")


class IGID(IntEnum):
    """Instruction groups of stock NVBitFI and the CAROL fork (common/arch.h GroupType)."""

    FP64 = 0
    FP32 = 1
    LD = 2
    PR = 3
    NODEST = 4
    OTHERS = 5
    GPPR = 6
    GP = 7


class IGID2022(IntEnum):
    """Instruction groups of the 10/2022 fork (ten groups; fp16 and mma split out of others)."""

    FP64 = 0
    FP32 = 1
    FP16 = 2
    MMA = 3
    LD = 4
    PR = 5
    NODEST = 6
    OTHERS = 7
    GPPR = 8
    GP = 9


class BFM(IntEnum):
    """Stock bit-flip models (common/arch.h BitFlipModel)."""

    FLIP_SINGLE_BIT = 0
    FLIP_TWO_BITS = 1
    RANDOM_VALUE = 2
    ZERO_VALUE = 3


class CarolBFM(IntEnum):
    """UFRGS-CAROL bit-flip models. BLOCK_RANDOM_VALUE is unfinished (mask 0) and absent from params.py."""

    FLIP_SINGLE_BIT = 0
    FLIP_TWO_BITS = 1
    RANDOM_VALUE = 2
    ZERO_VALUE = 3
    FLEXGRIP_RELATIVE_FU = 4
    FLEXGRIP_RELATIVE_PIPELINE = 5  # reads the FU table too (docs/NVBITFI-INTERFACE.md)
    WARP_SINGLE_BIT = 6  # two adjacent bits, despite the name
    WARP_RANDOM_VALUE = 7
    BLOCK_RANDOM_VALUE = 8


class BFM2022(IntEnum):
    """Bit-flip models of pull request #19 (common/arch.h at 17653af)."""

    FLIP_SINGLE_BIT = 0
    FLIP_TWO_BITS = 1
    RANDOM_VALUE = 2
    ZERO_VALUE = 3  # XOR with (unsigned)(float)oldVal: not an exact zero above 2^24
    WARP_RANDOM_VALUE = 4  # every active lane XORs (unsigned)(0xFFFFFFFF * bitIDSeed), in float
    WARP_ZERO_VALUE = 5  # every active lane XORs its own (unsigned)(float)oldVal


class FiBFM(IntEnum):
    """Fault models of fi-campaign's own tool (nvbitfi_tools/tool/fi_logic.h FiModel)."""

    FLIP_SINGLE_BIT = 0
    WARP_RANDOM_VALUE = 1  # per lane x (1 + s r), r from the campaign's power law
    WARP_XOR_VALUE = 2  # the CAROL / 2022-fork uniform mask, for comparison with those builds


class UnknownDialect(NvbitfiError):
    pass


class UnsupportedMode(NvbitfiError):
    pass


@dataclass(frozen=True)
class Dialect:
    """One injector build's numbering and the facts about it that change what a result means."""

    name: str
    title: str
    igids: type[IntEnum]
    bfms: type[IntEnum]
    non_injectable: frozenset[str]  # groups the injector never writes (pr: NVBit cannot; nodest: none)
    predicate_aware: bool  # the injector skips predicated-off thread-instructions
    source_public: bool  # injector source available, so the semantics below are read from code
    profile_invariants: bool  # instrs = sum of base groups, gppr = instrs - nodest, gp = gppr - pr
    # whether the build's own profiler counts exactly what its injector counts; when not, sites
    # drawn from the profile are accepted only within the injector's own count (rejection)
    profile_is_injector_count: bool = True
    counting: str = ""  # how profiler and injector count, in words, stored with each result

    @property
    def groups(self) -> tuple[str, ...]:
        """Group names in igid order, as the profiler writes them (IGID_STR)."""
        return tuple(g.name.lower() for g in self.igids)

    @property
    def base_groups(self) -> tuple[str, ...]:
        """The disjoint groups whose counts sum to a launch's ``instrs``."""
        return tuple(g for g in self.groups if g not in ("gppr", "gp"))

    @property
    def num_bfm_types(self) -> int:
        return len(self.bfms)

    def igid(self, group: str | int) -> int:
        """The igid of a group given by name (``fp32``) or number, checked against this build."""
        if isinstance(group, bool) or not isinstance(group, (int, str)):
            raise NvbitfiError(f"instruction group {group!r} is neither a name nor a number.")
        if isinstance(group, int):
            if 0 <= group < len(self.groups):
                return group
            raise NvbitfiError(
                f"instruction group {group} does not exist in the {self.name} build (0-{len(self.groups) - 1})."
            )
        if group.lower() in self.groups:
            return self.groups.index(group.lower())
        raise NvbitfiError(
            f"instruction group {group!r} does not exist in the {self.name} build (groups: {', '.join(self.groups)})."
        )

    def group_name(self, group: str | int) -> str:
        return self.groups[self.igid(group)]


DIALECTS: dict[str, Dialect] = {
    "nvlabs": Dialect(
        "nvlabs",
        "stock NVlabs NVBitFI",
        IGID,
        BFM,
        frozenset({"pr", "nodest"}),
        predicate_aware=True,
        source_public=True,
        profile_invariants=True,
        counting="profiler and injector both count each executed thread-instruction whose guard predicate "
        "is true (the profiler through a lane-id warp leader), so the profile's counts are the injector's",
    ),
    "carol": Dialect(
        "carol",
        "UFRGS-CAROL NVBitFI fork",
        IGID,
        CarolBFM,
        frozenset({"pr", "nodest"}),
        predicate_aware=False,
        source_public=True,
        profile_invariants=True,
        profile_is_injector_count=False,
        counting="the injector counts every thread that executes the instruction, predicated-off ones "
        "included; the fork's profiler counts the same threads but adds each warp's count once per "
        "thread with threadIdx.x % 32 == leader, several times over (or never) for blocks whose "
        "width is not a multiple of 32, so sites are accepted only within the injector's own count "
        "of their launch (rejection against the counts its logs report)",
    ),
    "pr2022": Dialect(
        "pr2022",
        "NVlabs/nvbitfi pull request #19 (Fernandes dos Santos, 10/2022)",
        IGID2022,
        BFM2022,
        frozenset({"pr", "nodest"}),
        predicate_aware=True,
        source_public=True,
        profile_invariants=True,
        profile_is_injector_count=False,
        counting="the injector counts each executed thread-instruction whose guard predicate is true, as "
        "stock; its profiler counts every active thread whatever its predicate (profiler_ballot(1)), so "
        "launches with predicated-off instructions are over-counted in the profile and sites are "
        "accepted only within the injector's own count of their launch (rejection against the counts "
        "its logs report)",
    ),
    "fi-campaign": Dialect(
        "fi-campaign",
        "fi-campaign's own NVBit tool",
        IGID2022,
        FiBFM,
        frozenset({"pr", "nodest"}),
        predicate_aware=True,
        source_public=True,
        profile_invariants=True,
        counting="profile and inject modes share one counting rule: each executed thread-instruction whose "
        "guard predicate is true, counted by the warp leader found by lane id, callee functions "
        "included in both, so the profile's counts are the injector's",
    ),
}


def dialect(name: str | Dialect) -> Dialect:
    """The dialect called ``name``; one sentence naming the known ones otherwise."""
    if isinstance(name, Dialect):
        return name
    if name not in DIALECTS:
        raise UnknownDialect(f"unknown NVBitFI dialect {name!r}; known: {', '.join(DIALECTS)}.")
    return DIALECTS[name]


@dataclass(frozen=True)
class ModeSpec:
    """How one project mode is injected by one build: the injection-info numbers and their meaning."""

    dialect: str
    mode: str
    igid: int  # default group: the FP32 instructions the paper targets
    bfm: int
    bfm_name: str
    semantics: str


_SINGLE_BIT = (
    "xor 1 << (int)(32*bitIDSeed) into one destination register (index (int)(totalDest*opIDSeed)) "
    "of one {group} thread-instruction, right after it executes"
)
_WARP_MASK = (
    "XOR the same destination register index (opIDSeed) with the same mask (unsigned)(0xFFFFFFFF*bitIDSeed) "
    "computed in float32 (its low bits are zero above 2^24): a uniform random XOR, not a power-law "
    "value and not an overwrite"
)
_SEMANTICS = {
    ("nvlabs", "single_bit"): "nvbitfi nvlabs FLIP_SINGLE_BIT (bfm 0): "
    + _SINGLE_BIT
    + "; predicated-off thread-instructions are never hit",
    ("carol", "single_bit"): "nvbitfi carol FLIP_SINGLE_BIT (bfm 0): as stock, "
    + _SINGLE_BIT
    + "; predicated-off thread-instructions can be hit",
    ("pr2022", "single_bit"): "nvbitfi pr2022 FLIP_SINGLE_BIT (bfm 0): as stock, "
    + _SINGLE_BIT
    + "; predicated-off thread-instructions are never hit",
    ("carol", "warp_random"): "nvbitfi carol WARP_RANDOM_VALUE (bfm 7): after the per-thread match, "
    "__any_sync(0xFFFFFFFF, match) makes every thread of the warp holding the selected {group} "
    "thread-instruction that reaches that point " + _WARP_MASK + "; the log keeps the before/after of one "
    "thread only",
    ("pr2022", "warp_random"): "nvbitfi pr2022 WARP_RANDOM_VALUE (bfm 4): after the per-thread match, "
    "__any_sync(__activemask(), match) makes every active lane of the warp holding the selected {group} "
    "thread-instruction (lanes at that instruction whose guard predicate is true) "
    + _WARP_MASK
    + "; the log has one block per lane and each injected lane's before/after is stored",
}
_OWN = (
    "; counted per thread with the guard predicate respected, the warp leader found by lane id, "
    "callee functions and cuLaunchKernelEx launches included"
)
_SEMANTICS.update(
    {
        ("fi-campaign", "single_bit"): "fi-campaign tool single_bit: " + _SINGLE_BIT + _OWN,
        ("fi-campaign", "warp_random"): "fi-campaign tool warp_random: every lane of the warp holding the "
        "selected {group} thread-instruction whose guard predicate let it execute has the same destination "
        "register (chosen by opIDSeed) replaced, as float32 x, by x (1 + s r) computed in float64, r drawn "
        "per lane from the campaign's power law (x_min, alpha) and s a random sign, both from the site's "
        "value seed by sampler fi-campaign/lanes/1, the framework-level injector's sampler" + _OWN,
        ("fi-campaign", "warp_xor"): "fi-campaign tool warp_xor: every lane of the warp holding the selected "
        "{group} thread-instruction whose guard predicate let it execute XORs the same destination register "
        "with the same mask (uint32)(0xFFFFFFFF*bitIDSeed) computed in float32, as the carol and pr2022 "
        "warp models do" + _OWN,
    }
)
_BFM_NAME = {"single_bit": "FLIP_SINGLE_BIT", "warp_random": "WARP_RANDOM_VALUE", "warp_xor": "WARP_XOR_VALUE"}


def supported_modes(name: str | Dialect) -> tuple[str, ...]:
    """The project modes this build can inject: stock NVBitFI has no warp-wide model."""
    d = dialect(name)
    return tuple(m for m in MODES if _BFM_NAME[m] in d.bfms.__members__)


def can_inject(name: str | Dialect, mode: str) -> bool:
    return mode in supported_modes(name)


def mode_spec(
    name: str | Dialect,
    mode: str,
    group: str | int = "fp32",
    powerlaw_line: bool = False,
    build_reads_powerlaw: bool = False,
) -> ModeSpec:
    """igid, bfm and semantics for (dialect, mode), refusing a mode the build cannot inject.

    ``powerlaw_line`` says whether the rendered file carries the extra power-law line; no public
    build reads it, so the semantics says it was ignored unless the caller states the build reads it
    (see :func:`semantics`).
    """
    d = dialect(name)
    if mode not in MODES:
        raise UnsupportedMode(f"unknown mode {mode!r}; modes: {', '.join(MODES)}.")
    if not can_inject(d, mode):
        raise UnsupportedMode(
            f"the {d.name} NVBitFI build ({d.title}) cannot inject {mode}: it has no "
            f"{_BFM_NAME[mode]} model; use a carol or pr2022 build, or mode "
            f"{', '.join(supported_modes(d))}."
        )
    igid = injectable_igid(d, group)
    if d.name == "fi-campaign" and mode == "warp_random" and d.group_name(igid) != "fp32":
        raise UnsupportedMode(
            f"warp_random of the fi-campaign tool reads the destination register as a "
            f"float32, so it needs group fp32, not {d.group_name(igid)}."
        )
    bfm = d.bfms[_BFM_NAME[mode]]
    text = semantics(d, mode, d.group_name(igid), powerlaw_line, build_reads_powerlaw)
    return ModeSpec(d.name, mode, igid, int(bfm), bfm.name, text)


_WHY_NOT = {
    "pr": "its predicate-register path is disabled because NVBit cannot write predicates",
    "nodest": "its instructions write no destination register",
}


def injectable_igid(name: str | Dialect, group: str | int) -> int:
    """The igid of ``group`` if the injector can write a fault into it; one sentence otherwise."""
    d = dialect(name)
    igid = d.igid(group)
    g = d.group_name(igid)
    if g in d.non_injectable:
        allowed = ", ".join(x for x in d.groups if x not in d.non_injectable)
        why = _WHY_NOT.get(g, "unsupported")
        raise UnsupportedMode(f"instruction group {g} cannot be injected by NVBitFI ({why}); choose one of {allowed}.")
    return igid


def math_note(name: str | Dialect, math: str) -> str:
    """Which group holds a float32 convolution's arithmetic in each math mode (PyTorch lets
    cuDNN use TF32 tensor cores on sm_80 and newer unless told not to)."""
    d = dialect(name)
    if math == "tf32":
        tensor = "mma" if "mma" in d.groups else "others"
        return (
            f"math tf32: on sm_80 and newer cuDNN runs float32 convolutions as HMMA tensor-core "
            f"instructions, counted in group {tensor}, not fp32"
        )
    return "math fp32: TF32 off, float32 convolutions run as FFMA and friends in group fp32"


def semantics(
    name: str | Dialect, mode: str, group: str = "fp32", powerlaw_line: bool = False, build_reads_powerlaw: bool = False
) -> str:
    """The sentence stored with every result of (dialect, mode): what the injector actually did."""
    d = dialect(name)
    key = (d.name, mode)
    if key not in _SEMANTICS:
        raise UnsupportedMode(f"the {d.name} NVBitFI build cannot inject {mode}.")
    text = _SEMANTICS[key].format(group=group)
    if d.counting:
        text += "; counting: " + d.counting
    if powerlaw_line and d.name != "fi-campaign":  # the own tool reads x_min and alpha itself
        text += (
            "; power-law value line 8 read by this power-law-capable build, semantics as that build defines"
            if build_reads_powerlaw
            else "; power-law value line 8 written but ignored (no public build reads it)"
        )
    return text
