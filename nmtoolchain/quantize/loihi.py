"""Quantize a float SNN graph into Loihi 2 fixed point (the netx form).

Input: a float SNN IR graph made of ``Input``, ``Affine``/``Linear``,
``Conv2d``, ``SumPool2d``/``AvgPool2d``, ``Flatten``, ``Output`` and the
neurons ``IF``, ``LIF``, ``CubaLIF`` (spiking) or ``I``, ``LI``, ``CubaLI``
(non-spiking readouts). Every synapse feeds exactly one neuron; the graph input carries
binary spikes into the first synapse (encode analog data first, e.g. with
:func:`nmtoolchain.convert.rate_encode`).

Output (:func:`quantize_for_loihi`): a NEW graph in exactly the form
:func:`nmtoolchain.frontends.netx_loader.load_netx` produces, so
``Simulator(graph, 'loihi')`` runs it bit-exactly, the netx exporter writes
it, and loading the export gives the same values back:

* ``layer0_input``: ``Input`` without neuron (netx input layer without a
  ``neuron`` group, driven by spikes through ``net.inp``);
* ``layer{i}_dense`` / ``layer{i}_conv``: integer-valued float weights, zero
  synapse bias;
* ``layer{i}_neuron``: ``CubaLIF`` (``reset='to_reset'``, ``compare='>'``)
  with ``numerics`` a :class:`~nmtoolchain.numerics.loihi.LoihiCubaNeuron`
  (``i_decay``, ``v_decay``, ``v_th_mant``, ``bias_mant``, ``bias_exp = 6``,
  ``ref_delay = 1``, ``readout``);
* ``layer{i}_flatten``: ``Flatten``; ``output``: ``Output``.

A recurrent layer (a back edge neuron -> dense recurrent synapse -> ``Add`` <-
dense input synapse, the ``Add`` feeding that neuron) becomes netx's
``dense_rec``: ``layer{i}_dense_rec`` and ``layer{i}_recurrent`` summed by
``layer{i}_sum`` into ``layer{i}_neuron``, one scale and one weight exponent
for ``[W_in | W_rec]`` (netx sizes both together). Its timing needs nothing
else: in the float graph the recurrent edge delivers step t's spikes at step
t + 1; on Loihi (Lava's Dense sends before it receives) the recurrent spikes
arrive one step after they fire, as the input synapse's do, so relative to the
layer's input the loop is still one step. Other loops are refused naming the
back edge.

Pooling is left in place (another pass folds it into the next convolution),
except that ``AvgPool2d`` becomes ``SumPool2d`` with its 1/(kH*kW) moved into
the next synapse's float weights before they are quantized, so the fold stays
integer. A graph with pooling left cannot run in loihi numerics until folded.

Per layer (one synapse + its neuron) a scale s (not a power of two; netx
adds the power-of-two weight exponent itself) maps float units to integers::

    W_int = round(W_eff * s)   in [-256, 254] (mixed sign) or [-255, 255] (one sign)
    vThMant = round(theta * s) <= 131071 (17 bits)
    bias_mant = round(b_eff * s), |bias_mant| <= 4095 (13-bit signed)

s is the largest value meeting all three limits (the report says which one
bound it; ``weight_percentile`` < 100 lets the top weights clip instead).
The integer weights are checked to survive netx's ``optimize_weight_bits``
and Lava's clip/truncate exactly (:func:`netx_dense_weights`, an emulation
tested against lava's own functions); when they would not, s is lowered by
1% until they do (e.g. an all-negative matrix whose minimum is -2^k, which
netx shifts to -256 and Lava clips to -255). netx's max == 0 bug (a dense
matrix with all weights <= 0 and some == 0: netx gives it 9 weight bits and
Lava corrupts it) and the all-zero matrix (netx fails to load it) are fixed by
nudging the one weight closest to positive to +1, and reported.

Neuron mapping (dt = 1 step; the float kernels in ``simulators/cycle``):

* ``IF``: iDecay = 4096 (no current state: u = input of this step), vDecay = 0;
  ``W_eff = r * W``, ``b_eff = v_bias + r * b_synapse``.
* ``LIF`` (op field ``discretization`` 'euler', the default: k = dt/tau; 'exponential':
  k = 1 - exp(-dt/tau)): iDecay = 4096, vDecay = round(4096 k);
  ``W_eff = k r W``, ``b_eff = v_bias + k (v_leak + r b_synapse)``.
* ``CubaLIF``: iDecay = round(4096 (1 - exp(-dt/tau_syn))), vDecay =
  round(4096 (1 - exp(-dt/tau_mem))) (the inverse of the netx loader's
  ``tau = -1/ln(1 - d/4096)``); ``W_eff = w_in r W``; ``b_eff = v_bias +
  (1 - a_mem) v_leak + w_in r b_synapse / (1 - a_syn)`` (a synapse bias in a
  persistent current is moved to v at its steady state: reported).
* ``I`` (readout): netx's default neuron (iDecay 0, vDecay 4096, vThMant
  1 << 17, never spikes: read u/v), ``W_eff = r W``.
* ``LI`` / ``CubaLI`` (leaky readouts): mapped as ``LIF`` / ``CubaLIF`` with
  the never-firing vThMant 1 << 17 ((1 << 17) << 6 lies above the 24-bit v
  range): their v is read, v_int ~ 64 s v_float (see :func:`spike_counts`).

Loihi resets v to 0 and fires on v > vThMant << 6, and u and v start at 0.
What the float neuron does differently is changed to the nearest Loihi
behaviour and listed per layer (``changes``): reset by subtraction -> reset
to zero; ``v_reset`` != 0 -> 0; ``v_init``, ``v_min``, multi-spike dropped;
``compare '>='`` -> vThMant - 1 for IF neurons (exact: their v stays a
multiple of 64), kept as '>' for leaky neurons (differs only on equality).
Per-neuron thresholds are folded into the weight rows (conv: per channel).

:func:`loihi_float_reference` gives the float graph with those same changes
applied and nothing rounded, so "float SNN vs fixed point" compares like with
like. Loihi numerics add one step per synapse, so layer j (counting neuron
layers from 0) sees the input of step t at step t + 1 + j and its bias would
start j + 1 steps early; :func:`aligned_run` gives the run that lines every
layer up with the float model (netx's ``reset_interval = steps + depth``,
``reset_offset = 1``, zero input after ``steps``, and each layer's count
window), which :func:`spike_counts` and the error measurement use. With it
the remaining float-vs-fixed difference is the rounding alone.

This module imports no vendor library (lava is only emulated, and tested
against the real one); the simulator is imported when calibration inputs are
given.
"""
from __future__ import annotations

import copy
import dataclasses
import math
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from nmtoolchain.errors import (
    BadInputError, NmtcError, NotExpressibleError, UnsupportedOpError)
from nmtoolchain.ir import (
    OP_REGISTRY, Add, Affine, Conv2d, CubaLIF, Flatten, Graph, Input, Node, Output, SumPool2d)
# Loihi numerics own the constants and the decay <-> tau rule; quantizing inverts it
from nmtoolchain.numerics.loihi import (
    BIAS_EXP, BIAS_MANT_MAX, DECAY_UNIT, MANT_SHIFT, STATE_LIMIT, TIME_CONVENTION,
    LoihiCubaNeuron, is_loihi_readout)
from nmtoolchain.numerics.loihi import READOUT_V_TH_MANT as READOUT_VTH
from nmtoolchain.numerics.loihi import decay_from_factor as _decay_from_factor
from nmtoolchain.numerics.loihi import tau_from_decay as _tau

_SYNAPSES = ("Affine", "Linear", "Conv2d")
_SPIKING = ("IF", "LIF", "CubaLIF")
#: every neuron op the quantizer takes: the spiking ones and the readouts (``is_readout``:
#: their v is read, not their spikes; they get a never-firing threshold)
LOIHI_NEURONS = _SPIKING + ("I", "LI", "CubaLI")
_POOLS = ("SumPool2d", "AvgPool2d")


