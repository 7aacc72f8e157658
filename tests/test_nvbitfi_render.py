"""nvbitfi-injection-info.txt rendering per dialect, and what each dialect can inject."""

from __future__ import annotations

from importlib import resources

import jinja2
import numpy as np
import pytest

from fi_campaign.nvbitfi_tools import isa
from fi_campaign.nvbitfi_tools.errors import NvbitfiError as UserError
from fi_campaign.nvbitfi_tools.render import INFO_FILE, render_injection_info, write_injection_info
from fi_campaign.nvbitfi_tools.sites import Site

KERNEL = "voidat::native::(anonymousnamespace)::foo<float,4>(float*,int,at::native::Array<char*,2>)"
SITE = Site(KERNEL, 41, 1, 123456789012, 0.40110671520233154, 0.32620000839233398)

# (dialect, mode) -> expected (igid, bfm): docs/NVBITFI-INTERFACE.md.
EXPECTED = {
    ("nvlabs", "single_bit"): (1, 0),
    ("carol", "single_bit"): (1, 0),
    ("carol", "warp_random"): (1, 7),
    ("pr2022", "single_bit"): (1, 0),
    ("pr2022", "warp_random"): (1, 4),
}


@pytest.mark.parametrize("dialect, mode", list(EXPECTED))
def test_seven_lines_exactly_as_the_injector_reads_them(dialect, mode):
    text = render_injection_info(dialect, mode, SITE)
    assert not text.endswith("\n")  # create_p_file writes no trailing newline
    lines = text.split("\n")
    igid, bfm = EXPECTED[(dialect, mode)]
    assert lines[0] == str(igid)
    assert lines[1] == str(bfm)
    assert lines[2] == KERNEL
    assert lines[3] == "41"
    assert lines[4] == "123456789012"
    assert np.float32(lines[5]) == np.float32(SITE.op_id_seed)  # the float the injector parses
    assert np.float32(lines[6]) == np.float32(SITE.bit_id_seed)
    assert lines[5] == "0.40110672" and lines[6] == "0.3262"
    assert len(lines) == 7


@pytest.mark.parametrize("dialect", ["carol", "pr2022"])
def test_the_power_law_value_is_an_extra_eighth_line(dialect):
    lines = render_injection_info(dialect, "warp_random", SITE, powerlaw_value=2.0230031e00 * 1.7).split("\n")
    assert len(lines) == 8
    assert lines[:7] == render_injection_info(dialect, "warp_random", SITE).split("\n")
    assert float(lines[7]) == 2.0230031e00 * 1.7


def test_a_power_law_value_is_refused_where_it_means_nothing():
    with pytest.raises(UserError, match="power-law value belongs to warp_random"):
        render_injection_info("carol", "single_bit", SITE, powerlaw_value=1.5)
    with pytest.raises(UserError, match="not a finite number"):
        render_injection_info("carol", "warp_random", SITE, powerlaw_value=float("inf"))


def test_stock_nvbitfi_refuses_warp_random_in_one_sentence():
    with pytest.raises(UserError) as info:
        render_injection_info("nvlabs", "warp_random", SITE)
    text = str(info.value)
    assert "nvlabs" in text and "warp_random" in text and "\n" not in text and text.endswith(".")
    assert isinstance(info.value, isa.UnsupportedMode)


def test_unknown_dialect_and_mode_are_refused():
    with pytest.raises(isa.UnknownDialect, match="unknown NVBitFI dialect 'sassifi'; known: nvlabs, carol, pr2022"):
        render_injection_info("sassifi", "single_bit", SITE)
    with pytest.raises(isa.UnsupportedMode, match="unknown mode 'two_bits'"):
        render_injection_info("carol", "two_bits", SITE)


@pytest.mark.parametrize(
    "site, message",
    [
        (Site("foo (int)", 0, 1, 0, 0.1, 0.1), "has whitespace"),
        (Site("k" * 1000, 0, 1, 0, 0.1, 0.1), "buffer holds 999"),
        (Site("k", 2**31, 1, 0, 0.1, 0.1), "does not fit the injector's int"),
        (Site("k", 0, 1, -1, 0.1, 0.1), "instruction index -1"),
        (Site("k", 0, 1, 0, 0.99999999, 0.1), r"opIDSeed .* not in \[0, 1\) as a float32"),  # rounds to 1.0f
        (Site("k", 0, 3, 0, 0.1, 0.1), "group pr cannot be injected"),
        (Site("k", 0, 8, 0, 0.1, 0.1), "group 8 does not exist in the nvlabs build"),
    ],
)
def test_sites_the_injector_would_misread_are_refused(site, message):
    with pytest.raises(UserError, match=message):
        render_injection_info("nvlabs", "single_bit", site)


