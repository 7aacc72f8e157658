"""Moving a whole campaign between stores, SQLite <-> PostgreSQL, in either direction: plan on a
laptop, run on the cluster, report anywhere.

Rows go through SQLAlchemy core in batches, in one transaction on the destination (an SQLite
destination is written beside its final name and renamed when verified, so a failed copy leaves
nothing). Each table is then read back from the destination and compared with what was read
from the source: row counts and a digest of every value in primary-key order.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Column, Table, delete, insert, select, tuple_
from sqlalchemy.engine import Connection, CursorResult, Row

from fi_campaign.store.backends import StoreError, Target, parse_target, reset_sequences
from fi_campaign.store.database import Store
from fi_campaign.store.schema import (
    PENDING,
    RUNNING,
    campaign_t,
    injection_t,
    launch_count_t,
    redraw_t,
    regret_t,
    result_t,
    site_t,
    worker_t,
)

TABLES = (campaign_t, site_t, result_t, injection_t, redraw_t, launch_count_t, regret_t, worker_t)  # parents first
BATCH = 5_000


@dataclass(frozen=True)
class Copied:
    rows: dict[str, int]
    digests: dict[str, str]  # sha256 per table, equal on both sides
    released: int  # sites that were running in the source and are pending in the copy


def _normal(table: Table, row: dict) -> dict:
    """A site someone holds in the source is pending in the copy: its owner is not there."""
    if table is site_t and row["status"] == RUNNING:
        return {**row, "status": PENDING, "owner": None, "lease_until": None}
    return row


def _encode(row: dict, columns: list[str]) -> bytes:
    values = [int(v) if isinstance(v, bool) else v for v in (row[c] for c in columns)]
    return json.dumps(values, separators=(",", ":")).encode() + b"\n"


def _pk_order(table: Table) -> list[Column]:
    return [c for c in table.primary_key.columns]


def _read(store: Store, table: Table) -> Iterator[list[dict[str, Any]]]:
    """Rows of ``table`` in primary-key order, a batch at a time, through the store's session
    (a lost connection resumes after the last row read)."""
    key = _pk_order(table)

    def run(con: Connection, last: Row | None) -> CursorResult:
        stmt = select(table).order_by(*key)
        if last is not None:
            after = [last._mapping[c.name] for c in key]
            stmt = stmt.where(key[0] > after[0] if len(key) == 1 else tuple_(*key) > tuple_(*after))
        return con.execution_options(stream_results=True).execute(stmt)

    for batch in store.session.stream(run, BATCH):
        yield [dict(r._mapping) for r in batch]


def _digest(store: Store, table: Table) -> tuple[int, str]:
    h, n = hashlib.sha256(), 0
    columns = [c.name for c in table.columns]
    for batch in _read(store, table):
        for row in batch:
            h.update(_encode(row, columns))
        n += len(batch)
    return n, h.hexdigest()


def copy(source: Store, destination: str | Path | Target) -> Copied:
    """Copy every table of ``source`` into a new store at ``destination`` and verify it."""
    final = parse_target(destination)
    if final.key == source.target.key:
        raise StoreError(f"{final.label} is the source itself; copy to another store.")
    Store.check_new(final)
    staging = final
    if final.path is not None:
        staging = Target(str(final.path) + ".partial", path=final.path.with_name(final.path.name + ".partial"))
        _remove(staging.file)
    dst = Store.create(staging)
    rows: dict[str, int] = {}
    digests: dict[str, str] = {}

    def write(out: Connection) -> int:
        """The whole copy in one transaction; tried again as a whole if the destination's server
        restarts, so the counts start over with it."""
        released = 0
        for table in TABLES:
            h, n = hashlib.sha256(), 0
            columns = [c.name for c in table.columns]
            for batch in _read(source, table):
                if table is site_t:
                    released += sum(r["status"] == RUNNING for r in batch)
                batch = [_normal(table, r) for r in batch]
                out.execute(insert(table), batch)
                for row in batch:
                    h.update(_encode(row, columns))
                n += len(batch)
            rows[table.name], digests[table.name] = n, h.hexdigest()
        reset_sequences(out, ["site", "redraw", "regret"])
        return released

    try:
        released = dst.session.write(write, "cannot copy into", "; nothing was copied")
        for table in TABLES:
            got = _digest(dst, table)
            if got != (rows[table.name], digests[table.name]):
                raise StoreError(
                    f"the copy of table {table.name} in {final.label} does not match the source "
                    f"({got[0]} rows read back, {rows[table.name]} written); nothing was kept."
                )
    except BaseException:
        _abandon(dst, staging)
        raise
    if final.path is not None:
        dst.engine.dispose()  # the last connection checkpoints the WAL into the file
        os.replace(staging.file, final.path)
    return Copied(rows, digests, released)


def _abandon(dst: Store, staging: Target) -> None:
    """Leave the destination as it was found: no file, or an empty store on the server."""
    if staging.path is None:
        dst.session.best_effort(lambda con: [con.execute(delete(table)) for table in reversed(TABLES)])
    dst.engine.dispose()
    if staging.path is not None:
        _remove(staging.path)


def _remove(path: Path) -> None:
    for p in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        p.unlink(missing_ok=True)
