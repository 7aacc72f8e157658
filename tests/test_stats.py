"""campaign.stats: Wilson / Clopper-Pearson proportions, Katz rate ratios, Leveugle sizing.

Every interval is checked against scipy's (``binomtest(...).proportion_ci``, ``relative_risk``,
``norm``), not against the same formula written out again, and against published values."""

from __future__ import annotations

import math

import pytest
from scipy.stats import binomtest, norm
from scipy.stats.contingency import relative_risk

from fi_campaign.stats import Rate, Ratio, proportion, rate_ratio, sample_size, z_value

Z95 = float(norm.ppf(0.975))
Z99 = float(norm.ppf(0.995))
CONFIDENCES = [0.8, 0.9, 0.95, 0.99, 0.999]


# --- z ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("confidence", CONFIDENCES)
def test_z_value_is_scipys_normal_quantile(confidence):
    assert z_value(confidence) == pytest.approx(norm.ppf(1 - (1 - confidence) / 2), rel=1e-14)


def test_z_value_matches_textbook_quantiles():
    assert z_value(0.95) == pytest.approx(1.959963984540054, abs=1e-12)
    assert z_value(0.99) == pytest.approx(2.5758293035489004, abs=1e-12)
    assert z_value(0.90) == pytest.approx(1.6448536269514722, abs=1e-12)


# --- proportion: Wilson -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "k, n, low, high",
    [
        # Newcombe (1998), Stat. Med. 17:857, Table I, method 3 (score, no continuity correction)
        (81, 263, 0.2553, 0.3662),
        (15, 148, 0.0624, 0.1605),
        (1, 29, 0.0061, 0.1718),
    ],
)
def test_wilson_matches_published_values(k, n, low, high):
    r = proportion(k, n)
    assert (r.k, r.n) == (k, n)
    assert r.rate == pytest.approx(k / n)
    assert r.low == pytest.approx(low, abs=5e-5)
    assert r.high == pytest.approx(high, abs=5e-5)


@pytest.mark.parametrize(
    "k, n",
    [
        (1, 2),
        (1, 10),
        (5, 10),
        (9, 10),
        (3, 1000),
        (500, 1000),
        (997, 1000),
        (12345, 67890),
        (1, 10_000_000),
        (9_999_999, 10_000_000),
    ],
)
@pytest.mark.parametrize("confidence", CONFIDENCES)
def test_wilson_is_scipys(k, n, confidence):
    ci = binomtest(k, n).proportion_ci(confidence_level=confidence, method="wilson")
    r = proportion(k, n, confidence)
    assert r.low == pytest.approx(ci.low, rel=1e-9, abs=1e-15)
    assert r.high == pytest.approx(ci.high, rel=1e-9, abs=1e-15)
    assert r.low < r.rate < r.high
    assert r.half_width == pytest.approx((ci.high - ci.low) / 2, rel=1e-9)


def test_wilson_is_scipys_for_every_k_of_a_small_campaign():
    for n in (2, 3, 7, 40, 263):
        for k in range(1, n):
            ci = binomtest(k, n).proportion_ci(method="wilson")
            r = proportion(k, n)
            assert (r.low, r.high) == (pytest.approx(ci.low, rel=1e-9), pytest.approx(ci.high, rel=1e-9)), (k, n)


def test_wilson_is_symmetric_in_successes_and_failures():
    a, b = proportion(7, 40), proportion(33, 40)
    assert a.low == pytest.approx(1 - b.high, abs=1e-12)
    assert a.high == pytest.approx(1 - b.low, abs=1e-12)


def test_higher_confidence_gives_wider_interval():
    assert (
        proportion(30, 100, 0.99).half_width
        > proportion(30, 100, 0.95).half_width
        > proportion(30, 100, 0.90).half_width
    )


# --- proportion: Clopper-Pearson at the edges ---------------------------------------------------


