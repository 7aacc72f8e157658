"""Backend nvbitfi end to end on a machine without a GPU.

The GPU-side pieces are replaced by one stand-in program that plays both NVBitFI's injector
and the workload: it reads the nvbitfi-injection-info.txt the runner rendered into its cwd,
checks the tool attachment variables, writes an injector log in NVBitFI's format and the
workload's logits. Everything else is the product's real path: plan --profile on a profile in
NVBitFI's format, sites, run directories, timeouts, log parsing, classification, the store and
export.
"""
from __future__ import annotations

import csv
import sqlite3
import sys
import textwrap

import pytest
import yaml
from click.testing import CliRunner

from campaign.cli import main
from tests.test_nvbitfi_profile import KERNELS, base_counts, profile_line

FAKE = textwrap.dedent('''
    import os, sys, ctypes, numpy as np
    out = sys.argv[sys.argv.index("--out") + 1]
    golden = np.random.default_rng(0).normal(size=(12, 10)).astype(np.float32)
    golden[:, 0] += 10  # every image's top-1 is class 0
    if not os.path.exists("nvbitfi-injection-info.txt"):   # golden (or DUMMY) run
        np.save(out, golden); sys.exit(0)
    for var, want in (("NOBANNER", "1"), ("TOOL_VERBOSE", "0")):
        assert os.environ[var] == want, var
    assert os.environ["LD_PRELOAD"] == os.environ["CUDA_INJECTION64_PATH"]
    open("tool.txt", "w").write(os.environ["LD_PRELOAD"])
    open("gpu.txt", "w").write(os.environ.get("CUDA_VISIBLE_DEVICES", "-"))
    lines = open("nvbitfi-injection-info.txt").read().split("\\n")
    igid, bfm, kernel, kcount, iid = int(lines[0]), int(lines[1]), lines[2], int(lines[3]), int(lines[4])
    case = iid % 5
    log = open("nvbitfi-injection-log-temp.txt", "w")
    log.write(f"inspecting: {kernel}\\nnum_static_instrs: 80\\nmaxregs: 40(40)\\n")
    block = (f"Injection data\\nindex: {kcount}\\nkernel_name: {kernel}\\nctas: 4\\ninstrs: 99\\n"
             f"mask: 0x10\\nbeforeVal: 0x3f800000;afterVal: 0x3f800010\\nregNo: 12\\nopcode: FFMA\\n"
             f"pcOffset: 0x1a0\\ntid: 7\\n")
    if case == 0:
        log.write(block.replace("opcode: FFMA", "opcode: NOP") + "Error not injected\\n"); log.close()
        np.save(out, golden); sys.exit(0)
    log.write(block); log.close()
    faulty = golden.copy()
    if case == 2:
        faulty[3, 4] += 1e-3
    if case == 3:
        faulty[5, 7] += 100.0
    if case == 4:
        ctypes.string_at(0)
    np.save(out, faulty)
''')


@pytest.fixture
def nvbitfi_setup(tmp_path, checkpoints, monkeypatch):
    home = tmp_path / "nvbit_release" / "tools" / "nvbitfi"
    for rel in ("injector/injector.so", "profiler/profiler.so", "injector/injector-dummy.so"):
        (home / rel).parent.mkdir(parents=True, exist_ok=True)
        (home / rel).write_bytes(b"")
    profile = tmp_path / "nvbitfi-igprofile.txt"
    profile.write_text("\n".join(profile_line(i, KERNELS[i % len(KERNELS)], base_counts(fp32))
                                 for i, fp32 in enumerate([40, 0, 300, 25, 900, 60])) + "\n")
    config = tmp_path / "nv.yaml"
    config.write_text(yaml.safe_dump({
        "name": "nv", "seed": 3, "backend": "nvbitfi", "device": "cuda", "injections": 25, "golden_runs": 2,
        "batch_size": 16, "models": {"baseline": str(checkpoints["baseline"])},
        "images": {"source": "bundled", "count": 12},
        "nvbitfi": {"home": str(home), "dialect": "carol"},
    }))
    fake = tmp_path / "fake_nvbitfi_workload.py"
    fake.write_text(FAKE)
    from campaign import nvbitfi_backend, workload

    monkeypatch.setattr(workload, "command", lambda root, fault=None, out="logits.npy": [sys.executable, str(fake), "--out", out])
    monkeypatch.setattr(workload, "resolve_device", lambda device: device)
    monkeypatch.setattr(nvbitfi_backend, "require_gpu", lambda: None)
    return config, profile, home


