"""Process-isolated execution: one workload process per injection, each in its own run directory,
judged against golden runs of the same program; timeouts, crashes and bad outputs are DUEs."""

from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fi_campaign.classify import DUE, MASKED, Outcome, judge_batch, top1
from fi_campaign.config import Config
from fi_campaign.engine.executors import BACKEND, result_of, semantics
from fi_campaign.errors import UserError
from fi_campaign.store import CampaignRecord, Result, Site
from fi_campaign.workload import process

if TYPE_CHECKING:
    from fi_campaign.workload.own import Program

MIN_TIMEOUT_S = 10.0  # no run is judged a hang sooner, however fast the golden runs were


def thread_env(env: dict[str, str], threads: int) -> dict[str, str]:
    return env | {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}


def _logits(path: Path) -> np.ndarray:
    """A run's float32 (inputs, *outputs) output; a run directory is no place to unpickle from."""
    out = np.load(path, allow_pickle=False)
    if out.dtype != np.float32 or out.ndim < 1:
        raise ValueError(f"{path} holds {out.dtype} {out.shape}, not float32 outputs")
    return out


def _cached(meta: Path, cache: Path, key: str, runs: int) -> tuple[np.ndarray, float] | None:
    """The golden outputs and slowest runtime cached in a workload root, if they are valid for
    this workload and enough runs; anything else (absent, stale, damaged) means run them again."""
    try:
        info = json.loads(meta.read_text(encoding="utf-8"))
        slowest = info["slowest_s"]
        if not (
            info.get("key") == key
            and isinstance(info.get("runs"), int)
            and info["runs"] >= runs
            and isinstance(slowest, (int, float))
            and not isinstance(slowest, bool)
            and math.isfinite(slowest)
            and slowest >= 0
        ):
            return None
        return _logits(cache), float(slowest)
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None