@pytest.mark.parametrize("n", [1, 5, 20, 263, 10_000, 10_000_000])
@pytest.mark.parametrize("confidence", CONFIDENCES)
def test_zero_successes_is_scipys_exact_interval(n, confidence):
    ci = binomtest(0, n).proportion_ci(confidence_level=confidence, method="exact")
    r = proportion(0, n, confidence)
    assert (r.rate, r.low) == (0.0, 0.0) and ci.low == 0.0
    assert r.high == pytest.approx(ci.high, rel=1e-12)
    # the defining property: P(X = 0 | p = high) = alpha / 2
    assert (1 - r.high) ** n == pytest.approx((1 - confidence) / 2, rel=1e-9)


@pytest.mark.parametrize("n", [1, 5, 20, 263, 10_000, 10_000_000])
@pytest.mark.parametrize("confidence", CONFIDENCES)
def test_all_successes_is_scipys_exact_interval(n, confidence):
    ci = binomtest(n, n).proportion_ci(confidence_level=confidence, method="exact")
    r = proportion(n, n, confidence)
    assert (r.rate, r.high) == (1.0, 1.0) and ci.high == 1.0
    assert r.low == pytest.approx(ci.low, rel=1e-12)
    assert r.low**n == pytest.approx((1 - confidence) / 2, rel=1e-9)


def test_clopper_pearson_published_value_zero_of_twenty():
    # Newcombe (1998) Table I, 0/20, exact method: 0.0000 - 0.1684
    r = proportion(0, 20)
    assert r.high == pytest.approx(0.1684, abs=5e-5)


def test_no_trials_gives_nan_rate_and_uninformative_interval():
    r = proportion(0, 0)
    assert isinstance(r, Rate)
    assert (r.k, r.n) == (0, 0)
    assert math.isnan(r.rate)
    assert (r.low, r.high) == (0.0, 1.0)


@pytest.mark.parametrize("k, n", [(-1, 10), (11, 10), (1, 0), (0, -1)])
def test_invalid_counts_raise(k, n):
    with pytest.raises(ValueError):
        proportion(k, n)


# --- rate_ratio (Katz) --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "k1, n1, k2, n2",
    [
        (30, 100, 10, 100),
        (45, 1200, 20, 800),
        (1, 50, 1, 60),
        (213, 2000, 7, 2000),
        (421, 4000, 91, 4000),
        (5, 5, 1, 9),
    ],
)
@pytest.mark.parametrize("confidence", CONFIDENCES)
def test_rate_ratio_is_scipys_relative_risk(k1, n1, k2, n2, confidence):
    """scipy's relative_risk interval is the log-scale (Katz) one."""
    ref = relative_risk(k1, n1, k2, n2)
    ci = ref.confidence_interval(confidence_level=confidence)
    r = rate_ratio(k1, n1, k2, n2, confidence)
    assert isinstance(r, Ratio) and not r.corrected
    assert r.value == pytest.approx(ref.relative_risk, rel=1e-12)
    assert r.low == pytest.approx(ci.low, rel=1e-9)
    assert r.high == pytest.approx(ci.high, rel=1e-9)
    # the interval is symmetric on the log scale
    assert math.log(r.value) - math.log(r.low) == pytest.approx(math.log(r.high) - math.log(r.value))


def test_rate_ratio_rounded_values():
    r = rate_ratio(30, 100, 10, 100)
    assert r.value == pytest.approx(3.0)
    assert r.low == pytest.approx(1.5511, abs=1e-3) and r.high == pytest.approx(5.8024, abs=1e-3)
    assert r.significant


