"""Random Spike Masking (RSM, Wang et al., MST, ICCV 2023) as a graph pass.

RSM drops each spike on an edge with probability ``p`` (keep 1 - p), a fresh
elementwise Bernoulli draw at every time step, with no 1/(1 - p) rescaling, in
training and in inference (``reference/seeds.md`` §2.4). In the IR a masked
edge is a ``SpikeMask`` node; the simulator resamples it every step from the
node's seed, so the counted synaptic operations are those of the spikes that
actually pass.

:func:`apply_rsm` chooses the edges two ways:

* by role: ``SpikeMask`` nodes already in the graph (from
  :class:`nmtoolchain.nn.SpikeMask` modules, tagged ``annotations['rsm_role']``)
  whose role is asked get their ``p`` set. Preset ``'mst'`` = q, k, score (MST's
  released code); ``'mst+mlp'`` adds ``mlp_in`` (the spikes entering each MLP
  linear, fc1 and fc2: the paper's Fig. 2(e), not in the released code: flagged paper-only in ``graph.metadata['rsm']``);
* by node: ``nodes=[...]`` inserts a new ``SpikeMask`` right after each named
  node, on every edge leaving it (generic masking, e.g. after every IF of a CNN
  block as the paper does for VGG/ResNet).

Every mask the pass touches gets its own seed (``seed``, ``seed + 1``, ... in
graph order), so no two masks draw the same pattern. The pass never changes
the graph it is given and imports no torch or vendor library.

Two views of the work of P·V (``reference/seeds.md`` §2.4). The simulator
counts what the graph executes: softmax makes the attention matrix P dense,
so ``P @ V`` is booked as dense, activity-aware MACs whatever the score mask
dropped. In the paper's spiking view a masked score spike does not trigger
its multiplication with V. :func:`spiking_view_counts` re-books, in a copy of
a run's counts, every such MatMul (found by :func:`score_value_matmuls`) as
``synops = score spikes passed by the mask × V's last dimension`` per step;
the energy of both views then comes from the same profiles applied to the two
``RunCounts``.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import TYPE_CHECKING, Dict, List, Optional, Sequence, Set, Tuple

import numpy as np

from nmtoolchain.errors import BadInputError
from nmtoolchain.ir import Graph, SpikeMask

if TYPE_CHECKING:  # typing only: importing simulators.cycle loads torch
    from simulators.cycle.counts import RunCounts

#: preset name -> roles it masks
PRESETS: Dict[str, tuple] = {
    "mst": ("q", "k", "score"),  # MST's released code: attention only, V never masked
    "mst+mlp": ("q", "k", "score", "mlp_in"),  # + the paper's Fig. 2(e) MLP mask
}
#: roles a SpikeMask may carry: attention query/key spikes, attention-score
#: spikes, spikes entering an MLP linear layer, spikes leaving a conv block
KNOWN_ROLES: tuple = ("q", "k", "score", "mlp_in", "conv_out")
#: roles whose masking is described by the MST paper but absent from its code
PAPER_ONLY_ROLES: tuple = ("mlp_in",)
#: role recorded on masks that ``nodes=`` inserts
EDGE_ROLE = "edge"


@dataclass(frozen=True)
class RsmSelection:
    """What :func:`apply_rsm` masks in a graph, before any change to it."""

    #: roles asked: the preset's, then those of ``roles=`` not already in it
    roles: Tuple[str, ...]
    #: role -> the SpikeMask nodes carrying it, in graph order (each non-empty)
    role_masks: Dict[str, Tuple[str, ...]]
    #: nodes after which a new SpikeMask goes, on every edge leaving them
    insert_after: Tuple[str, ...]

    @property
    def existing_masks(self) -> Set[str]:
        """The SpikeMask nodes already in the graph that get ``p``."""
        return {n for names in self.role_masks.values() for n in names}


def requested_roles(preset: Optional[str], roles: Optional[Sequence[str]]) -> List[str]:
    """The roles of ``preset`` then the other ``roles``; BadInputError for an unknown one."""
    if preset is not None and preset not in PRESETS:
        raise BadInputError(f"RSM: unknown preset {preset!r}; known: {sorted(PRESETS)}")
    want: List[str] = list(PRESETS[preset]) if preset is not None else []
    want += [r for r in (roles or ()) if r not in want]
    unknown = [r for r in want if r not in KNOWN_ROLES]
    if unknown:
        raise BadInputError(f"RSM: unknown role(s) {unknown}; known: {list(KNOWN_ROLES)}")
    return want


def _masks_by_role(graph: Graph, want: Sequence[str]) -> Dict[str, Tuple[str, ...]]:
    """role -> SpikeMask nodes carrying it; BadInputError if a role has none."""
    present = {r: tuple(n.name for n in graph if n.op_name == "SpikeMask"
                        and n.annotations.get("rsm_role") == r) for r in want}
    absent = [r for r, names in present.items() if not names]
    if absent:
        have = sorted({str(n.annotations.get("rsm_role", "")) for n in graph
                       if n.op_name == "SpikeMask"})
        raise BadInputError(f"RSM: no SpikeMask node with role(s) {absent} in the graph "
                            f"(roles present: {have or 'none'})")
    return present


def _check_mask_after(graph: Graph, name: str) -> None:
    """BadInputError unless a mask can go on the edges leaving node ``name``."""
    if name not in graph.nodes:
        raise BadInputError(f"RSM: no node named '{name}' to mask after")
    op = graph.nodes[name].op_name
    if op in ("Output", "SpikeMask"):
        raise BadInputError(f"RSM: node '{name}' ({op}) cannot be masked after")
    if not graph.users(name):
        raise BadInputError(f"RSM: node '{name}' ({op}) has no consumer to mask")


def select_masks(graph: Graph, *, preset: Optional[str] = None,
                 roles: Optional[Sequence[str]] = None,
                 nodes: Optional[Sequence[str]] = None) -> RsmSelection:
    """The edges :func:`apply_rsm` would mask, checked; ``graph`` is only read.

    Raises BadInputError for an unknown preset or role, nothing chosen, a role
    no mask in the graph carries, or a node that is missing, an Output,
    already a SpikeMask, or without consumer.
    """
    want = requested_roles(preset, roles)
    after = list(nodes or ())
    if not want and not after:
        raise BadInputError("RSM: nothing to mask; give preset=, roles= or nodes=")
    present = _masks_by_role(graph, want)
    for name in after:
        _check_mask_after(graph, name)
    return RsmSelection(tuple(want), present, tuple(after))


def _insert_masks(graph: Graph, after: Sequence[str], p: float) -> List[str]:
    """Put a new SpikeMask on every edge leaving each node of ``after`` (in place);
    returns the new masks' names."""
    inserted = []
    for name in after:
        users = [u.name for u in graph.users(name)]
        mask = graph.unique_name(f"{name}_rsm")
        graph.add(mask, SpikeMask(p=p), [name], {"rsm_role": EDGE_ROLE, "rsm_after": name})
        for u in users:
            un = graph.nodes[u]
            un.inputs = tuple(mask if i == name else i for i in un.inputs)
        inserted.append(mask)
    return inserted


