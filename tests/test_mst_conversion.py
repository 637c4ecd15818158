"""MST/QCFS conversion: BN folding, the QCFS -> IF rule, the bundled digits
QCFS CNN's conversion curve, and the ``nmtc check-accuracy`` gate."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from nmtoolchain.accuracy import accuracy_vs_timesteps, ann_accuracy
from nmtoolchain.cli import main
from nmtoolchain.convert.mst import convert_mst
from nmtoolchain.datasets import load_digits_split
from nmtoolchain.errors import UnsupportedOpError
from nmtoolchain.frontends import load_model
from nmtoolchain.frontends.torch_fx import graph_from_module
from nmtoolchain.ir import Graph, Input, Output
from nmtoolchain.ir.activation import QCFS as QCFSOp
from nmtoolchain.models import build_model, load_checkpoint, save_checkpoint
from nmtoolchain.nn import QCFS
from nmtoolchain.passes.fold_batchnorm import fold_batchnorm
from simulators.cycle import Simulator

BUNDLED = Path(__file__).resolve().parents[1] / "nmtoolchain" / "data" / "digits_qcfs_cnn.pt"


def _randomized_bn(bn: nn.Module, gen: torch.Generator) -> None:
    n = bn.num_features
    bn.running_mean.copy_(torch.randn(n, generator=gen))
    bn.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
    bn.weight.data.copy_(torch.randn(n, generator=gen))
    bn.bias.data.copy_(torch.randn(n, generator=gen))


def test_folded_conv_equals_torch_conv_then_batchnorm():
    gen = torch.Generator().manual_seed(1)
    net = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4)).eval()
    with torch.no_grad():
        _randomized_bn(net[1], gen)
    graph = fold_batchnorm(graph_from_module(net, (2, 6, 6)))
    assert [n.op_name for n in graph] == ["Input", "Conv2d", "Output"]
    x = torch.randn(5, 2, 6, 6, generator=gen)
    with torch.no_grad():
        want = net(x).numpy()
    got = Simulator(graph, "float", count=False).run(x.numpy(), 1).outputs["output"][:, 0]
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-5)


def test_folded_linear_equals_torch_linear_then_batchnorm1d():
    gen = torch.Generator().manual_seed(2)
    net = nn.Sequential(nn.Linear(6, 5), nn.BatchNorm1d(5)).eval()
    with torch.no_grad():
        _randomized_bn(net[1], gen)
    graph = fold_batchnorm(graph_from_module(net, (6,)))
    assert "BatchNorm" not in [n.op_name for n in graph]
    x = torch.randn(7, 6, generator=gen)
    with torch.no_grad():
        want = net(x).numpy()
    got = Simulator(graph, "float", count=False).run(x.numpy(), 1).outputs["output"][:, 0]
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-5)


def test_batchnorm_without_a_synapse_before_it_is_kept_and_reported():
    net = nn.Sequential(nn.BatchNorm2d(2), nn.Conv2d(2, 3, 1)).eval()
    graph = fold_batchnorm(graph_from_module(net, (2, 4, 4)))
    kept = [n.name for n in graph if n.op_name == "BatchNorm"]
    assert len(kept) == 1
    assert len(graph.metadata["unfolded_batchnorm"]) == 1
    assert kept[0] in graph.metadata["unfolded_batchnorm"][0]


def _single_qcfs_graph(levels: int, lam: float) -> Graph:
    g = Graph()
    g.add("input", Input(shape=(1,)))
    g.add("act", QCFSOp(levels=levels, threshold=lam, shift=0.5), ["input"])
    g.add("output", Output(), ["act"])
    g.infer_shapes()
    return g


@pytest.mark.parametrize("c", [0.3, 0.7, 1.3, 1.9])
def test_if_rate_times_lambda_approaches_qcfs_output(c):
    lam, levels, steps = 2.0, 1024, 400
    snn = convert_mst(_single_qcfs_graph(levels, lam))
    out = Simulator(snn, "float", count=False).run(np.full((1, 1), c, np.float32), steps)
    rate_times_lam = float(out.outputs["output"][0, :, 0].sum()) / steps
    with torch.no_grad():  # independent referee: the torch QCFS module
        want = float(QCFS(levels=levels, threshold=lam)(torch.tensor([c])))
    assert abs(rate_times_lam - want) <= lam / steps + lam / levels


@pytest.mark.parametrize("precharge,first_spike", [(True, 2), (False, 4)])
def test_first_spike_step_matches_hand_computation(precharge, first_spike):
    # λ = 2, input 0.5 per step. Pre-charged v(0) = λ/2 = 1: v = 1.5, 2.0 -> fires at
    # step 2 (at equality, spikingjelly's Heaviside(0) = 1). v(0) = 0: 0.5 * 4 = 2 -> step 4.
    snn = convert_mst(_single_qcfs_graph(8, 2.0), precharge=precharge)
    if_node = next(n.name for n in snn if n.op_name == "IF")
    res = Simulator(snn, "float", count=False, record=[if_node]).run(
        np.full((1, 1), 0.5, np.float32), 6)
    spikes = res.recorded[if_node][0, :, 0].numpy()
    assert int(np.flatnonzero(spikes)[0]) + 1 == first_spike
    assert set(np.unique(res.outputs["output"][0, :, 0].numpy())) <= {0.0, 2.0}


def test_bundled_cnn_snn_at_32_steps_within_one_point_of_torch_ann():
    split = load_digits_split()
    module, _ = load_checkpoint(BUNDLED)
    ann = ann_accuracy(module, split.x_test, split.y_test)  # torch itself is the referee
    snn = convert_mst(load_model(BUNDLED))
    curve = accuracy_vs_timesteps(snn, split.x_test, split.y_test, [32])
    assert ann > 0.95
    assert curve[0][1] >= ann - 0.01


def test_relu_model_is_refused_naming_the_node():
    relu = build_model("cnn", {"activation": "relu", "pool": "avg"}).eval()
    graph = graph_from_module(relu, (1, 8, 8))
    first_relu = next(n.name for n in graph if n.op_name == "ReLU")
    with pytest.raises(UnsupportedOpError, match=f"'{first_relu}' \\(ReLU\\)"):
        convert_mst(graph)


def test_maxpool_model_is_refused_naming_the_node():
    net = build_model("cnn", {"activation": "qcfs", "pool": "max"}).eval()
    graph = graph_from_module(net, (1, 8, 8))
    pool = next(n.name for n in graph if n.op_name == "MaxPool2d")
    with pytest.raises(UnsupportedOpError, match=f"'{pool}' \\(MaxPool2d\\)"):
        convert_mst(graph)


# ------------------------------------------------------------------ CLI
def _cli(args, capfd):
    code = main([str(a) for a in args])
    out, err = capfd.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def snn_accuracy_at_8():
    split = load_digits_split()
    acc = accuracy_vs_timesteps(convert_mst(load_model(BUNDLED)), split.x_test, split.y_test, [8])
    return acc[0][1]


def test_check_accuracy_exits_1_with_a_gate_above_the_measured_accuracy(snn_accuracy_at_8, capfd):
    assert snn_accuracy_at_8 < 1.0  # otherwise no gate could be above it
    gate = snn_accuracy_at_8 + 0.5 / 450
    code, out, _ = _cli(["check-accuracy", BUNDLED, "--dataset", "digits", "-T", 8,
                         "--min-accuracy", gate], capfd)
    assert code == 1
    assert "FAIL" in out


def test_check_accuracy_exits_0_with_a_gate_below_the_measured_accuracy(snn_accuracy_at_8, capfd):
    gate = snn_accuracy_at_8 - 0.5 / 450
    code, out, _ = _cli(["check-accuracy", BUNDLED, "--dataset", "digits", "-T", 8,
                         "--min-accuracy", gate], capfd)
    assert code == 0
    assert "PASS" in out
    assert f"{snn_accuracy_at_8:.4f}" in out


def test_check_accuracy_exits_2_when_both_gates_are_given(capfd):
    code, _, err = _cli(["check-accuracy", BUNDLED, "--dataset", "digits",
                         "--min-accuracy", 0.5, "--max-drop", 0.1], capfd)
    assert code == 2
    assert "not both" in err


def test_convert_cli_refuses_relu_checkpoint_naming_the_node(tmp_path, capfd):
    relu = build_model("cnn", {"activation": "relu", "pool": "avg"})
    ckpt = save_checkpoint("cnn", {"activation": "relu", "pool": "avg"}, relu,
                           tmp_path / "relu.pt", (1, 8, 8))
    node = next(n.name for n in load_model(ckpt) if n.op_name == "ReLU")
    out = tmp_path / "snn.nmir"
    code, _, err = _cli(["convert", ckpt, "--method", "mst", "-o", out], capfd)
    assert code == 2
    assert f"'{node}' (ReLU)" in err
    assert not out.exists()


def test_ci_snippet_passes_and_fails_the_build_by_exit_code(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    nmtc = Path(sys.executable).with_name("nmtc")
    if not nmtc.exists():
        pytest.skip(f"the nmtc console script is not installed next to {sys.executable} "
                    "(pip install -e .); the CI snippet calls it")
    env = dict(os.environ, NMTC=str(nmtc), OUT=str(tmp_path / "acc.json"), TIMESTEPS="8")
    ok = subprocess.run(["bash", "examples/ci/accuracy_gate.sh"], cwd=root, capture_output=True,
                        text=True, env=dict(env, MAX_DROP="0.05"), timeout=300)
    assert ok.returncode == 0, ok.stderr
    assert json.loads((tmp_path / "acc.json").read_text())["passed"] is True
    bad = subprocess.run(["bash", "examples/ci/accuracy_gate.sh"], cwd=root, capture_output=True,
                         text=True, env=dict(env, MAX_DROP="0.0"), timeout=300)
    # at T=8 the SNN is below the ANN (98.22% vs 98.67%, benchmarks/qcfs_conversion_curve.py)
    assert bad.returncode == 1
