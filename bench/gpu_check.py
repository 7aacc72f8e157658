"""One command that verifies the SASS path and measures GPU speed on a lent GPU machine, and
rehearses every step that needs no GPU on the CPU machine.

    python bench/gpu_check.py [--dry] [--full] [--out DIR] [--work DIR] [--budget SECONDS] [--only a,b]
                              [--per-stratum N]
    make gpu-check OUT=$OUT          # on the GPU machine (docs/NVBITFI.md, "Verified and not yet")
    make gpu-check DRY=1             # on the CPU machine

The steps, their limits and what each verifies are in bench/gpucheck/plan.py; the summary
(gpu-check.json), a table of it (gpu-check.txt) and the logs (gpu-check-logs.tar.gz) go to
--out (default: $OUT, else ./gpu-check-out). Exit code 1 when a step failed, else 0.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.gpucheck.plan import BUDGET_S, STEPS
from bench.gpucheck.runner import Options, run, table


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench/gpu_check.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--dry", action="store_true", help="CPU machine: run the steps that need no GPU, skip the others")
    ap.add_argument("--full", action="store_true", help="dry run: also build the NVBit tool (minutes here)")
    ap.add_argument("--out", type=Path, help="where the summary and the logs go (default: $OUT, else ./gpu-check-out)")
    ap.add_argument("--work", type=Path, help="scratch folder (default: a new temporary one)")
    ap.add_argument("--budget", type=float, default=BUDGET_S, help=f"seconds for all steps (default {BUDGET_S:.0f})")
    ap.add_argument(
        "--only", help="comma-separated steps to run, the others skipped: " + ",".join(s.name for s in STEPS)
    )
    ap.add_argument(
        "--per-stratum",
        type=int,
        help="SASS campaign: injections per model x mode (default: as many as fit in its time, at least 30)",
    )
    args = ap.parse_args(argv)
    only = None
    if args.only:
        only = frozenset(x.strip() for x in args.only.split(",") if x.strip())
        unknown = sorted(only - {s.name for s in STEPS})
        if unknown:
            ap.error(f"unknown step(s) {', '.join(unknown)}; the steps are {', '.join(s.name for s in STEPS)}")
    out = args.out or Path(os.environ.get("OUT") or "gpu-check-out")
    work = args.work or Path(tempfile.mkdtemp(prefix="fi-gpu-check-"))
    print(f"[gpu-check] work folder {work}, output {out}", flush=True)
    summary = run(
        Options(
            work=work.resolve(),
            out=out.resolve(),
            dry=args.dry,
            full=args.full,
            budget_s=args.budget,
            only=only,
            per_stratum=args.per_stratum,
        )
    )
    print(table(summary), end="")
    return 1 if summary["counts"]["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
