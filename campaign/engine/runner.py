"""Executes pending sites, a chunk at a time, with the executor the campaign calls for
(``fi_campaign.engine.executors``).

Workers claim chunks of sites atomically from the store (pending -> running, with an owner and a
lease), run them, and commit the results with the sites' status in one transaction. A heartbeat
renews the lease while a chunk runs. A run can be killed at any point: the sites its workers held
go back to pending when any worker sees their processes gone (same host) or their leases
expired (any host), so nothing is lost and nothing is counted twice.
"""
from __future__ import annotations

import os
import socket
import threading
import time
from dataclasses import dataclass, replace
from typing import Callable

from fi_campaign.config import Config
from fi_campaign.engine import capacity
from fi_campaign.engine import log as injection_log
from fi_campaign.engine.executors import open_executor
from fi_campaign.engine.grouping import layer_chunks, window_size
from fi_campaign.engine.heartbeat import Heartbeat
from fi_campaign.errors import UserError
from fi_campaign.store import Store, Worker, log_path, runs_dir

LEASE_S = 60.0  # a worker silent this long has vanished; its heartbeat renews every third of it

Note = Callable[[str], None]  # one sentence for the user that does not stop the run


# What a stratum is doing, so a display can say it rather than show 0 inj/s: its executor opens
# (model loading, golden outputs), it waits for a worker busy elsewhere, or it injects.
PREPARING, WAITING, INJECTING = "preparing", "waiting", "injecting"


@dataclass(frozen=True)
class Progress:
    model: str
    mode: str
    done: int  # in this stratum, including earlier runs
    planned: int
    outcomes: dict[str, int]  # so far: this worker's, or the store's when several workers run
    phase: str = INJECTING


def check_selection(config: Config, model: str | None, mode: str | None) -> Config:
    if model is not None and model not in config.models:
        raise UserError(f"model {model!r} is not in this campaign (models: {', '.join(config.models)}).")
    if mode is not None and mode not in config.modes:
        raise UserError(f"mode {mode!r} is not in this campaign (modes: {', '.join(config.modes)}).")
    return config


def owner_alive(owner: str) -> bool:
    """A worker on this host is alive while its process is; elsewhere only its lease tells."""
    import psutil

    host, pid, _ = owner.rsplit(":", 2)
    if host != socket.gethostname():
        return True
    try:
        return psutil.Process(int(pid)).status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, ValueError):
        return False


def stratum_done(store: Store, model: str, mode: str, until_ci: float | None) -> bool:
    """--until-ci: the 95% interval of the stratum's critical-SDC rate is narrow enough."""
    if until_ci is None:
        return False
    from fi_campaign.classify import COUNTED, CRITICAL_SDC
    from fi_campaign.stats import proportion

    counts = store.stratum_counts(model, mode)
    n = sum(counts.get(o, 0) for o in COUNTED)
    return n > 0 and proportion(counts.get(CRITICAL_SDC, 0), n).half_width <= until_ci


MIN_RESULTS_FOR_LIMIT = 20  # results of a stratum before its not_injected share is judged


def check_not_injected(store: Store, config: Config, model: str, mode: str) -> None:
    """Stop an NVBitFI stratum whose share of not_injected results passes nvbitfi.max_not_injected:
    past it, something is wrong with the setup (launch-sequence drift, a profile from another
    build), and further runs would only spend GPU time. Re-drawn sites are not counted: they
    were replaced, not lost."""
    from fi_campaign.classify import NOT_INJECTED

    if config.backend != "nvbitfi":
        return
    counts = store.stratum_counts(model, mode)
    total, missed = sum(counts.values()), counts.get(NOT_INJECTED, 0)
    limit = config.nvbitfi.max_not_injected
    if total >= MIN_RESULTS_FOR_LIMIT and missed / total > limit:
        raise UserError(f"stopped {model} {mode}: {missed} of its {total} results ({missed / total:.0%}) are "
                        f"not_injected, above nvbitfi.max_not_injected ({limit:.0%}), so the launch sequence has "
                        "drifted from the profile or the profile was not written for this injector; read the "
                        "detail column of those results (fi-campaign export), re-profile with this build's "
                        "profiler, or raise the limit.")


