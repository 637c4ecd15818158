"""Speck integer kernels: spike-identical with sinabs running a discretized network.

The graph is the Speck quantizer's output (:mod:`nmtoolchain.quantize.speck`):
integer weights and biases, IF neurons with integer threshold, bound and
initial value. Per time step, as sinabs's ``IAFSqueeze`` does (functional
``lif_forward_single`` with alpha = 1):

* conv: ``a = W * x + b`` (integers, exact: in float32 when every sum stays below
  2^24, else in float64 and rounded);
* neuron: ``v <- v + a``; spikes ``trunc(v / thr)`` where ``v > 0`` (MultiSpike)
  or ``v >= thr`` (SingleSpike); ``v <- v - spikes * thr`` (subtract) or 0 where
  it spiked (reset to zero); then ``v <- max(v, min_v_mem)``;
* sum-pooling: window sums.

Synapses have no pipeline delay (sinabs's time-stepped simulation, not the
chip's asynchronous event timing). The state is int64: sinabs keeps float32
state without saturation, so values beyond the chip's 16 bits are kept as
sinabs keeps them; :attr:`IFSpeck.max_v` records the largest membrane value
seen before a spike (the state never goes below ``min_v_mem``, itself 16-bit),
so a report can say when the chip's 16-bit register would have overflowed.
"""
from __future__ import annotations

from typing import Dict, Type

import numpy as np
import torch
import torch.nn.functional as F

from nmtoolchain.errors import UnsupportedOpError
from nmtoolchain.ir import Graph, Node
from simulators.cycle import kernels_float as kf

I64 = torch.int64
F64 = torch.float64
_F32_EXACT = float(2 ** 24)


def _ints(a, device: str) -> torch.Tensor:
    arr = np.asarray(a, dtype=np.float64)
    if np.any(arr != np.round(arr)):
        raise UnsupportedOpError("speck numerics need integer parameters: quantize the graph "
                                 "for Speck first (nmtc export --target speck)")
    return torch.as_tensor(arr, dtype=F64, device=device)


class ConvSpeck(kf.Kernel):
    """Integer 2-D convolution plus bias, every step."""

    def __init__(self, node: Node, graph: Graph, device: str = "cpu") -> None:
        super().__init__(node, graph, device)
        op = node.op
        self.w, self.b = _ints(op.weight, device), _ints(op.bias, device)
        self.w32, self.b32 = self.w.to(torch.float32), self.b.to(torch.float32)
        # the largest |sum| one output can reach per unit of input: float32 is exact below 2^24
        self.bound = float(self.w.abs().reshape(self.w.shape[0], -1).sum(1).max()) \
            if self.w.numel() else 0.0
        self.bmax = float(self.b.abs().max()) if self.b.numel() else 0.0
        self.kw = dict(stride=op.stride, padding=op.padding, dilation=op.dilation,
                       groups=op.groups)

    def step(self, xs, t):
        x = xs[0]
        xmax = float(x.abs().max()) if x.numel() else 0.0
        if xmax * self.bound + self.bmax < _F32_EXACT:
            return F.conv2d(x.to(torch.float32), self.w32, self.b32, **self.kw)
        return torch.round(F.conv2d(x.to(F64), self.w, self.b, **self.kw))


class SumPoolSpeck(kf.Kernel):
    def step(self, xs, t):
        op = self.node.op
        k = op.kernel_size
        return torch.round(F.avg_pool2d(xs[0].to(F64), k, op.stride, op.padding) * (k[0] * k[1]))


class IFSpeck(kf.Kernel):
    """sinabs IAF on integers (module docstring)."""

    output_kind = "spikes"

    def __init__(self, node: Node, graph: Graph, device: str = "cpu") -> None:
        super().__init__(node, graph, device)
        op = node.op
        if node.op_name != "IF" or op.compare != ">=" or op.v_min is None:
            raise UnsupportedOpError(
                f"node '{node.name}' ({node.op_name}): speck numerics run the Speck quantizer's "
                "IF neurons (fire at >=, with a min_v_mem bound); quantize for Speck first")
        thr = np.asarray(op.v_threshold, np.float64).reshape(-1)
        if np.any(thr != thr[0]) or thr[0] != np.round(thr[0]) or thr[0] < 1:
            raise UnsupportedOpError(f"node '{node.name}': threshold must be one positive "
                                     "integer per layer")
        self.thr = int(thr[0])
        self.v_min = int(np.asarray(op.v_min).reshape(-1)[0])
        self.v_init = _ints(op.v_init, device).to(I64)
        self.multi = op.spike == "multi"
        self.subtract = op.reset == "subtract"
        self.max_v = 0

    def reset(self, batch):
        super().reset(batch)
        self.v = self.v_init.expand((batch,) + tuple(self.shape)).clone()

    def step(self, xs, t):
        v = self.v + xs[0].to(I64)
        if self.multi:
            s = torch.where(v > 0, torch.div(v, self.thr, rounding_mode="trunc"),
                            torch.zeros_like(v))
        else:
            s = (v >= self.thr).to(I64)
        if v.numel():  # before the spike: the largest value the register must hold
            self.max_v = max(self.max_v, int(v.max()))
        v = v - s * self.thr if self.subtract else torch.where(s > 0, torch.zeros_like(v), v)
        self.v = torch.clamp(v, min=self.v_min)  # >= min_v_mem >= -32768: never below 16 bits
        return s.to(torch.float32)

    def state(self) -> Dict[str, torch.Tensor]:
        return {"v": self.v}


SPECK_KERNELS: Dict[str, Type[kf.Kernel]] = {
    "Conv2d": ConvSpeck, "IF": IFSpeck, "SumPool2d": SumPoolSpeck,
    "Input": kf.InputKernel, "Output": kf.Identity, "Flatten": kf.FlattenK,
    "Add": kf.AddK,  # a merge of integer event counts: exact in float
}


def make_speck_kernel(node: Node, graph: Graph, device: str = "cpu") -> kf.Kernel:
    cls = SPECK_KERNELS.get(node.op_name)
    if cls is None:
        raise UnsupportedOpError(
            f"node '{node.name}' ({node.op_name}): speck numerics run only DYNAP-CNN layers "
            "(Conv2d, IF, SumPool2d, Add, Flatten); lower and quantize the graph for Speck first")
    return cls(node, graph, device)


__all__ = ["make_speck_kernel", "SPECK_KERNELS", "ConvSpeck", "IFSpeck", "SumPoolSpeck"]
