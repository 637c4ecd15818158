"""Neuron and state primitives (NIR ``neuron.py`` family) plus sigma-delta.

Continuous-time parameters follow NIR 1.0.x (tau in the graph's time unit,
see ``Graph.metadata['dt']``). What NIR leaves to each back end is explicit
here, per node:

* ``reset``: ``"subtract"`` (v <- v - v_threshold; NIR <= 1.0.4 spec, sinabs,
  QCFS conversion) or ``"to_reset"`` (v <- v_reset; NIR >= 1.0.6 spec, Loihi
  CUBA with v_reset = 0).
* ``v_init``: membrane value at t = 0 (QCFS conversion pre-charges to λ/2).
* ``v_min``: lower clamp of the membrane (sinabs ``min_v_mem``), None = none.
* ``v_bias``: constant added to v every step (Loihi's neuron bias), 0 = none.
* ``spike``: ``"single"`` (at most one spike per step) or ``"multi"``
  (sinabs MultiSpike: floor(v / v_threshold) spikes per step).
* ``compare``: ``">"`` (spike when v > v_threshold: NIR, Loihi) or ``">="``
  (sinabs, spikingjelly / QCFS conversion).
* ``discretization`` (LI, LIF): the one-step update that stands for the
  continuous dynamics. ``"euler"`` (forward Euler, the default:
  v <- v + dt/tau (v_leak - v + r x)) or ``"exponential"`` (x held over the
  step, as sinabs: v <- v_leak + a (v - v_leak) + (1 - a) r x, a = exp(-dt/tau)).
  Two LIFs with equal fields but different discretizations simulate differently.

Every parameter is a scalar or broadcasts to the neuron shape (the input shape).
"""
from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

import numpy as np

from nmtoolchain.ir.op import Op, OpCheckError, Shape, as_array, broadcast_ok

RESET_MODES = ("subtract", "to_reset")
DISCRETIZATIONS = ("euler", "exponential")
SPIKE_MODES = ("single", "multi")
COMPARES = (">", ">=")


@dataclasses.dataclass(eq=False)
class _Neuron(Op):
    is_stateful = True
    is_neuron = True

    def num_parameters(self) -> int:
        """Neuron constants are not counted as parameters (only weights/biases are)."""
        return 0

    def __post_init__(self) -> None:
        for k, v in self.field_values().items():
            if k in ("reset", "spike", "compare", "role", "activation", "discretization"):
                continue
            if v is not None and not isinstance(v, (str, bool)):
                setattr(self, k, as_array(v))

    def infer_shape(self, in_shapes: Sequence[Shape]) -> Shape:
        s = tuple(in_shapes[0])
        for k, v in self.arrays().items():
            if not broadcast_ok(v, s):
                raise OpCheckError(f"{k} shape {v.shape} does not broadcast to neurons {s}")
        return s

    def check(self) -> None:
        reset = getattr(self, "reset", None)
        if reset is not None and reset not in RESET_MODES:
            raise OpCheckError(f"reset must be one of {RESET_MODES}, got {reset!r}")
        spike = getattr(self, "spike", None)
        if spike is not None and spike not in SPIKE_MODES:
            raise OpCheckError(f"spike must be one of {SPIKE_MODES}, got {spike!r}")
        compare = getattr(self, "compare", None)
        if compare is not None and compare not in COMPARES:
            raise OpCheckError(f"compare must be one of {COMPARES}, got {compare!r}")
        disc = getattr(self, "discretization", None)
        if disc is not None and disc not in DISCRETIZATIONS:
            raise OpCheckError(f"discretization must be one of {DISCRETIZATIONS}, got {disc!r}")
        for k in ("tau", "tau_syn", "tau_mem"):
            v = getattr(self, k, None)
            if v is not None and (np.asarray(v) < 0).any():
                raise OpCheckError(f"{k} must be >= 0")


@dataclasses.dataclass(eq=False)
class I(_Neuron):  # noqa: E742  (NIR's name)
    """Integrator: dv/dt = r * x. Output is v."""

    is_readout = True
    r: np.ndarray = 1.0
    nir_type = "I"


@dataclasses.dataclass(eq=False)
class IF(_Neuron):
    """Integrate-and-fire: dv/dt = r * x; spike when v > v_threshold; then reset."""

    r: np.ndarray = 1.0
    v_threshold: np.ndarray = 1.0
    v_reset: np.ndarray = 0.0
    reset: str = "subtract"
    v_init: np.ndarray = 0.0
    v_min: Optional[np.ndarray] = None
    v_bias: np.ndarray = 0.0
    spike: str = "single"
    compare: str = ">"
    nir_type = "IF"


