"""`evaluate`: the clean accuracy of checkpoints on seeded test images and, with a noise model,
their regret (paper Fig. 5) under the paper's noise (models.regret) or the authors' published
one (models.authors_noise), as typed rows; written as CSV and recorded in a campaign store for
its HTML report when asked."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fi_campaign.errors import UserError
from fi_campaign.models.noise_names import AUTHORS_2022, AUTHORS_BATCH, PAPER
from fi_campaign.report.text import Col, TextTable

if TYPE_CHECKING:
    from fi_campaign.models.powerlaw import PowerLaw
    from fi_campaign.models.regret import Regret
    from fi_campaign.outputs import Output
    from fi_campaign.store import Store

CSV_COLUMNS = ("model", "preset", "clean")
REGRET_COLUMNS = ("noisy", "noisy_low", "noisy_high", "regret", "regret_low", "regret_high", "noise")


@dataclass(frozen=True)
class Noise:
    """What regret corrupts the outputs with: under ``paper`` one conv/linear output per image
    with a power-law entry; under ``authors-2022`` DieHardNET's test-time noise, which draws
    among its own laws (table, op and size unused)."""

    table: str
    op: str
    size: str
    repeats: int  # injections per image (paper), noisy passes over the images (authors-2022)
    kind: str = PAPER  # models.noise_names.NOISES

    def law(self) -> PowerLaw:
        from fi_campaign.models import powerlaw

        try:
            law = powerlaw.entry(self.table, self.op, self.size)
        except (powerlaw.TableError, ValueError) as e:
            raise UserError(f"no power-law entry {self.table} {self.op} {self.size} ({e}).") from None
        if (why := law.degenerate_reason()) is not None:
            raise UserError(f"power-law entry {self.table} {self.op} {self.size} is degenerate ({why}).")
        return law


@dataclass(frozen=True)
class Evaluated:
    ref: str  # as given: a path or zoo:NAME
    sha256: str
    preset: str  # the network's activation and block order, and FAT when trained fault-aware
    clean: float
    regret: Regret | None  # None: accuracy only


@dataclass(frozen=True)
class Evaluation:
    source: str
    dataset: str
    images: int
    seed: int
    noise: Noise | None
    noise_text: str  # the noise in words, as a store records it; "" without noise
    rows: list[Evaluated]


def evaluate(
    models: list[str], source: str, count: int | None, seed: int, device: str, noise: Noise, regret: bool
) -> Evaluation:
    """Every model on the same images (all of the test split, or ``count`` drawn with ``seed``);
    with ``regret``, under ``noise`` too. The paper noise's entry is checked either way, before
    the images are read."""
    import torch

    from fi_campaign.models import authors_noise, zoo
    from fi_campaign.models import data as cifar
    from fi_campaign.models.regret import evaluate as regret_of
    from fi_campaign.models.train import evaluate as accuracy_of
    from fi_campaign.workload.model import resolve_device

    law = noise.law() if noise.kind == PAPER else None
    device = resolve_device(device)
    images = cifar.load(source, "test")
    if count:
        images = images.subset(cifar.select(len(images), count, seed))
    x = cifar.normalise(images.images, images.dataset).to(device)
    y = torch.from_numpy(images.labels).to(device)
    rows = []
    for ref in models:
        model, meta = zoo.load(ref, device=device)
        if meta.dataset != images.dataset:
            raise UserError(f"{ref} was trained on {meta.dataset} but the images are {images.dataset}.")
        preset = f"{meta.arch.activation}, {meta.arch.order}" + (", FAT" if meta.recipe.get("fault_aware") else "")
        if regret:
            if law is None:
                r = authors_noise.evaluate(model, x, y, noise.repeats, seed)
            else:
                r = regret_of(model, x, y, law, noise.repeats, seed)
            rows.append(Evaluated(ref, meta.sha256, preset, r.clean, r))
        else:
            rows.append(Evaluated(ref, meta.sha256, preset, accuracy_of(model, x, y), None))
    return Evaluation(source, images.dataset, len(images), seed, noise if regret else None, _text(noise, regret), rows)


def _text(noise: Noise, regret: bool) -> str:
    if not regret:
        return ""
    if noise.kind == AUTHORS_2022:
        return (
            f"{AUTHORS_2022}: DieHardNET hans_gruber.py @5aed2f5 test-time noise, one fault per batch of "
            f"{AUTHORS_BATCH} images at one conv/linear output (line, square or whole layer), one of the 21 dsn2021-fu "
            "laws with x_min and alpha swapped, x -> F x; intervals over noisy passes"
        )
    law = noise.law()
    return (
        f"{noise.table} {noise.op} {noise.size} power law (x_min {law.x_min:g}, alpha {law.alpha:g}), "
        "one conv/linear output per image"
    )


def _measured(r: Regret) -> list[float]:
    return [r.clean, r.noisy, r.noisy_low, r.noisy_high, r.regret, r.regret_low, r.regret_high]


def write_csv(ev: Evaluation, out: Output, given: str) -> None:
    from fi_campaign.outputs import replacing

    try:
        with replacing(out) as temp, open(temp, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(list(CSV_COLUMNS) + (list(REGRET_COLUMNS) if ev.noise else []))
            w.writerows(
                [e.ref, e.preset, *(_measured(e.regret) + [ev.noise.kind] if e.regret and ev.noise else [e.clean])]
                for e in ev.rows
            )
    except OSError as e:
        raise UserError(f"cannot write {given} ({e.strerror or e}).") from None


def record(ev: Evaluation, store: Store) -> int:
    """The regret rows into ``store`` (its campaign's own results untouched); how many."""
    from fi_campaign.store import RegretRecord

    if ev.noise is None:
        return 0
    records = [
        RegretRecord(
            model=e.ref,
            sha256=e.sha256,
            label=e.preset,
            dataset=ev.dataset,
            source=ev.source,
            images=ev.images,
            repeats=ev.noise.repeats,
            seed=ev.seed,
            fault_model=ev.noise_text,
            noise=ev.noise.kind,
            clean=e.regret.clean,
            noisy=e.regret.noisy,
            noisy_low=e.regret.noisy_low,
            noisy_high=e.regret.noisy_high,
            regret=e.regret.regret,
            regret_low=e.regret.regret_low,
            regret_high=e.regret.regret_high,
        )
        for e in ev.rows
        if e.regret
    ]
    store.add_regret(records)
    return len(records)


def evaluation_table(ev: Evaluation) -> TextTable:
    n = ev.noise
    title = f"{ev.images} {ev.dataset} test images from {ev.source}"
    if n and n.kind == AUTHORS_2022:
        title += f", {n.repeats} noisy passes, {AUTHORS_2022} noise (one fault per {AUTHORS_BATCH} images)"
    elif n:
        title += f", {n.repeats} injections each, {n.table} {n.op} {n.size}"
    cols: tuple[Col, ...] = (Col("model", key=True), Col("preset", spill=2), Col("clean acc.", key=True, right=True))
    cols += (Col("noisy acc. [95% CI]", spill=1), Col("regret [95% CI]")) if n else ()
    rows = []
    for e in ev.rows:
        r = e.regret
        rows.append(
            (e.ref, e.preset, f"{100 * e.clean:.2f}%")
            if r is None
            else (
                e.ref,
                e.preset,
                f"{100 * r.clean:.2f}%",
                f"{100 * r.noisy:.2f}% [{100 * r.noisy_low:.2f}, {100 * r.noisy_high:.2f}]",
                f"{100 * r.regret:.2f} [{100 * r.regret_low:.2f}, {100 * r.regret_high:.2f}] pts",
            )
        )
    return TextTable(title, cols, tuple(rows))
