"""Locating an NVBitFI build on fake NVBITFI_HOME trees, and reading the kernel log for Xid lines."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from fi_campaign.nvbitfi_tools.errors import NvbitfiError as UserError
from fi_campaign.nvbitfi_tools.install import (
    InstallError,
    detect_dialect,
    kernel_log_delta,
    kernel_log_readable,
    locate,
    read_kernel_log,
    require,
    xid_lines,
)

STOCK_ARCH = """
enum GroupType {
  G_FP64 = 0, // fp64
  G_FP32, G_LD, G_PR, G_NODEST, G_OTHERS, G_GPPR, G_GP,
  NUM_INST_GROUPS
};
enum BitFlipModel {
  FLIP_SINGLE_BIT = 0,  // one bit
  FLIP_TWO_BITS, RANDOM_VALUE, ZERO_VALUE,
  NUM_BFM_TYPES
};
"""
CAROL_ARCH = """
enum GroupType { G_FP64 = 0, G_FP32, G_LD, G_PR, G_NODEST, G_OTHERS, G_GPPR, G_GP, NUM_INST_GROUPS };
enum BitFlipModel {
  FLIP_SINGLE_BIT = 0, FLIP_TWO_BITS, RANDOM_VALUE, ZERO_VALUE,
  /** relative error models,
   *  WARP_RANDOM_VALUE = 99 in a comment must not count */
  FLEXGRIP_RELATIVE_FU, FLEXGRIP_RELATIVE_PIPELINE,
  WARP_SINGLE_BIT, // two bits
  WARP_RANDOM_VALUE,
//  BLOCK_FLIP_SINGLE_BIT,
  NUM_BFM_TYPES
};
"""
PR2022_PARAMS = """
G_FP64 = 0
G_FP32 = 1
G_FP16 = 2  # new
G_GP = 9
FLIP_SINGLE_BIT = 0
ZERO_VALUE = 3
WARP_RANDOM_VALUE = 4
WARP_ZERO_VALUE = 5
"""


def make_build(
    root: Path,
    profiler=True,
    injector=True,
    dummy=False,
    core=True,
    arch: str | None = STOCK_ARCH,
    params: str | None = None,
) -> Path:
    """nvbit_release/tools/nvbitfi with the files NVBitFI's Makefiles produce."""
    home = root / "nvbit_release" / "tools" / "nvbitfi"
    for sub in ("profiler", "injector", "common", "scripts"):
        (home / sub).mkdir(parents=True)
    if profiler:
        (home / "profiler" / "profiler.so").write_bytes(b"\x7fELF")
    if injector:
        (home / "injector" / "injector.so").write_bytes(b"\x7fELF")
    if dummy:
        (home / "injector" / "injector-dummy.so").write_bytes(b"\x7fELF")
    if core:
        (root / "nvbit_release" / "core").mkdir(parents=True)
        (root / "nvbit_release" / "core" / "libnvbit.a").write_bytes(b"!<arch>\n")
    if arch is not None:
        (home / "common" / "arch.h").write_text(arch)
    if params is not None:
        (home / "scripts" / "params.py").write_text(params)
    return home


def test_a_complete_build_from_the_environment(tmp_path):
    home = make_build(tmp_path, dummy=True)
    found = locate(environ={"NVBITFI_HOME": str(home)})
    assert found.ok and found.missing == () and found.warnings == ()
    assert found.home == home.resolve()
    assert found.profiler == home.resolve() / "profiler" / "profiler.so"
    assert found.injector == home.resolve() / "injector" / "injector.so"
    assert found.dummy_injector == home.resolve() / "injector" / "injector-dummy.so"
    assert found.nvbit_core is not None and found.nvbit_core.name == "libnvbit.a"
    assert (found.dialect, found.dialect_from) == ("nvlabs", "common/arch.h")
    assert require(found) is found


