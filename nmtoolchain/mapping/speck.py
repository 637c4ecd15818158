"""Speck / DYNAP-CNN mapping: memory per layer, the chip's limits, core assignment.

A Speck has 9 cores; each holds one layer (:class:`~nmtoolchain.passes.speck_lower.DynapcnnLayerSpec`)
and has three memories. A layer with conv weight (f, c, kh, kw) and output
map (f, H, W) needs, as sinabs's ``DynapcnnLayer.memory_summary`` computes it:

* kernel memory ``c * 2^(ceil(log2(kh*kw)) + ceil(log2 f))`` entries,
* neuron memory ``f * 2^(ceil(log2 H) + ceil(log2 W))`` entries,
* bias memory ``f`` entries when the layer has a (non-zero) bias, else 0.

Core c takes a layer when all three fit its limits (profile ``speck``:
``kernel/neuron/bias_memory_per_core``). The assignment is a maximum
bipartite matching between layers and the cores they fit, found by
Edmonds-Karp on the unit-capacity flow graph sinabs builds (source, layers in
order, cores 0-8, sink; breadth-first augmenting paths), so the cores are the
ones sinabs's ``get_valid_mapping`` picks.

sinabs leaves the other chip limits to samna's ``validate_configuration``;
nmtc checks them here (:func:`layer_violations`): square kernel <= 16,
stride in {1, 2, 4, 8}, padding <= 7, no dilation or groups (the core
configuration has no field for them), square sum-pooling in {1, 2, 4}, at most
1024 channels, input map <= 128x128, output map <= 64x64, at most 2
destinations per layer, DVS input <= 2 channels. A violation raises
:class:`~nmtoolchain.errors.DoesNotFitError` naming the layer, the limit and the value.

:func:`place_speck` is the ``speck`` mapper of :func:`nmtoolchain.mapping.place`
(profile ``[chip] mapper = "speck"``): it lowers and quantizes a graph as the
Speck export does (BatchNorm and spike amplitudes folded, DYNAP-CNN layers,
sinabs's discretize) and runs :func:`map_speck` on the result, so ``nmtc
report -p speck`` and ``nmtc export --target speck`` name the same core for
every layer; the export's mapping pass calls the same function.

Imports numpy and the profile loader; :func:`place_speck` also imports the
Speck lowering and quantization (torch, through the sinabs discretize rule).
"""
from __future__ import annotations

import collections
import dataclasses
import math
from typing import Any, Dict, List, Optional, Sequence, Tuple

from nmtoolchain.errors import DoesNotFitError, UnsupportedOpError
from nmtoolchain.mapping.placement import PlacedLayer, Placement

#: sinabs 3.1.3 chips/dynapcnn.py get_constraints, cores 0..8 (used without a profile)
KERNEL_MEMORY = (16384, 16384, 16384, 32768, 32768, 65536, 65536, 16384, 16384)
NEURON_MEMORY = (65536, 65536, 65536, 32768, 32768, 16384, 16384, 16384, 16384)
BIAS_MEMORY = (1024,) * 9

MAX_KERNEL = 16
STRIDES = (1, 2, 4, 8)
MAX_PADDING = 7
POOLS = (1, 2, 4)
MAX_CHANNELS = 1024
MAX_INPUT = 128
MAX_OUTPUT = 64
MAX_DESTINATIONS = 2
MAX_DVS_CHANNELS = 2


@dataclasses.dataclass(frozen=True)
class CoreLimits:
    """One core's three memories, in entries."""

    core: int
    kernel: int
    neuron: int
    bias: int

    def fits(self, need: "LayerMemory") -> bool:
        return (0 <= need.kernel <= self.kernel and 0 <= need.neuron <= self.neuron
                and 0 <= need.bias <= self.bias)


