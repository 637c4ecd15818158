"""Floating-point kernels: the reference SNN (and ANN) semantics of every IR op.

One kernel object per node holds that node's state. ``step(xs, t)`` takes the
node's inputs at step t (tensors with a leading batch axis) and returns its
output at step t. Synaptic kernels have no pipeline delay here (a spike
reaches every layer in the same step, as in sinabs and spikingjelly).
"""
from __future__ import annotations

import math
import zlib
from typing import Dict, List, Optional, Type

import numpy as np
import torch
import torch.nn.functional as F

from nmtoolchain.errors import UnsupportedOpError
from nmtoolchain.ir import Graph, Node
from simulators.cycle import fused


def _t(a, dtype=torch.float32, device="cpu") -> torch.Tensor:
    arr = np.asarray(a)
    if not arr.flags.writeable:  # e.g. a read-only memory map: torch wants its own copy
        arr = arr.copy()
    return torch.as_tensor(arr, dtype=dtype, device=device)


def _axis(axis: int) -> int:
    """Per-sample axis -> tensor axis (batch first)."""
    return axis + 1 if axis >= 0 else axis


def _batch_invariant(device: str) -> bool:
    """Whether convolutions and matmuls on ``device`` give each sample the same
    values at any batch size of at least :data:`MIN_INVARIANT_ROWS` (the
    CPU's, as tests/test_simulator_schedules.py checks bit for bit)."""
    return torch.device(device).type == "cpu"


#: Below this many rows, the CPU's BLAS and oneDNN take other kernels (a
#: matrix-vector product for one row, small-matrix code for two or three),
#: which sum in another order: measured on float32 Linear and Conv2d, a batch
#: of 1-3 differs in the last bits from the same rows inside a larger batch,
#: from 4 rows up it does not (tests/test_simulator_schedules.py). A smaller
#: batch is stepped, so both schedules give the same values.
MIN_INVARIANT_ROWS = 4


class Kernel:
    """Base kernel. ``output_kind`` tells counting what the output carries:
    'spikes' (counts of unit events), 'graded' (events with a payload),
    'analog' (real values), or 'same' (whatever the input carried)."""

    output_kind = "same"
    dtype = torch.float32
    #: True for a kernel without state whose step treats the leading axis as
    #: samples only (element-wise or per-sample ops): the layer-major schedule
    #: then runs a time chunk as one call over n·B samples
    #: (:func:`simulators.cycle.schedule.run_block`), which computes each value
    #: as the step does
    per_sample = False

    def __init__(self, node: Node, graph: Graph, device: str = "cpu") -> None:
        self.node, self.graph, self.device = node, graph, device
        self.shape = node.shape

    def reset(self, batch: int) -> None:
        self.batch = batch

    def step(self, xs: List[torch.Tensor], t: int) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError


class InputKernel(Kernel):
    output_kind = "auto"  # decided per run by the values fed in
    per_sample = True  # a static input stays one (stride-0) block (schedule.run_block)

    def step(self, xs, t):
        return xs[0]


class Identity(Kernel):
    per_sample = True

    def step(self, xs, t):
        return xs[0]


class AffineK(Kernel):
    def __init__(self, node, graph, device="cpu"):
        super().__init__(node, graph, device)
        # BLAS on the CPU computes each row alike at any batch size (checked
        # bit for bit by tests/test_simulator_schedules.py); a GPU library may
        # pick another algorithm for another batch size, so there: per step
        self.per_sample = _batch_invariant(device)
        self.min_batch = MIN_INVARIANT_ROWS
        self.w = _t(node.op.weight, device=device)
        b = getattr(node.op, "bias", None)
        self.b = None if b is None or not np.any(b) else _t(b, device=device)

    def step(self, xs, t):
        # contiguous rows: BLAS sums a strided input (a step of a (B, T, ...) feed)
        # in another order than the same rows stored densely
        return F.linear(xs[0].to(self.w.dtype).contiguous(), self.w, self.b)


