"""The float32 math mode: set explicitly in every workload, from the config, recorded with it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fi_campaign.config import ConfigError, parse
from fi_campaign.workload import program
from fi_campaign.workload.mathmode import set_math


@pytest.fixture
def restore_math():
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def test_the_config_names_the_math_mode_and_stores_it():
    raw = {"name": "m", "models": {"a": "zoo:resnet20-cifar10-baseline"}}
    assert parse(raw, "c.yaml").math == "fp32"
    tf32 = parse({**raw, "math": "tf32"}, "c.yaml")
    assert json.loads(tf32.to_json())["math"] == "tf32"
    with pytest.raises(ConfigError, match=r"^c\.yaml: math is 'fp16'; it must be one of fp32, tf32\.$"):
        parse({**raw, "math": "fp16"}, "c.yaml")


def test_set_math_overrides_pytorch_defaults_both_ways(restore_math):
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = True, False  # PyTorch's defaults
    set_math("fp32")
    assert (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32) == (False, False)
    set_math("tf32")
    assert (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32) == (True, True)


def test_the_workload_program_runs_in_the_recorded_mode(tmp_path, checkpoints, restore_math):
    from bench import zero_cost
    from fi_campaign.store import WorkloadRecord
    from fi_campaign.workload.images import image_digest, workload_images

    images, indices = workload_images("bundled", 4, 0)
    workload = WorkloadRecord(
        source="bundled",
        dataset=images.dataset,
        count=4,
        seed=0,
        indices=tuple(indices.tolist()),
        images_sha256=image_digest(images.images),
    )
    from fi_campaign.models.arch import Arch
    from fi_campaign.store import ModelRecord

    model = ModelRecord(
        checkpoint=str(checkpoints["baseline"]),
        sha256="",
        arch=Arch(),
        dataset="cifar10",
        clean_accuracy=None,
        accuracy_on="",
    )
    root = program.write_root(
        tmp_path / "root", model, "baseline", workload, 4, "cpu", zero_cost.record().fault_model, "tf32"
    )
    assert json.loads((root / "workload.json").read_text())["math"] == "tf32"
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    assert program.main([str(root), "--out", str(tmp_path / "y.npy")]) == 0
    assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
    assert np.load(tmp_path / "y.npy").shape == (4, 10)