def speck_cores(profile: Any = None) -> List[CoreLimits]:
    """The per-core limits from a hardware profile (``speck``), or sinabs's table."""
    if profile is not None and profile.has("resources", "kernel_memory_per_core"):
        k = profile.quantity("resources", "kernel_memory_per_core").value
        n = profile.quantity("resources", "neuron_memory_per_core").value
        b = profile.quantity("resources", "bias_memory_per_core").value
    else:
        k, n, b = KERNEL_MEMORY, NEURON_MEMORY, BIAS_MEMORY
    return [CoreLimits(i, int(k[i]), int(n[i]), int(b[i])) for i in range(len(k))]


def _log2_ceil(x: int) -> int:
    return int(math.ceil(math.log2(x))) if x > 0 else 0


@dataclasses.dataclass
class LayerMemory:
    """What one layer needs from a core, and which cores it fits."""

    layer: int
    name: str
    kernel: int
    neuron: int
    bias: int
    fits: List[int] = dataclasses.field(default_factory=list)

    def as_dict(self) -> Dict[str, Any]:
        return {"layer": self.layer, "name": self.name, "kernel_memory": self.kernel,
                "neuron_memory": self.neuron, "bias_memory": self.bias, "fits_cores": self.fits}


def layer_memory(out_channels: int, in_channels_per_group: int, kernel: Sequence[int],
                 out_hw: Sequence[int], has_bias: bool) -> Tuple[int, int, int]:
    """(kernel, neuron, bias) memory entries of one layer (sinabs's memory_summary)."""
    f, c = int(out_channels), int(in_channels_per_group)
    kern = c * 2 ** (_log2_ceil(int(kernel[0]) * int(kernel[1])) + _log2_ceil(f))
    neur = f * 2 ** (_log2_ceil(int(out_hw[0])) + _log2_ceil(int(out_hw[1])))
    return kern, neur, (f if has_bias else 0)


def spec_memory(spec: Any, weight_shape: Sequence[int]) -> LayerMemory:
    """:class:`LayerMemory` of a :class:`DynapcnnLayerSpec` with its conv weight shape."""
    k, n, b = layer_memory(weight_shape[0], weight_shape[1], spec.kernel, spec.out_shape[1:],
                           spec.has_bias)
    return LayerMemory(spec.index, spec.conv, k, n, b)


@dataclasses.dataclass(frozen=True)
class Violation:
    """One chip limit a layer exceeds: the sentence names layer, limit and value."""

    layer: int
    name: str
    limit: str
    value: Any
    allowed: Any

    def message(self) -> str:
        return (f"layer {self.layer} ('{self.name}'): {self.limit} is {self.value}; Speck allows "
                f"{self.allowed}")


def layer_violations(spec: Any, *, dvs_input: bool = False) -> List[Violation]:
    """Every samna-level limit (module docstring) ``spec`` exceeds, in a fixed order."""
    out: List[Violation] = []
    v = lambda limit, value, allowed: out.append(  # noqa: E731
        Violation(spec.index, spec.conv, limit, value, allowed))
    kh, kw = spec.kernel
    if kh != kw:
        v("kernel size", f"{kh}x{kw}", "square kernels only")
    if max(kh, kw) > MAX_KERNEL:
        v("kernel size", max(kh, kw), f"at most {MAX_KERNEL}")
    for axis, s in zip("yx", spec.stride):
        if s not in STRIDES:
            v(f"stride ({axis})", s, "1, 2, 4 or 8")
    for axis, p in zip("yx", spec.padding):
        if p > MAX_PADDING:
            v(f"padding ({axis})", p, f"0 to {MAX_PADDING}")
    if tuple(spec.dilation) != (1, 1):
        v("dilation", tuple(spec.dilation), "none (1, 1): the core configuration has no dilation")
    if spec.groups != 1:
        v("groups", spec.groups, "1: the core configuration has no grouped convolution")
    c_in, h_in, w_in = spec.in_shape
    f, h_out, w_out = spec.out_shape
    if c_in > MAX_CHANNELS:
        v("input channels", c_in, f"at most {MAX_CHANNELS}")
    if f > MAX_CHANNELS:
        v("output channels", f, f"at most {MAX_CHANNELS}")
    if h_in > MAX_INPUT or w_in > MAX_INPUT:
        v("input size", f"{h_in}x{w_in}", f"at most {MAX_INPUT}x{MAX_INPUT}")
    if h_out > MAX_OUTPUT or w_out > MAX_OUTPUT:
        v("output size", f"{h_out}x{w_out}", f"at most {MAX_OUTPUT}x{MAX_OUTPUT}")
    if len(spec.destinations) > MAX_DESTINATIONS:
        v("fan-out (destinations)", len(spec.destinations), f"at most {MAX_DESTINATIONS}")
    for d in spec.destinations:
        ph, pw = d.pool
        if ph != pw:
            v("sum pooling", f"{ph}x{pw}", "square pooling only")
        elif ph not in POOLS:
            v("sum pooling", ph, "1, 2 or 4")
    if dvs_input and spec.source is None and c_in > MAX_DVS_CHANNELS:
        v("DVS input channels", c_in, f"at most {MAX_DVS_CHANNELS} (polarities)")
    return out


