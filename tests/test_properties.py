"""Property tests (hypothesis): whatever a user writes into a config key or passes as a path, the
CLI answers with exit 0 or 2 and never a traceback, and a store that exists is never touched. A
value the README's table allows plans; any other is refused in a sentence that names its key."""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fi_campaign import config as cfg
from fi_campaign.cli import main
from fi_campaign.config import SECTIONS, Config
from fi_campaign.errors import UserError
from tests.test_safety_inputs import batch, dump

PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ZOO = "zoo:resnet20-cifar10-baseline"


def answered(result) -> None:
    """Exit 0 or 2, and if the CLI failed, it failed with a sentence, not an exception."""
    assert result.exit_code in (0, 2), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output, result.output


@pytest.fixture(scope="session")
def world(tmp_path_factory, checkpoints) -> dict[str, Path]:
    """Real inputs for every command: a config, a planned store, CIFAR batches, a CSV."""
    root = tmp_path_factory.mktemp("world")
    config = root / "tiny.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "name": "tiny",
                "seed": 11,
                "injections": 3,
                "batch_size": 16,
                "models": {k: str(v) for k, v in checkpoints.items()},
                "images": {"source": "bundled", "count": 8, "seed": 3},
            }
        )
    )
    store = root / "store.db"
    result = CliRunner().invoke(main, ["--db", str(store), "plan", str(config)])
    assert result.exit_code == 0, result.output
    with sqlite3.connect(store) as con:  # everything into the one file that is copied and compared
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    rng = np.random.default_rng(9)
    cifar = root / "cifar" / "cifar-10-batches-py"
    cifar.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        dump(cifar / name, batch(rng, 8))
    samples = root / "samples.csv"
    r = 1e-3 * (1 - rng.random(60)) ** (-1 / 0.8)
    samples.write_text("micro,input_size,relative_diff\n" + "".join(f"FFMA,common,{x:.6g}\n" for x in r))
    return {"config": config, "store": store, "cifar": cifar.parent, "csv": samples}


def _inside(s: str) -> bool:
    """Paths a test may write to: relative, below the per-example folder."""
    return not s.startswith(("/", "~")) and ".." not in s.split("/")


PATHS = st.one_of(
    st.text(max_size=40),
    st.text(alphabet="?%#\0 ./-_a\u00e9\u2603\n", max_size=30),
    st.builds(
        lambda part, n: "/".join([part] * n), st.text(alphabet="ab?%#.", min_size=1, max_size=300), st.integers(1, 20)
    ),
).filter(_inside)

S = "{S}"
# commands a random path reaches quickly: it is read (and usually missing) or a small file is written
COMMANDS = [
    ["--db", S, "status"],
    ["--db", S, "report"],
    ["report", S],
    ["--db", "{store}", "export", S],
    ["--db", "{store}", "report", "--csv", S],
    ["--db", "{store}", "report", "--json", S],
    ["--db", "{store}", "report", "--critical-csv", S],
    ["--db", "fresh.db", "plan", S],
    ["train", "--preset", "baseline", "--data", S],
    ["train", "--preset", "baseline", "--data", "{cifar}", "--epochs", "1", "--recipe", S, "--out", "m.pt"],
    ["evaluate", "--images", "2", "--data", S, ZOO],
    ["evaluate", "--images", "2", S],
    ["fault-model", "fit", S, "--out", "fm.yaml"],
    ["fault-model", "fit", "{csv}", "--out", S],
    ["fault-model", "show", S],
    ["fault-model", "show", "dsn2021-fu", "--op", "FFMA", "--size", "common", "--data", S],
]
# commands that do real work (plan, train, evaluate, figures) whenever the path is usable
WRITERS = [
    ["--db", "{store}", "report", "--html", S],
    ["--db", "fresh.db", "plan", "{config}", "--injections", "2", "--profile", S],
    ["train", "--preset", "baseline", "--data", "{cifar}", "--epochs", "1", "--limit", "1", "--out", S],
    ["evaluate", "--images", "2", "--csv", S, ZOO],
    ["fault-model", "show", "dsn2021-fu", "--op", "FFMA", "--size", "common", "--data", "{csv}", "--plot", S],
]


