"""The IR graph of a Spikformer-family config, built without weights.

Scoring a candidate must take milliseconds, so the search does not build the
torch model (11 M random weights) and trace it. It builds the same IR graph
the torch loader produces for :func:`nmtoolchain.models.spikformer.build_spikformer`
(same ops, shapes and order; ``tests/test_autost_proxies.py`` checks node by
node), with every weight a zero-copy broadcast view of 1 (a bias the model
does not have is a view of 0, as the loader stores it). The graph then goes
through the one static counter (``Graph.node_counts``, what ``nmtc inspect``
shows) and the counting rules; nothing here counts operations.
"""
from __future__ import annotations

from typing import Any, Mapping, Tuple

import numpy as np

from nmtoolchain.ir import (LIF, Add, Affine, BatchNorm, Conv2d, Flatten, Graph, Input, MatMul,
                            MaxPool2d, Mean, Output, Reshape, Scale, Transpose)
from nmtoolchain.models.spikformer import _resolve


def _ones(*shape: int) -> np.ndarray:
    return np.broadcast_to(np.float32(1.0), shape)


def _zeros(*shape: int) -> np.ndarray:
    return np.broadcast_to(np.float32(0.0), shape)


class _Builder:
    """Appends nodes in the loader's order; ``last`` is the newest node."""

    def __init__(self, cfg: Mapping[str, Any]) -> None:
        self.g = Graph()
        self.cfg = cfg
        self.n = 0

    def add(self, stem: str, op: Any, *inputs: str) -> str:
        self.n += 1
        name = f"{stem}_{self.n}"
        self.g.add(name, op, inputs)
        return name

    def lif(self, x: str, v_threshold: float = 1.0) -> str:
        return self.add("lif", LIF(tau=float(self.cfg["tau"]), v_threshold=v_threshold,
                                   reset="to_reset", v_reset=0.0, compare=">="), x)

    def bn(self, x: str, ch: int, axis: int) -> str:
        return self.add("bn", BatchNorm(_zeros(ch), _ones(ch), _ones(ch), _zeros(ch),
                                        axis=axis), x)

    def linear(self, x: str, d_in: int, d_out: int, bias: bool = True) -> str:
        return self.add("linear", Affine(_ones(d_out, d_in),
                                         _ones(d_out) if bias else _zeros(d_out)), x)


def spikformer_graph(config: Mapping[str, Any]) -> Graph:
    """The weight-free IR graph of a ``spikformer`` config (both variants),
    shapes inferred: input (C, H, W) per sample and step, output (classes,)."""
    cfg = _resolve(config)
    pre_act = cfg["variant"] == "autost"
    b = _Builder(cfg)
    d = int(cfg["embed_dim"])
    size = int(cfg["input_size"])
    b.g.add("input", Input((int(cfg["in_channels"]), size, size)))
    x = "input"
    widths = [int(cfg["in_channels"]), d // 8, d // 4, d // 2, d]
    for i in range(4):  # SPS: conv, BN, neuron (not after conv3 in AutoST), max-pool
        x = b.add("conv", Conv2d(_ones(widths[i + 1], widths[i], 3, 3), _zeros(widths[i + 1]),
                                 stride=1, padding=1), x)
        x = b.bn(x, widths[i + 1], 0)
        if not (pre_act and i == 3):
            x = b.lif(x)
        if cfg["pools"][i]:
            x = b.add("maxpool", MaxPool2d((3, 3), (2, 2), (1, 1)), x)
    r = b.add("conv", Conv2d(_ones(d, d, 3, 3), _zeros(d), stride=1, padding=1), x)
    r = b.bn(r, d, 0)
    if not pre_act:
        r = b.lif(r)
    x = b.add("add", Add(), r, x)
    x = b.add("flatten", Flatten(1, 2), x)
    x = b.add("transpose", Transpose((1, 0)), x)  # (N, D) tokens
    for heads, ratio in zip(cfg["heads"], cfg["mlp_ratio"]):
        x = _block(b, x, d, int(heads), int(ratio), pre_act)
    x = b.add("mean", Mean(0), x)
    x = b.linear(x, d, int(cfg["num_classes"]))
    b.g.add("output", Output(), (x,))
    return b.g.infer_shapes()


def _block(b: _Builder, x: str, d: int, heads: int, ratio: int, pre_act: bool) -> str:
    """x + SSA(x), then + MLP; the node order of the torch loader's trace."""
    dh = d // heads
    s = b.lif(x) if pre_act else x
    qkv = []
    for _ in range(3):
        t = b.lif(b.bn(b.linear(s, d, d, bool(b.cfg["qkv_bias"])), d, 1))
        t = b.add("reshape", Reshape((-1, heads, dh)), t)
        qkv.append(b.add("permute", Transpose((1, 0, 2)), t))  # (heads, N, dh)
    q, k, v = qkv
    kt = b.add("transpose", Transpose((0, 2, 1)), k)
    a = b.add("matmul", MatMul(), q, kt)
    a = b.add("scale", Scale(np.float32(b.cfg["scale"])), a)
    y = b.add("matmul", MatMul(), a, v)
    y = b.add("permute", Transpose((1, 0, 2)), y)
    y = b.add("reshape", Reshape((-1, d)), y)
    y = b.lif(y, float(b.cfg["attn_threshold"]))
    y = b.bn(b.linear(y, d, d), d, 1)
    if not pre_act:
        y = b.lif(y)
    x = b.add("add", Add(), x, y)
    hidden = ratio * d
    if pre_act:
        h = b.bn(b.linear(b.lif(x), d, hidden), hidden, 1)
        h = b.bn(b.linear(b.lif(h), hidden, d), d, 1)
    else:
        h = b.lif(b.bn(b.linear(x, d, hidden), hidden, 1))
        h = b.lif(b.bn(b.linear(h, hidden, d), d, 1))
    return b.add("add", Add(), x, h)


def node_signature(graph: Graph) -> Tuple[Tuple[Any, ...], ...]:
    """(op, output shape, node counts) per node in topological order: what two
    graphs must share to count the same (names aside)."""
    return tuple((n.op_name, tuple(n.shape), tuple(sorted(graph.node_counts(n).items())))
                 for n in graph.topological_order())


__all__ = ["spikformer_graph", "node_signature"]
