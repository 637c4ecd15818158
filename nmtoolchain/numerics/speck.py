"""Speck / DYNAP-CNN numerics: 8-bit weights, 16-bit state, one scale per layer.

The chip holds, per core, signed 8-bit weights and biases and signed 16-bit
thresholds, lower membrane bound (``min_v_mem``) and membrane state. sinabs's
``discretize`` (backend/dynapcnn/discretize.py) fixes how a float layer becomes
integers, and this module follows the same rule so that nmtc's integers are
the ones sinabs would produce:

1. each group (weights, biases: 8 bits; (min_v_mem, threshold) and the initial
   state: 16 bits) gets the largest scale that keeps it in range: with
   ``lo = -2^(b-1)``, ``hi = 2^(b-1) - 1``, ``hi / |max|`` when
   ``|min| <= |max| * |lo| / hi``, else ``|lo| / |min|``;
2. the layer's scale is the smallest of them (an all-zero group gives inf);
3. every value becomes ``round(x * scale)`` (half to even), in float32 as
   torch computes it.

A missing ``min_v_mem`` counts as -32768 *before* scaling, which pins the
threshold group's scale at 1 and rounds typical weights to zero (the
``min_v_mem=None`` trap). nmtc never leaves a bound missing: where the graph
has none it chooses :func:`state_floor`, the deepest bound the 16-bit state
holds at the scale the other groups allow, so the weights keep their 8 bits.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, Optional

import numpy as np
import torch

WEIGHT_BITS = 8
STATE_BITS = 16
#: what sinabs uses for a missing ``min_v_mem`` (before scaling)
MISSING_MIN_V_MEM = -(2 ** (STATE_BITS - 1))


def int_range(bits: int) -> tuple:
    """(lo, hi) of a signed ``bits``-bit integer."""
    return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1


def _t(x: Any) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x, dtype=np.float32))


def discretization_scale(x: Any, bits: int) -> float:
    """The largest factor that maps ``x`` into ``bits`` signed bits (the rule above),
    computed in float32 as sinabs computes it; inf for an all-zero ``x``."""
    lo, hi = int_range(bits)
    t = _t(x)
    mn, mx = torch.min(t), torch.max(t)
    if abs(mn) <= abs(mx) * abs(lo / hi):
        s = abs(hi / mx)  # a zero tensor divides to inf, as in sinabs
    else:
        s = abs(lo / mn)
    return float(s)


def round_scaled(x: Any, scale: float) -> np.ndarray:
    """``round(x * scale)`` in float32, half to even (torch.round)."""
    return torch.round(_t(x) * torch.tensor(scale, dtype=torch.float32)).numpy() \
        if np.isfinite(scale) else np.asarray(x, np.float32)


@dataclasses.dataclass
class SpeckLayerNumerics:
    """One DYNAP-CNN layer's integers: what the core's memories and registers hold.

    ``weight`` (f, c, k, k) and ``bias`` (f,) in [-128, 127]; ``threshold``
    (threshold_high) and ``min_v_mem`` (threshold_low) in [-32768, 32767];
    ``v_init`` the initial membrane value per neuron (scalar or broadcastable),
    ``scale`` the common factor float -> integer, and which group set it."""

    weight: np.ndarray
    bias: np.ndarray
    threshold: int
    min_v_mem: int
    v_init: np.ndarray
    scale: float
    limited_by: str

    def as_dict(self) -> Dict[str, Any]:
        return {"threshold": int(self.threshold), "min_v_mem": int(self.min_v_mem),
                "scale": float(self.scale), "limited_by": self.limited_by,
                "max_abs_weight": int(np.abs(self.weight).max()) if self.weight.size else 0,
                "nonzero_weights": int(np.count_nonzero(self.weight)),
                "weights": int(self.weight.size),
                "bias_nonzero": bool(np.any(self.bias != 0)),
                "v_init_nonzero": bool(np.any(np.asarray(self.v_init) != 0))}


def group_scales(weight: Any, bias: Any, threshold: float, min_v_mem: Optional[float],
                 v_init: Any = 0.0) -> Dict[str, float]:
    """The scale each group allows (sinabs's order: weights, bias, thresholds, state)."""
    low = MISSING_MIN_V_MEM if min_v_mem is None else float(min_v_mem)
    scales = {"weights": discretization_scale(weight, WEIGHT_BITS),
              "bias": discretization_scale(bias, WEIGHT_BITS),
              "thresholds": discretization_scale([low, float(threshold)], STATE_BITS)}
    if np.any(np.asarray(v_init) != 0):
        scales["state"] = discretization_scale(v_init, STATE_BITS)
    return scales


def state_floor(weight: Any, bias: Any, threshold: float, v_init: Any = 0.0) -> float:
    """The ``min_v_mem`` nmtc chooses when the graph has none: -32768 at the scale the
    weights, bias, threshold and initial state allow (so it never lowers that scale)."""
    _, hi = int_range(STATE_BITS)
    lo = MISSING_MIN_V_MEM
    s = min(discretization_scale(weight, WEIGHT_BITS), discretization_scale(bias, WEIGHT_BITS),
            hi / abs(float(threshold)) if threshold else float("inf"))
    if np.any(np.asarray(v_init) != 0):
        s = min(s, discretization_scale(v_init, STATE_BITS))
    return float(np.float32(lo / s))


def quantize_layer(weight: Any, bias: Any, threshold: float, min_v_mem: Optional[float],
                   v_init: Any = 0.0) -> SpeckLayerNumerics:
    """A float (conv, IAF) pair as the chip's integers, by sinabs's discretize rule."""
    scales = group_scales(weight, bias, threshold, min_v_mem, v_init)
    limited_by = min(scales, key=lambda k: scales[k])
    s = scales[limited_by]
    low = MISSING_MIN_V_MEM if min_v_mem is None else float(min_v_mem)
    thr_pair = round_scaled([low, float(threshold)], s)
    v0 = np.asarray(v_init, np.float32)
    return SpeckLayerNumerics(
        weight=round_scaled(weight, s), bias=round_scaled(bias, s),
        threshold=int(thr_pair[1]), min_v_mem=int(thr_pair[0]),
        v_init=round_scaled(v0, s) if np.any(v0 != 0) else np.zeros_like(v0),
        scale=s, limited_by=limited_by)


__all__ = ["WEIGHT_BITS", "STATE_BITS", "MISSING_MIN_V_MEM", "int_range",
           "discretization_scale", "round_scaled", "SpeckLayerNumerics", "group_scales",
           "state_floor", "quantize_layer"]
