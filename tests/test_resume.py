"""Delayed start: injections resumed from the golden activations of their layer give the whole
pass's results site for site, for every network models/resnet.py builds; others are refused."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner

from fi_campaign.classify import MASKED, classify_batch
from fi_campaign.cli import main
from fi_campaign.engine import runner
from fi_campaign.engine.executors.inprocess import InProcess
from fi_campaign.engine.grouping import WINDOW_CHUNKS, layer_chunks, window_size
from fi_campaign.errors import UserError
from fi_campaign.models import zoo
from fi_campaign.models.data import normalise
from fi_campaign.models.faults import BitFlips, WarpValues, describe_layers
from fi_campaign.models.graph_resume import GraphResumer
from fi_campaign.models.powerlaw import PowerLaw
from fi_campaign.models.resnet import ACTIVATIONS, DEPTHS, ORDERS, Arch, CifarResNet, build
from fi_campaign.models.resume import ResumeError, cache_bytes, resume_points
from fi_campaign.store import Site, Store
from fi_campaign.workload.images import workload_images
from fi_campaign.workload.model import Workload
from fi_campaign.workload.resume import resume_plan

LAW = PowerLaw(2.0, 1.454)  # the default FFMA common entry


def plan_and_run(tmp_path: Path, name: str, checkpoint: str, resume: bool) -> Path:
    config = tmp_path / f"{name}.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "name": name,
                "seed": 7,
                "injections": 2000,
                "batch_size": 256,
                "resume": resume,
                "models": {"m": checkpoint},
                "images": {"source": "bundled", "count": 100},
            }
        )
    )
    db = tmp_path / f"{name}.db"
    r = CliRunner().invoke(main, ["--db", str(db), "plan", str(config)])
    assert r.exit_code == 0, r.output
    runner.run(Store.open(db))
    return db


def results(db: Path) -> list[tuple]:
    with sqlite3.connect(db) as con:
        return con.execute(
            "SELECT s.id, s.mode, s.layer, r.outcome, r.images_changed, r.nan, r.max_abs_diff "
            "FROM site s JOIN result r ON r.site_id = s.id ORDER BY s.id"
        ).fetchall()


@pytest.mark.slow  # over 30 s in the default run (docs/TESTING.md); CI runs it in make test-slow
@pytest.mark.parametrize(
    "checkpoint",
    [
        "zoo:resnet20-cifar10-baseline",
        "zoo:resnet20-cifar10-hardened",
        pytest.param("zoo:resnet44-cifar10-hardened", marks=pytest.mark.slow),
    ],
)
def test_resumed_campaign_equals_whole_passes_site_for_site(tmp_path, monkeypatch, checkpoint):
    tails: list[int] = []
    chunks: list[list[int]] = []
    tail, run = GraphResumer.tail, InProcess.run

    def counted_tail(self, layer, *a):
        tails.append(layer)
        return tail(self, layer, *a)

    def recorded_run(self, sites, mode):
        chunks.append([s.layer for s in sites])
        return run(self, sites, mode)

    monkeypatch.setattr(GraphResumer, "tail", counted_tail)
    monkeypatch.setattr(InProcess, "run", recorded_run)
    on = plan_and_run(tmp_path, "on", checkpoint, resume=True)
    assert len(tails) == 16  # every pass resumed: 2 modes x 8 chunks of 2,000 sites
    assert all(c == sorted(c) for c in chunks) and sum(chunks[:8], []) == sorted(sum(chunks[:8], []))
    tails.clear()
    off = plan_and_run(tmp_path, "off", checkpoint, resume=False)
    assert tails == []
    resumed, whole = results(on), results(off)
    assert len(resumed) == 4000 and resumed == whole
    assert len({r[3] for r in resumed}) >= 2  # the faults did something
    with sqlite3.connect(on) as con:
        kept = json.loads(con.execute("SELECT models FROM campaign").fetchone()[0])["m"]["resume"]
    assert kept["layers"] == list(range(len(describe_layers(build(zoo.read(checkpoint)[0].arch)))))


@pytest.fixture
def one_thread():
    """Batches of four: with the cores shared, more threads only wait on each other."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def four_images() -> torch.Tensor:
    images, _ = workload_images("bundled", 4, 0)
    return normalise(images.images, images.dataset)


