"""Backend nvbitfi: the workload program run under NVBitFI's injector.

The same program as every other process-isolated run (``fi_campaign.workload.program``), so
golden, profiling and injection runs launch the same kernels in the same order
(docs/NVBITFI-INTERFACE.md, rule 1); the tool is attached as ``fi_campaign.nvbitfi_tools.attach``
says. Each site is settled against the injector's own counts (``fi_campaign.nvbitfi_tools.rejection``):
a proposal whose log shows it lay past its launch's injector count is replaced by a new proposal
from the profile, so the campaign samples the instructions the injector executes uniformly,
whatever its profiler counted.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import zlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fi_campaign.classify import DUE, MASKED, NOT_INJECTED, Outcome
from fi_campaign.config import Config
from fi_campaign.engine.executors import processes, result_of
from fi_campaign.engine.executors.processes import Processes, thread_env
from fi_campaign.errors import UserError
from fi_campaign.nvbitfi_tools.attach import gpu_of, tool_env
from fi_campaign.nvbitfi_tools.errors import NvbitfiError
from fi_campaign.nvbitfi_tools.injlog import InjectionLog
from fi_campaign.store import CampaignRecord, InjectionRecord, LaunchCount, Redraw, Relocation, Result, Site, Store
from fi_campaign.workload import process

if TYPE_CHECKING:
    from fi_campaign.nvbitfi_tools.install import Xid
    from fi_campaign.nvbitfi_tools.profile import Profile
    from fi_campaign.nvbitfi_tools.sites import Location, Proposals
    from fi_campaign.nvbitfi_tools.sites import Site as NvSite
    from fi_campaign.nvbitfi_tools.toollog import ToolLog


@dataclass(frozen=True)
class _Run:
    """One injection run of a proposal."""

    d: Path
    ended: process.Ended
    log: InjectionLog | ToolLog  # the stock injector's log, or the fi-campaign tool's
    xids: tuple[Xid, ...] = ()


@dataclass(frozen=True)
class _Refused:
    """A proposal that was not run: why it could not be started."""

    d: Path
    why: str


class Nvbitfi(Processes):
    """One workload process per injection with NVBitFI's injector attached and the site's
    nvbitfi-injection-info.txt in its run directory (the injector reads it from its cwd)."""

    backend = "nvbitfi"

    def __init__(
        self,
        record: CampaignRecord,
        config: Config,
        name: str,
        device: str,
        root: Path,
        keep_runs: bool,
        threads: int | None = None,
        store: Store | None = None,
    ) -> None:
        from fi_campaign.nvbitfi_tools.install import kernel_log_readable, locate, require
        from fi_campaign.nvbitfi_tools.sites import Proposals
        from fi_campaign.workload.model import require_gpu

        require_gpu()
        self.install = require(locate(config.nvbitfi.home, config.nvbitfi.dialect))
        if config.nvbitfi.dummy and self.install.dummy_injector is None:
            raise UserError(
                "nvbitfi.dummy asks for the DUMMY injector but the build has none; "
                "run 'fi-campaign doctor' to see where it goes."
            )
        self.name, self.store = name, store
        self.profile = _planned_profile(record, config, name)
        self.proposals = Proposals(self.profile, config.nvbitfi.group)
        self._strata: dict[tuple[int, str | None], Proposals] = {}
        self.xid_readable = kernel_log_readable()
        self.gpu = gpu_of(device)
        # cuda:N is pinned with CUDA_VISIBLE_DEVICES=N, so inside the process it is plain cuda;
        # the golden runs are native (no tool) but on the same GPU
        pinned = dict(os.environ) | ({"CUDA_VISIBLE_DEVICES": self.gpu} if self.gpu is not None else {})
        super().__init__(record, config, name, "cuda", root, keep_runs, threads, pinned)
        tool = self.install.dummy_injector if config.nvbitfi.dummy else self.install.injector
        assert tool is not None, "require() refuses a build without its injector; a missing dummy one is refused above"
        self.env = self._tool_env(tool)
        self.timeout_s = max(processes.MIN_TIMEOUT_S, config.timeout_factor * self._instrumented_runtime())

    def _tool_env(self, tool: Path) -> dict[str, str]:
        env = self.program_env(tool_env(tool, self.gpu), tool)
        return env if self.threads is None else thread_env(env, self.threads)

    def _instrumented_runtime(self) -> float:
        """The timeout base: an instrumented run, never the native one (an instrumented PyTorch
        inference took 155 s in nvlabs/nvbitfi#16). A DUMMY build runs a real site (the most
        instructions of the group) without writing it; the real injector runs a site past the
        last launch, which instruments the kernel but never fires. Timed once per workload and
        tool, under a lock, like the golden runs."""
        from fi_campaign.nvbitfi_tools.render import write_injection_info
        from fi_campaign.nvbitfi_tools.sites import Site as NvSite

        launch = self.profile.launches[int(np.argmax(self.proposals.counts))]
        tool = self.install.dummy_injector or self.install.injector
        assert tool is not None, "require() refuses a build without its injector"
        kcount = launch.index if self.install.dummy_injector else len(self.profile.launches)
        mode = "single_bit" if "single_bit" in self.config.modes else self.config.modes[0]
        probe = NvSite(
            kernel=launch.kernel, kcount=kcount, igid=self.proposals.igid, iid=0, op_id_seed=0.0, bit_id_seed=0.0
        )
        text = self._info_text(mode, probe, None)
        key = hashlib.sha256(
            (self.root / "workload.json").read_bytes() + str(tool).encode() + text.encode()
        ).hexdigest()
        meta = self.root / "timing.json"
        with open(self.root / ".timing.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if meta.exists() and json.loads(meta.read_text()).get("key") == key:
                return float(json.loads(meta.read_text())["runtime_s"])
            d = self.root / "timing"
            shutil.rmtree(d, ignore_errors=True)
            d.mkdir(parents=True)
            write_injection_info(d, text)
            ended = self.start(d, self.GOLDEN_TIMEOUT_S, self._tool_env(tool))
            if ended.due_reason():
                raise UserError(
                    f"the instrumented timing run of the workload failed ({ended.due_reason()}); see {d}/stderr.txt."
                )
            meta.write_text(
                json.dumps(
                    {
                        "key": key,
                        "runtime_s": ended.runtime_s,
                        "tool": str(tool),
                        "kcount": kcount,
                        "kernel": launch.kernel,
                    }
                )
            )
            return ended.runtime_s

    def _kernel_log(self) -> str | None:
        from fi_campaign.nvbitfi_tools.install import read_kernel_log

        return read_kernel_log() if self.xid_readable else None

    def _proposals_of(self, site: Site) -> Proposals:
        """Where a site's re-draws come from: the campaign's group, or a stratified plan's stratum
        (its group, and its kernel when the strata are by kernel), so a re-drawn site stays in
        the stratum whose share weights it."""
        from fi_campaign.nvbitfi_tools.sites import Proposals
        from fi_campaign.plan.strata import parse_label

        kernel = parse_label(site.stratum).get("kernel") if site.stratum else None
        igid = self.proposals.igid if site.igid is None else site.igid
        if kernel is None and igid == self.proposals.igid:
            return self.proposals
        if (igid, kernel) not in self._strata:
            self._strata[(igid, kernel)] = Proposals(self.profile, igid, kernel=kernel)
        return self._strata[(igid, kernel)]

    def _known_counts(self, igid: int | None = None) -> dict[int, int]:
        """Launch counts any worker's runs have shown so far: proposals past them need no run."""
        if self.store is None:
            return {}
        group = self.proposals.igid if igid is None else igid
        return {c.kcount: c.injector_count for c in self.store.launch_counts(self.name, group)}

    def _redraw_rng(self, site: Site, mode: str, k: int) -> np.random.Generator:
        return np.random.default_rng(
            [self.config.seed, zlib.crc32(self.name.encode()), zlib.crc32(mode.encode()), site.id, k]
        )

    def run(self, sites: list[Site], mode: str) -> list[Result]:
        known = {g: self._known_counts(g) for g in {self.proposals.igid if s.igid is None else s.igid for s in sites}}
        return [self._one(s, mode, known[self.proposals.igid if s.igid is None else s.igid]) for s in sites]

    def _one(self, site: Site, mode: str, known: dict[int, int]) -> Result:
        from fi_campaign.nvbitfi_tools.rejection import settle
        from fi_campaign.nvbitfi_tools.sites import Location

        d = self.root / str(site.id)
        spent = [0.0]
        nv = _nv_site(site)

        def attempt(loc: Location) -> tuple[int | None, _Run | _Refused]:
            r = self._attempt(d, site, replace(nv, kernel=loc.kernel, kcount=loc.kcount, iid=loc.iid), mode)
            if isinstance(r, _Refused):
                return None, r
            spent[0] += r.ended.runtime_s
            if not r.log.matches(loc.kernel, loc.kcount):
                return None, r
            return r.log.launch_count(nv.igid), r

        planned = Location(nv.kernel, nv.kcount, nv.iid)
        proposals = self._proposals_of(site)
        settled = settle(planned, proposals, known, lambda k: self._redraw_rng(site, mode, k), attempt)
        loc, r = settled.location, settled.outcome
        relocated = None if loc == planned else Relocation(kernel=loc.kernel, kcount=loc.kcount, iid=loc.iid)
        redraws = tuple(
            Redraw(
                site_id=site.id,
                kernel=x.location.kernel,
                kcount=x.location.kcount,
                iid=x.location.iid,
                injector_count=x.injector_count,
                ran=x.ran,
            )
            for x in settled.rejected
        )
        launch_counts = tuple(
            LaunchCount(
                model=self.name,
                igid=nv.igid,
                kcount=k,
                kernel=self.profile.launches[k].kernel,
                profile_count=proposals.profile_count(k),
                injector_count=c,
                site_id=site.id,
            )
            for k, c in settled.learned.items()
        )

        def result(judged: Outcome, detail: str | None, injection: InjectionRecord | None = None) -> Result:
            return result_of(
                site,
                judged,
                backend=self.backend,
                isolation=self.isolation,
                semantics=self.label(mode),
                runtime_s=spent[0],
                detail=detail,
                injection=injection,
                relocated=relocated,
                redraws=redraws,
                launch_counts=launch_counts,
            )

        if r is None:
            why = (
                f"no proposal the injector executes was found after {len(settled.rejected)} re-draws "
                "(its counts are far below the profile's)"
            )
            return result(Outcome.without_outputs(NOT_INJECTED, why), why)
        if isinstance(r, _Refused):
            why = f"not run: {r.why}"
            return result(Outcome.without_outputs(NOT_INJECTED, why), why)
        judged = self._judge(r, site, loc)
        dropped = judged.outcome == MASKED and not self.keep_runs
        if dropped:
            shutil.rmtree(d, ignore_errors=True)
        return result(judged, judged.reason or (None if dropped else str(d)), _injection_record(r.log))

    def _attempt(self, d: Path, site: Site, nv: NvSite, mode: str) -> _Run | _Refused:
        """One run of a proposal in a fresh run directory; a site the injector cannot be given
        (its rendering refused) is not run at all, and never stops the campaign."""
        from fi_campaign.nvbitfi_tools.install import kernel_log_delta, xid_lines
        from fi_campaign.nvbitfi_tools.render import write_injection_info

        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        try:
            write_injection_info(d, self._info_text(mode, nv, site))
        except NvbitfiError as e:
            return _Refused(d, str(e))
        before = self._kernel_log()
        ended = self.start(d, self.timeout_s, self.env)
        after = self._kernel_log()
        xids = tuple(xid_lines(kernel_log_delta(before, after))) if after is not None else ()
        return _Run(d, ended, self._read_log(d), xids)

    def _info_text(self, mode: str, nv: NvSite, site: Site | None) -> str:
        """The injection-info file of one proposal, in the dialect's own format: the fi-campaign
        tool draws each lane's power-law value from the site's value seed and the stored law."""
        from fi_campaign.nvbitfi_tools.render import render_injection_info

        if self.config.nvbitfi.dialect == "fi-campaign":
            fm = self.record.fault_model
            law = (fm.entries[fm.size].x_min, fm.entries[fm.size].alpha) if mode == "warp_random" else None
            return render_injection_info("fi-campaign", mode, nv, value_seed=site.value_seed if site else 0, law=law)
        value = site.value if site and mode == "warp_random" and self.config.nvbitfi.powerlaw_line else None
        return render_injection_info(self.config.nvbitfi.dialect, mode, nv, value)

    def _read_log(self, d: Path) -> InjectionLog | ToolLog:
        if self.config.nvbitfi.dialect == "fi-campaign":
            from fi_campaign.nvbitfi_tools.toollog import read_tool_log

            return read_tool_log(d)
        from fi_campaign.nvbitfi_tools.injlog import read_injection_log

        return read_injection_log(d)

    def _judge(self, r: _Run, site: Site, loc: Location) -> Outcome:
        from fi_campaign.nvbitfi_tools.injlog import verdict

        log, ended = r.log, r.ended
        # verdict reads only the state, kernel error and signal marks a ToolLog has as well; its
        # parameter is typed InjectionLog in nvbitfi_tools
        v = verdict(log, ended.due_reason() is not None or bool(r.xids))
        if v == "not_injected":
            ran = log.kernel_name if log.index == loc.kcount else None
            why = (
                f"launch-sequence drift: launch {loc.kcount} ran {ran[:80]}, not the planned kernel"
                if ran is not None and ran != loc.kernel
                else "injector reported no fault applied"
            )
            return Outcome.without_outputs(NOT_INJECTED, f"{why}: {log.reason}")
        if v == "due":
            reason = ended.due_reason() or (
                f"Xid {r.xids[0].code}" if r.xids else "kernel error reported by the injector"
            )
            return Outcome.without_outputs(DUE, reason)
        return super().judge(r.d, site, ended)

    def label(self, mode: str) -> str:
        from fi_campaign.nvbitfi_tools.isa import math_note, semantics

        nv = self.config.nvbitfi
        text = semantics(nv.dialect, mode, nv.group, nv.powerlaw_line, nv.reads_powerlaw)
        text += "; " + math_note(nv.dialect, self.config.math)
        return text + ("" if self.xid_readable else "; kernel log unreadable, Xid not checked")