# ------------------------------------------------------------ assignment
class _Edge:
    __slots__ = ("s", "t", "cap", "flow", "rev")

    def __init__(self, s: int, t: int, cap: int) -> None:
        self.s, self.t, self.cap, self.flow = s, t, cap, 0
        self.rev: Optional["_Edge"] = None


def _link(graph: List[List[_Edge]], s: int, t: int) -> None:
    fwd, back = _Edge(s, t, 1), _Edge(t, s, 0)
    fwd.rev, back.rev = back, fwd
    graph[s].append(fwd)
    graph[t].append(back)


def assign_cores(fits: Sequence[Sequence[int]], n_cores: int = 9) -> Optional[List[int]]:
    """Core per layer by maximum bipartite matching (Edmonds-Karp on sinabs's flow
    graph and edge order), or None when some layer gets no core."""
    n = len(fits)
    source, sink = 0, n + n_cores + 1
    graph: List[List[_Edge]] = [[] for _ in range(sink + 1)]
    for i in range(n):
        _link(graph, source, i + 1)
    for i, cores in enumerate(fits):
        for c in cores:
            _link(graph, i + 1, n + 1 + c)
    for c in range(n_cores):
        _link(graph, n + 1 + c, sink)
    while True:
        pred: List[Optional[_Edge]] = [None] * len(graph)
        queue = collections.deque([source])
        while queue:
            cur = queue.popleft()
            for e in graph[cur]:
                if pred[e.t] is None and e.t != source and e.cap > e.flow:
                    pred[e.t] = e
                    queue.append(e.t)
        if pred[sink] is None:
            break
        e = pred[sink]
        while e is not None:
            e.flow += 1
            e.rev.flow -= 1
            e = pred[e.s]
    cores = []
    for i in range(n):
        got = [e.t - n - 1 for e in graph[i + 1] if e.t > n and e.flow == 1]
        if not got:
            return None
        cores.append(got[0])
    return cores


