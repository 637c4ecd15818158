"""Nodes of the seed methods that act on spikes or tokens.

* SpikeMask (MST's Random Spike Masking): drops each spike with probability p,
  resampled every step, no rescaling.
* TokenHalt (AT-SNN / A-ViT ACT): per-token halting; halted tokens stop
  contributing to later blocks.
* TokenMerge (AT-SNN): merges tokens whose similarity exceeds a threshold.

Shapes do not change: inactive tokens are masked, and the simulator counts
only active ones.
"""
from __future__ import annotations

import dataclasses
from typing import Optional

from nmtoolchain.ir.op import Op, OpCheckError


@dataclasses.dataclass(eq=False)
class SpikeMask(Op):
    """Zero each element with probability ``p`` (fresh draw every step)."""

    p: float = 0.0
    seed: Optional[int] = None

    def check(self) -> None:
        if not 0.0 <= float(self.p) <= 1.0:
            raise OpCheckError(f"drop ratio p must be in [0, 1], got {self.p}")


@dataclasses.dataclass(eq=False)
class TokenHalt(Op):
    """ACT halting on tokens of a (N, D) input.

    Halting score h = sigmoid(gamma * x[..., 0] + beta); a token halts once its
    accumulated score reaches 1 - eps.
    """

    gamma: float = 5.0
    beta: float = -10.0
    eps: float = 0.01

    def check(self) -> None:
        if not 0.0 <= float(self.eps) < 1.0:
            raise OpCheckError(f"eps must be in [0, 1), got {self.eps}")


@dataclasses.dataclass(eq=False)
class TokenMerge(Op):
    """Merge tokens of a (N, D) input whose cosine similarity exceeds ``threshold``."""

    threshold: float = 0.9

    def check(self) -> None:
        if not -1.0 <= float(self.threshold) <= 1.0:
            raise OpCheckError(f"similarity threshold must be in [-1, 1], got {self.threshold}")
