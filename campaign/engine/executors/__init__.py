"""Executors: how a chunk of claimed sites becomes results. One per way of running an injection:

- ``inprocess``: one forward pass serves a whole chunk (``isolation: inprocess``);
- ``processes``: one workload process per injection, in its own run directory, with a timeout
  derived from the golden runs (``isolation: process``): how crashes and hangs become DUEs;
- ``nvbitfi``: the same processes with an NVBitFI injector attached (``backend: nvbitfi``).
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from fi_campaign.config import Config
    from fi_campaign.store import CampaignRecord, Result, Site, Store

BACKEND = "pytorch"


def semantics(mode: str, fault_model: dict) -> str:
    if mode == "single_bit":
        return "framework: xor one bit of one float32 conv/linear output"
    fm = fault_model
    sampler = fm.get("sampler", "numpy-pcg64/1")  # stores planned before models.sampler.SPEC
    return (f"framework: warp of 32 outputs, {fm['semantics']}, {fm.get('name', fm['table'])} {fm['op']} "
            f"{fm['size']}, sampler {sampler}")


class Executor(Protocol):
    groups_layers: bool  # its passes start at a layer: hand it a chunk's sites sorted by layer

    def run(self, sites: list[Site], mode: str) -> list[Result]: ...

    def close(self) -> None: ...


def open_executor(record: "CampaignRecord", config: "Config", name: str, device: str, runs: Path,
                  keep_runs: bool, threads: int | None, store: "Store | None" = None) -> Executor:
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
