"""Power-law relative-error models of the DSN 2021 RTL data (dos Santos et al.).

pdf(r) ∝ r^-alpha for r >= x_min, sampled by inverse CDF: r = x_min * (1 - u)^(-1 / (alpha - 1)).
Tables are laid out [FADD, FMUL, FFMA, IADD, IMUL, IMAD, MUFU] x [small, common, big], index
op * 3 + size (not the UFRGS-CAROL fork's op * 7), with x_min before alpha (DieHardNET swaps
them). Values: UFRGS-CAROL/nvbitfi injector/flex_grip_error_model.h @8f7e48a, as reproduced in
docs of this project.

A *table* is either a built-in name (``TABLES``) or the path of a fitted fault-model YAML
written by ``fi-campaign fault-model fit`` (format ``FORMAT``, see ``read_table``), so a
campaign config names either the same way.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fi_campaign.errors import UserError

OPS = ("FADD", "FMUL", "FFMA", "IADD", "IMUL", "IMAD", "MUFU")
SIZES = ("small", "common", "big")
FLT_MAX = 3.4028234663852886e38
SMALL_BELOW, BIG_ABOVE = 1e-3, 1e3  # the injector's value buckets on |old value|

_FU = [
    (1.0728769e-07, 1.0868737e00),
    (2.0230031e00, 1.0568325e00),
    (8.1847715e-08, 1.0820710e00),
    (1.3602772e05, 2.7119400e01),
    (3.0000000e00, 1.0678725e00),
    (3.5176080e-02, 1.1896030e00),
    (3.4028237e38, 4.4310700e05),
    (2.0000000e00, 1.4543958e00),
    (1.0238367e-02, 1.1181921e00),
    (1.3968560e-09, 1.0846596e00),
    (2.6865074e-10, 1.0769672e00),
    (1.3970158e-09, 1.0851440e00),
    (6.6699225e-01, 2.3798765e01),
    (6.6699225e-01, 2.3798765e01),
    (6.6699225e-01, 2.3922783e01),
    (7.5000001e-01, 1.2143508e08),
    (6.1141304e-01, 3.4316596e00),
    (7.5000001e-01, 1.2143508e08),
    (0.0000000e00, 1.0821200e00),
    (7.0958774e-08, 1.0821160e00),
    (0.0000000e00, 1.0821200e00),
]
_PIPELINE = [
    (0.12976613044401322, 1.1757611807081003),
    (3.0083587541704313, 1.1769088775172158),
    (1.000000000005111, 1.2904846987815732),
    (1.000000000005111, 1.2904846987815732),
    (3.0, 1.0411011754028192),
    (3.0, 1.072617247632055),
    (832.4749155937285, 1.23779831986),
    (1.000000916183302, 1.0485568027774983),
    (6876382.106584958, 1.2292875919671704),
    (1.000000001396984, 4.948816087615382),
    (0.999984742142246, 158.63179096418068),
    (0.08108107853967253, 1.8379509616040532),
    (0.9998779296861358, 13816.97137561407),
    (0.9998779296861358, 13816.97137561407),
    (6.2500000927684605, 130.7355599622411),
    (0.499259950241628, 1.6983879327427966),
    (0.4978180006690592, 2.2036026969057563),
    (0.9987793080372286, 1088.8225354486965),
    (0.7320540886699037, 1.9304213877030396),
    (1.4377902066647974, 1.0228408337883148),
    (0.4472794940279105, 1.659452338259185),
]
TABLES = {"dsn2021-fu": _FU, "dsn2021-pipeline": _PIPELINE}
SOURCE = "UFRGS-CAROL/nvbitfi injector/flex_grip_error_model.h @8f7e48a"
DATA_MICRO = {"MUFU": "FSIN"}  # the RTL micro-benchmark whose samples stand for an injector op
FORMAT = "fi-campaign/fault-model/1"


@dataclass(frozen=True)
class PowerLaw:
    x_min: float
    alpha: float

    def degenerate_reason(self) -> str | None:
        """Why drawing from this entry would not give a usable relative error, or None."""
        if not np.isfinite(self.x_min) or self.x_min >= FLT_MAX:
            return f"x_min = {self.x_min:g} (FLT_MAX) turns every value into infinity"
        if self.x_min <= 0:
            return f"x_min = {self.x_min:g} makes every draw 0"
        if not np.isfinite(self.alpha) or self.alpha <= 1:
            return f"alpha = {self.alpha:g} is not a normalisable power law (needs alpha > 1)"
        return None

    def sample(self, u: np.ndarray) -> np.ndarray:
        """Inverse-CDF draw for uniforms u in [0, 1); u is clipped below 1 so no draw is infinite."""
        u = np.minimum(np.asarray(u, dtype=np.float64), np.nextafter(1.0, 0.0))
        # With alpha close to 1 (e.g. pipeline FMUL common, alpha 1.041) the power overflows
        # float64 for u near 1 even after the clip; saturate at the largest finite double.
        with np.errstate(over="ignore"):
            r = self.x_min * (1.0 - u) ** (-1.0 / (self.alpha - 1.0))
        return np.minimum(r, np.finfo(np.float64).max)


class TableError(UserError):
    """A table name or file that cannot be used; the message is one plain sentence."""


@dataclass(frozen=True)
class FittedEntry:
    """One fitted (op, size) row of a fault-model file, with the group of samples it came from."""

    op: str
    size: str
    x_min: float
    alpha: float
    n_tail: int
    n: int
    ks: float
    group: dict = field(default_factory=dict)  # grouping column -> value, as strings

    @property
    def law(self) -> PowerLaw:
        return PowerLaw(self.x_min, self.alpha)


@dataclass(frozen=True)
class FittedTable:
    """A fault-model YAML: its name, where it came from and its entries."""

    name: str
    path: str  # absolute
    sha256: str
    by: tuple[str, ...]
    sources: tuple[dict, ...]
    entries: tuple[FittedEntry, ...]
    ks: str = "below"

    def find(self, op: str, size: str) -> FittedEntry:
        hits = [e for e in self.entries if e.op == op and e.size == size]
        if len(hits) == 1:
            return hits[0]
        have = ", ".join(f"{e.op} {e.size}" for e in self.entries) or "none"
        if not hits:
            raise TableError(
                f"fitted fault model {self.name!r} ({self.path}) has no entry for {op} {size} (its entries: {have})"
            )
        raise TableError(
            f"fitted fault model {self.name!r} ({self.path}) has {len(hits)} entries for {op} {size}, "
            f"one per {', '.join(self.by)} group; refit with --by micro,input_size"
        )


def op_of(group: dict) -> str:
    """The injector op a group of samples stands for: its micro, with FSIN data standing for MUFU."""
    micro = group.get("micro", "*")
    return next((op for op, m in DATA_MICRO.items() if m == micro), micro)


MAX_TABLE_BYTES = 10_000_000  # a fitted table is a few KB; its sources list grows with the CSVs


def read_table(path: str | Path) -> FittedTable:
    """Load a fitted fault-model YAML; TableError with one sentence if it is not one."""
    import yaml

    p = Path(path)
    try:
        if not p.is_file():
            raise TableError(
                f"unknown power-law table {str(path)!r}: neither a built-in one "
                f"({', '.join(TABLES)}) nor an existing fault-model file"
            )
        with open(p, "rb") as f:
            raw_bytes = f.read(MAX_TABLE_BYTES + 1)
    except OSError as e:
        raise TableError(f"cannot read fault-model file {path} ({e.strerror})") from None
    if len(raw_bytes) > MAX_TABLE_BYTES:
        raise TableError(f"{path} is larger than {MAX_TABLE_BYTES:,} bytes, too large for a fault-model file")
    try:
        raw = yaml.safe_load(raw_bytes)
    except (yaml.YAMLError, ValueError, RecursionError):
        raise TableError(f"{path} is not valid YAML, so not a fault-model file") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise TableError(
            f"{path} is not a fault-model file (no 'format: {FORMAT}' line); write one with fi-campaign fault-model fit"
        )
    try:
        entries = tuple(
            FittedEntry(
                str(e["op"]),
                str(e["size"]),
                float(e["x_min"]),
                float(e["alpha"]),
                int(e["n_tail"]),
                int(e["n"]),
                float(e["ks"]),
                {str(k): str(v) for k, v in (e.get("group") or {}).items()},
            )
            for e in raw.get("entries") or []
        )
        return FittedTable(
            str(raw["name"]),
            str(p.resolve()),
            hashlib.sha256(raw_bytes).hexdigest(),
            tuple(raw.get("by") or ()),
            tuple(raw.get("sources") or ()),
            entries,
            str(raw.get("ks", "below")),
        )
    except KeyError as e:
        raise TableError(f"{path} is a damaged fault-model file (an entry or the file lacks {e.args[0]!r})") from None
    except (AttributeError, TypeError, ValueError) as e:
        raise TableError(f"{path} is a damaged fault-model file ({e})") from None


def table_document(name: str, by: list[str], sources: list[dict], fits: list[dict], ks: str = "below") -> dict:
    """The YAML mapping ``read_table`` reads back; ``fits`` carry group, x_min, alpha, n_tail, n, ks."""
    entries = []
    for f in fits:
        group = {str(k): str(v) for k, v in f["group"].items()}
        entries.append(
            {
                "op": op_of(group),
                "size": group.get("input_size", "*"),
                "group": group,
                **{k: float(f[k]) for k in ("x_min", "alpha", "ks", "sigma")},
                **{k: int(f[k]) for k in ("n_tail", "n", "dropped")},
            }
        )
    return {"format": FORMAT, "name": name, "by": list(by), "ks": ks, "sources": sources, "entries": entries}


def entry(table: str, op: str, size: str) -> PowerLaw:
    """The (x_min, alpha) of ``op`` ``size`` in a built-in table or a fitted fault-model file."""
    if table not in TABLES:
        return read_table(table).find(op, size).law
    x_min, alpha = TABLES[table][OPS.index(op) * 3 + SIZES.index(size)]
    return PowerLaw(x_min, alpha)


def describe(table: str, op: str | None = None, sizes: tuple[str, ...] = ()) -> TableOrigin:
    """What a campaign records about a table: its name, kind and where its numbers came from,
    and for a fitted file the fit statistics of the ``op`` entries of ``sizes``."""
    if table in TABLES:
        return TableOrigin(name=table, kind="built-in", sources=(SOURCE,))
    t = read_table(table)
    fit = (
        {s: EntryFit(n_tail=e.n_tail, n=e.n, ks=e.ks, group=e.group) for s in sizes for e in [t.find(op, s)]}
        if op
        else None
    )
    return TableOrigin(
        name=t.name,
        kind="fitted",
        path=t.path,
        sha256=t.sha256,
        sources=tuple(s.get("path") for s in t.sources),
        fit=fit,
    )


@dataclass(frozen=True, kw_only=True)
class EntryFit:
    """How a fitted entry was fitted: tail and total samples, KS distance, the samples' group."""

    n_tail: int
    n: int
    ks: float
    group: dict[str, str]