@dataclass(frozen=True)
class Job:
    """What one worker runs; plain data so it crosses into a spawned worker process."""

    db: str
    model: str | None = None
    mode: str | None = None
    isolation: str | None = None
    keep_runs: bool = False
    until_ci: float | None = None
    chunk: int | None = None
    device: str | None = None  # None: the config's
    threads: int | None = None  # torch threads of an in-process worker
    index: int = 0
    parent: int | None = None  # a spawned worker stops claiming once this process is gone
    workers: int = 1  # how many share the run: a worker's claim window is at most its share
    lease_s: float = LEASE_S
    deadline: float | None = None  # epoch seconds: claim no chunk that could not finish by then
    wait: bool = False  # stay while other workers hold sites: pick them up if those workers vanish
    slurm_job: str | None = None
    array_index: int | None = None


def orphaned(job: Job) -> bool:
    """A spawned worker whose runner is gone stops, rather than finish a window nobody waits for."""
    return job.parent is not None and os.getppid() != job.parent


def work(job: Job, store: Store | None = None, on_progress: Callable[[Progress], None] | None = None,
         on_note: Note | None = None) -> dict[str, int]:
    """One worker: claim a chunk of a stratum, run it, record it with its sites, until no
    pending site is left (or the stratum's interval is narrow enough, or the deadline is near)."""
    store = store or Store.open(job.db)
    host, pid = socket.gethostname(), os.getpid()
    owner = f"{host}:{pid}:{job.index}"
    env = os.environ  # inside any Slurm job (submitit's or a plain sbatch script) status names it
    slurm_job = job.slurm_job or env.get("SLURM_ARRAY_JOB_ID") or env.get("SLURM_JOB_ID")
    index = job.array_index if job.array_index is not None else env.get("SLURM_ARRAY_TASK_ID")
    store.join(Worker(owner, host, pid, job.lease_s, slurm_job, None if index is None else int(index)))
    lock = threading.Lock()  # the heartbeat and the recorder never write this owner's rows at once
    state = "failed"
    try:
        with Heartbeat(store, owner, job.lease_s, owner_alive, lock) as beat:
            totals, stopped = _loop(job, store, owner, beat, lock, on_progress, on_note)
        state = "stopped" if stopped else "finished"
        return totals
    except (KeyboardInterrupt, SystemExit):
        state = "released"
        raise
    finally:
        store.leave(owner, state)


