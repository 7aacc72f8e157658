"""fi-campaign's own NVBit tool without a GPU: its device logic (nvbitfi_tools/tool/fi_logic.h,
opcodes.h) compiled with g++ into a host binary and checked against the Python side, the
injected functions compiled with nvcc for each architecture this machine's nvcc has, and the
build command's refusals. Building against a real NVBit runs only with FI_NVBIT_PATH set.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fi_campaign.models import sampler
from fi_campaign.models.powerlaw import PowerLaw
from fi_campaign.nvbitfi_tools import build, isa, sites
from fi_campaign.nvbitfi_tools.errors import NvbitfiError
from fi_campaign.nvbitfi_tools.injlog import LogState, verdict
from fi_campaign.nvbitfi_tools.profile import parse_profile
from fi_campaign.nvbitfi_tools.render import render_injection_info
from fi_campaign.nvbitfi_tools.sites import Site
from fi_campaign.nvbitfi_tools.toollog import FORMAT, parse_tool_log

TOOL = Path(__file__).resolve().parents[1] / "nvbitfi_tools" / "tool"
NVCC = shutil.which("nvcc")
LAWS = [
    (2.0, 1.4543958),
    (3.0, 1.0411011754028192),
    (0.5, 3.0),
    (1.0728769e-07, 1.0868737),
    (6.6699225e-01, 2.3798765e01),
    (832.4749155937285, 1.23779831986),
]


class Host:
    """The host binary, one query a line (see tests/host_test.cpp)."""

    def __init__(self, exe: Path) -> None:
        proc = subprocess.Popen([str(exe)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert proc.stdin is not None and proc.stdout is not None
        self.proc, self.stdin, self.stdout = proc, proc.stdin, proc.stdout

    def __call__(self, *words) -> str:
        self.stdin.write(" ".join(str(w) for w in words) + "\n")
        self.stdin.flush()
        return self.stdout.readline().rstrip("\n")


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    if shutil.which("g++") is None:
        pytest.skip("g++ is not installed, so the tool's host test binary cannot be built")
    exe = tmp_path_factory.mktemp("host") / "host_test"
    subprocess.run(
        [
            "g++",
            "-std=c++17",
            "-O2",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-ffp-contract=off",
            str(TOOL / "tests" / "host_test.cpp"),
            "-o",
            str(exe),
        ],
        check=True,
    )
    h = Host(exe)
    yield h
    h.stdin.close()
    h.proc.wait(timeout=10)


def hex64(x: float) -> str:
    return f"{np.float64(x).view(np.uint64):016x}"


SEEDS = [0, 1, 2**62 - 1, 2**64 - 1, 12345] + np.random.default_rng(0).integers(0, 2**62, 60).tolist()


def test_lane_draws_equal_the_python_sampler_bit_for_bit(host):
    for seed in SEEDS:
        u, s = sampler.lane_draws(seed)
        want = " ".join(f"{hex64(a)} {int(b)}" for a, b in zip(u, s, strict=False))
        assert host("draws", seed) == want, seed


@pytest.mark.parametrize("law", LAWS)
def test_power_law_r_equals_the_python_sampler_bit_for_bit(host, law):
    for seed in SEEDS:
        r = sampler.relative_error(sampler.lane_draws(seed)[0], *law)
        assert host("r", seed, repr(law[0]), repr(law[1])) == " ".join(hex64(x) for x in r), (seed, law)


def test_warp_values_equal_the_python_sampler_bit_for_bit(host):
    specials = np.array([0.0, -0.0, 1.0, -2.5, 1e-40, 3e38, -3e38, np.inf, np.nan, 1e-3, 65504.0], np.float32)
    rng = np.random.default_rng(1)
    for seed in SEEDS[:30]:
        x = np.concatenate([specials, rng.standard_normal(32 - specials.size).astype(np.float32)])
        for law in LAWS[:3]:
            want = sampler.warp_values(x, seed, *law).view(np.uint32)
            got = host("value", seed, repr(law[0]), repr(law[1]), *(f"0x{b:08x}" for b in x.view(np.uint32)))
            assert got == " ".join(f"{b:08x}" for b in want), (seed, law)


def test_the_spec_follows_numpys_power_law():
    """The polynomial ln and exp stay within 1e-13 of numpy's pow, so r has the same law."""
    u = np.concatenate([np.linspace(0, 1 - 2**-53, 20001), np.random.default_rng(2).random(20000)])
    for x_min, alpha in LAWS:
        ref = PowerLaw(x_min, alpha).sample(u)
        got = sampler.relative_error(u, x_min, alpha)
        finite = ref < 1e300
        np.testing.assert_allclose(got[finite], ref[finite], rtol=1e-13)
        assert np.all(got >= x_min * (1 - 1e-15))


