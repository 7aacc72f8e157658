"""What a value read from a file or a command line may be: one small spec per key (type, range,
finiteness, choices), so every reader refuses a bad value the same way, naming the key, the
value and what it must be."""

from __future__ import annotations

import math
import re
import reprlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fi_campaign.limits import MAX_TEXT

_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 60
_REPR.maxlong = 30
_REPR.maxlevel = 2
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = 4


def shown(value: Any) -> str:
    """The value as a message can quote it: clipped, so a 30-digit seed or an alias bomb stays short."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return _REPR.repr(value)


@dataclass(frozen=True)
class Spec:
    """``accepts`` decides; ``expected`` finishes the sentence "KEY is VALUE; it must be ..."."""

    accepts: Callable[[Any], bool]
    expected: str

    def problem(self, key: str, value: Any) -> str | None:
        return None if self.accepts(value) else f"{key} is {shown(value)}; it must be {self.expected}"


def whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def finite(value: Any) -> bool:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int beyond float's range
        return False


def _count(n: int | float) -> str:
    return "2^63 - 1" if n == 2**63 - 1 else f"{n:,}" if isinstance(n, int) else f"{n:g}"


def integer(low: int, high: int) -> Spec:
    return Spec(lambda v: whole(v) and low <= v <= high, f"a whole number from {_count(low)} to {_count(high)}")


def number(low: float, high: float | None = None, low_open: bool = False) -> Spec:
    def accepts(v: Any) -> bool:
        return finite(v) and (v > low if low_open else v >= low) and (high is None or v <= high)

    bound = f"above {_count(low)}" if low_open else f"of at least {_count(low)}"
    return Spec(accepts, f"a finite number {bound}" + (f" and at most {_count(high)}" if high is not None else ""))


def text(expected: str = "a string") -> Spec:
    return Spec(
        lambda v: isinstance(v, str) and 0 < len(v) <= MAX_TEXT and "\0" not in v,
        f"{expected} (non-empty, at most {MAX_TEXT} characters, no NUL)",
    )


def flag() -> Spec:
    return Spec(lambda v: isinstance(v, bool), "true or false")


def one_of(choices: tuple[str, ...]) -> Spec:
    return Spec(lambda v: isinstance(v, str) and v in choices, "one of " + ", ".join(choices))


def matching(pattern: str, expected: str) -> Spec:
    compiled = re.compile(pattern)
    return Spec(lambda v: isinstance(v, str) and compiled.fullmatch(v) is not None, expected)


def optional(spec: Spec) -> Spec:
    return Spec(lambda v: v is None or spec.accepts(v), f"{spec.expected}, or null")
