"""A store as files (issue 24): one in a folder or a file this process cannot write is read as
it is, with a note, by status, report and export, and refused in one sentence by every command
that must write, which leaves nothing behind (no -wal or -shm); a PostgreSQL database's name
never spells where the files beside it go; a store whose migration table and recorded schema
version disagree is refused. Real stores, the real fi-campaign executable."""

from __future__ import annotations

import csv
import hashlib
import os
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from bench import zero_cost
from fi_campaign.store import Store, log_path, migrate, runs_dir
from tests.privileges import bound_by_permissions

EXE = str(Path(sys.executable).with_name("fi-campaign"))


def fi(*args, cwd: Path | None = None, permissions: bool = False) -> subprocess.CompletedProcess:
    cmd = [EXE, *map(str, args)]
    return subprocess.run(
        bound_by_permissions(cmd) if permissions else cmd,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=cwd,
        env={**os.environ, "COLUMNS": "200"},
    )


def one_sentence(p: subprocess.CompletedProcess, *needles: str) -> str:
    assert p.returncode == 2, (p.stdout, p.stderr)
    assert "Traceback" not in p.stderr and p.stderr.startswith("Error: "), p.stderr
    assert len(p.stderr.strip().splitlines()) == 1, p.stderr
    for needle in needles:
        assert needle in p.stderr, p.stderr
    return p.stderr


def noted(p: subprocess.CompletedProcess) -> None:
    """Exit 0 and exactly one line saying the store is read-only and nothing is written."""
    assert p.returncode == 0, p.stderr
    notes = [line for line in p.stderr.splitlines() if "read-only" in line]
    assert len(notes) == 1 and notes[0].startswith("Note: ") and "nothing is written" in notes[0], p.stderr


def listing(folder: Path) -> dict[str, str]:
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in folder.iterdir()}


@pytest.fixture
def ran(tmp_path, checkpoints) -> Path:
    """A store with results, in a folder of its own."""
    folder = tmp_path / "store"
    folder.mkdir()
    config = tmp_path / "c.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "name": "ro",
                "seed": 5,
                "injections": 8,
                "batch_size": 8,
                "modes": ["single_bit"],
                "models": {"baseline": str(checkpoints["baseline"])},
                "images": {"source": "bundled", "count": 8},
            }
        )
    )
    db = folder / "r.db"
    assert fi("--db", db, "plan", config).returncode == 0
    assert fi("--db", db, "run", "--workers", "1").returncode == 0
    assert not (folder / "r.db-wal").exists()  # the last connection folded the journal in
    return db


