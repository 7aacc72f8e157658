"""The user's own GPU program through backend nvbitfi, on a machine without a GPU.

A stand-in program plays NVBitFI's tools and the user's program at once, as the stand-in of
tests/test_nvbitfi_campaign.py does: under the profiler it writes the profile; under the
injector it reads the nvbitfi-injection-info.txt in its cwd, writes the injector's log in the
stock format and corrupts its own outputs as the site's instruction says (a case per iid).
Everything else is the product's path: an NVBitFI test-app folder with its run.sh and
sdc_check.sh used unchanged (or a command), golden runs, profiling, plan, run directories,
timeouts, classification, the store, export and resume after kill -9.
"""

from __future__ import annotations

import inspect
import json
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap
import time

import pytest
import yaml
from click.testing import CliRunner

from fi_campaign.cli import main
from tests import nvbitfi_logs
from tests.test_nvbitfi_profile import KERNELS, base_counts, profile_line

LAUNCHES = [40, 0, 300, 25, 900, 60]  # fp32 instructions per launch; launch 1 has none
CASES = ["not_injected", "masked", "tolerable", "critical", "crash", "exit", "hang", "stdout"]
EXPECTED = {  # what each case becomes in an app folder with critical: {relative_error: 0.01}
    "not_injected": ("not_injected", None),
    "masked": ("masked", None),
    "tolerable": ("tolerable_sdc", "SDC: output, stdout differs; tolerable"),
    "critical": ("critical_sdc", "SDC: output, stdout differs; critical"),
    "crash": ("due", "exit code 139"),
    "exit": ("due", "exit code 3"),
    "hang": ("due", "timeout"),
    "stdout": ("critical_sdc", "SDC: stdout differs; critical: no output"),
}

STANDIN = textwrap.dedent("""
    import json, os, shutil, signal, sys, time
    CASES = %r
    LAUNCHES = %r
    values = [1.5, 2.25, -3.0, 4.0]

    def finish(vals, extra="", code=0):
        if not os.environ.get("FAKE_SKIP_OUTPUT"):
            with open(os.environ.get("FAKE_OUT", "output.txt"), "w") as f:
                f.write(" ".join(repr(v) for v in vals) + "\\n")
        print("sum:", sum(vals))
        print(extra, end="")
        sys.stdout.flush()
        sys.exit(code)

    preload = os.environ.get("LD_PRELOAD", "")
    if preload.endswith("profiler.so"):  # the profiler writes its profile under the injector's log name
        assert os.environ["CUDA_INJECTION64_PATH"] == preload
        shutil.copyfile(os.environ["FAKE_PROFILE"], "nvbitfi-injection-log-temp.txt")
        finish(values)
    if not os.path.exists("nvbitfi-injection-info.txt"):  # a golden run: no tool attached
        assert not preload and not os.environ.get("PRELOAD_FLAG")
        if os.environ.get("FAKE_NONDETERMINISTIC"):
            values[0] += os.getpid()
        finish(values)
    assert os.environ["CUDA_INJECTION64_PATH"] == preload, "both attachments name the tool"
    names = ("APP_DIR", "BIN_DIR", "DATASET_DIR", "NVBITFI_HOME", "PRELOAD_FLAG")
    with open("env.json", "w") as f:
        json.dump({"tool": preload, **{k: os.environ.get(k) for k in names}}, f)
    lines = open("nvbitfi-injection-info.txt").read().split("\\n")
    igid, kernel, kcount, iid = int(lines[0]), lines[2], int(lines[3]), int(lines[4])
    log = open("nvbitfi-injection-log-temp.txt", "w")
    log.write(inspecting(kernel))
    if kcount >= len(LAUNCHES):  # past the last launch: instrumented, never fires (the timing run)
        log.close()
        finish(values)
    counts = counts_for("nvlabs", igid, LAUNCHES[kcount])
    case = CASES[iid %% len(CASES)]
    if case == "hang" and os.environ.get("FAKE_NO_HANG"):
        case = "masked"
    if case == "not_injected":
        log.write(launch_exit("nvlabs", kcount, kernel, counts, [NOT_INJECTED]))
        log.close()
        finish(values)
    rec = injected()
    if case == "hang":  # hangs after the fault; the injector's SIGINT handler writes its record
        def handler(sig, frame):
            log.write(sigint_handler("nvlabs", counts, [rec])); log.close(); os._exit(255)
        signal.signal(signal.SIGINT, handler)
        time.sleep(600)
    log.write(launch_exit("nvlabs", kcount, kernel, counts, [rec]))
    log.close()
    if case == "tolerable":
        values[1] *= 1 + 1e-6
    if case == "critical":
        values[2] = 1e6
    if case == "crash":
        sys.stdout.flush()
        os.kill(os.getpid(), signal.SIGSEGV)
    finish(values, "note: a changed line\\n" if case == "stdout" else "", 3 if case == "exit" else 0)
""") % (CASES, LAUNCHES)

