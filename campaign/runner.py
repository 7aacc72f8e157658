"""Executes pending sites, a chunk at a time, with one of two executors:

- in-process (``isolation: inprocess``): one forward pass serves a whole chunk of injections;
- process-isolated (``isolation: process``): one workload process (``campaign.infer``) per
  injection, in its own run directory, with a timeout derived from the golden runs; this is
  the path NVBitFI campaigns take, and how crashes and hangs become DUEs.

Workers claim chunks of sites atomically from the store (pending -> running, with an owner and a
lease), run them, and commit the results with the sites' status in one transaction. A run can be
killed at any point: the sites its workers held go back to pending when the next run sees their
processes gone (or their leases expired), so nothing is lost and nothing is counted twice.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Protocol

import numpy as np

from campaign import process
from campaign.classify import DUE, MASKED, classify_batch
from campaign.config import Config
from campaign.errors import UserError
from campaign.store import CampaignRecord, Result, Site, Store

BACKEND = "pytorch"


@dataclass(frozen=True)
class Progress:
    model: str
    mode: str
    done: int  # in this stratum, including earlier runs
    planned: int
    outcomes: dict[str, int]  # so far: this worker's, or the store's when several workers run


def fault_batch(sites: list[Site], fault_model: dict):
    """The vectorised faults of a chunk: row i of the batch carries site i's fault."""
    from models.faults import site_faults

    return site_faults([asdict(s) for s in sites], np.arange(len(sites)), fault_model)


def semantics(mode: str, fault_model: dict) -> str:
    if mode == "single_bit":
        return "framework: xor one bit of one float32 conv/linear output"
    fm = fault_model
    return f"framework: warp of 32 outputs, {fm['semantics']}, {fm.get('name', fm['table'])} {fm['op']} {fm['size']}"


class Executor(Protocol):
    def run(self, sites: list[Site], mode: str) -> list[Result]: ...

    def close(self) -> None: ...


class InProcess:
    def __init__(self, record: CampaignRecord, config: Config, name: str, device: str) -> None:
        from campaign.workload import Workload

        info = record.models[name]
        self.w = Workload.open(info["checkpoint"], info["sha256"], record.workload, device, config.batch_size)
        self.w.check_reproducible(config.tolerance)
        self.record, self.config = record, config

    def run(self, sites: list[Site], mode: str) -> list[Result]:
        t0 = time.perf_counter()
        rows = np.array([s.image for s in sites])
        faulty = self.w.forward(rows, fault_batch(sites, self.record.fault_model))
        outcomes = classify_batch(self.w.golden[rows][:, None], faulty[:, None], self.config.tolerance)
        per = (time.perf_counter() - t0) / len(sites)
        label = semantics(mode, self.record.fault_model)
        return [Result(s.id, o.outcome, o.images_changed, o.nan, o.max_abs_diff, BACKEND, "inprocess", label, per)
                for s, o in zip(sites, outcomes)]

    def close(self) -> None:
        self.w.injector.remove()


def thread_env(env: dict[str, str], threads: int) -> dict[str, str]:
    return env | {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}


