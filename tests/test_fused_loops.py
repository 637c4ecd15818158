"""The compiled (numba) neuron time loop gives exactly Loihi's CUBA arithmetic.

The reference here is written from Lava's ``PyLifModelBitAcc`` in numpy
int32/int64 (shared/reference/loihi_lava.md §2): sign-magnitude decay by
``>> 12``, the input shifted by 6 and added in int32, one 24-bit correction of
u, v summed in int32 and saturated to ±(2^23 - 1), a spike when v > vth << 6,
v zeroed on a spike, netx's reset schedule. It shares no code with the
simulator. The compiled loop is also compared with the simulator's torch
loops (the step schedule's, checked against Lava in test_parity_lava.py, and
the layer-major torch loop used without numba or off the CPU), and on Intel's
PilotNet-LIF the whole layer-major run is compared with and without it."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nmtoolchain import ir
from nmtoolchain.numerics.loihi import InputTransform, LoihiCubaNeuron
from simulators.cycle import Simulator, fused
from simulators.cycle.kernels_loihi import CubaLoihi

pytestmark = pytest.mark.skipif(fused.numba_module() is None, reason="numba is not installed")

LIM = 1 << 23


def _w32(x: np.ndarray) -> np.ndarray:
    """int32 two's-complement wrap (numpy's int32 arithmetic)."""
    return ((x + (1 << 31)) % (1 << 32)) - (1 << 31)


def _decay(x: np.ndarray, d: int) -> np.ndarray:
    p = x * (4096 - d)
    return np.sign(p) * (np.abs(p) >> 12)


def _shift(x: np.ndarray, e: int) -> np.ndarray:
    return x << e if e >= 0 else x >> -e


def lava_cuba(a: np.ndarray, i_decay: int, v_decay: int, vth_mant: int, bias_mant: np.ndarray,
              bias_exp: int, drive: bool, interval: int, phase: int):
    """(spikes (T, M), u, v) of Lava's bit-accurate LIF on integer inputs a (T, M).
    ``drive``: a is the bias mantissa (netx's input neuron), rounded half to even."""
    u = np.zeros(a.shape[1], np.int64)
    v = np.zeros(a.shape[1], np.int64)
    spikes = np.zeros(a.shape, np.int64)
    for t in range(a.shape[0]):
        if interval and (t + 1) % interval == phase:
            u[:] = 0
            v[:] = 0
        u = _decay(u, i_decay)
        if drive:
            bias = _shift(np.rint(a[t]).astype(np.int64), bias_exp)
        else:
            u = _w32(u + _w32(a[t].astype(np.int64) << 6))
            bias = _shift(bias_mant, bias_exp)
        u = np.where(u > LIM, u - 2 * LIM, u)
        u = np.where(u <= -LIM, u + 2 * LIM, u)
        v = _w32(_decay(v, v_decay) + u + bias)
        v = np.clip(v, -(LIM - 1), LIM - 1)
        s = v > (vth_mant << 6)
        v[s] = 0
        spikes[t] = s
    return spikes, u, v


def _kernel(shape, i_decay, v_decay, vth_mant, bias_mant, bias_exp, drive, interval, phase):
    g = ir.Graph({"dt": 1.0})
    g.add("x", ir.Input(shape))
    g.add("n", ir.CubaLIF(v_threshold=1.0, reset="to_reset"), ["x"], numerics=LoihiCubaNeuron(
        i_decay=i_decay, v_decay=v_decay, v_th_mant=vth_mant, bias_mant=bias_mant,
        bias_exp=bias_exp, input_transform=InputTransform() if drive else None))
    g.infer_shapes()
    k = CubaLoihi(g["n"], g, reset_interval=interval or None)
    k.phase = phase if interval else None  # the layer's slot in the reset schedule
    return k


# inputs that reach every branch: small currents that spike, and ones whose << 6
# leaves int32 or whose u leaves 24 bits
_values = st.one_of(st.integers(-300, 300), st.integers(-(1 << 26), 1 << 26),
                    st.sampled_from([(1 << 17) + 5, -(1 << 17), (1 << 25) - 1, 1 << 25,
                                     -(1 << 25)]))


@settings(max_examples=60, deadline=None)
@given(i_decay=st.integers(0, 4096), v_decay=st.integers(0, 4096),
       vth=st.integers(0, 131071), bias_exp=st.integers(0, 7), drive=st.booleans(),
       reset=st.sampled_from([(0, 0), (4, 1), (5, 0), (3, 2)]),
       data=st.data())
def test_compiled_loop_is_lavas_bit_accurate_lif(i_decay, v_decay, vth, bias_exp, drive,
                                                 reset, data):
    steps, batch, n = data.draw(st.integers(1, 12)), 2, 3
    a = np.array(data.draw(st.lists(_values, min_size=steps * batch * n,
                                    max_size=steps * batch * n)), np.int64)
    if drive:  # a bias mantissa: 13 bits, as a float that rounds half to even
        a = np.clip(a, -4096, 4095) + data.draw(st.sampled_from([0.0, 0.5, -0.5, 0.25]))
    a = a.reshape(steps, batch, n)
    bias = np.array(data.draw(st.lists(st.integers(-4096, 4095), min_size=n, max_size=n)))
    interval, phase = reset
    spikes, u, v = lava_cuba(a.reshape(steps, -1), i_decay, v_decay, vth, np.tile(bias, batch),
                             bias_exp, drive, interval, phase)
    k = _kernel((n,), i_decay, v_decay, vth, bias, bias_exp, drive, interval, phase)
    k.reset(batch)
    out = k.run_block([torch.as_tensor(a, dtype=torch.float32 if drive else torch.float64)], 0)
    np.testing.assert_array_equal(out.numpy().reshape(steps, -1), spikes)
    np.testing.assert_array_equal(k.u.numpy().reshape(-1), u)
    np.testing.assert_array_equal(k.v.numpy().reshape(-1), v)


def test_compiled_loop_equals_the_torch_loops_across_time_blocks(monkeypatch):
    """Same random layer, three ways: the step loop, the torch block loop and
    the compiled block loop, run in two blocks (state carried between them),
    all equal to Lava's integer formulas (lava_cuba)."""
    rng = np.random.default_rng(3)
    shape, batch, steps = (4, 5, 6), 3, 24
    a = torch.as_tensor(rng.integers(-40, 120, (steps, batch) + shape), dtype=torch.float32)
    bias = rng.integers(-300, 300, shape)
    params = (shape, 1024, 512, 90, bias, 6, False, 8, 3)
    lava_spikes, lava_u, lava_v = lava_cuba(a.reshape(steps, -1).numpy(), 1024, 512, 90,
                                            np.tile(bias.reshape(-1), batch), 6, False, 8, 3)

    step = _kernel(*params)
    step.reset(batch)
    want = torch.stack([step.step([a[t]], t) for t in range(steps)])
    np.testing.assert_array_equal(want.numpy().reshape(steps, -1), lava_spikes)
    np.testing.assert_array_equal(step.u.numpy().reshape(-1), lava_u)
    np.testing.assert_array_equal(step.v.numpy().reshape(-1), lava_v)

    def blocks() -> CubaLoihi:
        k = _kernel(*params)
        k.reset(batch)
        got = torch.cat([k.run_block([a[:10]], 0), k.run_block([a[10:]], 10)])
        assert torch.equal(got, want)
        return k

    compiled = blocks()
    monkeypatch.setenv("NMTC_FUSED", "0")
    assert not fused.available("cpu")
    plain = blocks()
    for k in (compiled, plain):
        assert torch.equal(k.u, step.u) and torch.equal(k.v, step.v)
    assert want.sum() > 0 and (want == 0).any()  # spikes and silences both


def test_a_static_input_is_read_once_with_the_same_results():
    """A static image reaches a neuron as a stride-0 time axis; the compiled
    loops read its one row instead of n copies, with Lava's results (lava_cuba)
    either way."""
    rng = np.random.default_rng(7)
    steps, batch, shape = 9, 2, (3, 4)
    img = torch.as_tensor(rng.integers(-200, 4000, (batch,) + shape), dtype=torch.float32)
    static = img.unsqueeze(0).expand((steps,) + tuple(img.shape))
    assert static.stride(0) == 0
    params = (shape, 2048, 1024, 50, np.zeros(shape, np.int64), 6, True, 4, 1)  # a drive
    spikes, u, v = lava_cuba(static.reshape(steps, -1).numpy(), 2048, 1024, 50, None, 6, True,
                             4, 1)
    for x in (static, static.contiguous()):
        k = _kernel(*params)
        k.reset(batch)
        np.testing.assert_array_equal(k.run_block([x], 0).numpy().reshape(steps, -1), spikes)
        np.testing.assert_array_equal(k.u.numpy().reshape(-1), u)
        np.testing.assert_array_equal(k.v.numpy().reshape(-1), v)
    assert spikes.sum() > 0 and (spikes == 0).any()


def test_pilotnet_identical_with_and_without_the_compiled_loop(intel_netx, monkeypatch):
    from simulators.lava_runner import netx_drive_kind
    from simulators.parity import simulator_input

    from nmtoolchain.frontends.netx_loader import load_netx

    path = intel_netx / "gts/pilotnet_lif/network.net"
    graph = load_netx(path)
    image = np.load(path.parent / "image.npy").transpose(2, 1, 0)
    x = simulator_input(graph, image, 20, netx_drive_kind(path))

    def run():
        return Simulator(graph, "loihi", record="all", reset_interval=16).run(x, 20)

    a = run()
    monkeypatch.setenv("NMTC_FUSED", "0")
    b = run()
    assert a.recorded.keys() == b.recorded.keys()
    for name in a.recorded:
        assert torch.equal(a.recorded[name], b.recorded[name]), name
    for node, series in a.counts.nodes.items():
        for key, arr in series.items():
            np.testing.assert_array_equal(arr, b.counts.nodes[node][key], err_msg=f"{node}.{key}")
    assert a.counts.total("spikes_out") > 0
    # and both are Intel's recording of this network on this image (its first 17 steps)
    for name, f in {"layer1_neuron": "conv-0", "layer5_neuron": "conv-4",
                    "layer9_neuron": "fc-2"}.items():
        gt = np.load(path.parent / f"{f}.npy")
        gt = gt.transpose([gt.ndim - 1] + list(range(gt.ndim - 2, -1, -1))).astype(np.int64)
        np.testing.assert_array_equal(a.recorded[name][0, :17].numpy().astype(np.int64),
                                      gt[:17], err_msg=name)


_floats = st.floats(-4.0, 4.0, width=32, allow_subnormal=False)


def _draw(data, lo: float, hi: float, dtype, n: int, per_neuron: bool):
    """A parameter: n float32-representable values in [lo, hi], or one."""
    vals = np.array(data.draw(st.lists(st.floats(lo, hi, width=32), min_size=n if per_neuron
                                       else 1, max_size=n if per_neuron else 1)), dtype)
    return vals if per_neuron else vals[0]


def _block_in(kern, params: dict, dtype, batch: int, x: np.ndarray,
              state: tuple = ("v",)) -> np.ndarray:
    """Run ``kern``'s block loop over x with its parameters and state in the
    float type of the drawn values (what a model in that type gives it)."""
    tdt = torch.float32 if dtype == np.float32 else torch.float64
    for name, val in params.items():
        setattr(kern, name, torch.as_tensor(np.asarray(val), dtype=tdt))
    kern.reset(batch)
    for name in state:
        setattr(kern, name, getattr(kern, name).to(tdt))
    got = kern.run_block([torch.as_tensor(x)], 0)
    assert got is not None and got.dtype == tdt
    return got.numpy()


@settings(max_examples=40, deadline=None)
@given(dtype=st.sampled_from([np.float32, np.float64]), ge=st.booleans(),
       per_neuron=st.booleans(), data=st.data())
def test_compiled_float_if_is_ifs_float_arithmetic(dtype, ge, per_neuron, data):
    """The float IF's compiled block loop against numpy doing the IF's update
    in the same float type, one rounded operation at a time: v + r x, + b,
    s = [v >= thr] (or >), v - s thr (reset by subtraction)."""
    from simulators.cycle.kernels_float import IFK

    steps, batch, n = data.draw(st.integers(1, 10)), 2, 4

    def param(lo, hi):
        return _draw(data, lo, hi, dtype, n, per_neuron)

    thr, r, b = param(0.125, 2.0), param(-2.0, 2.0), param(-0.5, 0.5)
    x = np.array(data.draw(st.lists(_floats, min_size=steps * batch * n,
                                    max_size=steps * batch * n)), dtype).reshape(steps, batch, n)
    v = np.zeros((batch, n), dtype)
    want = np.zeros_like(x)
    for t in range(steps):
        v = v + r * x[t]
        v = v + b
        s = (v >= thr) if ge else (v > thr)
        want[t] = s
        v = v - s.astype(dtype) * thr

    g = ir.Graph({"dt": 1.0})
    g.add("x", ir.Input((n,)))
    g.add("n", ir.IF(v_threshold=thr, r=r, v_bias=b, reset="subtract",
                     compare=">=" if ge else ">"), ["x"])
    g.infer_shapes()
    k = IFK(g["n"], g)
    got = _block_in(k, {"r": r, "thr": thr, "bias": b}, dtype, batch, x)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(k.v.numpy(), v)


@settings(max_examples=40, deadline=None)
@given(dtype=st.sampled_from([np.float32, np.float64]), euler=st.booleans(), ge=st.booleans(),
       subtract=st.booleans(), per_neuron=st.booleans(), data=st.data())
def test_compiled_float_lif_is_lifs_float_arithmetic(dtype, euler, ge, subtract, per_neuron,
                                                     data):
    """The float LIF's compiled block loop against numpy doing the LIF's update
    in the same float type, one rounded operation at a time (ir/neuron.py):
    euler v + dt/tau (v_leak - v + r x), exponential v_leak + a (v - v_leak)
    + (1 - a) r x with a = exp(-dt/tau); + bias; spike; subtract or reset."""
    from simulators.cycle.kernels_float import LIFK

    steps, batch, n = data.draw(st.integers(1, 10)), 2, 4

    def param(lo, hi):
        return _draw(data, lo, hi, dtype, n, per_neuron)

    tau, thr, r = param(1.0, 20.0), param(0.125, 2.0), param(-2.0, 2.0)
    leak, b, v_reset = param(-0.5, 0.5), param(-0.25, 0.25), param(-0.5, 0.0)
    x = np.array(data.draw(st.lists(_floats, min_size=steps * batch * n,
                                    max_size=steps * batch * n)), dtype).reshape(steps, batch, n)
    dt = dtype(1.0)
    k = dt / tau
    a = np.exp(-dt / tau)
    v = np.zeros((batch, n), dtype)
    want = np.zeros_like(x)
    for t in range(steps):
        if euler:
            v = v + k * ((leak - v) + r * x[t])
        else:
            v = (leak + a * (v - leak)) + ((dtype(1) - a) * r) * x[t]  # 1 - a in dtype
        v = v + b
        s = ((v >= thr) if ge else (v > thr)).astype(dtype)
        want[t] = s
        v = v - s * thr if subtract else np.where(s > 0, v_reset, v)

    g = ir.Graph({"dt": 1.0})
    g.add("x", ir.Input((n,)))
    g.add("n", ir.LIF(tau=tau, v_threshold=thr, r=r, v_leak=leak, v_bias=b, v_reset=v_reset,
                      reset="subtract" if subtract else "to_reset", compare=">=" if ge else ">",
                      discretization="euler" if euler else "exponential"), ["x"])
    g.infer_shapes()
    kern = LIFK(g["n"], g)
    got = _block_in(kern, {"r": r, "thr": thr, "leak": leak, "bias": b, "v_reset": v_reset,
                           "alpha": a, "k": k}, dtype, batch, x)  # a, dt/tau as numpy made them
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(kern.v.numpy(), v)


@settings(max_examples=40, deadline=None)
@given(dtype=st.sampled_from([np.float32, np.float64]), spiking=st.booleans(),
       drive=st.booleans(), ge=st.booleans(), subtract=st.booleans(), data=st.data())
def test_compiled_float_cuba_is_cubas_float_arithmetic(dtype, spiking, drive, ge, subtract,
                                                       data):
    """The float CUBA neuron's compiled block loop (CubaLIF, and CubaLI when not
    spiking; netx's input neuron when ``drive``) against numpy doing
    ir/neuron.py's update in the same float type, one rounded operation at a
    time: i <- a_syn i + w_in syn; v <- v_leak + a_mem (v - v_leak) + r i + bias
    + drive; spike; subtract or reset."""
    from simulators.cycle.kernels_float import CubaLIFK, CubaLIK

    steps, batch, n = data.draw(st.integers(1, 10)), 2, 4

    def param(lo, hi):
        return _draw(data, lo, hi, dtype, n, True)

    a_syn, a_mem = param(0.0, 1.0), param(0.0, 1.0)
    w_in, r, leak, b = param(-2.0, 2.0), param(-2.0, 2.0), param(-0.5, 0.5), param(-0.25, 0.25)
    thr, v_reset = param(0.125, 2.0), param(-0.5, 0.0)
    x = np.array(data.draw(st.lists(_floats, min_size=steps * batch * n,
                                    max_size=steps * batch * n)), dtype).reshape(steps, batch, n)
    cur = np.zeros((batch, n), dtype)
    v = np.zeros((batch, n), dtype)
    zero = dtype(0.0)
    want = np.zeros_like(x)
    for t in range(steps):
        syn, dr = (zero, x[t]) if drive else (x[t], zero)
        cur = a_syn * cur + w_in * syn
        v = (((leak + a_mem * (v - leak)) + r * cur) + b) + dr
        if not spiking:
            want[t] = v
            continue
        s = ((v >= thr) if ge else (v > thr)).astype(dtype)
        want[t] = s
        v = v - s * thr if subtract else np.where(s > 0, v_reset, v)

    g = ir.Graph({"dt": 1.0})
    g.add("x", ir.Input((n,)))
    if spiking:
        op = ir.CubaLIF(tau_syn=1.0, tau_mem=1.0, v_threshold=thr, r=r, w_in=w_in, v_leak=leak,
                        v_bias=b, v_reset=v_reset, reset="subtract" if subtract else "to_reset",
                        compare=">=" if ge else ">")
    else:
        op = ir.CubaLI(tau_syn=1.0, tau_mem=1.0, r=r, w_in=w_in, v_leak=leak, v_bias=b)
    g.add("n", op, ["x"])
    g.infer_shapes()
    kern = (CubaLIFK if spiking else CubaLIK)(g["n"], g)
    kern.bias_drive = drive
    got = _block_in(kern, {"a_syn": a_syn, "a_mem": a_mem, "w_in": w_in, "r": r, "leak": leak,
                           "bias": b, "thr": thr, "v_reset": v_reset}, dtype, batch, x,
                    state=("i", "v"))  # decays as drawn
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(kern.v.numpy(), v)
    np.testing.assert_array_equal(kern.i.numpy(), cur)


def test_starting_the_compiled_loops_leaves_the_start_method_to_lava():
    """numba fixes multiprocessing's start method when its threads start;
    Lava sets it when imported and fails if it is fixed already. A fresh
    process that runs a compiled loop must still be able to import Lava."""
    code = ("import multiprocessing as mp, torch\n"
            "from simulators.cycle import fused\n"
            "x = torch.ones(2, 1, 3); u = torch.zeros(1, 3, dtype=torch.float64)\n"
            "fused.cuba_loihi_block(x, u, u.clone(), u.clone(), fu=1.0, fv=1.0, vth=64.0,"
            " lim=2.0**23, i32=2.0**31, drive=False, bias_exp=6, interval=None, phase=None,"
            " t0=0)\n"
            "assert mp.get_start_method(allow_none=True) is None, mp.get_start_method()\n"
            "try:\n"
            "    import lava.magma.core.process.process\n"
            "except ImportError:\n"
            "    pass\n"
            "print('ok')\n")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         cwd=root, timeout=300)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr[-2000:]
