"""One workload process per injection: start it in its own session, wait with a timeout, kill
its whole process group (SIGTERM, then SIGKILL) when it overstays, and say how it ended."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

CUDA_ERROR = re.compile(r"CUDA error|cudaError|CUDA_ERROR_|an illegal memory access|"
                        r"device-side assert|unspecified launch failure|misaligned address", re.I)
GRACE_S = 2.0


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
        """Why this run is a DUE, or None if it ended normally (design.md "Outcomes")."""
        if self.timed_out:
            return "timeout"
        if self.signal is not None:
            return f"signal {signal.Signals(self.signal).name}"
        if self.returncode:
            return f"exit code {self.returncode}"
        if CUDA_ERROR.search(self.stderr_tail):
            return "CUDA error in stderr"
        return None


def kill_group(pgid: int) -> None:
    """SIGTERM the whole group, give it GRACE_S, then SIGKILL whatever is left."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + GRACE_S
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def run(cmd: list[str], cwd: Path, timeout_s: float, env: dict[str, str] | None = None) -> Ended:
    """Run ``cmd`` in ``cwd`` (stdout and stderr to files there) as the leader of a new process
    group; on timeout every process of the group is killed, children included."""
    cwd.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with open(cwd / "stdout.txt", "wb") as out, open(cwd / "stderr.txt", "wb") as err:
        p = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=err, env=env, start_new_session=True)
        try:
            rc: int | None = p.wait(timeout=timeout_s)
            timed_out = False
        except subprocess.TimeoutExpired:
            rc, timed_out = None, True
        # children may outlive a leader that exited, or one that timed out: end the group
        kill_group(p.pid)
        if timed_out:
            p.wait()
    runtime = time.perf_counter() - t0
    tail = (cwd / "stderr.txt").read_bytes()[-8192:].decode(errors="replace")
    return Ended(rc, timed_out, runtime, tail)
