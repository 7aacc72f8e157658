"""Every value checked when read, and no file a campaign reads can run code (issue 13, part B).

Malformed config values and options must be refused with exit 2 and one sentence naming the key
before anything is planned; crafted pickles and partial training states must not run: each
writes a marker file if it runs, and the marker must not exist afterwards.
"""

from __future__ import annotations

import builtins
import io
import json
import os
import pickle
import struct
import subprocess
import sys
import tarfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from fi_campaign.cli import main
from fi_campaign.models.data import DataError, load


class RunsShell:
    """Unpickling this runs ``touch MARKER`` (os.system), the classic planted pickle."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch '{self.marker}'",)


class RunsExec:
    """Unpickling this runs Python (builtins.exec) that creates MARKER."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return builtins.exec, (f"open({str(self.marker)!r}, 'w').close()",)


def cli(*args: str):
    return CliRunner().invoke(main, list(args))


def one_sentence(result, *words: str) -> None:
    """Exit 2, one 'Error: ...' line naming ``words``, no traceback."""
    out = result.output
    assert result.exit_code == 2, out
    assert isinstance(result.exception, SystemExit) and "Traceback" not in out, out
    lines = [line for line in out.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("Error: "), out
    if not lines[0].startswith("Usage:"):  # click's usage errors print two lines of usage first
        assert len(lines) == 1, out
    for w in words:
        assert w in lines[-1], out


def batch(rng: np.random.Generator, n: int) -> dict:
    """A CIFAR-10 python batch in the original format: bytes keys, uint8 (n, 3072) data, int labels."""
    return {
        b"batch_label": b"testing batch 1 of 1",
        b"labels": rng.integers(0, 10, n).tolist(),
        b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        b"filenames": [b"x.png"] * n,
    }


def dump(path: Path, obj: object) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)  # the protocol of the published batches


@pytest.fixture
def tiny_cifar(tmp_path) -> Path:
    """A real-format cifar-10-batches-py folder: five 16-image training batches and a test batch."""
    rng = np.random.default_rng(5)
    folder = tmp_path / "data" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for i in range(1, 6):
        dump(folder / f"data_batch_{i}", batch(rng, 16))
    dump(folder / "test_batch", batch(rng, 16))
    dump(folder / "batches.meta", {b"label_names": [b"c%d" % i for i in range(10)]})
    return folder.parent


# --- config values ----------------------------------------------------------------------------

BAD_VALUES = [
    ("tolerance: .nan", "tolerance", "nan"),
    ("tolerance: -0.5", "tolerance", "-0.5"),
    ("tolerance: .inf", "tolerance", "inf"),
    ("timeout_factor: .nan", "timeout_factor", "nan"),
    ("timeout_factor: 1.0e+6", "timeout_factor", "1000000.0"),
    ("reference: [baseline]", "reference", "['baseline']"),
    ("reference: nosuch", "reference", "nosuch"),
    ("device: 5", "device", "5"),
    ("device: cuda:x", "device", "cuda:x"),
    ("fault_model: {table: 5}", "fault_model.table", "5"),
    ("fault_model: {op: 7}", "fault_model.op", "7"),
    ("injections: 1000000000000", "injections", "1000000000000"),
    ("injections: true", "injections", "True"),
    ("injections: 10.0", "injections", "10.0"),
    ("seed: 9223372036854775808", "seed", "9223372036854775808"),
    ("seed: 123456789012345678901234567890", "seed", "1234"),
    ("seed: -1", "seed", "-1"),
    ("batch_size: 10000000", "batch_size", "10000000"),
    ("golden_runs: 1000", "golden_runs", "1000"),
    ("name: 5", "name", "5"),
    ("store: [a.db]", "store", "['a.db']"),
    ("models: {a: 5}", "models.a", "5"),
    ("models: {a: {checkpoint: 'zoo:resnet20-cifar10-baseline', dtype: int8}}", "models.a.dtype", "int8"),
    ("models: {a: {checkpoint: 5, dtype: bfloat16}}", "models.a.checkpoint", "5"),
    ("modes: single_bit", None, None),  # a single mode as a string is allowed
    ("nvbitfi: {dummy: 'maybe'}", "nvbitfi.dummy", "maybe"),
    ("nvbitfi: {dialect: nosuch}", "nvbitfi.dialect", "nosuch"),
    ("images: {seed: 9223372036854775808}", "images.seed", "9223372036854775808"),
    ("images: {count: 10000000}", "images.count", "10000000"),
    ("images: {source: 5}", "images.source", "5"),
    ("images: 5", "images", "5"),
]


