"""Weight faults (weight_bit, weight_stuck_at): batched faults against networks whose parameter
really holds the faulty bit, site for site, on the zoo ResNet-20 and a user network."""

from __future__ import annotations

import copy
import csv
import sqlite3
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner
from torch import nn

from fi_campaign.cli import main
from fi_campaign.models import zoo
from fi_campaign.models.faults import Injector, describe_layers
from fi_campaign.models.resnet import injectable_layers
from fi_campaign.models.weight_faults import (
    WEIGHT_BIT,
    WEIGHT_STUCK_AT,
    StuckWeights,
    describe_parameters,
    draw_weight_sites,
    flipped,
    stored_bit,
    weight_faults,
)
from fi_campaign.workload.model import Workload

ZOO = "zoo:resnet20-cifar10-baseline"


def cli(*args: str) -> tuple[int, str]:
    r = CliRunner().invoke(main, list(args))
    return r.exit_code, r.output


def _sites(model: nn.Module, mode: str, n: int, seed: int, images: int, bit: int | None = None) -> list[dict]:
    layers = injectable_layers(model)
    drawn = draw_weight_sites(
        describe_parameters(layers),
        describe_layers(model),
        mode,
        n,
        images,
        "elements",
        np.random.default_rng(seed),
        bit=bit,
    )
    return [{"mode": mode, **{k: _plain(v[i]) for k, v in drawn.items()}} for i in range(n)]


def _plain(v: object) -> object:
    return v.item() if isinstance(v, np.generic) else v


def _really_faulty(model: nn.Module, site: dict) -> nn.Module:
    m = copy.deepcopy(model)
    p = dict(m.named_parameters())[site["parameter"]]
    with torch.no_grad():
        p.copy_(flipped(p, site["element"], site["bit"]))
    return m


def _top1(y: torch.Tensor) -> int:
    return -1 if torch.isnan(y).any() else int(y.argmax())


@pytest.mark.parametrize("resume", [False, True])
def test_batched_weight_bits_equal_really_faulty_networks_site_for_site(resume):
    """Every row carries its own weight fault; each row equals the network whose parameter
    really holds that bit, within the rounding of a different summation order (1e-5 relative,
    docs/FAULT-MODELS.md), with the same top-1 class and the same NaN/Inf pattern."""
    torch.manual_seed(0)
    model, _ = zoo.load(ZOO)
    x = torch.randn(24, 3, 32, 32)
    every = list(range(len(injectable_layers(model))))
    w = Workload.of_model(model, None, x, 24, resume_layers=every if resume else None)
    if resume:
        assert w.values is not None, "delayed start kept golden values"
    sites = _sites(model, WEIGHT_BIT, 12, seed=3, images=24) + _sites(model, WEIGHT_BIT, 12, seed=5, images=24, bit=30)
    rows = np.array([s["image"] for s in sites])
    faults = weight_faults(sites, np.arange(24), w.injector.layers)
    faulty = w.forward(rows, faults)
    changed_class = 0
    for i, s in enumerate(sites):
        with torch.inference_mode():
            ref = _really_faulty(model, s)(x[rows[i] : rows[i] + 1])[0]
        got = torch.from_numpy(faulty[i])
        assert torch.equal(torch.isfinite(got), torch.isfinite(ref)), s
        fin = torch.isfinite(ref)
        assert torch.allclose(got[fin], ref[fin], rtol=1e-5, atol=1e-5), s
        assert _top1(got) == _top1(ref), s
        changed_class += _top1(ref) != int(np.argmax(w.golden[s["image"]]))
    assert changed_class > 0, "some fault must move a class, or nothing was tested"


