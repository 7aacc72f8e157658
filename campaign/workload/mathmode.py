"""The float32 math mode every workload runs in, set explicitly rather than left to PyTorch.

PyTorch lets cuDNN run float32 convolutions on tensor cores (TF32) by default on sm_80 and
newer, and keeps float32 matmuls off TF32 by default. A SASS-level ``fp32`` campaign on such a
GPU would then miss the convolutions' arithmetic, which runs as HMMA in NVBitFI's ``others``
group (``mma`` in pr2022). ``fp32`` turns TF32 off for both (the Titan V arithmetic, which has
no TF32); ``tf32`` turns it on for both (as PyTorch deploys convolutions).
"""

from __future__ import annotations

MODES = ("fp32", "tf32")


def set_math(math: str) -> None:
    import torch

    if math not in MODES:
        raise ValueError(f"math must be one of {', '.join(MODES)}, not {math!r}")
    tf32 = math == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
