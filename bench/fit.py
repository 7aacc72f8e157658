"""How long a power-law fit takes (models.powerfit): the speed a test used to assert, measured here
where a loaded machine cannot fail the suite.

    python bench/fit.py [--quick]

Times powerfit.fit on synthetic samples (a uniform body and a power-law tail, half the samples
in it) of 5,000 and 50,000 values (5,000 only with --quick), the median of several calls, and
prints one line per size with the machine it ran on.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import machine


def samples(n: int, seed: int = 11, x_min: float = 1.0, alpha: float = 2.0, tail: float = 0.5) -> np.ndarray:
    from fi_campaign.models.powerlaw import PowerLaw

    rng = np.random.default_rng(seed)
    k = int(n * tail)
    return rng.permutation(
        np.concatenate([rng.uniform(0.0, x_min, n - k), PowerLaw(x_min, alpha).sample(rng.random(k))])
    )


def timed(x: np.ndarray, rounds: int) -> float:
    from fi_campaign.models import powerfit

    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        powerfit.fit(x)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="5,000 samples only")
    args = ap.parse_args()
    print(machine())
    for n in (5_000,) if args.quick else (5_000, 50_000):
        x = samples(n)
        timed(x, 1)  # warm-up
        print(f"powerfit.fit of {n:,} samples: median {timed(x, 5):.3f} s over 5 calls")


if __name__ == "__main__":
    main()