# ------------------------------------------------------------------ limits
@dataclasses.dataclass(frozen=True)
class LoihiLimits:
    """Bit widths the quantizer respects (from the hardware profile)."""

    weight_bits: int = 8        # magnitude bits of the weight mantissa (sign extra)
    threshold_bits: int = 17    # vThMant
    decay_bits: int = 12        # iDecay / vDecay
    bias_max: int = BIAS_MANT_MAX

    def weight_range(self, mixed: bool) -> Tuple[int, int]:
        """(lowest, highest) integer weight: [-256, 254] for a mixed-sign matrix
        (netx clips to it), [-255, 255] for a single-sign one (Lava clips
        magnitudes to 255; an all-negative matrix holding -256 is corrupted)."""
        top = 1 << self.weight_bits
        return (-top, top - 2) if mixed else (-(top - 1), top - 1)

    @property
    def threshold_max(self) -> int:
        return (1 << self.threshold_bits) - 1


def limits_from_profile(profile: Any = "loihi2") -> Tuple[LoihiLimits, str]:
    """Bit widths from a hardware profile (name, path or Profile); netx's
    values where the profile is silent. Returns (limits, profile id)."""
    from hardware_profiles import load_profile

    prof = load_profile(profile)

    def bits(key: str, default: int) -> int:
        v = prof.get("resources", key, None)
        return int(v) if v is not None else default

    lim = LoihiLimits(weight_bits=bits("weight_bits", 8),
                      threshold_bits=bits("threshold_bits", 17),
                      decay_bits=bits("decay_bits", 12))
    if lim.weight_bits > 8 or lim.threshold_bits > 17 or lim.decay_bits != 12:
        raise BadInputError(
            f"profile '{prof.id}': weight_bits {lim.weight_bits}, threshold_bits "
            f"{lim.threshold_bits}, decay_bits {lim.decay_bits} exceed what lava-dl netx "
            "can express (8, 17, 12)")
    return lim, prof.id


# ------------------------------------------------------- netx round trip
def netx_dense_weights(w: Any) -> Tuple[Optional[np.ndarray], int, str]:
    """The dense weights Lava's ``fixed_pt`` Dense process ends up using.

    Emulates ``lava.lib.dl.netx.utils.optimize_weight_bits`` (clip, sign
    mode, power-of-two exponent, weight bits) and the Dense model's
    ``clip_weights`` / ``truncate_weights``. Returns ``(stored, shift, why)``:
    Lava computes ``a = (stored @ s) >> shift``; ``stored`` is None when netx
    cannot load the matrix at all (all zeros). ``why`` is '' when the round
    trip is exact (``stored == w << shift``), else what goes wrong.
    """
    w = np.asarray(w)
    if np.any(w != np.round(w)):
        return None, 0, "weights are not integers"
    w = w.astype(np.int64)
    mx, mn = int(w.max()), int(w.min())
    why = ""
    if mx > 254 and mn < 0:  # netx: clip, then recompute the maximum only
        w = np.clip(w, -256, 254)
        mx = int(w.max())
        why = "clipped to [-256, 254]"
    if mn < -256 and mx > 0:  # netx: clip, then recompute the minimum only
        w = np.clip(w, -256, 254)
        mn = int(w.min())
        why = "clipped to [-256, 254]"
    if mx == 0 and mn == 0:
        return None, 0, "all weights are zero: netx's exponent is infinite and loading fails"
    if mx < 0:
        signed, scale = 0, -256.0 / mn
    elif mn >= 0:
        signed, scale = 0, 255.0 / mx
    else:
        signed = 1
        scale = min(127.0 / mx if mx > 0 else math.inf, -128.0 / mn)
    shift = int(math.floor(math.log2(scale))) + signed
    n = 8
    while n > 0 and np.any(w % (1 << n)):
        n -= 1
    n -= signed
    num_bits = 8 - shift - n
    if shift < 0:
        return None, shift, f"weights too large: negative weight exponent shift {shift}"
    stored = w << shift
    # Lava's Dense model (sign mode decided again, on the stored weights).
    if stored.min() >= 0:
        mode_mixed, inhib = 0, False
    elif stored.max() <= 0:
        mode_mixed, inhib = 0, True
    else:
        mode_mixed, inhib = 1, False
    v = -stored if inhib else stored.copy()
    v = np.clip(v, -256 * mode_mixed, 255)
    trunc = 8 - num_bits + mode_mixed
    if trunc < 0:
        return None, shift, (f"netx gives {num_bits} weight bits (the max == 0 bug: all "
                             "weights <= 0 and some == 0); Lava would shift by a negative count")
    v = (v >> trunc) << trunc
    used = -v if inhib else v
    if not why and not np.array_equal(used, w << shift):
        bad = int(np.count_nonzero(used != (w << shift)))
        why = f"{bad} weight(s) change in Lava's clip/truncate"
    return used, shift, why


def netx_dense_weights_exact(w: Any) -> bool:
    """True when netx + Lava reproduce the integer matrix ``w`` exactly."""
    used, shift, why = netx_dense_weights(w)
    return used is not None and not why


def _fix_for_netx(w_int: np.ndarray, w_float_scaled: np.ndarray) -> Tuple[np.ndarray, List[str]]:
    """Nudge a dense matrix netx would corrupt (max == 0 with negatives, all
    zeros) by setting the entry closest to positive to +1."""
    notes: List[str] = []
    mx, mn = int(w_int.max()), int(w_int.min())
    if mx == 0:
        flat = np.argmax(w_float_scaled.reshape(-1))
        idx = np.unravel_index(flat, w_int.shape)
        w_int = w_int.copy()
        w_int[idx] = 1
        what = ("all weights are zero (netx cannot load it)" if mn == 0
                else "all weights <= 0 with max == 0 (netx's max == 0 bug)")
        notes.append(f"{what}: weight {tuple(int(i) for i in idx)} nudged from "
                     f"{float(w_float_scaled[idx]):.3f} to +1")
    return w_int, notes


# ------------------------------------------------------------------ report
@dataclasses.dataclass
class LayerQuant:
    """One quantized layer (a synapse and its neuron)."""

    layer: str                      # neuron node in the quantized graph
    synapse: str                    # synapse node in the quantized graph
    float_synapse: str              # names in the float graph
    float_neuron: str
    kind: str                       # 'dense' or 'conv'
    neuron: str                     # float neuron op (IF, LIF, CubaLIF, I, LI, CubaLI)
    scale: float                    # integer = round(float * scale)
    limited_by: str                 # 'weights', 'threshold' or 'bias'
    weight_range: Tuple[int, int]   # min, max integer weight
    weight_bits: int                # two's-complement width if mixed sign, else magnitude bits
    weight_exp: Optional[int]       # netx's exponent (dense); None for conv (ignored)
    clipped: int                    # weights clipped to the mantissa range
    zeroed: int                     # non-zero float weights that became 0
    vThMant: int
    bias_mant_range: Tuple[int, int]
    iDecay: int
    vDecay: int
    changes: List[str]              # semantics that differ from the float neuron
    notes: List[str]                # netx fixes, warnings
    error: Optional[Dict[str, Any]] = None  # measured with calibration inputs
    recurrent: Optional[str] = None  # quantized recurrent synapse (netx dense_rec), if any
    float_recurrent: Optional[str] = None

    def as_dict(self) -> Dict[str, Any]:
        d = dataclasses.asdict(self)
        d["weight_range"] = list(self.weight_range)
        d["bias_mant_range"] = list(self.bias_mant_range)
        if self.recurrent is None:  # feed-forward layers keep their earlier record
            del d["recurrent"], d["float_recurrent"]
        return d


