"""The committed checkpoints and the embedded demo: what a newcomer's first command relies on."""

from __future__ import annotations

import pytest
import torch

from fi_campaign import config as cfg
from fi_campaign.models import data, zoo
from fi_campaign.models.resnet import Arch
from fi_campaign.models.train import evaluate

# the paper's ablation: network and whether it was trained fault-aware
ABLATION = {
    "zoo:resnet20-cifar10-baseline": (Arch(20, "relu", "conv-bn-act", 10), False),
    "zoo:resnet20-cifar10-relu6": (Arch(20, "relu6", "conv-bn-act", 10), False),
    "zoo:resnet20-cifar10-relu6-fat": (Arch(20, "relu6", "conv-bn-act", 10), True),
    "zoo:resnet20-cifar10-hardened": (Arch(20, "relu6", "conv-act-bn", 10), True),
}
CIFAR100 = {
    "zoo:resnet20-cifar100-baseline": (Arch(20, "relu", "conv-bn-act", 100), False),
    "zoo:resnet20-cifar100-hardened": (Arch(20, "relu6", "conv-act-bn", 100), True),
}
RESNET44 = {  # the paper's network, with the ResNet-20 zoo's recipe
    "zoo:resnet44-cifar10-baseline": (Arch(44, "relu", "conv-bn-act", 10), False),
    "zoo:resnet44-cifar10-relu6": (Arch(44, "relu6", "conv-bn-act", 10), False),
    "zoo:resnet44-cifar10-relu6-fat": (Arch(44, "relu6", "conv-bn-act", 10), True),
    "zoo:resnet44-cifar10-hardened": (Arch(44, "relu6", "conv-act-bn", 10), True),
}
RESNET44_CIFAR100 = {  # the CIFAR-100 ablation, trained one preset after another across sessions
    "zoo:resnet44-cifar100-baseline": (Arch(44, "relu", "conv-bn-act", 100), False),
    "zoo:resnet44-cifar100-hardened": (Arch(44, "relu6", "conv-act-bn", 100), True),
}
EXPECTED = {ref: arch for ref, (arch, _) in ABLATION.items()}
DEMO_MODELS = {"zoo:resnet20-cifar10-baseline", "zoo:resnet20-cifar10-hardened"}


def test_committed_checkpoints_carry_their_metadata():
    for ref, (arch, fault_aware) in (ABLATION | CIFAR100 | RESNET44 | RESNET44_CIFAR100).items():
        model, meta = zoo.load(ref)
        assert meta.arch == arch and meta.dataset == f"cifar{arch.num_classes}"
        assert meta.clean_accuracy is not None and 0.5 < meta.clean_accuracy <= 1.0 and "test" in meta.accuracy_on
        assert meta.recipe["epochs"] >= 1 and len(meta.recipe["history"]) == meta.recipe["epochs"]
        assert meta.recipe["fault_aware"] == fault_aware
        assert meta.trained_on


@pytest.mark.parametrize(
    "models", [ABLATION, RESNET44, RESNET44_CIFAR100], ids=["resnet20", "resnet44", "resnet44-cifar100"]
)
def test_the_committed_ablation_differs_only_in_its_presets(models):
    """A fair ablation: one recipe for all, and the hardening costs little clean accuracy."""
    metas = {ref: zoo.load(ref)[1] for ref in models}
    recipes = [{k: v for k, v in m.recipe.items() if k not in ("fault_aware", "history")} for m in metas.values()]
    assert all(r == recipes[0] for r in recipes)
    baseline, *_, hardened = (m.clean_accuracy for m in metas.values())
    assert baseline is not None and hardened is not None
    assert baseline - hardened <= 0.015


