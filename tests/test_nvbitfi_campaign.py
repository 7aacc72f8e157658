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
import inspect
import json
import sqlite3
import sys
import textwrap

import pytest
import yaml
from click.testing import CliRunner

from fi_campaign.cli import main
from fi_campaign.store import Store
from tests import nvbitfi_logs
from tests.test_nvbitfi_profile import KERNELS, base_counts, profile_line

FAKE = textwrap.dedent("""
    import json, os, signal, sys, ctypes, time, numpy as np
    cfg = json.load(open(os.environ["FAKE_NVBITFI"]))
    out = sys.argv[sys.argv.index("--out") + 1]
    golden = np.random.default_rng(0).normal(size=(12, 10)).astype(np.float32)
    golden[:, 0] += 10  # every image's top-1 is class 0
    if not os.path.exists("nvbitfi-injection-info.txt"):   # golden run: no tool attached
        np.save(out, golden); sys.exit(0)
    for var, want in (("NOBANNER", "1"), ("TOOL_VERBOSE", "0")):
        assert os.environ[var] == want, var
    assert os.environ["LD_PRELOAD"] == os.environ["CUDA_INJECTION64_PATH"]
    open("tool.txt", "w").write(os.environ["LD_PRELOAD"])
    open("gpu.txt", "w").write(os.environ.get("CUDA_VISIBLE_DEVICES", "-"))
    lines = open("nvbitfi-injection-info.txt").read().split("\\n")
    igid, bfm, kernel, kcount, iid = int(lines[0]), int(lines[1]), lines[2], int(lines[3]), int(lines[4])
    build, launches = cfg["build"], cfg["launches"]  # per launch: [kernel it runs, the injector's count]
    warp = (build, bfm) in (("pr2022", 4), ("carol", 7))
    log = open("nvbitfi-injection-log-temp.txt", "w")
    log.write(inspecting(kernel))
    if kcount >= len(launches):  # past the last launch: instrumented, never fires (the timing run)
        log.close(); np.save(out, golden); sys.exit(0)
    name, count = launches[kcount]
    if name != kernel:  # another kernel at that index: never instrumented, so counted as nothing
        count = 0
    counts = counts_for(build, igid, count)
    missed = [NOT_INJECTED] * (32 if build == "pr2022" and warp else 1)
    if iid >= count or (cfg["miss_every"] and iid % cfg["miss_every"] == 0):
        log.write(launch_exit(build, kcount, name, counts, missed)); log.close()
        np.save(out, golden); sys.exit(0)
    lanes = cfg["lanes"] if build == "pr2022" and warp else [0]
    dummy = os.environ["LD_PRELOAD"].endswith("injector-dummy.so")  # the whole path, no register write
    recs = [injected(before=0x3F800000 + i, tid=7 + i) if i in lanes else NOT_INJECTED
            for i in range(32 if build == "pr2022" and warp else 1)]
    if dummy:
        recs = [dict(r, after=r["before"]) for r in recs]
    if dummy:
        log.write(launch_exit(build, kcount, kernel, counts, recs)); log.close()
        np.save(out, golden); sys.exit(0)
    if cfg["hang"]:  # hangs after the fault; the injector's SIGINT handler writes the record
        def handler(sig, frame):
            log.write(sigint_handler(build, counts, recs)); log.close(); os._exit(255)
        signal.signal(signal.SIGINT, handler)
        time.sleep(600)
    log.write(launch_exit(build, kcount, kernel, counts, recs)); log.close()
    case = iid % 5 if cfg["vary"] else 1  # 1 masked, 2 tolerable SDC, 3 critical SDC, 4 crash
    faulty = golden.copy()
    if case == 2:
        faulty[3, 4] += 1e-3
    if case == 3:
        faulty[5, 7] += 100.0
    if case == 4:
        ctypes.string_at(0)
    np.save(out, faulty)
""")
FP32 = [40, 0, 300, 25, 900, 60]