class Sandbox:
    """A fresh working folder per example holding a copy of the store, so that whatever a random
    path makes a command write lands there, and the copy can be compared with the original."""

    def __init__(self, world: dict[str, Path], base: Path) -> None:
        self.world, self.base = world, base

    def __enter__(self) -> Sandbox:
        self._dir = tempfile.TemporaryDirectory(dir=self.base)
        self._cwd = os.getcwd()
        here = Path(self._dir.name)
        os.chdir(here)
        (here / "keep").mkdir()
        self.store = here / "keep" / "store.db"
        shutil.copy(self.world["store"], self.store)
        return self

    def invoke(self, args: list[str]):
        return CliRunner().invoke(main, args, catch_exceptions=True)

    def __exit__(self, *exc) -> None:
        try:
            assert self.store.read_bytes() == self.world["store"].read_bytes(), "the store was changed"
        finally:
            os.chdir(self._cwd)
            self._dir.cleanup()


def _run_with_path(world: dict[str, Path], base: Path, command: list[str], path: str) -> None:
    with Sandbox(world, base) as box:
        names = {k: str(v) for k, v in world.items()} | {"store": str(box.store)}
        answered(box.invoke([path if a == S else a.format(**names) for a in command]))


@PROPERTY
@given(command=st.sampled_from(COMMANDS), path=PATHS)
def test_any_path_gets_an_answer_and_the_store_survives(world, tmp_path_factory, command, path):
    _run_with_path(world, tmp_path_factory.getbasetemp(), command, path)


@pytest.mark.slow
@settings(PROPERTY, max_examples=40)
@given(command=st.sampled_from(WRITERS), path=PATHS)
def test_any_output_path_of_a_working_command_gets_an_answer(world, tmp_path_factory, command, path):
    _run_with_path(world, tmp_path_factory.getbasetemp(), command, path)


def _keys() -> list[str]:
    top = [f.name for f in fields(Config) if f.name not in SECTIONS]
    return top + [f"{s}.{f.name}" for s, cls in SECTIONS.items() for f in fields(cls)] + list(SECTIONS)


SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(2**62, 2**80),
    st.integers(-(2**80), 0),
    st.floats(),
    st.text(max_size=20),
    st.sampled_from(
        [
            "cpu",
            "cuda",
            "cuda:0",
            "auto",
            "bundled",
            "single_bit",
            "warp_random",
            "dsn2021-fu",
            "dsn2021-pipeline",
            "FFMA",
            "by-value",
            "nvbitfi",
            "process",
            "macs",
            "baseline",
            "hardened",
            "carol",
            "fp32",
            ZOO,
            "2022-13-45",
            "1e3",
        ]
    ),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)


def _config_with(world: dict[str, Path], key: str, value: object) -> Path:
    raw = yaml.safe_load(world["config"].read_text())
    section, _, sub = key.partition(".")
    if sub:
        raw[section] = {**(raw.get(section) or {}), sub: value}
    else:
        raw[key] = value
    config = Path("config.yaml")  # in the sandbox
    config.write_text(yaml.safe_dump(raw))
    return config


STORE_TAKEN = "already holds a campaign"