class ConvK(Kernel):
    def __init__(self, node, graph, device="cpu"):
        super().__init__(node, graph, device)
        self.per_sample = _batch_invariant(device)  # as AffineK
        self.min_batch = MIN_INVARIANT_ROWS
        op = node.op
        self.w = _t(op.weight, device=device)
        self.b = None if not np.any(op.bias) else _t(op.bias, device=device)
        self.kw = dict(stride=op.stride, padding=op.padding, dilation=op.dilation, groups=op.groups)
        self.fn = F.conv2d if node.op_name == "Conv2d" else F.conv1d

    def step(self, xs, t):
        return self.fn(xs[0].to(self.w.dtype), self.w, self.b, **self.kw)


class SumPoolK(Kernel):
    per_sample = True

    def step(self, xs, t):
        op = self.node.op
        k = op.kernel_size
        y = F.avg_pool2d(xs[0], k, op.stride, op.padding, count_include_pad=True)
        return y * (k[0] * k[1]) if self.node.op_name == "SumPool2d" else y


class MaxPoolK(Kernel):
    #: the max of spikes is a spike (of counts, a count): the kind of its input
    output_kind = "same"

    def step(self, xs, t):
        op = self.node.op
        return F.max_pool2d(xs[0], op.kernel_size, op.stride, op.padding)


class FlattenK(Kernel):
    per_sample = True

    def step(self, xs, t):
        op = self.node.op
        return torch.flatten(xs[0], _axis(op.start_dim), _axis(op.end_dim))


class ReshapeK(Kernel):
    per_sample = True

    def step(self, xs, t):
        return xs[0].reshape((xs[0].shape[0],) + tuple(self.shape))


class TransposeK(Kernel):
    def step(self, xs, t):
        return xs[0].permute(0, *[p + 1 for p in self.node.op.perm])


class ScaleK(Kernel):
    #: spikes times λ (converted SNNs) are still events, carrying a payload
    output_kind = "scaled"
    per_sample = True

    def __init__(self, node, graph, device="cpu"):
        super().__init__(node, graph, device)
        self.s = _t(node.op.scale, device=device)

    def step(self, xs, t):
        return xs[0] * self.s


class BiasK(Kernel):
    output_kind = "analog"

    def __init__(self, node, graph, device="cpu"):
        super().__init__(node, graph, device)
        self.b = _t(node.op.bias, device=device)

    def step(self, xs, t):
        return xs[0] + self.b


class MeanK(Kernel):
    output_kind = "analog"

    def step(self, xs, t):
        return xs[0].mean(dim=_axis(self.node.op.axis))


class BatchNormK(Kernel):
    output_kind = "analog"

    def __init__(self, node, graph, device="cpu"):
        super().__init__(node, graph, device)
        scale, shift = node.op.scale_shift()
        ndim = len(node.shape)
        ax = node.op.axis % ndim
        view = [1] * ndim
        view[ax] = -1
        self.scale = _t(scale, device=device).reshape(view)
        self.shift = _t(shift, device=device).reshape(view)

    def step(self, xs, t):
        return xs[0] * self.scale + self.shift


class LayerNormK(Kernel):
    output_kind = "analog"

    def __init__(self, node, graph, device="cpu"):
        super().__init__(node, graph, device)
        self.w = _t(node.op.weight, device=device)
        self.b = _t(node.op.bias, device=device)

    def step(self, xs, t):
        return F.layer_norm(xs[0], tuple(self.w.shape), self.w, self.b, self.node.op.eps)


class ReLUK(Kernel):
    output_kind = "analog"

    def step(self, xs, t):
        return torch.relu(xs[0])


class QCFSK(Kernel):
    output_kind = "analog"

    def __init__(self, node, graph, device="cpu"):
        super().__init__(node, graph, device)
        self.lam = _t(node.op.threshold, device=device)

    def step(self, xs, t):
        op = self.node.op
        L = op.levels
        q = torch.clamp(torch.floor(xs[0] * L / self.lam + op.shift), 0, L)
        return q * self.lam / L


class SoftmaxK(Kernel):
    output_kind = "analog"

    def step(self, xs, t):
        return torch.softmax(xs[0], dim=_axis(self.node.op.axis))


class AddK(Kernel):
    def step(self, xs, t):
        out = xs[0]
        for x in xs[1:]:
            out = out + x
        return out


class ConcatK(Kernel):
    def step(self, xs, t):
        return torch.cat(xs, dim=_axis(self.node.op.axis))


