"""Index operators of Swin- and ViT-style transformers: Roll (cyclic shift of
shifted windows) and Slice (strided slicing: patch merging's ``x[:, 0::2, 0::2]``,
and ``chunk``/``split``/``unbind`` of a fused qkv projection).

Both move values without arithmetic (``is_layout``); axes are per-sample axes.
Neither has an NIR primitive, so NIR export refuses them by name; a spiking
target that maps them must realise them as re-wiring of the synapses around them.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence, Tuple

from nmtoolchain.ir.op import Op, OpCheckError, Shape, norm_axis


@dataclasses.dataclass(eq=False)
class Roll(Op):
    """Cyclic shift (``torch.roll``): y[..., i, ...] = x[..., (i - shift) mod n, ...]
    along each of ``axes`` by the matching entry of ``shifts``."""

    is_layout = True

    shifts: Tuple[int, ...] = ()
    axes: Tuple[int, ...] = ()

    def __post_init__(self) -> None:
        self.shifts = tuple(int(s) for s in self.shifts)
        self.axes = tuple(int(a) for a in self.axes)

    def check(self) -> None:
        if len(self.shifts) != len(self.axes) or not self.axes:
            raise OpCheckError(f"shifts {self.shifts} and axes {self.axes} must pair up")

    def infer_shape(self, in_shapes: Sequence[Shape]) -> Shape:
        s = tuple(in_shapes[0])
        for a in self.axes:
            norm_axis(a, len(s))
        return s


@dataclasses.dataclass(eq=False)
class Slice(Op):
    """Python slicing ``start:stop:step`` along one per-sample ``axis``
    (``start``/``stop`` already clipped to the axis, ``step`` >= 1)."""

    is_layout = True

    axis: int = 0
    start: int = 0
    stop: int = 0
    step: int = 1

    def __post_init__(self) -> None:
        self.axis, self.start, self.stop, self.step = (
            int(self.axis), int(self.start), int(self.stop), int(self.step))

    def check(self) -> None:
        if self.step < 1:
            raise OpCheckError(f"slice step must be >= 1, got {self.step}")
        if not 0 <= self.start <= self.stop:
            raise OpCheckError(f"slice {self.start}:{self.stop} is not a forward range")

    def infer_shape(self, in_shapes: Sequence[Shape]) -> Shape:
        s = list(in_shapes[0])
        a = norm_axis(self.axis, len(s))
        if self.stop > s[a]:
            raise OpCheckError(f"slice {self.start}:{self.stop} past the end of axis {a} "
                               f"(size {s[a]})")
        s[a] = len(range(self.start, self.stop, self.step))
        if s[a] == 0:
            raise OpCheckError(f"slice {self.start}:{self.stop}:{self.step} is empty")
        return tuple(s)
