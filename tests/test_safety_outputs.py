"""No output can destroy a store, any file name works, a plan is all or nothing, the injection
log survives a full disk, and a run fits the machine (issue 13, part A). Real stores, real
files, the real CLI; the plan kills run the real `fi-campaign` executable."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import resource
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from fi_campaign.cli import main
from fi_campaign.engine import capacity, runner
from fi_campaign.store import Store, log_path

EXE = str(Path(sys.executable).with_name("fi-campaign"))
ZOO_HARDENED = Path(__file__).resolve().parents[1] / "models" / "zoo" / "resnet20-cifar10-hardened.pt"


def cli(*args: str | Path, env: dict | None = None):
    return CliRunner().invoke(main, [str(a) for a in args], env=env)


def one_sentence(result, *needles: str) -> None:
    """Exit code 2, one line on stderr starting 'Error: ', no traceback."""
    assert result.exit_code == 2, (result.exit_code, result.output)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in lines[0], lines[0]


def write_config(path: Path, checkpoints: dict[str, Path], **over) -> Path:
    raw = {
        "name": "safety",
        "seed": 5,
        "injections": 16,
        "batch_size": 16,
        "modes": ["single_bit"],
        "models": {"baseline": str(checkpoints["baseline"])},
        "images": {"source": "bundled", "count": 8},
    }
    path.write_text(yaml.safe_dump({**raw, **over}))
    return path


def planned(db: Path, config: Path, *extra: str) -> Path:
    r = cli("--db", db, "plan", config, *extra)
    assert r.exit_code == 0, r.output
    return db


def fingerprint(db: Path) -> tuple[str, list]:
    """The store file's bytes and what it holds, read through a fresh connection."""
    with sqlite3.connect(db) as con:
        rows = con.execute("SELECT site_id, outcome FROM result ORDER BY site_id").fetchall()
    return hashlib.sha256(db.read_bytes()).hexdigest(), rows


def samples_csv(path: Path) -> Path:
    rng = np.random.default_rng(0)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["micro", "operation", "input_size", "relative_diff"])
        for v in 2.0 * (1 - rng.random(400)) ** (-1 / 0.45):
            w.writerow(["FFMA", 2, "common", repr(float(v))])
    return path


@pytest.fixture(scope="module")
def store(tmp_path_factory, checkpoints) -> Path:
    """A planned, fully run store whose WAL is folded into the file, so its bytes only change
    if something writes to it."""
    folder = tmp_path_factory.mktemp("safety")
    db = planned(folder / "x.db", write_config(folder / "c.yaml", checkpoints))
    runner.run(Store.open(db))
    with sqlite3.connect(db) as con:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    samples_csv(folder / "samples.csv")
    return db


# --- every output flag pointed at the store ----------------------------------------------------

OUTPUT_FLAGS = {
    "export": ["--db", "{db}", "export", "{out}"],
    "report --csv": ["--db", "{db}", "report", "--csv", "{out}"],
    "report --json": ["--db", "{db}", "report", "--json", "{out}"],
    "report --html": ["--db", "{db}", "report", "--html", "{out}"],
    "evaluate --csv": ["evaluate", "--regret", "--db", "{db}", "zoo:resnet20-cifar10-baseline", "--csv", "{out}"],
    "fault-model fit --out": ["--db", "{db}", "fault-model", "fit", "{samples}", "--out", "{out}"],
    "fault-model show --plot": [
        "fault-model",
        "show",
        "dsn2021-fu",
        "--data",
        "{samples}",
        "--op",
        "FFMA",
        "--size",
        "common",
        "--plot",
        "{out}",
    ],
    "train --out": ["train", "--preset", "baseline", "--data", "bundled", "--out", "{out}"],
    "injector build --out": ["injector", "build", "--nvbit", "{samples}", "--out", "{out}"],
}


