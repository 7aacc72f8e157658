"""Reads ``nvbitfi-injection-log-temp.txt``, the injector's own account of a run
(docs/NVBITFI-INTERFACE.md).

The log answers one question the outputs cannot: was a fault applied at all. Three states:

- ``injected``: an ``opcode:`` line names a real instruction (not NOP). The device sets the
  opcode only when it writes the fault, so this holds even when the block is cut short or was
  written by the SIGINT handler of a run that timed out afterwards. Pull request #19 writes
  one record per lane for its warp models, each inactive lane's ending "Error not injected":
  a warp fault was applied when any lane's record names an opcode, and every lane is kept.
- ``not_injected``: the injector wrote ``Error not injected`` (the selected launch ended and no
  thread matched the instruction index), or it aborted on its own register-read sanity check.
- ``no_report``: empty, missing or cut short before any verdict. The injector writes its block
  only at the *exit* of the selected launch, after checking for a CUDA error, so a run that
  crashed or hung inside that launch, or never reached it, leaves no verdict.

:func:`verdict` turns a state into what the caller stores. A ``no_report`` log is a DUE when the
run shows any DUE evidence (timeout, signal, non-zero exit, CUDA error, Xid), because those come
first in NVBitFI's classification order (9.5: timeout, Xid and exit status are checked before
the log); otherwise the process exited cleanly past every launch exit without the selected
launch happening, so nothing was injected, and it is never Masked (docs/NVBITFI-INTERFACE.md, rule 4).

A log that ends its selected launch with nothing injected also reports the injector's own
count of each group in that launch (:meth:`InjectionLog.launch_count`): what a profile that
disagrees with its injector is checked against.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Protocol

LOG_FILE = "nvbitfi-injection-log-temp.txt"
_KERNEL_ERROR = re.compile(r"ERROR FAIL in kernel execution \((?P<why>.*?)\);")
_GRP = re.compile(r"grp (\d+): (\d+)")
_HEADER = re.compile(r"Injection data(?:, laneId: ?(?P<lane>\d+))?")
_KV = re.compile(r"(?P<key>[A-Za-z_][A-Za-z0-9_ ]*?): ?(?P<value>.*)")


class LogState(str, Enum):
    INJECTED = "injected"
    NOT_INJECTED = "not_injected"
    NO_REPORT = "no_report"


@dataclass(frozen=True)
class Lane:
    """One injection record: the block ``write_inj_info`` writes. Stock and CAROL write one per
    log; pull request #19 writes one per lane of the warp for its warp models (header
    ``Injection data, laneId:<n>``), each lane holding its own register, mask and values."""

    lane: int | None  # the laneId the block names (or its place among header-less handler blocks)
    opcode: str | None = None
    mask: int | None = None
    before: int | None = None
    after: int | None = None
    reg: int | None = None
    pc_offset: int | None = None
    tid: int | None = None
    not_injected: bool = False  # "Error not injected" followed the block

    @property
    def injected(self) -> bool:
        """The device records the opcode only when it writes the fault."""
        return bool(self.opcode) and self.opcode != "NOP"


@dataclass(frozen=True)
class InjectionLog:
    state: LogState
    reason: str  # one sentence: why this state
    index: int | None = None  # launch index the block reports on
    kernel_name: str | None = None  # kernel actually launched at that index
    ctas: int | None = None
    instrs: int | None = None
    group_counts: dict[int, int] = field(default_factory=dict)  # counts up to the injection point
    mask: int | None = None  # the first injected lane's (else the last block's) values, below
    before: int | None = None
    after: int | None = None
    reg: int | None = None
    opcode: str | None = None
    pc_offset: int | None = None
    tid: int | None = None  # flat thread id (-1: none); CAROL's warp model logs one thread of the warp
    inspected: tuple[str, ...] = ()  # kernels the injector instrumented
    kernel_error: str | None = None  # CUDA error string of "ERROR FAIL in kernel execution (...)"
    signal: bool = False  # the SIGINT handler ran ("ERROR FAIL Detected Signal SIGKILL")
    register_mismatch: bool = False  # TOOL_VERBOSE sanity check failed; the injector aborted
    extra: dict[str, str] = field(default_factory=dict)  # other "key: value" lines (fork additions)
    lanes: tuple[Lane, ...] = ()  # every injection record, in log order
    launch_ended: bool = False  # an "Injection data" block: written at the exit of the selected launch

    @property
    def value_changed(self) -> bool | None:
        """False for a DUMMY build or a CAROL FlexGrip opcode it skips: applied, but nothing changed."""
        if self.before is None or self.after is None:
            return None
        return self.before != self.after

    @property
    def lanes_injected(self) -> int:
        return sum(lane.injected for lane in self.lanes)

    def matches(self, kernel: str, kcount: int) -> bool:
        """Whether the launch the injector reported on is the planned one (same launch sequence)."""
        return self.index == kcount and self.kernel_name == kernel

    def launch_count(self, igid: int) -> int | None:
        """The injector's own count of the group in the selected launch, when the log gives the
        whole launch's: the launch ended with nothing injected, so the counters never stopped
        (once a fault is written they stop at the injection point, and the signal handler
        writes them mid-launch)."""
        if (
            self.state is not LogState.NOT_INJECTED
            or not self.launch_ended
            or self.signal
            or self.register_mismatch
            or self.kernel_error is not None
        ):
            return None
        return self.group_counts.get(igid)


_SUMMARY = ("mask", "before", "after", "reg", "opcode", "pc_offset", "tid")


def parse_injection_log(text: str) -> InjectionLog:
    """Parses a log's text; never raises, since a damaged log is itself an outcome."""
    if not text.strip():
        return InjectionLog(LogState.NO_REPORT, "the injection log is empty.")
    values: dict = {"group_counts": {}, "extra": {}}
    inspected: list[str] = []
    blocks: list[dict] = []  # one per injection record, each with its header's lane (or None)
    mismatch = signal = launch_ended = False
    kernel_error = None
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        err = _KERNEL_ERROR.search(stripped)
        if err:
            kernel_error = err["why"]
        if "Expected reg value doesn't match" in stripped:
            mismatch = True
        if "ERROR FAIL Detected Signal" in stripped:
            signal = True
        if err or stripped.startswith("ERROR FAIL"):
            continue
        header = _HEADER.fullmatch(stripped)
        if header:
            launch_ended = True
            blocks.append({"lane": int(header["lane"]) if header["lane"] else None, "header": True})
        elif stripped == "Error not injected":
            if blocks:
                blocks[-1]["not_injected"] = True
        elif stripped.startswith("grp "):
            # the signal handler writes records without a header: a grp line opens each of them
            if not blocks or "grp" in blocks[-1]:
                blocks.append({"lane": None, "header": False})
            blocks[-1]["grp"] = True
            if not values["group_counts"]:
                values["group_counts"] = {int(g): int(c) for g, c in _GRP.findall(stripped)}
        elif stripped.startswith("beforeVal:"):
            before, _, after = stripped.partition(";")
            if blocks:
                blocks[-1]["before"] = _hex(before.partition(":")[2])
                blocks[-1]["after"] = _hex(after.partition(":")[2])
        elif stripped.startswith("inspecting:"):
            inspected.append(stripped.partition(":")[2].strip())
        else:
            _field(stripped, values, blocks[-1] if blocks else None)
    lanes = _lanes(blocks)
    chosen = next((lane for lane in lanes if lane.injected), lanes[-1] if lanes else None)
    summary = {k: getattr(chosen, k) for k in _SUMMARY} if chosen else {}
    common = dict(
        kernel_error=kernel_error,
        signal=signal,
        register_mismatch=mismatch,
        inspected=tuple(inspected),
        lanes=lanes,
        launch_ended=launch_ended,
        **values,
        **summary,
    )
    injected = [lane for lane in lanes if lane.injected]
    if mismatch:
        return InjectionLog(
            LogState.NOT_INJECTED,
            "the injector aborted on its register-read sanity check "
            "(TOOL_VERBOSE), so the run says nothing about the fault.",
            **common,
        )
    if injected:
        where = f" in {len(injected)} of {len(lanes)} lanes" if len(lanes) > 1 else ""
        return InjectionLog(
            LogState.INJECTED, f"the injector reports a fault applied to {injected[0].opcode}{where}.", **common
        )
    if any(lane.not_injected for lane in lanes):
        return InjectionLog(
            LogState.NOT_INJECTED,
            "the injector reports 'Error not injected': no thread "
            "of the selected launch reached the instruction index.",
            **common,
        )
    if kernel_error:
        why = f"the run stopped on a CUDA error ({kernel_error}) before the injector reported."
    elif signal:
        why = "the run was interrupted before the selected launch reported an injection."
    elif lanes:
        why = "the injection block is cut short before its verdict."
    else:
        why = "the log has no injection block: the selected launch never ended under the injector."
    return InjectionLog(LogState.NO_REPORT, why, **common)