@dataclasses.dataclass
class QuantReport:
    """What :func:`quantize_for_loihi` did, per layer."""

    profile: str
    layers: List[LayerQuant]
    depth: int                       # synapses on the longest path (Loihi pipeline delay)
    input: Dict[str, Any]
    calibration: Optional[Dict[str, Any]] = None
    notes: List[str] = dataclasses.field(default_factory=list)

    def layer(self, name: str) -> LayerQuant:
        """The row for a quantized neuron name or a float node name."""
        for row in self.layers:
            if name in (row.layer, row.synapse, row.float_neuron, row.float_synapse):
                return row
        raise KeyError(name)

    def as_dict(self) -> Dict[str, Any]:
        return {"target": "loihi2", "profile": self.profile, "depth": self.depth,
                "input": dict(self.input), "calibration": self.calibration,
                "notes": list(self.notes), "layers": [r.as_dict() for r in self.layers]}

    def lines(self) -> List[str]:
        """A plain-text table and notes for terminals and report.txt."""
        out = [f"Loihi quantization (profile {self.profile}): {len(self.layers)} layers, "
               f"pipeline depth {self.depth} steps; input: {self.input.get('kind')}"]
        hdr = (f"{'layer':<16} {'float':<18} {'neuron':<8} {'scale':>10} {'bound':<9} "
               f"{'weights':>11} {'bits':>4} {'exp':>4} {'clip':>4} {'zero':>5} "
               f"{'vThMant':>7} {'bias':>13} {'iDec':>4} {'vDec':>4} {'count err':>9}")
        out.append(hdr)
        for r in self.layers:
            err = "-"
            if r.error and r.error.get("vs_float"):
                e = r.error["vs_float"]
                err = f"{100 * e.get('relative_count_error', e.get('relative_v_error')):.1f}%"
            out.append(
                f"{r.layer:<16} {r.float_neuron[:18]:<18} {r.neuron:<8} {r.scale:>10.4g} "
                f"{r.limited_by:<9} {f'[{r.weight_range[0]},{r.weight_range[1]}]':>11} "
                f"{r.weight_bits:>4} {'-' if r.weight_exp is None else r.weight_exp:>4} "
                f"{r.clipped:>4} {r.zeroed:>5} {r.vThMant:>7} "
                f"{f'[{r.bias_mant_range[0]},{r.bias_mant_range[1]}]':>13} {r.iDecay:>4} "
                f"{r.vDecay:>4} {err:>9}")
        for r in self.layers:
            for c in r.changes:
                out.append(f"  {r.layer}: semantics: {c}")
            for n in r.notes:
                out.append(f"  {r.layer}: {n}")
        for n in self.notes:
            out.append(f"  note: {n}")
        if self.calibration:
            c = self.calibration
            out.append(f"  count err: relative spike-count error per layer on {c['samples']} "
                       f"calibration inputs over {c['steps']} steps, float graph in float "
                       "numerics vs quantized graph in loihi numerics (run "
                       f"{c['steps_fixed']} steps, reset_interval {c['reset_interval']}, "
                       f"reset_offset {c['reset_offset']}, each layer counted over its "
                       "pipeline-aligned window" + (
                           "; for a readout, the relative error of its summed v, rescaled by "
                           "1 / (64 scale)" if any(_is_readout(r) for r in self.layers)
                           else "") + ")")
        return out


# --------------------------------------------------------------- helpers
def _scalar(v: Any, name: str, node: Node) -> float:
    a = np.asarray(v, dtype=np.float64)
    if a.size == 0:
        raise NotExpressibleError(f"node '{node.name}' ({node.op_name}): {name} is empty")
    if not np.all(a == a.reshape(-1)[0]):
        raise NotExpressibleError(
            f"node '{node.name}' ({node.op_name}): {name} differs between neurons; netx holds "
            "one value per layer")
    return float(a.reshape(-1)[0])


def _row_factor(f: np.ndarray, kind: str, out_shape: Tuple[int, ...], node: Node,
                what: str) -> np.ndarray:
    """A per-neuron factor as one value per output row (dense) or channel (conv)."""
    full = np.broadcast_to(np.asarray(f, np.float64), out_shape)
    if kind == "dense":
        return full.reshape(-1).copy()
    per_c = full.reshape(out_shape[0], -1)
    if not np.all(per_c == per_c[:, :1]):
        raise NotExpressibleError(
            f"node '{node.name}' ({node.op_name}): {what} varies within a channel; a "
            "convolution can only fold a per-channel value into its kernels")
    return per_c[:, 0].copy()


def _scale_rows(w: np.ndarray, f: np.ndarray) -> np.ndarray:
    return w * f.reshape((-1,) + (1,) * (w.ndim - 1))


def _bias_form(b: np.ndarray, kind: str, out_shape: Tuple[int, ...]) -> np.ndarray:
    """The bias in the shape the netx loader gives it back: () when uniform
    (netx broadcasts one value), (n,) dense, (C,1,1) per channel or (C,H,W)
    per neuron for conv."""
    full = np.broadcast_to(b, out_shape)
    if np.all(full == full.reshape(-1)[0]):
        return np.array(full.reshape(-1)[0])
    if kind == "dense":
        return full.reshape(-1).copy()
    per_c = full.reshape(out_shape[0], -1)
    if np.all(per_c == per_c[:, :1]):
        return per_c[:, :1].reshape(out_shape[0], 1, 1).copy()
    return np.array(full)


def _bits(lo: int, hi: int) -> int:
    """Two's-complement width of [lo, hi] when it holds both signs, else the
    magnitude bits (a single-sign Loihi synapse format keeps the sign apart)."""
    if lo < 0 < hi:
        return max(int(hi).bit_length(), int(-lo - 1).bit_length()) + 1
    return int(max(abs(lo), abs(hi))).bit_length()


# ----------------------------------------------------------- neuron maps
@dataclasses.dataclass
class _NeuronMap:
    w_factor: np.ndarray     # per neuron, multiplies the synapse weights
    bias: np.ndarray         # per neuron, float bias added to v each step (before scaling)
    theta: Optional[np.ndarray]  # per neuron threshold; None for a readout
    i_decay: int
    v_decay: int
    compare: str
    changes: List[str]
    readout: bool = False
    syn_bias_factor: Optional[np.ndarray] = None  # multiplies the synapse bias


def _neuron_map(node: Node, graph: Graph) -> _NeuronMap:
    """How a float neuron becomes a Loihi CUBA neuron (module docstring)."""
    op = node.op
    name = node.op_name
    dt = float(graph.metadata.get("dt", 1.0))
    f64 = lambda v, d=0.0: np.asarray(d if v is None else v, np.float64)  # noqa: E731
    changes: List[str] = []
    if name == "I":
        r = f64(op.r, 1.0)
        return _NeuronMap(r, np.zeros(()), None, 0, DECAY_UNIT, ">", changes, readout=True,
                          syn_bias_factor=r)
    readout = op.is_readout
    v_bias = f64(getattr(op, "v_bias", 0.0))
    if not readout:  # a readout has no threshold, reset or spike to map
        changes += _spiking_changes(op)
    leaky = False
    if name == "IF":
        r = f64(op.r, 1.0)
        wf, bias, i_dec, v_dec = r, v_bias, DECAY_UNIT, 0
        sbf = r
    elif name in ("LIF", "LI"):
        tau = f64(op.tau, 1.0)
        _scalar(tau, "tau", node)
        mode = op.discretization
        if mode == "exponential":
            k = 1.0 - np.exp(-dt / tau)
        else:
            k = dt / tau
            if np.any(k > 1):
                changes.append(f"dt/tau = {float(np.max(k)):.4g} > 1 (forward Euler overshoots): "
                               "vDecay clamped to 4096 (no memory)")
                k = np.minimum(k, 1.0)
        r = f64(op.r, 1.0)
        wf = k * r
        bias = v_bias + k * f64(op.v_leak)
        sbf = k * r
        i_dec, v_dec = DECAY_UNIT, _decay_from_factor(1.0 - float(np.reshape(k, -1)[0]))
        leaky = v_dec != 0
        realized = v_dec / DECAY_UNIT
        if abs(realized - float(np.reshape(k, -1)[0])) > 1e-12:
            changes.append(f"leak per step {float(np.reshape(k, -1)[0]):.6g} -> {v_dec}/4096 "
                           "(12-bit decay; Loihi also rounds the decayed v toward 0)")
    elif name in ("CubaLIF", "CubaLI"):
        a_syn = np.exp(-dt / f64(op.tau_syn, 1.0))
        a_mem = np.exp(-dt / f64(op.tau_mem, 1.0))
        _scalar(a_syn, "tau_syn", node)
        _scalar(a_mem, "tau_mem", node)
        a_syn_s, a_mem_s = float(np.reshape(a_syn, -1)[0]), float(np.reshape(a_mem, -1)[0])
        i_dec, v_dec = _decay_from_factor(a_syn_s), _decay_from_factor(a_mem_s)
        leaky = v_dec != 0
        wf = f64(op.w_in, 1.0) * f64(op.r, 1.0)
        bias = v_bias + (1.0 - a_mem) * f64(op.v_leak)
        if a_syn_s == 0.0:
            sbf = wf
        elif a_syn_s >= 1.0:
            sbf = None  # checked by the caller if a synapse bias is present
        else:
            sbf = wf / (1.0 - a_syn_s)
        for what, factor, d in (("current", a_syn_s, i_dec), ("voltage", a_mem_s, v_dec)):
            if abs((DECAY_UNIT - d) / DECAY_UNIT - factor) > 1e-12:
                changes.append(f"{what} decay factor {factor:.6g} -> ({DECAY_UNIT} - {d})/4096 "
                               "(12-bit; Loihi rounds the decayed value toward 0)")
    else:  # pragma: no cover - callers filter
        raise UnsupportedOpError(f"node '{node.name}' ({name}) is not a Loihi neuron")
    if readout:  # LI / CubaLI: the leaky mapping above, a never-firing threshold
        return _NeuronMap(wf, bias, None, i_dec, v_dec, ">", changes, readout=True,
                          syn_bias_factor=sbf)
    compare = op.compare
    if compare == ">=" and leaky:
        changes.append("compare '>=' -> '>' (a leaky v is not a multiple of 64; differs only "
                       "when v equals the threshold exactly)")
        compare = ">"
    return _NeuronMap(wf, bias, f64(op.v_threshold, 1.0), i_dec, v_dec, compare, changes,
                      syn_bias_factor=sbf)