@dataclass(frozen=True, kw_only=True)
class TableOrigin:
    """Which table a campaign's laws came from, so a report can name it after the file changed or went."""

    name: str
    kind: str  # built-in | fitted
    path: str | None = None  # a fitted file, absolute
    sha256: str | None = None
    sources: tuple[str | None, ...] = ()
    fit: dict[str, EntryFit] | None = None  # per size bucket; None for a built-in table


@dataclass(frozen=True, kw_only=True)
class FaultModelRecord:
    """The fault model a campaign stores at plan time and replays from then on: the power-law
    entries actually drawn from (not today's table), the lane sampler and where the numbers came
    from. In this lower layer because the workload program and ``faults.site_faults`` read it.

    ``to_dict`` gives back exactly the mapping ``from_dict`` read, for every version's stores:
    the workload program's spec carries it, and its digest keys the golden runs' cache."""

    table: str
    op: str
    size: str  # small | common | big | by-value
    semantics: str
    entries: dict[str, PowerLaw]  # size bucket -> law
    sampler: str | None = None  # None: planned before the lane specification (numpy's draws)
    origin: TableOrigin | None = None  # None: planned before origins were recorded

    @property
    def name(self) -> str:
        return self.origin.name if self.origin else self.table

    @property
    def kind(self) -> str:
        return self.origin.kind if self.origin else "built-in"

    @property
    def lanes(self) -> str:
        """The lane sampler the sites replay (``models.sampler``)."""
        from fi_campaign.models import sampler

        return self.sampler or sampler.LEGACY

    def law(self, size: str | None = None) -> PowerLaw:
        """The law of ``size`` (default: the configured one; ``common`` for by-value)."""
        size = size or self.size
        return self.entries[size if size != "by-value" else "common"]

    def to_dict(self) -> dict:
        o = self.origin
        origin = (
            {}
            if o is None
            else {
                "name": o.name,
                "kind": o.kind,
                "path": o.path,
                "sha256": o.sha256,
                "sources": list(o.sources),
                "fit": None
                if o.fit is None
                else {s: {"n_tail": f.n_tail, "n": f.n, "ks": f.ks, "group": dict(f.group)} for s, f in o.fit.items()},
            }
        )
        return {
            **origin,
            "table": self.table,
            "op": self.op,
            "size": self.size,
            "semantics": self.semantics,
            **({} if self.sampler is None else {"sampler": self.sampler}),
            "entries": {s: [law.x_min, law.alpha] for s, law in self.entries.items()},
        }

    @classmethod
    def from_dict(cls, d: dict) -> FaultModelRecord:
        origin = None
        if "name" in d:
            fit = d.get("fit")
            origin = TableOrigin(
                name=d["name"],
                kind=d.get("kind", "built-in"),
                path=d.get("path"),
                sha256=d.get("sha256"),
                sources=tuple(d.get("sources") or ()),
                fit=None
                if fit is None
                else {
                    s: EntryFit(n_tail=f["n_tail"], n=f["n"], ks=f["ks"], group=dict(f.get("group") or {}))
                    for s, f in fit.items()
                },
            )
        return cls(
            table=d["table"],
            op=d["op"],
            size=d["size"],
            semantics=d["semantics"],
            entries={s: PowerLaw(float(x), float(a)) for s, (x, a) in d["entries"].items()},
            sampler=d.get("sampler"),
            origin=origin,
        )


def size_bucket(values: np.ndarray) -> np.ndarray:
    """0 small (|v| < 1e-3), 1 common, 2 big (|v| > 1e3): the injector's run-time buckets."""
    a = np.abs(values)
    return np.where(a < SMALL_BELOW, 0, np.where(a > BIG_ABOVE, 2, 1))
