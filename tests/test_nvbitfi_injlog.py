"""nvbitfi-injection-log-temp.txt parsing: injected, not injected, and logs with no verdict."""

from __future__ import annotations

import pytest

from fi_campaign.nvbitfi_tools.injlog import LOG_FILE, LogState, parse_injection_log, read_injection_log, verdict

KERNEL = "voidat::native::(anonymousnamespace)::foo<float,4>(float*,int)"
HEADER = f"inspecting: {KERNEL}\nnum_static_instrs: 812\nmaxregs: 40(40)\n"


def block(
    opcode: str = "FFMA",
    before: str = "3f8ccccd",
    after: str = "3f8cccdd",
    index: int = 41,
    kernel: str = KERNEL,
    tid: int = 70123,
    not_injected: bool = False,
) -> str:
    """The block injector.cu writes at the exit of the selected launch (docs/NVBITFI-INTERFACE.md)."""
    text = (
        f"Injection data\nindex: {index}\nkernel_name: {kernel}\nctas: 256\ninstrs: 918273\n"
        " grp 0: 0 grp 1: 5001 grp 2: 300 grp 3: 20 grp 4: 10 grp 5: 400 grp 6: 5721 grp 7: 5701\n"
        f"mask: 0x10\nbeforeVal: 0x{before};afterVal: 0x{after}\nregNo: 12\nopcode: {opcode}\n"
        f"pcOffset: 0x1a0\ntid: {tid}\n"
    )
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
    sig = "ERROR FAIL Detected Signal SIGKILL\n" + block()[block().index(" grp") :]
    log = parse_injection_log(HEADER + sig)
    assert log.state is LogState.INJECTED and log.signal and log.opcode == "FFMA"
    assert verdict(log, abnormal_end=False) == "due"


def test_the_signal_handler_before_any_injection_has_no_report():
    sig = "ERROR FAIL Detected Signal SIGKILL\n" + block(opcode="NOP", tid=-1)[block().index(" grp") :]
    log = parse_injection_log(HEADER + sig)
    assert log.state is LogState.NO_REPORT and log.signal
    assert verdict(log, abnormal_end=False) == "due"


def test_the_verbose_register_check_is_not_a_kernel_error():
    text = (
        HEADER + block() + "ERROR FAIL in kernel execution; Expected reg value doesn't match; \n"
        "maxRegs: 40, destGPRNum: 12, expected_val: 3f8ccccd, myval: 0\n"
    )
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


# --- logs exactly as each build writes them (tests/nvbitfi_logs.py) --------------------------------

from tests import nvbitfi_logs as w  # noqa: E402

COUNTS = w.counts_for("carol", 1, 5001)


@pytest.mark.parametrize("build", ["nvlabs", "carol"])
def test_stock_and_carol_logs_give_the_right_verdicts(build):
    head = w.inspecting(KERNEL)
    rec = w.injected(before=0x3F8CCCCD, mask=0x400)
    hit = parse_injection_log(head + w.launch_exit(build, 41, KERNEL, COUNTS, [rec]))
    assert hit.state is LogState.INJECTED and hit.lanes_injected == 1 and len(hit.lanes) == 1
    assert (hit.before, hit.after, hit.mask) == (0x3F8CCCCD, 0x3F8CCCCD ^ 0x400, 0x400)
    assert hit.matches(KERNEL, 41) and hit.launch_count(1) is None  # counters stopped at the fault
    assert verdict(hit, abnormal_end=False) == "compare"

    miss = parse_injection_log(head + w.launch_exit(build, 41, KERNEL, COUNTS, [w.NOT_INJECTED]))
    assert miss.state is LogState.NOT_INJECTED and miss.lanes_injected == 0
    assert miss.launch_count(1) == 5001 and miss.instrs == 5001  # the whole launch's count
    assert verdict(miss, abnormal_end=True) == "not_injected"

    crash = parse_injection_log(head + w.kernel_error())
    assert crash.state is LogState.NO_REPORT and crash.kernel_error and crash.launch_count(1) is None
    assert verdict(crash, abnormal_end=False) == "due"
    after = parse_injection_log(head + w.launch_exit(build, 41, KERNEL, COUNTS, [rec]) + w.kernel_error())
    assert after.state is LogState.INJECTED and verdict(after, abnormal_end=False) == "due"

    late = parse_injection_log(head + w.sigint_handler(build, COUNTS, [rec]))
    assert late.state is LogState.INJECTED and late.signal and late.opcode == "FFMA"
    assert verdict(late, abnormal_end=True) == "due" and late.launch_count(1) is None
    early = parse_injection_log(head + w.sigint_handler(build, COUNTS, [w.NOT_INJECTED]))
    assert early.state is LogState.NO_REPORT and early.signal and early.group_counts[1] == 5001
    assert verdict(early, abnormal_end=True) == "due"


def _warp(lanes: range) -> list[dict]:
    return [
        w.injected(before=0x3F800000 + i, mask=0xE6666600, tid=64 + i) if i in lanes else w.NOT_INJECTED
        for i in range(32)
    ]


@pytest.mark.parametrize(
    "lanes",
    [range(32), range(0, 20), range(12, 32), range(31, 32), range(0, 1)],
    ids=["every lane", "prefix 0-19", "suffix 12-31", "lane 31 only", "lane 0 only"],
)
def test_pr2022_warp_logs_count_every_injected_lane(lanes):
    counts = w.counts_for("pr2022", 1, 4096)
    log = parse_injection_log(w.inspecting(KERNEL) + w.launch_exit("pr2022", 7, KERNEL, counts, _warp(lanes)))
    assert log.state is LogState.INJECTED and verdict(log, abnormal_end=False) == "compare"
    assert log.lanes_injected == len(lanes) and len(log.lanes) == 32
    assert [lane.lane for lane in log.lanes] == list(range(32))
    hit = [lane for lane in log.lanes if lane.injected]
    assert [lane.lane for lane in hit] == list(lanes)
    assert [(lane.before, lane.after) for lane in hit] == [
        (0x3F800000 + i, (0x3F800000 + i) ^ 0xE6666600) for i in lanes
    ]
    assert all(lane.not_injected for lane in log.lanes if not lane.injected)  # inactive lanes say so
    assert log.before == 0x3F800000 + lanes[0] and log.matches(KERNEL, 7)
    assert log.group_counts[1] == 4096 and log.instrs == 4096


def test_pr2022_logs_with_no_lane_injected_and_single_thread_models():
    counts = w.counts_for("pr2022", 1, 4096)
    none = parse_injection_log(w.launch_exit("pr2022", 7, KERNEL, counts, _warp(range(0))))
    assert none.state is LogState.NOT_INJECTED and none.lanes_injected == 0 and none.launch_count(1) == 4096
    single = parse_injection_log(w.launch_exit("pr2022", 7, KERNEL, counts, [w.injected()]))
    assert single.state is LogState.INJECTED and [lane.lane for lane in single.lanes] == [0]
    handler = parse_injection_log(w.sigint_handler("pr2022", counts, _warp(range(4, 9))))
    assert handler.state is LogState.INJECTED and handler.signal and handler.lanes_injected == 5
    assert [lane.lane for lane in handler.lanes if lane.injected] == [4, 5, 6, 7, 8]
    assert verdict(handler, abnormal_end=True) == "due"
