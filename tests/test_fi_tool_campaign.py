"""Backend nvbitfi with dialect fi-campaign, end to end, without a GPU.

As in test_nvbitfi_campaign, a stand-in program plays the workload and the injector. The
injector's work is done by the tool's own logic: the stand-in asks the host build of
fi_logic.h (tests/host_test.cpp) to parse the injection-info file the runner rendered and to
compute each lane's fault, and writes the log records the tool writes. Everything else is the
product's path: plan --profile on a profile line of the tool's format, value seeds, run
directories, the tool-log parser, classification, semantics and the store.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from fi_campaign.cli import main
from fi_campaign.models import sampler
from fi_campaign.nvbitfi_tools.toollog import read_tool_log

TOOL = Path(__file__).resolve().parents[1] / "nvbitfi_tools" / "tool"

FAKE = textwrap.dedent("""
    import os, subprocess, sys, numpy as np
    out = sys.argv[sys.argv.index("--out") + 1]
    golden = np.random.default_rng(0).normal(size=(12, 10)).astype(np.float32)
    golden[:, 0] += 10
    if not os.path.exists("nvbitfi-injection-info.txt"):
        np.save(out, golden); sys.exit(0)
    host = subprocess.Popen([os.environ["FI_HOST_TEST"]], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    def ask(*words):
        host.stdin.write(" ".join(map(str, words)) + "\\n"); host.stdin.flush()
        return host.stdout.readline().rstrip("\\n")
    parsed = ask("params", "nvbitfi-injection-info.txt").split()
    assert parsed[0] == "model", parsed
    p = dict(zip(parsed[0::2], parsed[1::2]))
    bit = np.uint32(int(p["bit"], 16)).view(np.float32)
    xmin = np.uint64(int(p["xmin"], 16)).view(np.float64)
    alpha = np.uint64(int(p["alpha"], 16)).view(np.float64)
    model = {"single_bit": 0, "warp_random": 1, "warp_xor": 2}[p["model"]]
    log = open("nvbitfi-injection-log-temp.txt", "w")
    log.write("format: fi-campaign-tool/1\\nmode: inject\\n")
    log.write(f"launch: index {p['kcount']}; kernel_name: {p['kernel']}; ctas: 4\\n")
    log.write(ask("counts", "fp32", 120, "gp", 300) + "\\n")
    if int(p["iid"]) % 3 == 0:
        log.write(f"result: not_injected; launch {p['kcount']} has 120 fp32 thread-instructions\\n")
        np.save(out, golden); sys.exit(0)
    lanes = [0] if model == 0 else range(32)
    for lane in lanes:
        before = 0x3F800000 + lane
        law = (repr(float(xmin)), repr(float(alpha)))
        after = int(ask("fault", model, before, repr(float(bit)), p["vseed"], lane, *law), 16)
        log.write(ask("lane", lane, 12, before, after, "FFMA", 0x1A0, 64 + lane) + "\\n")
    log.write(f"result: injected; {len(lanes)} of {len(lanes)} lanes\\n")
    log.close()
    faulty = golden.copy()
    if int(p["iid"]) % 3 == 2:
        faulty[5, 7] += 100.0
    np.save(out, faulty)
""")


@pytest.fixture
def own_tool(tmp_path, checkpoints, monkeypatch, host_exe):
    home = tmp_path / "tool"
    for rel in ("injector/injector.so", "profiler/profiler.so", "injector/injector-dummy.so"):
        (home / rel).parent.mkdir(parents=True, exist_ok=True)
        (home / rel).write_bytes(b"")
    (home / "fi-campaign-tool.json").write_text(json.dumps({"tool": "fi-campaign", "dialect": "fi-campaign"}))
    host = subprocess.Popen([str(host_exe)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert host.stdin is not None and host.stdout is not None
    lines = []
    for i, fp32 in enumerate([40, 0, 300, 25]):
        host.stdin.write(
            f"profile {i} voidk{i}<float>(float*,int) 4 FFMA fp32 {fp32} LDG ld 7 ISETP pr 5 "
            f"EXIT nodest 3 IMAD others 11\n"
        )
        host.stdin.flush()
        lines.append(host.stdout.readline())
    host.stdin.close()
    host.wait(timeout=10)
    profile = tmp_path / "nvbitfi-igprofile.txt"
    profile.write_text("".join(lines))
    config = tmp_path / "own.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "name": "own",
                "seed": 15,
                "backend": "nvbitfi",
                "device": "cuda",
                "injections": 3,
                "golden_runs": 2,
                "batch_size": 16,
                "models": {"baseline": str(checkpoints["baseline"])},
                "images": {"source": "bundled", "count": 12},
                "modes": ["single_bit", "warp_random", "warp_xor"],
                "nvbitfi": {"home": str(home), "dialect": "fi-campaign"},
            }
        )
    )
    fake = tmp_path / "fake_tool_workload.py"
    fake.write_text(FAKE)
    from fi_campaign.workload import model, program

    monkeypatch.setenv("FI_HOST_TEST", str(host_exe))
    monkeypatch.setattr(
        program, "command", lambda root, fault=None, out="logits.npy": [sys.executable, str(fake), "--out", out]
    )
    monkeypatch.setattr(model, "resolve_device", lambda device: device)
    monkeypatch.setattr(model, "require_gpu", lambda: None)
    return config, profile


@pytest.fixture(scope="module")
def host_exe(tmp_path_factory):
    if shutil.which("g++") is None:
        pytest.skip("g++ is not installed, so the tool's host test binary cannot be built")
    exe = tmp_path_factory.mktemp("host") / "host_test"
    subprocess.run(
        ["g++", "-std=c++17", "-O2", "-ffp-contract=off", str(TOOL / "tests" / "host_test.cpp"), "-o", str(exe)],
        check=True,
    )
    return exe


@pytest.mark.slow  # 22 s: a whole campaign through the tool's host build
def test_a_campaign_with_the_own_tool(tmp_path, own_tool):
    config, profile = own_tool
    db = tmp_path / "own.db"
    result = CliRunner().invoke(main, ["--db", str(db), "plan", str(config), "--profile", f"baseline={profile}"])
    assert result.exit_code == 0, result.output
    with sqlite3.connect(db) as con:
        sites = con.execute("SELECT id, mode, kcount, iid, value, value_seed FROM site").fetchall()
        fault_model = json.loads(con.execute("SELECT fault_model FROM campaign").fetchone()[0])
    assert len(sites) == 9 and all(kc != 1 for _, _, kc, *_ in sites)  # launch 1 has no fp32
    assert all((seed is not None) == (mode == "warp_random") and value is None for _, mode, _, _, value, seed in sites)
    assert fault_model["sampler"] == sampler.SPEC

    result = CliRunner().invoke(main, ["--db", str(db), "run", "--workers", "1", "--keep-runs"])
    assert result.exit_code == 0, result.output
    with sqlite3.connect(db) as con:
        rows = con.execute(
            "SELECT s.id, s.mode, s.iid, s.value_seed, r.outcome, r.semantics FROM site s "
            "JOIN result r ON r.site_id = s.id"
        ).fetchall()
    assert len(rows) == 9
    expected = {0: "not_injected", 1: "masked", 2: "critical_sdc"}
    assert {outcome for *_, outcome, _ in rows} == set(expected.values())  # seed 15 reaches every case
    checked = []
    x_min, alpha = fault_model["entries"]["common"]
    for site_id, mode, iid, seed, outcome, semantics in rows:
        assert outcome == expected[iid % 3], (mode, iid)
        assert semantics.startswith(f"fi-campaign tool {mode}:")
        run = tmp_path / "own.db.runs" / "baseline" / str(site_id)
        info = (run / "nvbitfi-injection-info.txt").read_text()
        assert info.startswith("format: fi-campaign/1\n") and f"model: {mode}\n" in info
        log = read_tool_log(run)
        if outcome == "not_injected":
            assert not log.lanes
            continue
        before = np.array([x.before for x in log.lanes], np.uint32)
        after = np.array([x.after for x in log.lanes], np.uint32)
        if mode == "warp_random":  # the stored seed and law, through the C++ parser, give the Python values
            assert f"value_seed: {seed}\n" in info and len(log.lanes) == 32
            assert np.array_equal(
                after, sampler.warp_values(before.view(np.float32), seed, x_min, alpha).view(np.uint32)
            )
            checked.append(site_id)
        elif mode == "warp_xor":
            assert len(log.lanes) == 32 and len(set((before ^ after).tolist())) == 1
        else:
            assert len(log.lanes) == 1 and bin(int(before[0] ^ after[0])).count("1") == 1
    assert len(checked) == 2  # two warp_random sites were injected and their lanes compared
