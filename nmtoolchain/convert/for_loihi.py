"""Adapt a converted (QCFS/MST) SNN to what Loihi's CUBA neurons can do.

A QCFS-converted network relies on three things netx's CUBA neuron lacks:
reset by subtraction (Loihi resets v to 0, losing the charge above the
threshold), a membrane pre-charged to λ/2 (Loihi starts at v = 0), and an
analog output summed over time (a netx network ends in spiking neurons).
Dropping the first two silently costs the digits QCFS CNN about 25 points
(98.4% -> 72% at T = 32, measured), so :func:`adapt_for_loihi` changes the
network in three documented steps, all in float, before quantization:

1. **Spiking readout** (:func:`nmtoolchain.convert.readout.add_spiking_readout`):
   an IF neuron after the logits synapse; class = most output spikes.
2. **Threshold headroom k** for every subtract-reset IF followed by its
   ``Scale(λ)``: threshold λ -> kλ and amplitude λ -> kλ, so a spike still
   stands for the same charge, but one step's input is at most ~1/k of the
   threshold and reset-to-zero loses at most that much per spike. Costs k
   times fewer spikes per unit of activation (resolution 1/(kT)).
3. **Pre-charge spread as a bias**: v_init = kλ/2 becomes a constant bias
   kλ/(2T) over the T-step presentation (Loihi has no initial v, but has a
   per-neuron bias), which adds the same half-threshold of charge by step T.

Then every IF resets to zero (what Loihi does). k is chosen from ``ks`` by
simulating the adapted float network on the calibration inputs and keeping
the k whose predictions agree most with the unadapted network's (ties: the
smaller k). The result records the choice and the per-k agreement in
``metadata['loihi_adaptation']``. Scales are left in place (a later
:func:`nmtoolchain.passes.fold_scales` moves them into weights).
"""
from __future__ import annotations

import copy
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np

from nmtoolchain.errors import BadInputError
from nmtoolchain.ir import Graph

DEFAULT_HEADROOMS: Tuple[int, ...] = (1, 2, 4, 8)


def needs_adaptation(graph: Graph) -> bool:
    """True when the graph has a subtract-reset or pre-charged IF, or an output
    read straight off a synapse (what a QCFS/MST conversion produces)."""
    from nmtoolchain.convert.readout import readout_synapses

    for n in graph:
        if n.op_name == "IF" and (n.op.reset == "subtract"
                                  or np.any(np.asarray(n.op.v_init) != 0)):
            return True
    return bool(readout_synapses(graph))


def _scaled_ifs(graph: Graph) -> List[Tuple[str, List[str]]]:
    """[(IF node, [its Scale users])] for IFs whose every user is a Scale."""
    out = []
    for n in graph:
        if n.op_name != "IF":
            continue
        users = graph.users(n.name)
        if users and all(u.op_name == "Scale" for u in users):
            out.append((n.name, [u.name for u in users]))
    return out


def with_headroom(graph: Graph, k: float, steps: int) -> Graph:
    """Steps 2 and 3 of the module docstring for one k, plus reset to zero."""
    g = copy.deepcopy(graph)
    scaled = dict(_scaled_ifs(g))
    for n in g:
        if n.op_name != "IF":
            continue
        kk = k if n.name in scaled else 1.0
        op = n.op
        op.v_threshold = np.asarray(op.v_threshold, np.float64) * kk
        pre = np.asarray(op.v_init, np.float64) * kk
        op.v_bias = np.asarray(op.v_bias, np.float64) + pre / float(steps)
        op.v_init = np.zeros(())
        op.reset = "to_reset"
        op.v_reset = np.zeros(())
        for s in scaled.get(n.name, []):
            g[s].op.scale = np.asarray(g[s].op.scale, np.float64) * kk
    return g


def _predictions(graph: Graph, x: np.ndarray, steps: int) -> np.ndarray:
    from simulators.cycle import Simulator

    outs = [o.name for o in graph.outputs()]
    src = graph[outs[0]].inputs[0]
    res = Simulator(graph, "float", record=[src], count=False).run(x, steps)
    return res.recorded[src].sum(1).detach().cpu().numpy().reshape(len(x), -1).argmax(1)


def adapt_for_loihi(graph: Graph, calib_x: Any, steps: int,
                    ks: Sequence[float] = DEFAULT_HEADROOMS) -> Graph:
    """A copy of ``graph`` adapted to reset-to-zero CUBA neurons (module docstring).

    ``calib_x``: calibration inputs in the form the graph takes (B, T, ...)
    spike trains or (B, ...) analog values; ``steps``: the presentation
    length T the export is for."""
    from nmtoolchain.convert.readout import add_spiking_readout

    x = np.asarray(calib_x, dtype=np.float32)
    if len(x) == 0:
        raise BadInputError("adapt_for_loihi: no calibration inputs")
    if not ks:
        raise BadInputError("adapt_for_loihi: no headroom values to try")
    reference = _predictions(graph, x, steps)
    g = add_spiking_readout(graph, x, steps)
    agreement: Dict[str, float] = {}
    best, best_agree, best_g = None, -1.0, g
    for k in ks:
        cand = with_headroom(g, float(k), steps)
        agree = float((_predictions(cand, x, steps) == reference).mean())
        agreement[str(k)] = agree
        if agree > best_agree:
            best, best_agree, best_g = k, agree, cand
    best_g.metadata["loihi_adaptation"] = {
        "steps": int(steps), "headroom": best, "agreement_with_unadapted": agreement,
        "calibration_samples": int(len(x)),
        "changes": ["spiking IF readout after the logits synapse (class = most spikes)",
                    f"threshold and spike amplitude x{best} on IF neurons followed by Scale",
                    f"pre-charge v_init moved to a bias of v_init/{steps} per step",
                    "reset by subtraction -> reset to 0 (Loihi CUBA)"],
    }
    return best_g
