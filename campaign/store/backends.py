"""What differs between the store's two databases: an SQLite file for one machine, a PostgreSQL
server for many. Everything else in the store is one piece of SQLAlchemy core over both."""

from __future__ import annotations

import os
import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

from sqlalchemy import (
    ColumnElement,
    Float,
    Insert,
    ScalarSelect,
    Select,
    Table,
    cast,
    create_engine,
    event,
    extract,
    func,
    text,
)
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import ArgumentError, InterfaceError, OperationalError
from sqlalchemy.pool import ConnectionPoolEntry, NullPool, QueuePool

from fi_campaign.errors import UserError

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
# deadlock and serialization failures: PostgreSQL aborted the transaction, a retry may pass
_TRANSIENT = {"40P01", "40001"}
# the server shut down or restarts: admin_shutdown, crash_shutdown, cannot_connect_now
_GONE = {"57P01", "57P02", "57P03"}


class StoreError(UserError):
    pass


@dataclass(frozen=True)
class Target:
    """Where a store lives: an SQLite file (``path``) or a PostgreSQL database (``url``)."""

    given: str
    path: Path | None = None
    url: URL | None = None

    @property
    def server(self) -> bool:
        return self.url is not None

    @property
    def label(self) -> str:
        """How the store is named to the user: never with its password."""
        if self.url is None:
            return str(self.path)
        return unquote(self.url.render_as_string(hide_password=True))

    @property
    def file(self) -> Path:
        """The SQLite file of a store that is not on a server: every target has a path or a URL."""
        if self.path is None:
            raise TypeError(f"{self.label} is a server store; it has no file.")
        return self.path

    @property
    def name(self) -> str:
        return (self.url.database or "") if self.url is not None else self.file.name

    @property
    def address(self) -> str:
        """How another process (a spawned worker, a Slurm task) reaches the same store; a URL
        keeps its password here, so this is never printed."""
        return self.url.render_as_string(hide_password=False) if self.url is not None else str(self.path)

    @property
    def anchor(self) -> Path:
        """What files kept beside the store are named after: the SQLite file, or the database's
        name made safe (``safe_name``) in the current folder for a server store (run
        directories, the injection log): a name like ``../x`` or ``/abs/x`` spells no path."""
        return self.path if self.path is not None else Path.cwd() / safe_name(self.name)

    @property
    def key(self) -> str:
        """Equal for two spellings of the same store."""
        return self.label if self.url is not None else str(self.file.resolve())


def safe_name(name: str) -> str:
    """A database name as one file name: every character but letters, digits, '.', '_' and '-'
    becomes '_', leading dots go, and a name that had to change gets a digest of the original,
    so two databases never share their files."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip(".")
    if safe == name and safe:
        return safe
    import hashlib

    return f"{safe or 'db'}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"


def parse_target(given: str | Path | Target) -> Target:
    """A path, ``sqlite:///path``, or ``postgresql[+psycopg]://user@host/db``."""
    if isinstance(given, Target):
        return given
    s = str(given)
    if not _URL.match(s):
        return Target(s, path=Path(s))
    try:
        url = make_url(s)
    except ArgumentError:
        raise StoreError(f"{s} is not a database URL; give a file path or postgresql+psycopg://USER@HOST/DB.") from None
    backend = url.get_backend_name()
    if backend == "sqlite":
        if not url.database or url.database == ":memory:":
            raise StoreError(f"{s} names no SQLite file; give sqlite:///PATH or just the path.")
        return Target(s, path=Path(url.database))
    if backend != "postgresql":
        raise StoreError(
            f"{url.render_as_string(hide_password=True)}: a store is an SQLite file or a PostgreSQL "
            "database (postgresql+psycopg://USER@HOST/DB), not " + backend + "."
        )
    if not url.database:
        raise StoreError(f"{url.render_as_string(hide_password=True)} names no database; add /DBNAME.")
    return Target(s, url=url.set(drivername="postgresql+psycopg"))


def engine_for(target: Target) -> Engine:
    if target.url is None:
        return sqlite_engine(target.file)
    try:
        import psycopg  # noqa: F401
    except ImportError:
        raise StoreError("a PostgreSQL store needs psycopg: pip install 'fi-campaign[cluster]'.") from None
    # pre-ping: a pooled connection that died with a server restart is replaced, not used
    return create_engine(target.url, pool_pre_ping=True, connect_args={"connect_timeout": 10})


