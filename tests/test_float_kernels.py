"""Every float neuron kernel, stepped through the simulator on a one-op graph
(Input -> op -> Output), against a reference that is not nmtc:

* LIF and LI ('exponential' discretization): sinabs's own LIF / ExpLeak layers,
  and NIR's ODE solved exactly over a step with the input held;
* LIF and LI ('euler'): NIR's ODE ``tau dv/dt = (v_leak - v) + r x`` integrated
  by forward Euler at the graph's dt, written here in numpy;
* I: NIR's ``dv/dt = r x`` (one step per time step, as nmtc's IF and I read it);
* CubaLIF / CubaLI: Lava's floating-point LIF process (the form the kernel
  claims, Loihi's CUBA neuron in float), and that form written here in numpy
  for the fields Lava's LIF lacks (per-neuron decays, r, w_in, v_leak, ...);
* SigmaDelta: Lava's floating-point Sigma, Delta and SigmaDelta processes, and
  the sigma-delta definition written here (send the activation's change since
  the receiver's reconstruction once it reaches the threshold);
* Threshold, Delay, LayerNorm, Concat: numpy / torch.nn written here.

Random inputs, several steps, per-neuron parameter arrays. The float kernels
compute in float32; the numpy references do too, so spikes must be identical.
"""
from __future__ import annotations

import dataclasses

from typing import Dict, Optional

import numpy as np
import pytest
import torch

from nmtoolchain import ir
from simulators.cycle import Simulator

F32 = np.float32


def _one_op_graph(op: ir.Op, shape, *, dt: float = 1.0,
                  discretization: Optional[str] = None) -> ir.Graph:
    """Input -> op -> Output."""
    g = ir.Graph({"dt": dt})
    g.add("x", ir.Input(shape))
    if discretization is not None:
        op = dataclasses.replace(op, discretization=discretization)
    g.add("n", op, ["x"])
    g.add("y", ir.Output(), ["n"])
    return g.infer_shapes()


def _simulate(g: ir.Graph, x, steps: int) -> np.ndarray:
    """(B, T, *shape) output of the graph's only Output node."""
    res = Simulator(g, "float").run(x, steps)
    return res.outputs[g.outputs()[0].name].numpy()


def _f32(a) -> np.ndarray:
    return np.asarray(a, dtype=F32)


# ------------------------------------------------------- references (numpy)
def _spike_and_reset(v, thr, v_reset, *, reset: str, compare: str, spike: str, v_min=None):
    """NIR's threshold (z = 1 when v > thr; '>=' for sinabs/QCFS), one spike
    or floor(v / thr) spikes, then reset by subtraction (NIR <= 1.0.4) or to
    v_reset (NIR >= 1.0.6), then the optional lower clamp."""
    if spike == "multi":
        # the number of whole thresholds below v ('>') or up to v ('>=')
        z = np.ceil(v / thr) - 1 if compare == ">" else np.floor(v / thr)
        z = np.maximum(z, 0).astype(F32)
    else:
        z = (v > thr if compare == ">" else v >= thr).astype(F32)
    if reset == "subtract":
        v = (v - z * thr).astype(F32)
    else:
        v = np.where(z > 0, v_reset, v).astype(F32)
    if v_min is not None:
        v = np.maximum(v, v_min).astype(F32)
    return z, v


def _lif_reference(x, *, dt, tau, r, v_leak, thr, v_reset, v_init, v_bias, reset, compare,
                   spike, v_min=None, mode="euler"):
    """LIF from NIR's ODE: per step, integrate, add the constant bias, fire, reset."""
    v = np.broadcast_to(_f32(v_init), x.shape[:1] + x.shape[2:]).copy()
    out = np.zeros_like(x)
    for t in range(x.shape[1]):
        if mode == "euler":  # forward Euler of tau dv/dt = (v_leak - v) + r x
            v = v + _f32(dt / tau) * ((v_leak - v) + r * x[:, t])
        else:  # exact over the step with x held: v_leak + a (v - v_leak) + (1 - a) r x
            a = np.exp(-dt / tau.astype(np.float64)).astype(F32)
            v = v_leak + a * (v - v_leak) + (1 - a) * r * x[:, t]
        v = (v + v_bias).astype(F32)
        out[:, t], v = _spike_and_reset(v, thr, v_reset, reset=reset, compare=compare,
                                        spike=spike, v_min=v_min)
    return out


