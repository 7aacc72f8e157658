"""`fi-campaign train` and `fi-campaign evaluate`: producing and judging hardened models."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from fi_campaign import limits
from fi_campaign.cli.params import Checked, FilePath, PathText
from fi_campaign.errors import UserError
from fi_campaign.models.noise_names import AUTHORS_2022, NOISES, PAPER

if TYPE_CHECKING:
    from fi_campaign.models.train import Recipe
    from fi_campaign.store import Store

PRESET_NAMES = ("baseline", "relu6", "relu6-fat", "hardened", "hardened-nansafe")
ARCHS = ("resnet20", "resnet32", "resnet44", "resnet56")
DATASETS = {"cifar10": 10, "cifar100": 100}


def _device() -> Checked:
    from fi_campaign.config import SPECS

    return Checked(SPECS["device"], "device")


def _recipe(path: str | None, epochs: int | None, seed: int | None) -> Recipe:
    from fi_campaign.models.train import Recipe, RecipeError

    try:
        return Recipe.read(path, epochs=epochs, seed=seed)
    except RecipeError as e:
        raise UserError(str(e)) from None


@click.command()
@click.option(
    "--preset",
    type=click.Choice(PRESET_NAMES),
    required=True,
    help="The paper's ablation: baseline (ReLU), relu6, relu6-fat (+ fault-aware training), "
    "hardened (+ conv-relu6-bn order); hardened-nansafe: hardened with a ReLU6 that maps NaN "
    "to 0 as GPU min/max instructions do.",
)
@click.option("--arch", type=click.Choice(ARCHS), default="resnet20", show_default=True)
@click.option("--dataset", type=click.Choice(tuple(DATASETS)), default="cifar10", show_default=True)
@click.option(
    "--data",
    "source",
    required=True,
    type=PathText(),
    help="CIFAR source: torchvision folder, ImageFolder train/test .tar.xz folder.",
)
@click.option("--epochs", type=click.IntRange(1, limits.MAX_EPOCHS), help="Override the recipe's epochs.")
@click.option(
    "--recipe",
    "recipe_path",
    type=FilePath(dir_okay=False),
    help="YAML with recipe fields (optimizer, lr, schedule, weight_decay, batch_size, ...).",
)
@click.option("--seed", type=click.IntRange(0, limits.MAX_SEED), help="Override the recipe's seed.")
@click.option(
    "--out",
    type=PathText(),
    metavar="FILE",
    help="Checkpoint path (default ./ARCH-DATASET-PRESET.pt; the zoo only when named here).",
)
@click.option("--force", is_flag=True, help="Replace OUT if it exists (never a store).")
@click.option("--device", default="auto", show_default=True, type=_device(), help="cpu, cuda, cuda:N or auto.")
@click.option(
    "--limit", type=click.IntRange(1, limits.MAX_IMAGES), help="Train on the first N images only (smoke runs)."
)
@click.pass_context
def train(
    ctx: click.Context,
    preset: str,
    arch: str,
    dataset: str,
    source: str,
    epochs: int | None,
    recipe_path: str | None,
    seed: int | None,
    out: str | None,
    force: bool,
    device: str,
    limit: int | None,
) -> None:
    """Train a CIFAR ResNet in one of the paper's four presets (or hardened-nansafe) and write a checkpoint that
    records its recipe, history and clean test accuracy.

    The checkpoint goes to ./ARCH-DATASET-PRESET.pt unless --out names another path; an
    existing file (a committed zoo checkpoint included) is replaced only with --force.
    Interrupted training resumes from its last finished epoch when run again with the same
    arguments (the state is kept in OUT.partial.pt).
    """
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from fi_campaign.models import data as cifar
    from fi_campaign.models.train import partial_path, read_partial
    from fi_campaign.models.train import preset as make_preset
    from fi_campaign.models.train import train as run_training
    from fi_campaign.outputs import check
    from fi_campaign.workload.model import resolve_device

    given = out or f"{arch}-{dataset}-{preset}.pt"
    path = check(given, force, [(ctx.obj or {}).get("db")]).path  # before the data and the hours of training
    recipe = _recipe(recipe_path, epochs, seed)
    net, recipe = make_preset(preset, int(arch.removeprefix("resnet")), DATASETS[dataset], recipe)
    device = resolve_device(device)
    for split in ("train", "test"):  # fail on bad data before the progress display starts (cached)
        if (found := cifar.load(source, split).dataset) != dataset:
            raise UserError(f"{source} holds {found}, not {dataset}.")
    read_partial(partial_path(path))  # and on a planted or damaged training state
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[stats]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ) as bar:
        task = bar.add_task(f"{preset} {arch} {dataset}", total=None, stats="loading data")

        def on_batch(epoch: int, step: int, loss: float, acc: float) -> None:
            if bar.tasks[task].total is None:
                bar.update(task, total=recipe.epochs * steps, completed=epoch * steps)
            bar.update(task, advance=1, stats=f"epoch {epoch + 1}/{recipe.epochs} loss {loss:.3f} acc {acc:.3f}")

        steps = -(-(limit or 50_000) // recipe.batch_size)
        try:
            meta = run_training(net, recipe, source, path, device, limit, on_batch=on_batch)
        except OSError as e:  # the data is read above: this is the partial state or the checkpoint
            raise UserError(f"cannot write {path} or its partial state ({e.strerror or e}).") from None
    assert meta.clean_accuracy is not None  # train() measures it before it writes the checkpoint
    click.echo(
        f"Wrote {given}: clean test accuracy {100 * meta.clean_accuracy:.2f}% on {meta.accuracy_on}; {meta.trained_on}."
    )


@click.command()
@click.argument("models", nargs=-1, required=True, type=PathText())
@click.option("--regret", is_flag=True, help="Clean and noisy accuracy and their difference (paper Fig. 5).")
@click.option("--data", "source", default="bundled", show_default=True, type=PathText(), help="CIFAR test images.")
@click.option(
    "--noise",
    type=click.Choice(NOISES),
    default=PAPER,
    show_default=True,
    help="The paper's noise as its text describes it, or the authors' published injector (docs/RESULTS.md, Regret).",
)
@click.option(
    "--repeats",
    type=click.IntRange(1, limits.MAX_REPEATS),
    default=5,
    show_default=True,
    help="Injections per image (paper), noisy passes over the images (authors-2022).",
)
@click.option(
    "--images", "count", type=click.IntRange(1, limits.MAX_IMAGES), help="Use N seeded test images (default: all)."
)
@click.option("--seed", type=click.IntRange(0, limits.MAX_SEED), default=0, show_default=True)
@click.option("--table", "table", default="dsn2021-fu", show_default=True, help="Power-law table of the noise.")
@click.option("--op", default="FFMA", show_default=True)
@click.option("--size", default="common", show_default=True)
@click.option("--csv", "csv_path", type=PathText(), metavar="FILE", help="Write the table as CSV.")
@click.option("--force", is_flag=True, help="Replace the --csv file if it exists (never a store).")
@click.option("--device", default="auto", show_default=True, type=_device())
@click.option(
    "--db",
    "db",
    metavar="STORE",
    type=PathText(),
    help="With --regret: also record each model's row in this campaign store (as the global --db "
    "does), for 'fi-campaign report'.",
)
@click.pass_context
def evaluate(
    ctx: click.Context,
    models: tuple[str, ...],
    regret: bool,
    source: str,
    noise: str,
    repeats: int,
    count: int | None,
    seed: int,
    table: str,
    op: str,
    size: str,
    csv_path: str | None,
    force: bool,
    device: str,
    db: str | None,
) -> None:
    """Accuracy of checkpoints (paths or zoo:NAME), and with --regret their accuracy under
    noise. Regret = clean - noisy.

    --noise paper (default): every test image corrupted REPEATS times at one conv/linear
    output (a single value, a line or a block, channel probabilities 1.0 / 0.75 / 0.3,
    power-law magnitude --table/--op/--size), 95% intervals over images.

    --noise authors-2022: what DieHardNET's injector does at test time, which the paper's
    figures came from: REPEATS noisy passes over the images in batches of 200, each batch
    sharing one fault (line, square or whole layer, one of its 21 power laws as a plain
    factor), 95% t intervals over the passes.

    With a store (fi-campaign --db STORE evaluate --regret ..., or --db after evaluate) the
    rows are also recorded in that existing campaign store, so its HTML report shows the
    regret figure; the campaign's own results are not touched.
    """
    from fi_campaign.cli.tables import print_table
    from fi_campaign.outputs import check
    from fi_campaign.report.evaluation import Noise, evaluation_table, record, write_csv
    from fi_campaign.report.evaluation import evaluate as run

    if noise == AUTHORS_2022 and (given := [f"--{n}" for n in ("table", "op", "size") if _given(ctx, n)]):
        one = len(given) == 1
        raise UserError(
            f"{AUTHORS_2022} draws among its own 21 power laws; {' and '.join(given)} "
            f"{'sets' if one else 'set'} the paper noise's, so leave {'it' if one else 'them'} out."
        )
    store = _regret_store(ctx, db, regret)  # a bad store is refused before the slow part
    table_out = check(csv_path, force, [db, (ctx.obj or {}).get("db")]) if csv_path else None
    ev = run(list(models), source, count, seed, device, Noise(table, op, size, repeats, noise), regret)
    print_table(evaluation_table(ev))
    if table_out and csv_path:
        write_csv(ev, table_out, csv_path)
        click.echo(f"Wrote {csv_path}")
    if store is not None:
        click.echo(f"Recorded {record(ev, store)} regret rows in {store.label}")


def _given(ctx: click.Context, name: str) -> bool:
    return ctx.get_parameter_source(name) not in (None, click.core.ParameterSource.DEFAULT)


def _regret_store(ctx: click.Context, db: str | None, regret: bool) -> Store | None:
    """The store regret rows go to: --db after evaluate, else the global --db when given
    explicitly (never the default store: evaluating must not write where nobody asked)."""
    from fi_campaign.store import Store

    given = (ctx.obj or {}).get("db")
    if db and given and Path(db) != Path(given):
        raise UserError(f"two stores given ({given} and {db}); give one --db.")
    if db and not regret:
        raise UserError("evaluate --db records regret evaluations only; add --regret.")
    path = db or (given if regret else None)
    return None if path is None else Store.open(path, write=True)
