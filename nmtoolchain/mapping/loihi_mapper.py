"""The Loihi mapper: partition every neuron layer onto cores within a split
chip's per-core limits, and number the cores.

Layers are partitioned last to first, because a slice's output axons depend
on how its consumers were sliced; cores are then numbered in layer order
(topological order of the neuron nodes), slices in order within a layer, and
each core belongs to one layer. :func:`map_loihi` leaves the caller's graph
untouched: the placement annotations it computes travel on the report
(:meth:`MappingReport.annotated` writes them on a copy). Callers reach it
through :func:`nmtoolchain.mapping.place` (or ``map_onto_cores``). Nothing
here runs a network or writes files.
"""
from __future__ import annotations

import copy
import math
from typing import Dict, List, Mapping, Optional

import numpy as np

from hardware_profiles import Profile
from nmtoolchain.errors import BadInputError, DoesNotFitError, UnsupportedOpError
from nmtoolchain.ir import Graph
from nmtoolchain.mapping.layers import Layer, extract_layers
from nmtoolchain.mapping.limits import RESOURCES, CoreLimits, core_limits
from nmtoolchain.mapping.report import (CoreUse, LayerMapping, MappingReport,
                                        match_reference)

__all__ = ["map_loihi", "STRATEGIES"]

#: 'pack': fill each core as far as the limits allow, in order (the last slice
#: of a layer takes the rest); 'balance': the same number of cores, slices as
#: even as the limits allow.
STRATEGIES = ("pack", "balance")


def map_loihi(graph: Graph, prof: Profile, *, strategy: str = "pack", counts=None,
              spikes: Optional[Mapping[str, np.ndarray]] = None,
              limits: Optional[Mapping[str, float]] = None,
              what_if: Optional[bool] = None) -> MappingReport:
    """Partition ``graph``'s neuron layers onto the cores of ``prof``.

    Options as :func:`nmtoolchain.mapping.map_onto_cores`. The graph is not
    modified (a graph without inferred shapes is copied first).

    Raises DoesNotFitError when one neuron of a layer exceeds a core,
    UnsupportedOpError for a node the mapping cannot place (or a graph with
    no neuron layer), BadInputError for a profile that is not a split chip.
    """
    if strategy not in STRATEGIES:
        raise BadInputError(f"unknown mapping strategy {strategy!r}; choose one of "
                            f"{', '.join(STRATEGIES)}")
    if any(n.shape is None for n in graph.nodes.values()):
        graph = copy.deepcopy(graph).infer_shapes()
    lim = core_limits(prof, limits)
    layers = extract_layers(graph, lim)
    if not layers:
        raise UnsupportedOpError("mapping: the graph has no neuron layer to place")

    # partition last to first: consumers fix each neuron's destination cores
    dest: Dict[str, np.ndarray] = {L.neuron: np.zeros(L.n, np.int64) for L in layers}
    for layer in reversed(layers):
        if layer.recurrent:
            dest[layer.neuron] = _partition_recurrent(layer, dest[layer.neuron], lim, strategy)
        else:
            layer.check_single_neuron(dest[layer.neuron], lim)
            layer.slices = layer.geom.partition(lim, dest[layer.neuron], strategy)
        for s in layer.slices:
            mask = layer.geom.input_mask(s.box)
            for pre, cols in layer.sources():
                if pre != layer.neuron:
                    dest[pre] += mask[cols]

    # place: number cores in layer order
    next_id = 0
    for layer in layers:
        for s in layer.slices:
            s.core = next_id
            next_id += 1

    by_neuron = {L.neuron: L for L in layers}
    links = _links(layers, by_neuron)
    cores = _core_uses(layers, lim, links)
    layer_maps = [_layer_mapping(L, dest[L.neuron], lim) for L in layers]
    notes = _notes(layers, lim)
    report = MappingReport(
        profile_id=prof.id, chip_name=prof.name, strategy=strategy,
        limits=lim.limit_list(), layers=layer_maps, cores=cores,
        cores_per_chip=lim.cores_per_chip, notes=notes,
        shared_lower_bound=_shared_lower_bound(layer_maps, lim),
        reference=match_reference(layers, prof, len(cores)),
        annotations=_annotations(layers, lim, strategy))
    if spikes is not None or counts is not None:
        report.activity = _activity(layers, dest, spikes, counts, report)
    if what_if or (what_if is None and report.reference is not None):
        report.what_if = _what_if(graph, prof, strategy, lim, dict(limits or {}))
    return report


