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

A *layer* is a neuron node together with the synaptic node(s) that feed only
it (on Loihi a conv and its neurons live on the same cores). A placement maps
a node name to a number of cores (the layer's work is split evenly over that
many cores of its own) or to an explicit list of core ids (layers listing the
same core share it). Layers the placement does not name get an estimate from
the profile: enough cores for their neurons (``packing_neurons_per_core`` or
``neurons_per_core``) and for their synapses (``synapse_bits`` ×
stored synapses ≤ ``synaptic_memory_per_core``; with ``weight_sharing`` a
convolution stores only its kernel), each layer on its own cores, or one core
per layer on a ``one-layer-per-core`` chip. Results say when cores were
estimated. Nothing here checks that a layer fits; that is the mapping pass.

Everything is per sample (one inference = the whole run of T steps). This
module imports numpy only.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Dict, Iterable, List, Mapping, Optional, Sequence, Union

import numpy as np

from hardware_profiles import Profile, load_profile
from nmtoolchain.energy.rules import (CONV_OPS, RuleCounts, _nodes, _static, apply_rule,
                                      per_sample)
from nmtoolchain.errors import BadInputError

if TYPE_CHECKING:
    from nmtoolchain.ir import Graph
    from simulators.cycle.counts import RunCounts

__all__ = ["CorePlan", "EnergyReport", "LatencyReport", "ProfileComparison", "plan_cores",
           "estimate_energy", "estimate_latency", "compare_profiles", "COMPONENTS"]

#: Energy components, in report order.
COMPONENTS = ("synaptic", "mac", "neuron", "spike", "static")
Placement = Mapping[str, Union[int, Sequence[int]]]
ProfileLike = Union[str, Profile]


# ------------------------------------------------------------------ placement
@dataclass
class CorePlan:
    """Which cores each layer occupies."""

    groups: Dict[str, List[str]]      # layer name (its neuron node, else the node) -> nodes
    cores: Dict[str, List[int]]       # layer name -> core ids
    estimated: List[str]              # layers whose cores were estimated from the profile
    notes: List[str] = field(default_factory=list)

    @property
    def n_cores(self) -> int:
        """Distinct cores used."""
        return len({c for ids in self.cores.values() for c in ids})

    def layer_of(self, node: str) -> Optional[str]:
        for g, members in self.groups.items():
            if node in members:
                return g
        return None

    def as_dict(self) -> Dict[str, object]:
        return {"layers": {g: {"nodes": m, "cores": len(self.cores[g]),
                               "estimated": g in self.estimated} for g, m in self.groups.items()},
                "cores_used": self.n_cores, "notes": list(self.notes)}


def _work_nodes(counts: "RunCounts") -> List[str]:
    """Nodes that occupy cores: neurons, stored synapses, or counted synaptic work."""
    out = []
    for n in _nodes(counts):
        st = _static(counts, n)
        if (st.get("neurons") or st.get("synapses") or counts.counter(n, "synops").any()
                or counts.counter(n, "macs").any() or counts.counter(n, "neuron_updates").any()):
            out.append(n)
    return out


def _is_neuron(counts: "RunCounts", n: str) -> bool:
    return bool(_static(counts, n).get("neurons")) or \
        bool(counts.counter(n, "neuron_updates").any())


def _consumers(counts: "RunCounts", graph: Optional["Graph"]) -> Optional[Dict[str, List[str]]]:
    """node -> nodes reading it, from the graph or from ``static['inputs']``."""
    cons: Dict[str, List[str]] = {}
    if graph is not None:
        for node in graph.nodes.values():
            for src in node.inputs:
                cons.setdefault(src, []).append(node.name)
        return cons
    if all("inputs" in _static(counts, n) for n in counts.order) and counts.order:
        for n in counts.order:
            for src in _static(counts, n)["inputs"]:
                cons.setdefault(src, []).append(n)
        return cons
    return None


