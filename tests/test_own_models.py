"""Campaigns on the user's own network and data (issue 25): build files that import the user's
own ``models`` package, TorchScript and exported programs, weights, tensor and image-folder
inputs, target selection, judges, the one-sentence refusals, and the four networks of the issue
run in process (resumed from their captured graph, and whole passes) and process-isolated with the
same outcome site for site."""

from __future__ import annotations

import csv
import dataclasses
import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from bench.own_networks import NETWORKS, config, project
from fi_campaign.cli import main
from fi_campaign.config import Config
from fi_campaign.store import ModelRecord, Store
from fi_campaign.workload.model import Workload

RESULT = (
    "SELECT s.id, s.mode, s.layer, s.layer_name, s.image, s.element, s.bit, s.width, s.value_seed, r.outcome, "
    "r.images_changed, r.nan, r.max_abs_diff, r.golden_top1, r.faulty_top1 FROM site s JOIN result r "
    "ON r.site_id = s.id ORDER BY s.id"
)


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def one_sentence(code: int, out: str, *words: str) -> None:
    """Exit 2 and one sentence naming ``words``, no traceback; a run's progress lines may come before it."""
    assert code == 2, out
    lines = [line for line in out.splitlines() if line.strip()]
    assert lines[-1].startswith("Error: ") and sum(line.startswith("Error") for line in lines) == 1, out
    assert "Traceback" not in out and all(" inj" in line or ": 0/" in line for line in lines[:-1]), out
    for w in words:
        assert w in lines[-1], out


def results(db: Path) -> list[tuple]:
    with sqlite3.connect(db) as con:
        return con.execute(RESULT).fetchall()


def planned_and_run(db: Path, cfg: Path, *run: str) -> str:
    """What plan and run say."""
    code, out = cli("--db", str(db), "plan", str(cfg))
    assert code == 0, out
    code, ran = cli("--db", str(db), "run", "--workers", "1", *run)
    assert code == 0, ran
    return out + ran


@pytest.fixture(scope="module")
def user(tmp_path_factory) -> Path:
    return project(tmp_path_factory.mktemp("user-project"))


# --- the four networks --------------------------------------------------------------------------

EXPECTED_TARGETS = {
    "resnet18": {"conv1", "layer1.0.conv1", "layer4.1.conv2", "layer2.0.downsample.0", "fc"},
    "mobilenet": {"features.0.0", "features.1.block.1.fc1", "classifier.0", "classifier.3"},
    "vit": {"conv_proj", "encoder.layers.encoder_layer_0.mlp.0", "heads.head"},
    "tagger": {"encoder.layers.0.linear1", "encoder.layers.1.linear2", "head"},
}


@pytest.mark.parametrize("network", list(NETWORKS))
def test_each_network_runs_in_process(tmp_path, user, network):
    """Planned from a build file that imports the user's own ``models`` package, its targets
    named by qualified module name, every site run and judged."""
    inputs, judge = NETWORKS[network]
    db = tmp_path / "c.db"
    out = planned_and_run(db, config(user, network, network, inputs, judge=judge))
    record = Store.open(str(db)).campaign().models[network]
    assert record.source is not None and record.source.kind == "build" and record.arch is None
    assert record.targets is not None and EXPECTED_TARGETS[network] <= set(record.targets.names)
    rows = results(db)
    assert len(rows) == 16 and {r[3] for r in rows} <= set(record.targets.names)
    assert all(record.targets.names[r[2]] == r[3] for r in rows)
    if network in ("vit", "tagger"):  # attention uses out_proj's weights without calling it
        assert "out_proj never runs in the forward pass" in out
    assert "runs whole passes" not in out  # delayed start captures each of them


def open_resumed(db: Path, name: str, budget_mb: int = 512) -> Workload:
    from fi_campaign.engine.executors.inprocess import graph_budget

    record = Store.open(str(db)).campaign()
    config = dataclasses.replace(Config.from_json(record.config), resume_cache_mb=budget_mb)
    graph = graph_budget(record, config, name)
    assert graph is not None
    return Workload.open_recorded(record.models[name], name, record.workload, "cpu", config.batch_size, graph=graph)


