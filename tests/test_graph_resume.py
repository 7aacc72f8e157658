"""Delayed start for any network (models/graph_resume.py): from every resume point, with faults
at that point and further on, the tail gives the whole faulted pass's outputs bit for bit, on
real torchvision and torch networks and the zoo's CIFAR ResNets; what it cannot capture or
resume from is refused in one sentence."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest
import torch
import torchvision  # type: ignore[import-untyped]
from torch import nn

from fi_campaign.errors import UserError
from fi_campaign.models import zoo
from fi_campaign.models.faults import BitFlips, FaultBatch
from fi_campaign.models.graph_resume import CaptureError, GoldenValues, GraphResumer, same_bits

B = 4  # rows of every pass
IMAGES = 8  # two golden passes


class TokenEncoder(nn.Module):
    """A small transformer encoder over token sequences, one output per position."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(50, 32)
        layer = nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2)
        self.head = nn.Linear(32, 50)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(self.embed(tokens)))


def settle(model: nn.Module) -> nn.Module:
    """Eval mode with BatchNorm statistics of a trained-looking network, so values stay in range."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            assert m.running_var is not None and m.running_mean is not None
            m.running_var.uniform_(0.5, 2.0)
            m.running_mean.uniform_(-0.2, 0.2)
    return model.eval()


def network(name: str) -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    if name == "resnet18":
        return settle(torchvision.models.resnet18(weights=None, num_classes=10)), torch.randn(IMAGES, 3, 64, 64)
    if name == "mobilenet_v3_small":
        model = torchvision.models.mobilenet_v3_small(weights=None, num_classes=10)
        return settle(model), torch.randn(IMAGES, 3, 64, 64)
    if name == "vit":
        model = torchvision.models.VisionTransformer(
            image_size=32, patch_size=4, num_layers=2, num_heads=2, hidden_dim=64, mlp_dim=128, num_classes=10
        )
        return model.eval(), torch.randn(IMAGES, 3, 32, 32)
    if name == "token_encoder":
        return TokenEncoder().eval(), torch.randint(0, 50, (IMAGES, 12))
    model, _ = zoo.load(f"zoo:resnet20-cifar10-{name.removeprefix('zoo-')}")
    return model.eval(), torch.randn(IMAGES, 3, 32, 32)


class Hooks:
    """Forward hooks that apply a FaultBatch to the targets (by their index in ``targets``), as
    the campaign's injector does, and count each target's calls."""

    def __init__(self, model: nn.Module, targets: list[str]) -> None:
        modules = dict(model.named_modules())
        self.batch: FaultBatch | None = None
        self.calls = {t: 0 for t in targets}
        self.handles = [modules[t].register_forward_hook(self.hook(k, t)) for k, t in enumerate(targets)]

    def hook(self, k: int, name: str):
        def apply(module: nn.Module, inputs: tuple, out: torch.Tensor) -> torch.Tensor | None:
            self.calls[name] += 1
            return None if self.batch is None else self.batch.apply(k, out)

        return apply

    @contextmanager
    def armed(self, batch: FaultBatch) -> Iterator[None]:
        self.batch = batch
        try:
            yield
        finally:
            self.batch = None

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def called_targets(model: nn.Module, x: torch.Tensor) -> list[str]:
    """Every conv and linear module the forward pass calls (a MultiheadAttention's out_proj is
    a Linear its forward never calls)."""
    seen: list[str] = []
    handles = [
        m.register_forward_hook(lambda m, i, o, n=n: seen.append(n) if n not in seen else None)
        for n, m in model.named_modules()
        if isinstance(m, (nn.Conv2d, nn.Linear))
    ]
    with torch.inference_mode():
        model(x)
    for h in handles:
        h.remove()
    return sorted(seen, key=[n for n, _ in model.named_modules()].index)


def record(r: GraphResumer, model: nn.Module, x: torch.Tensor, keep: list[int]) -> tuple[GoldenValues, Any]:
    with torch.inference_mode(), r.recording(keep, len(x)) as golden:
        outs = [model(x[i : i + B]) for i in range(0, len(x), B)]
    return golden, torch.cat(outs) if isinstance(outs[0], torch.Tensor) else outs


def flips(at: list[int], numel: list[int], rng: np.random.Generator) -> BitFlips:
    """One flip per row, in the given targets (indices in the targets list)."""
    return BitFlips(
        np.array(at),
        np.arange(len(at)),
        np.array([rng.integers(0, numel[k]) for k in at]),
        rng.integers(22, 31, len(at)),
    )


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


NETWORKS = ["resnet18", "mobilenet_v3_small", "vit", "token_encoder", "zoo-baseline", "zoo-hardened"]


@pytest.mark.parametrize("name", NETWORKS)
def test_every_point_resumes_the_whole_faulted_pass_bit_for_bit(one_thread, name):
    model, x = network(name)
    targets = called_targets(model, x[:B])
    hooks = Hooks(model, targets)  # attached before the golden run, as in a campaign
    r = GraphResumer(model, targets, x[:B])
    assert sorted(p.name for p in r.points) == sorted(targets) and all(p.why_not is None for p in r.points)
    assert [p.index for p in r.points] == list(range(len(targets)))
    assert all(a.macs_after >= b.macs_after for a, b in zip(r.points, r.points[1:], strict=False))
    every = [p.index for p in r.points]
    golden, out = record(r, model, x, every)
    rows = torch.tensor([5, 2, 7, 0])
    numel = [0] * len(targets)
    for p in r.points:
        numel[p.target] = p.output_numel
    rng = np.random.default_rng(1)
    changed = 0
    with torch.inference_mode():
        for p in r.points:
            assert same_bits(r.tail(p.index, golden.output(p.index, rows), golden, rows), out[rows])
            later = r.points[min(p.index + 3, len(r.points) - 1)].target
            faults = flips([p.target, p.target, later, p.target], numel, rng)
            with hooks.armed(faults):
                whole = model(x[rows])
                before = dict(hooks.calls)
                resumed = r.tail(p.index, faults.apply(p.target, golden.output(p.index, rows)), golden, rows)
            assert same_bits(resumed, whole), p.name
            assert hooks.calls[p.name] == before[p.name]  # the tail starts after the target
            changed += not same_bits(resumed, out[rows])
    assert changed >= len(r.points) // 2  # the flips reached the outputs
    hooks.remove()


def test_kept_points_and_earlier_starts(one_thread):
    model, x = network("resnet18")
    targets = called_targets(model, x[:B])
    r = GraphResumer(model, targets, x[:B])
    keep = [3, 9, 15]
    golden, out = record(r, model, x, keep)
    assert [golden.start_for(i) for i in (0, 3, 4, 9, 20)] == [None, 3, 3, 9, 15]
    assert golden.nbytes == r.cache_bytes(keep, IMAGES) < r.cache_bytes(range(len(r.points)), IMAGES)
    assert r.cache_bytes(keep, IMAGES) <= sum(r.points[i].kept_bytes_per_image for i in keep) * IMAGES
    rows = torch.tensor([1, 3, 5, 7])
    with torch.inference_mode():
        for i in keep:
            assert same_bits(r.tail(i, golden.output(i, rows), golden, rows), out[rows])
    with pytest.raises(KeyError):
        golden.output(4, rows)  # not kept
    weights = np.full(len(r.points), 1 / len(r.points))
    chosen = r.choose(weights, IMAGES, r.cache_bytes(keep, IMAGES))
    assert r.cache_bytes(chosen, IMAGES) <= r.cache_bytes(keep, IMAGES)
    assert r.expected_work(weights, chosen) <= r.expected_work(weights, keep) < 1.0
    assert r.choose(weights, IMAGES, 0) == []


class Twice(nn.Module):
    """A target called twice, in-place operations on live values, a shape used after a target."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.shared = nn.Conv2d(8, 8, 3, padding=1)
        self.act = nn.ReLU(inplace=True)
        self.fc = nn.Linear(8 * 8 * 8, 10)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        n = x.shape[0]
        h = self.act(self.conv(x))
        skip = h
        h = self.shared(h)
        h = self.shared(torch.relu(h))  # the same module again
        h += skip  # in place, onto a value live across both calls
        h.relu_()
        return {"logits": self.fc(h.reshape(n, -1)), "pooled": h.mean((2, 3))}


