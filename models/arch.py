"""What a checkpoint's network is (depth, activation, block order, classes), without torch: a
campaign record names it beside each model, and the store reads records without loading a
network."""

from __future__ import annotations

from dataclasses import asdict, dataclass

ACTIVATIONS = ("relu", "relu6", "relu6-nansafe")
ORDERS = ("conv-bn-act", "conv-act-bn")
DEPTHS = (20, 32, 44, 56)


@dataclass(frozen=True)
class Arch:
    """What a checkpoint must match to be loaded into a network."""

    depth: int = 20
    activation: str = "relu"
    order: str = "conv-bn-act"
    num_classes: int = 10

    def __post_init__(self) -> None:
        if self.depth not in DEPTHS:
            raise ValueError(f"depth must be one of {DEPTHS}, not {self.depth}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, not {self.activation!r}")
        if self.order not in ORDERS:
            raise ValueError(f"order must be one of {ORDERS}, not {self.order!r}")
        if self.num_classes not in (10, 100):
            raise ValueError(f"num_classes must be 10 or 100, not {self.num_classes}")

    @property
    def name(self) -> str:
        return f"resnet{self.depth}"

    def to_dict(self) -> dict:
        return asdict(self)
