"""Half-precision networks (issue 28): a model runs in float16 or bfloat16 (``dtype``), single_bit
flips one of that format's 16 bits in the native tensor, warp_random rounds its product back to
the format, and plan, run (batched, one at a time, resumed, process-isolated), export and report
all see the format. Bad dtypes and checkpoint mappings are one sentence naming the key."""

from __future__ import annotations

import csv
import dataclasses
import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner

from bench.own_networks import project
from fi_campaign.cli import main
from fi_campaign.config import ConfigError, parse
from fi_campaign.engine import runner
from fi_campaign.models.faults import BitFlips, WarpValues, draw_sites, warp_geometry
from fi_campaign.models.formats import number_format, width
from fi_campaign.models.powerlaw import PowerLaw
from fi_campaign.store import ModelRecord, Store

ZOO = "zoo:resnet20-cifar10-baseline"
SITES = (
    "SELECT s.model, s.mode, s.layer, s.image, s.element, s.bit, s.width, s.value_seed, r.outcome, "
    "r.images_changed, r.nan, r.max_abs_diff, r.semantics FROM site s LEFT JOIN result r ON r.site_id = s.id "
    "ORDER BY s.id"
)


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def sites_and_outcomes(db: Path) -> list[tuple]:
    with sqlite3.connect(db) as con:
        return con.execute(SITES).fetchall()


def one_sentence(code: int, out: str, *words: str) -> None:
    assert code == 2, out
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "Traceback" not in out, out
    for w in words:
        assert w in out, out


# --- the bits of a half-precision value --------------------------------------------------------

ONE = {torch.bfloat16: 0x3F80, torch.float16: 0x3C00}
# (bit, pattern after the flip, value): the lowest exponent bit halves 1.0, the highest makes it
# inf (exponent all ones, mantissa zero), the sign negates it
IEEE = {
    torch.bfloat16: [(7, 0x3F00, 0.5), (14, 0x7F80, float("inf")), (15, 0xBF80, -1.0), (6, 0x3FC0, 1.5)],
    torch.float16: [(10, 0x3800, 0.5), (14, 0x7C00, float("inf")), (15, 0xBC00, -1.0), (9, 0x3E00, 1.5)],
}


def patterns(t: torch.Tensor) -> np.ndarray:
    return t.contiguous().view(torch.int16).numpy().astype(np.int64) & 0xFFFF


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bfloat16", "float16"])
def test_a_flipped_bit_changes_the_value_as_ieee_says(dtype):
    for bit, pattern, value in IEEE[dtype]:
        out = BitFlips.one(layer=0, element=1, bit=bit).apply(0, torch.ones(1, 3, dtype=dtype))
        assert out.dtype == dtype and patterns(out)[0, 1] == pattern and float(out[0, 1]) == value
        assert patterns(out)[0, 0] == patterns(out)[0, 2] == ONE[dtype]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bfloat16", "float16"])
def test_every_one_of_the_16_positions_xors_exactly_that_bit(dtype):
    """Sixteen rows of one batch, row b flipping bit b of its element b, of a 4-D activation;
    values of both signs, so the sign bit (1 << 15, negative as an int16) is set and cleared."""
    x = torch.randn(16, 2, 3, 3, generator=torch.Generator().manual_seed(3)).to(dtype)
    before = patterns(x).reshape(16, -1)
    rows = np.arange(16)
    out = BitFlips(np.zeros(16, dtype=np.int64), rows, rows, rows).apply(0, x.clone())
    after = patterns(out).reshape(16, -1)
    expected = before.copy()
    expected[rows, rows] ^= 1 << rows
    assert np.array_equal(after, expected)
    assert {int(v >> 15) for v in before[rows, rows]} == {0, 1}  # both signs were flipped


def test_a_bit_outside_the_format_is_refused():
    with pytest.raises(ValueError, match="bit 16"):
        BitFlips.one(layer=0, element=0, bit=16).apply(0, torch.ones(1, 2, dtype=torch.bfloat16))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bfloat16", "float16"])
