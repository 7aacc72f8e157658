"""Which golden activations a model's workload keeps for delayed start, within the memory bound.

Decided at plan time from the architecture, the layer weighting, the image count and
``resume_cache_mb``, and stored with each model in the campaign record, so the record says which
layers resume from their own output and which start from an earlier point (or run whole).
"""

from __future__ import annotations

from torch import nn

from fi_campaign.models.faults import describe_layers, layer_weights
from fi_campaign.models.resume import cache_bytes, choose, expected_work, resume_points
from fi_campaign.store.records import ResumePlan

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