def fake_config(
    path, build="carol", injector=None, names=None, miss_every=5, vary=True, hang=False, lanes=tuple(range(32))
):
    """What the stand-in injector does: ``injector`` gives its own count per launch (default:
    the profile's), ``names`` the kernel each launch really runs (default: the profile's)."""
    names = names or [KERNELS[i % len(KERNELS)] for i in range(len(FP32))]
    path.write_text(
        json.dumps(
            {
                "build": build,
                "launches": [[n, c] for n, c in zip(names, injector or FP32, strict=False)],
                "miss_every": miss_every,
                "vary": vary,
                "hang": hang,
                "lanes": list(lanes),
            }
        )
    )


@pytest.fixture
def nvbitfi_setup(tmp_path, checkpoints, monkeypatch):
    home = tmp_path / "nvbit_release" / "tools" / "nvbitfi"
    for rel in ("injector/injector.so", "profiler/profiler.so", "injector/injector-dummy.so"):
        (home / rel).parent.mkdir(parents=True, exist_ok=True)
        (home / rel).write_bytes(b"")
    profile = tmp_path / "nvbitfi-igprofile.txt"
    profile.write_text(
        "\n".join(profile_line(i, KERNELS[i % len(KERNELS)], base_counts(fp32)) for i, fp32 in enumerate(FP32)) + "\n"
    )
    config = tmp_path / "nv.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "name": "nv",
                "seed": 3,
                "backend": "nvbitfi",
                "device": "cuda",
                "injections": 25,
                "golden_runs": 2,
                "batch_size": 16,
                "models": {"baseline": str(checkpoints["baseline"])},
                "images": {"source": "bundled", "count": 12},
                "nvbitfi": {"home": str(home), "dialect": "carol", "max_not_injected": 0.5},
            }
        )
    )
    fake = tmp_path / "fake_nvbitfi_workload.py"
    fake.write_text(inspect.getsource(nvbitfi_logs) + FAKE)
    monkeypatch.setenv("FAKE_NVBITFI", str(tmp_path / "fake.json"))
    fake_config(tmp_path / "fake.json")
    from fi_campaign.workload import model, program

    monkeypatch.setattr(
        program, "command", lambda root, fault=None, out="logits.npy": [sys.executable, str(fake), "--out", out]
    )
    monkeypatch.setattr(model, "resolve_device", lambda device: device)
    monkeypatch.setattr(model, "require_gpu", lambda: None)
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
        rows = con.execute(
            "SELECT s.iid, r.outcome, r.images_changed, r.detail, r.backend, s.mode, s.value, s.id "
            "FROM site s JOIN result r ON r.site_id = s.id"
        ).fetchall()
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
    accounts = Store.open(db).injections()
    assert accounts and all(int(r["site_id"]) in accounts for r in exported if r["injection"])
    for r in exported:  # the injector's account of each run, as stored
        a = accounts.get(int(r["site_id"]))
        assert r["injection"] == (a.state if a else "")
        assert r["lanes_injected"] == (str(a.lanes_injected) if a else "")
        assert r["mask"] == ("" if a is None or a.mask is None else str(a.mask))
    assert CliRunner().invoke(main, ["--db", str(db), "export", str(tmp_path / "nv.parquet")]).exit_code == 0
    import pandas as pd

    frame = pd.read_parquet(tmp_path / "nv.parquet").set_index("site_id")
    assert {i: (a.state, a.lanes_injected) for i, a in accounts.items()} == {
        i: (r.injection, r.lanes_injected) for i, r in frame.dropna(subset=["injection"]).iterrows()
    }
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
    assert (
        CliRunner()
        .invoke(main, ["--db", str(db), "plan", str(config), "--profile", str(profile), "--injections", "5"])
        .exit_code
        == 0
    )
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
    result = CliRunner().invoke(
        main, ["--db", str(tmp_path / "a.db"), "plan", str(config), "--profile", "baseline=/nope.txt"]
    )
    assert result.exit_code == 2 and "does not exist" in result.output

    monkeypatch.undo()
    result = CliRunner().invoke(main, ["--db", str(tmp_path / "b.db"), "plan", str(config)])
    assert result.exit_code == 2 and result.output.startswith("Error: ") and "GPU" in result.output