def test_a_weight_fault_reaches_only_its_own_row_and_leaves_the_network_unchanged():
    torch.manual_seed(1)
    model, _ = zoo.load(ZOO)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(8, 3, 32, 32)
    w = Workload.of_model(model, None, x, 8)
    site = {"mode": WEIGHT_BIT, "layer": 0, "parameter": "stem.0.weight", "element": 5, "bit": 30, "image": 2}
    faulty = w.forward(np.arange(8), weight_faults([site] * 1, np.array([2]), w.injector.layers))
    assert not np.array_equal(faulty[2], w.golden[2])
    others = [r for r in range(8) if r != 2]
    assert np.array_equal(faulty[others], w.golden[others])
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_stuck_at_is_the_really_faulty_network_bit_for_bit_and_restored_after():
    torch.manual_seed(2)
    model, _ = zoo.load(ZOO)
    x = torch.randn(16, 3, 32, 32)
    w = Workload.of_model(model, None, x, 8)
    layers = w.injector.layers
    tried = 0
    for s in _sites(model, WEIGHT_STUCK_AT, 12, seed=4, images=16):
        p = dict(model.named_parameters())[s["parameter"]]
        before = p.detach().clone()
        faults = weight_faults([s], np.arange(8), layers)
        assert isinstance(faults, StuckWeights)
        if stored_bit(p, s["element"], s["bit"]) == s["stuck"]:
            assert not faults.active(layers)
            continue
        tried += 1
        assert faults.active(layers)
        faulty = np.concatenate([w.forward(np.arange(16)[i : i + 8], faults) for i in range(0, 16, 8)])
        with torch.inference_mode():
            ref = np.concatenate([_really_faulty(model, s)(x[i : i + 8]).numpy() for i in range(0, 16, 8)])
        assert np.array_equal(faulty, ref, equal_nan=True), s
        assert torch.equal(p.detach(), before), "the parameter is restored after the pass"
    assert tried >= 3


def test_stored_bit_and_flip_follow_ieee_float32():
    t = torch.tensor([1.0, -2.0])
    assert stored_bit(t, 0, 29) == 1 and stored_bit(t, 0, 30) == 0 and stored_bit(t, 1, 31) == 1
    assert flipped(t, 0, 31)[0].item() == -1.0
    assert flipped(t, 0, 23)[0].item() == 0.5  # lowest exponent bit of 1.0 (exponent 127 -> 126)
    assert torch.isinf(flipped(t, 0, 30)[0])  # exponent 127 -> 255, mantissa 0: +inf


def _config(tmp_path: Path, modes: list[str], **extra) -> Path:
    path = tmp_path / "w.yaml"
    raw = {
        "name": "weights",
        "seed": 7,
        "injections": 24,
        "batch_size": 16,
        "modes": modes,
        "models": {"baseline": ZOO},
        "inputs": {"source": "bundled", "count": 20, "seed": 3},
        **extra,
    }
    path.write_text(yaml.safe_dump(raw))
    return path


def test_campaign_plans_runs_and_exports_weight_faults_that_replay_without_fi_campaign(tmp_path):
    db = tmp_path / "w.db"
    cfg = _config(tmp_path, [WEIGHT_BIT, WEIGHT_STUCK_AT])
    assert cli("--db", str(db), "plan", str(cfg))[0] == 0
    code, out = cli("--db", str(db), "run")
    assert code == 0, out
    out_csv = tmp_path / "w.csv"
    assert cli("--db", str(db), "export", str(out_csv))[0] == 0
    rows = list(csv.DictReader(out_csv.open()))
    assert len(rows) == 48
    model, _ = zoo.load(ZOO)
    state = model.state_dict()
    inactive = 0
    for r in rows:
        p = state[r["parameter"]]  # the export's names resolve in the plain state_dict
        assert 0 <= int(r["element"]) < p.numel() and 0 <= int(r["bit"]) < 32
        if r["mode"] == WEIGHT_STUCK_AT:
            assert r["image"] == "" and r["stuck"] in ("0", "1")
            if stored_bit(p, int(r["element"]), int(r["bit"])) == int(r["stuck"]):
                inactive += 1
                assert r["outcome"] == "masked" and "equals the stored bit" in r["detail"]
        else:
            assert r["image"] != "" and r["stuck"] == ""
    assert inactive > 0
    with sqlite3.connect(db) as con:
        stuck_changed = con.execute(
            "SELECT count(*) FROM site JOIN result ON site_id = id "
            "WHERE mode = 'weight_stuck_at' AND outcome != 'masked'"
        ).fetchone()[0]
    assert stuck_changed > 0


