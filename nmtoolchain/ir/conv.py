"""Convolutions (NIR ``conv.py`` family), PyTorch conventions.

Weights are (out, in/groups, *kernel) cross-correlation kernels; inputs are
(C, L) or (C, H, W); stride, padding and dilation are per spatial axis.
"""
from __future__ import annotations

import dataclasses
from typing import Optional, Sequence, Tuple

import numpy as np

from nmtoolchain.ir.op import Op, OpCheckError, Shape, as_array, as_tuple


def conv_out_len(n: int, k: int, s: int, p: int, d: int) -> int:
    """Output length of a convolution or pooling along one axis (torch formula)."""
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


def valid_taps(n: int, k: int, s: int, p: int, d: int) -> int:
    """Number of (output position, kernel tap) pairs that land inside the input.

    Summed over all output positions of one axis: the border-aware count of
    connections along that axis (taps on zero padding are not synapses).
    """
    n_out = conv_out_len(n, k, s, p, d)
    o = np.arange(n_out)[:, None]
    j = np.arange(k)[None, :]
    pos = o * s - p + j * d
    return int(((pos >= 0) & (pos < n)).sum())


@dataclasses.dataclass(eq=False)
class _ConvNd(Op):
    is_synapse = True
    weight: np.ndarray
    bias: Optional[np.ndarray] = None
    stride: Tuple[int, ...] = (1,)
    padding: Tuple[int, ...] = (0,)
    dilation: Tuple[int, ...] = (1,)
    groups: int = 1
    ndim: int = dataclasses.field(default=1, init=False, repr=False)

    def __post_init__(self) -> None:
        self.weight = as_array(self.weight)
        nd = self.weight.ndim - 2
        self.ndim = nd
        self.bias = (np.zeros(self.weight.shape[0], np.float32) if self.bias is None
                     else as_array(self.bias))
        self.stride = as_tuple(self.stride, nd, "stride")
        self.padding = as_tuple(self.padding, nd, "padding")
        self.dilation = as_tuple(self.dilation, nd, "dilation")
        self.groups = int(self.groups)

    def field_values(self):  # ``ndim`` is derived, not a parameter
        d = super().field_values()
        d.pop("ndim", None)
        return d

    @property
    def kernel_size(self) -> Tuple[int, ...]:
        return tuple(int(k) for k in self.weight.shape[2:])

    def check(self) -> None:
        if self.weight.ndim != self.expected_ndim + 2:
            raise OpCheckError(
                f"weight must be (out, in/groups, {'k, ' * self.expected_ndim}) "
                f"but has shape {self.weight.shape}")
        if self.groups < 1 or self.weight.shape[0] % self.groups:
            raise OpCheckError(
                f"{self.weight.shape[0]} output channels not divisible by groups={self.groups}")
        if self.bias.shape != (self.weight.shape[0],):
            raise OpCheckError(f"bias shape {self.bias.shape} != ({self.weight.shape[0]},)")
        if min(self.stride) < 1 or min(self.dilation) < 1 or min(self.padding) < 0:
            raise OpCheckError(
                f"bad stride {self.stride} / padding {self.padding} / dilation {self.dilation}")

    expected_ndim = 1

    def infer_shape(self, in_shapes: Sequence[Shape]) -> Shape:
        s = tuple(in_shapes[0])
        nd = self.expected_ndim
        if len(s) != nd + 1:
            raise OpCheckError(f"expects a {nd + 1}-D input (C, spatial...), got {s}")
        c_in = self.weight.shape[1] * self.groups
        if s[0] != c_in:
            raise OpCheckError(f"weight expects {c_in} input channels, input has {s[0]}")
        spatial = []
        for i in range(nd):
            n = conv_out_len(s[1 + i], self.kernel_size[i], self.stride[i], self.padding[i],
                             self.dilation[i])
            if n < 1:
                raise OpCheckError(f"kernel {self.kernel_size} larger than padded input {s}")
            spatial.append(n)
        return (int(self.weight.shape[0]),) + tuple(spatial)

    def synapses(self, in_shapes: Sequence[Shape], out_shape: Shape) -> int:
        s = in_shapes[0]
        taps = 1
        for i in range(self.expected_ndim):
            taps *= valid_taps(s[1 + i], self.kernel_size[i], self.stride[i], self.padding[i],
                               self.dilation[i])
        return int(taps * self.weight.shape[0] * self.weight.shape[1])

    def macs(self, in_shapes: Sequence[Shape], out_shape: Shape) -> int:
        return int(np.prod(out_shape)) * int(np.prod(self.weight.shape[1:]))


@dataclasses.dataclass(eq=False)
class Conv1d(_ConvNd):
    """1-D convolution: input (C, L), weight (out, in/groups, K)."""

    nir_type = "Conv1d"
    expected_ndim = 1


@dataclasses.dataclass(eq=False)
class Conv2d(_ConvNd):
    """2-D convolution: input (C, H, W), weight (out, in/groups, kH, kW)."""

    stride: Tuple[int, ...] = (1, 1)
    padding: Tuple[int, ...] = (0, 0)
    dilation: Tuple[int, ...] = (1, 1)
    nir_type = "Conv2d"
    expected_ndim = 2