def test_a_target_called_twice_in_place_ops_and_dict_outputs(one_thread):
    torch.manual_seed(2)
    model, x = Twice().eval(), torch.randn(IMAGES, 3, 8, 8)
    targets = ["conv", "shared", "fc"]
    hooks = Hooks(model, targets)
    r = GraphResumer(model, targets, x[:B])
    assert [p.name for p in r.points] == ["conv", "shared", "fc"] and all(p.why_not is None for p in r.points)
    golden, _ = record(r, model, x, [0, 1, 2])
    rows = torch.tensor([0, 6, 2, 4])
    rng = np.random.default_rng(3)
    for p in r.points:
        faults = flips([1, p.target, 1, p.target], [512, 512, 10], rng)
        with torch.inference_mode(), hooks.armed(faults):
            whole = model(x[rows])
            start = min(p.index, 1)  # the pass starts at its earliest fault
            calls = hooks.calls["shared"]
            resumed = r.tail(start, faults.apply(r.points[start].target, golden.output(start, rows)), golden, rows)
            # from the shared conv's first call, its second call (faulted again by the hook) is in the tail
            assert hooks.calls["shared"] - calls == (1 if start == 1 else 2)
        assert isinstance(resumed, dict) and same_bits(resumed, whole)


class Layouts(nn.Module):
    """Live values that are not row-major with the batch first: a transpose, a (T, N, E) tensor."""

    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Linear(6, 16)
        self.mid = nn.Linear(16, 16)
        self.out = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seq = self.inp(x).transpose(0, 1)  # (T, N, E): the batch is dimension 1
        flipped = x.transpose(1, 2)  # (N, 6, T), not contiguous
        h = self.mid(seq)
        return self.out(h.transpose(0, 1) + seq.transpose(0, 1)) + flipped.sum(1, keepdim=True).transpose(1, 2)