def test_stuck_at_outcomes_count_every_changed_image(tmp_path):
    """A stuck-at result judges all of the workload's images and stores how many changed class."""
    db = tmp_path / "s.db"
    cfg = _config(tmp_path, [WEIGHT_STUCK_AT], injections=16)
    assert cli("--db", str(db), "plan", str(cfg))[0] == 0
    assert cli("--db", str(db), "run")[0] == 0
    with sqlite3.connect(db) as con:
        rows = con.execute(
            "SELECT parameter, element, bit, stuck, outcome, images_changed FROM site JOIN result ON site_id = id"
        ).fetchall()
    from fi_campaign.store import Store
    from fi_campaign.workload.images import workload_inputs

    x = torch.from_numpy(workload_inputs(Store.open(db).campaign().workload))
    model, _ = zoo.load(ZOO)
    with torch.inference_mode():
        golden = model(x).argmax(1)
    for parameter, element, bit, value, outcome, changed in rows:
        m = copy.deepcopy(model)
        p = dict(m.named_parameters())[parameter]
        if stored_bit(p, element, bit) != value:
            with torch.no_grad():
                p.copy_(flipped(p, element, bit))
        with torch.inference_mode():
            y = m(x)
        moved = int(((y.argmax(1) != golden) | torch.isnan(y).any(1)).sum())
        assert changed == moved
        assert (outcome == "critical_sdc") == (moved > 0)


BUILD = """
import torch
from torch import nn

class Tagger(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(4, 8, 3, padding=1, groups=2)
        self.norm = nn.LayerNorm(8)
        self.head = nn.Linear(8, 5)

    def forward(self, x):
        h = self.conv(x).transpose(1, 2)
        return self.head(torch.relu(self.norm(h)))

def build():
    torch.manual_seed(0)
    return Tagger()
"""


def test_user_network_weight_faults_grouped_conv_layernorm_and_linear(tmp_path):
    """The conv (grouped), linear and any other module type (LayerNorm, called whole) paths
    each equal the really faulty network."""
    ns: dict = {}
    exec(textwrap.dedent(BUILD), ns)
    model = ns["build"]().eval()
    layers = [(n, m) for n, m in model.named_modules() if n in ("conv", "norm", "head")]
    x = torch.randn(12, 4, 6)
    injector = Injector(model, layers)
    with torch.inference_mode():
        golden = model(x)
    slots = describe_parameters(layers)
    assert [s.qualified for per in slots for s in per] == [
        "conv.weight",
        "conv.bias",
        "norm.weight",
        "norm.bias",
        "head.weight",
        "head.bias",
    ]
    sites = [
        {"mode": WEIGHT_BIT, "layer": k, "parameter": slot.qualified, "element": e, "bit": 27}
        for k, per in enumerate(slots)
        for slot in per
        for e in (0, slot.numel - 1)
    ]
    sites = sites[:12]
    with torch.inference_mode(), injector.armed(weight_faults(sites, np.arange(12), layers)):
        faulty = model(x)
    changed = 0
    for i, s in enumerate(sites):
        with torch.inference_mode():
            ref = _really_faulty(model, s)(x)[i]
        changed += not torch.equal(ref, golden[i])
        assert torch.allclose(faulty[i], ref, rtol=1e-5, atol=1e-6), s
    assert changed >= 8


def test_weight_modes_refuse_nvbitfi_and_image_strata(tmp_path):
    cfg = _config(tmp_path, [WEIGHT_BIT], backend="nvbitfi")
    code, out = cli("--db", str(tmp_path / "n.db"), "plan", str(cfg))
    assert code == 2 and "weight_bit" in out and "backend pytorch" in out and "Traceback" not in out
    cfg = _config(tmp_path, [WEIGHT_STUCK_AT], sampling={"method": "stratified", "by": "image"})
    code, out = cli("--db", str(tmp_path / "s.db"), "plan", str(cfg))
    assert code == 2 and "weight_stuck_at" in out and "Traceback" not in out, out


