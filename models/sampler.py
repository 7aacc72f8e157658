"""The lane sampler of warp_random, specification ``fi-campaign/lanes/1``: one definition, two
implementations (this numpy one and ``nvbitfi_tools/tool/fi_logic.h`` on the GPU), equal bit for bit.

A GPU cannot run numpy's PCG64 and SeedSequence, and CUDA's ``pow`` is not correctly rounded,
so the specification uses only what both sides compute identically:

- lane L's 64-bit word is output L of SplitMix64 seeded with the site's ``value_seed``:
  ``mix(value_seed + (L + 1) * 0x9E3779B97F4A7C15)`` (arithmetic mod 2**64);
- u = (word >> 11) * 2**-53 in [0, 1); the sign s is -1 when the word's lowest bit is set;
- r = x_min * (1 - u) ** (-1 / (alpha - 1)), the power computed as exp(y) with
  y = -ln(1 - u) / (alpha - 1) and the ln and exp below (polynomials of +, -, *, / only, each
  rounded once, never fused), saturated at the largest double;
- the corrupted value is x * (1 + s * r) in float64, rounded once to float32.

The ln and exp agree with correctly rounded ones to about 1e-15 relative (``tests`` check it),
so r follows the same power law as :meth:`fi_campaign.models.powerlaw.PowerLaw.sample`; the point of the
specification is that the framework-level injector and the SASS-level tool draw the same r.
"""

from __future__ import annotations

import numpy as np

SPEC = "fi-campaign/lanes/1"
LEGACY = "numpy-pcg64/1"  # lane_draws of stores planned before SPEC: numpy's default_rng(seed)
WARP = 32
_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_DMAX = np.finfo(np.float64).max
_SQRT2 = 1.4142135623730951
_LN2 = 0.6931471805599453
_LN2_HI, _LN2_LO = 6.93147180369123816490e-01, 1.90821492927058770002e-10
_INV_LN2 = 1.4426950408889634


def _mix(z: np.ndarray) -> np.ndarray:
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def lane_words(value_seeds: int | np.integer | np.ndarray, lanes: int = WARP) -> np.ndarray:
    """The 64-bit words of lanes 0..lanes-1 (uint64), one row per seed for an array of seeds."""
    seeds = [int(s) for s in np.atleast_1d(value_seeds).tolist()]
    if any(not 0 <= s < 2**64 for s in seeds):
        raise ValueError(f"a value_seed of {value_seeds} is not a 64-bit unsigned integer")
    with np.errstate(over="ignore"):
        k = np.arange(1, lanes + 1, dtype=np.uint64)
        words = _mix(np.array(seeds, dtype=np.uint64)[:, None] + k[None, :] * _GAMMA)
    return words[0] if np.ndim(value_seeds) == 0 else words


def lane_draws(value_seeds: int | np.integer | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The 32 uniforms and signs of a warp_random site (or of each of an array of sites), from
    the seed stored with it."""
    w = lane_words(value_seeds)
    u = (w >> np.uint64(11)).astype(np.float64) * (1.0 / 9007199254740992.0)
    return u, np.where((w & np.uint64(1)) == 1, -1.0, 1.0)


def _log(t: np.ndarray) -> np.ndarray:
    """ln t for t in (0, 1], as fi_log computes it."""
    b = t.view(np.uint64)
    e = ((b >> np.uint64(52)) & np.uint64(0x7FF)).astype(np.int64) - 1023
    m = ((b & np.uint64(0x000FFFFFFFFFFFFF)) | np.uint64(0x3FF0000000000000)).view(np.float64)
    high = m > _SQRT2
    m = np.where(high, m * 0.5, m)
    e = e + high
    f = (m - 1.0) / (m + 1.0)
    s = f * f
    p = np.full_like(f, 1.0 / 23.0)
    for k in range(21, 2, -2):
        p = p * s + 1.0 / k
    logm = 2.0 * (f + (f * s) * p)
    return e.astype(np.float64) * _LN2 + logm


_FACTORIALS = [float(np.prod(np.arange(1, k + 1, dtype=np.float64))) for k in range(18)]


def _exp(y: np.ndarray) -> np.ndarray:
    """e^y for y in [0, 709], as fi_exp computes it."""
    n = np.trunc(y * _INV_LN2 + 0.5)
    g = (y - n * _LN2_HI) - n * _LN2_LO
    p = np.full_like(g, 1.0 / _FACTORIALS[17])
    for k in range(16, -1, -1):
        p = p * g + 1.0 / _FACTORIALS[k]
    scale = ((n.astype(np.int64) + 1023).astype(np.uint64) << np.uint64(52)).view(np.float64)
    return p * scale


def relative_error(u: np.ndarray, x_min: float, alpha: float) -> np.ndarray:
    """r for uniforms u in [0, 1): the power law's inverse CDF under this specification."""
    u = np.asarray(u, dtype=np.float64)
    t = 1.0 - u
    y = (-1.0 / (float(alpha) - 1.0)) * _log(t)
    finite = y <= 709.0
    with np.errstate(over="ignore", invalid="ignore"):
        r = float(x_min) * _exp(np.where(finite, y, 0.0))
    return np.where(finite & (r <= _DMAX), r, _DMAX)


def warp_values(x: np.ndarray, value_seed: int, x_min: float, alpha: float) -> np.ndarray:
    """What lanes 0..len(x)-1 of a warp hold after warp_random: x (1 + s r), rounded to float32."""
    x = np.asarray(x, dtype=np.float32)
    u, s = lane_draws(value_seed)
    r = relative_error(u[: x.size], x_min, alpha)
    with np.errstate(over="ignore", invalid="ignore"):
        return (x.astype(np.float64) * (1.0 + s[: x.size] * r)).astype(np.float32)


def legacy_lane_draws(value_seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The draws of stores planned before this specification existed, so they replay unchanged."""
    rng = np.random.default_rng(value_seed)
    return rng.random(WARP), np.where(rng.random(WARP) < 0.5, -1.0, 1.0)