def _spiking_changes(op: Any) -> List[str]:
    """How a spiking neuron's reset, start and spike rules move to Loihi's."""
    f64 = lambda v: np.asarray(0.0 if v is None else v, np.float64)  # noqa: E731
    changes = []
    if op.reset == "subtract":
        changes.append("reset by subtraction -> reset to 0 (Loihi): the charge above the "
                       "threshold is lost at each spike")
    elif np.any(f64(op.v_reset) != 0):
        changes.append(f"v_reset {float(np.max(np.abs(f64(op.v_reset)))):.4g} -> 0 (Loihi resets "
                       "v to 0)")
    if np.any(f64(op.v_init) != 0):
        changes.append("v_init ignored: Loihi starts every neuron at v = 0")
    if op.v_min is not None:
        changes.append("v_min clamp dropped: Loihi only saturates v at +-(2^23 - 1)")
    if op.spike == "multi":
        changes.append("multi-spike -> at most one spike per step")
    return changes


def _is_readout(row: "LayerQuant") -> bool:
    """Whether a report row's float neuron is a readout (its v is the answer)."""
    return OP_REGISTRY[row.neuron].is_readout


def _readout_range_note(drive: float, bias: float, i_decay: int, v_decay: int) -> Optional[str]:
    """What a readout's state does when every input spikes every step (``drive``
    and ``bias`` in Loihi's units), when that leaves the 24-bit range: a perfect
    integrator (netx's I readout, iDecay 0; or vDecay 0) passes 2^23 - 1 after
    some steps, a leaky one settles at u = drive 4096 / iDecay,
    v = (u + bias) 4096 / vDecay. The measured peak is in the calibration error."""
    u_top = drive * DECAY_UNIT / i_decay if i_decay else math.inf
    if i_decay == 0 or v_decay == 0:
        grows = drive if i_decay == 0 else u_top + bias
        if grows <= 0:
            return None
        return (f"the readout integrates without decay: with every input spiking every step "
                f"its state passes 2^23 - 1 after {math.ceil(STATE_LIMIT / grows)} steps "
                "(u wraps, v saturates)")
    v_top = (u_top + bias) * DECAY_UNIT / v_decay
    if v_top <= STATE_LIMIT:
        return None
    return (f"with every input spiking every step this readout's v would settle near "
            f"{v_top:,.0f} > 2^23 - 1: Loihi saturates it there")


