"""Loihi fixed-point kernels, bit-exact with Lava's ``fixed_pt`` process models.

Rules (reference: shared/reference/loihi_lava.md §2; Lava's
``PyLifModelBitAcc``, ``PyDenseModelBitAcc``, ``PyConvModelFixed``, sigma-delta
models):

* Every synapse (Dense, Conv) adds one time step: at step t it emits what it
  computed from the spikes of step t-1. A DelayDense synapse with delay d
  delivers a spike of step t at step t+1+d.
* Dense: a = W_int @ s (netx's weight-exponent round trip is exact for the
  integer weights the netx loader stores). Conv: a = wrap24(conv(s, W_int)).
* CUBA: u = decay(u, iDecay) + (a << 6) in int32, one 24-bit wrap correction;
  v = decay(v, vDecay) + u + (bias_mant << 6) in int32, saturated to
  ±(2^23 - 1); spike when v > vThMant << 6; v <- 0 on a spike, u kept.
  decay(x, d) = sign(x (4096-d)) * (|x (4096-d)| >> 12) (rounds toward 0).
* LIFReset (netx ``reset_interval``): neuron layer j (counting the network's
  neuron layers from 0) zeroes u and v at the start of time step τ (τ = t+1)
  when τ % interval == (reset_offset + 1 + j) % interval.
* Sigma-delta (netx SDNN, spike_exp = state_exp = 6): see :class:`SigmaDeltaLoihi`.

State is held in int64 tensors; int32 wrap-around is emulated explicitly.
Besides the ops netx can express, Add, MatMul and Transpose run here with the
rules of the custom Lava processes in ``exporters/loihi2/lava_graph.py``
(integer, same step, no delay; see the section "Lava-only ops"); anything
else must be quantized or folded first (an UnsupportedOpError names the node).
"""
from __future__ import annotations

from typing import Dict, List, Optional, Type

import numpy as np
import torch
import torch.nn.functional as F

from nmtoolchain.errors import UnsupportedOpError
from nmtoolchain.ir import Graph, Node
from nmtoolchain.numerics.loihi import (
    DECAY_BITS, DECAY_UNIT, MANT_SHIFT, SDNN_SPIKE_EXP, SDNN_STATE_EXP, STATE_BITS,
    LoihiCubaNeuron, LoihiSigmaDeltaNeuron, keep_factor)
from simulators.cycle import fused, fused_triton
from simulators.cycle import kernels_float as kf

I64 = torch.int64
_F32_EXACT = float(2 ** 24)


