"""The campaign store: an SQLite file (WAL) on one machine, or a PostgreSQL database for workers
on many, holding the campaign, every planned site and every result. A result and its site's
status change in one transaction, so an interrupted run loses at most the chunk in flight and
never counts a site twice.

``Store`` is the one interface the rest of fi-campaign uses; it hands each call to the part
that does that job:

- ``lifecycle``: checking, creating, planning, opening (read-only where the file cannot be
  written) and upgrading a store; ``sqlite_file`` for what concerns the SQLite file on disk;
- ``claims``: the work queue (claims, leases, heartbeats, results, the worker registry);
- ``queries``: what ``status``, ``report`` and ``export`` read.

Every database call of each part goes through the store's ``Session`` (``session``), which
retries what a restarting server breaks and turns driver errors into one sentence. What
differs between the two databases is in ``backends``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from fi_campaign.store import lifecycle
from fi_campaign.store.backends import StoreError, Target, parse_target
from fi_campaign.store.claims import Claims
from fi_campaign.store.queries import Queries
from fi_campaign.store.records import (
    BitGroup,
    CampaignRecord,
    CountCheck,
    InjectionRecord,
    LaunchCount,
    Redraw,
    RegretRecord,
    Result,
    ResultGroup,
    Site,
    StratumStatus,
    StratumTally,
    Worker,
    WorkerStatus,
)
from fi_campaign.store.session import RETRY_S, Session
from fi_campaign.store.sqlite_file import PLANNING, SIDECARS, holds_campaign

STORE_TABLES = lifecycle.STORE_TABLES

__all__ = ["PLANNING", "RETRY_S", "SIDECARS", "STORE_TABLES", "Store", "StoreError", "holds_campaign"]


class Store:
    """One campaign, through one ``Session``. ``path`` anchors the files kept beside the store
    (``Target.anchor``); ``read_only`` says why this process may not write it (None: it may)."""

    def __init__(self, target: Target | Path, session: Session) -> None:
        self.target = target if isinstance(target, Target) else parse_target(target)
        self.session = session
        self.engine = session.engine
        self.dialect = session.dialect
        self.path = self.target.anchor
        self._claims = Claims(session)
        self._queries = Queries(session)

    @property
    def label(self) -> str:
        return self.target.label

    @property
    def name(self) -> str:
        return self.target.name

    @property
    def read_only(self) -> str | None:
        return self.session.read_only

    def read_only_note(self) -> str | None:
        """What a reading command says of a store it may not write (None: it may)."""
        if self.read_only is None:
            return None
        return (
            f"Note: {self.label} is read-only here ({self.read_only}); it is only read, and nothing is written to it."
        )

    # --- the store's life (lifecycle) --------------------------------------------------------

    @classmethod
    def check_new(cls, given: str | Path | Target) -> bool:
        """Refuse a store that holds a campaign, or anything but a store: a plan never overwrites.
        True when an SQLite file exists but may be replaced (``lifecycle.check_new``)."""
        return lifecycle.check_new(parse_target(given))

    @classmethod
    def create_planned(cls, given: str | Path | Target, record: CampaignRecord, sites: Iterable[dict]) -> int:
        """Create the store ``given`` holding a whole plan, or leave it as it was; returns the
        number of sites (``lifecycle.create_planned``)."""
        return lifecycle.create_planned(parse_target(given), record, sites)

    @classmethod
    def create(cls, given: str | Path | Target) -> Store:
        """An empty store (the schema, no campaign): what a plan or a copy is written into."""
        target = parse_target(given)
        return cls(target, lifecycle.create(target))

    @classmethod
    def open(cls, given: str | Path | Target, write: bool = False) -> Store:
        """The existing store ``given``. One this process cannot write opens read-only (reads
        only; a write is refused in one sentence), unless ``write``, which refuses it at once."""
        target = parse_target(given)
        return cls(target, lifecycle.open_session(target, write))

    def write_plan(self, record: CampaignRecord, sites: Iterable[dict]) -> int:
        """The campaign row and every site in one transaction: a plan is whole or absent."""
        return lifecycle.insert_plan(self.session, record, sites)

    def campaign(self) -> CampaignRecord:
        return lifecycle.read_campaign(self.session)

    # --- the work queue (claims) ---------------------------------------------------------------

    def claim(self, model: str, mode: str, limit: int, owner: str, lease_s: float) -> list[Site]:
        return self._claims.claim(model, mode, limit, owner, lease_s)

    def claim_strata(
        self, model: str, mode: str, take: dict[str, int], owner: str, lease_s: float, budget: int | None = None
    ) -> list[Site]:
        return self._claims.claim_strata(model, mode, take, owner, lease_s, budget)

    def renew(self, owner: str, lease_s: float) -> int:
        return self._claims.renew(owner, lease_s)

    def pending(self, model: str, mode: str) -> int:
        return self._claims.pending(model, mode)

    def release_stale(self, alive: Callable[[str], bool]) -> int:
        return self._claims.release_stale(alive)

    def release_owner(self, owner: str) -> None:
        self._claims.release_owner(owner)

    def unfinished(self, model: str | None = None, mode: str | None = None) -> tuple[int, int]:
        return self._claims.unfinished(model, mode)

    def join(self, w: Worker) -> None:
        self._claims.join(w)

    def leave(self, owner: str, state: str) -> None:
        self._claims.leave(owner, state)

    def workers(self) -> list[WorkerStatus]:
        return self._claims.workers()

    def record(self, results: list[Result], owner: str | None = None) -> list[Result]:
        return self._claims.record(results, owner)

    # --- what status, report and export read (queries) ----------------------------------------

    def progress(self) -> list[tuple[str, str, int, int]]:
        return self._queries.progress()

    def outcome_counts(self) -> dict[tuple[str, str], dict[str, int]]:
        return self._queries.outcome_counts()

    def running_counts(self) -> dict[tuple[str, str], int]:
        return self._queries.running_counts()

    def stratum_status(self) -> list[StratumStatus]:
        return self._queries.stratum_status()

    def stratum_counts(self, model: str, mode: str) -> dict[str, int]:
        return self._queries.stratum_counts(model, mode)

    def stratum_tallies(self, model: str | None = None, mode: str | None = None) -> list[StratumTally]:
        return self._queries.stratum_tallies(model, mode)

    def result_groups(self) -> list[ResultGroup]:
        return self._queries.result_groups()

    def bit_groups(self) -> list[BitGroup]:
        return self._queries.bit_groups()

    def add_regret(self, rows: list[RegretRecord]) -> None:
        self._queries.add_regret(rows)

    def regret_rows(self) -> list[RegretRecord]:
        return self._queries.regret_rows()

    def launch_counts(self, model: str | None = None, igid: int | None = None) -> list[LaunchCount]:
        return self._queries.launch_counts(model, igid)

    def redraws(self) -> list[Redraw]:
        return self._queries.redraws()

    def injections(self) -> dict[int, InjectionRecord]:
        return self._queries.injections()

    def count_checks(self) -> list[CountCheck]:
        return self._queries.count_checks()

    def export_batches(self, size: int = 50_000, fields: tuple[str, ...] | None = None) -> Iterator[list[tuple]]:
        return self._queries.export_batches(size, fields)

    def export_rows(self) -> Iterator[dict]:
        return self._queries.export_rows()

    def export_dicts(self, ids: list[int] | None = None) -> Iterator[list[dict]]:
        return self._queries.export_dicts(ids)

    def result_ids(self) -> set[int]:
        return self._queries.result_ids()
