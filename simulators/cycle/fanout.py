"""Per-input-element fan-out of synaptic ops, for counting synaptic operations.

``fanout[i]`` is how many synapses input element i drives (border-aware for
convolutions and pooling: taps on padding are not synapses). The ``nonzero``
variant counts only synapses with a non-zero weight (NeuroBench's rule).
Computed once per node with torch's transposed convolutions.
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from nmtoolchain.ir import Graph, Node


def _conv_fanout(weight_mask: torch.Tensor, in_shape: Tuple[int, ...], out_shape: Tuple[int, ...],
                 stride, padding, dilation, groups: int) -> torch.Tensor:
    nd = len(in_shape) - 1
    ones_out = torch.ones((1,) + tuple(out_shape), dtype=torch.float64)
    convt = F.conv_transpose2d if nd == 2 else F.conv_transpose1d
    # output_padding makes the transposed conv reach the full input size
    natural = [(out_shape[1 + i] - 1) * stride[i] - 2 * padding[i]
               + dilation[i] * (weight_mask.shape[2 + i] - 1) + 1 for i in range(nd)]
    extra = [in_shape[1 + i] - natural[i] for i in range(nd)]
    if any(e < 0 or e >= max(stride[i], dilation[i]) for i, e in enumerate(extra)):
        # output_padding must be < stride or dilation: compute on a padded canvas instead
        extra_ok = [min(e, max(stride[i], dilation[i]) - 1) for i, e in enumerate(extra)]
        res = convt(ones_out, weight_mask, stride=stride, padding=padding,
                    output_padding=tuple(extra_ok), groups=groups, dilation=dilation)[0]
        canvas = torch.zeros(in_shape, dtype=torch.float64)
        sl = tuple(slice(0, min(a, b)) for a, b in zip(in_shape, res.shape))
        canvas[sl] = res[sl]
        return canvas
    return convt(ones_out, weight_mask, stride=stride, padding=padding, output_padding=tuple(extra),
                 groups=groups, dilation=dilation)[0]


def fanout_maps(graph: Graph, node: Node) -> Optional[Tuple[torch.Tensor, torch.Tensor]]:
    """(structural, non-zero-weight) fan-out per input element, or None for
    ops that are not synaptic (no stored weights or fixed connections)."""
    op = node.op
    name = node.op_name
    in_shape = graph[node.inputs[0]].shape if node.inputs else None
    if name in ("Affine", "Linear"):
        w = torch.as_tensor(np.array(op.weight))
        per_feature_nz = (w != 0).sum(0).to(torch.float64)
        full = torch.full(in_shape, float(w.shape[0]), dtype=torch.float64)
        nz = per_feature_nz.expand(in_shape).clone()
        return full, nz
    if name in ("Conv1d", "Conv2d"):
        w = torch.as_tensor(np.array(op.weight, dtype=np.float64))
        kw = dict(stride=op.stride, padding=op.padding, dilation=op.dilation, groups=op.groups)
        full = _conv_fanout(torch.ones_like(w), in_shape, node.shape, **kw)
        nz = _conv_fanout((w != 0).to(torch.float64), in_shape, node.shape, **kw)
        return full, nz
    if name in ("SumPool2d", "AvgPool2d"):
        c = in_shape[0]
        k = op.kernel_size
        mask = torch.ones((c, 1) + tuple(k), dtype=torch.float64)
        full = _conv_fanout(mask, in_shape, node.shape, op.stride, op.padding, (1, 1), c)
        return full, full.clone()
    return None