def _planned_profile(record: CampaignRecord, config: Config, name: str) -> Profile:
    """The profile the model's sites were drawn from; re-drawn sites must come from the same one."""
    from fi_campaign.nvbitfi_tools.profile import parse_profile

    info = record.models[name].profile
    path = Path(info.path if info else "")
    try:
        data = path.read_bytes()
    except OSError:
        raise UserError(
            f"the NVBitFI profile model {name} was planned from ({path}) cannot be read; restore it, "
            "since re-drawn sites must come from the same profile."
        ) from None
    if info and info.sha256 and hashlib.sha256(data).hexdigest() != info.sha256:
        raise UserError(
            f"the NVBitFI profile {path} has changed since model {name} was planned; restore it or plan a new campaign."
        )
    return parse_profile(data.decode("utf-8", errors="replace"), config.nvbitfi.dialect, str(path))


def _nv_site(site: Site) -> NvSite:
    """The launch, instruction and seeds a site of an NVBitFI campaign names: every such site
    is planned with all of them."""
    from fi_campaign.nvbitfi_tools.sites import Site as NvSite

    if (
        site.kernel is None
        or site.kcount is None
        or site.igid is None
        or site.iid is None
        or site.op_seed is None
        or site.bit_seed is None
    ):
        raise UserError(f"site {site.id} names no NVBitFI launch, instruction and seeds; the store is damaged.")
    return NvSite(
        kernel=site.kernel,
        kcount=site.kcount,
        igid=site.igid,
        iid=site.iid,
        op_id_seed=site.op_seed,
        bit_id_seed=site.bit_seed,
    )


def _injection_record(log: InjectionLog | ToolLog) -> InjectionRecord:
    hit = tuple((lane.lane, lane.before, lane.after) for lane in log.lanes if lane.injected)
    return InjectionRecord(
        state=log.state.value,
        lanes_injected=log.lanes_injected,
        lanes_reported=len(log.lanes),
        opcode=log.opcode,
        reg=log.reg,
        mask=log.mask,
        lanes=hit,
        log_index=log.index,
        log_kernel=log.kernel_name,
    )