def combo_workload(inputs: torch.Tensor, arch: Arch, keep: list[int] | None = None) -> Workload:
    torch.manual_seed(arch.depth)
    model = build(arch)
    for m in model.modules():  # trained-looking BatchNorm statistics, so values stay in range
        if isinstance(m, torch.nn.BatchNorm2d):
            assert m.running_var is not None and m.running_mean is not None
            m.running_var.uniform_(0.5, 2.0)
            m.running_mean.uniform_(-0.2, 0.2)
    layers = list(range(len(resume_points(model)))) if keep is None else keep
    return Workload.of_model(model, zoo.Meta(arch, "cifar10"), inputs, len(inputs), resume_layers=layers)


def faults_at(layer: int, info, kind: str, rows: int, law: PowerLaw = LAW):
    rng = np.random.default_rng(layer)
    at = np.full(rows, layer)
    if kind == "bit":
        return BitFlips(at, np.arange(rows), rng.integers(0, info.numel, rows), rng.integers(20, 32, rows))
    starts = rng.integers(0, info.warps, rows) * 32
    widths = np.minimum(32, info.numel - starts)
    return WarpValues(
        at,
        np.arange(rows),
        starts,
        widths,
        rng.random((rows, 32)),
        np.where(rng.random((rows, 32)) < 0.5, -1.0, 1.0),
        (law, law, law),
    )


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and np.array_equal(a.view(np.uint32), b.view(np.uint32))


@pytest.mark.parametrize("depth", DEPTHS)
def test_every_depth_activation_and_order_resumes_exactly(one_thread, four_images, depth):
    n = (depth - 2) // 6
    for activation in ACTIVATIONS:
        for order in ORDERS:
            w = combo_workload(four_images, Arch(depth, activation, order))
            infos = describe_layers(w.model)
            rows = np.arange(len(w.golden))
            changed = 0
            # the stem, block 0's unit2, both units of the first stride-2 block (its shortcut
            # subsamples and pads), the last block's unit1, the classifier
            for k in (0, 2, 1 + 2 * n, 2 + 2 * n, len(infos) - 3, len(infos) - 1):
                resumed = w.forward(rows, faults_at(k, infos[k], "bit", len(rows)))
                whole = w.forward(rows, faults_at(k, infos[k], "bit", len(rows)), resume=False)
                assert same_bits(resumed, whole), (activation, order, k)
                changed += not same_bits(resumed, w.golden)
                # a warp whose factor is exactly 1 changes no bit: it must come back masked
                nothing = w.forward(rows, faults_at(k, infos[k], "warp", len(rows), PowerLaw(0.0, 2.0)))
                assert same_bits(nothing, w.golden)
                assert {o.outcome for o in classify_batch(w.golden[:, None], nothing[:, None])} == {MASKED}
            assert changed >= 3  # the flips did reach the logits
            w.close()


def test_layers_left_out_start_from_an_earlier_point_or_the_images(one_thread, four_images):
    w = combo_workload(four_images, Arch(20, "relu6", "conv-act-bn"), keep=[5, 12])
    infos = describe_layers(w.model)
    rows = np.arange(len(w.golden))
    assert w.values is not None and w.point_of is not None and w.kept == [5, 12]
    assert [w.values.start_for(int(w.point_of[k])) for k in (3, 5, 7, 12, 15)] == [None, 5, 5, 12, 12]
    for k in (3, 7, 12, 15, 19):
        for kind in ("bit", "warp"):
            assert same_bits(
                w.forward(rows, faults_at(k, infos[k], kind, len(rows))),
                w.forward(rows, faults_at(k, infos[k], kind, len(rows)), resume=False),
            )
    # a pass mixing layers starts at its earliest; later faults are applied by the hooks
    mixed = BitFlips(np.array([7, 15, 19, 7]), rows, np.array([5, 6, 7, 8]), np.array([30, 30, 30, 29]))
    assert same_bits(w.forward(rows, mixed), w.forward(rows, mixed, resume=False))
    # the captured graph keeps what the plan counts: both layers' outputs and their blocks' inputs
    assert w.values.nbytes == cache_bytes(resume_points(w.model), [5, 12], len(w.golden))