def test_nvbitfi_campaign_with_a_reused_profile(tmp_path, nvbitfi_setup):
    config, profile, home = nvbitfi_setup
    db = tmp_path / "nv.db"
    result = CliRunner().invoke(main, ["--db", str(db), "plan", str(config), "--profile", f"baseline={profile}"])
    assert result.exit_code == 0, result.output
    with sqlite3.connect(db) as con:
        sites = con.execute("SELECT kernel, kcount, igid, iid, op_seed, bit_seed, value, mode FROM site").fetchall()
    assert len(sites) == 50
    assert all(k is not None and kc != 1 for k, kc, *_ in sites)  # launch 1 has no fp32 instruction
    assert {m for *_, m in sites} == {"single_bit", "warp_random"}
    assert all((v is not None) == (m == "warp_random") for *_, v, m in sites)

    result = CliRunner().invoke(main, ["--db", str(db), "run", "--workers", "1"])  # the stand-ins live here
    assert result.exit_code == 0, result.output
    with sqlite3.connect(db) as con:
        rows = con.execute("SELECT s.iid, r.outcome, r.images_changed, r.detail, r.backend, s.mode, s.value, s.id "
                           "FROM site s JOIN result r ON r.site_id = s.id").fetchall()
    with sqlite3.connect(db) as con:
        kcounts = con.execute("SELECT kcount, id FROM site").fetchall()
    expected = {0: "not_injected", 1: "masked", 2: "tolerable_sdc", 3: "critical_sdc", 4: "due"}
    assert {iid % 5 for iid, *_ in rows} == set(expected)
    for iid, outcome, changed, detail, backend, mode, value, site_id in rows:
        assert outcome == expected[iid % 5] and backend == "nvbitfi"
        assert changed == (1 if outcome == "critical_sdc" else 0)
        if outcome == "due":
            assert detail == "signal SIGSEGV"
        run_dir = tmp_path / "nv.db.runs" / "baseline" / str(site_id)
        assert run_dir.exists() == (outcome != "masked")
        if run_dir.exists():
            info = (run_dir / "nvbitfi-injection-info.txt").read_text().split("\n")
            assert info[3] == str(next(kc for kc, i in kcounts if i == site_id))
            if mode == "warp_random":  # CAROL's WARP_RANDOM_VALUE, and the power-law value line
                assert info[1] == "7" and len(info) == 8 and float(info[7]) == pytest.approx(value)
            else:
                assert info[1] == "0" and len(info) == 7
            assert (run_dir / "tool.txt").read_text() == str(home.resolve() / "injector" / "injector.so")

    out = tmp_path / "nv.csv"
    assert CliRunner().invoke(main, ["--db", str(db), "export", str(out)]).exit_code == 0
    exported = list(csv.DictReader(out.open()))
    assert {"kernel", "kcount", "igid", "iid"} <= set(exported[0]) and exported[0]["kernel"]
    avf = CliRunner().invoke(main, ["--db", str(db), "report", "--csv", str(tmp_path / "avf.csv")])
    assert avf.exit_code == 0
    table = {(r["mode"], r["outcome"]): r for r in csv.DictReader((tmp_path / "avf.csv").open())}
    for mode in ("single_bit", "warp_random"):
        k_not = int(table[(mode, "not_injected")]["k"])
        assert int(table[(mode, "masked")]["n"]) == 25 - k_not  # not_injected stays out of n


def test_the_dummy_injector_is_attached_for_a_dry_campaign(tmp_path, nvbitfi_setup):
    config, profile, home = nvbitfi_setup
    raw = yaml.safe_load(config.read_text())
    raw["nvbitfi"]["dummy"] = True
    raw["modes"] = ["single_bit"]
    raw["device"] = "cuda:1"
    config.write_text(yaml.safe_dump(raw))
    db = tmp_path / "dry.db"
    assert CliRunner().invoke(main, ["--db", str(db), "plan", str(config), "--profile", str(profile),
                                     "--injections", "5"]).exit_code == 0
    assert CliRunner().invoke(main, ["--db", str(db), "run", "--keep-runs", "--workers", "1"]).exit_code == 0
    runs = tmp_path / "dry.db.runs" / "baseline"
    tools = {p.read_text() for p in runs.glob("*/tool.txt")}
    assert tools == {str(home.resolve() / "injector" / "injector-dummy.so")}
    # cuda:1 is pinned with CUDA_VISIBLE_DEVICES=1, so the workload itself uses plain cuda
    assert {p.read_text() for p in runs.glob("*/gpu.txt")} == {"1"}
    assert __import__("json").loads((runs / "workload.json").read_text())["device"] == "cuda"


def test_a_mode_the_build_cannot_inject_is_refused_before_anything_runs(tmp_path, nvbitfi_setup):
    config, profile, _ = nvbitfi_setup
    raw = yaml.safe_load(config.read_text())
    raw["nvbitfi"]["dialect"] = "nvlabs"
    config.write_text(yaml.safe_dump(raw))
    db = tmp_path / "no.db"
    result = CliRunner().invoke(main, ["--db", str(db), "plan", str(config), "--profile", str(profile)])
    assert result.exit_code == 2 and "cannot inject warp_random" in result.output
    assert not db.exists()


def test_missing_profile_and_missing_gpu_are_one_sentence(tmp_path, nvbitfi_setup, monkeypatch):
    config, profile, _ = nvbitfi_setup
    result = CliRunner().invoke(main, ["--db", str(tmp_path / "a.db"), "plan", str(config), "--profile", "baseline=/nope.txt"])
    assert result.exit_code == 2 and "does not exist" in result.output

    monkeypatch.undo()
    result = CliRunner().invoke(main, ["--db", str(tmp_path / "b.db"), "plan", str(config)])
    assert result.exit_code == 2 and result.output.startswith("Error: ") and "GPU" in result.output


def test_doctor_without_gpu_or_nvbitfi_says_what_is_missing(monkeypatch):
    monkeypatch.delenv("NVBITFI_HOME", raising=False)
    result = CliRunner().invoke(main, ["doctor"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "GPU: none found" in result.output and "NVBITFI_HOME" in result.output