def test_framework_sites_draw_their_lanes_by_the_spec_and_old_stores_replay_theirs():
    from dataclasses import replace

    from fi_campaign.models.faults import WarpValues, site_faults
    from fi_campaign.models.powerlaw import FaultModelRecord

    rows = [{"mode": "warp_random", "layer": 0, "element": 0, "width": 32, "value_seed": s} for s in (5, 2**61)]
    fm = FaultModelRecord(
        table="dsn2021-fu", op="FFMA", size="common", semantics="s", entries={"common": PowerLaw(2.0, 1.4543958)}
    )  # planned before the spec: no sampler
    new = site_faults(rows, np.arange(2), replace(fm, sampler=sampler.SPEC))
    old = site_faults(rows, np.arange(2), fm)
    assert isinstance(new, WarpValues) and isinstance(old, WarpValues)
    assert np.array_equal(new.u[1], sampler.lane_draws(2**61)[0]) and np.array_equal(
        new.signs[0], sampler.lane_draws(5)[1]
    )
    assert np.array_equal(old.u[0], np.random.default_rng(5).random(32))
    many = sampler.lane_draws(np.array(SEEDS, dtype=np.uint64))
    for i, seed in enumerate(SEEDS):  # the vectorised draw is the one-seed draw, row by row
        assert np.array_equal(many[0][i], sampler.lane_draws(seed)[0]) and np.array_equal(
            many[1][i], sampler.lane_draws(seed)[1]
        )
    values = np.ones((2, 32))
    assert np.array_equal(
        new.relative_errors(np.arange(2), values)[1],
        sampler.relative_error(sampler.lane_draws(2**61)[0], 2.0, 1.4543958),
    )
    assert np.array_equal(old.relative_errors(np.arange(2), values)[0], PowerLaw(2.0, 1.4543958).sample(old.u[0]))


def test_masks_and_register_choice_match_the_python_side(host):
    seeds = np.concatenate(
        [
            np.array([0.0, 0.5, 0.96875, 0.99999994, 1e-8, 0.0312499], dtype=np.float32),
            np.random.default_rng(3).random(200, dtype=np.float32),
        ]
    )
    for s in seeds:
        text = f"{float(s)!r}"
        bit, single, xor = host("masks", text).split()
        assert int(bit) == sites.bit_position(float(s))
        assert int(single, 16) == 1 << sites.bit_position(float(s))
        assert int(xor, 16) == sites.random_mask(float(s))
        for ndest in (1, 2, 4, 8, 64):
            assert int(host("dest", text, ndest)) == sites.dest_index(float(s), ndest)


def test_each_fault_model_changes_the_register_as_specified(host):
    before = 0x3F8CCCCD  # 1.1f
    for bit_seed in (0.0, 0.3262, 0.99999994):
        single = int(host("fault", 0, before, repr(bit_seed), 7, 3, 2.0, 1.4543958), 16)
        assert single == before ^ (1 << sites.bit_position(bit_seed))
        xor = int(host("fault", 2, before, repr(bit_seed), 7, 3, 2.0, 1.4543958), 16)
        assert xor == before ^ sites.random_mask(bit_seed)
    x = np.float32(1.1)
    for lane in (0, 17, 31):
        got = int(host("fault", 1, before, 0.5, 99, lane, 2.0, 1.4543958), 16)
        full = sampler.warp_values(np.full(32, x, np.float32), 99, 2.0, 1.4543958)
        assert got == int(full.view(np.uint32)[lane])


