"""Give a converted network a spiking output layer, for targets that end in neurons.

A QCFS-converted network (:func:`nmtoolchain.convert.mst.convert_mst`) ends
in a synapse whose per-step output (the logits) is summed over time by the
host. A netx network must end in a neuron layer, and only spikes leave the
chip, so :func:`add_spiking_readout` puts an IF neuron between each such
synapse and its ``Output``: threshold λ = a high percentile of the synapse's
positive per-step values on calibration inputs (data-based normalization,
as :mod:`nmtoolchain.convert.threshold_balance` does for hidden layers),
reset by subtraction, so the spike count of class k approximates
Σ_t logit_k(t) / λ and the predicted class is the output neuron that spikes
most. The change is recorded in ``graph.metadata['output_decoding']`` and in
the new node's annotations; the pass never changes the graph it is given.
"""
from __future__ import annotations

import copy
from typing import Any, Dict

import numpy as np

from nmtoolchain.errors import BadInputError
from nmtoolchain.ir import IF, Graph

_SYNAPSES = ("Affine", "Linear", "Conv2d")

SPIKE_COUNT_DECODING = {
    "method": "spike_count",
    "rule": "class = output neuron with most spikes over the presentation (first on a tie)",
}


def readout_synapses(graph: Graph) -> Dict[str, str]:
    """{Output node: the synapse feeding it} for outputs read straight off a synapse."""
    return {o.name: o.inputs[0] for o in graph.outputs()
            if graph[o.inputs[0]].op_name in _SYNAPSES}


def add_spiking_readout(graph: Graph, calib_x: Any, steps: int, *,
                        percentile: float = 99.9) -> Graph:
    """A copy of ``graph`` with an IF neuron before every Output fed by a synapse.

    ``calib_x``: calibration inputs (B, *input shape) in the form the graph
    takes them (analog for a directly encoded graph, spike trains
    (B, T, ...) otherwise); the float simulator runs ``steps`` steps on them
    to measure each readout synapse's per-step values."""
    from simulators.cycle import Simulator

    targets = readout_synapses(graph)
    if not targets:
        return copy.deepcopy(graph)
    x = np.asarray(calib_x, dtype=np.float32)
    if len(x) == 0:
        raise BadInputError("add_spiking_readout: no calibration inputs")
    res = Simulator(graph, "float", record=sorted(set(targets.values())), count=False).run(x, steps)
    out = copy.deepcopy(graph)
    records = []
    for o_name, syn in sorted(targets.items()):
        vals = res.recorded[syn].detach().cpu().numpy().reshape(-1)
        pos = vals[vals > 0]
        lam = float(np.percentile(pos, percentile)) if pos.size else 1.0
        name = out.unique_name(f"{syn}_readout_if")
        out.add(name, IF(r=np.ones(()), v_threshold=np.asarray(lam), reset="subtract"), [syn],
                {"readout": {"threshold": lam, "percentile": percentile,
                             "added_by": "nmtoolchain.convert.readout.add_spiking_readout"}})
        out[o_name].inputs = (name,)
        records.append({"output": o_name, "synapse": syn, "neuron": name, "threshold": lam})
    out.infer_shapes()
    out.metadata["output_decoding"] = dict(SPIKE_COUNT_DECODING, readouts=records,
                                           replaces=graph.metadata.get("output_decoding"))
    return out
