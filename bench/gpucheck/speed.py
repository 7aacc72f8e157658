"""The GPU check's speed steps: the in-process, the process-isolated and the own-network
benchmarks on cuda, their figures read from the JSON each writes."""

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


def own_models_bench(ctx: Ctx) -> dict:
    """One network at a time, the ViT first (on the CPU the store's cost per injection weighs
    most on it), then the two CNNs while time is left; the tagger last."""
    f: dict = {"rates": {}}
    for name, needs_s in (("vit", 0.0), ("mobilenet", 30.0), ("resnet18", 30.0), ("tagger", 30.0)):
        if ctx.left() < needs_s:
            f.setdefault("not_run", []).append(f"{name}: {ctx.left():.0f} s left")
            continue
        out = ctx.dir() / f"own-{name}.json"
        with keeping(f):
            ctx.sh(
                [
                    sys.executable,
                    REPO / "bench" / "own_models.py",
                    "--device",
                    "cuda",
                    "--quick",
                    "--rounds",
                    "1",
                    "--networks",
                    name,
                    "--json",
                    out,
                ],
                f"bench/own_models.py --device cuda --quick --rounds 1 --networks {name}",
                timeout=ctx.left() - 3,
            )
        got = json.loads(out.read_text())
        f["rates"].update(got.pop("rates"))
        f.update(got)
    return f