RUN_SH = "#!/bin/bash\neval ${PRELOAD_FLAG} ${BIN_DIR}/standin > stdout.txt 2> stderr.txt\n"
SDC_CHECK = textwrap.dedent("""\
    #!/bin/bash
    diff output.txt ${APP_DIR}/golden_output.txt > diff.log
    diff stdout.txt ${APP_DIR}/golden_stdout.txt > stdout_diff.log
    diff stderr.txt ${APP_DIR}/golden_stderr.txt > stderr_diff.log
    touch special_check.log
""")
PROFILE = "\n".join(profile_line(i, KERNELS[i % len(KERNELS)], base_counts(n)) for i, n in enumerate(LAUNCHES)) + "\n"


def executable(path, text):
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


@pytest.fixture(scope="module")
def build_home(tmp_path_factory):
    """An NVBitFI build whose tools are real, empty shared objects: the loader preloads them
    without a word, so a run's stderr is the program's own."""
    base = tmp_path_factory.mktemp("nvbit")
    home = base / "nvbit_release" / "tools" / "nvbitfi"
    src = base / "empty.c"
    src.write_text("int fi_campaign_test_tool;\n")
    for rel in ("injector/injector.so", "profiler/profiler.so"):
        (home / rel).parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["cc", "-shared", "-fPIC", "-o", str(home / rel), str(src)], check=True)
    return home


@pytest.fixture
def own(tmp_path, build_home, monkeypatch):
    """An NVBitFI-layout app folder around the stand-in, its profile, and a config writer."""
    app = tmp_path / "myapp"
    app.mkdir()
    executable(app / "standin", f"#!{sys.executable}\n" + inspect.getsource(nvbitfi_logs) + STANDIN)
    executable(app / "run.sh", RUN_SH)
    executable(app / "sdc_check.sh", SDC_CHECK)
    (tmp_path / "profile.txt").write_text(PROFILE)
    monkeypatch.setenv("FAKE_PROFILE", str(tmp_path / "profile.txt"))
    from fi_campaign.engine.executors import processes
    from fi_campaign.workload import model

    monkeypatch.setattr(model, "resolve_device", lambda device: device)
    monkeypatch.setattr(model, "require_gpu", lambda: None)
    monkeypatch.setattr(processes, "MIN_TIMEOUT_S", 4.0)

    def config(workload, injections=24, **extra):
        path = tmp_path / "own.yaml"
        raw = {
            "name": "own",
            "seed": 5,
            "backend": "nvbitfi",
            "device": "cuda",
            "modes": ["single_bit"],
            "injections": injections,
            "golden_runs": 2,
            "timeout_factor": 3,
            "workload": workload,
            "nvbitfi": {"home": str(build_home), "dialect": "nvlabs", "max_not_injected": 0.6},
        } | extra
        path.write_text(yaml.safe_dump(raw))
        return path

    return app, config


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def rows(db):
    with sqlite3.connect(db) as con:
        return con.execute(
            "SELECT s.id, s.iid, r.outcome, r.detail FROM site s JOIN result r ON r.site_id = s.id ORDER BY s.id"
        ).fetchall()