# values the README's table of config keys allows: each is read, and plans
VALID = {
    "name": st.text(st.characters(exclude_characters="\0", exclude_categories=["Cs"]), min_size=1, max_size=40),
    "seed": st.integers(0, 2**63 - 1),
    "images.seed": st.integers(0, 2**63 - 1),
    "injections": st.integers(1, 4),
    "batch_size": st.integers(1, 65_536),
    "images.count": st.integers(1, 500),  # the bundled source's size
    "tolerance": st.floats(0, 1e300, allow_nan=False),
    "golden_runs": st.integers(2, 20),
    "timeout_factor": st.floats(1, 1000, exclude_min=True),
    "device": st.sampled_from(["cpu", "auto"]),
    "reference": st.sampled_from(["baseline", "hardened"]),
    "resume_cache_mb": st.integers(0, 1_048_576),
    "resume": st.booleans(),
    "layer_weighting": st.sampled_from(["elements", "macs"]),
    "modes": st.lists(st.sampled_from(["single_bit", "warp_random"]), min_size=1, max_size=2, unique=True),
    "math": st.sampled_from(["fp32", "tf32"]),
    "isolation": st.sampled_from(["inprocess", "process"]),
    "fault_model.op": st.sampled_from(["FADD", "FMUL", "FFMA", "IADD", "IMUL", "IMAD", "MUFU"]),  # size common
    "fault_model.size": st.sampled_from(["common", "big"]),  # FFMA small is degenerate in dsn2021-fu
    "fault_model.table": st.sampled_from(["dsn2021-fu", "dsn2021-pipeline"]),
    "nvbitfi.max_not_injected": st.floats(0, 1),
    "nvbitfi.powerlaw_line": st.booleans(),
    "nvbitfi.reads_powerlaw": st.booleans(),
    "nvbitfi.dummy": st.booleans(),
}


def refusal(result) -> str:
    return result.output.strip().splitlines()[-1] if result.output.strip() else ""


def names_the_key(sentence: str, key: str) -> bool:
    """The sentence names the key (``images.count``, or ``mode``/``model`` for an item of a list)."""
    return key.rpartition(".")[2].removesuffix("s").lower() in sentence.lower()


@PROPERTY
@given(data=st.data())
def test_any_config_value_is_refused_by_its_key_or_else_for_the_store(world, tmp_path_factory, data):
    """Planned onto a store that holds a campaign: a value the README allows gets the store's
    refusal; a value the config reader refuses is refused in a sentence naming its key, before
    the store is looked at. Either way nothing is planned over the store."""
    key = data.draw(st.sampled_from(_keys()), label="key")
    allowed = key in VALID and data.draw(st.booleans(), label="allowed")
    value = data.draw(VALID[key] if allowed else VALUES, label="value")
    with Sandbox(world, tmp_path_factory.getbasetemp()) as box:
        config = _config_with(world, key, value)
        result = box.invoke(["--db", str(box.store), "plan", str(config)])
        answered(result)
        assert result.exit_code == 2, result.output
        try:
            cfg.load(str(config))
            readable = True
        except UserError:
            readable = False
        sentence = refusal(result)
        assert readable or not allowed, f"{key}: {value!r} is allowed by the README but refused: {sentence}"
        if readable:
            assert STORE_TAKEN in sentence, sentence
        else:
            assert STORE_TAKEN not in sentence and names_the_key(sentence, key), (key, sentence)


@pytest.mark.slow
@settings(PROPERTY, max_examples=30)
@given(data=st.data())
def test_any_value_the_readme_allows_plans(world, tmp_path_factory, data):
    key = data.draw(st.sampled_from(sorted(VALID)), label="key")
    value = data.draw(VALID[key], label="value")
    with Sandbox(world, tmp_path_factory.getbasetemp()) as box:
        extra = [] if key == "injections" else ["--injections", "2"]
        result = box.invoke(["--db", "fresh.db", "plan", str(_config_with(world, key, value)), *extra])
        answered(result)
        assert result.exit_code == 0, result.output


@pytest.mark.slow
@settings(PROPERTY, max_examples=40)
@given(key=st.sampled_from(_keys()), value=VALUES)
def test_any_config_value_plans_or_is_refused(world, tmp_path_factory, key, value):
    with Sandbox(world, tmp_path_factory.getbasetemp()) as box:
        result = box.invoke(["--db", "fresh.db", "plan", str(_config_with(world, key, value)), "--injections", "2"])
        answered(result)
        assert result.exit_code == 0 or names_the_key(refusal(result), key), (key, refusal(result))