def naive_warp(active: int, pred: int, base: int, iid: int) -> tuple[int, list[int], int]:
    """Per thread, lane by lane: what a per-thread atomic counter would give each lane."""
    lanes = [i for i in range(32) if pred & active & (1 << i)]
    leader = min(i for i in range(32) if active & (1 << i))
    selected = next((lane for k, lane in enumerate(lanes) if base + k == iid), -1)
    return leader, list(range(len(lanes))), selected


def test_warp_counting_equals_per_thread_counting(host):
    rng = np.random.default_rng(4)
    masks = [(0xFFFFFFFF, 0xFFFFFFFF), (0x1, 0x1), (0x80000000, 0x0), (0xF0F0F0F0, 0xFFFF0000)]
    masks += [
        (int(a) | 1 << int(b), int(c))
        for a, b, c in zip(
            rng.integers(0, 2**32, 300), rng.integers(0, 32, 300), rng.integers(0, 2**32, 300), strict=False
        )
    ]
    for active, pred in masks:
        base = int(rng.integers(0, 1000))
        for iid in (base - 1, base, base + 3, base + bin(pred & active).count("1") - 1, base + 40):
            leader, ranks, selected = naive_warp(active, pred, base, iid)
            want = " ".join([str(leader), *map(str, ranks)]) + f" | {selected}"
            assert host("warp", active, pred, base, iid) == want, (hex(active), hex(pred), base, iid)


def test_profile_lines_keep_nvbitfis_format_and_its_sums(host):
    line = host(
        "profile",
        0,
        "voidk<float,4>(float*,int)",
        64,
        "FFMA",
        "fp32",
        300,
        "HGMMA",
        "mma",
        8,
        "LDG",
        "ld",
        40,
        "ISETP",
        "pr",
        12,
        "EXIT",
        "nodest",
        64,
        "UNKNOWN",
        "others",
        5,
        "IMAD",
        "others",
        90,
    )
    assert line.startswith("NVBit-igprofile; index: 0; kernel_name: voidk<float,4>(float*,int); ctas: 64; instrs: 519;")
    launch = parse_profile(line + "\n" + line.replace("index: 0", "index: 1"), "fi-campaign").launches[0]
    assert launch.groups == {
        "fp64": 0,
        "fp32": 300,
        "fp16": 0,
        "mma": 8,
        "ld": 40,
        "pr": 12,
        "nodest": 64,
        "others": 95,
        "gppr": 455,
        "gp": 443,
    }
    assert launch.opcodes["UNKNOWN"] == 5 and launch.opcodes["FFMA"] == 300 and launch.opcodes["FADD"] == 0


@pytest.mark.parametrize(
    "opcode, sm, gpr, want",
    [
        ("FFMA", 70, 1, "fp32 FFMA"),
        ("FFMA", 90, 0, "nodest FFMA"),
        ("HGMMA", 90, 1, "mma HGMMA"),
        ("HGMMA", 80, 1, "others UNKNOWN"),
        ("HMMA", 70, 1, "mma HMMA"),
        ("IMMA", 75, 1, "mma IMMA"),
        ("ULDC", 75, 0, "nodest ULDC"),
        ("UIADD3", 90, 0, "nodest UIADD3"),
        ("ISETP", 80, 0, "pr ISETP"),
        ("HFMA2", 86, 1, "fp16 HFMA2"),
        ("DFMA", 89, 1, "fp64 DFMA"),
        ("LDGSTS", 80, 0, "nodest LDGSTS"),
        ("LDSM", 75, 1, "ld LDSM"),
        ("STG", 90, 0, "nodest STG"),
        ("NEWOP", 90, 1, "others UNKNOWN"),
        ("FADDX", 90, 1, "others UNKNOWN"),
    ],
)
def test_opcode_classification_and_the_unknown_rule(host, opcode, sm, gpr, want):
    assert host("classify", opcode, sm, gpr) == want


def test_opcode_table_has_each_name_once():
    names = re.findall(r'\{"([A-Z0-9_]+)", FI_[A-Z0-9]+, (\d+)\}', (TOOL / "opcodes.h").read_text())
    assert len(names) > 150
    assert len({n for n, _ in names}) == len(names)
    assert all(70 <= int(sm) <= 90 for _, sm in names)


