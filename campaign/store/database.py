"""The campaign store: an SQLite file (WAL) on one machine, or a PostgreSQL database for workers
on many, holding the campaign, every planned site and every result. A result and its site's
status change in one transaction, so an interrupted run loses at most the chunk in flight and
never counts a site twice. What differs between the two databases is in ``backends``.
"""
from __future__ import annotations

import json
import os
import sqlite3
import time
from contextlib import closing
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable, Iterator

from sqlalchemy import Integer, and_, delete, func, insert, or_, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DatabaseError

from fi_campaign.store import migrate
from fi_campaign.store.backends import (StoreError, Target, check_server, engine_for, epoch, insert_ignoring, parse_target,
                                     pick_ids, sqlite_engine, transient)
from fi_campaign.store.backends import reason as _reason
from fi_campaign.store.backends import tables as _server_tables
from fi_campaign.store.records import (BitGroup, CampaignRecord, CountCheck, InjectionRecord, LaunchCount, Redraw,
                                    RegretRecord, Result, ResultGroup, Site, StratumStatus, Worker, WorkerStatus)
from fi_campaign.store.schema import (DONE, EXPORT_FIELDS, INJECTION_FIELDS, PENDING, RESULT_FIELDS, RUNNING,
                                   SCHEMA_VERSION, SITE_FIELDS, campaign_t, injection_t, launch_count_t, meta, redraw_t,
                                   regret_t, result_t, site_t, worker_t)
from fi_campaign.store.timing import busy_seconds

_RESULT_COLUMNS = tuple(c.name for c in result_t.columns if c.name != "finished")
STORE_TABLES = {"campaign", "site", "result"}
RETRY_S = 60.0  # how long a write waits for a PostgreSQL server that went away (a restart)
SIDECARS = ("-wal", "-shm", "-journal")  # SQLite's own files beside a database
PLANNING = ".planning-"  # a plan is written to ".NAME.planning-PID" and renamed onto NAME


