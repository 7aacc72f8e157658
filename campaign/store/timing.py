"""How long a stratum's injections actually ran, from the finish times and runtimes stored with
its results: the base of the rate `status` shows, right across separate runs.

A chunk of results shares one finish time; it ran for the sum of its injections' runtimes
before it. The stratum was busy over the union of those chunk spans, where a gap shorter than
GAP_S (claiming and recording between chunks) also counts; longer gaps (a pause between runs,
loading models, golden runs) do not. Finish times are ISO strings at millisecond resolution;
stores written before that hold whole seconds, which the gap allowance absorbs.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timezone

GAP_S = 1.0


def now() -> str:
    """UTC, to the millisecond: result finish times must time chunks shorter than a second."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def seconds(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def busy_seconds(chunks: Iterable[tuple[str, float]], gap_s: float = GAP_S) -> float:
    """Seconds during which at least one chunk ran; ``chunks`` are (finish time, runtime)."""
    spans = sorted((end - max(run, 0.0), end) for end, run in ((seconds(f), r) for f, r in chunks))
    total, start = 0.0, 0.0
    stop: float | None = None
    for a, b in spans:
        if stop is not None and a <= stop + gap_s:
            stop = max(stop, b)
            continue
        if stop is not None:
            total += stop - start
        start, stop = a, b
    return total if stop is None else total + stop - start
