"""``fi-campaign injector``: fi-campaign's own NVBit tool (profiler and injector, NVBit >= 1.7)."""

from __future__ import annotations

import click

from fi_campaign.cli.params import PathText


@click.group("injector")
def injector() -> None:
    """fi-campaign's own NVBit tool: profile and inject on Volta to Hopper with NVBit >= 1.7.

    \b
      fi-campaign injector build --nvbit ~/nvbit_release            # for this machine's GPU
      fi-campaign injector build --nvbit ~/nvbit_release --arch sm_90

    The project ships the tool's sources, never NVBit: download an NVBit release (1.7 or
    later) yourself. The build needs nvcc and cmake; see docs/NVBITFI.md.
    """


@injector.command("build")
@click.option(
    "--nvbit",
    required=True,
    metavar="DIR",
    type=PathText(),
    help="An unpacked NVBit >= 1.7 release (the folder holding core/).",
)
@click.option("--arch", metavar="sm_XX", help="GPU architecture (default: the first GPU's, from nvidia-smi).")
@click.option(
    "--nvcc", metavar="PATH", type=PathText(), help="nvcc to compile with (default: the one on PATH or in CUDA_HOME)."
)
@click.option(
    "--out", metavar="DIR", type=PathText(), help="Build folder (default: ~/.cache/fi-campaign/tool/<nvbit>-sm_XX)."
)
def build(nvbit: str, arch: str | None, nvcc: str | None, out: str | None) -> None:
    """Compile the tool into a per-user cache: profiler.so, injector.so and injector-dummy.so."""
    from fi_campaign.nvbitfi_tools import build as tool
    from fi_campaign.outputs import check

    if out:
        check(out, force=True, folder=True)  # a build folder is rebuilt in place, but never a store or its runs
    plan = tool.plan(nvbit, arch, nvcc, out)
    click.echo(
        f"Building fi-campaign's NVBit tool: NVBit {plan.nvbit_version}, nvcc {plan.nvcc_version}, "
        f"sm_{plan.arch}, into {plan.out}"
    )
    home = tool.build(plan)
    click.echo(f"Built {home}/profiler/profiler.so, injector/injector.so and injector/injector-dummy.so.")
    click.echo(f"Use it in a campaign config as nvbitfi: {{home: {home}, dialect: fi-campaign}}.")
