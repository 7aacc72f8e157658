"""Executes pending sites in-process (backend pytorch), a chunk of injections per forward pass.

Each chunk's results are committed with their sites' status in one transaction, so a run can be
interrupted at any point and restarted: it resumes with the first pending site.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from campaign.classify import classify_batch
from campaign.config import Config
from campaign.errors import UserError
from campaign.store import Result, Site, Store

BACKEND = "pytorch"


@dataclass(frozen=True)
class Progress:
    model: str
    mode: str
    done: int  # in this stratum, including earlier runs
    planned: int
    outcomes: dict[str, int]  # this run's outcomes so far


def fault_batch(sites: list[Site], mode: str, fault_model: dict):
    """The vectorised faults of a chunk: row i of the batch carries site i's fault."""
    from models.faults import SINGLE_BIT, BitFlips, WarpValues, lane_draws
    from models.powerlaw import SIZES, PowerLaw

    layers = np.array([s.layer for s in sites])
    rows = np.arange(len(sites))
    elements = np.array([s.element for s in sites], dtype=np.int64)
    if mode == SINGLE_BIT:
        return BitFlips(layers, rows, elements, np.array([s.bit for s in sites]))
    draws = [lane_draws(s.value_seed) for s in sites]
    by_value = fault_model["size"] == "by-value"
    entries = fault_model["entries"]  # the parameters stored at plan time, not today's table
    laws = tuple(PowerLaw(*entries[b if by_value else fault_model["size"]]) for b in SIZES)
    return WarpValues(layers, rows, elements, np.array([s.width for s in sites]),
                      np.stack([d[0] for d in draws]), np.stack([d[1] for d in draws]), laws, by_value)


def semantics(mode: str, fault_model: dict) -> str:
    if mode == "single_bit":
        return "framework: xor one bit of one float32 conv/linear output"
    fm = fault_model
    return f"framework: warp of 32 outputs, {fm['semantics']}, {fm['table']} {fm['op']} {fm['size']}"


def check_selection(config: Config, model: str | None, mode: str | None) -> Config:
    if model is not None and model not in config.models:
        raise UserError(f"model {model!r} is not in this campaign (models: {', '.join(config.models)}).")
    if mode is not None and mode not in config.modes:
        raise UserError(f"mode {mode!r} is not in this campaign (modes: {', '.join(config.modes)}).")
    return config


def run(store: Store, model: str | None = None, mode: str | None = None,
        on_progress: Callable[[Progress], None] | None = None, chunk: int | None = None) -> dict[str, int]:
    """Run every pending site (of ``model`` / ``mode`` if given); returns this run's outcome counts."""
    from campaign.workload import Workload, resolve_device

    record = store.campaign()
    config = check_selection(Config.from_json(record.config), model, mode)
    device = resolve_device(config.device)
    chunk = min(chunk or config.batch_size, config.batch_size)
    planned = {(a, b): (d, p) for a, b, d, p in store.progress()}
    totals: dict[str, int] = {}
    for name in config.models:
        if model not in (None, name):
            continue
        modes = [m for m in config.modes if mode in (None, m) and planned[(name, m)][0] < planned[(name, m)][1]]
        if not modes:
            continue
        info = record.models[name]
        w = Workload.open(info["checkpoint"], info["sha256"], record.workload, device, config.batch_size)
        w.check_reproducible(config.tolerance)
        for m in modes:
            done, total = planned[(name, m)]
            label = semantics(m, record.fault_model)
            counts: dict[str, int] = {}
            while sites := store.pending(name, m, chunk):
                t0 = time.perf_counter()
                rows = np.array([s.image for s in sites])
                faulty = w.forward(rows, fault_batch(sites, m, record.fault_model))
                outcomes = classify_batch(w.golden[rows][:, None], faulty[:, None], config.tolerance)
                per = (time.perf_counter() - t0) / len(sites)
                store.record([Result(s.id, o.outcome, o.images_changed, o.nan, o.max_abs_diff, BACKEND, label, per)
                              for s, o in zip(sites, outcomes)])
                for o in outcomes:
                    counts[o.outcome] = counts.get(o.outcome, 0) + 1
                    totals[o.outcome] = totals.get(o.outcome, 0) + 1
                done += len(sites)
                if on_progress:
                    on_progress(Progress(name, m, done, total, dict(counts)))
        w.injector.remove()
    return totals