class MatMulK(Kernel):
    output_kind = "analog"

    def step(self, xs, t):
        return torch.matmul(xs[0], xs[1])


class ThresholdK(Kernel):
    output_kind = "spikes"

    def __init__(self, node, graph, device="cpu"):
        super().__init__(node, graph, device)
        self.thr = _t(node.op.threshold, device=device)

    def step(self, xs, t):
        return (xs[0] > self.thr).to(xs[0].dtype)


class DelayK(Kernel):
    """y(t) = x(t - d) per element, from a ring buffer of past inputs."""

    def __init__(self, node, graph, device="cpu"):
        super().__init__(node, graph, device)
        self.d = torch.as_tensor(np.broadcast_to(node.op.delay, node.shape).copy(), device=device)
        self.depth = int(self.d.max().item()) + 1 if self.d.numel() else 1

    def reset(self, batch):
        super().reset(batch)
        self.hist = torch.zeros((self.depth, batch) + tuple(self.shape), device=self.device)

    def step(self, xs, t):
        self.hist = torch.roll(self.hist, 1, 0)
        self.hist[0] = xs[0]
        idx = self.d.expand((1, self.batch) + tuple(self.shape))
        return torch.gather(self.hist, 0, idx.long())[0]


class SpikeMaskK(Kernel):
    """MST's random spike masking: drop each element with probability p, a
    fresh draw every step for every element of every sample, no rescaling.

    Each run (one batch) draws from its own stream, seeded from the run seed
    (:func:`seed_spike_masks`; else the RSM pass's recorded seed, else 0), the
    node (its RSM seed, else a hash of its name: masks are independent per
    tensor, never the same stream twice) and the run's index (successive
    batches get fresh masks). The same run seed replays the same masks."""

    run_seed: Optional[int] = None

    def __init__(self, node, graph, device="cpu"):
        super().__init__(node, graph, device)
        self.runs = 0

    def reset(self, batch):
        super().reset(batch)
        run_seed = self.run_seed
        if run_seed is None:
            run_seed = int((self.graph.metadata.get("rsm") or {}).get("seed", 0))
        op_seed = self.node.op.seed
        key = int(op_seed) if op_seed is not None else zlib.crc32(self.node.name.encode())
        words = np.random.SeedSequence([int(run_seed) & 0xFFFFFFFF, key & 0xFFFFFFFF,
                                        int(op_seed is None), self.runs]).generate_state(2)
        # drawn on the CPU whatever the device: a GPU run masks exactly as a CPU run
        self.gen = torch.Generator(device="cpu")
        self.gen.manual_seed(int(words[0]) << 31 ^ int(words[1]))
        self.runs += 1

    def step(self, xs, t):
        keep = torch.rand(xs[0].shape, generator=self.gen) >= self.node.op.p
        return xs[0] * keep.to(xs[0].device)


def seed_spike_masks(kernels, seed: int) -> int:
    """Give every SpikeMask kernel in ``kernels`` (a name -> kernel dict) run seed
    ``seed`` and restart its run count; returns how many were seeded."""
    n = 0
    for k in kernels.values():
        if isinstance(k, SpikeMaskK):
            k.run_seed, k.runs = int(seed), 0
            n += 1
    return n


# ------------------------------------------------------------------ neurons
class NeuronK(Kernel):
    """Shared machinery: parameters as broadcast tensors, state reset."""

    output_kind = "spikes"

    def p(self, name: str, default: float = 0.0) -> torch.Tensor:
        v = getattr(self.node.op, name, None)
        return _t(default if v is None else v, device=self.device)

    def block_ready(self, x: torch.Tensor, tensors: tuple) -> bool:
        """Whether a block loop may take input ``x``: single spikes without a
        floor, and ``x`` and every tensor of ``tensors`` (parameters, extra
        state) of v's float dtype and broadcasting to v's shape, so that the
        loop's arithmetic is :meth:`step`'s (no promotion, no new shape)."""
        return (getattr(self.node.op, "spike", "single") != "multi" and self.v_min is None
                and torch.is_floating_point(x)
                and all(p.dtype == self.v.dtype for p in tensors + (x,))
                and tuple(torch.broadcast_shapes(self.v.shape, x.shape[1:],
                                                 *(p.shape for p in tensors)))
                == tuple(self.v.shape))

    def spike_and_reset(self, v: torch.Tensor) -> tuple:
        op = self.node.op
        thr = self.thr
        if op.spike == "multi":
            n = torch.floor(v / thr)
            if op.compare == ">":
                n = torch.where(n * thr >= v, n - 1, n)
            s = torch.clamp(n, min=0)
        else:
            s = (v >= thr) if op.compare == ">=" else (v > thr)
            s = s.to(v.dtype)
        if op.reset == "subtract":
            v = v - s * thr
        else:
            v = torch.where(s > 0, self.v_reset.expand_as(v), v)
        if self.v_min is not None:
            v = torch.maximum(v, self.v_min)
        return s, v