def _li_reference(x, *, dt, tau, r, v_leak, mode="euler"):
    """LI from NIR's ODE (LI has no bias field)."""
    v = np.zeros(x.shape[:1] + x.shape[2:], F32)
    out = np.zeros_like(x)
    for t in range(x.shape[1]):
        if mode == "euler":
            v = v + _f32(dt / tau) * ((v_leak - v) + r * x[:, t])
        else:
            a = np.exp(-dt / tau.astype(np.float64)).astype(F32)
            v = v_leak + a * (v - v_leak) + (1 - a) * r * x[:, t]
        v = v.astype(F32)
        out[:, t] = v
    return out


def _neuron_params(rng, shape):
    """Per-neuron arrays (some full shape, some broadcast along the last axis)."""
    last = shape[-1]
    return dict(
        tau=rng.uniform(1.5, 6.0, shape).astype(F32),
        r=rng.uniform(0.5, 2.0, (last,)).astype(F32),
        v_leak=rng.uniform(-0.2, 0.2, shape).astype(F32),
        thr=rng.uniform(0.6, 1.4, shape).astype(F32),
        v_reset=rng.uniform(-0.3, 0.1, (last,)).astype(F32),
        v_init=rng.uniform(0.0, 0.5, shape).astype(F32),
        v_bias=rng.uniform(-0.05, 0.1, (last,)).astype(F32))


# ------------------------------------------------------------------- LIF
LIF_CASES = [("subtract", ">", "single", None), ("to_reset", ">", "single", None),
             ("subtract", ">=", "multi", -0.4), ("to_reset", ">=", "single", -0.25),
             ("subtract", ">", "multi", None)]


@pytest.mark.parametrize("mode", ["euler", "exponential"])
@pytest.mark.parametrize("reset,compare,spike,v_min", LIF_CASES)
def test_lif_follows_nirs_ode_at_the_graphs_dt(mode, reset, compare, spike, v_min):
    rng = np.random.default_rng(11)
    shape, steps, dt = (2, 3), 25, 0.5
    p = _neuron_params(rng, shape)
    op = ir.LIF(tau=p["tau"], r=p["r"], v_leak=p["v_leak"], v_threshold=p["thr"],
                v_reset=p["v_reset"], reset=reset, v_init=p["v_init"], v_bias=p["v_bias"],
                spike=spike, compare=compare, v_min=v_min)
    g = _one_op_graph(op, shape, dt=dt, discretization=mode)
    x = rng.normal(0.9, 1.5, (3, steps) + shape).astype(F32)
    if spike == "multi":
        x *= 8  # drive hard enough to cross several thresholds in one step
    want = _lif_reference(x, dt=dt, tau=p["tau"], r=p["r"], v_leak=p["v_leak"], thr=p["thr"],
                          v_reset=p["v_reset"], v_init=p["v_init"], v_bias=p["v_bias"],
                          reset=reset, compare=compare, spike=spike,
                          v_min=None if v_min is None else F32(v_min), mode=mode)
    got = _simulate(g, x, steps)
    assert want.sum() > 10 and (want == 0).sum() > 10  # the case fires, and not always
    if spike == "multi":
        assert want.max() >= 2  # several spikes in one step do occur
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("spike,compare,x,fires", [
    ("single", ">", 0.75, 0.0), ("single", ">=", 0.75, 1.0),
    ("multi", ">", 1.75, 1.0), ("multi", ">=", 1.75, 2.0)])
