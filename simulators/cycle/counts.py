"""What one simulation run counted, per node and per time step.

The interpreter fills a :class:`RunCounts` as a side effect of the same run
that computes the outputs (never a second walk). Every counter is an array
of shape (T,) summed over the batch; ``per_sample()`` divides by the batch.

Counters per node (absent ones are zero):

* ``events_in``       non-zero input elements (a multi-spike of 3 is one event)
* ``spikes_in``       sum of input values when the input is spikes/counts
* ``values_in``       sum of input values of a node with synapses, whatever
                      the input's kind (the Spikformer rule's firing rate of a
                      layer fed max-pooled or summed spikes)
* ``synops``          Σ input value × structural fan-out, for event inputs
                      (the hardware rule: every spike is delivered to every
                      synapse it has, border-aware for convolutions)
* ``macs``            Σ over non-zero real-valued inputs × fan-out (activity-
                      aware multiply-accumulates; the first layer of a network
                      fed analog values, and dynamic MatMuls of analog values)
* ``nb_ops``          NeuroBench effective ops: Σ [x≠0] × non-zero-weight fan-out
* ``nb_is_mac``       1 in steps where NeuroBench would book ``nb_ops`` as MACs
                      (some input value outside {-1, 0, 1}), else 0
* ``nb_mac_ops``      the part of ``nb_ops`` from samples whose own input held a
                      value outside {-1, 0, 1} at that step (NeuroBench run one
                      sample per forward call)
* ``neuron_updates``  neurons updated (every neuron, every step)
* ``active_neurons``  neurons that received non-zero input or spiked
* ``spikes_out``      sum of output spikes (multi-spikes count their value)
* ``tokens_active``   tokens the block of a TokenHalt (or the TokenMerge before
                      it) processed at that step (AT-SNN; token nodes only);
                      ``neuron_updates`` of neurons under token masks count
                      the active tokens' neurons only

Static facts per node (independent of activity), in ``static``:
``neurons``, ``synapses`` (border-aware), ``dense_macs`` (per step, FLOP-
counter convention), ``parameters``, ``input_numel``, ``input_binary``
(whether the node's inputs were only ever in {0, 1}; filled during the
run), ``input_kind``, ``inputs`` (node names), ``output_shape``,
``has_bias``, ``op``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Iterable, List

import numpy as np

COUNTERS: List[str] = ["events_in", "spikes_in", "values_in", "synops", "macs", "nb_ops",
                       "nb_is_mac", "nb_mac_ops", "neuron_updates", "active_neurons",
                       "spikes_out", "tokens_active"]


@dataclass
class RunCounts:
    """Per-node, per-step counters of one simulation run (summed over the batch)."""

    steps: int
    batch: int
    numerics: str
    nodes: Dict[str, Dict[str, np.ndarray]] = field(default_factory=dict)
    static: Dict[str, Dict[str, object]] = field(default_factory=dict)
    #: node names in execution order
    order: List[str] = field(default_factory=list)
    #: per token node (TokenHalt/TokenMerge): (T, N) 0/1, which tokens the node's
    #: block processed at each step, for the first sample of the batch (heat maps)
    token_masks: Dict[str, np.ndarray] = field(default_factory=dict)

    def counter(self, node: str, name: str) -> np.ndarray:
        """The (T,) series of one counter for one node (zeros if never counted)."""
        return self.nodes.get(node, {}).get(name, np.zeros(self.steps))

    def add(self, node: str, name: str, t: int, value: float) -> None:
        series = self.nodes.setdefault(node, {}).setdefault(name, np.zeros(self.steps))
        series[t] += float(value)

    def total(self, name: str, nodes: Iterable[str] = None) -> float:
        """Sum of a counter over steps and nodes (all nodes by default), per batch."""
        names = self.order if nodes is None else list(nodes)
        return float(sum(self.counter(n, name).sum() for n in names))

    def per_sample(self) -> "RunCounts":
        """The same counts divided by the batch size."""
        out = RunCounts(self.steps, 1, self.numerics, static=self.static, order=list(self.order),
                        token_masks=self.token_masks)
        for n, d in self.nodes.items():
            out.nodes[n] = {k: (v if k == "nb_is_mac" else v / self.batch) for k, v in d.items()}
        return out

    def as_dict(self) -> Dict[str, object]:
        """JSON-able form: totals per node and per counter, plus series."""
        return {
            "steps": self.steps, "batch": self.batch, "numerics": self.numerics,
            "order": self.order,
            "static": self.static,
            "nodes": {n: {k: v.tolist() for k, v in d.items()} for n, d in self.nodes.items()},
            "token_masks": {n: m.tolist() for n, m in self.token_masks.items()},
        }
