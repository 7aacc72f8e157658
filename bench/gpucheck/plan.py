"""The GPU check's steps in order, with what each verifies and how long it may take.

The check must end within 8 minutes of wall time on the GPU machine even when a step hangs:
each step runs with a limit of at most its ``cap_s``, and never so long that the steps after it
lose their ``floor_s`` (the least time in which each still says something). A step that gets
less than its own floor is skipped, with the reason. Standard library only: the runner reads
this before fi-campaign is installed.
"""

from __future__ import annotations

from dataclasses import dataclass

BUDGET_S = 450.0  # the whole check on the GPU machine, leaving make, the bundle and a margin inside 8 minutes
SUMMARY_S = 10.0  # kept for writing the summary and the logs' bundle


@dataclass(frozen=True)
class Spec:
    name: str
    does: str  # what it verifies, one line
    gpu: bool  # needs the GPU machine: skipped in a dry run
    cap_s: float
    floor_s: float
    dry_only_full: bool = False  # in a dry run, only with --full (it takes minutes on the CPU machine)


STEPS: tuple[Spec, ...] = (
    Spec(
        "environment",
        "the machine as found: GPU, driver, nvcc, CMake, Python, PyTorch, the carried NVBit and wheels",
        False,
        40,
        5,
    ),
    Spec(
        "install",
        "fi-campaign installed beside the machine's own PyTorch from the carried wheels, PyTorch untouched",
        False,
        150,
        20,
    ),
    Spec(
        "tool_host",
        "the tool's device logic built for the host (g++) and its injected functions for the GPU (nvcc)",
        False,
        60,
        10,
    ),
    Spec(
        "tool_build",
        "fi-campaign's NVBit tool built with this machine's nvcc against the carried NVBit release",
        False,
        240,
        20,
        dry_only_full=True,
    ),
    Spec("programs", "the plain CUDA C++ program and the C host that embeds Python compiled", False, 60, 10),
    Spec("configs", "the campaign configs of the GPU steps written, read and (dry run) planned", False, 60, 10),
    Spec("doctor", "fi-campaign doctor with the built tool (its dry campaign is the next steps')", True, 60, 10),
    Spec(
        "c_program",
        "the tool on a C executable: profile, a 20-injection DUMMY campaign (all masked), real faults "
        "whose per-lane log matches the Python side",
        True,
        90,
        20,
    ),
    Spec(
        "torch_dummy",
        "a DUMMY campaign through the PyTorch workload (fi-campaign plan/run, backend nvbitfi, "
        "20 injections, all masked)",
        True,
        180,
        30,
    ),
    Spec(
        "workaround",
        "if the tool saw nothing inside python3: the same DUMMY campaign with the C host that starts "
        "CUDA before embedding Python",
        True,
        180,
        30,
    ),
    Spec("counts", "launch by launch, the profiler's counts of every group equal the injector's own", True, 120, 30),
    Spec(
        "own_app",
        "your own program: the example NVBitFI test-app folder (vectoradd, run.sh and sdc_check.sh) "
        "through fi-campaign plan/run with the tool, 40 injections",
        True,
        90,
        20,
    ),
    Spec(
        "sass_campaign",
        "a real SASS-level campaign: ResNet-20 baseline and hardened, single_bit and warp_random",
        True,
        300,
        60,
    ),
    Spec("framework", "the same plan at the framework level (backend pytorch on cuda), beside it", True, 60, 15),
    Spec(
        "inprocess_bench",
        "bench/inprocess.py --device cuda --quick: fault-free, whole-pass, resumed and PyTorchFI rates",
        True,
        150,
        40,
    ),
    Spec(
        "process_bench",
        "bench/process.py --device cuda: process-isolated start-up cost and orchestration",
        True,
        120,
        30,
    ),
    Spec(
        "own_models_bench",
        "bench/own_models.py --device cuda --quick: users' own networks, campaign loop against fault-free",
        True,
        120,
        25,
    ),
)


def by_name(name: str) -> Spec:
    for spec in STEPS:
        if spec.name == name:
            return spec
    raise KeyError(name)


def limit_for(steps: tuple[Spec, ...], index: int, left_s: float, will_run: set[str]) -> float:
    """Seconds step ``index`` may take when ``left_s`` are left: its cap, less what the later
    steps that will run need at least."""
    later = sum(s.floor_s for s in steps[index + 1 :] if s.name in will_run)
    return min(steps[index].cap_s, left_s - later - SUMMARY_S)
