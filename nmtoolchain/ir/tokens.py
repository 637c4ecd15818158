"""Nodes of the seed methods that act on spikes or tokens.

* SpikeMask (MST's Random Spike Masking): drops each spike with probability p,
  resampled every step, no rescaling.
* TokenHalt (AT-SNN / A-ViT ACT): per-token halting; halted tokens stop
  contributing to later blocks.
* TokenMerge (AT-SNN): merges the most similar tokens (bipartite matching).

Shapes do not change: inactive tokens are masked, and the simulator counts
only active ones.
"""
from __future__ import annotations

import dataclasses
from typing import ClassVar, Optional, Tuple

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
    """ACT halting (AT-SNN / A-ViT) on the (N, D) token stream after block ``block``.

    Halting score h = sigmoid(gamma * x[..., 0] - beta) of each active token;
    a token halts once its score accumulated over the (step, block) pairs
    visited so far (time-major: every block of step t before step t + 1)
    reaches 1 - eps; the last block of step ``steps - 1`` forces h = 1. All
    TokenHalt nodes of a graph share one accumulator. ``stream_in`` names the
    node whose output enters the block this node closes: the nodes on the
    paths from it to here only process active tokens (the simulator masks
    them and freezes the membranes of halted tokens). The node's output is the
    stream of the still active tokens, or, for the last block, the readout:
    ``'act'`` the mean-field output gathered at this step (times ``steps``),
    ``'final'`` the block output; both weighted by token size.
    """

    is_stateful: ClassVar[bool] = True

    gamma: float = 5.0
    beta: float = 10.0
    eps: float = 0.01
    block: int = 0
    blocks: int = 1
    steps: int = 4
    stream_in: str = ""
    halting: bool = True
    readout: str = "act"

    def check(self) -> None:
        if not 0.0 <= float(self.eps) <= 1.0:
            raise OpCheckError(f"eps must be in [0, 1], got {self.eps}")
        if not 0 <= int(self.block) < int(self.blocks):
            raise OpCheckError(f"block {self.block} is not in 0..{int(self.blocks) - 1}")
        if int(self.steps) < 1:
            raise OpCheckError(f"steps must be >= 1, got {self.steps}")
        if self.readout not in ("act", "final"):
            raise OpCheckError(f"readout must be 'act' or 'final', got {self.readout!r}")


@dataclasses.dataclass(eq=False)
class TokenMerge(Op):
    """ToMe bipartite merging of a (N, D) token stream (AT-SNN's similarity merge).

    At the first step, tokens split alternately into A (even) and B (odd);
    each active A token pairs with its most cosine-similar active B token; the
    ``r`` most similar pairs merge (``threshold`` None), or every pair with
    similarity above ``threshold``. The map holds for later steps: a B token
    carries the size-weighted mean of its group, a merged A token becomes
    inactive. ``weighted`` names nodes (the attention's V) whose token rows
    are multiplied by token size (proportional attention).
    """

    is_stateful: ClassVar[bool] = True

    threshold: Optional[float] = None
    r: int = 0
    weighted: Tuple[str, ...] = ()

    def check(self) -> None:
        if self.threshold is not None and not -1.0 <= float(self.threshold) <= 1.0:
            raise OpCheckError(f"similarity threshold must be in [-1, 1], got {self.threshold}")
        if int(self.r) < 0:
            raise OpCheckError(f"merge count r must be >= 0, got {self.r}")
