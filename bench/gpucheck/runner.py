"""Runs the GPU check's steps one after another, each in its own process (``python -m
bench.gpucheck.steps NAME``) with a time limit, and writes the summary.

A step that fails, crashes or overstays its limit is recorded (its status, its duration and one
line naming what failed and what it printed) and the next step runs: one lent session yields a
diagnosis even when the tool does not load. Steps pass what later steps need (the install's
PYTHONPATH, the tool's folder, the measured cost of a run) through ``state.json`` in the work
folder. Standard library only: this runs before fi-campaign is installed.

Into the output folder (at most 8 files come back from the GPU machine; 3 are written):
``gpu-check.json`` (the summary), ``gpu-check.txt`` (the same as a table) and
``gpu-check-logs.tar.gz`` (each step's log and the artefacts worth keeping: stores, profiles,
the tool's build log, benchmark figures).
"""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import sys
import tarfile
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from bench.gpucheck.plan import BUDGET_S, STEPS, SUMMARY_S, Spec, limit_for

REPO = Path(__file__).resolve().parents[2]
TAG = "FI_GPU_CHECK_TAG"
PER_STRATUM = "FI_GPU_CHECK_PER_STRATUM"
BUNDLE_LIMIT = 15 * 2**20  # a file that comes back from the GPU machine is at most 16 MiB
SKIP_FOLDERS = {"site", "wheel", "image-stand-ins", "CMakeFiles"}  # installed packages and build trees
KEEP = (
    "*.log",
    "*.json",
    "*.yaml",
    "*.db",
    "nvbitfi-igprofile.txt",
    "build.log",
    "stdout.txt",
    "stderr.txt",
    "nvbitfi-injection-log-temp.txt",
    "nvbitfi-injection-info.txt",
    "timing.json",
)


@dataclass
class Result:
    name: str
    does: str
    status: str  # ok | failed | skipped
    duration_s: float = 0.0
    limit_s: float | None = None
    figures: dict = field(default_factory=dict)
    error: str | None = None  # failed: one line naming what failed and what it printed
    reason: str | None = None  # skipped: why
    log: str | None = None  # the step's log, inside the bundle


@dataclass(frozen=True)
class Options:
    work: Path
    out: Path
    dry: bool = False
    full: bool = False  # dry run: also the minutes-long steps (the NVBit build)
    budget_s: float = BUDGET_S
    only: frozenset[str] | None = None  # run just these steps (the others: skipped)
    python: str = sys.executable
    steps: tuple[Spec, ...] = STEPS
    per_stratum: int | None = None  # the SASS campaign's injections per model x mode (default: what fits)
    module: str = "bench.gpucheck.steps"  # what runs a step: python -m MODULE NAME --work W --limit S [--dry]


def will_run(o: Options) -> set[str]:
    return {s.name for s in o.steps if skip_reason(s, o) is None}


def too_long(spec: Spec, o: Options) -> bool:
    """A step whose least time does not fit the whole budget: no time is kept for it."""
    return spec.floor_s + SUMMARY_S > o.budget_s


def skip_reason(spec: Spec, o: Options) -> str | None:
    if o.dry and spec.gpu:
        return "needs the GPU machine (dry run)"
    if o.only is not None and spec.name not in o.only:
        return "not selected (--only)"
    if o.dry and spec.dry_only_full and not o.full:
        return "dry run without --full (make gpu-check DRY=1 FULL=1 builds the whole tool against .nvbit)"
    return None


def read_state(work: Path) -> dict:
    try:
        return json.loads((work / "state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def step_env(o: Options, state: dict, tag: str) -> dict[str, str]:
    """The environment a step runs in: the install's PYTHONPATH and PATH once it has made them,
    and the tag by which the processes it leaves behind are found."""
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env[TAG] = tag
    paths = state.get("pythonpath") or []
    if paths:
        env["PYTHONPATH"] = os.pathsep.join([*paths, *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])])
    extra = [*(state.get("path") or []), *(state.get("tool_path") or [])]
    if extra:
        env["PATH"] = os.pathsep.join([*extra, env.get("PATH", "")])
    env.update(state.get("env") or {})
    if o.per_stratum is not None:
        env[PER_STRATUM] = str(o.per_stratum)
    return env


