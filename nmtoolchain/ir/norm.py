"""Normalization layers kept until a pass folds them (ANN side, MST's BN)."""
from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from nmtoolchain.ir.op import Op, OpCheckError, Shape, as_array


@dataclasses.dataclass(eq=False)
class BatchNorm(Op):
    """Inference batch norm over one per-sample axis (channels; 0 for (C,H,W)).

    y = (x - mean) / sqrt(var + eps) * weight + bias, broadcast along ``axis``.
    For tokens (N, D) normalized per feature, ``axis`` is 1.
    """

    is_normalization = True
    buffer_fields = ("mean", "var")  # running statistics, not trained

    mean: np.ndarray
    var: np.ndarray
    weight: np.ndarray
    bias: np.ndarray
    eps: float = 1e-5
    axis: int = 0

    def __post_init__(self) -> None:
        for k in ("mean", "var", "weight", "bias"):
            setattr(self, k, as_array(getattr(self, k)).reshape(-1))
        self.eps = float(self.eps)
        self.axis = int(self.axis)

    def check(self) -> None:
        n = self.mean.shape[0]
        for k in ("var", "weight", "bias"):
            if getattr(self, k).shape != (n,):
                raise OpCheckError(f"{k} has {getattr(self, k).shape[0]} values, mean has {n}")

    def infer_shape(self, in_shapes: Sequence[Shape]) -> Shape:
        s = tuple(in_shapes[0])
        if not -len(s) <= self.axis < len(s) or s[self.axis] != self.mean.shape[0]:
            raise OpCheckError(
                f"normalizes {self.mean.shape[0]} features on axis {self.axis}, input is {s}")
        return s

    def scale_shift(self) -> tuple:
        """(scale, shift) such that y = scale * x + shift along ``axis``."""
        scale = self.weight / np.sqrt(self.var + self.eps)
        return scale, self.bias - self.mean * scale


@dataclasses.dataclass(eq=False)
class LayerNorm(Op):
    """Layer norm over the trailing axes of size ``weight.shape``."""

    is_normalization = True

    weight: np.ndarray
    bias: np.ndarray
    eps: float = 1e-5

    def __post_init__(self) -> None:
        self.weight, self.bias = as_array(self.weight), as_array(self.bias)
        self.eps = float(self.eps)

    def infer_shape(self, in_shapes: Sequence[Shape]) -> Shape:
        s = tuple(in_shapes[0])
        k = self.weight.ndim
        if tuple(s[len(s) - k:]) != tuple(self.weight.shape):
            raise OpCheckError(f"normalized shape {self.weight.shape} is not the tail of {s}")
        return s
