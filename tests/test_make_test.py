"""README command 2 (`make test`) does the set-up CI does: it gets the Chromium the HTML report
tests render in, or says plainly which tests will skip and how to get them; `.ci/run` adds
nothing of its own but CI=1, under which a browser that cannot be had fails."""
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
        os.symlink(shutil.which(tool), folder / tool)
    return folder


def make(folder: Path, *targets: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([MAKE, "-s", "-C", str(REPO), *targets], env={"PATH": str(folder), **env},
                          capture_output=True, text=True, timeout=60)


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
    (folder / "apt-get").write_text(f"#!/bin/sh\necho \"$*\" >> {log}\n"
                                    f"case \"$*\" in *install*) printf '#!/bin/sh\\n' > {folder}/chromium; "
                                    f"{shutil.which('chmod')} +x {folder}/chromium;; esac\n")
    (folder / "apt-get").chmod(0o755)
    p = make(folder, "browser")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "installing it for the HTML rendering tests" in p.stdout and "could not" not in p.stdout
    assert log.read_text().splitlines() == ["update -q", "install -y -q --no-install-recommends chromium"]
    again = make(folder, "browser")
    assert again.returncode == 0 and again.stdout == "" and len(log.read_text().splitlines()) == 2


def test_make_test_gets_the_browser_before_pytest_and_ci_adds_only_the_servers(tmp_path):
    venv = tmp_path / "venv"
    venv.mkdir()
    (venv / ".installed").touch()  # newer than pyproject.toml: the venv step has nothing to do
    p = subprocess.run([MAKE, "-n", "-C", str(REPO), "test", f"VENV={venv}"], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 0, p.stderr
    assert 0 <= p.stdout.find("command -v chromium") < p.stdout.find(f"{venv}/bin/python -m pytest -q -rs")
    ci = (REPO / ".ci" / "run").read_text()
    commands = [x.strip() for x in ci.splitlines() if x.strip() and not x.lstrip().startswith("#")]
    assert commands[-3:] == ['export CI="${CI:-1}"', "make test", "make test-slow"]
    # .ci/run installs only the two servers the tests drive (the browser is make test's)
    installs = [x for x in commands if "apt-get install" in x]
    assert len(installs) == 1 and "chromium" not in ci and ".ci/slurm-up.sh" in commands
