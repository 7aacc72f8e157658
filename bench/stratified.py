"""Injections needed for a critical-SDC half-width, simple random against stratified sampling
(issue 26), on the committed ResNet-20 baseline and hardened, modes single_bit (strata: bit) and
warp_random (strata: layer), every campaign run by the real CLI to its stopping rule
(``run --until-ci``).

    nice python bench/stratified.py [--width 0.0025] [--reference 20000] [--images 200]
        [--data ../shared/data/cifar10-jpeg] [--cells baseline:single_bit,...] [--keep DIR] [--quick]
        [--by [MODEL:]MODE=KEY[+KEY...] ...] [--reuse DIR]

Per model x mode: a simple random plan of ``--reference`` injections is run with ``--until-ci``
(where it stops is the simple random campaign's cost), then to its end (the reference
interval). A cell whose simple random campaign does not stop within the reference gets a second
simple random plan (another seed), sized from the reference's rate, run to the stopping rule.
The stratified plan (Neyman allocation, the default pilot and floor) is sized the same way and
run to the stopping rule; the table says whether its estimate lies inside the reference's
interval. Each campaign's line is printed when it ends, the table at the end; the exit code is
1 when a campaign did not reach its stopping rule.

``--by`` stratifies a mode (or one model's mode) by other keys than bit / layer, e.g.
``--by hardened:warp_random=image``; with an image key each stratum plans
max(2,000, 4 x size / strata) sites. ``--reuse DIR`` reads a cell's finished reference store
(and its second simple random store, if there is one) from an earlier run's ``--keep`` folder
instead of running them again; the reference's own ``run --until-ci`` point is then unknown, so
its simple random figure is the rule checked every chunk ("-" in the ``run --until-ci`` column).
"""

from __future__ import annotations

import argparse
import json
import math
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import EXE, machine, plan_store
from fi_campaign.allocation import Policy, StratumState, reached
from fi_campaign.classify import COUNTED, CRITICAL_SDC
from fi_campaign.engine.runner import sampling_states
from fi_campaign.stats import proportion, z_value
from fi_campaign.store import Store
from fi_campaign.stratified import stratified_proportion

MODELS = {"baseline": "zoo:resnet20-cifar10-baseline", "hardened": "zoo:resnet20-cifar10-hardened"}
MODES = ("single_bit", "warp_random")
STRATA = {"single_bit": "bit", "warp_random": "layer"}
LAYERS = 20  # ResNet-20's conv and linear layers: the layer strata
CHECK_EVERY = 256  # a chunk: batch_size


@dataclass(frozen=True, kw_only=True)
class Outcome:
    injections: int
    rate: float
    low: float
    high: float
    reached: bool
    seconds: float


def config(model: str, mode: str, injections: int, seed: int, args: argparse.Namespace, **extra: object) -> dict:
    return {
        "seed": seed,
        "backend": "pytorch",
        "device": "cpu",
        "models": {model: MODELS[model]},
        "modes": [mode],
        "injections": injections,
        "images": {"source": args.data, "count": args.images, "seed": 0},
        "layer_weighting": "elements",
        "batch_size": 256,
        **extra,
    }


def run(db: Path, *extra: str) -> float:
    t0 = time.perf_counter()
    subprocess.run([EXE, "--db", str(db), "run", *extra], check=True, capture_output=True)
    return time.perf_counter() - t0


def simple_outcome(db: Path, model: str, mode: str, width: float, seconds: float) -> Outcome:
    counts = Store.open(db).stratum_counts(model, mode)
    n = sum(counts.get(o, 0) for o in COUNTED)
    r = proportion(counts.get(CRITICAL_SDC, 0), n)
    return Outcome(injections=n, rate=r.rate, low=r.low, high=r.high, reached=r.half_width <= width, seconds=seconds)


def stratified_outcome(db: Path, model: str, mode: str, width: float, seconds: float) -> Outcome:
    r = stratified_proportion(sampling_states(Store.open(db), model, mode))
    return Outcome(injections=r.n, rate=r.rate, low=r.low, high=r.high, reached=r.half_width <= width, seconds=seconds)


def first_reached(db: Path, model: str, mode: str, width: float, step: int) -> int | None:
    """Where the simple random campaign's stopping rule first holds when checked after every
    ``step`` results: ``run --until-ci`` checks it between windows of 32 chunks, so it overshoots
    by up to a window. Sites are claimed and run in the order they were drawn (site id), so the
    first n results are a simple random sample of n."""
    with sqlite3.connect(db) as con:
        outcomes = [
            o
            for (o,) in con.execute(
                "SELECT r.outcome FROM result r JOIN site s ON s.id = r.site_id WHERE s.model = ? AND s.mode = ? "
                "ORDER BY s.id",
                (model, mode),
            )
        ]
    n = k = 0
    for i, o in enumerate(outcomes, 1):
        n += o in COUNTED
        k += o == CRITICAL_SDC
        if i % step == 0 and n and proportion(k, n).half_width <= width:
            return n
    return None