def test_live_values_keep_their_layout_and_batch_dimension(one_thread):
    torch.manual_seed(4)
    model, x = Layouts().eval(), torch.randn(IMAGES, 5, 6)
    r = GraphResumer(model, ["inp", "mid", "out"], x[:B])
    assert all(p.why_not is None for p in r.points)
    golden, out = record(r, model, x, [0, 1, 2])
    plain = {leaf: golden.layouts[leaf].plain for leaf in golden.layouts}
    assert not all(plain.values())  # some values are kept with their own strides or batch dimension
    rows = torch.tensor([7, 1, 4, 2])
    with torch.inference_mode():
        for p in r.points:
            assert same_bits(r.tail(p.index, golden.output(p.index, rows), golden, rows), out[rows])
    channels_last = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 4, 3))
    net = settle(channels_last).to(memory_format=torch.channels_last)
    x = torch.randn(IMAGES, 3, 12, 12).to(memory_format=torch.channels_last)
    r = GraphResumer(net, ["0", "3"], x[:B])
    golden, out = record(r, net, x, [0, 1])
    assert not golden.output(0, rows).is_contiguous() and golden.output(0, rows).is_contiguous(
        memory_format=torch.channels_last
    )
    with torch.inference_mode():
        assert same_bits(r.tail(0, golden.output(0, rows), golden, rows), out[rows])


class Refusals(nn.Module):
    """Targets that cannot be resume points: a tuple output, a live value without a batch
    dimension, an expanded view, two live views of one tensor."""

    def __init__(self) -> None:
        super().__init__()
        self.pair = PairOut()
        self.a = nn.Linear(8, 8)
        self.b = nn.Linear(8, 8)
        self.c = nn.Linear(8, 8)
        self.d = nn.Linear(8, 8)
        self.e = nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u, v = self.pair(x)
        h = self.a(u + v)
        total = h.sum()  # no batch dimension
        h = self.b(h) + total
        wide = h[:, :1].expand(-1, 8)  # overlaps itself
        h = self.c(h) + wide
        left, right = h[:, :6], h[:, 2:]  # overlapping views of one tensor
        h = self.d(h)
        return self.e(h + torch.cat([left, right[:, 4:]], 1))


class PairOut(nn.Module):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x * 2, x + 1


def test_points_it_cannot_resume_from_say_why_and_runs_start_earlier(one_thread):
    torch.manual_seed(5)
    model, x = Refusals().eval(), torch.randn(IMAGES, 8)
    r = GraphResumer(model, ["pair", "a", "b", "c", "d", "e"], x[:B])
    why = {p.name: p.why_not for p in r.points}
    assert why["pair"] == "its output is a tuple, not one tensor"
    assert why["a"] is None and why["e"] is None
    assert "no batch dimension" in str(why["b"]) and "expanded view" in str(why["c"])
    assert "shares memory" in str(why["d"])
    weights = np.full(6, 1 / 6)
    assert set(r.choose(weights, IMAGES, 2**30)) == {1, 5}
    with pytest.raises(ValueError, match="cannot be kept"):
        with r.recording([0], IMAGES):
            pass
    golden, out = record(r, model, x, [1, 5])
    rows = torch.tensor([0, 1, 2, 3])
    with torch.inference_mode():
        for i in (1, 5):
            assert same_bits(r.tail(i, golden.output(i, rows), golden, rows), out[rows])


class Scaled(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.scale = 2.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x) * self.scale


def test_a_graph_that_differs_from_the_network_is_refused_when_recording_ends():
    model, x = Scaled().eval(), torch.randn(IMAGES, 4)
    r = GraphResumer(model, ["fc"], x[:B])
    model.scale = 3.0  # the graph holds 2.0: its outputs are no longer the network's
    with pytest.raises(CaptureError, match="graph's outputs differ from the network's"):
        record(r, model, x, [0])


class DataBranch(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc(x)
        if h.sum() > 0:
            return h
        return -h


class Nested(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.block = nn.Sequential(nn.Linear(4, 4), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class TwoInputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.fc(x) + y


def test_networks_it_cannot_capture_are_refused_in_one_sentence():
    x = torch.randn(B, 4)
    vit, images = network("vit")
    hooked = Nested()
    hooked.block.register_forward_hook(lambda m, i, o: None)
    cases = [
        (DataBranch(), ["fc"], x, "decides on tensor values"),
        (Nested(), ["block", "block.0"], x, "lies inside the target"),
        (Nested(), ["nope"], x, "no module named 'nope'"),
        (hooked, ["block.0"], x, "skip the forward hooks of 'block'"),
        (TwoInputs(), ["fc"], x, "also takes y"),
        # a Linear that MultiheadAttention holds but never calls as a module
        (vit, ["encoder.layers.encoder_layer_0.self_attention.out_proj"], images[:B], "found no call"),
    ]
    for model, targets, example, why in cases:
        with pytest.raises(CaptureError) as e:
            GraphResumer(model.eval(), targets, example)
        message = str(e.value)
        assert why in message, message
        assert isinstance(e.value, UserError) and message.endswith(".") and ". " not in message
