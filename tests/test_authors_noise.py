"""`evaluate --noise authors-2022`: DieHardNET's test-time noise, quirk by quirk
(models/authors_noise.py lists them with their source lines), on small real tensors and the
real zoo ResNet-20."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fi_campaign.models import authors_noise as an
from fi_campaign.models.faults import Injector, describe_layers
from fi_campaign.models.powerlaw import PowerLaw

DRAWS = 4000


def binomial_close(hits: int, n: int, p: float) -> None:
    """Within five standard deviations of a binomial(n, p) count."""
    assert abs(hits - n * p) <= 5 * math.sqrt(n * p * (1 - p)) + 1, (hits, n, p)


@pytest.fixture(scope="module")
def resnet20():
    from fi_campaign.models import data, zoo

    model, _ = zoo.load("zoo:resnet20-cifar10-baseline", device="cpu")
    images = data.load("bundled", "test")
    x = data.normalise(images.images, images.dataset)
    return model.eval(), x, torch.from_numpy(images.labels)


def channels_hit(mask: np.ndarray) -> np.ndarray:
    return np.asarray(mask.reshape(mask.shape[0], -1).any(axis=1))


def test_the_square_is_in_every_channel_or_in_none():
    rng = np.random.default_rng(1)
    every = 0
    for _ in range(DRAWS):
        mask = an.square_mask((2, 6, 7), rng)
        hit = channels_hit(mask)
        assert hit.all() or not hit.any()  # never the 30% of channels the draw was meant to pick
        if hit.all():
            every += 1
            assert (mask == mask[0]).all()  # the same rectangle in each
            rows, cols = np.flatnonzero(mask[0].any(1)), np.flatnonzero(mask[0].any(0))
            assert mask[0].sum() == len(rows) * len(cols)  # a rectangle
            assert np.array_equal(rows, np.arange(rows[0], rows[-1] + 1)) and rows[0] <= 6 - 2
            assert np.array_equal(cols, np.arange(cols[0], cols[-1] + 1)) and cols[0] <= 7 - 2
    binomial_close(every, DRAWS, 1 - 0.7**2)
    assert channels_hit(an.square_mask((16, 8, 8), np.random.default_rng(0))).all()  # 1 - 0.7^16 = 0.997


def test_the_whole_layer_is_hit_with_probability_one_minus_0_9_to_the_channels():
    rng = np.random.default_rng(2)
    whole = 0
    for _ in range(DRAWS):
        mask = an.whole_mask((4, 3, 3), rng)
        assert mask.all() or not mask.any()
        whole += int(mask.all())
    binomial_close(whole, DRAWS, 1 - 0.9**4)


def test_a_line_is_one_row_or_column_in_about_three_channels_of_four():
    rng = np.random.default_rng(3)
    channels = rows = 0
    for _ in range(DRAWS):
        mask = an.line_mask((8, 5, 5), rng)
        hit = channels_hit(mask)
        channels += int(hit.sum())
        planes = mask[hit]
        if len(planes):
            assert (planes == planes[0]).all()
            full_rows, full_cols = planes[0].all(1).sum(), planes[0].all(0).sum()
            assert planes[0].sum() == 5 and full_rows + full_cols == 1
            rows += int(full_rows)
    binomial_close(channels, 8 * DRAWS, 0.75)
    assert 0.45 < rows / DRAWS < 0.55


def test_the_law_parameters_are_read_swapped():
    r = np.array([0.0, 0.3, 0.9, 0.999])
    # law 7 is stored as x_min 2.0, alpha 1.4543958: read as alpha 2.0, x_min 1.4543958
    assert an.LAWS[7] == (2.0, 1.4543958)
    assert [an.factor(7, float(u)) for u in r] == pytest.approx(1.4543958 / (1 - r), rel=1e-12)
    assert an.factor(7, 0.0) < PowerLaw(2.0, 1.4543958).sample(np.array([0.0]))[0]  # the law as stored gives 2.0
    # law 18, x_min 0 and alpha 1.08212 as stored: an exponent of +1, so F = 1.08212 (1 - r)
    assert [an.factor(18, float(u)) for u in r] == pytest.approx(1.08212 * (1 - r), rel=1e-12)
    for law, (x_min, alpha) in enumerate(an.LAWS):
        expect = PowerLaw(x_min=alpha, alpha=x_min).sample(r)
        assert [an.factor(law, float(u)) for u in r] == pytest.approx(expect, rel=1e-9)


def test_the_magnitude_is_a_plain_factor_below_one_about_half_the_time():
    rng = np.random.default_rng(4)
    f = np.array([an.factor(int(rng.integers(len(an.LAWS))), float(rng.random())) for _ in range(40_000)])
    assert (f > 0).all()  # no sign
    assert 0.45 < an.p_below_one() < 0.55
    binomial_close(int((f < 1).sum()), len(f), an.p_below_one())

    x = torch.tensor([[[[2.0, -3.0], [0.5, 4.0]]]])  # one image, one channel, 2 x 2
    fault = an.SharedFault(layer=0, geometry="whole", law=0, factor=0.25, mask=np.ones((1, 2, 2), bool))
    assert torch.equal(fault.apply(0, x), x * 0.25)  # x -> F x, not x (1 + r)
    assert fault.apply(1, x) is x  # another layer is left alone


def test_the_linear_factor_is_applied_twice(resnet20):
    model, x, _ = resnet20
    layers = describe_layers(model)
    fc = len(layers) - 1
    assert layers[fc].kind == "linear"
    mask = np.zeros(10, bool)
    mask[[1, 4, 7]] = True
    injector = Injector(model)
    try:
        with torch.inference_mode():
            clean = model(x[:8])
            with injector.armed(an.SharedFault(layer=fc, geometry=an.LINEAR, law=0, factor=3.0, mask=mask)):
                faulty = model(x[:8])
    finally:
        injector.remove()
    assert torch.allclose(faulty[:, mask], clean[:, mask] * 9, rtol=1e-6)
    assert torch.equal(faulty[:, ~mask], clean[:, ~mask])
    hit = 0
    rng = np.random.default_rng(5)
    for _ in range(DRAWS // 10):
        fault = an.draw(layers, rng)
        assert fault.geometry == (an.LINEAR if fault.layer == fc else fault.geometry)
        assert fault.geometry in (an.LINEAR, *an.GEOMETRIES)
        assert fault.mask.shape == layers[fault.layer].shape
        if fault.layer == fc:
            hit += int(fault.mask.sum())
    assert hit > 0


def test_every_image_of_a_batch_carries_the_same_fault(resnet20):
    model, x, _ = resnet20
    layers = describe_layers(model)
    rng = np.random.default_rng(6)
    batch = torch.cat([x[:3], x[:1].expand(3, -1, -1, -1)])  # image 0 four times, then 1 and 2
    injector = Injector(model)
    changed = 0
    try:
        with torch.inference_mode():
            clean = model(batch)
            for _ in range(20):
                fault = an.draw(layers, rng)
                with injector.armed(fault):
                    together = model(batch)
                    alone = torch.cat([model(batch[i : i + 1]) for i in range(3)])
                assert torch.equal(together[0].expand(3, -1), together[3:])  # the same image, the same fault
                scale = float(clean.abs().max()) + float(together.nan_to_num(0, 0, 0).abs().max())
                assert torch.allclose(together[:3], alone, rtol=1e-4, atol=1e-4 * scale, equal_nan=True)
                changed += int(not torch.equal(together, clean))
    finally:
        injector.remove()
    assert changed > 0


def test_one_fault_per_batch_of_200_and_repeats_are_independent_passes(resnet20, monkeypatch):
    model, x, y = resnet20
    drawn: list[an.SharedFault] = []
    rows: list[int] = []
    real_draw, real_apply = an.draw, an.SharedFault.apply

    def counting_draw(layers, rng):
        drawn.append(real_draw(layers, rng))
        return drawn[-1]

    def counting_apply(self, layer, out):
        if layer == self.layer:
            rows.append(out.shape[0])
        return real_apply(self, layer, out)

    monkeypatch.setattr(an, "draw", counting_draw)
    monkeypatch.setattr(an.SharedFault, "apply", counting_apply)
    r = an.evaluate(model, x[:250], y[:250], repeats=3, seed=7)
    assert len(drawn) == 2 * 3  # 250 images: batches of 200 and 50, per pass
    assert rows == [200, 50] * 3
    assert {f.layer for f in drawn} <= set(range(20))
    assert (r.images, r.repeats) == (250, 3)
    assert r.regret == pytest.approx(r.clean - r.noisy, abs=1e-12)
    assert 0 <= r.noisy_low <= r.noisy <= r.noisy_high <= 1
    assert r.regret_low <= r.regret <= r.regret_high
    seeded = [an.evaluate(model, x[:20], y[:20], repeats=2, seed=7) for _ in range(2)]
    assert seeded[0] == seeded[1]
    one = an.evaluate(model, x[:20], y[:20], repeats=1, seed=7)
    assert math.isnan(one.noisy_low) and math.isnan(one.regret_high)


def test_the_interval_is_a_t_interval_over_repetitions():
    m, low, high = an.t_interval(np.array([0.5, 0.6, 0.7]), 0.0, 1.0)
    half = 4.302652729911275 * 0.1 / math.sqrt(3)  # t quantile 0.975 with 2 degrees of freedom
    assert (m, low, high) == pytest.approx((0.6, 0.6 - half, 0.6 + half), rel=1e-9)
    assert an.t_interval(np.array([0.9, 1.0]), 0.0, 1.0)[2] == 1.0  # cut to what an accuracy can be