@pytest.mark.parametrize("flag", list(OUTPUT_FLAGS))
def test_no_output_flag_can_write_over_the_store(store, flag, monkeypatch):
    folder = store.parent
    monkeypatch.chdir(folder)
    for link, make in (("link.db", os.symlink), ("hard.db", os.link), ("hard.png", os.link)):
        if not (folder / link).exists():
            make(store, folder / link)
    (folder / "x.db.runs").mkdir(exist_ok=True)
    before = fingerprint(store)
    spellings = [
        "x.db",
        "./x.db",
        str(store),
        "link.db",
        "hard.db",
        "hard.png",
        f"{folder}/../{folder.name}/x.db",
        "x.db-wal",
        "x.db-shm",
        "x.db.log.jsonl",
        "x.db.runs",
        "x.db.runs/out.csv",
        "x.db.runs/out.png",
    ]
    for out in spellings:
        for force in ([], ["--force"]) if flag != "injector build --out" else ([],):  # a build folder: no --force
            args = [a.format(db="x.db", out=out, samples="samples.csv") for a in OUTPUT_FLAGS[flag]] + force
            result = cli(*args)
            if flag.endswith("--plot") and not out.endswith(".png"):  # refused sooner, for its suffix
                one_sentence(result, out, "name it .png")
            else:
                one_sentence(result, out, "never writes over a store")
            assert fingerprint(store) == before, (flag, out, force)
    assert Store.open(store).progress() == [("baseline", "single_bit", 16, 16)]
    assert sorted(p.name for p in folder.iterdir() if p.name.startswith(".")) == []  # no temporary file left


# --- existing files: refused without --force, replaced with it -----------------------------------


def test_existing_outputs_need_force(store, tmp_path):
    samples = store.parent / "samples.csv"
    cases = {
        "export": (["--db", store, "export"], "site_id,"),
        "report --csv": (["--db", store, "report", "--csv"], "model,mode,outcome"),
        "report --json": (["--db", store, "report", "--json"], "{"),
        "evaluate --csv": (
            ["evaluate", "zoo:resnet20-cifar10-baseline", "--images", "8", "--device", "cpu", "--csv"],
            "model,preset,clean",
        ),
        "fault-model fit --out": (
            ["fault-model", "fit", samples, "--by", "micro,input_size", "--out"],
            "format: fi-campaign/fault-model",
        ),
        "fault-model show --plot": (
            ["fault-model", "show", "dsn2021-fu", "--data", samples, "--op", "FFMA", "--size", "common", "--plot"],
            "\x89PNG",
        ),
    }
    suffixes = {"report --json": ".json", "fault-model fit --out": ".yaml", "fault-model show --plot": ".png"}
    for name, (args, starts) in cases.items():
        out = tmp_path / f"{name.replace(' ', '_')}{suffixes.get(name, '.csv')}"
        out.write_text("keep me\n")
        one_sentence(cli(*args, out), "exists; pass --force to replace it")
        assert out.read_text() == "keep me\n", name
        r = cli(*args, out, "--force")
        assert r.exit_code == 0, (name, r.output)
        assert out.read_bytes().decode("latin-1").startswith(starts), name
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_html_report_replaces_its_own_files_only_with_force(store, tmp_path):
    folder = tmp_path / "html"
    assert cli("--db", store, "report", "--html", folder).exit_code == 0
    page = (folder / "index.html").read_bytes()
    (folder / "notes.txt").write_text("mine")
    (folder / "avf.png").write_bytes(b"old figure")
    one_sentence(cli("--db", store, "report", "--html", folder), "exists; pass --force")
    assert (folder / "avf.png").read_bytes() == b"old figure" and (folder / "index.html").read_bytes() == page
    assert cli("--db", store, "report", "--html", folder, "--force").exit_code == 0
    assert (folder / "avf.png").read_bytes()[:4] == b"\x89PNG" and (folder / "notes.txt").read_text() == "mine"


