"""Counting rules: one simulator run re-expressed as ACs and MACs.

Published SNN energies depend as much on *what is counted* as on pJ per
operation (Spikformer-8-768: 21.5 mJ in its paper, 32.1 mJ under the
Spikingformer script, from the same model). So the simulator counts once
(:class:`simulators.cycle.counts.RunCounts`) and each rule here re-expresses
those counts the way one tool or paper does:

``fanout`` (default, the hardware view)
    Every input event delivered to every synapse it has: ACs = ``synops``
    (Σ input value × structural fan-out, border-aware; a multi-spike of 3
    costs 3), MACs = ``macs`` (non-zero real-valued inputs × fan-out, e.g. the
    first layer fed analog pixels). This is what a synchronous event-driven
    chip (Loihi) or an asynchronous one (Speck) executes.
``neurobench``
    NeuroBench 2.3 ``SynapticOperations`` (Yik et al., arXiv:2304.04640;
    neurobench/metrics): per connection layer (Linear, Affine, Conv1d, Conv2d)
    the binarised input times the binarised (non-zero) weights, ``nb_ops``.
    A step's ops are Effective_MACs when some input value lies outside
    {-1, 0, 1} (a layer after a sum-pool or fed multi-spikes or analog values),
    else Effective_ACs. Dense = structural synapses × steps (all-ones input and
    weights, padding excluded). Pooling and MatMul are not counted; biases
    never count. NeuroBench classifies per forward call: ``neurobench`` takes
    one step of the simulated batch as the call (a batched NeuroBench run),
    ``neurobench-sample`` one step of one sample (NeuroBench at batch size 1).
``syops``
    iCGY96/syops-counter (``syops/ops.py``), the counter AutoST imports:
    per module, conv ops = dense MACs + one bias op per output element when
    the conv has a bias; linear ops = dense MACs (+ out_features for a bias);
    BatchNorm 2·numel(input); neurons numel(input); max pooling numel(input);
    average pooling numel(input), always MACs; ReLU numel. A module whose
    input is binary (at most two values, in [0, 1]) books ops × input rate as
    ACs, otherwise ops as MACs; neurons always book ACs (× rate if their input
    is binary, as syops' IF hook). Functional ops are invisible to syops, so
    MatMul (Q·Kᵀ, A·V), Add, Softmax, LayerNorm, SumPool and QCFS count 0.
    Deviations, kept small on purpose: a linear bias is booked once per step
    (syops books it once per module call); a bias counts when it is non-zero
    (the IR stores an absent bias as zeros); syops' LIF hook also adds numel
    to MACs, which we do not copy.
``spikformer``
    Σ fr · T · FLOPs (Zhou et al., Spikformer, ICLR 2023, energy section;
    reference/seeds.md §1.4): each weighted layer (Linear, Affine, Conv1d,
    Conv2d) costs its dense MACs per step × its mean input firing rate × T as
    ACs; a weighted layer fed real values (in Spikformer: the first conv)
    costs dense MACs × T as MACs. The firing rate is the mean input value (a
    residual sum of spikes of 2 counts 2). Max-pooling of spikes yields spikes
    (the max of 0/1 values is 0/1), so a layer after a max-pool of spikes
    costs ACs (Spikformer prices only its first conv as MACs). The SSA term
    Σ_SSA SOP: each MatMul (Q·Kᵀ, A·V) costs its dense MACs per step × the
    firing rate of its first spike-carrying operand (Q for Q·Kᵀ, V for A·V)
    as ACs; a MatMul with no spiking operand costs dense MACs.

All rules report per sample: a run with batch B is divided by B first.
This module imports numpy only (no torch), so it can score candidates of a
search without loading the simulator.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Dict, List, Optional, Tuple

import numpy as np

from nmtoolchain.errors import BadInputError
from nmtoolchain.ir.op import OP_REGISTRY

if TYPE_CHECKING:  # typing only: importing simulators.cycle loads torch
    from nmtoolchain.ir import Graph
    from simulators.cycle.counts import RunCounts

__all__ = ["NodeOps", "RuleCounts", "RULES", "apply_rule", "fanout_rule", "neurobench_rule",
           "neurobench_sample_rule",
           "syops_rule", "spikformer_rule", "per_sample"]

#: Ops with stored weights: NeuroBench's connection layers, Spikformer's weighted layers.
#: ops with stored weights (the IRs ``is_synapse`` trait)
WEIGHTED_OPS = frozenset(n for n, c in OP_REGISTRY.items() if c.is_synapse)
CONV_OPS = ("Conv1d", "Conv2d")


@dataclass
class NodeOps:
    """One node's ACs and MACs per step under a rule (per sample)."""

    acs: np.ndarray           # (T,)
    macs: np.ndarray          # (T,)
    dense: float = 0.0        # NeuroBench Dense (all-ones count over the run); 0 elsewhere

    @property
    def ac_total(self) -> float:
        return float(self.acs.sum())

    @property
    def mac_total(self) -> float:
        return float(self.macs.sum())