@pytest.mark.parametrize("k1, k2", [(0, 5), (7, 0)])
def test_zero_count_is_corrected_and_flagged(k1, k2):
    """0.5 added to each k and n (scipy has no such correction): the Katz interval of the
    corrected counts, with scipy's normal quantile."""
    n1, n2 = 50, 60
    r = rate_ratio(k1, n1, k2, n2)
    assert r.corrected
    a, b, m1, m2 = k1 + 0.5, k2 + 0.5, n1 + 0.5, n2 + 0.5
    value = (a / m1) / (b / m2)
    se = math.sqrt(1 / a - 1 / m1 + 1 / b - 1 / m2)
    assert math.isfinite(r.value) and r.value > 0
    assert r.value == pytest.approx(value)
    assert r.low == pytest.approx(value * math.exp(-norm.ppf(0.975) * se))
    assert r.high == pytest.approx(value * math.exp(norm.ppf(0.975) * se))


def test_no_zero_count_is_not_corrected():
    assert not rate_ratio(1, 50, 1, 60).corrected


@pytest.mark.parametrize("args", [(0, 0, 3, 10), (3, 10, 0, 0), (0, 10, 0, 20)])
def test_undefined_ratio_is_nan_and_not_significant(args):
    r = rate_ratio(*args)
    assert math.isnan(r.value) and math.isnan(r.low) and math.isnan(r.high)
    assert not r.corrected
    # no information can never be a significant difference
    assert r.significant is False


def test_significant_means_interval_excludes_one():
    assert Ratio(2.0, 1.2, 3.0, False).significant
    assert Ratio(0.5, 0.3, 0.9, False).significant
    assert not Ratio(1.5, 0.9, 2.5, False).significant
    assert not Ratio(1.5, 1.0, 2.5, False).significant  # 1 on the boundary is inside
    assert not Ratio(0.7, 0.4, 1.0, False).significant
    # with real counts: clearly different vs. nearly equal rates
    assert rate_ratio(60, 200, 20, 200).significant
    assert not rate_ratio(20, 200, 22, 200).significant


# --- sample_size (Leveugle et al., DATE 2009) ---------------------------------------------------


@pytest.mark.parametrize("margin, expected", [(0.01, 9604), (0.02, 2401), (0.05, 385), (0.03, 1068)])
def test_infinite_population(margin, expected):
    assert sample_size(math.inf, margin) == expected
    assert expected == math.ceil(Z95**2 * 0.25 / margin**2)  # Leveugle et al.'s n = t^2 p (1 - p) / e^2


def test_infinite_population_other_confidence_and_p():
    assert sample_size(math.inf, 0.01, confidence=0.99) == math.ceil(Z99**2 * 0.25 / 0.01**2) == 16588
    assert sample_size(math.inf, 0.01, p=0.1) == math.ceil(Z95**2 * 0.09 / 0.01**2)


@pytest.mark.parametrize("population", [1e6, 5e4, 1e4, 2000])
def test_finite_population_formula_and_is_smaller(population):
    e, t = 0.01, Z95
    expected = math.ceil(population / (1 + e * e * (population - 1) / (t * t * 0.25)))
    n = sample_size(population, e)
    assert n == expected
    assert n < sample_size(math.inf, e)
    assert n <= population


def test_known_finite_value():
    # N = 1e6, e = 1 %, 95 %: 1e6 / (1 + 1e-4 * 999999 / 0.9604) = 9512.5... -> 9513
    assert sample_size(1e6, 0.01) == 9513


@pytest.mark.parametrize("population", [1, 2, 3, 10, 50, 100, 385, 1000])
@pytest.mark.parametrize("margin", [0.001, 0.01, 0.05, 0.2])
def test_never_more_than_the_population(population, margin):
    n = sample_size(population, margin)
    assert 1 <= n <= population


def test_grows_with_population_towards_the_infinite_value():
    sizes = [sample_size(N, 0.01) for N in (10, 100, 1000, 10_000, 100_000, 10_000_000)]
    assert sizes == sorted(sizes)
    assert sizes[-1] <= 9604 and sizes[-1] >= 9590
    assert sample_size(10, 0.01) == 10  # a tiny population must be enumerated