@pytest.mark.slow
def test_an_nvbitfi_app_folder_end_to_end(tmp_path, own, build_home):
    app, config = own
    before = sorted(p.name for p in app.iterdir())
    path = config({"app": str(app), "critical": {"relative_error": 0.01}})
    db = tmp_path / "own.db"
    planned = cli("--db", db, "plan", path)  # profiled under the build's profiler.so, through run.sh
    assert planned.exit_code == 0, planned.output
    assert (tmp_path / "own.db.runs" / "myapp" / "nvbitfi-igprofile.txt").read_text() == PROFILE
    ran = cli("--db", db, "run", "--workers", "1")
    assert ran.exit_code == 0, ran.output
    assert sorted(p.name for p in app.iterdir()) == before, "the app folder is used unchanged"
    root = tmp_path / "own.db.runs" / "myapp"
    assert (root / "app" / "golden_output.txt").read_text() == "1.5 2.25 -3.0 4.0\n"
    assert (root / "app" / "golden_stdout.txt").read_text() == "sum: 4.75\n"
    got = rows(db)
    assert len(got) == 24 and {CASES[iid % len(CASES)] for _, iid, _, _ in got} == set(CASES)
    for site_id, iid, outcome, detail in got:
        want, why = EXPECTED[CASES[iid % len(CASES)]]
        assert outcome == want, (iid, detail)
        if why:
            assert detail.startswith(why), detail
        d = root / str(site_id)
        assert d.exists() == (outcome != "masked")
        if outcome in ("tolerable_sdc", "critical_sdc"):
            env = json.loads((d / "env.json").read_text())
            tool = str(build_home.resolve() / "injector" / "injector.so")
            assert env == {
                "tool": tool,
                "APP_DIR": str(root / "app"),
                "BIN_DIR": str(app),
                "DATASET_DIR": str(app),
                "NVBITFI_HOME": str(build_home),
                "PRELOAD_FLAG": f"LD_PRELOAD={tool}",
            }
    out = tmp_path / "own.csv"
    assert cli("--db", db, "export", out).exit_code == 0
    assert "kernel,kcount,igid,iid" in out.read_text().splitlines()[0].replace('"', "")
    report = cli("--db", db, "report")
    assert report.exit_code == 0, report.output
    said = " ".join(report.output.split())
    assert (
        "Own program myapp: outputs judged by sdc_check.sh's logs; "
        "an SDC is critical_sdc when its largest relative error exceeds 0.01." in said
    )


def _command(app, **extra):
    return {"command": [str(app / "standin")], "outputs": ["output.txt"]} | extra


SAME_SUM = textwrap.dedent("""
    from pathlib import Path

    def same_sum(golden, run):
        read = lambda d: sum(float(x) for x in (Path(d) / "output.txt").read_text().split())
        return abs(read(golden) - read(run)) < 1.0
""")


@pytest.mark.parametrize(
    "compare, tolerable, critical",
    [
        ("exact", "critical_sdc", "critical_sdc"),
        ({"tolerance": 1e-3}, "masked", "critical_sdc"),
        ("FUNCTION", "masked", "critical_sdc"),
        ("SCRIPT", "critical_sdc", "critical_sdc"),
    ],
)
def test_a_command_with_each_compare_kind(tmp_path, own, monkeypatch, compare, tolerable, critical):
    app, config = own
    monkeypatch.setenv("FAKE_NO_HANG", "1")
    if compare == "FUNCTION":
        (tmp_path / "rules.py").write_text(SAME_SUM)
        compare = f"{tmp_path / 'rules.py'}:same_sum"
    if compare == "SCRIPT":
        compare = str(executable(tmp_path / "same.sh", '#!/bin/bash\ncmp -s "$1/output.txt" "$2/output.txt"\n'))
    path = config(_command(app, compare=compare, ignore_lines=["^note:", "^sum:"]), injections=16)
    db = tmp_path / "c.db"
    assert cli("--db", db, "plan", path, "--profile", tmp_path / "profile.txt").exit_code == 0
    ran = cli("--db", db, "run", "--workers", "1")
    assert ran.exit_code == 0, ran.output
    got = rows(db)
    want = {"masked": "masked", "stdout": "masked", "tolerable": tolerable, "critical": critical}
    want |= {"not_injected": "not_injected", "crash": "due", "exit": "due", "hang": "masked"}
    assert {CASES[iid % len(CASES)] for _, iid, _, _ in got} >= {"masked", "tolerable", "critical", "stdout"}
    for _, iid, outcome, detail in got:
        case = CASES[iid % len(CASES)]
        assert outcome == want[case], (case, detail)
        if case == "crash":
            assert detail == "signal SIGSEGV"  # a command is started directly: its signal is seen
        if outcome == "critical_sdc":
            assert "critical by default: no critical rule" in detail
    said = " ".join(cli("--db", db, "report").output.split())
    assert "no critical rule was given, so every SDC counts as critical_sdc (the default)." in said