def resumed_and_whole(w: Workload, db: Path, name: str) -> tuple[int, int]:
    """Every planned site, in passes of one layer's sites as the runner hands them, resumed and
    as whole passes: the outputs must be equal bit for bit. Returns the passes that resumed
    from a kept point and the passes in all."""
    from fi_campaign.engine.executors.inprocess import fault_batch
    from fi_campaign.engine.grouping import layer_chunks

    store = Store.open(str(db))
    record = store.campaign()
    resumed = passes = 0
    assert w.values is not None and w.point_of is not None
    for mode in Config.from_json(record.config).modes:
        sites = store.claim(name, mode, 1000, "test", 60.0)
        for chunk in layer_chunks(sites, w.batch_size):
            faults = fault_batch(chunk, record.fault_model)
            rows = np.array([s.image for s in chunk])
            a, b = w.forward(rows, faults), w.forward(rows, faults, resume=False)
            assert a.tobytes() == b.tobytes(), [s.layer_name for s in chunk]
            resumed += w.values.start_for(int(w.point_of[faults.layers].min())) is not None
            passes += 1
    return resumed, passes


@pytest.mark.parametrize("network", list(NETWORKS))
def test_resumed_passes_equal_whole_passes_bit_for_bit(tmp_path, user, network):
    """Delayed start on the captured graph of each network: every planned site's faulted pass,
    started from the golden values of a kept point, gives the whole pass's outputs bit for bit."""
    inputs, judge = NETWORKS[network]
    db = tmp_path / "c.db"
    code, out = cli("--db", str(db), "plan", str(config(user, network, network, inputs, judge=judge, injections=12)))
    assert code == 0, out
    w = open_resumed(db, network)
    assert w.note is None and w.graph is not None and w.values is not None
    assert w.values.kept == [p.index for p in w.graph.points if p.why_not is None]  # all fit in 512 MB
    resumed, passes = resumed_and_whole(w, db, network)
    assert resumed == passes  # the first point is kept: every pass resumes
    w.close()


def test_a_tight_memory_bound_keeps_some_points_and_starts_the_others_earlier(tmp_path, user):
    db = tmp_path / "c.db"
    code, out = cli("--db", str(db), "plan", str(config(user, "resnet18", "resnet18", "img64.npy", injections=12)))
    assert code == 0, out
    w = open_resumed(db, "resnet18", budget_mb=4)
    assert w.graph is not None and w.values is not None
    assert 0 < len(w.values.kept) < len(w.graph.points) and w.values.nbytes <= 4 * 2**20
    # the start-up makes the tails of the kept points, and only theirs: no pass pays for one
    assert [i for i, p in enumerate(w.graph._points) if p.tail is not None] == w.values.kept
    resumed, passes = resumed_and_whole(w, db, "resnet18")
    assert 0 < resumed <= passes
    w.close()


def test_a_network_fx_cannot_capture_runs_whole_passes_with_one_note(tmp_path, user):
    """Python code deciding on tensor values cannot be captured: the run says so once, runs
    whole passes, and its outcomes are those of resume: false."""
    db, whole = tmp_path / "c.db", tmp_path / "whole.db"
    said = planned_and_run(db, config(user, "gated", "gated", "small.npy"))
    notes = [line for line in said.splitlines() if "runs whole passes" in line]
    assert notes == [
        "Note: models.gated runs whole passes: delayed start cannot capture this network: its Python code "
        "decides on tensor values (at node gt), which may go another way for other images."
    ], said
    planned_and_run(whole, config(user, "gated", "gated", "small.npy", resume=False))
    assert results(db) == results(whole) and len(results(db)) == 16


