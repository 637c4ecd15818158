"""Quantize a lowered (DYNAP-CNN form) graph to Speck's integers, as sinabs's discretize does.

Each (Conv2d, IF) pair of :func:`nmtoolchain.passes.speck_lower.dynapcnn_layers`
gets one scale (:func:`nmtoolchain.numerics.speck.quantize_layer`); the result
is the same graph with integer-valued weights, biases, thresholds, bounds and
initial values, the per-layer integers in ``annotations['speck']`` of each
convolution and a :class:`SpeckQuantReport`.

What the chip cannot hold is refused here, naming the layer:

* a neuron that fires at ``v > threshold`` becomes ``v >= threshold + 1`` on
  integers where that is exact (single spike, reset to zero); otherwise it
  keeps the threshold and the report says the spikes differ only when ``v``
  is exactly a multiple of it (subtracting ``threshold + 1`` would differ always);
* a layer whose weights all round to zero (for example a given ``min_v_mem``
  so deep that the 16-bit range forces the scale down: the ``min_v_mem=None``
  trap of sinabs) is refused with the bound and the scale it forced.
A graph without a bound gets the 16-bit floor (:func:`~nmtoolchain.numerics.speck.state_floor`).

What sinabs's time-stepped simulation and the chip may disagree on is noted,
not hidden: the chip emits at most one spike per input event, so a layer with
an integer weight above its threshold can be left above threshold after a
spike and fire again on later events, which sinabs's time-stepped simulation
(what ``nmtc verify`` compares with) does not model
(:func:`weights_above_threshold`; reference synsense_nir.md §1.6).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Tuple

import numpy as np

from nmtoolchain.errors import NotExpressibleError
from nmtoolchain.ir import Graph
from nmtoolchain.ir.neuron import IF
from nmtoolchain.numerics.speck import (MISSING_MIN_V_MEM, SpeckLayerNumerics, quantize_layer,
                                        state_floor)
from nmtoolchain.passes.speck_lower import dynapcnn_layers


@dataclasses.dataclass
class LayerQuantSpeck:
    """One layer's quantization: its node names, the chosen bound, the integers."""

    index: int
    conv: str
    neuron: str
    min_v_mem_float: float
    min_v_mem_chosen: bool
    numerics: SpeckLayerNumerics

    def as_dict(self) -> Dict[str, Any]:
        d = {"layer": self.index, "conv": self.conv, "neuron": self.neuron,
             "min_v_mem_float": self.min_v_mem_float,
             "min_v_mem_source": "chosen: 16-bit floor at the layer's scale"
             if self.min_v_mem_chosen else "given by the model"}
        d.update(self.numerics.as_dict())
        return d


@dataclasses.dataclass
class SpeckQuantReport:
    """Per-layer scales and integers of a Speck quantization."""

    layers: List[LayerQuantSpeck]
    notes: List[str] = dataclasses.field(default_factory=list)

    def as_dict(self) -> Dict[str, Any]:
        return {"layers": [lq.as_dict() for lq in self.layers], "notes": list(self.notes)}

    def lines(self) -> List[str]:
        return [f"  layer {lq.index} {lq.conv}: scale {lq.numerics.scale:.6g} (set by "
                f"{lq.numerics.limited_by}), threshold {lq.numerics.threshold}, min_v_mem "
                f"{lq.numerics.min_v_mem}, max |w| {int(np.abs(lq.numerics.weight).max())}"
                for lq in self.layers]


