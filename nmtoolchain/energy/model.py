"""Energy and latency: pure functions of a run's counts and a hardware profile.

Energy per node and step (canonical units: pJ, ns, mW; mW x ns = pJ)::

    synaptic = ACs  x E[energy.synop]          (ACs, MACs from the counting rule)
    mac      = MACs x E[energy.mac]
    neuron   = active x E[neuron_update_active] + (updates - active) x E[neuron_update_inactive]
    spike    = spikes_out x (E[spike_out] + hops_per_spike x E[hop])
    static   = P[power.static] x chips x step time, shared among layers by cores used

Latency per step = the slowest core's work + the barrier, where a core's work
is Σ over the layers it holds of their share of
``synops·t_synop + macs·t_mac + active·t_nu_active + inactive·t_nu_inactive +
spikes_out·t_spike_out``. Latency always uses the hardware counts (synops,
macs), whatever rule the energy uses. Message hop times are taken as hidden by
the pipeline and not added.

Cores come from one :class:`~nmtoolchain.mapping.Placement`: the one the
caller passes, or :func:`nmtoolchain.mapping.place` of the graph with the
mapper the profile declares (the Loihi mapper for loihi1/loihi2, the same
call the Loihi export makes; the per-layer estimate for speck; none for the
analytic cmos45nm). A layer of the placement (a neuron node and the synaptic
node feeding it) splits its work evenly over its cores; layers naming the
same core share it. The notes say which mapper placed the graph. Nothing here
checks that a layer fits; that is the mapper.

Everything is per sample (one inference = the whole run of T steps). This
module imports numpy, the profile loader and nmtoolchain.mapping (no torch).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Dict, Iterable, List, Mapping, Optional, Sequence, Union

import numpy as np

from hardware_profiles import Profile, load_profile
from nmtoolchain.energy.rules import RuleCounts, _nodes, _static, apply_rule, per_sample
from nmtoolchain.energy.sanafe_model import sanafe_costs
from nmtoolchain.errors import BadInputError
from nmtoolchain.mapping import PlacedLayer, Placement, place

if TYPE_CHECKING:
    from nmtoolchain.ir import Graph
    from simulators.cycle.counts import RunCounts

__all__ = ["EnergyReport", "LatencyReport", "ProfileComparison", "resolve_placement",
           "estimate_energy", "estimate_latency", "compare_profiles", "COMPONENTS"]

#: Energy components, in report order.
COMPONENTS = ("synaptic", "mac", "neuron", "spike", "static")
ProfileLike = Union[str, Profile]


# ------------------------------------------------------------------ placement
def _work_nodes(counts: "RunCounts") -> List[str]:
    """Nodes that occupy cores: neurons, stored synapses, or counted synaptic work."""
    out = []
    for n in _nodes(counts):
        st = _static(counts, n)
        if (st.get("neurons") or st.get("synapses") or counts.counter(n, "synops").any()
                or counts.counter(n, "macs").any() or counts.counter(n, "neuron_updates").any()):
            out.append(n)
    return out


def resolve_placement(counts: "RunCounts", profile: Profile,
                      placement: Optional[Placement] = None,
                      graph: Optional["Graph"] = None) -> Placement:
    """The placement the estimates use: ``placement`` when given, else
    :func:`nmtoolchain.mapping.place` of ``graph`` with the profile's mapper
    (the same call the export makes). Nodes with counted work that the
    placement does not name get one core each, and a note says so."""
    if placement is None:
        if profile.mapper == "none":
            placement = Placement(profile.id, "none", (), None, declared_mapper="none")
        elif graph is None:
            raise BadInputError(f"profile '{profile.id}' places layers with its "
                                f"'{profile.mapper}' mapper, which needs the graph: pass "
                                f"graph= (or a Placement as placement=)")
        else:
            placement = place(graph, profile)
    if not isinstance(placement, Placement):
        raise BadInputError(f"placement must be a nmtoolchain.mapping.Placement, got "
                            f"{type(placement).__name__}")
    if placement.profile_id != profile.id:
        raise BadInputError(f"placement is for profile '{placement.profile_id}', not "
                            f"'{profile.id}'")
    known = set(_nodes(counts))
    for layer in placement.layers:
        for node in layer.nodes:
            if node not in known:
                raise BadInputError(f"placement: node '{node}' is not in the run "
                                    f"(nodes: {', '.join(sorted(known)[:8])}...)")
    if placement.mapper == "none":
        return placement
    unplaced = [n for n in _work_nodes(counts) if placement.layer_of(n) is None]
    if not unplaced:
        return placement
    next_id = max((c for L in placement.layers for c in L.cores), default=-1) + 1
    extra = tuple(PlacedLayer(n, (n,), (next_id + i,)) for i, n in enumerate(unplaced))
    note = (f"{len(unplaced)} node(s) with counted work not placed by the "
            f"'{placement.mapper}' mapper ({', '.join(unplaced[:4])}"
            f"{', ...' if len(unplaced) > 4 else ''}): one core each assumed")
    return replace(placement, layers=placement.layers + extra,
                   notes=placement.notes + (note,))


def _placement_notes(placement: Placement) -> List[str]:
    if placement.mapper == "none":
        return []
    return [placement.describe()] + list(placement.notes)


# -------------------------------------------------------------------- latency
@dataclass
class LatencyReport:
    """Time per step: the slowest core's work plus the barrier (ns)."""

    profile: str
    steps: int
    step_ns: np.ndarray                  # (T,) work of the slowest core + barrier
    barrier_ns: float
    core_ns: Dict[int, np.ndarray]       # core id -> (T,) work
    critical_core: List[int]             # per step, the slowest core
    placement: Placement
    notes: List[str] = field(default_factory=list)

    @property
    def total_ns(self) -> float:
        """Simulated time of the whole run (one inference)."""
        return float(self.step_ns.sum())

    @property
    def mean_step_ns(self) -> float:
        return float(self.step_ns.mean()) if self.steps else 0.0

    def as_dict(self) -> Dict[str, object]:
        return {"profile": self.profile, "steps": self.steps, "total_ns": self.total_ns,
                "mean_step_ns": self.mean_step_ns, "barrier_ns": self.barrier_ns,
                "step_ns": self.step_ns.tolist(), "critical_core": self.critical_core,
                "placement": self.placement.as_dict(), "notes": list(self.notes)}