@pytest.mark.slow
@pytest.mark.parametrize("network", list(NETWORKS))
def test_process_isolated_outcomes_equal_in_process(tmp_path, user, network):
    """The same sites run in process (resumed, and whole passes) and one workload process each
    give the same outcome, classes and difference, site for site."""
    inputs, judge = NETWORKS[network]
    keys = {"judge": judge, "injections": 3, "golden_runs": 2}
    said = planned_and_run(tmp_path / "in.db", config(user, network, network, inputs, **keys))
    planned_and_run(tmp_path / "whole.db", config(user, network, network, inputs, **keys, resume=False))
    planned_and_run(tmp_path / "proc.db", config(user, network, network, inputs, **keys), "--isolation", "process")
    inproc, entire, proc = results(tmp_path / "in.db"), results(tmp_path / "whole.db"), results(tmp_path / "proc.db")
    assert "runs whole passes" not in said
    assert len(inproc) == 6 and inproc == entire == proc


def test_a_site_replays_without_fi_campaign(tmp_path, user):
    """An exported site (layer, image, element, bit) is enough to replay it with plain torch:
    the input's row in the tensor file, a hook flipping the bit, the same batch shape."""
    import importlib.util
    import sys

    db = tmp_path / "c.db"
    planned_and_run(db, config(user, "small", "small", "small.npy", modes=["single_bit"], injections=12))
    assert cli("--db", str(db), "export", str(tmp_path / "x.csv"))[0] == 0
    with open(tmp_path / "x.csv") as f:
        rows = list(csv.DictReader(f))
    workload = Store.open(str(db)).campaign().workload
    assert {int(r["image"]) for r in rows} <= set(workload.indices)  # rows of small.npy, not of the draw
    sys.path.insert(0, str(user))
    try:
        spec = importlib.util.spec_from_file_location("replay_build", user / "build.py")
        assert spec is not None and spec.loader is not None
        build = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(build)
    finally:
        sys.path.remove(str(user))
    torch.manual_seed(0)  # the seed a build is called under
    net = build.small().eval()
    data = torch.from_numpy(np.load(user / "small.npy"))
    for r in rows:
        x = data[[int(r["image"])] + [int(workload.indices[0])] * 3]  # batch_size 4, padded with input 0
        element, bit = int(r["element"]), int(r["bit"])

        def flip(module, args, out, element=element, bit=bit):
            flat = out.contiguous().view(len(out), -1).view(torch.int32)
            flat[0, element] ^= np.int32(np.uint32(1) << np.uint32(bit)).item()
            return flat.view(torch.float32).view(out.shape)

        with torch.inference_mode():
            golden = net(x)[0]
            handle = dict(net.named_modules())[r["layer"]].register_forward_hook(flip)
            faulty = net(x)[0]
            handle.remove()
        assert float((faulty.double() - golden.double()).abs().max()) == float(r["max_abs_diff"]), r


# --- sources -------------------------------------------------------------------------------------


def _small_weights(user: Path) -> dict[str, torch.Tensor]:
    import importlib
    import sys

    sys.path.insert(0, str(user))
    try:
        nets = importlib.import_module("models.nets")
        torch.manual_seed(3)
        state = nets.small().state_dict()
    finally:
        sys.path.remove(str(user))
        for name in [m for m in sys.modules if m == "models" or m.startswith("models.")]:
            del sys.modules[name]
    return state


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_weights_are_loaded_and_recorded(tmp_path, user, suffix):
    from fi_campaign.models.zoo import weights_digest

    state = _small_weights(user)
    weights = tmp_path / f"w{suffix}"
    if suffix == ".pt":
        torch.save(state, weights)
    else:
        from safetensors.torch import save_file

        save_file(state, str(weights))
    model = {"build": f"{user / 'build.py'}:small", "weights": str(weights)}
    db = tmp_path / "c.db"
    planned_and_run(db, config(user, "w", model, "small.npy", injections=2))
    record = Store.open(str(db)).campaign().models["w"]
    assert record.sha256 == weights_digest(state)
    assert record.source is not None and record.source.weights == str(weights.resolve())
    assert record.source.weights_sha256 is not None and record.source.file_sha256


