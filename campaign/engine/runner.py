"""Executes pending sites, a chunk at a time, with the executor the campaign calls for
(``fi_campaign.engine.executors``).

Workers claim chunks of sites atomically from the store (pending -> running, with an owner and a
lease), run them, and commit the results with the sites' status in one transaction. A heartbeat
renews the lease while a chunk runs. A run can be killed at any point: the sites its workers held
go back to pending when any worker sees their processes gone (same host) or their leases
expired (any host), so nothing is lost and nothing is counted twice.
"""

from __future__ import annotations

import io
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import TYPE_CHECKING

from fi_campaign.allocation import Policy, StratumState
from fi_campaign.config import Config
from fi_campaign.engine import capacity
from fi_campaign.engine import log as injection_log
from fi_campaign.engine.executors import Executor, open_executor
from fi_campaign.engine.grouping import layer_chunks, window_size
from fi_campaign.engine.heartbeat import Heartbeat
from fi_campaign.errors import UserError
from fi_campaign.store import CampaignRecord, Result, Site, Store, StratumTally, Worker, log_path, runs_dir

if TYPE_CHECKING:
    from multiprocessing.process import BaseProcess
    from multiprocessing.queues import SimpleQueue

# The runner's timing and sizing, in one place.
LEASE_S = 60.0  # a worker silent this long has vanished; its heartbeat renews every third of it
PROCESS_CHUNK = 4  # sites a process-isolated (or NVBitFI) worker claims at once unless --chunk says
INPROCESS_STUCK_S = 600.0  # an in-process claim still running after this is hung: its lease lapses
SITE_SLACK_S = 10.0  # a process-run site may take its timeout plus this (start-up, kill grace, judging)
CLAIM_SLACK_S = 60.0  # and a whole claim this much more (recording it, the heartbeat's own period)
WAIT_POLL_S = 2.0  # --wait: the longest pause before looking again whether others' sites came free
PROGRESS_POLL_S = 0.5  # several workers: how often the runner reads their progress from the store
STOP_S = 10.0  # how long stopped workers get to give their sites back before they are killed
MIN_RESULTS_FOR_LIMIT = 20  # results of a stratum before its not_injected share is judged
RECORD_EVERY_S = 0.5  # in-process results wait at most this long for one transaction that records them all

Note = Callable[[str], None]  # one sentence for the user that does not stop the run


# What a stratum is doing, so a display can say it rather than show 0 inj/s: its executor opens
# (model loading, golden outputs), it waits for a worker busy elsewhere, or it injects.
PREPARING, WAITING, INJECTING = "preparing", "waiting", "injecting"


@dataclass(frozen=True, kw_only=True)
class Progress:
    model: str
    mode: str
    done: int  # in this stratum, including earlier runs
    planned: int
    outcomes: dict[str, int]  # so far: this worker's, or the store's when several workers run
    phase: str = INJECTING


def chunk_size(job: Job, config: Config) -> int:
    """Sites per executor call: a forward pass of at most batch_size rows in-process; a few
    workload processes otherwise, so a claim is never held long."""
    if config.isolation == "inprocess":
        return min(job.chunk or config.batch_size, config.batch_size)
    return job.chunk or PROCESS_CHUNK


def stuck_after(config: Config, chunk: int, timeout_s: float) -> float:
    """How long one claim may run before the heartbeat stops renewing its lease (a hung worker
    then loses its sites): every site's timeout and slack for process runs."""
    if config.isolation == "inprocess":
        return INPROCESS_STUCK_S
    return chunk * (timeout_s + SITE_SLACK_S) + CLAIM_SLACK_S


def wait_poll_s(lease_s: float) -> float:
    """--wait: look again within a third of a lease (a vanished worker's sites are free by then)."""
    return min(lease_s / 3, WAIT_POLL_S)


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


def stratum_done(store: Store, config: Config, model: str, mode: str, until_ci: float | None) -> bool:
    """--until-ci: the 95% interval of the stratum's critical-SDC rate is narrow enough (for a
    stratified plan, the stratified estimate's, once every sampling stratum had its pilot)."""
    if until_ci is None:
        return False
    if config.sampling.stratified:
        from fi_campaign.allocation import reached

        return reached(sampling_states(store, model, mode), policy(config), until_ci)
    from fi_campaign.classify import COUNTED, CRITICAL_SDC
    from fi_campaign.stats import proportion

    counts = store.stratum_counts(model, mode)
    n = sum(counts.get(o, 0) for o in COUNTED)
    return n > 0 and proportion(counts.get(CRITICAL_SDC, 0), n).half_width <= until_ci


