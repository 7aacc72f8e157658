"""nvbitfi-injection-log-temp.txt written exactly as each build writes it, for the tests and for
the stand-in injector of the campaign tests (which embeds this file's source).

Read from the builds' injector.cu: stock NVlabs/nvbitfi e6fbace, UFRGS-CAROL/nvbitfi 8f7e48a
(the same writer) and NVlabs/nvbitfi pull request #19 at 17653af (one block per lane, header
"Injection data, laneId:<n>", for its warp models; one block with laneId:0 otherwise). The
stream is std::hex only between "mask: 0x" and "regNo: " and for "pcOffset: 0x".
"""

NOT_INJECTED = {"mask": 0, "before": 0, "after": 0, "reg": -1, "opcode": "NOP", "pc": 0, "tid": -1}


def injected(opcode="FFMA", before=0x3F800000, mask=0x10, reg=12, pc=0x1A0, tid=7) -> dict:
    return {"mask": mask, "before": before, "after": before ^ mask, "reg": reg, "opcode": opcode, "pc": pc, "tid": tid}


def inspecting(kernel: str, static: int = 812, maxregs: int = 40) -> str:
    """What instrument_function_if_needed writes when it instruments the named kernel."""
    return f"inspecting: {kernel}\nnum_static_instrs: {static}\nmaxregs: {maxregs}({maxregs})\n"


def write_inj_info(counts: list[int], rec: dict) -> str:
    """injector.cu write_inj_info: the group counters, then one record."""
    grp = "".join(f" grp {i}: {c}" for i, c in enumerate(counts))
    return (
        f"{grp}\nmask: 0x{rec['mask']:x}\nbeforeVal: 0x{rec['before']:x};afterVal: 0x{rec['after']:x}\n"
        f"regNo: {rec['reg']}\nopcode: {rec['opcode']}\npcOffset: 0x{rec['pc']:x}\ntid: {rec['tid']}\n"
    )


def launch_exit(build: str, index: int, kernel: str, counts: list[int], recs: list[dict], ctas: int = 4) -> str:
    """The block written at the exit of the selected launch. ``instrs`` is get_inst_count():
    the sum of the base group counters (all but gppr and gp). pr2022 writes one block per
    record (32 for a warp model), the others one."""
    out = ""
    for lane, rec in enumerate(recs if build == "pr2022" else recs[:1]):
        head = f"Injection data, laneId:{lane}" if build == "pr2022" else "Injection data"
        out += (
            f"{head}\nindex: {index}\nkernel_name: {kernel}\nctas: {ctas}\ninstrs: {sum(counts[:-2])}\n"
            + write_inj_info(counts, rec)
            + ("Error not injected\n" if rec["opcode"] == "NOP" else "")
        )
    return out


def sigint_handler(build: str, counts: list[int], recs: list[dict]) -> str:
    """INThandler: the mark, then write_inj_info without a header (every lane's for pr2022's
    warp models), then exit(-1)."""
    return "ERROR FAIL Detected Signal SIGKILL\n" + "".join(
        write_inj_info(counts, r) for r in (recs if build == "pr2022" else recs[:1])
    )


def kernel_error(message: str = "an illegal memory access was encountered") -> str:
    """Any launch's exit with a CUDA error: no newline, then exit(1)."""
    return f"ERROR FAIL in kernel execution ({message}); "


def counts_for(build: str, igid: int, count: int) -> list[int]:
    """Group counters of a launch whose only instructions are ``count`` of group ``igid``,
    obeying the counter algebra (gppr = all but nodest, gp = gppr minus pr)."""
    n = 10 if build == "pr2022" else 8
    nodest, pr = (6, 5) if build == "pr2022" else (4, 3)
    base = [0] * (n - 2)
    base[igid] = count
    gppr = sum(base) - base[nodest]
    return base + [gppr, gppr - base[pr]]