def test_every_config_key_has_a_spec():
    from dataclasses import fields

    from fi_campaign.config import SECTIONS, SPECS, Config, Sampling

    keys = {f.name for f in fields(Config)} - set(SECTIONS) - {"models", "modes", "sampling"}
    keys |= {f"{s}.{f.name}" for s, cls in SECTIONS.items() for f in fields(cls)}
    keys |= {f"sampling.{f.name}" for f in fields(Sampling)} - {"sampling.by"}  # models, modes, by: own checks
    assert keys == set(SPECS)


@pytest.mark.parametrize("line,key,value", BAD_VALUES, ids=[b[0] for b in BAD_VALUES])
def test_a_malformed_config_value_is_one_sentence_naming_it(tmp_path, tiny_config, line, key, value):
    raw = yaml.safe_load(tiny_config.read_text())
    raw.update(yaml.safe_load(line))
    config = tmp_path / "bad.yaml"
    config.write_text(yaml.safe_dump(raw))
    db = tmp_path / "x.db"
    if key is None:
        from fi_campaign import config as cfg

        assert cfg.load(str(config)).modes == ("single_bit",)
        return
    result = cli("--db", str(db), "plan", str(config))
    one_sentence(result, key, value, "must be")
    assert not db.exists()


def test_too_many_sites_in_all_is_refused(tmp_path, tiny_config):
    raw = yaml.safe_load(tiny_config.read_text()) | {"injections": 3_000_000}
    config = tmp_path / "big.yaml"
    config.write_text(yaml.safe_dump(raw))
    one_sentence(cli("--db", str(tmp_path / "x.db"), "plan", str(config)), "12,000,000 sites", "10,000,000")
    one_sentence(
        cli("--db", str(tmp_path / "x.db"), "plan", str(tiny_config), "--injections", "3000000"), "12,000,000 sites"
    )
    assert not (tmp_path / "x.db").exists()


@pytest.mark.parametrize(
    "option,value",
    [
        ("--seed", str(2**63)),
        ("--seed", "1" * 30),
        ("--seed", "-1"),
        ("--injections", str(10**12)),
        ("--margin", "nan"),
        ("--confidence", "nan"),
    ],
)
def test_a_malformed_plan_option_is_a_usage_error(tmp_path, tiny_config, option, value):
    db = tmp_path / "x.db"
    one_sentence(cli("--db", str(db), "plan", str(tiny_config), option, value), option)
    assert not db.exists()


def test_other_commands_hold_options_to_their_ranges(tmp_path):
    one_sentence(cli("evaluate", "--device", "5", "zoo:resnet20-cifar10-baseline"), "--device", "'5'")
    one_sentence(cli("evaluate", "--seed", str(2**63), "zoo:resnet20-cifar10-baseline"), "--seed")
    one_sentence(cli("evaluate", "--repeats", "1" * 20, "zoo:resnet20-cifar10-baseline"), "--repeats")
    one_sentence(cli("--db", str(tmp_path / "a\0b.db"), "status"), "--db", "NUL")
    one_sentence(cli("--db", "d" * 300, "status"), "--db", "too long")
    one_sentence(cli("--db", str(tmp_path / "x.db"), "run", "--until-ci", "nan"), "--until-ci")


def test_a_config_that_is_not_utf8_is_one_sentence(tmp_path, tiny_config):
    config = tmp_path / "latin1.yaml"
    config.write_bytes(tiny_config.read_bytes() + "name: caf\u00e9\n".encode("latin-1"))
    one_sentence(cli("--db", str(tmp_path / "x.db"), "plan", str(config)), "not UTF-8")


def test_a_config_over_the_size_limit_is_refused_unparsed(tmp_path, tiny_config):
    config = tmp_path / "huge.yaml"
    config.write_text(tiny_config.read_text() + "# " + "x" * 1_000_000 + "\n")
    one_sentence(cli("--db", str(tmp_path / "x.db"), "plan", str(config)), "larger than 1,000,000 bytes")


