"""An SQLite store as a file on disk: the journal files SQLite keeps beside it, whether this
process may write it, how to read it without writing anything, and how a finished plan is
published under its name.

A store in WAL mode is read through its ``-wal`` and ``-shm`` files; SQLite creates them, even
for a read-only connection, when the folder lets it, and leaves them behind when it may not
write the database. So a reader that must not write opens the file ``immutable`` when no journal
is beside it (nothing is created and nothing but the file holds data), and read-only through
the journals when they are there (they may hold results not yet in the file).

The probes here (is it SQLite, which tables, is it empty, is the new plan whole) read a file
before any store is opened on it, one connection each; every other database call goes through
the store's ``Session``.
"""

from __future__ import annotations

import os
import sqlite3
import stat
from contextlib import closing
from pathlib import Path

from fi_campaign.store import migrate
from fi_campaign.store.backends import StoreError
from fi_campaign.store.backends import reason as _reason
from fi_campaign.store.schema import meta

SIDECARS = ("-wal", "-shm", "-journal")  # SQLite's own files beside a database
PLANNING = ".planning-"  # a plan is written to ".NAME.planning-PID" and renamed onto NAME
HEADER = b"SQLite format 3\x00"


def sidecars(path: Path) -> list[Path]:
    return [path.with_name(path.name + s) for s in SIDECARS]


def unwritable(path: Path) -> str | None:
    """Why this process cannot write the store ``path`` (its folder, the file or a journal
    beside it), in words; None when it can."""
    folder = Path(os.path.abspath(path)).parent
    try:
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return f"its folder {folder} is on a read-only file system"
    except OSError:
        pass
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"its folder {folder} is not writable"
    if not os.access(path, os.W_OK):
        return "the file is not writable"
    for side in sidecars(path):
        if side.exists() and not os.access(side, os.W_OK):
            return f"{side.name} beside it is not writable"
    return None


def reader_uri(path: Path) -> tuple[str, bool]:
    """(URI, immutable) of a connection that reads ``path`` and writes nothing, not even a
    journal file. The URI is built from the path with every special character percent-encoded,
    so any file name opens the file it names."""
    base = Path(os.path.abspath(path)).as_uri()
    wal, shm, journal = sidecars(path)
    try:
        logged = wal.exists() and wal.stat().st_size > 0
        if shm.exists() or journal.exists():
            return base + "?mode=ro", False
    except OSError as e:
        raise StoreError(f"cannot open {path} ({e.strerror}).") from None
    if logged:
        if unwritable(path) is not None:
            raise StoreError(
                f"cannot read {path}: results in its {wal.name} cannot be read without a "
                f"{shm.name} beside it, which this process may not create; make its folder "
                "writable or copy the store with its -wal file elsewhere."
            )
        return base + "?mode=ro", False
    return base + "?immutable=1", True


def tables(path: Path) -> set[str]:
    """Table names of an SQLite file, read without writing anything; StoreError if it is not SQLite."""
    uri, _ = reader_uri(path)
    try:
        with closing(sqlite3.connect(uri, uri=True)) as con:
            return {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.OperationalError as e:
        raise StoreError(f"cannot open {path} ({e}).") from None
    except sqlite3.Error:
        raise StoreError(f"{path} is not a campaign store (not an SQLite database).") from None


def holds_campaign(path: str | Path) -> bool:
    """Whether ``path`` is an SQLite file with a campaign table (a store, planned or not):
    the test every output path passes before anything is written to it. Only a regular file is
    opened: a pipe or a device is never read (a FIFO would block until someone writes)."""
    path = Path(path)
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return False
        with open(path, "rb") as f:
            if f.read(16) != HEADER:
                return False
    except OSError:
        return False
    try:
        return "campaign" in tables(path)
    except StoreError:
        return True  # an SQLite file that cannot be read is treated as a store: never written over


def holds_nothing(path: Path) -> bool:
    """No campaign, site, result or regret row: what a plan interrupted before this version left."""
    try:
        uri, _ = reader_uri(path)
        with closing(sqlite3.connect(uri, uri=True)) as con:
            names = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            names.discard(migrate.VERSION_TABLE)  # the schema's revision, in every store
            if not names <= {t.name for t in meta.sorted_tables}:
                return False
            return all(con.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] == 0 for t in names)
    except (sqlite3.Error, StoreError):
        return False


def remove_leftovers(path: Path) -> None:
    """Temporary plans of ``path`` whose planning process is gone (killed mid-plan)."""
    import psutil

    prefix = f".{path.name}{PLANNING}"
    try:
        names = os.listdir(path.parent if str(path.parent) else ".")
    except OSError:
        return
    for name in names:
        pid = name[len(prefix) :].split("-", 1)[0] if name.startswith(prefix) else ""
        if pid.isdigit() and not psutil.pid_exists(int(pid)):
            path.with_name(name).unlink(missing_ok=True)


def seal(temp: Path, path: Path, expected: int) -> None:
    """Fold the WAL into the file and check the plan is there before the file is published:
    a rename carries one file, not its journal."""
    try:
        with closing(sqlite3.connect(os.path.abspath(temp))) as con:
            folded = con.execute("PRAGMA journal_mode=DELETE").fetchone()[0]
            sites = con.execute("SELECT count(*) FROM site").fetchone()[0]
            campaigns = con.execute("SELECT count(*) FROM campaign").fetchone()[0]
            wal = con.execute("PRAGMA journal_mode=WAL").fetchone()[0]  # recorded in the file's header
        if (
            (folded, wal) != ("delete", "wal")
            or sites != expected
            or campaigns != 1
            or any(f.exists() for f in sidecars(temp))
        ):
            raise StoreError(f"the plan written beside {path} did not read back whole; nothing was stored.")
        fd = os.open(temp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except (sqlite3.Error, OSError) as e:
        raise StoreError(f"cannot write the plan to {path} ({_reason(e)}); nothing was stored.") from None


def publish(temp: Path, path: Path, replace: bool) -> None:
    """Rename the finished plan onto ``path``: over an empty store when ``replace``, else only
    if nothing appeared at ``path`` meanwhile (a hard link cannot overwrite)."""
    taken = StoreError(f"{path} appeared while the plan was drawn; nothing was written to it.")
    if replace:
        if path.exists() and path.stat().st_size > 0 and not holds_nothing(path):
            raise taken
    elif path.exists():
        raise taken
    for f in sidecars(path):  # a journal left beside it would be replayed onto the new file
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