def test_train_never_writes_into_the_zoo_by_default(tmp_path, monkeypatch):
    zoo_before = hashlib.sha256(ZOO_HARDENED.read_bytes()).hexdigest()
    monkeypatch.chdir(tmp_path)
    mine = tmp_path / "resnet20-cifar10-hardened.pt"  # the default --out is in the current folder
    mine.write_bytes(b"an earlier checkpoint")
    one_sentence(
        cli("train", "--preset", "hardened", "--data", "bundled"), "resnet20-cifar10-hardened.pt exists; pass --force"
    )
    one_sentence(cli("train", "--preset", "hardened", "--data", "bundled", "--out", ZOO_HARDENED), "exists")
    r = cli("train", "--preset", "hardened", "--data", "bundled", "--force")  # past the check, then the data
    assert r.exit_code == 2 and "exists" not in r.output and "never writes" not in r.output, r.output
    assert mine.read_bytes() == b"an earlier checkpoint"
    assert hashlib.sha256(ZOO_HARDENED.read_bytes()).hexdigest() == zoo_before
    assert "./ARCH-DATASET-PRESET.pt" in cli("train", "--help").output


# --- any file name ------------------------------------------------------------------------------

NAMES = ["q?mode=ro.db", "p%41.db", "h#x.db", "sp ace.db", "ünïcødé.db", ":memory:", "file:x.db"]


@pytest.mark.parametrize("name", NAMES)
def test_any_file_name_is_the_store_it_names(tmp_path, checkpoints, name):
    folder = tmp_path / "f"
    folder.mkdir()
    config = write_config(
        tmp_path / "c.yaml", checkpoints, injections=4, batch_size=4, images={"source": "bundled", "count": 4}
    )
    db = folder / name
    planned(db, config)
    r = cli("--db", db, "run", "--workers", "1")
    assert r.exit_code == 0, r.output
    assert cli("--db", db, "status").exit_code == 0
    assert {p.name for p in folder.iterdir()} <= {name, name + "-wal", name + "-shm", name + ".log.jsonl"}
    with sqlite3.connect(db) as con:  # the file under exactly that name holds the campaign
        assert con.execute("SELECT count(*) FROM result").fetchone()[0] == 4
    assert len(log_path(db).read_text().splitlines()) == 4


# --- a plan is all or nothing -------------------------------------------------------------------


def _plan_cmd(db: Path, config: Path, injections: int) -> list[str]:
    return [EXE, "--db", str(db), "plan", str(config), "--injections", str(injections)]


def _ctrl_c_heard() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _interrupt_mid_plan(db: Path, config: Path, sig: int) -> None:
    """Start a large plan, wait until its temporary file exists, then send ``sig``."""
    p = subprocess.Popen(
        _plan_cmd(db, config, 60_000),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        preexec_fn=_ctrl_c_heard,  # a suite started in the background inherits SIGINT ignored
    )
    assert p.stderr is not None
    deadline = time.monotonic() + 300
    while not any(f.name.startswith(f".{db.name}.planning-") for f in db.parent.iterdir()):
        assert p.poll() is None, p.stderr.read().decode()
        assert time.monotonic() < deadline, f"no temporary plan file beside {db} within 300 s"
        time.sleep(0.005)
    p.send_signal(sig)
    p.wait(timeout=120)
    assert p.returncode != 0
    assert not db.exists() and not Path(f"{db}-wal").exists()


def test_killed_and_interrupted_plans_leave_nothing_and_the_next_plan_succeeds(tmp_path, checkpoints):
    config = write_config(tmp_path / "big.yaml", checkpoints)
    db = tmp_path / "big.db"
    _interrupt_mid_plan(db, config, signal.SIGINT)  # Ctrl-C: the temporary file is removed too
    assert [f.name for f in tmp_path.iterdir() if f.name.startswith(".")] == []
    _interrupt_mid_plan(db, config, signal.SIGKILL)  # kill -9 leaves its temporary file behind
    assert [f.name for f in tmp_path.iterdir() if f.name.startswith(".big.db.planning-")]
    planned(db, config, "--injections", "60000")  # the same plan again, here in-process
    assert [f.name for f in tmp_path.iterdir() if f.name.startswith(".")] == []  # the leftover is gone
    status = cli("--db", db, "status", env={"COLUMNS": "200"})
    assert status.exit_code == 0 and "0/60000" in status.output, status.output