def _now() -> str:
    """UTC, to the millisecond: result finish times must time chunks shorter than a second."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class Store:
    """One campaign over an SQLAlchemy engine. ``path`` anchors the files kept beside the store
    (``Target.anchor``)."""

    def __init__(self, target: "Target | Path", engine: Engine) -> None:
        self.target = target if isinstance(target, Target) else parse_target(target)
        self.engine = engine
        self.dialect = engine.dialect.name
        self.path = self.target.anchor
        self._clock = epoch(self.dialect)

    @property
    def label(self) -> str:
        return self.target.label

    @property
    def name(self) -> str:
        return self.target.name

    @classmethod
    def check_new(cls, given: "str | Path | Target") -> bool:
        """Refuse a store that holds a campaign, or anything but a store: a plan never overwrites.
        True when an SQLite file exists but may be replaced: empty, or a store an interrupted plan
        of an older version left with tables and nothing in them."""
        target = parse_target(given)
        if target.server:
            engine = engine_for(target)
            try:
                check_server(target, engine)
                if STORE_TABLES <= _server_tables(engine):
                    with engine.connect() as con:
                        if con.execute(select(func.count()).select_from(campaign_t)).scalar():
                            raise StoreError(f"{target.label} already holds a campaign; pick another database "
                                             "or drop this one to start over.")
            finally:
                engine.dispose()
            return False
        path = target.path
        try:
            if not path.exists():
                return False
            if path.stat().st_size == 0 or not _tables(path):
                return True
        except OSError as e:
            raise StoreError(f"cannot open {path} ({e.strerror}).") from None
        if _holds_nothing(path):
            return True
        store = cls.open(path)  # a clear error if it is not a store at all
        raise StoreError(f"{store.path} already holds a campaign; pick another --db or delete it to start over.")

    @classmethod
    def create_planned(cls, given: "str | Path | Target", record: CampaignRecord, sites: Iterable[dict]) -> int:
        """Create the store ``given`` holding a whole plan, or leave it as it was.

        SQLite: the plan is written to a temporary file beside the store and renamed onto it
        once complete, so a plan killed, interrupted or failing at any point (a full disk
        included) leaves no store without a campaign; a temporary file a killed plan left is
        removed by the next plan of the same store. PostgreSQL: one transaction. Returns the
        number of sites."""
        target = parse_target(given)
        if target.server:
            return cls.create(target).write_plan(record, sites)
        path = target.path
        replace = cls.check_new(path)
        _remove_leftovers(path)
        temp = path.with_name(f".{path.name}{PLANNING}{os.getpid()}")
        try:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                engine = sqlite_engine(temp)
                try:
                    with engine.begin() as con:
                        migrate.upgrade(con)
                    n = cls(temp, engine)._insert_plan(record, sites)
                finally:
                    engine.dispose()
            except (DatabaseError, OSError) as e:
                raise StoreError(f"cannot write the plan to {path} ({_reason(e)}); nothing was stored.") from None
            _seal(temp, path, n)
            _publish(temp, path, replace)
        finally:
            for f in (temp, *_sidecars(temp)):
                f.unlink(missing_ok=True)
        return n

    @classmethod
    def create(cls, given: "str | Path | Target") -> "Store":
        """An empty store (the schema, no campaign): what a plan or a copy is written into."""
        target = parse_target(given)
        cls.check_new(target)
        try:
            if target.path is not None:
                target.path.parent.mkdir(parents=True, exist_ok=True)
            engine = engine_for(target)
            with engine.begin() as con:
                migrate.upgrade(con)
        except (DatabaseError, OSError) as e:
            raise StoreError(f"cannot create a store at {target.label} ({_reason(e)}).") from None
        return cls(target, engine)

    @classmethod
    def open(cls, given: "str | Path | Target") -> "Store":
        target = parse_target(given)
        if target.server:
            engine = engine_for(target)
            check_server(target, engine)
            if not STORE_TABLES <= _server_tables(engine):
                raise StoreError(f"{target.label} holds no campaign store; plan one with "
                                 f"'fi-campaign --db {target.label} plan'.")
        else:
            path = target.path
            try:
                found = path.is_file()
            except OSError as e:
                raise StoreError(f"cannot open {path} ({e.strerror}).") from None
            if not found:
                raise StoreError(f"no campaign store at {path}; run 'fi-campaign plan' first or pass --db.")
            if not STORE_TABLES <= _tables(path):
                raise StoreError(f"{path} is an SQLite database but not a campaign store.")
            engine = engine_for(target)
        store = cls(target, engine)
        if store._scalar(select(func.count()).select_from(campaign_t)) == 0:
            raise StoreError(f"{target.label} is a campaign store with no campaign in it (an interrupted plan); "
                             "'fi-campaign plan' replaces it.")
        store._upgrade()
        return store

    def _upgrade(self) -> None:
        """A store written by an older fi-campaign is brought up to date when opened. A store that
        cannot be written (a read-only file) still serves reads; the first write says why not."""
        try:
            with self.engine.begin() as con:
                migrate.upgrade(con)
        except DatabaseError as e:
            with self.engine.connect() as con:
                now = migrate.revision(con)
            if now != migrate.HEAD and "readonly" not in _reason(e):
                raise StoreError(f"cannot upgrade the store {self.label} ({_reason(e)}).") from None
        except migrate.UnknownRevision as e:
            raise StoreError(f"{self.label} was written by a newer fi-campaign (schema revision {e}); "
                             "upgrade fi-campaign to use it.") from None

    def _write(self, fn, fails: str, begin: bool = True):
        """Run ``fn(con)`` in one transaction. On PostgreSQL a deadlock or serialization failure
        is retried at once, and a lost server (a restart) for up to ``RETRY_S``: the transaction
        either committed or did not, so a retry never writes twice what the first one wrote."""
        waited, pause = 0.0, 0.05
        while True:
            try:
                with (self.engine.begin() if begin else self.engine.connect()) as con:
                    return fn(con)
            except DatabaseError as e:
                why = transient(e, self.dialect)
                if why is None or waited >= (RETRY_S if why == "connection" else 2.0):
                    raise StoreError(f"{fails} {self.label} ({_reason(e)}).") from None
                time.sleep(pause)
                waited += pause
                pause = min(pause * 2, 5.0)

    def _scalar(self, stmt):
        try:
            with self.engine.connect() as con:
                return con.execute(stmt).scalar()
        except DatabaseError as e:
            raise StoreError(f"cannot read {self.label} ({_reason(e)}).") from None

    def write_plan(self, record: CampaignRecord, sites: Iterable[dict]) -> int:
        """The campaign row and every site in one transaction: a plan is whole or absent."""
        try:
            return self._insert_plan(record, sites)
        except DatabaseError as e:
            raise StoreError(f"cannot write the plan to {self.label} ({_reason(e)}); nothing was stored.") from None

    def _insert_plan(self, record: CampaignRecord, sites: Iterable[dict]) -> int:
        rows = [{**dict.fromkeys(SITE_FIELDS), **s, "status": PENDING} for s in sites]
        with self.engine.begin() as con:
            con.execute(insert(campaign_t).values(
                id=1, schema_version=SCHEMA_VERSION, name=record.name, seed=record.seed,
                config=record.config, **record.json_columns(), created=_now()))
            for i in range(0, len(rows), 50_000):
                con.execute(insert(site_t), rows[i:i + 50_000])
        return len(rows)

    def campaign(self) -> CampaignRecord:
        with self.engine.connect() as con:
            r = con.execute(select(campaign_t)).mappings().one()
        try:
            return CampaignRecord.from_columns(r)
        except ValueError as e:
            raise StoreError(f"the campaign record in {self.label} cannot be read ({e}); the store is damaged.") from None

    def claim(self, model: str, mode: str, limit: int, owner: str, lease_s: float) -> list[Site]:
        """Atomically take up to ``limit`` pending sites of a stratum for ``owner``, so that two
        workers never get the same site and no claim waits for another (``backends.pick``)."""
        pick = (select(site_t.c.id).where(site_t.c.model == model, site_t.c.mode == mode, site_t.c.status == PENDING)
                .order_by(site_t.c.id).limit(limit))

        def take(con) -> list[Site]:
            stmt = (update(site_t).where(site_t.c.id.in_(pick_ids(con, pick, self.dialect)), site_t.c.status == PENDING)
                    .values(status=RUNNING, owner=owner, lease_until=self._clock + lease_s)
                    .returning(*[site_t.c[f] for f in ("id",) + SITE_FIELDS]))
            return [Site(**r) for r in con.execute(stmt).mappings()]

        return sorted(self._write(take, "cannot claim sites in"), key=lambda s: s.id)

    def renew(self, owner: str, lease_s: float) -> int:
        """A heartbeat: the lease of every site ``owner`` holds runs ``lease_s`` from now again."""
        def beat(con) -> int:
            n = con.execute(update(site_t).where(site_t.c.status == RUNNING, site_t.c.owner == owner)
                            .values(lease_until=self._clock + lease_s)).rowcount
            con.execute(update(worker_t).where(worker_t.c.id == owner).values(heartbeat=self._clock))
            return n

        return self._write(beat, "cannot renew leases in")

    def pending(self, model: str, mode: str) -> int:
        """Sites of a stratum nobody holds yet."""
        return int(self._scalar(select(func.count()).select_from(site_t).where(
            site_t.c.model == model, site_t.c.mode == mode, site_t.c.status == PENDING)))

    def release_stale(self, alive: Callable[[str], bool]) -> int:
        """Return to pending the running sites whose lease expired or whose owner is gone. The
        lease is compared in SQL on the database's clock, so a heartbeat that lands first wins;
        on PostgreSQL rows a worker is recording right now are skipped, not waited for."""
        owners = self._write(lambda con: con.execute(select(site_t.c.owner).where(site_t.c.status == RUNNING)
                                                     .distinct()).scalars().all(), "cannot read", begin=False)
        dead = [o for o in owners if o is not None and not alive(o)]
        stale = or_(site_t.c.lease_until < self._clock, site_t.c.owner.in_(dead)) if dead else site_t.c.lease_until < self._clock
        pick = select(site_t.c.id).where(site_t.c.status == RUNNING, stale)
        n = self._write(lambda con: con.execute(update(site_t).where(site_t.c.id.in_(pick_ids(con, pick, self.dialect)),
                                                                     site_t.c.status == RUNNING)
                                                .values(status=PENDING, owner=None, lease_until=None)).rowcount,
                        "cannot release stale sites in")
        if dead:
            self._write(lambda con: con.execute(update(worker_t).where(worker_t.c.id.in_(dead),
                                                                       worker_t.c.state == "running")
                                                .values(state="lost")), "cannot update workers in")
        return n

    def release_owner(self, owner: str) -> None:
        """Give back the sites ``owner`` holds; silent if the store cannot be written now."""
        try:
            with self.engine.begin() as con:
                con.execute(update(site_t).where(site_t.c.status == RUNNING, site_t.c.owner == owner)
                            .values(status=PENDING, owner=None, lease_until=None))
        except DatabaseError:
            pass

    def unfinished(self, model: str | None = None, mode: str | None = None) -> tuple[int, int]:
        """(pending, running) sites, of one model / mode if given."""
        cond = [site_t.c.status != DONE] + ([site_t.c.model == model] if model else []) \
            + ([site_t.c.mode == mode] if mode else [])
        got = dict(self._write(lambda con: con.execute(select(site_t.c.status, func.count()).where(*cond)
                                                       .group_by(site_t.c.status)).all(), "cannot read", begin=False))
        return int(got.get(PENDING, 0)), int(got.get(RUNNING, 0))

    def join(self, w: Worker) -> None:
        """Register a worker before it claims: its row is what ``status`` shows per worker."""
        def add(con) -> None:
            con.execute(delete(worker_t).where(worker_t.c.id == w.owner))
            con.execute(insert(worker_t).values(id=w.owner, host=w.host, pid=w.pid, job=w.job,
                                                array_index=w.array_index, state="running", started=self._clock,
                                                heartbeat=self._clock, lease_s=w.lease_s, done=0))

        self._write(add, "cannot register a worker in")

    def leave(self, owner: str, state: str) -> None:
        """The worker's last word (finished, stopped, released, failed); silent if it cannot be written."""
        try:
            with self.engine.begin() as con:
                con.execute(update(worker_t).where(worker_t.c.id == owner).values(state=state, heartbeat=self._clock))
        except DatabaseError:
            pass

    def workers(self) -> list[WorkerStatus]:
        """Every worker that ran on this store, newest first; a running one silent past its
        lease shows as lost."""
        if "worker" not in self._tables():
            return []
        w = worker_t.c
        stmt = select(worker_t, (self._clock - w.heartbeat).label("age")).order_by(w.started.desc(), w.id)
        out = []
        with self.engine.connect() as con:
            for r in con.execute(stmt).mappings():
                state = "lost" if r["state"] == "running" and r["age"] > r["lease_s"] else r["state"]
                span = r["heartbeat"] - r["started"]
                out.append(WorkerStatus(r["id"], r["host"], r["pid"], r["job"], r["array_index"], state,
                                        max(0.0, float(r["age"])), int(r["done"]),
                                        r["done"] / span if span > 0 else 0.0))
        return out

    def _tables(self) -> set[str]:
        return _server_tables(self.engine)

    def record(self, results: list[Result], owner: str | None = None) -> list[Result]:
        """Results and their sites' status in one transaction. With ``owner``, only sites this
        owner still holds are recorded (a lease taken over by another worker is not counted
        twice); returns what was recorded. What an NVBitFI run adds (its injector's account, a
        re-drawn site's new place and its rejected proposals) goes with its result; the launch
        counts a run showed are facts about the workload and are kept either way."""
        if not results:
            return []
        finished = _now()
        ids = sorted(r.site_id for r in results)

        def write(con) -> list[Result]:
            mine: set[int] = set()
            for i in range(0, len(ids), 900):
                cond = [site_t.c.id.in_(ids[i:i + 900]), site_t.c.status != DONE]
                if owner is not None:
                    cond.append(and_(site_t.c.status == RUNNING, site_t.c.owner == owner))
                got = con.execute(update(site_t).where(*cond)
                                  .values(status=DONE, owner=None, lease_until=None).returning(site_t.c.id))
                mine.update(got.scalars())
            kept = [r for r in results if r.site_id in mine]
            if kept:
                con.execute(insert(result_t), [{**{c: getattr(r, c) for c in _RESULT_COLUMNS}, "finished": finished}
                                               for r in kept])
                if owner is not None:
                    con.execute(update(worker_t).where(worker_t.c.id == owner)
                                .values(done=worker_t.c.done + len(kept), heartbeat=self._clock))
            if any(r.injection or r.relocated or r.redraws or r.launch_counts for r in results):
                self._record_nvbitfi(con, results, kept, finished)
            return kept

        return self._write(write, "cannot write results to")

    def _record_nvbitfi(self, con, results: list[Result], kept: list[Result], finished: str) -> None:
        counts = [{**asdict(c), "observed": finished} for r in results for c in r.launch_counts]
        if counts:
            con.execute(insert_ignoring(launch_count_t, self.dialect), counts)
        for r in kept:
            if r.relocated:
                con.execute(update(site_t).where(site_t.c.id == r.site_id).values(**asdict(r.relocated)))
        redraws = [{**asdict(d), "created": finished} for r in kept for d in r.redraws]
        if redraws:
            con.execute(insert(redraw_t), redraws)
        logs = [{**{k: v for k, v in asdict(r.injection).items() if k != "lanes"},
                 "lanes": json.dumps([list(x) for x in r.injection.lanes]), "site_id": r.site_id}
                for r in kept if r.injection]
        if logs:
            con.execute(insert(injection_t), logs)

    def progress(self) -> list[tuple[str, str, int, int]]:
        """(model, mode, done, planned) per stratum."""
        stmt = (select(site_t.c.model, site_t.c.mode, func.sum((site_t.c.status == DONE).cast(Integer)), func.count())
                .group_by(site_t.c.model, site_t.c.mode).order_by(site_t.c.model, site_t.c.mode))
        with self.engine.connect() as con:
            return [(a, b, int(c or 0), int(d)) for a, b, c, d in con.execute(stmt)]

    def outcome_counts(self) -> dict[tuple[str, str], dict[str, int]]:
        """{(model, mode): {outcome: count}} over stored results."""
        stmt = (select(site_t.c.model, site_t.c.mode, result_t.c.outcome, func.count())
                .join(result_t, result_t.c.site_id == site_t.c.id)
                .group_by(site_t.c.model, site_t.c.mode, result_t.c.outcome))
        counts: dict[tuple[str, str], dict[str, int]] = {}
        with self.engine.connect() as con:
            for model, mode, outcome, k in con.execute(stmt):
                counts.setdefault((model, mode), {})[outcome] = int(k)
        return counts

    def running_counts(self) -> dict[tuple[str, str], int]:
        """{(model, mode): sites held by a worker now}."""
        with self.engine.connect() as con:
            return {(a, b): int(c) for a, b, c in con.execute(
                select(site_t.c.model, site_t.c.mode, func.count()).where(site_t.c.status == RUNNING)
                .group_by(site_t.c.model, site_t.c.mode))}

    def stratum_status(self) -> list[StratumStatus]:
        progress, running = self.progress(), self.running_counts()
        with self.engine.connect() as con:
            chunks: dict[tuple[str, str], list[tuple[str, float]]] = {}
            for a, b, finished, runtime in con.execute(
                    select(site_t.c.model, site_t.c.mode, result_t.c.finished, func.sum(result_t.c.runtime_s))
                    .join(result_t, result_t.c.site_id == site_t.c.id)
                    .group_by(site_t.c.model, site_t.c.mode, result_t.c.finished)):
                chunks.setdefault((a, b), []).append((finished, float(runtime or 0.0)))
        counts = self.outcome_counts()
        return [StratumStatus(a, b, done, planned, running.get((a, b), 0), counts.get((a, b), {}),
                              busy_seconds(chunks.get((a, b), [])))
                for a, b, done, planned in progress]

    def stratum_counts(self, model: str, mode: str) -> dict[str, int]:
        stmt = (select(result_t.c.outcome, func.count()).join(site_t, result_t.c.site_id == site_t.c.id)
                .where(site_t.c.model == model, site_t.c.mode == mode).group_by(result_t.c.outcome))
        with self.engine.connect() as con:
            return {o: int(k) for o, k in con.execute(stmt)}

    def result_groups(self) -> list[ResultGroup]:
        """Counts per model, mode, layer / kernel and instruction group, backend and outcome,
        with NaN/Inf counts and finish times: one GROUP BY over the join. A layer's name
        follows from its index, so it is carried, not grouped on."""
        s, r = site_t.c, result_t.c
        keys = (s.model, s.mode, s.layer, s.kernel, s.igid, r.backend, r.isolation, r.outcome)
        stmt = (select(s.model, s.mode, s.layer, func.max(s.layer_name), s.kernel, s.igid, r.backend, r.isolation,
                       r.outcome, func.count(), func.sum(r.nan.cast(Integer)),
                       func.min(r.finished), func.max(r.finished))
                .join(result_t, r.site_id == s.id).group_by(*keys))
        try:
            with self.engine.connect() as con:
                return [ResultGroup(*row[:9], int(row[9]), int(row[10] or 0), row[11], row[12])
                        for row in con.execute(stmt)]
        except DatabaseError as e:
            raise StoreError(f"cannot read {self.label} ({_reason(e)}).") from None

    def bit_groups(self) -> list[BitGroup]:
        """Counts per model, mode, flipped bit and outcome of the sites that name a bit: one
        GROUP BY over the join, like result_groups."""
        s, r = site_t.c, result_t.c
        keys = (s.model, s.mode, s.bit, r.outcome)
        stmt = (select(*keys, func.count(), func.sum(r.nan.cast(Integer)))
                .join(result_t, r.site_id == s.id).where(s.bit.is_not(None)).group_by(*keys))
        try:
            with self.engine.connect() as con:
                return [BitGroup(row[0], row[1], int(row[2]), row[3], int(row[4]), int(row[5] or 0))
                        for row in con.execute(stmt)]
        except DatabaseError as e:
            raise StoreError(f"cannot read {self.label} ({_reason(e)}).") from None

    def add_regret(self, rows: list[RegretRecord]) -> None:
        """Store regret evaluations in one transaction; nothing else in the store is touched."""
        created = _now()
        try:
            with self.engine.begin() as con:
                con.execute(insert(regret_t), [{**asdict(r), "created": r.created or created} for r in rows])
        except DatabaseError as e:
            raise StoreError(f"cannot write regret results to {self.label} ({_reason(e)}); "
                             "nothing else in the store was changed.") from None

    def regret_rows(self) -> list[RegretRecord]:
        """Stored regret evaluations, oldest first; none in a store that never had the table."""
        if "regret" not in self._tables():
            return []
        nan = float("nan")
        with self.engine.connect() as con:
            rows = con.execute(select(regret_t).order_by(regret_t.c.id)).mappings().all()
        return [RegretRecord(**{k: (nan if v is None and k.endswith(("_low", "_high")) else v)
                                for k, v in r.items() if k != "id"}) for r in rows]

    def launch_counts(self, model: str | None = None, igid: int | None = None) -> list[LaunchCount]:
        """Every launch whose injector count a run has shown (none in a store without the table)."""
        if "launch_count" not in self._tables():
            return []
        t = launch_count_t.c
        stmt = select(t.model, t.igid, t.kcount, t.kernel, t.profile_count, t.injector_count, t.site_id)
        if model is not None:
            stmt = stmt.where(t.model == model)
        if igid is not None:
            stmt = stmt.where(t.igid == igid)
        with self.engine.connect() as con:
            return [LaunchCount(*row) for row in con.execute(stmt.order_by(t.model, t.igid, t.kcount))]

    def redraws(self) -> list[Redraw]:
        if "redraw" not in self._tables():
            return []
        t = redraw_t.c
        with self.engine.connect() as con:
            return [Redraw(*row) for row in con.execute(
                select(t.site_id, t.kernel, t.kcount, t.iid, t.injector_count, t.ran).order_by(t.id))]

    def injections(self) -> dict[int, InjectionRecord]:
        """The injector's account of each run, by site (backend nvbitfi)."""
        if "injection" not in self._tables():
            return {}
        with self.engine.connect() as con:
            rows = con.execute(select(injection_t)).mappings().all()
        return {r["site_id"]: InjectionRecord(**{k: v for k, v in r.items() if k not in ("site_id", "lanes")},
                                              lanes=tuple(tuple(x) for x in json.loads(r["lanes"])))
                for r in rows}

    def count_checks(self) -> list[CountCheck]:
        """Per model and group: how many launches' injector counts are known, how many disagree
        with the profile and by what ratio, and what the re-draws cost."""
        counts = self.launch_counts()
        if not counts:
            return []
        redraws = self.redraws()
        with self.engine.connect() as con:
            where = dict(con.execute(select(site_t.c.id, site_t.c.model)).all()) if redraws else {}
        out = []
        for model, igid in sorted({(c.model, c.igid) for c in counts}):
            mine = [c for c in counts if (c.model, c.igid) == (model, igid)]
            off = [c.profile_count / c.injector_count if c.injector_count else float("inf")
                   for c in mine if c.profile_count != c.injector_count]
            drawn = [d for d in redraws if where.get(d.site_id) == model]
            out.append(CountCheck(model, igid, len(mine), sum(c.profile_count > c.injector_count for c in mine),
                                  sum(c.profile_count < c.injector_count for c in mine),
                                  min(off, default=float("nan")), max(off, default=float("nan")),
                                  len({d.site_id for d in drawn}), sum(d.ran for d in drawn)))
        return out

    def export_batches(self, size: int = 50_000, fields: tuple[str, ...] | None = None) -> Iterator[list[tuple]]:
        """Every result joined with its site, in site order, as tuples of ``fields`` (default
        EXPORT_FIELDS), ``size`` at a time: SQLite steps the cursor and PostgreSQL serves a
        server-side one, so memory stays at one batch whatever the size of the store."""
        stmt = self._export_select(fields or EXPORT_FIELDS)
        with self.engine.connect() as con:
            cursor = con.execution_options(stream_results=True).exec_driver_sql(str(stmt.compile(self.engine)))
            while batch := cursor.fetchmany(size):
                yield batch

    def _export_select(self, fields: tuple[str, ...]):
        cols = {"site_id": site_t.c.id.label("site_id"), **{f: site_t.c[f] for f in SITE_FIELDS},
                **{f: result_t.c[f] for f in RESULT_FIELDS}, **{f: injection_t.c[f] for f in INJECTION_FIELDS}}
        stmt = select(*[cols[f] for f in fields]).join(result_t, result_t.c.site_id == site_t.c.id)
        if set(fields) & set(INJECTION_FIELDS):
            stmt = stmt.outerjoin(injection_t, injection_t.c.site_id == site_t.c.id)
        return stmt.order_by(site_t.c.id)

    def export_rows(self) -> Iterator[dict]:
        for batch in self.export_dicts():
            yield from batch

    def export_dicts(self, ids: list[int] | None = None) -> Iterator[list[dict]]:
        """Export rows as dicts, a batch at a time: every result, or those of the sites ``ids``."""
        if ids is None:
            batches: Iterable = self.export_batches()
        else:
            stmt = self._export_select(EXPORT_FIELDS)
            batches = (self._fetch(stmt.where(site_t.c.id.in_(ids[i:i + 900]))) for i in range(0, len(ids), 900))
        for batch in batches:
            out = [dict(zip(EXPORT_FIELDS, row)) for row in batch]
            for d in out:
                d["nan"] = bool(d["nan"])
            yield out

    def _fetch(self, stmt) -> list[tuple]:
        with self.engine.connect() as con:
            return [tuple(r) for r in con.execute(stmt)]

    def result_ids(self) -> set[int]:
        """The sites that have a result."""
        with self.engine.connect() as con:
            return set(con.execute(select(result_t.c.site_id)).scalars())