def test_torchscript_and_exported_programs_run_like_the_network(tmp_path, user):
    """A TorchScript file and a torch.export program of the same network plan the same targets
    (named as in the network) and the same sites, and judge them as the build does."""
    import importlib.util
    import sys

    state = _small_weights(user)
    weights = tmp_path / "w.pt"
    torch.save(state, weights)
    sys.path.insert(0, str(user))
    try:
        spec = importlib.util.spec_from_file_location("ts_build", user / "build.py")
        assert spec is not None and spec.loader is not None
        build = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(build)
        net = build.small()
    finally:
        sys.path.remove(str(user))
    net.load_state_dict(state)
    net.eval()
    torch.jit.save(torch.jit.script(net), str(tmp_path / "small.ts"))
    example = torch.zeros(4, 3, 12, 12)
    torch.export.save(torch.export.export(net, (example,)), str(tmp_path / "small.pt2"))
    runs, notes = {}, {}
    for name, model in (
        ("built", {"build": f"{user / 'build.py'}:small", "weights": str(weights)}),
        ("script", str(tmp_path / "small.ts")),
        ("exported", str(tmp_path / "small.pt2")),
    ):
        db = tmp_path / f"{name}.db"
        said = planned_and_run(db, config(user, "net", model, "small.npy", injections=10))
        notes[name] = [line for line in said.splitlines() if "runs whole passes" in line]
        record = Store.open(str(db)).campaign().models["net"]
        assert record.targets is not None
        assert record.targets.names == ("features.0", "features.2", "head")
        assert record.targets.kinds == ("conv", "conv", "linear")
        runs[name] = [r[1:] for r in results(db)]
    assert [r[:8] for r in runs["script"]] == [r[:8] for r in runs["built"]]  # the same sites
    assert runs["exported"] == runs["built"]
    assert [r[8] for r in runs["script"]] == [r[8] for r in runs["built"]]  # the same outcomes
    assert notes == {  # delayed start for the built network only
        "built": [],
        "script": [
            "Note: models.net runs whole passes: delayed start cannot capture a TorchScript program (torch.fx "
            "cannot trace its compiled code); build the network from its Python code to resume injections."
        ],
        "exported": [
            "Note: models.net runs whole passes: delayed start cannot capture a torch.export program (its forward "
            "takes a flattened tree of inputs, not one tensor); build the network from its Python code to resume "
            "injections."
        ],
    }


def test_image_folder_inputs_at_any_size(tmp_path, user):
    from PIL import Image

    folder = tmp_path / "photos"
    rng = np.random.default_rng(1)
    for cls in ("cat", "dog"):
        (folder / cls).mkdir(parents=True)
        for i in range(5):
            pixels = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / cls / f"{i}.png")
    inputs = {"source": str(folder), "size": 16, "count": 8, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}
    db = tmp_path / "c.db"
    planned_and_run(db, config(user, "pics", "small", inputs, injections=4))
    campaign = Store.open(str(db)).campaign()
    assert campaign.workload.kind == "imagefolder" and campaign.workload.size == 16
    assert campaign.models["pics"].targets is not None
    assert campaign.models["pics"].targets.input_shape == (3, 16, 16)
    assert campaign.models["pics"].clean_accuracy is not None  # the class folders are the labels
    from fi_campaign.workload.images import workload_inputs

    x = workload_inputs(campaign.workload)
    picked = sorted(f for c in ("cat", "dog") for f in (folder / c).iterdir())[campaign.workload.indices[0]]
    with Image.open(picked) as img:  # 40x30 -> 21x16, centre-cropped to 16x16
        expect = np.asarray(img.convert("RGB").resize((21, 16), Image.Resampling.BILINEAR).crop((2, 0, 18, 16)))
    assert np.allclose(x[0], (expect.transpose(2, 0, 1) / 255 - 0.5) / 0.25, atol=1e-6)


# --- targets -------------------------------------------------------------------------------------


def test_targets_select_by_type_name_and_exclude(tmp_path, user):
    db = tmp_path / "c.db"
    targets = {"types": ["Linear", "TransformerEncoderLayer"], "names": ["encoder.*"], "exclude": ["*.linear2"]}
    out = planned_and_run(
        db, config(user, "tagger", "tagger", "tokens.pt", judge="per_position", targets=targets, injections=6)
    )
    names = Store.open(str(db)).campaign().models["tagger"].targets.names  # type: ignore[union-attr]
    assert names == ("encoder.layers.0", "encoder.layers.0.linear1", "encoder.layers.1", "encoder.layers.1.linear1")
    assert "out_proj never runs" in out


