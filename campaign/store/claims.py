"""The store as a work queue: workers register, claim pending sites atomically under a lease,
renew it with a heartbeat, record results with their sites' status, and give back what they
hold; sites of a worker that vanished go back to pending. Leases and heartbeats are compared on
the database's clock (``backends.epoch``), so workers on many hosts need not agree on the time.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from sqlalchemy import and_, delete, func, insert, or_, select, update
from sqlalchemy.engine import Connection, CursorResult

from fi_campaign.store.backends import epoch, insert_ignoring, insert_many, pick_ids
from fi_campaign.store.records import SITE_NAMES, Result, Site, Worker, WorkerStatus
from fi_campaign.store.schema import (
    DONE,
    PENDING,
    RUNNING,
    injection_t,
    launch_count_t,
    redraw_t,
    result_t,
    site_t,
    worker_t,
)
from fi_campaign.store.session import Session
from fi_campaign.store.timing import now

RESULT_COLUMNS = tuple(c.name for c in result_t.columns if c.name != "finished")
_result_row = operator.attrgetter(*RESULT_COLUMNS)
ID_BATCH = 900  # ids per IN (...): under SQLite's old limit of 999 parameters


def _sites(rows: CursorResult[Any]) -> list[Site]:
    """Sites from rows of SITE_NAMES, read as tuples: a mapping per row costs more than the claim's SQL."""
    return [Site.from_row(r) for r in rows.all()]


