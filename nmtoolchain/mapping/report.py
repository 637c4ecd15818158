"""The mapping's resource report: cores used, per-core utilization, per-layer
cores, lower bounds, traffic between cores, the limits assumed (with their
sources), and, for a network whose real mapping is published, the comparison.

Lower bounds (each core holds slices of one layer only, as the mapping does):

* per layer and resource r: ``ceil(total_r / capacity_r)``, where total is the
  layer's neurons; its synaptic memory (every stored synapse, or each shared
  kernel once); its distinct pre-synaptic neurons (each needs an input axon on
  at least one core); and its neurons that have a synapse downstream (each
  needs at least one output axon). The layer's bound is the largest (>= 1).
* ``lower_bound`` = the sum of the layers' bounds: no mapping that gives each
  core to one layer can use fewer cores.
* ``shared_lower_bound`` = max over resources of ceil(network total /
  capacity): a bound even for mappings that share cores between layers.

The distance from the bound is ``cores_used - lower_bound``. This module
formats; it computes nothing that needs the graph.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from hardware_profiles import Profile
from nmtoolchain.ir import Graph
from nmtoolchain.mapping.limits import RESOURCES, Limit

__all__ = ["CoreUse", "LayerMapping", "MappingReport", "match_reference", "REFERENCE_MAPPINGS"]

#: Mappings of whole networks published by a vendor's own compiler, recognised
#: by their neuron layer shapes (in layer order).
REFERENCE_MAPPINGS = {
    "pilotnet_lif": {
        "network": "Intel's PilotNet-LIF (lava-dl tests gts/pilotnet_lif/network.net)",
        "layer_shapes": [[3, 66, 200], [24, 32, 99], [36, 15, 49], [48, 7, 24], [64, 4, 22],
                         [64, 2, 20], [100], [50], [10], [1]],
        "profiles": ("loihi2",),
        "details": ("conv layers packed at 2,048-3,168 neurons per core (e.g. 3,072 per core "
                    "for the 24x32x99 conv over 25 cores); the 2560->100 dense layer over 12 "
                    "cores because of synaptic memory"),
        "details_source": ("lava-dl tutorials/lava/lib/dl/netx/pilotnet_snn/benchmark.ipynb "
                           "(lava-loihi compiler, Oheo Gulch)"),
        #: cores per neuron layer, in layer order, from the compiler's "Per core
        #: distribution" table printed in that notebook
        "cores_per_layer": [13, 25, 13, 3, 3, 2, 12, 1, 1, 1],
        "conv_neurons_per_core": "2,048-3,168",
        #: a fitted limit whose source names this word was fitted on this mapping
        "fit_marker": "pilotnet",
    },
    "oxford": {
        "network": ("Intel's Oxford network (lava-dl tutorials/lava/lib/dl/netx/oxford/"
                    "Trained/network.net, dense 200->256->200)"),
        "layer_shapes": [[256], [200]],
        "profiles": ("loihi2",),
        "details": "3 cores of 85-86 neurons for the 256-neuron layer, 2 of 100 for the 200",
        "details_source": ("lava-dl tutorials/lava/lib/dl/netx/oxford/run.ipynb (lava-loihi "
                           "compiler)"),
        "cores_per_layer": [3, 2],
        "fit_marker": "oxford",
    },
}


@dataclass
class CoreUse:
    """One core: which layer slice it holds and what that slice uses."""

    id: int
    layer: str
    neuron: str
    chip: int
    box: List[List[int]]                # the slice, in the neuron node's axes
    needs: Dict[str, int]               # resource -> amount
    utilization: Dict[str, float]       # resource -> need / capacity
    destinations: List[int]             # cores its neurons send spikes to
    messages_per_step: Optional[float] = None

    def as_dict(self) -> Dict[str, object]:
        d = {"id": self.id, "layer": self.layer, "neuron": self.neuron, "chip": self.chip,
             "box": self.box, "needs": dict(self.needs),
             "utilization": {r: round(u, 6) for r, u in self.utilization.items()},
             "destinations": list(self.destinations)}
        if self.messages_per_step is not None:
            d["messages_per_step"] = self.messages_per_step
        return d


@dataclass
class LayerMapping:
    """One layer: its cores, needs and lower bound."""

    name: str
    neuron: str
    synapse: Optional[str]
    kind: str                              # input, dense, conv
    shape: List[int]
    neurons: int
    cores: List[int]
    neurons_per_core: List[int]
    slicing: str
    weight_bits: int
    weight_bits_note: str
    bits_per_synapse: int
    quantized: bool
    totals: Dict[str, int]                 # layer-wide needs (see module docstring)
    lower_bound_by_resource: Dict[str, int]
    lower_bound: int
    bound_by: str                          # resource filling its cores the most ("-": 1 core)
    max_utilization: Dict[str, float]
    messages_per_spike: float              # mean destination cores per neuron
    recurrent: Optional[str] = None        # recurrent synapse (netx dense_rec), if any
    recurrent_sum: Optional[str] = None    # the Add summing it with the input synapse

    @property
    def nodes(self) -> Tuple[str, ...]:
        """Every node computed on this layer's cores: synapses, sum, neuron."""
        return tuple(n for n in (self.synapse, self.recurrent, self.recurrent_sum, self.neuron)
                     if n)

    def as_dict(self) -> Dict[str, object]:
        return {"name": self.name, "neuron": self.neuron, "synapse": self.synapse,
                "kind": self.kind, "shape": self.shape, "neurons": self.neurons,
                "cores": self.cores, "neurons_per_core": self.neurons_per_core,
                "slicing": self.slicing, "weight_bits": self.weight_bits,
                "weight_bits_note": self.weight_bits_note,
                "bits_per_synapse": self.bits_per_synapse, "quantized": self.quantized,
                "totals": self.totals, "lower_bound_by_resource": self.lower_bound_by_resource,
                "lower_bound": self.lower_bound, "bound_by": self.bound_by,
                "max_utilization": {r: round(u, 6) for r, u in self.max_utilization.items()},
                "messages_per_spike": round(self.messages_per_spike, 6),
                **({"recurrent": self.recurrent, "recurrent_sum": self.recurrent_sum}
                   if self.recurrent else {})}


