"""Reads the log of fi-campaign's own NVBit tool (``nvbitfi-injection-log-temp.txt``, format
``fi-campaign-tool/1``, written by ``nvbitfi_tools/tool/fi_tool.cu``).

Unlike stock NVBitFI, the tool states its verdict itself, also when the selected launch never
came (it writes one at process exit), and it writes one record per injected lane. The states
are those of :mod:`fi_campaign.nvbitfi_tools.injlog`, so :func:`fi_campaign.nvbitfi_tools.injlog.verdict` judges both:

- ``injected``: a ``result: injected`` line, with at least one lane record;
- ``not_injected``: a ``result: not_injected; <why>`` line (index never reached, another kernel
  at that launch, an unusable injection-info file);
- ``no_report``: no result line, e.g. the process crashed or was killed inside the launch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from fi_campaign.nvbitfi_tools.injlog import LOG_FILE, LogState
from fi_campaign.nvbitfi_tools.isa import dialect

FORMAT = "fi-campaign-tool/1"
_LANE = re.compile(
    r"lane: (?P<lane>\d+); reg: R(?P<reg>\d+); opcode: (?P<opcode>\S+); pc: 0x(?P<pc>[0-9a-f]+); "
    r"tid: (?P<tid>\d+); before: 0x(?P<before>[0-9a-f]{8}); after: 0x(?P<after>[0-9a-f]{8})"
)
_LAUNCH = re.compile(r"launch: index (?P<index>\d+); kernel_name: (?P<name>.*); ctas: (?P<ctas>\d+)")
_KERNEL_ERROR = re.compile(r"error: kernel execution failed \((?P<why>.*)\) at launch \d+")
_SIGNAL = re.compile(r"error: signal (?P<sig>\d+)")


@dataclass(frozen=True)
class Lane:
    """One lane the fault was applied to: its register before and after, as 32-bit patterns."""

    lane: int
    reg: int
    opcode: str
    pc: int
    tid: int  # flat thread id
    before: int
    after: int

    @property
    def injected(self) -> bool:
        """The tool writes a record only for a lane it applied the fault to."""
        return True


@dataclass(frozen=True)
class ToolLog:
    state: LogState
    reason: str  # one sentence
    dummy: bool = False
    index: int | None = None  # the launch the report is about
    kernel_name: str | None = None
    ctas: int | None = None
    counts: dict[str, int] = field(default_factory=dict)  # group -> thread-instructions of that launch
    lanes: tuple[Lane, ...] = ()
    kernel_error: str | None = None
    signal: int | None = None

    @property
    def value_changed(self) -> bool | None:
        """False for a DUMMY build (every lane's after equals its before)."""
        if not self.lanes:
            return None
        return any(x.before != x.after for x in self.lanes)

    def matches(self, kernel: str, kcount: int) -> bool:
        return self.index == kcount and self.kernel_name == kernel

    def launch_count(self, igid: int) -> int | None:
        """The tool's count of group ``igid`` over the whole selected launch (it keeps counting
        after the fault, unlike stock NVBitFI), or None when the launch did not end normally."""
        if self.state is LogState.NO_REPORT or self.signal or self.kernel_error is not None:
            return None
        groups = dialect("fi-campaign").groups
        return self.counts.get(groups[igid]) if 0 <= igid < len(groups) else None

    # the summary fields the backend stores from a stock log, taken from the first lane
    @property
    def lanes_injected(self) -> int:
        return len(self.lanes)

    @property
    def opcode(self) -> str | None:
        return self.lanes[0].opcode if self.lanes else None

    @property
    def reg(self) -> int | None:
        return self.lanes[0].reg if self.lanes else None

    @property
    def mask(self) -> int | None:
        return self.lanes[0].before ^ self.lanes[0].after if self.lanes else None


def parse_tool_log(text: str) -> ToolLog:
    """Parses a log's text; never raises, a damaged log being itself an outcome."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return ToolLog(LogState.NO_REPORT, "the tool's log is empty: the tool never started.")
    if lines[0] != f"format: {FORMAT}":
        return ToolLog(LogState.NO_REPORT, f"the log is not a {FORMAT} log (is the injector another build?).")
    values: dict = {"counts": {}}
    lanes: list[Lane] = []
    result: tuple[str, str] | None = None
    for line in lines[1:]:
        if line == "dummy: true":
            values["dummy"] = True
        elif m := _LAUNCH.fullmatch(line):
            values.update(index=int(m["index"]), kernel_name=m["name"], ctas=int(m["ctas"]))
        elif line.startswith("counts:"):
            values["counts"] = {g: int(c) for g, c in re.findall(r"([a-z0-9]+) (\d+)", line[len("counts:") :])}
        elif m := _LANE.fullmatch(line):
            lanes.append(
                Lane(
                    int(m["lane"]),
                    int(m["reg"]),
                    m["opcode"],
                    int(m["pc"], 16),
                    int(m["tid"]),
                    int(m["before"], 16),
                    int(m["after"], 16),
                )
            )
        elif m := _KERNEL_ERROR.fullmatch(line):
            values["kernel_error"] = m["why"]
        elif m := _SIGNAL.fullmatch(line):
            values["signal"] = int(m["sig"])
        elif line.startswith("result: "):
            verdict, _, why = line[len("result: ") :].partition("; ")
            result = (verdict, why)
    common = dict(lanes=tuple(lanes), **values)
    if result and result[0] == "injected" and lanes:
        return ToolLog(
            LogState.INJECTED, f"the tool applied the fault to {len(lanes)} lane(s) of {lanes[0].opcode}.", **common
        )
    if result and result[0] == "not_injected":
        return ToolLog(LogState.NOT_INJECTED, f"the tool reports no fault applied: {result[1]}.", **common)
    if values.get("kernel_error"):
        why = f"the run stopped on a CUDA error ({values['kernel_error']}) before the tool's verdict."
    elif values.get("signal"):
        why = f"the run was ended by signal {values['signal']} before the tool's verdict."
    else:
        why = "the log ends before the tool's verdict: the process died inside the run."
    return ToolLog(LogState.NO_REPORT, why, **common)


def read_tool_log(run_dir: str | Path) -> ToolLog:
    """The log in a run directory; a missing file means the tool was never loaded."""
    path = Path(run_dir) / LOG_FILE
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ToolLog(LogState.NO_REPORT, f"there is no {LOG_FILE}: the tool was never loaded.")
    return parse_tool_log(text)