def first_reached_stratified(db: Path, model: str, mode: str, width: float) -> int | None:
    """Where the stratified campaign's stopping rule first holds when checked after every
    recorded part (a chunk) instead of between claims: the results replayed in the order they
    were recorded, the claims (and so the allocation) as they were."""
    with sqlite3.connect(db) as con:
        rows = con.execute(
            "SELECT s.stratum, r.outcome, r.finished FROM result r JOIN site s ON s.id = r.site_id "
            "WHERE s.model = ? AND s.mode = ? ORDER BY r.finished, s.id",
            (model, mode),
        ).fetchall()
        weights = dict(
            con.execute(
                "SELECT stratum, MAX(stratum_weight) FROM site WHERE model = ? AND mode = ? GROUP BY stratum",
                (model, mode),
            ).fetchall()
        )
    n = dict.fromkeys(weights, 0)
    k = dict.fromkeys(weights, 0)
    for i, (label, outcome, finished) in enumerate(rows):
        n[label] += outcome in COUNTED
        k[label] += outcome == CRITICAL_SDC
        if i + 1 < len(rows) and rows[i + 1][2] == finished:
            continue  # a recorded part ends where the finish time changes
        states = [StratumState(label=h, weight=w, n=n[h], k=k[h], pending=1) for h, w in weights.items()]
        if reached(states, Policy(), width):
            return sum(n.values())
    return None


def strata_keys(model: str, mode: str, args: argparse.Namespace) -> list[str]:
    """The keys a cell is stratified by: ``--by MODEL:MODE=...`` over ``--by MODE=...`` over the default."""
    return args.by.get(f"{model}:{mode}") or args.by.get(mode) or [STRATA[mode]]