def policy(config: Config) -> Policy:
    s = config.sampling
    return Policy(allocation=s.allocation, pilot=s.pilot, floor=s.floor)


def sampling_states(store: Store, model: str, mode: str) -> list[StratumState]:
    """A stratified model x mode's sampling strata as the allocation reads them from the store."""
    return [tally_state(t) for t in store.stratum_tallies(model, mode)]


def tally_state(t: StratumTally) -> StratumState:
    from fi_campaign.classify import COUNTED, CRITICAL_SDC

    counted = sum(t.outcomes.get(o, 0) for o in COUNTED)
    return StratumState(
        label=t.stratum,
        weight=t.weight,
        n=counted,
        k=t.outcomes.get(CRITICAL_SDC, 0),
        held=t.running,
        skipped=sum(t.outcomes.values()) - counted,
        pending=t.pending,
    )


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
        raise UserError(
            f"stopped {model} {mode}: {missed} of its {total} results ({missed / total:.0%}) are "
            f"not_injected, above nvbitfi.max_not_injected ({limit:.0%}), so the launch sequence has "
            "drifted from the profile or the profile was not written for this injector; read the "
            "detail column of those results (fi-campaign export), re-profile with this build's "
            "profiler, or raise the limit."
        )


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


def work(
    job: Job,
    store: Store | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    on_note: Note | None = None,
) -> dict[str, int]:
    """One worker: claim a chunk of a stratum, run it, record it with its sites, until no
    pending site is left (or the stratum's interval is narrow enough, or the deadline is near)."""
    store = store or Store.open(job.db)
    host, pid = socket.gethostname(), os.getpid()
    owner = f"{host}:{pid}:{job.index}"
    env = os.environ  # inside any Slurm job (submitit's or a plain sbatch script) status names it
    slurm_job = job.slurm_job or env.get("SLURM_ARRAY_JOB_ID") or env.get("SLURM_JOB_ID")
    index = job.array_index if job.array_index is not None else env.get("SLURM_ARRAY_TASK_ID")
    store.join(
        Worker(
            owner=owner,
            host=host,
            pid=pid,
            lease_s=job.lease_s,
            job=slurm_job,
            array_index=None if index is None else int(index),
        )
    )
    lock = threading.Lock()  # the heartbeat and the recorder never write this owner's rows at once
    state = "failed"
    try:
        with Heartbeat(store, owner, job.lease_s, owner_alive, lock) as beat:
            loop = WorkerLoop(job, store, owner, beat, lock, on_progress, on_note)
            stop = loop.run()
        state = "stopped" if stop is Stop.DEADLINE else "finished"
        return loop.totals
    except (KeyboardInterrupt, SystemExit):
        state = "released"
        raise
    finally:
        store.leave(owner, state)


class Stop(Enum):
    """Why a worker left before its strata were done."""

    ORPHANED = "orphaned"  # a spawned worker whose runner is gone: what it held goes back
    DEADLINE = "deadline"  # the next claim could not finish before the job's deadline


@dataclass
class _Stratum:
    """One model x mode as this worker runs it: its counts so far, for the progress reports."""

    model: str
    mode: str
    done: int
    planned: int
    counts: dict[str, int] = field(default_factory=dict)

    def progress(self, phase: str = INJECTING) -> Progress:
        return Progress(
            model=self.model,
            mode=self.mode,
            done=self.done,
            planned=self.planned,
            outcomes=dict(self.counts),
            phase=phase,
        )


