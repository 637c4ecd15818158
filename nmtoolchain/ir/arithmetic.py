"""Operators on two or more dynamic tensors: Add (residuals), Concat, and
MatMul (spiking self-attention's Q·Kᵀ and attention·V)."""
from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from nmtoolchain.ir.op import Op, OpCheckError, Shape


@dataclasses.dataclass(eq=False)
class Add(Op):
    """Elementwise sum of all inputs (numpy broadcasting)."""

    num_inputs = None

    def infer_shape(self, in_shapes: Sequence[Shape]) -> Shape:
        try:
            return tuple(int(d) for d in np.broadcast_shapes(*[tuple(s) for s in in_shapes]))
        except ValueError:
            raise OpCheckError(f"input shapes {list(in_shapes)} do not broadcast")


@dataclasses.dataclass(eq=False)
class Concat(Op):
    """Concatenate inputs along a per-sample axis."""

    axis: int = 0
    num_inputs = None

    def infer_shape(self, in_shapes: Sequence[Shape]) -> Shape:
        first = list(in_shapes[0])
        ax = self.axis + len(first) if self.axis < 0 else self.axis
        total = 0
        for s in in_shapes:
            if len(s) != len(first) or any(a != b for i, (a, b) in enumerate(zip(s, first))
                                           if i != ax):
                raise OpCheckError(f"cannot concatenate shapes {list(in_shapes)} on axis {self.axis}")
            total += s[ax]
        first[ax] = total
        return tuple(first)


@dataclasses.dataclass(eq=False)
class MatMul(Op):
    """y = a @ b over the last two axes, leading axes broadcast (torch.matmul).

    Both operands are dynamic (spikes or activations), so there are no stored
    synapses; the work is counted as MACs (or ACs when an operand is binary).
    """

    num_inputs = 2

    def infer_shape(self, in_shapes: Sequence[Shape]) -> Shape:
        a, b = tuple(in_shapes[0]), tuple(in_shapes[1])
        if len(a) < 2 or len(b) < 2 or a[-1] != b[-2]:
            raise OpCheckError(f"cannot multiply {a} by {b}")
        try:
            lead = np.broadcast_shapes(a[:-2], b[:-2])
        except ValueError:
            raise OpCheckError(f"batch axes of {a} and {b} do not broadcast")
        return tuple(int(d) for d in lead) + (a[-2], b[-1])

    def macs(self, in_shapes: Sequence[Shape], out_shape: Shape) -> int:
        return int(np.prod(out_shape)) * int(in_shapes[0][-1])
