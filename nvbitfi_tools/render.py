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

from fi_campaign.nvbitfi_tools.errors import NvbitfiError
from fi_campaign.nvbitfi_tools.isa import ModeSpec, mode_spec
from fi_campaign.nvbitfi_tools.isa import dialect as get_dialect
from fi_campaign.nvbitfi_tools.sites import Site, check_site, format_seed

INFO_FILE = "nvbitfi-injection-info.txt"


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    def load(name: str) -> str:
        return (resources.files("fi_campaign.templates") / "injection-info" / name).read_text(encoding="utf-8")

    return jinja2.Environment(
        loader=jinja2.FunctionLoader(load),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=False,
    )


def render_injection_info(
    dialect: str,
    mode: str,
    site: Site,
    powerlaw_value: float | None = None,
    value_seed: int | None = None,
    law: tuple[float, float] | None = None,
) -> str:
    """The file's text for one site: seven lines, plus the power-law value as line 8 if given.

    The power-law value is the relative error r drawn by the planner for warp_random; builds that
    do not read it stop after line 7 (they parse seven values with ``>>``). The fi-campaign tool
    instead draws each lane's r itself, from ``value_seed`` and ``law`` = (x_min, alpha).
    """
    d = get_dialect(dialect)
    spec = mode_spec(d, mode, site.igid)
    check_site(site, d)
    if d.name == "fi-campaign":
        return _render_own(spec, site, powerlaw_value, value_seed, law)
    if powerlaw_value is not None:
        if mode != "warp_random":
            raise NvbitfiError(f"a power-law value belongs to warp_random sites, not {mode}.")
        if isinstance(powerlaw_value, bool) or not math.isfinite(float(powerlaw_value)):
            raise NvbitfiError(f"power-law value {powerlaw_value!r} is not a finite number.")
    return (
        _environment()
        .get_template(f"{d.name}.txt.j2")
        .render(
            igid=spec.igid,
            bfm=spec.bfm,
            kernel=site.kernel,
            kcount=site.kcount,
            iid=site.iid,
            op_id_seed=format_seed(site.op_id_seed),
            bit_id_seed=format_seed(site.bit_id_seed),
            powerlaw_value=None if powerlaw_value is None else repr(float(powerlaw_value)),
        )
    )


def _render_own(
    spec: ModeSpec,
    site: Site,
    powerlaw_value: float | None,
    value_seed: int | None,
    law: tuple[float, float] | None,
) -> str:
    from fi_campaign.models.sampler import SPEC

    if powerlaw_value is not None:
        raise NvbitfiError(
            "the fi-campaign tool draws each lane's power-law value itself; give it the "
            "site's value seed and the law, not a value."
        )
    if spec.mode == "warp_random":
        if value_seed is None or law is None:
            raise NvbitfiError(
                "a warp_random site of the fi-campaign tool needs its value seed and the "
                "power law (x_min, alpha) it draws from."
            )
        if isinstance(value_seed, bool) or not 0 <= int(value_seed) < 2**64:
            raise NvbitfiError(f"value seed {value_seed!r} is not a 64-bit unsigned integer.")
        x_min, alpha = (float(v) for v in law)
        if not (math.isfinite(x_min) and x_min > 0 and math.isfinite(alpha) and alpha > 1):
            raise NvbitfiError(
                f"power law x_min {x_min:g}, alpha {alpha:g} cannot be drawn from "
                "(needs x_min > 0 and alpha > 1, both finite)."
            )
    else:
        value_seed = None
    d = get_dialect(spec.dialect)
    return (
        _environment()
        .get_template("fi-campaign.txt.j2")
        .render(
            model=spec.mode,
            group=d.group_name(spec.igid),
            kernel=site.kernel,
            kcount=site.kcount,
            iid=site.iid,
            op_id_seed=format_seed(site.op_id_seed),
            bit_id_seed=format_seed(site.bit_id_seed),
            value_seed=None if value_seed is None else int(value_seed),
            x_min=repr(x_min) if value_seed is not None else None,
            alpha=repr(alpha) if value_seed is not None else None,
            sampler=SPEC,
        )
    )


def write_injection_info(run_dir: str | Path, text: str) -> Path:
    """Writes the file where the injector looks for it: the cwd of the workload's process."""
    path = Path(run_dir) / INFO_FILE
    path.write_text(text, encoding="utf-8")
    return path