# ------------------------------------------------------------------ pass
class _Quantizer:
    """Walks the float graph once, in topological order, building the netx form."""

    def __init__(self, graph: Graph, limits: LoihiLimits, profile: str,
                 weight_percentile: float) -> None:
        self.g = graph
        self.lim = limits
        self.profile = profile
        self.pct = weight_percentile
        self.q = Graph()
        self.rows: List[LayerQuant] = []
        self.notes: List[str] = []
        self.name_of: Dict[str, str] = {}    # float node -> quantized node
        self.gain: Dict[str, float] = {}     # quantized value / float value at a node
        self.layer_i = 0
        self.depth: Dict[str, int] = {}
        self.done: set = set()
        self.loops: Dict[str, _RecurrentLoop] = {}  # recurrent layers by their Add (run())

    def unsupported(self, node: Node, why: str) -> UnsupportedOpError:
        return UnsupportedOpError(f"node '{node.name}' ({node.op_name}): {why}")

    def _recurrent_loop(self, src: str, dst: str) -> "_RecurrentLoop":
        """The netx ``dense_rec`` pattern a back edge ``src -> dst`` must close:
        neuron -> recurrent dense synapse -> Add <- input synapse, Add -> the
        same neuron. Anything else is refused naming the edge."""
        g = self.g
        rec, neu = g[dst], g[src]
        why = None
        adds = g.users(dst)
        add = adds[0] if len(adds) == 1 else None
        if neu.op_name not in _SPIKING:
            why = f"the loop leaves a {neu.op_name}, not a spiking neuron"
        elif rec.op_name not in ("Affine", "Linear") or len(rec.inputs) != 1:
            why = (f"the recurrent synapse is a {rec.op_name}; Loihi 2 (netx dense_rec) has "
                   "dense ones")
        elif add is None or add.op_name != "Add" or len(add.inputs) != 2:
            why = "the recurrent synapse must feed one Add that sums it with the layer's input"
        elif [u.name for u in g.users(add.name)] != [neu.name] or neu.inputs != (add.name,):
            why = "the recurrent sum must feed exactly the neuron the loop leaves"
        else:
            syn = g[add.inputs[0] if add.inputs[1] == dst else add.inputs[1]]
            if syn.op_name not in ("Affine", "Linear") or syn.name == dst:
                why = (f"the layer's input synapse is a {syn.op_name}; a recurrent netx layer "
                       "(dense_rec) has a dense input synapse")
            elif [u.name for u in g.users(syn.name)] != [add.name]:
                why = "the layer's input synapse must feed only the recurrent sum"
            else:
                return _RecurrentLoop(neuron=neu.name, rec=rec.name, add=add.name,
                                      syn=syn.name)
        raise UnsupportedOpError(
            f"node '{dst}' ({rec.op_name}) has a recurrent input from '{src}' "
            f"({neu.op_name}): {why}; Loihi 2 takes recurrence as netx's dense_rec (dense input "
            "synapse + dense recurrent synapse from the layer's own neurons, summed into them)")

    def run(self) -> Tuple[Graph, QuantReport]:
        g = self.g
        g.infer_shapes()
        order, back = g.order()
        self.loops = {loop.add: loop for loop in (self._recurrent_loop(s, d)
                                                  for s, d in sorted(back))}
        ins = g.inputs()
        if len(ins) != 1:
            raise UnsupportedOpError(f"graph has {len(ins)} inputs; a netx network has one")
        allowed = ("Input", "Output", "Flatten") + _SYNAPSES + LOIHI_NEURONS + _POOLS
        rec_syns = {loop.rec for loop in self.loops.values()}
        for name in order:
            node = g[name]
            if node.op_name not in allowed and name not in self.loops:
                raise self.unsupported(
                    node, f"cannot be quantized for Loihi; supported: {', '.join(allowed)} "
                    "(fold batch-norm and scales into the synapses first)")
            users = [u for u in g.users(name) if u.name not in rec_syns]
            if node.op_name not in ("Output",) and len(users) > 1:
                raise self.unsupported(
                    node, f"feeds {len(users)} nodes; netx networks are chains")
        for name in order:
            if name in self.done or name in rec_syns:
                continue
            node = g[name]
            op = node.op_name
            if op == "Input":
                self.add_input(node)
            elif op == "Flatten":
                self.add_flatten(node)
            elif op in _POOLS:
                self.add_pool(node)
            elif op in _SYNAPSES:
                self.add_layer(node)
            elif op == "Output":
                self.add_output(node)
            else:
                raise NotExpressibleError(
                    f"node '{name}' ({op}) does not follow a synapse; on Loihi every neuron "
                    "layer is fed by a dense or conv synapse (the input must be spikes into the "
                    "first synapse: encode analog inputs on the host first, e.g. "
                    "nmtoolchain.convert.rate_encode)")
        meta = copy.deepcopy(g.metadata)
        depth = max(self.depth.values()) if self.depth else 0
        meta.update({
            "dt": 1.0, "time_convention": TIME_CONVENTION,
            "source": {**(g.metadata.get("source") or {}), "quantized_for": "loihi2"},
            "quantization": {"target": "loihi2", "profile": self.profile,
                             "pipeline_depth": depth, "input": "spikes into the first synapse "
                             "(netx input layer without neuron)"}})
        self.q.metadata = meta
        self.q.infer_shapes()
        report = QuantReport(self.profile, self.rows, depth,
                             {"kind": "spikes", "node": self.name_of[ins[0].name],
                              "shape": list(ins[0].shape),
                              "encoding": g.metadata.get("input_encoding")}, notes=self.notes)
        return self.q, report

    # ---------------------------------------------------------- nodes
    def add_input(self, node: Node) -> None:
        name = "layer0_input"
        self.q.add(name, Input(tuple(node.shape)),
                   [], {"source": {"netx_layer": 0, "type": "input", "float_node": node.name}})
        self.name_of[node.name] = name
        self.gain[name] = 1.0
        self.depth[name] = 0
        self.layer_i = 0

    def add_flatten(self, node: Node) -> None:
        src = self.name_of[node.inputs[0]]
        in_shape = self.g[node.inputs[0]].shape
        if len(node.shape) != 1:
            raise self.unsupported(node, f"flattens {in_shape} to {node.shape}; netx flattens "
                                   "everything (C,H,W -> N)")
        if self.q[src].op_name == "Input":
            # the netx loader's implicit flatten: named after the dense layer that follows
            name = f"layer{self.layer_i + 1}_flatten"
            extra = {"implicit": True}
        else:
            self.layer_i += 1
            name = f"layer{self.layer_i}_flatten"
            extra = {}
        self.q.add(name, Flatten(0, -1), [src],
                   {"source": {"netx_layer": None if extra.get("implicit") else self.layer_i,
                               "type": "flatten", "float_node": node.name, **extra}})
        self.name_of[node.name] = name
        self.gain[name] = self.gain[src]
        self.depth[name] = self.depth[src]

    def add_pool(self, node: Node) -> None:
        src = self.name_of[node.inputs[0]]
        op = node.op
        gain = self.gain[src]
        if node.op_name == "AvgPool2d":
            k = op.kernel_size[0] * op.kernel_size[1]
            gain *= k
            self.notes.append(f"'{node.name}' (AvgPool2d) kept as SumPool2d; its 1/{k} is moved "
                              "into the next synapse's weights before quantization")
        name = self.q.unique_name(node.name)
        self.q.add(name, SumPool2d(op.kernel_size, op.stride, op.padding), [src],
                   {"source": {"float_node": node.name},
                    "quant": {"fold": "to be folded into the next conv (netx has no pooling)"}})
        self.name_of[node.name] = name
        self.gain[name] = gain
        self.depth[name] = self.depth[src]

    def add_output(self, node: Node) -> None:
        src = self.name_of[node.inputs[0]]
        if self.q[src].op_name not in ("CubaLIF",):
            raise NotExpressibleError(
                f"node '{node.name}' (Output) reads '{node.inputs[0]}' "
                f"({self.g[node.inputs[0]].op_name}); a netx network ends in a neuron layer (add "
                "an IF neuron, or an I readout, after the last synapse)")
        self.q.add("output", Output(), [src],
                   {"source": {"netx_layer": None, "type": "output", "float_node": node.name}})
        self.name_of[node.name] = "output"

    def add_layer(self, syn: Node) -> None:
        """A synapse and the neuron it feeds become one netx layer (module docstring):
        effective float values, a scale, integers, then the two quantized nodes."""
        neu, src, kind = self._layer_parts(syn)
        loop = next((lp for lp in self.loops.values() if lp.syn == syn.name), None)
        rec = self.g[loop.rec] if loop is not None else None
        self.layer_i += 1
        out_shape = tuple(neu.shape)
        nm = _neuron_map(neu, self.g)
        onward = [u for u in self.g.users(neu.name) if u.op_name != "Output"]
        if nm.readout and onward:
            raise NotExpressibleError(
                f"node '{neu.name}' ({neu.op_name}) is a non-spiking readout but feeds "
                f"'{onward[0].name}' ({onward[0].op_name}); only spikes leave a Loihi layer, so "
                "a readout can feed only an Output (make the hidden layer spiking, e.g. LIF)")
        changes = list(nm.changes)
        notes: List[str] = []
        w, bias, theta = self._effective_float(syn, neu, nm, src, kind, out_shape, changes, notes,
                                               rec)
        s, limited_by = self._choose_scale(syn, w, bias, theta)
        s, w_int, clipped = self._integer_weights(syn, w, s, kind, notes)
        zeroed = int(np.count_nonzero((w != 0) & (w_int == 0)))
        if zeroed:
            notes.append(f"{zeroed} of {int(np.count_nonzero(w))} non-zero weights round to 0")
        vth = self._threshold_mant(nm, theta, s, changes, notes)
        b_int = np.clip(np.round(bias * s), -self.lim.bias_max, self.lim.bias_max)
        b_form = _bias_form(b_int.astype(np.int64), kind, out_shape)
        drive = float(np.abs(w_int).reshape(w_int.shape[0], -1).sum(1).max()) * (1 << MANT_SHIFT)
        if drive > STATE_LIMIT:
            notes.append(f"a step with every input spiking drives u to {int(drive)} > 2^23 - 1: "
                         "Loihi's 24-bit u would wrap")
        if nm.readout:
            note = _readout_range_note(drive, float(np.abs(b_int).max(initial=0)) *
                                       (1 << BIAS_EXP), nm.i_decay, nm.v_decay)
            if note:
                notes.append(note)
        self._emit_layer(syn, neu, src, kind, nm, _LayerInts(
            scale=float(s), limited_by=limited_by, w_int=w_int, clipped=clipped, zeroed=zeroed,
            vth=vth, b_int=b_int, b_form=b_form), changes, notes, rec)

    def _layer_parts(self, syn: Node) -> Tuple[Node, str, str]:
        """The neuron ``syn`` feeds, the quantized node it reads, and 'dense' or 'conv'."""
        g = self.g
        users = g.users(syn.name)
        if len(users) == 1 and users[0].name in self.loops:
            users = [g[self.loops[users[0].name].neuron]]
        if len(users) != 1 or users[0].op_name not in LOIHI_NEURONS:
            what = ", ".join(f"'{u.name}' ({u.op_name})" for u in users) or "nothing"
            raise NotExpressibleError(
                f"node '{syn.name}' ({syn.op_name}) feeds {what}; on Loihi a synapse feeds "
                f"exactly one neuron layer ({', '.join(LOIHI_NEURONS)})")
        kind = "conv" if syn.op_name == "Conv2d" else "dense"
        in_shape = tuple(g[syn.inputs[0]].shape)
        if kind == "dense" and len(in_shape) != 1:
            raise NotExpressibleError(
                f"node '{syn.name}' ({syn.op_name}) reads a {list(in_shape)} input; "
                "netx dense layers read a flat vector: add a Flatten first")
        return users[0], self.name_of[syn.inputs[0]], kind

    def _effective_float(self, syn: Node, neu: Node, nm: _NeuronMap, src: str, kind: str,
                         out_shape: Tuple[int, ...], changes: List[str], notes: List[str],
                         rec: Optional[Node] = None
                         ) -> Tuple[np.ndarray, np.ndarray, Optional[float]]:
        """Float weights, bias per neuron and the one threshold of the Loihi layer
        (None for a readout): the neuron map applied, the synapse bias moved into
        the neuron, per-neuron thresholds folded into the weight rows. A
        recurrent layer's weights are ``[W_in | W_rec]`` side by side (netx's
        dense_rec: one scale and one weight exponent for both; the recurrent
        synapse reads the layer's own spikes, gain 1), and both biases count."""
        w = np.asarray(syn.op.weight, np.float64) / self.gain[src]
        if rec is not None:
            w = np.hstack((w, np.asarray(rec.op.weight, np.float64)))
        w = _scale_rows(w, _row_factor(nm.w_factor, kind, out_shape, neu, "the input gain"))
        bias = np.broadcast_to(nm.bias, out_shape).astype(np.float64)
        b_syn = getattr(syn.op, "bias", None)
        b_rec = getattr(rec.op, "bias", None) if rec is not None else None
        if b_rec is not None and np.any(b_rec):  # a constant input, as the other bias
            b_syn = np.asarray(b_rec, np.float64) + (0.0 if b_syn is None
                                                     else np.asarray(b_syn, np.float64))
        if b_syn is not None and np.any(b_syn):
            if nm.syn_bias_factor is None:
                raise NotExpressibleError(
                    f"node '{syn.name}' ({syn.op_name}): a synapse bias into a perfect current "
                    f"integrator ('{neu.name}', tau_syn = inf) grows without bound; Loihi "
                    "biases act on v")
            per_n = np.asarray(b_syn, np.float64)
            per_n = per_n.reshape((-1,) + (1,) * (len(out_shape) - 1)) if kind == "conv" else per_n
            bias = bias + np.broadcast_to(per_n, out_shape) * np.broadcast_to(
                nm.syn_bias_factor, out_shape)
            if neu.op_name in ("CubaLIF", "CubaLI") and nm.i_decay != DECAY_UNIT:
                changes.append("synapse bias moved from the current to v at its steady state "
                               "(its first steps differ)")
        theta = None
        if nm.theta is not None:
            th = np.broadcast_to(nm.theta, out_shape).astype(np.float64)
            if np.any(th <= 0):
                raise NotExpressibleError(
                    f"node '{neu.name}' ({neu.op_name}): threshold must be positive on Loihi, "
                    f"got {float(th.min()):.4g}")
            if np.all(th == th.reshape(-1)[0]):
                theta = float(th.reshape(-1)[0])
            else:
                rows = _row_factor(th, kind, out_shape, neu, "the threshold")
                theta = float(rows.max())
                f = theta / rows
                w = _scale_rows(w, f)
                per = f.reshape((-1,) + (1,) * (len(out_shape) - 1)) if kind == "conv" else f
                bias = bias * np.broadcast_to(per, out_shape)
                notes.append("per-neuron thresholds folded into the weight rows (one vThMant "
                             "per layer)")
        return w, bias, theta

    def _choose_scale(self, syn: Node, w: np.ndarray, bias: np.ndarray,
                      theta: Optional[float]) -> Tuple[float, str]:
        """The largest scale meeting the weight, threshold and bias limits, and which bound it."""
        w_lo, w_hi = self.lim.weight_range(bool(w.min() < 0 < w.max()))
        pos, neg = w[w > 0], -w[w < 0]

        def top(a: np.ndarray) -> float:
            if not a.size:
                return 0.0
            return float(np.percentile(a, self.pct)) if self.pct < 100 else float(a.max())

        s_w = min(w_hi / top(pos) if top(pos) > 0 else math.inf,
                  -w_lo / top(neg) if top(neg) > 0 else math.inf)
        bounds = {"weights": s_w}
        if theta is not None:
            bounds["threshold"] = self.lim.threshold_max / theta
        bmax = float(np.abs(bias).max()) if bias.size else 0.0
        if bmax > 0:
            bounds["bias"] = self.lim.bias_max / bmax
        limited_by = min(bounds, key=bounds.get)
        s = bounds[limited_by]
        if not math.isfinite(s):
            raise NotExpressibleError(
                f"node '{syn.name}' ({syn.op_name}): all weights are zero and the readout has "
                "no bias; nothing to quantize")
        return s, limited_by

    def _integer_weights(self, syn: Node, w: np.ndarray, s: float, kind: str,
                         notes: List[str]) -> Tuple[float, np.ndarray, int]:
        """Round and clip ``w * s``; for a dense layer lower s by 1% until netx and
        Lava reproduce the integers exactly. Returns (scale, integers, clipped)."""
        w_lo, w_hi = self.lim.weight_range(bool(w.min() < 0 < w.max()))
        for attempt in range(64):
            ws = w * s
            w_int = np.round(ws)
            clipped = int(np.count_nonzero((w_int > w_hi) | (w_int < w_lo)))
            w_int = np.clip(w_int, w_lo, w_hi).astype(np.int64)
            fix_notes: List[str] = []
            if kind == "dense":
                w_int, fix_notes = _fix_for_netx(w_int, ws)
                used, shift, why = netx_dense_weights(w_int)
                if used is None or why:
                    s *= 0.99
                    continue
            break
        else:
            raise NotExpressibleError(
                f"node '{syn.name}' ({syn.op_name}): no scale found whose integer weights netx "
                f"reproduces exactly ({why})")
        if attempt:
            notes.append(f"scale lowered {attempt} time(s) by 1% so netx's weight exponent "
                         "round trip is exact")
        notes.extend(fix_notes)
        return s, w_int, clipped

    def _threshold_mant(self, nm: _NeuronMap, theta: Optional[float], s: float,
                        changes: List[str], notes: List[str]) -> int:
        """vThMant: the scaled threshold (netx's never-firing value for a readout);
        '>=' becomes '>' with one less."""
        if nm.readout:
            return READOUT_VTH
        vth = int(min(self.lim.threshold_max, round(theta * s)))
        if nm.compare == ">=":
            if vth > 0:
                vth -= 1
                changes.append("compare '>=' -> '>' with vThMant - 1 (exact: an IF "
                               "neuron's v is a multiple of 64)")
            else:
                changes.append("compare '>=' with a threshold that rounds to 0 -> '> 0'")
        if vth == 0:
            notes.append("threshold rounds to 0: the neuron fires whenever v > 0")
        return vth

    def _emit_layer(self, syn: Node, neu: Node, src: str, kind: str, nm: _NeuronMap,
                    ints: "_LayerInts", changes: List[str], notes: List[str],
                    rec: Optional[Node] = None) -> None:
        """Add the quantized synapse and CUBA neuron nodes and the report row; for
        a recurrent layer also its recurrent synapse and sum, named and wired as
        the netx loader reads ``dense_rec`` (``layer{i}_dense_rec`` and
        ``layer{i}_recurrent`` -> ``layer{i}_sum`` -> ``layer{i}_neuron``)."""
        i = self.layer_i
        netx_type = "dense_rec" if rec is not None else kind
        qsyn, qneu = f"layer{i}_{netx_type}", f"layer{i}_neuron"
        w_int = ints.w_int
        weight_exp = None
        if kind == "dense":
            weight_exp = -int(netx_dense_weights(w_int)[1])
            n_in = int(np.asarray(syn.op.weight).shape[1])
            op = Affine(w_int[:, :n_in].astype(np.float32), None)
        else:
            c = syn.op
            op = Conv2d(w_int.astype(np.float32), None, c.stride, c.padding, c.dilation, c.groups)
        lo, hi = int(w_int.min()), int(w_int.max())
        if ints.limited_by != "weights":
            notes.append(f"scale bound by the {ints.limited_by} limit: the weights use only "
                         f"{_bits(lo, hi)} bits")
        quant_syn = {"scale": ints.scale, "weight_exp": weight_exp, "weight_bits": _bits(lo, hi),
                     "weight_range": [lo, hi], "clipped": ints.clipped, "zeroed": ints.zeroed,
                     "float_node": syn.name}
        self.q.add(qsyn, op, [src], {"source": {"netx_layer": i, "type": netx_type,
                                                "float_node": syn.name},
                                     "quant": quant_syn})
        qrec = qsum = None
        if rec is not None:
            qrec, qsum = f"layer{i}_recurrent", f"layer{i}_sum"
        neuron_op = CubaLIF(tau_syn=_tau(nm.i_decay), tau_mem=_tau(nm.v_decay), r=1.0,
                            v_leak=0.0, v_threshold=float(ints.vth), w_in=1.0, v_reset=0.0,
                            reset="to_reset", v_bias=ints.b_form.astype(np.float32), compare=">")
        numerics = LoihiCubaNeuron(i_decay=nm.i_decay, v_decay=nm.v_decay, v_th_mant=ints.vth,
                                   bias_mant=ints.b_form, bias_exp=BIAS_EXP, ref_delay=1,
                                   readout=bool(nm.readout))
        row = LayerQuant(
            layer=qneu, synapse=qsyn, float_synapse=syn.name, float_neuron=neu.name, kind=kind,
            neuron=neu.op_name, scale=ints.scale, limited_by=ints.limited_by,
            weight_range=(lo, hi), weight_bits=_bits(lo, hi), weight_exp=weight_exp,
            clipped=ints.clipped, zeroed=ints.zeroed, vThMant=ints.vth,
            bias_mant_range=(int(ints.b_int.min()), int(ints.b_int.max())),
            iDecay=nm.i_decay, vDecay=nm.v_decay, changes=changes, notes=notes,
            recurrent=qrec, float_recurrent=rec.name if rec is not None else None)
        self.q.add(qneu, neuron_op, [qsum or qsyn],
                   {"source": {"netx_layer": i, "type": netx_type, "neuron_type": "CUBA",
                               "float_node": neu.name},
                    "quant": row.as_dict()}, numerics=numerics)
        if rec is not None:
            n_in = int(np.asarray(syn.op.weight).shape[1])
            self.q.add(qrec, Affine(w_int[:, n_in:].astype(np.float32), None), [qneu],
                       {"source": {"netx_layer": i, "type": netx_type, "role": "recurrent",
                                   "float_node": rec.name},
                        "quant": {**quant_syn, "float_node": rec.name}})
            self.q.add(qsum, Add(), [qsyn, qrec],
                       {"source": {"netx_layer": i, "type": netx_type, "role": "sum",
                                   "float_node": self.loops_by_rec()[rec.name]}})
            loop = self.loops[self.loops_by_rec()[rec.name]]
            self.name_of[rec.name], self.name_of[loop.add] = qrec, qsum
            self.done.update((rec.name, loop.add))
        self.rows.append(row)
        self.name_of[syn.name], self.name_of[neu.name] = qsyn, qneu
        self.gain[qneu] = 1.0
        self.depth[qsyn] = self.depth[qneu] = self.depth[src] + 1
        self.done.add(neu.name)

    def loops_by_rec(self) -> Dict[str, str]:
        """Recurrent synapse -> the Add of its loop."""
        return {lp.rec: add for add, lp in self.loops.items()}


