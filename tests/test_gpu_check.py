"""The GPU check (make gpu-check, bench/gpu_check.py): its runner goes on past a step that
hangs, crashes or fails, each recorded with one line, and keeps to its time budget; its dry run
on this CPU machine runs the steps that need no GPU and marks the others skipped."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from bench.gpucheck.plan import STEPS, Spec, limit_for
from bench.gpucheck.runner import Options, run

REPO = Path(__file__).resolve().parents[1]


def fake(name: str, cap: float = 20, floor: float = 1, gpu: bool = False) -> Spec:
    return Spec(name, f"the stand-in {name}", gpu, cap, floor)


def gone_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


def test_a_hanging_crashing_or_failing_step_is_one_line_and_the_check_goes_on(tmp_path):
    steps = (
        fake("first"),
        fake("hang", cap=3),
        fake("crash"),
        fake("fail"),
        fake("hand-on"),
        fake("gpu", gpu=True),
        fake("last"),
    )
    o = Options(
        work=tmp_path / "work", out=tmp_path / "out", dry=True, budget_s=120, steps=steps, module="tests.gpucheck_fakes"
    )
    summary = run(o)
    by = {s["name"]: s for s in summary["steps"]}
    assert [s["name"] for s in summary["steps"]] == [s.name for s in steps]
    assert by["first"]["status"] == "ok" and by["first"]["figures"]["dry"] is True
    hang = by["hang"]
    assert hang["status"] == "failed" and hang["limit_s"] == 3
    assert hang["error"] == "hang: timed out after 3 s; last output: waiting for a GPU that never answers"
    assert gone_within(int((tmp_path / "work" / "child.pid").read_text()), 10)  # its own session: ended too
    assert by["crash"]["status"] == "failed"
    assert by["crash"]["error"] == "crash: exited with code 3 and no result; last output: boom: the stand-in crashed"
    assert by["fail"] == {
        **by["fail"],
        "status": "failed",
        "error": "fail: the stand-in failed on purpose",
        "figures": {"seen": 1},
    }
    assert by["gpu"]["status"] == "skipped" and by["gpu"]["reason"] == "needs the GPU machine (dry run)"
    last = by["last"]
    assert last["status"] == "ok" and last["figures"]["fi_x"] == "1"
    assert last["figures"]["pythonpath"].split(os.pathsep)[0] == "/somewhere/site"
    assert summary["counts"] == {"ok": 3, "failed": 3, "skipped": 1}
    written = json.loads((tmp_path / "out" / "gpu-check.json").read_text())
    assert written["steps"] == summary["steps"] and written["dry_run"] is True
    assert "hang     " not in (tmp_path / "out" / "gpu-check.txt").read_text().splitlines()[0]
    with tarfile.open(tmp_path / "out" / "gpu-check-logs.tar.gz") as tar:
        names = tar.getnames()
    assert {"logs/hang.log", "logs/crash.log", "results/fail.json", "state.json"} <= set(names)


def test_a_step_runs_only_while_the_later_steps_keep_their_least_time(tmp_path):
    steps = (fake("first", cap=100, floor=1), fake("long", cap=100, floor=60), fake("last", cap=5, floor=2))
    assert limit_for(steps, 0, 400, {"first", "long", "last"}) == 100
    assert limit_for(steps, 0, 80, {"first", "long", "last"}) == 80 - 60 - 2 - 10
    assert limit_for(steps, 0, 80, {"first", "last"}) == 80 - 2 - 10
    o = Options(work=tmp_path / "work", out=tmp_path / "out", budget_s=40, steps=steps, module="tests.gpucheck_fakes")
    by = {s["name"]: s for s in run(o)["steps"]}
    assert by["long"]["status"] == "skipped" and by["long"]["reason"].startswith("no time left")
    assert by["first"]["status"] == "ok" and 1 < by["first"]["figures"]["limit"] <= 40 - 2 - 10  # long's 60 s not kept
    assert by["last"]["status"] == "ok" and by["last"]["figures"]["limit"] == 5


def test_the_plan_fits_eight_minutes_and_keeps_the_gpu_steps_apart():
    names = [s.name for s in STEPS]
    assert len(set(names)) == len(names)
    assert names.index("c_program") < names.index("torch_dummy") < names.index("workaround") < names.index("counts")
    assert all(s.floor_s <= s.cap_s for s in STEPS)
    assert sum(s.floor_s for s in STEPS) < 450  # every step gets at least its floor within the budget
    assert {s.name for s in STEPS if not s.gpu} == {
        "environment",
        "install",
        "tool_host",
        "tool_build",
        "programs",
        "configs",
    }


def dry(tmp_path: Path, *args: str, timeout: float = 600) -> tuple[subprocess.CompletedProcess, dict]:
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "gpu_check.py"),
            "--dry",
            "--work",
            str(tmp_path / "w"),
            "--out",
            str(tmp_path / "out"),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
    )
    return done, json.loads((tmp_path / "out" / "gpu-check.json").read_text())


def test_the_dry_runs_fast_part_on_this_machine(tmp_path):
    done, summary = dry(tmp_path, "--only", "environment,tool_host", timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert [s["name"] for s in summary["steps"]] == [s.name for s in STEPS]
    by = {s["name"]: s for s in summary["steps"]}
    for spec in STEPS:
        step = by[spec.name]
        assert set(step) >= {"status", "duration_s", "figures", "error", "reason"}
        if spec.gpu:
            assert step["status"] == "skipped" and step["reason"] == "needs the GPU machine (dry run)"
    env = by["environment"]
    assert env["status"] == "ok" and env["figures"]["python"]["version"] and env["figures"]["torch"]["version"]
    assert env["figures"]["torch"]["cuda_available"] is False
    host = by["tool_host"]
    assert host["status"] == "ok", host["error"]
    assert host["figures"]["host_agrees"] is True  # the tool's C++ logic gives the Python side's bits
    assert by["install"]["status"] == "skipped" and by["install"]["reason"] == "not selected (--only)"


@pytest.mark.slow  # about 1.5 min here: installs into a scratch site, compiles, plans three campaigns
def test_the_whole_dry_run_passes_and_rehearses_every_cpu_step(tmp_path):
    done, summary = dry(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    by = {s["name"]: s for s in summary["steps"]}
    assert all(by[s.name]["status"] == "skipped" for s in STEPS if s.gpu)
    assert by["tool_build"]["status"] == "skipped" and "--full" in by["tool_build"]["reason"]
    if (REPO / ".whl").is_dir():  # make gpu-wheels has run here: the wheel set resolves for Python 3.12
        install = by["install"]["figures"]
        assert by["install"]["status"] == "ok", by["install"]["error"]
        assert {"sqlalchemy", "alembic", "mako", "fi-campaign"} <= set(install["installs"])
        assert "torch" in install["from_image"] and install["after"]["fi_campaign"].startswith(str(tmp_path / "w"))
    else:
        assert by["install"]["status"] == "skipped" and "make gpu-wheels" in by["install"]["reason"]
    configs = by["configs"]
    assert configs["status"] == "ok", configs["error"]
    assert configs["figures"]["dummy_planned"] == {"baseline single_bit": 20}
    assert set(configs["figures"]["sass_planned"]) == {
        "baseline single_bit",
        "baseline warp_random",
        "hardened single_bit",
        "hardened warp_random",
    }
    assert set(configs["figures"]["formats_planned"]) == {
        f"{m} {mode}" for m in ("baseline", "hardened-bf16") for mode in ("single_bit", "weight_bit", "weight_stuck_at")
    }
    assert by["programs"]["status"] in ("ok", "skipped")


STUB = REPO / "tests" / "gpucheck_stub"
TOOL = REPO / "nvbitfi_tools" / "tool"
REHEARSED = (
    "environment",
    "tool_host",
    "configs",
    "doctor",
    "c_program",
    "torch_dummy",
    "workaround",
    "counts",
    "sass_campaign",
)


def stand_in_machine(tmp_path: Path, silent_python: bool) -> tuple[dict[str, str], Path]:
    """A stand-in tool build, nvidia-smi, saxpy, python3 and C host (tests/gpucheck_stub/standin.py),
    and the environment the check runs in; returns it and the work folder, whose state.json
    names the stand-ins as the steps it leaves out would have."""
    import shutil as sh

    from fi_campaign.nvbitfi_tools import build

    if sh.which("g++") is None:
        pytest.skip("g++ is not installed, so the tool's host build that the stand-in uses cannot be made")
    home = tmp_path / "tool"
    for rel in ("profiler/profiler.so", "injector/injector.so", "injector/injector-dummy.so"):
        (home / rel).parent.mkdir(parents=True, exist_ok=True)
        (home / rel).write_bytes(b"")
    (home / build.MARKER).write_text(
        json.dumps(
            {
                "tool": "fi-campaign",
                "dialect": "fi-campaign",
                "nvbit_version": "1.7.7.3",
                "nvcc_version": "13.0.88",
                "arch": "90",
                "sources_sha256": build.sources_digest(TOOL),
            }
        )
    )
    host = tmp_path / "host_test"
    subprocess.run(
        ["g++", "-std=c++17", "-O2", "-ffp-contract=off", str(TOOL / "tests" / "host_test.cpp"), "-o", str(host)],
        check=True,
    )
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, role in (("nvidia-smi", "nvidia-smi"), ("python3", "python"), ("pyhost", "pyhost"), ("saxpy", "saxpy")):
        (bin_dir / name).write_text(f'#!/bin/sh\nexec "{sys.executable}" "{STUB / "standin.py"}" {role} "$@"\n')
        (bin_dir / name).chmod(0o755)
    (bin_dir / "nvdisasm").write_text("#!/bin/sh\nexit 0\n")  # NVBit's disassembler: the environment step asks for it
    (bin_dir / "nvdisasm").chmod(0o755)
    work = tmp_path / "w"
    work.mkdir()
    (work / "state.json").write_text(
        json.dumps({"tool_home": str(home), "saxpy": str(bin_dir / "saxpy"), "pyhost": str(bin_dir / "pyhost")})
    )
    paths = [str(STUB), str(REPO / "src"), *([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])]
    env = dict(
        os.environ,
        PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        PYTHONPATH=os.pathsep.join(paths),
        FI_GPU_CHECK_STUB="1",
        FI_WORKLOAD_PYTHON=str(bin_dir / "python3"),
        FI_HOST_TEST=str(host),
    )
    if silent_python:
        env["FAKE_NO_PYTHON_CALLBACKS"] = "1"
    return env, work


@pytest.mark.slow  # 2 to 4 min here: two DUMMY campaigns' worth of stand-in processes
@pytest.mark.parametrize("silent_python", [False, True], ids=["tool-sees-python", "no-callbacks-in-python"])
def test_the_gpu_steps_rehearsed_against_a_stand_in_tool(tmp_path, monkeypatch, silent_python):
    """The GPU steps' own logic, end to end, on a machine without a GPU: the stand-in plays
    nvidia-smi, saxpy and the workload under the tool, writing what the tool writes through
    its host build. With no callbacks inside python3, the DUMMY campaign's failure names it and
    the C host's campaign (the workaround) carries the later steps. The steps' time caps are
    raised: stand-in processes on a loaded CPU are slower than the GPU machine's, and the caps
    are not what this checks."""
    from dataclasses import replace

    env, work = stand_in_machine(tmp_path, silent_python)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    steps = tuple(replace(s, cap_s=s.cap_s * 5) for s in STEPS)
    summary = run(
        Options(work=work, out=tmp_path / "out", budget_s=7200, steps=steps, only=frozenset(REHEARSED), per_stratum=2)
    )
    by = {s["name"]: s for s in summary["steps"]}
    for name in ("environment", "tool_host", "configs", "doctor", "c_program", "counts", "sass_campaign"):
        assert by[name]["status"] == "ok", (name, by[name]["error"])
    assert by["environment"]["figures"]["gpus"][0]["driver"] == "580.159.04"
    assert summary["device"]["driver"] == "580.159.04" and summary["device"]["compute_cap"] == "9.0"
    c = by["c_program"]["figures"]
    assert c["profile"]["launches"] == 6 and c["dummy"]["masked"] == 20 and c["dummy"]["counts_equal_profile"] == 20
    assert c["real"]["injected"] == c["real"]["records_right"] > 0  # per-lane records checked against the sampler
    if silent_python:
        assert by["torch_dummy"]["status"] == "failed"
        assert "no kernel-launch callback arrived inside the workload process" in by["torch_dummy"]["error"]
        assert by["workaround"]["status"] == "ok" and by["workaround"]["figures"]["outcomes"] == {"masked": 20}
    else:
        assert by["torch_dummy"]["status"] == "ok" and by["torch_dummy"]["figures"]["outcomes"] == {"masked": 20}
        assert by["workaround"]["status"] == "skipped" and by["workaround"]["reason"].startswith("not needed")
    counts = by["counts"]["figures"]
    assert counts["launches"] == counts["checked"] == counts["equal"] == 5 and counts["complete"]
    strata = by["sass_campaign"]["figures"]["strata"]
    assert set(strata) == {"baseline single_bit", "baseline warp_random", "hardened single_bit", "hardened warp_random"}
    assert all(v["done"] == v["planned"] == 2 for v in strata.values())
    assert summary["counts"]["failed"] == (1 if silent_python else 0)