def wrap(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Two's-complement wrap of an int64 tensor to ``bits`` signed bits."""
    half = 1 << (bits - 1)
    return ((x + half) & ((1 << bits) - 1)) - half


def decay(x: torch.Tensor, d: int) -> torch.Tensor:
    """x * (4096 - d) / 4096 rounded toward zero (Lava's sign-magnitude shift)."""
    if d == 0:
        return x
    if d == DECAY_UNIT:
        return torch.zeros_like(x)
    p = x * (DECAY_UNIT - d)
    return torch.sign(p) * (torch.abs(p) >> DECAY_BITS)


def _f32_is_exact(device) -> bool:
    """Whether integer float32 convolutions and matmuls are exact on ``device``
    below 2^24. On the CPU they are; a GPU may pick TF32 or Winograd/FFT
    algorithms, so there the integer synapses always run in float64 (exact,
    and rounded back to the integers)."""
    return torch.device(device).type == "cpu"


def _exact_matmul(w32: torch.Tensor, w64: torch.Tensor, bound: float,
                  x: torch.Tensor) -> torch.Tensor:
    """Integer W @ x via float32 when provably exact, else float64."""
    xmax = float(x.abs().max().item()) if x.numel() else 0.0
    if xmax * bound < _F32_EXACT and _f32_is_exact(x.device):
        return torch.round(F.linear(x.to(torch.float32), w32)).to(I64)
    return torch.round(F.linear(x.to(torch.float64), w64)).to(I64)


class DenseLoihi(kf.Kernel):
    """Dense / DelayDense synapse with Lava's one-step pipeline."""

    def __init__(self, node: Node, graph: Graph, device: str = "cpu") -> None:
        super().__init__(node, graph, device)
        w = np.asarray(node.op.weight, dtype=np.float64)
        if np.any(w != np.round(w)):
            raise UnsupportedOpError(
                f"node '{node.name}' ({node.op_name}): weights are not integers; quantize for "
                "Loihi first")
        if np.any(getattr(node.op, "bias", None) if getattr(node.op, "bias", None) is not None
                  else 0):
            raise UnsupportedOpError(
                f"node '{node.name}': a synapse bias has no Loihi meaning; put it on the neuron")
        delay = getattr(node.op, "delay", None)
        d = np.zeros(w.shape, np.int64) if delay is None else np.broadcast_to(delay, w.shape)
        self.groups = []
        for dv in np.unique(d):
            wd = np.where(d == dv, w, 0.0)
            self.groups.append((int(dv), torch.as_tensor(wd, dtype=torch.float32, device=device),
                                torch.as_tensor(wd, dtype=torch.float64, device=device),
                                float(np.abs(wd).sum(1).max()) if wd.size else 0.0))
        self.depth = int(d.max()) + 2 if d.size else 2

    def reset(self, batch):
        super().reset(batch)
        self.ring = torch.zeros((self.depth, batch) + tuple(self.shape), dtype=I64,
                                device=self.device)
        self.head = 0

    def step(self, xs, t):
        out = self.emit(t)
        self.absorb(xs, t)
        return out

    # A synapse on a recurrent loop is run in two halves (simulators.cycle.
    # interpreter): it sends what it holds, then takes its input of the same
    # step once the neuron it reads has run, as Lava's Dense sends a_buff
    # before receiving s_in. A spike at step t then reaches u at step t + 1.
    def emit(self, t):
        """The input that reaches the neuron at this step (sent before receiving)."""
        out = self.ring[self.head].clone()
        self.ring[self.head].zero_()
        self.head = (self.head + 1) % self.depth
        return out

    def absorb(self, xs, t):
        """Take this step's spikes; they arrive 1 + delay steps later."""
        x = xs[0]
        for dv, w32, w64, bound in self.groups:
            slot = (self.head + dv) % self.depth
            self.ring[slot] += _exact_matmul(w32, w64, bound, x)

    def run_block(self, xs, t0):
        """Steps t0 .. t0+n-1 at once (layer-major schedule): one matmul over
        n·B, the one-step delay as a shift in time. Declines (None) with
        synaptic delays; the products are exact integers either way."""
        if self.depth != 2 or len(self.groups) != 1:
            return None
        x = xs[0]
        _, w32, w64, bound = self.groups[0]
        a = _exact_matmul(w32, w64, bound, x)  # (n, B, N) int64
        out = torch.empty_like(a)
        out[0] = self.ring[self.head]
        out[1:] = a[:-1]
        self.ring.zero_()
        self.ring[self.head] = a[-1]
        return out


class ConvLoihi(kf.Kernel):
    """Conv synapse: a = wrap24(conv(s, W)), one-step pipeline."""

    def __init__(self, node, graph, device="cpu"):
        super().__init__(node, graph, device)
        op = node.op
        w = np.asarray(op.weight, dtype=np.float64)
        if np.any(w != np.round(w)):
            raise UnsupportedOpError(
                f"node '{node.name}' (Conv2d): weights are not integers; quantize for Loihi first")
        if np.any(op.bias):
            raise UnsupportedOpError(
                f"node '{node.name}': a synapse bias has no Loihi meaning; put it on the neuron")
        self.w32 = torch.as_tensor(w, dtype=torch.float32, device=device)
        self.w64 = torch.as_tensor(w, dtype=torch.float64, device=device)
        self.bound = float(np.abs(w).reshape(w.shape[0], -1).sum(1).max())
        self.f32_ok = _f32_is_exact(device)
        self.kw = dict(stride=op.stride, padding=op.padding, dilation=op.dilation, groups=op.groups)

    def reset(self, batch):
        super().reset(batch)
        self.buf = torch.zeros((batch,) + tuple(self.shape), dtype=torch.float32,
                               device=self.device)

    def step(self, xs, t):
        out = self.buf
        x = xs[0]
        xmax = float(x.abs().max().item()) if x.numel() else 0.0
        if self.f32_ok and xmax * self.bound < _F32_EXACT / 2:  # |a| < 2^23: float32 exact, no 24-bit wrap
            self.buf = torch.round(F.conv2d(x.to(torch.float32), self.w32, **self.kw))
        else:
            a = torch.round(F.conv2d(x.to(torch.float64), self.w64, **self.kw)).to(I64)
            self.buf = wrap(a, 24).to(torch.float64)
        return out

    def run_block(self, xs, t0):
        """Steps t0 .. t0+n-1 at once (layer-major schedule): one convolution
        over n·B, the one-step delay as a shift in time. Each step takes the
        float32 path exactly when :meth:`step` would (its own max |x|), so the
        values and the block's dtype are the step schedule's."""
        x = xs[0]
        n, b = x.shape[0], x.shape[1]
        flat = x.reshape((n * b,) + tuple(x.shape[2:]))
        flat_t = x.reshape(n, -1)  # max |x| per step, as max(max x, -min x): no |x| copy
        xmax = (torch.maximum(flat_t.amax(1), flat_t.amin(1).neg()) if x.numel()
                else torch.zeros(n))
        exact32 = (xmax.double() * self.bound < _F32_EXACT / 2).tolist()
        if not self.f32_ok:
            exact32 = [False] * n
        wide = [i for i, ok in enumerate(exact32) if not ok]
        out_wide = self.buf.dtype == torch.float64 or any(i < n - 1 for i in wide)
        out = torch.empty((n, b) + tuple(self.shape),
                          dtype=torch.float64 if out_wide else torch.float32, device=x.device)
        out[0] = self.buf
        y = None
        if len(wide) < n:  # the steps the float32 path takes
            y = F.conv2d(flat.to(torch.float32), self.w32, **self.kw).round_()
            y = y.reshape((n, b) + tuple(self.shape))
            out[1:] = y[:-1]
        if wide:
            xw = x if len(wide) == n else x[wide]
            a = torch.round(F.conv2d(xw.reshape((-1,) + tuple(x.shape[2:])).to(
                torch.float64), self.w64, **self.kw)).to(I64)
            a = wrap(a, 24).to(torch.float64).reshape((len(wide), b) + tuple(self.shape))
            if len(wide) == n:
                out[1:] = a[:-1]
            else:
                for j, i in enumerate(wide):
                    if i < n - 1:
                        out[i + 1] = a[j]
        self.buf = a[-1] if wide and wide[-1] == n - 1 else y[-1].clone()
        return out


F64 = torch.float64
_LIM = float(1 << (STATE_BITS - 1))
_I32 = float(1 << 31)


def _fits_int32(x: torch.Tensor) -> bool:
    if not x.numel():
        return True
    lo, hi = torch.aminmax(x)
    return float(hi) < _I32 and float(lo) >= -_I32


def _wrap32_f(x: torch.Tensor) -> torch.Tensor:
    """int32 two's-complement wrap of integer-valued float64 values (exact)."""
    return x if _fits_int32(x) else torch.remainder(x + _I32, 2 * _I32) - _I32


class CubaLoihi(kf.Kernel):
    """Bit-accurate CUBA LIF (Lava PyLifModelBitAcc / PyLifResetModelBitAcc).

    State is held as integer-valued float64: every quantity stays below 2^37,
    so products, sums and the decay's division by 4096 are exact, and
    trunc(x * (4096 - d) / 4096) equals Lava's sign-magnitude ``>> 12``. The
    int32 wrap-around of Lava's arithmetic is applied whenever a value leaves
    the int32 range (checked with one min/max reduction per step)."""

    output_kind = "spikes"

    def __init__(self, node, graph, device="cpu", layer_index=0, reset_interval=None,
                 reset_offset=0):
        super().__init__(node, graph, device)
        q = node.numerics
        if not isinstance(q, LoihiCubaNeuron):
            raise UnsupportedOpError(
                f"node '{node.name}' ({node.op_name}): no Loihi fixed-point parameters; quantize "
                "for Loihi first")
        self.fu = keep_factor(q.i_decay)
        self.fv = keep_factor(q.v_decay)
        self.i_keep, self.v_keep = DECAY_UNIT - q.i_decay, DECAY_UNIT - q.v_decay
        self.vth = float(q.v_th_mant << MANT_SHIFT)
        self.bias_exp = q.bias_exp
        self.bias = torch.as_tensor(np.broadcast_to(q.bias_mant, node.shape).copy(),
                                    device=device)
        self.bias_v = self._shift_bias(self.bias).to(F64)
        self.drive = q.input_transform is not None
        self.interval = reset_interval
        self.phase = None if not reset_interval else (reset_offset + 1 + layer_index) % reset_interval

    def reset(self, batch):
        super().reset(batch)
        shape = (batch,) + tuple(self.shape)
        self.u = torch.zeros(shape, dtype=F64, device=self.device)
        self.v = torch.zeros(shape, dtype=F64, device=self.device)
        # scratch buffers: the update runs in place (fresh large tensors every
        # step cost more than the arithmetic itself on a CPU)
        self._u = torch.empty_like(self.u)
        self._v = torch.empty_like(self.v)
        self._s = torch.empty(shape, dtype=torch.bool, device=self.device)

    def _shift_bias(self, b: torch.Tensor) -> torch.Tensor:
        return b << self.bias_exp if self.bias_exp >= 0 else b >> -self.bias_exp

    def _drive_bias(self, x: torch.Tensor) -> torch.Tensor:
        """netx's input neuron: its input is the bias mantissa, rounded half to
        even and shifted (integer-valued float64)."""
        return self._shift_bias(torch.round(x).to(I64)).to(F64)

    @staticmethod
    def _decay_into(out: torch.Tensor, x: torch.Tensor, f: float) -> torch.Tensor:
        if f == 1.0:
            return out.copy_(x)
        if f == 0.0:
            return out.zero_()
        # trunc(x f) as copysign(floor(|x f|), x): bit for bit the same (signed
        # zeros included; f > 0), and floor is vectorized where trunc is not
        return torch.mul(x, f, out=out).abs_().floor_().copysign_(x)

    def step(self, xs, t):
        x = xs[0]
        if self.interval and (t + 1) % self.interval == self.phase:
            self.u.zero_()
            self.v.zero_()
        u, v = self._u, self._v
        self._decay_into(u, self.u, self.fu)
        if self.drive:  # netx input neuron: the input is its bias_mant
            bias = self._drive_bias(x)
        else:
            u.add_(x, alpha=float(1 << MANT_SHIFT))
            if not _fits_int32(u):  # Lava's int32 arithmetic wraps
                u.copy_(_wrap32_f(u))
            bias = self.bias_v
        lo, hi = torch.aminmax(u)
        if float(hi) > _LIM or float(lo) <= -_LIM:  # Lava's single 24-bit correction
            u.copy_(torch.where(u > _LIM, u - 2 * _LIM, u))
            u.copy_(torch.where(u <= -_LIM, u + 2 * _LIM, u))
        self._decay_into(v, self.v, self.fv)
        v.add_(u).add_(bias)
        if not _fits_int32(v):
            v.copy_(_wrap32_f(v))
        v.clamp_(-(_LIM - 1), _LIM - 1)
        torch.gt(v, self.vth, out=self._s)
        v.masked_fill_(self._s, 0.0)
        # swap state and scratch
        self._u, self.u = self.u, u
        self._v, self.v = self.v, v
        return self._s.to(torch.float32)  # a fresh tensor: counting keeps it

    def state(self) -> Dict[str, torch.Tensor]:
        return {"u": self.u.to(I64), "v": self.v.to(I64)}

    def _wrap_free(self, x: torch.Tensor) -> bool:
        """Whether no step of the block ``x`` can reach Lava's int32 wrap or its
        24-bit current correction, so the per-step range checks can be skipped.

        |trunc(u fu)| <= fu |u|, so |u_t| <= fu |u_{t-1}| + A with A = 64 max|x|:
        |u| stays below M = max(|u_0|, A / (1 - fu)) (|u_0| + n A when fu = 1).
        v is clamped to ±(2^23 - 1) every step, so before the clamp
        |v| <= max(|v_0|, 2^23) + M + max|bias|. Resets only zero state."""
        n = x.shape[0]
        u0 = float(self.u.abs().max()) if self.u.numel() else 0.0
        v0 = float(self.v.abs().max()) if self.v.numel() else 0.0
        xmax = float(x.abs().max()) if x.numel() else 0.0
        if self.drive:
            m_u = u0
            bias = (xmax + 1) * 2.0 ** max(self.bias_exp, 0)
        else:
            a = float(1 << MANT_SHIFT) * xmax
            m_u = u0 + n * a if self.fu >= 1.0 else max(u0, a / (1.0 - self.fu))
            bias = float(self.bias_v.abs().max()) if self.bias_v.numel() else 0.0
        m_u = m_u * (1 + 1e-9) + 1
        m_v = max(v0, _LIM) + m_u + bias + 1
        return m_u < _LIM - 1 and m_v < _I32 - 1

    def run_block(self, xs, t0):
        """Steps t0 .. t0+n-1 (layer-major schedule): the same in-place update
        as :meth:`step`, spikes written into one preallocated (n, B, ...)
        buffer; the per-step range checks are dropped when :meth:`_wrap_free`
        proves no step can need them (else :meth:`step`'s exact checks run)."""
        x = xs[0]
        if fused_triton.available(self.u.device):  # one GPU kernel: Lava's integers
            return fused_triton.cuba_loihi_block(
                self._drive_bias(x) if self.drive else x, self.u, self.v,
                None if self.drive else self.bias_v, i_keep=self.i_keep, v_keep=self.v_keep,
                vth=int(self.vth), drive=self.drive, interval=self.interval, phase=self.phase,
                t0=t0)
        if fused.available(self.u.device):  # the compiled loop: step()'s checks, exact
            return fused.cuba_loihi_block(
                x, self.u, self.v, None if self.drive else self.bias_v, fu=self.fu, fv=self.fv,
                vth=self.vth, lim=_LIM, i32=_I32, drive=self.drive, bias_exp=self.bias_exp,
                interval=self.interval, phase=self.phase, t0=t0)
        if not self._wrap_free(x):
            return None
        n = x.shape[0]
        spikes = torch.empty((n,) + tuple(self.u.shape), dtype=torch.bool, device=self.device)
        lim = _LIM - 1
        for i in range(n):
            t = t0 + i
            if self.interval and (t + 1) % self.interval == self.phase:
                self.u.zero_()
                self.v.zero_()
            u, v = self._u, self._v
            self._decay_into(u, self.u, self.fu)
            if self.drive:
                bias = self._drive_bias(x[i])
            else:
                u.add_(x[i], alpha=float(1 << MANT_SHIFT))
                bias = self.bias_v
            self._decay_into(v, self.v, self.fv)
            v.add_(u).add_(bias).clamp_(-lim, lim)
            s = spikes[i]
            torch.gt(v, self.vth, out=s)
            v.masked_fill_(s, 0.0)
            self._u, self.u = self.u, u
            self._v, self.v = self.v, v
        return spikes.to(torch.float32)


class SigmaDeltaLoihi(kf.Kernel):
    """Lava's fixed-point Delta / SigmaDelta / Sigma as netx builds them.

    Delta (input):  a = x << 12 ; d = a - act + res ; s = d if |d| >= vth<<12
                    else 0 ; res = d - s ; act = a ; out = s >> 6
    SigmaDelta:     sigma += a_in ; a = max(sigma + bias<<12, 0) ; same delta
                    step on a ; out = s >> 6 (floor; the remainder is dropped)
    Sigma (output): sigma += a_in ; out = sigma
    """

    output_kind = "graded"

    def __init__(self, node, graph, device="cpu"):
        super().__init__(node, graph, device)
        op = node.op
        q = node.numerics
        if isinstance(q, LoihiSigmaDeltaNeuron) and (q.spike_exp, q.state_exp) != (
                SDNN_SPIKE_EXP, SDNN_STATE_EXP):
            raise UnsupportedOpError(
                f"node '{node.name}' ({node.op_name}): spike_exp {q.spike_exp}, state_exp "
                f"{q.state_exp}; loihi numerics run netx's {SDNN_SPIKE_EXP}, {SDNN_STATE_EXP}")
        thr = np.asarray(op.threshold, dtype=np.int64)
        bias = np.asarray(op.bias, dtype=np.int64)
        self.vth = torch.as_tensor(np.broadcast_to(thr, node.shape).copy(), device=device) << 12
        self.bias = torch.as_tensor(np.broadcast_to(bias, node.shape).copy(), device=device) << 12

    def reset(self, batch):
        super().reset(batch)
        shape = (batch,) + tuple(self.shape)
        self.sigma = torch.zeros(shape, dtype=I64, device=self.device)
        self.act = torch.zeros(shape, dtype=I64, device=self.device)
        self.res = torch.zeros(shape, dtype=I64, device=self.device)

    def step(self, xs, t):
        op = self.node.op
        x = torch.round(xs[0]).to(I64)
        if op.role == "sigma":
            self.sigma = self.sigma + x
            return self.sigma.to(torch.float64)
        if op.role == "delta":
            a = x << 12
        else:
            self.sigma = self.sigma + x
            a = torch.clamp(self.sigma + self.bias, min=0)
        d = a - self.act + self.res
        s = torch.where(d.abs() >= self.vth, d, torch.zeros_like(d))
        self.res, self.act = d - s, a
        return (s >> 6).to(torch.float64)


# ----------------------------------------------------------- Lava-only ops
# Ops that netx cannot express (products of two dynamic tensors, residual
# sums, axis permutations). They run in Lava only as the custom processes of
# exporters/loihi2/lava_graph.py, which implement exactly these rules:
#   Add:       y = x_0 + x_1 + ... (integers, numpy broadcasting), same step;
#   MatMul:    y = a @ b (integers: spike counts or graded values), same step;
#   Transpose: pure re-indexing of the step's input, same step.
# None adds a pipeline step (only synapses do). Outputs are integer-valued
# float64 tensors (graded values), exact up to 2^53.


def _ints(x: torch.Tensor) -> torch.Tensor:
    return torch.round(x.to(F64))


class AddLoihi(kf.Kernel):
    """Elementwise integer sum of all inputs of the same step (no delay)."""

    output_kind = "graded"

    def step(self, xs, t):
        out = _ints(xs[0])
        for x in xs[1:]:
            out = out + _ints(x)
        return out


class MatMulLoihi(kf.Kernel):
    """Integer a @ b of the two inputs of the same step (no delay); spikes
    (0/1) multiply into counts, the output is graded."""

    output_kind = "graded"

    def step(self, xs, t):
        return torch.matmul(_ints(xs[0]), _ints(xs[1]))


class TransposeLoihi(kf.TransposeK):
    """Axis permutation of the same step's input (no delay, values unchanged)."""


LAVA_ONLY_KERNELS: Dict[str, Type[kf.Kernel]] = {
    "Add": AddLoihi, "MatMul": MatMulLoihi, "Transpose": TransposeLoihi,
}


PASS_THROUGH: Dict[str, Type[kf.Kernel]] = {
    "Input": kf.InputKernel, "Output": kf.Identity, "Flatten": kf.FlattenK,
    "Reshape": kf.ReshapeK,
}


def make_loihi_kernel(node: Node, graph: Graph, device: str = "cpu", *, layer_index: int = 0,
                      reset_interval: Optional[int] = None, reset_offset: int = 0) -> kf.Kernel:
    """The Loihi fixed-point kernel for ``node`` (an error names unsupported nodes)."""
    name = node.op_name
    if name in PASS_THROUGH:
        return PASS_THROUGH[name](node, graph, device)
    if name in ("Affine", "Linear"):
        return DenseLoihi(node, graph, device)
    if name == "Conv2d":
        return ConvLoihi(node, graph, device)
    if name in ("CubaLIF", "CubaLI"):
        return CubaLoihi(node, graph, device, layer_index, reset_interval, reset_offset)
    if name == "SigmaDelta":
        return SigmaDeltaLoihi(node, graph, device)
    if name in LAVA_ONLY_KERNELS:
        return LAVA_ONLY_KERNELS[name](node, graph, device)
    raise UnsupportedOpError(
        f"node '{node.name}' ({name}) has no Loihi fixed-point semantics; fold or quantize the "
        "graph for Loihi first")