@dataclasses.dataclass(frozen=True)
class _RecurrentLoop:
    """A recurrent layer of the float graph (netx ``dense_rec``): ``syn`` and
    ``rec`` are summed by ``add`` into ``neuron``, whose spikes ``rec`` reads."""

    neuron: str
    rec: str
    add: str
    syn: str


@dataclasses.dataclass
class _LayerInts:
    """The integers chosen for one layer (before the nodes are built)."""

    scale: float              # integer = round(float * scale)
    limited_by: str           # which limit bound the scale
    w_int: np.ndarray         # integer weights
    clipped: int              # weights clipped to the mantissa range
    zeroed: int               # non-zero float weights that became 0
    vth: int                  # vThMant
    b_int: np.ndarray         # bias mantissas per neuron
    b_form: np.ndarray        # the same in the shape the netx loader gives back


# ------------------------------------------------------- float reference
def loihi_float_reference(graph: Graph) -> Graph:
    """The float graph with Loihi's neuron semantics and nothing rounded.

    Every spiking neuron resets to 0 (``reset='to_reset'``, ``v_reset=0``),
    starts at 0, has no ``v_min`` and fires at most once per step; a leaky
    neuron compares with '>' (IF neurons keep '>=', which the fixed-point
    model reproduces exactly, as do leaky ones whose vDecay rounds to 0).
    Weights, thresholds, biases and time constants are untouched, so
    float-vs-fixed differences are due to rounding only. Run it in float
    numerics for T steps and the quantized graph with :func:`aligned_run`
    (:func:`spike_counts` does both).
    """
    ref = Graph(copy.deepcopy(graph.metadata))
    for node in graph.topological_order() if graph.nodes else []:
        op = copy.deepcopy(node.op)
        if node.op_name in _SPIKING:
            op.reset = "to_reset"
            op.v_reset = np.zeros((), np.float32)
            op.v_init = np.zeros((), np.float32)
            op.v_min = None
            op.spike = "single"
            try:  # the comparison the fixed-point neuron realizes ('>=' only without leak)
                op.compare = _neuron_map(node, graph).compare
            except NmtcError:
                op.compare = op.compare if node.op_name == "IF" else ">"
        ref.add(node.name, op, node.inputs, copy.deepcopy(node.annotations),
                numerics=node.numerics)
    ref.metadata["semantics"] = "loihi (reset to 0, v starts at 0, one spike per step)"
    return ref.infer_shapes()


