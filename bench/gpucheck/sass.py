"""The GPU check's steps on the GPU: the tool on a C executable, DUMMY campaigns through the
PyTorch workload (and through the C host that embeds Python, when python3 shows nothing), the
profiler's counts against the injector's launch by launch, a real SASS-level campaign and
its framework-level twin.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from bench.gpucheck.context import (
    C_LAUNCHES,
    DUMMY_INJECTIONS,
    FI,
    FORMATS_MIN_S,
    MIN_PER_STRATUM,
    Arg,
    Ctx,
    Failed,
    Skipped,
    keeping,
    last_line,
    workers,
)


def tool(ctx: Ctx):
    from bench.gpucheck.toolrun import Tool

    home = ctx.state.get("tool_home")
    if not home or not (Path(home) / "injector" / "injector-dummy.so").is_file():
        raise Failed("no tool build to use (the tool_build step failed and no prebuilt build travelled)")
    return Tool(Path(home))


def doctor(ctx: Ctx) -> dict:
    t = tool(ctx)
    done = ctx.sh(
        [*FI, "doctor", "--home", t.home, "--no-dry-run"], "fi-campaign doctor", timeout=60, ok=lambda rc: rc in (0, 2)
    )
    lines = [x.rstrip() for x in done.stdout.splitlines() if x.strip()]
    f = {"lines": lines, "exit": done.returncode}
    if done.returncode != 0:
        raise Failed(
            f"fi-campaign doctor: {next((x.strip() for x in lines if 'MISS' in x), last_line(done.stderr))}", f
        )
    return f


def c_program(ctx: Ctx) -> dict:
    """The tool on saxpy (a C executable): a profile, 20 DUMMY injections that must leave the
    output bit-identical, and real faults whose per-lane records must be what the Python side
    computes from the same seeds."""
    import numpy as np

    from bench.gpucheck.toolrun import inject, profile_of, run_under, side_by_side
    from fi_campaign.models import powerlaw, sampler
    from fi_campaign.nvbitfi_tools import sites
    from fi_campaign.nvbitfi_tools.injlog import LogState
    from fi_campaign.nvbitfi_tools.profile import ProfileError

    t = tool(ctx)
    exe = ctx.state.get("saxpy")
    if not exe:
        raise Failed("no saxpy binary (the programs step failed)")
    cmd = [exe, "out.bin"]
    base = ctx.dir()
    f: dict = {}
    native = run_under(None, cmd, base / "native", 30)
    if native.ended is None or native.ended.due_reason():
        raise Failed(
            f"saxpy without the tool: {native.ended.due_reason() if native.ended else 'stopped'}: "
            f"{last_line(native.ended.stderr_tail if native.ended else '')}"
        )
    golden = (base / "native" / "out.bin").read_bytes()
    f["native_s"] = round(native.ended.runtime_s, 2)
    prof = run_under(t.profiler, cmd, base / "profile", 60)
    f["profile_s"] = round(prof.ended.runtime_s, 2) if prof.ended else None
    try:
        profile = profile_of(prof)
    except ProfileError as e:
        raise Failed(f"profiling saxpy: {e}", f) from None
    f["profile"] = {
        "launches": len(profile.launches),
        "expected_launches": C_LAUNCHES,
        "kernels": profile.kernels(),
        "fp32": profile.total("fp32"),
        "unknown_opcodes": sum(x.opcodes.get("UNKNOWN", 0) for x in profile.launches),
        "groups": {g: sum(x.groups[g] for x in profile.launches) for g in profile.launches[0].groups},
    }
    if (base / "profile" / "out.bin").read_bytes() != golden:
        raise Failed("saxpy's output under the profiler differs from its native output", f)
    rng = np.random.default_rng(1)
    drawn = sites.draw_sites(profile, "fp32", DUMMY_INJECTIONS, rng)

    def dummy(i: int):
        run, log = inject(t.dummy, cmd, base / "dummy" / str(i), "single_bit", drawn[i], 60)
        same = (run.d / "out.bin").exists() and (run.d / "out.bin").read_bytes() == golden
        counts_equal = log.counts == profile.launches[drawn[i].kcount].groups
        return {
            "state": log.state.value,
            "same_output": same,
            "dummy": log.dummy,
            "value_changed": log.value_changed,
            "counts_equal_profile": counts_equal,
            "s": run.ended.runtime_s if run.ended else None,
            "reason": log.reason,
        }

    rows = side_by_side(dummy, range(len(drawn)), workers())
    masked = sum(
        r["state"] == LogState.INJECTED.value and r["same_output"] and r["value_changed"] is False for r in rows
    )
    f["dummy"] = {
        "injections": len(rows),
        "masked": masked,
        "counts_equal_profile": sum(r["counts_equal_profile"] for r in rows),
        "mean_run_s": round(float(np.mean([r["s"] for r in rows if r["s"]] or [0])), 3),
        "not_masked": [r for r in rows if not (r["state"] == "injected" and r["same_output"])][:3],
    }
    law = powerlaw.entry("dsn2021-fu", "FFMA", "common")
    real = (
        [("single_bit", s) for s in drawn[:4]]
        + [("warp_random", s) for s in drawn[4:8]]
        + [("warp_xor", s) for s in drawn[8:10]]
    )
    seeds = rng.integers(0, 2**62, len(real))

    def fault(i: int):
        mode, site = real[i]
        run, log = inject(
            t.injector,
            cmd,
            base / "real" / str(i),
            mode,
            site,
            60,
            value_seed=int(seeds[i]),
            law=(law.x_min, law.alpha) if mode == "warp_random" else None,
        )
        right = log.state is LogState.INJECTED and bool(log.lanes)
        for lane in log.lanes:
            if mode == "single_bit":
                right &= lane.before ^ lane.after == 1 << sites.bit_position(site.bit_id_seed)
            elif mode == "warp_xor":
                right &= lane.before ^ lane.after == sites.random_mask(site.bit_id_seed)
            else:
                x = np.full(32, np.uint32(lane.before).view(np.float32))
                want = sampler.warp_values(x, int(seeds[i]), law.x_min, law.alpha).view(np.uint32)[lane.lane]
                right &= int(want) == lane.after
        changed = (run.d / "out.bin").exists() and (run.d / "out.bin").read_bytes() != golden
        return {
            "mode": mode,
            "state": log.state.value,
            "lanes": len(log.lanes),
            "records_right": right,
            "output_changed": changed,
            "opcode": log.opcode,
            "reason": log.reason,
        }

    rows = side_by_side(fault, range(len(real)), workers())
    f["real"] = {
        "injections": len(rows),
        "injected": sum(r["state"] == "injected" for r in rows),
        "records_right": sum(r["records_right"] for r in rows),
        "output_changed": sum(r["output_changed"] for r in rows),
        "runs": rows,
    }
    if f["profile"]["launches"] != C_LAUNCHES:
        raise Failed(f"the profile of saxpy has {f['profile']['launches']} launches, not {C_LAUNCHES}", f)
    if masked != len(drawn):
        raise Failed(f"saxpy DUMMY campaign: {masked}/{len(drawn)} masked (expected all)", f)
    if f["real"]["records_right"] != f["real"]["injected"] or f["real"]["injected"] == 0:
        raise Failed(
            f"saxpy real faults: {f['real']['records_right']} of {f['real']['injected']} injected runs have "
            "the per-lane records the Python side computes",
            f,
        )
    return f


def dummy_campaign(ctx: Ctx, env: dict[str, str]) -> dict:
    """plan + run of the DUMMY config (20 injections, all must be masked) in this step's folder."""
    from fi_campaign.nvbitfi_tools.injlog import LOG_FILE
    from fi_campaign.store import Store, runs_dir

    db = ctx.dir() / "dummy.db"
    f: dict = {}
    t = time.monotonic()
    try:
        ctx.sh(
            [*FI, "--db", db, "plan", ctx.state["configs"]["dummy"]],
            "fi-campaign plan (profiling under the tool)",
            env=env,
            timeout=max(30, ctx.left() * 0.6),
        )
    except Failed as e:
        prof = runs_dir(db) / "baseline" / "profile"
        kept = runs_dir(db) / "baseline" / "nvbitfi-igprofile.txt"  # where plan moves the profiler's log
        log = prof / LOG_FILE if (prof / LOG_FILE).exists() else kept
        size = log.stat().st_size if log.exists() else None
        f["profile_log_bytes"] = size
        f["profile_stderr"] = (
            last_line((prof / "stderr.txt").read_text(errors="replace")) if (prof / "stderr.txt").exists() else None
        )
        if size == 0:
            ctx.save(python_instrumented=False)
            raise Failed(
                f"{e}; the tool loaded (its log was opened) but no kernel-launch callback arrived "
                "inside the workload process",
                f,
            ) from None
        if size is None:
            ctx.save(python_instrumented=False)
            raise Failed(f"{e}; the tool never loaded into the workload process (no log)", f) from None
        raise
    f["plan_s"] = round(time.monotonic() - t, 1)
    store = Store.open(db)
    recorded = store.campaign().models["baseline"].profile
    if recorded is None:
        raise Failed("the plan stored no NVBitFI profile for the baseline model", f)
    profile_path = Path(recorded.path)
    from fi_campaign.nvbitfi_tools.profile import read_profile

    profile = read_profile(profile_path, "fi-campaign")
    f["profile"] = {
        "launches": len(profile.launches),
        "kernels": len(profile.kernels()),
        "fp32": profile.total("fp32"),
        "unknown_opcodes": sum(x.opcodes.get("UNKNOWN", 0) for x in profile.launches),
    }
    # a profile came out, so the tool sees this workload's launches: the later steps can use it
    ctx.save(
        python_instrumented=True,
        dummy_db=str(db),
        profile=str(profile_path),
        workload_root=str(runs_dir(db) / "baseline"),
        profile_s=f["plan_s"],
        launcher_env=env_delta(env),
    )
    t = time.monotonic()
    with keeping(f):
        ctx.sh(
            [*FI, "--db", db, "run", "--per-gpu", str(workers()), "--keep-runs"],
            "fi-campaign run (DUMMY injector)",
            env=env,
            timeout=ctx.left() - 5,
        )
    f["run_s"] = round(time.monotonic() - t, 1)
    rows = list(store.export_rows())
    outcomes: dict[str, int] = {}
    for r in rows:
        outcomes[r["outcome"]] = outcomes.get(r["outcome"], 0) + 1
    timing = json.loads((runs_dir(db) / "baseline" / "timing.json").read_text())
    f.update(
        outcomes=outcomes,
        results=len(rows),
        instrumented_run_s=round(timing["runtime_s"], 2),
        mean_injection_s=round(sum(r["runtime_s"] or 0 for r in rows) / max(1, len(rows)), 2),
        injection_states=sorted({i.state for i in store.injections().values()}),
        count_checks=[c.__dict__ for c in store.count_checks()],
    )
    ctx.save(inject_run_s=f["mean_injection_s"] or timing["runtime_s"])
    if outcomes.get("masked", 0) != DUMMY_INJECTIONS:
        raise Failed(
            f"DUMMY campaign: {outcomes.get('masked', 0)}/{DUMMY_INJECTIONS} masked (expected all): {outcomes}", f
        )
    return f


