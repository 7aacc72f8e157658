"""In-process execution: the model stays loaded and one forward pass serves a whole chunk of
injections, row i of the batch carrying site i's fault."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np

from fi_campaign.classify import judge_batch
from fi_campaign.config import Config
from fi_campaign.engine.executors import BACKEND, result_of, semantics
from fi_campaign.store import CampaignRecord, FaultModelRecord, Result, Site

if TYPE_CHECKING:
    from torch import nn

    from fi_campaign.models.faults import FaultBatch
    from fi_campaign.workload.resume import GraphBudget


def fault_batch(
    sites: list[Site], fault_model: FaultModelRecord, layers: list[tuple[str, nn.Module]] | None = None
) -> FaultBatch:
    """The vectorised faults of a chunk: row i of the batch carries site i's fault."""
    from fi_campaign.models.faults import site_faults

    return site_faults([vars(s) for s in sites], np.arange(len(sites)), fault_model, layers)  # flat: no asdict copy


def resume_layers(record: CampaignRecord, config: Config, name: str) -> list[int]:
    """The resume points the campaign record keeps for a model (planned before delayed start
    existed: decided now, the same way); none when the campaign runs whole passes."""
    if not config.resumes:
        return []
    info = record.models[name]
    plan = info.resume
    if plan is None and (info.arch is None or info.targets is not None):
        return []  # a network other than the CIFAR ResNets: its captured graph's points (graph_budget)
    if plan is None:
        assert info.arch is not None, "checked above"
        from fi_campaign.models.resnet import build
        from fi_campaign.workload.resume import resume_plan

        plan = resume_plan(
            build(info.arch), config.layer_weighting, len(record.workload.indices), config.resume_cache_mb
        )
    return list(plan.layers)


def graph_budget(record: CampaignRecord, config: Config, name: str) -> GraphBudget | None:
    """Delayed start on the captured graph of a network with planned targets (any network but a
    CIFAR ResNet with its default targets); None when the campaign runs whole passes."""
    targets = record.models[name].targets
    if not config.resumes or targets is None:
        return None
    from fi_campaign.models.faults import layer_weights
    from fi_campaign.workload.network import layer_infos
    from fi_campaign.workload.resume import GraphBudget

    weights = layer_weights(layer_infos(targets), config.layer_weighting)
    return GraphBudget(weights=tuple(float(v) for v in weights), budget_mb=config.resume_cache_mb)


class InProcess:
    def __init__(self, record: CampaignRecord, config: Config, name: str, device: str) -> None:
        from fi_campaign.workload.model import Workload

        info = record.models[name]
        layers = resume_layers(record, config, name)
        graph = graph_budget(record, config, name)
        self.w = Workload.open_recorded(
            info, name, record.workload, device, config.batch_size, config.math, resume_layers=layers, graph=graph
        )
        self.w.check_reproducible(config.tolerance)
        self.note = None if self.w.note is None else f"models.{name} runs whole passes: {self.w.note}"
        self.record, self.config, self.dtype = record, config, info.dtype
        from fi_campaign.workload.judge import judge_of

        self.judging = judge_of(config)
        self.groups_layers = True  # fewer layers hit per pass: fewer hooks at work, and later starts when resuming

    def run(self, sites: list[Site], mode: str) -> list[Result]:
        if mode == "weight_stuck_at":
            return [self._stuck(s, mode) for s in sites]
        t0 = time.perf_counter()
        rows = np.array([s.image for s in sites])
        faulty = self.w.forward(rows, fault_batch(sites, self.record.fault_model, self.w.injector.layers))
        # one image per injection: the one its fault landed in, so its classes are the ones shown
        outcomes = judge_batch(
            self.judging,
            self.w.golden[rows][:, None],
            faulty[:, None],
            self.config.tolerance,
            shown=np.zeros(len(sites), dtype=int),
        )
        per = (time.perf_counter() - t0) / len(sites)
        label = semantics(mode, self.record.fault_model, self.dtype)
        return [
            result_of(s, o, backend=BACKEND, isolation="inprocess", semantics=label, runtime_s=per)
            for s, o in zip(sites, outcomes, strict=False)
        ]

    def claims_windows(self, mode: str) -> bool:
        return mode != "weight_stuck_at"  # a stuck-at injection is a pass over every image

    def _stuck(self, site: Site, mode: str) -> Result:
        """A permanent fault: every image's pass with the bit stuck, judged over all of them. A
        stuck value equal to the stored bit leaves the network as it is: masked, not run."""
        from fi_campaign.models.faults import site_faults
        from fi_campaign.models.weight_faults import StuckWeights

        t0 = time.perf_counter()
        b = self.config.batch_size
        faults = site_faults([vars(site)], np.arange(b), self.record.fault_model, self.w.injector.layers)
        assert isinstance(faults, StuckWeights), "one stuck-at site"
        active = faults.active(self.w.injector.layers)
        every = np.arange(len(self.w.golden))
        faulty = (
            np.concatenate([self.w.forward(every[i : i + b], faults) for i in range(0, len(every), b)])
            if active
            else self.w.golden
        )
        (judged,) = judge_batch(self.judging, self.w.golden[None], faulty[None], self.config.tolerance)
        return result_of(
            site,
            judged,
            backend=BACKEND,
            isolation="inprocess",
            semantics=semantics(mode, self.record.fault_model),
            runtime_s=time.perf_counter() - t0,
            detail=None if active else "the stuck value equals the stored bit: the network is unchanged",
        )

    def close(self) -> None:
        self.w.close()