class Claims:
    def __init__(self, session: Session) -> None:
        self.session = session
        self.dialect = session.dialect
        self._clock = epoch(self.dialect)

    def claim(self, model: str, mode: str, limit: int, owner: str, lease_s: float) -> list[Site]:
        """Atomically take up to ``limit`` pending sites of a stratum for ``owner``, so that two
        workers never get the same site and no claim waits for another (``backends.pick``).

        Sites of the stratum ``owner`` already holds come first, with a fresh lease: a worker
        records every site of a claim before it claims again, so such sites are those of a
        claim whose commit reached the database while its reply was lost with the server (a
        restart). Tried again, the claim returns them rather than leave them held, for ever,
        by a worker whose heartbeat keeps their lease."""
        columns = [site_t.c[f] for f in SITE_NAMES]
        stratum = (site_t.c.model == model, site_t.c.mode == mode)
        pick = select(site_t.c.id).where(*stratum, site_t.c.status == PENDING).order_by(site_t.c.id).limit(limit)

        def take(con: Connection) -> list[Site]:
            held = _sites(
                con.execute(
                    update(site_t)
                    .where(*stratum, site_t.c.status == RUNNING, site_t.c.owner == owner)
                    .values(lease_until=self._clock + lease_s)
                    .returning(*columns)
                )
            )
            if held:
                return held
            stmt = (
                update(site_t)
                .where(site_t.c.id.in_(pick_ids(con, pick, self.dialect)), site_t.c.status == PENDING)
                .values(status=RUNNING, owner=owner, lease_until=self._clock + lease_s)
                .returning(*columns)
            )
            return _sites(con.execute(stmt))

        return sorted(self.session.write(take, "cannot claim sites in"), key=lambda s: s.id)

    def claim_strata(
        self, model: str, mode: str, take: dict[str, int], owner: str, lease_s: float, budget: int | None = None
    ) -> list[Site]:
        """``claim`` for a stratified plan: ``take[label]`` pending sites of each stratum, the
        first drawn first, in one transaction. Sites ``owner`` already holds in the model x mode
        come back instead, as in ``claim``. With ``budget``, a claim that would take the model x
        mode past that many sites (another worker claimed meanwhile) gives the excess back, from
        the strata it took most of, before it commits."""
        columns = [site_t.c[f] for f in SITE_NAMES]
        cell = (site_t.c.model == model, site_t.c.mode == mode)

        def take_sites(con: Connection) -> list[Site]:
            held = _sites(
                con.execute(
                    update(site_t)
                    .where(*cell, site_t.c.status == RUNNING, site_t.c.owner == owner)
                    .values(lease_until=self._clock + lease_s)
                    .returning(*columns)
                )
            )
            if held:
                return held
            out: list[Site] = []
            for label, n in take.items():
                if n <= 0:
                    continue
                pick = (
                    select(site_t.c.id)
                    .where(*cell, site_t.c.stratum == label, site_t.c.status == PENDING)
                    .order_by(site_t.c.id)
                    .limit(n)
                )
                stmt = (
                    update(site_t)
                    .where(site_t.c.id.in_(pick_ids(con, pick, self.dialect)), site_t.c.status == PENDING)
                    .values(status=RUNNING, owner=owner, lease_until=self._clock + lease_s)
                    .returning(*columns)
                )
                out += _sites(con.execute(stmt))
            if budget is not None and out:
                out = self._within(con, model, mode, out, budget)
            return out

        return sorted(self.session.write(take_sites, "cannot claim sites in"), key=lambda s: s.id)

    def _within(self, con: Connection, model: str, mode: str, sites: list[Site], budget: int) -> list[Site]:
        taken = con.execute(
            select(func.count())
            .select_from(site_t)
            .where(site_t.c.model == model, site_t.c.mode == mode, site_t.c.status != PENDING)
        ).scalar_one()
        excess = min(int(taken) - budget, len(sites))
        if excess <= 0:
            return sites
        by: dict[str | None, list[Site]] = {}
        for site in sorted(sites, key=lambda x: x.id):
            by.setdefault(site.stratum, []).append(site)
        back: list[int] = []
        for _ in range(excess):
            label = max(by, key=lambda k: len(by[k]))
            back.append(by[label].pop().id)
        con.execute(update(site_t).where(site_t.c.id.in_(back)).values(status=PENDING, owner=None, lease_until=None))
        kept = set(back)
        return [x for x in sites if x.id not in kept]

    def renew(self, owner: str, lease_s: float) -> int:
        """A heartbeat: the lease of every site ``owner`` holds runs ``lease_s`` from now again."""

        def beat(con: Connection) -> int:
            n = con.execute(
                update(site_t)
                .where(site_t.c.status == RUNNING, site_t.c.owner == owner)
                .values(lease_until=self._clock + lease_s)
            ).rowcount
            con.execute(update(worker_t).where(worker_t.c.id == owner).values(heartbeat=self._clock))
            return n

        return self.session.write(beat, "cannot renew leases in")

    def pending(self, model: str, mode: str) -> int:
        """Sites of a stratum nobody holds yet."""
        return int(
            self.session.read(
                lambda con: con.execute(
                    select(func.count())
                    .select_from(site_t)
                    .where(site_t.c.model == model, site_t.c.mode == mode, site_t.c.status == PENDING)
                ).scalar_one()
            )
        )

    def release_stale(self, alive: Callable[[str], bool]) -> int:
        """Return to pending the running sites whose lease expired or whose owner is gone. The
        lease is compared in SQL on the database's clock, so a heartbeat that lands first wins;
        on PostgreSQL rows a worker is recording right now are skipped, not waited for."""
        self.session.refuse_writes()  # before reading: a store that cannot be written says so first
        owners = self.session.read(
            lambda con: con.execute(select(site_t.c.owner).where(site_t.c.status == RUNNING).distinct()).scalars().all()
        )
        dead = [o for o in owners if o is not None and not alive(o)]
        stale = (
            or_(site_t.c.lease_until < self._clock, site_t.c.owner.in_(dead))
            if dead
            else site_t.c.lease_until < self._clock
        )
        pick = select(site_t.c.id).where(site_t.c.status == RUNNING, stale)
        n = self.session.write(
            lambda con: (
                con.execute(
                    update(site_t)
                    .where(site_t.c.id.in_(pick_ids(con, pick, self.dialect)), site_t.c.status == RUNNING)
                    .values(status=PENDING, owner=None, lease_until=None)
                ).rowcount
            ),
            "cannot release stale sites in",
        )
        if dead:
            self.session.write(
                lambda con: con.execute(
                    update(worker_t).where(worker_t.c.id.in_(dead), worker_t.c.state == "running").values(state="lost")
                ),
                "cannot update workers in",
            )
        return n

    def release_owner(self, owner: str) -> None:
        """Give back the sites ``owner`` holds; silent if the store cannot be written now."""
        self.session.best_effort(
            lambda con: con.execute(
                update(site_t)
                .where(site_t.c.status == RUNNING, site_t.c.owner == owner)
                .values(status=PENDING, owner=None, lease_until=None)
            )
        )

    def unfinished(self, model: str | None = None, mode: str | None = None) -> tuple[int, int]:
        """(pending, running) sites, of one model / mode if given."""
        cond = (
            [site_t.c.status != DONE]
            + ([site_t.c.model == model] if model else [])
            + ([site_t.c.mode == mode] if mode else [])
        )
        got: dict[str, int] = dict(
            self.session.read(
                lambda con: con.execute(
                    select(site_t.c.status, func.count()).where(*cond).group_by(site_t.c.status)
                ).all()
            )
        )
        return int(got.get(PENDING, 0)), int(got.get(RUNNING, 0))

    def join(self, w: Worker) -> None:
        """Register a worker before it claims: its row is what ``status`` shows per worker."""

        def add(con: Connection) -> None:
            con.execute(delete(worker_t).where(worker_t.c.id == w.owner))
            con.execute(
                insert(worker_t).values(
                    id=w.owner,
                    host=w.host,
                    pid=w.pid,
                    job=w.job,
                    array_index=w.array_index,
                    state="running",
                    started=self._clock,
                    heartbeat=self._clock,
                    lease_s=w.lease_s,
                    done=0,
                )
            )

        self.session.write(add, "cannot register a worker in")

    def leave(self, owner: str, state: str) -> None:
        """The worker's last word (finished, stopped, released, failed); silent if it cannot be written."""
        self.session.best_effort(
            lambda con: con.execute(
                update(worker_t).where(worker_t.c.id == owner).values(state=state, heartbeat=self._clock)
            )
        )

    def workers(self) -> list[WorkerStatus]:
        """Every worker that ran on this store, newest first; a running one silent past its
        lease shows as lost."""
        if "worker" not in self.session.tables():
            return []
        w = worker_t.c
        stmt = select(worker_t, (self._clock - w.heartbeat).label("age")).order_by(w.started.desc(), w.id)
        out = []
        for r in self.session.read(lambda con: con.execute(stmt).mappings().all()):
            state = "lost" if r["state"] == "running" and r["age"] > r["lease_s"] else r["state"]
            span = r["heartbeat"] - r["started"]
            out.append(
                WorkerStatus(
                    owner=r["id"],
                    host=r["host"],
                    pid=r["pid"],
                    job=r["job"],
                    array_index=r["array_index"],
                    state=state,
                    heartbeat_age_s=max(0.0, float(r["age"])),
                    done=int(r["done"]),
                    rate=r["done"] / span if span > 0 else 0.0,
                )
            )
        return out

    def record(self, results: list[Result], owner: str | None = None) -> list[Result]:
        """Results and their sites' status in one transaction. With ``owner``, only sites this
        owner still holds are recorded (a lease taken over by another worker is not counted
        twice); returns what was recorded. What an NVBitFI run adds (its injector's account, a
        re-drawn site's new place and its rejected proposals) goes with its result; the launch
        counts a run showed are facts about the workload and are kept either way."""
        if not results:
            return []
        finished = now()
        ids = sorted(r.site_id for r in results)

        def write(con: Connection) -> list[Result]:
            mine: set[int] = set()
            for i in range(0, len(ids), ID_BATCH):
                cond = [site_t.c.id.in_(ids[i : i + ID_BATCH]), site_t.c.status != DONE]
                if owner is not None:
                    cond.append(and_(site_t.c.status == RUNNING, site_t.c.owner == owner))
                got = con.execute(
                    update(site_t).where(*cond).values(status=DONE, owner=None, lease_until=None).returning(site_t.c.id)
                )
                mine.update(got.scalars())
            kept = [r for r in results if r.site_id in mine]
            if kept:
                insert_many(
                    con,
                    result_t,
                    RESULT_COLUMNS + ("finished",),
                    [_result_row(r) + (finished,) for r in kept],
                )
                if owner is not None:
                    con.execute(
                        update(worker_t)
                        .where(worker_t.c.id == owner)
                        .values(done=worker_t.c.done + len(kept), heartbeat=self._clock)
                    )
            if any(r.injection or r.relocated or r.redraws or r.launch_counts for r in results):
                self._record_nvbitfi(con, results, kept, finished)
            return kept

        return self.session.write(write, "cannot write results to")

    def _record_nvbitfi(self, con: Connection, results: list[Result], kept: list[Result], finished: str) -> None:
        counts = [{**asdict(c), "observed": finished} for r in results for c in r.launch_counts]
        if counts:
            con.execute(insert_ignoring(launch_count_t, self.dialect), counts)
        for r in kept:
            if r.relocated:
                con.execute(update(site_t).where(site_t.c.id == r.site_id).values(**asdict(r.relocated)))
        redraws = [{**asdict(d), "created": finished} for r in kept for d in r.redraws]
        if redraws:
            con.execute(insert(redraw_t), redraws)
        logs = [
            {
                **{k: v for k, v in asdict(r.injection).items() if k != "lanes"},
                "lanes": json.dumps([list(x) for x in r.injection.lanes]),
                "site_id": r.site_id,
            }
            for r in kept
            if r.injection
        ]
        if logs:
            con.execute(insert(injection_t), logs)