def env_delta(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k in ("FI_WORKLOAD_PYTHON", "FI_PYHOST_PYTHON")}


def torch_dummy(ctx: Ctx) -> dict:
    tool(ctx)
    return dummy_campaign(ctx, dict(os.environ))


def workaround(ctx: Ctx) -> dict:
    if ctx.state.get("python_instrumented") is not False:
        raise Skipped(
            "not needed: the tool instrumented the python3 workload"
            if ctx.state.get("python_instrumented")
            else "the PyTorch DUMMY campaign did not get as far"
        )
    host = ctx.state.get("pyhost")
    if not host:
        raise Failed("the C host (pyhost) was not built (see the programs step), so the workaround cannot run")
    env = dict(os.environ, FI_WORKLOAD_PYTHON=host, FI_PYHOST_PYTHON=sys.executable)
    f = dummy_campaign(ctx, env)
    f["launcher"] = host
    return f


def counts(ctx: Ctx) -> dict:
    """One DUMMY run per launch of the ResNet-20 profile, each at the launch's first fp32
    instruction: the injector's counts of all ten groups over that launch must equal the profile's."""
    from bench.gpucheck.toolrun import inject, side_by_side
    from fi_campaign.nvbitfi_tools.profile import read_profile
    from fi_campaign.nvbitfi_tools.sites import Site
    from fi_campaign.store import Store
    from fi_campaign.workload.program import command

    t = tool(ctx)
    if not ctx.state.get("profile"):
        raise Failed("no ResNet-20 profile (the DUMMY campaign steps failed)")
    profile = read_profile(ctx.state["profile"], "fi-campaign")
    env = dict(os.environ, **ctx.state.get("launcher_env", {}))
    cmd = command(Path(ctx.state["workload_root"]))
    cmd[0] = env.get("FI_WORKLOAD_PYTHON", cmd[0])
    per_run = float(ctx.state.get("inject_run_s") or 10.0)
    w = workers()
    fits = int(max(1, (ctx.left() - 10) / (per_run * 1.5)) * w)
    chosen = profile.launches[:fits]
    base = ctx.dir()

    def check(launch):
        site = Site(launch.kernel, launch.index, 1, 0, 0.5, 0.5)
        run, log = inject(t.dummy, cmd, base / str(launch.index), "single_bit", site, max(30.0, per_run * 5), env=env)
        differ = {g: (n, log.counts.get(g)) for g, n in launch.groups.items() if log.counts.get(g) != n}
        return {
            "launch": launch.index,
            "kernel": launch.kernel[:120],
            "state": log.state.value,
            "matches": log.index == launch.index and log.kernel_name == launch.kernel,
            "differ": differ,
        }

    rows = side_by_side(check, chosen, w)
    equal = [r for r in rows if r["matches"] and not r["differ"]]
    f: dict = {
        "launches": len(profile.launches),
        "checked": len(rows),
        "equal": len(equal),
        "complete": len(rows) == len(profile.launches),
        "differ": [r for r in rows if r not in equal][:8],
        "store_count_checks": [c.__dict__ for c in Store.open(ctx.state["dummy_db"]).count_checks()],
    }
    if len(equal) != len(rows):
        first = f["differ"][0]
        raise Failed(
            f"{len(rows) - len(equal)} of {len(rows)} launches differ; first: launch {first['launch']} "
            f"({first['kernel'][:60]}): {first['differ'] or 'another kernel ran there'}",
            f,
        )
    return f


