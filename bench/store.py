"""Claim+record cycles per second of the store itself, SQLite against PostgreSQL, in one run.

    python bench/store.py [--quick] [--workers 1,4,16] [--sites N] [--chunk C]

Each cycle is what a worker does per chunk with the injection taking no time: claim ``chunk``
pending sites (a lease each), then record their results with their sites' status in one
transaction. Every worker count gets a fresh store of the same sites; the workers are
separate processes started together (bench/zero_cost.py), and the figure is cycles of all
workers over the wall time from the first claim to the last record. A heartbeat (what each
worker's heartbeat thread does every 20 s: renew its leases, return expired ones) is measured
the same way. PostgreSQL is a throwaway local server (initdb in a temporary folder, unix socket,
fsync on, as SQLite's synchronous=FULL). How many GPUs one store feeds at S seconds per
injection follows from both rates: each GPU costs the store, per S seconds, one cycle per
``chunk`` injections and S/20 heartbeats, so GPUs = S / (1/(chunk x cycles/s) + (S/20)/beats/s).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import zero_cost
from bench.common import machine
from tests.servers import Postgres

BEAT_S = 20.0  # runner.LEASE_S / 3


def measure(target: str, workers: int, chunk: int, beats: int = 0) -> tuple[float, int]:
    worked = zero_cost.run(target, workers, chunk, beats)
    claimed = sorted(i for w in worked for i in w.claimed)
    assert claimed == sorted(set(claimed)), "a site was claimed twice"
    cycles = sum(w.cycles for w in worked)
    wall = max(w.last for w in worked) - min(w.first for w in worked)
    return cycles / wall, cycles


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--workers", default="1,4,16")
    ap.add_argument("--sites", type=int, help="per worker count (default 4,000; quick 800)")
    ap.add_argument("--chunk", type=int, default=1, help="sites per claim (1: the most cycles per site)")
    ap.add_argument("--seconds-per-injection", type=float, default=60.0)
    args = ap.parse_args()
    counts = [int(w) for w in args.workers.split(",")]
    sites = args.sites or (800 if args.quick else 4000)
    print(machine())
    print(f"{sites} zero-cost sites per run, {args.chunk} per claim; workers {counts}")
    server = Postgres.start(fsync=True)
    rates: dict[tuple[str, int], float] = {}
    beats: dict[tuple[str, int], float] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for w in counts:
                for backend in ("sqlite", "postgresql"):
                    target = str(Path(tmp) / f"w{w}.db") if backend == "sqlite" else server.create(f"w{w}_")
                    zero_cost.plan(target, sites)
                    rate, cycles = measure(target, w, args.chunk)
                    rates[(backend, w)] = rate
                    print(f"{backend:10s} workers={w:2d}: {cycles} cycles, {rate:8.1f} claim+record cycles/s")
                    target = str(Path(tmp) / f"b{w}.db") if backend == "sqlite" else server.create(f"b{w}_")
                    zero_cost.plan(target, w)  # one site held by each beating worker
                    beat, n = measure(target, w, 1, max(1, sites // (4 * w)))
                    beats[(backend, w)] = beat
                    print(f"{backend:10s} workers={w:2d}: {n} heartbeats, {beat:8.1f} heartbeats/s")
    finally:
        server.stop()
    s = args.seconds_per_injection
    for w in counts:
        c, b = rates[("postgresql", w)], beats[("postgresql", w)]
        gpus = s / (1 / (args.chunk * c) + (s / BEAT_S) / b)
        print(
            f"PostgreSQL at its {w}-worker rates ({c:.0f} cycles/s, {b:.0f} heartbeats/s, {args.chunk} site per "
            f"claim): {gpus:,.0f} GPUs busy at {s:g} s per injection"
        )


if __name__ == "__main__":
    main()