def test_targets_without_parameters_are_refused(tmp_path):
    build = tmp_path / "net.py"
    build.write_text(
        "import torch\nfrom torch import nn\n"
        "def build():\n    torch.manual_seed(0)\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10), nn.ReLU())\n"
    )
    cfg = _config(
        tmp_path,
        [WEIGHT_BIT],
        models={"net": {"build": f"{build}:build"}},
        targets={"types": ["ReLU"]},
    )
    code, out = cli("--db", str(tmp_path / "t.db"), "plan", str(cfg))
    assert code == 2 and "floating-point parameter" in out and "Traceback" not in out, out


@pytest.mark.slow  # a workload process per injection: about 20 s
def test_process_isolated_weight_faults_agree_with_in_process(tmp_path):
    """The workload program applies the same faults: weight_bit to its image's row only, a
    stuck-at fault to every image."""
    cfg = _config(tmp_path, [WEIGHT_BIT, WEIGHT_STUCK_AT], injections=5)
    dbs = {iso: tmp_path / f"{iso}.db" for iso in ("inprocess", "process")}
    for iso, db in dbs.items():
        assert cli("--db", str(db), "plan", str(cfg))[0] == 0
        code, out = cli("--db", str(db), "run", "--isolation", iso)
        assert code == 0, out
    got = {}
    for iso, db in dbs.items():
        with sqlite3.connect(db) as con:
            got[iso] = con.execute(
                "SELECT site_id, outcome, images_changed, nan, max_abs_diff FROM result ORDER BY site_id"
            ).fetchall()
    assert got["inprocess"] == got["process"]
    assert any(r[1] != "masked" for r in got["process"])


def test_weight_faults_on_a_user_network_from_its_build_file(tmp_path):
    (tmp_path / "tagger.py").write_text(textwrap.dedent(BUILD))
    np.save(tmp_path / "x.npy", np.random.default_rng(0).standard_normal((30, 4, 6)).astype(np.float32))
    cfg = _config(
        tmp_path,
        [WEIGHT_BIT, WEIGHT_STUCK_AT],
        models={"tagger": {"build": f"{tmp_path / 'tagger.py'}:build"}},
        inputs={"source": str(tmp_path / "x.npy"), "count": 30},
        judge="per_position",
        injections=20,
    )
    db = tmp_path / "u.db"
    code, out = cli("--db", str(db), "plan", str(cfg))
    assert code == 0, out
    code, out = cli("--db", str(db), "run")
    assert code == 0, out
    with sqlite3.connect(db) as con:
        rows = con.execute(
            "SELECT mode, layer_name, parameter, outcome FROM site JOIN result ON site_id = id"
        ).fetchall()
    assert len(rows) == 40
    assert {r[2].rsplit(".", 1)[0] for r in rows} <= {"conv", "norm", "head"}
    assert all(r[2].startswith(r[1] + ".") for r in rows)
    assert any(r[3] != "masked" for r in rows)


def test_weight_faults_in_a_bfloat16_network_flip_its_16_bit_parameters(tmp_path):
    cfg = _config(
        tmp_path,
        [WEIGHT_BIT, WEIGHT_STUCK_AT],
        models={"bf": {"checkpoint": ZOO, "dtype": "bfloat16"}},
        inputs={"source": "bundled", "count": 8, "seed": 3},
        injections=8,
        batch_size=8,
    )
    db = tmp_path / "bf.db"
    assert cli("--db", str(db), "plan", str(cfg))[0] == 0
    code, out = cli("--db", str(db), "run")
    assert code == 0, out
    with sqlite3.connect(db) as con:
        rows = con.execute(
            "SELECT mode, parameter, element, bit, stuck, outcome FROM site JOIN result ON site_id = id"
        ).fetchall()
    assert len(rows) == 16 and all(0 <= r[3] < 16 for r in rows)
    state = {k: v.to(torch.bfloat16) for k, v in zoo.load(ZOO)[0].state_dict().items()}
    for mode, parameter, element, bit, value, outcome in rows:
        if mode == WEIGHT_STUCK_AT and stored_bit(state[parameter], element, bit) == value:
            assert outcome == "masked"