def quantize_for_speck(graph: Graph) -> Tuple[Graph, SpeckQuantReport]:
    """The lowered ``graph`` with Speck's integers (module docstring); a new graph."""
    import copy

    g = copy.deepcopy(graph)
    out: List[LayerQuantSpeck] = []
    notes: List[str] = []
    for spec in dynapcnn_layers(g):
        conv, neuron = g[spec.conv], g[spec.neuron]
        op = neuron.op
        thr = float(np.asarray(op.v_threshold).reshape(-1)[0])
        v_init = np.asarray(op.v_init, np.float32)
        chosen = op.v_min is None
        v_min = state_floor(conv.op.weight, conv.op.bias, thr, v_init) if chosen \
            else float(np.asarray(op.v_min).reshape(-1)[0])
        q = quantize_layer(conv.op.weight, conv.op.bias, thr, v_min, v_init)
        w = np.asarray(conv.op.weight)
        if np.any(w != 0) and not np.any(q.weight != 0):
            raise NotExpressibleError(
                f"layer {spec.index} ('{spec.conv}'): min_v_mem {v_min:.6g} with threshold "
                f"{thr:.6g} forces the scale down to {q.scale:.6g} (the 16-bit state range), "
                f"which rounds all {w.size} weights to 0 (largest |w| {float(np.abs(w).max()):.3g}); "
                "give a min_v_mem near -threshold or leave it unset")
        if q.threshold < 1:
            raise NotExpressibleError(
                f"layer {spec.index} ('{spec.conv}'): threshold {thr:.6g} rounds to "
                f"{q.threshold} at scale {q.scale:.6g}; Speck needs a positive threshold")
        threshold = q.threshold
        if op.compare == ">":
            if op.reset == "to_reset" and op.spike == "single":
                threshold += 1  # integers: v > t <=> v >= t + 1; reset to 0 ignores t
                q.threshold = threshold
                notes.append(f"{spec.neuron}: fires at v > {threshold - 1} as v >= {threshold} "
                             "(exact on integers with reset to zero)")
            else:
                notes.append(f"{spec.neuron}: the graph fires at v > threshold, Speck at v >= "
                             "threshold (and subtracts it): the spikes differ only when v is "
                             "exactly a multiple of the threshold")
        conv.op.weight = q.weight.astype(np.float32)
        conv.op.bias = q.bias.astype(np.float32)
        neuron.op = IF(r=1.0, v_threshold=float(threshold), v_reset=0.0, reset=op.reset,
                       v_init=q.v_init.astype(np.float32), v_min=float(q.min_v_mem),
                       v_bias=0.0, spike=op.spike, compare=">=")
        lq = LayerQuantSpeck(spec.index, spec.conv, spec.neuron, float(v_min), chosen, q)
        conv.annotations["speck"] = lq.as_dict()
        out.append(lq)
    g.metadata["speck_quantized"] = True
    g.infer_shapes()
    for neuron, (w, thr) in weights_above_threshold(g).items():
        notes.append(f"{neuron}: integer weight {w} above the threshold {thr}: the chip emits at "
                     "most one spike per input event, so such a neuron can stay above threshold "
                     "and fire on later events, which sinabs's time-stepped simulation (what nmtc "
                     "verify compares with) does not model: on the chip its spike counts can "
                     "differ")
    return g, SpeckQuantReport(out, notes)


def weights_above_threshold(graph: Graph) -> Dict[str, Tuple[int, int]]:
    """neuron -> (largest integer weight, threshold) of every layer of a quantized graph
    whose largest weight exceeds its threshold (module docstring: where the chip, one spike
    per input event at most, can differ from sinabs's time-stepped simulation)."""
    out: Dict[str, Tuple[int, int]] = {}
    for spec in dynapcnn_layers(graph):
        w = np.asarray(graph[spec.conv].op.weight)
        thr = float(np.asarray(graph[spec.neuron].op.v_threshold).reshape(-1)[0])
        top = float(w.max()) if w.size else 0.0
        if top > thr:
            out[spec.neuron] = (int(top), int(thr))
    return out


def is_quantized_for_speck(graph: Graph) -> bool:
    """True when the graph is already in Speck's integers (an earlier quantization)."""
    return bool(graph.metadata.get("speck_quantized"))


__all__ = ["quantize_for_speck", "is_quantized_for_speck", "weights_above_threshold",
           "SpeckQuantReport",
           "LayerQuantSpeck", "MISSING_MIN_V_MEM"]