def _lanes(blocks: list[dict]) -> tuple[Lane, ...]:
    """Blocks as lanes; the signal handler's header-less records of a warp model are numbered
    in the order it writes them, lane 0 first."""
    headless = [b for b in blocks if not b["header"]]
    out = []
    for b in blocks:
        lane = b["lane"] if b["header"] else (headless.index(b) if len(headless) > 1 else None)
        out.append(Lane(lane, **{k: b.get(k) for k in _SUMMARY}, not_injected=b.get("not_injected", False)))
    return tuple(out)


def read_injection_log(run_dir: str | Path) -> InjectionLog:
    """The log in a run directory; a missing file means the injector was never loaded."""
    path = Path(run_dir) / LOG_FILE
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return InjectionLog(
            LogState.NO_REPORT,
            f"there is no {LOG_FILE}: the injector was never loaded (it opens the log at process start).",
        )
    return parse_injection_log(text)


class RunLog(Protocol):
    """What a verdict reads of an injector's log: NVBitFI's (InjectionLog) or the fi-campaign
    tool's (toollog.ToolLog)."""

    @property
    def state(self) -> LogState: ...
    @property
    def kernel_error(self) -> str | None: ...
    @property
    def signal(self) -> bool | int | None: ...


def verdict(log: RunLog, abnormal_end: bool) -> str:
    """``due``, ``not_injected`` or ``compare`` (compare outputs with the golden run).

    ``abnormal_end`` is the caller's DUE evidence: timeout, signal, non-zero exit or an Xid line;
    the log's own CUDA error and signal marks count too. An explicit "not injected" stays that
    way even if the run later failed: the injector states no fault was applied, so the failure
    is not the fault's effect.
    """
    abnormal = abnormal_end or log.kernel_error is not None or log.signal
    if log.state is LogState.NOT_INJECTED:
        return "not_injected"
    if log.state is LogState.NO_REPORT:
        return "due" if abnormal else "not_injected"
    return "due" if abnormal else "compare"


