"""One campaign model's network in this process, for planning and for running: loaded from what
the config names (at plan time) or from what the campaign recorded (every later process, which
refuses changed files or weights), with its fault targets resolved by qualified module name.

A fi-campaign checkpoint with the default targets is the CIFAR ResNet as before: no targets
record, faults in every conv and linear output (``models.resnet.injectable_layers``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from fi_campaign.errors import UserError
from fi_campaign.models import sources
from fi_campaign.models.faults import LayerInfo
from fi_campaign.models.sources import SourceRecord
from fi_campaign.models.targets import Selection, TargetError, check_rows, describe, network_output, probe, select
from fi_campaign.models.zoo import Meta

if TYPE_CHECKING:
    from fi_campaign.store import TargetsRecord


@dataclass
class Network:
    model: nn.Module
    sha256: str
    meta: Meta | None  # a fi-campaign checkpoint's metadata
    source: SourceRecord | None  # anything else: what was loaded
    layers: list[tuple[str, nn.Module]] | None  # the targets; None: the CIFAR ResNet's conv and linear layers


def first_batch(inputs: torch.Tensor, batch_size: int) -> torch.Tensor:
    """The first ``batch_size`` inputs, padded with input 0: every pass has the campaign's batch shape."""
    x = inputs[:batch_size]
    if len(x) < batch_size:
        x = torch.cat([x, inputs[:1].expand(batch_size - len(x), *x.shape[1:])])
    return x


def load(ref: str | sources.ModelSource, key: str, device: str, dtype: str = "float32") -> sources.Loaded:
    """The network a config names (plan time), in ``dtype``."""
    return sources.load(ref, key, device, dtype)


def as_inputs(inputs: torch.Tensor, dtype: str) -> torch.Tensor:
    """The inputs as a network in ``dtype`` takes them: floating-point values cast to it,
    integer ones (token ids) as they are."""
    return inputs.to(sources.torch_dtype(dtype)) if inputs.is_floating_point() else inputs


def plan_targets(
    loaded: sources.Loaded,
    selection: Selection,
    key: str,
    inputs: torch.Tensor,
    batch_size: int,
) -> tuple[TargetsRecord, list[LayerInfo], np.ndarray]:
    """The targets of a network, described from one pass of the campaign's batch shape, and the
    network's outputs for that batch; refuses inputs the network cannot take and networks that
    mix the rows of a batch."""
    from fi_campaign.store import TargetsRecord

    model = loaded.model
    candidates = select(model, selection, key, loaded.types)
    x = as_inputs(first_batch(inputs, batch_size), loaded.dtype)
    try:
        seen = probe(model, candidates, x, sources.torch_dtype(loaded.dtype))
    except TargetError:
        raise
    except Exception as e:  # noqa: BLE001 - the network's own code may raise anything for inputs it refuses
        raise UserError(
            f"{key} refuses the campaign's inputs (a batch of shape {tuple(x.shape)}, "
            f"{str(x.dtype).removeprefix('torch.')}): {sources.first_line(e)}."
        ) from None
    y = seen.output
    if y.dim() == 0 or y.shape[0] != len(x):
        raise UserError(
            f"{key} returns a tensor of shape {tuple(y.shape)} for a batch of {len(x)} inputs; "
            "its output must have one row per input."
        )
    if not y.is_floating_point():
        raise UserError(
            f"{key} returns {str(y.dtype).removeprefix('torch.')} values; its output must be floating point."
        )
    layers, infos, note = describe(candidates, seen, selection, key, loaded.types)
    if batch_size > 1:
        check_rows(model, layers, x, y, key)
    record = TargetsRecord(
        names=tuple(li.name for li in infos),
        kinds=tuple(li.kind for li in infos),
        shapes=tuple(li.shape for li in infos),
        macs=tuple(li.macs for li in infos),
        input_shape=tuple(x.shape[1:]),
        input_dtype=str(x.dtype).removeprefix("torch."),
        output_shape=tuple(y.shape[1:]),
        note=note,
    )
    return record, infos, y.float().cpu().numpy()


def layer_infos(targets: TargetsRecord) -> list[LayerInfo]:
    """The planned targets as the site drawing and the resume plan read them."""
    return [
        LayerInfo(k, name, kind, tuple(shape), int(np.prod(shape)), macs)
        for k, (name, kind, shape, macs) in enumerate(
            zip(targets.names, targets.kinds, targets.shapes, targets.macs, strict=True)
        )
    ]


def load_recorded(
    checkpoint: str,
    sha256: str,
    source: SourceRecord | None,
    targets: tuple[str, ...] | None,
    key: str,
    device: str,
    dtype: str = "float32",
) -> Network:
    """The network a campaign recorded (a ModelRecord's checkpoint, sha256, source, target
    names and dtype: the workload program has them without the store), refusing changed files or
    weights, its targets resolved. A recorded source runs in the dtype it recorded."""
    from fi_campaign.models import zoo
    from fi_campaign.workload.images import check_checkpoint

    if source is None:
        model, meta = zoo.load(checkpoint, device=device)
        check_checkpoint(checkpoint, meta.sha256, sha256)
        net = Network(sources.in_dtype(model, dtype), meta.sha256, meta, None, None)
    else:
        loaded = sources.load_recorded(source, key, device)
        if sha256 and loaded.sha256 != sha256:
            raise UserError(
                f"{key}: the network loaded from {checkpoint} has other weights than when the campaign "
                "was planned (its build is not deterministic, or a file it reads changed); restore it or plan "
                "a new campaign."
            )
        net = Network(loaded.model, loaded.sha256, None, loaded.source, None)
    if targets is not None:
        modules = dict(net.model.named_modules())
        missing = [name for name in targets if name not in modules]
        if missing:
            raise UserError(f"{key} has no module {missing[0]} although the campaign was planned with it as a target.")
        net.layers = [(name, modules[name]) for name in targets]
    return net


__all__ = [
    "Network",
    "first_batch",
    "as_inputs",
    "layer_infos",
    "load",
    "load_recorded",
    "network_output",
    "plan_targets",
]
