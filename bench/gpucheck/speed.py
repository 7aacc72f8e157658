"""The GPU check's speed steps: the in-process, the process-isolated and the own-network
benchmarks on cuda, their figures read from the JSON each writes."""

from __future__ import annotations

import json
import sys

from bench.gpucheck.context import REPO, Ctx, keeping


def _one_at_a_time(ctx: Ctx, script: str, args: list[str], flag: str, runs: list[tuple[str, float]], key: str) -> dict:
    """``bench/SCRIPT --device cuda --quick ARGS FLAG NAME`` per (NAME, seconds it needs), the
    first always and each other only with its seconds left, so that the first network's figures
    stand even if the others run out of time; each JSON's ``key`` section merged."""
    f: dict = {key: {}}
    for name, needs_s in runs:
        if ctx.left() < needs_s:
            f.setdefault("not_run", []).append(f"{name}: {ctx.left():.0f} s left")
            continue
        out = ctx.dir() / f"{script.removesuffix('.py')}-{name}.json"
        cmd = ["--device", "cuda", "--quick", *args, flag, name]
        with keeping(f):
            ctx.sh(
                [sys.executable, REPO / "bench" / script, *cmd, "--json", out],
                f"bench/{script} {' '.join(cmd)}",
                timeout=ctx.left() - 3,
            )
        got = json.loads(out.read_text())
        f[key].update(got.pop(key))
        f.update(got)
    return f


def inprocess_bench(ctx: Ctx) -> dict:
    return _one_at_a_time(ctx, "inprocess.py", [], "--archs", [("resnet20", 0.0), ("resnet44", 60.0)], "archs")


def process_bench(ctx: Ctx) -> dict:
    out = ctx.dir() / "process.json"
    ctx.sh(
        [
            sys.executable,
            REPO / "bench" / "process.py",
            "--quick",
            "--injections",
            "3",
            "--device",
            "cuda",
            "--json",
            out,
        ],
        "bench/process.py --quick --device cuda",
        timeout=ctx.left() - 5,
    )
    return json.loads(out.read_text())


def own_models_bench(ctx: Ctx) -> dict:
    """The ViT first: on the CPU the store's cost per injection weighs most on it."""
    runs = [("vit", 0.0), ("mobilenet", 30.0), ("resnet18", 30.0), ("tagger", 30.0)]
    return _one_at_a_time(ctx, "own_models.py", ["--rounds", "1"], "--networks", runs, "rates")
