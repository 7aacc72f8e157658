"""Terminal output as data: the tables and sentences a command prints, built where the numbers are
and printed by the CLI's one renderer (fi_campaign.cli.tables), which keeps every cell whole at
any width. Kept free of rich, so the layers that build them need no terminal."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Col:
    header: str
    key: bool = False  # what a reader looks a row up by (names, counts): never wrapped, never moved
    right: bool = False
    spill: int = 0  # > 0: leaves a table too wide before any column wraps (highest first); 0: wraps first


@dataclass(frozen=True)
class TextTable:
    title: str
    cols: tuple[Col, ...]
    rows: tuple[tuple[str, ...], ...]
    sections: tuple[int, ...] = ()  # indices of the rows that start a new section (a rule above them)


Block = TextTable | str  # a str is a sentence, printed as it is


def pct(x: float) -> str:
    """A fraction in percent with two decimals; '-' for an undefined rate (NaN)."""
    return "-" if x != x else f"{100 * x:.2f}%"


def interval(low: float, high: float, unit: str = "%") -> str:
    return f"[{100 * low:.2f}, {100 * high:.2f}]{unit}"