def stratum_figures(db: Path) -> dict:
    from fi_campaign.classify import COUNTED, CRITICAL_SDC
    from fi_campaign.stats import proportion
    from fi_campaign.store import Store

    store = Store.open(db)
    out = {}
    counts = store.outcome_counts()
    for model, mode, done, planned_n in store.progress():
        c = counts.get((model, mode), {})
        n = sum(c.get(k, 0) for k in COUNTED)
        r = proportion(c.get(CRITICAL_SDC, 0), n) if n else None
        out[f"{model} {mode}"] = {
            "planned": planned_n,
            "done": done,
            "outcomes": c,
            "critical_sdc": None if r is None else [round(r.rate, 4), round(r.low, 4), round(r.high, 4)],
        }
    return out


def run_until(
    ctx: Ctx, cmd: list, what: str, deadline_s: float, env: dict[str, str] | None = None, name: str = "run"
) -> tuple[float, bool]:
    """``cmd`` until it ends or ``deadline_s`` passes; then SIGINT (a run stops between
    results, keeping them), SIGKILL 20 s later. Returns (seconds, stopped early)."""
    print(f"$ {' '.join(map(str, cmd))}", flush=True)
    out = ctx.dir() / f"{name}.log"
    t = time.monotonic()
    with out.open("w") as sink:
        p = subprocess.Popen(
            [str(c) for c in cmd], env=env, stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT
        )
        try:
            p.wait(timeout=max(1.0, deadline_s))
            stopped = False
        except subprocess.TimeoutExpired:
            p.send_signal(signal.SIGINT)
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            stopped = True
    text = out.read_text(errors="replace")
    print(text[-20000:], flush=True)
    if p.returncode not in (0, None) and not stopped:
        raise Failed(f"{what}: exit code {p.returncode}: {last_line(text)}")
    return time.monotonic() - t, stopped