def _group_layers(counts: "RunCounts", graph: Optional["Graph"]) -> Dict[str, List[str]]:
    work = _work_nodes(counts)
    work_set = set(work)
    neurons = {n for n in work if _is_neuron(counts, n)}
    cons = _consumers(counts, graph)
    owner: Dict[str, str] = {}
    if cons is not None:
        for n in work:
            if n in neurons:
                continue
            cur, seen = n, set()
            while cur not in seen:
                seen.add(cur)
                nxt = cons.get(cur, [])
                if len(nxt) != 1:
                    break
                cur = nxt[0]
                if cur in neurons:
                    owner[n] = cur
                    break
                if cur in work_set:  # another working node in between: not one layer
                    break
    else:  # execution order only: a synaptic node joins the neuron right after it
        prev = None
        for n in work:
            if n in neurons and prev is not None and prev not in neurons:
                owner[prev] = n
            prev = n
    groups: Dict[str, List[str]] = {}
    for n in work:
        head = owner.get(n, n)
        groups.setdefault(head, [])
    for n in work:
        groups[owner.get(n, n)].append(n)
    return groups


def _stored_synapses(counts: "RunCounts", n: str, profile: Profile, graph: Optional["Graph"],
                     notes: List[str]) -> float:
    st = _static(counts, n)
    syn = float(st.get("synapses", 0) or 0)
    if st.get("op") in CONV_OPS and profile.get("resources", "weight_sharing", False):
        if graph is not None and n in graph.nodes:
            return float(np.asarray(graph[n].op.weight).size)
        if "parameters" in st:
            return float(st["parameters"])
        notes.append(f"'{n}': kernel size unknown, counted its {int(syn)} structural synapses "
                     "against synaptic memory (pass the graph)")
    return syn


def plan_cores(counts: "RunCounts", profile: ProfileLike, placement: Optional[Placement] = None,
               graph: Optional["Graph"] = None) -> CorePlan:
    """Assign cores to the run's layers: from ``placement`` where it names a
    layer, otherwise estimated from the profile (see the module docstring)."""
    profile = load_profile(profile)
    groups = _group_layers(counts, graph)
    placement = dict(placement or {})
    known = set(_nodes(counts))
    for node, spec in placement.items():
        if node not in known:
            raise BadInputError(f"placement: node '{node}' is not in the run "
                                f"(nodes: {', '.join(sorted(known)[:8])}...)")
        ok_int = isinstance(spec, int) and not isinstance(spec, bool) and spec >= 1
        ok_list = (isinstance(spec, (list, tuple)) and len(spec) > 0 and all(
            isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in spec))
        if not (ok_int or ok_list):
            raise BadInputError(f"placement: node '{node}' needs a core count >= 1 or a "
                                f"non-empty list of core ids, got {spec!r}")
    chosen: Dict[str, Union[int, Sequence[int]]] = {}
    for g, members in groups.items():
        specs = {m: placement[m] for m in members if m in placement}
        values = list(specs.values())
        if any(v != values[0] for v in values[1:]):
            raise BadInputError(f"placement: nodes {', '.join(specs)} form one layer but are "
                                f"given different cores {values}")
        if values:
            chosen[g] = values[0]
    notes: List[str] = []
    explicit = [c for v in chosen.values() if not isinstance(v, int) for c in v]
    next_id = max(explicit) + 1 if explicit else 0
    cores: Dict[str, List[int]] = {}
    estimated: List[str] = []
    for g, members in groups.items():
        spec = chosen.get(g)
        if spec is None:
            spec = _estimate_cores(counts, members, profile, graph, notes)
            estimated.append(g)
        if isinstance(spec, int):
            cores[g] = list(range(next_id, next_id + spec))
            next_id += spec
        else:
            cores[g] = [int(c) for c in spec]
    plan = CorePlan(groups, cores, estimated, notes)
    if estimated:
        plan.notes.insert(0, f"cores of {len(estimated)} of {len(groups)} layer(s) estimated "
                             f"from profile '{profile.id}' (no placement given for them)")
    total = profile.get("resources", "cores")
    if total and plan.n_cores > total:
        if profile.mapping == "one-layer-per-core":
            plan.notes.append(f"{plan.n_cores} layers need {plan.n_cores} cores; "
                              f"'{profile.id}' has {int(total)}: does not fit")
        else:
            plan.notes.append(f"{plan.n_cores} cores exceed the {int(total)} of one "
                              f"'{profile.id}' chip: {math.ceil(plan.n_cores / total)} chips")
    return plan