#: partitions of a recurrent layer tried before its own destinations settle
RECURRENT_ROUNDS = 16


def _own_destinations(layer: Layer) -> np.ndarray:
    """For each neuron of a recurrent layer, how many of its own layer's slices
    hold a recurrent synapse from it (one output axon each)."""
    own = np.zeros(layer.n, np.int64)
    cols = dict((p, c) for p, c in layer.sources())[layer.neuron]
    for s in layer.slices:
        own += layer.geom.input_mask(s.box)[cols]
    return own


def _partition_recurrent(layer: Layer, consumers: np.ndarray, lim: CoreLimits,
                         strategy: str) -> np.ndarray:
    """Slice a recurrent layer whose neurons also send to its own cores: the
    slicing fixes those destinations and the destinations bound the slicing,
    so partition again with them until the slicing no longer changes. Returns
    every neuron's destination cores (consumers' and its own)."""
    own = np.zeros(layer.n, np.int64)
    for _ in range(RECURRENT_ROUNDS):
        layer.check_single_neuron(consumers + own, lim)
        layer.slices = layer.geom.partition(lim, consumers + own, strategy)
        new = _own_destinations(layer)
        if np.array_equal(new, own):
            return consumers + own
        own = new
    raise DoesNotFitError(
        f"layer '{layer.name}' (recurrent) found no slicing within {RECURRENT_ROUNDS} rounds "
        "whose own output axons (one per core of the layer holding a recurrent synapse) fit "
        f"a {lim.profile_id} core")


def _what_if(graph: Graph, prof: Profile, strategy: str, lim: CoreLimits,
             given: Dict[str, float]) -> List[Dict[str, object]]:
    """Cores used when each assumed or fitted limit is relaxed, one at a time
    (and the two axon limits together): how much the answer rests on them."""
    unlimited = 2 ** 62
    kinds = {k: r.kind for k, r in lim.records.items()}
    variants = []
    axons = [r for r in ("input_axons", "output_axons") if kinds[r] in ("assumed", "fitted")]
    for r in axons:
        variants.append((f"{r} not enforced ({kinds[r]} limit)", {r: unlimited}))
    if len(axons) == 2:
        variants.append(("neither axon limit enforced", {r: unlimited for r in axons}))
    if kinds["neurons"] in ("assumed", "fitted") and lim.records["neurons"].key == \
            "packing_neurons_per_core" and prof.has("resources", "neurons_per_core"):
        n = int(prof.value("resources", "neurons_per_core"))
        variants.append((f"neurons per core = neurons_per_core {n:,} instead of the "
                         f"{kinds['neurons']} packing {lim.neurons:,}", {"neurons": n}))
    if lim.dense_storage and kinds["dense_storage"] in ("assumed", "fitted"):
        variants.append((f"only non-zero dense weights stored ({kinds['dense_storage']} dense "
                         f"storage off)", {"dense_storage": False}))
    shared_axons = lim.records["conv_shared_axons"]
    if lim.conv_shared_axons and (shared_axons.kind in ("assumed", "fitted")
                                  or shared_axons.confidence == "low"):
        variants.append(("one input axon per pre-synaptic neuron of a convolution "
                         "(conv_shared_axons off)", {"conv_shared_axons": False}))
    if lim.weight_sharing and kinds["weight_sharing"] in ("assumed", "fitted"):
        variants.append((f"no conv weight sharing ({kinds['weight_sharing']} sharing off)",
                         {"weight_sharing": False}))
    out = []
    for change, extra in variants:
        try:
            r = map_loihi(graph, prof, strategy=strategy, limits={**given, **extra},
                          what_if=False)
            out.append({"change": change, "cores_used": r.cores_used,
                        "cores_per_layer": {L.name: len(L.cores) for L in r.layers}})
        except DoesNotFitError as e:
            out.append({"change": change, "cores_used": None, "does_not_fit": str(e)})
    return out


# ------------------------------------------------------------------ traffic
def _links(layers: List[Layer], by_neuron: Dict[str, Layer]) -> Dict[int, Dict[int, int]]:
    """pre core -> {post core: pre neurons of that core with a synapse there}."""
    links: Dict[int, Dict[int, int]] = {}
    labels = {L.neuron: L.geom.label(L.slices) for L in layers}
    for post in layers:
        for pre, cols in post.sources():
            lab = labels[pre]
            for s in post.slices:
                hit = np.bincount(lab[post.geom.input_mask(s.box)[cols]])
                for pre_core in np.nonzero(hit)[0]:
                    links.setdefault(int(pre_core), {})[s.core] = int(hit[pre_core])
    return links


