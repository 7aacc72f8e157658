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
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import delete, insert, select
from sqlalchemy.exc import DatabaseError

from fi_campaign.store.backends import StoreError, Target, parse_target, reason, reset_sequences
from fi_campaign.store.database import Store
from fi_campaign.store.schema import (PENDING, RUNNING, campaign_t, injection_t, launch_count_t, redraw_t, regret_t,
                                   result_t, site_t, worker_t)

TABLES = (campaign_t, site_t, result_t, injection_t, redraw_t, launch_count_t, regret_t, worker_t)  # parents first
BATCH = 5_000


@dataclass(frozen=True)
class Copied:
    rows: dict[str, int]
    digests: dict[str, str]  # sha256 per table, equal on both sides
    released: int  # sites that were running in the source and are pending in the copy


def _normal(table, row: dict) -> dict:
    """A site someone holds in the source is pending in the copy: its owner is not there."""
    if table is site_t and row["status"] == RUNNING:
        return {**row, "status": PENDING, "owner": None, "lease_until": None}
    return row


def _encode(row: dict, columns: list[str]) -> bytes:
    values = [int(v) if isinstance(v, bool) else v for v in (row[c] for c in columns)]
    return json.dumps(values, separators=(",", ":")).encode() + b"\n"


def _pk_order(table):
    return [c for c in table.primary_key.columns]


def _read(store: Store, table):
    """Rows of ``table`` in primary-key order, a batch at a time."""
    with store.engine.connect() as con:
        result = con.execution_options(yield_per=BATCH).execute(select(table).order_by(*_pk_order(table)))
        for part in result.mappings().partitions():
            yield [dict(r) for r in part]


def _digest(store: Store, table) -> tuple[int, str]:
    h, n = hashlib.sha256(), 0
    columns = [c.name for c in table.columns]
    for batch in _read(store, table):
        for row in batch:
            h.update(_encode(row, columns))
        n += len(batch)
    return n, h.hexdigest()


def copy(source: Store, destination: "str | Path | Target") -> Copied:
    """Copy every table of ``source`` into a new store at ``destination`` and verify it."""
    final = parse_target(destination)
    if final.key == source.target.key:
        raise StoreError(f"{final.label} is the source itself; copy to another store.")
    Store.check_new(final)
    staging = final
    if final.path is not None:
        staging = Target(str(final.path) + ".partial", path=final.path.with_name(final.path.name + ".partial"))
        _remove(staging.path)
    dst = Store.create(staging)
    rows, digests, released = {}, {}, 0
    try:
        with dst.engine.begin() as out:
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
    except DatabaseError as e:
        _abandon(dst, staging)
        raise StoreError(f"cannot copy into {final.label} ({reason(e)}); nothing was copied.") from None
    for table in TABLES:
        got = _digest(dst, table)
        if got != (rows[table.name], digests[table.name]):
            _abandon(dst, staging)
            raise StoreError(f"the copy of table {table.name} in {final.label} does not match the source "
                             f"({got[0]} rows read back, {rows[table.name]} written); nothing was kept.")
    if final.path is not None:
        dst.engine.dispose()  # the last connection checkpoints the WAL into the file
        os.replace(staging.path, final.path)
    return Copied(rows, digests, released)


def _abandon(dst: Store, staging: Target) -> None:
    """Leave the destination as it was found: no file, or an empty store on the server."""
    if staging.path is None:
        with dst.engine.begin() as con:
            for table in reversed(TABLES):
                con.execute(delete(table))
    dst.engine.dispose()
    if staging.path is not None:
        _remove(staging.path)


def _remove(path: Path) -> None:
    for p in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        p.unlink(missing_ok=True)
