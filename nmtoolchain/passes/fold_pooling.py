"""Fold sum and average pooling into the weights of the layer that reads it.

Loihi and lava-dl netx have no pooling layer (netx raises NotImplementedError
for ``pool``), but pooling is linear, so the layer after it can absorb it:

* **Pool -> Conv2d.** Pooling with window k and stride t, then a convolution
  with kernel K, stride s, padding p and dilation d, is one convolution with
  kernel (K-1)*d*t + k, stride s*t, padding p*t (+ the pool's padding) and
  dilation 1, whose weights are
  ``W'[o, i, j*d*t + a, ...] += K[o, i, j, ...]`` for every window offset
  ``a < k`` (scaled by 1/(kH*kW) for average pooling). For the common case
  t = k, d = 1 this is ``W'[o, i, a, b] = K[o, i, a // k, b // k]`` with stride
  k*s and padding k*p. Groups are kept (pooling acts per channel).
* **Pool -> Flatten -> Affine/Linear.** The dense weights over the pooled
  map become weights over the unpooled map:
  ``W'[o, c, h, w] = sum of W[o, c, i, j] over the pooled cells (i, j) whose
  window holds (h, w)`` (scaled for average pooling). Always exact.
* **Conv2d -> Pool -> neuron** (snnTorch's order), the pool reading a
  convolution that feeds nothing else and padding nothing: the pool folds into
  that convolution (kernel (k-1)*s + (K-1)*d + 1, stride s*t, its padding),
  one synapse before the neuron.
* **Pool -> neuron.** Otherwise the pool is itself the synapse: it becomes a depthwise
  Conv2d (groups = C, a kH x kW kernel of ones, or 1/(kH*kW) for average
  pooling) with the pool's stride and padding.

Each fold is checked before it is applied: along each spatial axis and for each
kernel tap, the folded layer must read exactly the inputs the pool-then-layer
pair reads, so a window that would read real pixels where the original read
zero padding (a conv with padding after a pool whose windows overlap, or whose
windows do not cover the whole input) is refused rather than silently changed.

What cannot be folded (a :class:`NotExpressibleError` names the pool and the
node that reads it): a pool read by anything other than a Conv2d, a full
Flatten feeding only Affine/Linear layers, or a neuron (an Output, an Add, a
MaxPool, another stateless op); a fold into a convolution that the check
above rejects; a fold into a dense layer with per-input synaptic delays.
MaxPool2d is not linear and is left alone (the exporters refuse it).

The pass returns a new graph; the input graph is not changed. It records what
it did in the consumer's ``annotations['folded_pooling']`` and in
``graph.metadata['folded_pooling']``. It must not import torch or a vendor
library.
"""
from __future__ import annotations

import copy
from typing import Any, Dict, List, Tuple

import numpy as np

from nmtoolchain.errors import IRValidationError, NotExpressibleError
from nmtoolchain.ir import Affine, Conv2d, Graph, Linear, Node
from nmtoolchain.ir.conv import conv_out_len

POOL_OPS = ("SumPool2d", "AvgPool2d")
DENSE_OPS = ("Affine", "Linear")


def fold_pooling(graph: Graph) -> Graph:
    """A copy of ``graph`` without SumPool2d/AvgPool2d nodes (module docstring).

    Pools are folded from the last to the first, so a chain of pools before a
    convolution folds completely. Raises NotExpressibleError naming the pool
    when one cannot be folded.
    """
    g = copy.deepcopy(graph)
    g.infer_shapes()
    before = {n.name: n.shape for n in g}
    pools = [n for n in g.topological_order() if n.op_name in POOL_OPS]
    records: List[Dict[str, Any]] = []
    changed_shapes = set()
    for pool in reversed(pools):
        records.append(_fold_one(g, pool, changed_shapes))
        g.infer_shapes()
    for n in g:
        if n.name in before and n.name not in changed_shapes and n.shape != before[n.name]:
            raise IRValidationError(
                f"fold_pooling changed the output shape of node '{n.name}' from "
                f"{before[n.name]} to {n.shape} (a bug in the pass)")
    if records:
        g.metadata["folded_pooling"] = list(g.metadata.get("folded_pooling", [])) + \
            list(reversed(records))
    return g


