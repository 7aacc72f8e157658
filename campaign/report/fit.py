"""FIT roll-up: a raw FIT rate the user supplies, derated by the measured AVF.

FIT is failures per 10^9 device-hours. A raw rate (from beam tests or a vendor) counts every
upset of the exposed hardware; only the AVF share of those upsets reaches the output, so
FIT(outcome) = raw device FIT x AVF(outcome), and the AVF interval's bounds scale the same way
(the raw rate is taken as exact: its own uncertainty is the user's to add).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from fi_campaign.classify import CRITICAL_SDC, DUE, TOLERABLE_SDC
from fi_campaign.errors import UserError

PER = ("device", "bit")
# outcomes that are failures; masked and not_injected have no FIT of their own
FIT_OUTCOMES = (CRITICAL_SDC, TOLERABLE_SDC, DUE)


@dataclass(frozen=True)
class RawFit:
    rate: float  # FIT per ``per``
    per: str  # device: the rate of the whole exposed structure; bit: of one of its ``bits`` bits
    bits: int | None = None

    @property
    def device_rate(self) -> float:
        """The raw FIT of everything the faults model: per-bit rates scale with the bits exposed."""
        if self.per != "bit":
            return self.rate
        assert self.bits is not None  # parse() gives a per-bit rate its bit count
        return self.rate * self.bits

    def describe(self) -> str:
        if self.per == "bit":
            return (
                f"raw FIT {self.rate:g} per bit x {self.bits:,} bits = {self.device_rate:g} per device; "
                "FIT = raw device FIT x AVF"
            )
        return f"raw FIT {self.rate:g} per device; FIT = raw device FIT x AVF"


@dataclass(frozen=True)
class FitRow:
    model: str
    mode: str
    outcome: str
    avf: float
    avf_low: float
    avf_high: float
    fit: float
    fit_low: float
    fit_high: float


def parse(rate: str | None, per: str | None, bits: str | None) -> RawFit | None:
    """The FIT options as given on the command line (strings, so that every mistake gets one
    sentence from here rather than a usage screen); None when no roll-up was asked for."""
    if rate is None:
        if per is not None or bits is not None:
            raise UserError("--fit-per and --bits describe --fit-raw; give --fit-raw too.")
        return None
    try:
        value = float(rate)
    except ValueError:
        raise UserError(f"--fit-raw must be a number of failures per 10^9 hours, not {rate!r}.") from None
    if not math.isfinite(value) or value <= 0:
        raise UserError(f"--fit-raw must be a positive, finite FIT rate, not {rate}.")
    per = per or "device"
    if per not in PER:
        raise UserError(f"--fit-per must be device or bit, not {per!r}.")
    if per == "device":
        if bits is not None:
            raise UserError("--bits only applies with --fit-per bit (a per-bit raw rate).")
        return RawFit(value, per)
    if bits is None:
        raise UserError("--fit-per bit needs --bits N, the number of bits the raw rate applies to.")
    return RawFit(value, per, _count(bits))


def _count(text: str) -> int:
    try:
        n = float(text)
    except ValueError:
        n = math.nan
    if not (math.isfinite(n) and n.is_integer() and n >= 1):
        raise UserError(f"--bits must be a whole number of bits, at least 1, not {text!r}.")
    return int(text) if text.strip().lstrip("+").isdigit() else int(n)


def fit_rows(avf: list, raw: RawFit) -> list[FitRow]:
    """FIT of each failure outcome of each model x mode with injections (``avf``: AvfRow)."""
    k = raw.device_rate
    return [
        FitRow(
            model=r.model,
            mode=r.mode,
            outcome=r.outcome,
            avf=r.rate,
            avf_low=r.ci_low,
            avf_high=r.ci_high,
            fit=k * r.rate,
            fit_low=k * r.ci_low,
            fit_high=k * r.ci_high,
        )
        for r in avf
        if r.outcome in FIT_OUTCOMES and r.n > 0
    ]
