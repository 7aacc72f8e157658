"""The one way the store talks to its database: every call, read or write, on SQLite or
PostgreSQL, goes through a ``Session``.

A PostgreSQL server that restarts or goes away for a while cuts every connection; a call that
meets that is tried again, with back-off, for up to ``RETRY_S`` (a deadlock or serialization
failure for ``CONFLICT_S``), then fails with one sentence. A call is a whole transaction or a
whole read, so a retry never writes twice what the first try committed. Only a store that was
reached once is waited for: a first connection that fails is a wrong URL or a server that is
down, said at once. Driver errors (SQLAlchemy's, psycopg's, sqlite3's) never leave a session:
they become ``StoreError``, the store's ``UserError``.

A read-only SQLite store (``sqlite_file.unwritable``) refuses every write in one sentence
before touching the file. One opened ``immutable`` (no journal beside it, so SQLite reads the
file alone and creates nothing) is checked around every read: should a writer with rights this
process lacks change the file meanwhile, the read is done again.
"""

from __future__ import annotations

import gc
import os
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import inspect
from sqlalchemy.engine import Connection, CursorResult, Engine, Row
from sqlalchemy.exc import DBAPIError

from fi_campaign.store.backends import StoreError, reason, transient

RETRY_S = 60.0  # how long a call waits for a PostgreSQL server that went away (a restart)
CONFLICT_S = 2.0  # how long a deadlock or serialization failure is tried again
FIRST_PAUSE_S, LONGEST_PAUSE_S = 0.05, 5.0

T = TypeVar("T")


class Changed(Exception):
    """An immutable SQLite file changed while it was read (a writer elsewhere)."""


def driver_errors(*more: type[BaseException]) -> tuple[type[BaseException], ...]:
    """SQLAlchemy's, sqlite3's and (once loaded: only then can it raise) psycopg's errors, and
    ``more``. An ``except`` clause evaluates this only when an exception reaches it, so an
    SQLite-only command never pays for importing psycopg."""
    psycopg = sys.modules.get("psycopg")
    return (DBAPIError, sqlite3.Error, *more) + ((psycopg.Error,) if psycopg is not None else ())