class IFK(NeuronK):
    def __init__(self, node, graph, device="cpu"):
        super().__init__(node, graph, device)
        self.r, self.thr = self.p("r", 1.0), self.p("v_threshold", 1.0)
        self.v_reset, self.bias = self.p("v_reset"), self.p("v_bias")
        self.v_min = None if node.op.v_min is None else self.p("v_min")

    def reset(self, batch):
        super().reset(batch)
        self.v = self.p("v_init").expand((batch,) + tuple(self.shape)).clone()

    def step(self, xs, t):
        v = self.v + self.r * xs[0] + self.bias
        s, self.v = self.spike_and_reset(v)
        return s

    def run_block(self, xs, t0):
        """Steps t0 .. t0+n-1 (layer-major schedule) as :meth:`step`'s very
        arithmetic done in place, spikes written into one (n, B, ...) buffer:
        v + r x + b, s = [v >= thr] (or >), v - s thr. Single spikes with
        reset by subtraction and float32 throughout; anything else (and
        subclasses with their own step) declines, to be stepped."""
        op, x = self.node.op, xs[0]
        if (type(self).step is not IFK.step or op.reset != "subtract"
                or not self.block_ready(x, (self.r, self.bias, self.thr))):
            return None
        v = self.v.clone()  # the state tensor may be shared with a step's caller
        if fused.available(v.device):  # the same arithmetic, compiled
            out = fused.if_float_block(x, v, self.r, self.bias, self.thr, op.compare == ">=")
            self.v = v
            return out
        out = torch.empty((x.shape[0],) + tuple(v.shape), dtype=v.dtype, device=v.device)
        tmp = torch.empty_like(v)
        fired = torch.empty(v.shape, dtype=torch.bool, device=v.device)
        compare = torch.ge if op.compare == ">=" else torch.gt
        for i in range(x.shape[0]):
            v.add_(torch.mul(self.r, x[i], out=tmp)).add_(self.bias)
            compare(v, self.thr, out=fired)
            out[i].copy_(fired)
            v.sub_(torch.mul(out[i], self.thr, out=tmp))
        self.v = v
        return out


class LIFK(IFK):
    """LIF: 'exponential' (sinabs: v <- a v + (1 - a) r x, a = exp(-dt/tau)) or
    'euler' (default: v <- v + dt/tau (v_leak - v + r x)) per the op's
    ``discretization`` field."""

    def __init__(self, node, graph, device="cpu"):
        super().__init__(node, graph, device)
        dt = float(graph.metadata.get("dt", 1.0))
        self.tau, self.leak = self.p("tau", 1.0), self.p("v_leak")
        self.mode = node.op.discretization
        self.alpha = torch.exp(-dt / self.tau)
        self.k = dt / self.tau

    def integrate(self, x):
        if self.mode == "exponential":
            return self.leak + self.alpha * (self.v - self.leak) + (1 - self.alpha) * self.r * x
        return self.v + self.k * (self.leak - self.v + self.r * x)

    def step(self, xs, t):
        v = self.integrate(xs[0]) + self.bias
        s, self.v = self.spike_and_reset(v)
        return s

    def run_block(self, xs, t0):
        """Steps t0 .. t0+n-1 (layer-major schedule) in the compiled loop
        (:func:`fused.lif_float_block`, :meth:`step`'s arithmetic operation
        for operation) for single spikes without a floor, every tensor of one
        float dtype; anything else (or no numba) declines, to be stepped."""
        op, x = self.node.op, xs[0]
        if type(self).step is not LIFK.step:  # LI and other subclasses: stepped
            return None
        coef = self.k if self.mode != "exponential" else self.alpha
        if not fused.available(x.device) or not self.block_ready(
                x, (self.r, self.leak, self.bias, self.thr, self.v_reset, coef)):
            return None
        v = self.v.clone()  # the state tensor may be shared with a step's caller
        out = fused.lif_float_block(
            x, v, r=self.r, leak=self.leak, bias=self.bias, thr=self.thr, v_reset=self.v_reset,
            coef=coef, euler=self.mode != "exponential", ge=op.compare == ">=",
            subtract=op.reset == "subtract")
        self.v = v
        return out


