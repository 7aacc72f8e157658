"""What stratifying by each key known at plan time could gain at best, read from a finished
simple random campaign: the ceiling behind bench/stratified.py's figures.

    python bench/strata_gain.py STORE [STORE ...] [--outcome critical_sdc] [--half-width 0.0025]

For each model x mode of each store and each key (bit, layer, image, and for warp_random the
largest lane error of the site's drawn values, in deciles), the design effect of a stratified
estimate against a simple random sample of the same size, with the strata's rates taken as the
store's own estimates:

- proportional allocation: sum_h W_h p_h (1 - p_h) / (p (1 - p));
- Neyman allocation: (sum_h W_h sqrt(p_h (1 - p_h)))^2 / (p (1 - p)).

1 / design effect is how many times fewer injections the same interval would need if the
strata's rates were known; a real campaign pays a pilot per stratum and the bound of its quiet
strata on top (docs/DESIGN.md, "Stratified sampling"). With few results per stratum the Neyman
figure is optimistic (a stratum that showed nothing looks certain).

With ``--half-width W``, for single_bit by bit, the least number of injections any procedure
whose 95% intervals cover could stop at (docs/DESIGN.md, "Why not ten times fewer"): the other
31 bits taken as quiet (the most favourable case), so N injections in them leave a pooled rate
d* = 1 - 0.05^(1/N) unexcluded and widen the interval's upper side by (31/32) d*; the lower
half-width of the most failing bit's estimate added (normal approximation, the store's rate);
minimised over how the injections are split. Beside it, the simple random sample for the same
half-width (normal approximation) and their ratio.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from fi_campaign.models.sampler import lane_draws, relative_error
from fi_campaign.store import Store


def design_effects(key: np.ndarray, hit: np.ndarray) -> tuple[float, float, int]:
    """Proportional and Neyman design effects of strata ``key`` for the 0/1 outcomes ``hit``."""
    p = hit.mean()
    keys, inverse = np.unique(key, return_inverse=True)
    share = np.bincount(inverse) / len(key)
    rate = np.bincount(inverse, weights=hit) / np.bincount(inverse)
    spread = rate * (1 - rate)
    total = p * (1 - p)
    return float(share @ spread / total), float((share @ np.sqrt(spread)) ** 2 / total), len(keys)


Z95 = 1.959963984540054


def least_injections(top_rate: float, width: int, half_width: float) -> int:
    """The floor described in the module docstring: one stratum of weight 1/width failing at
    ``top_rate``, the others quiet."""
    spread = Z95 / width * np.sqrt(top_rate * (1 - top_rate))
    n_quiet = np.arange(1, 200_000)
    left = 2 * half_width - (width - 1) / width * (1 - 0.05 ** (1 / n_quiet))
    ok = left > 0
    n_top = (spread / left[ok]) ** 2
    return int(np.ceil((n_quiet[ok] + n_top).min()))


def largest_error_decile(seeds: np.ndarray, x_min: float, alpha: float) -> np.ndarray:
    """Decile of each warp_random site's largest lane relative error (known from its value seed; a fixed-size law)."""
    u, _ = lane_draws(seeds.astype(np.uint64))
    largest = relative_error(u, x_min, alpha).max(axis=1)
    return np.searchsorted(np.quantile(largest, np.linspace(0.1, 0.9, 9)), largest)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("stores", nargs="+", type=Path)
    ap.add_argument("--outcome", default="critical_sdc")
    ap.add_argument("--half-width", type=float, help="also the least injections for this half-width (single_bit)")
    args = ap.parse_args()
    floors: list[str] = []
    print("| store | model | mode | results | rate | key | strata | proportional | Neyman | at best |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for path in args.stores:
        law = Store.open(str(path)).campaign().fault_model.law()
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        cells = db.execute("SELECT DISTINCT s.model, s.mode FROM site s JOIN result r ON r.site_id = s.id").fetchall()
        for model, mode in cells:
            rows = db.execute(
                "SELECT s.bit, s.layer, s.image, s.value_seed, r.outcome = ? FROM site s "
                "JOIN result r ON r.site_id = s.id WHERE s.model = ? AND s.mode = ?",
                (args.outcome, model, mode),
            ).fetchall()
            a = np.array([[-1 if v is None else v for v in row] for row in rows], dtype=np.int64)
            hit = a[:, 4].astype(np.float64)
            keys = {"layer": a[:, 1], "image": a[:, 2]}
            if mode == "single_bit":
                keys["bit"] = a[:, 0]
            else:
                keys["largest error"] = largest_error_decile(a[:, 3], law.x_min, law.alpha)
            for name, key in keys.items():
                prop, neyman, strata = design_effects(key, hit)
                print(
                    f"| {path.name} | {model} | {mode} | {len(hit)} | {hit.mean():.2%} | {name} | {strata} "
                    f"| {prop:.3f} | {neyman:.3f} | {1 / neyman:.1f}x |"
                )
            if args.half_width and mode == "single_bit":
                bits, inverse = np.unique(a[:, 0], return_inverse=True)
                rates = np.bincount(inverse, weights=hit) / np.bincount(inverse)
                least = least_injections(float(rates.max()), 32, args.half_width)
                p = hit.mean()
                simple = Z95**2 * p * (1 - p) / args.half_width**2
                floors.append(
                    f"| {path.name} | {model} | bit {bits[rates.argmax()]}: {rates.max():.1%} | {least:,} "
                    f"| {simple:,.0f} | {simple / least:.1f}x |"
                )
    if floors:
        print(f"\nLeast injections for a half-width of {args.half_width:g} (single_bit, by bit):\n")
        print("| store | model | most failing bit | least, any covering procedure | simple random | at most |")
        print("| --- | --- | --- | --- | --- | --- |")
        print("\n".join(floors))


if __name__ == "__main__":
    main()
