"""Executors: how a chunk of claimed sites becomes results. One per way of running an injection:

- ``inprocess``: one forward pass serves a whole chunk (``isolation: inprocess``);
- ``processes``: one workload process per injection, in its own run directory, with a timeout
  derived from the golden runs (``isolation: process``): how crashes and hangs become DUEs;
- ``nvbitfi``: the same processes with an NVBitFI injector attached (``backend: nvbitfi``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from fi_campaign.store.records import Result, unchecked

if TYPE_CHECKING:
    from fi_campaign.classify import Outcome
    from fi_campaign.config import Config
    from fi_campaign.store import (
        CampaignRecord,
        FaultModelRecord,
        InjectionRecord,
        LaunchCount,
        Redraw,
        Relocation,
        Site,
        Store,
    )

BACKEND = "pytorch"


def semantics(mode: str, fault_model: FaultModelRecord, dtype: str = "float32") -> str:
    if mode == "single_bit":
        return f"framework: xor one bit of one {dtype} conv/linear output"
    if mode == "weight_bit":
        return "framework: xor one bit of one parameter element of a target layer, for one image"
    if mode == "weight_stuck_at":
        return "framework: one bit of one parameter element of a target layer stuck at 0 or 1, for every image"
    fm = fault_model
    return f"framework: warp of 32 outputs, {fm.semantics}, {fm.name} {fm.op} {fm.size}, sampler {fm.lanes}"


def result_of(
    site: Site,
    judged: Outcome,
    *,
    backend: str,
    isolation: str,
    semantics: str,
    runtime_s: float,
    detail: str | None = None,
    injection: InjectionRecord | None = None,
    relocated: Relocation | None = None,
    redraws: tuple[Redraw, ...] = (),
    launch_counts: tuple[LaunchCount, ...] = (),
) -> Result:
    """The result of ``site`` as judged; ``injection`` to ``launch_counts``: what an NVBitFI run
    stores beside it. Made once per injection: every field is given, so ``unchecked``."""
    return unchecked(
        Result,
        {
            "site_id": site.id,
            "outcome": judged.outcome,
            "images_changed": judged.images_changed,
            "nan": judged.nan,
            "max_abs_diff": judged.max_abs_diff,
            "golden_top1": judged.golden_top1,
            "faulty_top1": judged.faulty_top1,
            "backend": backend,
            "isolation": isolation,
            "semantics": semantics,
            "runtime_s": runtime_s,
            "detail": detail,
            "injection": injection,
            "relocated": relocated,
            "redraws": redraws,
            "launch_counts": launch_counts,
        },
    )


class Executor(Protocol):
    groups_layers: bool  # a pass costs less with its faults in few layers: hand it a chunk's sites sorted by layer
    note: str | None  # one sentence for the user about how it runs (said once when it opens)

    def run(self, sites: list[Site], mode: str) -> list[Result]: ...

    def claims_windows(self, mode: str) -> bool:
        """Whether its injections of ``mode`` are cheap enough to claim several chunks at once,
        sharing one claim's cost (a few ms) among them."""
        ...

    def close(self) -> None: ...


def open_executor(
    record: CampaignRecord,
    config: Config,
    name: str,
    device: str,
    runs: Path,
    keep_runs: bool,
    threads: int | None,
    store: Store | None = None,
) -> Executor:
    """The executor a campaign's backend and isolation call for, for one model. ``store`` lets
    the NVBitFI executor read the launch counts other workers' runs have shown."""
    if config.backend == "nvbitfi":
        from fi_campaign.engine.executors.nvbitfi import Nvbitfi

        return Nvbitfi(record, config, name, device, runs, keep_runs, threads, store)
    if config.isolation == "inprocess":
        from fi_campaign.engine.executors.inprocess import InProcess

        return InProcess(record, config, name, device)
    from fi_campaign.engine.executors.processes import Processes

    return Processes(record, config, name, device, runs, keep_runs, threads)