class WorkerLoop:
    """One worker's pass over its strata, in named steps: per model, open the executor once;
    per stratum, claim a window of sites, run it a part at a time and record each part with its
    sites, until the stratum has nothing pending for this worker (or is done by --until-ci).
    Every step that may stop the worker early says why (``Stop``)."""

    def __init__(
        self,
        job: Job,
        store: Store,
        owner: str,
        beat: Heartbeat,
        lock: threading.Lock,
        on_progress: Callable[[Progress], None] | None,
        on_note: Note | None,
    ) -> None:
        from fi_campaign.workload.model import resolve_device

        self.job, self.store, self.owner, self.beat, self.lock = job, store, owner, beat, lock
        self.on_progress = on_progress
        self.on_note = on_note
        self.record = store.campaign()
        self.config = check_selection(Config.from_json(self.record.config), job.model, job.mode).with_overrides(
            isolation=job.isolation
        )
        self.device = resolve_device(job.device or self.config.device)
        if job.threads:
            import torch

            torch.set_num_threads(job.threads)
        self.chunk = chunk_size(job, self.config)
        self.planned = {(a, b): (d, self.config.budget(p)) for a, b, d, p in store.progress()}
        self.log = injection_log.Log(log_path(store), on_note)
        self.totals: dict[str, int] = {}
        self.timeout_s = 0.0  # the current executor's per-site timeout (process runs)
        self.longest = 0.0  # the longest claim of the current model; until one is timed, the worst case

    def run(self) -> Stop | None:
        for name in self.config.models:
            modes = self._pending_modes(name)
            if modes:
                stop = self._run_model(name, modes)
                if stop is not None:
                    return stop
        return None

    def _report(self, progress: Progress) -> None:
        if self.on_progress:
            self.on_progress(progress)

    def _stratum(self, name: str, mode: str) -> _Stratum:
        done, planned = self.planned[(name, mode)]
        return _Stratum(model=name, mode=mode, done=done, planned=planned)

    def _pending_modes(self, name: str) -> list[str]:
        """The modes of ``name`` this worker runs: selected, with pending sites, not done by --until-ci."""
        if self.job.model not in (None, name):
            return []
        return [
            m
            for m in self.config.modes
            if self.job.mode in (None, m)
            and self.planned[(name, m)][0] < self.planned[(name, m)][1]
            and not stratum_done(self.store, self.config, name, m, self.job.until_ci)
        ]

    def _run_model(self, name: str, modes: list[str]) -> Stop | None:
        """Open the model's executor (model loading, golden outputs) once for all its modes."""
        for m in modes:  # before any golden or timing run is spent
            check_not_injected(self.store, self.config, name, m)
        self._report(self._stratum(name, modes[0]).progress(PREPARING))
        executor = open_executor(
            self.record,
            self.config,
            name,
            self.device,
            runs_dir(self.store),
            self.job.keep_runs,
            self.job.threads,
            self.store,
        )
        if executor.note and self.on_note:
            self.on_note(executor.note)
        self.timeout_s = getattr(executor, "timeout_s", 0.0)
        self.beat.chunk(False, stuck_after(self.config, self.chunk, self.timeout_s))
        self.longest = 0.0
        try:
            for m in modes:
                stop = self._run_stratum(executor, self._stratum(name, m))
                if stop is not None:
                    return stop
            return None
        except BaseException:
            self.store.release_owner(self.owner)  # best effort: give back what this worker still holds
            raise
        finally:
            executor.close()

    def _run_stratum(self, executor: Executor, st: _Stratum) -> Stop | None:
        self._report(st.progress())
        while not stratum_done(self.store, self.config, st.model, st.mode, self.job.until_ci):
            stop = self._stop_before_claim()
            if stop is not None:
                return stop
            if st.done < st.planned:
                check_not_injected(self.store, self.config, st.model, st.mode)
            sites = self._claim(executor, st)
            if sites is None:
                return None
            if sites:
                stop = self._run_window(executor, st, sites)
                if stop is not None:
                    return stop
        return None

    def _stop_before_claim(self) -> Stop | None:
        if orphaned(self.job):
            return Stop.ORPHANED
        deadline = self.job.deadline
        if deadline is not None and time.time() + (self.longest or self.chunk * self.timeout_s) > deadline:
            return Stop.DEADLINE
        return None

    def _claim(self, executor: Executor, st: _Stratum) -> list[Site] | None:
        """The next window of the stratum's pending sites; [] after waiting for sites others
        hold (--wait), None when nothing is left for this worker."""
        take = (
            window_size(self.chunk, self.store.pending(st.model, st.mode), self.job.workers)
            if executor.claims_windows(st.mode)
            else self.chunk
        )
        if self.config.sampling.stratified:
            sites = self._claim_strata(st, take)
        else:
            sites = self.store.claim(st.model, st.mode, take, self.owner, self.job.lease_s)
        if sites:
            return sites
        if self.job.wait and self.store.unfinished(st.model, st.mode)[1]:
            time.sleep(wait_poll_s(self.job.lease_s))  # others hold sites: stay until they are done
            return []
        return None

    def _claim_strata(self, st: _Stratum, limit: int) -> list[Site]:
        """The sites the allocation gives next, read from the store's results (so every worker
        and every resume decides alike), at most ``limit`` and the campaign's injections in all."""
        from fi_campaign.allocation import next_claim

        states = sampling_states(self.store, st.model, st.mode)
        take = next_claim(states, policy(self.config), self.chunk, limit, self.config.injections)
        if not take:
            return []
        return self.store.claim_strata(st.model, st.mode, take, self.owner, self.job.lease_s, self.config.injections)

    def _run_window(self, executor: Executor, st: _Stratum, sites: list[Site]) -> Stop | None:
        """Run a claimed window a part at a time (sorted by layer where that makes passes cheaper).
        Results are recorded together once RECORD_EVERY_S has passed, and whatever ran when the
        window ends or the worker stops: a small network's pass is quicker than a transaction."""
        t0 = time.monotonic()
        self.beat.chunk(True)
        parts = (
            layer_chunks(sites, self.chunk)
            if executor.groups_layers
            else [sites[i : i + self.chunk] for i in range(0, len(sites), self.chunk)]
        )
        ran: list[Result] = []
        since = t0
        try:
            for part in parts:
                if orphaned(self.job):  # the rest of the window goes back when this process is gone
                    return Stop.ORPHANED
                ran += executor.run(part, st.mode)
                if time.monotonic() - since >= RECORD_EVERY_S:
                    done, ran = ran, []
                    self._record(st, done)
                    since = time.monotonic()
        finally:
            if ran:
                self._record(st, ran)
        self.beat.chunk(False)
        self.longest = max(self.longest, time.monotonic() - t0)
        return None

    def _record(self, st: _Stratum, ran: list[Result]) -> None:
        """Store the results with their sites' status (only those this worker still holds) and log them."""
        with self.log.held(), self.lock:
            results = self.store.record(ran, self.owner)
            self.log.write(injection_log.result_lines(results, st.model, st.mode, self.owner))
        for r in results:
            st.counts[r.outcome] = st.counts.get(r.outcome, 0) + 1
            self.totals[r.outcome] = self.totals.get(r.outcome, 0) + 1
        st.done += len(results)
        self._report(st.progress())


