"""nvbitfi-injection-log-temp.txt parsing: injected, not injected, and logs with no verdict."""
from __future__ import annotations

import pytest

from nvbitfi_tools.injlog import LOG_FILE, LogState, parse_injection_log, read_injection_log, verdict

KERNEL = "voidat::native::(anonymousnamespace)::foo<float,4>(float*,int)"
HEADER = f"inspecting: {KERNEL}\nnum_static_instrs: 812\nmaxregs: 40(40)\n"


def block(opcode: str = "FFMA", before: str = "3f8ccccd", after: str = "3f8cccdd", index: int = 41,
          kernel: str = KERNEL, tid: int = 70123, not_injected: bool = False) -> str:
    """The block injector.cu writes at the exit of the selected launch (protocol doc 7)."""
    text = (f"Injection data\nindex: {index}\nkernel_name: {kernel}\nctas: 256\ninstrs: 918273\n"
            " grp 0: 0 grp 1: 5001 grp 2: 300 grp 3: 20 grp 4: 10 grp 5: 400 grp 6: 5721 grp 7: 5701\n"
            f"mask: 0x10\nbeforeVal: 0x{before};afterVal: 0x{after}\nregNo: 12\nopcode: {opcode}\n"
            f"pcOffset: 0x1a0\ntid: {tid}\n")
    return text + ("Error not injected\n" if not_injected else "")


def test_an_injected_fault_and_its_details():
    log = parse_injection_log(HEADER + block())
    assert log.state is LogState.INJECTED
    assert (log.index, log.kernel_name, log.ctas, log.instrs) == (41, KERNEL, 256, 918273)
    assert log.group_counts == {0: 0, 1: 5001, 2: 300, 3: 20, 4: 10, 5: 400, 6: 5721, 7: 5701}
    assert (log.mask, log.before, log.after) == (0x10, 0x3F8CCCCD, 0x3F8CCCDD)
    assert (log.reg, log.opcode, log.pc_offset, log.tid) == (12, "FFMA", 0x1A0, 70123)
    assert log.inspected == (KERNEL,)
    assert log.value_changed is True
    assert log.matches(KERNEL, 41) and not log.matches(KERNEL, 40)
    assert verdict(log, abnormal_end=False) == "compare"
    assert verdict(log, abnormal_end=True) == "due"


def test_error_not_injected_is_its_own_state_and_never_masked():
    log = parse_injection_log(HEADER + block(opcode="NOP", before="0", after="0", tid=-1, not_injected=True))
    assert log.state is LogState.NOT_INJECTED
    assert log.opcode == "NOP" and log.tid == -1
    assert log.group_counts[1] == 5001  # the whole launch's count: compare with the planned iid
    assert verdict(log, abnormal_end=False) == "not_injected"
    assert verdict(log, abnormal_end=True) == "not_injected"


def test_a_different_kernel_at_the_planned_index_shows_a_launch_sequence_drift():
    log = parse_injection_log(block(opcode="NOP", kernel="_Z10simple_addi", not_injected=True))
    assert log.state is LogState.NOT_INJECTED
    assert not log.matches(KERNEL, 41)


@pytest.mark.parametrize("text", ["", "\n  \n"])
def test_an_empty_log_has_no_report(text):
    log = parse_injection_log(text)
    assert log.state is LogState.NO_REPORT and "empty" in log.reason
    assert verdict(log, abnormal_end=False) == "not_injected"
    assert verdict(log, abnormal_end=True) == "due"


def test_a_log_that_never_reached_the_selected_launch_has_no_report():
    log = parse_injection_log(HEADER)
    assert log.state is LogState.NO_REPORT and "never ended" in log.reason
    assert log.inspected == (KERNEL,)


def test_a_block_cut_before_its_verdict_has_no_report():
    full = block(opcode="NOP", before="0", after="0", not_injected=True)
    cut = full[: full.index("regNo")]
    log = parse_injection_log(HEADER + cut)
    assert log.state is LogState.NO_REPORT and "cut short" in log.reason
    assert log.mask == 0x10 and log.opcode is None


def test_a_block_cut_after_a_real_opcode_is_still_injected():
    full = block()
    log = parse_injection_log(full[: full.index("pcOffset")])
    assert log.state is LogState.INJECTED and log.tid is None


def test_a_cuda_error_in_the_selected_launch_leaves_no_report_and_is_a_due():
    log = parse_injection_log(HEADER + "ERROR FAIL in kernel execution (an illegal memory access was encountered); ")
    assert log.state is LogState.NO_REPORT
    assert log.kernel_error == "an illegal memory access was encountered"
    assert verdict(log, abnormal_end=False) == "due"


def test_the_signal_handler_block_after_an_injection_is_injected_and_a_due():
    sig = "ERROR FAIL Detected Signal SIGKILL\n" + block()[block().index(" grp"):]
    log = parse_injection_log(HEADER + sig)
    assert log.state is LogState.INJECTED and log.signal and log.opcode == "FFMA"
    assert verdict(log, abnormal_end=False) == "due"


def test_the_signal_handler_before_any_injection_has_no_report():
    sig = "ERROR FAIL Detected Signal SIGKILL\n" + block(opcode="NOP", tid=-1)[block().index(" grp"):]
    log = parse_injection_log(HEADER + sig)
    assert log.state is LogState.NO_REPORT and log.signal
    assert verdict(log, abnormal_end=False) == "due"


def test_the_verbose_register_check_is_not_a_kernel_error():
    text = (HEADER + block() + "ERROR FAIL in kernel execution; Expected reg value doesn't match; \n"
            "maxRegs: 40, destGPRNum: 12, expected_val: 3f8ccccd, myval: 0\n")
    log = parse_injection_log(text)
    assert log.register_mismatch and log.kernel_error is None
    assert log.state is LogState.NOT_INJECTED
    assert verdict(log, abnormal_end=True) == "not_injected"


def test_a_dummy_build_applies_nothing():
    log = parse_injection_log(block(before="3f800000", after="3f800000"))
    assert log.state is LogState.INJECTED and log.value_changed is False


def test_lines_a_fork_adds_are_kept():
    log = parse_injection_log(block() + "warpID: 7\nlaneMask: 0xffffffff\n")
    assert log.extra == {"warpID": "7", "laneMask": "0xffffffff"}


def test_reading_from_a_run_directory(tmp_path):
    missing = read_injection_log(tmp_path)
    assert missing.state is LogState.NO_REPORT and "never loaded" in missing.reason
    (tmp_path / LOG_FILE).write_text(HEADER + block())
    assert read_injection_log(tmp_path).state is LogState.INJECTED