def test_modules_returning_tuples_are_not_targets(tmp_path, user):
    cfg = config(user, "tagger", "tagger", "tokens.pt", judge="per_position", targets={"types": ["MultiheadAttention"]})
    code, out = cli("--db", str(tmp_path / "c.db"), "plan", str(cfg))
    one_sentence(code, out, "no module of models.tagger can be a target", "returns a tuple")


def test_a_network_that_mixes_the_batch_is_refused_unless_batch_size_is_1(tmp_path, user):
    db = tmp_path / "c.db"
    code, out = cli("--db", str(db), "plan", str(config(user, "mix", "mixes_rows", "small.npy")))
    one_sentence(code, out, "models.mix mixes the inputs of a batch", "batch_size: 1")
    assert not db.exists()
    planned_and_run(db, config(user, "mix", "mixes_rows", "small.npy", batch_size=1, injections=2))


# --- judges --------------------------------------------------------------------------------------

TOP1_AS_FUNCTION = '''
import numpy as np


def top1(golden, faulty):
    """critical when the class changes (a NaN score counts as a change), else an SDC if any value differs"""
    changed = (np.argmax(np.nan_to_num(faulty, nan=-np.inf), -1) != np.argmax(golden, -1)) | np.isnan(faulty).any(-1)
    differ = (faulty != golden).any(-1)
    return ["critical_sdc" if c else "tolerable_sdc" if d else "masked" for c, d in zip(changed, differ)]


def wrong_count(golden, faulty):
    return ["masked"]


def numbers(golden, faulty):
    return list(range(len(golden)))


def wrong_kind(golden, faulty):
    return ["masked" if (g == f).all() else "bad" for g, f in zip(golden, faulty)]
'''


def test_a_judge_function_judges_as_the_rule_it_implements(tmp_path, user):
    (tmp_path / "judges.py").write_text(TOP1_AS_FUNCTION)
    ours = config(user, "top1", "small", "small.npy", injections=30)
    theirs = config(user, "fn", "small", "small.npy", injections=30, judge=f"{tmp_path / 'judges.py'}:top1")
    theirs.write_text(theirs.read_text().replace("fn:", "top1:").replace("name: fn", "name: top1"))
    planned_and_run(tmp_path / "a.db", ours)
    planned_and_run(tmp_path / "b.db", theirs)
    a, b = results(tmp_path / "a.db"), results(tmp_path / "b.db")
    assert [r[9:11] for r in a] == [r[9:11] for r in b]
    assert {r[9] for r in a} >= {"critical_sdc", "tolerable_sdc"}


def test_a_judge_that_breaks_at_run_time_stops_the_run_and_loses_nothing(tmp_path, user):
    (tmp_path / "judges.py").write_text(TOP1_AS_FUNCTION)
    db = tmp_path / "c.db"
    cfg = config(user, "net", "small", "small.npy", injections=20, judge=f"{tmp_path / 'judges.py'}:wrong_kind")
    assert cli("--db", str(db), "plan", str(cfg))[0] == 0  # its golden outputs against themselves are fine
    code, out = cli("--db", str(db), "run", "--workers", "1")
    assert code == 2 and "returned 'bad'; each outcome must be one of masked" in out, out
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT count(*) FROM site").fetchone()[0] == 40
        assert con.execute("SELECT count(*) FROM site WHERE status = 'running'").fetchone()[0] == 0


# --- refusals ------------------------------------------------------------------------------------


def _bad_weights(user: Path, tmp: Path, what: str) -> str:
    state = _small_weights(user)
    if what == "missing":
        del state["head.bias"]
    elif what == "unexpected":
        state["extra.weight"] = torch.zeros(2)
    else:
        state["head.weight"] = torch.zeros(3, 8)
    path = tmp / f"{what}.pt"
    torch.save(state, path)
    return str(path)