# ------------------------------------------------------------------ one pool
def _why(pool: Node, user: Node, reason: str) -> NotExpressibleError:
    return NotExpressibleError(
        f"node '{pool.name}' ({pool.op_name}) cannot be folded into '{user.name}' "
        f"({user.op_name}): {reason}")


def _record(pool: Node, how: str, into: List[str]) -> Dict[str, Any]:
    op = pool.op
    return {"pool": pool.name, "op": pool.op_name, "kernel": list(op.kernel_size),
            "stride": list(op.stride), "padding": list(op.padding), "how": how, "into": into}


def _scale(pool: Node) -> float:
    k = pool.op.kernel_size
    return 1.0 / (k[0] * k[1]) if pool.op_name == "AvgPool2d" else 1.0


def _fold_one(g: Graph, pool: Node, changed_shapes: set) -> Dict[str, Any]:
    users = g.users(pool.name)
    if not users:
        raise NotExpressibleError(
            f"node '{pool.name}' ({pool.op_name}) feeds no node; nothing to fold it into")
    src = pool.inputs[0]
    in_shape = tuple(g[src].shape)

    # Plan every consumer first; apply only if all of them fold.
    plans: List[Tuple[Node, Any]] = []
    refusal = None
    for user in users:
        try:
            if user.op_name == "Conv2d":
                plans.append((user, _folded_conv(pool, user, in_shape)))
            elif user.op_name == "Flatten":
                plans.append((user, _folded_dense_after_flatten(g, pool, user, in_shape)))
            else:
                raise _why(pool, user, "pooling folds only into a following Conv2d, a full "
                                       "Flatten feeding Affine/Linear layers, or becomes a "
                                       "depthwise convolution before a neuron")
        except NotExpressibleError as e:
            refusal = refusal or e
    if refusal is None:
        for user, new in plans:
            if user.op_name == "Conv2d":
                user.op = new
                _note(user, pool, "conv")
            else:  # Flatten: its dense consumers get new weights, it reads the pool's input
                for dense, op in new:
                    dense.op = op
                    _note(dense, pool, "dense")
                changed_shapes.add(user.name)
            user.inputs = tuple(src if i == pool.name else i for i in user.inputs)
        g.remove(pool.name)
        how = sorted({"conv" if u.op_name == "Conv2d" else "dense" for u, _ in plans})
        return _record(pool, "+".join(how), [u.name for u, _ in plans])
    if any(u.op.is_neuron for u in users):
        into = _fold_into_conv_before(g, pool)
        if into is not None:  # conv -> pool -> neuron (snnTorch's order): one convolution
            producer = g[src]
            producer.op = into
            _note(producer, pool, "conv_before")
            changed_shapes.add(producer.name)
            for user in users:
                user.inputs = tuple(src if i == pool.name else i for i in user.inputs)
            g.remove(pool.name)
            return _record(pool, "conv_before", [producer.name])
        # The pool is the synapse of that neuron: a depthwise convolution.
        op = pool.op
        c = in_shape[0]
        weight = np.full((c, 1) + tuple(op.kernel_size), _scale(pool), np.float32)
        pool.op = Conv2d(weight, None, op.stride, op.padding, (1, 1), c)
        pool.annotations["folded_pooling"] = [_record(pool, "depthwise", [pool.name])]
        return _record(pool, "depthwise", [u.name for u in users])
    raise refusal