@pytest.mark.parametrize(
    "opcode, group, mem, want",
    [
        ("HMMA.16816.F32", "mma", 0, 4),
        ("HMMA.16816.F16", "mma", 0, 2),
        ("HMMA.1688.F32", "mma", 0, 4),
        ("IMMA.16816.S8.S8", "mma", 0, 4),
        ("IMMA.8816.S8.S8", "mma", 0, 2),
        ("DMMA.884", "mma", 0, 4),
        ("HGMMA.64x128x16.F32.BF16", "mma", 0, 64),
        ("HGMMA.64x64x16.F16", "mma", 0, 16),
        ("HMMA.884.F32.F32.STEP2", "mma", 0, 2),
        ("DFMA", "fp64", 0, 2),
        ("LDG.E.128", "ld", 16, 4),
        ("LDG.E.64", "ld", 8, 2),
        ("LDS", "ld", 4, 1),
        ("IMAD.WIDE.U32", "others", 0, 2),
        ("FFMA", "fp32", 0, 1),
    ],
)
def test_destination_register_counts(host, opcode, group, mem, want):
    assert int(host("destregs", opcode, group, mem)) == want


SITE = Site("voidat::native::f<float,4>(float*,int)", 41, 1, 123456789012, 0.40110671520233154, 0.3262)


def test_the_injection_info_reads_back_exactly_in_the_tool(host, tmp_path):
    text = render_injection_info("fi-campaign", "warp_random", SITE, value_seed=2**62 - 3, law=LAWS[3])
    (tmp_path / "info").write_text(text)
    want = (
        f"model warp_random group fp32 kernel {SITE.kernel} kcount 41 iid 123456789012 "
        f"op {np.float32(SITE.op_id_seed).view(np.uint32):08x} bit {np.float32(SITE.bit_id_seed).view(np.uint32):08x} "
        f"vseed {2**62 - 3} xmin {hex64(LAWS[3][0])} alpha {hex64(LAWS[3][1])}"
    )
    assert host("params", tmp_path / "info") == want
    (tmp_path / "xor").write_text(render_injection_info("fi-campaign", "warp_xor", SITE))
    assert host("params", tmp_path / "xor").startswith("model warp_xor group fp32")


@pytest.mark.parametrize(
    "edit, why",
    [
        (lambda t: t.replace("op_seed: 0.40110672", "op_seed: 1.0"), "op_seed value '1.0' is not valid"),
        (lambda t: t.replace("format: fi-campaign/1\n", ""), "has no format line"),
        (lambda t: t + "\ncolour: red", "unknown key 'colour'"),
        (lambda t: t.replace("group: fp32", "group: ld"), "needs group fp32, not ld"),
        (lambda t: t.replace("\nx_min: 1.0728769e-07", ""), "has no x_min line"),
        (lambda t: t.replace("group: fp32", "group: pr"), "group value 'pr' is not valid"),
    ],
)
def test_the_tool_refuses_a_bad_injection_info_in_one_sentence(host, tmp_path, edit, why):
    text = edit(render_injection_info("fi-campaign", "warp_random", SITE, value_seed=9, law=LAWS[3]))
    (tmp_path / "info").write_text(text)
    answer = host("params", tmp_path / "info")
    assert answer.startswith("error: ") and why in answer


def test_the_renderer_refuses_what_the_tool_cannot_draw():
    with pytest.raises(NvbitfiError, match="needs its value seed"):
        render_injection_info("fi-campaign", "warp_random", SITE)
    with pytest.raises(NvbitfiError, match="not a value"):
        render_injection_info("fi-campaign", "warp_random", SITE, powerlaw_value=2.5, value_seed=1, law=(2.0, 1.5))
    with pytest.raises(NvbitfiError, match="cannot be drawn from"):
        render_injection_info("fi-campaign", "warp_random", SITE, value_seed=1, law=(2.0, 1.0))
    with pytest.raises(NvbitfiError, match="needs group fp32"):
        isa.mode_spec("fi-campaign", "warp_random", "ld")
    assert isa.supported_modes("fi-campaign") == ("single_bit", "warp_random", "warp_xor")
    assert "warp_xor" not in isa.supported_modes("carol")


