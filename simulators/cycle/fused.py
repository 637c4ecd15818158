"""Compiled neuron time loops for the layer-major schedule on the CPU.

A neuron layer's time loop written as torch ops costs ten or more small
kernel calls per step, each a full pass over the layer's state; at batch 1
that, not the synapses, is most of a run. Here the same update is one
compiled loop (numba) per layer and time block: state stays in registers
across the element-wise update, and the steps of a block run back to back.

Results are never changed: each function computes, element by element,
exactly the values of the torch loop it replaces (integer-valued float64
arithmetic, exact below 2^53), and tests compare the two bit for bit and
with Lava's integer formulas. numba is optional; without it, off the CPU,
or with ``NMTC_FUSED=0`` in the environment the torch loops run. A loop
compiles on first use in a process (seconds) and is then cached on disk by
numba where the package folder is writable.
"""
from __future__ import annotations

import os
from typing import Callable, Dict, Optional, Tuple

import numpy as np
import torch

#: numba, imported on first use (it costs a third of a second); None when absent
numba = None
_tried = False
#: the compiled loops' parallel range (numba.prange once numba is imported)
prange = range

#: Block of neurons one thread updates over all steps (fits in L1 with its state).
_CHUNK = 2048


def numba_module():
    """numba if it can be imported, else None (imported once, on first call)."""
    global numba, prange, _tried, _fire, _layout, _span
    if not _tried:
        _tried = True
        try:
            import numba as nb
        except ImportError:
            return None
        numba, prange = nb, nb.prange
        _fire, _layout, _span = (nb.njit(inline="always")(f)
                                 for f in (_fire_py, _layout_py, _span_py))
        _start_threads()
    return numba


def _start_threads() -> None:
    """Start numba's thread pool now, leaving multiprocessing's start method
    as unset as it was. numba asks for the start method when its threads
    start, which fixes it for the process; Lava sets it (``fork``) when
    imported and fails if it is already fixed, so a simulation run before
    Lava is imported (``nmtc verify``, the tests) would break Lava."""
    import multiprocessing
    unset = multiprocessing.get_start_method(allow_none=True) is None
    numba.get_num_threads()  # launches the threads
    if unset:
        ctx = getattr(multiprocessing.context, "_default_context", None)
        if ctx is not None and hasattr(ctx, "_actual_context"):
            ctx._actual_context = None


def _fire_py(v, thr, v_reset, ge, subtract, one, zero):  # pragma: no cover - compiled
    """One neuron's single spike and reset, as NeuronK.spike_and_reset: the
    spike s = [v >= thr] (or >) and v after it, v - s thr or v_reset where s."""
    s = one if (v >= thr if ge else v > thr) else zero
    if subtract:
        return s, v - s * thr
    return s, (v_reset if s > zero else v)


#: _fire_py compiled (inlined into the loops that call it) once numba is imported
_fire = None


def _layout_py(x, out, unit):  # pragma: no cover - compiled
    """A float loop's shape: steps n, neurons m, whether x is one row held every
    step, the number of neuron chunks, and 1 and 0 in the state's float type."""
    n, m = out.shape
    one = unit[0]
    return n, m, x.shape[0] != n, (m + _CHUNK - 1) // _CHUNK, one, one - one


def _span_py(c, m):  # pragma: no cover - compiled
    """Neurons [lo, hi) of chunk ``c``."""
    lo = c * _CHUNK
    return lo, min(m, lo + _CHUNK)


#: _layout_py and _span_py compiled (inlined) once numba is imported
_layout = None
_span = None


def available(device: torch.device) -> bool:
    """Whether the compiled loops run for tensors on ``device``."""
    return (torch.device(device).type == "cpu" and os.environ.get("NMTC_FUSED", "1") != "0"
            and numba_module() is not None)