def _layer_work_ns(counts: "RunCounts", members: Iterable[str], profile: Profile,
                   notes: List[str]) -> np.ndarray:
    t_syn = profile.value("time", "synop")
    t_mac = profile.get("time", "mac")
    if t_mac is None:
        t_mac = t_syn
        if "time.mac absent: MACs timed as synaptic ops" not in notes:
            notes.append("time.mac absent: MACs timed as synaptic ops")
    t_act = profile.value("time", "neuron_update_active")
    t_ina = profile.value("time", "neuron_update_inactive")
    t_spk = profile.value("time", "spike_out")
    work = np.zeros(counts.steps)
    for m in members:
        c = lambda k: np.asarray(counts.counter(m, k), dtype=float)  # noqa: E731
        active = c("active_neurons")
        inactive = np.maximum(c("neuron_updates") - active, 0.0)
        work += (c("synops") * t_syn + c("macs") * t_mac + active * t_act + inactive * t_ina
                 + c("spikes_out") * t_spk)
    return work


def estimate_latency(counts: "RunCounts", profile: ProfileLike,
                     placement: Optional[Placement] = None,
                     graph: Optional["Graph"] = None) -> LatencyReport:
    """Time per step = max over cores of their work + the profile's barrier.

    Cores come from ``placement``, else from placing ``graph`` with the
    profile's mapper (:func:`resolve_placement`). Needs a profile with a
    [time] section (an analytic profile has none)."""
    profile = load_profile(profile)
    if "time" not in profile.sections:
        raise BadInputError(f"{profile.path.name}: profile '{profile.id}' has no [time] section; "
                            "latency needs time per operation")
    counts = per_sample(counts)
    placement = resolve_placement(counts, profile, placement, graph)
    if profile.chip.get("cost_model") == "sanafe":
        return _sanafe_latency(counts, profile, placement)
    return _latency(counts, profile, placement)


