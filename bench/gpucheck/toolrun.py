"""Running any program directly under fi-campaign's NVBit tool, outside a campaign: the GPU
check uses it on the plain CUDA C++ program (does the tool load and instrument a C
executable?) and on the PyTorch workload launch by launch (do the profiler's counts equal the
injector's?). The tool is attached exactly as a campaign attaches it
(``fi_campaign.nvbitfi_tools.attach.tool_env``), in a run directory of its own.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from fi_campaign.nvbitfi_tools.attach import tool_env
from fi_campaign.nvbitfi_tools.injlog import LOG_FILE
from fi_campaign.nvbitfi_tools.profile import Profile, ProfileError, parse_profile
from fi_campaign.nvbitfi_tools.render import render_injection_info, write_injection_info
from fi_campaign.nvbitfi_tools.sites import Site
from fi_campaign.nvbitfi_tools.toollog import ToolLog, read_tool_log
from fi_campaign.workload import process

TOOL_VARS = ("LD_PRELOAD", "CUDA_INJECTION64_PATH", "NOBANNER", "TOOL_VERBOSE", "ACK_CTX_INIT_LIMITATION")
T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class Tool:
    home: Path

    @property
    def profiler(self) -> Path:
        return self.home / "profiler" / "profiler.so"

    @property
    def injector(self) -> Path:
        return self.home / "injector" / "injector.so"

    @property
    def dummy(self) -> Path:
        return self.home / "injector" / "injector-dummy.so"


@dataclass(frozen=True)
class ToolRun:
    d: Path
    ended: process.Ended | None  # None: stopped from outside
    log_bytes: int | None  # size of the tool's log; None: there is none (the tool never loaded)

    def why_no_profile(self) -> str:
        """One sentence on what a run that gave no profile shows."""
        if self.ended is None:
            return "the run was stopped from outside"
        if self.ended.due_reason():
            return f"the run ended abnormally ({self.ended.due_reason()}): {last_line(self.ended.stderr_tail)}"
        if self.log_bytes is None:
            return "the tool never loaded (it opens its log at start and there is none)"
        if self.log_bytes == 0:
            return "the tool loaded (its log was opened) but no kernel-launch callback arrived"
        return "the tool wrote a log that is not a profile"


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:300] if lines else "(nothing)"


def run_under(
    lib: Path | None, cmd: list[str], d: Path, timeout_s: float, env: dict[str, str] | None = None
) -> ToolRun:
    """``cmd`` in ``d`` with ``lib`` attached (None: native), stdout and stderr kept there;
    ``env`` (default: this process's) with the tool's variables on top."""
    d.mkdir(parents=True, exist_ok=True)
    full = dict(os.environ if env is None else env)
    if lib is not None:
        attach = tool_env(lib)
        full |= {k: attach[k] for k in TOOL_VARS}
    try:
        ended: process.Ended | None = process.run(cmd, d, timeout_s, full)
    except process.Stopped:
        ended = None
    log = d / LOG_FILE
    return ToolRun(d, ended, log.stat().st_size if log.exists() else None)


def profile_of(run: ToolRun) -> Profile:
    """The profile a profiler run wrote; ProfileError with the reason when there is none."""
    text = (run.d / LOG_FILE).read_text(encoding="utf-8", errors="replace") if run.log_bytes else ""
    if not text.strip():
        raise ProfileError(run.why_no_profile())
    return parse_profile(text, "fi-campaign", str(run.d / LOG_FILE))


def inject(
    lib: Path,
    cmd: list[str],
    d: Path,
    mode: str,
    site: Site,
    timeout_s: float,
    value_seed: int | None = None,
    law: tuple[float, float] | None = None,
    env: dict[str, str] | None = None,
) -> tuple[ToolRun, ToolLog]:
    """One run of ``cmd`` under an injector build with ``site`` in its injection-info file."""
    d.mkdir(parents=True, exist_ok=True)
    write_injection_info(d, render_injection_info("fi-campaign", mode, site, value_seed=value_seed, law=law))
    run = run_under(lib, cmd, d, timeout_s, env)
    return run, read_tool_log(d)


def side_by_side(fn: Callable[[T], R], items: Iterable[T], workers: int) -> list[R]:
    """``fn`` over ``items``, ``workers`` at a time, results in the items' order."""
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return list(pool.map(fn, items))