def sqlite_engine(path: Path) -> Engine:
    """An engine on the file ``path`` whatever its name: SQLite gets the absolute path itself,
    never a URL, in which '?', '#' and '%' would be URI syntax and ':memory:' a memory database."""
    target = os.path.abspath(path)
    engine = create_engine(
        "sqlite://", creator=lambda: sqlite3.connect(target, check_same_thread=False), poolclass=QueuePool
    )

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    return engine


def sqlite_reader(uri: str) -> Engine:
    """A read-only engine on an SQLite URI (``sqlite_file.reader_uri``). No pool: a connection
    to an immutable file trusts its page cache for ever, so each call gets a fresh one."""
    engine = create_engine(
        "sqlite://", creator=lambda: sqlite3.connect(uri, uri=True, check_same_thread=False), poolclass=NullPool
    )

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA query_only=ON")
        cur.close()

    return engine


def insert_ignoring(table: Table, dialect: str) -> Insert:
    """An INSERT that skips rows whose key is already there (ON CONFLICT DO NOTHING)."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as postgresql_insert

        return postgresql_insert(table).on_conflict_do_nothing()
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table).on_conflict_do_nothing()


def insert_many(con: Connection, table: Table, columns: tuple[str, ...], rows: list[tuple[object, ...]]) -> None:
    """Plain rows into ``table`` through the driver's own executemany: SQLAlchemy's parameter
    processing per row costs more than the insert itself when a worker records thousands of
    results a second. The values must already be of the driver's types (int, float, str, bool, None)."""
    if not rows:
        return
    marker = "%s" if con.dialect.name == "postgresql" else "?"
    sql = f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({', '.join([marker] * len(columns))})"
    con.exec_driver_sql(sql, rows)


def epoch(dialect: str) -> ColumnElement[float]:
    """The database's clock in epoch seconds: leases and heartbeats written by workers on many
    hosts are compared on one clock, the server's."""
    if dialect == "postgresql":
        return cast(extract("epoch", func.clock_timestamp()), Float)
    return (func.julianday("now") - 2440587.5) * 86400.0


def pick_ids(con: Connection, pick: Select[int], dialect: str) -> ScalarSelect[int] | list[int]:
    """The ids an UPDATE may take, from the SELECT ``pick``. SQLite: a subquery of the same
    statement, run under its single writer lock. PostgreSQL: the rows are locked first, in a
    statement of their own, with SKIP LOCKED, so concurrent claims take disjoint rows without
    waiting; inside one UPDATE the planner may run a LIMIT subquery more than once, and with
    SKIP LOCKED each run can return other rows, so more than LIMIT rows would be taken."""
    if dialect != "postgresql":
        return pick.scalar_subquery()
    return list(con.execute(pick.with_for_update(skip_locked=True)).scalars())


def reset_sequences(con: Connection, table_names: list[str]) -> None:
    """After rows were copied in with their ids, the next id PostgreSQL hands out follows them."""
    if con.dialect.name != "postgresql":
        return
    for t in table_names:
        con.execute(
            text(
                f"SELECT setval(pg_get_serial_sequence('{t}', 'id'), COALESCE((SELECT max(id) FROM {t}), 0) + 1, false)"
            )
        )


def transient(e: BaseException, dialect: str) -> str | None:
    """Why a failed PostgreSQL call may pass if tried again: "conflict" (a deadlock or a
    serialization failure; at once) or "connection" (the server restarted, is starting, or did
    not answer). SQLite errors (a full disk, a read-only file) are never retried. ``e`` is
    SQLAlchemy's wrapper or the driver's own error."""
    if dialect != "postgresql":
        return None
    orig = getattr(e, "orig", None) or e
    state = getattr(orig, "sqlstate", None)
    if state in _TRANSIENT:
        return "conflict"
    if (state or "").startswith("08") or state in _GONE or getattr(e, "connection_invalidated", False):
        return "connection"
    if state is None and (isinstance(e, (OperationalError, InterfaceError)) or _broken(orig)):
        return "connection"  # no server answered at all, or the connection broke mid-call
    return None


def _broken(orig: BaseException) -> bool:
    try:
        import psycopg
    except ImportError:
        return False
    return isinstance(orig, (psycopg.OperationalError, psycopg.InterfaceError))


def reason(e: BaseException) -> str:
    orig = getattr(e, "orig", None) or e
    lines = [ln.strip() for ln in str(orig).splitlines() if ln.strip()]
    return lines[0] if lines else type(orig).__name__


__all__ = [
    "StoreError",
    "Target",
    "engine_for",
    "epoch",
    "insert_ignoring",
    "parse_target",
    "pick_ids",
    "reason",
    "reset_sequences",
    "safe_name",
    "sqlite_engine",
    "sqlite_reader",
    "transient",
]
