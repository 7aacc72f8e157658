"""The rules that judge the user's own program's runs (config ``workload.compare`` and
``workload.critical``): a function or script of (golden folder, run folder), or a threshold on
the outputs read as numbers (``.npy``, or whitespace-separated numbers in text). A rule that
fails (raises, returns no verdict, exits otherwise than 0 or 1) stops the run with one
sentence: the user's rule is broken, not the program.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fi_campaign.errors import UserError
from fi_campaign.models.sources import FILE_FUNCTION, MODULE_FUNCTION

CHECK_TIMEOUT_S = 600.0  # a rule script or sdc_check.sh on one run


class ProgramError(UserError):
    """The user's program, its scripts or its rules cannot be used; one sentence."""


def _function(ref: str) -> bool:
    return bool(FILE_FUNCTION.fullmatch(ref) or MODULE_FUNCTION.fullmatch(ref))


def executable(path: Path, what: str) -> Path:
    if not path.is_file():
        raise ProgramError(f"{what} {path} does not exist.")
    if not os.access(path, os.X_OK):
        raise ProgramError(f"{what} {path} is not executable; run chmod +x {path}.")
    return path


def _script(ref: str, key: str) -> list[str]:
    """A rule's script as a command line: its first word an executable file or a program on PATH."""
    first = Path(ref).expanduser()
    if first.is_file():
        return [str(executable(first.resolve(), f"workload.{key}"))]
    found = shutil.which(ref)
    if found is None:
        raise ProgramError(f"workload.{key} {ref} is neither a file nor a program on PATH.")
    return [found]


def numbers(path: Path) -> np.ndarray | None:
    """A file's values as float64: a .npy array, or whitespace-separated numbers in text; None
    when it is neither."""
    try:
        if path.suffix == ".npy":
            return np.asarray(np.load(path, allow_pickle=False), dtype=np.float64)
        return np.array(path.read_text(encoding="utf-8").split(), dtype=np.float64)
    except (OSError, ValueError, TypeError, UnicodeDecodeError):
        return None


def max_errors(golden: Path, faulty: Path) -> tuple[float, float] | None:
    """Largest absolute and relative difference of two numeric files; None when either is not
    numbers or their shapes differ. A NaN or infinity where the golden value is finite is an
    infinite difference."""
    a, b = numbers(golden), numbers(faulty)
    if a is None or b is None or a.shape != b.shape:
        return None
    if a.size == 0:
        return 0.0, 0.0
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        diff = np.abs(b - a)
        diff = np.where((a == b) | (np.isnan(a) & np.isnan(b)), 0.0, diff)
        diff = np.where(np.isnan(diff), np.inf, diff)
        rel = diff / np.maximum(np.abs(a), np.finfo(np.float64).tiny)
    return float(diff.max()), float(np.where(diff == 0, 0.0, rel).max())


def _call(fn: Callable[..., object], ref: str, key: str, golden: Path, run: Path) -> bool:
    try:
        value = fn(golden, run)
    except Exception as e:  # noqa: BLE001 - the user's function may raise anything
        raise ProgramError(f"workload.{key} {ref} raised {type(e).__name__}: {e} on run {run}.") from None
    if not isinstance(value, (bool, np.bool_)):
        raise ProgramError(f"workload.{key} {ref} returned {type(value).__name__}, not True or False, on run {run}.")
    return bool(value)


def _run_script(cmd: list[str], key: str, golden: Path, run: Path) -> bool:
    """A rule script's answer: exit 0 yes, 1 no; anything else is the script's failure."""
    try:
        done = subprocess.run(
            [*cmd, str(golden), str(run)], cwd=run, capture_output=True, timeout=CHECK_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise ProgramError(f"workload.{key} {cmd[0]} could not be run on {run} ({type(e).__name__}).") from None
    if done.returncode not in (0, 1):
        raise ProgramError(f"workload.{key} {cmd[0]} exited with {done.returncode} on run {run}; it must exit 0 or 1.")
    return done.returncode == 0


@dataclass(frozen=True)
class Rule:
    """A compare or critical rule: a function or script of (golden folder, run folder), or a
    threshold on the numeric outputs."""

    key: str
    ref: str | None = None
    fn: Callable[..., object] | None = None
    script: tuple[str, ...] = ()
    threshold: float | None = None

    def ask(self, golden: Path, run: Path) -> bool:
        if self.fn is not None:
            assert self.ref is not None, "a function rule names its function"
            return _call(self.fn, self.ref, self.key, golden, run)
        return _run_script(list(self.script), self.key, golden, run)


def rule(value: object, key: str, threshold_key: str) -> Rule | None:
    """The rule a config value names (None for exact comparison or no critical rule); its
    function imported and its script found now, so a bad one is refused before anything runs."""
    if value is None or value == "exact":
        return None
    if isinstance(value, dict):
        return Rule(key=key, threshold=float(value[threshold_key]))
    assert isinstance(value, str), "the config accepts a string, a threshold mapping or nothing"
    if _function(value):
        from fi_campaign.models.sources import import_function

        try:
            return Rule(key=key, ref=value, fn=import_function(value, f"workload.{key}"))
        except UserError as e:
            raise ProgramError(str(e)) from None
    return Rule(key=key, ref=value, script=tuple(_script(value, key)))