def check_reads_and_refusals(db: Path, out: Path) -> None:
    """What every read-only store must do: read with a note, refuse every write."""
    noted(p := fi("--db", db, "status", permissions=True))
    assert "8/8" in p.stdout
    noted(p := fi("--db", db, "report", "--avf", permissions=True))
    assert "baseline" in p.stdout
    noted(fi("--db", db, "export", out / "rows.csv", permissions=True))
    with open(out / "rows.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == 8
    one_sentence(
        fi("--db", db, "run", "--workers", "1", permissions=True), f"cannot write to {db}", "nothing was written"
    )
    one_sentence(
        fi("evaluate", "--regret", "--db", db, "zoo:resnet20-cifar10-baseline", "--images", "2", permissions=True),
        "cannot write to",
        "nothing was written",
    )
    one_sentence(fi("--db", db, "plan", out.parent / "c.yaml", permissions=True), "already holds a campaign")


def test_a_store_in_a_read_only_folder_is_read_and_never_written(ran, tmp_path):
    folder, out = ran.parent, tmp_path / "out"
    out.mkdir()
    before = listing(folder)
    os.chmod(ran, 0o444)
    os.chmod(folder, 0o555)
    try:
        check_reads_and_refusals(ran, out)
        one_sentence(
            fi("--db", folder / "new.db", "plan", tmp_path / "c.yaml", permissions=True),
            "is not writable",
            "nothing was stored",
        )
        assert listing(folder) == before  # no -wal, -shm, temporary plan or log change
    finally:
        os.chmod(folder, 0o755)


def test_a_read_only_store_file_in_a_writable_folder_leaves_no_journal(ran, tmp_path):
    folder, out = ran.parent, tmp_path / "out"
    out.mkdir()
    before = listing(folder)
    os.chmod(ran, 0o444)
    check_reads_and_refusals(ran, out)
    assert listing(folder) == before


def test_a_read_only_folder_with_results_still_in_the_wal_shows_them(ran, tmp_path):
    """A writer killed before its last checkpoint leaves results in -wal only: a reader that
    cannot write must read them through the journal, not the file alone."""
    script = (
        "import os, sqlite3, sys\n"
        "con = sqlite3.connect(sys.argv[1])\n"
        "con.execute('PRAGMA wal_autocheckpoint=0')\n"
        "con.execute(\"UPDATE campaign SET name='only-in-the-wal'\")\n"
        "con.commit()\n"
        "os._exit(0)\n"
    )
    subprocess.run([sys.executable, "-c", script, str(ran)], check=True, timeout=60)
    assert (ran.parent / "r.db-wal").stat().st_size > 0
    os.chmod(ran.parent, 0o555)
    try:
        noted(p := fi("--db", ran, "status", permissions=True))
        assert "only-in-the-wal" in p.stdout
    finally:
        os.chmod(ran.parent, 0o755)


def test_a_read_only_store_gives_a_clear_error_before_any_work(ran):
    """``run`` is refused at once: no model loaded, no golden run, nothing written."""
    os.chmod(ran, 0o444)
    p = fi("--db", ran, "run", "--workers", "1", permissions=True)
    one_sentence(p, "the file is not writable")
    assert "loading" not in p.stdout
    assert sorted(f.name for f in ran.parent.iterdir()) == ["r.db", "r.db.log.jsonl"]


def test_an_immutable_read_that_a_writer_changes_is_read_again(ran):
    """A reader that may not write opens a store without journals ``immutable``; a writer with
    more rights (here: this test's own connection) that changes the file under a read makes the
    read run again, and a stream that cannot be run again stop with one sentence."""
    from fi_campaign.store import StoreError, sqlite_file
    from fi_campaign.store.backends import sqlite_reader
    from fi_campaign.store.session import Session

    uri, immutable = sqlite_file.reader_uri(ran)
    assert immutable
    session = Session(sqlite_reader(uri), str(ran), read_only="a test", guard=ran)
    names = []

    def write(name: str) -> None:
        with closing(sqlite3.connect(ran)) as con:  # the last connection folds its WAL into the file
            con.execute("UPDATE campaign SET name = ?", (name,))
            con.commit()

    def read(con) -> str:
        names.append(con.exec_driver_sql("SELECT name FROM campaign").scalar())
        if len(names) == 1:
            write("changed")
        return names[-1]

    assert session.read(read) == "changed" and names == ["ro", "changed"]
    with pytest.raises(StoreError, match="changed by another process"):
        for i, _ in enumerate(session.stream(lambda con, last: con.exec_driver_sql("SELECT site_id FROM result"), 2)):
            write(f"changed {i}")
    with pytest.raises(StoreError, match="cannot write to .*: a test; it can only be read here"):
        session.write(lambda con: None, "cannot write")


# --- a store that contradicts itself ------------------------------------------------------------


@pytest.mark.parametrize("revision,version", [("0002", 99), ("0001", 2)])
def test_a_store_whose_revision_and_schema_version_disagree_is_refused(new_store, revision, version):
    from tests.test_store import raw

    target = new_store("disagree")
    zero_cost.plan(target, 3)
    engine = raw(target)
    with engine.begin() as con:
        con.execute(sa.text(f"UPDATE campaign SET schema_version = {version}"))
        con.execute(sa.text(f"UPDATE alembic_version SET version_num = '{revision}'"))
    engine.dispose()  # an SQLite file holds it all now, not its journal
    before = dump(target)
    for command in (["status"], ["run", "--workers", "1"], ["export", "x.csv"]):
        one_sentence(
            fi("--db", target, *command), "contradicts itself", f"schema version {version}", f"revision {revision}"
        )
    assert dump(target) == before


def dump(target: str) -> list[tuple]:
    """Every row of every table of the store, in key order."""
    from tests.test_store import raw

    engine = raw(target)
    try:
        with engine.connect() as con:
            names = sorted(sa.inspect(con).get_table_names())
            return [(t, *row) for t in names for row in con.execute(sa.text(f'SELECT * FROM "{t}" ORDER BY 1'))]
    finally:
        engine.dispose()


def test_an_upgraded_store_of_schema_version_1_agrees(tmp_path):
    """schema_version 1 at the newest revision is a store planned before migrations, upgraded since."""
    from tests.test_store import V1_STORE

    db = tmp_path / "v1.db"
    db.write_bytes(V1_STORE.read_bytes())
    Store.open(db)  # upgrades it
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT schema_version FROM campaign").fetchone()[0] == 1
        assert con.execute("SELECT version_num FROM alembic_version").fetchone()[0] == migrate.HEAD
    assert fi("--db", db, "status").returncode == 0


# --- files beside a server store ----------------------------------------------------------------


def test_a_database_name_never_spells_where_the_files_beside_it_go(postgres, tmp_path, checkpoints):
    config = tmp_path / "c.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "name": "names",
                "seed": 2,
                "injections": 4,
                "batch_size": 4,
                "modes": ["single_bit"],
                "models": {"baseline": str(checkpoints["baseline"])},
                "images": {"source": "bundled", "count": 4},
            }
        )
    )
    work = tmp_path / "a" / "b" / "work"
    work.mkdir(parents=True)
    for name in ("../../x", f"{tmp_path}/abs/x"):
        postgres.sql("postgres", f'CREATE DATABASE "{name}"')
        url = postgres.url(name.replace("/", "%2F"))
        assert fi("--db", url, "plan", config, cwd=work).returncode == 0
        p = fi("--db", url, "run", "--workers", "1", cwd=work)
        assert p.returncode == 0, p.stderr
        logs = [f for f in work.iterdir() if f.name.endswith(".log.jsonl")]
        assert len(logs) == 1 and len(logs[0].read_text().splitlines()) == 4
        anchor = Path(os.getcwd())
        try:
            os.chdir(work)
            store = Store.open(url)
            assert log_path(store) == logs[0] and runs_dir(store).parent == work
        finally:
            os.chdir(anchor)
        assert "/" not in logs[0].name and not logs[0].name.startswith(".")
        logs[0].unlink()
    assert not list(tmp_path.rglob("x.log.jsonl")) and not list(tmp_path.rglob("x.runs"))
    assert not (tmp_path / "abs").exists() and not (tmp_path / "x.log.jsonl").exists()