def test_lif_at_exactly_the_threshold_fires_only_with_greater_equal(spike, compare, x, fires):
    # dt = tau: one Euler step gives v = v_leak + r x exactly: 0.25 + 0.75 = 1.0 (one
    # threshold) or 0.25 + 1.75 = 2.0 (two thresholds, the multi-spike case)
    op = ir.LIF(tau=2.0, r=1.0, v_leak=0.25, v_threshold=1.0, compare=compare, spike=spike)
    g = _one_op_graph(op, (1,), dt=2.0)
    got = _simulate(g, np.full((1, 1, 1), x, F32), 1)
    assert got.reshape(-1).tolist() == [fires]


@pytest.mark.parametrize("spike_fn,reset_fn,min_v_mem,norm_input", [
    ("SingleSpike", "MembraneSubtract", None, True),
    ("MultiSpike", "MembraneSubtract", -0.5, False),
    ("SingleSpike", "MembraneReset", -1.0, True)])
def test_lif_exponential_equals_sinabs_lif(spike_fn, reset_fn, min_v_mem, norm_input):
    """sinabs's LIF (the producer of 'exponential' LIF nodes), per-neuron tau."""
    sl = pytest.importorskip("sinabs.layers", reason="sinabs is not installed")
    import sinabs.activation as sa
    from torch import nn

    from nmtoolchain.frontends.torch_fx import graph_from_module

    shape, steps = (2, 4), 30
    gen = torch.Generator().manual_seed(5)
    tau = 1.5 + 6 * torch.rand(shape, generator=gen)
    layer = sl.LIF(tau_mem=tau, spike_threshold=torch.tensor(0.8),
                   spike_fn=getattr(sa, spike_fn), reset_fn=getattr(sa, reset_fn)(),
                   min_v_mem=min_v_mem, norm_input=norm_input)
    x = 1.2 * torch.randn((3, steps) + shape, generator=gen) + 0.6
    with torch.no_grad():
        want = layer(x).numpy()
    g = graph_from_module(nn.Sequential(layer), shape)
    assert [n.op_name for n in g] == ["Input", "LIF", "Output"]
    got = _simulate(g, x.numpy(), steps)
    assert want.sum() > 10
    np.testing.assert_array_equal(got, want)


# -------------------------------------------------------------------- LI
@pytest.mark.parametrize("mode", ["euler", "exponential"])
def test_li_follows_nirs_ode_at_the_graphs_dt(mode):
    rng = np.random.default_rng(12)
    shape, steps, dt = (4,), 20, 0.25
    p = _neuron_params(rng, shape)
    op = ir.LI(tau=p["tau"], r=p["r"], v_leak=p["v_leak"])
    g = _one_op_graph(op, shape, dt=dt, discretization=mode)
    x = rng.normal(0.0, 2.0, (2, steps) + shape).astype(F32)
    want = _li_reference(x, dt=dt, tau=p["tau"], r=p["r"], v_leak=p["v_leak"], mode=mode)
    np.testing.assert_allclose(_simulate(g, x, steps), want, rtol=1e-6, atol=1e-6)