def _loop(job: Job, store: Store, owner: str, beat: Heartbeat, lock: threading.Lock,
          on_progress: Callable[[Progress], None] | None, on_note: Note | None) -> tuple[dict[str, int], bool]:
    from fi_campaign.workload.model import resolve_device

    record = store.campaign()
    config = check_selection(Config.from_json(record.config), job.model, job.mode).with_overrides(isolation=job.isolation)
    device = resolve_device(job.device or config.device)
    if job.threads:
        import torch

        torch.set_num_threads(job.threads)
    if config.isolation == "inprocess":
        chunk = min(job.chunk or config.batch_size, config.batch_size)
    else:
        chunk = job.chunk or 4
    planned = {(a, b): (d, p) for a, b, d, p in store.progress()}
    totals: dict[str, int] = {}
    log = injection_log.Log(log_path(store), on_note)
    for name in config.models:
        if job.model not in (None, name):
            continue
        modes = [m for m in config.modes if job.mode in (None, m) and planned[(name, m)][0] < planned[(name, m)][1]
                 and not stratum_done(store, name, m, job.until_ci)]
        if not modes:
            continue
        for m in modes:  # before any golden or timing run is spent
            check_not_injected(store, config, name, m)
        if on_progress:
            on_progress(Progress(name, modes[0], *planned[(name, modes[0])], {}, PREPARING))
        executor = open_executor(record, config, name, device, runs_dir(store), job.keep_runs, job.threads, store)
        timeout_s = getattr(executor, "timeout_s", 0.0)
        # no claim should take longer than this to run; past it the heartbeat stops renewing
        beat.chunk(False, 600.0 if config.isolation == "inprocess" else chunk * (timeout_s + 10.0) + 60.0)
        longest = 0.0  # the longest claim so far; until one is timed, the worst case below
        try:
            for m in modes:
                done, total = planned[(name, m)]
                counts: dict[str, int] = {}
                if on_progress:
                    on_progress(Progress(name, m, done, total, {}))
                grouped = executor.groups_layers
                while not stratum_done(store, name, m, job.until_ci):
                    if orphaned(job):
                        return totals, False
                    if job.deadline is not None and time.time() + (longest or chunk * timeout_s) > job.deadline:
                        return totals, True
                    if done < total:
                        check_not_injected(store, config, name, m)
                    take = window_size(chunk, store.pending(name, m), job.workers) if grouped else chunk
                    sites = store.claim(name, m, take, owner, job.lease_s)
                    if not sites:
                        if job.wait and store.unfinished(name, m)[1]:
                            time.sleep(min(job.lease_s / 3, 2.0))  # others hold sites: stay until they are done
                            continue
                        break
                    t0 = time.monotonic()
                    beat.chunk(True)
                    for part in layer_chunks(sites, chunk) if grouped else [sites]:
                        if orphaned(job):  # the rest of the window goes back when this process is gone
                            return totals, False
                        ran = executor.run(part, m)
                        with log.held(), lock:
                            results = store.record(ran, owner)
                            log.write("".join(injection_log.result_line(r, name, m, owner) for r in results))
                        for r in results:
                            counts[r.outcome] = counts.get(r.outcome, 0) + 1
                            totals[r.outcome] = totals.get(r.outcome, 0) + 1
                        done += len(results)
                        if on_progress:
                            on_progress(Progress(name, m, done, total, dict(counts)))
                    beat.chunk(False)
                    longest = max(longest, time.monotonic() - t0)
        except BaseException:
            store.release_owner(owner)  # best effort: give back what this worker still holds
            raise
        finally:
            executor.close()
    return totals, False


def _worker_main(job: Job, messages) -> None:
    """A spawned worker; its notes and its error travel back to the runner, which reports each once."""
    from fi_campaign.errors import UserError
    from fi_campaign.heap import keep_freed_memory

    import signal

    keep_freed_memory()
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # a terminated worker gives its sites back
    try:
        work(job, on_note=lambda text: messages.put(("note", text)))
    except KeyboardInterrupt:
        pass
    except Exception as e:  # noqa: BLE001 - every error must reach the runner
        messages.put(("user" if isinstance(e, UserError) else "error", str(e) or type(e).__name__))