def test_warp_random_applies_its_error_in_float64_and_rounds_back_to_the_format(dtype):
    x = (torch.rand(2, 64, generator=torch.Generator().manual_seed(1)) + 0.5).to(dtype)
    rng = np.random.default_rng(4)
    u, signs = rng.random((1, 32)), np.where(rng.random((1, 32)) < 0.5, -1.0, 1.0)
    law = PowerLaw(1e-3, 2.5)
    batch = WarpValues(np.array([0]), np.array([1]), np.array([32]), np.array([32]), u, signs, (law, law, law))
    out = batch.apply(0, x.clone())
    assert out.dtype == dtype
    old = x[1, 32:].double().numpy()
    r = batch.relative_errors(np.array([0]), old[None])[0]
    expected = torch.from_numpy((old * (1.0 + signs[0] * r)).astype(np.float32)).to(dtype)
    assert np.array_equal(patterns(out[1, 32:]), patterns(expected))
    assert not np.array_equal(patterns(out[1, 32:]), patterns(x[1, 32:]))  # the errors show in 16 bits
    assert np.array_equal(patterns(out[0]), patterns(x[0]))  # another row and another warp: untouched
    assert np.array_equal(patterns(out[1, :32]), patterns(x[1, :32]))


def test_sites_draw_bits_within_the_width_and_float32_draws_as_before():
    from fi_campaign.models.faults import LayerInfo
    from fi_campaign.plan.strata import framework_strata

    layers = [LayerInfo(0, "a", "conv", (4, 8, 8), 256, 256 * 9), LayerInfo(1, "b", "linear", (10,), 10, 640)]
    half = draw_sites(layers, "single_bit", 4000, 5, "elements", np.random.default_rng(1), bits=16)
    assert set(half["bit"].tolist()) == set(range(16))
    full = draw_sites(layers, "single_bit", 4000, 5, "elements", np.random.default_rng(1))
    rng = np.random.default_rng(1)  # the float32 draw is the one every earlier version made
    rng.choice(2, size=4000, p=[256 / 266, 10 / 266])
    rng.integers(0, 5, size=4000)
    for k in full["layer"]:
        rng.integers(0, layers[k].numel)
    assert np.array_equal(full["bit"], rng.integers(0, 32, size=4000))
    strata = framework_strata(["a", "b"], [0.5, 0.5], ("bit",), bits=16)
    assert [s.bit for s in strata] == list(range(16)) and all(s.weight == 1 / 16 for s in strata)


def test_each_format_names_its_fields():
    fields = {
        "float32": ("mantissa", 0, 22, "exponent", 23, 30, "sign", 31),
        "float16": ("mantissa", 0, 9, "exponent", 10, 14, "sign", 15),
        "bfloat16": ("mantissa", 0, 6, "exponent", 7, 14, "sign", 15),
    }
    for dtype, (m, m0, m1, e, e0, e1, s, s0) in fields.items():
        f = number_format(dtype)
        assert {f.field(b) for b in range(m0, m1 + 1)} == {m} and {f.field(b) for b in range(e0, e1 + 1)} == {e}
        assert f.field(s0) == s and width(dtype) == s0 + 1


# --- config keys and records ---------------------------------------------------------------------


def test_the_checkpoint_mapping_and_the_build_dtype_survive_the_stored_config():
    from fi_campaign.config import Config
    from fi_campaign.models.sources import Checkpoint, ModelSource

    c = parse(
        yaml.safe_load(
            f"models: {{a: {{checkpoint: '{ZOO}', dtype: bfloat16}}, b: {{build: x.py:f, dtype: float16}}, "
            f"c: {{checkpoint: '{ZOO}'}}, d: '{ZOO}'}}"
        ),
        "c.yaml",
    )
    assert c.models["a"] == Checkpoint(checkpoint=ZOO, dtype="bfloat16")
    assert isinstance(c.models["b"], ModelSource) and c.models["b"].dtype == "float16"
    assert c.models["c"] == Checkpoint(checkpoint=ZOO) and c.models["d"] == ZOO
    assert Config.from_json(c.to_json()) == c


BAD = [
    (f"{{checkpoint: '{ZOO}', dtype: int8}}", "models.a.dtype is 'int8'; it must be float32, float16 or bfloat16"),
    (f"{{checkpoint: '{ZOO}', dtype: 5}}", "models.a.dtype is 5; it must be float32, float16 or bfloat16"),
    ("{build: x.py:f, dtype: half}", "models.a.dtype is 'half'; it must be float32, float16 or bfloat16"),
    (f"{{checkpoint: '{ZOO}', dtyp: bfloat16}}", "models.a: unknown key 'dtyp' (known: checkpoint, dtype)"),
    ("{dtype: bfloat16}", "models.a.checkpoint is missing"),
    ("{dtyp: bfloat16}", "models.a: unknown key 'dtyp'"),
    ("{checkpoint: 5}", "models.a.checkpoint is 5"),
    (f"{{checkpoint: '{ZOO}', build: x.py:f}}", "models.a gives checkpoint and build"),
]


