"""ANN-side activations: ReLU, GELU, QCFS (the quantization-clip-floor-shift of MST's
ANN), and Softmax (per time step in MST's spiking attention)."""
from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from nmtoolchain.ir.op import Op, OpCheckError, Shape, as_array, broadcast_ok


@dataclasses.dataclass(eq=False)
class ReLU(Op):
    """y = max(x, 0)."""

    is_ann_activation = True


@dataclasses.dataclass(eq=False)
class GELU(Op):
    """y = x·Φ(x) (``approximate='none'``) or its tanh form (``'tanh'``): the MLP
    activation of Swin and ViT. No spiking conversion: MST replaces it by QCFS."""

    is_ann_activation = True

    approximate: str = "none"

    def check(self) -> None:
        if self.approximate not in ("none", "tanh"):
            raise OpCheckError(f"approximate must be 'none' or 'tanh', got {self.approximate!r}")


@dataclasses.dataclass(eq=False)
class QCFS(Op):
    """y = λ/L * clip(floor(x * L / λ + shift), 0, L)  (Bu et al. 2022).

    ``levels`` is L (quantization steps), ``threshold`` is the learned λ,
    ``shift`` is φ (1/2 in the published code). Converts to an IF neuron with
    threshold λ, pre-charged to λ·shift, reset by subtraction.
    """

    is_ann_activation = True

    levels: int = 8
    threshold: np.ndarray = 2.0
    shift: float = 0.5

    def __post_init__(self) -> None:
        self.levels = int(self.levels)
        self.threshold = as_array(self.threshold)
        self.shift = float(self.shift)

    def check(self) -> None:
        if self.levels < 1:
            raise OpCheckError(f"levels must be >= 1, got {self.levels}")

    def infer_shape(self, in_shapes: Sequence[Shape]) -> Shape:
        s = tuple(in_shapes[0])
        if not broadcast_ok(self.threshold, s):
            raise OpCheckError(f"threshold shape {self.threshold.shape} does not fit {s}")
        return s


@dataclasses.dataclass(eq=False)
class Softmax(Op):
    """Softmax along one per-sample axis."""

    axis: int = -1

    def infer_shape(self, in_shapes: Sequence[Shape]) -> Shape:
        s = tuple(in_shapes[0])
        if not -len(s) <= self.axis < len(s):
            raise OpCheckError(f"axis {self.axis} out of range for input {s}")
        return s