# ------------------------------------------------------------ calibration
def _as_spike_trains(x: Any, steps: int, shape: Tuple[int, ...]) -> np.ndarray:
    a = np.asarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x, dtype=np.float32)
    if tuple(a.shape[1:]) == tuple(shape):
        a = np.repeat(a[:, None], steps, axis=1)
    elif tuple(a.shape[2:]) != tuple(shape) or a.shape[1] < steps:
        raise BadInputError(
            f"calib_inputs have shape {list(a.shape)}; expected (B, {', '.join(map(str, shape))}) "
            f"or (B, T >= {steps}, {', '.join(map(str, shape))}) spikes")
    a = a[:, :steps]
    if not np.all((a == 0) | (a == 1)):
        raise BadInputError(
            "calib_inputs must be spikes (0/1): Loihi's first synapse receives binary spikes; "
            "encode analog inputs first (nmtoolchain.convert.rate_encode)")
    return a


def pipeline_depths(graph: Graph) -> Dict[str, int]:
    """Synapses on the longest path from the input to each node: on Loihi
    (and in loihi numerics) a node of depth d sees the input of step t at
    step t + d."""
    depth: Dict[str, int] = {}
    order, back = graph.order()
    for node in (graph[n] for n in order):
        d = max((depth[s] for s in node.inputs if (s, node.name) not in back), default=0)
        depth[node.name] = d + (1 if node.op_name in _SYNAPSES else 0)
    return depth


def aligned_run(graph: Graph, steps: int) -> Dict[str, Any]:
    """How to run a quantized graph so each layer lines up with the float model.

    Each synapse delays by one step, so layer j (counting neuron layers from
    0) first receives input at step 2 + j (1-based). With netx's
    ``reset_interval = steps + depth`` and ``reset_offset = 1`` it zeroes u
    and v exactly then, so its bias starts with its input as in the float
    model; its ``steps`` outputs are then steps [1 + j, 1 + j + steps) (0-based)
    of a ``steps + depth`` step run with zero input after ``steps``.
    """
    depths = pipeline_depths(graph)
    depth = max(depths.values()) if depths else 0
    return {"steps": int(steps) + depth, "reset_interval": int(steps) + depth,
            "reset_offset": 1, "input_steps": int(steps),
            "windows": {n: (d, d + int(steps)) for n, d in depths.items()
                        if graph[n].op.is_neuron}}


