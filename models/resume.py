"""Delayed start's plan for the CIFAR ResNets, from the architecture alone: what keeping each
layer's resume point costs in memory and saves in work, and which points to keep within a bound.

A *resume point* is an injectable layer together with the tensors live across its output: the
output itself and, inside a residual block, the block input that the shortcut adds back. The plan
is made at plan time without running the network and stored in the campaign record; the passes
themselves resume from the network's captured graph (models/graph_resume.py, the one mechanism
for every network), which keeps exactly these tensors for a CIFAR ResNet.

Only ``CifarResNet`` from models/resnet.py is accepted: for any other network (torchvision
ResNets, subclasses that override a forward, anything with other dataflow) which tensors are
live at which layer is not derived here, and it is refused.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from torch import nn

from fi_campaign.errors import UserError
from fi_campaign.models.faults import describe_layers
from fi_campaign.models.graph_resume import expected_share, keep_greedily
from fi_campaign.models.resnet import BasicBlock, CifarResNet, ConvUnit, injectable_layers

FLOAT_BYTES = 4


class ResumeError(UserError):
    """A network delayed start cannot resume; the message is one sentence for the user."""


@dataclass(frozen=True)
class ResumePoint:
    layer: int  # index among models.resnet.injectable_layers
    name: str
    block: int | None  # the residual block it lies in; None: the stem or the classifier
    unit: int  # 1 or 2 inside a block (which ConvUnit); 0 outside
    numel: int  # per image: the layer's output, kept
    carry_numel: int  # per image: the block input kept beside it (0 outside a block)
    macs_after: int  # per image: multiply-accumulates still to run after this layer
    macs_total: int  # per image: those of a whole pass


def _refuse(model: nn.Module, why: str) -> ResumeError:
    return ResumeError(
        f"delayed start (resume: true) follows the dataflow of models/resnet.py's CifarResNet only, "
        f"and {type(model).__name__} {why}; set resume: false to run whole passes."
    )


def _network(model: nn.Module) -> CifarResNet:
    if type(model) is not CifarResNet:
        raise _refuse(model, "is not one")
    return model


def _blocks(model: CifarResNet) -> list[BasicBlock]:
    blocks = []
    for block in model.blocks:
        if type(block) is not BasicBlock:
            raise _refuse(model, f"has a {type(block).__name__} where a BasicBlock belongs")
        blocks.append(block)
    return blocks


def _units(model: nn.Module) -> list[tuple[str, int | None, int, ConvUnit | nn.Linear]]:
    """(expected layer name, block, unit, module owning the conv) in execution order."""
    model = _network(model)
    out: list[tuple[str, int | None, int, ConvUnit | nn.Linear]] = [("stem.0", None, 0, model.stem)]
    for b, block in enumerate(_blocks(model)):
        out += [(f"blocks.{b}.unit1.0", b, 1, block.unit1), (f"blocks.{b}.unit2.0", b, 2, block.unit2)]
    for name, _, _, unit in out:
        if type(unit) is not ConvUnit or not isinstance(unit[0], nn.Conv2d):
            raise _refuse(model, f"has no ConvUnit starting with a convolution at {name}")
    if type(model.fc) is not nn.Linear:
        raise _refuse(model, "has no linear classifier at fc")
    return out + [("fc", None, 0, model.fc)]


def resume_points(model: nn.Module) -> list[ResumePoint]:
    """One resume point per injectable layer, in execution order; refuses other networks."""
    units = _units(model)
    names = [name for name, _ in injectable_layers(model)]
    if names != [u[0] for u in units]:
        raise _refuse(model, "has injectable layers outside the stem, block units and classifier")
    infos = describe_layers(model)
    total = sum(li.macs for li in infos)
    done = np.cumsum([li.macs for li in infos])
    points = []
    for k, ((name, block, unit, _), li) in enumerate(zip(units, infos, strict=False)):
        # a block's input has the shape of the output of the layer before its first conv
        carry = 0 if block is None else infos[k - unit].numel
        points.append(ResumePoint(k, name, block, unit, li.numel, carry, int(total - done[k]), total))
    return points


def expected_work(points: list[ResumePoint], weights: np.ndarray, kept: Iterable[int]) -> float:
    """Expected share of a whole pass an injection still runs, faults landing in layer k with
    probability ``weights[k]``."""
    return expected_share([p.macs_after / points[0].macs_total for p in points], weights, kept)


def cache_bytes(points: list[ResumePoint], kept: Iterable[int], images: int) -> int:
    """Memory of the golden tensors of ``kept`` for ``images`` images (a block input once per block)."""
    kept = set(kept)
    outputs = sum(points[k].numel for k in kept)
    carries = {points[k].block: points[k].carry_numel for k in kept if points[k].block is not None}
    return (outputs + sum(carries.values())) * images * FLOAT_BYTES


def choose(points: list[ResumePoint], weights: np.ndarray, images: int, budget_bytes: int) -> list[int]:
    """The resume points to keep within ``budget_bytes``. Layers left out start from the last
    kept point before them, or from the images (a whole pass)."""
    return keep_greedily(
        [p.layer for p in points],
        lambda kept: cache_bytes(points, kept, images),
        lambda kept: expected_work(points, weights, kept),
        budget_bytes,
    )
