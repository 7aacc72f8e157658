"""The campaign store: one SQLite file (WAL) holding the campaign, every planned site and
every result. A result and its site's status change in one transaction, so an interrupted
run loses at most the chunk in flight and never counts a site twice.
"""
from __future__ import annotations

import json
import os
import sqlite3
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable, Iterator

from sqlalchemy import (Boolean, Column, Float, ForeignKey, Index, Integer, MetaData, String, Table, Text,
                        and_, create_engine, event, func, insert, select, update)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DatabaseError

from campaign.errors import UserError

SCHEMA_VERSION = 1
PENDING, RUNNING, DONE = "pending", "running", "done"

meta = MetaData()
campaign_t = Table(
    "campaign", meta,
    Column("id", Integer, primary_key=True),
    Column("schema_version", Integer, nullable=False),
    Column("name", String, nullable=False),
    Column("seed", Integer, nullable=False),
    Column("config", Text, nullable=False),  # Config JSON
    Column("versions", Text, nullable=False),  # JSON: fi-campaign, torch, python, platform
    Column("models", Text, nullable=False),  # JSON: name -> checkpoint, sha256, arch, accuracy
    Column("workload", Text, nullable=False),  # JSON: image source, dataset, indices
    Column("fault_model", Text, nullable=False),  # JSON: power-law table, entries, semantics
    Column("created", String, nullable=False),
)
site_t = Table(
    "site", meta,
    Column("id", Integer, primary_key=True),
    Column("model", String, nullable=False, index=True),
    Column("mode", String, nullable=False, index=True),
    # framework level (backend pytorch)
    Column("layer", Integer),
    Column("layer_name", String),
    Column("image", Integer),  # index into the workload's images
    Column("element", Integer),  # flat (C, H, W) index; first lane for a warp
    Column("bit", Integer),  # single_bit
    Column("width", Integer),  # warp_random lanes
    Column("value_seed", Integer),  # warp_random: seeds the lanes' uniforms and signs
    # SASS level (backend nvbitfi): the injection-info fields
    Column("kernel", String),
    Column("kcount", Integer),  # global dynamic launch index
    Column("igid", Integer),
    Column("iid", Integer),  # 0-based dynamic instruction of the group within that launch
    Column("op_seed", Float),
    Column("bit_seed", Float),
    Column("value", Float),  # warp_random: the power-law relative error for builds that read it
    Column("status", String, nullable=False, index=True, default=PENDING),
    Column("owner", String),  # worker holding a running site: "host:pid:n"
    Column("lease_until", Float),  # epoch seconds; a running site past it is free again
    Index("ix_site_stratum", "model", "mode", "status", "id"),
)
result_t = Table(
    "result", meta,
    Column("site_id", Integer, ForeignKey("site.id"), primary_key=True),
    Column("outcome", String, nullable=False, index=True),
    Column("images_changed", Integer, nullable=False),
    Column("nan", Boolean, nullable=False),
    Column("max_abs_diff", Float),
    Column("backend", String, nullable=False),
    Column("isolation", String, nullable=False),  # inprocess | process
    Column("semantics", String, nullable=False),  # which fault semantics applied
    Column("detail", String),  # why a DUE is a DUE; what a process run left behind
    Column("runtime_s", Float, nullable=False),
    Column("finished", String, nullable=False),
)
# regret evaluations (`evaluate --regret --db`), beside the campaign they belong with; stores
# planned before this table existed get it on their first regret row (Store.add_regret)
regret_t = Table(
    "regret", meta,
    Column("id", Integer, primary_key=True),
    Column("model", String, nullable=False),  # the checkpoint reference as given: path or zoo:NAME
    Column("sha256", String, nullable=False),  # of the weights (models.zoo.weights_digest)
    Column("label", String, nullable=False),  # the preset: activation, block order, fault-aware training
    Column("dataset", String, nullable=False),
    Column("source", String, nullable=False),  # where the test images came from
    Column("images", Integer, nullable=False),
    Column("repeats", Integer, nullable=False),
    Column("seed", Integer, nullable=False),
    Column("fault_model", Text, nullable=False),  # the noise, in words
    Column("clean", Float, nullable=False),
    Column("noisy", Float, nullable=False),
    Column("noisy_low", Float),  # NULL: one image gives no interval
    Column("noisy_high", Float),
    Column("regret", Float, nullable=False),
    Column("regret_low", Float),
    Column("regret_high", Float),
    Column("created", String, nullable=False),
)
SITE_FIELDS = ("model", "mode", "layer", "layer_name", "image", "element", "bit", "width", "value_seed",
               "kernel", "kcount", "igid", "iid", "op_seed", "bit_seed", "value")