@pytest.mark.parametrize("mapping,words", BAD, ids=[b[0] for b in BAD])
def test_bad_dtypes_and_checkpoint_mappings_are_one_sentence_naming_the_key(mapping, words):
    with pytest.raises(ConfigError) as e:
        parse(yaml.safe_load(f"models: {{a: {mapping}}}"), "c.yaml")
    assert str(e.value).startswith("c.yaml: ") and words in str(e.value)
    assert "\n" not in str(e.value)


def test_a_bad_dtype_exits_2_through_the_cli_and_stores_nothing(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"models": {"a": {"checkpoint": ZOO, "dtype": "int8"}}}))
    one_sentence(*cli("--db", str(tmp_path / "c.db"), "plan", str(cfg)), "models.a.dtype", "'int8'")
    assert not (tmp_path / "c.db").exists()


def test_nvbitfi_refuses_a_half_network_naming_its_dtype(tmp_path):
    raw = {"models": {"a": ZOO, "b": {"checkpoint": ZOO, "dtype": "float16"}}, "modes": ["single_bit"]}
    raw |= {"backend": "nvbitfi", "device": "cuda"}
    with pytest.raises(ConfigError, match=r"models\.b\.dtype is float16, but backend nvbitfi flips bits of FP32"):
        parse(raw, "c.yaml")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    one_sentence(*cli("--db", str(tmp_path / "c.db"), "plan", str(cfg)), "models.b.dtype")


def test_model_records_before_dtypes_read_as_float32():
    from fi_campaign.models.arch import Arch

    old = {
        "checkpoint": ZOO,
        "sha256": "ab",
        "arch": Arch().to_dict(),
        "dataset": "cifar10",
        "clean_accuracy": 0.9,
        "accuracy_on": "x",
    }
    record = ModelRecord.from_dict(old)
    assert record.dtype == "float32" and record.to_dict() == old  # written back exactly as it was
    half = dataclasses.replace(record, dtype="bfloat16")
    assert half.to_dict()["dtype"] == "bfloat16" and ModelRecord.from_dict(half.to_dict()) == half


# --- campaigns ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def user(tmp_path_factory) -> Path:
    return project(tmp_path_factory.mktemp("user-project"))


def half_config(folder: Path, user: Path, name: str = "half", **keys: object) -> Path:
    """The zoo ResNet-20 in bfloat16 and a user's build (a small conv net, any image size) in
    float16, on eight CIFAR-10 test images."""
    raw = {
        "name": name,
        "seed": 3,
        "injections": 16,
        "batch_size": 8,
        "models": {
            "bf": {"checkpoint": ZOO, "dtype": "bfloat16"},
            "fp": {"build": f"{user / 'build.py'}:small", "dtype": "float16"},
        },
        "images": {"source": "bundled", "count": 8, "seed": 2},
    } | keys
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_half_campaigns_plan_run_export_and_report_in_their_format(tmp_path, user):
    db = tmp_path / "c.db"
    code, out = cli("--db", str(db), "plan", str(half_config(tmp_path, user)))
    assert code == 0, out
    assert "models.bf runs in bfloat16: single_bit flips one of its 16 bits." in out
    assert "models.fp runs in float16" in out
    record = Store.open(str(db)).campaign()
    assert record.models["bf"].dtype == "bfloat16" and record.models["bf"].arch is not None
    assert record.models["fp"].dtype == "float16" and record.models["fp"].source is not None
    assert record.models["fp"].source.dtype == "float16"
    code, out = cli("--db", str(db), "run", "--workers", "1")
    assert code == 0 and "runs whole passes" not in out, out  # delayed start captures both networks
    rows = sites_and_outcomes(db)
    assert len(rows) == 64 and all(r[8] is not None for r in rows)  # every site has its outcome
    flips = [r for r in rows if r[1] == "single_bit"]
    assert all(0 <= r[5] < 16 for r in flips) and len({r[5] for r in flips}) >= 10
    assert {r[12] for r in flips} == {
        "framework: xor one bit of one bfloat16 conv/linear output",
        "framework: xor one bit of one float16 conv/linear output",
    }
    assert len({r[8] for r in rows}) >= 2  # the faults did something

    code, out = cli("--db", str(db), "export", str(tmp_path / "inj.csv"))
    assert code == 0, out
    with open(tmp_path / "inj.csv") as f:
        exported = list(csv.DictReader(f))
    assert len(exported) == 64 and all(0 <= int(r["bit"]) < 16 for r in exported if r["mode"] == "single_bit")

    code, out = cli("--db", str(db), "report", "--avf", "--json", str(tmp_path / "r.json"))
    assert code == 0, out
    assert "Number formats: bf runs in bfloat16" in " ".join(out.split())
    stored = json.loads((tmp_path / "r.json").read_text())["stores"][0]
    assert {k: m.get("dtype") for k, m in stored["identity"]["models"].items()} == {"bf": "bfloat16", "fp": "float16"}
    bits = stored["causes"]["bits"]
    assert {(b["model"], b["dtype"]) for b in bits} == {("bf", "bfloat16"), ("fp", "float16")}
    fields = {(b["model"], b["bit"]): b["field"] for b in bits}
    assert fields == {(m, bit): number_format(dtype).field(bit) for (m, bit), dtype in _dtypes(bits).items()}
    assert {f for (m, bit), f in fields.items() if m == "bf" and 7 <= bit <= 14} == {"exponent"}
    assert {f for (m, bit), f in fields.items() if m == "fp" and bit <= 9} == {"mantissa"}


