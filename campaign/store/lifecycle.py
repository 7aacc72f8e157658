"""A store's life: checked free, created with a whole plan (or not at all), opened (read-only
where it cannot be written), its schema checked and brought up to date. Every step gives a
``Session`` (``session``) or one sentence.

The campaign row's JSON columns are written by ``campaign_row`` and read by ``campaign_record``,
nowhere else.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, inspect, select
from sqlalchemy.engine import Connection

from fi_campaign.store import migrate, sqlite_file
from fi_campaign.store.backends import StoreError, Target, engine_for, sqlite_engine, sqlite_reader
from fi_campaign.store.records import CampaignRecord, Columns
from fi_campaign.store.schema import PENDING, SCHEMA_VERSION, SITE_FIELDS, campaign_t, site_t
from fi_campaign.store.session import Session, refusal
from fi_campaign.store.timing import now

STORE_TABLES = {"campaign", "site", "result"}
PLAN_ROWS = 50_000  # sites per INSERT of a plan


def campaign_row(record: CampaignRecord) -> dict[str, Any]:
    """The campaign table's row for ``record``, planned now: its dict fields as JSON."""
    return dict(
        id=1,
        schema_version=SCHEMA_VERSION,
        name=record.name,
        seed=record.seed,
        config=record.config,
        **record.json_columns(),
        created=now(),
    )


def campaign_record(row: Columns, label: str) -> CampaignRecord:
    """``campaign_row`` read back; a row that does not parse is a damaged store."""
    try:
        return CampaignRecord.from_columns(row)
    except ValueError as e:
        raise StoreError(f"the campaign record in {label} cannot be read ({e}); the store is damaged.") from None


def read_campaign(session: Session) -> CampaignRecord:
    return campaign_record(session.read(lambda con: con.execute(select(campaign_t)).mappings().one()), session.label)


def insert_plan(session: Session, record: CampaignRecord, sites: Iterable[dict]) -> int:
    """The campaign row and every site in one transaction: a plan is whole or absent."""
    rows = [{**dict.fromkeys(SITE_FIELDS), **s, "status": PENDING} for s in sites]

    def write(con: Connection) -> int:
        con.execute(insert(campaign_t).values(**campaign_row(record)))
        for i in range(0, len(rows), PLAN_ROWS):
            con.execute(insert(site_t), rows[i : i + PLAN_ROWS])
        return len(rows)

    return session.write(write, "cannot write the plan to", "; nothing was stored")


def server_session(target: Target) -> Session:
    session = Session(engine_for(target), target.label)
    session.reach()
    return session


def check_new(target: Target) -> bool:
    """Refuse a store that holds a campaign, or anything but a store: a plan never overwrites.
    True when an SQLite file exists but may be replaced: empty, or a store an interrupted plan
    of an older version left with tables and nothing in them."""
    if target.server:
        session = server_session(target)
        try:
            if STORE_TABLES <= session.tables() and session.read(
                lambda con: con.execute(select(func.count()).select_from(campaign_t)).scalar()
            ):
                raise StoreError(
                    f"{target.label} already holds a campaign; pick another database or drop this one to start over."
                )
        finally:
            session.engine.dispose()
        return False
    path = target.file
    try:
        if not path.exists():
            return False
        if path.stat().st_size == 0 or not sqlite_file.tables(path):
            return True
    except OSError as e:
        raise StoreError(f"cannot open {path} ({e.strerror}).") from None
    if sqlite_file.holds_nothing(path):
        return True
    open_session(target)  # a clear error if it is not a store at all
    raise StoreError(f"{path} already holds a campaign; pick another --db or delete it to start over.")


def create(target: Target) -> Session:
    """An empty store (the schema, no campaign): what a plan or a copy is written into."""
    check_new(target)
    if target.server:
        session = server_session(target)
    else:
        _make_folder(target.file, "cannot create a store at")
        session = Session(sqlite_engine(target.file), target.label)
    session.write(migrate.upgrade, "cannot create a store at")
    return session


