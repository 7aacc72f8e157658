"""models.faults BitFlips / WarpValues through the Injector, and the models.powerlaw sampler."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from fi_campaign.models.faults import WARP, BitFlips, Injector, LayerInfo, WarpValues, describe_layers, warp_geometry
from fi_campaign.models.powerlaw import FLT_MAX, OPS, SIZES, TABLES, PowerLaw, TableError, entry, size_bucket
from fi_campaign.models.resnet import Arch, BasicBlock, build, injectable_layers

torch.manual_seed(0)


def bits(t: torch.Tensor) -> np.ndarray:
    """uint32 IEEE-754 patterns of a float32 tensor."""
    return t.detach().contiguous().numpy().view(np.uint32)


def f32(pattern: int) -> float:
    return float(np.array([pattern], np.uint32).view(np.float32)[0])


def identity_linear(n: int) -> nn.Sequential:
    """A model whose only injectable layer returns its input exactly."""
    lin = nn.Linear(n, n, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.eye(n))
    return nn.Sequential(lin).eval()


def identity_conv(c: int) -> nn.Sequential:
    conv = nn.Conv2d(c, c, 1, groups=c, bias=False)
    with torch.no_grad():
        conv.weight.fill_(1.0)
    return nn.Sequential(conv).eval()


def run(model: nn.Module, x: torch.Tensor, batch=None) -> torch.Tensor:
    inj = Injector(model)
    try:
        with torch.no_grad():
            if batch is None:
                return model(x).clone()
            with inj.armed(batch):
                return model(x).clone()
    finally:
        inj.remove()


# --- BitFlips: exact IEEE-754 patterns ---------------------------------------------------------


def test_identity_model_returns_its_input_bit_for_bit():
    x = torch.tensor([[1.0, 2.0, -3.5, 0.25, 7.0, 1.0]] * 3)
    assert np.array_equal(bits(run(identity_linear(6), x)), bits(x))


@pytest.mark.parametrize(
    "value, bit, pattern, expected",
    [
        (1.0, 30, 0x7F800000, math.inf),  # 0x3F800000 ^ 1<<30: exponent all ones -> +inf
        (1.0, 31, 0xBF800000, -1.0),  # sign
        (1.0, 0, 0x3F800001, 1.0000001192092896),  # lowest mantissa bit: 1 + 2^-23
        (1.0, 23, 0x3F000000, 0.5),  # lowest exponent bit: 127 -> 126
        (1.0, 22, 0x3FC00000, 1.5),  # highest mantissa bit
        (2.0, 30, 0x00000000, 0.0),  # 0x40000000 ^ 1<<30
        (2.0, 23, 0x40800000, 4.0),  # exponent 128 -> 129
        (-3.5, 31, 0x40600000, 3.5),
    ],
)
def test_single_bit_flip_patterns(value, bit, pattern, expected):
    x = torch.tensor(
        [[0.5, -2.0, 3.0, 4.0, 5.0, 6.0], [0.75, 1.25, 8.0, 9.0, 10.0, 11.0], [12.0, 13.0, 14.0, 15.0, 16.0, 17.0]]
    )
    x[1, 3] = value
    model = identity_linear(6)
    golden = run(model, x)
    faulty = run(model, x, BitFlips.one(layer=0, element=3, bit=bit, row=1))

    assert bits(golden)[1, 3] ^ (1 << bit) == pattern
    assert bits(faulty)[1, 3] == pattern
    got = faulty[1, 3].item()
    assert got == expected and math.copysign(1, got) == math.copysign(1, expected)
    # only that element of that row changed
    diff = bits(faulty) != bits(golden)
    assert diff.sum() == 1 and diff[1, 3]


@pytest.mark.parametrize("bit", range(32))
def test_every_bit_xors_exactly_that_bit(bit):
    x = torch.tensor([[1.7, -0.3, 42.0, 1e-20]])
    model = identity_linear(4)
    golden = bits(run(model, x))
    faulty = bits(run(model, x, BitFlips.one(0, element=2, bit=bit)))
    assert (faulty ^ golden).tolist() == [[0, 0, 1 << bit, 0]]


def test_conv_output_element_index_is_chw_order():
    model = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1)).eval()
    x = torch.randn(4, 2, 5, 6)
    c, h, w = 2, 1, 4
    element = c * 5 * 6 + h * 6 + w
    golden = run(model, x)
    faulty = run(model, x, BitFlips.one(0, element=element, bit=31, row=2))
    diff = np.argwhere(bits(faulty) != bits(golden))
    assert diff.tolist() == [[2, c, h, w]]
    assert faulty[2, c, h, w].item() == -golden[2, c, h, w].item()
    assert (bits(faulty)[2, c, h, w] ^ bits(golden)[2, c, h, w]) == 0x80000000


def test_each_row_gets_its_own_fault_at_its_own_layer():
    model = nn.Sequential(identity_linear(4)[0], nn.ReLU(), identity_linear(4)[0]).eval()
    x = torch.tensor([[1.0, 2.0, 3.0, 4.0]] * 4)
    batch = BitFlips(
        layers=np.array([1, 0, 1]),  # injectable layer index: 0 = first Linear, 1 = second
        rows=np.array([0, 2, 3]),
        elements=np.array([3, 0, 1]),
        bits=np.array([31, 22, 23]),
    )
    y = run(model, x, batch)
    expected = x.clone()
    expected[0, 3] = -4.0  # sign flipped after the ReLU, so it survives
    expected[2, 0] = 1.5  # 1.0 with mantissa bit 22 set, passes ReLU and identity
    expected[3, 1] = 4.0  # 2.0 = 0x40000000 ^ 0x00800000 = 0x40800000
    assert np.array_equal(bits(y), bits(expected))


def test_sign_flip_at_first_layer_is_stopped_by_relu():
    model = nn.Sequential(identity_linear(4)[0], nn.ReLU(), identity_linear(4)[0]).eval()
    x = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    y = run(model, x, BitFlips.one(0, element=1, bit=31))
    assert y.tolist() == [[1.0, 0.0, 3.0, 4.0]]


def test_faulty_row_does_not_leak_into_other_rows_of_a_resnet():
    torch.manual_seed(1)
    model = build(Arch(20)).eval()
    x = torch.randn(3, 3, 32, 32)
    seen: dict[str, torch.Tensor] = {}
    block = model.blocks[1]
    assert isinstance(block, BasicBlock)
    h = block.unit1[0].register_forward_hook(lambda m, i, o: seen.setdefault("out", o.detach().clone()))
    golden = run(model, x)
    h.remove()
    # an element in (0, 2): bit 30 multiplies it by 2^128 and ReLU lets it through
    out1 = seen["out"][1].flatten()
    element = int(torch.nonzero((out1 > 0) & (out1 < 2))[0])
    layer = [name for name, _ in injectable_layers(model)].index("blocks.1.unit1.0")
    faulty = run(model, x, BitFlips.one(layer=layer, element=element, bit=30, row=1))
    assert np.array_equal(bits(faulty[[0, 2]]), bits(golden[[0, 2]]))
    assert not np.array_equal(bits(faulty[1]), bits(golden[1]))


def test_unarmed_and_removed_injector_is_inert():
    model = identity_linear(3)
    x = torch.tensor([[1.0, 2.0, 3.0]])
    inj = Injector(model)
    with torch.no_grad():
        assert model(x).tolist() == x.tolist()
        with inj.armed(BitFlips.one(0, 0, 31)):
            assert model(x).tolist() == [[-1.0, 2.0, 3.0]]
        assert model(x).tolist() == x.tolist()  # disarmed on exit
        with pytest.raises(RuntimeError):
            with inj.armed(BitFlips.one(0, 0, 31)):
                raise RuntimeError("boom")
        assert inj.batch is None
        inj.remove()
        inj.batch = BitFlips.one(0, 0, 31)
        assert model(x).tolist() == x.tolist()  # hooks gone


def test_fault_for_another_layer_changes_nothing():
    model = identity_linear(4)
    x = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    assert run(model, x, BitFlips.one(layer=3, element=0, bit=30)).tolist() == x.tolist()


# --- WarpValues -------------------------------------------------------------------------------


FFMA_COMMON = entry("dsn2021-fu", "FFMA", "common")  # (2.0, 1.4543958): r >= 2, so |factor| >= 1


def expected_warp(old: np.ndarray, u: np.ndarray, signs: np.ndarray, law: PowerLaw) -> np.ndarray:
    r = law.sample(u)
    return (old.astype(np.float64) * (1.0 + signs * r)).astype(np.float32)


def test_warp_changes_one_32_wide_row_of_one_sample():
    rng = np.random.default_rng(3)
    x = torch.from_numpy(rng.uniform(0.5, 2.0, size=(3, 2, 32, 32)).astype(np.float32))
    model = identity_conv(2)
    c, h = 1, 5
    start = c * 32 * 32 + h * 32
    u = rng.random((1, WARP))
    signs = rng.choice([-1.0, 1.0], size=(1, WARP))
    batch = WarpValues(
        np.array([0]),
        np.array([1]),
        np.array([start]),
        np.array([WARP]),
        u,
        signs,
        (FFMA_COMMON, FFMA_COMMON, FFMA_COMMON),
    )
    golden = run(model, x)
    faulty = run(model, x, batch)

    changed = bits(faulty) != bits(golden)
    assert changed.sum() == WARP
    assert changed[1, c, h, :].all()  # the whole row of the 32-wide plane
    assert np.array_equal(bits(faulty[[0, 2]]), bits(golden[[0, 2]]))

    want = expected_warp(golden[1, c, h].numpy(), u[0], signs[0], FFMA_COMMON)
    assert np.array_equal(faulty[1, c, h].numpy(), want)
    # and independently of PowerLaw.sample: r = x_min (1-u)^(-1/(alpha-1))
    r = 2.0 * (1.0 - u[0]) ** (-1.0 / (1.4543958 - 1.0))
    np.testing.assert_allclose(faulty[1, c, h].numpy(), golden[1, c, h].numpy() * (1 + signs[0] * r), rtol=1e-6)
    ratio = faulty[1, c, h].numpy().astype(np.float64) / golden[1, c, h].numpy()
    assert np.all(np.abs(ratio - 1) >= 2.0 * (1 - 1e-6))  # |s r| >= x_min


def test_warp_on_a_16_wide_plane_spans_two_rows():
    rng = np.random.default_rng(4)
    x = torch.from_numpy(rng.uniform(0.5, 2.0, size=(2, 1, 16, 16)).astype(np.float32))
    model = identity_conv(1)
    info = describe_layers(model, (1, 16, 16))[0]
    assert info.warps == 8
    start, width = warp_geometry(info, 3)
    assert (start, width) == (96, 32)
    u, signs = rng.random((1, WARP)), np.ones((1, WARP))
    batch = WarpValues(np.array([0]), np.array([0]), np.array([start]), np.array([width]), u, signs, (FFMA_COMMON,) * 3)
    golden, faulty = run(model, x), run(model, x, batch)
    changed = bits(faulty) != bits(golden)
    assert np.argwhere(changed[0, 0]).tolist() == [[r, c] for r in (6, 7) for c in range(16)]
    assert not changed[1].any()


def test_short_linear_warp_changes_only_its_lanes():
    torch.manual_seed(5)
    model = nn.Sequential(nn.Linear(8, 10)).eval()
    x = torch.randn(4, 8)
    info = describe_layers(model, (8,))[0]
    assert (info.kind, info.shape, info.numel, info.warps) == ("linear", (10,), 10, 1)
    start, width = warp_geometry(info, 0)
    assert (start, width) == (0, 10)
    rng = np.random.default_rng(6)
    u, signs = rng.random((1, WARP)), rng.choice([-1.0, 1.0], size=(1, WARP))
    batch = WarpValues(np.array([0]), np.array([2]), np.array([start]), np.array([width]), u, signs, (FFMA_COMMON,) * 3)
    golden, faulty = run(model, x), run(model, x, batch)
    assert faulty.shape == (4, 10)
    assert np.array_equal(bits(faulty[[0, 1, 3]]), bits(golden[[0, 1, 3]]))
    want = expected_warp(golden[2].numpy(), u[0, :10], signs[0, :10], FFMA_COMMON)
    assert np.array_equal(faulty[2].numpy(), want)
    assert (bits(faulty[2]) != bits(golden[2])).all()


def test_partial_last_warp_of_a_linear_layer():
    model = identity_linear(40)
    x = torch.arange(1, 41, dtype=torch.float32).repeat(2, 1)
    info = describe_layers(model, (40,))[0]
    assert info.warps == 2
    start, width = warp_geometry(info, 1)
    assert (start, width) == (32, 8)
    u, signs = np.zeros((1, WARP)), np.ones((1, WARP))  # u = 0: r = x_min exactly
    law = PowerLaw(0.5, 3.0)
    y = run(model, x, WarpValues(np.array([0]), np.array([1]), np.array([32]), np.array([8]), u, signs, (law,) * 3))
    assert y[0].tolist() == x[0].tolist()
    assert y[1, :32].tolist() == x[1, :32].tolist()
    assert y[1, 32:].tolist() == (x[1, 32:] * 1.5).tolist()


def test_warp_by_value_uses_each_lanes_size_bucket():
    values = [1e-4, -5e-4, 0.5, -2.0, 5e3, -7e3, 1e-3, 1e3]
    x = torch.tensor([values] * 2, dtype=torch.float32)
    model = identity_linear(len(values))
    laws = (PowerLaw(1.0, 3.0), PowerLaw(10.0, 3.0), PowerLaw(100.0, 3.0))
    u, signs = np.zeros((1, WARP)), np.ones((1, WARP))  # r = x_min of the lane's law

    def warp(by_value: bool) -> WarpValues:
        return WarpValues(
            np.array([0]), np.array([0]), np.array([0]), np.array([len(values)]), u, signs, laws, by_value=by_value
        )

    old = np.array(values, np.float32).astype(np.float64)
    factor = np.array([2.0, 2.0, 11.0, 11.0, 101.0, 101.0, 11.0, 11.0])  # 1 + x_min(small/common/big)
    y = run(model, x, warp(True))
    assert np.array_equal(y[0].numpy(), (old * factor).astype(np.float32))
    assert y[1].tolist() == x[1].tolist()
    # without by_value every lane uses the common law
    y = run(model, x, warp(False))
    assert np.array_equal(y[0].numpy(), (old * 11.0).astype(np.float32))


def test_warp_replays_identically():
    rng = np.random.default_rng(7)
    x = torch.from_numpy(rng.standard_normal((2, 1, 8, 8)).astype(np.float32))
    model = identity_conv(1)
    batch = WarpValues(
        np.array([0, 0]),
        np.array([0, 1]),
        np.array([0, 32]),
        np.array([32, 32]),
        rng.random((2, WARP)),
        rng.choice([-1.0, 1.0], size=(2, WARP)),
        (FFMA_COMMON,) * 3,
    )
    a, b = run(model, x, batch), run(model, x, batch)
    assert np.array_equal(bits(a), bits(b))
    changed = bits(a) != bits(run(model, x))
    assert changed[0, 0, :4].all() and not changed[0, 0, 4:].any()  # 4x8 tile: rows 0-3 of sample 0
    assert changed[1, 0, 4:].all() and not changed[1, 0, :4].any()  # rows 4-7 of sample 1


@pytest.mark.parametrize("kind", ["bit", "warp"])
def test_rows_in_any_layer_order_get_what_each_gets_alone(kind):
    """A batch finds each layer's rows once and draws every row's lane errors at once: any
    interleaving of layers must give each row the bits it gets as the only fault of a pass."""
    rng = np.random.default_rng(11)
    n = 12
    model = nn.Sequential(*(identity_linear(WARP)[0] for _ in range(3))).eval()
    x = torch.from_numpy(rng.standard_normal((n, WARP)).astype(np.float32))
    layers, rows = rng.integers(0, 3, n), rng.permutation(n)
    elements = rng.integers(0, WARP, n)
    u, signs = rng.random((n, WARP)), rng.choice([-1.0, 1.0], size=(n, WARP))

    def batch(sel: np.ndarray):
        if kind == "bit":
            return BitFlips(layers[sel], rows[sel], elements[sel], rng_bits[sel])
        return WarpValues(
            layers[sel],
            rows[sel],
            np.zeros(len(sel), np.int64),
            np.full(len(sel), WARP),
            u[sel],
            signs[sel],
            (FFMA_COMMON,) * 3,
        )

    rng_bits = rng.integers(0, 23, n)  # mantissa bits: the value stays finite through later layers
    together = run(model, x, batch(np.arange(n)))
    for i in range(n):
        alone = run(model, x, batch(np.array([i])))
        r = rows[i]
        assert np.array_equal(bits(together[r]), bits(alone[r]))
        assert not np.array_equal(bits(alone[r]), bits(x[r]))


def test_warp_geometry_and_layerinfo_warps():
    info = LayerInfo(0, "x", "conv", (2, 32, 32), 2048, 0)
    assert info.warps == 64
    assert warp_geometry(info, 0) == (0, 32)
    assert warp_geometry(info, 63) == (2016, 32)
    info = LayerInfo(0, "fc", "linear", (100,), 100, 0)
    assert info.warps == 4
    assert warp_geometry(info, 3) == (96, 4)


# --- PowerLaw.sample --------------------------------------------------------------------------


N_SAMPLES = 200_000


@pytest.mark.parametrize("x_min, alpha", [(2.0, 1.4543958), (3.0, 1.0411011754028192), (0.61141304, 3.4316596)])
def test_sample_follows_the_power_law_cdf(x_min, alpha):
    rng = np.random.default_rng(2021)
    x = np.sort(PowerLaw(x_min, alpha).sample(rng.random(N_SAMPLES)))
    assert x[0] >= x_min
    cdf = 1.0 - (x / x_min) ** (1.0 - alpha)
    i = np.arange(1, N_SAMPLES + 1)
    ks = max(np.max(i / N_SAMPLES - cdf), np.max(cdf - (i - 1) / N_SAMPLES))
    # Kolmogorov critical value at the 1 % level: 1.63 / sqrt(n)
    assert ks < 1.63 / math.sqrt(N_SAMPLES)


@pytest.mark.parametrize("x_min, alpha", [(2.0, 1.4543958), (0.61141304, 3.4316596)])
def test_sample_mle_recovers_alpha(x_min, alpha):
    rng = np.random.default_rng(1208)
    x = PowerLaw(x_min, alpha).sample(rng.random(N_SAMPLES))
    alpha_hat = 1.0 + N_SAMPLES / np.sum(np.log(x / x_min))
    se = (alpha - 1.0) / math.sqrt(N_SAMPLES)
    assert abs(alpha_hat - alpha) < 3 * se


def test_swapped_parameters_would_be_detected():
    # DieHardNET unpacks (x_min, alpha) swapped; the KS check above would catch that
    rng = np.random.default_rng(0)
    x = np.sort(PowerLaw(1.4543958, 2.0).sample(rng.random(20_000)))
    cdf = 1.0 - np.clip(x / 2.0, 1.0, None) ** (1.0 - 1.4543958)
    i = np.arange(1, x.size + 1)
    assert np.max(np.abs(i / x.size - cdf)) > 1.63 / math.sqrt(x.size)


def test_sample_endpoints():
    law = PowerLaw(2.0, 1.4543958)
    assert law.sample(np.array([0.0]))[0] == 2.0  # u = 0 -> x_min
    assert law.sample(np.array([0.5]))[0] == pytest.approx(2.0 * 0.5 ** (-1 / 0.4543958))
    u = np.linspace(0, 0.999, 101)
    assert np.all(np.diff(law.sample(u)) > 0)  # increasing in u
    assert law.sample(np.array([1.0]))[0] == law.sample(np.array([np.nextafter(1.0, 0.0)]))[0]


def test_huge_alpha_gives_x_min():
    law = entry("dsn2021-fu", "IMAD", "small")  # alpha ~ 1.2e8
    r = law.sample(np.random.default_rng(0).random(1000))
    np.testing.assert_allclose(r, 0.75, rtol=1e-6)


NORMAL_ENTRIES = [
    (t, op, s) for t in TABLES for op in OPS for s in SIZES if entry(t, op, s).degenerate_reason() is None
]


@pytest.mark.parametrize("table, op, size", NORMAL_ENTRIES)
def test_sample_never_infinite(table, op, size):
    law = entry(table, op, size)
    u = np.array([0.0, 0.5, 0.999999, 1 - 1e-9, 1 - 1e-12, 1 - 1e-15, np.nextafter(1.0, 0.0), 1.0])
    r = law.sample(u)
    assert np.all(np.isfinite(r)), r
    assert np.all(r >= law.x_min)
    assert np.all(np.diff(r) >= 0)


def test_sample_keeps_shape():
    r = PowerLaw(2.0, 1.4543958).sample(np.random.default_rng(0).random((5, 32)))
    assert r.shape == (5, 32) and r.dtype == np.float64


# --- degenerate entries -----------------------------------------------------------------------


def test_degenerate_x_min_zero():
    reason = PowerLaw(0.0, 1.08212).degenerate_reason()
    assert reason is not None and "x_min" in reason and "0" in reason
    assert entry("dsn2021-fu", "MUFU", "small").degenerate_reason() is not None
    assert entry("dsn2021-fu", "MUFU", "big").degenerate_reason() is not None
    assert PowerLaw(-1.0, 2.0).degenerate_reason() is not None


def test_degenerate_flt_max_entry():
    law = entry("dsn2021-fu", "FFMA", "small")
    assert law.x_min >= FLT_MAX
    reason = law.degenerate_reason()
    assert reason is not None and "FLT_MAX" in reason
    assert PowerLaw(math.inf, 2.0).degenerate_reason() is not None
    assert PowerLaw(math.nan, 2.0).degenerate_reason() is not None


@pytest.mark.parametrize("alpha", [1.0, 0.5, -2.0, math.inf, math.nan])
def test_degenerate_alpha(alpha):
    reason = PowerLaw(2.0, alpha).degenerate_reason()
    assert reason is not None and "alpha" in reason


def test_normal_entries_are_not_degenerate():
    assert PowerLaw(2.0, 1.4543958).degenerate_reason() is None
    assert entry("dsn2021-pipeline", "FMUL", "common").degenerate_reason() is None
    assert PowerLaw(1e-9, 1.0000001).degenerate_reason() is None


def test_exactly_the_three_known_fu_entries_are_degenerate():
    bad = {(op, s) for op in OPS for s in SIZES if entry("dsn2021-fu", op, s).degenerate_reason()}
    assert bad == {("FFMA", "small"), ("MUFU", "small"), ("MUFU", "big")}
    assert not any(entry("dsn2021-pipeline", op, s).degenerate_reason() for op in OPS for s in SIZES)


# --- table layout -----------------------------------------------------------------------------


def test_entry_layout_is_op_times_3_plus_size():
    assert entry("dsn2021-pipeline", "FMUL", "common") == PowerLaw(3.0, 1.0411011754028192)
    assert entry("dsn2021-fu", "FFMA", "common") == PowerLaw(2.0, 1.4543958)
    assert entry("dsn2021-fu", "FMUL", "small") == PowerLaw(1.3602772e05, 2.7119400e01)
    assert entry("dsn2021-fu", "IMAD", "common") == PowerLaw(6.1141304e-01, 3.4316596e00)
    assert entry("dsn2021-pipeline", "FFMA", "big") == PowerLaw(6876382.106584958, 1.2292875919671704)
    assert entry("dsn2021-pipeline", "MUFU", "big") == PowerLaw(0.4472794940279105, 1.659452338259185)
    assert entry("dsn2021-fu", "FADD", "small") == PowerLaw(1.0728769e-07, 1.0868737e00)
    for table, rows in TABLES.items():
        assert len(rows) == 21
        for o, op in enumerate(OPS):
            for s, size in enumerate(SIZES):
                law = entry(table, op, size)
                assert (law.x_min, law.alpha) == rows[o * 3 + s]


def test_entry_rejects_unknown_names():
    with pytest.raises(TableError, match="unknown power-law table"):
        entry("dsn2022", "FMUL", "common")
    with pytest.raises(ValueError):
        entry("dsn2021-fu", "FDIV", "common")
    with pytest.raises(ValueError):
        entry("dsn2021-fu", "FMUL", "huge")


def test_size_bucket_thresholds():
    v = np.array([0.0, 9.99e-4, -9.99e-4, 1e-3, -1e-3, 0.5, 1e3, -1e3, 1000.001, -1000.001, 1e30, -1e-30])
    assert size_bucket(v).tolist() == [0, 0, 0, 1, 1, 1, 1, 1, 2, 2, 2, 0]
    assert size_bucket(np.zeros((2, 3))).shape == (2, 3)


def test_warp_with_a_saturating_draw_gives_inf_never_nan():
    law = entry("dsn2021-pipeline", "MUFU", "common")  # alpha 1.0228: r overflows float64 near u = 1
    values = [0.0, 1.0, -2.0, 3e-30]
    model = identity_linear(4)
    x = torch.tensor([values])
    u, signs = np.full((1, WARP), 1 - 1e-12), np.array([[1.0, 1.0, -1.0, -1.0] + [1.0] * 28])
    y = run(model, x, WarpValues(np.array([0]), np.array([0]), np.array([0]), np.array([4]), u, signs, (law,) * 3))
    assert not torch.isnan(y).any()
    assert y[0].tolist() == [0.0, math.inf, math.inf, -math.inf]