class Processes:
    """One ``python -m campaign.infer`` process per injection, each in its own run directory.
    The golden outputs come from ``golden_runs`` fault-free runs of the same program, which
    must agree bit for bit; the timeout is max(10 s, timeout_factor x the slowest of them)."""

    GOLDEN_TIMEOUT_S = 600.0
    backend = BACKEND
    isolation = "process"

    def __init__(self, record: CampaignRecord, config: Config, name: str, device: str, root: Path,
                 keep_runs: bool, threads: int | None = None, base_env: dict[str, str] | None = None) -> None:
        from campaign.workload import write_root

        info = record.models[name]
        self.record, self.config, self.keep_runs = record, config, keep_runs
        self.root = write_root(root / name, info["checkpoint"], record.workload, config.batch_size, device,
                               record.fault_model)
        self.threads = threads
        # workers share the cores: each workload process gets its share, not all of them
        env = dict(os.environ if base_env is None else base_env)
        self.env = env if threads is None else thread_env(env, threads)
        self.golden, slowest = self._cached_golden(config.golden_runs)
        self.timeout_s = max(10.0, config.timeout_factor * slowest)

    def _cached_golden(self, runs: int) -> tuple[np.ndarray, float]:
        """Golden runs once per workload root: the first worker runs them under a file lock,
        the others (and later resumed runs of the same workload) reuse the result."""
        import fcntl
        import hashlib

        key = hashlib.sha256((self.root / "workload.json").read_bytes()).hexdigest()
        cache, meta = self.root / "golden.npy", self.root / "golden.json"
        with open(self.root / ".golden.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if meta.exists() and cache.exists():
                info = json.loads(meta.read_text())
                if info.get("key") == key and info.get("runs", 0) >= runs:
                    return np.load(cache), float(info["slowest_s"])
            golden, slowest = self._golden(runs)
            np.save(cache, golden)
            meta.write_text(json.dumps({"key": key, "runs": runs, "slowest_s": slowest}))
            return golden, slowest

    def _golden(self, runs: int) -> tuple[np.ndarray, float]:
        from campaign.workload import command

        outputs, slowest = [], 0.0
        for g in range(runs):
            d = self.root / f"golden-{g}"
            ended = process.run(command(self.root), d, self.GOLDEN_TIMEOUT_S, self.env)
            if ended.due_reason():
                raise UserError(f"golden run {g} of the workload failed ({ended.due_reason()}); see {d}/stderr.txt.")
            outputs.append(np.load(d / "logits.npy"))
            slowest = max(slowest, ended.runtime_s)
        for g, out in enumerate(outputs[1:], 1):
            if not np.array_equal(out.view(np.uint32), outputs[0].view(np.uint32)):
                raise UserError(f"golden runs 0 and {g} of the workload disagree (non-deterministic outputs), "
                                "so no injection could be judged; see " + str(self.root) + ".")
        return outputs[0], slowest

    def prepare(self, d: Path, site: Site, mode: str) -> list[str]:
        """Write what the run needs into its directory; return its command."""
        from campaign.workload import command

        (d / "fault.json").write_text(json.dumps(asdict(site)))
        return command(self.root, d / "fault.json")

    def judge(self, d: Path, site: Site, ended: process.Ended) -> tuple[str, int, bool, float | None, str | None]:
        """(outcome, images changed, nan, max |diff|, DUE reason) of a finished run."""
        reason = ended.due_reason()
        if reason is None:
            try:
                faulty = np.load(d / "logits.npy")
                if faulty.shape != self.golden.shape:
                    raise ValueError
            except (OSError, ValueError):
                reason = "no valid output file"
        if reason is not None:
            return DUE, 0, False, None, reason
        o = classify_batch(self.golden[None], faulty[None], self.config.tolerance)[0]
        return o.outcome, o.images_changed, o.nan, o.max_abs_diff, None

    def label(self, mode: str) -> str:
        return semantics(mode, self.record.fault_model)

    def run(self, sites: list[Site], mode: str) -> list[Result]:
        results = []
        for s in sites:
            d = self.root / str(s.id)
            d.mkdir(parents=True, exist_ok=True)
            ended = process.run(self.prepare(d, s, mode), d, self.timeout_s, self.env)
            outcome, changed, nan, diff, reason = self.judge(d, s, ended)
            dropped = outcome == MASKED and not self.keep_runs
            if dropped:
                shutil.rmtree(d, ignore_errors=True)
            results.append(Result(s.id, outcome, changed, nan, diff, self.backend, self.isolation, self.label(mode),
                                  ended.runtime_s, reason or (None if dropped else str(d))))
        return results

    def close(self) -> None:
        pass


def check_selection(config: Config, model: str | None, mode: str | None) -> Config:
    if model is not None and model not in config.models:
        raise UserError(f"model {model!r} is not in this campaign (models: {', '.join(config.models)}).")
    if mode is not None and mode not in config.modes:
        raise UserError(f"mode {mode!r} is not in this campaign (modes: {', '.join(config.modes)}).")
    return config


def _beside(store: Store | Path, suffix: str) -> Path:
    path = store.path if isinstance(store, Store) else store
    return path.with_name(path.name + suffix)


def runs_dir(store: Store | Path) -> Path:
    """Run directories of process-isolated injections (and NVBitFI profiles) live beside the store."""
    return _beside(store, ".runs")


def log_path(store: Store | Path) -> Path:
    """One JSON line per injection, beside the store."""
    return _beside(store, ".log.jsonl")


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
    from campaign.classify import COUNTED, CRITICAL_SDC
    from campaign.stats import proportion

    counts = store.stratum_counts(model, mode)
    n = sum(counts.get(o, 0) for o in COUNTED)
    return n > 0 and proportion(counts.get(CRITICAL_SDC, 0), n).half_width <= until_ci


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


def work(job: Job, store: Store | None = None, on_progress: Callable[[Progress], None] | None = None) -> dict[str, int]:
    """One worker: claim a chunk of a stratum, run it, record it with its sites, until no
    pending site is left (or the stratum's interval is narrow enough)."""
    from campaign.workload import resolve_device

    store = store or Store.open(job.db)
    record = store.campaign()
    config = check_selection(Config.from_json(record.config), job.model, job.mode).with_overrides(isolation=job.isolation)
    device = resolve_device(job.device or config.device)
    if job.threads:
        import torch

        torch.set_num_threads(job.threads)
    owner = f"{socket.gethostname()}:{os.getpid()}:{job.index}"
    if config.isolation == "inprocess":
        chunk = min(job.chunk or config.batch_size, config.batch_size)
    else:
        chunk = job.chunk or 4
    planned = {(a, b): (d, p) for a, b, d, p in store.progress()}
    totals: dict[str, int] = {}
    log = log_path(store)
    for name in config.models:
        if job.model not in (None, name):
            continue
        modes = [m for m in config.modes if job.mode in (None, m) and planned[(name, m)][0] < planned[(name, m)][1]
                 and not stratum_done(store, name, m, job.until_ci)]
        if not modes:
            continue
        executor: Executor
        if config.backend == "nvbitfi":
            from campaign.nvbitfi_backend import Nvbitfi

            executor = Nvbitfi(record, config, name, device, runs_dir(store), job.keep_runs, job.threads)
        elif config.isolation == "inprocess":
            executor = InProcess(record, config, name, device)
        else:
            executor = Processes(record, config, name, device, runs_dir(store), job.keep_runs, job.threads)
        lease_s = 600.0 if config.isolation == "inprocess" else chunk * (getattr(executor, "timeout_s", 0.0) + 10.0) + 60.0
        try:
            for m in modes:
                done, total = planned[(name, m)]
                counts: dict[str, int] = {}
                if on_progress:
                    on_progress(Progress(name, m, done, total, {}))
                while not stratum_done(store, name, m, job.until_ci):
                    if job.parent is not None and os.getppid() != job.parent:
                        return totals  # orphaned: the runner that started us is gone
                    sites = store.claim(name, m, chunk, owner, lease_s)
                    if not sites:
                        break
                    results = store.record(executor.run(sites, m), owner)
                    _log(log, results, name, m, owner)
                    for r in results:
                        counts[r.outcome] = counts.get(r.outcome, 0) + 1
                        totals[r.outcome] = totals.get(r.outcome, 0) + 1
                    done += len(results)
                    if on_progress:
                        on_progress(Progress(name, m, done, total, dict(counts)))
        except BaseException:
            store.release_owner(owner)  # best effort: give back what this worker still holds
            raise
        finally:
            executor.close()
    return totals


def _log(path: Path, results: list[Result], model: str, mode: str, worker: str) -> None:
    lines = "".join(json.dumps({"site": r.site_id, "model": model, "mode": mode, "outcome": r.outcome,
                                "runtime_s": round(r.runtime_s, 6), "worker": worker,
                                **({"detail": r.detail} if r.detail else {})}) + "\n" for r in results)
    with open(path, "a") as f:
        f.write(lines)


def _worker_main(job: Job, errors) -> None:
    """A spawned worker; its error travels back to the runner, which reports it once."""
    from campaign.errors import mark_model_errors
    from campaign.heap import keep_freed_memory

    mark_model_errors()
    keep_freed_memory()
    try:
        work(job)
    except KeyboardInterrupt:
        pass
    except Exception as e:  # noqa: BLE001 - every error must reach the runner
        errors.put((bool(getattr(e, "user_facing", False)), str(e) or type(e).__name__))


def run(store: Store, model: str | None = None, mode: str | None = None,
        on_progress: Callable[[Progress], None] | None = None, chunk: int | None = None,
        isolation: str | None = None, keep_runs: bool = False, workers: int = 1, until_ci: float | None = None,
        devices: list[str] | None = None) -> dict[str, int]:
    """Run every pending site (of ``model`` / ``mode`` if given) with ``workers`` workers;
    returns this run's outcome counts. Sites left running by a dead worker are taken back first."""
    import multiprocessing as mp

    check_selection(Config.from_json(store.campaign().config), model, mode)
    store.release_stale(owner_alive)
    if workers == 1:
        job = Job(str(store.path), model, mode, isolation, keep_runs, until_ci, chunk, (devices or [None])[0])
        return work(job, store, on_progress)
    _preflight(store, model)
    threads = max(1, (os.cpu_count() or 1) // workers)
    before = _outcomes(store)
    ctx = mp.get_context("spawn")
    errors = ctx.SimpleQueue()
    procs = [ctx.Process(target=_worker_main, daemon=True,
                         args=(Job(str(store.path), model, mode, isolation, keep_runs, until_ci, chunk,
                                   devices[i % len(devices)] if devices else None, threads, i, os.getpid()),
                               errors))
             for i in range(workers)]
    for p in procs:
        p.start()
    try:
        while any(p.is_alive() for p in procs):
            for p in procs:
                p.join(timeout=0.5)
            if on_progress:
                _poll(store, model, mode, on_progress)
    except BaseException:
        for p in procs:
            p.terminate()
        raise
    if on_progress:
        _poll(store, model, mode, on_progress)
    if not errors.empty():
        user, message = errors.get()
        if user:
            raise UserError(message)
        raise RuntimeError(f"a worker failed: {message}")
    after = _outcomes(store)
    return {o: after.get(o, 0) - before.get(o, 0) for o in after if after.get(o, 0) > before.get(o, 0)}


def _preflight(store: Store, model: str | None) -> None:
    """What every worker would refuse, refused once before any worker starts."""
    from campaign.workload import check_checkpoint
    from models import zoo

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


def _poll(store: Store, model: str | None, mode: str | None, on_progress: Callable[[Progress], None]) -> None:
    counts = store.outcome_counts()
    for a, b, done, planned in store.progress():
        if model in (None, a) and mode in (None, b):
            on_progress(Progress(a, b, done, planned, counts.get((a, b), {})))
