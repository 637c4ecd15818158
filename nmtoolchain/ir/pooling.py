"""2-D pooling over (C, H, W): sum (NIR SumPool2d), average (NIR AvgPool2d), max.

Sum pooling is what spiking hardware does natively (it rewrites addresses);
average pooling is sum pooling followed by a scale of 1/(kH*kW).
"""
from __future__ import annotations

import dataclasses
from typing import Sequence, Tuple

import numpy as np

from nmtoolchain.ir.conv import conv_out_len, valid_taps
from nmtoolchain.ir.op import Op, OpCheckError, Shape, as_tuple


@dataclasses.dataclass(eq=False)
class _Pool2d(Op):
    is_pooling = True
    kernel_size: Tuple[int, int] = (2, 2)
    stride: Tuple[int, int] = (0, 0)  # (0, 0) means "same as kernel_size"
    padding: Tuple[int, int] = (0, 0)

    def __post_init__(self) -> None:
        self.kernel_size = as_tuple(self.kernel_size, 2, "kernel_size")
        st = as_tuple(self.stride if self.stride is not None else 0, 2, "stride")
        self.stride = self.kernel_size if st == (0, 0) else st
        self.padding = as_tuple(self.padding, 2, "padding")

    def check(self) -> None:
        if min(self.kernel_size) < 1 or min(self.stride) < 1 or min(self.padding) < 0:
            raise OpCheckError(
                f"bad kernel {self.kernel_size} / stride {self.stride} / padding {self.padding}")

    def infer_shape(self, in_shapes: Sequence[Shape]) -> Shape:
        s = tuple(in_shapes[0])
        if len(s) != 3:
            raise OpCheckError(f"expects a (C, H, W) input, got {s}")
        hw = [conv_out_len(s[1 + i], self.kernel_size[i], self.stride[i], self.padding[i], 1)
              for i in range(2)]
        if min(hw) < 1:
            raise OpCheckError(f"pool kernel {self.kernel_size} larger than input {s}")
        return (s[0], hw[0], hw[1])

    def synapses(self, in_shapes: Sequence[Shape], out_shape: Shape) -> int:
        s = in_shapes[0]
        taps = 1
        for i in range(2):
            taps *= valid_taps(s[1 + i], self.kernel_size[i], self.stride[i], self.padding[i], 1)
        return int(taps * s[0])


@dataclasses.dataclass(eq=False)
class SumPool2d(_Pool2d):
    """y[c,i,j] = sum of x over the window (NIR SumPool2d)."""

    nir_type = "SumPool2d"


@dataclasses.dataclass(eq=False)
class AvgPool2d(_Pool2d):
    """y = SumPool2d(x) / (kH*kW) (NIR AvgPool2d; padding counts as zeros)."""

    nir_type = "AvgPool2d"


@dataclasses.dataclass(eq=False)
class MaxPool2d(_Pool2d):
    """y[c,i,j] = max of x over the window. ANN side only: no spiking equivalent."""

    def synapses(self, in_shapes: Sequence[Shape], out_shape: Shape) -> int:
        return 0