def test_a_command_critical_rule_by_script_and_stdout_compared(tmp_path, own, monkeypatch):
    app, config = own
    monkeypatch.setenv("FAKE_NO_HANG", "1")
    big = executable(
        tmp_path / "big.sh", '#!/bin/bash\ngrep -q 1000000 "$2/output.txt"\n'
    )  # critical when the huge value appears
    path = config(_command(app, critical=str(big)), injections=16)
    db = tmp_path / "s.db"
    assert cli("--db", db, "plan", path, "--profile", tmp_path / "profile.txt").exit_code == 0
    assert cli("--db", db, "run", "--workers", "1").exit_code == 0
    want = {"tolerable": "tolerable_sdc", "critical": "critical_sdc", "stdout": "tolerable_sdc"}
    for _, iid, outcome, detail in rows(db):
        case = CASES[iid % len(CASES)]
        if case in want:
            assert outcome == want[case], (case, detail)
            assert detail.endswith(f"by {big}")


def test_a_non_deterministic_program_is_refused_at_golden_time(tmp_path, own, monkeypatch):
    app, config = own
    monkeypatch.setenv("FAKE_NONDETERMINISTIC", "1")
    db = tmp_path / "n.db"
    assert cli("--db", db, "plan", config({"app": str(app)}), "--profile", tmp_path / "profile.txt").exit_code == 0
    ran = cli("--db", db, "run", "--workers", "1")
    assert ran.exit_code == 2 and "Traceback" not in ran.output
    assert "golden runs 0 and 1 of the program disagree on output.txt (non-deterministic output)" in ran.output


def _plan_fails(tmp_path, path, *extra):
    r = cli("--db", tmp_path / "bad.db", "plan", path, "--profile", tmp_path / "profile.txt", *extra)
    assert r.exit_code == 2 and "Traceback" not in r.output, r.output
    return " ".join(r.output.split())


def test_bad_app_folders_and_commands_are_one_sentence(tmp_path, own):
    app, config = own
    (app / "run.sh").chmod(0o644)
    assert f"the app's {app / 'run.sh'} is not executable; run chmod +x" in _plan_fails(
        tmp_path, config({"app": str(app)})
    )
    (app / "run.sh").unlink()
    assert f"workload.app {app} has no run.sh" in _plan_fails(tmp_path, config({"app": str(app)}))
    said = _plan_fails(tmp_path, config({"command": ["no-such-program-here", "x"]}))
    assert "workload.command's program no-such-program-here is not found on PATH." in said
    said = _plan_fails(tmp_path, config({"command": [str(app / "standin")], "outputs": ["o"], "critical": 3}))
    assert "workload.critical is 3" in said


def test_an_output_never_written_and_a_compare_that_raises_stop_the_run(tmp_path, own, monkeypatch):
    app, config = own
    db = tmp_path / "o.db"
    path = config(_command(app, outputs=["never.txt"]))
    assert cli("--db", db, "plan", path, "--profile", tmp_path / "profile.txt").exit_code == 0
    ran = cli("--db", db, "run", "--workers", "1")
    assert ran.exit_code == 2 and "Traceback" not in ran.output
    assert "golden run 0: the program never wrote its output never.txt" in " ".join(ran.output.split())

    (tmp_path / "rules.py").write_text("def broken(golden, run):\n    raise KeyError('x')\n")
    db = tmp_path / "r.db"
    path = config(_command(app, compare=f"{tmp_path / 'rules.py'}:broken"))
    assert cli("--db", db, "plan", path, "--profile", tmp_path / "profile.txt").exit_code == 0
    ran = cli("--db", db, "run", "--workers", "1")
    assert ran.exit_code == 2 and "Traceback" not in ran.output
    assert f"workload.compare {tmp_path / 'rules.py'}:broken raised KeyError" in " ".join(ran.output.split())