def _dtypes(bits: list[dict]) -> dict[tuple[str, int], str]:
    return {(b["model"], b["bit"]): {"bf": "bfloat16", "fp": "float16"}[b["model"]] for b in bits}


def test_a_torchscript_file_runs_in_bfloat16_through_the_checkpoint_mapping(tmp_path, user):
    """The mapping's checkpoint names what a string names, a TorchScript file here: loaded,
    recorded and run in the mapping's dtype."""
    import warnings

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(8, 5),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.save is deprecated in favour of torch.export
        torch.jit.save(torch.jit.script(net.eval()), tmp_path / "small.pt")
    raw = {"name": "ts", "seed": 1, "injections": 8, "batch_size": 4, "modes": ["single_bit"]}
    raw |= {"models": {"n": {"checkpoint": str(tmp_path / "small.pt"), "dtype": "bfloat16"}}}
    raw |= {"inputs": {"source": str(user / "small.npy"), "count": 8}}
    cfg, db = tmp_path / "ts.yaml", tmp_path / "ts.db"
    cfg.write_text(yaml.safe_dump(raw))
    assert cli("--db", str(db), "plan", str(cfg))[0] == 0
    info = Store.open(str(db)).campaign().models["n"]
    assert info.dtype == "bfloat16" and info.source is not None and info.source.kind == "torchscript"
    assert info.source.dtype == "bfloat16"
    code, out = cli("--db", str(db), "run", "--workers", "1")
    assert code == 0, out
    rows = sites_and_outcomes(db)
    assert len(rows) == 8 and all(r[8] is not None and 0 <= r[5] < 16 for r in rows)


def test_sizing_and_bit_strata_count_16_bits_of_a_half_network(tmp_path, user):
    """``plan --margin`` counts 16 fault sites per output value of a half network (32 of a
    float32 one), and stratifying by bit makes 16 strata of 1/16 each."""
    from fi_campaign.config import load
    from fi_campaign.plan.planner import size

    cfg = half_config(tmp_path, user, injections=4, modes=["single_bit"])
    raw = yaml.safe_load(cfg.read_text())
    raw["models"]["full"] = ZOO
    cfg.write_text(yaml.safe_dump(raw))
    sized = {z.model: z.population for z in size(load(str(cfg)), 0.01, 0.95)}
    assert sized["bf"] * 2 == sized["full"]  # the same ResNet-20 outputs, half the bits each
    assert sized["fp"] % 16 == 0 and sized["fp"] > 0

    raw["models"] = {"fp": raw["models"]["fp"]}
    raw["sampling"] = {"method": "stratified", "by": "bit"}
    cfg.write_text(yaml.safe_dump(raw))
    db = tmp_path / "s.db"
    code, out = cli("--db", str(db), "plan", str(cfg))
    assert code == 0 and "(16 strata)" in out, out
    with sqlite3.connect(db) as con:
        strata = con.execute("SELECT DISTINCT stratum, stratum_weight, bit FROM site").fetchall()
    assert sorted((label, bit) for label, _, bit in strata) == sorted((f"bit={b}", b) for b in range(16))
    assert {w for _, w, _ in strata} == {1 / 16}


