"""Non-spiking readouts (I, LI, CubaLI) on Loihi 2: quantized as never-firing
CUBA layers whose v is read, compared with Lava by ``verify``, and decoded by
their summed v for accuracy.

Referees: Lava's CUBA update written out by hand (integer recurrence), the
float leaky integrator's closed form, Lava itself (fixed_pt, with a state probe
on the readout's v), and the float simulator's accuracy on the digits.
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import nir
import numpy as np
import pytest

from exporters.loihi2.verify import verify_export
import nmtoolchain
from nmtoolchain.api import export, simulate
from nmtoolchain.convert import rate_encode
from nmtoolchain.datasets import load_digits_split
from nmtoolchain.ir import (
    LI, Affine, CubaLI, Graph, I, Input, Output, load_graph, save_graph)
from nmtoolchain.quantize import quantize_for_loihi, spike_counts
from nmtoolchain.targets.loihi2 import loihi2_refusals, loihi_accuracy

STEPS = 12


def _one_li(tau: float) -> Graph:
    g = Graph({"dt": 1.0})
    g.add("x", Input((1,)))
    g.add("fc", Affine(np.array([[1.0]], np.float32)), ["x"])
    g.add("li", LI(tau=np.float32(tau)), ["fc"])
    g.add("y", Output(), ["li"])
    return g.infer_shapes()


def test_li_readout_is_a_never_firing_leaky_cuba_layer_whose_v_follows_lava_and_the_float_li():
    q, rep = quantize_for_loihi(_one_li(4.0))  # leak dt/tau = 0.25 per step
    ann = q["layer1_neuron"].numerics
    assert (ann.i_decay, ann.v_decay, ann.v_th_mant, ann.readout) == (4096, 1024, 1 << 17, True)
    w = int(q["layer1_dense"].op.weight[0, 0])
    assert w == 255 and rep.layers[0].neuron == "LI"
    spikes = np.ones((1, STEPS, 1), np.float32)
    fixed = spike_counts(q, "loihi", spikes, STEPS, ["layer1_neuron"])["layer1_neuron"]
    # Lava's CUBA by hand: u = 64 w (iDecay 4096), v = trunc(v (4096 - 1024) / 4096) + u
    v, total = 0, 0
    for _ in range(STEPS):
        v = (v * 3072) // 4096 + 64 * w
        total += v
    assert fixed.reshape(-1).tolist() == [total]
    # the float LI from rest with input 1: v_t = 1 - 0.75^t; fixed v ~ 64 s v_float
    float_sum = sum(1 - 0.75 ** t for t in range(1, STEPS + 1))
    fl = spike_counts(_one_li(4.0), "float", spikes, STEPS, ["li"])["li"]
    assert fl.reshape(-1)[0] == pytest.approx(float_sum, rel=1e-5)
    assert total / (64 * rep.layers[0].scale) == pytest.approx(float_sum, rel=2e-3)


def test_cuba_li_readout_takes_both_decays_and_its_v_error_is_measured_on_calibration():
    g = Graph({"dt": 1.0})
    g.add("x", Input((3,)))
    g.add("fc", Affine(np.array([[0.5, -0.25, 1.0], [0.2, 0.4, -0.3]], np.float32)), ["x"])
    g.add("cli", CubaLI(tau_syn=np.float32(2.0), tau_mem=np.float32(8.0)), ["fc"])
    g.add("y", Output(), ["cli"])
    calib = (np.random.default_rng(0).random((8, STEPS, 3)) < 0.5).astype(np.float32)
    q, rep = quantize_for_loihi(g.infer_shapes(), calib, steps=STEPS)
    ann = q["layer1_neuron"].numerics
    assert ann.i_decay == round(4096 * (1 - math.exp(-1 / 2)))
    assert ann.v_decay == round(4096 * (1 - math.exp(-1 / 8)))
    assert (ann.v_th_mant, ann.readout) == (1 << 17, True)
    err = rep.layers[0].error["vs_float"]
    assert 0 < err["relative_v_error"] < 0.02  # 12-bit decays and 8-bit weights
    assert rep.layers[0].error["argmax_agreement"] == 1.0
    assert any("readout" in line for line in rep.lines())


def test_li_and_cuba_li_are_no_longer_refused_by_the_loihi2_target():
    g = _one_li(4.0)
    assert loihi2_refusals(g) == []


# ------------------------------------------------------------------ Lava
def _nir_readout_net(path, readout: str) -> None:
    rng = np.random.default_rng(0)
    w1 = rng.normal(0.5, 3.0, (20, 10)).astype(np.float32)
    w2 = rng.normal(0.0, 0.5, (4, 20)).astype(np.float32)
    ones = lambda n: np.ones(n, np.float32)  # noqa: E731
    out = (nir.LI(tau=np.full(4, 0.02, np.float32), r=ones(4), v_leak=np.zeros(4, np.float32))
           if readout == "LI" else
           nir.CubaLI(tau_syn=np.full(4, 0.005, np.float32), tau_mem=np.full(4, 0.02, np.float32),
                      r=ones(4), v_leak=np.zeros(4, np.float32), w_in=ones(4)))
    g = nir.NIRGraph(nodes={
        "input": nir.Input(input_type=np.array([10])),
        "fc1": nir.Affine(weight=w1, bias=np.zeros(20, np.float32)),
        "lif": nir.LIF(tau=np.full(20, 0.02, np.float32), r=ones(20),
                       v_leak=np.zeros(20, np.float32), v_threshold=ones(20)),
        "fc2": nir.Affine(weight=w2, bias=np.zeros(4, np.float32)),
        "out": out, "output": nir.Output(output_type=np.array([4]))},
        edges=[("input", "fc1"), ("fc1", "lif"), ("lif", "fc2"), ("fc2", "out"),
               ("out", "output")])
    nir.write(str(path), g)


@pytest.mark.lava
@pytest.mark.parametrize("readout", ["LI", "CubaLI"])
def test_a_nir_network_with_a_leaky_readout_exports_and_lava_gives_the_same_readout_v(
        tmp_path, readout):
    from simulators.lava_runner import run_netx_in_lava

    src = tmp_path / "net.nir"
    _nir_readout_net(src, readout)
    out = tmp_path / "exp"
    export(str(src), "loihi2", out, dt=1e-3)
    res = verify_export(out, samples=2)
    assert res.identical, res.lines()
    assert res.readouts == ["layer2_neuron"]
    assert all(s.events > 0 for s in res.samples)  # the hidden LIF layer spikes
    # the readout's v is what was compared, and it is not silent
    drive = (np.random.default_rng(1).random((res.steps, 10)) < 0.3).astype(np.int64)
    lava = run_netx_in_lava(out / "network.net", drive, res.steps, record_state=["layer2_neuron"])
    assert np.abs(lava.v["layer2_neuron"]).sum() > 0 and lava.outputs["layer2_neuron"].sum() == 0
    assert set(lava.v) == {"layer2_neuron"}
    # a readout that nmtc would run differently (another leak) is caught on its v alone
    g = load_graph(out / "network.nmir")
    node = g["layer2_neuron"]
    node.numerics = dataclasses.replace(node.numerics, v_decay=node.numerics.v_decay + 100)
    save_graph(g, out / "network.nmir")
    bad = verify_export(out, samples=1)
    assert not bad.identical
    assert bad.samples[0].divergence.layer == "layer2_neuron v"


# ------------------------------------------------------------------ accuracy
def _digits_mlp_with(readout) -> Graph:
    """The bundled digits MLP with its output IF layer replaced by ``readout``."""
    g = load_graph(Path(nmtoolchain.__file__).parent / "data" / "digits_mlp_snn.nmir")
    g["linear2_if"].op = readout
    g.metadata["dt"] = 1.0
    return g


@pytest.mark.parametrize("readout", [LI(tau=np.float32(8.0)), I()], ids=["LI", "I"])
def test_loihi_accuracy_of_a_readout_network_is_decoded_from_its_v(readout):
    # counting the readout's (absent) spikes gave class 0 for every sample (10%)
    g = _digits_mlp_with(readout)
    split = load_digits_split()
    x, y = split.x_test, split.y_test
    steps = 32
    res = loihi_accuracy(g, x, y, steps=steps)  # (on a graph whose shapes are not inferred)
    spikes = rate_encode(x.reshape(len(x), -1), steps)
    fl = spike_counts(g, "float", spikes, steps, ["linear2_if"])["linear2_if"]
    float_acc = float((fl.argmax(1) == y).mean())
    assert float_acc > 0.9
    assert res["accuracy"] >= float_acc - 0.02, (res["accuracy"], float_acc)


def test_simulate_in_loihi_numerics_reads_the_readout_layer_by_its_v(tmp_path):
    src = tmp_path / "i_mlp.nmir"
    save_graph(_digits_mlp_with(I()), src)
    out = tmp_path / "exp"
    export(str(src), "loihi2", out, calib="digits", timesteps=32)
    fl = simulate(str(src), dataset="digits", timesteps=32, samples=450)
    fx = simulate(str(out / "network.nmir"), dataset="digits", numerics="loihi", timesteps=34,
                  samples=450)  # 32 steps plus the pipeline's 2
    assert fl.accuracy > 0.9
    assert fx.accuracy >= fl.accuracy - 0.02, (fx.accuracy, fl.accuracy)  # was 0.10


# ------------------------------------------------------------------ a producer's readout
@pytest.mark.lava
def test_a_norse_li_readout_runs_as_norse_ran_it_and_exports_to_loihi_identical_in_lava(
        tmp_path):
    norse = pytest.importorskip("norse.torch", reason="norse is not installed: no norse file")
    import torch
    from torch import nn
    from norse.torch.utils.export_nir import to_nir

    torch.manual_seed(0)
    full = lambda n, v: torch.full((n,), float(v))  # noqa: E731  (one decay per netx layer)
    lif = norse.LIFBoxParameters(tau_mem_inv=full(12, 100.0), v_th=full(12, 1.0),
                                 v_leak=full(12, 0.0), v_reset=full(12, 0.0))
    li = norse.LIBoxParameters(tau_mem_inv=full(5, 50.0), v_leak=full(5, 0.0))
    net = norse.SequentialState(nn.Linear(16, 12), norse.LIFBoxCell(lif), nn.Linear(12, 5),
                                norse.LIBoxCell(li))
    net[0].weight.data *= 20.0  # enough drive for the hidden layer to spike
    steps = 20
    x = (np.random.default_rng(1).random((6, steps, 16)) < 0.4).astype(np.float32)
    state, outs = None, []
    with torch.no_grad():
        for t in range(steps):
            out, state = net(torch.from_numpy(x[:, t]), state)
            outs.append(out)
    want = torch.stack(outs, 1).numpy()  # the readout's v, as norse ran it
    path = tmp_path / "norse_li.nir"
    nir.write(str(path), to_nir(net, torch.from_numpy(x[:1, 0]), dt=1e-3))

    # norse writes tau = dt / tau_mem_inv: read back with --dt = dt^2 (README)
    got = simulate(str(path), x, timesteps=steps, dt=1e-6, samples=len(x))
    (v,) = got.outputs.values()
    assert np.abs(want).max() > 0.1
    np.testing.assert_allclose(np.asarray(v).reshape(want.shape), want, rtol=1e-4, atol=1e-5)

    data = tmp_path / "spikes.npz"
    np.savez(data, x=x)
    out = tmp_path / "exp"
    res = export(str(path), "loihi2", out, dt=1e-6, calib=str(data), timesteps=steps)
    readout = res.report["quantization"]["layers"][1]
    assert readout["neuron"] == "LI"  # its summed v against the float model, on the spikes:
    assert readout["error"]["vs_float"]["v_sum_per_sample_float"] > 1
    assert readout["error"]["vs_float"]["relative_v_error"] < 0.01
    assert readout["error"]["argmax_agreement"] == 1.0
    checked = verify_export(out, data=data, samples=2)
    assert checked.identical and checked.readouts == ["layer2_neuron"], checked.lines()
    assert all(s.events > 0 for s in checked.samples)


def test_a_readout_feeding_another_layer_is_refused_in_one_line_naming_it(tmp_path, capsys):
    # its spikes are always 0: the next layer would silently receive nothing
    from nmtoolchain.cli import main
    from nmtoolchain.errors import NotExpressibleError
    from nmtoolchain.ir import IF

    g = Graph({"dt": 1.0})
    g.add("x", Input((2,)))
    g.add("fc", Affine(np.ones((3, 2), np.float32)), ["x"])
    g.add("li", LI(tau=np.float32(4.0)), ["fc"])
    g.add("fc2", Affine(np.ones((2, 3), np.float32)), ["li"])
    g.add("n2", IF(reset="to_reset"), ["fc2"])
    g.add("y", Output(), ["n2"])
    with pytest.raises(NotExpressibleError, match="'li' \\(LI\\) is a non-spiking readout.*'fc2'"):
        quantize_for_loihi(g.infer_shapes())
    save_graph(g, tmp_path / "mid.nmir")
    out = tmp_path / "o"
    assert main(["export", str(tmp_path / "mid.nmir"), "--target", "loihi2", "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "'li'" in err and "readout" in err, err
    assert not out.exists()


def test_an_integrating_readout_that_leaves_the_24_bit_range_is_flagged_by_worst_case_and_measure():
    # 100 inputs, weight 1.0 -> 255: u grows by 100 * 255 * 64 = 1,632,000 a step and
    # wraps past 2^23 - 1 at the 6th step (Lava's 24-bit correction)
    g = Graph({"dt": 1.0})
    g.add("x", Input((100,)))
    g.add("fc", Affine(np.ones((2, 100), np.float32)), ["x"])
    g.add("acc", I(), ["fc"])
    g.add("y", Output(), ["acc"])
    q, rep = quantize_for_loihi(g.infer_shapes(), np.ones((1, 8, 100), np.float32), steps=8)
    row = rep.layers[0]
    assert any("passes 2^23 - 1 after 6 steps" in n for n in row.notes), row.notes
    assert row.error["peak_abs_state"] == 5 * 1_632_000  # the last value before the wrap
    assert any("reached 8,160,000 (97%" in n for n in row.notes), row.notes
    assert row.error["vs_float"]["relative_v_error"] > 0.5  # the wrapped answer is far off
    # the same layer driven gently stays in range and is not flagged
    q, rep = quantize_for_loihi(g, np.zeros((1, 8, 100), np.float32), steps=8)
    assert rep.layers[0].error["peak_abs_state"] == 0
    assert not any("reached" in n for n in rep.layers[0].notes)