WRAPPER = textwrap.dedent("""
    import sys
    from fi_campaign.workload import model
    model.require_gpu = lambda: None  # the stand-in plays the GPU (spawned workers import this too)
    model.resolve_device = lambda device: device
    if __name__ == "__main__":
        from fi_campaign.cli import main
        main(sys.argv[1:])
""")


@pytest.mark.slow
def test_kill_9_then_resume_gives_the_undisturbed_results(tmp_path, own, monkeypatch):
    app, config = own
    monkeypatch.setenv("FAKE_NO_HANG", "1")
    path = config(_command(app, critical={"relative_error": 0.01}), injections=80)
    wrapper = tmp_path / "cli.py"
    wrapper.write_text(WRAPPER)
    env = os.environ | {"PYTHONPATH": os.pathsep.join(sys.path)}

    def start(db):
        return subprocess.Popen(
            [sys.executable, str(wrapper), "--db", str(db), "run", "--workers", "2"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )

    results = {}
    for name in ("ref", "killed"):
        db = tmp_path / f"{name}.db"
        assert cli("--db", db, "plan", path, "--profile", tmp_path / "profile.txt").exit_code == 0
        if name == "killed":
            p = start(db)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                with sqlite3.connect(db) as con:
                    if con.execute("SELECT count(*) FROM result").fetchone()[0] >= 5:
                        break
                time.sleep(0.05)
            os.killpg(p.pid, signal.SIGKILL)  # the runner and its workers: a power cut
            p.wait()
            with sqlite3.connect(db) as con:
                done = con.execute("SELECT count(*) FROM result").fetchone()[0]
            assert 5 <= done < 80, "nothing was interrupted"
        p = start(db)
        assert p.wait(timeout=300) == 0, p.stderr.read().decode() if p.stderr else ""
        results[name] = [(s, i, o) for s, i, o, _ in rows(db)]
    assert len(results["ref"]) == 80 and results["killed"] == results["ref"]


def test_the_example_app_folders_scripts_work_as_nvbitfi_runs_them(tmp_path, own, monkeypatch):
    """nvbitfi_tools/examples/vectoradd's run.sh and sdc_check.sh, unchanged, with the stand-in
    as its binary (BIN_DIR): the GPU machine runs the real one (make gpu-check, own_app)."""
    from pathlib import Path

    app, config = own
    monkeypatch.setenv("FAKE_NO_HANG", "1")
    example = Path(__file__).resolve().parents[1] / "nvbitfi_tools" / "examples" / "vectoradd"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (app / "standin").rename(bin_dir / "vectoradd")
    path = config({"app": str(example), "bin": str(bin_dir), "critical": {"relative_error": 0.01}}, injections=16)
    db = tmp_path / "e.db"
    assert cli("--db", db, "plan", path, "--profile", tmp_path / "profile.txt").exit_code == 0
    ran = cli("--db", db, "run", "--workers", "1")
    assert ran.exit_code == 0, ran.output
    want = {"masked": "masked", "tolerable": "tolerable_sdc", "critical": "critical_sdc", "stdout": "critical_sdc"}
    got = rows(db)
    assert {CASES[iid % len(CASES)] for _, iid, _, _ in got} >= set(want)
    for _, iid, outcome, detail in got:
        case = CASES[iid % len(CASES)]
        if case in want:
            assert outcome == want[case], (case, detail)
    assert not list(example.glob("golden_*")), "the example folder is used unchanged"


@pytest.mark.parametrize(
    "workload, said",
    [
        ({"app": "a", "command": ["b"]}, "workload takes app (an NVBitFI test-app folder) or command, not both."),
        ({"command": ["b"], "args": ["x"]}, "workload.args goes with app"),
        ({"app": "a", "compare": "exact"}, "workload.compare goes with command"),
        ({"command": ["b"], "compare": {"tolerance": -1}}, "workload.compare is {'tolerance': -1}; it must be exact"),
        ({"command": []}, "workload.command is empty"),
        ({"command": ["b"], "ignore_lines": ["("]}, "workload.ignore_lines: '(' is not a regular expression"),
        ({"command": ["b"], "critical": {"relative_error": "x"}}, "workload.critical is"),
        ({}, "workload must name an NVBitFI app folder (app: DIR) or a program (command: [...])."),
    ],
)
def test_a_bad_workload_section_is_one_sentence(workload, said):
    from fi_campaign.config import ConfigError, parse

    base = {"backend": "nvbitfi", "device": "cuda", "modes": ["single_bit"]}
    with pytest.raises(ConfigError) as e:
        parse(base | {"workload": workload}, "x.yaml")
    assert said in str(e.value)
    with pytest.raises(ConfigError, match="set backend: nvbitfi"):
        parse({"workload": {"app": "a"}}, "x.yaml")
    with pytest.raises(ConfigError, match="give models .networks. or workload .your own program., not both"):
        parse(base | {"workload": {"app": "a"}, "models": {"m": "zoo:x"}}, "x.yaml")


def test_a_workload_config_survives_the_store_and_names_its_model(tmp_path):
    from fi_campaign.config import Config, parse

    base = {"backend": "nvbitfi", "device": "cuda", "modes": ["single_bit"]}
    c = parse(base | {"workload": {"command": ["./solver", "-n", "4"], "outputs": ["r.npy"]}}, "x.yaml")
    assert c.models == {"solver": f"command:{os.path.abspath('solver')} -n 4"}
    assert Config.from_json(c.to_json()) == c
    c = parse(base | {"workload": {"app": str(tmp_path), "name": "mine", "critical": {"relative_error": 0.1}}}, "x")
    assert list(c.models) == ["mine"] and Config.from_json(c.to_json()) == c


C_STANDIN = r"""
/* A C program playing NVBitFI's stock injector and a GPU program (tests/test_own_program.py):
   without nvbitfi-injection-info.txt it writes its eight outputs; with one it writes the
   injector's log for the site and flips bit (int)(32 * bitIDSeed) of output iid % 8, except
   for every fourth iid, whose fault is masked. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>

static const int LAUNCHES[] = {40, 0, 300, 25, 900, 60};

int main(void) {
    float v[8];
    for (int i = 0; i < 8; ++i) v[i] = 1.25f + 0.5f * (float)i;
    FILE *info = fopen("nvbitfi-injection-info.txt", "r");
    if (info != NULL) {
        int igid, bfm, kcount; long iid; double op, bit; char kernel[1000];
        if (fscanf(info, "%d %d %999s %d %ld %lf %lf", &igid, &bfm, kernel, &kcount, &iid, &op, &bit) != 7) return 9;
        fclose(info);
        FILE *log = fopen("nvbitfi-injection-log-temp.txt", "w");
        fprintf(log, "inspecting: %s\nnum_static_instrs: 812\nmaxregs: 40(40)\n", kernel);
        if (kcount < 6) {
            long c[8] = {0};  /* fp64 fp32 ld pr nodest others, then gppr and gp */
            c[igid] = LAUNCHES[kcount];
            long sum = 0;
            for (int i = 0; i < 6; ++i) sum += c[i];
            c[6] = sum - c[4];
            c[7] = c[6] - c[3];
            uint32_t mask = 1u << (int)(32 * bit), before;
            memcpy(&before, &v[iid % 8], 4);
            fprintf(log, "Injection data\nindex: %d\nkernel_name: %s\nctas: 4\ninstrs: %ld\n", kcount, kernel, sum);
            for (int i = 0; i < 8; ++i) fprintf(log, " grp %d: %ld", i, c[i]);
            fprintf(log, "\nmask: 0x%x\nbeforeVal: 0x%x;afterVal: 0x%x\n", mask, before, before ^ mask);
            fprintf(log, "regNo: 12\nopcode: FFMA\npcOffset: 0x1a0\ntid: 7\n");
            if (iid % 4 != 0) {
                uint32_t after = before ^ mask;
                memcpy(&v[iid % 8], &after, 4);
            }
        }
        fclose(log);
    }
    FILE *out = fopen("output.txt", "w");
    for (int i = 0; i < 8; ++i) fprintf(out, "%.9g\n", v[i]);
    fclose(out);
    printf("done\n");
    return 0;
}
"""


def test_a_c_program_as_a_command_judged_by_relative_error(tmp_path, own):
    """A compiled program under the tool: LD_PRELOAD and CUDA_INJECTION64_PATH on a C
    executable, its text output read as numbers, each SDC critical exactly when the flipped
    bit moved its value by more than the threshold."""
    import struct

    _, config = own
    src = tmp_path / "standin.c"
    src.write_text(C_STANDIN)
    exe = tmp_path / "cstandin"
    subprocess.run(["cc", "-O1", "-o", str(exe), str(src)], check=True)
    path = config({"command": [str(exe)], "outputs": ["output.txt"], "critical": {"relative_error": 1e-3}})
    db = tmp_path / "c.db"
    assert cli("--db", db, "plan", path, "--profile", tmp_path / "profile.txt").exit_code == 0
    ran = cli("--db", db, "run", "--workers", "1")
    assert ran.exit_code == 0, ran.output
    with sqlite3.connect(db) as con:
        got = con.execute(
            "SELECT s.iid, s.bit_seed, r.outcome, r.max_abs_diff FROM site s JOIN result r ON r.site_id = s.id"
        ).fetchall()
    assert len(got) == 24
    seen = set()
    for iid, bit_seed, outcome, diff in got:
        v = struct.unpack("f", struct.pack("f", 1.25 + 0.5 * (iid % 8)))[0]
        bits = struct.unpack("I", struct.pack("f", v))[0] ^ (1 << int(32 * bit_seed))
        flipped = struct.unpack("f", struct.pack("I", bits))[0]
        printed = float(f"{flipped:.9g}")
        rel = abs(printed - v) / abs(v)
        want = "masked" if iid % 4 == 0 or printed == v else ("critical_sdc" if rel > 1e-3 else "tolerable_sdc")
        assert outcome == want, (iid, bit_seed, outcome, rel)
        if outcome.endswith("_sdc"):
            assert diff == pytest.approx(abs(printed - v))
        seen.add(outcome)
    assert {"masked", "tolerable_sdc", "critical_sdc"} <= seen


def test_an_app_folders_own_golden_files_are_used_and_checked(tmp_path, own, monkeypatch):
    app, config = own
    monkeypatch.setenv("FAKE_NO_HANG", "1")
    (app / "golden_output.txt").write_text("1.5 2.25 -3.0 4.0\n")
    (app / "golden_stdout.txt").write_text("sum: 4.75\n")
    (app / "golden_stderr.txt").write_text("")
    db = tmp_path / "g.db"
    path = config({"app": str(app)}, injections=8)
    assert cli("--db", db, "plan", path, "--profile", tmp_path / "profile.txt").exit_code == 0
    ran = cli("--db", db, "run", "--workers", "1")
    assert ran.exit_code == 0, ran.output
    kept = tmp_path / "g.db.runs" / "myapp" / "app" / "golden_output.txt"
    assert kept.is_symlink() and kept.resolve() == (app / "golden_output.txt").resolve()

    (app / "golden_stdout.txt").write_text("sum: 4.5\n")  # no fault-free run prints this
    db = tmp_path / "h.db"
    assert cli("--db", db, "plan", path, "--profile", tmp_path / "profile.txt").exit_code == 0
    ran = cli("--db", db, "run", "--workers", "1")
    assert ran.exit_code == 2 and "Traceback" not in ran.output
    said = " ".join(ran.output.split())
    assert f"golden run 0 differs from {app}'s golden files (stdout per sdc_check.sh)" in said