def _set_masks(graph: Graph, chosen: Set[str], p: float, seed: int) -> List[str]:
    """Give each chosen mask drop ratio ``p`` and its own seed (``seed``, ``seed + 1``,
    ... in graph order, so seeds do not depend on set iteration); returns their names."""
    names = []
    for n in graph:
        if n.name in chosen:
            n.op = SpikeMask(p=p, seed=int(seed) + len(names))
            names.append(n.name)
    return names


def _rsm_record(p: float, preset: Optional[str], selection: RsmSelection, seed: int,
                masks: List[str]) -> Dict[str, object]:
    """What ``graph.metadata['rsm']`` says about the pass."""
    want = list(selection.roles)
    return {
        "p": p, "preset": preset, "roles": want,
        "inserted_after": list(selection.insert_after), "seed": int(seed),
        "masks": masks,
        "paper_only_roles": [r for r in want if r in PAPER_ONLY_ROLES],
        "rule": "y = x * (U >= p), U ~ Uniform[0,1) per element and step; no rescaling",
    }


def apply_rsm(graph: Graph, p: float, *, preset: Optional[str] = None,
              roles: Optional[Sequence[str]] = None, nodes: Optional[Sequence[str]] = None,
              seed: int = 0) -> Graph:
    """A copy of ``graph`` whose chosen edges drop spikes with probability ``p``.

    ``preset`` and ``roles`` select existing ``SpikeMask`` nodes by their
    ``rsm_role`` (union of both); ``nodes`` names nodes after which a new mask
    is inserted (:func:`select_masks`). Raises BadInputError for p outside
    [0, 1] and for the bad requests :func:`select_masks` refuses.
    """
    p = float(p)
    if not 0.0 <= p <= 1.0:
        raise BadInputError(f"RSM: drop ratio p must be in [0, 1], got {p}")
    selection = select_masks(graph, preset=preset, roles=roles, nodes=nodes)
    out = copy.deepcopy(graph)
    chosen = selection.existing_masks | set(_insert_masks(out, selection.insert_after, p))
    masks = _set_masks(out, chosen, p, seed)
    out.infer_shapes()
    out.metadata["rsm"] = _rsm_record(p, preset, selection, seed, masks)
    return out