def test_the_memory_bound_is_kept_and_recorded(one_thread):
    model = build(Arch(44))
    full = resume_plan(model, "elements", 200, 4096)
    assert full.layers == tuple(range(44)) and full.cache_mb == full.all_mb and full.work == full.work_all
    assert 450 < full.all_mb < 550  # 200 images x 2.5 MB of ResNet-44 outputs and block inputs
    small = resume_plan(model, "elements", 200, 64)
    assert 0 < len(small.layers) < 44 and small.cache_mb <= 64
    assert full.work_all < small.work < 1.0
    assert resume_plan(model, "elements", 200, 0).layers == ()


class Wrapped(CifarResNet):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) * 2


def test_other_architectures_are_refused_in_one_sentence():
    others = (
        torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(7200, 10)),
        Wrapped(Arch(20)),
    )
    for model in others:
        with pytest.raises(ResumeError) as e:
            resume_points(model)
        message = str(e.value)
        assert "CifarResNet" in message and "resume: false" in message and message.count(". ") == 0
        assert isinstance(e.value, UserError)


def site(i: int, layer: int) -> Site:
    return Site(
        id=i,
        model="m",
        mode="single_bit",
        layer=layer,
        layer_name="",
        image=0,
        element=0,
        bit=0,
        width=None,
        value_seed=None,
    )


def test_windows_are_whole_chunks_within_a_workers_share_and_run_by_layer():
    assert window_size(256, 5_000, 1) == 5_120  # the share, rounded up to whole chunks
    assert window_size(256, 100_000, 1) == WINDOW_CHUNKS * 256
    assert window_size(256, 1000, 2) == 512  # both workers get sites
    assert window_size(256, 10, 4) == 256
    sites = [site(i, layer) for i, layer in enumerate([3, 1, 2, 1, 0, 3, 2])]
    parts = layer_chunks(sites, 3)
    assert [[s.layer for s in p] for p in parts] == [[0, 1, 1], [2, 2, 3], [3]]
    assert [s.id for s in parts[0]] == [4, 1, 3]


def test_resume_is_a_checked_config_switch_for_in_process_pytorch_only(tmp_path, tiny_config):
    from fi_campaign.config import load

    raw = yaml.safe_load(tiny_config.read_text())
    assert load(str(tiny_config)).resumes
    for extra, resumes in (({"resume": False}, False), ({"isolation": "process"}, False)):
        path = tmp_path / "c.yaml"
        path.write_text(yaml.safe_dump({**raw, **extra}))
        assert load(str(path)).resumes is resumes
    for bad in ({"resume": "yes"}, {"resume_cache_mb": -1}):
        path = tmp_path / "bad.yaml"
        path.write_text(yaml.safe_dump({**raw, **bad}))
        r = CliRunner().invoke(main, ["--db", str(tmp_path / "bad.db"), "plan", str(path)])
        assert r.exit_code == 2 and "Traceback" not in r.output and len(r.output.strip().splitlines()) == 1


def test_the_kept_activations_count_in_a_workers_memory(one_thread):
    from fi_campaign.engine import capacity
    from fi_campaign.store import ModelRecord, ResumePlan

    def kept(cache_mb: float) -> ModelRecord:
        return ModelRecord(
            checkpoint="c.pt",
            sha256="",
            arch=Arch(20),
            dataset="cifar10",
            clean_accuracy=None,
            accuracy_on="",
            resume=ResumePlan(layers=(0,), budget_mb=512, cache_mb=cache_mb, all_mb=cache_mb, work=0.6, work_all=0.6),
        )

    models = {"a": kept(219.0), "b": kept(100.0)}
    fp = capacity.footprint(models, "inprocess", 256, 200, on_gpu=False)
    assert fp.golden == 219 * capacity.MiB and fp.total == fp.base + fp.images + fp.batch + fp.golden
    assert capacity.footprint(models, "process", 256, 200, on_gpu=False).golden == 0  # whole programs
    assert capacity.footprint(models, "inprocess", 256, 200, on_gpu=True).golden == 0  # in GPU memory
    with pytest.raises(Exception, match="lower resume_cache_mb"):
        capacity.check_batch(capacity.Footprint(0, 1, 1, 10 * capacity.MiB), 256, 200, capacity.MiB)
