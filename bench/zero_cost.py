"""Zero-cost injections: campaigns whose sites are recorded without running anything, so that
what is measured or tested is the store alone (claims, records, leases) under many worker
processes. Used by tests/test_store.py and bench/store.py; not part of fi-campaign."""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass

MODEL, MODE = "zero", "single_bit"


def record(name: str = "zero-cost"):
    """A campaign record with nothing behind it: no model, no image, a placeholder fault model."""
    from fi_campaign.store import CampaignRecord, FaultModelRecord, Versions, WorkloadRecord

    none = "none"
    return CampaignRecord(
        name=name,
        seed=0,
        config="{}",
        versions=Versions(fi_campaign=none, torch=none, numpy=none, python=none, platform=none),
        models={},
        workload=WorkloadRecord(source=none, dataset=none, count=0, seed=0, indices=(), images_sha256=""),
        fault_model=FaultModelRecord(table=none, op=none, size=none, semantics=none, entries={}),
    )


def plan(target: str, sites: int) -> None:
    """A store holding a one-stratum campaign of ``sites`` sites."""
    from fi_campaign.store import Store

    rows = (
        {
            "model": MODEL,
            "mode": MODE,
            "layer": i % 19,
            "layer_name": f"l{i % 19}",
            "image": i % 7,
            "element": i * 7919,
            "bit": i % 32,
        }
        for i in range(sites)
    )
    Store.create(target).write_plan(record(), rows)


def masked(site_id: int):
    """A zero-cost result: masked, nothing measured."""
    from fi_campaign.store import Result

    return Result(
        site_id=site_id,
        outcome="masked",
        images_changed=0,
        nan=False,
        max_abs_diff=0.0,
        backend="zero",
        isolation="none",
        semantics="zero-cost",
        runtime_s=0.0,
    )


@dataclass(frozen=True)
class Worked:
    owner: str
    claimed: list[int]
    recorded: list[int]
    cycles: int
    first: float  # time.time() of the first claim and of the end of the last record
    last: float


def work(target: str, index: int, chunk: int, start=None) -> Worked:
    """Claim ``chunk`` sites and record them as masked until none is pending; ``start`` (a
    multiprocessing barrier) lines the workers up so that they really run at once."""
    from fi_campaign.store import Store

    store = Store.open(target)
    owner = f"{socket.gethostname()}:{os.getpid()}:{index}"
    claimed, recorded, cycles = [], [], 0
    if start is not None:
        start.wait()
    first = time.time()
    while sites := store.claim(MODEL, MODE, chunk, owner, 60.0):
        claimed += [s.id for s in sites]
        got = store.record([masked(s.id) for s in sites], owner)
        recorded += [r.site_id for r in got]
        cycles += 1
    last = time.time()
    store.engine.dispose()
    return Worked(owner, claimed, recorded, cycles, first, last)


def beat(target: str, index: int, beats: int, start=None) -> Worked:
    """What a worker's heartbeat thread does, ``beats`` times: renew the lease of the site it
    holds, then return expired leases to pending (``cycles`` counts beats)."""
    from fi_campaign.engine.runner import owner_alive
    from fi_campaign.store import Store

    store = Store.open(target)
    owner = f"{socket.gethostname()}:{os.getpid()}:{index}"
    held = [s.id for s in store.claim(MODEL, MODE, 1, owner, 60.0)]
    if start is not None:
        start.wait()
    first = time.time()
    for _ in range(beats):
        store.renew(owner, 60.0)
        store.release_stale(owner_alive)
    last = time.time()
    store.engine.dispose()
    return Worked(owner, held, [], beats, first, last)


def _entry(args) -> Worked:
    fn, *rest = args
    return fn(*rest)


def run(target: str, workers: int, chunk: int, beats: int = 0) -> list[Worked]:
    """``workers`` processes on one store at once; returns what each claimed and recorded. With
    ``beats``, each beats that many times instead (``beat``)."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    with ctx.Manager() as manager:
        start = manager.Barrier(workers)
        with ctx.Pool(workers) as pool:
            jobs = [
                (beat, target, i, beats, start) if beats else (work, target, i, chunk, start) for i in range(workers)
            ]
            return pool.map(_entry, jobs)