def _cuba_loihi_py(x, u, v, bias, fu, fv, vth, lim, i32, drive, bias_scale,
                   interval, phase, t0, out):  # pragma: no cover - compiled
    # Branch-free inner loops, so that LLVM vectorizes them. Every quantity
    # is an integer-valued float64 below 2^53, so each step below is exact:
    # trunc(x f) for f = k/4096; the int32 wrap as x - 2^32 floor((x + 2^31)
    # / 2^32) (a no-op in range); the drive's bias mantissa shifted by e as
    # floor(rint(x) 2^e) (an arithmetic shift for e < 0).
    n, m = out.shape  # x has n rows, or one (the same input every step)
    one_row = x.shape[0] != n
    nchunks = (m + _CHUNK - 1) // _CHUNK
    two_lim = 2.0 * lim
    two_i32 = 2.0 * i32
    inv_two_i32 = 1.0 / two_i32
    clip = lim - 1.0
    for c in prange(nchunks):
        lo, hi = _span(c, m)
        # 1-D views indexed from 0: LLVM then vectorizes the inner loops
        uc, vc, bc = u[lo:hi], v[lo:hi], bias[lo:hi]
        for i in range(n):
            t = t0 + i
            if interval > 0 and (t + 1) % interval == phase:
                uc[:] = 0.0
                vc[:] = 0.0
            xr, orow = x[0 if one_row else i, lo:hi], out[i, lo:hi]
            if drive:  # netx input neuron: the input is its bias mantissa
                for j in range(hi - lo):
                    uj = np.trunc(uc[j] * fu)
                    b = np.floor(np.rint(xr[j]) * bias_scale)
                    uj = uj - two_lim if uj > lim else uj  # Lava's single 24-bit correction
                    uj = uj + two_lim if uj <= -lim else uj
                    vj = np.trunc(vc[j] * fv) + uj + b
                    vj = vj - two_i32 * np.floor((vj + i32) * inv_two_i32)  # int32 wrap
                    vj = min(max(vj, -clip), clip)
                    s = vj > vth
                    orow[j] = 1.0 if s else 0.0
                    uc[j] = uj
                    vc[j] = 0.0 if s else vj
            else:
                for j in range(hi - lo):
                    uj = np.trunc(uc[j] * fu) + 64.0 * xr[j]
                    uj = uj - two_i32 * np.floor((uj + i32) * inv_two_i32)
                    uj = uj - two_lim if uj > lim else uj
                    uj = uj + two_lim if uj <= -lim else uj
                    vj = np.trunc(vc[j] * fv) + uj + bc[j]
                    vj = vj - two_i32 * np.floor((vj + i32) * inv_two_i32)
                    vj = min(max(vj, -clip), clip)
                    s = vj > vth
                    orow[j] = 1.0 if s else 0.0
                    uc[j] = uj
                    vc[j] = 0.0 if s else vj


_compiled: Dict[str, Callable] = {}


def _jit(name: str, fn: Callable) -> Callable:
    """``fn`` compiled (once per process; numba's disk cache spares the
    compile in later processes where the package folder is writable)."""
    if name not in _compiled:
        if numba_module() is None:
            raise RuntimeError("the compiled loops need numba (pip install numba)")
        try:
            _compiled[name] = numba.njit(parallel=True, cache=True, nogil=True)(fn)
        except RuntimeError:  # no writable cache location: compile in memory
            _compiled[name] = numba.njit(parallel=True, nogil=True)(fn)
    return _compiled[name]


def _rows(x: torch.Tensor, m: int) -> torch.Tensor:
    """(n, B, ...) input as contiguous (n, m) rows, or as one row when it is
    the same every step (a stride-0 time axis: a static input, not copied n times)."""
    if x.shape[0] > 1 and x.stride(0) == 0:
        return x[:1].reshape(1, m).contiguous()
    return x.reshape(x.shape[0], m).contiguous()


def _per_neuron(p: torch.Tensor, v: torch.Tensor) -> np.ndarray:
    """A parameter broadcast to the state ``v``, as one value per neuron (numpy view)."""
    return p.expand(v.shape).reshape(v.numel()).contiguous().numpy()


def _match_threads() -> None:
    """Use as many threads as torch does (``--threads``, one-thread workers)."""
    want = max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS))
    if numba.get_num_threads() != want:
        numba.set_num_threads(want)


