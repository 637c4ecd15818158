"""The per-layer mapper: each layer's cores estimated from the profile.

For chips without a dedicated mapper (Speck, a user's chip) and as the
reports' fallback when the Loihi mapper cannot place a graph. A *layer* is a
node that does work (neurons, stored synapses or multiply-accumulates per the
IR's :meth:`~nmtoolchain.ir.Graph.node_counts`) joined with the synaptic
nodes that feed only it, through nodes that do no work (on Loihi a conv and
its neurons live on the same cores). Each layer gets cores of its own:

* ``mapping = "split"``: enough cores for its neurons
  (``packing_neurons_per_core``, else ``neurons_per_core``) and for its stored
  synapses at ``synapse_bits`` each within ``synaptic_memory_per_core`` (with
  ``weight_sharing`` a convolution stores only its kernel);
* otherwise (``one-layer-per-core``, Speck): one core.

Nothing here checks that a layer fits a core (the Loihi mapper does); the
notes say when the cores exceed one chip. The graph is only read.
"""
from __future__ import annotations

import copy
import math
from typing import Dict, List, Optional

import numpy as np

from hardware_profiles import Profile
from nmtoolchain.ir import Graph
from nmtoolchain.mapping.placement import PlacedLayer, Placement

__all__ = ["place_per_layer", "group_layers"]

CONV_OPS = ("Conv1d", "Conv2d")


def group_layers(graph: Graph) -> Dict[str, List[str]]:
    """layer head (its neuron node, else the node) -> its nodes, in graph order.

    A working node that is not a neuron joins the neuron it reaches through a
    chain of single consumers that do no work; otherwise it is a layer alone."""
    order, _ = graph.order()
    counts = {n: graph.node_counts(graph[n]) for n in order}
    work = [n for n in order if counts[n]["neurons"] or counts[n]["synapses"]
            or counts[n]["macs"]]
    work_set = set(work)
    neurons = {n for n in work if graph[n].op.is_neuron}
    consumers: Dict[str, List[str]] = {}
    for node in graph.nodes.values():
        for src in node.inputs:
            consumers.setdefault(src, []).append(node.name)
    owner: Dict[str, str] = {}
    for n in work:
        if n in neurons:
            continue
        cur, seen = n, set()
        while cur not in seen:
            seen.add(cur)
            nxt = consumers.get(cur, [])
            if len(nxt) != 1:
                break
            cur = nxt[0]
            if cur in neurons:
                owner[n] = cur
                break
            if cur in work_set:  # another working node in between: not one layer
                break
    groups: Dict[str, List[str]] = {}
    for n in work:
        groups.setdefault(owner.get(n, n), [])
    for n in work:
        groups[owner.get(n, n)].append(n)
    return groups


def _stored_synapses(graph: Graph, node: str, prof: Profile) -> float:
    n = graph[node]
    if n.op_name in CONV_OPS and prof.get("resources", "weight_sharing", False):
        return float(np.asarray(n.op.weight).size)
    return float(graph.node_counts(n)["synapses"])


def _cores_for(graph: Graph, members: List[str], prof: Profile) -> int:
    if prof.mapping != "split":
        return 1
    neurons = sum(graph.node_counts(graph[m])["neurons"] for m in members)
    per_core = prof.get("resources", "packing_neurons_per_core") or \
        prof.get("resources", "neurons_per_core")
    need = 1
    if per_core:
        need = max(need, math.ceil(neurons / per_core))
    mem = prof.get("resources", "synaptic_memory_per_core")
    bits = prof.get("resources", "synapse_bits")
    if mem and bits:
        stored = sum(_stored_synapses(graph, m, prof) for m in members)
        need = max(need, math.ceil(stored * bits / mem))
    return need


def place_per_layer(graph: Graph, prof: Profile, cores_per_chip: Optional[int]) -> Placement:
    """Each layer of ``graph`` on cores of its own, counted from ``prof``
    (module docstring); cores numbered in layer order."""
    if any(n.shape is None for n in graph.nodes.values()):
        graph = copy.deepcopy(graph).infer_shapes()
    layers = []
    next_id = 0
    for head, members in group_layers(graph).items():
        k = _cores_for(graph, members, prof)
        layers.append(PlacedLayer(head, tuple(members), tuple(range(next_id, next_id + k))))
        next_id += k
    notes = []
    total = prof.get("resources", "cores")
    if total and next_id > total:
        if prof.mapping == "one-layer-per-core":
            notes.append(f"{next_id} layers need {next_id} cores; '{prof.id}' has "
                         f"{int(total)}: does not fit")
        else:
            notes.append(f"{next_id} cores exceed the {int(total)} of one '{prof.id}' chip: "
                         f"{math.ceil(next_id / total)} chips")
    return Placement(prof.id, "per_layer", tuple(layers), cores_per_chip, tuple(notes),
                     declared_mapper=prof.mapper)