def _stop_once(signum: int, frame: object) -> None:
    """The first SIGINT or SIGTERM stops a worker; later ones are ignored. A Ctrl-C reaches the
    worker and then its runner's terminate does: raised inside the first one's clean-up, the
    second would cut giving the sites back short."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt


def _stop(procs: Sequence[BaseProcess]) -> None:
    """Stop the workers and wait while they give their sites back; one that has not within
    ``STOP_S`` is killed (a later run takes its sites back, its owner being dead)."""
    for p in procs:
        p.terminate()
    until = time.monotonic() + STOP_S
    for p in procs:
        p.join(max(0.0, until - time.monotonic()))
        if p.is_alive():
            p.kill()
            p.join()


class _Lines(io.TextIOBase):
    """A spawned worker's stdout and stderr (a warning, a user's build function printing): whole
    lines go to the runner, which prints them where a live display puts them above its bars.
    Written straight to the terminal, a line ran on from the last bar's."""

    def __init__(self, messages: SimpleQueue[tuple[str, str]]) -> None:
        self.messages, self.part = messages, ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        *lines, self.part = (self.part + text).split("\n")
        for line in lines:
            self.messages.put(("output", line))
        return len(text)


def _relay(messages: SimpleQueue[tuple[str, str]], kept: list[tuple[str, str]]) -> None:
    """The workers' output lines printed now (on ``sys.stderr``: a live display's proxy while one
    is shown); their notes and errors kept for the end."""
    while not messages.empty():
        kind, text = messages.get()
        if kind == "output":
            print(text, file=sys.stderr)
        else:
            kept.append((kind, text))


def _worker_main(job: Job, messages: SimpleQueue[tuple[str, str]]) -> None:
    """A spawned worker; its notes and its error travel back to the runner, which reports each once."""
    from fi_campaign.errors import UserError
    from fi_campaign.heap import keep_freed_memory

    keep_freed_memory()
    sys.stdout = sys.stderr = _Lines(messages)
    signal.signal(signal.SIGTERM, _stop_once)  # a terminated worker gives its sites back
    signal.signal(signal.SIGINT, _stop_once)
    try:
        work(job, on_note=lambda text: messages.put(("note", text)))
    except KeyboardInterrupt:
        pass
    except Exception as e:  # noqa: BLE001 - every error must reach the runner
        messages.put(("user" if isinstance(e, UserError) else "error", str(e) or type(e).__name__))


