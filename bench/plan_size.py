"""What one planned site costs: bytes held while planning (tracemalloc peak) and bytes in the
store, the figures behind campaign/limits.py's MAX_SITES (docs/DESIGN.md, "Inputs").

    python bench/plan_size.py [--sites N]
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
import tracemalloc
from dataclasses import replace
from pathlib import Path

from fi_campaign import config as cfg
from fi_campaign.plan.planner import plan
from fi_campaign.store import Store


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sites", type=int, default=100_000)
    n = ap.parse_args().sites
    c = replace(
        cfg.load(None), models={"baseline": "zoo:resnet20-cifar10-baseline"}, modes=("single_bit",), injections=n
    )
    plan(replace(c, injections=10))  # imports and caches outside the measurement
    tracemalloc.start()
    t0 = time.perf_counter()
    record, sites = plan(c)
    planned_s = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    with tempfile.TemporaryDirectory() as tmp:
        sizes = []
        for name, rows in (("all.db", sites), ("one.db", sites[:1])):
            db = Path(tmp) / name
            Store.create(db).write_plan(record, rows)
            with sqlite3.connect(db) as con:  # the WAL's pages into the file that is measured
                con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            con.close()
            sizes.append(db.stat().st_size)
        size = sizes[0] - sizes[1]
    print(
        f"{n:,} sites: planning peak {peak / n:.0f} B/site (tracemalloc), store {size / n:.0f} B/site, "
        f"planned in {planned_s:.1f} s"
    )


if __name__ == "__main__":
    main()