def _no_bigger_than(limit: int):
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def test_a_plan_on_a_full_disk_leaves_nothing(tmp_path, checkpoints):
    config = write_config(tmp_path / "c.yaml", checkpoints)
    db = tmp_path / "full.db"
    p = subprocess.run(
        _plan_cmd(db, config, 5_000),
        capture_output=True,
        text=True,
        timeout=600,
        preexec_fn=_no_bigger_than(128 * 1024),
    )
    assert p.returncode == 2, p.stderr
    assert p.stderr.startswith(f"Error: cannot write the plan to {db}") and "nothing was stored" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1
    assert sorted(f.name for f in tmp_path.iterdir()) == ["c.yaml"]
    assert cli("--db", db, "plan", config, "--injections", "5000").exit_code == 0
    assert Store.open(db).progress() == [("baseline", "single_bit", 0, 5_000)]


def test_plan_replaces_the_empty_store_an_older_interrupted_plan_left(tmp_path, checkpoints):
    db = tmp_path / "old.db"
    Store.create(db)  # tables, no campaign: what an interrupted plan used to leave
    one_sentence(cli("--db", db, "status"), "no campaign in it", "'fi-campaign plan' replaces it")
    planned(db, write_config(tmp_path / "c.yaml", checkpoints))
    assert Store.open(db).progress() == [("baseline", "single_bit", 0, 16)]
    one_sentence(cli("--db", db, "plan", tmp_path / "c.yaml"), "already holds a campaign")


# --- the injection log --------------------------------------------------------------------------


def _log_sites(db: Path) -> list[int]:
    text = log_path(db).read_text()
    assert text == "" or text.endswith("\n")
    return sorted(json.loads(line)["site"] for line in text.splitlines())


def _stored_sites(db: Path) -> list[int]:
    with sqlite3.connect(db) as con:
        return [r[0] for r in con.execute("SELECT site_id FROM result ORDER BY site_id")]


def test_log_appends_cut_back_to_the_last_whole_line_when_the_disk_fills(tmp_path):
    """A real short write and EFBIG from the kernel (RLIMIT_FSIZE in a child process)."""
    path = tmp_path / "a.log.jsonl"
    script = f"""
import json, resource, signal, sys
sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})
from pathlib import Path
from fi_campaign.engine.log import Log
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000))
notes = []
log = Log(Path({str(path)!r}), notes.append)
ok = []
for i in range(8):
    with log.held():
        ok.append(log.write("".join(json.dumps({{"site": i * 3 + k, "pad": "x" * 70}}) + "\\n" for k in range(3))))
print(json.dumps({{"ok": ok, "notes": notes}}))
"""
    out = json.loads(
        subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120).stdout
    )
    assert out["ok"] == [True] * 3 + [False] * 5  # 3 chunks of 279 bytes fit in 1000, the 4th is cut short
    assert len(out["notes"]) == 1 and "File too large" in out["notes"][0]
    text = path.read_text()
    assert text.endswith("\n") and len(text) < 1000
    assert [json.loads(line)["site"] for line in text.splitlines()] == [
        i * 3 + k for i, good in enumerate(out["ok"]) if good for k in range(3)
    ]


def test_a_log_on_a_full_disk_does_not_stop_the_run_and_is_completed_on_resume(tmp_path, checkpoints):
    config = write_config(tmp_path / "c.yaml", checkpoints, injections=16, modes=["single_bit", "warp_random"])
    db = planned(tmp_path / "l.db", config)
    log_path(db).symlink_to("/dev/full")  # every write: ENOSPC, as on a full disk
    r = cli("--db", db, "run", "--workers", "1", "--mode", "single_bit")
    assert r.exit_code == 0, r.output
    notes = [line for line in r.stderr.splitlines() if "injection log" in line]
    assert len(notes) == 1 and "No space left on device" in notes[0] and "every result is in the store" in notes[0]
    assert len(_stored_sites(db)) == 16
    log_path(db).unlink()  # space again
    r = cli("--db", db, "run", "--workers", "1")
    assert r.exit_code == 0, r.output
    assert "appended 16 results it lacked" in r.stderr
    assert _log_sites(db) == _stored_sites(db) and len(_stored_sites(db)) == 32