def test_an_alias_bomb_is_refused_quickly_with_a_short_message(tmp_path, tiny_config):
    # 9^12 'lol's once expanded; PyYAML shares the aliased lists, and the check never walks them
    levels = [f"&l0 [{', '.join(['lol'] * 9)}]"] + [f"&l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 12)]
    config = tmp_path / "laughs.yaml"
    config.write_text(tiny_config.read_text() + f"name: [{', '.join(levels)}]\n")
    assert config.stat().st_size < 2000
    result = cli("--db", str(tmp_path / "x.db"), "plan", str(config))
    one_sentence(result, "name is [[")
    assert len(result.output) < 400


def test_deep_nesting_and_impossible_dates_are_one_sentence(tmp_path, tiny_config):
    config = tmp_path / "deep.yaml"
    config.write_text("models: " + "[" * 2000 + "]" * 2000 + "\n")
    one_sentence(cli("--db", str(tmp_path / "x.db"), "plan", str(config)), "too deeply")
    config.write_text(tiny_config.read_text() + "seed: 2022-13-45\n")
    one_sentence(cli("--db", str(tmp_path / "x.db"), "plan", str(config)), "month must be in 1..12")


# --- CIFAR pickles ----------------------------------------------------------------------------


def test_a_real_format_batch_still_loads(tiny_cifar):
    folder = tiny_cifar / "cifar-10-batches-py"
    with open(folder / "test_batch", "rb") as f:
        raw = pickle.load(f, encoding="bytes")
    s = load(str(tiny_cifar))
    assert (len(s), s.dataset, s.images.shape) == (16, "cifar10", (16, 32, 32, 3))
    assert s.labels.tolist() == raw[b"labels"]
    assert np.array_equal(s.images[3], raw[b"data"][3].reshape(3, 32, 32).transpose(1, 2, 0))
    assert len(load(str(tiny_cifar), "train")) == 80


@pytest.mark.parametrize("payload,refused", [(RunsShell, "posix.system"), (RunsExec, "exec")])
def test_a_crafted_batch_is_refused_and_never_runs(tmp_path, tiny_config, payload, refused):
    marker = tmp_path / "MARKER"
    folder = tmp_path / "planted" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    dump(folder / "test_batch", {b"data": payload(marker), b"labels": [0]})
    with pytest.raises(DataError, match=refused) as e:
        load(str(folder.parent))
    assert "test_batch" in str(e.value) and "holds no CIFAR" not in str(e.value)
    assert not marker.exists()

    raw = yaml.safe_load(tiny_config.read_text())
    raw["images"]["source"] = str(folder.parent) + "/"  # another spelling: not served by load's cache
    config = tmp_path / "planted.yaml"
    config.write_text(yaml.safe_dump(raw))
    one_sentence(cli("--db", str(tmp_path / "x.db"), "plan", str(config)), "test_batch", refused)
    one_sentence(cli("evaluate", "--data", str(folder), "zoo:resnet20-cifar10-baseline"), "test_batch", refused)
    assert not marker.exists() and not (tmp_path / "x.db").exists()


def test_a_damaged_batch_names_the_file_not_a_missing_layout(tmp_path):
    (tmp_path / "test_batch").write_bytes(pickle.dumps({b"data": [1, 2, 3], b"labels": [0]}, protocol=2))
    with pytest.raises(DataError, match="test_batch is not a CIFAR batch"):
        load(str(tmp_path))


# --- image tars -------------------------------------------------------------------------------


def png_header(width: int, height: int) -> bytes:
    """A real PNG: IHDR claiming width x height, a tiny IDAT, IEND."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 97)) + chunk(b"IEND", b"")


def tar_with(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.mark.parametrize(
    "image,words",
    [
        (png_header(100_000, 100_000), "claims more pixels"),
        (png_header(33, 32), "33x32, not CIFAR's 32x32"),
        (b"\0" * (2 << 20), "2,097,152 bytes"),
    ],
)
def test_a_decompression_bomb_in_a_tar_is_refused_before_decoding(tmp_path, image, words):
    archive = tar_with(tmp_path / "test.tar", {"test/cat/bomb.png": image})
    with pytest.raises(DataError, match=words):
        load(str(archive))
    one_sentence(cli("evaluate", "--data", str(tmp_path), "zoo:resnet20-cifar10-baseline"), "bomb.png", words)


def test_the_crafted_png_headers_are_real_pngs():
    from PIL import Image

    with pytest.raises(Image.DecompressionBombError):
        Image.open(io.BytesIO(png_header(100_000, 100_000)))
    assert Image.open(io.BytesIO(png_header(33, 32))).size == (33, 32)


# --- training state ---------------------------------------------------------------------------


@pytest.mark.slow  # over 30 s in the default run (docs/TESTING.md); CI runs it in make test-slow
def test_training_resumes_from_a_weights_only_state_exactly(tmp_path, tiny_cifar):
    import torch

    from fi_campaign.models.resnet import Arch
    from fi_campaign.models.train import Recipe, train

    arch, recipe = Arch(20, "relu6", "conv-act-bn"), Recipe(epochs=2, batch_size=32, fault_aware=True)
    full = train(arch, recipe, str(tiny_cifar), tmp_path / "full.pt")

    class Stop(Exception):
        pass

    def stop_after_first(stats) -> None:
        raise Stop

    with pytest.raises(Stop):
        train(arch, recipe, str(tiny_cifar), tmp_path / "resumed.pt", on_epoch=stop_after_first)
    partial = tmp_path / "resumed.partial.pt"
    assert torch.load(partial, weights_only=True)["epoch"] == 1
    resumed = train(arch, recipe, str(tiny_cifar), tmp_path / "resumed.pt")
    assert [h["loss"] for h in resumed.recipe["history"]] == [h["loss"] for h in full.recipe["history"]]
    assert resumed.sha256 == full.sha256 and not partial.exists()


@pytest.mark.parametrize("payload", [RunsShell, RunsExec])
def test_a_planted_partial_state_is_refused_kept_and_never_runs(tmp_path, tiny_cifar, payload):
    import torch

    marker, out = tmp_path / "MARKER", tmp_path / "model.pt"
    partial = out.with_suffix(".partial.pt")
    torch.save({"epoch": 1, "model": payload(marker)}, partial)
    planted = partial.read_bytes()
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("batch_size: 32\n")
    result = cli(
        "train",
        "--preset",
        "hardened",
        "--data",
        str(tiny_cifar),
        "--epochs",
        "1",
        "--recipe",
        str(recipe),
        "--out",
        str(out),
        "--device",
        "cpu",
    )
    one_sentence(result, "model.partial.pt", "system" if payload is RunsShell else "exec", "move or delete it")
    assert not marker.exists() and partial.read_bytes() == planted and not out.exists()


def test_a_planted_checkpoint_is_refused_and_never_runs(tmp_path, tiny_config):
    import torch

    marker = tmp_path / "MARKER"
    ckpt = tmp_path / "evil.pt"
    torch.save({"meta": RunsShell(marker), "state_dict": {}}, ckpt)
    raw = yaml.safe_load(tiny_config.read_text()) | {"models": {"evil": str(ckpt)}}
    config = tmp_path / "evil.yaml"
    config.write_text(yaml.safe_dump(raw))
    one_sentence(cli("--db", str(tmp_path / "x.db"), "plan", str(config)), "evil.pt", "posix.system")
    assert not marker.exists()


def test_recipe_values_are_finite_and_bounded(tmp_path, tiny_cifar):
    recipe = tmp_path / "r.yaml"
    for line, words in (
        ("lr: .inf", "lr is inf"),
        ("epochs: true", "epochs is True"),
        ("batch_size: 10000000", "batch_size is 10000000"),
        ("seed: " + "9" * 30, "seed is"),
    ):
        recipe.write_text(line + "\n")
        one_sentence(
            cli("train", "--preset", "baseline", "--data", str(tiny_cifar), "--recipe", str(recipe)),
            *words.split(" is "),
        )
    recipe.write_bytes(b"lr: caf\xe9\n")
    one_sentence(cli("train", "--preset", "baseline", "--data", str(tiny_cifar), "--recipe", str(recipe)), "UTF-8")


# --- run directories --------------------------------------------------------------------------


def test_a_damaged_or_planted_golden_cache_is_recomputed_not_loaded(tmp_path):
    from fi_campaign.engine.executors.processes import _cached

    meta, cache = tmp_path / "golden.json", tmp_path / "golden.npy"
    golden = np.arange(20, dtype=np.float32).reshape(2, 10)
    np.save(cache, golden)
    meta.write_text(json.dumps({"key": "k", "runs": 3, "slowest_s": 1.5}))
    got = _cached(meta, cache, "k", 3)
    assert got is not None and np.array_equal(got[0], golden) and got[1] == 1.5
    for bad in (
        "not json",
        json.dumps([1]),
        json.dumps({"key": "k", "runs": "3", "slowest_s": 1.5}),
        json.dumps({"key": "k", "runs": 3, "slowest_s": float("nan")}),
        json.dumps({"key": "k", "runs": 3}),
    ):
        meta.write_text(bad)
        assert _cached(meta, cache, "k", 3) is None, bad
    meta.write_text(json.dumps({"key": "k", "runs": 3, "slowest_s": 1.5}))
    marker = tmp_path / "MARKER"
    np.save(cache, np.array([RunsShell(marker)], dtype=object), allow_pickle=True)
    assert _cached(meta, cache, "k", 3) is None and not marker.exists()


def test_the_workload_program_refuses_bad_run_files_in_one_sentence(tmp_path):
    marker = tmp_path / "MARKER"
    root = tmp_path / "root"
    root.mkdir()
    (root / "workload.json").write_text(
        json.dumps({"checkpoint": "zoo:resnet20-cifar10-baseline", "batch_size": 4, "device": "cpu", "fault_model": {}})
    )
    np.save(root / "images.npy", np.array([RunsShell(marker)], dtype=object), allow_pickle=True)
    cmd = [sys.executable, "-m", "fi_campaign.workload.program", str(root), "--out", str(tmp_path / "o.npy")]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and p.stderr.strip().count("\n") == 0, p.stderr
    assert "images.npy" in p.stderr and "Traceback" not in p.stderr and not marker.exists()
    (root / "workload.json").write_text("{broken")
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "workload.json" in p.stderr and "Traceback" not in p.stderr, p.stderr
