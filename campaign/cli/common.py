"""What every command group shares: which store a command works on."""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from fi_campaign.store import Store

DEFAULT_DB = "fi-campaign.db"


def db_of(ctx: click.Context) -> str:
    return ctx.find_root().obj["db"] or DEFAULT_DB


def open_store(ctx: click.Context, write: bool = False) -> Store:
    """The command's store; ``write``: the command writes it, so a store this process cannot
    write is refused at once. A reading command on such a store says so in one line."""
    from fi_campaign.store import Store

    store = Store.open(db_of(ctx), write=write)
    note_read_only(store)
    return store


def note_read_only(store: Store) -> None:
    if (note := store.read_only_note()) is not None:
        click.echo(note, err=True)


def next_step(db: str, label: str, command: str) -> str:
    """'Next: fi-campaign [--db STORE] COMMAND', naming the store unless it is the default one, so
    the line can be pasted as it is."""
    return "Next: fi-campaign" + ("" if db == DEFAULT_DB else f" --db {shlex.quote(label)}") + f" {command}"
