"""Terminal tables that stay readable at any width, 80 columns and pipes included.

Rich shrinks every column of a table that is too wide, names and counts included, until they
are cut to an ellipsis. Here the widths are chosen first: key columns (the names and counts a
reader looks a row up by) keep their full width and never wrap; the other columns wrap at
spaces down to their longest word; a column that still does not fit moves out of the table to
one line per row below it, so no cell is ever lost.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from fi_campaign.report.text import Block, Col, TextTable

if TYPE_CHECKING:
    from rich.console import Console

BORDER = 3  # per column: one padding space each side and one rule; plus 1 for the table's edge


def layout(cols: Sequence[Col], rows: Sequence[Sequence[str]], width: int) -> tuple[list[int], list[int]]:
    """(width per column, 0 for a column moved below the table) and the moved columns' indices."""
    natural = [max([len(c.header)] + [len(r[i]) for r in rows]) for i, c in enumerate(cols)]
    least = [
        natural[i] if c.key else max(len(w) for w in [*c.header.split(), *(x for r in rows for x in r[i].split())])
        for i, c in enumerate(cols)
    ]
    shown = list(range(len(cols)))
    spill = sorted((i for i, c in enumerate(cols) if not c.key), key=lambda i: (cols[i].spill, i), reverse=True)
    # columns marked to spill leave before any column has to wrap; the others only when even
    # their longest words do not fit
    while sum(natural[i] + BORDER for i in shown) + 1 > width and spill and cols[spill[0]].spill > 0:
        shown.remove(spill.pop(0))
    while sum(least[i] + BORDER for i in shown) + 1 > width and spill:
        shown.remove(spill.pop(0))
    widths = [natural[i] if i in shown else 0 for i in range(len(cols))]
    excess = sum(widths[i] + BORDER for i in shown) + 1 - width
    while excess > 0:  # narrow the widest wrapping column, one character at a time
        i = max((i for i in shown if widths[i] > least[i]), key=lambda i: widths[i] - least[i], default=None)
        if i is None:
            break  # only key columns are left: printed wider than the terminal (print_table)
        widths[i] -= 1
        excess -= 1
    return widths, [i for i in range(len(cols)) if i not in shown]


def print_table(table: TextTable, console: Console | None = None) -> None:
    """Print ``table`` at the console's width: every terminal table of fi-campaign comes here."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = console or Console()
    cols, rows = table.cols, table.rows
    widths, moved = layout(cols, rows, console.width)
    out = Table(title=table.title)
    for c, w in zip(cols, widths, strict=False):
        if w:
            out.add_column(c.header, justify="right" if c.right else "left", width=w, no_wrap=c.key, overflow="fold")
    for n, r in enumerate(rows):
        if n in table.sections:
            out.add_section()
        out.add_row(*(Text(x) for x, w in zip(r, widths, strict=False) if w))
    need = sum(w + BORDER for w in widths if w) + 1
    if need <= console.width:
        console.print(out)
    else:  # the key columns alone are wider than the terminal: it wraps the lines, rich must not cut them
        width, console.width = console.width, need
        try:
            console.print(out, crop=False)
        finally:
            console.width = width
    keys = [i for i, c in enumerate(cols) if c.key]
    for r in rows if moved else ():
        console.print(
            " ".join(r[i] for i in keys) + ": " + "; ".join(f"{cols[i].header} {r[i]}" for i in moved),
            markup=False,
            highlight=False,
            soft_wrap=True,
        )


def print_blocks(blocks: Iterable[Block], console: Console | None = None) -> None:
    """Tables through print_table, sentences as they are (wrapped at spaces, never cut)."""
    from rich.console import Console

    console = console or Console()
    for b in blocks:
        if isinstance(b, TextTable):
            print_table(b, console)
        else:
            console.print(b, markup=False)