def _read_only(path: Path) -> sqlite3.Connection:
    """A read-only connection; the URI is built from the path with every special character
    percent-encoded, so any file name opens the file it names."""
    return sqlite3.connect(Path(os.path.abspath(path)).as_uri() + "?mode=ro", uri=True)


def _tables(path: Path) -> set[str]:
    """Table names of an SQLite file, read-only; StoreError if it is not SQLite."""
    try:
        with closing(_read_only(path)) as con:
            return {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.OperationalError as e:
        writable = os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)
        hint = "" if writable else "; SQLite must be able to write the file and its folder (WAL journal)"
        raise StoreError(f"cannot open {path} ({e}{hint}).") from None
    except sqlite3.DatabaseError:
        raise StoreError(f"{path} is not a campaign store (not an SQLite database).") from None


def holds_campaign(path: str | Path) -> bool:
    """Whether ``path`` is an SQLite file with a campaign table (a store, planned or not):
    the test every output path passes before anything is written to it."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            if f.read(16) != b"SQLite format 3\x00":
                return False
    except OSError:
        return False
    try:
        return "campaign" in _tables(path)
    except StoreError:
        return True  # an SQLite file that cannot be read is treated as a store: never written over


def _holds_nothing(path: Path) -> bool:
    """No campaign, site, result or regret row: what a plan interrupted before this version left."""
    try:
        with closing(_read_only(path)) as con:
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            tables.discard(migrate.VERSION_TABLE)  # the schema's revision, in every store
            if not tables <= {t.name for t in meta.sorted_tables}:
                return False
            return all(con.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] == 0 for t in tables)
    except sqlite3.DatabaseError:
        return False


def _sidecars(path: Path) -> list[Path]:
    return [path.with_name(path.name + s) for s in SIDECARS]


def _remove_leftovers(path: Path) -> None:
    """Temporary plans of ``path`` whose planning process is gone (killed mid-plan)."""
    import psutil

    prefix = f".{path.name}{PLANNING}"
    try:
        names = os.listdir(path.parent if str(path.parent) else ".")
    except OSError:
        return
    for name in names:
        pid = name[len(prefix):].split("-", 1)[0] if name.startswith(prefix) else ""
        if pid.isdigit() and not psutil.pid_exists(int(pid)):
            path.with_name(name).unlink(missing_ok=True)


def _seal(temp: Path, path: Path, expected: int) -> None:
    """Fold the WAL into the file and check the plan is there before the file is published:
    a rename carries one file, not its journal."""
    try:
        with closing(sqlite3.connect(os.path.abspath(temp))) as con:
            folded = con.execute("PRAGMA journal_mode=DELETE").fetchone()[0]
            sites = con.execute("SELECT count(*) FROM site").fetchone()[0]
            campaigns = con.execute("SELECT count(*) FROM campaign").fetchone()[0]
            wal = con.execute("PRAGMA journal_mode=WAL").fetchone()[0]  # recorded in the file's header
        if (folded, wal) != ("delete", "wal") or sites != expected or campaigns != 1 or \
                any(f.exists() for f in _sidecars(temp)):
            raise StoreError(f"the plan written beside {path} did not read back whole; nothing was stored.")
        fd = os.open(temp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except (sqlite3.DatabaseError, OSError) as e:
        raise StoreError(f"cannot write the plan to {path} ({_reason(e)}); nothing was stored.") from None


def _publish(temp: Path, path: Path, replace: bool) -> None:
    """Rename the finished plan onto ``path``: over an empty store when ``replace``, else only
    if nothing appeared at ``path`` meanwhile (a hard link cannot overwrite)."""
    taken = StoreError(f"{path} appeared while the plan was drawn; nothing was written to it.")
    if replace:
        if path.exists() and path.stat().st_size > 0 and not _holds_nothing(path):
            raise taken
    elif path.exists():
        raise taken
    for f in _sidecars(path):  # a journal left beside it would be replayed onto the new file
        f.unlink(missing_ok=True)
    try:
        if replace:
            os.replace(temp, path)
        else:
            try:
                os.link(temp, path)
            except FileExistsError:
                raise taken from None
            except OSError:  # no hard links on this file system
                if path.exists():
                    raise taken from None
                os.replace(temp, path)
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as e:
        raise StoreError(f"cannot write {path} ({e.strerror}); nothing was stored.") from None