def tool_log(host, lanes: list[tuple], result: str, extra: str = "") -> str:
    records = "".join(host("lane", *lane) + "\n" for lane in lanes)
    return (
        f"format: {FORMAT}\nmode: inject\nsite: model warp_random; group fp32; kernel k; kcount 3; iid 9\n"
        f"launch: index 3; kernel_name: k; ctas: 4\n{host('counts', 'fp32', 120, 'gp', 400)}\n"
        f"{records}{extra}{result}\n"
    )


def test_the_tools_log_parses_to_per_lane_records_and_verdicts(host):
    lanes = [(lane, 12, 0x3F800000, 0x3F800000 + lane + 1, "FFMA", 0x1A0, 100 + lane) for lane in (0, 5, 31)]
    log = parse_tool_log(tool_log(host, lanes, "result: injected; 3 of 3 lanes"))
    assert log.state is LogState.INJECTED and log.matches("k", 3) and log.value_changed
    assert [(x.lane, x.reg, x.before, x.after, x.opcode, x.pc, x.tid) for x in log.lanes] == [
        (a, b, c, d, e, f, g) for a, b, c, d, e, f, g in lanes
    ]
    assert log.counts["fp32"] == 120 and log.counts["gp"] == 400
    assert log.launch_count(1) == 120 and log.launch_count(9) == 400  # the whole launch's, by igid
    assert (log.lanes_injected, log.opcode, log.reg, log.mask) == (3, "FFMA", 12, 1)
    assert all(x.injected for x in log.lanes)
    assert verdict(log, abnormal_end=False) == "compare" and verdict(log, abnormal_end=True) == "due"
    failed = parse_tool_log(
        tool_log(
            host,
            lanes,
            "result: injected; 3 of 3 lanes",
            "error: kernel execution failed (an illegal memory access) at launch 3\n",
        )
    )
    assert failed.kernel_error == "an illegal memory access" and verdict(failed, False) == "due"
    never = parse_tool_log(
        tool_log(host, [], "result: not_injected; the run made 2 launches and never reached launch 3")
    )
    assert never.state is LogState.NOT_INJECTED and "never reached launch 3" in never.reason
    assert never.launch_count(1) == 120 and never.opcode is None and never.lanes_injected == 0
    assert verdict(never, abnormal_end=True) == "not_injected"
    cut = parse_tool_log(tool_log(host, lanes[:1], "error: signal 15"))
    assert cut.state is LogState.NO_REPORT and cut.signal == 15 and verdict(cut, True) == "due"
    assert cut.launch_count(1) is None
    assert verdict(cut, False) == "due"  # the tool saw the signal itself
    silent = parse_tool_log(tool_log(host, lanes[:1], ""))
    assert silent.state is LogState.NO_REPORT and verdict(silent, False) == "not_injected"
    assert parse_tool_log("").state is LogState.NO_REPORT
    assert parse_tool_log("Injection data\nopcode: FFMA\n").state is LogState.NO_REPORT  # a stock log


PRINTF = re.compile(r"\b(printf|assert|__assertfail|vprintf)\s*\(")


def device_calls(text: str) -> list[str]:
    """printf / assert calls in C/C++ text, comments removed."""
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    text = re.sub(r"//[^\n]*", " ", text)
    return PRINTF.findall(text)


def test_injected_functions_contain_no_printf_or_assert():
    for name in ("inject_funcs.cu", "fi_logic.h", "opcodes.h"):
        assert device_calls((TOOL / name).read_text()) == [], name
    src = (TOOL / "inject_funcs.cu").read_text()
    assert device_calls(src.replace("__syncwarp(active);", '__syncwarp(active); printf("x");')) == ["printf"]
    assert device_calls(src.replace("return;", "assert(pmask); return;", 1)) == ["assert"]


NO_NVCC = pytest.mark.skipif(NVCC is None, reason="nvcc is not installed, so the device functions cannot be compiled")