@dataclasses.dataclass
class SpeckMapping:
    """Memory per layer and per core against the limits, and the assignment."""

    layers: List[LayerMemory]
    cores: List[CoreLimits]
    assignment: Dict[int, int]  # layer -> core

    def as_dict(self) -> Dict[str, Any]:
        by_core = {c: l for l, c in self.assignment.items()}
        return {
            "chip": "speck", "method": "maximum bipartite matching (Edmonds-Karp), as sinabs "
                                       "get_valid_mapping",
            "layers": [dict(m.as_dict(), core=self.assignment[m.layer]) for m in self.layers],
            "cores": [{"core": c.core, "kernel_memory_limit": c.kernel,
                       "neuron_memory_limit": c.neuron, "bias_memory_limit": c.bias,
                       "layer": by_core.get(c.core),
                       "kernel_memory_used": self.layers[by_core[c.core]].kernel
                       if c.core in by_core else 0,
                       "neuron_memory_used": self.layers[by_core[c.core]].neuron
                       if c.core in by_core else 0,
                       "bias_memory_used": self.layers[by_core[c.core]].bias
                       if c.core in by_core else 0} for c in self.cores],
            "assignment": {str(k): v for k, v in self.assignment.items()}}

    def lines(self) -> List[str]:
        out = [f"Speck mapping: {len(self.layers)} layer(s) on {len(self.cores)} cores "
               "(bipartite matching, as sinabs)"]
        for m in self.layers:
            c = self.cores[self.assignment[m.layer]]
            out.append(f"  layer {m.layer} {m.name} -> core {c.core}: kernel {m.kernel}/{c.kernel}, "
                       f"neuron {m.neuron}/{c.neuron}, bias {m.bias}/{c.bias} (fits cores {m.fits})")
        return out


def map_speck(specs: Sequence[Any], weight_shapes: Sequence[Sequence[int]], profile: Any = None,
              *, dvs_input: bool = False) -> SpeckMapping:
    """Check every layer against the chip and assign cores; DoesNotFitError on the first
    violation (layer, limit, value)."""
    cores = speck_cores(profile)
    for spec in specs:
        bad = layer_violations(spec, dvs_input=dvs_input)
        if bad:
            raise DoesNotFitError(bad[0].message())
    mems = [spec_memory(s, w) for s, w in zip(specs, weight_shapes)]
    for m in mems:
        m.fits = [c.core for c in cores if c.fits(m)]
        if not m.fits:
            raise DoesNotFitError(_no_core_message(m, cores))
    if len(mems) > len(cores):
        raise DoesNotFitError(f"{len(mems)} layers: Speck has {len(cores)} cores (one layer "
                              "per core)")
    got = assign_cores([m.fits for m in mems], len(cores))
    if got is None:
        raise DoesNotFitError(
            "no valid core assignment: the layers' memory needs fit too few distinct cores ("
            + "; ".join(f"layer {m.layer} fits {m.fits}" for m in mems) + ")")
    return SpeckMapping(mems, cores, {m.layer: c for m, c in zip(mems, got)})


def lower_for_speck(graph: Any) -> Any:
    """``graph`` as the Speck export's passes leave it before the mapping: BatchNorm
    and spike amplitudes folded, lowered to DYNAP-CNN layers, quantized by sinabs's
    discretize rule (a new graph; one already quantized for Speck is returned as is).

    Raises UnsupportedOpError for a node kind Speck has no layer for (the export's
    refusal, same reason) and NotExpressibleError for what the lowering or the
    quantization cannot express (both name the node or layer)."""
    from nmtoolchain.passes import fold_batchnorm, fold_scales
    from nmtoolchain.passes.speck_lower import lower_to_dynapcnn, refused_nodes
    from nmtoolchain.quantize.speck import is_quantized_for_speck, quantize_for_speck

    if is_quantized_for_speck(graph):
        return graph
    refused = refused_nodes(graph)
    if refused:
        name, op, why = refused[0]
        more = f" (and {len(refused) - 1} more node(s))" if len(refused) > 1 else ""
        raise UnsupportedOpError(f"node '{name}' (op {op}) has no Speck layer: {why}{more}")
    g = graph
    if any(n.op_name == "BatchNorm" for n in g):
        g = fold_batchnorm(g)
    if any(n.op_name == "Scale" for n in g):
        g = fold_scales(g)
    g, _ = lower_to_dynapcnn(g)
    g, _ = quantize_for_speck(g)
    return g