def run(store: Store, model: str | None = None, mode: str | None = None,
        on_progress: Callable[[Progress], None] | None = None, chunk: int | None = None,
        isolation: str | None = None, keep_runs: bool = False, workers: int = 1, until_ci: float | None = None,
        devices: list[str] | None = None, on_note: Note | None = None, base: Job | None = None) -> dict[str, int]:
    """Run every pending site (of ``model`` / ``mode`` if given) with ``workers`` workers;
    returns this run's outcome counts. Sites left running by a dead worker are taken back
    first, and the injection log is made to agree with the store. ``base`` carries the fields a
    Slurm task adds (deadline, threads, waiting for others)."""
    import multiprocessing as mp

    record = store.campaign()
    config = check_selection(Config.from_json(record.config), model, mode).with_overrides(isolation=isolation)
    workers = _fit(record, config, model, workers, devices, on_note)
    store.release_stale(owner_alive)
    said = injection_log.repair(store, log_path(store)).sentence(log_path(store))
    if said and on_note:
        on_note(said)
    template = replace(base or Job(""), db=store.target.address, model=model, mode=mode, isolation=isolation,
                       keep_runs=keep_runs, until_ci=until_ci, chunk=chunk, workers=workers)
    if workers == 1:
        return work(replace(template, device=(devices or [None])[0]), store, on_progress, on_note)
    _preflight(store, model)
    threads = (base.threads if base else None) or max(1, capacity.cores() // workers)
    before = _outcomes(store)
    ctx = mp.get_context("spawn")
    messages = ctx.SimpleQueue()
    procs = [ctx.Process(target=_worker_main, daemon=True,
                         args=(replace(template, device=devices[i % len(devices)] if devices else None,
                                       threads=threads, index=i, parent=os.getpid()), messages))
             for i in range(workers)]
    start = {(a, b): done for a, b, done, _ in store.progress()}
    for p in procs:
        p.start()
    try:
        while any(p.is_alive() for p in procs):
            if on_progress:
                _poll(store, model, mode, on_progress, start)
            for p in procs:
                p.join(timeout=0.5)
    except BaseException:
        for p in procs:
            p.terminate()
        raise
    if on_progress:
        _poll(store, model, mode, on_progress, start)
    notes, failures = [], []
    while not messages.empty():
        kind, text = messages.get()
        (notes if kind == "note" else failures).append((kind, text))
    for text in dict.fromkeys(text for _, text in notes):  # the same note from several workers: once
        if on_note:
            on_note(text)
    if failures:
        kind, text = failures[0]
        if kind == "user":
            raise UserError(text)
        raise RuntimeError(f"a worker failed: {text}")
    after = _outcomes(store)
    return {o: after.get(o, 0) - before.get(o, 0) for o in after if after.get(o, 0) > before.get(o, 0)}


def _fit(record, config: Config, model: str | None, workers: int, devices: list[str] | None,
         on_note: Note | None) -> int:
    """Workers capped to the cores and memory of this machine; a batch that cannot fit is refused."""
    from fi_campaign.workload.model import resolve_device

    on_gpu = bool(devices) or resolve_device(config.device).startswith("cuda")
    models = {k: v for k, v in record.models.items() if model in (None, k)}
    available = capacity.available_memory()
    fp = capacity.footprint(models, config.isolation, config.batch_size, config.images.count, on_gpu)
    capacity.check_batch(fp, config.batch_size, config.images.count, available)
    n, why = capacity.fit_workers(workers, fp, None if devices else capacity.cores(), available)
    if why and on_note:
        on_note(why)
    return n


def _preflight(store: Store, model: str | None) -> None:
    """What every worker would refuse, refused once before any worker starts."""
    from fi_campaign.workload.images import check_checkpoint
    from fi_campaign.models import zoo

    record = store.campaign()
    for name, info in record.models.items():
        if model in (None, name):
            check_checkpoint(info["checkpoint"], zoo.read(info["checkpoint"])[0].sha256, info["sha256"])


def _outcomes(store: Store) -> dict[str, int]:
    out: dict[str, int] = {}
    for stratum in store.outcome_counts().values():
        for outcome, k in stratum.items():
            out[outcome] = out.get(outcome, 0) + k
    return out


def _poll(store: Store, model: str | None, mode: str | None, on_progress: Callable[[Progress], None],
          start: dict[tuple[str, str], int]) -> None:
    """Progress of every selected stratum, read from the store. A worker claims sites only once
    its executor is open, so until some site is held or recorded the workers are preparing."""
    counts, running = store.outcome_counts(), store.running_counts()
    progress = [row for row in store.progress() if model in (None, row[0]) and mode in (None, row[1])]
    active = {(a, b) for a, b, done, _ in progress if running.get((a, b)) or done > start.get((a, b), 0)}
    for a, b, done, planned in progress:
        phase = INJECTING if (a, b) in active or done == planned else WAITING if active else PREPARING
        on_progress(Progress(a, b, done, planned, counts.get((a, b), {}), phase))
