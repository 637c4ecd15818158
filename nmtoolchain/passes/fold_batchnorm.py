"""Fold inference batch norm into the synapse layer before it.

A BatchNorm in eval mode is an affine map per channel, ``y = s * x + t`` with
``s = weight / sqrt(var + eps)`` and ``t = bias - mean * s``. When it reads a
Conv2d, Affine or Linear whose output nothing else reads, and normalizes that
layer's output channels (axis 0 of a conv's (C, H, W); the last axis of a
dense layer's output), the two are one layer with

    W'[o, ...] = s[o] * W[o, ...],    b'[o] = s[o] * b[o] + t[o]

(a Linear becomes an Affine). This is exact up to float rounding.

A BatchNorm that cannot be folded (it reads something else, its producer has
other readers, or it normalizes another axis) stays in the graph and is
reported: one line per node in ``graph.metadata['unfolded_batchnorm']`` of the
returned graph. The pass returns a new graph and never changes the one it is
given; it must not import torch or a vendor library.
"""
from __future__ import annotations

import copy
from typing import List

import numpy as np

from nmtoolchain.ir import Affine, Graph
from nmtoolchain.ir.norm import BatchNorm

_FOLDABLE = ("Conv2d", "Affine", "Linear")


def _why_not(graph: Graph, bn_name: str) -> str:
    """'' when the BatchNorm ``bn_name`` can be folded, else the reason."""
    bn_node = graph[bn_name]
    src = graph[bn_node.inputs[0]]
    if src.op_name not in _FOLDABLE:
        return f"it reads '{src.name}' ({src.op_name}), not a {'/'.join(_FOLDABLE)}"
    readers = [u.name for u in graph.users(src.name)]
    if readers != [bn_name]:
        return f"'{src.name}' is also read by {[r for r in readers if r != bn_name]}"
    op: BatchNorm = bn_node.op
    shape = src.shape if src.shape is not None else None
    if shape is None:
        graph.infer_shapes()
        shape = src.shape
    ndim = len(shape)
    axis = op.axis % ndim
    want = 0 if src.op_name == "Conv2d" else ndim - 1
    if axis != want:
        return f"it normalizes axis {op.axis}, '{src.name}' has its channels on axis {want}"
    return ""


def fold_batchnorm(graph: Graph) -> Graph:
    """A copy of ``graph`` with every foldable BatchNorm merged into its producer.

    Unfoldable BatchNorms stay; each is described in
    ``metadata['unfolded_batchnorm']`` (an empty list when all folded).
    Folded ones are listed in ``metadata['folded_batchnorm']`` and in the
    producer's ``annotations['folded_batchnorm']``.
    """
    g = copy.deepcopy(graph)
    g.infer_shapes()
    folded: List[str] = []
    unfolded: List[str] = []
    for bn_name in [n.name for n in g if n.op_name == "BatchNorm"]:
        reason = _why_not(g, bn_name)
        if reason:
            unfolded.append(f"node '{bn_name}' (BatchNorm) kept: {reason}")
            continue
        bn_node = g[bn_name]
        src = g[bn_node.inputs[0]]
        scale, shift = bn_node.op.scale_shift()
        scale = scale.astype(np.float64)
        shift = shift.astype(np.float64)
        w = np.asarray(src.op.weight, dtype=np.float64)
        bias = getattr(src.op, "bias", None)
        b = np.zeros(w.shape[0]) if bias is None else np.asarray(bias, dtype=np.float64)
        w_new = (w * scale.reshape((-1,) + (1,) * (w.ndim - 1))).astype(np.float32)
        b_new = (b * scale + shift).astype(np.float32)
        if src.op_name == "Conv2d":
            new_op = copy.copy(src.op)
            new_op.weight, new_op.bias = w_new, b_new
        elif src.op_name == "Affine":
            new_op = copy.copy(src.op)
            new_op.weight, new_op.bias = w_new, b_new
        else:  # Linear has no bias: it becomes an Affine
            new_op = Affine(weight=w_new, bias=b_new)
        new_op.check()
        src.op = new_op
        src.annotations["folded_batchnorm"] = bn_name
        g.replace_input(bn_name, src.name)
        g.remove(bn_name)
        folded.append(bn_name)
    g.infer_shapes()
    g.metadata["folded_batchnorm"] = folded
    g.metadata["unfolded_batchnorm"] = unfolded
    return g


__all__ = ["fold_batchnorm"]