def _fold_into_conv_before(g: Graph, pool: Node) -> Any:
    """The convolution equal to conv-then-pool when the pool reads a Conv2d that
    feeds nothing else and pads nothing (a padded pool would average in zeros
    where the convolution's bias stands), else None.

    Conv (kernel K, stride s, padding p, dilation d) then a pool (window k,
    stride t) is one convolution with kernel (k-1)*s + (K-1)*d + 1, stride
    s*t, padding p, dilation 1: ``W'[o, i, a*s + j*d, ...] += W[o, i, j, ...]``
    for every window offset a < k (scaled by 1/(kH*kW) for average pooling);
    the bias is summed over the window (kept as is for average pooling).
    """
    conv_node = g[pool.inputs[0]]
    if conv_node.op_name != "Conv2d" or [u.name for u in g.users(conv_node.name)] != \
            [pool.name] or any(pool.op.padding):
        return None
    conv = conv_node.op
    n_in = tuple(g[conv_node.inputs[0]].shape)[1:]
    kernel, stride = [], []
    for axis in (0, 1):
        k, t = pool.op.kernel_size[axis], pool.op.stride[axis]
        kk, s_, p, d = conv.kernel_size[axis], conv.stride[axis], conv.padding[axis], \
            conv.dilation[axis]
        k2 = (k - 1) * s_ + (kk - 1) * d + 1
        want = conv_out_len(conv_out_len(n_in[axis], kk, s_, p, d), k, t, 0, 1)
        if conv_out_len(n_in[axis], k2, s_ * t, p, 1) != want:
            return None
        kernel.append(k2)
        stride.append(s_ * t)
    w = np.asarray(conv.weight, np.float64)
    new = np.zeros(w.shape[:2] + tuple(kernel))
    (kh, kw), (sh, sw), (dh, dw) = pool.op.kernel_size, conv.stride, conv.dilation
    for a in range(kh):
        for b in range(kw):
            for j in range(w.shape[2]):
                for m in range(w.shape[3]):
                    new[:, :, a * sh + j * dh, b * sw + m * dw] += w[:, :, j, m]
    scale = _scale(pool)
    bias = None if conv.bias is None else \
        np.asarray(conv.bias, np.float64) * (scale * kh * kw)
    return Conv2d((new * scale).astype(np.float32),
                  None if bias is None else bias.astype(np.float32),
                  tuple(stride), tuple(conv.padding), (1, 1), conv.groups)


def _note(node: Node, pool: Node, how: str) -> None:
    node.annotations.setdefault("folded_pooling", []).append(_record(pool, how, [node.name]))


# ------------------------------------------------------------------ per axis
def _pool_matrix(n: int, k: int, t: int, pad: int) -> np.ndarray:
    """(pooled length, n): row q sums inputs q*t - pad + a, a < k (padding is zero)."""
    out = conv_out_len(n, k, t, pad, 1)
    m = np.zeros((out, n))
    for q in range(out):
        for a in range(k):
            i = q * t - pad + a
            if 0 <= i < n:
                m[q, i] = 1.0
    return m


def _tap_matrix(n: int, out: int, s: int, p: int, pos: int) -> np.ndarray:
    """(out, n): output o reads input o*s - p + pos (zero outside 0..n-1)."""
    m = np.zeros((out, n))
    for o in range(out):
        i = o * s - p + pos
        if 0 <= i < n:
            m[o, i] = 1.0
    return m


def _fold_axis(pool: Node, user: Node, n: int, axis: int) -> Tuple[int, int, int]:
    """Folded (kernel, stride, padding) along one spatial axis, after checking
    that every tap of the folded conv reads what pool-then-conv reads."""
    k, t, pp = pool.op.kernel_size[axis], pool.op.stride[axis], pool.op.padding[axis]
    conv = user.op
    kk, s, p, d = conv.kernel_size[axis], conv.stride[axis], conv.padding[axis], \
        conv.dilation[axis]
    pooled = conv_out_len(n, k, t, pp, 1)
    out = conv_out_len(pooled, kk, s, p, d)
    k2, s2, p2 = (kk - 1) * d * t + k, s * t, p * t + pp
    out2 = conv_out_len(n, k2, s2, p2, 1)
    name = "height" if axis == 0 else "width"
    if out2 != out:
        raise _why(pool, user, f"along the {name} the folded convolution would give {out2} "
                               f"outputs instead of {out}")
    pm = _pool_matrix(n, k, t, pp)
    for j in range(kk):
        want = _tap_matrix(pooled, out, s, p, j * d) @ pm
        got = sum(_tap_matrix(n, out, s2, p2, j * d * t + a) for a in range(k))
        if not np.array_equal(want, got):
            raise _why(pool, user, f"along the {name} the convolution's zero padding ({p}) "
                                   f"would read real inputs after folding (pool window {k}, "
                                   f"stride {t}, input {n}); fold needs windows that tile the "
                                   "input when the convolution pads")
    return k2, s2, p2


