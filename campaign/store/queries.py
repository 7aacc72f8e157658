"""What ``status``, ``report`` and ``export`` read from a store (and the regret rows that
``evaluate --db`` adds for the report): counts aggregated in SQL, so a store of millions of
results is one scan, and the export streamed a batch at a time."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict
from typing import Any

from sqlalchemy import Integer, Select, func, insert, select
from sqlalchemy.engine import Connection, CursorResult, Row

from fi_campaign.models.noise_names import PAPER
from fi_campaign.store.records import (
    BitGroup,
    CountCheck,
    InjectionRecord,
    LaunchCount,
    Redraw,
    RegretRecord,
    ResultGroup,
    StratumStatus,
    StratumTally,
)
from fi_campaign.store.schema import (
    DONE,
    EXPORT_FIELDS,
    INJECTION_FIELDS,
    PENDING,
    RESULT_FIELDS,
    RUNNING,
    SITE_FIELDS,
    injection_t,
    launch_count_t,
    redraw_t,
    regret_t,
    result_t,
    site_t,
)
from fi_campaign.store.session import Session
from fi_campaign.store.timing import busy_seconds, now

ID_BATCH = 900  # ids per IN (...): under SQLite's old limit of 999 parameters


class Queries:
    def __init__(self, session: Session) -> None:
        self.session = session

    def progress(self) -> list[tuple[str, str, int, int]]:
        """(model, mode, done, planned) per stratum."""
        stmt = (
            select(site_t.c.model, site_t.c.mode, func.sum((site_t.c.status == DONE).cast(Integer)), func.count())
            .group_by(site_t.c.model, site_t.c.mode)
            .order_by(site_t.c.model, site_t.c.mode)
        )
        return [(a, b, int(c or 0), int(d)) for a, b, c, d in self.session.read(lambda con: con.execute(stmt).all())]

    def outcome_counts(self) -> dict[tuple[str, str], dict[str, int]]:
        """{(model, mode): {outcome: count}} over stored results."""
        stmt = (
            select(site_t.c.model, site_t.c.mode, result_t.c.outcome, func.count())
            .join(result_t, result_t.c.site_id == site_t.c.id)
            .group_by(site_t.c.model, site_t.c.mode, result_t.c.outcome)
        )
        counts: dict[tuple[str, str], dict[str, int]] = {}
        for model, mode, outcome, k in self.session.read(lambda con: con.execute(stmt).all()):
            counts.setdefault((model, mode), {})[outcome] = int(k)
        return counts

    def running_counts(self) -> dict[tuple[str, str], int]:
        """{(model, mode): sites held by a worker now}."""
        stmt = (
            select(site_t.c.model, site_t.c.mode, func.count())
            .where(site_t.c.status == RUNNING)
            .group_by(site_t.c.model, site_t.c.mode)
        )
        return {(a, b): int(c) for a, b, c in self.session.read(lambda con: con.execute(stmt).all())}

    def stratum_status(self) -> list[StratumStatus]:
        progress, running = self.progress(), self.running_counts()
        stmt = (
            select(site_t.c.model, site_t.c.mode, result_t.c.finished, func.sum(result_t.c.runtime_s))
            .join(result_t, result_t.c.site_id == site_t.c.id)
            .group_by(site_t.c.model, site_t.c.mode, result_t.c.finished)
        )
        chunks: dict[tuple[str, str], list[tuple[str, float]]] = {}
        for a, b, finished, runtime in self.session.read(lambda con: con.execute(stmt).all()):
            chunks.setdefault((a, b), []).append((finished, float(runtime or 0.0)))
        counts = self.outcome_counts()
        return [
            StratumStatus(
                model=a,
                mode=b,
                done=done,
                planned=planned,
                running=running.get((a, b), 0),
                outcomes=counts.get((a, b), {}),
                busy_s=busy_seconds(chunks.get((a, b), [])),
            )
            for a, b, done, planned in progress
        ]

    def stratum_counts(self, model: str, mode: str) -> dict[str, int]:
        stmt = (
            select(result_t.c.outcome, func.count())
            .join(site_t, result_t.c.site_id == site_t.c.id)
            .where(site_t.c.model == model, site_t.c.mode == mode)
            .group_by(result_t.c.outcome)
        )
        return {o: int(k) for o, k in self.session.read(lambda con: con.execute(stmt).all())}

    def stratum_tallies(self, model: str | None = None, mode: str | None = None) -> list[StratumTally]:
        """Every sampling stratum (of one model x mode if given) with its results by outcome, its
        held and its pending sites: one GROUP BY over the sites and their results. Empty for a
        simple random plan, whose sites have no stratum."""
        s, r = site_t.c, result_t.c
        stmt = (
            select(
                s.model,
                s.mode,
                s.stratum,
                func.max(s.stratum_weight),
                s.status,
                r.outcome,
                func.count(),
                func.sum(r.nan.cast(Integer)),
            )
            .outerjoin(result_t, r.site_id == s.id)
            .where(s.stratum.is_not(None))
            .group_by(s.model, s.mode, s.stratum, s.status, r.outcome)
        )
        if model is not None:
            stmt = stmt.where(s.model == model)
        if mode is not None:
            stmt = stmt.where(s.mode == mode)
        cells: dict[tuple[str, str, str], dict] = {}
        rows = self.session.read(lambda con: con.execute(stmt).all())
        for a, b, label, weight, status, outcome, count, nan in rows:
            c = cells.setdefault(
                (a, b, label), {"weight": float(weight), "outcomes": {}, "nan": {}, RUNNING: 0, PENDING: 0}
            )
            if outcome is not None:
                c["outcomes"][outcome] = c["outcomes"].get(outcome, 0) + int(count)
                c["nan"][outcome] = c["nan"].get(outcome, 0) + int(nan or 0)
            elif status in (RUNNING, PENDING):
                c[status] += int(count)
        return [
            StratumTally(
                model=a,
                mode=b,
                stratum=label,
                weight=c["weight"],
                outcomes=c["outcomes"],
                nan=c["nan"],
                running=c[RUNNING],
                pending=c[PENDING],
            )
            for (a, b, label), c in sorted(
                cells.items(), key=lambda kv: (kv[0][0], kv[0][1], -kv[1]["weight"], kv[0][2])
            )
        ]

    def result_groups(self) -> list[ResultGroup]:
        """Counts per model, mode, layer / kernel and instruction group, backend and outcome,
        with NaN/Inf counts and finish times: one GROUP BY over the join. A layer's name
        follows from its index, so it is carried, not grouped on."""
        s, r = site_t.c, result_t.c
        keys = (s.model, s.mode, s.layer, s.kernel, s.igid, r.backend, r.isolation, r.outcome)
        stmt = (
            select(
                s.model,
                s.mode,
                s.layer,
                func.max(s.layer_name),
                s.kernel,
                s.igid,
                r.backend,
                r.isolation,
                r.outcome,
                func.count(),
                func.sum(r.nan.cast(Integer)),
                func.min(r.finished),
                func.max(r.finished),
            )
            .join(result_t, r.site_id == s.id)
            .group_by(*keys)
        )
        return [
            ResultGroup(
                model=row[0],
                mode=row[1],
                layer=row[2],
                layer_name=row[3],
                kernel=row[4],
                igid=row[5],
                backend=row[6],
                isolation=row[7],
                outcome=row[8],
                count=int(row[9]),
                nan=int(row[10] or 0),
                first=row[11],
                last=row[12],
            )
            for row in self.session.read(lambda con: con.execute(stmt).all())
        ]

    def bit_groups(self) -> list[BitGroup]:
        """Counts per model, mode, flipped bit and outcome of the sites that name a bit: one
        GROUP BY over the join, like result_groups."""
        s, r = site_t.c, result_t.c
        keys = (s.model, s.mode, s.bit, r.outcome)
        stmt = (
            select(*keys, func.count(), func.sum(r.nan.cast(Integer)))
            .join(result_t, r.site_id == s.id)
            .where(s.bit.is_not(None))
            .group_by(*keys)
        )
        return [
            BitGroup(
                model=row[0], mode=row[1], bit=int(row[2]), outcome=row[3], count=int(row[4]), nan=int(row[5] or 0)
            )
            for row in self.session.read(lambda con: con.execute(stmt).all())
        ]

    def add_regret(self, rows: list[RegretRecord]) -> None:
        """Store regret evaluations in one transaction; nothing else in the store is touched."""
        created = now()
        values = [{**asdict(r), "created": r.created or created} for r in rows]
        self.session.write(
            lambda con: con.execute(insert(regret_t), values),
            "cannot write regret results to",
            "; nothing else in the store was changed",
        )

    def regret_rows(self) -> list[RegretRecord]:
        """Stored regret evaluations, oldest first; none in a store that never had the table."""
        if "regret" not in self.session.tables():
            return []
        nan = float("nan")
        rows = self.session.read(lambda con: con.execute(select(regret_t).order_by(regret_t.c.id)).mappings().all())
        out = []
        for r in rows:
            values: dict[str, Any] = {
                k: (nan if v is None and k.endswith(("_low", "_high")) else v) for k, v in r.items() if k != "id"
            }
            values["noise"] = values.get("noise") or PAPER
            out.append(RegretRecord(**values))
        return out

    def launch_counts(self, model: str | None = None, igid: int | None = None) -> list[LaunchCount]:
        """Every launch whose injector count a run has shown (none in a store without the table)."""
        if "launch_count" not in self.session.tables():
            return []
        t = launch_count_t.c
        stmt = select(t.model, t.igid, t.kcount, t.kernel, t.profile_count, t.injector_count, t.site_id)
        if model is not None:
            stmt = stmt.where(t.model == model)
        if igid is not None:
            stmt = stmt.where(t.igid == igid)
        stmt = stmt.order_by(t.model, t.igid, t.kcount)
        return [LaunchCount(**row) for row in self.session.read(lambda con: con.execute(stmt).mappings().all())]

    def redraws(self) -> list[Redraw]:
        if "redraw" not in self.session.tables():
            return []
        t = redraw_t.c
        stmt = select(t.site_id, t.kernel, t.kcount, t.iid, t.injector_count, t.ran).order_by(t.id)
        return [Redraw(**row) for row in self.session.read(lambda con: con.execute(stmt).mappings().all())]

    def injections(self) -> dict[int, InjectionRecord]:
        """The injector's account of each run, by site (backend nvbitfi)."""
        if "injection" not in self.session.tables():
            return {}
        rows = self.session.read(lambda con: con.execute(select(injection_t)).mappings().all())
        return {
            r["site_id"]: InjectionRecord(
                **{k: v for k, v in r.items() if k not in ("site_id", "lanes")},
                lanes=tuple(tuple(x) for x in json.loads(r["lanes"])),
            )
            for r in rows
        }

    def count_checks(self) -> list[CountCheck]:
        """Per model and group: how many launches' injector counts are known, how many disagree
        with the profile and by what ratio, and what the re-draws cost."""
        counts = self.launch_counts()
        if not counts:
            return []
        redraws = self.redraws()
        where = (
            dict(self.session.read(lambda con: con.execute(select(site_t.c.id, site_t.c.model)).all()))
            if redraws
            else {}
        )
        out = []
        for model, igid in sorted({(c.model, c.igid) for c in counts}):
            mine = [c for c in counts if (c.model, c.igid) == (model, igid)]
            off = [
                c.profile_count / c.injector_count if c.injector_count else float("inf")
                for c in mine
                if c.profile_count != c.injector_count
            ]
            drawn = [d for d in redraws if where.get(d.site_id) == model]
            out.append(
                CountCheck(
                    model=model,
                    igid=igid,
                    launches=len(mine),
                    over=sum(c.profile_count > c.injector_count for c in mine),
                    under=sum(c.profile_count < c.injector_count for c in mine),
                    ratio_low=min(off, default=float("nan")),
                    ratio_high=max(off, default=float("nan")),
                    redrawn=len({d.site_id for d in drawn}),
                    rejected_runs=sum(d.ran for d in drawn),
                )
            )
        return out

    def export_batches(self, size: int = 50_000, fields: tuple[str, ...] | None = None) -> Iterator[list[tuple]]:
        """Every result joined with its site, in site order, as tuples of ``fields`` (default
        EXPORT_FIELDS), ``size`` at a time: SQLite steps the cursor and PostgreSQL serves a
        server-side one, so memory stays at one batch whatever the size of the store. A
        connection lost on the way is opened again and the query resumed after the last site
        handed out (``Session.stream``)."""
        fields = fields or EXPORT_FIELDS
        extra = "site_id" not in fields  # the key a resumed query continues from
        wanted = fields + ("site_id",) if extra else fields
        key = wanted.index("site_id")
        engine = self.session.engine

        def run(con: Connection, last: Row | None) -> CursorResult:
            stmt = self._export_select(wanted)
            if last is not None:
                stmt = stmt.where(site_t.c.id > int(last[key]))
            sql = str(stmt.compile(engine, compile_kwargs={"literal_binds": True}))
            return con.execution_options(stream_results=True).exec_driver_sql(sql)

        for batch in self.session.stream(run, size):
            yield [row[:-1] for row in batch] if extra else batch

    def _export_select(self, fields: tuple[str, ...]) -> Select:
        cols = {
            "site_id": site_t.c.id.label("site_id"),
            **{f: site_t.c[f] for f in SITE_FIELDS},
            **{f: result_t.c[f] for f in RESULT_FIELDS},
            **{f: injection_t.c[f] for f in INJECTION_FIELDS},
        }
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
            batches = (
                self._fetch(stmt.where(site_t.c.id.in_(ids[i : i + ID_BATCH]))) for i in range(0, len(ids), ID_BATCH)
            )
        for batch in batches:
            out = [dict(zip(EXPORT_FIELDS, row, strict=False)) for row in batch]
            for d in out:
                d["nan"] = bool(d["nan"])
            yield out

    def _fetch(self, stmt: Select) -> list[tuple]:
        return self.session.read(lambda con: [tuple(r) for r in con.execute(stmt)])

    def result_ids(self) -> set[int]:
        """The sites that have a result."""
        return set(self.session.read(lambda con: con.execute(select(result_t.c.site_id)).scalars().all()))