@pytest.mark.parametrize("ref", zoo.zoo_names())
def test_a_committed_checkpoint_with_one_bit_changed_is_refused(ref, tmp_path):
    """zoo.load checks the recorded sha256 of every checkpoint, the committed ones too: a single
    flipped weight bit (a damaged download, a hand edit) is refused as corrupt, never loaded."""
    blob = torch.load(zoo.resolve(ref), map_location="cpu", weights_only=True)
    name = next(k for k, v in blob["state_dict"].items() if v.dtype == torch.float32)
    blob["state_dict"][name].view(-1)[:1].view(torch.int32).bitwise_xor_(1)  # the least significant bit
    damaged = tmp_path / "damaged.pt"
    torch.save(blob, damaged)
    with pytest.raises(zoo.CheckpointError, match="is corrupt: its weights do not match the sha256"):
        zoo.load(str(damaged))


def test_committed_checkpoints_classify_the_bundled_images():
    images = data.load("bundled")
    x = data.normalise(images.images, images.dataset)
    y = torch.from_numpy(images.labels)
    for ref in EXPECTED:
        model, meta = zoo.load(ref)
        # the bundled 500 are a subset of the test split the recorded accuracy was measured on
        assert meta.clean_accuracy is not None
        assert abs(evaluate(model, x, y) - meta.clean_accuracy) < 0.06


def test_a_committed_checkpoint_refuses_another_architecture():
    import pytest

    with pytest.raises(zoo.CheckpointError, match="resnet20 .relu, conv-bn-act, 10 classes. but resnet44"):
        zoo.load("zoo:resnet20-cifar10-baseline", expect=Arch(44, "relu", "conv-bn-act", 10))


def test_the_demo_config_is_valid_and_names_committed_models():
    demo = cfg.load(None)
    assert demo.injections >= 1000 and set(demo.modes) == {"single_bit", "warp_random"}
    assert set(demo.models.values()) == DEMO_MODELS and demo.images.source == "bundled"
    assert set(zoo.zoo_names()) >= set(EXPECTED)


def test_bundled_sample_is_cifar10_test_images():
    s = data.load("bundled")
    assert len(s) == 500 and s.dataset == "cifar10" and s.images.shape == (500, 32, 32, 3)
    assert (torch.bincount(torch.from_numpy(s.labels)) == 50).all()


def test_a_checkpoint_of_the_older_inverted_block_is_refused(tmp_path):
    """Its weights would load into today's block without error and silently compute another function."""
    import pytest

    from fi_campaign.models.resnet import build

    arch = Arch(20, "relu6", "conv-act-bn", 10)
    path = tmp_path / "old.pt"
    zoo.save(path, build(arch), zoo.Meta(arch, "cifar10"))
    blob = torch.load(path, weights_only=True)
    del blob["format"]
    torch.save(blob, path)
    with pytest.raises(zoo.CheckpointError, match="older inverted block.*retrain it"):
        zoo.load(str(path))
    vanilla = Arch(20, "relu", "conv-bn-act", 10)  # unchanged block: still loads
    zoo.save(path, build(vanilla), zoo.Meta(vanilla, "cifar10"))
    blob = torch.load(path, weights_only=True)
    del blob["format"]
    torch.save(blob, path)
    assert zoo.load(str(path))[1].arch == vanilla


@pytest.mark.parametrize("depth,classes", [(20, 10), (20, 100), (44, 10), (44, 100)])
def test_the_nansafe_hardened_checkpoint_is_the_hardened_weights_with_the_nansafe_activation(depth, classes):
    """Not retrained: bench/zoo_nansafe.py found the fault-free logits bit-identical on the test split."""
    hardened = f"zoo:resnet{depth}-cifar{classes}-hardened"
    _, plain_meta = zoo.load(hardened)
    _, meta = zoo.load(f"{hardened}-nansafe")
    assert meta.arch == Arch(depth, "relu6-nansafe", "conv-act-bn", classes)
    assert meta.sha256 == plain_meta.sha256 and hardened in meta.derived_from
    assert (meta.recipe, meta.clean_accuracy, meta.dataset) == (
        plain_meta.recipe,
        plain_meta.clean_accuracy,
        f"cifar{classes}",
    )
    assert plain_meta.derived_from == ""  # trained, not derived
