"""A graph with attention ops runs in Lava as our process network, bit-exact with nmtc.

Lava runs (real Lava, fixed_pt models) take a few seconds each; the Spikformer
block runs once per module (fixture) and several tests read that run.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from nmtoolchain.errors import UnsupportedOpError
from nmtoolchain.ir import (
    Add, Affine, Conv2d, CubaLIF, Graph, Input, Linear, MatMul, Output, Transpose)
from nmtoolchain.numerics.loihi import LoihiCubaNeuron
from simulators.compare import first_divergence
from simulators.cycle import Simulator
from simulators.cycle.kernels_loihi import AddLoihi, MatMulLoihi, make_loihi_kernel

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from spikformer_block import (  # noqa: E402
    ATTENTION_NODES, NEURON_LAYERS, block_input, build_spikformer_block, neuron_layers)

from exporters.loihi2.lava_graph import (  # noqa: E402
    deployability, dense_matrix, plan_lava_graph, run_graph_in_lava, run_graph_in_simulator)

STEPS = 20


@pytest.fixture(scope="module")
def block_runs():
    g = build_spikformer_block()
    x = block_input(steps=STEPS)
    lava = run_graph_in_lava(g, x, STEPS, record="all")
    ours = run_graph_in_simulator(g, x, STEPS, record=list(lava.outputs))
    return g, x, lava, ours


# ------------------------------------------------------------------ kernels
def test_matmul_kernel_multiplies_spike_matrices_into_counts_by_hand():
    g = Graph()
    g.add("a", Input((2, 3)))
    g.add("b", Input((3, 2)))
    g.add("m", MatMul(), ["a", "b"])
    g.infer_shapes()
    k = make_loihi_kernel(g["m"], g)
    assert isinstance(k, MatMulLoihi)
    a = torch.tensor([[[1., 0., 1.], [1., 1., 1.]]])
    b = torch.tensor([[[1., 1.], [0., 1.], [1., 0.]]])
    # row 0: [1+0+1, 1+0+0] = [2, 1]; row 1: [1+0+1, 1+1+0] = [2, 2]
    assert k.step([a, b], 0).tolist() == [[[2.0, 1.0], [2.0, 2.0]]]


def test_add_kernel_sums_integer_inputs_of_the_same_step_by_hand():
    g = Graph()
    g.add("a", Input((3,)))
    g.add("b", Input((3,)))
    g.add("s", Add(), ["a", "b"])
    g.infer_shapes()
    k = make_loihi_kernel(g["s"], g)
    assert isinstance(k, AddLoihi)
    out = k.step([torch.tensor([[1., 0., 1.]]), torch.tensor([[1., 1., 0.]])], 0)
    assert out.tolist() == [[2.0, 1.0, 1.0]]


def test_loihi_simulator_passes_matmul_and_transpose_through_without_delay():
    g = Graph()
    g.add("x", Input((2, 2)))
    g.add("xt", Transpose((1, 0)), ["x"])
    g.add("m", MatMul(), ["x", "xt"])
    g.add("out", Output(), ["m"])
    x = np.array([[[[1, 1], [0, 1]], [[0, 0], [1, 0]]]], dtype=np.float32)  # (B=1, T=2, 2, 2)
    res = Simulator(g, "loihi", record=["xt", "m"], count=False).run(x, 2)
    # step 0: x = [[1,1],[0,1]], x xᵀ = [[2,1],[1,1]]; step 1: [[0,0],[1,0]] -> [[0,0],[0,1]]
    assert res.recorded["xt"][0, 0].tolist() == [[1, 0], [1, 1]]
    assert res.recorded["m"][0].tolist() == [[[2, 1], [1, 1]], [[0, 0], [0, 1]]]


# ----------------------------------------------------------------- planning
def test_token_wise_linear_becomes_one_block_diagonal_dense():
    g = Graph()
    g.add("x", Input((3, 2)))
    w = np.array([[1, -2], [3, 4], [5, 0]], np.float32)
    g.add("fc", Linear(w), ["x"])
    g.infer_shapes()
    dense = [p for p in plan_lava_graph(g).procs if p.node == "fc"][0]
    weights = dense_matrix(dense)  # built only when the graph runs in Lava
    assert weights.shape == (9, 6) and dense.size == 9
    assert np.array_equal(weights, np.kron(np.eye(3, dtype=int), w.astype(int)))
    assert dense.params["num_weight_bits"] == 9  # mixed signs: 9 bits keep odd weights exact


def test_unsupported_node_is_refused_naming_it_before_lava():
    g = Graph({"source": {"path": "cnn.nmir"}})
    g.add("x", Input((2, 4, 4)))
    # a plain conv runs as one Dense; a grouped one is refused
    g.add("conv1", Conv2d(np.ones((2, 1, 3, 3), np.float32), groups=2), ["x"])
    with pytest.raises(UnsupportedOpError, match="'conv1' \\(op Conv2d\\).*groups"):
        plan_lava_graph(g)


def test_deployability_lists_attention_ops_as_lava_simulator_only():
    dep = deployability(build_spikformer_block())
    assert sorted(dep["lava_simulator_only"]) == sorted(ATTENTION_NODES)
    assert set(NEURON_LAYERS) <= set(dep["loihi2_netx"]) and not dep["unsupported"]


# -------------------------------------------------------------- Lava parity
@pytest.mark.lava
def test_spikformer_block_is_identical_in_lava_and_nmtc_at_every_step(block_runs):
    g, x, lava, ours = block_runs
    wanted = list(NEURON_LAYERS) + ["scores", "attn_v", "res1", "res2"]
    assert set(wanted) <= set(lava.outputs)
    div = first_divergence({k: lava.outputs[k] for k in wanted}, {k: ours[k] for k in wanted},
                           layers=wanted)
    assert div is None, div


@pytest.mark.lava
def test_every_node_with_a_process_is_identical_in_lava_and_nmtc(block_runs):
    g, x, lava, ours = block_runs
    assert first_divergence(lava.outputs, ours, layers=list(lava.outputs)) is None


@pytest.mark.lava
def test_spikformer_block_activity_is_not_trivial(block_runs):
    g, x, lava, ours = block_runs
    for name in NEURON_LAYERS:
        rate = lava.outputs[name].mean()
        assert 0.005 < rate < 0.6, (name, rate)
    assert lava.outputs["scores"].max() >= 2 and lava.outputs["attn_v"].max() >= 2
    assert lava.outputs["res2"].max() >= 2  # residual sums really add


@pytest.mark.lava
def test_lava_attention_ops_equal_numpy_on_lava_recorded_inputs(block_runs):
    """Our Transpose, MatMul and Add processes (and so nmtc, identical to them)
    against numpy on the inputs Lava recorded at the same step."""
    g, x, lava, ours = block_runs
    o = lava.outputs
    q, k, v = o["q_lif"], o["k_lif"], o["v_lif"]
    assert np.array_equal(o["k_t"], np.swapaxes(k, 1, 2))
    assert np.array_equal(o["scores"], np.einsum("tnd,tmd->tnm", q, k))
    assert np.array_equal(o["attn_v"], np.matmul(o["scores"], v))
    assert np.array_equal(o["res1"], np.add(x, o["proj_lif"]))
    assert np.array_equal(o["res2"], np.add(o["res1"], o["mlp2_lif"]))
    for name in ATTENTION_NODES:
        assert np.array_equal(ours[name], o[name]), name


def _lavas_own_layers(g: Graph, rec, steps: int):
    """Each neuron layer of the block rebuilt from Lava's own processes (not
    from nmtc's process plan): a RingBuffer replaying the recorded input of its
    synapse, Lava's Dense with the layer's integer weights applied to every
    token, Lava's fixed-point LIF with the block's constants, a RingBuffer sink.
    Returns name -> (T, *shape) spikes."""
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.dense.process import Dense
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as Source
    from lava.proc.lif.process import LIF
    from lava.utils.weightutils import SignMode, clip_weights, truncate_weights

    out = {}
    for name, layer in neuron_layers().items():  # one run each: Lava runs what is connected
        drive = np.asarray(rec[layer.source]).reshape(steps, -1)
        src = Source(data=drive.T.astype(np.int32))
        port = src.s_out
        n = int(np.prod(g[name].shape))
        if layer.synapse is not None:
            w = g[layer.synapse].op.weight.astype(np.int64)  # (out, in), token-wise
            tokens = drive.shape[1] // w.shape[1]
            big = np.zeros((tokens * w.shape[0], tokens * w.shape[1]), np.int64)
            for tok in range(tokens):  # the same W on every token of the C-order vector
                big[tok * w.shape[0]:(tok + 1) * w.shape[0],
                    tok * w.shape[1]:(tok + 1) * w.shape[1]] = w
            graded = not np.isin(drive, (0, 1)).all()
            dense = Dense(weights=big, num_weight_bits=9, weight_exp=0,
                          num_message_bits=24 if graded else 0)
            # Lava keeps these integers exactly (mixed signs: 9 bits)
            used = truncate_weights(clip_weights(big, SignMode.MIXED, num_bits=8),
                                    SignMode.MIXED, 9)
            assert np.array_equal(used, big)
            port.connect(dense.s_in)
            port = dense.a_out
        # iDecay 4096 (no current memory) is Lava's du = 4095 (it adds one back)
        lif = LIF(shape=(n,), du=4095, dv=layer.vdecay, vth=layer.vth, bias_mant=0,
                  bias_exp=6)
        port.connect(lif.a_in)
        sink = Sink(shape=(n,), buffer=steps)
        lif.s_out.connect(sink.a_in)
        try:
            src.run(condition=RunSteps(num_steps=steps),
                    run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
            out[name] = sink.data.get().T.reshape((steps,) + tuple(g[name].shape))
        finally:
            src.stop()
    return {name: a.astype(np.int64) for name, a in out.items()}


@pytest.mark.lava
def test_block_neuron_layers_equal_lavas_own_dense_and_lif(block_runs):
    """The synapse + neuron layers against Lava's own Dense and LIF processes
    fed the same recorded inputs, built here without nmtc's process plan."""
    g, x, lava, ours = block_runs
    rec = dict(lava.outputs, x=x[:STEPS])
    ref = _lavas_own_layers(g, rec, STEPS)
    for name in NEURON_LAYERS:
        assert ref[name].sum() > 0, name
        np.testing.assert_array_equal(lava.outputs[name], ref[name], err_msg=name)
        np.testing.assert_array_equal(ours[name], ref[name], err_msg=name)