def sass_campaign(ctx: Ctx) -> dict:
    tool(ctx)
    if not ctx.state.get("profile"):
        raise Failed("no ResNet-20 baseline profile (the DUMMY campaign steps failed)")
    env = dict(os.environ, **ctx.state.get("launcher_env", {}))
    per_run = float(ctx.state.get("inject_run_s") or 10.0)
    w = workers()
    overhead = (
        float(ctx.state.get("profile_s") or 60.0) + 6 * per_run + 20
    )  # hardened's profile, golden and timing runs
    n = int((ctx.left() - overhead) * w / (4 * per_run * 1.25))
    n = max(MIN_PER_STRATUM, min(n, 400))
    if os.environ.get("FI_GPU_CHECK_PER_STRATUM"):  # gpu_check.py --per-stratum
        n = int(os.environ["FI_GPU_CHECK_PER_STRATUM"])
    db = ctx.dir() / "sass.db"
    f: dict = {"per_stratum": n, "workers": w, "assumed_run_s": per_run}
    ctx.save(sass_n=n)
    t = time.monotonic()
    with keeping(f):
        ctx.sh(
            [
                *FI,
                "--db",
                db,
                "plan",
                ctx.state["configs"]["sass"],
                "--injections",
                n,
                "--profile",
                f"baseline={ctx.state['profile']}",
            ],
            "fi-campaign plan (profiles the hardened model)",
            env=env,
            timeout=max(30, ctx.left() * 0.4),
        )
    f["plan_s"] = round(time.monotonic() - t, 1)
    t = time.monotonic()
    error = None
    try:
        took, stopped = run_until(
            ctx, [*FI, "--db", db, "run", "--per-gpu", w], "fi-campaign run", ctx.left() - 25, env, name="sass-run"
        )
    except Failed as e:  # e.g. too many not_injected: the results so far still tell
        took, stopped, error = time.monotonic() - t, False, str(e)
    f.update(run_s=round(took, 1), stopped_at_deadline=stopped, strata=stratum_figures(db))
    from fi_campaign.store import Store

    store = Store.open(db)
    rows = list(store.export_rows())
    f["results"] = len(rows)
    f["mean_injection_s"] = round(sum(r["runtime_s"] or 0 for r in rows) / max(1, len(rows)), 2)
    f["injections_per_s"] = round(len(rows) / took, 3) if took else None
    states: dict[str, int] = {}
    for rec in store.injections().values():
        states[rec.state] = states.get(rec.state, 0) + 1
    f["injector_states"] = states
    f["count_checks"] = [c.__dict__ for c in store.count_checks()]
    if error:
        raise Failed(error, f)
    short = [k for k, v in f["strata"].items() if v["done"] < min(n, MIN_PER_STRATUM)]
    if short:
        raise Failed(f"fewer than {min(n, MIN_PER_STRATUM)} results in {', '.join(short)} before the deadline", f)
    return f


