"""Framework-level fault injection: *where* (a layer, a sample, an element) x *what* (an error
model) x *observation* (the logits the caller compares with the golden run).

Every row of a batch carries its own independent fault, so one forward pass serves as many
injections as the batch has rows. That is sound because, in eval mode, no operation of a CIFAR
ResNet mixes samples: a fault in sample i's activations reaches only sample i's logits.

A few lines corrupt a model::

    inj = Injector(model)
    with inj.armed(BitFlips.one(layer=3, element=1234, bit=30)):
        logits = model(x[:1])
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from fi_campaign.models import sampler
from fi_campaign.models.powerlaw import SIZES, FaultModelRecord, PowerLaw, size_bucket
from fi_campaign.models.resnet import injectable_layers

SINGLE_BIT = "single_bit"
WARP_RANDOM = "warp_random"
MODES = (SINGLE_BIT, WARP_RANDOM)
WARP = 32
_LANES = np.arange(WARP)  # a warp's lane numbers


@dataclass(frozen=True)
class LayerInfo:
    """One injectable layer as seen by a single image: where faults can land and how often."""

    index: int
    name: str
    kind: str  # conv | linear
    shape: tuple[int, ...]  # per-sample output shape
    numel: int
    macs: int

    @property
    def warps(self) -> int:
        return -(-self.numel // WARP)


def describe_layers(model: nn.Module, image_shape: tuple[int, ...] = (3, 32, 32)) -> list[LayerInfo]:
    layers = injectable_layers(model)
    shapes: dict[int, tuple[int, ...]] = {}
    handles = [
        m.register_forward_hook(lambda mod, i, o, k=k: shapes.__setitem__(k, tuple(o.shape[1:])))
        for k, (_, m) in enumerate(layers)
    ]
    first = next(model.parameters())  # its device and dtype: float32, float16 or bfloat16
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, *image_shape, device=first.device, dtype=first.dtype))
    finally:
        for h in handles:
            h.remove()
    infos = []
    for k, (name, m) in enumerate(layers):
        numel = int(np.prod(shapes[k]))
        if isinstance(m, nn.Conv2d):
            fan_in = m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1]
            kind = "conv"
        else:
            assert isinstance(m, nn.Linear)  # injectable_layers holds conv and linear layers only
            fan_in, kind = m.in_features, "linear"
        infos.append(LayerInfo(k, name, kind, shapes[k], numel, numel * fan_in))
    return infos


class FaultBatch:
    """Faults for some rows of one batch, grouped by layer index so each hook finds its own.

    An activation fault edits a layer's output (``apply``); a weight fault needs the layer's
    input too (``apply_at``, ``needs_input``: a delayed start must begin before its layer) or
    holds a parameter faulty for the whole pass (``held``)."""

    layers: np.ndarray
    needs_input = False

    @cached_property
    def _rows_by_layer(self) -> dict[int, np.ndarray]:
        """Each hit layer's rows, found once per pass: every target's hook asks."""
        if not len(self.layers):
            return {}
        first = int(self.layers[0])
        if (self.layers == first).all():  # a chunk sorted by layer often has one
            return {first: np.arange(len(self.layers))}
        order = np.argsort(self.layers, kind="stable")
        hit, starts = np.unique(self.layers[order], return_index=True)
        return dict(zip(hit.tolist(), np.split(order, starts[1:]), strict=True))

    def touches(self, layer: int) -> bool:
        """Whether this batch changes layer ``layer``'s output: the hooks of the others pass."""
        return layer in self._rows_by_layer

    def rows_at(self, layer: int) -> np.ndarray:
        return self._rows_by_layer.get(layer, _NO_ROWS)

    def apply(self, layer: int, out: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def apply_at(self, layer: int, module: nn.Module, inputs: tuple, out: torch.Tensor) -> torch.Tensor:
        return self.apply(layer, out)

    @contextmanager
    def held(self, layers: list[tuple[str, nn.Module]]) -> Iterator[None]:
        yield


_NO_ROWS = np.empty(0, dtype=np.int64)


def _flat(out: torch.Tensor) -> torch.Tensor:
    return out.view(out.shape[0], -1)


# a value's bits as a signed integer of its width: an XOR on it is an XOR on the value's bits
INT_VIEWS = {4: (torch.int32, np.uint32, np.int32), 2: (torch.int16, np.uint16, np.int16)}


@dataclass
class BitFlips(FaultBatch):
    """single_bit: XOR one bit of one output element in the format the network computes in
    (float32: bit 31 is the sign, 23-30 the exponent; float16 and bfloat16: bit 15 the sign,
    fi_campaign.models.formats)."""

    layers: np.ndarray
    rows: np.ndarray
    elements: np.ndarray
    bits: np.ndarray

    @classmethod
    def one(cls, layer: int, element: int, bit: int, row: int = 0) -> BitFlips:
        return cls(np.array([layer]), np.array([row]), np.array([element]), np.array([bit]))

    def apply(self, layer: int, out: torch.Tensor) -> torch.Tensor:
        sel = self.rows_at(layer)
        if sel.size == 0:
            return out
        out = out.contiguous()
        if out.element_size() not in INT_VIEWS or not out.is_floating_point():
            raise ValueError(f"single_bit flips float32, float16 or bfloat16 values, not {out.dtype}")
        signed, unsigned, numpy_signed = INT_VIEWS[out.element_size()]
        bits = self.bits[sel]
        if bits.min() < 0 or bits.max() >= 8 * out.element_size():
            raise ValueError(f"bit {int(bits.max())} is not one of the {8 * out.element_size()} bits of {out.dtype}")
        ints = _flat(out).view(signed)
        masks = np.left_shift(unsigned(1), bits.astype(unsigned)).view(numpy_signed)
        r = torch.from_numpy(self.rows[sel]).to(out.device)
        e = torch.from_numpy(self.elements[sel]).to(out.device)
        ints[r, e] = ints[r, e] ^ torch.from_numpy(masks).to(out.device)
        return out


@dataclass
class WarpValues(FaultBatch):
    """warp_random: each of the (up to) 32 elements of a warp-shaped group becomes x * (1 + s r).

    A warp is 32 consecutive elements of one sample's output in memory (C, H, W) order, aligned
    on 32: a whole row of a 32-wide plane, two rows of a 16-wide one, a 4x8 tile of an 8-wide
    one; a linear layer's 10 or 100 logits are one short warp. r is drawn per lane from the
    power law of the lane's size bucket (``laws``: small, common, big), s is a per-lane
    random sign; ``u`` and ``signs`` are fixed when the site is planned so a site replays.
    ``sampler`` names how r is computed from u: ``fi_campaign.models.sampler.SPEC``, the specification the
    SASS-level tool implements too, or the numpy power of stores planned before it.
    """

    layers: np.ndarray
    rows: np.ndarray
    starts: np.ndarray
    widths: np.ndarray
    u: np.ndarray  # (n, 32) uniforms in [0, 1)
    signs: np.ndarray  # (n, 32) of +-1
    laws: tuple[PowerLaw, PowerLaw, PowerLaw]
    by_value: bool = False
    sampler: str = sampler.SPEC

    def _draw(self, law: PowerLaw, u: np.ndarray) -> np.ndarray:
        if self.sampler == sampler.SPEC:
            return sampler.relative_error(u, law.x_min, law.alpha)
        return law.sample(u)

    @cached_property
    def _common_errors(self) -> np.ndarray:
        """Every row's lanes drawn at once from the one law a fixed size bucket uses."""
        return self._draw(self.laws[1], self.u)

    def relative_errors(self, sel: np.ndarray, values: np.ndarray) -> np.ndarray:
        if not self.by_value:
            return self._common_errors[sel]
        r = np.stack([self._draw(law, self.u[sel]) for law in self.laws])
        return np.take_along_axis(r, size_bucket(values)[None], 0)[0]

    def apply(self, layer: int, out: torch.Tensor) -> torch.Tensor:
        sel = self.rows_at(layer)
        if sel.size == 0:
            return out
        out = out.contiguous()
        flat = out.view(-1)  # one index per lane into the whole batch: cheaper than (row, column) pairs
        valid = _LANES < self.widths[sel, None]
        at = (self.rows[sel] * (flat.numel() // out.shape[0]) + self.starts[sel])[:, None] + _LANES
        lanes = torch.from_numpy(at[valid]).to(out.device)
        old = np.zeros(valid.shape)
        old[valid] = flat.take(lanes).double().cpu().numpy()
        r = self.relative_errors(sel, old)
        factor = 1.0 + self.signs[sel] * r
        with np.errstate(over="ignore", invalid="ignore"):
            new = (old * factor)[valid].astype(np.float32)
        # float16 and bfloat16: rounded once more, from that float32 value, on the CPU on every device
        flat[lanes] = torch.from_numpy(new).to(out.dtype).to(out.device)
        return out


def warp_geometry(info: LayerInfo, warp_index: int) -> tuple[int, int]:
    """(first element, lane count) of warp ``warp_index`` of a layer's per-sample output."""
    start = warp_index * WARP
    return start, min(WARP, info.numel - start)


@dataclass
class PlaneNoise(FaultBatch):
    """The paper's training / evaluation noise: a geometry of cells in a sample's feature maps,
    each cell becoming x * (1 + m), m a signed relative error, one per sample.

    Geometries (one per row): 0 single (one position), 1 line (a whole row or column, 50/50),
    2 block (a random rectangle, corners drawn as DieHardNET does). Channels are each corrupted
    with ``channel_p`` of the row's geometry. Linear outputs: each feature with that probability.
    """

    layers: np.ndarray
    rows: np.ndarray
    geometry: np.ndarray
    magnitude: np.ndarray
    channel_p: tuple[float, float, float] = (1.0, 0.75, 0.3)
    generator: torch.Generator | None = field(default=None, repr=False)

    def _rand(self, *shape: int, device: torch.device) -> torch.Tensor:
        return torch.rand(*shape, generator=self.generator).to(device)

    def mask(self, sel: np.ndarray, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
        k = sel.size
        geo = torch.from_numpy(self.geometry[sel]).to(device)
        p = torch.tensor(self.channel_p, device=device)[geo]
        if len(shape) == 1:
            return self._rand(k, shape[0], device=device) < p[:, None]
        c, h, w = shape
        chans = self._rand(k, c, device=device) < p[:, None]
        u = self._rand(k, 6, device=device)
        hh = torch.arange(h, device=device)[None, :]
        ww = torch.arange(w, device=device)[None, :]
        # single: one cell
        r0 = (u[:, 0] * h).long()[:, None]
        c0 = (u[:, 1] * w).long()[:, None]
        single = (hh == r0)[:, :, None] & (ww == c0)[:, None, :]
        # line: one full row or one full column
        is_row = (u[:, 2] < 0.5)[:, None, None]
        line = torch.where(is_row, (hh == r0)[:, :, None].expand(k, h, w), (ww == c0)[:, None, :].expand(k, h, w))
        # block: rows h0..h1, h0 in [0, h-2], h1 in [h0, h-1]; the same for columns
        h0 = (u[:, 2:3] * max(h - 1, 1)).long()
        h1 = h0 + (u[:, 3:4] * (h - h0)).long()
        w0 = (u[:, 4:5] * max(w - 1, 1)).long()
        w1 = w0 + (u[:, 5:6] * (w - w0)).long()
        block = ((hh >= h0) & (hh <= h1))[:, :, None] & ((ww >= w0) & (ww <= w1))[:, None, :]
        g = geo[:, None, None]
        cells = torch.where(g == 0, single, torch.where(g == 1, line, block))
        return chans[:, :, None, None] & cells[:, None, :, :]

    def apply(self, layer: int, out: torch.Tensor) -> torch.Tensor:
        sel = self.rows_at(layer)
        if sel.size == 0:
            return out
        rows = torch.from_numpy(self.rows[sel]).to(out.device)
        m = self.mask(sel, tuple(out.shape[1:]), out.device)
        factor = torch.from_numpy(1.0 + self.magnitude[sel]).to(out.device, out.dtype)
        factor = factor.view(-1, *([1] * (out.dim() - 1)))
        picked = out[rows]
        out = out.clone() if out.requires_grad else out
        out[rows] = torch.where(m, picked * factor, picked)
        return out


class Injector:
    """Forward hooks on the target modules of a model (by default every conv/linear layer of a
    CIFAR ResNet: ``injectable_layers``), layer index k being ``layers[k]``; inert until armed
    with a FaultBatch."""

    def __init__(self, model: nn.Module, layers: list[tuple[str, nn.Module]] | None = None) -> None:
        self.model = model
        self.batch: FaultBatch | None = None
        self.layers = injectable_layers(model) if layers is None else layers
        self._handles = [m.register_forward_hook(self._hook(k)) for k, (_, m) in enumerate(self.layers)]

    def _hook(self, index: int) -> Callable[[nn.Module, tuple, torch.Tensor], torch.Tensor | None]:
        def hook(module: nn.Module, inputs: tuple, out: torch.Tensor) -> torch.Tensor | None:
            b = self.batch
            return None if b is None or not b.touches(index) else b.apply_at(index, module, inputs, out)

        return hook

    @contextmanager
    def armed(self, batch: FaultBatch) -> Iterator[None]:
        self.batch = batch
        try:
            with batch.held(self.layers):
                yield
        finally:
            self.batch = None

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []


__all__ = [
    "BitFlips",
    "FaultBatch",
    "Injector",
    "LayerInfo",
    "MODES",
    "PlaneNoise",
    "SINGLE_BIT",
    "SIZES",
    "WARP",
    "WARP_RANDOM",
    "WarpValues",
    "describe_layers",
    "layer_weights",
    "warp_geometry",
]


def layer_weights(layers: list[LayerInfo], weighting: str) -> np.ndarray:
    """The probability that a fault lands in each layer, as ``draw_sites`` draws it."""
    weights = np.array([li.macs if weighting == "macs" else li.numel for li in layers], dtype=np.float64)
    return weights / weights.sum()


def draw_sites(
    layers: list[LayerInfo],
    mode: str,
    n: int,
    n_images: int,
    weighting: str,
    rng: np.random.Generator,
    layer: int | None = None,
    bit: int | None = None,
    image: int | None = None,
    bits: int = 32,
    slots: list | None = None,
) -> dict[str, np.ndarray]:
    """Where n faults land (weight modes: ``weight_faults.draw_weight_sites`` over ``slots``,
    the targets' parameters). The layer is drawn in proportion to its per-image output elements
    (``elements``: every output value equally likely, as one faulty thread-instruction of a
    uniformly drawn dynamic instruction would be) or its multiply-accumulates (``macs``); then
    an image, and an element (single_bit, with a uniform bit) or an aligned warp (warp_random).
    A stratum fixes the ``layer``, the ``image`` (a row of the drawn inputs) or the ``bit`` (or
    several) and draws the rest the same way; with none, the draws are those of every earlier
    version. ``bits``: the width of the network's number format (16 for float16 and bfloat16)."""
    from fi_campaign.models.weight_faults import WEIGHT_MODES, draw_weight_sites

    if mode in WEIGHT_MODES:
        assert slots is not None, "weight faults are drawn over the targets' parameters"
        return draw_weight_sites(slots, layers, mode, n, n_images, weighting, rng, layer, bit, image)
    if layer is None:
        at = rng.choice(len(layers), size=n, p=layer_weights(layers, weighting))
    else:
        at = np.full(n, layer, dtype=np.int64)
    images = rng.integers(0, n_images, size=n) if image is None else np.full(n, image, dtype=np.int64)
    if mode == SINGLE_BIT:
        element = np.array([rng.integers(0, layers[k].numel) for k in at], dtype=np.int64)
        flipped = rng.integers(0, bits, size=n) if bit is None else np.full(n, bit, dtype=np.int64)
        return {"layer": at, "image": images, "element": element, "bit": flipped}
    warp = np.array([rng.integers(0, layers[k].warps) for k in at], dtype=np.int64)
    geo = [warp_geometry(layers[k], w) for k, w in zip(at, warp, strict=False)]
    return {
        "layer": at,
        "image": images,
        "element": np.array([g[0] for g in geo]),
        "width": np.array([g[1] for g in geo]),
        "value_seed": rng.integers(0, 2**62, size=n),
    }


def site_faults(
    sites: list[dict],
    rows: np.ndarray,
    fault_model: FaultModelRecord,
    layers: list[tuple[str, nn.Module]] | None = None,
) -> FaultBatch:
    """The FaultBatch of stored sites (their store columns as mappings, all of one mode), row
    i of the batch carrying sites[i]'s fault: the one place a site becomes a fault, shared by
    the in-process runner and the workload program of process-isolated runs. ``layers``: the
    targets' modules, which weight faults edit."""
    from fi_campaign.models.weight_faults import WEIGHT_MODES, weight_faults

    if sites[0]["mode"] in WEIGHT_MODES:
        assert layers is not None, "a weight fault needs its layer's module"
        return weight_faults(sites, rows, layers)

    def col(name: str, dtype: npt.DTypeLike = np.int64) -> np.ndarray:
        return np.array([s[name] for s in sites], dtype=dtype)

    at, elements = col("layer"), col("element")
    if sites[0]["mode"] == SINGLE_BIT:
        return BitFlips(at, rows, elements, col("bit"))
    spec = fault_model.lanes  # stores planned before the spec replay numpy's draws
    seeds = [int(s["value_seed"]) for s in sites]
    if spec == sampler.SPEC:
        u, signs = sampler.lane_draws(np.array(seeds, dtype=np.uint64))
    else:
        draws = [sampler.legacy_lane_draws(s) for s in seeds]
        u, signs = np.stack([d[0] for d in draws]), np.stack([d[1] for d in draws])
    by_value = fault_model.size == "by-value"
    entries = fault_model.entries  # the parameters stored at plan time, not today's table
    small, common, big = (entries[b if by_value else fault_model.size] for b in SIZES)
    return WarpValues(at, rows, elements, col("width"), u, signs, (small, common, big), by_value, spec)
