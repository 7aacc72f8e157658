"""Keep freed memory in the process heap instead of handing it back to the kernel.

A CIFAR ResNet's activations at batch 256 are 4-16 MiB tensors, allocated and freed at every
layer. glibc serves blocks that large with mmap and returns them with munmap (or trims the heap
top), so every forward pass page-faults its activations in again: on the 2-core development
CPU that made inference 1.4-1.6x slower and its timing erratic from run to run
(docs/BENCHMARKS.md). Raising the mmap and trim thresholds makes freed blocks reusable. The
price is that a process keeps its peak heap until it exits, which suits short campaign,
training and workload processes.
"""

from __future__ import annotations

import ctypes
import sys

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_MAX = 32 << 20  # glibc's ceiling on 64-bit systems
TRIM_THRESHOLD = 1 << 30


def keep_freed_memory() -> bool:
    """Tune glibc's allocator for this process; False where there is no glibc to tune."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