@dataclass
class RuleCounts:
    """A run's operations under one counting rule, per sample (one inference)."""

    rule: str                      # a key of RULES
    definition: str                # one line: what was counted
    steps: int
    per_node: Dict[str, NodeOps]
    acs: float = 0.0               # total over nodes and steps
    macs: float = 0.0
    dense: Optional[float] = None  # NeuroBench rule only
    notes: List[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.acs = float(sum(o.ac_total for o in self.per_node.values()))
        self.macs = float(sum(o.mac_total for o in self.per_node.values()))

    def as_dict(self) -> Dict[str, object]:
        """JSON-able totals, per node totals and the notes."""
        return {"rule": self.rule, "definition": self.definition, "steps": self.steps,
                "acs": self.acs, "macs": self.macs, "dense": self.dense,
                "nodes": {n: {"acs": o.ac_total, "macs": o.mac_total, "dense": o.dense}
                          for n, o in self.per_node.items()},
                "notes": list(self.notes)}


# ------------------------------------------------------------------ helpers
def per_sample(counts: "RunCounts") -> "RunCounts":
    """The counts of one inference: divided by the batch when it is > 1."""
    return counts.per_sample() if counts.batch != 1 else counts


def _nodes(counts: "RunCounts") -> List[str]:
    names = list(counts.order)
    names += [n for n in counts.nodes if n not in counts.order]
    return names


def _static(counts: "RunCounts", node: str) -> Dict[str, object]:
    return counts.static.get(node, {})


def _input_is_analog(counts: "RunCounts", node: str) -> bool:
    """Whether the node is fed real values (not spikes or graded spikes)."""
    st = _static(counts, node)
    kinds = st.get("input_kind")
    if kinds is not None:
        return any(k == "analog" for k in kinds)
    return bool(counts.counter(node, "macs").sum() > 0 and not st.get("input_binary", False))


def _input_numel(counts: "RunCounts", node: str) -> int:
    numel = int(_static(counts, node).get("input_numel", 0) or 0)
    return numel


def _rate(counts: "RunCounts", node: str, *, values: bool) -> np.ndarray:
    """Mean input per element and step, (T,). ``values``: sum of input values
    (a multi-spike counts its value), else the fraction of non-zero inputs."""
    numel = _input_numel(counts, node)
    if numel <= 0:
        return np.zeros(counts.steps)
    series = counts.counter(node, "spikes_in") if values else None
    if series is None or not series.any():
        series = counts.counter(node, "events_in")
    return np.asarray(series, dtype=float) / numel


def _bias_and_shape(counts: "RunCounts", node: str, graph: Optional["Graph"]
                    ) -> Tuple[Optional[bool], Optional[Tuple[int, ...]]]:
    """(has a bias, output shape) from ``static`` or the graph; None if unknown."""
    st = _static(counts, node)
    has_bias = st.get("has_bias")
    shape = st.get("output_shape")
    if graph is not None and node in graph.nodes:
        gnode = graph[node]
        if shape is None and gnode.shape is not None:
            shape = tuple(gnode.shape)
        if has_bias is None:
            bias = getattr(gnode.op, "bias", None)
            has_bias = bool(bias is not None and np.any(np.asarray(bias) != 0)) \
                if gnode.op_name != "Linear" else False
    if has_bias is None and st.get("op") == "Linear":
        has_bias = False
    return has_bias, (tuple(int(d) for d in shape) if shape is not None else None)


def _zeros(counts: "RunCounts") -> np.ndarray:
    return np.zeros(counts.steps)


# -------------------------------------------------------------------- rules
def fanout_rule(counts: "RunCounts", graph: Optional["Graph"] = None) -> RuleCounts:
    """Hardware rule: ACs = synops (events × structural fan-out), MACs = macs."""
    counts = per_sample(counts)
    per_node = {}
    for n in _nodes(counts):
        acs = np.asarray(counts.counter(n, "synops"), dtype=float)
        macs = np.asarray(counts.counter(n, "macs"), dtype=float)
        if acs.any() or macs.any():
            per_node[n] = NodeOps(acs.copy(), macs.copy())
    return RuleCounts("fanout", "ACs = input value x structural fan-out of every event (synops); "
                      "MACs = non-zero real-valued inputs x fan-out", counts.steps, per_node)


def neurobench_rule(counts: "RunCounts", graph: Optional["Graph"] = None) -> RuleCounts:
    """NeuroBench SynapticOperations: Effective_ACs / Effective_MACs / Dense, with
    MAC or AC decided per step over the simulated batch (one forward call per step)."""
    return _neurobench(counts, by_sample=False)


def neurobench_sample_rule(counts: "RunCounts", graph: Optional["Graph"] = None) -> RuleCounts:
    """NeuroBench SynapticOperations with MAC or AC decided per step and sample, as
    NeuroBench counts a run fed one sample per forward call (batch size 1)."""
    return _neurobench(counts, by_sample=True)


def _neurobench(counts: "RunCounts", by_sample: bool) -> RuleCounts:
    counts = per_sample(counts)
    per_node = {}
    dense_total = 0.0
    for n in _nodes(counts):
        st = _static(counts, n)
        if st.get("op") not in WEIGHTED_OPS:
            continue
        ops = np.asarray(counts.counter(n, "nb_ops"), dtype=float)
        if by_sample:
            macs = np.asarray(counts.counter(n, "nb_mac_ops"), dtype=float)
        else:
            macs = np.where(np.asarray(counts.counter(n, "nb_is_mac"), dtype=float) > 0, ops, 0.0)
        dense = float(st.get("synapses", 0) or 0) * counts.steps
        dense_total += dense
        per_node[n] = NodeOps(ops - macs, macs, dense)
    grouping = ("each sample's step (one sample per forward call)" if by_sample
                else "steps where any sample of the batch had")
    return RuleCounts("neurobench-sample" if by_sample else "neurobench",
                      "NeuroBench SynapticOperations: binarised inputs x non-zero weights of "
                      f"connection layers; MACs in {grouping} an input outside {{-1, 0, 1}}; "
                      "Dense = synapses x steps", counts.steps, per_node, dense=dense_total)


def syops_rule(counts: "RunCounts", graph: Optional["Graph"] = None) -> RuleCounts:
    """syops-counter (AutoST): module ops × input rate as ACs for binary input, else MACs."""
    counts = per_sample(counts)
    per_node = {}
    notes: List[str] = []
    unknown_bias: List[str] = []
    for n in _nodes(counts):
        st = _static(counts, n)
        op = st.get("op")
        numel = _input_numel(counts, n)
        binary = bool(st.get("input_binary", False))
        neurons = int(st.get("neurons", 0) or 0)
        if op in CONV_OPS or op in ("Linear", "Affine"):
            ops = float(st.get("dense_macs", 0) or 0)
            has_bias, shape = _bias_and_shape(counts, n, graph)
            if has_bias is None or (has_bias and shape is None):
                unknown_bias.append(n)
            elif has_bias:
                ops += float(np.prod(shape)) if op in CONV_OPS else float(shape[-1])
        elif op == "BatchNorm":
            ops = 2.0 * numel
        elif neurons > 0:
            rate = _rate(counts, n, values=True) if binary else np.ones(counts.steps)
            per_node[n] = NodeOps(float(numel) * rate, _zeros(counts))
            continue
        elif op in ("MaxPool2d", "ReLU"):
            ops = float(numel)
        elif op == "AvgPool2d":
            per_node[n] = NodeOps(_zeros(counts), np.full(counts.steps, float(numel)))
            continue
        else:
            continue  # functional or unhooked in syops: MatMul, Add, SumPool2d, ...
        if ops == 0:
            continue
        if binary:
            per_node[n] = NodeOps(ops * _rate(counts, n, values=True), _zeros(counts))
        else:
            per_node[n] = NodeOps(_zeros(counts), np.full(counts.steps, ops))
    if unknown_bias:
        notes.append("bias ops not counted for " + ", ".join(unknown_bias) +
                     ": bias and output shape unknown (pass the graph)")
    return RuleCounts("syops", "syops-counter: conv/linear ops per output incl. bias, BN 2*numel, "
                      "neurons numel (ACs), pooling numel; ops x input rate as ACs when the "
                      "input is binary, else MACs; matmuls not counted", counts.steps, per_node,
                      notes=notes)


#: ops through which the spikformer rule follows spikes back to their source
_PASS_THROUGH = ("Reshape", "Transpose", "Flatten")
#: ops whose output is (a rate of) spikes when all inputs are: the max of 0/1
#: values, residual sums of spikes (0..2 counts 2), the token mean before the
#: head (a rate; the linear head commutes with it), concatenation
_SPIKE_PRESERVING = ("MaxPool2d", "Add", "Concat", "Mean")


def _carries_spikes(counts: "RunCounts", node: str) -> bool:
    """Whether ``node``'s output is spikes: its kind label says so, or it is a
    max-pool or layout op whose inputs all carry spikes (max of 0/1 is 0/1)."""
    st = _static(counts, node)
    if not st:
        return False
    if st.get("op") in _SPIKE_PRESERVING + _PASS_THROUGH:
        ins = list(st.get("inputs", []))
        return bool(ins) and all(_source_kind_spiking(counts, node, i) for i in range(len(ins)))
    return False


def _source_kind_spiking(counts: "RunCounts", node: str, i: int) -> bool:
    """Whether input ``i`` of ``node`` carries spikes (label or max-pool/layout of spikes)."""
    st = _static(counts, node)
    kinds = st.get("input_kind") or []
    if i < len(kinds) and kinds[i] in ("spikes", "graded"):
        return True
    ins = st.get("inputs") or []
    return i < len(ins) and _carries_spikes(counts, ins[i])


def _operand_rate(counts: "RunCounts", node: str) -> Optional[np.ndarray]:
    """(T,) firing rate of a node's output, traced back through layout ops to a
    neuron's spikes_out; None when unknown."""
    st = _static(counts, node)
    while st and st.get("op") in _PASS_THROUGH:
        node = st["inputs"][0]
        st = _static(counts, node)
    if not st:
        return None
    numel = float(np.prod(st.get("output_shape") or [0]))
    if numel <= 0 or not st.get("neurons"):
        return None
    return np.asarray(counts.counter(node, "spikes_out"), dtype=float) / numel


def spikformer_rule(counts: "RunCounts", graph: Optional["Graph"] = None) -> RuleCounts:
    """Spikformer's Σ fr·T·FLOPs: weighted layers' and SSA products' dense MACs ×
    input firing rate as ACs; layers fed real values as MACs."""
    counts = per_sample(counts)
    per_node = {}
    notes: List[str] = []
    for n in _nodes(counts):
        st = _static(counts, n)
        op = st.get("op")
        flops = float(st.get("dense_macs", 0) or 0)
        if op == "MatMul":
            spiking = [i for i in range(len(st.get("inputs", [])))
                       if _source_kind_spiking(counts, n, i)]
            rate = _operand_rate(counts, st["inputs"][spiking[0]]) if spiking else None
            if rate is None:
                if spiking:
                    notes.append(f"{n}: the spiking operand's rate is unknown; priced as MACs")
                per_node[n] = NodeOps(_zeros(counts), np.full(counts.steps, flops))
            else:
                per_node[n] = NodeOps(flops * rate, _zeros(counts))
            continue
        if op not in WEIGHTED_OPS:
            continue
        if not _input_is_analog(counts, n):
            per_node[n] = NodeOps(flops * _rate(counts, n, values=True), _zeros(counts))
        elif _source_kind_spiking(counts, n, 0):  # e.g. after a max-pool of spikes
            numel = _input_numel(counts, n)
            rate = np.asarray(counts.counter(n, "values_in"), dtype=float) / max(numel, 1)
            per_node[n] = NodeOps(flops * rate, _zeros(counts))
        else:
            per_node[n] = NodeOps(_zeros(counts), np.full(counts.steps, flops))
    return RuleCounts("spikformer", "Spikformer: sum over weighted layers and SSA products of "
                      "mean input firing rate x T x dense MACs as ACs; layers fed real values: "
                      "dense MACs x T as MACs", counts.steps, per_node, notes=notes)


#: name -> rule function
RULES: Dict[str, Callable[..., RuleCounts]] = {
    "fanout": fanout_rule,
    "neurobench": neurobench_rule,
    "neurobench-sample": neurobench_sample_rule,
    "syops": syops_rule,
    "spikformer": spikformer_rule,
}


def apply_rule(counts: "RunCounts", rule: str = "fanout",
               graph: Optional["Graph"] = None) -> RuleCounts:
    """Re-express a run's counts under a named rule (see the module docstring).

    ``graph`` is needed only by ``syops`` to know which convolutions have a
    bias and their output size, unless the counts' ``static`` already holds
    ``has_bias`` and ``output_shape``."""
    try:
        fn = RULES[rule]
    except (KeyError, TypeError):
        raise BadInputError(f"unknown counting rule {rule!r}; known rules: "
                            f"{', '.join(RULES)}") from None
    return fn(counts, graph)
