"""One step of the GPU check, in a process of its own:

    python -m bench.gpucheck.steps NAME --work DIR --limit SECONDS [--dry]

writes ``DIR/results/NAME.json`` ({status, figures, error | reason}) and reads and updates
``DIR/state.json``, through which steps hand on what later ones need. The steps themselves are
in ``prepare`` (no GPU needed), ``sass`` and ``speed``; ``prepare``'s first two use only the
standard library and what the machine has, the later ones run with fi-campaign importable (the
install's PYTHONPATH on the GPU machine, the caller's environment in a dry run).
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

from bench.gpucheck import ownapp, prepare, sass, speed
from bench.gpucheck.context import Ctx, Failed, Skipped, last_line

STEP_FUNCTIONS: dict[str, Callable[[Ctx], dict]] = {
    "environment": prepare.environment,
    "install": prepare.install,
    "tool_host": prepare.tool_host,
    "tool_build": prepare.tool_build,
    "programs": prepare.programs,
    "configs": prepare.configs,
    "doctor": sass.doctor,
    "c_program": sass.c_program,
    "torch_dummy": sass.torch_dummy,
    "workaround": sass.workaround,
    "counts": sass.counts,
    "own_app": ownapp.own_app,
    "sass_campaign": sass.sass_campaign,
    "framework": sass.framework,
    "inprocess_bench": speed.inprocess_bench,
    "process_bench": speed.process_bench,
    "own_models_bench": speed.own_models_bench,
}


def plain(x):
    """``x`` as strict JSON can hold it: NaN becomes null and infinities "inf" / "-inf"."""
    if isinstance(x, float) and x != x:
        return None
    if isinstance(x, float) and x in (float("inf"), float("-inf")):
        return "inf" if x > 0 else "-inf"
    if isinstance(x, dict):
        return {str(k): plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [plain(v) for v in x]
    return x


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.gpucheck.steps")
    ap.add_argument("name", choices=sorted(STEP_FUNCTIONS))
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--limit", type=float, required=True)
    ap.add_argument("--dry", action="store_true")
    args = ap.parse_args(argv)
    try:
        state = json.loads((args.work / "state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        state = {}
    ctx = Ctx(args.name, args.work, args.dry, args.limit, state)
    result: dict
    try:
        result = {"status": "ok", "figures": STEP_FUNCTIONS[args.name](ctx)}
    except Failed as e:
        result = {"status": "failed", "figures": e.figures, "error": f"{args.name}: {e}"}
    except Skipped as e:
        result = {"status": "skipped", "figures": {}, "reason": str(e)}
    except Exception as e:  # noqa: BLE001 - any error of a step is its result, never the check's end
        traceback.print_exc()
        result = {"status": "failed", "figures": {}, "error": f"{args.name}: {type(e).__name__}: {last_line(str(e))}"}
    results = args.work / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / f"{args.name}.json").write_text(
        json.dumps(plain(result), indent=2, default=str, allow_nan=False), encoding="utf-8"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
