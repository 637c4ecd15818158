"""Turn analog inputs into spike trains on the host, before a spiking network.

Loihi's first synapse receives binary spikes (a netx input layer without a
neuron, driven through ``net.inp``), so analog data (pixel intensities) must
be encoded first. The encoder here is deterministic, so a float simulation,
a fixed-point simulation and a Lava run all see exactly the same spikes.

It must not depend on any back end: it is plain numpy.
"""
from __future__ import annotations

from typing import Any, Dict

import numpy as np

from nmtoolchain.errors import BadInputError

#: What :func:`rate_encode` does, as recorded in ``graph.metadata['input_encoding']``.
RATE_ENCODING = {
    "method": "rate",
    "rule": ("deterministic integrate-and-fire per input value: v += x / x_max each step, "
             "spike when v >= 1, then v -= 1 (exactly floor(t * x / x_max) spikes by step t)"),
    "x_max": 1.0,
}


def rate_encode(x: Any, steps: int, *, x_max: float = 1.0) -> np.ndarray:
    """Deterministic rate code of ``x`` (B, *shape) as spikes (B, steps, *shape).

    Each value is clipped to [0, x_max] and drives an integrate-and-fire
    neuron with reset by subtraction and threshold ``x_max``: by step t
    (1-based) it has fired ``floor(t * x / x_max)`` times, so the rate is
    x / x_max with no randomness. Returns float32 zeros and ones.
    """
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise BadInputError(f"rate_encode: steps must be a positive integer, got {steps!r}")
    if not x_max > 0:
        raise BadInputError(f"rate_encode: x_max must be positive, got {x_max!r}")
    a = np.asarray(x, dtype=np.float64)
    if a.ndim < 1:
        raise BadInputError("rate_encode: x must have a leading batch axis")
    if not np.isfinite(a).all():
        raise BadInputError("rate_encode: x holds NaN or infinite values")
    r = np.clip(a / float(x_max), 0.0, 1.0)
    t = np.arange(int(steps) + 1, dtype=np.float64).reshape((1, -1) + (1,) * (a.ndim - 1))
    fired = np.floor(t * r[:, None] + 1e-9)  # spikes fired by step t; tolerance for t*r == k
    return np.diff(fired, axis=1).astype(np.float32)


def encoding_metadata(steps: int, x_max: float = 1.0) -> Dict[str, Any]:
    """The ``input_encoding`` record a graph fed by :func:`rate_encode` carries."""
    return dict(RATE_ENCODING, x_max=float(x_max), steps=int(steps))


__all__ = ["rate_encode", "encoding_metadata", "RATE_ENCODING"]