def test_limits_are_per_dialect():
    assert render_injection_info("nvlabs", "single_bit", Site("k" * 999, 0, 1, 0, 0.0, 0.0)).split("\n")[2] == "k" * 999
    assert render_injection_info("pr2022", "single_bit", Site("k", 0, 9, 0, 0.0, 0.0)).startswith("9\n0\n")  # gp


def test_templates_ship_in_the_templates_package_and_are_strict():
    folder = resources.files("fi_campaign.templates").joinpath("injection-info")
    for name in isa.DIALECTS:
        source = folder.joinpath(f"{name}.txt.j2").read_text()
        with pytest.raises(jinja2.UndefinedError):
            jinja2.Environment(undefined=jinja2.StrictUndefined).from_string(source).render(igid=1)


def test_the_file_is_written_under_the_name_the_injector_opens(tmp_path):
    text = render_injection_info("carol", "warp_random", SITE)
    path = write_injection_info(tmp_path, text)
    assert path.name == INFO_FILE == "nvbitfi-injection-info.txt"
    assert path.read_bytes() == text.encode()


def test_modes_per_dialect_and_their_semantics():
    assert isa.supported_modes("nvlabs") == ("single_bit",)
    assert isa.supported_modes("carol") == ("single_bit", "warp_random")
    assert isa.supported_modes("pr2022") == ("single_bit", "warp_random")
    assert not isa.can_inject("nvlabs", "warp_random")
    carol = isa.mode_spec("carol", "warp_random")
    assert (carol.igid, carol.bfm, carol.bfm_name) == (1, 7, "WARP_RANDOM_VALUE")
    assert "XOR" in carol.semantics.upper() and "same mask" in carol.semantics
    assert "not a power-law value" in carol.semantics
    pr = isa.mode_spec("pr2022", "warp_random")
    assert (pr.igid, pr.bfm) == (1, 4)
    assert "__any_sync(__activemask()" in pr.semantics and "(unsigned)(0xFFFFFFFF*bitIDSeed)" in pr.semantics
    assert "not a power-law value" in pr.semantics and "one block per lane" in pr.semantics
    assert "profiler_ballot(1)" in pr.semantics and "rejection" in pr.semantics  # how it was counted
    assert "threadIdx.x % 32 == leader" in carol.semantics
    assert "the profile's counts are the injector's" in isa.mode_spec("nvlabs", "single_bit").semantics
    assert "predicated-off" in isa.mode_spec("carol", "single_bit").semantics
    assert "ignored" in isa.mode_spec("carol", "warp_random", powerlaw_line=True).semantics
    assert "read by this power-law-capable build" in isa.semantics(
        "carol", "warp_random", powerlaw_line=True, build_reads_powerlaw=True
    )


def test_no_semantics_or_template_says_unknown_where_the_source_answers():
    from importlib import resources

    for name, d in isa.DIALECTS.items():
        template = (resources.files("fi_campaign.templates") / "injection-info" / f"{name}.txt.j2").read_text()
        for text in [template] + [isa.semantics(name, m) for m in isa.supported_modes(name)]:
            assert not any(w in text.lower() for w in ("unknown", "assumed", "not public")), (name, text)
        assert d.source_public


def test_enums_match_the_protocol_doc():
    assert [(g.name, g.value) for g in isa.IGID] == [
        ("FP64", 0),
        ("FP32", 1),
        ("LD", 2),
        ("PR", 3),
        ("NODEST", 4),
        ("OTHERS", 5),
        ("GPPR", 6),
        ("GP", 7),
    ]
    assert isa.dialect("nvlabs").groups == ("fp64", "fp32", "ld", "pr", "nodest", "others", "gppr", "gp")
    assert isa.dialect("pr2022").groups[:4] == ("fp64", "fp32", "fp16", "mma")
    assert [isa.dialect(n).num_bfm_types for n in ("nvlabs", "carol", "pr2022")] == [4, 9, 6]
    assert isa.CarolBFM.WARP_RANDOM_VALUE == 7 and isa.BFM2022.WARP_RANDOM_VALUE == 4
    assert isa.dialect("carol").igid("FP32") == 1
