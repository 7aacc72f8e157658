"""NVBitFI enums per injector build ("dialect") and what each build can inject.

Three builds disagree on the numbering of bit-flip models (bfm) and on what a warp-wide random
value is (docs/nvbitfi-protocol.md sections 4, 8; docs/design.md "Fault models"):

- ``nvlabs``: stock NVlabs/nvbitfi (HEAD e6fbace, NVBit 1.5.5). Four bfms, no warp models.
  Predicated-off thread-instructions are neither counted nor injected (since 0dc3232).
- ``carol``: UFRGS-CAROL/nvbitfi (8f7e48a). Nine bfms: FlexGrip relative-error models 4/5 and
  the warp models, WARP_RANDOM_VALUE = 7. Predates predicate-aware counting.
- ``pr2022``: the Fernandes dos Santos 10/2022 line (the "warp pull request"). Ten instruction
  groups, WARP_RANDOM_VALUE = 4. Only its constants are public, not its injector source.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from campaign.errors import UserError

MODES = ("single_bit", "warp_random")


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
    FLEXGRIP_RELATIVE_PIPELINE = 5  # reads the FU table too (protocol doc 8.1)
    WARP_SINGLE_BIT = 6  # two adjacent bits, despite the name
    WARP_RANDOM_VALUE = 7
    BLOCK_RANDOM_VALUE = 8


class BFM2022(IntEnum):
    """10/2022 fork bit-flip models (constants of its public parsers)."""

    FLIP_SINGLE_BIT = 0
    FLIP_TWO_BITS = 1
    RANDOM_VALUE = 2
    ZERO_VALUE = 3
    WARP_RANDOM_VALUE = 4
    WARP_ZERO_VALUE = 5


class UnknownDialect(UserError):
    pass


class UnsupportedMode(UserError):
    pass


@dataclass(frozen=True)
class Dialect:
    """One injector build's numbering and the facts about it that change what a result means."""

    name: str
    title: str
    igids: type[IntEnum]
    bfms: type[IntEnum]
    non_injectable: frozenset[str]  # groups the injector never writes (pr: NVBit cannot; nodest: none)
    predicate_aware: bool  # profiler/injector skip predicated-off thread-instructions
    source_public: bool  # injector source available, so the semantics below are read from code
    profile_invariants: bool  # instrs = sum of base groups, gppr = instrs - nodest, gp = gppr - pr

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
            raise UserError(f"instruction group {group!r} is neither a name nor a number.")
        if isinstance(group, int):
            if 0 <= group < len(self.groups):
                return group
            raise UserError(f"instruction group {group} does not exist in the {self.name} build "
                            f"(0-{len(self.groups) - 1}).")
        if group.lower() in self.groups:
            return self.groups.index(group.lower())
        raise UserError(f"instruction group {group!r} does not exist in the {self.name} build "
                        f"(groups: {', '.join(self.groups)}).")

    def group_name(self, group: str | int) -> str:
        return self.groups[self.igid(group)]