def _hex(text: str) -> int | None:
    text = text.strip()
    try:
        return int(text, 16)
    except ValueError:
        return None


def _int(text: str) -> int | None:
    try:
        return int(text.strip())
    except ValueError:
        return None


_FIELDS: dict[str, tuple[str, Callable[[str], int | str | None]]] = {
    "index": ("index", _int),
    "kernel_name": ("kernel_name", str.strip),
    "ctas": ("ctas", _int),
    "instrs": ("instrs", _int),
}
_LANE_FIELDS: dict[str, tuple[str, Callable[[str], int | str | None]]] = {
    "mask": ("mask", _hex),
    "regNo": ("reg", _int),
    "opcode": ("opcode", str.strip),
    "pcOffset": ("pc_offset", _hex),
    "tid": ("tid", _int),
}


def _field(line: str, values: dict, block: dict | None) -> None:
    m = _KV.fullmatch(line)
    if not m:
        return
    key, value = m["key"], m["value"]
    if key in _FIELDS:
        name, convert = _FIELDS[key]
        if values.get(name) is None:  # every lane's block repeats the launch's header fields
            values[name] = convert(value)
    elif key in _LANE_FIELDS and block is not None:
        name, convert = _LANE_FIELDS[key]
        block[name] = convert(value)
    elif key not in ("num_static_instrs", "maxregs"):
        values["extra"][key] = value.strip()