def _folded_conv(pool: Node, user: Node, in_shape: Tuple[int, ...]) -> Conv2d:
    conv = user.op
    kh, sh, ph = _fold_axis(pool, user, in_shape[1], 0)
    kw, sw, pw = _fold_axis(pool, user, in_shape[2], 1)
    (k0, k1), (t0, t1) = pool.op.kernel_size, pool.op.stride
    (d0, d1) = conv.dilation
    w = np.asarray(conv.weight, dtype=np.float64)
    out = np.zeros(w.shape[:2] + (kh, kw))
    scale = _scale(pool)
    for jh in range(w.shape[2]):
        for jw in range(w.shape[3]):
            h0, w0 = jh * d0 * t0, jw * d1 * t1
            out[:, :, h0:h0 + k0, w0:w0 + k1] += w[:, :, jh:jh + 1, jw:jw + 1] * scale
    return Conv2d(out.astype(np.float32), np.array(conv.bias, copy=True), (sh, sw), (ph, pw),
                  (1, 1), conv.groups)


def _folded_dense_after_flatten(g: Graph, pool: Node, flat: Node,
                                in_shape: Tuple[int, ...]) -> List[Tuple[Node, Any]]:
    op = flat.op
    nd = len(pool.shape)
    a = op.start_dim + nd if op.start_dim < 0 else op.start_dim
    b = op.end_dim + nd if op.end_dim < 0 else op.end_dim
    if (a, b) != (0, nd - 1):
        raise _why(pool, flat, f"only a full flatten (start_dim 0, end_dim -1) can absorb "
                               f"pooling, got start_dim {op.start_dim}, end_dim {op.end_dim}")
    denses = g.users(flat.name)
    if not denses:
        raise _why(pool, flat, "the flatten feeds nothing")
    c, hp, wp = pool.shape
    _, h, w = in_shape
    ph = _pool_matrix(h, pool.op.kernel_size[0], pool.op.stride[0], pool.op.padding[0])
    pw = _pool_matrix(w, pool.op.kernel_size[1], pool.op.stride[1], pool.op.padding[1])
    plans = []
    for dense in denses:
        if dense.op_name not in DENSE_OPS:
            raise _why(pool, dense, f"the flatten '{flat.name}' after it also feeds a "
                                    f"{dense.op_name}; only Affine/Linear layers can absorb it")
        delay = getattr(dense.op, "delay", None)
        if delay is not None and np.asarray(delay).ndim == 2 and delay.shape[1] != 1:
            raise _why(pool, dense, "per-input synaptic delays cannot be spread over the "
                                    "pooling window")
        wd = np.asarray(dense.op.weight, dtype=np.float64)
        n_out = wd.shape[0]
        folded = np.einsum("ocij,ih,jw->ochw", wd.reshape(n_out, c, hp, wp), ph, pw)
        folded = (folded * _scale(pool)).reshape(n_out, c * h * w).astype(np.float32)
        if dense.op_name == "Affine":
            new = Affine(folded, np.array(dense.op.bias, copy=True),
                         None if delay is None else np.array(delay, copy=True))
        else:
            new = Linear(folded)
        plans.append((dense, new))
    return plans


__all__ = ["fold_pooling", "POOL_OPS"]
