"""Parametric LIF (Fang et al. 2021; AutoST's neuron): a LIF whose leak is learned.

Per step ``h = v + (x - (v - v_leak)) · sigmoid(w)``, one learnable scalar ``w``
per layer, initialised so that ``sigmoid(w) = 1 / init_tau`` (``w = 0`` for
τ = 2). At inference it is exactly :class:`~nmtoolchain.nn.LIFNeuron` with
``tau = 1 / sigmoid(w)``, which is how the torch loader translates it.
"""
# No ``from __future__ import annotations``: TorchScript resolves annotations at class level.
import math

import torch
from torch import nn

from nmtoolchain.nn.neurons import LIFNeuron


class PLIFNeuron(LIFNeuron):
    """Parametric LIF on (batch, time, ...) inputs; hard reset to 0 by default (AutoST)."""

    def __init__(self, init_tau: float = 2.0, v_threshold: float = 1.0,
                 reset: str = "to_reset", v_reset: float = 0.0, v_init: float = 0.0,
                 compare: str = ">=", v_leak: float = 0.0, detach_reset: bool = True,
                 surrogate_alpha: float = 4.0) -> None:
        super().__init__(init_tau, v_threshold, reset, v_reset, v_init, compare, v_leak,
                         detach_reset, surrogate_alpha)
        if float(init_tau) <= 1.0:
            raise ValueError(f"init_tau must be > 1 (sigmoid(w) = 1/tau < 1), got {init_tau}")
        self.w = nn.Parameter(torch.tensor(-math.log(float(init_tau) - 1.0)))

    def _charge(self, v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return v + (x - (v - self.v_leak)) * torch.sigmoid(self.w)

    def current_tau(self) -> float:
        """The time constant the learned ``w`` stands for, ``1 / sigmoid(w)``."""
        return float(1.0 / torch.sigmoid(self.w.detach()))