def test_doctor_without_gpu_or_nvbitfi_says_what_is_missing(monkeypatch):
    monkeypatch.delenv("NVBITFI_HOME", raising=False)
    result = CliRunner().invoke(main, ["doctor"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "GPU: none found" in result.output and "NVBITFI_HOME" in result.output


def test_doctor_on_an_empty_folder_says_no_ok_for_the_build(tmp_path, monkeypatch):
    monkeypatch.delenv("NVBITFI_HOME", raising=False)
    result = CliRunner().invoke(main, ["doctor", "--home", str(tmp_path)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    lines = result.output.splitlines()
    build = [line for line in lines if "NVBitFI build" in line]
    assert len(build) == 1 and build[0].startswith("  note  ") and str(tmp_path) in build[0], result.output
    assert not any(line.startswith("  ok ") and str(tmp_path) in line for line in lines), result.output
    assert any(line.startswith("  MISS  ") and "profiler" in line for line in lines), result.output


def test_doctor_no_dry_run_checks_the_machine_and_the_build_only(monkeypatch, tmp_path):
    from types import SimpleNamespace

    from fi_campaign import doctor

    monkeypatch.setattr(doctor, "gpu_lines", lambda: ([doctor.Line(True, "GPU 0: a stand-in")], True))
    inst = SimpleNamespace(ok=True, dummy_injector=tmp_path / "injector-dummy.so", dialect="fi-campaign", home=tmp_path)
    monkeypatch.setattr(doctor, "install_lines", lambda home, dialect: ([], inst))
    monkeypatch.setattr(doctor, "own_tool_lines", lambda inst: [])
    ran = []

    def dry_campaign(inst):
        ran.append(inst)
        return doctor.Line(True, "dry campaign: 20/20")

    monkeypatch.setattr(doctor, "dry_campaign", dry_campaign)
    lines = doctor.diagnose(None, None, dry_run=False)
    assert ran == [] and lines[-1].text == "dry campaign: not run (--no-dry-run)." and not lines[-1].required
    assert doctor.diagnose(None, None)[-1].text == "dry campaign: 20/20" and ran == [inst]
    result = CliRunner().invoke(main, ["doctor", "--no-dry-run"])
    assert result.exit_code == 0 and "dry campaign: not run (--no-dry-run)." in result.output and len(ran) == 1


def _plan_and_run(tmp_path, config, profile, *extra, db_name="x.db", run_ok=True):
    db = tmp_path / db_name
    planned = CliRunner().invoke(main, ["--db", str(db), "plan", str(config), "--profile", str(profile), *extra])
    assert planned.exit_code == 0, planned.output
    ran = CliRunner().invoke(main, ["--db", str(db), "run", "--workers", "1"])
    if run_ok:
        assert ran.exit_code == 0, ran.output
    return db, planned, ran


def _edit(config, **nvbitfi):
    raw = yaml.safe_load(config.read_text())
    raw["nvbitfi"].update(nvbitfi)
    for key in ("modes", "timeout_factor"):
        if key in nvbitfi:
            raw[key] = raw["nvbitfi"].pop(key)
    config.write_text(yaml.safe_dump(raw))


def test_a_profile_that_counts_4x_what_the_injector_executes(tmp_path, nvbitfi_setup):
    """CAROL's profiler on 4x4 blocks: most launches are counted 4x. Every site must end inside
    the injector's own count, the mismatch is stored and said, and nothing is lost as not_injected."""
    config, profile, _ = nvbitfi_setup
    injector = [c // 4 if i in (0, 2, 4) else c for i, c in enumerate(FP32)]
    fake_config(tmp_path / "fake.json", injector=injector, miss_every=0, vary=False)
    _edit(config, modes=["single_bit"])
    db, _, _ = _plan_and_run(tmp_path, config, profile, "--injections", "16")
    with sqlite3.connect(db) as con:
        sites = con.execute(
            "SELECT s.id, s.kcount, s.iid, r.outcome, r.detail FROM site s JOIN result r ON r.site_id = s.id"
        ).fetchall()
        counts = con.execute("SELECT kcount, profile_count, injector_count FROM launch_count").fetchall()
        redraws = con.execute("SELECT site_id, kcount, iid, injector_count, ran FROM redraw").fetchall()
    assert len(sites) == 16 and {o for *_, o, _ in sites} == {"masked"}
    assert all(iid < injector[k] for _, k, iid, *_ in sites)  # inside what the injector executes
    assert redraws and all(iid >= c == injector[k] for _, k, iid, c, _ in redraws)
    assert {k for _, k, *_ in redraws} <= {0, 2, 4}
    assert sum(ran for *_, ran in redraws) == len({k for _, k, *_, ran in redraws if ran})  # one run per launch
    for k, prof, inj in counts:
        assert (prof, inj) == (FP32[k], injector[k])
    over = sorted(k for k, prof, inj in counts if prof > inj)
    assert over == sorted({k for _, k, *_, ran in redraws if ran})

    status = CliRunner().invoke(main, ["--db", str(db), "status"])
    report = CliRunner().invoke(main, ["--db", str(db), "report", "--avf", "--json", str(tmp_path / "r.json")])
    assert status.exit_code == 0 and report.exit_code == 0
    for text in (status.output, report.output):
        assert f"{len(over)} disagree with the profile (profile/injector" in " ".join(text.split())
    (check,) = json.loads((tmp_path / "r.json").read_text())["stores"][0]["launch_counts"]
    assert check["over"] == len(over) and 3.9 < check["ratio_low"] <= check["ratio_high"] < 4.1
    assert check["redrawn"] == len({s for s, *_ in redraws})


def test_a_pr2022_warp_fault_on_some_lanes_is_injected_and_each_lane_is_stored(tmp_path, nvbitfi_setup):
    config, profile, _ = nvbitfi_setup
    profile.write_text("".join(_ten_group_line(i, KERNELS[i % len(KERNELS)], c) + "\n" for i, c in enumerate(FP32)))
    fake_config(tmp_path / "fake.json", build="pr2022", miss_every=0, vary=False, lanes=range(12, 32))
    _edit(config, dialect="pr2022", modes=["warp_random"])
    db, _, _ = _plan_and_run(tmp_path, config, profile, "--injections", "4")
    with sqlite3.connect(db) as con:
        rows = con.execute(
            "SELECT r.outcome, r.semantics, i.state, i.lanes_injected, i.lanes_reported, i.lanes "
            "FROM result r JOIN injection i ON i.site_id = r.site_id"
        ).fetchall()
    assert len(rows) == 4
    for outcome, semantics, state, hit, reported, lanes in rows:
        assert (outcome, state, hit, reported) == ("masked", "injected", 20, 32)
        assert [lane for lane, *_ in json.loads(lanes)] == list(range(12, 32))
        assert [(b, a) for _, b, a in json.loads(lanes)][0] == (0x3F80000C, 0x3F80000C ^ 0x10)
        assert "__any_sync(__activemask()" in semantics and "math fp32" in semantics


def _ten_group_line(index: int, name: str, fp32: int) -> str:
    groups = {"fp64": 0, "fp32": fp32, "fp16": 0, "mma": 0, "ld": 7, "pr": 5, "nodest": 3, "others": 11}
    instrs = sum(groups.values())
    groups |= {"gppr": instrs - 3, "gp": instrs - 3 - 5}
    pairs = "".join(
        f" {k}: {v}," for k, v in [("FFMA", fp32), ("LDG", 7), ("ISETP", 5), ("EXIT", 3), ("IMAD", 11), *groups.items()]
    )
    return f"NVBit-igprofile; index: {index}; kernel_name: {name}; ctas: 4; instrs: {instrs};{pairs}"


def test_a_kernel_name_too_long_for_the_injector_is_left_out_at_plan_time(tmp_path, nvbitfi_setup):
    config, profile, _ = nvbitfi_setup
    long_name = "voidcudnn::" + "x" * 1150 + "(float*)"
    assert len(long_name.encode()) == 1169
    names = [KERNELS[0], KERNELS[1], long_name, KERNELS[3], KERNELS[4], KERNELS[0]]
    profile.write_text(
        "\n".join(profile_line(i, n, base_counts(c)) for i, (n, c) in enumerate(zip(names, FP32, strict=False)))
    )
    fake_config(tmp_path / "fake.json", names=names, miss_every=0, vary=False)
    _edit(config, modes=["single_bit"])
    db, planned, _ = _plan_and_run(tmp_path, config, profile, "--injections", "8")
    assert (
        "baseline: left 1 launches out of the draw (kernel names of 1000 bytes or more, which the injector "
        "cannot hold): 300 of the profile's 1325 fp32 instructions (22.64%)."
    ) in " ".join(planned.output.split())
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT COUNT(*) FROM site WHERE status = 'done'").fetchone() == (8,)
        assert con.execute("SELECT COUNT(*) FROM site WHERE kcount = 2").fetchone() == (0,)


def test_a_hang_after_the_fault_keeps_the_sigint_handlers_record(tmp_path, nvbitfi_setup, monkeypatch):
    from fi_campaign.engine.executors import processes

    config, profile, _ = nvbitfi_setup
    monkeypatch.setattr(processes, "MIN_TIMEOUT_S", 1.0)
    fake_config(tmp_path / "fake.json", miss_every=0, vary=False, hang=True)
    _edit(config, modes=["single_bit"], timeout_factor=3)
    db, _, _ = _plan_and_run(tmp_path, config, profile, "--injections", "1")
    with sqlite3.connect(db) as con:
        ((site_id, outcome, detail, state, opcode),) = con.execute(
            "SELECT r.site_id, r.outcome, r.detail, i.state, i.opcode FROM result r JOIN injection i "
            "ON i.site_id = r.site_id"
        ).fetchall()
    assert (outcome, detail, state, opcode) == ("due", "timeout", "injected", "FFMA")  # a hang after the fault
    log = (tmp_path / "x.db.runs" / "baseline" / str(site_id) / "nvbitfi-injection-log-temp.txt").read_text()
    assert log.count("ERROR FAIL Detected Signal SIGKILL") == 1


def test_a_campaign_past_the_not_injected_limit_stops_with_one_sentence(tmp_path, nvbitfi_setup, monkeypatch):
    from fi_campaign.engine import runner

    config, profile, _ = nvbitfi_setup
    monkeypatch.setattr(runner, "MIN_RESULTS_FOR_LIMIT", 4)
    drifted = ["_Z5otherv"] * len(FP32)  # every launch runs another kernel than the profile says
    fake_config(tmp_path / "fake.json", names=drifted, miss_every=0, vary=False)
    _edit(config, modes=["single_bit"], max_not_injected=0.2)
    db, _, ran = _plan_and_run(tmp_path, config, profile, "--injections", "12", run_ok=False)
    assert ran.exit_code == 2 and "Traceback" not in ran.output
    text = " ".join(ran.output.split())
    assert (
        "stopped baseline single_bit: 4 of its 4 results (100%) are not_injected, above nvbitfi.max_not_injected (20%)"
        in text
    )
    with sqlite3.connect(db) as con:
        details = [d for (d,) in con.execute("SELECT detail FROM result")]
        assert con.execute("SELECT COUNT(*) FROM site WHERE status = 'pending'").fetchone() == (8,)
    assert len(details) == 4 and all(d.startswith("launch-sequence drift: launch ") for d in details)
