"""The GPU check's speed steps: the in-process and the process-isolated benchmarks on cuda,
their figures read from the JSON each writes."""

from __future__ import annotations

import json
import sys

from bench.gpucheck.context import REPO, Ctx, keeping


def inprocess_bench(ctx: Ctx) -> dict:
    """One network at a time, so that ResNet-20's figures stand even if ResNet-44's run out of time."""
    f: dict = {"archs": {}}
    for arch, needs_s in (("resnet20", 0.0), ("resnet44", 60.0)):
        if ctx.left() < needs_s:
            f.setdefault("not_run", []).append(f"{arch}: {ctx.left():.0f} s left")
            continue
        out = ctx.dir() / f"inprocess-{arch}.json"
        with keeping(f):
            ctx.sh(
                [
                    sys.executable,
                    REPO / "bench" / "inprocess.py",
                    "--device",
                    "cuda",
                    "--quick",
                    "--archs",
                    arch,
                    "--json",
                    out,
                ],
                f"bench/inprocess.py --device cuda --quick --archs {arch}",
                timeout=ctx.left() - 3,
            )
        got = json.loads(out.read_text())
        f["archs"].update(got.pop("archs"))
        f.update(got)
    return f


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
