"""nvbitfi-igprofile.txt parsing and site selection, on profiles written to the documented format."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import chi2

from fi_campaign.nvbitfi_tools.errors import NvbitfiError as UserError
from fi_campaign.nvbitfi_tools.isa import UnsupportedMode
from fi_campaign.nvbitfi_tools.profile import ProfileError, parse_profile, read_profile, require_groups
from fi_campaign.nvbitfi_tools.sites import (
    Site,
    bit_position,
    dest_index,
    draw_sites,
    draw_stratified,
    group_shares,
    injection_list_line,
    random_mask,
)

# Names as the profiler writes them: NVBit's name with all whitespace removed.
KERNELS = [
    "voidat::native::(anonymousnamespace)::foo<float,4>(float*,int,at::native::Array<char*,2>)",
    "voidcudnn::ops::nchwToNhwcKernel<float,float,float,false,true,(cudnnKernelDataType_t)0>"
    "(cudnn::ops::nchw2nhwc_params_t<float>,floatconst*,float*)",
    "Fan2(float*,float*,float*,int,int,int)",
    "_Z10simple_addi",
    "odd;name(int)",  # a ';' in a name: the stock scripts' split(';') would break, we must not
]
OPCODES = ("FADD", "FFMA", "FMUL", "DFMA", "LDG", "ISETP", "STG", "EXIT", "IMAD", "MOV", "HMMA")


def profile_line(index: int, name: str, base: dict[str, int], ctas: int = 0) -> str:
    """One line exactly as profiler.cu writes it (docs/NVBITFI-INTERFACE.md)."""
    groups = dict(base)
    groups["gppr"] = sum(base.values()) - base["nodest"]
    groups["gp"] = groups["gppr"] - base["pr"]
    opcodes = {
        "FADD": base["fp32"] // 2,
        "FFMA": base["fp32"] - base["fp32"] // 2,
        "FMUL": 0,
        "DFMA": base["fp64"],
        "LDG": base["ld"],
        "ISETP": base["pr"],
        "STG": base["nodest"] // 2,
        "EXIT": base["nodest"] - base["nodest"] // 2,
        "IMAD": base["others"],
        "MOV": 0,
        "HMMA": 0,
    }
    assert tuple(opcodes) == OPCODES
    pairs = "".join(f" {k}: {v}," for k, v in [*opcodes.items(), *groups.items()])
    return f"NVBit-igprofile; index: {index}; kernel_name: {name}; ctas: {ctas}; instrs: {sum(base.values())};{pairs}"


def base_counts(fp32: int, fp64: int = 0, ld: int = 7, pr: int = 5, nodest: int = 3, others: int = 11) -> dict:
    return {"fp64": fp64, "fp32": fp32, "ld": ld, "pr": pr, "nodest": nodest, "others": others}


FP32_COUNTS = [1, 3, 0, 10, 50, 200, 7, 0, 120, 33, 2, 64, 500, 5, 90, 18]


@pytest.fixture
def profile_text() -> str:
    lines = [profile_line(i, KERNELS[i % len(KERNELS)], base_counts(c), ctas=4 * i) for i, c in enumerate(FP32_COUNTS)]
    return "\n".join(lines) + "\n"


# --- parsing ----------------------------------------------------------------------------------


def test_parses_every_launch_with_names_that_contain_commas_and_parentheses(profile_text):
    profile = parse_profile(profile_text)
    assert len(profile.launches) == len(FP32_COUNTS)
    assert [launch.index for launch in profile.launches] == list(range(len(FP32_COUNTS)))
    assert [launch.kernel for launch in profile.launches] == [KERNELS[i % 5] for i in range(len(FP32_COUNTS))]
    first = profile.launches[0]
    assert first.groups == {"fp64": 0, "fp32": 1, "ld": 7, "pr": 5, "nodest": 3, "others": 11, "gppr": 24, "gp": 19}
    assert first.instrs == 27 and first.ctas == 0 and first.line == 1
    assert tuple(first.opcodes) == OPCODES
    assert profile.counts("fp32") == FP32_COUNTS
    assert profile.total(1) == sum(FP32_COUNTS)
    assert profile.kernels()[KERNELS[0]] == 4


def test_crlf_and_blank_lines_are_accepted(profile_text):
    profile = parse_profile(profile_text.replace("\n", "\r\n") + "\r\n\r\n")
    assert profile.counts("fp32") == FP32_COUNTS


def test_a_ten_group_2022_profile_is_read_with_its_dialect():
    groups = {
        "fp64": 0,
        "fp32": 9,
        "fp16": 4,
        "mma": 2,
        "ld": 3,
        "pr": 1,
        "nodest": 2,
        "others": 5,
        "gppr": 24,
        "gp": 23,
    }
    pairs = "".join(f" {k}: {v}," for k, v in [("FFMA", 9), *groups.items()])
    text = f"NVBit-igprofile; index: 0; kernel_name: k(float*); ctas: 1; instrs: 26;{pairs}\n"
    assert parse_profile(text, "pr2022").launches[0].groups["mma"] == 2
    with pytest.raises(ProfileError, match=r"line 1 ends with groups .* not the nvlabs groups"):
        parse_profile(text, "nvlabs")
    # pull request #19's profiler.cu and globals.h keep stock's counter algebra: checked too
    with pytest.raises(ProfileError, match="line 1: group counts do not add up"):
        parse_profile(text.replace("gp: 23,", "gp: 24,"), "pr2022")
    with pytest.raises(ProfileError, match="line 1: group counts do not add up"):
        parse_profile(text.replace("instrs: 26;", "instrs: 27;"), "pr2022")


@pytest.mark.parametrize("text", ["", "\n\n  \n"])
def test_an_empty_profile_is_refused(text):
    with pytest.raises(ProfileError, match="has no launches"):
        parse_profile(text)


def test_a_missing_profile_file_is_one_sentence(tmp_path):
    with pytest.raises(ProfileError, match="no NVBitFI profile at"):
        read_profile(tmp_path / "nvbitfi-igprofile.txt")


def test_read_profile_from_a_file(tmp_path, profile_text):
    path = tmp_path / "nvbitfi-igprofile.txt"
    path.write_text(profile_text)
    assert read_profile(path).counts("fp32") == FP32_COUNTS


def _broken(profile_text: str, number: int, replacement: str) -> str:
    lines = profile_text.splitlines()
    lines[number - 1] = replacement
    return "\n".join(lines)


@pytest.mark.parametrize(
    "make_bad, message",
    [
        (lambda line: line[: len(line) // 2], r"line 7 is not an NVBit-igprofile line"),  # cut mid-write
        (lambda line: "NVBit-igprofile; ERROR FAIL in kernel execution!!", r"line 7 is not an NVBit-igprofile"),
        (lambda line: line.replace("FFMA: ", "FFMA: x"), r"line 7: 'FFMA: x.*' is not a 'NAME: count' pair"),
        (lambda line: line.replace("index: 6", "index: 9"), r"line 7: launch index 9 where 6 was expected"),
        (
            lambda line: line.replace("kernel_name: void", "kernel_name: void "),
            r"line 7: kernel name .* contains whitespace",
        ),
        (lambda line: line.replace(" gp: ", " gp: 1"), r"line 7: group counts do not add up"),
    ],
)
def test_a_malformed_line_is_named_by_its_number(profile_text, make_bad, message):
    original = profile_text.splitlines()[6]
    with pytest.raises(ProfileError, match=message) as info:
        parse_profile(_broken(profile_text, 7, make_bad(original)), source="prof.txt")
    text = str(info.value)
    assert text.startswith("prof.txt line 7") and "\n" not in text and text.endswith(".")
    assert isinstance(info.value, UserError)


def test_a_zero_instruction_group_a_mode_needs_is_refused(profile_text):
    profile = parse_profile(profile_text)
    require_groups(profile, [("fp32", "single_bit"), ("ld", "warp_random")])
    with pytest.raises(
        ProfileError, match="no fp64 instructions in any of its 16 launches, so mode single_bit has nothing to inject"
    ):
        require_groups(profile, [("fp32", "single_bit"), (0, "single_bit")])


# --- site selection ---------------------------------------------------------------------------


def test_sites_are_reproducible_from_the_seed(profile_text):
    profile = parse_profile(profile_text)
    a = draw_sites(profile, "fp32", 200, np.random.default_rng(7))
    b = draw_sites(profile, "fp32", 200, np.random.default_rng(7))
    c = draw_sites(profile, "fp32", 200, np.random.default_rng(8))
    assert a == b and a != c
    assert all(isinstance(s, Site) and s.igid == 1 for s in a)


def test_every_site_points_at_an_existing_instruction(profile_text):
    profile = parse_profile(profile_text)
    sites = draw_sites(profile, "fp32", 5000, np.random.default_rng(1))
    by_index = {launch.index: launch for launch in profile.launches}
    for s in sites:
        launch = by_index[s.kcount]
        assert s.kernel == launch.kernel
        assert 0 <= s.iid < launch.groups["fp32"]
        assert 0.0 <= s.op_id_seed < 1.0 and 0.0 <= s.bit_id_seed < 1.0
        assert float(np.float32(s.op_id_seed)) == s.op_id_seed  # exactly what the injector reads
    assert {2, 7}.isdisjoint({s.kcount for s in sites})  # zero-count launches never drawn


def chi_square_threshold(df: int) -> float:
    """0.999 quantile of chi-square(df)."""
    return float(chi2.ppf(0.999, df))


def test_launches_are_drawn_in_proportion_to_their_counts(profile_text):
    """Pearson chi-square of launch frequencies against count/total.

    With a correct sampler the statistic exceeds the 0.999 quantile one time in a thousand; the
    seed is fixed, so the test is deterministic. The same threshold rejects the likely bug (each
    launch equally likely) by orders of magnitude, which the last assertion shows.
    """
    profile = parse_profile(profile_text)
    n = 40_000
    sites = draw_sites(profile, "fp32", n, np.random.default_rng(2024))
    counts = np.array(FP32_COUNTS, dtype=float)
    live = counts > 0
    observed = np.bincount([s.kcount for s in sites], minlength=len(counts))[live]
    expected = n * counts[live] / counts.sum()
    assert expected.min() >= 5  # chi-square approximation valid
    stat = float(((observed - expected) ** 2 / expected).sum())
    limit = chi_square_threshold(int(live.sum()) - 1)
    assert stat < limit
    uniform = np.full(live.sum(), n / live.sum())
    assert float(((uniform - expected) ** 2 / expected).sum()) > 100 * limit


def test_instruction_index_is_uniform_within_a_launch(profile_text):
    profile = parse_profile(profile_text)
    sites = draw_sites(profile, "fp32", 40_000, np.random.default_rng(5))
    iids = np.array([s.iid for s in sites if s.kcount == 12])  # the 500-instruction launch
    observed = np.bincount(iids // 50, minlength=10)
    expected = np.full(10, len(iids) / 10)
    assert float(((observed - expected) ** 2 / expected).sum()) < chi_square_threshold(9)


def test_stratified_draws_are_independent_per_group_and_mode(profile_text):
    profile = parse_profile(profile_text)
    one = draw_stratified(parse_profile(profile_text, "carol"), [("fp32", "single_bit")], 50, seed=3)
    two = draw_stratified(
        parse_profile(profile_text, "carol"),
        [("ld", "single_bit"), ("fp32", "warp_random"), ("fp32", "single_bit")],
        50,
        seed=3,
    )
    assert set(two) == {(2, "single_bit"), (1, "warp_random"), (1, "single_bit")}
    assert one[(1, "single_bit")] == two[(1, "single_bit")]
    assert two[(1, "warp_random")] != two[(1, "single_bit")]
    with pytest.raises(UnsupportedMode, match="nvlabs NVBitFI build .* cannot inject warp_random"):
        draw_stratified(profile, [("fp32", "warp_random")], 10, seed=3)
    with pytest.raises(UserError, match="group pr cannot be injected"):
        draw_sites(profile, "pr", 10, np.random.default_rng(0))
    with pytest.raises(UserError, match="no fp64 site can be drawn"):
        draw_sites(profile, "fp64", 10, np.random.default_rng(0))


def test_group_shares_weight_the_strata(profile_text):
    profile = parse_profile(profile_text)
    shares = group_shares(profile, ["fp32", "ld"])
    assert shares[1] == pytest.approx(sum(FP32_COUNTS) / (sum(FP32_COUNTS) + 7 * 16))
    assert sum(shares.values()) == pytest.approx(1.0)


def test_seed_helpers_compute_what_the_injector_computes():
    below_one = float(np.nextafter(np.float32(1), np.float32(0)))
    assert bit_position(0.0) == 0 and bit_position(below_one) == 31 and bit_position(0.5) == 16
    assert dest_index(0.99, 2) == 1 and dest_index(0.49, 2) == 0
    assert random_mask(0.9) == 0xE6666600  # float32 quantisation (docs/NVBITFI-INTERFACE.md)
    assert random_mask(0.5) == 0x80000000
    sites = draw_sites(parse_profile(profile_line(0, "k", base_counts(1000))), "fp32", 2000, np.random.default_rng(0))
    assert max(bit_position(s.bit_id_seed) for s in sites) <= 31


def test_injection_list_line_is_nvbitfi_format():
    site = Site("foo<float,4>(float*,int)", 12, 1, 345, 0.25, 0.125)
    line = injection_list_line(site)
    assert line == "foo<float,4>(float*,int) 12 345 0.25 0.125 "
    tokens = line.split()
    assert " ".join(tokens[:-4]) == site.kernel and tokens[-4:] == ["12", "345", "0.25", "0.125"]