RESULT_FIELDS = ("backend", "isolation", "outcome", "images_changed", "nan", "max_abs_diff", "semantics", "detail",
                 "runtime_s", "finished")
EXPORT_FIELDS = ("site_id",) + SITE_FIELDS + RESULT_FIELDS  # one exported row: a site and its result


class StoreError(UserError):
    pass


@dataclass(frozen=True)
class CampaignRecord:
    name: str
    seed: int
    config: str
    versions: dict
    models: dict
    workload: dict
    fault_model: dict
    created: str = ""


@dataclass(frozen=True)
class Site:
    id: int
    model: str
    mode: str
    layer: int | None
    layer_name: str | None
    image: int | None
    element: int | None
    bit: int | None
    width: int | None
    value_seed: int | None
    kernel: str | None = None
    kcount: int | None = None
    igid: int | None = None
    iid: int | None = None
    op_seed: float | None = None
    bit_seed: float | None = None
    value: float | None = None


@dataclass(frozen=True)
class Result:
    site_id: int
    outcome: str
    images_changed: int
    nan: bool
    max_abs_diff: float | None
    backend: str
    isolation: str
    semantics: str
    runtime_s: float
    detail: str | None = None


@dataclass(frozen=True)
class RegretRecord:
    """One model's clean and noisy accuracy (paper Fig. 5); fractions, intervals at 95%."""

    model: str
    sha256: str
    label: str
    dataset: str
    source: str
    images: int
    repeats: int
    seed: int
    fault_model: str
    clean: float
    noisy: float
    noisy_low: float
    noisy_high: float
    regret: float
    regret_low: float
    regret_high: float
    created: str = ""


@dataclass(frozen=True)
class ResultGroup:
    """Results sharing model, mode, injection unit (layer, or kernel and instruction group),
    backend and outcome: what every report is computed from, aggregated in SQL so that a store
    of millions of results is one scan."""

    model: str
    mode: str
    layer: int | None
    layer_name: str | None
    kernel: str | None
    igid: int | None
    backend: str
    isolation: str
    outcome: str
    count: int
    nan: int  # results with NaN/Inf in the outputs
    first: str  # earliest and latest finish time (ISO, UTC)
    last: str


@dataclass(frozen=True)
class StratumStatus:
    model: str
    mode: str
    done: int
    planned: int
    running: int  # held by a worker now (or by one that died; freed at the next run)
    outcomes: dict[str, int]
    span_s: float  # first to last finished result (1 s resolution)