def _sanafe_latency(counts: "RunCounts", profile: Profile, placement: Placement
                    ) -> LatencyReport:
    steps, _, _, step_ns, barrier, core_ns = sanafe_costs(counts, profile, placement)
    ids = sorted(core_ns)
    stack = np.stack([core_ns[i] for i in ids])
    critical = [ids[int(i)] for i in stack.argmax(0)]
    notes = _placement_notes(placement) + [
        f"SANA-FE event model: {counts.steps} steps + {steps - counts.steps} drain steps "
        f"(one per layer of depth); barrier {barrier:g} ns for the tiles used"]
    return LatencyReport(profile.id, steps, step_ns, barrier, core_ns, critical, placement,
                         notes)


def _latency(counts: "RunCounts", profile: Profile, placement: Placement) -> LatencyReport:
    notes = _placement_notes(placement)
    core_ns: Dict[int, np.ndarray] = {}
    for layer in placement.layers:
        share = _layer_work_ns(counts, layer.nodes, profile, notes) / len(layer.cores)
        for c in layer.cores:
            core_ns[c] = core_ns.get(c, np.zeros(counts.steps)) + share
    barrier = float(profile.value("time", "barrier"))
    if core_ns:
        ids = sorted(core_ns)
        stack = np.stack([core_ns[i] for i in ids])
        slowest = stack.max(0)
        critical = [ids[int(i)] for i in stack.argmax(0)]
    else:
        slowest, critical = np.zeros(counts.steps), [-1] * counts.steps
    return LatencyReport(profile.id, counts.steps, slowest + barrier, barrier, core_ns, critical,
                         placement, notes)


# --------------------------------------------------------------------- energy
@dataclass
class EnergyReport:
    """Energy of one inference (the run) under one profile and rule, in pJ."""

    profile: str
    rule: str
    steps: int
    node_pj: Dict[str, Dict[str, np.ndarray]]   # node -> component -> (T,)
    ops: RuleCounts
    placement: Placement
    latency: Optional[LatencyReport] = None
    notes: List[str] = field(default_factory=list)

    def per_node(self) -> Dict[str, Dict[str, float]]:
        """node -> component -> pJ over the run, plus 'total'."""
        out = {}
        for n, comp in self.node_pj.items():
            d = {k: float(comp[k].sum()) for k in COMPONENTS}
            d["total"] = sum(d.values())
            out[n] = d
        return out

    def per_step(self) -> Dict[str, np.ndarray]:
        """component -> (T,) pJ summed over nodes, plus 'total'."""
        out = {k: sum((c[k] for c in self.node_pj.values()), np.zeros(self.steps))
               for k in COMPONENTS}
        out["total"] = sum(out.values())
        return out

    def total(self) -> Dict[str, float]:
        """component -> pJ for the whole inference, plus 'total'."""
        return {k: float(v.sum()) for k, v in self.per_step().items()}

    @property
    def total_pj(self) -> float:
        return self.total()["total"]

    def as_dict(self) -> Dict[str, object]:
        return {"profile": self.profile, "rule": self.rule, "steps": self.steps,
                "total_pj": self.total(), "nodes_pj": self.per_node(),
                "step_pj": {k: v.tolist() for k, v in self.per_step().items()},
                "ops": self.ops.as_dict(), "placement": self.placement.as_dict(),
                "latency": self.latency.as_dict() if self.latency else None,
                "notes": list(self.notes)}