def stratum_sites(keys: list[str], size: int, args: argparse.Namespace) -> int:
    """Sites planned per stratum: a quarter of the budget for the default keys (far more than
    Neyman gives any one of their strata); with an image key, four times a stratum's
    proportional share, at least 2,000, so that 200 strata stay a plan of a few 100,000 sites."""
    if "image" not in keys:
        return max(5000, -(-size // 4))
    strata = math.prod({"bit": 32, "layer": LAYERS, "image": args.images}[k] for k in keys)
    return max(2000, -(-4 * size // strata))


def finished(db: Path, args: argparse.Namespace) -> bool:
    """A kept reference store that this run would have made: the same size and images, no site left."""
    if not db.exists():
        return False
    store = Store.open(db)
    config = json.loads(store.campaign().config)
    same = config["injections"] == args.reference and config["images"]["count"] == args.images
    return same and all(done == total for *_, done, total in store.progress())


def reused_simple(db: Path, model: str, mode: str, width: float) -> tuple[Outcome, int | None]:
    """The simple random outcome of a reused reference: its first results up to where the rule,
    checked every chunk, first holds (all of them where it never does)."""
    n = first_reached(db, model, mode, width, CHECK_EVERY)
    with sqlite3.connect(db) as con:
        outcomes = [
            o
            for (o,) in con.execute(
                "SELECT r.outcome FROM result r JOIN site s ON s.id = r.site_id WHERE s.model = ? AND s.mode = ? "
                "ORDER BY s.id",
                (model, mode),
            )
        ]
    counted = [o for o in outcomes if o in COUNTED][: n or None]
    r = proportion(sum(o == CRITICAL_SDC for o in counted), len(counted))
    return Outcome(injections=len(counted), rate=r.rate, low=r.low, high=r.high, reached=n is not None, seconds=0), n


def needed(rate: float, width: float) -> int:
    """A simple random sample's size for ``width`` at ``rate`` (normal approximation), with room."""
    p = min(max(rate, 1e-3), 0.5)
    return math.ceil(1.3 * z_value(0.95) ** 2 * p * (1 - p) / width**2) + 1000


def cell(model: str, mode: str, args: argparse.Namespace, folder: Path) -> dict:
    """The reference (and the simple random campaign when it stops inside it), the stratified
    campaign, then a simple random campaign of its own where the reference was too small."""
    w = str(args.width)
    name = f"{model}-{mode}"
    kept = args.reuse / f"{name}-reference.db" if args.reuse else None
    reused = kept is not None and finished(kept, args)
    if kept is not None and reused:
        ref_db = kept
        simple, _ = reused_simple(ref_db, model, mode, args.width)
        reference = simple_outcome(ref_db, model, mode, args.width, 0)
    else:
        ref_db = plan_store(folder, f"{name}-reference", config(model, mode, args.reference, 1, args))
        t = run(ref_db, "--until-ci", w)
        simple = simple_outcome(ref_db, model, mode, args.width, t)
        reference = simple_outcome(ref_db, model, mode, args.width, t + run(ref_db))
    simple_db = ref_db
    show(model, mode, "reference" + (f" (reused from {ref_db})" if reused else ""), reference)
    size = needed(reference.rate, args.width)
    keys = strata_keys(model, mode, args)
    sampling = {
        "method": "stratified",
        "by": {mode: keys},
        "allocation": "neyman",
        "sites": stratum_sites(keys, size, args),
    }
    suffix = "" if keys == [STRATA[mode]] else "-by-" + "-".join(keys)
    db = plan_store(folder, f"{name}-stratified{suffix}", config(model, mode, size, 3, args, sampling=sampling))
    stratified = stratified_outcome(db, model, mode, args.width, run(db, "--until-ci", w))
    show(model, mode, f"stratified by {' x '.join(keys)}", stratified)
    if not simple.reached:
        earlier = args.reuse / f"{name}-simple.db" if reused and args.reuse else None
        if earlier is not None and earlier.exists():  # run with --until-ci only: its results are where it stopped
            simple_db, reused = earlier, False
            simple = simple_outcome(simple_db, model, mode, args.width, 0)
        else:
            simple_db = plan_store(folder, f"{name}-simple", config(model, mode, max(size, args.reference), 2, args))
            simple, reused = simple_outcome(simple_db, model, mode, args.width, run(simple_db, "--until-ci", w)), False
    show(model, mode, "simple random" + (" (the reused reference, rule checked every chunk)" if reused else ""), simple)
    finest = first_reached(simple_db, model, mode, args.width, CHECK_EVERY)
    print(f"  {model} {mode} simple random, the rule checked every {CHECK_EVERY} results: {finest}", flush=True)
    finest_st = first_reached_stratified(db, model, mode, args.width)
    print(f"  {model} {mode} stratified, the rule checked after every recorded chunk: {finest_st}", flush=True)
    return {
        "keys": keys,
        "reused": reused,
        "simple": simple,
        "stratified": stratified,
        "reference": reference,
        "finest": finest,
        "finest_stratified": finest_st,
    }


def show(model: str, mode: str, what: str, o: Outcome) -> None:
    reached = "reached" if o.reached else "NOT reached"
    print(
        f"  {model} {mode} {what}: {o.injections:,} injections, {pct(o.rate)} [{pct(o.low)}, {pct(o.high)}], "
        f"half-width {reached}, {o.seconds:.0f} s",
        flush=True,
    )


def pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--width", type=float, default=0.0025, help="critical-SDC half-width to stop at")
    ap.add_argument("--reference", type=int, default=20_000, help="injections of the simple random reference")
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpeg"))
    ap.add_argument("--cells", default=",".join(f"{m}:{d}" for m in MODELS for d in MODES))
    ap.add_argument("--keep", type=Path, help="keep the stores in this folder")
    ap.add_argument("--quick", action="store_true", help="half-width 2%%, reference 2,000, 50 images")
    ap.add_argument(
        "--by", action="append", default=[], help="[MODEL:]MODE=KEY[+KEY...]: stratify that cell by these keys"
    )
    ap.add_argument("--reuse", type=Path, help="read finished reference stores from this --keep folder")
    args = ap.parse_args()
    try:
        args.by = {cell: keys.split("+") for cell, keys in (spec.split("=") for spec in args.by)}
    except ValueError:
        ap.error("--by takes [MODEL:]MODE=KEY[+KEY...], e.g. warp_random=image")
    if args.quick:
        args.width, args.reference, args.images = 0.02, 2000, 50
    print(machine())
    print(f"half-width {pct(args.width)}, reference {args.reference:,} injections, {args.images} images of {args.data}")
    failed = False
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        rows = []
        for spec in args.cells.split(","):
            model, mode = spec.split(":")
            rows.append((model, mode, cell(model, mode, args, folder)))
        print(
            "| model | mode | strata | simple random: rule checked every chunk | "
            "stratified: rule checked every chunk | fewer | simple random: run --until-ci | "
            "stratified: run --until-ci | fewer | simple estimate | stratified estimate | reference | inside |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for model, mode, r in rows:
            s, st, ref, finest, finest_st = (
                r["simple"],
                r["stratified"],
                r["reference"],
                r["finest"],
                r["finest_stratified"],
            )
            inside = ref.low <= st.rate <= ref.high
            failed |= not (s.reached and st.reached)  # outside the reference's interval is a finding, not a failure
            mark = lambda o: "" if o.reached else " (not reached)"  # noqa: E731
            fine = f"{finest / finest_st:.2f}x" if finest and finest_st else "-"
            until = (
                ("-", "-") if r["reused"] else (f"{s.injections:,}{mark(s)}", f"{s.injections / st.injections:.2f}x")
            )
            print(
                f"| {model} | {mode} | {' x '.join(r['keys'])} | {finest or 0:,} | {finest_st or 0:,} | {fine} | "
                f"{until[0]} | {st.injections:,}{mark(st)} | {until[1]} | "
                f"{pct(s.rate)} [{pct(s.low)}, {pct(s.high)}] | "
                f"{pct(st.rate)} [{pct(st.low)}, {pct(st.high)}] | {ref.injections:,}: {pct(ref.rate)} "
                f"[{pct(ref.low)}, {pct(ref.high)}] | {'yes' if inside else 'NO'} |",
                flush=True,
            )
    print(f"wall time {time.perf_counter() - t0:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