def framework(ctx: Ctx) -> dict:
    n = int(ctx.state.get("sass_n") or MIN_PER_STRATUM)
    db = ctx.dir() / "framework.db"
    t = time.monotonic()
    ctx.sh(
        [*FI, "--db", db, "plan", ctx.state["configs"]["framework"], "--injections", n],
        "fi-campaign plan (framework level)",
        timeout=60,
    )
    ctx.sh(
        [*FI, "--db", db, "run", "--workers", "1"], "fi-campaign run (framework level, cuda)", timeout=ctx.left() - 5
    )
    out = {"per_stratum": n, "wall_s": round(time.monotonic() - t, 1), "strata": stratum_figures(db)}
    if ctx.left() > FORMATS_MIN_S:  # weight faults and a bfloat16 network on the GPU, if time is left
        formats = ctx.dir() / "formats.db"
        t = time.monotonic()
        plan: list[Arg] = [*FI, "--db", formats, "plan", ctx.state["configs"]["formats"]]
        ctx.sh(plan, "fi-campaign plan (formats)", timeout=60)
        run: list[Arg] = [*FI, "--db", formats, "run", "--workers", "1"]
        ctx.sh(run, "fi-campaign run (formats, cuda)", timeout=ctx.left() - 5)
        out["formats"] = {"wall_s": round(time.monotonic() - t, 1), "strata": stratum_figures(formats)}
    return out
