"""SANA-FE as a referee: run an nmtc chain of synapses and IF neurons on SANA-FE's
silicon-calibrated Loihi model and read back its energy, time and events.

SANA-FE (Boyle et al., IEEE TCAD 2025; pypi ``sanafe``) is an independent
architecture simulator; its ``examples/loihi.yaml`` holds per-event energies
and latencies fitted to Loihi silicon. This module builds the same network
there (one neuron group per nmtc neuron node, connections from the weights of
the synaptic node feeding it), places each group's neurons on the cores a
:class:`~nmtoolchain.mapping.Placement` gives that layer (contiguous, equal
shares; core id ``k`` is SANA-FE's ``k``-th core, four per tile), feeds the
input spikes through SANA-FE input neurons (one extra core per 1,024 inputs)
and runs the ``detailed`` timing model.

Supported: ``Input -> (Affine | Linear | Conv2d without padding) -> IF ->
...`` chains (``Flatten`` between them) whose IF neurons have ``reset='to_reset'``, ``v_reset = 0``,
``r = 1``, no bias and weights on SANA-FE's 1/64 grid, so SANA-FE's LIF
(``potential > threshold``, hard reset, potential truncated to 1/64) makes
exactly the spikes nmtc's IF does. Anything else raises ``BadInputError``.

SANA-FE delivers a spike to the next layer one step later (Loihi's pipeline),
so a network of depth D needs ``T + D`` steps to drain (the input neurons fire first); :func:`run_sanafe`
runs that many and reports per-group spike totals, which then equal nmtc's.

``sanafe`` is imported inside :func:`run_sanafe` only; this module imports
without it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np

from nmtoolchain.errors import BadInputError
from nmtoolchain.ir import IF, Affine, Flatten, Graph, Linear
from nmtoolchain.ir.conv import Conv2d
from nmtoolchain.ir.io import Input, Output
from nmtoolchain.mapping import Placement

__all__ = ["SanafeRun", "SanafeLayer", "sanafe_layers", "run_sanafe", "SYNAPSE_HW"]

#: SANA-FE loihi.yaml synapse unit per nmtc synaptic op kind
SYNAPSE_HW = {"dense": "loihi_dense_synapse", "conv": "loihi_conv_synapse",
              "sparse": "loihi_sparse_synapse"}
_GRID = 64.0  # SANA-FE's LoihiLifModel truncates potentials to multiples of 1/64


@dataclass(frozen=True)
class SanafeLayer:
    """One neuron group: its IF node, the synaptic node feeding it, the source group."""

    neuron: str
    synapse: str
    source: str            # the input node or the previous IF node
    kind: str              # "dense" or "conv"
    n_neurons: int
    threshold: float
    pairs: np.ndarray      # (E, 2) source index -> destination index, C-order flattening
    weights: np.ndarray    # (E,)


@dataclass
class SanafeRun:
    """What SANA-FE reported: per step (length ``steps``) and totals, in pJ and ns."""

    steps: int
    energy_pj: Dict[str, float]              # synapse, dendrite, soma, network, total
    step_energy_pj: np.ndarray               # (steps,)
    step_ns: np.ndarray                      # (steps,)
    synaptic_events: int                     # SANA-FE 'spikes' (synapses processed)
    fired: int                               # neurons fired, input neurons included
    packets: int
    updated: int
    spikes_per_group: Dict[str, int] = field(default_factory=dict)

    @property
    def total_ns(self) -> float:
        return float(self.step_ns.sum())


def _conv_pairs(op: Conv2d, in_shape: Tuple[int, int, int]) -> Tuple[np.ndarray, np.ndarray,
                                                                         Tuple[int, int, int]]:
    w = np.asarray(op.weight, dtype=float)
    co, ci, kh, kw = w.shape
    c, h, wd = in_shape
    if tuple(op.padding) != (0, 0) or tuple(op.dilation) != (1, 1) or ci != c:
        raise BadInputError("sanafe referee: Conv2d needs padding 0, dilation 1, groups 1")
    sh, sw = op.stride
    oh, ow = (h - kh) // sh + 1, (wd - kw) // sw + 1
    src, dst, wt = [], [], []
    for o in range(co):
        for y in range(oh):
            for x in range(ow):
                d = (o * oh + y) * ow + x
                for i in range(ci):
                    for dy in range(kh):
                        for dx in range(kw):
                            src.append((i * h + y * sh + dy) * wd + x * sw + dx)
                            dst.append(d)
                            wt.append(w[o, i, dy, dx])
    return np.stack([src, dst], 1), np.asarray(wt), (co, oh, ow)


def sanafe_layers(graph: Graph) -> Tuple[str, int, List[SanafeLayer]]:
    """The chain's input node, its size, and its layers; refuses what SANA-FE's
    LIF cannot reproduce exactly (see the module docstring)."""
    ins = [n for n in graph if isinstance(n.op, Input)]
    if len(ins) != 1:
        raise BadInputError("sanafe referee: the graph needs exactly one Input")
    source = ins[0].name
    shape = tuple(int(s) for s in ins[0].op.shape)
    n_in = int(np.prod(shape))
    layers: List[SanafeLayer] = []
    pending: Optional[Tuple[str, str, np.ndarray, np.ndarray, int, tuple]] = None
    for node in graph.topological_order():
        op = node.op
        if isinstance(op, (Input, Output)):
            continue
        if isinstance(op, Flatten):  # C-order flattening: the same neuron indices
            shape = (int(np.prod(shape)),)
            continue
        if isinstance(op, (Affine, Linear)):
            w = np.asarray(op.weight, dtype=float)
            if getattr(op, "bias", None) is not None and np.any(op.bias):
                raise BadInputError(f"sanafe referee: layer '{node.name}' has a bias")
            if w.shape[1] != int(np.prod(shape)):
                raise BadInputError(f"sanafe referee: layer '{node.name}' input size mismatch")
            dst, src = np.nonzero(np.ones_like(w))  # zeros too: nmtc counts structural synapses
            pending = (node.name, "dense", np.stack([src, dst], 1), w[dst, src], w.shape[0],
                       (w.shape[0],))
        elif isinstance(op, Conv2d):
            pairs, wt, out_shape = _conv_pairs(op, shape)  # type: ignore[arg-type]
            pending = (node.name, "conv", pairs, wt, int(np.prod(out_shape)), out_shape)
        elif isinstance(op, IF):
            if pending is None:
                raise BadInputError(f"sanafe referee: neuron '{node.name}' has no synapse")
            if op.reset != "to_reset" or np.any(np.asarray(op.v_reset) != 0) or \
                    np.any(np.asarray(op.r) != 1) or np.any(np.asarray(op.v_bias) != 0):
                raise BadInputError(f"sanafe referee: IF '{node.name}' needs reset='to_reset', "
                                    "v_reset=0, r=1, no bias")
            thr = np.unique(np.asarray(op.v_threshold, dtype=float))
            if thr.size != 1:
                raise BadInputError(f"sanafe referee: IF '{node.name}' needs one threshold")
            name, kind, pairs, wt, n, out_shape = pending
            if np.any(np.abs(wt * _GRID - np.round(wt * _GRID)) > 1e-9):
                raise BadInputError(f"sanafe referee: layer '{name}' weights are not "
                                    "multiples of 1/64")
            layers.append(SanafeLayer(node.name, name, source, kind, n, float(thr[0]),
                                      pairs, wt))
            source, shape, pending = node.name, out_shape, None
        else:
            raise BadInputError(f"sanafe referee: op {type(op).__name__} ('{node.name}') "
                                "not supported")
    return ins[0].name, n_in, layers


def run_sanafe(graph: Graph, spikes: np.ndarray, placement: Placement,
               extra_steps: Optional[int] = None) -> SanafeRun:
    """Run ``graph`` on SANA-FE's Loihi model with binary input ``spikes``
    (T, n_inputs), each layer on the cores ``placement`` gives it; returns
    energy, time and events for ``T + extra_steps`` steps (default: the depth,
    enough to drain the pipeline)."""
    from nmtoolchain.vendors import require
    require("sanafe", "the SANA-FE referee")
    import sanafe
    inp_name, n_in, layers = sanafe_layers(graph)
    spikes = np.asarray(spikes)
    if spikes.ndim != 2 or spikes.shape[1] != n_in or not np.isin(spikes, (0, 1)).all():
        raise BadInputError(f"sanafe referee: spikes must be binary (T, {n_in})")
    steps = spikes.shape[0] + (len(layers) if extra_steps is None else extra_steps)

    arch = sanafe.load_loihi()
    cores = arch.cores()
    net = sanafe.Network()
    used: List[int] = []
    for layer in layers:
        placed = placement.layer_of(layer.neuron)
        if placed is None:
            raise BadInputError(f"sanafe referee: placement has no layer '{layer.neuron}'")
        used.extend(placed.cores)
    in_core0 = max(used) + 1
    n_in_cores = -(-n_in // 1024)
    if in_core0 + n_in_cores > len(cores):
        raise BadInputError(f"sanafe referee: needs {in_core0 + n_in_cores} cores, "
                            f"SANA-FE's Loihi has {len(cores)}")

    inp = net.create_neuron_group(inp_name, n_in, soma_hw_name="loihi_inputs[0]",
                                  log_spikes=True)
    padded = np.concatenate([spikes, np.zeros((steps - spikes.shape[0], n_in), int)])
    for i, n in enumerate(inp.neurons):
        n.set_attributes(soma_hw_name=f"loihi_inputs[{i % 1024}]",
                         model_attributes={"spikes": [bool(s) for s in padded[:, i]]})
        n.map_to_core(cores[in_core0 + i // 1024])
    groups = {inp_name: inp}
    for layer in layers:
        # SANA-FE fires when potential > threshold, nmtc's IF when v > threshold:
        # same comparison; potentials stay on the 1/64 grid, so no rounding differs.
        g = net.create_neuron_group(
            layer.neuron, layer.n_neurons,
            model_attributes={"threshold": layer.threshold, "reset": 0.0, "leak_decay": 1.0,
                              "input_decay": 0.0},
            default_synapse_hw_name=SYNAPSE_HW[layer.kind], soma_hw_name="loihi_lif", log_spikes=True)
        ids = placement.layer_of(layer.neuron).cores
        share = -(-layer.n_neurons // len(ids))
        for i, n in enumerate(g.neurons):
            n.map_to_core(cores[ids[i // share]])
        groups[layer.source].connect_neurons_sparse(
            g, {"weight": layer.weights.tolist()},
            [(int(s), int(d)) for s, d in layer.pairs])
        groups[layer.neuron] = g

    chip = sanafe.SpikingChip(arch)
    chip.load(net)
    res = chip.sim(steps, perf_trace=True, spike_trace=True)
    perf = res["perf_trace"]
    per_group: Dict[str, int] = {k: 0 for k in groups}
    for step in res["spike_trace"]:
        for addr in step:
            per_group[addr.group_name] = per_group.get(addr.group_name, 0) + 1
    energy = {k: float(v) * 1e12 for k, v in res["energy"].items()}
    return SanafeRun(steps=int(res["timesteps_executed"]), energy_pj=energy,
                     step_energy_pj=np.asarray(perf["total_energy"]) * 1e12,
                     step_ns=np.asarray(perf["sim_time"]) * 1e9,
                     synaptic_events=int(np.sum(perf["spikes"])),
                     fired=int(res["neurons_fired"]), packets=int(res["packets_sent"]),
                     updated=int(res["neurons_updated"]), spikes_per_group=per_group)
