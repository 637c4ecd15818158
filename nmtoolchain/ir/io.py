"""Graph entry and exit nodes (NIR ``Input`` / ``Output``)."""
from __future__ import annotations

import dataclasses
from typing import Optional, Sequence, Tuple

from nmtoolchain.ir.op import Op, OpCheckError, Shape


@dataclasses.dataclass(eq=False)
class Input(Op):
    """Graph input. ``shape`` is per sample (no batch, no time axis)."""

    shape: Tuple[int, ...] = ()  # per-sample shape, e.g. (C, H, W) or (N,)
    num_inputs = 0
    nir_type = "Input"

    def __post_init__(self) -> None:
        self.shape = tuple(int(s) for s in self.shape)

    def check(self) -> None:
        if not self.shape or any(s <= 0 for s in self.shape):
            raise OpCheckError(f"input shape must be positive, got {self.shape}")

    def infer_shape(self, in_shapes: Sequence[Shape]) -> Shape:
        return self.shape


@dataclasses.dataclass(eq=False)
class Output(Op):
    """Graph output; passes its input through. ``shape`` is filled by inference."""

    shape: Optional[Tuple[int, ...]] = None  # expected per-sample shape, or None
    nir_type = "Output"

    def __post_init__(self) -> None:
        if self.shape is not None:
            self.shape = tuple(int(s) for s in self.shape)

    def infer_shape(self, in_shapes: Sequence[Shape]) -> Shape:
        got = tuple(in_shapes[0])
        if self.shape is not None and self.shape != got:
            raise OpCheckError(f"output declared as {self.shape} but receives {got}")
        return got