def _core_uses(layers: List[Layer], lim: CoreLimits,
               links: Dict[int, Dict[int, int]]) -> List[CoreUse]:
    out = []
    for layer in layers:
        for s in layer.slices:
            chip = s.core // lim.cores_per_chip if lim.cores_per_chip else 0
            dests = links.get(s.core, {})
            if sum(dests.values()) != s.needs["output_axons"]:  # two counts of one thing
                raise AssertionError(f"core {s.core}: output axons {s.needs['output_axons']} "
                                     f"!= links {sum(dests.values())}")
            out.append(CoreUse(id=s.core, layer=layer.name, neuron=layer.neuron, chip=chip,
                               box=layer.box_in_node_axes(s.box), needs=dict(s.needs),
                               utilization={r: s.needs[r] / lim.capacity(r) for r in RESOURCES},
                               destinations=sorted(dests)))
    return out


def _layer_mapping(layer: Layer, dest: np.ndarray, lim: CoreLimits) -> LayerMapping:
    totals = layer.geom.totals(dest)
    bound = {r: math.ceil(totals[r] / lim.capacity(r)) for r in RESOURCES}
    util = {r: max(s.needs[r] for s in layer.slices) / lim.capacity(r) for r in RESOURCES}
    binding = max(RESOURCES, key=lambda r: (util[r], -RESOURCES.index(r))) \
        if len(layer.slices) > 1 else "-"
    if layer.geom.slicing == "box":
        sizes = [tuple(e - s for s, e in sl.box) for sl in layer.slices]
        grid = tuple(len({sl.box[a] for sl in layer.slices}) for a in range(3))
        big = tuple(max(z[a] for z in sizes) for a in range(3))
        if len(layer.shape) == 2:
            grid, big = (grid[0], grid[2]), (big[0], big[2])
        slicing = (f"tiles of up to {'x'.join(map(str, big))} "
                   f"({'x'.join(map(str, grid))} grid over {'x'.join(map(str, layer.shape))})")
    else:
        slicing = f"contiguous ranges of up to {max(s.needs['neurons'] for s in layer.slices):,}"
    n_out = int(dest.sum())
    return LayerMapping(
        name=layer.name, neuron=layer.neuron, synapse=layer.synapse, kind=layer.kind,
        shape=list(layer.shape), neurons=layer.n, cores=[s.core for s in layer.slices],
        neurons_per_core=[s.needs["neurons"] for s in layer.slices], slicing=slicing,
        weight_bits=layer.weight_bits, weight_bits_note=layer.weight_bits_note,
        bits_per_synapse=layer.bits_per_synapse, quantized=layer.quantized,
        totals=totals, lower_bound_by_resource=bound,
        lower_bound=max(1, max(bound.values())), bound_by=binding,
        max_utilization=util, messages_per_spike=n_out / layer.n if layer.n else 0.0,
        recurrent=layer.recurrent, recurrent_sum=layer.recurrent_sum)


def _shared_lower_bound(layers: List[LayerMapping], lim: CoreLimits) -> int:
    return max(1, max(math.ceil(sum(L.totals[r] for L in layers) / lim.capacity(r))
                      for r in RESOURCES))


def _notes(layers: List[Layer], lim: CoreLimits) -> List[str]:
    notes = []
    floats = [L.name for L in layers if L.synapse is not None and not L.quantized]
    if floats:
        notes.append(f"{len(floats)} layer(s) have float weights ({', '.join(floats[:4])}"
                     f"{', ...' if len(floats) > 4 else ''}): synaptic memory assumes "
                     f"{lim.default_weight_bits}-bit weights (profile weight_bits); quantize "
                     f"first for exact widths")
    hosts = [L.name for L in layers if L.synapse is not None and L.pre is None]
    if hosts:
        notes.append(f"layer(s) {', '.join(hosts)} read the graph input: their input axons "
                     f"receive spikes from the host, whose traffic is not counted")
    recs = [L.name for L in layers if L.recurrent]
    if recs:
        notes.append(f"recurrent layer(s) {', '.join(recs)}: the recurrent synapses sit with "
                     "the input synapses on the layer's cores (synaptic memory, one input axon "
                     "per own neuron), and each neuron's output axons include its own layer's "
                     "cores")
    inputs = [L.name for L in layers if L.kind == "input"]
    if inputs:
        notes.append(f"input layer(s) {', '.join(inputs)} are neurons driven through their "
                     f"bias (as netx does): no synapses, no input axons")
    return notes