DIALECTS: dict[str, Dialect] = {
    "nvlabs": Dialect("nvlabs", "stock NVlabs NVBitFI", IGID, BFM, frozenset({"pr", "nodest"}),
                      predicate_aware=True, source_public=True, profile_invariants=True),
    "carol": Dialect("carol", "UFRGS-CAROL NVBitFI fork", IGID, CarolBFM, frozenset({"pr", "nodest"}),
                     predicate_aware=False, source_public=True, profile_invariants=True),
    # pr2022: predicate awareness and non-injectable groups are assumed (the fork postdates
    # stock's 0dc3232), and its profile sums are not checked, since its source is not public.
    "pr2022": Dialect("pr2022", "Fernandes dos Santos 10/2022 NVBitFI fork", IGID2022, BFM2022,
                      frozenset({"pr", "nodest"}), predicate_aware=True, source_public=False,
                      profile_invariants=False),
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


_SINGLE_BIT = ("xor 1 << floor(32*bitIDSeed) into one destination register (chosen by opIDSeed) "
               "of one {group} thread-instruction, right after it executes")
_SEMANTICS = {
    ("nvlabs", "single_bit"): "nvbitfi nvlabs FLIP_SINGLE_BIT (bfm 0): " + _SINGLE_BIT
    + "; predicated-off thread-instructions are neither counted nor hit",
    ("carol", "single_bit"): "nvbitfi carol FLIP_SINGLE_BIT (bfm 0): " + _SINGLE_BIT
    + "; this fork predates predicate-aware counting, so predicated-off thread-instructions are "
    "counted and can be hit",
    ("pr2022", "single_bit"): "nvbitfi pr2022 FLIP_SINGLE_BIT (bfm 0): assumed as stock, " + _SINGLE_BIT
    + "; the fork's injector source is not public",
    ("carol", "warp_random"): "nvbitfi carol WARP_RANDOM_VALUE (bfm 7): every thread of the warp "
    "holding the selected {group} thread-instruction that reaches it XORs the same destination "
    "register index with the same mask (uint32)(0xFFFFFFFF*bitIDSeed), computed in float32 so its "
    "low bits are zero; a uniform mask, not a power-law value and not an overwrite; the log keeps "
    "one thread's before/after",
    ("pr2022", "warp_random"): "nvbitfi pr2022 WARP_RANDOM_VALUE (bfm 4): a warp-wide random value "
    "at one {group} thread-instruction; exact semantics unknown, the fork's injector source is not "
    "public (only its constants are)",
}
_BFM_NAME = {"single_bit": "FLIP_SINGLE_BIT", "warp_random": "WARP_RANDOM_VALUE"}


def supported_modes(name: str | Dialect) -> tuple[str, ...]:
    """The project modes this build can inject: stock NVBitFI has no warp-wide model."""
    d = dialect(name)
    return tuple(m for m in MODES if _BFM_NAME[m] in d.bfms.__members__)


def can_inject(name: str | Dialect, mode: str) -> bool:
    return mode in supported_modes(name)


def mode_spec(name: str | Dialect, mode: str, group: str | int = "fp32",
              powerlaw_line: bool = False, build_reads_powerlaw: bool = False) -> ModeSpec:
    """igid, bfm and semantics for (dialect, mode), refusing a mode the build cannot inject.

    ``powerlaw_line`` says whether the rendered file carries the extra power-law line; no public
    build reads it, so the semantics says it was ignored unless the caller states the build reads it
    (see :func:`semantics`).
    """
    d = dialect(name)
    if mode not in MODES:
        raise UnsupportedMode(f"unknown mode {mode!r}; modes: {', '.join(MODES)}.")
    if not can_inject(d, mode):
        raise UnsupportedMode(f"the {d.name} NVBitFI build ({d.title}) cannot inject {mode}: it has no "
                              f"{_BFM_NAME[mode]} model; use a carol or pr2022 build, or mode "
                              f"{', '.join(supported_modes(d))}.")
    igid = injectable_igid(d, group)
    bfm = d.bfms[_BFM_NAME[mode]]
    text = semantics(d, mode, d.group_name(igid), powerlaw_line, build_reads_powerlaw)
    return ModeSpec(d.name, mode, igid, int(bfm), bfm.name, text)


_WHY_NOT = {"pr": "its predicate-register path is disabled because NVBit cannot write predicates",
            "nodest": "its instructions write no destination register"}


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


def semantics(name: str | Dialect, mode: str, group: str = "fp32", powerlaw_line: bool = False,
              build_reads_powerlaw: bool = False) -> str:
    """The sentence stored with every result of (dialect, mode): what the injector actually did."""
    d = dialect(name)
    key = (d.name, mode)
    if key not in _SEMANTICS:
        raise UnsupportedMode(f"the {d.name} NVBitFI build cannot inject {mode}.")
    text = _SEMANTICS[key].format(group=group)
    if powerlaw_line:
        text += ("; power-law value line 8 read by this power-law-capable build, semantics as that build defines"
                 if build_reads_powerlaw else
                 "; power-law value line 8 written but ignored (no public build reads it)")
    return text
