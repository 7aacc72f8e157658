"""The GPU check's own-program step: the example NVBitFI test-app folder
(nvbitfi_tools/examples/vectoradd, docs/NVBITFI.md "Your own program") through fi-campaign with
its own NVBit tool: plan (profiled through run.sh under profiler.so), golden runs, run, and the
outcomes sdc_check.sh and the critical rule gave.
"""

from __future__ import annotations

import os
import shutil
import time

from bench.gpucheck.context import FI, REPO, Ctx, Failed, keeping

INJECTIONS = 40


def own_app(ctx: Ctx) -> dict:
    import yaml

    from bench.gpucheck.sass import run_until, stratum_figures, tool

    t = tool(ctx)
    exe = ctx.state.get("vectoradd")
    if not exe:
        raise Failed("no vectoradd binary (the programs step failed)")
    out = ctx.dir()
    app = out / "vectoradd"
    shutil.rmtree(app, ignore_errors=True)
    shutil.copytree(REPO / "nvbitfi_tools" / "examples" / "vectoradd", app)
    shutil.copy2(exe, app / "vectoradd")
    config = out / "own.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "name": "own-app",
                "seed": 7,
                "backend": "nvbitfi",
                "device": "cuda",
                "modes": ["single_bit"],
                "injections": INJECTIONS,
                "golden_runs": 2,
                "workload": {"app": str(app), "critical": {"relative_error": 0.001}},
                "nvbitfi": {"home": str(t.home), "dialect": "fi-campaign", "group": "fp32"},
            }
        )
    )
    db = out / "own.db"
    for leftover in out.glob("own.db*"):
        shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()
    env = dict(os.environ, **ctx.state.get("launcher_env", {}))
    f: dict = {"injections": INJECTIONS}
    t0 = time.monotonic()
    with keeping(f):
        ctx.sh([*FI, "--db", db, "plan", config], "fi-campaign plan (profiles vectoradd through run.sh)", env=env)
    f["plan_s"] = round(time.monotonic() - t0, 1)
    took, stopped = run_until(ctx, [*FI, "--db", db, "run"], "fi-campaign run", ctx.left() - 10, env, name="own-run")
    f.update(run_s=round(took, 1), stopped_at_deadline=stopped, strata=stratum_figures(db))
    root = out / "own.db.runs" / "vectoradd"
    f["golden_files"] = sorted(p.name for p in (root / "app").glob("golden_*"))
    done = sum(v["done"] for v in f["strata"].values())
    if not done:
        raise Failed("the own-program campaign stored no result", f)
    return f