def masked_path(graph: Graph, roles: Optional[Sequence[str]] = None) -> List[str]:
    """Nodes fed by a SpikeMask (any p, so p = 0 gives the same set as a
    reference), directly or through non-neuron nodes, up to and including the
    next neuron: where masking changes the counts. ``roles`` restricts the
    masks to those roles (inserted masks have role ``'edge'``)."""
    seen: List[str] = []
    stack = [n.name for n in graph if n.op_name == "SpikeMask"
             and (roles is None or n.annotations.get("rsm_role") in roles)]
    while stack:
        name = stack.pop()
        for u in graph.users(name):
            if u.name in seen:
                continue
            seen.append(u.name)
            if not u.op.is_neuron and u.op_name != "Output":
                stack.append(u.name)
    return [n.name for n in graph if n.name in seen]


#: single-input ops allowed between a score SpikeMask and its Softmax: the
#: position bias (a constant current) and value-preserving reshapes/scalings
SCORE_PASS_OPS: tuple = ("Bias", "Scale", "Reshape", "Transpose", "Flatten")


def score_value_matmuls(graph: Graph) -> List[Dict[str, object]]:
    """The MatMuls ``P @ V`` whose left operand is a Softmax over masked spikes.

    A match is a MatMul whose first input is a Softmax node, whose input is
    reached from a ``SpikeMask`` through single-input :data:`SCORE_PASS_OPS`
    nodes only (MST: mask -> Bias -> Softmax, or mask -> Softmax). Each match
    is a dict: ``matmul``, ``softmax``, ``mask`` (the SpikeMask), ``role`` (its
    ``rsm_role``), ``events_node`` (the node right after the mask on that
    chain, whose ``events_in`` are the spikes the mask passed), ``value`` (the
    right operand) and ``d`` (its last dimension). Graph order; shapes needed.
    """
    out: List[Dict[str, object]] = []
    for node in graph:
        if node.op_name != "MatMul" or len(node.inputs) != 2:
            continue
        soft = graph[node.inputs[0]]
        if soft.op_name != "Softmax" or len(soft.inputs) != 1:
            continue
        prev, cur = soft.name, graph[soft.inputs[0]]
        while cur.op_name in SCORE_PASS_OPS and len(cur.inputs) == 1:
            prev, cur = cur.name, graph[cur.inputs[0]]
        if cur.op_name != "SpikeMask":
            continue
        value = graph[node.inputs[1]]
        if value.shape is None:
            raise BadInputError(f"RSM spiking view: node '{value.name}' has no shape "
                                "(call graph.infer_shapes())")
        out.append({"matmul": node.name, "softmax": soft.name, "mask": cur.name,
                    "role": cur.annotations.get("rsm_role"), "events_node": prev,
                    "value": value.name, "d": int(value.shape[-1])})
    return out


def spiking_view_counts(graph: Graph, counts: "RunCounts") -> "RunCounts":
    """A NEW ``RunCounts`` with every P·V MatMul of :func:`score_value_matmuls`
    booked in the paper's spiking view (``reference/seeds.md`` §2.4).

    For each match, per step: ``synops = events × d`` and ``macs = 0``, where
    ``events`` are the non-zero score elements the mask passed (the
    ``events_in`` of the node right after the mask, summed over the batch as
    every counter) and ``d`` is V's last dimension: one accumulate of a V row
    per surviving score spike, whatever softmax did to the zeros. Every other
    counter and node is copied unchanged; ``static[matmul]['spiking_view']``
    records the match and the replaced totals. ``counts`` is not modified.
    Energy of the view: pass the returned counts to
    :func:`nmtoolchain.energy.compare_profiles` like any run's counts.
    """
    new = copy.deepcopy(counts)
    for m in score_value_matmuls(graph):
        name, d = str(m["matmul"]), int(m["d"])
        events = np.asarray(counts.counter(str(m["events_node"]), "events_in"), dtype=float)
        series = new.nodes.setdefault(name, {})
        replaced = {k: float(np.asarray(series.get(k, np.zeros(new.steps))).sum())
                    for k in ("synops", "macs")}
        series["synops"] = events * d
        series["macs"] = np.zeros(new.steps)
        st = dict(new.static.get(name, {}))
        kinds = list(st.get("input_kind") or ["analog", "spikes"])
        st["input_kind"] = ["spikes"] + kinds[1:]
        st["spiking_view"] = {**m, "replaced": replaced,
                              "rule": "synops = score spikes passed by the mask x d per step; "
                                      "macs = 0"}
        new.static[name] = st
    return new


__all__ = ["apply_rsm", "select_masks", "requested_roles", "RsmSelection", "masked_path", "score_value_matmuls", "spiking_view_counts", "PRESETS",
           "KNOWN_ROLES", "PAPER_ONLY_ROLES", "EDGE_ROLE", "SCORE_PASS_OPS"]
