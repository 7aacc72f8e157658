"""What every step of the GPU check shares: where things are, the step's context (its folder,
its time left, the state steps hand on), how a step fails or skips, and running a command
into the step's log. Standard library only: the first steps run before fi-campaign is
installed.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
NVBIT = REPO / ".nvbit"
WHEELS = REPO / ".whl"
FI = [sys.executable, "-c", "from fi_campaign.cli import main; main()"]
DUMMY_INJECTIONS = 20
MIN_PER_STRATUM = 30
FORMATS_INJECTIONS = 32  # per model x mode: weight faults and a bfloat16 network, on the GPU
FORMATS_MIN_S = 25  # seconds the framework step must have left to run them
C_LAUNCHES = 6  # saxpy.cu launches three kernels twice
Arg = str | os.PathLike[str] | int  # a command's word; Ctx.sh turns each into a string


class Failed(Exception):
    """The step failed: one line naming what failed and what it printed; figures kept."""

    def __init__(self, line: str, figures: dict | None = None) -> None:
        super().__init__(line)
        self.figures = figures or {}


class Skipped(Exception):
    pass


@dataclass
class Ctx:
    name: str
    work: Path
    dry: bool
    limit_s: float
    state: dict
    t0: float = field(default_factory=time.monotonic)

    def left(self) -> float:
        return self.limit_s - (time.monotonic() - self.t0)

    def dir(self, *parts: str) -> Path:
        d = self.work.joinpath(self.name, *parts)
        d.mkdir(parents=True, exist_ok=True)
        return d

    def save(self, **values) -> None:
        self.state.update(values)
        (self.work / "state.json").write_text(json.dumps(self.state, indent=2), encoding="utf-8")

    def sh(
        self,
        cmd: Sequence[Arg],
        what: str,
        timeout: float | None = None,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        ok: Callable[[int], bool] = lambda rc: rc == 0,
    ) -> subprocess.CompletedProcess:
        """Run ``cmd``, its output into the step's log; Failed (``what`` and its last line) when
        it exits otherwise than ``ok`` allows or outlasts ``timeout`` (default: the step's time left)."""
        limit = max(1.0, min(timeout or self.left(), self.left()))
        print(f"$ {' '.join(map(str, cmd))}", flush=True)
        try:
            done = subprocess.run(
                [str(c) for c in cmd],
                capture_output=True,
                text=True,
                timeout=limit,
                env=env,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired as e:
            out = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
            print(out, flush=True)
            raise Failed(f"{what}: timed out after {limit:.0f} s; last output: {last_line(out)}") from None
        except OSError as e:
            raise Failed(f"{what}: could not start ({e})") from None
        print(done.stdout + done.stderr, flush=True)
        if not ok(done.returncode):
            raise Failed(f"{what}: exit code {done.returncode}: {last_line(done.stderr + done.stdout)}")
        return done


@contextmanager
def keeping(figures: dict):
    """A Failed raised inside carries ``figures`` (what the step measured before it failed)."""
    try:
        yield figures
    except Failed as e:
        e.figures = {**figures, **e.figures}
        raise


def last_line(text: str) -> str:
    lines = [x.strip() for x in (text or "").splitlines() if x.strip()]
    return lines[-1][:300] if lines else "(nothing)"


def workers() -> int:
    """Processes sharing the one GPU: the cores less two, at most 12."""
    return max(1, min(12, (os.cpu_count() or 2) - 2))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def folder_mb(path: Path) -> float:
    return round(sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20, 2) if path.exists() else 0.0
