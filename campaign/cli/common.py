"""What every command group shares: which store a command works on."""
from __future__ import annotations

import shlex

import click

DEFAULT_DB = "fi-campaign.db"


def db_of(ctx: click.Context) -> str:
    return ctx.find_root().obj["db"] or DEFAULT_DB


def open_store(ctx: click.Context):
    from fi_campaign.store import Store

    return Store.open(db_of(ctx))


def next_step(db: str, label: str, command: str) -> str:
    """'Next: fi-campaign [--db STORE] COMMAND', naming the store unless it is the default one, so
    the line can be pasted as it is."""
    return "Next: fi-campaign" + ("" if db == DEFAULT_DB else f" --db {shlex.quote(label)}") + f" {command}"
