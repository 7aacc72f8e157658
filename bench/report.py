"""How long reports and exports take on large stores.

    python bench/report.py [--quick] [--keep DIR]

Synthesises campaign stores of 10k and 100k results (--quick), and 1M in full mode: 2 models x
2 modes of ResNet-20 sites drawn by the real planner code (models.faults.draw_sites over the
real layer list), written with the real Store API (Store.create, write_plan); the results,
with per-layer outcome rates, NaN flags and finish times, are bulk-inserted in one
transaction, as `run` would have left them. Then it times the real CLI, one process per
command as a user runs it: `report --csv`, `report --json`, `report --html` and
`export X.parquet`, and prints a table with the machine it ran on.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

EXE = str(Path(sys.executable).with_name("fi-campaign"))
MODELS = {"baseline": ("relu", "conv-bn-act"), "hardened": ("relu6", "conv-act-bn")}
MODES = ("single_bit", "warp_random")
# outcome probabilities (masked, tolerable, critical) per model x mode, near the demo's
RATES = {
    ("baseline", "single_bit"): (0.55, 0.43, 0.02),
    ("baseline", "warp_random"): (0.05, 0.50, 0.45),
    ("hardened", "single_bit"): (0.60, 0.395, 0.005),
    ("hardened", "warp_random"): (0.10, 0.70, 0.20),
}
IMAGES = 200


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        pass
    return (
        f"machine: {platform.machine()}, {cpu}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; "
        f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, {platform.platform()}"
    )


def synthesise(path: Path, results: int, seed: int = 0) -> float:
    """A finished campaign of ``results`` results (split over 2 models x 2 modes); returns seconds."""
    from fi_campaign.config import Config, FaultModel, Images
    from fi_campaign.models.faults import describe_layers, draw_sites
    from fi_campaign.models.resnet import Arch, build
    from fi_campaign.plan.planner import check_fault_model, versions
    from fi_campaign.store import CampaignRecord, ModelRecord, Store, WorkloadRecord

    t0 = time.perf_counter()
    per = results // (len(MODELS) * len(MODES))
    config = Config(
        "bench-report",
        {m: f"zoo:resnet20-cifar10-{m}" for m in MODELS},
        MODES,
        per,
        seed,
        images=Images("bundled", IMAGES, 0),
        fault_model=FaultModel(),
        reference="baseline",
    )
    rng = np.random.default_rng(seed)
    sites: list[dict] = []
    models: dict[str, ModelRecord] = {}
    for name, (act, order) in MODELS.items():
        layers = describe_layers(build(Arch(depth=20, activation=act, order=order)))
        models[name] = ModelRecord(
            checkpoint=str(config.models[name]),
            sha256=f"{rng.integers(1 << 62):064x}",
            arch=Arch(depth=20, activation=act, order=order),
            dataset="cifar10",
            clean_accuracy=0.8469 if name == "baseline" else 0.8227,
            accuracy_on="synthetic",
        )
        for mode in MODES:
            drawn = draw_sites(layers, mode, per, IMAGES, "elements", np.random.default_rng([seed, len(sites)]))
            keys = list(drawn)
            cols = [drawn[k].tolist() for k in keys]
            names = [layers[k].name for k in drawn["layer"]]
            sites.extend(
                {"model": name, "mode": mode, "layer_name": ln, **dict(zip(keys, vals, strict=False))}
                for ln, vals in zip(names, zip(*cols, strict=False), strict=False)
            )
    workload = WorkloadRecord(
        source="bundled", dataset="cifar10", count=IMAGES, seed=0, indices=tuple(range(IMAGES)), images_sha256="0" * 64
    )
    record = CampaignRecord(
        name=config.name,
        seed=seed,
        config=config.to_json(),
        versions=versions(),
        models=models,
        workload=workload,
        fault_model=check_fault_model(config),
    )
    store = Store.create(path)
    store.write_plan(record, sites)
    _results(path, per, rng)
    return time.perf_counter() - t0


def _results(path: Path, per: int, rng: np.random.Generator) -> None:
    """Every site done, with an outcome drawn from its stratum's rates (deeper layers a little
    more critical), in one transaction, as chunks recorded by `run` would be."""
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    with sqlite3.connect(path) as con:
        ids = con.execute("SELECT id, model, mode, layer FROM site ORDER BY id").fetchall()
        site_id = np.array([r[0] for r in ids])
        layer = np.array([r[3] for r in ids])
        stratum = [(r[1], r[2]) for r in ids]
        p = np.array([RATES[s] for s in stratum])
        boost = 1 + layer / max(1, layer.max())
        crit = np.minimum(p[:, 2] * boost, 0.9)
        u = rng.random(len(ids))
        outcome = np.where(u < crit, "critical_sdc", np.where(u < crit + p[:, 1], "tolerable_sdc", "masked"))
        nan = (outcome != "masked") & (rng.random(len(ids)) < 0.002)
        changed = np.where(outcome == "critical_sdc", rng.integers(1, 3, len(ids)), 0)
        diff = np.where(outcome == "masked", 0.0, 10 ** rng.uniform(-7, 3, len(ids)))
        secs = (np.arange(len(ids)) // 256).astype(int)
        stamps = {s: (start + timedelta(seconds=int(s))).isoformat() for s in np.unique(secs)}
        semantics = {
            m: (
                "xor one bit of one float32 output"
                if m == "single_bit"
                else "per-lane r, random sign, value x (1 + s r)"
            )
            for m in MODES
        }
        rows = [
            (
                int(i),
                str(o),
                int(c),
                int(n),
                float("inf") if n else float(d),
                "pytorch",
                "inprocess",
                semantics[st[1]],
                None,
                0.004,
                stamps[s],
            )
            for i, o, c, n, d, st, s in zip(site_id, outcome, changed, nan, diff, stratum, secs, strict=False)
        ]
        con.executemany(
            "INSERT INTO result (site_id, outcome, images_changed, nan, max_abs_diff, backend, isolation, "
            "semantics, detail, runtime_s, finished) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            rows,
        )
        con.execute("UPDATE site SET status = 'done'")


# runs one command in a fresh wrapper process, so its peak memory is that command's alone
_WRAPPER = (
    "import json, resource, subprocess, sys, time\n"
    "t0 = time.perf_counter()\n"
    "p = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
    "print(json.dumps({'s': time.perf_counter() - t0, 'rc': p.returncode, 'out': p.stdout + p.stderr,\n"
    "                  'kib': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))\n"
)


def timed(*args: str) -> tuple[float, float]:
    """Wall seconds and peak resident MB of one `fi-campaign` process."""
    got = json.loads(
        subprocess.run([sys.executable, "-c", _WRAPPER, EXE, *args], capture_output=True, text=True, check=True).stdout
    )
    if got["rc"] != 0:
        raise SystemExit(f"fi-campaign {' '.join(args)} failed:\n{got['out']}")
    return got["s"], got["kib"] / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="10k and 100k results only (no 1M store)")
    ap.add_argument("--keep", type=Path, help="build the stores in this folder and keep them")
    args = ap.parse_args()
    sizes = [10_000, 100_000] + ([] if args.quick else [1_000_000])
    print(machine())
    header = (
        "results",
        "store MB",
        "build s",
        "report --csv s",
        "report --json s",
        "report --html s",
        "html peak MB",
        "export .parquet s",
        "export peak MB",
        "parquet MB",
    )
    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        for n in sizes:
            db = folder / f"report-{n}.db"
            for f in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
                f.unlink(missing_ok=True)
            build = synthesise(db, n)
            out = folder / f"out-{n}"
            csv_s, _ = timed("--db", str(db), "report", "--csv", str(out / "avf.csv"), "--force")
            json_s, _ = timed("--db", str(db), "report", "--json", str(out / "report.json"), "--force")
            html_s, html_mb = timed("--db", str(db), "report", "--html", str(out / "html"), "--force")
            pq = out / "injections.parquet"
            export_s, export_mb = timed("--db", str(db), "export", str(pq), "--force")
            done = sum(s["done"] for s in json.loads((out / "report.json").read_text())["stores"][0]["strata"])
            assert done == n, (done, n)
            lines.append(
                (
                    f"{n:,}",
                    f"{db.stat().st_size / 1e6:.1f}",
                    f"{build:.1f}",
                    f"{csv_s:.2f}",
                    f"{json_s:.2f}",
                    f"{html_s:.2f}",
                    f"{html_mb:.0f}",
                    f"{export_s:.2f}",
                    f"{export_mb:.0f}",
                    f"{pq.stat().st_size / 1e6:.1f}",
                )
            )
            print("  ".join(lines[-1]), flush=True)
    widths = [max(len(h), *(len(r[i]) for r in lines)) for i, h in enumerate(header)]
    print()
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=False)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in lines:
        print("| " + " | ".join(v.rjust(w) for v, w in zip(r, widths, strict=False)) + " |")
    print(
        "\nSeconds: wall time of one `fi-campaign` process (start-up included); peak MB: its maximum resident "
        "memory; stores of 2 models x 2 modes, ResNet-20 sites."
    )


if __name__ == "__main__":
    main()
