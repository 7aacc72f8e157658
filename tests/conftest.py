from __future__ import annotations

from pathlib import Path

import pytest
import yaml


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    """Two real ResNet-20 checkpoints (seeded initialisations): a vanilla and a hardened one."""
    import torch

    from models import zoo
    from models.resnet import Arch, build

    folder = tmp_path_factory.mktemp("ckpt")
    out = {}
    for name, act, order in (("baseline", "relu", "conv-bn-act"), ("hardened", "relu6", "conv-act-bn")):
        torch.manual_seed(1)
        model = build(Arch(20, act, order))
        out[name] = folder / f"{name}.pt"
        zoo.save(out[name], model, zoo.Meta(model.arch, "cifar10"))
    return out


@pytest.fixture
def tiny_config(tmp_path, checkpoints) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump({
        "name": "tiny", "seed": 11, "injections": 40, "batch_size": 32,
        "models": {k: str(v) for k, v in checkpoints.items()},
        "images": {"source": "bundled", "count": 20, "seed": 3},
    }))
    return path
