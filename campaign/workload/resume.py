"""Which golden activations a model's workload keeps for delayed start, within the memory bound.

Decided at plan time from the architecture, the layer weighting, the image count and
``resume_cache_mb``, and stored with each model in the campaign record, so the record says which
layers resume from their own output and which start from an earlier point (or run whole).

Any other network's resume points exist only once its graph is captured on the device that runs
it, so its workload chooses them when it opens (``graph_keep``), by the same rule: the same
network, inputs, weighting and bound give the same choice in every worker.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from torch import nn

from fi_campaign.models.faults import describe_layers, layer_weights
from fi_campaign.models.resume import cache_bytes, choose, expected_work, resume_points
from fi_campaign.store.records import ResumePlan

if TYPE_CHECKING:
    from fi_campaign.models.graph_resume import GraphResumer

MB = 2**20


def resume_plan(model: nn.Module, weighting: str, images: int, budget_mb: int) -> ResumePlan:
    """The kept resume points and what they cost and save: ``work`` is the expected share of a
    whole pass an injection still runs with them, ``work_all`` with every point kept."""
    points = resume_points(model)
    weights = layer_weights(describe_layers(model), weighting)
    kept = choose(points, weights, images, budget_mb * MB)
    return ResumePlan(
        layers=tuple(kept),
        budget_mb=budget_mb,
        cache_mb=round(cache_bytes(points, kept, images) / MB, 1),
        all_mb=round(cache_bytes(points, range(len(points)), images) / MB, 1),
        work=round(expected_work(points, weights, kept), 4),
        work_all=round(expected_work(points, weights, range(len(points))), 4),
    )


@dataclass(frozen=True, kw_only=True)
class GraphBudget:
    """What choosing the kept points of any network's captured graph takes: the chance of a fault
    landing in each target (in the targets' order) and the memory bound."""

    weights: tuple[float, ...]
    budget_mb: int


def graph_keep(resumer: GraphResumer, budget: GraphBudget, images: int) -> list[int]:
    """The resume points (execution order) whose golden values a network's workload keeps: the
    ones that save the most expected work per byte within ``budget_mb``, as for the CIFAR ResNets."""
    weights = [budget.weights[p.target] for p in resumer.points]
    return resumer.choose(weights, images, budget.budget_mb * MB)
