"""The injection log beside a store (STORE.log.jsonl): one JSON line per result, to follow a run
with ``tail -f`` or grep it. The store is the record; the log is kept whole and in agreement
with it: each transaction's lines go out in one append of complete lines under the log's lock, a
failed append is cut back to the last complete line, and every run starts by repairing what a
full disk or a killed process left (a torn last line, results the log lacks) from the store.
A log that cannot be written never stops a run: the results are in the store.
"""

from __future__ import annotations

import fcntl
import json
import os
import stat
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from fi_campaign.store import Result, Store

SITE_PREFIX = b'{"site": '


def result_lines(results: Iterable[Result], model: str, mode: str, worker: str | None) -> str:
    """The lines of one worker's results, as ``json.dumps`` writes them; what every line shares is
    encoded once, since a small network records thousands of results a second."""
    head, who = _head(model, mode), json.dumps(worker)
    return "".join(_line(r.site_id, head, r.outcome, r.runtime_s, who, r.detail) for r in results)


def stored_line(row: dict) -> str:
    """The line of a result rebuilt from the store, which does not keep the worker's name."""
    head = _head(row["model"], row["mode"])
    return _line(row["site_id"], head, row["outcome"], row["runtime_s"], "null", row["detail"])


def _head(model: str, mode: str) -> str:
    return f'"model": {json.dumps(model)}, "mode": {json.dumps(mode)}'


def _line(site: int, head: str, outcome: str, runtime_s: float, who: str, detail: str | None) -> str:
    tail = f', "detail": {json.dumps(detail)}' if detail else ""
    return (
        f'{{"site": {site}, {head}, "outcome": {json.dumps(outcome)}, '
        f'"runtime_s": {round(runtime_s, 6)!r}, "worker": {who}{tail}}}\n'
    )


class Log:
    """Appends to one store's log on behalf of one worker; says once (``on_note``) when the log
    cannot be written."""

    def __init__(self, path: Path, on_note: Callable[[str], None] | None = None) -> None:
        self.path = path
        self.on_note = on_note
        self.failed = False
        self._fd: int | None = None
        self._error: OSError | None = None

    @contextmanager
    def held(self) -> Iterator[Log]:
        """The log's lock, held while the caller commits results and writes their lines, so
        that a repair (which takes it too) never sees a committed result whose line is still
        to come."""
        try:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except OSError as e:
            self._close()
            self._error = e
        try:
            yield self
        finally:
            self._close()

    def _close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # releases the lock
            self._fd = None

    def write(self, text: str) -> bool:
        """Append complete lines (inside ``held``); on failure the log is cut back to where it
        was, so it never ends in half a line. Returns whether the lines are in the log."""
        if not text:
            return True
        if self._fd is None:
            self._fail(self._error or OSError("the log is not open"))
            return False
        ok = append(self._fd, text.encode("utf-8"))
        if ok is not True:
            self._fail(ok)
            return False
        return True

    def _fail(self, e: OSError) -> None:
        if not self.failed and self.on_note:
            self.on_note(
                f"cannot write the injection log {self.path} ({e.strerror or e}); every result is "
                "in the store, and the next 'fi-campaign run' completes the log from it."
            )
        self.failed = True


def append(fd: int, data: bytes) -> Literal[True] | OSError:
    """``data`` appended whole to the locked ``fd``, or the file truncated back and the error."""
    start = os.fstat(fd).st_size
    done = 0
    try:
        while done < len(data):
            done += os.write(fd, data[done:])  # a short write (disk full) is retried; the retry fails
        return True
    except OSError as e:
        try:
            os.ftruncate(fd, start)
        except OSError:
            pass
        return e


@dataclass(frozen=True)
class Repair:
    torn: bool = False  # a torn last line was dropped
    added: int = 0  # stored results whose lines were missing, appended
    rebuilt: bool = False  # the log disagreed with the store (foreign or repeated lines) and was rewritten
    error: str | None = None  # the log could not be written; it is line-complete, still short

    def sentence(self, path: Path) -> str | None:
        if self.error:
            return (
                f"cannot complete the injection log {path} ({self.error}); every result is in the store, "
                "and the next 'fi-campaign run' tries again."
            )
        if self.rebuilt:
            return f"rebuilt the injection log {path} from the store: it held lines of results the store does not have."
        done = (["dropped a torn last line"] if self.torn else []) + (
            [f"appended {self.added} results it lacked"] if self.added else []
        )
        return f"repaired the injection log {path}: {' and '.join(done)}, from the store." if done else None


def repair(store: Store, path: Path) -> Repair:
    """Make the log hold exactly one complete line per stored result. The store is read under
    the log's lock: another run's workers commit and log while holding it, so the two agree."""
    if not path.exists() and not store.result_ids():
        return Repair()
    try:
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    except OSError as e:
        return Repair(error=e.strerror or str(e))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return Repair()  # a pipe or a device someone pointed the log at: nothing to read back
        fcntl.flock(fd, fcntl.LOCK_EX)
        done = store.result_ids()
        logged, end, size, clean = _scan(fd)
        torn = end < size
        if torn:
            os.ftruncate(fd, end)
        foreign = not clean or len(logged) != len(set(logged)) or not set(logged) <= done
        if foreign:
            os.ftruncate(fd, 0)
            missing: set[int] | None = None
        else:
            missing = done - set(logged)
        added = 0
        for lines in _batches(store, missing):
            ok = append(fd, "".join(lines).encode("utf-8"))
            if ok is not True:
                return Repair(torn, added, foreign, ok.strerror or str(ok))
            added += len(lines)
        return Repair(torn, 0 if foreign else added, foreign)
    except OSError as e:
        return Repair(error=e.strerror or str(e))
    finally:
        os.close(fd)


def _scan(fd: int) -> tuple[list[int], int, int, bool]:
    """(site of each complete line, end of the last complete line, file size, every complete
    line is a log line)."""
    sites: list[int] = []
    end = pos = 0
    clean = True
    with os.fdopen(os.dup(fd), "rb") as f:
        f.seek(0)
        for raw in f:
            pos += len(raw)
            if not raw.endswith(b"\n"):
                break
            end = pos
            site = _site(raw)
            if site is None:
                clean = False
            else:
                sites.append(site)
    return sites, end, pos, clean


def _site(raw: bytes) -> int | None:
    if raw.startswith(SITE_PREFIX):
        head = raw[len(SITE_PREFIX) : raw.find(b",")]
        if head.isdigit():
            return int(head)
    try:
        site = json.loads(raw).get("site")
    except (ValueError, AttributeError):
        return None
    return site if isinstance(site, int) else None


def _batches(store: Store, ids: set[int] | None) -> Iterable[list[str]]:
    """Lines of the stored results ``ids`` (all when None), a batch at a time."""
    for rows in store.export_dicts(None if ids is None else sorted(ids)):
        yield [stored_line(r) for r in rows]