def run(
    store: Store,
    model: str | None = None,
    mode: str | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    chunk: int | None = None,
    isolation: str | None = None,
    keep_runs: bool = False,
    workers: int = 1,
    until_ci: float | None = None,
    devices: list[str] | None = None,
    on_note: Note | None = None,
    base: Job | None = None,
) -> dict[str, int]:
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
    template = replace(
        base or Job(""),
        db=store.target.address,
        model=model,
        mode=mode,
        isolation=isolation,
        keep_runs=keep_runs,
        until_ci=until_ci,
        chunk=chunk,
        workers=workers,
    )
    if workers == 1:
        return work(replace(template, device=devices[0] if devices else None), store, on_progress, on_note)
    _preflight(store, model)
    threads = (base.threads if base else None) or max(1, capacity.cores() // workers)
    before = _outcomes(store)
    ctx = mp.get_context("spawn")
    messages: SimpleQueue[tuple[str, str]] = ctx.SimpleQueue()
    procs = [
        ctx.Process(
            target=_worker_main,
            daemon=True,
            args=(
                replace(
                    template,
                    device=devices[i % len(devices)] if devices else None,
                    threads=threads,
                    index=i,
                    parent=os.getpid(),
                ),
                messages,
            ),
        )
        for i in range(workers)
    ]
    start = {(a, b): done for a, b, done, _ in store.progress()}
    kept: list[tuple[str, str]] = []
    for p in procs:
        p.start()
    try:
        while any(p.is_alive() for p in procs):
            if on_progress:
                _poll(store, model, mode, on_progress, start, config)
            for p in procs:
                p.join(timeout=PROGRESS_POLL_S)
            _relay(messages, kept)
    except BaseException:
        _stop(procs)
        raise
    if on_progress:
        _poll(store, model, mode, on_progress, start, config)
    _relay(messages, kept)
    notes = [m for m in kept if m[0] == "note"]
    failures = [m for m in kept if m[0] != "note"]
    for text in dict.fromkeys(text for _, text in notes):  # the same note from several workers: once
        if on_note:
            on_note(text)
    if failures:
        kind, text = failures[0]
        if kind == "user":
            raise UserError(text)
        raise RuntimeError(f"a worker failed: {text}")
    lost = [(i, p.exitcode) for i, p in enumerate(procs) if p.exitcode]
    if lost:  # died without a word (at start-up, or killed): what it printed is above
        i, code = lost[0]
        how = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
        raise RuntimeError(
            f"worker {i} {how} before it finished; every stored result stays, and 'run' again resumes the rest."
        )
    after = _outcomes(store)
    return {o: after.get(o, 0) - before.get(o, 0) for o in after if after.get(o, 0) > before.get(o, 0)}


def _fit(
    record: CampaignRecord,
    config: Config,
    model: str | None,
    workers: int,
    devices: list[str] | None,
    on_note: Note | None,
) -> int:
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
    from fi_campaign.models import zoo
    from fi_campaign.models.sources import check_files
    from fi_campaign.workload.images import check_checkpoint

    record = store.campaign()
    if record.workload.kind == "program":
        from fi_campaign.config import Config
        from fi_campaign.workload.own import check

        spec = Config.from_json(record.config).workload
        assert spec is not None, "a program's campaign stores its workload"
        check(spec)
        return
    for name, info in record.models.items():
        if model not in (None, name):
            continue
        if info.source is None:
            check_checkpoint(info.checkpoint, zoo.read(info.checkpoint)[0].sha256, info.sha256)
        else:
            check_files(info.source, f"models.{name}")


def _outcomes(store: Store) -> dict[str, int]:
    out: dict[str, int] = {}
    for stratum in store.outcome_counts().values():
        for outcome, k in stratum.items():
            out[outcome] = out.get(outcome, 0) + k
    return out


def _poll(
    store: Store,
    model: str | None,
    mode: str | None,
    on_progress: Callable[[Progress], None],
    start: dict[tuple[str, str], int],
    config: Config | None = None,
) -> None:
    """Progress of every selected stratum, read from the store. A worker claims sites only once
    its executor is open, so until some site is held or recorded the workers are preparing."""
    counts, running = store.outcome_counts(), store.running_counts()
    config = config or Config.from_json(store.campaign().config)
    progress = [
        (a, b, done, config.budget(planned))
        for a, b, done, planned in store.progress()
        if model in (None, a) and mode in (None, b)
    ]
    active = {(a, b) for a, b, done, _ in progress if running.get((a, b)) or done > start.get((a, b), 0)}
    for a, b, done, planned in progress:
        phase = INJECTING if (a, b) in active or done == planned else WAITING if active else PREPARING
        on_progress(Progress(model=a, mode=b, done=done, planned=planned, outcomes=counts.get((a, b), {}), phase=phase))
