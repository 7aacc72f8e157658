"""Planning a SASS-level campaign: profile the workload under NVBitFI's profiler, then draw
sites from the profile as NVBitFI's own scripts do."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np

from fi_campaign.config import Config
from fi_campaign.errors import UserError
from fi_campaign.store import FaultModelRecord, LeftOut, ModelRecord, WorkloadRecord
from fi_campaign.workload import process

PROFILE_NAME = "nvbitfi-igprofile.txt"


def profile_model(
    config: Config, model: ModelRecord, name: str, workload: WorkloadRecord, fault_model: FaultModelRecord, root: Path
) -> Path:
    """Run the workload once under profiler.so and keep its nvbitfi-igprofile.txt in ``root``."""
    from fi_campaign.nvbitfi_tools.attach import gpu_of, tool_env
    from fi_campaign.nvbitfi_tools.install import locate, require
    from fi_campaign.workload.model import require_gpu
    from fi_campaign.workload.program import command, write_root

    require_gpu()
    install = require(locate(config.nvbitfi.home, config.nvbitfi.dialect))
    assert install.profiler is not None, "require() refuses a build without its profiler"
    env = tool_env(install.profiler, gpu_of(config.device))
    if config.workload is not None:  # the user's own program, under the chosen build's profiler
        from fi_campaign.workload.own import open_program

        program = open_program(config.workload, root, config.nvbitfi.home)
        root, d = program.root, program.root / "profile"
        shutil.rmtree(d, ignore_errors=True)
        cmd, logs, env = program.command(d), program.logs, program.env(env, install.profiler)
    else:
        root = write_root(root, model, name, workload, config.batch_size, "cuda", fault_model, config.math)  # pinned
        d = root / "profile"
        cmd, logs = command(root), ("stdout.txt", "stderr.txt")
    ended = process.run(cmd, d, 24 * 3600.0, env, logs)
    log = d / "nvbitfi-injection-log-temp.txt"  # the profiler reuses the injector's log name
    if ended.due_reason() or not log.exists():
        raise UserError(f"the profiling run failed ({ended.due_reason() or 'no profile written'}); see {d}/stderr.txt.")
    shutil.move(log, root / PROFILE_NAME)
    return root / PROFILE_NAME


def nvbitfi_sites(
    config: Config,
    profile_path: Path,
    model: str,
    fault_model: FaultModelRecord,
    stratum_rng: Callable[[int, str, str], np.random.Generator],
) -> tuple[list[dict], LeftOut]:
    """Sites as NVBitFI draws them: a dynamic instruction of the group, uniform over all launches,
    leaving out launches the injector cannot name; returns the sites and what was left out."""
    from fi_campaign.nvbitfi_tools.errors import NvbitfiError
    from fi_campaign.nvbitfi_tools.profile import read_profile, require_groups
    from fi_campaign.nvbitfi_tools.sites import KERNEL_NAME_BYTES, Proposals, draw_sites

    profile = read_profile(profile_path, config.nvbitfi.dialect)
    require_groups(profile, [(config.nvbitfi.group, m) for m in config.modes])
    try:
        excluded = Proposals(profile, config.nvbitfi.group).excluded
    except NvbitfiError as e:
        raise UserError(f"model {model}: {e}") from None
    own = config.nvbitfi.dialect == "fi-campaign"  # the own tool draws each lane's r from a value seed
    if own and "warp_random" in config.modes and fault_model.size == "by-value":
        raise UserError(
            "the fi-campaign NVBit tool draws from one power law per site; set fault_model.size "
            "to small, common or big instead of by-value."
        )
    law = fault_model.law()
    rows: list[dict] = []
    batches: list[tuple[str, list, np.random.Generator, dict]] = []
    if config.sampling.stratified:
        from fi_campaign.plan.strata import check_size, nvbitfi_rows, nvbitfi_strata

        cells = {m: nvbitfi_strata(profile, config.nvbitfi.group, config.sampling.keys(m)) for m in config.modes}
        check_size(config, len(config.models) * sum(len(c) for c in cells.values()))
        for mode, strata in cells.items():
            for stratum, drawn, rng in nvbitfi_rows(config, profile, model, mode, strata):
                batches.append((mode, drawn, rng, {"stratum": stratum.label, "stratum_weight": stratum.weight}))
    else:
        for mode in config.modes:
            rng = stratum_rng(config.seed, model, mode)
            batches.append((mode, draw_sites(profile, config.nvbitfi.group, config.injections, rng), rng, {}))
    for mode, drawn, rng, extra in batches:
        values = (
            law.sample(rng.random(len(drawn))) if mode == "warp_random" and not own else np.full(len(drawn), np.nan)
        )
        seeds = rng.integers(0, 2**62, size=len(drawn)) if mode == "warp_random" and own else [None] * len(drawn)
        rows.extend(
            {
                "model": model,
                "mode": mode,
                "kernel": s.kernel,
                "kcount": s.kcount,
                "igid": s.igid,
                "iid": s.iid,
                "op_seed": s.op_id_seed,
                "bit_seed": s.bit_id_seed,
                "value": None if np.isnan(v) else float(v),
                "value_seed": None if q is None else int(q),
                **extra,
            }
            for s, v, q in zip(drawn, values, seeds, strict=False)
        )
    left_out = LeftOut(
        launches=excluded.launches,
        instructions=excluded.instructions,
        total=excluded.total,
        group=config.nvbitfi.group,
        why=f"kernel names of {KERNEL_NAME_BYTES} bytes or more",
    )
    return rows, left_out
