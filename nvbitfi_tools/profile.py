"""Reads ``nvbitfi-igprofile.txt``, the profiler's one line per dynamic kernel launch.

Format (docs/NVBITFI-INTERFACE.md, "The profiler and its profile"):
``NVBit-igprofile; index: <k>; kernel_name: <name>; ctas: <g>; instrs: <N>; FADD: <c>, ... gp: <c>,``
The stock scripts split on ``;``; here the line is anchored at both ends instead, because a kernel
name is arbitrary text without whitespace (``voidat::native::(anonymousnamespace)::f<float,4>(...)``)
and nothing but convention keeps a ``;`` out of it. Group counts are taken by name from the last
pairs, which also tells a stock profile from a 10-group 2022 one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from fi_campaign.nvbitfi_tools.errors import NvbitfiError
from fi_campaign.nvbitfi_tools.isa import Dialect
from fi_campaign.nvbitfi_tools.isa import dialect as get_dialect

PROFILE_FILE = "nvbitfi-igprofile.txt"
_LINE = re.compile(
    r"NVBit-igprofile; index: (?P<index>\d+); kernel_name: (?P<name>.*); "
    r"ctas: (?P<ctas>\d+); instrs: (?P<instrs>\d+); (?P<pairs>.*,)\s*"
)
_PAIR = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*): (?P<count>\d+)")


class ProfileError(NvbitfiError):
    pass


@dataclass(frozen=True)
class Launch:
    """One dynamic kernel launch of the profiled run."""

    index: int  # global launch index over the whole process, from 0: the injector's kcount
    kernel: str  # NVBit's name with all whitespace removed, as the injector compares it
    ctas: int  # grid size for cuLaunchKernel[_ptsz], else 0
    instrs: int  # dynamic thread-instructions of the base groups
    groups: dict[str, int]  # group name -> dynamic thread-instructions
    opcodes: dict[str, int] = field(repr=False)
    line: int = 0  # 1-based line in the file


@dataclass(frozen=True)
class Profile:
    launches: tuple[Launch, ...]
    dialect: str

    def counts(self, group: str | int) -> list[int]:
        """Per-launch counts of one group, in launch order."""
        name = get_dialect(self.dialect).group_name(group)
        return [launch.groups[name] for launch in self.launches]

    def total(self, group: str | int) -> int:
        """Dynamic thread-instructions of a group over the whole run: a stratum's weight."""
        return sum(self.counts(group))

    def kernels(self) -> dict[str, int]:
        """Launches per kernel name, in first-launch order."""
        out: dict[str, int] = {}
        for launch in self.launches:
            out[launch.kernel] = out.get(launch.kernel, 0) + 1
        return out


def parse_profile(text: str, dialect: str | Dialect = "nvlabs", source: str = PROFILE_FILE) -> Profile:
    """Every launch of a profile, checked line by line; a bad line is named by its number."""
    d = get_dialect(dialect)
    launches: list[Launch] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        launch = _parse_line(raw, number, d, source)
        expected = launches[-1].index + 1 if launches else 0
        if launch.index != expected:
            raise ProfileError(
                f"{source} line {number}: launch index {launch.index} where {expected} "
                "was expected; the profile is cut, reordered or from more than one run."
            )
        launches.append(launch)
    if not launches:
        raise ProfileError(
            f"{source} has no launches: the profiled run never completed a kernel launch "
            "the profiler handles (did the workload fail, or run without the GPU?)."
        )
    return Profile(tuple(launches), d.name)


def read_profile(path: str | Path, dialect: str | Dialect = "nvlabs") -> Profile:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        raise ProfileError(f"no NVBitFI profile at {path}; run the workload under profiler.so first.") from None
    return parse_profile(text, dialect, str(path))


def require_groups(profile: Profile, needs: Iterable[tuple[str | int, str]]) -> None:
    """Refuse a (group, mode) stratum that has nothing to inject: its sites could not be drawn."""
    d = get_dialect(profile.dialect)
    for group, mode in needs:
        name = d.group_name(group)
        if profile.total(name) == 0:
            raise ProfileError(
                f"the profile has no {name} instructions in any of its "
                f"{len(profile.launches)} launches, so mode {mode} has nothing to inject."
            )


def _parse_line(raw: str, number: int, d: Dialect, source: str) -> Launch:
    where = f"{source} line {number}"
    m = _LINE.fullmatch(raw)
    if not m:
        raise ProfileError(
            f"{where} is not an NVBit-igprofile line ('{_clip(raw)}'); the file is "
            "truncated or was not written by the NVBitFI profiler."
        )
    name = m["name"]
    if not name or any(c.isspace() for c in name):
        raise ProfileError(
            f"{where}: kernel name '{_clip(name)}' is empty or contains whitespace, "
            "which the NVBitFI profiler removes; the file was not written by it."
        )
    pairs: list[tuple[str, int]] = []
    for piece in m["pairs"].split(",")[:-1]:
        pm = _PAIR.fullmatch(piece.strip())
        if not pm:
            raise ProfileError(f"{where}: '{_clip(piece.strip())}' is not a 'NAME: count' pair.")
        pairs.append((pm["name"], int(pm["count"])))
    tail = tuple(n for n, _ in pairs[-len(d.groups) :])
    if tail != d.groups:
        raise ProfileError(
            f"{where} ends with groups {', '.join(tail) or 'none'}, not the {d.name} "
            f"groups {', '.join(d.groups)}; is the configured dialect the build that "
            "wrote this profile?"
        )
    groups = dict(pairs[-len(d.groups) :])
    opcodes = dict(pairs[: -len(d.groups)])
    instrs = int(m["instrs"])
    if d.profile_invariants:
        base = sum(groups[g] for g in d.base_groups)
        if (
            instrs != base
            or groups["gppr"] != instrs - groups["nodest"]
            or groups["gp"] != groups["gppr"] - groups["pr"]
        ):
            raise ProfileError(
                f"{where}: group counts do not add up (instrs {instrs}, base groups "
                f"{base}, gppr {groups['gppr']}, gp {groups['gp']}); the line is corrupt."
            )
    return Launch(int(m["index"]), name, int(m["ctas"]), instrs, groups, opcodes, number)


def _clip(text: str, width: int = 60) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."