@pytest.mark.parametrize(
    "model",
    ["fp", pytest.param("bf", marks=pytest.mark.slow)],  # bf: about 20 s of bfloat16 convolutions on the CPU
    ids=["float16-build", "bfloat16-resnet20"],
)
def test_batched_half_injections_equal_one_at_a_time(tmp_path, user, model):
    """Vectorisation stays sound in half precision: a site's outcome does not depend on the
    other faults in its batch."""
    cfg = half_config(tmp_path, user, injections=6, batch_size=4, images={"source": "bundled", "count": 4, "seed": 2})
    raw = yaml.safe_load(cfg.read_text())
    raw["models"] = {model: raw["models"][model]}
    cfg.write_text(yaml.safe_dump(raw))
    batched, single = tmp_path / "batched.db", tmp_path / "single.db"
    for db in (batched, single):
        assert cli("--db", str(db), "plan", str(cfg))[0] == 0
    assert cli("--db", str(batched), "run", "--workers", "1")[0] == 0
    runner.run(Store.open(single), model=model, chunk=1)
    rows = sites_and_outcomes(single)
    assert len(rows) == 12 and all(r[8] is not None for r in rows)
    assert rows == sites_and_outcomes(batched) and len({r[8] for r in rows}) >= 2


def test_the_bit_figure_marks_each_formats_fields():
    from fi_campaign.report.causes import bit_rows
    from fi_campaign.report.plots import bit_figure
    from fi_campaign.store import BitGroup

    groups = [
        BitGroup(model="bf", mode="single_bit", bit=14, outcome="critical_sdc", count=2, nan=2),
        BitGroup(model="bf", mode="single_bit", bit=3, outcome="masked", count=5, nan=0),
        BitGroup(model="fp", mode="single_bit", bit=10, outcome="masked", count=5, nan=0),
    ]
    rows = bit_rows(["bf", "fp"], ["single_bit"], groups, {"bf": "bfloat16", "fp": "float16"})
    assert [(r.bit, r.field) for r in rows] == [(3, "mantissa"), (14, "exponent"), (10, "exponent")]
    fig = bit_figure(rows)
    fig.canvas.draw()
    label = fig.axes[-1].get_xlabel()
    assert "bfloat16: 0-6 mantissa, 7-14 exponent, 15 sign" in label
    assert "float16: 0-9 mantissa, 10-14 exponent, 15 sign" in label
    ticks = {t.get_text() for t in fig.axes[-1].get_xticklabels() if t.get_visible()}
    assert {str(b) for b in range(16)} <= ticks and "16" not in ticks
    edges = sorted(float(np.asarray(ln.get_xdata())[0]) for ln in fig.axes[0].get_lines() if ln.get_linestyle() == ":")
    assert edges == [6.5, 14.5]  # bfloat16's mantissa | exponent | sign


# --- delayed start and process isolation -----------------------------------------------------------


@pytest.fixture(scope="module")
def bf16_resnet():
    """The zoo ResNet-20 in bfloat16 on four CIFAR-10 test images, every resume point kept."""
    from fi_campaign.models import zoo
    from fi_campaign.models.data import normalise
    from fi_campaign.models.resume import resume_points
    from fi_campaign.models.sources import in_dtype
    from fi_campaign.workload.images import workload_images
    from fi_campaign.workload.model import Workload

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    images, _ = workload_images("bundled", 4, 0)
    x = normalise(images.images, images.dataset).to(torch.bfloat16)
    model, meta = zoo.load(ZOO)
    half = in_dtype(model, "bfloat16")
    w = Workload.of_model(half, meta, x, 4, resume_layers=list(range(len(resume_points(half)))))
    yield w
    w.close()
    torch.set_num_threads(threads)


