"""Every file written because a user named it (export, report --csv/--json/--html, evaluate
--csv, fault-model fit --out and show --plot, train --out) passes through here, so that no
spelling of a path (relative, absolute, through a symlink or a hard link) can replace a campaign
store or the files that live beside one, and an existing file is replaced only with --force.
Files are written beside their target and renamed onto it when complete, so an interrupted or
failed write leaves the old file (or none), never half a file. An output that is not a regular
file (a pipe, a FIFO, a device such as /dev/null, /dev/stdout) is a stream: it is written into
as it is, never replaced and never opened for reading.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from fi_campaign.errors import UserError
from fi_campaign.store.beside import LOG, RUNS
from fi_campaign.store.sqlite_file import SIDECARS, holds_campaign

BESIDE = SIDECARS + (LOG, RUNS)


class OutputError(UserError):
    pass


@dataclass(frozen=True)
class Output:
    """A checked place to write: the real path, whether it may replace a file, and the stores
    the command works on (checked again when the file is renamed into place)."""

    path: Path
    force: bool = False
    stores: tuple[Path, ...] = ()
    stream: bool = False  # not a regular file: written into where it is, never replaced

    def inside(self, name: str) -> Output:
        """A file in this folder (report --html), checked like any output."""
        return check(self.path / name, self.force, self.stores)


def check(
    path: str | Path, force: bool = False, stores: Iterable[str | Path | None] = (), folder: bool = False
) -> Output:
    """Where to write ``path``, refused (one sentence) before any work is done when it is a
    store, or beside one, or inside a store's run directories, or one of ``stores`` however
    spelt; or an existing file without ``force``; or cannot be written. ``folder``: ``path`` is
    a folder to write files into (report --html); it may exist, its files are checked one by
    one (``Output.inside``)."""
    given = Path(path)
    shown = os.fspath(path)  # as the user spelt it: Path would drop a leading ./
    target = Path(os.path.realpath(given))
    known = tuple(Path(s) for s in stores if s)
    what = _protected(target, known)
    if what:
        raise OutputError(f"{shown} is {what}; fi-campaign never writes over a store, so pick another name.")
    if not folder and _is_stream(given):
        return Output(Path(os.path.abspath(given)), force, known, stream=True)
    if folder:
        if target.exists() and not target.is_dir():
            raise OutputError(f"cannot write the report into {shown}: it is a file, not a folder.")
        _make(shown, target)
        return Output(target, force, known)
    if target.is_dir():
        raise OutputError(f"cannot write {shown}: it is a folder.")
    if not force and (target.exists() or given.is_symlink()):
        raise OutputError(f"{shown} exists; pass --force to replace it.")
    _make(shown, target.parent)
    return Output(target, force, known)


def _is_stream(given: Path) -> bool:
    """An existing output that is not a regular file or a folder (stat follows symlinks, and
    opens nothing), or a name for one of this process's descriptors (/dev/stdout, /dev/fd/N),
    which is a stream even when the shell pointed it at a file."""
    spelt = os.path.abspath(given)
    if spelt in ("/dev/stdout", "/dev/stderr") or spelt.startswith(("/dev/fd/", "/proc/self/fd/")):
        return True
    try:
        mode = os.stat(given).st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def _make(given: str, folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot write {given} ({e.strerror or e}).") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write {given} (permission denied).")


def _protected(target: Path, stores: tuple[Path, ...] | list[Path]) -> str | None:
    """What ``target`` (a real path) is, if writing it could destroy a store: the store, its
    SQLite journal files, its log or run directories."""
    if holds_campaign(target):
        return "a campaign store"
    name = target.name
    for suffix in BESIDE:
        base = target.with_name(name[: -len(suffix)]) if name.endswith(suffix) and name != suffix else None
        if base is not None and holds_campaign(base):
            return f"{_kind(suffix)} of the campaign store {base}"
    for parent in target.parents:
        if parent.name.endswith(RUNS) and holds_campaign(parent.with_name(parent.name[: -len(RUNS)])):
            return f"inside the run directories of the campaign store {parent.with_name(parent.name[: -len(RUNS)])}"
    for store in stores:
        real = Path(os.path.realpath(store))
        for suffix in ("",) + BESIDE:
            own = real.with_name(real.name + suffix)
            if target == own or _same_file(target, own):
                return f"{_kind(suffix)} of the campaign store {store}" if suffix else f"the campaign store {store}"
        if real.with_name(real.name + RUNS) in target.parents:
            return f"inside the run directories of the campaign store {store}"
    return None


def _kind(suffix: str) -> str:
    return {LOG: "the injection log", RUNS: "the run directories"}.get(suffix, f"the SQLite {suffix[1:]} file")


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


@contextmanager
def replacing(out: Output) -> Iterator[Path]:
    """A temporary path beside ``out`` to write to; renamed onto it when the block ends without
    an error, removed otherwise. The name keeps the target's suffix, for writers that choose a
    format by it. A stream is written into directly: the path given is the output itself."""
    target = out.path
    if out.stream:
        try:
            yield target
        except OSError as e:  # a full device, a reader that went away
            raise OutputError(f"cannot write {target} ({e.strerror or e}).") from None
        return
    temp = target.with_name(f".{target.stem}.partial-{os.getpid()}{target.suffix}")
    try:
        yield temp
        publish(temp, out)
    except OSError as e:
        raise OutputError(f"cannot write {target} ({e.strerror or e}).") from None
    finally:
        temp.unlink(missing_ok=True)


def publish(temp: Path, out: Output) -> None:
    """Rename ``temp`` onto ``out``, checking again: a store or file may have appeared there
    while the output was computed. Without --force a hard link makes the rename refuse to
    overwrite anything, atomically."""
    target = out.path
    what = _protected(target, list(out.stores))
    if what:
        raise OutputError(f"{target} is {what}; fi-campaign never writes over a store, so pick another name.")
    if out.force:
        os.replace(temp, target)
        return
    exists = OutputError(f"{target} appeared while it was being written; pass --force to replace it.")
    try:
        os.link(temp, target)
    except FileExistsError:
        raise exists from None
    except OSError:  # a file system without hard links
        if target.exists():
            raise exists from None
        os.replace(temp, target)


def write_bytes(out: Output, data: bytes) -> None:
    with replacing(out) as temp:
        temp.write_bytes(data)


def write_text(out: Output, text: str) -> None:
    write_bytes(out, text.encode("utf-8"))