@NO_NVCC
def test_injected_functions_are_visible_and_pull_in_no_printf(tmp_path):
    assert NVCC is not None
    ptx = tmp_path / "inject.ptx"
    done = subprocess.run(
        [NVCC, "-arch=sm_90", "-rdc=true", "-ptx", str(TOOL / "inject_funcs.cu"), "-o", str(ptx)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    text = ptx.read_text()
    for fn in ("fi_profile_count", "fi_inject_count", "fi_inject_apply"):
        assert re.search(rf"\.visible \.func .*{fn}\(", text), fn
    assert "vprintf" not in text and "__assertfail" not in text  # nothing pulled in from a header either


@NO_NVCC
@pytest.mark.parametrize("arch", ["75", "80", "86", "89", "90"])
def test_injected_functions_compile_to_sass_for_each_gpu(tmp_path, arch):
    """sm_70 is not here: CUDA 13's nvcc dropped it (docs/NVBITFI.md)."""
    assert NVCC is not None
    cubin = tmp_path / "inject.cubin"
    done = subprocess.run(
        [
            NVCC,
            f"-arch=sm_{arch}",
            "-rdc=true",
            "-maxrregcount=24",
            "--cubin",
            str(TOOL / "inject_funcs.cu"),
            "-o",
            str(cubin),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert cubin.stat().st_size > 0


def cli(args: list[str], env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    exe = [sys.executable, "-c", "from fi_campaign.cli import main; main()"]
    return subprocess.run(
        exe + args, capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=timeout
    )


def fake_release(root: Path, version: str) -> Path:
    (root / "core").mkdir(parents=True)
    (root / "core" / "nvbit.h").write_text(f'#pragma once\n#define NVBIT_VERSION "{version}"\n')
    (root / "core" / "libnvbit.a").write_bytes(b"!<arch>\n")
    return root


def one_sentence(done: subprocess.CompletedProcess, *parts: str) -> None:
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "Traceback" not in done.stderr
    for part in parts:
        assert part in lines[0]


def test_injector_build_refuses_without_nvcc(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "CUDA_HOME": "", "CUDA_PATH": ""}
    one_sentence(
        cli(["injector", "build", "--nvbit", str(fake_release(tmp_path / "r", "1.7.1")), "--arch", "sm_90"], env),
        "nvcc was not found",
    )


@pytest.mark.skipif(
    NVCC is None or shutil.which("cmake") is None, reason="needs nvcc and cmake to reach the NVBit checks"
)
def test_injector_build_refuses_a_missing_or_old_nvbit(tmp_path):
    one_sentence(
        cli(["injector", "build", "--nvbit", str(tmp_path / "nowhere"), "--arch", "sm_90"]), "is not an NVBit release"
    )
    one_sentence(
        cli(["injector", "build", "--nvbit", str(fake_release(tmp_path / "old", "1.5.5")), "--arch", "sm_90"]),
        "NVBit 1.5.5",
        "older than 1.7",
    )
    one_sentence(
        cli(["injector", "build", "--nvbit", str(fake_release(tmp_path / "new", "1.7.1")), "--arch", "sm_61"]),
        "'sm_61' is not one this tool knows",
    )


def test_build_plan_names_the_cache_folder_and_refuses_volta_on_cuda13(tmp_path):
    assert build.cache_root({"XDG_CACHE_HOME": str(tmp_path)}) == tmp_path / "fi-campaign" / "tool"
    assert build.version_tuple("1.7.1") >= (1, 7) > build.version_tuple("1.5.5")
    if NVCC and shutil.which("cmake") and build.version_tuple(build.nvcc_version(Path(NVCC)))[0] >= 13:
        with pytest.raises(NvbitfiError, match="CUDA 13 dropped Volta"):
            build.plan(fake_release(tmp_path / "r", "1.8"), "sm_70")
        p = build.plan(
            fake_release(tmp_path / "s", "1.8"), "90", environ={**os.environ, "XDG_CACHE_HOME": str(tmp_path)}
        )
        assert p.out == tmp_path / "fi-campaign" / "tool" / "1.8-sm_90" and p.arch == "90"


def test_a_build_folder_says_its_dialect(tmp_path):
    from fi_campaign.nvbitfi_tools.install import detect_dialect, locate

    (tmp_path / build.MARKER).write_text('{"tool": "fi-campaign"}')
    assert detect_dialect(tmp_path) == ("fi-campaign", build.MARKER)
    inst = locate(tmp_path)
    assert inst.dialect == "fi-campaign"
    assert any("fi-campaign injector build" in m.advice for m in inst.missing if m.piece == "injector")


def test_config_keeps_warp_xor_to_the_own_tool(tmp_path):
    from fi_campaign.config import ConfigError, parse

    base = {"models": {"b": "zoo:resnet20-cifar10-baseline"}}
    with pytest.raises(ConfigError, match="warp_xor is a SASS-level model"):
        parse({**base, "modes": ["warp_xor"]}, "c.yaml")
    nv = {**base, "backend": "nvbitfi", "device": "cuda"}
    with pytest.raises(ConfigError, match="cannot inject warp_xor"):
        parse({**nv, "modes": ["warp_xor"], "nvbitfi": {"dialect": "carol"}}, "c.yaml")
    with pytest.raises(ConfigError, match="needs group fp32"):
        parse({**nv, "modes": ["warp_random"], "nvbitfi": {"dialect": "fi-campaign", "group": "gp"}}, "c.yaml")
    c = parse(
        {**nv, "modes": ["single_bit", "warp_random", "warp_xor"], "nvbitfi": {"dialect": "fi-campaign"}}, "c.yaml"
    )
    assert c.modes == ("single_bit", "warp_random", "warp_xor")
    assert parse(base, "c.yaml").modes == ("single_bit", "warp_random")


@pytest.mark.skipif(
    not os.environ.get("FI_NVBIT_PATH"),
    reason="set FI_NVBIT_PATH to an NVBit >= 1.7 release to "
    "build the whole tool against it (not in CI: NVBit is not redistributed)",
)
def test_the_whole_tool_builds_against_nvbit(tmp_path):
    out = tmp_path / "tool"
    done = cli(
        [
            "injector",
            "build",
            "--nvbit",
            os.environ["FI_NVBIT_PATH"],
            "--arch",
            os.environ.get("FI_ARCH", "sm_90"),
            "--out",
            str(out),
        ],
        timeout=3600,
    )
    assert done.returncode == 0, done.stderr + done.stdout
    for rel in ("profiler/profiler.so", "injector/injector.so", "injector/injector-dummy.so"):
        symbols = subprocess.run(["nm", "-D", "--defined-only", str(out / rel)], capture_output=True, text=True).stdout
        for fn in ("nvbit_at_init", "nvbit_at_cuda_event", "nvbit_tool_init", "nvbit_at_term"):
            assert re.search(rf"\bT {fn}$", symbols, flags=re.M), (rel, fn)
    marker = build.read_marker(out)
    assert marker is not None
    assert marker["dialect"] == "fi-campaign" and marker["sources_sha256"] == build.sources_digest(TOOL)


def test_doctor_reads_what_the_build_was_made_from(tmp_path):
    from fi_campaign.doctor import own_tool_lines
    from fi_campaign.nvbitfi_tools.install import locate

    marker = {
        "tool": "fi-campaign",
        "dialect": "fi-campaign",
        "nvbit_version": "1.7.1",
        "nvcc_version": "13.0.88",
        "arch": "90",
        "sources_sha256": build.sources_digest(TOOL),
    }
    (tmp_path / build.MARKER).write_text(__import__("json").dumps(marker))
    lines = own_tool_lines(locate(tmp_path))
    assert lines[0].ok and lines[0].text == "own NVBit tool: NVBit 1.7.1, nvcc 13.0.88, sm_90"
    assert all(line.ok for line in lines)  # same sources; no GPU here to compare the architecture with
    (tmp_path / build.MARKER).write_text(__import__("json").dumps({**marker, "sources_sha256": "0" * 64}))
    stale = own_tool_lines(locate(tmp_path))
    assert any(not line.ok and "other sources" in line.text and not line.required for line in stale)
