"""Fault-aware training: its noise statistics, its schedule, and a real (tiny) training run."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from fi_campaign.cli import main
from fi_campaign.models import zoo
from fi_campaign.models.faults import Injector
from fi_campaign.models.resnet import Arch, build
from fi_campaign.models.train import PRESETS, Recipe, RecipeError, augment, fault_aware_batch, preset
from tests.conftest import shared_data


def _within(observed: float, p: float, n: int, sigmas: float = 5.0) -> bool:
    return abs(observed - p) <= sigmas * math.sqrt(p * (1 - p) / n)


def test_fault_aware_batch_corrupts_three_quarters_of_images():
    gen = torch.Generator().manual_seed(0)
    hit = [fault_aware_batch(20, 128, 3, Recipe(), gen).rows.size for _ in range(200)]
    assert _within(sum(hit) / (200 * 128), 0.75, 200 * 128)


def test_fault_aware_magnitude_grows_with_the_epoch():
    gen = torch.Generator().manual_seed(1)
    for epoch, top in ((0, 1.0), (1, 1.0), (7, 7.0), (40, 40.0)):
        mags = np.concatenate([np.abs(fault_aware_batch(20, 128, epoch, Recipe(), gen).magnitude) for _ in range(50)])
        assert mags.max() <= top and mags.min() >= 0
        # Uniform[0, top]: mean top/2, and both signs occur
        assert abs(mags.mean() - top / 2) < 0.05 * top
    signs = np.sign(fault_aware_batch(20, 4096, 5, Recipe(), gen).magnitude)
    assert _within(float((signs > 0).mean()), 0.5, signs.size)


def test_fault_aware_block_noise_hits_30_percent_of_channels():
    """Block geometry at a conv output: the fraction of channels touched per corrupted image."""
    torch.manual_seed(0)
    model = build(Arch(20, "relu6", "conv-act-bn")).eval()
    injector = Injector(model)
    x = torch.randn(64, 3, 32, 32)
    gen = torch.Generator().manual_seed(2)
    touched, total = 0, 0
    with torch.no_grad():
        clean: dict[str, torch.Tensor] = {}
        handle = model.stem[0].register_forward_hook(lambda m, i, o: clean.__setitem__("o", o.clone()))
        model(x)
        handle.remove()
        for _ in range(20):
            batch = fault_aware_batch(1, 64, 5, Recipe(), gen)  # layer 0: the stem convolution
            seen: dict = {}
            h = model.stem[0].register_forward_hook(lambda m, i, o, seen=seen: seen.__setitem__("o", o.clone()))
            with injector.armed(batch):
                model(x)
            h.remove()
            changed = (seen["o"] != clean["o"]).flatten(2).any(-1)  # (images, channels)
            rows = batch.rows
            assert not changed[np.setdiff1d(np.arange(64), rows)].any()
            touched += int(changed[rows].sum())
            total += rows.size * 16
    # zero-magnitude draws leave a channel unchanged, so "touched" slightly undercounts p
    assert _within(touched / total, 0.3, total, sigmas=6)


def test_augment_keeps_shape_and_flips_or_crops():
    gen = torch.Generator().manual_seed(0)
    x = torch.arange(2 * 3 * 32 * 32, dtype=torch.float32).view(2, 3, 32, 32)
    out = augment(x, gen)
    assert out.shape == x.shape
    assert not torch.equal(out, x)


def test_augment_does_only_what_the_recipe_names():
    x = torch.randn(64, 3, 32, 32)
    assert torch.equal(augment(x, torch.Generator().manual_seed(0), []), x)
    flipped = augment(x, torch.Generator().manual_seed(0), ["hflip"])
    for a, b in zip(flipped, x, strict=False):  # each image is itself or its mirror: never shifted
        assert torch.equal(a, b) or torch.equal(a, b.flip(-1))
    assert any(not torch.equal(a, b) for a, b in zip(flipped, x, strict=False))
    cropped = augment(x, torch.Generator().manual_seed(0), ["crop4"])
    # a shifted image keeps a 24x24 window of the original that no mirror would match
    assert any(not torch.equal(a, b) and not torch.equal(a, b.flip(-1)) for a, b in zip(cropped, x, strict=False))


@pytest.mark.parametrize(
    "field,value",
    [
        ("lr", "fast"),
        ("lr", 0),
        ("epochs", 0),
        ("epochs", 2.5),
        ("optimizer", "lbfgs"),
        ("schedule", "step"),
        ("grad_clip", -1.0),
        ("augment", ["cutout"]),
        ("fat_images", 1.5),
        ("fat_channel_p", 0),
        ("seed", -3),
        ("momentum", 1.0),
        ("fault_aware", "yes"),
    ],
)
def test_recipe_refuses_values_training_would_choke_on(field, value):
    with pytest.raises(RecipeError, match=f"^recipe field {field} is "):
        Recipe(**{field: value})


def test_presets_are_the_papers_ablation():
    assert PRESETS["baseline"] == ("relu", "conv-bn-act", False)
    assert PRESETS["hardened"] == ("relu6", "conv-act-bn", True)
    arch, recipe = preset("relu6-fat", 32, 100, Recipe(epochs=3))
    assert arch == Arch(32, "relu6", "conv-bn-act", 100) and recipe.fault_aware and recipe.epochs == 3


@pytest.mark.slow  # resume itself is checked exactly, and fast, in test_safety_inputs.py
def test_one_epoch_training_smoke_run_and_resume(tmp_path):
    out = tmp_path / "smoke.pt"
    args = [
        "train",
        "--preset",
        "hardened",
        "--data",
        str(shared_data("cifar10-jpeg")),
        "--epochs",
        "1",
        "--limit",
        "256",
        "--out",
        str(out),
        "--device",
        "cpu",
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    model, meta = zoo.load(str(out))
    assert meta.arch == Arch(20, "relu6", "conv-act-bn", 10)
    assert meta.recipe["fault_aware"] and meta.recipe["train_images"] == 256
    assert len(meta.recipe["history"]) == 1 and meta.clean_accuracy is not None and 0 <= meta.clean_accuracy <= 1
    assert "cifar10" in meta.accuracy_on and not out.with_suffix(".partial.pt").exists()


def test_train_bad_inputs_are_one_sentence(tmp_path):
    result = CliRunner().invoke(main, ["train", "--preset", "hardened", "--data", str(tmp_path), "--epochs", "1"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.output.startswith("Error: ")
    bad = tmp_path / "r.yaml"
    bad.write_text("learning_speed: 3\n")
    result = CliRunner().invoke(main, ["train", "--preset", "baseline", "--data", str(tmp_path), "--recipe", str(bad)])
    assert result.exit_code == 2 and "recipe" in result.output
    bad.write_text("grad_clip: -2\n")
    result = CliRunner().invoke(main, ["train", "--preset", "baseline", "--data", str(tmp_path), "--recipe", str(bad)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "grad_clip is -2; it must be a positive number" in result.output


def test_evaluate_regret_on_real_models(tmp_path, checkpoints):
    table = tmp_path / "regret.csv"
    result = CliRunner().invoke(
        main,
        [
            "evaluate",
            "--regret",
            "--repeats",
            "2",
            "--images",
            "40",
            "--csv",
            str(table),
            str(checkpoints["baseline"]),
            str(checkpoints["hardened"]),
        ],
    )
    assert result.exit_code == 0, result.output
    rows = list(__import__("csv").DictReader(table.open()))
    assert [r["preset"] for r in rows] == ["relu, conv-bn-act", "relu6, conv-act-bn"]
    for r in rows:
        clean, noisy, regret = float(r["clean"]), float(r["noisy"]), float(r["regret"])
        assert abs(clean - noisy - regret) < 1e-9
        assert float(r["regret_low"]) <= regret <= float(r["regret_high"])
    result = CliRunner().invoke(
        main, ["evaluate", "--regret", "--op", "FFMA", "--size", "small", str(checkpoints["baseline"])]
    )
    assert result.exit_code == 2 and "degenerate" in result.output
