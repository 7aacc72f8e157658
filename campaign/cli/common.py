"""What every command group shares: which store a command works on."""
from __future__ import annotations

import click

DEFAULT_DB = "fi-campaign.db"


def db_of(ctx: click.Context) -> str:
    return ctx.find_root().obj["db"] or DEFAULT_DB


def open_store(ctx: click.Context):
    from fi_campaign.store import Store

    return Store.open(db_of(ctx))