REFUSED = [
    ("missing build file", {"build": "nosuch.py:small"}, "small.npy", {}, ["models.net.build", "does not exist"]),
    ("missing function", "nosuch", "small.npy", {}, ["models.net.build", "defines no function nosuch"]),
    ("build raises", "raises", "small.npy", {}, ["models.net.build", "raised RuntimeError: no GPU here"]),
    ("not a module", "not_a_module", "small.npy", {}, ["returned a int, not a torch.nn.Module"]),
    ("missing keys", "weights:missing", "small.npy", {}, ["models.net.weights", "missing keys head.bias"]),
    ("unexpected keys", "weights:unexpected", "small.npy", {}, ["unexpected keys extra.weight"]),
    ("wrong shapes", "weights:shape", "small.npy", {}, ["wrong shapes: head.weight (3x8 in the file, 5x8"]),
    ("not a program", "file:junk.pt2", "small.npy", {}, ["models.net", "is not a torch.export program"]),
    ("inputs refused", "small", "tokens.pt", {}, ["models.net refuses the campaign's inputs", "(4, 12), int64"]),
    ("judge count", "small", "small.npy", {"judge": "J:wrong_count"}, ["returned 1 values for 4 inputs"]),
    ("judge kind", "small", "small.npy", {"judge": "J:numbers"}, ["judge", "returned 0; each outcome must be one of"]),
    ("no such target", "small", "small.npy", {"targets": {"names": ["nosuch*"]}}, ["targets.names", "nosuch*"]),
    ("top1 on positions", "tagger", "tokens.pt", {}, ["judge: top1 needs one score per class"]),
    ("int8", {"build": "B:small", "dtype": "int8"}, "small.npy", {}, ["models.net.dtype", "float16 or bfloat16"]),
    ("inputs and images", "small", "small.npy", {"images": {"count": 3}}, ["give inputs or images"]),
]


@pytest.mark.parametrize("what,network,inputs,keys,words", REFUSED, ids=[r[0] for r in REFUSED])
def test_bad_inputs_are_one_sentence_and_create_no_store(tmp_path, user, what, network, inputs, keys, words):
    (tmp_path / "judges.py").write_text(TOP1_AS_FUNCTION)
    (tmp_path / "junk.pt2").write_bytes(b"not a program")
    if isinstance(network, str) and network.startswith("weights:"):
        network = {"build": f"{user / 'build.py'}:small", "weights": _bad_weights(user, tmp_path, network[8:])}
    elif isinstance(network, str) and network.startswith("file:"):
        network = str(tmp_path / network[5:])
    elif isinstance(network, dict):
        network = {k: v.replace("B:", f"{user / 'build.py'}:") for k, v in network.items()}
    keys = {k: v.replace("J:", f"{tmp_path / 'judges.py'}:") if isinstance(v, str) else v for k, v in keys.items()}
    cfg = config(user, "net", network, inputs, **keys)
    db = tmp_path / "c.db"
    code, out = cli("--db", str(db), "plan", str(cfg))
    one_sentence(code, out, *words)
    assert not db.exists()


def test_a_changed_build_file_is_refused_and_nothing_stored_is_lost(tmp_path, user):
    import shutil

    mine = tmp_path / "mine"
    shutil.copytree(user, mine)
    db = tmp_path / "c.db"
    cfg = config(mine, "net", "small", "small.npy", injections=5)
    assert cli("--db", str(db), "plan", str(cfg))[0] == 0
    assert cli("--db", str(db), "run", "--workers", "1", "--mode", "single_bit")[0] == 0
    before = results(db)
    (mine / "build.py").write_text((mine / "build.py").read_text() + "\n# changed\n")
    code, out = cli("--db", str(db), "run", "--workers", "1")
    one_sentence(code, out, "models.net", "build.py has changed since the campaign was planned")
    assert results(db) == before and len(before) == 5