def test_delayed_start_gives_the_whole_bfloat16_pass_bit_for_bit(bf16_resnet):
    from fi_campaign.models.faults import describe_layers

    w = bf16_resnet
    assert w.graph is not None and w.values is not None and w.inputs.dtype == torch.bfloat16
    infos = describe_layers(w.model)
    rows = np.arange(4)
    changed = 0
    law = PowerLaw(2.0, 1.454)
    for k in (0, 2, 7, 8, len(infos) - 3, len(infos) - 1):
        rng = np.random.default_rng(k)
        at = np.full(4, k)
        flips = BitFlips(at, rows, rng.integers(0, infos[k].numel, 4), rng.integers(4, 16, 4))
        starts = np.array([warp_geometry(infos[k], int(i))[0] for i in rng.integers(0, infos[k].warps, 4)])
        warps = WarpValues(
            at,
            rows,
            starts,
            np.minimum(32, infos[k].numel - starts),
            rng.random((4, 32)),
            np.where(rng.random((4, 32)) < 0.5, -1.0, 1.0),
            (law, law, law),
        )
        for faults in (flips, warps):
            resumed, whole = w.forward(rows, faults), w.forward(rows, faults, resume=False)
            assert resumed.dtype == np.float32 and resumed.tobytes() == whole.tobytes(), k
            changed += resumed.tobytes() != w.golden.tobytes()
    assert changed >= 6


@pytest.mark.slow  # about 30 s: two bfloat16 ResNet-20 campaigns on the CPU
def test_a_resumed_bfloat16_campaign_equals_whole_passes_site_for_site(tmp_path, user, monkeypatch):
    from fi_campaign.models.graph_resume import GraphResumer

    tails: list[int] = []
    tail = GraphResumer.tail

    def counted(self, point, *a):
        tails.append(point)
        return tail(self, point, *a)

    monkeypatch.setattr(GraphResumer, "tail", counted)
    out = {}
    for resume in (True, False):
        cfg = {"name": f"r{resume}", "seed": 9, "injections": 48, "batch_size": 8, "resume": resume}
        cfg |= {"models": {"bf": {"checkpoint": ZOO, "dtype": "bfloat16"}}, "images": {"source": "bundled", "count": 8}}
        path = tmp_path / f"r{resume}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        db = tmp_path / f"r{resume}.db"
        assert cli("--db", str(db), "plan", str(path))[0] == 0
        runner.run(Store.open(db))
        out[resume] = sites_and_outcomes(db)
        assert bool(tails) == resume
        tails.clear()
    assert out[True] == out[False] and len({r[8] for r in out[True]}) >= 2


def test_the_workload_program_runs_the_recorded_dtype(tmp_path, user):
    """Process isolation loads the model as the campaign recorded it: the program's golden and
    faulted outputs equal the in-process ones bit for bit, for the bfloat16 zoo ResNet-20."""
    from fi_campaign.engine.executors.inprocess import fault_batch
    from fi_campaign.workload import program
    from fi_campaign.workload.model import Workload

    db = tmp_path / "c.db"
    cfg = half_config(tmp_path, user, injections=2, modes=["single_bit"])
    assert cli("--db", str(db), "plan", str(cfg))[0] == 0
    store = Store.open(str(db))
    record = store.campaign()
    info = record.models["bf"]
    root = program.write_root(tmp_path / "root", info, "bf", record.workload, 8, "cpu", record.fault_model)
    assert json.loads((root / "workload.json").read_text())["dtype"] == "bfloat16"
    w = Workload.open_recorded(info, "bf", record.workload, "cpu", 8)
    assert w.inputs.dtype == torch.bfloat16 and next(w.model.parameters()).dtype == torch.bfloat16
    assert program.main([str(root), "--out", str(tmp_path / "golden.npy")]) == 0
    assert np.load(tmp_path / "golden.npy").tobytes() == w.golden.tobytes()
    site = store.claim("bf", "single_bit", 1, "test", 60.0)[0]
    (tmp_path / "fault.json").write_text(json.dumps(dataclasses.asdict(site)))
    assert program.main([str(root), str(tmp_path / "fault.json"), "--out", str(tmp_path / "faulty.npy")]) == 0
    faulty = np.load(tmp_path / "faulty.npy")
    mine = w.forward(np.array([site.image]), fault_batch([site], record.fault_model), resume=False)
    assert faulty[site.image].tobytes() == mine[0].tobytes()
    others = np.arange(8) != site.image
    assert faulty[others].tobytes() == w.golden[others].tobytes()
    w.close()