def cuba_loihi_block(x: torch.Tensor, u: torch.Tensor, v: torch.Tensor,
                     bias: Optional[torch.Tensor], *, fu: float, fv: float, vth: float,
                     lim: float, i32: float, drive: bool, bias_exp: int,
                     interval: Optional[int], phase: Optional[int], t0: int) -> torch.Tensor:
    """Steps t0 .. t0+n-1 of Loihi's bit-accurate CUBA on (n, B, ...) input.

    ``u`` and ``v`` (float64, (B, ...), contiguous) are updated in place;
    returns the (n, B, ...) float32 spikes. ``bias`` is the per-neuron bias
    already shifted (float64, broadcast to (B, ...)); unused with ``drive``.
    The arithmetic is that of ``CubaLoihi.step`` (int32 wraps, the 24-bit
    correction, the clamp) element by element."""
    n = x.shape[0]
    m = u.numel()
    xs = _rows(x, m)
    if xs.dtype not in (torch.float32, torch.float64):
        xs = xs.to(torch.float64)
    b = np.zeros(1) if bias is None else _per_neuron(bias, u)
    out = torch.empty((n, m), dtype=torch.float32)
    loop = _jit("cuba_loihi", _cuba_loihi_py)
    _match_threads()
    loop(
        xs.numpy(), u.view(m).numpy(), v.view(m).numpy(), b, float(fu), float(fv),
        float(vth), float(lim), float(i32), bool(drive), 2.0 ** int(bias_exp), int(interval or 0),
        int(phase or 0), int(t0), out.numpy())
    return out.reshape((n,) + tuple(u.shape))


def _event_counts_py(x, out, events, active):  # pragma: no cover - compiled
    n, m = x.shape
    for i in prange(n):
        xr, orow = x[i], out[i]
        e = 0
        a = 0
        for j in range(m):
            xe = xr[j] != 0
            e += xe
            a += xe | (orow[j] != 0)
        events[i] = e
        active[i] = a