@dataclasses.dataclass(eq=False)
class LI(_Neuron):
    """Leaky integrator: tau dv/dt = (v_leak - v) + r * x. Output is v.

    One step is taken as ``discretization`` says (module docstring)."""

    is_readout = True
    tau: np.ndarray = 1.0
    r: np.ndarray = 1.0
    v_leak: np.ndarray = 0.0
    discretization: str = "euler"  # one-step update: 'euler' or 'exponential'
    nir_type = "LI"


@dataclasses.dataclass(eq=False)
class LIF(_Neuron):
    """Leaky integrate-and-fire: LI dynamics, spike when v > v_threshold, reset.

    One step is taken as ``discretization`` says (module docstring)."""

    tau: np.ndarray = 1.0
    r: np.ndarray = 1.0
    v_leak: np.ndarray = 0.0
    v_threshold: np.ndarray = 1.0
    v_reset: np.ndarray = 0.0
    reset: str = "subtract"
    v_init: np.ndarray = 0.0
    v_min: Optional[np.ndarray] = None
    v_bias: np.ndarray = 0.0
    spike: str = "single"
    compare: str = ">"
    discretization: str = "euler"  # one-step update: 'euler' or 'exponential'
    nir_type = "LIF"


@dataclasses.dataclass(eq=False)
class CubaLIF(_Neuron):
    """Current-based LIF: tau_syn dI/dt = -I + w_in x; LIF on I.

    Loihi's CUBA neuron is this node with ``reset='to_reset'``, ``v_reset=0``
    and its exact integers in ``Node.numerics``
    (:class:`nmtoolchain.numerics.loihi.LoihiCubaNeuron`).
    """

    tau_syn: np.ndarray = 1.0
    tau_mem: np.ndarray = 1.0
    r: np.ndarray = 1.0
    v_leak: np.ndarray = 0.0
    v_threshold: np.ndarray = 1.0
    w_in: np.ndarray = 1.0
    v_reset: np.ndarray = 0.0
    reset: str = "to_reset"
    v_init: np.ndarray = 0.0
    v_min: Optional[np.ndarray] = None
    v_bias: np.ndarray = 0.0
    spike: str = "single"
    compare: str = ">"
    nir_type = "CubaLIF"


@dataclasses.dataclass(eq=False)
class CubaLI(_Neuron):
    """Current-based leaky integrator (no threshold). Output is v."""

    is_readout = True
    tau_syn: np.ndarray = 1.0
    tau_mem: np.ndarray = 1.0
    r: np.ndarray = 1.0
    v_leak: np.ndarray = 0.0
    w_in: np.ndarray = 1.0
    v_bias: np.ndarray = 0.0
    nir_type = "CubaLI"


@dataclasses.dataclass(eq=False)
class Threshold(Op):
    """z = 1 if x > threshold else 0 (stateless; NIR Threshold)."""

    threshold: np.ndarray = 0.0
    nir_type = "Threshold"

    def __post_init__(self) -> None:
        self.threshold = as_array(self.threshold)

    def infer_shape(self, in_shapes: Sequence[Shape]) -> Shape:
        s = tuple(in_shapes[0])
        if not broadcast_ok(self.threshold, s):
            raise OpCheckError(f"threshold shape {self.threshold.shape} does not fit {s}")
        return s


@dataclasses.dataclass(eq=False)
class Delay(Op):
    """y(t) = x(t - delay), delay in time steps, per element (NIR Delay)."""

    is_stateful = True

    delay: np.ndarray = 0
    nir_type = "Delay"

    def __post_init__(self) -> None:
        self.delay = as_array(self.delay, np.int64)

    def infer_shape(self, in_shapes: Sequence[Shape]) -> Shape:
        s = tuple(in_shapes[0])
        if not broadcast_ok(self.delay, s):
            raise OpCheckError(f"delay shape {self.delay.shape} does not fit {s}")
        return s

    def check(self) -> None:
        if (self.delay < 0).any():
            raise OpCheckError("delay must be non-negative")


@dataclasses.dataclass(eq=False)
class SigmaDelta(_Neuron):
    """Sigma-delta neuron (Loihi SDNN), one of three roles.

    ``role='delta'``: input encoder, sends the change of its input when
    |change + residue| >= threshold. ``'sigma_delta'``: integrates incoming
    deltas (sigma), applies ``activation`` (ReLU on Loihi), sends deltas of the
    activation. ``'sigma'``: integrates and outputs the running sum.
    ``bias`` is added to sigma before the activation.
    """

    threshold: np.ndarray = 0.0
    bias: np.ndarray = 0.0
    role: str = "sigma_delta"
    activation: str = "relu"

    def check(self) -> None:
        if self.role not in ("delta", "sigma_delta", "sigma"):
            raise OpCheckError(f"role must be delta, sigma_delta or sigma, got {self.role!r}")
        if self.activation not in ("relu", "identity"):
            raise OpCheckError(f"activation must be relu or identity, got {self.activation!r}")
