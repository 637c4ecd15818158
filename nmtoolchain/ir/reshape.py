"""Shape-only operators: Flatten (NIR), Reshape and Transpose (for attention heads).

All axes are per-sample axes (0 is the first non-batch axis).
"""
from __future__ import annotations

import dataclasses
from typing import Sequence, Tuple

import numpy as np

from nmtoolchain.ir.op import Op, OpCheckError, Shape, norm_axis


@dataclasses.dataclass(eq=False)
class Flatten(Op):
    """Merge per-sample axes ``start_dim..end_dim`` into one (PyTorch order)."""

    is_layout = True

    start_dim: int = 0
    end_dim: int = -1
    nir_type = "Flatten"

    def infer_shape(self, in_shapes: Sequence[Shape]) -> Shape:
        s = tuple(in_shapes[0])
        a, b = norm_axis(self.start_dim, len(s)), norm_axis(self.end_dim, len(s))
        if b < a:
            raise OpCheckError(f"end_dim {self.end_dim} before start_dim {self.start_dim}")
        return s[:a] + (int(np.prod(s[a:b + 1])),) + s[b + 1:]


@dataclasses.dataclass(eq=False)
class Reshape(Op):
    """Reshape to ``shape`` (per sample; one entry may be -1)."""

    is_layout = True

    shape: Tuple[int, ...] = ()

    def __post_init__(self) -> None:
        self.shape = tuple(int(s) for s in self.shape)

    def infer_shape(self, in_shapes: Sequence[Shape]) -> Shape:
        s = tuple(in_shapes[0])
        n = int(np.prod(s))
        tgt = list(self.shape)
        if tgt.count(-1) > 1:
            raise OpCheckError(f"at most one -1 allowed in {self.shape}")
        if -1 in tgt:
            known = int(np.prod([t for t in tgt if t != -1]))
            if known == 0 or n % known:
                raise OpCheckError(f"cannot reshape {s} to {self.shape}")
            tgt[tgt.index(-1)] = n // known
        if int(np.prod(tgt)) != n:
            raise OpCheckError(f"cannot reshape {s} ({n} values) to {self.shape}")
        return tuple(tgt)


@dataclasses.dataclass(eq=False)
class Transpose(Op):
    """Permute per-sample axes: output axis i is input axis ``perm[i]``."""

    is_layout = True

    perm: Tuple[int, ...] = ()

    def __post_init__(self) -> None:
        self.perm = tuple(int(p) for p in self.perm)

    def infer_shape(self, in_shapes: Sequence[Shape]) -> Shape:
        s = tuple(in_shapes[0])
        if sorted(self.perm) != list(range(len(s))):
            raise OpCheckError(f"perm {self.perm} is not a permutation of {len(s)} axes")
        return tuple(s[p] for p in self.perm)


@dataclasses.dataclass(eq=False)
class Mean(Op):
    """Mean over one per-sample axis, which is removed (e.g. over tokens
    before a classification head)."""

    axis: int = 0

    def infer_shape(self, in_shapes: Sequence[Shape]) -> Shape:
        s = tuple(in_shapes[0])
        a = norm_axis(self.axis, len(s))
        return s[:a] + s[a + 1:]
