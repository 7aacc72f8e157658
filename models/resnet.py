"""The CIFAR ResNet family of He et al. (2016), depth 6n+2, with the hardening knobs of
Cavagnero et al. (IOLTS 2022): a clipped activation (ReLU6) and the inverted
convolution -> activation -> BatchNorm order, plus a NaN-safe ReLU6.

Shortcuts are He et al.'s option A (stride-2 subsampling plus zero channel padding), so the
only layers with weights are convolutions, BatchNorms and the final linear layer: every
conv/linear output is an injection site and nothing else is.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fi_campaign.models.arch import ACTIVATIONS, DEPTHS, ORDERS, Arch  # noqa: F401 - the network's public names


class NanSafeReLU6(nn.ReLU6):
    """ReLU6 as min(max(x, 0), 6) on GPU min/max instructions (FMNMX), which return the other
    operand for a NaN: NaN -> 0, +Inf -> 6, -Inf -> 0, finite values bit for bit as ReLU6.

    PyTorch's ReLU6 (hardtanh) passes NaN through, so one NaN from a flipped exponent bit
    poisons every later layer; squashed here, it is one more bounded value. Without autograd
    it clips in place (nothing else in these networks reads an activation's input), so the
    NaN pass costs no more than the allocation it saves.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.requires_grad:
            return F.hardtanh(x, 0.0, 6.0).nan_to_num(0.0)
        return F.hardtanh_(x, 0.0, 6.0).nan_to_num_(0.0)


def _activation(name: str) -> nn.Module:
    if name == "relu6-nansafe":
        return NanSafeReLU6()
    return nn.ReLU6() if name == "relu6" else nn.ReLU()


class ConvUnit(nn.Sequential):
    """conv + BatchNorm + activation in the order the architecture asks for.

    In the inverted order the activation clips the raw convolution output, so a corrupted
    value is bounded before BatchNorm rescales it: the property the paper relies on.
    """

    def __init__(self, cin: int, cout: int, stride: int, arch: Arch, act: bool = True) -> None:
        conv = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        bn = nn.BatchNorm2d(cout)
        if not act:
            super().__init__(conv, bn)
        elif arch.order == "conv-bn-act":
            super().__init__(conv, bn, _activation(arch.activation))
        else:
            super().__init__(conv, _activation(arch.activation), bn)


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, arch: Arch) -> None:
        super().__init__()
        inverted = arch.order == "conv-act-bn"
        self.unit1 = ConvUnit(cin, cout, stride, arch)
        # Both blocks run two activations, so hardening costs no inference time: the vanilla
        # block activates after the shortcut addition, the inverted block inside its second
        # unit (conv -> act -> bn), where it clips the convolution output, and not after it.
        self.unit2 = ConvUnit(cout, cout, 1, arch, act=inverted)
        self.out_act = nn.Identity() if inverted else _activation(arch.activation)
        self.pad = cout - cin
        self.stride = stride

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1 and self.pad == 0:
            return x
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))

    def merge(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The block's end: unit2's output plus the shortcut of the block input ``x``. A run
        resumed inside the block (models.resume) calls it with the golden ``x``."""
        return self.out_act(h + self.shortcut(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.merge(self.unit2(self.unit1(x)), x)


class CifarResNet(nn.Module):
    def __init__(self, arch: Arch) -> None:
        super().__init__()
        self.arch = arch
        n = (arch.depth - 2) // 6
        self.stem = ConvUnit(3, 16, 1, arch)
        layers: list[nn.Module] = []
        cin = 16
        for stage, width in enumerate((16, 32, 64)):
            for i in range(n):
                stride = 2 if stage > 0 and i == 0 else 1
                layers.append(BasicBlock(cin, width, stride, arch))
                cin = width
        self.blocks = nn.Sequential(*layers)
        self.fc = nn.Linear(64, arch.num_classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)

    def head(self, x: torch.Tensor) -> torch.Tensor:
        """Pooling and the classifier: what every run, whole or resumed, ends with."""
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))


def build(arch: Arch) -> CifarResNet:
    return CifarResNet(arch)


def injectable_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Convolution and linear layers in execution order: the framework-level fault sites."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
