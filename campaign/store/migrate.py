"""Schema creation and upgrades: one Alembic history (``migrations/``) for SQLite and PostgreSQL.

A store written before migrations existed (schema_version 1) has no revision table; it is
stamped with the first revision, then upgraded like any other.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

VERSION_TABLE = "alembic_version"
REVISIONS = ("0001", "0002", "0003", "0004", "0005", "0006", "0007")
HEAD = REVISIONS[-1]
# campaign.schema_version, as a plan records it -> the revision that plan was written at: a store
# whose recorded revision is older than its plan's, or whose plan records a version not here,
# disagrees with itself (a hand-edited or foreign file) and is refused
PLANNED_AT = {1: "0001", 2: "0002"}
_HERE = Path(__file__).with_name("migrations")


class UnknownRevision(Exception):
    """The store was written by a newer fi-campaign than this one."""


def revision(con: Connection) -> str | None:
    """The store's revision; "0001" for a pre-migration store, None for an empty database."""
    names = set(inspect(con).get_table_names())
    if VERSION_TABLE in names:
        return con.execute(text("SELECT version_num FROM alembic_version")).scalar()
    return "0001" if "campaign" in names else None


def disagree(revision: str, version: int | None, recorded: bool = True) -> bool:
    """Whether a store at ``revision`` (a known one) cannot hold a plan of schema ``version``.
    A store without a revision table (``recorded`` False) has only the revision ``revision``
    guessed for it, which says nothing against its plan's version."""
    planned = PLANNED_AT.get(version) if isinstance(version, int) else None
    if planned is None:
        return True
    return recorded and REVISIONS.index(revision) < REVISIONS.index(planned)


def upgrade(con: Connection) -> bool:
    """Bring the schema on ``con`` to HEAD inside the caller's transaction; False if it was there.
    Alembic is imported only when there is something to do: opening a current store stays cheap."""
    current = revision(con)
    if current == HEAD:
        return False
    if current is not None and current not in REVISIONS:
        raise UnknownRevision(current)
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(_HERE))
    cfg.attributes["connection"] = con
    if current is not None and VERSION_TABLE not in set(inspect(con).get_table_names()):
        command.stamp(cfg, current)
    command.upgrade(cfg, "head")
    return True
