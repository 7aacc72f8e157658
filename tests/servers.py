"""Throwaway servers for the tests and benchmarks: a PostgreSQL cluster made with initdb in a
temporary folder, listening only on a unix socket there, and the local Slurm cluster that
``.ci/slurm-up.sh`` starts. Nothing here is part of fi-campaign itself."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

PG_USER = "fi-pg"  # the system user the server runs as when the tests run as root
REPO = Path(__file__).resolve().parent.parent


def _pg_bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


def _pg_tool(name: str) -> str:
    """A PostgreSQL program that a started cluster needs (``Postgres.start`` found them)."""
    path = _pg_bin(name)
    if path is None:
        raise FileNotFoundError(f"PostgreSQL's {name} is not installed (apt-get install postgresql)")
    return path


def missing(reason: str) -> None:
    """Skip a test whose server is missing; under CI (which installs both) that is a failure."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI installs it: .ci/run)")
    pytest.skip(reason)


class Postgres:
    """One PostgreSQL cluster; ``url(db)`` names a database in it, ``create()`` makes a fresh one."""

    def __init__(self, root: Path, user: str | None) -> None:
        self.root, self.user = root, user
        self.data, self.socket = root / "data", root
        self.count = 0
        self.options = ""

    def _start(self) -> None:
        self._as(
            [
                _pg_tool("pg_ctl"),
                "-D",
                str(self.data),
                "-o",
                self.options,
                "-l",
                str(self.root / "server.log"),
                "-w",
                "start",
            ]
        )

    @classmethod
    def start(cls, fsync: bool = False) -> Postgres:
        """fsync off for the tests (only an OS crash could lose a commit); on for benchmarks."""
        initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
        if not (initdb and pg_ctl):
            raise FileNotFoundError("PostgreSQL's initdb/pg_ctl are not installed (apt-get install postgresql)")
        root = Path(tempfile.mkdtemp(prefix="fi-pg-"))
        user = None
        if os.geteuid() == 0:  # postgres refuses to run as root
            try:
                pwd.getpwnam(PG_USER)
            except KeyError:
                subprocess.run(["useradd", "-r", "-M", "-s", "/usr/sbin/nologin", PG_USER], check=True)
            user = PG_USER
            shutil.chown(root, PG_USER, PG_USER)
        server = cls(root, user)
        server._as([initdb, "-D", str(server.data), "-U", "fi", "--auth=trust", "-E", "UTF8", "--no-sync"])
        (server.data / "pg_hba.conf").write_text("local all secret scram-sha-256\nlocal all all trust\n")
        server.options = f"-k {root} -c listen_addresses='' -c fsync={'on' if fsync else 'off'} -c max_connections=200"
        server._start()
        server.sql("postgres", "CREATE ROLE secret LOGIN PASSWORD 'right'")
        return server

    def _as(self, cmd: list[str]) -> None:
        if self.user:
            cmd = ["runuser", "-u", self.user, "--"] + cmd
        subprocess.run(cmd, check=True, capture_output=True, cwd=self.root)

    def url(self, db: str, user: str = "fi") -> str:
        return f"postgresql+psycopg://{user}@/{db}?host={self.socket}"

    def sql(self, db: str, statement: str) -> str:
        p = subprocess.run(
            [
                shutil.which("psql") or _pg_tool("psql"),
                "-h",
                str(self.socket),
                "-U",
                "fi",
                "-d",
                db,
                "-v",
                "ON_ERROR_STOP=1",
                "-At",
                "-c",
                statement,
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        return p.stdout.strip()

    def create(self, prefix: str = "t") -> str:
        """A new empty database; returns its URL."""
        self.count += 1
        name = f"{prefix}{os.getpid()}_{self.count}"
        self.sql("postgres", f'CREATE DATABASE "{name}"')
        return self.url(name)

    def restart(self, mode: str = "immediate") -> None:
        """A shutdown (immediate: as a crash; fast: as an administrator's restart) and a start:
        every open connection is cut."""
        pg_ctl = _pg_tool("pg_ctl")
        self._as(
            [
                pg_ctl,
                "-D",
                str(self.data),
                "-m",
                mode,
                "-o",
                self.options,
                "-l",
                str(self.root / "server.log"),
                "-w",
                "restart",
            ]
        )

    def halt(self, mode: str = "fast") -> None:
        """Stop the server until ``resume``: connections are cut and new ones refused."""
        self._as([_pg_tool("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop"])

    def resume(self) -> None:
        self._start()

    def away(self, seconds: float) -> None:
        """Crash the server now and start it again ``seconds`` later, in the background."""
        import threading

        pg_ctl = _pg_tool("pg_ctl")
        self._as([pg_ctl, "-D", str(self.data), "-m", "immediate", "-w", "stop"])

        def start() -> None:
            time.sleep(seconds)
            self._start()

        threading.Thread(target=start, daemon=True).start()

    def stop(self) -> None:
        try:
            self._as([_pg_tool("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"])
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def slurm_ready() -> bool:
    if not shutil.which("sbatch"):
        return False
    return subprocess.run(["scontrol", "ping"], capture_output=True, text=True).stdout.count("UP") > 0


class Slurm:
    """The local single-node cluster of .ci/slurm-up.sh; started here when it is not running."""

    def __init__(self, started_here: bool) -> None:
        self.started_here = started_here

    @classmethod
    def up(cls) -> Slurm:
        if slurm_ready():
            return cls(False)
        if not shutil.which("slurmctld"):
            raise FileNotFoundError("Slurm is not installed (apt-get install slurm-wlm munge)")
        subprocess.run([str(REPO / ".ci" / "slurm-up.sh")], check=True, capture_output=True, timeout=120)
        deadline = time.monotonic() + 60
        while not slurm_ready():
            if time.monotonic() > deadline:
                raise RuntimeError("the local Slurm cluster did not come up; see /tmp/fi-slurm/*.log")
            time.sleep(1)
        return cls(True)

    def down(self) -> None:
        if self.started_here:
            subprocess.run([str(REPO / ".ci" / "slurm-down.sh")], capture_output=True, timeout=60)
