"""Fold a ``Scale`` that follows a neuron into the weights of the synapses it feeds.

ANN->SNN conversion (:func:`nmtoolchain.convert.mst.convert_mst`) leaves an
IF neuron followed by ``Scale(λ)``: the IF emits unit spikes and the scale
gives them the activation's amplitude. On Loihi a spike carries no amplitude
(netx has no scale layer), but every path from the scale to a synapse is
linear, so the scale belongs in that synapse's weights:

* ``Scale -> Conv2d``: input channel c of the kernel is multiplied by the
  scale of channel c (a scalar scale multiplies the whole kernel; groups are
  respected);
* ``Scale -> Affine/Linear``: input column i is multiplied by the scale of
  feature i (for token-wise layers, with inputs (N, D), the scale must be the
  same for every token);
* through ``SumPool2d``/``AvgPool2d`` (the scale must be constant per
  channel, which pooling keeps), ``Flatten`` and ``Reshape`` (the per-element
  scale is flattened/reshaped with the data).

A synapse's bias is not scaled (it adds after the weights). A scale that
reaches anything else (an Output, a neuron, Add, MatMul, Softmax, ...) is
left in place, because a spike amplitude there is not a weight; with
``strict=True`` that raises :class:`NotExpressibleError` naming the scale and
the node that stops it. A synapse fed by several scales, or read through
several paths, is refused the same way (its weights could not take both).

The pass returns a new graph (the input is unchanged), records each fold in
``graph.metadata['folded_scales']`` and in the synapse's
``annotations['folded_scale']``, and imports no torch or vendor library.
"""
from __future__ import annotations

import copy
from typing import Any, Dict, List, Tuple

import numpy as np

from nmtoolchain.errors import NotExpressibleError
from nmtoolchain.ir import Graph, Node

_PASS_THROUGH = ("SumPool2d", "AvgPool2d", "Flatten", "Reshape")
_SYNAPSES = ("Conv2d", "Affine", "Linear")


class _Stop(Exception):
    def __init__(self, node: str, why: str) -> None:
        super().__init__(why)
        self.node, self.why = node, why


def fold_scales(graph: Graph, strict: bool = False) -> Graph:
    """A copy of ``graph`` with every foldable neuron-following ``Scale`` removed.

    ``strict``: raise NotExpressibleError for a Scale that cannot be folded
    (otherwise it stays, and ``metadata['unfolded_scales']`` says why)."""
    g = copy.deepcopy(graph)
    g.infer_shapes()
    folded: List[Dict[str, Any]] = []
    kept: List[Dict[str, str]] = []
    for node in [n for n in g.topological_order() if n.op_name == "Scale"]:
        src = g[node.inputs[0]]
        try:
            if not src.op.is_neuron:
                raise _Stop(src.name, f"it follows {src.op_name} '{src.name}', not a neuron "
                                      "(only spike amplitudes fold into weights)")
            plan = _plan(g, node)
        except _Stop as e:
            if strict:
                raise NotExpressibleError(
                    f"Scale '{node.name}' cannot be folded into the weights after it: "
                    f"{e.why}") from None
            kept.append({"scale": node.name, "stopped_at": e.node, "why": e.why})
            continue
        for syn, new_op in plan:
            syn.op = new_op
            syn.annotations.setdefault("folded_scale", []).append(node.name)
        g.replace_input(node.name, src.name)
        g.remove(node.name)
        folded.append({"scale": node.name, "neuron": src.name,
                       "into": [s.name for s, _ in plan],
                       "value": _summary(node.op.scale)})
    g.infer_shapes()
    if folded:
        g.metadata["folded_scales"] = list(g.metadata.get("folded_scales", [])) + folded
    if kept:
        g.metadata["unfolded_scales"] = kept
    return g


def _summary(s: np.ndarray) -> Any:
    s = np.asarray(s, dtype=np.float64)
    if s.size == 1:
        return float(s.reshape(()))
    return {"shape": list(s.shape), "min": float(s.min()), "max": float(s.max())}


def _plan(g: Graph, scale: Node) -> List[Tuple[Node, Any]]:
    """[(synapse node, its op with the scale folded in)] for every path, or _Stop."""
    shape = tuple(g[scale.inputs[0]].shape)
    full = np.broadcast_to(np.asarray(scale.op.scale, dtype=np.float64), shape)
    plans: List[Tuple[Node, Any]] = []
    seen: set = set()
    stack: List[Tuple[Node, np.ndarray]] = [(u, full) for u in g.users(scale.name)]
    while stack:
        user, s = stack.pop()
        if user.name in seen:
            raise _Stop(user.name, f"'{user.name}' is reached by more than one path")
        seen.add(user.name)
        if user.op_name in _SYNAPSES:
            plans.append((user, _scaled_synapse(user, s)))
        elif user.op_name in _PASS_THROUGH:
            out_shape = tuple(user.shape)
            if user.op_name in ("SumPool2d", "AvgPool2d"):
                per_c = _per_channel(user, s)
                nxt = np.broadcast_to(per_c.reshape((-1,) + (1,) * (len(out_shape) - 1)),
                                      out_shape)
            else:  # Flatten / Reshape: the data's layout, element for element
                nxt = np.ascontiguousarray(s).reshape(out_shape)
            users = g.users(user.name)
            if not users:
                raise _Stop(user.name, f"'{user.name}' feeds nothing")
            stack += [(u, nxt) for u in users]
        else:
            raise _Stop(user.name, f"it reaches {user.op_name} '{user.name}', which has no "
                                   "weights to take it")
    return plans


def _per_channel(node: Node, s: np.ndarray) -> np.ndarray:
    c = s.shape[0]
    flat = s.reshape(c, -1)
    if not np.all(flat == flat[:, :1]):
        raise _Stop(node.name, f"the scale varies within a channel before {node.op_name} "
                               f"'{node.name}'")
    return flat[:, 0].copy()


def _scaled_synapse(node: Node, s: np.ndarray) -> Any:
    op = copy.deepcopy(node.op)
    w = np.asarray(op.weight, dtype=np.float64)
    if node.op_name == "Conv2d":
        per_c = _per_channel(node, s)
        groups = int(getattr(op, "groups", 1) or 1)
        c_in = w.shape[1] * groups
        if per_c.shape[0] != c_in:
            raise _Stop(node.name, f"scale has {per_c.shape[0]} channels, '{node.name}' reads "
                                   f"{c_in}")
        out_per_group = w.shape[0] // groups
        cols = np.stack([per_c[(o // out_per_group) * w.shape[1]:
                               (o // out_per_group + 1) * w.shape[1]]
                         for o in range(w.shape[0])])  # (O, C/groups)
        w = w * cols[:, :, None, None]
    else:  # Affine / Linear over the last axis
        lead = s.reshape(-1, s.shape[-1]) if s.ndim > 1 else s.reshape(1, -1)
        if not np.all(lead == lead[:1]):
            raise _Stop(node.name, f"the scale differs between tokens before token-wise "
                                   f"{node.op_name} '{node.name}'")
        if lead.shape[1] != w.shape[-1]:
            raise _Stop(node.name, f"scale has {lead.shape[1]} features, '{node.name}' reads "
                                   f"{w.shape[-1]}")
        w = w * lead[0][None, :]
    op.weight = w.astype(np.asarray(op.weight).dtype, copy=False)
    return op