def estimate_energy(counts: "RunCounts", profile: ProfileLike, rule: Optional[str] = None,
                    placement: Optional[Placement] = None, graph: Optional["Graph"] = None,
                    hops_per_spike: float = 1.0) -> EnergyReport:
    """Energy per node, per step and per inference (see the module docstring).

    ``rule`` defaults to the profile's own ``default_rule`` (``fanout`` for the
    chips, ``spikformer`` for the analytic cmos45nm model). ``hops_per_spike``
    is how many inter-core hops each output spike's message makes on average
    (the run does not record routes). Static energy needs a [power] and a
    [time] section: it is static power × chips × the estimated run time,
    with cores from ``placement`` or from placing ``graph`` with the
    profile's mapper (:func:`resolve_placement`)."""
    profile = load_profile(profile)
    rule = rule or profile.default_rule
    counts = per_sample(counts)
    ops = apply_rule(counts, rule, graph)
    notes = list(ops.notes)
    if profile.chip.get("cost_model") == "sanafe":
        return _sanafe_energy(counts, profile, rule, ops, notes,
                              resolve_placement(counts, profile, placement, graph))
    e = {k: profile.get("energy", k) for k in ("synop", "mac", "neuron_update_active",
                                               "neuron_update_inactive", "spike_out", "hop")}
    absent = [k for k, v in e.items() if v is None]
    if absent:
        notes.append(f"profile '{profile.id}' has no energy for {', '.join(absent)}: counted as 0")
    e = {k: (v or 0.0) for k, v in e.items()}

    node_pj: Dict[str, Dict[str, np.ndarray]] = {}
    zero = np.zeros(counts.steps)
    for n in _nodes(counts):
        c = lambda k: np.asarray(counts.counter(n, k), dtype=float)  # noqa: E731
        o = ops.per_node.get(n)
        active = c("active_neurons")
        inactive = np.maximum(c("neuron_updates") - active, 0.0)
        node_pj[n] = {
            "synaptic": o.acs * e["synop"] if o is not None else zero.copy(),
            "mac": o.macs * e["mac"] if o is not None else zero.copy(),
            "neuron": active * e["neuron_update_active"] + inactive * e["neuron_update_inactive"],
            "spike": c("spikes_out") * (e["spike_out"] + hops_per_spike * e["hop"]),
            "static": zero.copy(),
        }

    placement = resolve_placement(counts, profile, placement, graph)
    notes = _placement_notes(placement) + notes
    latency = _latency(counts, profile, placement) if "time" in profile.sections else None
    p_static = profile.get("power", "static")
    if p_static and latency is None:
        notes.append(f"profile '{profile.id}' has static power but no [time]: static energy "
                     "not estimated")
    elif p_static and latency is not None and placement.n_cores:
        step_static = p_static * placement.chips * latency.step_ns          # mW x ns = pJ
        all_cores = sum(len(L.cores) for L in placement.layers)
        for layer in placement.layers:  # booked on the layer's neuron node
            if layer.name not in node_pj:
                node_pj[layer.name] = {k: zero.copy() for k in COMPONENTS}
            node_pj[layer.name]["static"] = node_pj[layer.name]["static"] + \
                step_static * len(layer.cores) / all_cores
    return EnergyReport(profile.id, rule, counts.steps, node_pj, ops, placement, latency, notes)


