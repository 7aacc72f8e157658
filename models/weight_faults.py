"""Faults in the stored parameters of a target layer rather than in its output.

``weight_bit`` is a transient upset of one bit of one parameter element (a weight or a bias) in
the memory a layer reads it from, lasting one image's inference; ``weight_stuck_at`` is a
permanent fault, the same bit stuck at 0 or 1 for the whole workload.

A batch carries a different weight fault in each row, yet every row's network holds one
parameter tensor. A faulted row is therefore recomputed at its layer from the layer's own input
with its own faulty copy of the parameter, and written over the layer's output for that row;
the other rows keep the unfaulted output. Conv and linear layers recompute only the output
channel the faulty element feeds; any other module type is called whole, on that one row. A
stuck-at fault is the same for every row, so it is written into the parameter itself while a
pass runs and restored after: that pass *is* the faulty network.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fi_campaign.models.faults import INT_VIEWS, FaultBatch, LayerInfo

WEIGHT_BIT = "weight_bit"
WEIGHT_STUCK_AT = "weight_stuck_at"
WEIGHT_MODES = (WEIGHT_BIT, WEIGHT_STUCK_AT)


@dataclass(frozen=True)
class ParamSlot:
    """One parameter of a target layer: a weight fault's possible home."""

    layer: int
    local: str  # its name within the layer's module: "weight", "bias", "in_proj_weight", ...
    qualified: str  # its name within the network: "blocks.0.unit1.0.weight"
    numel: int
    bits: int  # of its number format: 32 for float32, 16 for float16 and bfloat16


def describe_parameters(layers: list[tuple[str, nn.Module]]) -> list[list[ParamSlot]]:
    """Per target layer, its floating-point parameters in ``named_parameters`` order."""
    out = []
    for k, (name, module) in enumerate(layers):
        out.append(
            [
                ParamSlot(k, local, f"{name}.{local}" if name else local, p.numel(), p.element_size() * 8)
                for local, p in module.named_parameters()
                if p.is_floating_point() and p.element_size() in INT_VIEWS
            ]
        )
    return out


def parameter_weights(slots: list[list[ParamSlot]], layers: list[LayerInfo], weighting: str) -> np.ndarray:
    """The probability that a weight fault lands in each layer. ``elements``: every stored
    parameter element equally likely (an upset of the weight memory); ``macs``: in proportion to
    the layer's multiply-accumulates (a parameter read more often is exposed more often)."""
    counts = np.array([sum(s.numel for s in per) for per in slots], dtype=np.float64)
    if weighting == "macs":
        counts = np.where(counts > 0, [float(li.macs) for li in layers], 0.0)
    if counts.sum() <= 0:
        raise ValueError("no target layer has a floating-point parameter for a weight fault to hit")
    return counts / counts.sum()


def draw_weight_sites(
    slots: list[list[ParamSlot]],
    layers: list[LayerInfo],
    mode: str,
    n: int,
    n_images: int,
    weighting: str,
    rng: np.random.Generator,
    layer: int | None = None,
    bit: int | None = None,
    image: int | None = None,
) -> dict[str, np.ndarray]:
    """Where n weight faults land: a layer (``parameter_weights``), then one element uniformly
    over all of that layer's parameter elements, a bit of its format, and, for ``weight_bit``,
    the image whose inference it lasts; ``weight_stuck_at`` draws the stuck value instead and
    has no image (every image sees it). A stratum fixes ``layer``, ``bit`` or ``image``."""
    if layer is None:
        at = rng.choice(len(layers), size=n, p=parameter_weights(slots, layers, weighting))
    else:
        at = np.full(n, layer, dtype=np.int64)
    flat = np.array([rng.integers(0, sum(s.numel for s in slots[k])) for k in at], dtype=np.int64)
    params, elements, widths = [], [], []
    for k, e in zip(at, flat, strict=True):
        for s in slots[k]:
            if e < s.numel:
                break
            e -= s.numel
        params.append(s.qualified)
        elements.append(int(e))
        widths.append(s.bits)
    bits = np.array([rng.integers(0, w) for w in widths], dtype=np.int64) if bit is None else np.full(n, bit)
    out: dict[str, np.ndarray] = {"layer": at, "parameter": np.array(params, dtype=object)}
    out["element"], out["bit"] = np.array(elements, dtype=np.int64), bits
    if mode == WEIGHT_BIT:
        out["image"] = rng.integers(0, n_images, size=n) if image is None else np.full(n, image, dtype=np.int64)
    else:
        out["stuck"] = rng.integers(0, 2, size=n)
    return out