def test_a_torn_or_foreign_log_is_repaired_from_the_store(tmp_path, checkpoints):
    config = write_config(tmp_path / "c.yaml", checkpoints, injections=16, modes=["single_bit", "warp_random"])
    db = planned(tmp_path / "t.db", config)
    assert cli("--db", db, "run", "--workers", "1", "--mode", "single_bit").exit_code == 0
    lines = log_path(db).read_text().splitlines(keepends=True)
    log_path(db).write_text("".join(lines[:10]) + lines[10][:25])  # a torn line; 6 results missing
    r = cli("--db", db, "run", "--workers", "1")
    assert r.exit_code == 0, r.output
    assert "dropped a torn last line and appended 6 results it lacked" in r.stderr
    assert _log_sites(db) == _stored_sites(db) and len(_stored_sites(db)) == 32
    with open(log_path(db), "a") as f:  # a stale line of another campaign's site
        f.write(json.dumps({"site": 10**6, "model": "other", "mode": "single_bit", "outcome": "masked"}) + "\n")
    r = cli("--db", db, "run", "--workers", "1")
    assert "rebuilt the injection log" in r.stderr
    assert _log_sites(db) == _stored_sites(db)


# --- a run fits the machine ---------------------------------------------------------------------


def test_workers_are_capped_to_cores_and_memory(store):
    models = Store.open(store).campaign().models
    available = capacity.available_memory()
    fp = capacity.footprint(models, "inprocess", 16, 8, on_gpu=False)
    n, why = capacity.fit_workers(64, fp, capacity.cores(), available)
    assert n == min(capacity.cores(), available // fp.total) < 64
    assert why is not None and why.startswith(f"running {n} workers, not 64: ")
    # a batch whose buffers take a third of the free memory: with each worker's base, two fit
    arch = models["baseline"].arch
    assert arch is not None  # a CIFAR ResNet checkpoint
    per_row = capacity.activation_bytes(arch) + capacity.INPUT_BYTES
    big = capacity.footprint(models, "inprocess", available // 3 // per_row, 8, on_gpu=False)
    n, why = capacity.fit_workers(64, big, None, available)
    assert n == 2 and why is not None and "of memory" in why  # the worker's base pushes three over


def test_run_caps_workers_with_one_note(tmp_path, checkpoints):
    db = planned(tmp_path / "w.db", write_config(tmp_path / "c.yaml", checkpoints))
    r = cli("--db", db, "run", "--workers", "64")
    assert r.exit_code == 0, r.output
    cores = capacity.cores()
    assert [line for line in r.stderr.splitlines() if "workers" in line] == [
        f"Note: running {cores} workers, not 64: this machine has {cores} CPU cores."
    ]
    assert Store.open(db).progress() == [("baseline", "single_bit", 16, 16)]


def test_a_batch_that_cannot_fit_in_memory_is_refused_before_the_run(tmp_path, checkpoints):
    batch = 65_536  # the largest a config may ask for
    db = planned(tmp_path / "b.db", write_config(tmp_path / "c.yaml", checkpoints, batch_size=batch))
    fp = capacity.footprint(Store.open(db).campaign().models, "inprocess", batch, 8, on_gpu=False)
    if fp.total <= capacity.available_memory():
        pytest.skip(f"this machine holds a {batch}-row batch ({fp.total / 2**30:.0f} GiB)")
    one_sentence(cli("--db", db, "run", "--workers", "1"), f"batch_size {batch} needs about", "lower batch_size")
    assert Store.open(db).progress() == [("baseline", "single_bit", 0, 16)]


# --- outputs that are not regular files (issue 24) ------------------------------------------------


def _device(path: Path, minor: int) -> Path:
    """A character device of our own with the numbers of /dev/null (3) or /dev/full (7): a test
    that went wrong replaces this node, never the machine's."""
    try:
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, minor))
    except PermissionError:
        pytest.skip("creating a device node needs CAP_MKNOD")
    return path