def test_the_store_records_what_was_loaded(tmp_path, user):
    db = tmp_path / "c.db"
    cfg = config(
        user, "net", {"build": f"{user / 'build.py'}:small", "args": {"classes": 4}}, "small.npy", injections=2
    )
    planned_and_run(db, cfg)
    with sqlite3.connect(db) as con:
        models = json.loads(con.execute("SELECT models FROM campaign").fetchone()[0])
        workload = json.loads(con.execute("SELECT workload FROM campaign").fetchone()[0])
    source = models["net"]["source"]
    assert source["kind"] == "build" and source["function"] == "small" and source["args"] == {"classes": 4}
    assert source["file"] == str((user / "build.py").resolve()) and len(source["file_sha256"]) == 64
    assert models["net"]["targets"]["output_shape"] == [4] and models["net"]["arch"] is None
    assert workload["kind"] == "tensor" and workload["dataset"] == "tensor"


# --- config keys and records ----------------------------------------------------------------------

BAD_KEYS = [
    ("models: {a: {build: x.py:f, weight: w.pt}}", "models.a: unknown key 'weight'"),
    ("models: {a: {build: x.py:f, args: [1]}}", "models.a.args is [1]; it must map keyword names"),
    ("models: {a: {build: x.py:f, args: {n: .nan}}}", "models.a.args is {'n': nan}; its values must be"),
    ("models: {a: {args: {}}}", "models.a.build is None; it must be FILE.py:FUNCTION"),
    ("models: {a: {build: x.py:f, dtype: int8}}", "models.a.dtype is 'int8'; it must be float32, float16 or bfloat16"),
    ("models: {a: {checkpoint: net.pt, dtype: 5}}", "models.a.dtype is 5; it must be float32, float16 or bfloat16"),
    ("models: {a: {checkpoint: net.pt, weights: w.pt}}", "models.a: unknown key 'weights' (known: checkpoint, dtype)"),
    ("models: {a: {dtype: float16}}", "models.a.checkpoint is missing"),
    ("models: {a: {build: x.py:f, weights: ''}}", "models.a.weights is ''"),
    ("inputs: {source: a.npy, count: 0}", "inputs.count is 0"),
    ("inputs: {source: a.npy, size: 64}", "inputs.size resizes images"),
    ("inputs: {source: photos, mean: [0.5]}", "inputs.mean normalises an image folder read at inputs.size; give size"),
    ("inputs: {source: photos, size: 8, std: [0, 1, 1]}", "inputs.std is [0, 1, 1]; it must be numbers above 0"),
    ("inputs: {source: photos, size: 8, mean: [1, 1], std: [1, 1, 1]}", "one number per channel each"),
    ("inputs: {source: bundled, labels: y.npy}", "inputs.labels goes with a .npy or .pt tensor source"),
    ("images: {source: a.npy, size: 0}", "images.size is 0"),
    ("targets: {types: Conv2d}", "targets.types is 'Conv2d'"),
    ("targets: {names: [3]}", "targets.names is [3]"),
    ("targets: {only: [a]}", "targets: unknown key 'only'"),
    ("judge: top5", "judge is 'top5'; it must be top1, {topk: K}"),
    ("judge: {topk: 0}", "judge is {'topk': 0}"),
]


@pytest.mark.parametrize("line,words", BAD_KEYS, ids=[b[0] for b in BAD_KEYS])
def test_the_keys_of_own_networks_are_checked_when_read(line, words):
    from fi_campaign.config import ConfigError, parse

    raw = yaml_mapping("models: {a: zoo:resnet20-cifar10-baseline}")
    raw.update(yaml_mapping(line))
    with pytest.raises(ConfigError) as e:
        parse(raw, "c.yaml")
    assert str(e.value).startswith("c.yaml: ") and words in str(e.value)


def yaml_mapping(text: str) -> dict:
    import yaml

    return yaml.safe_load(text)


def test_a_config_of_an_own_network_survives_the_store():
    from fi_campaign.config import Config, parse

    c = parse(
        yaml_mapping(
            "models: {a: {build: x.py:f, args: {n: [1, 2]}, weights: w.pt}, b: net.pt2}\n"
            "images: {source: t.pt, labels: y.pt, count: 3}\n"
            "targets: {types: [Linear], exclude: ['*.head']}\njudge: {topk: 3}"
        ),
        "c.yaml",
    )
    assert c.images.kind == "tensor" and c.judge.kind == "topk" and c.judge.k == 3
    assert Config.from_json(c.to_json()) == c
    assert json.loads(c.to_json())["models"]["a"] == {"build": "x.py:f", "args": {"n": [1, 2]}, "weights": "w.pt"}


