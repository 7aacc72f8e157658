"""Option types that refuse, as a usage error (exit 2), what the os or torch would otherwise turn
into a traceback: a path no file system can hold, a non-finite number, an unknown device."""

from __future__ import annotations

import math
import os
from typing import Any

import click

from fi_campaign.checks import Spec, shown

# a name leaves room for the siblings written beside it (STORE-wal, STORE.log.jsonl, OUT.partial.pt,
# FILE.partial), so the os never answers "File name too long" half-way through a command
SIBLING_ROOM = 16
NAME_MAX = 255 - SIBLING_ROOM
PATH_MAX = 4095 - SIBLING_ROOM


def path_problem(value: str) -> str | None:
    """Why ``value`` cannot name a file here, or None; the os raises ValueError for a NUL."""
    if not value:
        return "is empty"
    if "\0" in value:
        return "contains a NUL character, which no file name can hold"
    try:
        encoded = os.fsencode(value)
    except UnicodeError:
        return "holds characters this file system cannot encode"
    if len(encoded) > PATH_MAX or any(len(part) > NAME_MAX for part in encoded.split(b"/")):
        return f"is too long for a path (at most {NAME_MAX} bytes a name, {PATH_MAX} in all)"
    return None


class PathText(click.ParamType):
    """A string that names a file or folder (or a ``bundled`` / ``zoo:`` reference)."""

    name = "path"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        value = os.fspath(value) if isinstance(value, os.PathLike) else str(value)
        if problem := path_problem(value):
            self.fail(f"{shown(value)} {problem}.", param, ctx)
        return value


class FilePath(click.Path):
    """click.Path, which itself stats the name: checked first, so a NUL is a usage error too."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        return super().convert(PathText().convert(value, param, ctx), param, ctx)


class FiniteFloat(click.FloatRange):
    """click.FloatRange lets nan through (every comparison with it is false)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        rv = super().convert(value, param, ctx)
        if not math.isfinite(rv):
            self.fail(f"{rv} is not a finite number.", param, ctx)
        return rv


class Checked(click.ParamType):
    """A string option held to the same spec as its config key (e.g. ``device``)."""

    def __init__(self, spec: Spec, name: str) -> None:
        self.spec, self.name = spec, name

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        if not self.spec.accepts(value):
            self.fail(f"{shown(value)} is not {self.spec.expected}.", param, ctx)
        return value