class LIK(LIFK):
    output_kind = "analog"

    def __init__(self, node, graph, device="cpu"):
        Kernel.__init__(self, node, graph, device)
        dt = float(graph.metadata.get("dt", 1.0))
        self.r, self.tau, self.leak = self.p("r", 1.0), self.p("tau", 1.0), self.p("v_leak")
        self.bias = self.p("v_bias")
        self.mode = node.op.discretization
        self.alpha, self.k = torch.exp(-dt / self.tau), dt / self.tau

    def reset(self, batch):
        Kernel.reset(self, batch)
        self.v = torch.zeros((batch,) + tuple(self.shape), device=self.device)

    def step(self, xs, t):
        self.v = self.integrate(xs[0]) + self.bias
        return self.v


class IK(Kernel):
    output_kind = "analog"

    def reset(self, batch):
        super().reset(batch)
        self.v = torch.zeros((batch,) + tuple(self.shape), device=self.device)

    def step(self, xs, t):
        self.v = self.v + _t(self.node.op.r, device=self.device) * xs[0]
        return self.v


class CubaLIFK(NeuronK):
    """Current-based LIF with per-step decay factors a = exp(-dt/tau) (Loihi's
    form in floating point): I <- a_syn I + w_in x ; v <- v_leak + a_mem (v -
    v_leak) + r I + v_bias; spike and reset. When the node is netx's input
    neuron, its input is a bias drive added to v, not a current."""

    def __init__(self, node, graph, device="cpu"):
        super().__init__(node, graph, device)
        dt = float(graph.metadata.get("dt", 1.0))
        self.a_syn = torch.exp(-dt / self.p("tau_syn", 1.0))
        self.a_mem = torch.exp(-dt / self.p("tau_mem", 1.0))
        self.w_in, self.r, self.leak = self.p("w_in", 1.0), self.p("r", 1.0), self.p("v_leak")
        self.thr, self.v_reset, self.bias = (self.p("v_threshold", 1.0), self.p("v_reset"),
                                             self.p("v_bias"))
        self.v_min = None if getattr(node.op, "v_min", None) is None else self.p("v_min")
        # netx's input neuron (its numerics carry an input transform) is driven through v
        self.bias_drive = getattr(node.numerics, "input_transform", None) is not None
        self.spiking = node.op_name == "CubaLIF"

    def reset(self, batch):
        super().reset(batch)
        shape = (batch,) + tuple(self.shape)
        self.i = torch.zeros(shape, device=self.device)
        self.v = torch.zeros(shape, device=self.device) + self.p("v_init") if self.spiking \
            else torch.zeros(shape, device=self.device)

    def step(self, xs, t):
        x = xs[0]
        drive = x if self.bias_drive else 0.0
        syn = 0.0 if self.bias_drive else x
        self.i = self.a_syn * self.i + self.w_in * syn
        v = self.leak + self.a_mem * (self.v - self.leak) + self.r * self.i + self.bias + drive
        if not self.spiking:
            self.v = v
            return v
        s, self.v = self.spike_and_reset(v)
        return s

    def run_block(self, xs, t0):
        """Steps t0 .. t0+n-1 (layer-major schedule) in the compiled loop
        (:func:`fused.cuba_float_block`, :meth:`step`'s arithmetic operation
        for operation) for single spikes without a floor, every tensor of one
        float dtype; anything else (or no numba) declines, to be stepped."""
        op, x = self.node.op, xs[0]
        if type(self).step is not CubaLIFK.step:  # subclasses with their own step: stepped
            return None
        if not fused.available(x.device) or not self.block_ready(
                x, (self.a_syn, self.w_in, self.a_mem, self.leak, self.r, self.bias, self.thr,
                    self.v_reset, self.i)):
            return None
        cur, v = self.i.clone(), self.v.clone()  # state may be shared with a step's caller
        out = fused.cuba_float_block(
            x, cur, v, a_syn=self.a_syn, w_in=self.w_in, a_mem=self.a_mem, leak=self.leak,
            r=self.r, bias=self.bias, thr=self.thr, v_reset=self.v_reset, drive=self.bias_drive,
            spiking=self.spiking, ge=getattr(op, "compare", ">") == ">=",
            subtract=getattr(op, "reset", "subtract") == "subtract")
        self.i, self.v = cur, v
        return out