def _estimate_cores(counts: "RunCounts", members: List[str], profile: Profile,
                    graph: Optional["Graph"], notes: List[str]) -> int:
    if profile.mapping != "split":
        return 1
    neurons = sum(float(_static(counts, m).get("neurons", 0) or 0) for m in members)
    per_core = profile.get("resources", "packing_neurons_per_core") or \
        profile.get("resources", "neurons_per_core")
    need = 1
    if per_core:
        need = max(need, math.ceil(neurons / per_core))
    mem = profile.get("resources", "synaptic_memory_per_core")
    bits = profile.get("resources", "synapse_bits")
    if mem and bits:
        stored = sum(_stored_synapses(counts, m, profile, graph, notes) for m in members)
        need = max(need, math.ceil(stored * bits / mem))
    return need


def _chips(profile: Profile, plan: CorePlan) -> int:
    total = profile.get("resources", "cores")
    if not total or profile.mapping == "one-layer-per-core":
        return 1
    return max(1, math.ceil(plan.n_cores / total))


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
    plan: CorePlan
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
                "placement": self.plan.as_dict(), "notes": list(self.notes)}


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

    Needs a profile with a [time] section (an analytic profile has none)."""
    profile = load_profile(profile)
    if "time" not in profile.sections:
        raise BadInputError(f"{profile.path.name}: profile '{profile.id}' has no [time] section; "
                            "latency needs time per operation")
    counts = per_sample(counts)
    return _latency(counts, profile, plan_cores(counts, profile, placement, graph))


def _latency(counts: "RunCounts", profile: Profile, plan: CorePlan) -> LatencyReport:
    notes = list(plan.notes)
    core_ns: Dict[int, np.ndarray] = {}
    for g, members in plan.groups.items():
        share = _layer_work_ns(counts, members, profile, notes) / len(plan.cores[g])
        for c in plan.cores[g]:
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
                         plan, notes)


# --------------------------------------------------------------------- energy
@dataclass
class EnergyReport:
    """Energy of one inference (the run) under one profile and rule, in pJ."""

    profile: str
    rule: str
    steps: int
    node_pj: Dict[str, Dict[str, np.ndarray]]   # node -> component -> (T,)
    ops: RuleCounts
    plan: CorePlan
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
                "ops": self.ops.as_dict(), "placement": self.plan.as_dict(),
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
    [time] section: it is static power × chips × the estimated run time."""
    profile = load_profile(profile)
    rule = rule or profile.default_rule
    counts = per_sample(counts)
    ops = apply_rule(counts, rule, graph)
    notes = list(ops.notes)
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

    plan = plan_cores(counts, profile, placement, graph)
    if profile.kind != "analytic":  # an analytic model has no cores: its plan says nothing
        notes = plan.notes + notes
    latency = _latency(counts, profile, plan) if "time" in profile.sections else None
    p_static = profile.get("power", "static")
    if p_static and latency is None:
        notes.append(f"profile '{profile.id}' has static power but no [time]: static energy "
                     "not estimated")
    elif p_static and latency is not None and plan.n_cores:
        chips = _chips(profile, plan)
        step_static = p_static * chips * latency.step_ns          # mW x ns = pJ
        for g, members in plan.groups.items():
            head = g if g in node_pj else members[0]
            node_pj[head]["static"] = node_pj[head]["static"] + \
                step_static * len(plan.cores[g]) / sum(len(v) for v in plan.cores.values())
    return EnergyReport(profile.id, rule, counts.steps, node_pj, ops, plan, latency, notes)


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
                     placement: Optional[Placement] = None, graph: Optional["Graph"] = None,
                     hops_per_spike: float = 1.0) -> ProfileComparison:
    """Each profile's energy per node and in total, and its relative difference
    (E - E_ref) / E_ref to ``reference`` (None where the reference is 0).

    Each profile uses its own default rule unless ``rule`` is given, so the
    comparison with cmos45nm shows both the pJ and the counting-convention gap."""
    loaded = [load_profile(p) for p in profiles]
    ref = load_profile(reference)
    if ref.id not in [p.id for p in loaded]:
        loaded.append(ref)
    reports = {p.id: estimate_energy(counts, p, rule, placement, graph, hops_per_spike)
               for p in loaded}
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