def test_the_dummy_injector_is_optional(tmp_path):
    found = locate(make_build(tmp_path))
    assert found.ok and found.dummy_injector is None
    assert [(m.piece, m.required) for m in found.missing] == [("dummy_injector", False)]
    assert "make DUMMY=1" in found.missing[0].advice


@pytest.mark.parametrize("piece", ["injector", "profiler"])
def test_a_missing_tool_is_reported_with_advice(tmp_path, piece):
    home = make_build(tmp_path, dummy=True, profiler=piece != "profiler", injector=piece != "injector")
    found = locate(home)
    assert not found.ok and getattr(found, piece) is None
    [gap] = [m for m in found.missing if m.required]
    assert gap.piece == piece and gap.path == home.resolve() / piece / f"{piece}.so"
    assert gap.advice.startswith(f"Build the {piece} with 'make' in ") and "\n" not in gap.advice
    with pytest.raises(InstallError, match=f"Build the {piece}") as info:
        require(found)
    assert isinstance(info.value, UserError)


def test_a_missing_tool_without_nvbit_core_also_says_where_nvbit_goes(tmp_path):
    found = locate(make_build(tmp_path, injector=False, core=False))
    core = [m for m in found.missing if m.piece == "nvbit_core"]
    assert core and "nvbit_release/tools/nvbitfi" in core[0].advice and not core[0].required


def test_no_home_at_all(tmp_path):
    found = locate(environ={})
    assert not found.ok and found.missing[0].piece == "home" and "Set NVBITFI_HOME" in found.missing[0].advice
    found = locate(tmp_path / "nowhere", dialect="carol")
    assert found.missing[0].piece == "home" and "not a folder" in found.missing[0].advice
    assert (found.dialect, found.dialect_from) == ("carol", "config")


def test_dialects_are_detected_from_the_build_sources(tmp_path):
    assert detect_dialect(make_build(tmp_path / "a", arch=CAROL_ARCH)) == ("carol", "common/arch.h")
    pr2022 = make_build(tmp_path / "b", arch=None, params=PR2022_PARAMS)
    assert detect_dialect(pr2022) == ("pr2022", "scripts/params.py")
    assert detect_dialect(make_build(tmp_path / "c", arch=None)) == (None, "unknown")


def test_the_config_dialect_is_checked_against_the_build(tmp_path):
    found = locate(make_build(tmp_path / "a", arch=CAROL_ARCH, dummy=True), dialect="pr2022")
    assert not found.ok and found.missing[0].piece == "dialect"
    assert "looks like the carol dialect but the campaign says pr2022" in found.missing[0].advice
    unknown = locate(make_build(tmp_path / "b", arch=None, dummy=True))
    assert not unknown.ok and unknown.missing[0].piece == "dialect"
    configured = locate(make_build(tmp_path / "c", arch=None, dummy=True), dialect="carol")
    assert configured.ok and (configured.dialect, configured.dialect_from) == ("carol", "config")
    with pytest.raises(UserError, match="unknown NVBitFI dialect"):
        locate(make_build(tmp_path / "d"), dialect="stock")


def test_a_makefile_set_to_dummy_is_a_warning(tmp_path):
    home = make_build(tmp_path, dummy=True)
    (home / "injector" / "Makefile").write_text("NVBIT_PATH=../../../core\nDUMMY=1\nARCH=70\n")
    assert locate(home).warnings == ("injector/Makefile sets DUMMY=1, so injector.so may write no faults at all.",)


def test_the_search_is_read_only(tmp_path):
    home = make_build(tmp_path)
    before = sorted((p, p.stat().st_mtime_ns) for p in tmp_path.rglob("*"))
    locate(home)
    assert sorted((p, p.stat().st_mtime_ns) for p in tmp_path.rglob("*")) == before


# --- kernel log ---------------------------------------------------------------------------------