def spike_counts(graph: Graph, numerics: str, spikes: np.ndarray, steps: int,
                 nodes: Sequence[str], *, aligned: bool = True,
                 device: str = "cpu") -> Dict[str, np.ndarray]:
    """Spikes per neuron over a ``steps``-step presentation, (B, *shape) per node;
    for a readout (a non-spiking I, LI or CubaLI, whose output is its v) the sum
    of v over the same steps: float v in float numerics, Loihi's integer v
    (about 64 * scale * the float v) for a quantized readout layer.

    ``spikes``: (B, T >= steps, *shape) input spikes. Float numerics: run
    ``steps`` steps. Loihi numerics: run the :func:`aligned_run` protocol
    (``aligned=True``: per-layer reset phase and count window, comparable
    step for step with the float model) or, with ``aligned=False``, run
    ``steps + depth`` steps without resets and count every step."""
    from simulators.cycle import Simulator

    x = np.asarray(spikes, np.float32)[:, :steps]
    if numerics != "loihi":
        res = Simulator(graph, numerics, record=list(nodes), count=False, device=device).run(
            x, steps)
        return {n: res.recorded[n].sum(1).cpu().numpy().astype(np.float64) for n in nodes}
    res, plan, readouts = _loihi_run(graph, x, steps, nodes, aligned, device)
    return _window_sums(res, plan, nodes, readouts, aligned)


def _loihi_run(graph: Graph, x: np.ndarray, steps: int, nodes: Sequence[str], aligned: bool,
               device: str) -> Tuple[Any, Dict[str, Any], List[str]]:
    """The quantized graph run for ``steps`` steps of spikes ``x`` plus the pipeline
    depth (:func:`aligned_run`), recording ``nodes`` and the state of the readouts
    among them: (result, plan, readouts)."""
    from simulators.cycle import Simulator

    plan = aligned_run(graph, steps)
    pad = np.zeros((x.shape[0], plan["steps"] - steps) + x.shape[2:], np.float32)
    x = np.concatenate([x, pad], axis=1)
    kw = dict(reset_interval=plan["reset_interval"], reset_offset=plan["reset_offset"]) \
        if aligned else {}
    readouts = [n for n in nodes if is_loihi_readout(graph[n])]
    res = Simulator(graph, "loihi", record=list(nodes), record_state=readouts, count=False,
                    device=device, **kw).run(x, plan["steps"])
    return res, plan, readouts


def _window_sums(res: Any, plan: Dict[str, Any], nodes: Sequence[str], readouts: List[str],
                 aligned: bool) -> Dict[str, np.ndarray]:
    """Spikes (a readout: v) per neuron summed over each node's count window."""
    out = {}
    for n in nodes:
        r = res.state[n]["v"] if n in readouts else res.recorded[n]
        if aligned:
            a, b = plan["windows"][n]
            r = r[:, a:b]
        out[n] = r.sum(1).cpu().numpy().astype(np.float64)
    return out


def _count_error(a: np.ndarray, b: np.ndarray) -> Dict[str, float]:
    d = np.abs(a - b)
    return {"spikes_per_sample_float": float(a.sum() / len(a)),
            "spikes_per_sample_fixed": float(b.sum() / len(b)),
            "mean_abs_count_diff": float(d.mean()),
            "relative_count_error": float(d.sum() / max(a.sum(), 1.0)),
            "identical_counts": float((d == 0).mean())}


def _readout_error(a: np.ndarray, b: np.ndarray) -> Dict[str, float]:
    """Float v sums ``a`` against a readout's rescaled fixed-point v sums ``b``."""
    d = np.abs(a - b)
    return {"v_sum_per_sample_float": float(np.abs(a).sum() / len(a)),
            "mean_abs_v_sum_diff": float(d.mean()),
            "relative_v_error": float(d.sum() / max(float(np.abs(a).sum()), 1e-30))}


def _readout_peak(state: Dict[str, Any]) -> Dict[str, Any]:
    """A readout's largest |u| and |v| on the calibration run, and its share of
    Loihi's 24-bit range (u wraps past it, v saturates at it)."""
    peak = max(int(state["u"].abs().max()), int(state["v"].abs().max()))
    return {"peak_abs_state": peak, "peak_share_of_range": peak / STATE_LIMIT}


def _measure(graph: Graph, q: Graph, report: QuantReport, calib: Any, steps: int) -> None:
    shape = tuple(graph.inputs()[0].shape)
    x = _as_spike_trains(calib, steps, shape)
    if any(n.op_name == "SumPool2d" for n in q):
        report.notes.append("error not measured: pooling must be folded into the next conv "
                            "before the graph runs in loihi numerics")
        return
    fl_names = [r.float_neuron for r in report.layers]
    q_names = [r.layer for r in report.layers]
    fl = spike_counts(graph, "float", x, steps, fl_names)
    ref_graph = loihi_float_reference(graph)
    differs = any(r.changes for r in report.layers)
    ref = spike_counts(ref_graph, "float", x, steps, fl_names) if differs else fl
    run, plan, readouts = _loihi_run(q, x, steps, q_names, True, "cpu")
    fx = _window_sums(run, plan, q_names, readouts, True)
    last = report.layers[-1].layer if report.layers else None
    for r in report.layers:
        a, b, c = fl[r.float_neuron], ref[r.float_neuron], fx[r.layer]
        if _is_readout(r):  # v sums; the fixed-point v is 64 * scale * float v
            c = c / ((1 << MANT_SHIFT) * r.scale)
            peak = _readout_peak(run.state[r.layer])
            if peak["peak_share_of_range"] >= 0.9:
                r.notes.append(
                    f"on the calibration inputs this readout's state reached "
                    f"{peak['peak_abs_state']:,} ({100 * peak['peak_share_of_range']:.0f}% of "
                    "Loihi's 24-bit range): u wraps past it and v saturates, so longer or "
                    "stronger inputs change its answer")
            err = {"vs_float": _readout_error(a, c), **peak}
        else:
            err = {"vs_float": _count_error(a, c),
                   "vs_loihi_float_reference": _count_error(b, c)}
        if r.layer == last:
            fa, fb = a.reshape(len(a), -1), c.reshape(len(c), -1)
            err["argmax_agreement"] = float((fa.argmax(1) == fb.argmax(1)).mean())
        r.error = err
    report.calibration = {"samples": int(x.shape[0]), "steps": int(steps),
                          "steps_fixed": plan["steps"], "reset_interval": plan["reset_interval"],
                          "reset_offset": plan["reset_offset"],
                          "reference_differs": bool(differs)}


# ------------------------------------------------------------------ API
def quantize_for_loihi(graph: Graph, calib_inputs: Any = None, *, steps: int = 16,
                       profile: Any = "loihi2", weight_percentile: float = 100.0
                       ) -> Tuple[Graph, QuantReport]:
    """Quantize a float SNN graph for Loihi 2; returns (new graph, report).

    ``calib_inputs``: optional spikes, (B, *input shape) held every step or
    (B, T >= steps, *input shape); when given, each layer's spike-count error
    is measured (float graph in float numerics for ``steps`` steps vs the
    quantized graph in loihi numerics for ``steps + depth`` steps) and stored
    in the report and in ``annotations['quant']['error']``. ``profile``: a
    hardware profile name, path or Profile for the bit widths.
    ``weight_percentile`` < 100 maps that percentile of |w| (not the maximum)
    to the top of the mantissa, clipping the rest (counted in the report).
    The input graph is not modified.
    """
    if not isinstance(graph, Graph):
        raise BadInputError(f"quantize_for_loihi needs an IR Graph, got {type(graph).__name__}")
    if not 0 < weight_percentile <= 100:
        raise BadInputError(f"weight_percentile must be in (0, 100], got {weight_percentile}")
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise BadInputError(f"steps must be a positive integer, got {steps!r}")
    limits, prof_id = limits_from_profile(profile)
    q, report = _Quantizer(graph, limits, prof_id, weight_percentile).run()
    if calib_inputs is not None:
        _measure(graph, q, report, calib_inputs, int(steps))
        for r in report.layers:
            q[r.layer].annotations["quant"] = r.as_dict()
    return q, report


__all__ = ["quantize_for_loihi", "loihi_float_reference", "QuantReport", "LayerQuant",
           "LoihiLimits", "limits_from_profile", "netx_dense_weights",
           "netx_dense_weights_exact", "spike_counts", "aligned_run", "pipeline_depths",
           "LOIHI_NEURONS"]
