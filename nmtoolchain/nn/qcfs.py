"""QCFS: the quantization-clip-floor-shift activation of Bu et al. (ICLR 2022).

An ANN trained with QCFS in place of ReLU converts to an SNN of IF neurons
(threshold λ, membrane pre-charged to λ·shift, reset by subtraction) with
low conversion error. The module is stateless; it works on any tensor layout.
"""
from __future__ import annotations

import torch
from torch import nn


class QCFS(nn.Module):
    """y = λ/L · clamp(floor(x·L/λ + shift), 0, L).

    ``levels`` is L (quantization steps), ``threshold`` the initial λ (a
    learnable scalar ``nn.Parameter``), ``shift`` φ (1/2 in the published
    code). The floor has a straight-through gradient (identity), so both the
    input and λ receive gradients through the scaling, as in the QCFS code.
    """

    def __init__(self, levels: int = 8, threshold: float = 2.0, shift: float = 0.5) -> None:
        super().__init__()
        if int(levels) < 1:
            raise ValueError(f"QCFS levels must be >= 1, got {levels}")
        self.levels = int(levels)
        self.shift = float(shift)
        self.threshold = nn.Parameter(torch.tensor(float(threshold)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        steps = x * self.levels / self.threshold + self.shift
        # straight-through floor: forward value floor(steps), gradient 1. For
        # steps >= 0 the two float operations are exact, so the forward value
        # is exactly floor(steps); negative values are clamped to 0 below.
        steps = steps + (torch.floor(steps) - steps).detach()
        return torch.clamp(steps, 0.0, float(self.levels)) * self.threshold / self.levels

    def reset_states(self) -> None:
        """QCFS holds no state; present so every nmtc module can be reset alike."""

    def extra_repr(self) -> str:
        return f"levels={self.levels}, threshold={float(self.threshold):.4g}, shift={self.shift}"
