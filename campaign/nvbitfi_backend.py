"""Backend nvbitfi: the workload program run under NVBitFI's profiler or injector.

The same program as every other process-isolated run (``campaign.infer``), so golden, profiling
and injection runs launch the same kernels in the same order (protocol doc §12.1). The tool is
attached by both ``LD_PRELOAD`` and ``CUDA_INJECTION64_PATH`` (PyTorch can reset the former),
NVBit's banner and verbosity are off so nothing but the fault changes a run.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from campaign import process
from campaign.classify import DUE, NOT_INJECTED
from campaign.config import Config
from campaign.errors import UserError
from campaign.runner import Processes, thread_env
from campaign.store import CampaignRecord, Site

PROFILE_NAME = "nvbitfi-igprofile.txt"


def tool_env(tool: Path, gpu: str | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"LD_PRELOAD": str(tool), "CUDA_INJECTION64_PATH": str(tool), "NOBANNER": "1",
                "TOOL_VERBOSE": "0", "ACK_CTX_INIT_LIMITATION": "1"})
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpu
    return env


def gpu_of(device: str) -> str | None:
    """One CUDA_VISIBLE_DEVICES per worker: cuda:N runs on GPU N only."""
    return device.split(":", 1)[1] if ":" in device else None


def require_gpu() -> None:
    import torch

    if not torch.cuda.is_available():
        raise UserError("backend nvbitfi needs an NVIDIA GPU visible to PyTorch and none is; "
                        "run 'fi-campaign doctor' on the GPU machine.")


def profile_model(config: Config, checkpoint: str, workload: dict, fault_model: dict, root: Path) -> Path:
    """Run the workload once under profiler.so and keep its nvbitfi-igprofile.txt in ``root``."""
    from campaign.workload import command, write_root
    from nvbitfi_tools.install import locate, require

    require_gpu()
    install = require(locate(config.nvbitfi.home, config.nvbitfi.dialect))
    root = write_root(root, checkpoint, workload, config.batch_size, "cuda", fault_model)  # pinned below
    d = root / "profile"
    ended = process.run(command(root), d, 24 * 3600.0, tool_env(install.profiler, gpu_of(config.device)))
    log = d / "nvbitfi-injection-log-temp.txt"  # the profiler reuses the injector's log name
    if ended.due_reason() or not log.exists():
        raise UserError(f"the profiling run failed ({ended.due_reason() or 'no profile written'}); see {d}/stderr.txt.")
    shutil.move(log, root / PROFILE_NAME)
    return root / PROFILE_NAME


class Nvbitfi(Processes):
    """One workload process per injection with NVBitFI's injector attached and the site's
    nvbitfi-injection-info.txt in its run directory (the injector reads it from its cwd)."""

    backend = "nvbitfi"

    def __init__(self, record: CampaignRecord, config: Config, name: str, device: str, root: Path,
                 keep_runs: bool, threads: int | None = None) -> None:
        from nvbitfi_tools.install import kernel_log_readable, locate, require

        require_gpu()
        self.install = require(locate(config.nvbitfi.home, config.nvbitfi.dialect))
        if config.nvbitfi.dummy and self.install.dummy_injector is None:
            raise UserError("nvbitfi.dummy asks for the DUMMY injector but the build has none; "
                            "run 'fi-campaign doctor' to see where it goes.")
        self.xid_readable = kernel_log_readable()
        self.gpu = gpu_of(device)
        # cuda:N is pinned with CUDA_VISIBLE_DEVICES=N, so inside the process it is plain cuda;
        # the golden runs are native (no tool) but on the same GPU
        pinned = dict(os.environ) | ({"CUDA_VISIBLE_DEVICES": self.gpu} if self.gpu is not None else {})
        super().__init__(record, config, name, "cuda", root, keep_runs, threads, pinned)
        self.env = self._tool_env(self.install.dummy_injector if config.nvbitfi.dummy else self.install.injector)
        if self.install.dummy_injector is not None:
            self.timeout_s = max(self.timeout_s, config.timeout_factor * self._dummy_runtime())

    def _tool_env(self, tool: Path) -> dict[str, str]:
        env = tool_env(tool, self.gpu)
        return env if self.threads is None else thread_env(env, self.threads)

    def _dummy_runtime(self) -> float:
        """The protocol doc's timeout base: an instrumented run, not a native one (§12.10)."""
        from campaign.workload import command

        d = self.root / "dummy"
        return process.run(command(self.root), d, self.GOLDEN_TIMEOUT_S, self._tool_env(self.install.dummy_injector)).runtime_s

    def prepare(self, d: Path, site: Site, mode: str) -> list[str]:
        from campaign.workload import command
        from nvbitfi_tools.render import render_injection_info, write_injection_info
        from nvbitfi_tools.sites import Site as NvSite

        nv = NvSite(site.kernel, site.kcount, site.igid, site.iid, site.op_seed, site.bit_seed)
        value = site.value if mode == "warp_random" and self.config.nvbitfi.powerlaw_line else None
        write_injection_info(d, render_injection_info(self.config.nvbitfi.dialect, mode, nv, value))
        self._xid_before = self._kernel_log()
        return command(self.root)

    def _kernel_log(self) -> str | None:
        from nvbitfi_tools.install import read_kernel_log

        return read_kernel_log() if self.xid_readable else None

    def judge(self, d: Path, site: Site, ended: process.Ended) -> tuple[str, int, bool, float | None, str | None]:
        from nvbitfi_tools.install import xid_lines
        from nvbitfi_tools.injlog import read_injection_log, verdict

        after = self._kernel_log()
        new = after[len(self._xid_before or ""):] if after is not None else ""
        xids = xid_lines(new)
        log = read_injection_log(d)
        v = verdict(log, ended.due_reason() is not None or bool(xids))
        if v == "not_injected":
            return NOT_INJECTED, 0, False, None, "injector reported no fault applied"
        if v == "due":
            reason = ended.due_reason() or (f"Xid {xids[0].code}" if xids else "kernel error reported by the injector")
            return DUE, 0, False, None, reason
        return super().judge(d, site, ended)

    def label(self, mode: str) -> str:
        from nvbitfi_tools.isa import semantics

        nv = self.config.nvbitfi
        text = semantics(nv.dialect, mode, nv.group, nv.powerlaw_line, nv.reads_powerlaw)
        return text + ("" if self.xid_readable else "; kernel log unreadable, Xid not checked")


