"""Renders ``nvbitfi-injection-info.txt``, the injector's parameter file, from one template per dialect.

The templates live in the ``templates`` package (``templates/injection-info/<dialect>.txt.j2``) so
a dialect's file layout can be read and changed without touching code. Everything that the
injector would assert on, overflow or misread is refused here, before a GPU run is spent on it.
"""
from __future__ import annotations

import math
from functools import lru_cache
from importlib import resources
from pathlib import Path

import jinja2

from campaign.errors import UserError
from nvbitfi_tools.isa import dialect as get_dialect, mode_spec
from nvbitfi_tools.sites import Site, check_site, format_seed

INFO_FILE = "nvbitfi-injection-info.txt"


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    def load(name: str) -> str:
        return resources.files("templates").joinpath("injection-info", name).read_text(encoding="utf-8")

    return jinja2.Environment(loader=jinja2.FunctionLoader(load), undefined=jinja2.StrictUndefined,
                              autoescape=False, keep_trailing_newline=False)


def render_injection_info(dialect: str, mode: str, site: Site, powerlaw_value: float | None = None) -> str:
    """The file's text for one site: seven lines, plus the power-law value as line 8 if given.

    The power-law value is the relative error r drawn by the planner for warp_random; builds that
    do not read it stop after line 7 (they parse seven values with ``>>``).
    """
    d = get_dialect(dialect)
    spec = mode_spec(d, mode, site.igid)
    check_site(site, d)
    if powerlaw_value is not None:
        if mode != "warp_random":
            raise UserError(f"a power-law value belongs to warp_random sites, not {mode}.")
        if isinstance(powerlaw_value, bool) or not math.isfinite(float(powerlaw_value)):
            raise UserError(f"power-law value {powerlaw_value!r} is not a finite number.")
    return _environment().get_template(f"{d.name}.txt.j2").render(
        igid=spec.igid, bfm=spec.bfm, kernel=site.kernel, kcount=site.kcount, iid=site.iid,
        op_id_seed=format_seed(site.op_id_seed), bit_id_seed=format_seed(site.bit_id_seed),
        powerlaw_value=None if powerlaw_value is None else repr(float(powerlaw_value)))


def write_injection_info(run_dir: str | Path, text: str) -> Path:
    """Writes the file where the injector looks for it: the cwd of the workload's process."""
    path = Path(run_dir) / INFO_FILE
    path.write_text(text, encoding="utf-8")
    return path