class Session:
    """One store's engine and how to call it. ``read_only``: why the store cannot be written
    here (None: it can). ``guard``: the SQLite file opened immutable, whose stat must not change
    under a read."""

    def __init__(self, engine: Engine, label: str, read_only: str | None = None, guard: Path | None = None) -> None:
        self.engine, self.label = engine, label
        self.dialect = engine.dialect.name
        self.read_only, self.guard = read_only, guard
        self._reached = False
        self._names: set[str] | None = None

    def reach(self) -> None:
        """The first connection, so that an unreachable or refusing server is one sentence at once."""
        try:
            with self.engine.connect() as con:
                con.exec_driver_sql("SELECT 1")
        except driver_errors(OSError) as e:
            raise StoreError(f"cannot connect to {self.label} ({reason(e)}).") from None
        self._reached = True

    def read(self, fn: Callable[[Connection], T], fails: str = "cannot read", after: str = "") -> T:
        """``fn(con)`` on a connection of its own; tried again while the server is away. A
        failure is the sentence "``fails`` STORE (why)``after``."."""
        return self._retrying(lambda: self._call(fn, begin=False), fails, after)

    def write(self, fn: Callable[[Connection], T], fails: str, after: str = "") -> T:
        """``fn(con)`` in one transaction, committed when it returns; tried again as a whole."""
        self.refuse_writes()
        return self._retrying(lambda: self._call(fn, begin=True), fails, after)

    def best_effort(self, fn: Callable[[Connection], Any]) -> None:
        """One try at a write nobody waits for (a worker's last word, giving sites back on the
        way out); a store that cannot take it now is left alone."""
        if self.read_only is not None:
            return
        try:
            self._call(fn, begin=True)
        except driver_errors(Changed):
            pass

    def stream(
        self, run: Callable[[Connection, Row | None], CursorResult], size: int, fails: str = "cannot read"
    ) -> Iterator[list]:
        """Rows ``size`` at a time from one cursor, ``run(con, last)``, where ``last`` is the last
        row already handed out (None at first): after a lost connection the query is run again
        from there, so no row is skipped or repeated. A changed immutable file cannot be resumed
        (the rows handed out may be torn): that is one sentence."""
        last: Row | None = None
        since, pause = None, FIRST_PAUSE_S
        while True:
            try:
                before = self._stamp()
                with self.engine.connect() as con:
                    cursor = run(con, last)
                    while batch := cursor.fetchmany(size):
                        if self._stamp() != before:
                            raise StoreError(
                                f"{fails} {self.label}: the file was changed by another process "
                                "while it was read; run the command again."
                            )
                        since, pause, self._reached = None, FIRST_PAUSE_S, True
                        last = batch[-1]
                        yield list(batch)
                return
            except driver_errors() as e:
                since = time.monotonic() if since is None else since
                self._give_up_or_wait(e, since, pause, fails)
                pause = min(2 * pause, LONGEST_PAUSE_S)

    def tables(self) -> set[str]:
        """The store's table names, read once: they change only when the store is upgraded."""
        if self._names is None:
            self._names = set(self.read(lambda con: inspect(con).get_table_names()))
        return self._names

    def forget_tables(self) -> None:
        self._names = None

    def refuse_writes(self) -> None:
        if self.read_only is not None:
            raise refusal(self.label, self.read_only)

    def _call(self, fn: Callable[[Connection], T], begin: bool) -> T:
        before = self._stamp()
        stop: BaseException | None = None
        try:
            with self.engine.begin() if begin else self.engine.connect() as con:
                out = fn(con)
        except (KeyboardInterrupt, SystemExit) as e:
            stop = type(e)(*e.args)
        if stop is not None:
            # An SQLite statement stopped mid-step (UPDATE ... RETURNING) holds the write lock while
            # it lives, and the interrupted frames keep it in reference cycles: raised anew once
            # they are collected, or whoever handles the stop (giving sites back) would wait on it.
            gc.collect()
            raise stop
        if self._stamp() != before:
            raise Changed(self.label)
        return out

    def _stamp(self) -> tuple[int, int, int] | None:
        if self.guard is None:
            return None
        try:
            st = os.stat(self.guard)
        except OSError:
            return None
        return st.st_ino, st.st_size, st.st_mtime_ns

    def _retrying(self, call: Callable[[], T], fails: str, after: str = "") -> T:
        since, pause = None, FIRST_PAUSE_S
        while True:
            try:
                out = call()
            except driver_errors(Changed) as e:
                since = time.monotonic() if since is None else since
                self._give_up_or_wait(e, since, pause, fails, after)
                pause = min(2 * pause, LONGEST_PAUSE_S)
            else:
                self._reached = True
                return out

    def _give_up_or_wait(self, e: BaseException, since: float, pause: float, fails: str, after: str = "") -> None:
        """Sleep before the next try, or raise the one sentence once trying is pointless."""
        why = self._why(e)
        window = {"connection": RETRY_S, "conflict": CONFLICT_S, "changed": RETRY_S}.get(why or "")
        waited = time.monotonic() - since
        if window is None or waited >= window:
            if why == "changed":
                raise StoreError(
                    f"{fails} {self.label}: another process kept changing the file while it was "
                    f"read{after}; run the command again when it is done."
                ) from None
            if why == "connection" and waited > 0:
                raise StoreError(
                    f"{fails} {self.label}: the server did not come back within {window:.0f} s ({reason(e)}){after}."
                ) from None
            raise StoreError(f"{fails} {self.label} ({reason(e)}){after}.") from None
        time.sleep(min(pause, max(window - waited, 0.0) + 0.01))

    def _why(self, e: BaseException) -> str | None:
        if isinstance(e, Changed):
            return "changed"
        why = transient(e, self.dialect)
        if why == "connection" and not self._reached and not _starting(e):
            return None  # never reached: a wrong address or a server that is down, not a restart
        return why


def refusal(label: str, why: str) -> StoreError:
    """What a write to a store this process cannot write says, before it touches anything."""
    return StoreError(f"cannot write to {label}: {why}; it can only be read here, and nothing was written to it.")


def _starting(e: BaseException) -> bool:
    """The server answered that it is starting up or shutting down (cannot_connect_now)."""
    orig = getattr(e, "orig", None) or e
    return getattr(orig, "sqlstate", None) == "57P03"
