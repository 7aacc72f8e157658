"""Peak memory of one `fi-campaign run` worker on ResNet-20, in-process and process-isolated,
at several batch sizes, beside the estimate `fi_campaign.engine.capacity` caps workers with.

    python bench/workers_memory.py [--quick]

Each case plans a fresh store (zoo:resnet20-cifar10-baseline, single_bit, 200 bundled images)
and runs it with --workers 1 while the memory of the run and its children (the workload process
of process isolation) is sampled every 20 ms; the peaks of resident (RSS) and unique (USS)
memory are reported.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import EXE, machine, plan_store


def peak_memory(cmd: list[str]) -> tuple[int, int]:
    """(peak resident, peak unique) bytes of ``cmd`` and its children. Unique memory (USS)
    leaves out the shared library pages every worker maps once: what one more worker costs."""
    import psutil

    p = psutil.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    rss = uss = 0
    while p.poll() is None:
        try:
            info = [q.memory_full_info() for q in [p] + p.children(recursive=True)]
            rss, uss = max(rss, sum(i.rss for i in info)), max(uss, sum(i.uss for i in info))
        except psutil.Error:
            pass
        time.sleep(0.02)
    if p.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed: {p.stderr.read().decode()}")
    return rss, uss


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    from fi_campaign.engine import capacity
    from fi_campaign.store import Store

    cases = (
        [("inprocess", 32), ("inprocess", 256), ("process", 256)]
        if args.quick
        else [("inprocess", 32), ("inprocess", 256), ("inprocess", 1024), ("process", 32), ("process", 256)]
    )
    print(machine())
    print("| isolation | batch_size | peak RSS MiB | peak USS MiB | estimate MiB (base + images + batch) |")
    print("| --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as tmp:
        for isolation, batch in cases:
            n = 2 * batch if isolation == "inprocess" else 4
            db = plan_store(
                Path(tmp),
                f"{isolation}-{batch}",
                {
                    "seed": 1,
                    "isolation": isolation,
                    "injections": n,
                    "batch_size": batch,
                    "modes": ["single_bit"],
                    "models": {"baseline": "zoo:resnet20-cifar10-baseline"},
                    "images": {"source": "bundled", "count": 200},
                },
            )
            rss, uss = peak_memory([EXE, "--db", str(db), "run", "--workers", "1"])
            store = Store.open(db)
            fp = capacity.footprint(store.campaign().models, isolation, batch, 200, on_gpu=False)
            print(
                f"| {isolation} | {batch} | {rss / 2**20:.0f} | {uss / 2**20:.0f} | {fp.total / 2**20:.0f} "
                f"({fp.base / 2**20:.0f} + {fp.images / 2**20:.1f} + {fp.batch / 2**20:.0f}) |",
                flush=True,
            )


if __name__ == "__main__":
    main()
