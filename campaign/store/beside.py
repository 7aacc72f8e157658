"""Files that live beside a store: run directories and the injection log."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fi_campaign.store.database import Store

RUNS, LOG = ".runs", ".log.jsonl"


def _beside(store: Store | Path, suffix: str) -> Path:
    path = store.path if not isinstance(store, Path) else store
    return path.with_name(path.name + suffix)


def runs_dir(store: Store | Path) -> Path:
    """Run directories of process-isolated injections (and NVBitFI profiles) live beside the store."""
    return _beside(store, RUNS)


def log_path(store: Store | Path) -> Path:
    """One JSON line per injection, beside the store."""
    return _beside(store, LOG)
