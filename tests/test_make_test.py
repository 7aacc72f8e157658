"""README command 2 (`make test`) does the set-up CI does, through one script (.ci/services.sh):
it gets the Chromium the HTML report tests render in, PostgreSQL and the local Slurm cluster, or
says plainly which tests will skip and how to get them; `.ci/run` adds nothing of its own but
CI=1, under which a browser, server or cluster that cannot be had fails."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MAKE = shutil.which("make")
pytestmark = pytest.mark.skipif(MAKE is None, reason="needs make")


def bare_path(tmp_path: Path, *tools: str) -> Path:
    """A PATH folder holding only the named tools (make runs recipes with /bin/sh itself)."""
    folder = tmp_path / "bin"
    folder.mkdir(exist_ok=True)
    for tool in tools:
        found = shutil.which(tool)
        assert found is not None, f"{tool} is not installed"
        os.symlink(found, folder / tool)
    return folder


def make(folder: Path, *targets: str, **env: str) -> subprocess.CompletedProcess:
    assert MAKE is not None
    return subprocess.run(
        [MAKE, "-s", "-C", str(REPO), *targets],
        env={"PATH": str(folder), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_without_chromium_or_apt_get_it_says_what_skips_and_how_to_get_it(tmp_path):
    folder = bare_path(tmp_path, "id")
    p = make(folder, "browser")
    assert p.returncode == 0, p.stderr
    said = " ".join(p.stdout.split())
    assert "chromium is not installed and cannot be installed here" in said
    assert "the HTML rendering tests" in said and "tests/test_report.py" in said and "will be skipped" in said
    assert "sudo apt-get install chromium" in said and "then make test" in said
    ci = make(folder, "browser", CI="1")
    assert ci.returncode != 0 and "will be skipped" in ci.stdout


@pytest.mark.skipif(os.geteuid() != 0, reason="the install branch runs as root only")
def test_as_root_with_apt_get_it_installs_chromium_once(tmp_path):
    folder = bare_path(tmp_path, "id")
    log = tmp_path / "apt.log"
    # a stand-in for the system's package manager: records its arguments, 'installs' chromium
    (folder / "apt-get").write_text(
        f'#!/bin/sh\necho "$*" >> {log}\n'
        f"case \"$*\" in *install*) printf '#!/bin/sh\\n' > {folder}/chromium; "
        f"{shutil.which('chmod')} +x {folder}/chromium;; esac\n"
    )
    (folder / "apt-get").chmod(0o755)
    p = make(folder, "browser")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "installing it for the HTML rendering tests" in p.stdout and "could not" not in p.stdout
    assert log.read_text().splitlines() == ["update -q", "install -y -q --no-install-recommends chromium"]
    again = make(folder, "browser")
    assert again.returncode == 0 and again.stdout == "" and len(log.read_text().splitlines()) == 2


def test_make_test_gets_the_services_before_pytest_then_lints_and_ci_adds_only_ci(tmp_path):
    assert MAKE is not None
    venv = tmp_path / "venv"
    venv.mkdir()
    (venv / ".installed").touch()  # newer than pyproject.toml: the venv step has nothing to do
    p = subprocess.run(
        [MAKE, "-n", "-C", str(REPO), "test", f"VENV={venv}"], capture_output=True, text=True, timeout=60
    )
    assert p.returncode == 0, p.stderr
    services, pytest_run = p.stdout.find(".ci/services.sh"), p.stdout.find(f"{venv}/bin/python -m pytest -q -rs")
    assert 0 <= services < pytest_run < p.stdout.find("lint")
    lint = subprocess.run(
        [MAKE, "-n", "-s", "--no-print-directory", "-C", str(REPO), "lint", f"VENV={venv}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert [x.strip() for x in lint.stdout.splitlines()] == [
        f"{venv}/bin/ruff check .",
        f"{venv}/bin/ruff format --check .",
        f"{venv}/bin/mypy",
    ]
    ci = (REPO / ".ci" / "run").read_text()
    commands = [x.strip() for x in ci.splitlines() if x.strip() and not x.lstrip().startswith("#")]
    assert commands[-3:] == ['export CI="${CI:-1}"', "make test", "make test-slow"]
    # one install script for both: the packages and Slurm's start live in .ci/services.sh only
    assert "apt-get" not in ci and "slurm-up" not in ci
    script = (REPO / ".ci" / "services.sh").read_text()
    installs = [x for x in script.splitlines() if "apt-get install" in x and not x.lstrip().startswith("#")]
    assert len([x for x in installs if "DEBIAN_FRONTEND" in x]) == 1 and ".ci/slurm-up.sh ||" in script


def test_without_the_servers_or_root_it_says_which_tests_skip(tmp_path):
    """A fresh machine as a user: no initdb, no Slurm, no apt-get. Nothing is installed or
    started, and each part is one line naming the tests that will be skipped and the package."""
    folder = bare_path(tmp_path, "id")
    (folder / "id").unlink()
    (folder / "id").write_text("#!/bin/sh\necho 1000\n")  # not root, whoever runs the suite
    (folder / "id").chmod(0o755)
    p = subprocess.run(
        ["/bin/sh", str(REPO / ".ci" / "services.sh"), "slurm"],
        env={"PATH": str(folder)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 0, p.stdout + p.stderr
    said = " ".join(p.stdout.split())
    assert said.startswith("Slurm is not installed and cannot be installed here")
    assert "tests/test_slurm.py" in said and "sudo apt-get install slurm-wlm munge" in said
    ci = subprocess.run(
        ["/bin/sh", str(REPO / ".ci" / "services.sh"), "slurm"],
        env={"PATH": str(folder), "CI": "1"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ci.returncode != 0 and "will be skipped" in ci.stdout