class Processes:
    """One ``python -m fi_campaign.workload.program`` process per injection, each in its own run directory.
    The golden outputs come from ``golden_runs`` fault-free runs of the same program, which
    must agree bit for bit; the timeout is max(10 s, timeout_factor x the slowest of them)."""

    GOLDEN_TIMEOUT_S = 600.0
    groups_layers = False  # every injection runs the whole workload program

    def claims_windows(self, mode: str) -> bool:
        return False  # an injection takes seconds: a claim's cost is nothing beside it

    note: str | None = None
    backend = BACKEND
    isolation = "process"

    def __init__(
        self,
        record: CampaignRecord,
        config: Config,
        name: str,
        device: str,
        root: Path,
        keep_runs: bool,
        threads: int | None = None,
        base_env: dict[str, str] | None = None,
    ) -> None:
        from fi_campaign.workload.program import write_root

        info = record.models[name]
        self.record, self.config, self.keep_runs = record, config, keep_runs
        self.dtype = info.dtype
        self.program: Program | None = None
        if config.workload is not None:  # the user's own program (docs/NVBITFI.md, "Your own program")
            from fi_campaign.workload.own import open_program

            self.program = open_program(config.workload, root / name, config.nvbitfi.home)
            self.root = self.program.root
        else:
            self.root = write_root(
                root / name, info, name, record.workload, config.batch_size, device, record.fault_model, config.math
            )
        from fi_campaign.workload.judge import judge_of

        self.judging = judge_of(config)
        self.threads = threads
        # workers share the cores: each workload process gets its share, not all of them
        env = dict(os.environ if base_env is None else base_env)
        self.env = env if threads is None else thread_env(env, threads)
        if self.program is not None:
            self.golden = np.zeros(0, dtype=np.float32)  # the program's golden files are in its root
            slowest = self.program.golden(config.golden_runs, self.env, self.GOLDEN_TIMEOUT_S)
        else:
            self.golden, slowest = self._cached_golden(config.golden_runs)
        self.timeout_s = max(MIN_TIMEOUT_S, config.timeout_factor * slowest)

    def _cached_golden(self, runs: int) -> tuple[np.ndarray, float]:
        """Golden runs once per workload root: the first worker runs them under a file lock,
        the others (and later resumed runs of the same workload) reuse the result."""
        import fcntl
        import hashlib

        key = hashlib.sha256((self.root / "workload.json").read_bytes()).hexdigest()
        cache, meta = self.root / "golden.npy", self.root / "golden.json"
        with open(self.root / ".golden.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            cached = _cached(meta, cache, key, runs)
            if cached is not None:
                return cached
            golden, slowest = self._golden(runs)
            np.save(cache, golden)
            meta.write_text(json.dumps({"key": key, "runs": runs, "slowest_s": slowest}))
            return golden, slowest

    def _golden(self, runs: int) -> tuple[np.ndarray, float]:
        from fi_campaign.workload.program import command

        outputs, slowest = [], 0.0
        for g in range(runs):
            d = self.root / f"golden-{g}"
            ended = process.run(command(self.root), d, self.GOLDEN_TIMEOUT_S, self.env)
            if ended.due_reason():
                raise UserError(f"golden run {g} of the workload failed ({ended.due_reason()}); see {d}/stderr.txt.")
            try:
                outputs.append(_logits(d / "logits.npy"))
            except (OSError, ValueError):
                raise UserError(f"golden run {g} of the workload wrote no valid logits.npy; see {d}.") from None
            slowest = max(slowest, ended.runtime_s)
        for g, out in enumerate(outputs[1:], 1):
            if not np.array_equal(out.view(np.uint32), outputs[0].view(np.uint32)):
                raise UserError(
                    f"golden runs 0 and {g} of the workload disagree (non-deterministic outputs), "
                    "so no injection could be judged; see " + str(self.root) + "."
                )
        return outputs[0], slowest

    def start(self, d: Path, timeout_s: float, env: dict[str, str]) -> process.Ended:
        """One run of the workload in ``d`` without a fault file: the network workload program,
        or the user's own program."""
        if self.program is not None:
            return process.run(self.program.command(d), d, timeout_s, env, self.program.logs)
        from fi_campaign.workload.program import command

        return process.run(command(self.root), d, timeout_s, env)

    def program_env(self, env: dict[str, str], tool: Path) -> dict[str, str]:
        """``env`` with an attached tool, as the user's own program is given it (NVBitFI's
        variables and PRELOAD_FLAG for an app folder)."""
        return env if self.program is None else self.program.env(env, tool)

    def prepare(self, d: Path, site: Site, mode: str) -> list[str]:
        """Write what the run needs into its directory; return its command."""
        from fi_campaign.workload.program import command

        (d / "fault.json").write_text(json.dumps(asdict(site)))
        return command(self.root, d / "fault.json")

    def judge(self, d: Path, site: Site, ended: process.Ended) -> Outcome:
        """A finished run against the golden outputs; a DUE says why. The top-1 classes shown are
        those of the site's image (a framework-level fault reaches no other image); a site
        without one (NVBitFI) shows the image ``classify_batch`` picks."""
        if self.program is not None:
            return self.program.judge(d, ended)
        golden_top1 = None
        if site.image is not None and self.golden.ndim == 2:
            golden_top1 = int(top1(self.golden[site.image]))
        reason = ended.due_reason()
        if reason is None:
            try:
                faulty = _logits(d / "logits.npy")
                if faulty.shape != self.golden.shape:
                    raise ValueError
            except (OSError, ValueError):
                reason = "no valid output file"
        if reason is not None:
            return Outcome.without_outputs(DUE, reason, golden_top1)
        shown = None if site.image is None else np.array([site.image])
        return judge_batch(self.judging, self.golden[None], faulty[None], self.config.tolerance, shown)[0]

    def label(self, mode: str) -> str:
        return semantics(mode, self.record.fault_model, self.dtype)

    def run(self, sites: list[Site], mode: str) -> list[Result]:
        results = []
        for s in sites:
            d = self.root / str(s.id)
            d.mkdir(parents=True, exist_ok=True)
            ended = process.run(self.prepare(d, s, mode), d, self.timeout_s, self.env)
            judged = self.judge(d, s, ended)
            dropped = judged.outcome == MASKED and not self.keep_runs
            if dropped:
                shutil.rmtree(d, ignore_errors=True)
            results.append(
                result_of(
                    s,
                    judged,
                    backend=self.backend,
                    isolation=self.isolation,
                    semantics=self.label(mode),
                    runtime_s=ended.runtime_s,
                    detail=judged.reason or (None if dropped else str(d)),
                )
            )
        return results

    def close(self) -> None:
        pass
