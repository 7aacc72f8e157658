"""models.resnet architecture, describe_layers, PlaneNoise geometries and zoo checkpoints."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from fi_campaign.models.faults import Injector, PlaneNoise, describe_layers
from fi_campaign.models.resnet import ORDERS, Arch, BasicBlock, ConvUnit, build, injectable_layers
from fi_campaign.models.zoo import CheckpointError, Meta, load, read, save, weights_digest

# --- architecture -----------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [20, 32, 44, 56])
def test_depths_have_6n_plus_1_convs_and_one_linear(depth):
    n = (depth - 2) // 6
    model = build(Arch(depth))
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert len(convs) == 6 * n + 1
    assert len(linears) == 1
    layers = injectable_layers(model)
    assert len(layers) == 6 * n + 2 == depth
    assert layers[0][0] == "stem.0" and layers[-1][0] == "fc"
    # option-A shortcuts: every conv is a 3x3 block conv, none is a 1x1 projection
    assert all(m.kernel_size == (3, 3) for m in convs)
    assert sum(isinstance(m, BasicBlock) for m in model.modules()) == 3 * n
    assert all(
        not any(isinstance(c, nn.Conv2d) for c in b.children()) for b in model.modules() if isinstance(b, BasicBlock)
    )


def test_num_classes_sets_the_linear_width():
    assert build(Arch(20, num_classes=100)).fc.out_features == 100
    assert build(Arch(20)).fc.out_features == 10
    assert Arch(32).name == "resnet32"


def leaf_execution_order(model: nn.Module) -> list[nn.Module]:
    order: list[nn.Module] = []
    leaves = [m for m in model.modules() if not list(m.children())]
    handles = [m.register_forward_hook(lambda mod, i, o: order.append(mod)) for m in leaves]
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, 3, 32, 32))
    finally:
        for h in handles:
            h.remove()
    return order


@pytest.mark.parametrize("activation, act_type", [("relu", nn.ReLU), ("relu6", nn.ReLU6)])
def test_conv_act_bn_order(activation, act_type):
    model = build(Arch(20, activation, "conv-act-bn"))
    order = leaf_execution_order(model)
    conv_at = [i for i, m in enumerate(order) if isinstance(m, nn.Conv2d)]
    assert len(conv_at) == 19
    for i in conv_at:
        assert type(order[i + 1]) is act_type, f"conv at step {i} followed by {order[i + 1]}"
        assert isinstance(order[i + 2], nn.BatchNorm2d)
    for unit in (m for m in model.modules() if isinstance(m, ConvUnit)):
        assert [type(m) for m in unit] == [nn.Conv2d, act_type, nn.BatchNorm2d]


@pytest.mark.parametrize("activation, act_type", [("relu", nn.ReLU), ("relu6", nn.ReLU6)])
def test_conv_bn_act_order(activation, act_type):
    model = build(Arch(20, activation, "conv-bn-act"))
    order = leaf_execution_order(model)
    conv_at = [i for i, m in enumerate(order) if isinstance(m, nn.Conv2d)]
    assert len(conv_at) == 19
    for i in conv_at:
        assert isinstance(order[i + 1], nn.BatchNorm2d)
        assert type(order[i + 2]) is act_type  # own activation, or the block's after the add
    assert model.stem[0].__class__ is nn.Conv2d and [type(m) for m in model.stem] == [
        nn.Conv2d,
        nn.BatchNorm2d,
        act_type,
    ]
    # the vanilla block's second unit has no activation of its own
    block = model.blocks[0]
    assert isinstance(block, BasicBlock)
    assert [type(m) for m in block.unit2] == [nn.Conv2d, nn.BatchNorm2d]
    assert type(block.out_act) is act_type


@pytest.mark.parametrize("depth", [20, 44])
def test_both_orders_run_the_same_number_of_activations(depth):
    """The hardened order must cost no inference time: no activation more than vanilla."""
    counts = {}
    for order in ORDERS:
        executed = leaf_execution_order(build(Arch(depth, "relu6", order)))
        counts[order] = sum(isinstance(m, (nn.ReLU, nn.ReLU6)) for m in executed)
    assert counts["conv-act-bn"] == counts["conv-bn-act"] == depth - 1


@pytest.mark.parametrize("activation, act_type", [("relu", nn.ReLU), ("relu6", nn.ReLU6)])
def test_activation_type_everywhere(activation, act_type):
    for order in ("conv-bn-act", "conv-act-bn"):
        model = build(Arch(20, activation, order))
        acts = [m for m in model.modules() if isinstance(m, (nn.ReLU, nn.ReLU6))]
        assert acts and all(type(m) is act_type for m in acts)


def test_relu6_clips_activations():
    torch.manual_seed(0)
    model = build(Arch(20, "relu6", "conv-act-bn")).eval()
    seen = []
    h = model.stem[1].register_forward_hook(lambda m, i, o: seen.append(o))
    with torch.no_grad():
        model(torch.randn(2, 3, 32, 32) * 100)
    h.remove()
    assert seen[0].max().item() == 6.0 and seen[0].min().item() == 0.0


@pytest.mark.parametrize(
    "kwargs, word",
    [
        ({"depth": 18}, "depth"),
        ({"depth": 110}, "depth"),
        ({"activation": "gelu"}, "activation"),
        ({"order": "bn-conv-act"}, "order"),
        ({"num_classes": 1000}, "num_classes"),
    ],
)
def test_arch_rejects_bad_values(kwargs, word):
    with pytest.raises(ValueError, match=word):
        Arch(**kwargs)


def test_forward_shape():
    model = build(Arch(20, num_classes=100)).eval()
    with torch.no_grad():
        assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 100)


# --- describe_layers --------------------------------------------------------------------------


def test_describe_layers_resnet20():
    model = build(Arch(20))
    infos = describe_layers(model)
    assert len(infos) == 20
    assert [i.name for i in infos] == [n for n, _ in injectable_layers(model)]
    assert [i.index for i in infos] == list(range(20))
    first, last = infos[0], infos[-1]
    assert (first.kind, first.shape, first.numel) == ("conv", (16, 32, 32), 16384)
    assert first.macs == 16 * 32 * 32 * 3 * 9
    assert (last.kind, last.shape, last.numel, last.macs) == ("linear", (10,), 10, 640)
    shapes = [i.shape for i in infos[1:-1]]
    assert shapes == [(16, 32, 32)] * 6 + [(32, 16, 16)] * 6 + [(64, 8, 8)] * 6
    # the first conv of stage 2 reads 16 channels at stride 2: fan-in 16*9
    assert infos[7].macs == 32 * 16 * 16 * 16 * 9 and infos[8].macs == 32 * 16 * 16 * 32 * 9
    assert sum(i.macs for i in infos) == 40_551_040  # the usual ~40.55 M MACs of ResNet-20
    assert first.warps == 512 and last.warps == 1


def test_describe_layers_resnet56_and_100_classes():
    infos = describe_layers(build(Arch(56, num_classes=100)))
    assert len(infos) == 56
    assert infos[-1].shape == (100,) and infos[-1].macs == 6400 and infos[-1].warps == 4
    assert infos[-2].shape == (64, 8, 8)


# --- PlaneNoise -------------------------------------------------------------------------------


def identity_conv(c: int) -> nn.Sequential:
    conv = nn.Conv2d(c, c, 1, groups=c, bias=False)
    with torch.no_grad():
        conv.weight.fill_(1.0)
    return nn.Sequential(conv).eval()


def noise_hits(
    geometry: int, rows: int, c: int = 4, h: int = 6, w: int = 10, seed: int = 0, channel_p=(1.0, 0.75, 0.3)
) -> np.ndarray:
    """Boolean (rows, c, h, w) of the cells PlaneNoise changed on a ones input, magnitude 1 (x2)."""
    model = identity_conv(c)
    inj = Injector(model)
    batch = PlaneNoise(
        layers=np.zeros(rows, np.int64),
        rows=np.arange(rows),
        geometry=np.full(rows, geometry),
        magnitude=np.ones(rows),
        channel_p=channel_p,
        generator=torch.Generator().manual_seed(seed),
    )
    with torch.no_grad(), inj.armed(batch):
        y = model(torch.ones(rows, c, h, w))
    inj.remove()
    assert set(torch.unique(y).tolist()) <= {1.0, 2.0}
    return (y == 2.0).numpy()


def test_single_touches_exactly_one_cell_per_channel():
    hits = noise_hits(0, rows=40)
    for r in range(40):
        per_channel = hits[r].reshape(4, -1).sum(1)
        assert per_channel.tolist() == [1, 1, 1, 1]  # channel_p 1.0 for single
        # the same position in every channel
        assert all(np.array_equal(hits[r, 0], hits[r, k]) for k in range(4))
    # positions vary between rows
    assert len({tuple(np.argwhere(hits[r, 0])[0]) for r in range(40)}) > 10


def test_line_is_one_full_row_or_column():
    hits = noise_hits(1, rows=60)
    kinds = []
    for r in range(60):
        chans = [k for k in range(4) if hits[r, k].any()]
        for k in chans:
            cells = np.argwhere(hits[r, k])
            rows_, cols_ = set(cells[:, 0]), set(cells[:, 1])
            if len(rows_) == 1 and len(cells) == 10:
                kinds.append("row")
            elif len(cols_) == 1 and len(cells) == 6:
                kinds.append("col")
            else:
                pytest.fail(f"row {r} channel {k}: not a line: {cells.tolist()}")
            assert np.array_equal(hits[r, k], hits[r, chans[0]])
    assert "row" in kinds and "col" in kinds


def test_block_is_a_rectangle():
    hits = noise_hits(2, rows=60, channel_p=(1.0, 0.75, 1.0))
    sizes = set()
    for r in range(60):
        cells = np.argwhere(hits[r, 0])
        assert len(cells) >= 1
        r0, r1 = cells[:, 0].min(), cells[:, 0].max()
        c0, c1 = cells[:, 1].min(), cells[:, 1].max()
        assert len(cells) == (r1 - r0 + 1) * (c1 - c0 + 1)  # every cell of the bounding box
        assert hits[r, 0, r0 : r1 + 1, c0 : c1 + 1].all()
        assert all(np.array_equal(hits[r, 0], hits[r, k]) for k in range(4))
        sizes.add((r1 - r0 + 1, c1 - c0 + 1))
    assert len(sizes) > 5  # rectangles of many sizes, not a fixed shape
    assert any(hh > 1 for hh, _ in sizes) and any(ww > 1 for _, ww in sizes)
    assert any(hh > 1 and ww > 1 for hh, ww in sizes)


@pytest.mark.parametrize("geometry, p", [(2, 0.3), (1, 0.75)])
def test_channel_probability(geometry, p):
    rows, c = 400, 8
    hits = noise_hits(geometry, rows=rows, c=c, h=4, w=4, seed=7)
    n = rows * c
    hit = hits.reshape(rows, c, -1).any(-1).sum()
    sd = math.sqrt(n * p * (1 - p))
    assert abs(hit - n * p) < 4 * sd, (hit, n * p)


def test_plane_noise_leaves_other_rows_and_scales_by_one_plus_m():
    model = identity_conv(3)
    x = torch.rand(6, 3, 5, 5) + 0.5
    inj = Injector(model)
    batch = PlaneNoise(
        np.zeros(3, np.int64),
        np.array([1, 3, 4]),
        np.array([0, 1, 2]),
        np.array([-0.5, 2.0, 0.25]),
        channel_p=(1.0, 1.0, 1.0),
        generator=torch.Generator().manual_seed(1),
    )
    with torch.no_grad():
        golden = model(x).clone()
        with inj.armed(batch):
            y = model(x)
    inj.remove()
    assert torch.equal(y[[0, 2, 5]], golden[[0, 2, 5]])
    for row, m in ((1, -0.5), (3, 2.0), (4, 0.25)):
        changed = y[row] != golden[row]
        assert changed.any()
        torch.testing.assert_close(y[row][changed], golden[row][changed] * (1 + m))


def test_plane_noise_on_a_linear_output():
    lin = nn.Linear(64, 64, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.eye(64))
    model = nn.Sequential(lin).eval()
    inj = Injector(model)
    batch = PlaneNoise(
        np.zeros(2, np.int64),
        np.array([0, 1]),
        np.array([0, 2]),
        np.array([1.0, 1.0]),
        generator=torch.Generator().manual_seed(0),
    )
    with torch.no_grad(), inj.armed(batch):
        y = model(torch.ones(2, 64))
    inj.remove()
    assert (y[0] == 2.0).all()  # single: channel_p 1.0, every feature
    frac = (y[1] == 2.0).float().mean().item()
    assert 0.05 < frac < 0.6  # block: each feature with p 0.3


# --- zoo checkpoints --------------------------------------------------------------------------


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    model = build(Arch(20, "relu6", "conv-act-bn"))
    with torch.no_grad():  # make BatchNorm buffers non-default so they must round-trip too
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                assert m.running_mean is not None and m.running_var is not None
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    path = tmp_path / "sub" / "m.pt"
    meta = save(path, model, Meta(Arch(20), "cifar10", {"epochs": 3}, 0.875, "test", "cpu (2 cores), 3 epochs"))
    return path, model.eval(), meta


def test_save_load_round_trip(saved):
    path, model, meta = saved
    assert path.is_file()
    assert not path.with_suffix(".pt.tmp").exists()
    assert meta.arch == Arch(20, "relu6", "conv-act-bn")  # taken from the model, not the caller
    assert meta.sha256 == weights_digest(model.state_dict())
    loaded, m2 = load(str(path), expect=Arch(20, "relu6", "conv-act-bn"))
    assert not loaded.training
    assert m2.to_dict() == meta.to_dict()
    assert (m2.dataset, m2.recipe, m2.clean_accuracy, m2.accuracy_on) == ("cifar10", {"epochs": 3}, 0.875, "test")
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    # no expectation: whatever the metadata says
    assert load(str(path))[1].arch == meta.arch


def test_load_with_another_arch_raises_clearly(saved):
    path, _, _ = saved
    with pytest.raises(CheckpointError) as e:
        load(str(path), expect=Arch(20, "relu", "conv-act-bn"))
    msg = str(e.value)
    assert "resnet20 (relu6, conv-act-bn, 10 classes)" in msg
    assert "resnet20 (relu, conv-act-bn, 10 classes) was asked for" in msg
    with pytest.raises(CheckpointError, match="resnet32"):
        load(str(path), expect=Arch(32, "relu6", "conv-act-bn"))


def test_tampered_weights_are_corrupt(saved):
    path, _, _ = saved
    blob = torch.load(path, map_location="cpu", weights_only=True)
    blob["state_dict"]["fc.weight"][0, 0] += 1e-3
    torch.save(blob, path)  # old meta, new weights
    with pytest.raises(CheckpointError, match="corrupt"):
        load(str(path))
    with pytest.raises(CheckpointError, match="corrupt"):
        read(str(path))


def test_renamed_tensor_is_corrupt(saved):
    path, _, _ = saved
    blob = torch.load(path, map_location="cpu", weights_only=True)
    blob["state_dict"]["fc.weight2"] = blob["state_dict"].pop("fc.weight")
    torch.save(blob, path)
    with pytest.raises(CheckpointError, match="corrupt"):
        load(str(path))


def test_weights_for_another_network_with_valid_digest(tmp_path):
    state = build(Arch(32)).state_dict()
    meta = Meta(Arch(20), "cifar10", sha256=weights_digest(state))
    path = tmp_path / "wrong.pt"
    torch.save({"meta": meta.to_dict(), "state_dict": state}, path)
    with pytest.raises(CheckpointError, match="does not fit"):
        load(str(path))


@pytest.mark.parametrize(
    "content, why",
    [
        ("text", "not a file PyTorch can load"),
        ("pickle", "not a file PyTorch can load"),
        ("tensor", "a PyTorch file holding a Tensor"),
        ("dict", "a PyTorch file holding a mapping without 'meta'"),
    ],
)
def test_non_checkpoint_file_raises(tmp_path, content, why):
    """Said in words, with what a checkpoint is, and without torch's warnings about the file."""
    import pickle
    import warnings

    path = tmp_path / "x.pt"
    if content == "text":
        path.write_bytes(b"this is not a checkpoint\n")
    elif content == "pickle":  # protocol 4: torch warns that weights_only may not read it
        path.write_bytes(pickle.dumps({"meta": 1}, protocol=4))
    elif content == "tensor":
        torch.save(torch.zeros(3), path)
    else:
        torch.save({"weights": torch.zeros(3)}, path)
    with warnings.catch_warnings(record=True) as heard:
        warnings.simplefilter("always")
        with pytest.raises(CheckpointError, match="not an fi-campaign checkpoint") as e:
            load(str(path))
    assert heard == []
    text = str(e.value)
    assert why in text and "written by 'fi-campaign train'" in text and "zoo:resnet20-cifar10-baseline" in text
    assert "Error" not in text and "\n" not in text


def test_missing_file_raises(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load(str(tmp_path / "nope.pt"))
    with pytest.raises(CheckpointError, match="does not exist"):
        load(str(tmp_path))  # a folder is not a checkpoint file
    with pytest.raises(CheckpointError, match="Committed models"):
        load("zoo:no-such-model")


def test_every_input_error_of_the_models_package_is_a_user_error():
    """The CLI maps UserError, and only it, to one sentence and exit 2."""
    from fi_campaign.errors import UserError
    from fi_campaign.models.data import DataError
    from fi_campaign.models.powerfit import FitError
    from fi_campaign.models.powerlaw import TableError
    from fi_campaign.models.resume import ResumeError
    from fi_campaign.models.train import RecipeError

    for cls in (CheckpointError, DataError, FitError, TableError, ResumeError, RecipeError):
        assert issubclass(cls, UserError), cls
