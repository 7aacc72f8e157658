"""One workload process per injection: start it in its own session, wait with a timeout, end
its whole process group (SIGINT, then SIGTERM, then SIGKILL) when it overstays, and say how it
ended. SIGINT comes first because it is what NVBitFI's own runner sends, and the injector's
SIGINT handler writes its injection record before exiting: that record tells a hang after the
fault from a hang before it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

CUDA_ERROR = re.compile(
    r"CUDA error|cudaError|CUDA_ERROR_|an illegal memory access|"
    r"device-side assert|unspecified launch failure|misaligned address",
    re.I,
)
INT_GRACE_S = 3.0  # for a SIGINT handler to write its record and exit
TERM_GRACE_S = 2.0
GRACE_S = INT_GRACE_S + TERM_GRACE_S  # the longest a group can outlive its timeout


class Stopped(KeyboardInterrupt):
    """A workload process was terminated from outside (SIGTERM it did not get from a timeout):
    the worker is being stopped (scancel, preemption), not seeing a fault's effect."""


@dataclass(frozen=True)
class Ended:
    returncode: int | None  # None: killed on timeout
    timed_out: bool
    runtime_s: float
    stderr_tail: str

    @property
    def signal(self) -> int | None:
        return -self.returncode if self.returncode is not None and self.returncode < 0 else None

    def due_reason(self) -> str | None:
        """Why this run is a DUE, or None if it ended normally (docs/DESIGN.md "Outcomes")."""
        if self.timed_out:
            return "timeout"
        if self.signal is not None:
            return f"signal {signal.Signals(self.signal).name}"
        if self.returncode:
            return f"exit code {self.returncode}"
        if CUDA_ERROR.search(self.stderr_tail):
            return "CUDA error in stderr"
        return None


def kill_group(pgid: int, reap: Callable[[], object] | None = None) -> None:
    """SIGINT the whole group, then SIGTERM, then SIGKILL, each after a grace period, stopping
    as soon as no process of the group is left. ``reap`` (the leader's ``poll``) collects a
    leader that exited, whose zombie would otherwise keep the group alive for the whole grace."""
    for sig, grace in ((signal.SIGINT, INT_GRACE_S), (signal.SIGTERM, TERM_GRACE_S)):
        if not _signal_group(pgid, sig) or _gone_within(pgid, grace, reap):
            return
    _signal_group(pgid, signal.SIGKILL)


def _signal_group(pgid: int, sig: int) -> bool:
    try:
        os.killpg(pgid, sig)
        return True
    except ProcessLookupError:
        return False


def _gone_within(pgid: int, seconds: float, reap: Callable[[], object] | None) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if reap is not None:
            reap()
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def run(
    cmd: list[str],
    cwd: Path,
    timeout_s: float,
    env: dict[str, str] | None = None,
    logs: tuple[str, str] = ("stdout.txt", "stderr.txt"),
) -> Ended:
    """Run ``cmd`` in ``cwd`` (stdout and stderr to the files ``logs`` names there) as the leader
    of a new process group; on timeout every process of the group is killed, children included.
    An NVBitFI run.sh writes stdout.txt and stderr.txt itself, so its own output goes elsewhere."""
    cwd.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with open(cwd / logs[0], "wb") as out, open(cwd / logs[1], "wb") as err:
        p = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=err, env=env, start_new_session=True)
        try:
            rc: int | None = p.wait(timeout=timeout_s)
            timed_out = False
        except subprocess.TimeoutExpired:
            rc, timed_out = None, True
        except BaseException:  # the worker is being stopped (Ctrl-C, SIGTERM): no run outlives it
            kill_group(p.pid)
            raise
        # children may outlive a leader that exited, or one that timed out: end the group
        kill_group(p.pid, p.poll)
        if timed_out:
            p.wait()
    runtime = time.perf_counter() - t0
    if rc == -signal.SIGTERM:
        raise Stopped(f"{cmd[0]} was terminated from outside")
    tail = (cwd / logs[1]).read_bytes()[-8192:].decode(errors="replace")
    return Ended(rc, timed_out, runtime, tail)
