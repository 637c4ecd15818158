"""IF and LIF neurons over (batch, time, ...) tensors, spikingjelly semantics.

Per time step t (seeds.md §1.1):

* charge: IF  ``h = v + x[t]``;  LIF ``h = v + (x[t] - (v - v_leak)) / tau``
  (spikingjelly's ``decay_input`` form, forward Euler with dt = 1);
* fire: ``s = 1 if h >= v_threshold`` (``compare='>='``, Heaviside(0) = 1, the
  spikingjelly / QCFS convention) or ``h > v_threshold`` (``'>'``, NIR / Loihi);
* reset: ``'subtract'`` ``v = h - s·v_threshold`` or ``'to_reset'``
  ``v = h·(1 - s) + s·v_reset``.

The membrane starts at ``v_init`` (QCFS conversion pre-charges to λ/2). The
state persists across calls until :meth:`reset_states`, as in sinabs. The spike
has a sigmoid surrogate gradient (slope ``surrogate_alpha``, spikingjelly's
default 4) written without a custom autograd Function, so the modules can be
scripted with TorchScript.
"""
# No ``from __future__ import annotations`` here: TorchScript must resolve the
# ``Optional[torch.Tensor]`` state annotation at class level.
from typing import Optional

import torch
from torch import nn

RESETS = ("subtract", "to_reset")
COMPARES = (">=", ">")


def spike_with_surrogate(u: torch.Tensor, compare: str = ">=", alpha: float = 4.0) -> torch.Tensor:
    """Heaviside of ``u`` in the forward pass, sigmoid'(alpha·u)·alpha in the backward pass."""
    if compare == ">=":
        hard = (u >= 0).to(u.dtype)
    else:
        hard = (u > 0).to(u.dtype)
    soft = torch.sigmoid(alpha * u)
    return hard + (soft - soft.detach())


class IFNeuron(nn.Module):
    """Integrate-and-fire neuron layer on (batch, time, ...) inputs; returns spikes (0/1)."""

    v: Optional[torch.Tensor]

    def __init__(self, v_threshold: float = 1.0, reset: str = "subtract", v_reset: float = 0.0,
                 v_init: float = 0.0, compare: str = ">=", detach_reset: bool = True,
                 surrogate_alpha: float = 4.0) -> None:
        super().__init__()
        if reset not in RESETS:
            raise ValueError(f"reset must be one of {RESETS}, got {reset!r}")
        if compare not in COMPARES:
            raise ValueError(f"compare must be one of {COMPARES}, got {compare!r}")
        self.v_threshold = float(v_threshold)
        self.reset = reset
        self.v_reset = float(v_reset)
        self.v_init = float(v_init)
        self.compare = compare
        self.detach_reset = bool(detach_reset)
        self.surrogate_alpha = float(surrogate_alpha)
        self.v = None

    def reset_states(self) -> None:
        """Forget the membrane potential; the next call starts from ``v_init``."""
        self.v = None

    def _charge(self, v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return v + x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 2:
            raise ValueError(f"expected a (batch, time, ...) input, got shape {list(x.shape)}")
        v = self.v
        if v is None or v.shape != x[:, 0].shape:
            v = torch.full_like(x[:, 0], self.v_init)
        spikes = []
        for t in range(x.shape[1]):
            h = self._charge(v, x[:, t])
            s = spike_with_surrogate(h - self.v_threshold, self.compare, self.surrogate_alpha)
            s_reset = s.detach() if self.detach_reset else s
            if self.reset == "subtract":
                v = h - s_reset * self.v_threshold
            else:
                v = h * (1.0 - s_reset) + s_reset * self.v_reset
            spikes.append(s)
        self.v = v
        return torch.stack(spikes, dim=1)

    def extra_repr(self) -> str:
        return (f"v_threshold={self.v_threshold}, reset={self.reset!r}, v_reset={self.v_reset}, "
                f"v_init={self.v_init}, compare={self.compare!r}")


class LIFNeuron(IFNeuron):
    """Leaky integrate-and-fire: ``h = v + (x - (v - v_leak)) / tau`` then fire and reset as IF."""

    def __init__(self, tau: float = 2.0, v_threshold: float = 1.0, reset: str = "subtract",
                 v_reset: float = 0.0, v_init: float = 0.0, compare: str = ">=",
                 v_leak: float = 0.0, detach_reset: bool = True,
                 surrogate_alpha: float = 4.0) -> None:
        super().__init__(v_threshold, reset, v_reset, v_init, compare, detach_reset,
                         surrogate_alpha)
        if float(tau) <= 0:
            raise ValueError(f"tau must be > 0, got {tau}")
        self.tau = float(tau)
        self.v_leak = float(v_leak)

    def _charge(self, v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return v + (x - (v - self.v_leak)) / self.tau

    def extra_repr(self) -> str:
        return f"tau={self.tau}, v_leak={self.v_leak}, " + super().extra_repr()