@dataclass
class MappingReport:
    """What :func:`nmtoolchain.mapping.map_onto_cores` decided and why."""

    profile_id: str
    chip_name: str
    strategy: str
    limits: List[Limit]
    layers: List[LayerMapping]
    cores: List[CoreUse]
    cores_per_chip: Optional[int]
    notes: List[str]
    shared_lower_bound: int
    reference: Optional[Dict[str, object]] = None
    activity: Optional[Dict[str, object]] = None
    what_if: Optional[List[Dict[str, object]]] = None
    #: node -> its ``annotations['placement']`` (not part of mapping.json)
    annotations: Dict[str, Dict[str, object]] = field(default_factory=dict, repr=False)

    # ------------------------------------------------------------- summary
    @property
    def cores_used(self) -> int:
        return len(self.cores)

    @property
    def chips(self) -> int:
        return max(1, math.ceil(self.cores_used / self.cores_per_chip)) \
            if self.cores_per_chip else 1

    @property
    def lower_bound(self) -> int:
        """Σ over layers of the per-layer bound (one layer per core)."""
        return sum(L.lower_bound for L in self.layers)

    @property
    def above_lower_bound(self) -> int:
        return self.cores_used - self.lower_bound

    def layer(self, name: str) -> LayerMapping:
        """A layer by its name, neuron node or synapse node."""
        for L in self.layers:
            if name == L.name or name in L.nodes:
                return L
        raise KeyError(name)

    def annotated(self, graph: Graph) -> Graph:
        """A copy of ``graph`` with ``annotations['placement']`` on every placed
        neuron and synapse node (what the export writes into network.nmir);
        ``graph`` itself is left as it is."""
        out = copy.deepcopy(graph)
        for name, ann in self.annotations.items():
            out[name].annotations["placement"] = copy.deepcopy(ann)
        return out

    def utilization(self) -> Dict[str, Dict[str, float]]:
        """Per resource: max and mean of need / capacity over the cores used."""
        out = {}
        for r in RESOURCES:
            u = [c.utilization[r] for c in self.cores]
            out[r] = {"max": max(u), "mean": sum(u) / len(u)}
        return out

    def traffic(self) -> Dict[str, object]:
        """Spike messages between cores (a message per spike per destination core)."""
        links = sum(len(c.destinations) for c in self.cores)
        per_spike = sum(c.needs["output_axons"] for c in self.cores)
        senders = [c for c in self.cores if c.destinations]
        return {
            "links": links,
            "messages_if_every_neuron_spikes_once": per_spike,
            "max_destinations_per_core": max((len(c.destinations) for c in self.cores),
                                             default=0),
            "cores_sending": len(senders),
            "chip_crossing_links": sum(1 for c in self.cores for d in c.destinations
                                       if self.cores_per_chip and
                                       d // self.cores_per_chip != c.chip),
        }

    # -------------------------------------------------------------- output
    def as_dict(self) -> Dict[str, object]:
        """JSON-able form (mapping.json)."""
        d = {
            "profile": self.profile_id, "chip": self.chip_name, "strategy": self.strategy,
            "cores_used": self.cores_used, "chips": self.chips,
            "cores_per_chip": self.cores_per_chip,
            "lower_bound": self.lower_bound, "above_lower_bound": self.above_lower_bound,
            "shared_lower_bound": self.shared_lower_bound,
            "lower_bound_definition": (
                "sum over layers of max over resources of ceil(layer total / per-core "
                "capacity); totals: neurons, synaptic memory bits, distinct pre-synaptic "
                "neurons, neurons with a downstream synapse; shared_lower_bound: max over "
                "resources of ceil(network total / capacity)"),
            "limits": [lim.as_dict() for lim in self.limits],
            "utilization": {r: {k: round(v, 6) for k, v in u.items()}
                            for r, u in self.utilization().items()},
            "traffic": self.traffic(),
            "layers": [L.as_dict() for L in self.layers],
            "cores": [c.as_dict() for c in self.cores],
            "notes": list(self.notes),
        }
        if self.activity is not None:
            d["activity"] = self.activity
        if self.reference is not None:
            d["reference"] = self.reference
        if self.what_if is not None:
            d["what_if"] = self.what_if
        return d

    def lines(self) -> List[str]:
        """Human-readable report (report.txt)."""
        out = [f"Mapping onto {self.chip_name} (profile '{self.profile_id}'), strategy "
               f"'{self.strategy}'"]
        pct = 100.0 * self.above_lower_bound / self.lower_bound if self.lower_bound else 0.0
        out.append(f"cores used: {self.cores_used} on {self.chips} chip(s)"
                   + (f" of {self.cores_per_chip} cores" if self.cores_per_chip else "")
                   + f"; lower bound {self.lower_bound} (one layer per core), "
                   f"{self.above_lower_bound} above it ({pct:.0f}%); bound with shared cores "
                   f"{self.shared_lower_bound}")
        if self.reference is not None:
            ref = self.reference
            out.append(f"reference: {ref['network']} was placed on {ref['cores_used']} cores "
                       f"by {ref['by']}; nmtc uses {self.cores_used} "
                       f"({ref['difference']:+d}, {ref['ratio']:.2f}x)")
            out.append(f"  published detail: {ref['details']}")
            for line in ref.get("comparison", []):
                out.append(f"  {line}")
            out.append(f"  {ref['caveat']}")
        if self.what_if:
            out.append("what if (one assumed or fitted limit relaxed at a time):")
            for w in self.what_if:
                got = w["cores_used"] if w["cores_used"] is not None else w["does_not_fit"]
                out.append(f"  {w['change']}: {got}"
                           + (" cores" if w["cores_used"] is not None else ""))
        out.append("per-core limits assumed:")
        for lim in self.limits:
            val = lim.value if lim.unit == "bool" else f"{int(lim.value):,} {lim.unit}"
            out.append(f"  {lim.name:22s} {str(val):>18s}  [{lim.kind}, {lim.confidence}] "
                       f"{lim.key}: {lim.source}")
        out.append("layers:")
        hdr = (f"  {'layer':18s} {'neurons':>9s} {'cores':>5s} {'bound':>5s} "
               f"{'bound by':16s} {'w bits':>6s} {'bits/syn':>8s} {'msg/spike':>9s}  slicing")
        out.append(hdr)
        for L in self.layers:
            out.append(f"  {L.name[:18]:18s} {L.neurons:9,d} {len(L.cores):5d} "
                       f"{L.lower_bound:5d} {L.bound_by:16s} {L.weight_bits:6d} "
                       f"{L.bits_per_synapse:8d} {L.messages_per_spike:9.2f}  {L.slicing}")
        out.append("utilization over cores (max / mean):")
        for r, u in self.utilization().items():
            out.append(f"  {r:16s} {100 * u['max']:6.1f}% / {100 * u['mean']:5.1f}%")
        t = self.traffic()
        out.append(f"traffic: {t['links']} core-to-core links; {t['cores_sending']} cores send; "
                   f"up to {t['max_destinations_per_core']} destination cores per core; "
                   f"{t['messages_if_every_neuron_spikes_once']:,} messages if every neuron "
                   f"spikes once")
        if self.activity is not None and self.activity.get("steps"):
            a = self.activity
            out.append(f"  messages per step: mean {a['mean_messages_per_step']:,.0f}, max "
                       f"{a['max_messages_per_step']:,.0f} over {a['steps']} steps ({a['basis']})")
        for n in self.notes:
            out.append(f"note: {n}")
        return out


def match_reference(layers, profile: Profile, cores_used: int) -> Optional[Dict[str, object]]:
    """The published mapping of the same network on the same chip, if any."""
    shapes = [list(L.shape) for L in layers]
    for key, ref in REFERENCE_MAPPINGS.items():
        if shapes != ref["layer_shapes"] or profile.id not in ref["profiles"]:
            continue
        sec = f"reference.{key}"
        if not profile.has(sec, "cores_used"):
            continue
        q = profile.quantity(sec, "cores_used")
        theirs = int(q.canonical)
        comparison = []
        convs = [L for L in layers if L.kind == "conv"]
        if convs and ref.get("conv_neurons_per_core"):
            per = [s.needs["neurons"] for L in convs for s in L.slices]
            comparison.append(f"nmtc conv cores hold {min(per):,}-{max(per):,} neurons "
                              f"(Intel: {ref['conv_neurons_per_core']})")
        theirs_per_layer = ref.get("cores_per_layer")
        if theirs_per_layer:
            mine = [len(L.slices) for L in layers]
            comparison.append("cores per layer, nmtc vs Intel: " + ", ".join(
                f"{L.name} {m} vs {t}" for L, m, t in zip(layers, mine, theirs_per_layer)))
        return {"name": key, "network": ref["network"], "cores_used": theirs,
                "by": "Intel's lava-loihi compiler", "source": q.source,
                "details": ref["details"], "details_source": ref["details_source"],
                "nmtc_cores_used": cores_used, "difference": cores_used - theirs,
                "ratio": cores_used / theirs, "comparison": comparison,
                "caveat": _caveat(profile, str(ref.get("fit_marker", key)))}
    return None


def _caveat(profile: Profile, marker: str) -> str:
    """What a comparison with the published mapping can and cannot show: a
    fitted limit whose source names ``marker`` was chosen from this mapping."""
    fitted = [k for k, q in profile.sections.get("resources", {}).items() if q.fitted]
    here = [k for k in fitted
            if marker.lower() in profile.sections["resources"][k].source.lower()]
    if here:
        return (f"not a validation: the limits marked 'fitted' ({', '.join(here)}) were "
                f"chosen from this same mapping; only the published and assumed limits are "
                f"independent of it")
    out = "no per-core limit was fitted to this mapping"
    if fitted:
        out += f" (fitted on another network: {', '.join(fitted)})"
    return (out + "; limits whose source cites the vendor's printout of this mapping "
            "(e.g. conv_shared_axons) are read from it, so this comparison does not "
            "validate them independently")
