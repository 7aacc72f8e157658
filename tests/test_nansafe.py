"""The NaN-safe ReLU6: numbers for NaN/Inf, ReLU6's exact bits otherwise, and its checkpoints."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fi_campaign.models import zoo
from fi_campaign.models.resnet import Arch, BasicBlock, NanSafeReLU6, build
from fi_campaign.models.train import Recipe, preset

HARDENED = Arch(20, "relu6", "conv-act-bn")
NANSAFE = Arch(20, "relu6-nansafe", "conv-act-bn")


def bits(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous().view(torch.int32)


def finite_edge_cases() -> torch.Tensor:
    torch.manual_seed(0)
    edges = torch.tensor([-0.0, 0.0, 6.0, -6.0, 5.9999995, 6.0000005, 1e-45, -1e-45, 1.17e-38, -3.4e38, 3.4e38])
    spread = torch.randn(20_000) * torch.logspace(-30, 30, 20_000)
    return torch.cat([edges, spread, torch.rand(20_000) * 8 - 1])


@pytest.mark.parametrize("grad", [False, True], ids=["inference", "autograd"])
def test_nan_and_infinities_become_what_gpu_min_max_give(grad):
    x = torch.tensor([float("nan"), float("inf"), -float("inf"), -float("nan")], requires_grad=grad)
    y = NanSafeReLU6()(x * 1 if grad else x)
    assert torch.isfinite(y).all()
    assert y.tolist() == [0.0, 6.0, 0.0, 0.0]  # min(max(x, 0), 6) with NaN-dropping min/max
    assert F.relu6(torch.tensor([float("nan")])).isnan().all()  # what it replaces passes NaN on


@pytest.mark.parametrize("grad", [False, True], ids=["inference", "autograd"])
def test_finite_inputs_give_relu6_bit_for_bit(grad):
    x = finite_edge_cases()
    expected = F.relu6(x)
    y = NanSafeReLU6()(x.clone().requires_grad_(grad))
    assert torch.equal(bits(y.detach()), bits(expected))  # -0.0 stays -0.0, subnormals stay


def test_gradients_match_relu6_on_finite_inputs():
    x = finite_edge_cases()
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    F.relu6(a).sum().backward()
    NanSafeReLU6()(b).sum().backward()
    assert a.grad is not None and b.grad is not None
    assert torch.equal(a.grad, b.grad)


def test_a_nan_at_a_convolution_output_no_longer_reaches_the_logits():
    """Bit 30 flipped in a value of [1, 2) makes it NaN; ReLU6 lets it poison the network."""
    torch.manual_seed(4)
    plain = build(HARDENED).eval()
    safe = build(NANSAFE).eval()
    safe.load_state_dict(plain.state_dict())

    def poison(module: nn.Module, inputs: tuple, out: torch.Tensor) -> torch.Tensor:
        out = out.clone()
        out[0, 3, 5, 7] = torch.tensor(1.5).view(torch.int32).bitwise_xor(1 << 30).view(torch.float32)
        return out

    x = torch.randn(2, 3, 32, 32)
    logits = {}
    for name, model in (("plain", plain), ("safe", safe)):
        block = model.blocks[2]
        assert isinstance(block, BasicBlock)
        handle = block.unit1[0].register_forward_hook(poison)
        with torch.no_grad():
            logits[name] = model(x)
        handle.remove()
    assert logits["plain"][0].isnan().all() and torch.isfinite(logits["safe"]).all()
    with torch.no_grad():
        assert torch.equal(logits["safe"][1], safe(x)[1])  # the other image is untouched


def test_fault_free_the_committed_hardened_weights_give_the_same_bits_with_either_activation():
    from fi_campaign.models import data

    images = data.load("bundled")
    x = data.normalise(images.images, images.dataset)
    plain, _ = zoo.load("zoo:resnet20-cifar10-hardened")
    safe = build(NANSAFE).eval()
    safe.load_state_dict(plain.state_dict())
    with torch.no_grad():
        assert torch.equal(bits(plain(x)), bits(safe(x)))


def test_every_activation_of_a_nansafe_network_is_nansafe_and_old_ones_are_untouched():
    for order in ("conv-bn-act", "conv-act-bn"):
        acts = [m for m in build(Arch(20, "relu6-nansafe", order)).modules() if isinstance(m, nn.ReLU6)]
        assert len(acts) == 19 and all(type(m) is NanSafeReLU6 for m in acts)
    committed, meta = zoo.load("zoo:resnet20-cifar10-hardened")  # recorded before the option existed
    assert meta.arch == HARDENED
    assert all(type(m) is nn.ReLU6 for m in committed.modules() if isinstance(m, nn.ReLU6))


def test_a_checkpoint_records_the_nansafe_activation_and_refuses_another_arch(tmp_path):
    path = tmp_path / "safe.pt"
    torch.manual_seed(2)
    zoo.save(path, build(NANSAFE), zoo.Meta(NANSAFE, "cifar10", derived_from="a test"))
    model, meta = zoo.load(str(path), expect=NANSAFE)
    assert meta.arch.activation == "relu6-nansafe" and meta.derived_from == "a test"
    assert any(type(m) is NanSafeReLU6 for m in model.modules())
    with pytest.raises(
        zoo.CheckpointError,
        match=r"holds a resnet20 \(relu6-nansafe, conv-act-bn, 10 classes\) "
        r"but resnet20 \(relu6, conv-act-bn, 10 classes\) was asked for",
    ):
        zoo.load(str(path), expect=HARDENED)
    with pytest.raises(zoo.CheckpointError, match="relu6-nansafe"):
        zoo.load("zoo:resnet20-cifar10-hardened", expect=NANSAFE)


def test_a_checkpoint_of_an_activation_this_version_lacks_is_refused_in_one_sentence(tmp_path):
    path = tmp_path / "future.pt"
    zoo.save(path, build(HARDENED), zoo.Meta(HARDENED, "cifar10"))
    blob = torch.load(path, weights_only=True)
    blob["meta"]["arch"]["activation"] = "relu6-future"
    torch.save(blob, path)
    with pytest.raises(zoo.CheckpointError, match="records a network this version cannot build.*relu6-future"):
        zoo.load(str(path))


def test_the_nansafe_preset_is_the_hardened_recipe_with_the_nansafe_activation():
    arch, recipe = preset("hardened-nansafe", 44, 100, Recipe(epochs=2))
    hardened, hardened_recipe = preset("hardened", 44, 100, Recipe(epochs=2))
    assert arch == Arch(44, "relu6-nansafe", "conv-act-bn", 100) and recipe == hardened_recipe
    assert (arch.order, arch.depth) == (hardened.order, hardened.depth) and recipe.fault_aware


def test_train_offers_every_preset():
    from fi_campaign.cli.models import PRESET_NAMES
    from fi_campaign.models.train import PRESETS

    assert PRESET_NAMES == tuple(PRESETS) and "hardened-nansafe" in PRESET_NAMES