class CubaLIK(CubaLIFK):
    output_kind = "analog"


class SigmaDeltaK(Kernel):
    """Sigma-delta in floating point: sigma integrates, the activation is
    applied, and the change since the last sent value (plus the residue) is
    sent when |change| >= threshold."""

    output_kind = "graded"

    def reset(self, batch):
        super().reset(batch)
        shape = (batch,) + tuple(self.shape)
        self.sigma = torch.zeros(shape, device=self.device)
        self.act = torch.zeros(shape, device=self.device)
        self.res = torch.zeros(shape, device=self.device)

    def step(self, xs, t):
        op = self.node.op
        if op.role == "sigma":
            self.sigma = self.sigma + xs[0]
            return self.sigma
        if op.role == "delta":
            a = xs[0]
        else:
            self.sigma = self.sigma + xs[0]
            a = self.sigma + _t(op.bias, device=self.device)
            if op.activation == "relu":
                a = torch.relu(a)
        d = a - self.act + self.res
        thr = _t(op.threshold, device=self.device)
        s = torch.where(d.abs() >= thr, d, torch.zeros_like(d))
        self.res, self.act = d - s, a
        return s


# --------------------------------------- index ops of windowed transformers
class RollK(Kernel):
    """torch.roll on per-sample axes (Swin's cyclic shift)."""

    def step(self, xs, t):
        op = self.node.op
        return torch.roll(xs[0], op.shifts, [_axis(a) for a in op.axes])


class SliceK(Kernel):
    """start:stop:step along one per-sample axis (patch merging, qkv chunks)."""

    def step(self, xs, t):
        op = self.node.op
        idx = [slice(None)] * xs[0].dim()
        idx[_axis(op.axis)] = slice(op.start, op.stop, op.step)
        return xs[0][tuple(idx)]


class GELUK(Kernel):
    output_kind = "analog"

    def step(self, xs, t):
        return F.gelu(xs[0], approximate=self.node.op.approximate)


FLOAT_KERNELS: Dict[str, Type[Kernel]] = {
    "Input": InputKernel, "Output": Identity,
    "Affine": AffineK, "Linear": AffineK, "Conv1d": ConvK, "Conv2d": ConvK,
    "SumPool2d": SumPoolK, "AvgPool2d": SumPoolK, "MaxPool2d": MaxPoolK,
    "Flatten": FlattenK, "Reshape": ReshapeK, "Transpose": TransposeK, "Scale": ScaleK, "Bias": BiasK, "Mean": MeanK,
    "BatchNorm": BatchNormK, "LayerNorm": LayerNormK, "ReLU": ReLUK, "QCFS": QCFSK,
    "Softmax": SoftmaxK, "Add": AddK, "Concat": ConcatK, "MatMul": MatMulK,
    "Threshold": ThresholdK, "Delay": DelayK, "SpikeMask": SpikeMaskK,
    "IF": IFK, "LIF": LIFK, "LI": LIK, "I": IK, "CubaLIF": CubaLIFK, "CubaLI": CubaLIK,
    "SigmaDelta": SigmaDeltaK,
    "Roll": RollK, "Slice": SliceK, "GELU": GELUK,
}


def make_float_kernel(node: Node, graph: Graph, device: str = "cpu") -> Kernel:
    cls = FLOAT_KERNELS.get(node.op_name)
    if cls is None:
        raise UnsupportedOpError(
            f"node '{node.name}' ({node.op_name}): the simulator has no kernel for this op yet")
    return cls(node, graph, device)