def event_counts(x: torch.Tensor, out: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per row of (n, m) ``x`` and ``out``: how many x are non-zero (NaN is,
    -0.0 is not: ``count_nonzero``'s rule) and how many neurons received a
    non-zero input or gave a non-zero output; float64, exact, one pass."""
    n = x.shape[0]
    xs, os_ = x.contiguous(), out.contiguous()
    if xs.dtype == torch.bool:
        xs = xs.view(torch.uint8)
    if os_.dtype == torch.bool:
        os_ = os_.view(torch.uint8)
    events = torch.empty(n, dtype=torch.int64)
    active = torch.empty(n, dtype=torch.int64)
    loop = _jit("event_counts", _event_counts_py)
    _match_threads()
    loop(xs.numpy(), os_.numpy(), events.numpy(), active.numpy())
    return events.double(), active.double()


def _weighted_event_counts_py(x, f_full, f_nz, events, full, nz, outside):
    # pragma: no cover - compiled
    rows, m = x.shape
    for r in prange(rows):
        xr = x[r]
        e = 0
        a = 0
        z = 0
        o = 0
        for j in range(m):
            v = xr[j]
            ev = v != 0
            e += ev
            a += f_full[j] if ev else 0
            z += f_nz[j] if ev else 0
            w = np.float32(v)  # the unit-set test reads float32 values (as counting does)
            o += 0 if (w == 0.0) | (w == 1.0) | (w == -1.0) else 1
        events[r] = e
        full[r] = a
        nz[r] = z
        outside[r] = o > 0


def weighted_event_counts(x: torch.Tensor, f_full: torch.Tensor, f_nz: torch.Tensor
                          ) -> Tuple[torch.Tensor, ...]:
    """Per row of (rows, m) ``x``, in one pass: its events (non-zero values,
    ``count_nonzero``'s rule), the sums of the integer fan-outs ``f_full`` and
    ``f_nz`` (int64, (m,)) over its events, and whether it holds a value outside
    {-1, 0, 1} once cast to float32 (NaN and ±inf do). Integer sums: exact."""
    rows = x.shape[0]
    xs = x.contiguous()
    if xs.dtype == torch.bool:
        xs = xs.view(torch.uint8)
    events, full, nz = (torch.empty(rows, dtype=torch.int64) for _ in range(3))
    outside = torch.empty(rows, dtype=torch.bool)
    loop = _jit("weighted_event_counts", _weighted_event_counts_py)
    _match_threads()
    loop(xs.numpy(), f_full.numpy(), f_nz.numpy(), events.numpy(), full.numpy(), nz.numpy(),
         outside.numpy())
    return events, full, nz, outside


def _if_float_py(x, v, r, bias, thr, ge, unit, out):  # pragma: no cover - compiled
    # IFK.step's float arithmetic, operation for operation (no fused multiply-add:
    # numba compiles without fast-math): v + r x, + b, s = [v >= thr] (or >),
    # v - s thr
    n, m, one_row, nchunks, one, zero = _layout(x, out, unit)  # x: n rows, or one
    for c in prange(nchunks):
        lo, hi = _span(c, m)
        vc, rc, bc, tc = v[lo:hi], r[lo:hi], bias[lo:hi], thr[lo:hi]
        for i in range(n):
            xr, orow = x[0 if one_row else i, lo:hi], out[i, lo:hi]
            for j in range(hi - lo):
                vj = vc[j] + rc[j] * xr[j]
                vj = vj + bc[j]
                orow[j], vc[j] = _fire(vj, tc[j], tc[j], ge, True, one, zero)


def if_float_block(x: torch.Tensor, v: torch.Tensor, r: torch.Tensor, bias: torch.Tensor,
                   thr: torch.Tensor, ge: bool) -> torch.Tensor:
    """Steps of a float IF neuron with single spikes and reset by subtraction on
    (n, B, ...) input, all tensors of one float dtype: ``v`` ((B, ...),
    contiguous) is updated in place, ``r``, ``bias`` and ``thr`` broadcast to
    it; returns the (n, B, ...) spikes in that dtype (see :class:`IFK`)."""
    n, m = x.shape[0], v.numel()
    flat = lambda p: _per_neuron(p, v)  # noqa: E731
    out = torch.empty((n, m), dtype=v.dtype)
    loop = _jit("if_float", _if_float_py)
    _match_threads()
    loop(_rows(x, m).numpy(), v.view(m).numpy(), flat(r), flat(bias), flat(thr), bool(ge),
         np.ones(1, out.numpy().dtype),
         out.numpy())
    return out.reshape((n,) + tuple(v.shape))


def _lif_float_py(x, v, r, leak, bias, thr, v_reset, coef, one_minus, euler, ge, subtract,
                  unit, out):  # pragma: no cover - compiled
    # LIFK.step's float arithmetic, operation for operation:
    #   euler:       v + k (v_leak - v + r x)
    #   exponential: v_leak + a (v - v_leak) + (1 - a) r x
    # then + bias, s = [v >= thr] (or >), v - s thr (or v_reset where s)
    n, m, one_row, nchunks, one, zero = _layout(x, out, unit)  # x: n rows, or one
    for c in prange(nchunks):
        lo, hi = _span(c, m)
        vc, rc, lc, bc = v[lo:hi], r[lo:hi], leak[lo:hi], bias[lo:hi]
        tc, zc, kc, oc = thr[lo:hi], v_reset[lo:hi], coef[lo:hi], one_minus[lo:hi]
        for i in range(n):
            xr, orow = x[0 if one_row else i, lo:hi], out[i, lo:hi]
            for j in range(hi - lo):
                vj = vc[j]
                if euler:
                    vn = vj + kc[j] * ((lc[j] - vj) + rc[j] * xr[j])
                else:
                    vn = (lc[j] + kc[j] * (vj - lc[j])) + (oc[j] * rc[j]) * xr[j]
                vn = vn + bc[j]
                orow[j], vc[j] = _fire(vn, tc[j], zc[j], ge, subtract, one, zero)


def lif_float_block(x: torch.Tensor, v: torch.Tensor, *, r: torch.Tensor, leak: torch.Tensor,
                    bias: torch.Tensor, thr: torch.Tensor, v_reset: torch.Tensor,
                    coef: torch.Tensor, euler: bool, ge: bool, subtract: bool) -> torch.Tensor:
    """Steps of a float LIF neuron with single spikes on (n, B, ...) input, all
    tensors of one float dtype: ``v`` ((B, ...), contiguous) is updated in
    place; ``coef`` is dt/tau (``euler``) or a = exp(-dt/tau) (exponential);
    the other parameters broadcast to ``v``. Returns the (n, B, ...) spikes in
    that dtype (see :class:`LIFK`)."""
    n, m = x.shape[0], v.numel()
    flat = lambda p: _per_neuron(p, v)  # noqa: E731
    out = torch.empty((n, m), dtype=v.dtype)
    loop = _jit("lif_float", _lif_float_py)
    _match_threads()
    loop(_rows(x, m).numpy(), v.view(m).numpy(), flat(r), flat(leak),
         flat(bias), flat(thr), flat(v_reset), flat(coef), flat(1 - coef), bool(euler), bool(ge),
         bool(subtract), np.ones(1, out.numpy().dtype), out.numpy())
    return out.reshape((n,) + tuple(v.shape))


def _cuba_float_py(x, cur, v, a_syn, w_in, a_mem, leak, r, bias, thr, v_reset, drive, spiking,
                   ge, subtract, unit, out):  # pragma: no cover - compiled
    # CubaLIFK.step's float arithmetic, operation for operation:
    #   i <- a_syn i + w_in syn;  v <- v_leak + a_mem (v - v_leak) + r i + bias + drive
    # (syn = x and drive = 0, or for netx's input neuron syn = 0 and drive = x);
    # then, for CubaLIF, s = [v >= thr] (or >) and v - s thr (or v_reset where s)
    n, m, one_row, nchunks, one, zero = _layout(x, out, unit)  # x: n rows, or one
    for c in prange(nchunks):
        lo, hi = _span(c, m)
        ic, vc, sc, wc, mc = cur[lo:hi], v[lo:hi], a_syn[lo:hi], w_in[lo:hi], a_mem[lo:hi]
        lc, rc, bc, tc, zc = leak[lo:hi], r[lo:hi], bias[lo:hi], thr[lo:hi], v_reset[lo:hi]
        for i in range(n):
            xr, orow = x[0 if one_row else i, lo:hi], out[i, lo:hi]
            for j in range(hi - lo):
                syn = zero if drive else xr[j]
                dj = xr[j] if drive else zero
                ij = sc[j] * ic[j] + wc[j] * syn
                ic[j] = ij
                vn = (((lc[j] + mc[j] * (vc[j] - lc[j])) + rc[j] * ij) + bc[j]) + dj
                if not spiking:
                    orow[j] = vn
                    vc[j] = vn
                    continue
                orow[j], vc[j] = _fire(vn, tc[j], zc[j], ge, subtract, one, zero)


def cuba_float_block(x: torch.Tensor, cur: torch.Tensor, v: torch.Tensor, *,
                     a_syn: torch.Tensor, w_in: torch.Tensor, a_mem: torch.Tensor,
                     leak: torch.Tensor, r: torch.Tensor, bias: torch.Tensor, thr: torch.Tensor,
                     v_reset: torch.Tensor, drive: bool, spiking: bool, ge: bool,
                     subtract: bool) -> torch.Tensor:
    """Steps of a float CUBA neuron (CubaLIF, or CubaLI when not ``spiking``)
    with single spikes on (n, B, ...) input, every tensor of one float dtype:
    ``cur`` and ``v`` ((B, ...), contiguous) are updated in place, the
    parameters broadcast to them. Returns the spikes (or v) in that dtype
    (see :class:`CubaLIFK`)."""
    n, m = x.shape[0], v.numel()
    flat = lambda p: _per_neuron(p, v)  # noqa: E731
    out = torch.empty((n, m), dtype=v.dtype)
    loop = _jit("cuba_float", _cuba_float_py)
    _match_threads()
    loop(_rows(x, m).numpy(), cur.view(m).numpy(), v.view(m).numpy(),
         flat(a_syn), flat(w_in), flat(a_mem), flat(leak), flat(r), flat(bias), flat(thr),
         flat(v_reset), bool(drive), bool(spiking), bool(ge), bool(subtract),
         np.ones(1, out.numpy().dtype), out.numpy())
    return out.reshape((n,) + tuple(v.shape))