def _engine(path: Path) -> Engine:
    engine = create_engine(f"sqlite:///{path}", future=True)

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn, _record) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    return engine


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Store:
    def __init__(self, path: Path, engine: Engine) -> None:
        self.path = path
        self.engine = engine

    @classmethod
    def check_new(cls, path: str | Path) -> None:
        """Refuse a file that holds a campaign, or anything but a store: a plan never overwrites."""
        path = Path(path)
        if path.exists() and path.stat().st_size > 0 and _tables(path):
            store = cls.open(path)  # a clear error if it is not a store at all
            raise StoreError(f"{store.path} already holds a campaign; pick another --db or delete it to start over.")

    @classmethod
    def create(cls, path: str | Path) -> "Store":
        path = Path(path)
        cls.check_new(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            engine = _engine(path)
            meta.create_all(engine)
        except (DatabaseError, OSError) as e:
            raise StoreError(f"cannot create a store at {path} ({_reason(e)}).") from None
        return cls(path, engine)

    @classmethod
    def open(cls, path: str | Path) -> "Store":
        path = Path(path)
        try:
            found = path.is_file()
        except OSError as e:
            raise StoreError(f"cannot open {path} ({e.strerror}).") from None
        if not found:
            raise StoreError(f"no campaign store at {path}; run 'fi-campaign plan' first or pass --db.")
        if not {"campaign", "site", "result"} <= _tables(path):
            raise StoreError(f"{path} is an SQLite database but not a campaign store.")
        store = cls(path, _engine(path))
        if store._scalar(select(func.count()).select_from(campaign_t)) == 0:
            raise StoreError(f"{path} is a campaign store with no campaign in it; plan one with 'fi-campaign plan'.")
        return store

    def _scalar(self, stmt):
        try:
            with self.engine.connect() as con:
                return con.execute(stmt).scalar()
        except DatabaseError as e:
            raise StoreError(f"cannot read {self.path} ({_reason(e)}).") from None

    def write_plan(self, record: CampaignRecord, sites: Iterable[dict]) -> int:
        """The campaign row and every site in one transaction: a plan is whole or absent."""
        rows = [{**dict.fromkeys(SITE_FIELDS), **s, "status": PENDING} for s in sites]
        try:
            with self.engine.begin() as con:
                con.execute(insert(campaign_t).values(
                    id=1, schema_version=SCHEMA_VERSION, name=record.name, seed=record.seed,
                    config=record.config, versions=json.dumps(record.versions),
                    models=json.dumps(record.models), workload=json.dumps(record.workload),
                    fault_model=json.dumps(record.fault_model), created=_now()))
                for i in range(0, len(rows), 50_000):
                    con.execute(insert(site_t), rows[i:i + 50_000])
        except DatabaseError as e:
            raise StoreError(f"cannot write the plan to {self.path} ({_reason(e)}); nothing was stored.") from None
        return len(rows)

    def campaign(self) -> CampaignRecord:
        with self.engine.connect() as con:
            r = con.execute(select(campaign_t)).mappings().one()
        return CampaignRecord(r["name"], r["seed"], r["config"], json.loads(r["versions"]),
                              json.loads(r["models"]), json.loads(r["workload"]), json.loads(r["fault_model"]), r["created"])

    def claim(self, model: str, mode: str, limit: int, owner: str, lease_s: float) -> list[Site]:
        """Atomically take up to ``limit`` pending sites of a stratum for ``owner``: one UPDATE
        under SQLite's single writer lock, so two workers never get the same site."""
        first = (select(site_t.c.id).where(site_t.c.model == model, site_t.c.mode == mode,
                                           site_t.c.status == PENDING)
                 .order_by(site_t.c.id).limit(limit).scalar_subquery())
        stmt = (update(site_t).where(site_t.c.id.in_(first))
                .values(status=RUNNING, owner=owner, lease_until=time.time() + lease_s)
                .returning(*[site_t.c[f] for f in ("id",) + SITE_FIELDS]))
        try:
            with self.engine.begin() as con:
                rows = [Site(**r) for r in con.execute(stmt).mappings()]
        except DatabaseError as e:
            raise StoreError(f"cannot claim sites in {self.path} ({_reason(e)}).") from None
        return sorted(rows, key=lambda s: s.id)

    def release_stale(self, alive: Callable[[str], bool]) -> int:
        """Return to pending the running sites whose lease expired or whose owner is gone."""
        with self.engine.connect() as con:
            running = con.execute(select(site_t.c.owner, func.min(site_t.c.lease_until))
                                  .where(site_t.c.status == RUNNING).group_by(site_t.c.owner)).all()
        now = time.time()
        dead = [owner for owner, lease in running if lease < now or not alive(owner)]
        if not dead:
            return 0
        try:
            with self.engine.begin() as con:
                r = con.execute(update(site_t).where(site_t.c.status == RUNNING, site_t.c.owner.in_(dead))
                                .values(status=PENDING, owner=None, lease_until=None))
        except DatabaseError as e:
            raise StoreError(f"cannot release stale sites in {self.path} ({_reason(e)}).") from None
        return r.rowcount

    def release_owner(self, owner: str) -> None:
        """Give back the sites ``owner`` holds; silent if the store cannot be written now."""
        try:
            with self.engine.begin() as con:
                con.execute(update(site_t).where(site_t.c.status == RUNNING, site_t.c.owner == owner)
                            .values(status=PENDING, owner=None, lease_until=None))
        except DatabaseError:
            pass

    def record(self, results: list[Result], owner: str | None = None) -> list[Result]:
        """Results and their sites' status in one transaction. With ``owner``, only sites this
        owner still holds are recorded (a lease taken over by another worker is not counted
        twice); returns what was recorded."""
        if not results:
            return []
        finished = _now()
        ids = [r.site_id for r in results]
        try:
            with self.engine.begin() as con:
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
                    con.execute(insert(result_t), [{**asdict(r), "finished": finished} for r in kept])
        except DatabaseError as e:
            raise StoreError(f"cannot write results to {self.path} ({_reason(e)}); results stored so far are intact.") from None
        return kept

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

    def stratum_status(self) -> list["StratumStatus"]:
        progress = self.progress()
        with self.engine.connect() as con:
            running = dict(((a, b), int(c)) for a, b, c in con.execute(
                select(site_t.c.model, site_t.c.mode, func.count()).where(site_t.c.status == RUNNING)
                .group_by(site_t.c.model, site_t.c.mode)).all())
            spans = {(a, b): (lo, hi) for a, b, lo, hi in con.execute(
                select(site_t.c.model, site_t.c.mode, func.min(result_t.c.finished), func.max(result_t.c.finished))
                .join(result_t, result_t.c.site_id == site_t.c.id).group_by(site_t.c.model, site_t.c.mode))}
        counts = self.outcome_counts()
        out = []
        for a, b, done, planned in progress:
            lo, hi = spans.get((a, b), (None, None))
            span = (datetime.fromisoformat(hi) - datetime.fromisoformat(lo)).total_seconds() if lo else 0.0
            out.append(StratumStatus(a, b, done, planned, running.get((a, b), 0), counts.get((a, b), {}), span))
        return out

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
            raise StoreError(f"cannot read {self.path} ({_reason(e)}).") from None

    def add_regret(self, rows: list[RegretRecord]) -> None:
        """Store regret evaluations in one transaction, creating the table in a store planned
        before it existed; nothing else in the store is touched."""
        created = _now()
        try:
            with self.engine.begin() as con:
                regret_t.create(con, checkfirst=True)
                con.execute(insert(regret_t), [{**asdict(r), "created": r.created or created} for r in rows])
        except DatabaseError as e:
            raise StoreError(f"cannot write regret results to {self.path} ({_reason(e)}); "
                             "nothing else in the store was changed.") from None

    def regret_rows(self) -> list[RegretRecord]:
        """Stored regret evaluations, oldest first; none in a store that never had the table."""
        if "regret" not in _tables(self.path):
            return []
        nan = float("nan")
        with self.engine.connect() as con:
            rows = con.execute(select(regret_t).order_by(regret_t.c.id)).mappings().all()
        return [RegretRecord(**{k: (nan if v is None and k.endswith(("_low", "_high")) else v)
                                for k, v in r.items() if k != "id"}) for r in rows]

    def export_batches(self, size: int = 50_000, fields: tuple[str, ...] | None = None) -> Iterator[list[tuple]]:
        """Every result joined with its site, in site order, as tuples of ``fields`` (default
        EXPORT_FIELDS), ``size`` at a time: SQLite steps the cursor, so memory stays at one
        batch whatever the size of the store."""
        cols = {"site_id": site_t.c.id.label("site_id"), **{f: site_t.c[f] for f in SITE_FIELDS},
                **{f: result_t.c[f] for f in RESULT_FIELDS}}
        stmt = (select(*[cols[f] for f in fields or EXPORT_FIELDS])
                .join(result_t, result_t.c.site_id == site_t.c.id).order_by(site_t.c.id))
        with self.engine.connect() as con:
            cursor = con.exec_driver_sql(str(stmt.compile(self.engine)))
            while batch := cursor.fetchmany(size):
                yield batch

    def export_rows(self) -> Iterator[dict]:
        for batch in self.export_batches():
            for row in batch:
                d = dict(zip(EXPORT_FIELDS, row))
                d["nan"] = bool(d["nan"])
                yield d


def _tables(path: Path) -> set[str]:
    """Table names of an SQLite file, read-only; StoreError if it is not SQLite."""
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as con:
            return {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.OperationalError as e:
        writable = os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)
        hint = "" if writable else "; SQLite must be able to write the file and its folder (WAL journal)"
        raise StoreError(f"cannot open {path} ({e}{hint}).") from None
    except sqlite3.DatabaseError:
        raise StoreError(f"{path} is not a campaign store (not an SQLite database).") from None


def _reason(e: Exception) -> str:
    orig = getattr(e, "orig", None) or e
    return str(orig).splitlines()[0]