def last_lines(path: Path, n: int = 1) -> str:
    try:
        lines = [x.strip() for x in path.read_text(encoding="utf-8", errors="replace").splitlines() if x.strip()]
    except OSError:
        return "(no output)"
    return " | ".join(lines[-n:])[:400] if lines else "(no output)"


def end_tagged(tag: str) -> int:
    """Ends what a step left running in sessions of their own (workload processes start that
    way, outside the step's process group): every process whose environment carries the
    step's tag descends from the step. Returns how many were ended."""
    needle = f"{TAG}={tag}".encode()
    ended = 0
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else ():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            os.kill(int(entry.name), signal.SIGKILL)
            ended += 1
        except (OSError, ProcessLookupError):
            continue
    return ended


def end_group(p: subprocess.Popen) -> None:
    """SIGTERM the step's whole process group, SIGKILL what is left after 5 s."""
    for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 0.0)):
        try:
            os.killpg(p.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and p.poll() is None:
            time.sleep(0.1)
    p.wait()


def run_step(spec: Spec, limit_s: float, o: Options) -> Result:
    """The step in its own process group, ended at ``limit_s``; its result file, or why none."""
    logs = o.work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"{spec.name}.log"
    result_file = o.work / "results" / f"{spec.name}.json"
    result_file.unlink(missing_ok=True)
    cmd = [o.python, "-m", o.module, spec.name, "--work", str(o.work), "--limit", f"{limit_s:.1f}"]
    tag = f"{os.getpid()}-{time.time_ns()}-{spec.name}"
    cmd += ["--dry"] if o.dry else []
    t0 = time.monotonic()
    with log.open("w", encoding="utf-8") as out:
        out.write(f"$ {' '.join(cmd)}   (limit {limit_s:.0f} s)\n")
        out.flush()
        p = subprocess.Popen(
            cmd,
            cwd=REPO,
            env=step_env(o, read_state(o.work), tag),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            rc = p.wait(timeout=limit_s)
            timed_out = False
        except subprocess.TimeoutExpired:
            end_group(p)
            rc, timed_out = p.returncode, True
        else:
            end_group(p)  # whatever the step left running
        printed = last_lines(log)
        left_behind = end_tagged(tag)
        if left_behind:
            out.write(f"[gpu-check] ended {left_behind} process(es) the step left running\n")
    took = time.monotonic() - t0
    base = Result(spec.name, spec.does, "failed", round(took, 1), round(limit_s, 1), log=f"logs/{log.name}")
    try:
        got = json.loads(result_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        got = None
    if timed_out:
        base.error = f"{spec.name}: timed out after {limit_s:.0f} s; last output: {printed}"
        if got:
            base.figures = got.get("figures", {})
        return base
    if got is None:
        base.error = f"{spec.name}: exited with code {rc} and no result; last output: {printed}"
        return base
    base.status = got["status"]
    base.figures = got.get("figures", {})
    base.error = got.get("error")
    base.reason = got.get("reason")
    return base


def run(o: Options) -> dict:
    """Every step in order within ``o.budget_s``; returns the summary (also written to ``o.out``)."""
    o.work.mkdir(parents=True, exist_ok=True)
    o.out.mkdir(parents=True, exist_ok=True)
    started = datetime.now(timezone.utc)
    t0 = time.monotonic()
    running = will_run(o)
    results: list[Result] = []
    running -= {s.name for s in o.steps if too_long(s, o)}
    for i, spec in enumerate(o.steps):
        why = skip_reason(spec, o)
        if why is None and too_long(spec, o):
            why = f"no time left: the check's budget of {o.budget_s:.0f} s is less than this step needs"
        if why is None:
            limit = limit_for(o.steps, i, o.budget_s - (time.monotonic() - t0), running)
            if limit < spec.floor_s:
                why = f"no time left: {max(limit, 0):.0f} s for a step that needs at least {spec.floor_s:.0f} s"
        if why is not None:
            running.discard(spec.name)
            results.append(Result(spec.name, spec.does, "skipped", reason=why))
            print(f"[gpu-check] {spec.name}: skipped ({why})", flush=True)
            continue
        print(f"[gpu-check] {spec.name}: {spec.does} (limit {limit:.0f} s)", flush=True)
        r = run_step(spec, limit, o)
        running.discard(spec.name)
        results.append(r)
        print(
            f"[gpu-check] {spec.name}: {r.status} in {r.duration_s:.1f} s"
            + (f": {r.error or r.reason}" if r.status != "ok" else ""),
            flush=True,
        )
    summary = {
        "check": "fi-campaign gpu-check",
        "dry_run": o.dry,
        "full": o.full,
        "started": started.isoformat(timespec="seconds"),
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "wall_s": round(time.monotonic() - t0, 1),
        "budget_s": o.budget_s,
        "host": {
            "machine": platform.machine(),
            "node": platform.node(),
            "python": platform.python_version(),
            "executable": o.python,
        },
        "device": device_of(results),
        "counts": {k: sum(r.status == k for r in results) for k in ("ok", "failed", "skipped")},
        "steps": [asdict(r) for r in results],
    }
    write_outputs(summary, o)
    return summary


def device_of(results: list[Result]) -> dict:
    """The GPU, driver, toolkit, PyTorch and NVBit release the figures were taken with."""
    env = next((r.figures for r in results if r.name == "environment"), {})
    gpu = (env.get("gpus") or [{}])[0]
    return {
        "gpu": gpu.get("name"),
        "driver": gpu.get("driver"),
        "compute_cap": gpu.get("compute_cap"),
        "nvcc": env.get("nvcc"),
        "torch": (env.get("torch") or {}).get("version"),
        "python": (env.get("python") or {}).get("version"),
        "nvbit": (env.get("nvbit") or {}).get("version"),
        "nvbit_source": (env.get("nvbit") or {}).get("source"),
    }


def table(summary: dict) -> str:
    rows = [
        f"fi-campaign gpu-check{' (dry run)' if summary['dry_run'] else ''}: {summary['counts']['ok']} ok, "
        f"{summary['counts']['failed']} failed, {summary['counts']['skipped']} skipped in {summary['wall_s']:.0f} s "
        f"(started {summary['started']})",
        "  device: " + ", ".join(f"{k} {v}" for k, v in summary.get("device", {}).items() if v),
    ]
    for s in summary["steps"]:
        note = s["error"] or s["reason"] or ""
        rows.append(f"  {s['name']:<16} {s['status']:<8} {s['duration_s']:7.1f} s  {note}")
    return "\n".join(rows) + "\n"


def write_outputs(summary: dict, o: Options) -> None:
    (o.out / "gpu-check.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    (o.out / "gpu-check.txt").write_text(table(summary), encoding="utf-8")
    bundle(o.work, o.out / "gpu-check-logs.tar.gz")


def bundle(work: Path, target: Path) -> None:
    """The logs and the small artefacts of the work folder, largest left out first when the
    bundle would pass what one file brought back from the GPU machine may hold."""
    files = [
        p
        for p in work.rglob("*")
        if p.is_file()
        and not p.is_symlink()
        and any(p.match(k) for k in KEEP)
        and not set(p.relative_to(work).parts[:-1]) & SKIP_FOLDERS
    ]
    files.sort(key=lambda p: p.stat().st_size)
    chosen, total = [], 0
    for p in files:  # smallest first, so a few big files cannot crowd out the logs
        size = p.stat().st_size
        if total + size > BUNDLE_LIMIT * 3:  # compressed, text shrinks well; checked again below
            break
        chosen.append(p)
        total += size
    while True:
        with tarfile.open(target, "w:gz") as tar:
            for p in chosen:
                tar.add(p, arcname=str(p.relative_to(work)))
        if target.stat().st_size <= BUNDLE_LIMIT or not chosen:
            return
        chosen = chosen[: len(chosen) * 3 // 4]
