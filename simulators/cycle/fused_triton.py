"""Loihi's CUBA time loop as one Triton kernel per layer and time block (GPU).

At batch 1 on a GPU the torch time loop is bound by kernel launches: about
fifteen small kernels per step and layer. Here one launch runs every step of
a block for a tile of neurons, in Lava's own integer arithmetic (int64:
sign-magnitude ``>> 12`` decay, int32 wraps as ``(x << 32) >> 32``, the single 24-bit
correction, the clamp), so results are those of ``CubaLoihi.step``.

Opt-in (``NMTC_TRITON=1``) until a lent GPU has timed it and checked it
against the CPU parity corpus (tests/test_simulator_device.py). The same
kernel runs on the CPU in Triton's interpreter (``TRITON_INTERPRET=1``),
which is how tests/test_fused_triton.py checks it bit for bit against Lava's
integer formulas on a machine without a GPU.
"""


import os
from typing import Optional

import torch

try:  # Triton ships with torch's CUDA wheels on Linux
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - depends on the torch build
    triton = None


def available(device: torch.device) -> bool:
    """Whether the Triton loop runs for tensors on ``device`` (opt-in)."""
    if triton is None or os.environ.get("NMTC_TRITON", "0") != "1":
        return False
    kind = torch.device(device).type
    return kind == "cuda" or (kind == "cpu" and os.environ.get("TRITON_INTERPRET") == "1")


if triton is not None:
    @triton.jit
    def _cuba_loihi_kernel(x_ptr, u_ptr, v_ptr, bias_ptr, out_ptr, n, m, one_row, ku, kv,
                           vth, drive, interval, every, phase, t0, BLOCK: tl.constexpr):
        # x: (n or 1, m) integer-valued floats: the synaptic input a, or for
        # netx's input neuron (drive) its bias already rounded and shifted;
        # u, v: (m,) int64 state, updated in place; out: (n, m) float32 spikes
        pid = tl.program_id(0)
        offs = pid * BLOCK + tl.arange(0, BLOCK)
        mask = offs < m
        u = tl.load(u_ptr + offs, mask=mask)
        v = tl.load(v_ptr + offs, mask=mask)
        bias = tl.load(bias_ptr + offs, mask=mask).to(tl.int64)
        lim = 8388608  # 2^23
        for i in range(0, n):
            t = t0 + i
            keep = (interval == 0) | ((t + 1) % every != phase)  # netx's reset schedule
            u = tl.where(keep, u, 0)
            v = tl.where(keep, v, 0)
            row = tl.where(one_row != 0, 0, i)
            a = tl.load(x_ptr + row * m + offs, mask=mask).to(tl.int64)
            pu = u * ku  # decay: sign(p) (|p| >> 12), toward zero
            u = tl.where(pu < 0, -((-pu) >> 12), pu >> 12)
            fed = u + a * 64  # a synaptic input, in Lava's int32 arithmetic (keep 32 bits,
            fed = (fed << 32) >> 32  # sign-extend); a drive is the bias instead
            u = tl.where(drive != 0, u, fed)
            b = tl.where(drive != 0, a, bias)
            u = tl.where(u > lim, u - 2 * lim, u)  # the single 24-bit correction
            u = tl.where(u <= -lim, u + 2 * lim, u)
            pv = v * kv
            v = tl.where(pv < 0, -((-pv) >> 12), pv >> 12) + u + b
            v = (v << 32) >> 32
            v = tl.where(v > lim - 1, lim - 1, v)  # saturation
            v = tl.where(v < 1 - lim, 1 - lim, v)
            s = v > vth
            v = tl.where(s, 0, v)
            tl.store(out_ptr + i * m + offs, s.to(tl.float32), mask=mask)
        tl.store(u_ptr + offs, u, mask=mask)
        tl.store(v_ptr + offs, v, mask=mask)


def cuba_loihi_block(x: torch.Tensor, u: torch.Tensor, v: torch.Tensor,
                     bias: Optional[torch.Tensor], *, i_keep: int, v_keep: int, vth: int,
                     drive: bool, interval: Optional[int], phase: Optional[int],
                     t0: int, block: int = 1024) -> torch.Tensor:
    """Steps t0 .. t0+n-1 of Loihi's bit-accurate CUBA on (n, B, ...) input, as
    :func:`simulators.cycle.fused.cuba_loihi_block`, but with the decays as
    integer keep factors 4096 - d, the threshold as an integer, and with
    ``drive`` the input already the shifted bias (``CubaLoihi._drive_bias``)."""
    n, m = x.shape[0], u.numel()
    one_row = x.shape[0] > 1 and x.stride(0) == 0
    xs = (x[:1] if one_row else x).reshape(-1, m).contiguous()
    b = (torch.zeros(m, dtype=torch.float64, device=u.device) if bias is None
         else bias.expand(u.shape).reshape(m).contiguous())
    out = torch.empty((n, m), dtype=torch.float32, device=u.device)
    ui, vi = u.reshape(m).to(torch.int64), v.reshape(m).to(torch.int64)
    _cuba_loihi_kernel[(triton.cdiv(m, block),)](
        xs, ui, vi, b, out, n, m, int(one_row), int(i_keep), int(v_keep),
        int(vth), int(drive), int(interval or 0), max(int(interval or 0), 1), int(phase or 0),
        int(t0), BLOCK=block)
    u.view(m).copy_(ui)  # the state stays integer-valued float64, as CubaLoihi keeps it
    v.view(m).copy_(vi)
    return out.reshape((n,) + tuple(u.shape))
