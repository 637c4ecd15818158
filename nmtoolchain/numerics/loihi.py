"""Loihi 2 fixed-point numerics: the constants, the decay <-> tau rule, and
the typed per-node records (CUBA and sigma-delta neurons as lava-dl netx
builds them).

The one home of these conventions: the netx loader, the Loihi quantizer, the
netx and Lava exporters, the Lava runner and the bit-exact kernels import
them from here. Values and bit widths follow Lava's fixed-point process
models (``lava.proc.lif.models.AbstractPyLifModelFixed``, ``lava.proc.sdn``)
and lava-dl netx (shared/reference/loihi_lava.md).

CUBA neuron, per step (integer arithmetic, decays round toward zero)::

    u <- u * (4096 - iDecay) / 4096 + (a << 6)
    v <- v * (4096 - vDecay) / 4096 + u + (bias_mant << bias_exp)
    spike when v > vThMant << 6, then v <- 0

Time convention (dt = 1 Loihi step): a per-step decay ``1 - d/4096`` is
``exp(-1/tau)``, i.e. ``tau = -1/ln(1 - d/4096)`` (:func:`tau_from_decay`;
``inf`` for d = 0, ``0`` for d = 4096); :func:`decay_from_factor` inverts it
to the nearest 12-bit decay.

This module imports no IR, torch or vendor library.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np

from nmtoolchain.errors import IRValidationError
from nmtoolchain.numerics.base import TargetNumerics

# ------------------------------------------------------------------ constants
#: Bits of a decay: a decay d removes d/4096 of the state per step.
DECAY_BITS = 12
DECAY_UNIT = 1 << DECAY_BITS  # 4096
#: Loihi MSB-aligns synaptic input and the threshold mantissa by this many bits.
MANT_SHIFT = 6
#: netx shifts every CUBA bias mantissa by this exponent (``bias_exp = 6``).
BIAS_EXP = 6
#: Lava's bias exponent is an unsigned 3-bit field.
BIAS_EXP_MAX = 7
#: Lava's bias mantissa is 13-bit signed.
BIAS_MANT_MIN, BIAS_MANT_MAX = -(1 << 12), (1 << 12) - 1
#: Lava's threshold mantissa is 17-bit unsigned.
VTH_MANT_BITS = 17
VTH_MANT_MAX = (1 << VTH_MANT_BITS) - 1
#: u and v hold 24-bit signed values.
STATE_BITS = 24
STATE_LIMIT = (1 << (STATE_BITS - 1)) - 1
#: netx's default neuron for a dense layer without a ``neuron`` group: a
#: non-leaky integrator whose threshold ``1 << 18 - 1`` is, by Python's operator
#: precedence, ``1 << 17`` (one above the 17-bit maximum), so it never spikes.
READOUT_I_DECAY = 0
READOUT_V_DECAY = DECAY_UNIT
READOUT_V_TH_MANT = 1 << VTH_MANT_BITS
#: netx's SDNN exponents and message width: graded spikes and states carry 6
#: fractional bits; the synapse after an SDNN neuron gets 16-bit messages.
SDNN_SPIKE_EXP = 6
SDNN_STATE_EXP = 6
SDNN_MESSAGE_BITS = 16
#: Lava's SDNN exponents are unsigned 3-bit fields; graded messages are at most 24 bits.
SDNN_EXP_MAX = 7
MESSAGE_BITS_MAX = 24
#: netx clamps synaptic delays to this many steps (6-bit delay field).
MAX_DELAY = 62
#: Default input transform of a netx input layer with a neuron.
DEFAULT_INPUT_WEIGHT = 64
DEFAULT_INPUT_BIAS = 0
#: What a graph in Loihi numerics means by time and units (graph metadata).
TIME_CONVENTION = ("per-step decay = exp(-dt/tau), dt = 1 Loihi step; inputs added unscaled "
                   "(w_in = r = 1); weights, biases and thresholds in netx file units")


# ---------------------------------------------------------- decay <-> tau
def tau_from_decay(decay: int) -> float:
    """Continuous time constant (dt = 1) whose exp(-1/tau) is 1 - decay/4096."""
    if decay == 0:
        return math.inf
    if decay == DECAY_UNIT:
        return 0.0
    return -1.0 / math.log(1.0 - decay / DECAY_UNIT)


def decay_from_factor(keep: float) -> int:
    """12-bit decay d with (4096 - d)/4096 closest to the per-step factor ``keep``."""
    return int(min(DECAY_UNIT, max(0, round(DECAY_UNIT * (1.0 - keep)))))


def keep_factor(decay: int) -> float:
    """The per-step factor (4096 - decay)/4096 a decay leaves of the state."""
    return (DECAY_UNIT - int(decay)) / float(DECAY_UNIT)


def int_annotation(a: Any) -> Union[int, list]:
    """An integer array as a JSON-friendly int (0-d) or nested list."""
    a = np.asarray(a)
    if a.ndim == 0:
        return int(a)
    return a.astype(np.int64).tolist()


# ------------------------------------------------------------- validation
def _int(kind: str, name: str, value: Any, lo: Optional[int] = None,
         hi: Optional[int] = None) -> int:
    """``value`` as an int within [lo, hi]; IRValidationError naming the field otherwise."""
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
    if not ok and isinstance(value, (float, np.floating)) and float(value).is_integer():
        ok = True
    if not ok and isinstance(value, np.ndarray) and value.size == 1 \
            and value.dtype.kind in "iuf" and float(value.reshape(-1)[0]).is_integer():
        value, ok = value.reshape(-1)[0], True
    if not ok:
        raise IRValidationError(f"{kind}: {name} must be an integer, got {value!r}")
    v = int(value)
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise IRValidationError(f"{kind}: {name} = {v} is outside {lo}..{hi}")
    return v


def _int_array(kind: str, name: str, value: Any, lo: int, hi: int) -> np.ndarray:
    """An integer array (read-only int64) within [lo, hi]."""
    try:
        a = np.asarray(value)
    except (TypeError, ValueError):
        raise IRValidationError(f"{kind}: {name} is not an array of integers: {value!r}") \
            from None
    if a.dtype.kind not in "biuf" or a.dtype.kind == "b" \
            or (a.size and (not np.all(np.isfinite(a)) or np.any(a != np.round(a)))):
        raise IRValidationError(f"{kind}: {name} must hold integers, got {a.reshape(-1)[:4]!r}")
    a = a.astype(np.int64)
    if a.size and (a.min() < lo or a.max() > hi):
        raise IRValidationError(f"{kind}: {name} spans {int(a.min())}..{int(a.max())}, "
                                f"outside {lo}..{hi}")
    a.setflags(write=False)
    return a


# ---------------------------------------------------------------- records
@dataclasses.dataclass(frozen=True)
class InputTransform:
    """How a netx input layer with a neuron maps the application's input x to
    the drive (``bias_mant = weight * x + bias`` for CUBA, ``a_in`` for a
    Delta neuron). netx stores it and never applies it."""

    weight: int = DEFAULT_INPUT_WEIGHT  # netx ``layer/0/weight`` (default 64)
    bias: int = DEFAULT_INPUT_BIAS      # netx ``layer/0/bias`` (default 0)

    def __post_init__(self) -> None:
        object.__setattr__(self, "weight", _int("input_transform", "weight", self.weight))
        object.__setattr__(self, "bias", _int("input_transform", "bias", self.bias))


def _transform(kind: str, value: Any) -> Optional[InputTransform]:
    if value is None or isinstance(value, InputTransform):
        return value
    if isinstance(value, dict):
        extra = sorted(set(value) - {"weight", "bias"})
        if extra:
            raise IRValidationError(f"{kind}: input_transform has no field(s) {extra}")
        return InputTransform(**value)
    raise IRValidationError(f"{kind}: input_transform must be an InputTransform, got {value!r}")


@dataclasses.dataclass(frozen=True, eq=False)
class LoihiCubaNeuron(TargetNumerics):
    """Loihi's CUBA LIF neuron as netx builds it (Lava ``LIF``, ``fixed_pt``).

    Carried by ``CubaLIF`` (or ``CubaLI``) nodes whose exact integers these
    are; the op's float fields are the same neuron in continuous time. The
    update is in the module docstring.
    """

    kind = "loihi.cuba"
    target = "loihi2"
    applies_to = ("CubaLIF", "CubaLI")

    i_decay: int                   # iDecay, 0..4096: current decay (Lava du = iDecay - 1)
    v_decay: int                   # vDecay, 0..4096: voltage decay (Lava dv)
    v_th_mant: int                 # vThMant, 0..131072: threshold, compared as vThMant << 6
    bias_mant: Any = 0             # 13-bit signed bias mantissa, one value or per neuron (C,H,W)
    bias_exp: int = BIAS_EXP       # bias exponent, 0..7 (netx always 6)
    ref_delay: Optional[int] = None  # refDelay of the file, >= 0 (netx ignores it; None: absent)
    readout: bool = False          # netx's default neuron (a layer without a neuron group)
    input_transform: Optional[InputTransform] = None  # set on a bias-driven input neuron

    def __post_init__(self) -> None:
        k = self.kind
        set_ = lambda n, v: object.__setattr__(self, n, v)  # noqa: E731
        set_("i_decay", _int(k, "i_decay", self.i_decay, 0, DECAY_UNIT))
        set_("v_decay", _int(k, "v_decay", self.v_decay, 0, DECAY_UNIT))
        set_("v_th_mant", _int(k, "v_th_mant", self.v_th_mant, 0, READOUT_V_TH_MANT))
        set_("bias_mant", _int_array(k, "bias_mant", self.bias_mant, BIAS_MANT_MIN,
                                     BIAS_MANT_MAX))
        set_("bias_exp", _int(k, "bias_exp", self.bias_exp, 0, BIAS_EXP_MAX))
        if self.ref_delay is not None:
            set_("ref_delay", _int(k, "ref_delay", self.ref_delay, 0))
        if not isinstance(self.readout, (bool, np.bool_)):
            raise IRValidationError(f"{k}: readout must be True or False, got {self.readout!r}")
        set_("readout", bool(self.readout))
        set_("input_transform", _transform(k, self.input_transform))

    def check_shape(self, shape: Tuple[int, ...]) -> None:
        try:
            np.broadcast_to(self.bias_mant, tuple(shape))
        except ValueError:
            raise IRValidationError(
                f"{self.kind}: bias_mant of shape {list(self.bias_mant.shape)} does not "
                f"broadcast to the neurons {list(shape)}") from None

    @property
    def lava_du(self) -> int:
        """Lava's ``du`` (netx passes ``iDecay - 1``; Lava adds the 1 back)."""
        return self.i_decay - 1

    def is_netx_default_readout(self) -> bool:
        """True for netx's default neuron: a netx file writes no neuron group for it."""
        return self.readout and (self.i_decay, self.v_decay, self.v_th_mant) == (
            READOUT_I_DECAY, READOUT_V_DECAY, READOUT_V_TH_MANT)


