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
from simulators.compare import first_divergence
from simulators.cycle import Simulator
from simulators.cycle.kernels_loihi import AddLoihi, MatMulLoihi, make_loihi_kernel

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from spikformer_block import (  # noqa: E402
    ATTENTION_NODES, NEURON_LAYERS, block_input, build_spikformer_block)

from exporters.loihi2.lava_graph import (  # noqa: E402
    deployability, plan_lava_graph, run_graph_in_lava, run_graph_in_simulator)

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
    assert dense.params["weights"].shape == (9, 6)
    assert np.array_equal(dense.params["weights"], np.kron(np.eye(3, dtype=int), w.astype(int)))
    assert dense.params["num_weight_bits"] == 9  # mixed signs: 9 bits keep odd weights exact


def test_unsupported_node_is_refused_naming_it_before_lava():
    g = Graph({"source": {"path": "cnn.nmir"}})
    g.add("x", Input((1, 4, 4)))
    g.add("conv1", Conv2d(np.ones((2, 1, 3, 3), np.float32)), ["x"])
    with pytest.raises(UnsupportedOpError, match="'conv1' \\(op Conv2d\\)"):
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
def test_lava_matmul_equals_numpy_product_of_lava_recorded_spikes(block_runs):
    g, x, lava, ours = block_runs
    o = lava.outputs
    q, k, v = o["q_lif"], o["k_lif"], o["v_lif"]
    assert np.array_equal(o["scores"], q @ k.transpose(0, 2, 1))
    assert np.array_equal(o["attn_v"], o["scores"] @ v)
    assert np.array_equal(o["res1"], x + o["proj_lif"])


# ----------------------------------------------------- agrees with netx path
def _mlp() -> Graph:
    rng = np.random.default_rng(3)
    g = Graph({"source": {"path": "mlp.nmir"}})
    g.add("in", Input((24,)))
    g.add("fc1", Affine(rng.integers(-60, 80, (16, 24)).astype(np.float32)), ["in"])
    g.add("lif1", CubaLIF(tau_syn=0.0, tau_mem=1.0, v_threshold=90.0), ["fc1"],
          {"loihi": {"neuron": "CUBA", "iDecay": 4096, "vDecay": 512, "vThMant": 90,
                     "bias_mant": rng.integers(-5, 20, 16).tolist(), "bias_exp": 6,
                     "refDelay": 1, "readout": False}})
    g.add("fc2", Affine(rng.integers(-80, 80, (8, 16)).astype(np.float32)), ["lif1"])
    g.add("lif2", CubaLIF(tau_syn=0.0, tau_mem=1.0, v_threshold=70.0), ["fc2"],
          {"loihi": {"neuron": "CUBA", "iDecay": 1024, "vDecay": 256, "vThMant": 70,
                     "bias_mant": 0, "bias_exp": 6, "refDelay": 1, "readout": False}})
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