def nvbitfi_sites(config: Config, profile_path: Path, model: str, fault_model: dict, stratum_rng) -> list[dict]:
    """Sites as NVBitFI draws them: a dynamic instruction of the group, uniform over all launches."""
    from models.powerlaw import PowerLaw
    from nvbitfi_tools.profile import read_profile, require_groups
    from nvbitfi_tools.sites import draw_sites

    profile = read_profile(profile_path, config.nvbitfi.dialect)
    require_groups(profile, [(config.nvbitfi.group, m) for m in config.modes])
    size = fault_model["size"] if fault_model["size"] != "by-value" else "common"
    law = PowerLaw(*fault_model["entries"][size])
    rows = []
    for mode in config.modes:
        rng = stratum_rng(config.seed, model, mode)
        drawn = draw_sites(profile, config.nvbitfi.group, config.injections, rng)
        values = law.sample(rng.random(len(drawn))) if mode == "warp_random" else np.full(len(drawn), np.nan)
        rows.extend({"model": model, "mode": mode, "kernel": s.kernel, "kcount": s.kcount, "igid": s.igid,
                     "iid": s.iid, "op_seed": s.op_id_seed, "bit_seed": s.bit_id_seed,
                     "value": None if np.isnan(v) else float(v)} for s, v in zip(drawn, values))
    return rows