def local_name(module_name: str, qualified: str) -> str:
    """A parameter's name within its layer, from the qualified name a site stores."""
    return qualified[len(module_name) + 1 :] if module_name else qualified


def _bits_of(t: torch.Tensor) -> torch.Tensor:
    return t.view(INT_VIEWS[t.element_size()][0])


def _mask(bit: int, width: int) -> int:
    """The XOR/OR mask of ``bit`` as a signed integer of ``width`` bits (the sign bit negative)."""
    _, unsigned, signed = INT_VIEWS[width // 8]
    return int(unsigned(1 << bit).view(signed))


def flipped(p: torch.Tensor, element: int, bit: int) -> torch.Tensor:
    """A copy of ``p`` with one bit of one element inverted."""
    q = p.detach().clone()
    flat = _bits_of(q).view(-1)
    flat[element] ^= _mask(bit, q.element_size() * 8)
    return q


def stored_bit(p: torch.Tensor, element: int, bit: int) -> int:
    """The value (0 or 1) bit ``bit`` of element ``element`` holds now."""
    v = int(_bits_of(p.detach()).reshape(-1)[element].item())
    return (v >> bit) & 1


@contextmanager
def stuck(p: torch.Tensor, element: int, bit: int, value: int) -> Iterator[None]:
    """Parameter ``p`` with one bit held at ``value`` until the block ends, then restored."""
    flat = _bits_of(p.data).view(-1)
    old = flat[element].clone()
    m = _mask(bit, p.element_size() * 8)
    with torch.no_grad():
        flat[element] = old | m if value else old & ~m
    try:
        yield
    finally:
        with torch.no_grad():
            flat[element] = old


def _row_delta(
    module: nn.Module, local: str, p: torch.Tensor, faulty: torch.Tensor, element: int, args: tuple
) -> tuple[tuple, torch.Tensor]:
    """What the faulty element adds to one row's output, as (index into the output row,
    values): for a conv or linear layer, the faulty weight's excess times the one input it
    multiplies (or the bias's excess), in the one channel it feeds; for any other module, its
    faulty output minus its stored-weight output on the row. Zero where the fault changes
    nothing, so such a fault changes nothing, bit for bit."""
    conv = isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)) and module.padding_mode == "zeros"
    if local in ("weight", "bias") and (conv or isinstance(module, nn.Linear)):
        excess = faulty.reshape(-1)[element] - p.detach().reshape(-1)[element]
        if local == "bias":
            return (..., element) if isinstance(module, nn.Linear) else (element,), excess
        o, tap = divmod(element, p[0].numel())
        x = args[0]
        if isinstance(module, nn.Linear):
            return (..., o), excess * x[0, ..., tap]
        assert isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d))
        c, offset = divmod(tap, p[0, 0].numel())
        c += o // (module.out_channels // module.groups) * (module.in_channels // module.groups)
        kernel = torch.zeros((1, 1, *p.shape[2:]), dtype=p.dtype, device=p.device)
        kernel.view(-1)[offset] = excess
        conv_fn = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[p.dim() - 2]
        y = conv_fn(x[:, c : c + 1], kernel, None, module.stride, module.padding, module.dilation)
        return (o,), y[0, 0]
    faulty_out = torch.func.functional_call(module, {local: faulty}, args)
    return (), (faulty_out - module(*args))[0]


