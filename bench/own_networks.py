"""A user's own project, as the tests and bench/own_models.py run campaigns on it: a folder holding
a build file that imports the user's own package named ``models`` (as an ML project's usually
is), the networks of issue 25 (torchvision resnet18 and mobilenet_v3_small at 64x64, a small
VisionTransformer on 32x32, a transformer encoder tagging token sequences) with random weights,
and their inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

NETS = '''
import torch
import torchvision
from torch import nn


def resnet18(classes=10):
    return torchvision.models.resnet18(weights=None, num_classes=classes)


def mobilenet(classes=10):
    return torchvision.models.mobilenet_v3_small(weights=None, num_classes=classes)


def vit(classes=10):
    return torchvision.models.VisionTransformer(
        image_size=32, patch_size=4, num_layers=2, num_heads=2, hidden_dim=64, mlp_dim=128, num_classes=classes
    )


class Tagger(nn.Module):
    """A tag per token: embedding, a batch_first transformer encoder, a linear head."""

    def __init__(self, vocab, classes, width=32):
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        layer = nn.TransformerEncoderLayer(width, 4, 64, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(width, classes)

    def forward(self, tokens):
        return self.head(self.encoder(self.embed(tokens)))


def tagger(vocab=50, classes=7):
    return Tagger(vocab, classes)


class Small(nn.Module):
    def __init__(self, classes=5):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.head = nn.Linear(8, classes)

    def forward(self, x):
        return self.head(self.features(x))


def small(classes=5):
    return Small(classes)
'''

BUILD = """
from models.nets import mobilenet, resnet18, small, tagger, vit  # the project's own package named models


def not_a_module():
    return 42


def raises():
    raise RuntimeError("no GPU here")


def mixes_rows():
    import torch

    class Centred(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3)
            self.head = torch.nn.Linear(4, 3)

        def forward(self, x):
            h = self.conv(x)
            h = h - h.mean(0, keepdim=True)  # a statistic over the batch, as train-mode BatchNorm
            return self.head(h.mean((2, 3)))

    return Centred()


def gated():
    import torch

    class Gated(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3)
            self.head = torch.nn.Linear(4, 3)

        def forward(self, x):
            if x.abs().max() > 1e6:  # a decision on the input's values: torch.fx cannot capture it
                x = x / 1e6
            return self.head(self.conv(x).mean((2, 3)))

    return Gated()
"""

# name -> (input file, judge)
NETWORKS = {
    "resnet18": ("img64.npy", "top1"),
    "mobilenet": ("img64.npy", "top1"),
    "vit": ("img32.npy", "top1"),
    "tagger": ("tokens.pt", "per_position"),
}


def project(root: Path, inputs: int = 16) -> Path:
    """A user's project: build.py beside a package named models holding the networks, and
    ``inputs`` inputs for each kind of network."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "models").mkdir(exist_ok=True)
    (root / "models" / "__init__.py").write_text("")
    (root / "models" / "nets.py").write_text(NETS)
    (root / "build.py").write_text(BUILD)
    rng = np.random.default_rng(0)
    np.save(root / "img64.npy", rng.standard_normal((inputs, 3, 64, 64)).astype(np.float32))
    np.save(root / "img32.npy", rng.standard_normal((inputs, 3, 32, 32)).astype(np.float32))
    np.save(root / "small.npy", rng.standard_normal((24, 3, 12, 12)).astype(np.float32))
    import torch

    tokens = torch.from_numpy(rng.integers(0, 50, (inputs, 12)))
    torch.save({"inputs": tokens, "labels": torch.from_numpy(rng.integers(0, 7, inputs))}, root / "tokens.pt")
    return root


def config(root: Path, name: str, network: str | dict, inputs: str | dict, **keys: object) -> Path:
    """A campaign config for one network of the project: ``network`` a function of build.py, an
    absolute path (a TorchScript or exported program), or a models mapping."""
    model: str | dict = network
    if isinstance(network, str) and not network.startswith("/"):
        model = {"build": f"{root / 'build.py'}:{network}"}
    source = {"source": str(root / inputs), "count": 12} if isinstance(inputs, str) else inputs
    raw = {"name": name, "seed": 5, "models": {name: model}, "inputs": source, "injections": 8, "batch_size": 4}
    raw.update(keys)
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path