def create_planned(target: Target, record: CampaignRecord, sites: Iterable[dict]) -> int:
    """Create the store ``target`` holding a whole plan, or leave it as it was.

    SQLite: the plan is written to a temporary file beside the store and renamed onto it
    once complete, so a plan killed, interrupted or failing at any point (a full disk
    included) leaves no store without a campaign; a temporary file a killed plan left is
    removed by the next plan of the same store. PostgreSQL: one transaction. Returns the
    number of sites."""
    if target.server:
        return insert_plan(create(target), record, sites)
    path = target.file
    replace = check_new(target)
    sqlite_file.remove_leftovers(path)
    _make_folder(path, "cannot write the plan to", "; nothing was stored")
    temp = path.with_name(f".{path.name}{sqlite_file.PLANNING}{os.getpid()}")
    try:
        session = Session(sqlite_engine(temp), str(path))
        try:
            session.write(migrate.upgrade, "cannot write the plan to", "; nothing was stored")
            n = insert_plan(session, record, sites)
        finally:
            session.engine.dispose()
        sqlite_file.seal(temp, path, n)
        sqlite_file.publish(temp, path, replace)
    finally:
        for f in (temp, *sqlite_file.sidecars(temp)):
            f.unlink(missing_ok=True)
    return n


def _make_folder(path: Path, fails: str, after: str = "") -> None:
    """The store's folder, made if missing; refused at once where this process cannot write
    into it (SQLite would only say 'unable to open database file')."""
    folder = Path(os.path.abspath(path)).parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StoreError(f"{fails} {path} ({e.strerror}){after}.") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise StoreError(f"{fails} {path}: its folder {folder} is not writable{after}.")


def open_session(target: Target, write: bool = False) -> Session:
    """A session on the existing store ``target``, its schema checked and brought up to date.
    An SQLite store this process cannot write is opened read-only (the session says why);
    with ``write`` that is refused instead, before anything is opened."""
    if target.server:
        session = server_session(target)
        if not STORE_TABLES <= session.tables():
            raise StoreError(
                f"{target.label} holds no campaign store; plan one with 'fi-campaign --db {target.label} plan'."
            )
    else:
        session = _sqlite_session(target, write)
    if session.read(lambda con: con.execute(select(func.count()).select_from(campaign_t)).scalar()) == 0:
        raise StoreError(
            f"{target.label} is a campaign store with no campaign in it (an interrupted plan); "
            "'fi-campaign plan' replaces it."
        )
    _check_schema(session)
    _upgrade(session)
    return session


def _sqlite_session(target: Target, write: bool) -> Session:
    path = target.file
    try:
        found = path.is_file()
    except OSError as e:
        raise StoreError(f"cannot open {path} ({e.strerror}).") from None
    if not found:
        raise StoreError(f"no campaign store at {path}; run 'fi-campaign plan' first or pass --db.")
    why = sqlite_file.unwritable(path)
    if why is not None and write:
        raise refusal(target.label, why)
    if not STORE_TABLES <= sqlite_file.tables(path):
        raise StoreError(f"{path} is an SQLite database but not a campaign store.")
    if why is None:
        return Session(sqlite_engine(path), target.label)
    uri, immutable = sqlite_file.reader_uri(path)
    return Session(sqlite_reader(uri), target.label, read_only=why, guard=path if immutable else None)


def _check_schema(session: Session) -> None:
    """The migration table and the version the plan recorded must tell the same story."""

    def read(con: Connection) -> tuple[str | None, Any, bool]:
        return (
            migrate.revision(con),
            con.execute(select(campaign_t.c.schema_version)).scalar(),
            migrate.VERSION_TABLE in inspect(con).get_table_names(),
        )

    revision, version, recorded = session.read(read)
    if revision not in migrate.REVISIONS:
        raise StoreError(
            f"{session.label} was written by a newer fi-campaign (schema revision {revision}); "
            "upgrade fi-campaign to use it."
        )
    if migrate.disagree(revision, version, recorded):
        raise StoreError(
            f"{session.label} contradicts itself: its campaign records schema version {version} but "
            f"its migration table says revision {revision}, so fi-campaign neither reads nor writes it."
        )


def _upgrade(session: Session) -> None:
    """A store written by an older fi-campaign is brought up to date when opened. A store that
    cannot be written here still serves reads, as it is."""
    if session.read_only is not None:
        return
    try:
        if session.write(migrate.upgrade, "cannot upgrade the store"):
            session.forget_tables()
    except StoreError as e:
        if "readonly" not in str(e):  # SQLite's own word for a file it found it cannot write
            raise
