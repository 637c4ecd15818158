"""Weighted all-to-all layers: Affine, Linear, Scale (NIR ``linear.py`` family).

Affine and Linear act on the last axis, so a token sequence ``(N, D)`` maps to
``(N, out)`` with the weights shared across tokens (as torch's ``nn.Linear``).
"""
from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

import numpy as np

from nmtoolchain.ir.op import Op, OpCheckError, Shape, as_array


def _prod(shape: Sequence[int]) -> int:
    return int(np.prod(shape)) if len(shape) else 1


@dataclasses.dataclass(eq=False)
class Linear(Op):
    """y = W x  (W: (out, in), applied to the last axis)."""

    is_synapse = True

    weight: np.ndarray  # (out, in)
    nir_type = "Linear"

    def __post_init__(self) -> None:
        self.weight = as_array(self.weight)

    def check(self) -> None:
        if self.weight.ndim != 2:
            raise OpCheckError(f"weight must be 2-D (out, in), got shape {self.weight.shape}")

    def infer_shape(self, in_shapes: Sequence[Shape]) -> Shape:
        s = tuple(in_shapes[0])
        if not s or s[-1] != self.weight.shape[1]:
            raise OpCheckError(
                f"weight expects {self.weight.shape[1]} input features, input shape is {s}")
        return s[:-1] + (int(self.weight.shape[0]),)

    def synapses(self, in_shapes: Sequence[Shape], out_shape: Shape) -> int:
        return _prod(in_shapes[0][:-1]) * int(self.weight.size)

    macs = synapses


@dataclasses.dataclass(eq=False)
class Affine(Linear):
    """y = W x + b.

    ``delay`` (optional, integer time steps, broadcastable to ``weight``) is a
    per-synapse axonal delay as lava-dl netx stores it: a spike at step t
    reaches the neuron at t + 1 + delay on Loihi. NIR cannot express a
    per-synapse delay; the NIR exporter refuses it.
    """

    weight: np.ndarray  # (out, in)
    bias: Optional[np.ndarray] = None  # (out,), None means zero
    delay: Optional[np.ndarray] = None  # synaptic delay in steps, broadcastable to (out, in)
    nir_type = "Affine"

    def __post_init__(self) -> None:
        super().__post_init__()
        out = self.weight.shape[0] if self.weight.ndim == 2 else 0
        self.bias = np.zeros(out, np.float32) if self.bias is None else as_array(self.bias)
        if self.delay is not None:
            self.delay = as_array(self.delay, np.int64)

    def check(self) -> None:
        super().check()
        if self.bias.shape != (self.weight.shape[0],):
            raise OpCheckError(
                f"bias shape {self.bias.shape} does not match weight rows {self.weight.shape[0]}")
        if self.delay is not None:
            try:
                np.broadcast_to(self.delay, self.weight.shape)
            except ValueError:
                raise OpCheckError(
                    f"delay shape {self.delay.shape} does not broadcast to weight {self.weight.shape}")
            if (self.delay < 0).any():
                raise OpCheckError("delay must be non-negative")


@dataclasses.dataclass(eq=False)
class Scale(Op):
    """y = s * x, elementwise; ``scale`` broadcasts to the input shape."""

    scale: np.ndarray  # broadcastable to the input shape
    nir_type = "Scale"
    buffer_fields = ("scale",)  # a constant (e.g. attention's 0.125), not trained

    def __post_init__(self) -> None:
        self.scale = as_array(self.scale)

    def infer_shape(self, in_shapes: Sequence[Shape]) -> Shape:
        s = tuple(in_shapes[0])
        try:
            out = np.broadcast_shapes(self.scale.shape, s)
        except ValueError:
            raise OpCheckError(f"scale shape {self.scale.shape} does not broadcast to input {s}")
        if tuple(out) != s:
            raise OpCheckError(f"scale shape {self.scale.shape} would enlarge input {s}")
        return s


@dataclasses.dataclass(eq=False)
class Bias(Op):
    """y = x + b, elementwise; ``bias`` broadcasts to the input shape.

    A constant current: e.g. MST's relative position bias added to the
    attention logits (a bias current on hardware, not a spike)."""

    bias: np.ndarray  # broadcastable to the input shape

    def __post_init__(self) -> None:
        self.bias = as_array(self.bias)

    def infer_shape(self, in_shapes: Sequence[Shape]) -> Shape:
        s = tuple(in_shapes[0])
        try:
            out = np.broadcast_shapes(self.bias.shape, s)
        except ValueError:
            raise OpCheckError(f"bias shape {self.bias.shape} does not broadcast to input {s}")
        if tuple(out) != s:
            raise OpCheckError(f"bias shape {self.bias.shape} would enlarge input {s}")
        return s
