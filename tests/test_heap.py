"""The allocator tuning every fi-campaign process applies (campaign/heap.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest

PROGRAM = """
import resource, sys
if sys.argv[1] == "keep":
    from fi_campaign.heap import keep_freed_memory
    assert keep_freed_memory()
import torch
from fi_campaign.models.resnet import Arch, build
torch.set_num_threads(2)
model, x = build(Arch(20)).eval(), torch.randn(256, 3, 32, 32)
with torch.inference_mode():
    model(x)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(3):
        model(x)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def page_faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", PROGRAM, mode], capture_output=True, text=True, check=True)
    return int(out.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="tunes glibc's allocator")
def test_a_forward_pass_reuses_freed_activations_instead_of_faulting_them_in_again():
    default, kept = page_faults("default"), page_faults("keep")
    # three batch-256 ResNet-20 passes allocate ~500 MiB of activations (~130,000 pages)
    assert default > 40_000
    # kept: a few thousand pages (4,096-11,362 measured; the allocator's arenas for torch's threads),
    # never a pass's worth of activations again
    assert kept < 16_000 and kept < default / 5