def _layer_nodes(graph: Any, specs: Sequence[Any]) -> List[Tuple[str, List[str]]]:
    """(layer name, nodes of ``graph`` computed on that layer's core) per spec.

    A layer is its convolution, its neurons and the poolings and merge at its
    outputs; a node of ``graph`` the lowering folded away (BatchNorm, Flatten,
    Scale) joins the layer it feeds through single consumers, else the layer
    that feeds it. Nodes the lowering added (a spiking readout) are not in
    ``graph`` and are left out; Input and Output take no core."""
    present = set(graph.nodes)
    owner: Dict[str, int] = {}
    for i, spec in enumerate(specs):
        for n in (spec.conv, spec.neuron, *(p for d in spec.destinations for p in d.pool_nodes)):
            if n in present:
                owner.setdefault(n, i)
    order = [n.name for n in graph.topological_order()]
    users: Dict[str, List[str]] = {}
    for node in graph.nodes.values():
        for src in node.inputs:
            users.setdefault(src, []).append(node.name)
    for n in order:
        if n in owner or graph[n].op_name in ("Input", "Output"):
            continue
        cur, seen = n, set()
        while cur not in owner and cur not in seen and len(users.get(cur, [])) == 1:
            seen.add(cur)
            cur = users[cur][0]
        if cur not in owner:
            cur = n
            while cur not in owner and graph[cur].inputs:
                cur = graph[cur].inputs[0]
        if cur in owner:
            owner[n] = owner[cur]
    out = []
    for i, spec in enumerate(specs):
        nodes = [n for n in order if owner.get(n) == i]
        head = spec.neuron if spec.neuron in present else spec.conv
        out.append((head, nodes))
    return out


def place_speck(graph: Any, profile: Any, *, dvs_input: bool = False) -> Placement:
    """The ``speck`` mapper: ``graph`` lowered and quantized as the export does
    (:func:`lower_for_speck`), checked against the chip and given one core per
    layer by :func:`map_speck`; the placement names ``graph``'s own nodes and
    carries the :class:`SpeckMapping` as ``Placement.speck``. ``graph`` is not
    modified. Raises what :func:`lower_for_speck` and :func:`map_speck` raise."""
    from nmtoolchain.passes.speck_lower import dynapcnn_layers

    low = lower_for_speck(graph)
    specs = dynapcnn_layers(low)
    mapping = map_speck(specs, [low[s.conv].op.weight.shape for s in specs], profile,
                        dvs_input=dvs_input)
    layers = tuple(PlacedLayer(head, tuple(nodes), (mapping.assignment[spec.index],))
                   for spec, (head, nodes) in zip(specs, _layer_nodes(graph, specs)) if nodes)
    notes = []
    if profile is None or not profile.has("resources", "kernel_memory_per_core"):
        notes.append("per-core kernel/neuron/bias memories: sinabs 3.1.3's table for Speck "
                     "(the profile lists none)")
    return Placement(profile.id if profile is not None else "speck", "speck", layers, None,
                     tuple(notes), declared_mapper=profile.mapper if profile is not None
                     else "speck", speck=mapping)


def _no_core_message(m: LayerMemory, cores: Sequence[CoreLimits]) -> str:
    for what, need, top in (("kernel memory", m.kernel, max(c.kernel for c in cores)),
                            ("neuron memory", m.neuron, max(c.neuron for c in cores)),
                            ("bias memory", m.bias, max(c.bias for c in cores))):
        if need > top:
            return (f"layer {m.layer} ('{m.name}'): {what} is {need} entries; the largest Speck "
                    f"core holds {top}")
    return (f"layer {m.layer} ('{m.name}'): kernel memory {m.kernel} and neuron memory {m.neuron} "
            "entries fit no single Speck core (" + ", ".join(
                f"core {c.core}: {c.kernel}/{c.neuron}" for c in cores) + ")")


__all__ = ["CoreLimits", "LayerMemory", "SpeckMapping", "Violation", "speck_cores",
           "layer_memory", "spec_memory", "layer_violations", "assign_cores", "map_speck",
           "lower_for_speck", "place_speck",
           "KERNEL_MEMORY", "NEURON_MEMORY", "BIAS_MEMORY"]