# ----------------------------------------------------------------- activity
def _activity(layers: List[Layer], dest: Dict[str, np.ndarray], spikes, counts,
              report: MappingReport) -> Dict[str, object]:
    """Spike messages per step: Σ over spiking neurons of their destination cores."""
    per_layer: Dict[str, np.ndarray] = {}
    per_core: Dict[int, np.ndarray] = {}
    basis = None
    if spikes is not None:
        basis = "recorded spikes per neuron (exact)"
        for layer in layers:
            if layer.neuron not in spikes:
                continue
            arr = spikes[layer.neuron]
            arr = arr.detach().cpu().numpy() if hasattr(arr, "detach") else np.asarray(arr)
            nd = len(layer.shape)
            if arr.ndim == nd + 2:
                events = (arr != 0).mean(0)
            elif arr.ndim == nd + 1:
                events = (arr != 0).astype(np.float64)
            else:
                raise BadInputError(f"spikes['{layer.neuron}'] has shape {arr.shape}; expected "
                                    f"(T, *{tuple(layer.shape)}) or (B, T, ...)")
            T = events.shape[0]
            ev = events.reshape(T, *layer.geom.axes_shape)
            d = dest[layer.neuron].reshape(layer.geom.axes_shape)
            for s in layer.slices:
                reg = (slice(None),) + layer.geom.region(s.box)
                m = (ev[reg] * d[layer.geom.region(s.box)]).reshape(T, -1).sum(1)
                per_core[s.core] = m
            per_layer[layer.neuron] = sum(per_core[s.core] for s in layer.slices)
    else:
        basis = ("run counts: spikes_out per layer spread evenly over its neurons "
                 "(RunCounts has no per-neuron counts)")
        c = counts.per_sample() if getattr(counts, "batch", 1) > 1 else counts
        for layer in layers:
            if layer.neuron not in c.nodes:
                continue
            out = np.asarray(c.counter(layer.neuron, "spikes_out"), dtype=np.float64)
            for s in layer.slices:
                per_core[s.core] = out * s.needs["output_axons"] / layer.n
            per_layer[layer.neuron] = sum(per_core[s.core] for s in layer.slices)
    if not per_layer:
        return {"basis": basis, "steps": 0, "note": "no activity for any placed layer"}
    steps = max(len(v) for v in per_layer.values())
    total = np.zeros(steps)
    for v in per_layer.values():
        total[:len(v)] += v
    for core in report.cores:
        if core.id in per_core:
            core.messages_per_step = float(per_core[core.id].mean())
    missing = [L.neuron for L in layers if L.neuron not in per_layer and L.consumers]
    return {"basis": basis, "steps": int(steps), "layers_without_activity": missing,
            "messages_per_step": [float(v) for v in total],
            "mean_messages_per_step": float(total.mean()),
            "max_messages_per_step": float(total.max()),
            "per_layer_mean": {k: float(v.mean()) for k, v in per_layer.items()}}


# -------------------------------------------------------------- annotations
def _annotations(layers: List[Layer], lim: CoreLimits,
                 strategy: str) -> Dict[str, Dict[str, object]]:
    """node -> its ``annotations['placement']`` (neuron and synapse nodes)."""
    out: Dict[str, Dict[str, object]] = {}
    for layer in layers:
        cores = [s.core for s in layer.slices]
        out[layer.neuron] = {
            "profile": lim.profile_id, "strategy": strategy,
            "cores": cores,
            "neurons_per_core": [s.needs["neurons"] for s in layer.slices],
            "slicing": "flat" if layer.geom.slicing == "flat" else "box",
            "boxes": [layer.box_in_node_axes(s.box) for s in layer.slices],
            "synaptic_memory_bits": [s.needs["synaptic_memory"] for s in layer.slices],
            "input_axons": [s.needs["input_axons"] for s in layer.slices],
            "output_axons": [s.needs["output_axons"] for s in layer.slices],
            "weight_bits": layer.weight_bits,
            "bits_per_synapse": layer.bits_per_synapse,
        }
        for node in layer.nodes:
            if node != layer.neuron:
                out[node] = {"profile": lim.profile_id, "cores": list(cores),
                             "with_neuron": layer.neuron}
    return out
