"""Running a command as a user whom file permissions bind. The tests run as root in CI, and root
ignores file modes (CAP_DAC_OVERRIDE): a read-only folder would not be read-only to it. Dropping
the capabilities that bypass permission checks from the bounding set makes root, for the
command it starts, an ordinary owner of its files: the owner's mode bits apply to it, and the
files the test made need no other owner. Not part of fi-campaign."""

from __future__ import annotations

import os
import shutil

import pytest

BYPASS = "-dac_override,-dac_read_search,-fowner"


def bound_by_permissions(cmd: list[str]) -> list[str]:
    """``cmd`` as a process that file modes apply to; a skip where that cannot be arranged."""
    if os.geteuid() != 0:
        return cmd
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv (util-linux): file modes cannot be made to bind")
    return ["setpriv", f"--bounding-set={BYPASS}", "--", *cmd]