def test_records_of_own_networks_read_back_and_cifar_ones_write_what_they_did():
    from fi_campaign.models.sources import SourceRecord
    from fi_campaign.store import TargetsRecord, WorkloadRecord

    source = SourceRecord(kind="build", ref="b.py:f", file="/p/b.py", file_sha256="a" * 64, function="f", args={"n": 2})
    targets = TargetsRecord(
        names=("a", "b"),
        kinds=("conv", "other"),
        shapes=((4, 2, 2), (3,)),
        macs=(16, 3),
        input_shape=(3, 4, 4),
        input_dtype="float32",
        output_shape=(3,),
    )
    m = ModelRecord(
        checkpoint="b.py:f",
        sha256="c" * 64,
        arch=None,
        dataset="tensor",
        clean_accuracy=None,
        accuracy_on="",
        source=source,
        targets=targets,
    )
    assert ModelRecord.from_dict(json.loads(json.dumps(m.to_dict()))) == m
    assert targets.activation_numel == 19
    w = WorkloadRecord(
        source="t.npy", dataset="tensor", count=2, seed=0, indices=(4, 1), images_sha256="d", kind="tensor"
    )
    assert WorkloadRecord.from_dict(json.loads(json.dumps(w.to_dict()))) == w
    cifar = WorkloadRecord(source="bundled", dataset="cifar10", count=1, seed=0, indices=(3,), images_sha256="e")
    assert set(cifar.to_dict()) == {"source", "dataset", "count", "seed", "indices", "images_sha256"}


def test_a_function_and_a_labels_file_give_the_inputs(tmp_path, user):
    np.save(tmp_path / "labels.npy", np.arange(24) % 5)
    (tmp_path / "data.py").write_text(
        "import numpy as np\n\n\ndef inputs():\n"
        f"    x = np.load({str(user / 'small.npy')!r})\n"
        "    return x, np.arange(len(x)) % 5\n"
    )
    a, b = tmp_path / "a.db", tmp_path / "b.db"
    labelled = {"source": str(user / "small.npy"), "labels": str(tmp_path / "labels.npy"), "count": 12}
    planned_and_run(a, config(user, "net", "small", labelled, injections=4))
    made = {"source": f"{tmp_path / 'data.py'}:inputs", "count": 12}
    planned_and_run(b, config(user, "net", "small", made, injections=4))
    ra, rb = Store.open(str(a)).campaign(), Store.open(str(b)).campaign()
    assert ra.workload.images_sha256 == rb.workload.images_sha256 and ra.workload.indices == rb.workload.indices
    assert ra.models["net"].clean_accuracy == rb.models["net"].clean_accuracy is not None
    assert results(a) == results(b)


def test_status_reports_and_sizing_work_for_an_own_network(tmp_path, user):
    db = tmp_path / "c.db"
    cfg = config(user, "net", "small", "small.npy", injections=6)
    code, out = cli("--db", str(tmp_path / "sized.db"), "plan", str(cfg), "--margin", "0.2")
    assert code == 0 and "net single_bit: N = " in out, out
    planned_and_run(db, cfg)
    for args in (("status",), ("report", "--avf"), ("report", "--html", str(tmp_path / "html"))):
        code, out = cli("--db", str(db), *args)
        assert code == 0, out
    page = (tmp_path / "html" / "index.html").read_text()
    assert "build " in page and "targets" in page  # the network in words: its source and targets


def test_a_judge_the_cifar_resnets_cannot_take_is_refused(tmp_path):
    import yaml

    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"models": {"b": "zoo:resnet20-cifar10-baseline"}, "judge": "per_position"}))
    code, out = cli("--db", str(tmp_path / "c.db"), "plan", str(cfg))
    one_sentence(code, out, "judge: per_position needs outputs of shape N x positions x classes", "(10,)")
