"""Stand-in steps for tests/test_gpu_check.py, run by the GPU check's runner in place of
bench.gpucheck.steps:  python -m tests.gpucheck_fakes NAME --work DIR --limit S [--dry]"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("name")
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--limit", type=float, required=True)
    ap.add_argument("--dry", action="store_true")
    args = ap.parse_args()
    results = args.work / "results"
    results.mkdir(parents=True, exist_ok=True)

    def result(**r) -> None:
        (results / f"{args.name}.json").write_text(json.dumps(r))

    if args.name == "hang":  # leaves a process in a session of its own, as workload processes start, then hangs
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"], start_new_session=True)
        (args.work / "child.pid").write_text(str(child.pid))
        print("waiting for a GPU that never answers", flush=True)
        time.sleep(300)
    elif args.name == "crash":
        print("boom: the stand-in crashed", flush=True)
        os._exit(3)
    elif args.name == "fail":
        result(status="failed", figures={"seen": 1}, error="fail: the stand-in failed on purpose")
    elif args.name == "hand-on":  # what a step leaves in state.json reaches the later steps' environment
        (args.work / "state.json").write_text(json.dumps({"pythonpath": ["/somewhere/site"], "env": {"FI_X": "1"}}))
        result(status="ok", figures={})
    else:
        result(
            status="ok",
            figures={
                "limit": args.limit,
                "dry": args.dry,
                "pythonpath": os.environ.get("PYTHONPATH", ""),
                "fi_x": os.environ.get("FI_X"),
            },
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