# ----------------------------------------------------- agrees with netx path
def _mlp() -> Graph:
    rng = np.random.default_rng(3)
    g = Graph({"source": {"path": "mlp.nmir"}})
    g.add("in", Input((24,)))
    g.add("fc1", Affine(rng.integers(-60, 80, (16, 24)).astype(np.float32)), ["in"])
    g.add("lif1", CubaLIF(tau_syn=0.0, tau_mem=1.0, v_threshold=90.0), ["fc1"],
          numerics=LoihiCubaNeuron(i_decay=4096, v_decay=512, v_th_mant=90,
                                   bias_mant=rng.integers(-5, 20, 16), bias_exp=6, ref_delay=1))
    g.add("fc2", Affine(rng.integers(-80, 80, (8, 16)).astype(np.float32)), ["lif1"])
    g.add("lif2", CubaLIF(tau_syn=0.0, tau_mem=1.0, v_threshold=70.0), ["fc2"],
          numerics=LoihiCubaNeuron(i_decay=1024, v_decay=256, v_th_mant=70, bias_mant=0,
                                   bias_exp=6, ref_delay=1))
    g.add("out", Output(), ["lif2"])
    return g.infer_shapes()


@pytest.mark.lava
def test_mlp_process_graph_equals_lavas_own_netx_loading(tmp_path):
    from exporters.loihi2 import export_netx
    from simulators.lava_runner import run_netx_in_lava

    g = _mlp()
    steps = 16
    x = (np.random.default_rng(4).random((steps, 24)) < 0.4).astype(np.int64)
    plan = export_netx(g, tmp_path / "mlp.net")
    names = plan.record_names()
    netx = run_netx_in_lava(tmp_path / "mlp.net", x, steps)
    ours = run_graph_in_lava(g, x, steps, record="neurons")
    assert set(ours.outputs) == {"lif1", "lif2"}
    assert ours.outputs["lif1"].sum() > 0 and ours.outputs["lif2"].sum() > 0
    ref = {n: netx.outputs[names[n]] for n in ("lif1", "lif2")}
    assert first_divergence(ref, ours.outputs, layers=["lif1", "lif2"]) is None