def _sanafe_energy(counts: "RunCounts", profile: Profile, rule: str, ops: RuleCounts,
                   notes: List[str], placement: Placement) -> EnergyReport:
    """SANA-FE's event model (:mod:`nmtoolchain.energy.sanafe_model`): it prices
    hardware events, so the counting rule does not change it (a note says so)."""
    if rule != "fanout":
        notes.append(f"profile '{profile.id}' prices SANA-FE's hardware events: the "
                     f"'{rule}' rule's ops are reported but not priced")
    steps, layers, inputs_pj, _, _, _ = sanafe_costs(counts, profile, placement)
    zero = np.zeros(steps)
    node_pj: Dict[str, Dict[str, np.ndarray]] = {}
    for n in _nodes(counts):
        node_pj[n] = {k: zero.copy() for k in COMPONENTS}
    for L in layers:
        node_pj[L.synapse_nodes[0] if L.synapse_nodes else L.name]["synaptic"] += L.synaptic_pj
        node_pj[L.name]["neuron"] += L.neuron_pj
        node_pj[L.name]["spike"] += L.network_pj
    for n, pj in inputs_pj.items():
        node_pj.setdefault(n, {k: zero.copy() for k in COMPONENTS})["spike"] += pj
    latency = _sanafe_latency(counts, profile, placement)
    return EnergyReport(profile.id, rule, steps, node_pj, ops, placement, latency,
                        latency.notes + notes)


# ----------------------------------------------------------------- comparison
@dataclass
class ProfileComparison:
    """The same run under several profiles, relative to a reference profile."""

    reference: str
    reports: Dict[str, EnergyReport]
    per_node: Dict[str, Dict[str, float]]          # node -> profile -> pJ
    total: Dict[str, float]                        # profile -> pJ
    relative: Dict[str, Dict[str, Optional[float]]]  # profile -> node or 'total' -> (E-E_ref)/E_ref

    def rows(self) -> List[Dict[str, object]]:
        """One row per node and a 'total' row: each profile's pJ and relative difference."""
        rows = []
        for n in list(self.per_node) + ["total"]:
            row: Dict[str, object] = {"node": n}
            for p in self.reports:
                row[p] = self.total[p] if n == "total" else self.per_node[n][p]
                row[f"{p}_rel"] = self.relative[p].get(n)
            rows.append(row)
        return rows

    def as_dict(self) -> Dict[str, object]:
        return {"reference": self.reference, "total_pj": self.total,
                "nodes_pj": self.per_node, "relative": self.relative,
                "rules": {p: r.rule for p, r in self.reports.items()},
                "notes": {p: r.notes for p, r in self.reports.items()}}


def compare_profiles(counts: "RunCounts", profiles: Sequence[ProfileLike],
                     reference: ProfileLike = "cmos45nm", rule: Optional[str] = None,
                     placements: Optional[Mapping[str, Placement]] = None,
                     graph: Optional["Graph"] = None,
                     hops_per_spike: float = 1.0) -> ProfileComparison:
    """Each profile's energy per node and in total, and its relative difference
    (E - E_ref) / E_ref to ``reference`` (None where the reference is 0).

    ``placements``: profile id -> its placement; a profile not named there is
    placed from ``graph`` with its own mapper.

    Each profile uses its own default rule unless ``rule`` is given, so the
    comparison with cmos45nm shows both the pJ and the counting-convention gap."""
    loaded = [load_profile(p) for p in profiles]
    ref = load_profile(reference)
    if ref.id not in [p.id for p in loaded]:
        loaded.append(ref)
    placements = dict(placements or {})
    reports = {p.id: estimate_energy(counts, p, rule, placements.get(p.id), graph,
                                     hops_per_spike) for p in loaded}
    nodes: List[str] = []
    for r in reports.values():
        for n, d in r.per_node().items():
            if d["total"] and n not in nodes:
                nodes.append(n)
    per_node = {n: {p: r.per_node().get(n, {}).get("total", 0.0) for p, r in reports.items()}
                for n in nodes}
    total = {p: r.total_pj for p, r in reports.items()}

    def rel(x: float, x_ref: float) -> Optional[float]:
        return None if x_ref == 0 else (x - x_ref) / x_ref

    relative = {p: {**{n: rel(per_node[n][p], per_node[n][ref.id]) for n in nodes},
                    "total": rel(total[p], total[ref.id])} for p in reports}
    return ProfileComparison(ref.id, reports, per_node, total, relative)