def test_li_exponential_equals_sinabs_exp_leak():
    sl = pytest.importorskip("sinabs.layers", reason="sinabs is not installed")
    from torch import nn

    from nmtoolchain.frontends.torch_fx import graph_from_module

    gen = torch.Generator().manual_seed(6)
    tau = 1.5 + 5 * torch.rand(5, generator=gen)
    layer = sl.ExpLeak(tau_mem=tau, norm_input=False)
    x = torch.randn(2, 16, 5, generator=gen)
    with torch.no_grad():
        want = layer(x).numpy()
    g = graph_from_module(nn.Sequential(layer), (5,))
    assert [n.op_name for n in g] == ["Input", "LI", "Output"]
    np.testing.assert_allclose(_simulate(g, x.numpy(), 16), want, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------- I
def test_integrator_sums_r_times_input_every_step():
    rng = np.random.default_rng(13)
    r = rng.uniform(-1.0, 2.0, (3, 2)).astype(F32)
    g = _one_op_graph(ir.I(r=r), (3, 2))
    x = rng.normal(size=(2, 12, 3, 2)).astype(F32)
    want = np.cumsum(r * x, axis=1)  # dv/dt = r x, one step per time step
    np.testing.assert_allclose(_simulate(g, x, 12), want, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------- CubaLIF / CubaLI
def _lava_lif(drive: np.ndarray, *, du: float, dv: float, vth: float,
              bias: np.ndarray) -> Dict[str, np.ndarray]:
    """Lava's own floating-point LIF process fed ``drive`` (T, n) on a_in:
    spikes and v per step, (T, n) each."""
    pytest.importorskip("lava.proc.lif.process", reason="Lava (lava-nc) is not installed")
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as Source
    from lava.proc.lif.process import LIF
    from lava.proc.monitor.process import Monitor

    steps, n = drive.shape
    src = Source(data=drive.T.astype(np.float64))
    lif = LIF(shape=(n,), du=du, dv=dv, vth=vth, bias_mant=bias.astype(np.float64))
    sink = Sink(shape=(n,), buffer=steps)
    src.s_out.connect(lif.a_in)
    lif.s_out.connect(sink.a_in)
    mon = Monitor()
    mon.probe(lif.v, steps)
    try:
        src.run(condition=RunSteps(num_steps=steps), run_cfg=Loihi2SimCfg(select_tag="floating_pt"))
        spikes = sink.data.get().T.copy()
        v = mon.get_data()[lif.name]["v"].copy()
    finally:
        src.stop()
    return {"spikes": spikes, "v": v}


def test_cuba_lif_equals_lavas_floating_point_lif():
    rng = np.random.default_rng(14)
    n, steps = 6, 30
    tau_syn, tau_mem, thr = 3.0, 5.0, 1.1
    bias = rng.uniform(-0.05, 0.1, n).astype(F32)
    drive = rng.normal(0.25, 0.6, (steps, n)).astype(F32)
    op = ir.CubaLIF(tau_syn=tau_syn, tau_mem=tau_mem, v_threshold=thr, v_bias=bias)
    got = _simulate(_one_op_graph(op, (n,)), drive[None], steps)[0]
    # Lava: u <- u (1 - du) + a_in; v <- v (1 - dv) + u + bias; fire when v > vth; v <- 0
    lava = _lava_lif(drive, du=1 - np.exp(-1 / tau_syn), dv=1 - np.exp(-1 / tau_mem), vth=thr,
                     bias=bias)
    assert lava["spikes"].sum() > 10
    np.testing.assert_array_equal(got, lava["spikes"])


def test_cuba_li_membrane_equals_lavas_floating_point_lif_below_threshold():
    rng = np.random.default_rng(15)
    n, steps = 4, 20
    tau_syn, tau_mem = 2.0, 4.0
    bias = rng.uniform(-0.1, 0.1, n).astype(F32)
    drive = rng.normal(0.0, 1.0, (steps, n)).astype(F32)
    op = ir.CubaLI(tau_syn=tau_syn, tau_mem=tau_mem, v_bias=bias)
    got = _simulate(_one_op_graph(op, (n,)), drive[None], steps)[0]
    lava = _lava_lif(drive, du=1 - np.exp(-1 / tau_syn), dv=1 - np.exp(-1 / tau_mem), vth=1e9,
                     bias=bias)
    np.testing.assert_allclose(got, lava["v"], rtol=1e-5, atol=1e-5)


def _cuba_reference(x, *, dt, tau_syn, tau_mem, w_in, r, v_leak, v_bias, thr=None,
                    v_reset=None, v_init=0.0, reset="to_reset", compare=">", v_min=None):
    """The CUBA form the kernel documents (Loihi's, in float), per step:
    I <- a_syn I + w_in x; v <- v_leak + a_mem (v - v_leak) + r I + v_bias."""
    a_syn = np.exp(-dt / tau_syn.astype(np.float64)).astype(F32)
    a_mem = np.exp(-dt / tau_mem.astype(np.float64)).astype(F32)
    i = np.zeros(x.shape[:1] + x.shape[2:], F32)
    v = np.broadcast_to(_f32(v_init), i.shape).copy()
    out = np.zeros_like(x)
    for t in range(x.shape[1]):
        i = (a_syn * i + w_in * x[:, t]).astype(F32)
        v = (v_leak + a_mem * (v - v_leak) + r * i + v_bias).astype(F32)
        if thr is None:
            out[:, t] = v
            continue
        out[:, t], v = _spike_and_reset(v, thr, v_reset, reset=reset, compare=compare,
                                        spike="single", v_min=v_min)
    return out


@pytest.mark.parametrize("reset,compare", [("to_reset", ">"), ("subtract", ">=")])
def test_cuba_lif_with_per_neuron_parameters_follows_its_documented_form(reset, compare):
    rng = np.random.default_rng(16)
    shape, steps, dt = (2, 3), 25, 0.5
    p = _neuron_params(rng, shape)
    tau_syn = rng.uniform(1.0, 4.0, shape).astype(F32)
    w_in = rng.uniform(0.5, 1.5, (3,)).astype(F32)
    op = ir.CubaLIF(tau_syn=tau_syn, tau_mem=p["tau"], r=p["r"], v_leak=p["v_leak"],
                    v_threshold=p["thr"], w_in=w_in, v_reset=p["v_reset"], reset=reset,
                    v_init=p["v_init"], v_min=-0.5, v_bias=p["v_bias"], compare=compare)
    x = rng.normal(0.2, 0.5, (2, steps) + shape).astype(F32)
    want = _cuba_reference(x, dt=dt, tau_syn=tau_syn, tau_mem=p["tau"], w_in=w_in, r=p["r"],
                           v_leak=p["v_leak"], v_bias=p["v_bias"], thr=p["thr"],
                           v_reset=p["v_reset"], v_init=p["v_init"], reset=reset,
                           compare=compare, v_min=F32(-0.5))
    assert want.sum() > 10 and (want == 0).sum() > 10
    np.testing.assert_array_equal(_simulate(_one_op_graph(op, shape, dt=dt), x, steps), want)


def test_cuba_li_with_per_neuron_parameters_follows_its_documented_form():
    rng = np.random.default_rng(17)
    shape, steps, dt = (5,), 15, 2.0
    p = _neuron_params(rng, shape)
    tau_syn = rng.uniform(1.0, 4.0, shape).astype(F32)
    op = ir.CubaLI(tau_syn=tau_syn, tau_mem=p["tau"], r=p["r"], v_leak=p["v_leak"], w_in=0.7,
                   v_bias=p["v_bias"])
    x = rng.normal(0.0, 1.0, (2, steps) + shape).astype(F32)
    want = _cuba_reference(x, dt=dt, tau_syn=tau_syn, tau_mem=p["tau"], w_in=F32(0.7),
                           r=p["r"], v_leak=p["v_leak"], v_bias=p["v_bias"])
    np.testing.assert_allclose(_simulate(_one_op_graph(op, shape, dt=dt), x, steps), want,
                               rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------- SigmaDelta
def _sigma_delta_reference(x, *, role, thr, bias=0.0, activation="relu"):
    """Sigma-delta by its definition: the receiver reconstructs the activation
    as the running sum of what it was sent; a neuron sends the gap between its
    activation and that reconstruction once |gap| reaches the threshold.
    'sigma' only integrates; 'delta' encodes its input; 'sigma_delta'
    integrates, adds the bias, applies the activation, then encodes."""
    sigma = np.zeros(x.shape[:1] + x.shape[2:], F32)
    sent_total = np.zeros_like(sigma)
    out = np.zeros_like(x)
    for t in range(x.shape[1]):
        if role == "sigma":
            sigma = sigma + x[:, t]
            out[:, t] = sigma
            continue
        if role == "delta":
            a = x[:, t]
        else:
            sigma = sigma + x[:, t]
            a = sigma + bias
            if activation == "relu":
                a = np.maximum(a, 0)
        gap = a - sent_total
        s = np.where(np.abs(gap) >= thr, gap, 0).astype(F32)
        sent_total = sent_total + s
        out[:, t] = s
    return out


@pytest.mark.parametrize("role,activation", [
    ("sigma_delta", "relu"), ("sigma_delta", "identity"), ("delta", "relu"),
    ("sigma", "relu")])
def test_sigma_delta_follows_its_definition(role, activation):
    rng = np.random.default_rng(18)
    shape, steps = (3, 4), 30
    thr = rng.uniform(0.2, 0.6, (4,)).astype(F32)
    bias = rng.uniform(-0.3, 0.3, shape).astype(F32)
    op = ir.SigmaDelta(threshold=thr, bias=bias, role=role, activation=activation)
    x = rng.normal(0.05, 0.4, (2, steps) + shape).astype(F32)
    if role == "delta":
        x = np.cumsum(x, axis=1).astype(F32)  # a slowly varying signal to encode
    want = _sigma_delta_reference(x, role=role, thr=thr, bias=bias, activation=activation)
    got = _simulate(_one_op_graph(op, shape), x, steps)
    if role != "sigma":
        sent = want != 0
        assert sent.any() and not sent.all()  # sends some steps, holds back others
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_sigma_delta_sends_a_change_of_exactly_the_threshold():
    # delta encoder, threshold 0.5: gaps 0.5 (sent), 0.25 (held), 0.5 (sent), 0
    op = ir.SigmaDelta(threshold=0.5, role="delta")
    x = np.array([0.5, 0.75, 1.0, 1.0], F32).reshape(1, 4, 1)
    got = _simulate(_one_op_graph(op, (1,)), x, 4)
    assert got.reshape(-1).tolist() == [0.5, 0.0, 0.5, 0.0]


def _lava_sdn(role: str, drive: np.ndarray, *, vth: float, bias: np.ndarray,
              relu: bool) -> np.ndarray:
    """Lava's own floating-point Sigma / Delta / SigmaDelta process fed
    ``drive`` (T, n): its s_out per step, (T, n)."""
    pytest.importorskip("lava.proc.sdn.process", reason="Lava (lava-nc) is not installed")
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as Source
    from lava.proc.sdn.process import ActivationMode, Delta, Sigma, SigmaDelta

    steps, n = drive.shape
    src = Source(data=drive.T.astype(np.float64))
    if role == "sigma":
        proc = Sigma(shape=(n,))
    elif role == "delta":
        proc = Delta(shape=(n,), vth=vth)
    else:
        proc = SigmaDelta(shape=(n,), vth=vth, bias=bias.astype(np.float64),
                          act_mode=ActivationMode.RELU if relu else ActivationMode.UNIT)
    sink = Sink(shape=(n,), buffer=steps)
    src.s_out.connect(proc.a_in)
    proc.s_out.connect(sink.a_in)
    try:
        src.run(condition=RunSteps(num_steps=steps), run_cfg=Loihi2SimCfg(select_tag="floating_pt"))
        return sink.data.get().T.copy()
    finally:
        src.stop()


@pytest.mark.parametrize("role,activation", [
    ("sigma_delta", "relu"), ("sigma_delta", "identity"), ("delta", "relu"), ("sigma", "relu")])
def test_sigma_delta_equals_lavas_floating_point_process(role, activation):
    rng = np.random.default_rng(19)
    n, steps, thr = 6, 25, 0.3
    bias = rng.uniform(-0.3, 0.3, n).astype(F32)
    drive = rng.normal(0.05, 0.4, (steps, n)).astype(F32)
    if role == "delta":
        drive = np.cumsum(drive, axis=0).astype(F32)
    op = ir.SigmaDelta(threshold=thr, bias=bias, role=role, activation=activation)
    got = _simulate(_one_op_graph(op, (n,)), drive[None], steps)[0]
    lava = _lava_sdn(role, drive, vth=thr, bias=bias, relu=activation == "relu")
    assert np.count_nonzero(lava) > 10
    np.testing.assert_allclose(got, lava, rtol=1e-5, atol=1e-5)


# ------------------------------------------------ stateless and delay ops
def test_threshold_is_a_per_element_strict_comparison():
    rng = np.random.default_rng(20)
    thr = rng.uniform(-0.5, 0.5, (2, 3)).astype(F32)
    x = rng.normal(size=(3, 7, 2, 3)).astype(F32)
    x[0, 0] = thr  # equality does not fire (NIR: z = 1 when x > threshold)
    got = _simulate(_one_op_graph(ir.Threshold(threshold=thr), (2, 3)), x, 7)
    np.testing.assert_array_equal(got, (x > thr).astype(F32))
    assert got[0, 0].sum() == 0


def test_delay_outputs_each_elements_input_shifted_by_its_delay():
    rng = np.random.default_rng(21)
    delay = np.array([[0, 1, 3], [2, 5, 1]])
    x = rng.normal(size=(2, 12, 2, 3)).astype(F32)
    got = _simulate(_one_op_graph(ir.Delay(delay=delay), (2, 3)), x, 12)
    want = np.zeros_like(x)
    for i in range(2):
        for j in range(3):
            d = delay[i, j]
            want[:, d:, i, j] = x[:, :12 - d, i, j]  # y(t) = x(t - d), 0 before
    np.testing.assert_array_equal(got, want)


def test_layer_norm_equals_torch_layer_norm_and_the_formula():
    rng = np.random.default_rng(22)
    w = rng.uniform(0.5, 1.5, (4, 5)).astype(F32)
    b = rng.normal(size=(4, 5)).astype(F32)
    x = rng.normal(1.0, 2.0, (3, 4, 2, 4, 5)).astype(F32)  # (B, T, 2, 4, 5)
    g = _one_op_graph(ir.LayerNorm(weight=w, bias=b, eps=1e-3), (2, 4, 5))
    got = _simulate(g, x, 4)
    ln = torch.nn.LayerNorm((4, 5), eps=1e-3)
    with torch.no_grad():
        ln.weight.copy_(torch.from_numpy(w))
        ln.bias.copy_(torch.from_numpy(b))
        want = ln(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    x64 = x.astype(np.float64)
    mean = x64.mean(axis=(-2, -1), keepdims=True)
    var = x64.var(axis=(-2, -1), keepdims=True)  # biased, as layer norm defines it
    np.testing.assert_allclose(got, (x64 - mean) / np.sqrt(var + 1e-3) * w + b,
                               rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_concat_equals_numpy_concatenate(axis):
    rng = np.random.default_rng(23)
    shapes = [(2, 3), (2, 3), (2, 3)]
    sizes = [1, 2, 4]
    g = ir.Graph()
    names = []
    for k, size in enumerate(sizes):
        s = list(shapes[k])
        s[axis] = size
        names.append(f"x{k}")
        g.add(f"x{k}", ir.Input(tuple(s)))
    g.add("cat", ir.Concat(axis=axis), names)
    g.add("y", ir.Output(), ["cat"])
    g.infer_shapes()
    xs = {n: rng.normal(size=(2, 5) + tuple(g[n].shape)).astype(F32) for n in names}
    got = Simulator(g, "float").run(xs, 5).outputs["y"].numpy()
    ax = axis + 2 if axis >= 0 else axis  # per-sample axis -> (B, T, ...) axis
    np.testing.assert_array_equal(got, np.concatenate([xs[n] for n in names], axis=ax))