KERNEL_LOG = """\
[  100.000001] usb 1-1: new high-speed USB device number 2
[  123.456789] NVRM: Xid (PCI:0000:01:00): 43, pid=2350, name=python, Ch 00000008
[  124.000000] NVRM: Xid (PCI:0000:3b:00): 79, pid='<unknown>', name=<unknown>, GPU has fallen off the bus.
6,1234,5678,-;NVRM: Xid (PCI:0000:02:00): 13, Graphics SM Warp Exception on (GPC 0, TPC 0): Out Of Range Address
[  130.1] NVRM: Xid (0000:01:00): 31, Ch 00000010, engmask 00000101, intr 10000000
"""


def test_xid_lines_are_parsed():
    xids = xid_lines(KERNEL_LOG)
    assert [x.code for x in xids] == [43, 79, 13, 31]
    assert xids[0].device == "PCI:0000:01:00" and xids[0].pid == 2350
    assert xids[1].pid is None and "fallen off the bus" in xids[1].detail
    assert xids[2].detail.startswith("Graphics SM Warp Exception")
    assert xids[3].device == "0000:01:00"
    assert xid_lines("no gpu here\n") == []


def test_the_xid_delta_of_a_full_ring_buffer_is_read_by_content():
    """A full buffer drops its oldest line for each new one, so the log barely grows and a slice
    past the old length sees no Xid, while the content after the last old line shows it."""
    before = KERNEL_LOG
    new_xid = "[  140.5] NVRM: Xid (PCI:0000:01:00): 13, pid=4242, name=python, Graphics Exception"
    after = "".join(before.splitlines(keepends=True)[1:]) + new_xid + "\n"
    assert xid_lines(after[len(before) :]) == []  # what a length slice would have found
    delta = xid_lines(kernel_log_delta(before, after))
    assert [(x.code, x.pid) for x in delta] == [(13, 4242)]


def test_the_xid_delta_of_a_growing_log_and_of_a_wrapped_one():
    assert kernel_log_delta(KERNEL_LOG, KERNEL_LOG) == ""
    grown = KERNEL_LOG + "[  150.0] NVRM: Xid (PCI:0000:01:00): 31, Ch 00000010\n"
    assert [x.code for x in xid_lines(kernel_log_delta(KERNEL_LOG, grown))] == [31]
    repeated = "same line\nsame line\n"  # no timestamps: the longest overlap is taken
    assert kernel_log_delta(repeated, repeated + "same line\n") == "same line"
    wrapped = "[  200.0] NVRM: Xid (PCI:0000:01:00): 79, GPU has fallen off the bus\n"
    assert [x.code for x in xid_lines(kernel_log_delta(KERNEL_LOG, wrapped))] == [79]
    assert kernel_log_delta(None, "a\nb\n") == "a\nb"


def _script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_the_kernel_log_through_dmesg(tmp_path):
    log = tmp_path / "kernel.txt"
    log.write_text(KERNEL_LOG)
    good = _script(tmp_path / "dmesg-ok", f"cat '{log}'")
    denied = _script(
        tmp_path / "dmesg-denied", "echo 'dmesg: read kernel buffer failed: Operation not permitted' >&2; exit 1"
    )
    silent = _script(tmp_path / "dmesg-silent", "exit 0")
    no_kmsg = tmp_path / "no-kmsg"
    assert read_kernel_log(str(good)) == KERNEL_LOG
    assert kernel_log_readable(no_kmsg, str(good))
    assert read_kernel_log(str(denied)) is None and not kernel_log_readable(no_kmsg, str(denied))
    assert not kernel_log_readable(no_kmsg, str(silent))  # empty output proves nothing (docs/NVBITFI-INTERFACE.md)
    assert not kernel_log_readable(no_kmsg, str(tmp_path / "no-such-dmesg"))


def test_a_readable_kmsg_device_is_enough(tmp_path):
    kmsg = tmp_path / "kmsg"
    kmsg.write_text("6,1,2,-;hello\n")
    assert kernel_log_readable(kmsg, str(tmp_path / "no-such-dmesg"))
    if os.geteuid() != 0:
        kmsg.chmod(0)
        assert not kernel_log_readable(kmsg, str(tmp_path / "no-such-dmesg"))