def is_loihi_readout(node: Any) -> bool:
    """A quantized layer that never fires and is read by its v: netx's default
    readout, or a leaky readout (LI/CubaLI quantized) with the never-firing threshold."""
    return isinstance(node.numerics, LoihiCubaNeuron) and node.numerics.readout


def readout_outputs(graph: Any) -> List[str]:
    """The Loihi readout layers that feed the graph's Output nodes (their v is
    the network's answer, their spikes are always 0)."""
    return [o.inputs[0] for o in graph.outputs() if is_loihi_readout(graph[o.inputs[0]])]


@dataclasses.dataclass(frozen=True, eq=False)
class LoihiSigmaDeltaNeuron(TargetNumerics):
    """Loihi's sigma-delta neuron as netx builds it (Lava ``Delta``,
    ``SigmaDelta`` or ``Sigma`` by the op's role). The threshold and bias
    are the op's (integer) fields; Lava scales them by
    ``1 << (spike_exp + state_exp)``."""

    kind = "loihi.sdnn"
    target = "loihi2"
    applies_to = ("SigmaDelta",)

    spike_exp: int = SDNN_SPIKE_EXP          # fractional bits of graded spikes, 0..7
    state_exp: int = SDNN_STATE_EXP          # fractional bits of the state, 0..7
    num_message_bits: int = SDNN_MESSAGE_BITS  # graded message width of its output, 0..24
    input_transform: Optional[InputTransform] = None  # set on the Delta input neuron

    def __post_init__(self) -> None:
        k = self.kind
        set_ = lambda n, v: object.__setattr__(self, n, v)  # noqa: E731
        set_("spike_exp", _int(k, "spike_exp", self.spike_exp, 0, SDNN_EXP_MAX))
        set_("state_exp", _int(k, "state_exp", self.state_exp, 0, SDNN_EXP_MAX))
        set_("num_message_bits", _int(k, "num_message_bits", self.num_message_bits, 0,
                                      MESSAGE_BITS_MAX))
        set_("input_transform", _transform(k, self.input_transform))