def _row(a: object, r: int, n: int) -> object:
    """Row ``r`` of a layer input that has the batch's ``n`` rows; any other input as it is."""
    return a[r : r + 1] if isinstance(a, torch.Tensor) and a.dim() and a.shape[0] == n else a


@dataclass
class WeightFlips(FaultBatch):
    """weight_bit: row i's pass sees one bit of one element of parameter ``locals[i]`` of layer
    ``layers[i]`` inverted, from that layer on."""

    layers: np.ndarray
    rows: np.ndarray
    locals: list[str]
    elements: np.ndarray
    bits: np.ndarray
    needs_input = True
    _busy: bool = field(default=False, init=False, repr=False)  # recomputing: the hooks it re-enters pass

    def apply(self, layer: int, out: torch.Tensor) -> torch.Tensor:
        if self.rows_at(layer).size:
            raise RuntimeError("a weight fault is applied from its layer's input, not its output")
        return out

    def apply_at(self, layer: int, module: nn.Module, inputs: tuple, out: torch.Tensor) -> torch.Tensor:
        sel = self.rows_at(layer)
        if sel.size == 0 or self._busy:
            return out
        self._busy = True
        try:
            return self._recomputed(sel, module, inputs, out)
        finally:
            self._busy = False

    def _recomputed(self, sel: np.ndarray, module: nn.Module, inputs: tuple, out: torch.Tensor) -> torch.Tensor:
        params = dict(module.named_parameters())
        n = out.shape[0]
        for i in sel:
            r = int(self.rows[i])
            local = self.locals[i]
            p, e = params[local], int(self.elements[i])
            args = tuple(_row(a, r, n) for a in inputs)
            index, delta = _row_delta(module, local, p, flipped(p, e, int(self.bits[i])), e, args)
            at = (r, *index)
            out[at] += delta.to(out.dtype)
        return out


@dataclass
class StuckWeights(FaultBatch):
    """weight_stuck_at: one bit of one parameter element held at ``value`` for every pass armed
    with it, whatever the rows (a permanent fault seen by every image)."""

    layers: np.ndarray  # the fault's layer, once per row of the pass
    layer: int
    local: str
    element: int
    bit: int
    value: int
    needs_input = True

    def apply(self, layer: int, out: torch.Tensor) -> torch.Tensor:
        return out  # the parameter itself is faulty while armed

    @contextmanager
    def held(self, layers: list[tuple[str, nn.Module]]) -> Iterator[None]:
        p = dict(layers[self.layer][1].named_parameters())[self.local]
        with stuck(p, self.element, self.bit, self.value):
            yield

    def active(self, layers: list[tuple[str, nn.Module]]) -> bool:
        """Whether the stuck value differs from the stored bit (else the network is unchanged)."""
        p = dict(layers[self.layer][1].named_parameters())[self.local]
        return stored_bit(p, self.element, self.bit) != self.value


def weight_faults(sites: list[dict], rows: np.ndarray, layers: list[tuple[str, nn.Module]]) -> FaultBatch:
    """The FaultBatch of stored weight-fault sites (all of one mode); a stuck-at batch holds one
    site, every row of its passes seeing it."""
    at = np.array([s["layer"] for s in sites], dtype=np.int64)
    locals_ = [local_name(layers[s["layer"]][0], s["parameter"]) for s in sites]
    if sites[0]["mode"] == WEIGHT_BIT:
        elements = np.array([s["element"] for s in sites], dtype=np.int64)
        return WeightFlips(at, rows, locals_, elements, np.array([s["bit"] for s in sites], dtype=np.int64))
    if len(sites) != 1:
        raise ValueError("a weight_stuck_at pass carries one fault")
    s = sites[0]
    return StuckWeights(
        np.full(len(rows), s["layer"]), s["layer"], locals_[0], int(s["element"]), int(s["bit"]), int(s["stuck"])
    )
