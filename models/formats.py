"""The number formats a campaign's network can run in, and which field each of their bits is.

single_bit flips one bit of a value in the format the network computes in, so a half-precision
network has 16 positions where a float32 one has 32, and its exponent sits elsewhere. Every
layer that plans, injects or reports a bit reads the width and the fields here. Importing this
module imports no torch.
"""

from __future__ import annotations

from dataclasses import dataclass

FLOAT32, FLOAT16, BFLOAT16 = "float32", "float16", "bfloat16"


@dataclass(frozen=True)
class Format:
    """An IEEE-style binary format: the sign is the top bit, the exponent below it, then the mantissa."""

    name: str
    bits: int
    mantissa: int  # bits 0 .. mantissa-1

    @property
    def sign(self) -> int:
        return self.bits - 1

    def field(self, bit: int) -> str:
        return "sign" if bit == self.sign else "exponent" if bit >= self.mantissa else "mantissa"

    @property
    def layout(self) -> str:
        """The fields by bit position, as a figure's axis names them."""
        return f"0-{self.mantissa - 1} mantissa, {self.mantissa}-{self.sign - 1} exponent, {self.sign} sign"


FORMATS = {
    FLOAT32: Format(FLOAT32, 32, 23),
    FLOAT16: Format(FLOAT16, 16, 10),
    BFLOAT16: Format(BFLOAT16, 16, 7),
}
DTYPES = tuple(FORMATS)


def number_format(dtype: str) -> Format:
    """The format a stored dtype names; stores written before dtypes existed hold float32."""
    return FORMATS[dtype]


def width(dtype: str) -> int:
    """The bit positions single_bit draws from for a network in ``dtype``."""
    return FORMATS[dtype].bits


__all__ = ["BFLOAT16", "DTYPES", "FLOAT16", "FLOAT32", "FORMATS", "Format", "number_format", "width"]