def is_loihi_cuba(node: Any) -> bool:
    """True when ``node`` carries Loihi CUBA numerics (a quantized CUBA neuron)."""
    return isinstance(getattr(node, "numerics", None), LoihiCubaNeuron)


def input_transform_of(node: Any) -> Optional[InputTransform]:
    """The input transform of a netx input neuron, or None."""
    return getattr(getattr(node, "numerics", None), "input_transform", None)


# ------------------------------------------------------ legacy annotations
#: Keys of a v1 ``annotations['loihi']`` that became typed fields, per record.
_LEGACY_CUBA = {"iDecay": "i_decay", "vDecay": "v_decay", "vThMant": "v_th_mant",
                "bias_mant": "bias_mant", "bias_exp": "bias_exp", "refDelay": "ref_delay",
                "readout": "readout", "input_transform": "input_transform"}
_LEGACY_SDNN = {"spike_exp": "spike_exp", "state_exp": "state_exp",
                "num_message_bits": "num_message_bits", "input_transform": "input_transform"}
#: v1 SDNN keys that repeated the op's fields (threshold, bias): dropped.
_LEGACY_SDNN_DUPLICATES = ("vThMant", "bias")


def from_legacy_annotation(ann: Dict[str, Any]
                           ) -> Tuple[Optional[TargetNumerics], Dict[str, Any]]:
    """Split a v1 ``annotations['loihi']`` dict into (typed record, report-only info).

    ``{'neuron': 'CUBA', ...}`` gives a :class:`LoihiCubaNeuron`, ``{'neuron':
    'SDNN', ...}`` a :class:`LoihiSigmaDeltaNeuron`; a synapse's dict (counts
    of what the netx loader truncated) gives no record. The info is what the
    netx loader now keeps in ``annotations['netx_import']``.
    """
    ann = dict(ann)
    neuron = ann.pop("neuron", None)
    if neuron == "CUBA":
        table, cls = _LEGACY_CUBA, LoihiCubaNeuron
    elif neuron == "SDNN":
        table, cls = _LEGACY_SDNN, LoihiSigmaDeltaNeuron
        for k in _LEGACY_SDNN_DUPLICATES:
            ann.pop(k, None)
    else:
        return None, ann
    fields = {new: ann.pop(old) for old, new in table.items() if old in ann}
    return cls(**fields), ann


__all__ = [
    "LoihiCubaNeuron", "LoihiSigmaDeltaNeuron", "InputTransform", "is_loihi_cuba",
    "is_loihi_readout", "readout_outputs",
    "input_transform_of", "from_legacy_annotation", "tau_from_decay", "decay_from_factor",
    "keep_factor", "int_annotation", "DECAY_UNIT", "DECAY_BITS", "MANT_SHIFT", "BIAS_EXP",
    "BIAS_EXP_MAX", "BIAS_MANT_MIN", "BIAS_MANT_MAX", "VTH_MANT_MAX", "STATE_LIMIT",
    "READOUT_I_DECAY", "READOUT_V_DECAY", "READOUT_V_TH_MANT", "SDNN_SPIKE_EXP",
    "SDNN_STATE_EXP", "SDNN_MESSAGE_BITS", "MAX_DELAY", "DEFAULT_INPUT_WEIGHT",
    "DEFAULT_INPUT_BIAS", "TIME_CONVENTION"]