def _exported(db: Path, *extra: str) -> bytes:
    p = subprocess.run([EXE, "--db", str(db), "export", "/dev/stdout", *extra], capture_output=True, timeout=300)
    assert p.returncode == 0 and "Traceback" not in p.stderr.decode(), p.stderr
    return p.stdout


def test_an_export_to_stdout_is_the_rows_alone(store):
    out = _exported(store)
    assert out.decode().splitlines()[0].startswith("site_id,") and len(out.decode().splitlines()) == 17
    r = subprocess.run(
        [EXE, "--db", str(store), "report", "--csv", "/dev/stdout"], capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 0 and r.stdout.startswith("model,mode,outcome") and "Wrote" not in r.stdout, r.stdout


def test_a_fifo_export_is_read_by_another_process(store, tmp_path):
    fifo = tmp_path / "rows.csv"
    os.mkfifo(fifo)
    expected = _exported(store)
    for extra in ([], ["--force"]):
        reader = subprocess.Popen(["cat", str(fifo)], stdout=subprocess.PIPE)
        p = subprocess.run(
            [EXE, "--db", str(store), "export", str(fifo), *extra], capture_output=True, text=True, timeout=300
        )
        got, _ = reader.communicate(timeout=300)
        assert p.returncode == 0, p.stderr
        assert got == expected
        assert stat.S_ISFIFO(os.stat(fifo).st_mode)  # never replaced by a regular file
    reader = subprocess.Popen(["cat", str(fifo)], stdout=subprocess.PIPE)
    p = subprocess.run(
        [EXE, "--db", str(store), "report", "--csv", str(fifo)], capture_output=True, text=True, timeout=300
    )
    got, _ = reader.communicate(timeout=300)
    assert p.returncode == 0 and got.decode().startswith("model,mode,outcome"), p.stderr
    assert sorted(f.name for f in tmp_path.iterdir()) == ["rows.csv"]  # no temporary file beside it


def test_an_export_to_a_character_device_writes_into_it(store, tmp_path):
    null, full = _device(tmp_path / "null", 3), _device(tmp_path / "full", 7)
    for device in ("/dev/null", "/dev/full"):  # the machine's own, without --force only
        assert stat.S_ISCHR(os.stat(device).st_mode)
    assert cli("--db", store, "export", "/dev/null").exit_code == 0
    one_sentence(cli("--db", store, "export", "/dev/full"), "cannot write /dev/full", "No space left on device")
    for force in ([], ["--force"]):
        for suffix in ("", ".parquet"):
            for node in (null, full):
                named = node.with_name(node.name + suffix)
                if suffix and not named.exists():
                    os.link(node, named)
                result = cli("--db", store, "export", named, *force)
                if node is null:
                    assert result.exit_code == 0, result.output
                else:
                    one_sentence(result, f"cannot write {named}", "No space left on device")
                st = os.stat(named)
                assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(1, 3 if node is null else 7)
    one_sentence(cli("--db", store, "report", "--csv", full, "--force"), "No space left on device")
    assert stat.S_ISCHR(os.stat(full).st_mode)
    assert sorted(f.name for f in tmp_path.iterdir()) == ["full", "full.parquet", "null", "null.parquet"]


def test_a_link_to_a_special_file_or_a_store_is_what_it_leads_to(store, tmp_path):
    fifo, link, to_store = tmp_path / "f", tmp_path / "to-fifo.csv", tmp_path / "to-store.csv"
    os.mkfifo(fifo)
    link.symlink_to(fifo)
    to_store.symlink_to(store)
    reader = subprocess.Popen(["cat", str(fifo)], stdout=subprocess.PIPE)
    assert cli("--db", store, "export", link).exit_code == 0
    assert reader.communicate(timeout=300)[0].decode().startswith("site_id,")
    assert link.is_symlink() and stat.S_ISFIFO(os.stat(fifo).st_mode)
    before = fingerprint(store)
    one_sentence(cli("--db", store, "export", to_store, "--force"), "never writes over a store")
    assert fingerprint(store) == before and to_store.is_symlink()
