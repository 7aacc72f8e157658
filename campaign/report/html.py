"""`report --html DIR`: one self-contained page (figures embedded as base64 PNG) and every
figure beside it as PNG and SVG for papers.

The page is rendered from the same StoreReport objects as the CSV and JSON, and each number
sits in an element with stable ``data-*`` attributes (its row's store, model, mode, ... and the
field name), with the CSV's exact value in ``data-value``, so a test or a script can check the
page against the other formats without parsing prose.
"""

from __future__ import annotations

import base64
import json
from collections import Counter
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from fi_campaign import __version__
from fi_campaign.models.noise_names import AUTHORS_2022, NOISES, PAPER
from fi_campaign.outputs import Output, write_bytes
from fi_campaign.report import plots
from fi_campaign.report.causes import bit_modes
from fi_campaign.report.causes import sentence as cause_sentence
from fi_campaign.report.fit import RawFit
from fi_campaign.report.summary import CONFIDENCE, StoreReport, num, verdict
from fi_campaign.store import ModelRecord

if TYPE_CHECKING:
    import jinja2

TEMPLATE = "report.html.j2"


@dataclass(frozen=True)
class Written:
    page: Path
    files: list[Path]


def _environment() -> jinja2.Environment:
    import jinja2

    def load(name: str) -> str:
        return (resources.files("fi_campaign.templates") / "report" / name).read_text(encoding="utf-8")

    env = jinja2.Environment(
        loader=jinja2.FunctionLoader(load),
        undefined=jinja2.StrictUndefined,
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(
        pct=pct, num=num, fit=fit_number, network=network, pretty=lambda d: json.dumps(d, indent=2, sort_keys=True)
    )
    return env


def pct(x: float | None, digits: int = 2) -> str:
    """A fraction as the terminal table prints it: percent, two decimals; '-' when undefined."""
    return "-" if x is None or x != x else f"{100 * x:.{digits}f}"


def network(model: ModelRecord) -> str:
    """A stored model's architecture in words: 'ResNet-20, relu6, conv-act-bn, cifar10', or for
    any other network its source and targets: 'build net.py:make, 12 targets, tensor'; a
    network that does not run in float32 ends with its dtype ('..., bfloat16')."""
    arch = model.arch
    dtype = model.dtype if model.dtype != "float32" else ""
    if arch is None:
        kind = model.source.kind if model.source else "checkpoint"
        targets = f"{len(model.targets.names)} targets" if model.targets else ""
        return ", ".join(p for p in (f"{kind} {model.checkpoint}", targets, model.dataset, dtype) if p)
    return ", ".join(p for p in (f"ResNet-{arch.depth}", arch.activation, arch.order, model.dataset, dtype) if p)


def fit_number(x: float) -> str:
    return "-" if x != x else f"{x:.4g}"


def figures(reports: list[StoreReport]) -> list[plots.Rendered]:
    multi = len(reports) > 1
    out = []
    rows = [(rep.identity.label, r) for rep in reports for r in rep.avf]
    out.append(
        plots.render(
            plots.avf_figure(rows, multi),
            "avf",
            "AVF per model and fault mode",
            "Outcome shares of the injections applied (not_injected excluded), stacked Masked / Tolerable SDC / "
            f"Critical SDC / DUE; error bars: {100 * CONFIDENCE:g}% Wilson intervals (Clopper-Pearson at k = 0 or n) "
            "of each outcome's rate, drawn at the top of its segment. An outcome that never occurred has no segment; "
            "the table gives its upper bound.",
        )
    )
    for i, rep in enumerate(reports):
        if not any(u.n for u in rep.breakdown):
            continue
        what = "layer" if rep.unit_kind == "layer" else "kernel / instruction group"
        shown = plots.shown_units(rep.breakdown, rep.unit_kind)
        more = (
            f" The {len(shown)} units with the most critical SDCs are drawn; the table lists all "
            f"{len({u.unit for u in rep.breakdown})}."
            if rep.unit_kind == "kernel" and len(shown) < len({u.unit for u in rep.breakdown})
            else ""
        )
        out.append(
            plots.render(
                plots.unit_figure(rep.breakdown, rep.unit_kind),
                f"units-{i + 1}" if multi else "units",
                f"Critical-SDC rate per {what}" + (f" ({rep.identity.label})" if multi else ""),
                f"Share of the injections landing in each {what} that changed a top-1 class, per model; error bars: "
                f"{100 * CONFIDENCE:g}% Wilson intervals.{more}",
            )
        )
    for i, rep in enumerate(reports):
        if any(b.n for b in rep.causes.bits):
            out.append(
                plots.render(
                    plots.bit_figure(rep.causes.bits),
                    f"bits-{i + 1}" if multi else "bits",
                    f"{bit_modes(rep.causes.bits)} critical SDCs per flipped bit"
                    + (f" ({rep.identity.label})" if multi else ""),
                    "Share of the flips (or stuck bits) at each bit position that changed a top-1 class, split "
                    "into those with NaN/Inf in the outputs and the finite ones; error bars: "
                    f"{100 * CONFIDENCE:g}% Wilson intervals of the whole rate.",
                )
            )
    regret = [pair for rep in reports for pair in zip(regret_labels(rep, multi), rep.regret, strict=False)]
    for noise in dict.fromkeys([*NOISES, *(r.noise for _, r in regret)]):  # never two noises in one figure
        pairs = [(label, r) for label, r in regret if r.noise == noise]
        if pairs:
            out.append(
                plots.render(
                    plots.regret_figure(pairs),
                    regret_figure_name(noise),
                    f"Clean and noisy accuracy (regret), {noise} noise",
                    f"Test accuracy without and with the {noise} noise per evaluated model; error bars and the "
                    f"bracketed regret interval: {100 * CONFIDENCE:g}% {REGRET_INTERVALS.get(noise, 'intervals')}.",
                )
            )
    return out


REGRET_INTERVALS = {
    PAPER: "normal intervals over images",
    AUTHORS_2022: "Student-t intervals over the noisy passes (the images of a batch share one fault)",
}


def regret_figure_name(noise: str) -> str:
    """``regret`` for the paper's noise (as before there was a choice), ``regret-NOISE`` else."""
    return "regret" if noise == PAPER else f"regret-{noise}"


def regret_labels(rep: StoreReport, multi: bool) -> list[str]:
    """A short name per regret evaluation; a model evaluated more than once under one noise gets
    #1, #2, ... (each noise has a figure of its own, where the model's other noise is not shown)."""
    total = Counter((r.model, r.noise) for r in rep.regret)
    seen: Counter = Counter()
    out = []
    for r in rep.regret:
        seen[r.model, r.noise] += 1
        tag = f" #{seen[r.model, r.noise]}" if total[r.model, r.noise] > 1 else ""
        short = r.model.removeprefix("zoo:") if r.model.startswith("zoo:") else Path(r.model).stem
        out.append((f"{rep.identity.label}: " if multi else "") + short + tag)
    return out


def render_page(reports: list[StoreReport], raw: RawFit | None, generated: str, rendered: list[plots.Rendered]) -> str:
    images = {f.name: base64.b64encode(f.png).decode("ascii") for f in rendered}
    return (
        _environment()
        .get_template(TEMPLATE)
        .render(
            reports=reports,
            multi=len(reports) > 1,
            raw=raw,
            generated=generated,
            version=__version__,
            confidence=CONFIDENCE,
            figures=rendered,
            images=images,
            verdict=verdict,
            cause_sentence=cause_sentence,
            fits={rep.identity.label: rep.fit(raw) for rep in reports},
            regret_labels={
                (rep.identity.label, i): label
                for rep in reports
                for i, label in enumerate(regret_labels(rep, len(reports) > 1))
            },
        )
    )


def write(reports: list[StoreReport], folder: Output, raw: RawFit | None, generated: str) -> Written:
    """index.html and the figures' PNG and SVG files in ``folder`` (a checked output folder).
    Every file is checked before the first is written (an existing one needs --force), and
    each appears under its name only when complete."""
    index = folder.inside("index.html")
    rendered = figures(reports)
    page = render_page(reports, raw, generated, rendered)
    files = [
        (folder.inside(f"{f.name}.{suffix}"), data)
        for f in rendered
        for suffix, data in (("png", f.png), ("svg", f.svg))
    ]
    for out, data in files:
        write_bytes(out, data)
    write_bytes(index, page.encode("utf-8"))
    return Written(index.path, [out.path for out, _ in files])
