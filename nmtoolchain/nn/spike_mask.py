"""Random Spike Masking (MST, Wang et al. ICCV 2023) as a torch module.

``y = x * (U >= p)`` with U ~ Uniform[0, 1) drawn elementwise, fresh on every
call (so every time step of an SNN and every forward pass of the ANN), with
no 1/(1 - p) rescaling, in training AND inference (MST trains with the mask
on, so the network learns to compensate). The torch loader maps it to the IR
``SpikeMask`` op, which the simulator resamples every step.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn


class SpikeMask(nn.Module):
    """Drop each element with probability ``p``; ``role`` names what is masked
    (e.g. 'q', 'k', 'score', 'mlp_in') so passes and reports can find it."""

    def __init__(self, p: float = 0.0, role: str = "", seed: Optional[int] = None) -> None:
        super().__init__()
        if not 0.0 <= float(p) <= 1.0:
            raise ValueError(f"drop ratio p must be in [0, 1], got {p}")
        self.p = float(p)
        self.role = str(role)
        self.seed = seed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0:
            return x
        keep = torch.rand(x.shape, device=x.device, dtype=torch.float32) >= self.p
        return x * keep.to(x.dtype)

    def extra_repr(self) -> str:
        return f"p={self.p}, role={self.role!r}"
