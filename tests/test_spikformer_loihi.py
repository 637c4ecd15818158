"""The trained digits Spikformer on Loihi 2 (issue 11, item 5) and the converted
mini-MST's refusal (item 6).

References: the torch model itself (its logits and predictions), torch's own
conv2d, BatchNorm folding and depths derived in the test from the module and
the graph, and Lava (``LIFReset``/``Dense`` and nmtc's processes) for
``nmtc verify``.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from nmtoolchain.cli import main
from nmtoolchain.datasets import load_digits_split
from nmtoolchain.models import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = ROOT / "nmtoolchain" / "data" / "digits_spikformer.pt"
MINI_MST = ROOT / "nmtoolchain" / "data" / "digits_mini_mst.pt"
STEPS = 4


@pytest.fixture(scope="module")
def torch_model():
    if not BUNDLED.exists():
        pytest.skip("the digits Spikformer checkpoint is not bundled")
    model, _ = load_checkpoint(BUNDLED)
    return model.eval()


@pytest.fixture(scope="module")
def quantized():
    from nmtoolchain.api import load
    from nmtoolchain.quantize.token_graph import quantize_token_graph

    return quantize_token_graph(load(str(BUNDLED)), steps=STEPS)


def _torch_logits(model, x: np.ndarray) -> np.ndarray:
    model.reset_states()
    with torch.no_grad():
        out = model(torch.from_numpy(x).unsqueeze(1).expand(-1, STEPS, *x.shape[1:]))
    return out.sum(1).numpy()


def test_conv_as_one_dense_matrix_equals_torch_conv2d():
    from exporters.loihi2.lava_graph import conv_as_matrix

    rng = np.random.default_rng(0)
    w = rng.integers(-5, 6, (4, 3, 3, 3))
    x = rng.integers(0, 17, (3, 7, 6))
    ref = torch.nn.functional.conv2d(torch.from_numpy(x[None]).double(),
                                     torch.from_numpy(w).double(), stride=2, padding=1)[0]
    m = conv_as_matrix(w, x.shape, tuple(ref.shape), (2, 2), (1, 1))
    np.testing.assert_array_equal(m @ x.reshape(-1), ref.numpy().reshape(-1).astype(np.int64))


def test_first_layer_integers_are_the_folded_torch_layer_scaled(torch_model, quantized):
    # hand derivation: BN folded into the conv, decay-input LIF (k = 1/tau = 1/2),
    # input integers x * 16: W_int = round(s * k * W_fold / 16), vth = round(s * 1)
    q, rep = quantized
    conv, bn = torch_model.patch_embed.stages[0][0].module, torch_model.patch_embed.stages[0][1].module
    g = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach().numpy()
    w_fold = conv.weight.detach().numpy() * g[:, None, None, None]
    b_fold = (bn.bias - bn.running_mean * torch.from_numpy(g)).detach().numpy()
    layer = rep.layers[0]
    s = layer.scale
    w_int = np.asarray(q[q[layer.layer].inputs[0]].op.weight)
    np.testing.assert_array_equal(w_int, np.round(s * 0.5 * w_fold / 16))
    assert np.abs(w_int).max() <= 255
    assert q[layer.layer].numerics.v_th_mant == round(s)
    assert q[layer.layer].numerics.v_decay == 2048 and q[layer.layer].numerics.i_decay == 4096
    bias = np.asarray(q[layer.layer].numerics.bias_mant).reshape(len(b_fold), -1)[:, 0]
    np.testing.assert_array_equal(bias, np.round(s * 0.5 * b_fold))


def test_adds_and_products_read_inputs_of_the_same_step(quantized):
    # depths derived here: one step per synapse on the longest path
    q, rep = quantized
    depth = {}
    for n in q.topological_order():
        d = max((depth[i] for i in n.inputs), default=0)
        depth[n.name] = d + (1 if n.op_name in ("Linear", "Conv2d", "Affine") else 0)
    pairs = [n for n in q if n.op_name in ("Add", "MatMul")]
    assert len(pairs) >= 5
    for n in pairs:
        a, b = (depth[i] for i in n.inputs)
        assert a == b, f"{n.name}: inputs at depths {a} and {b}"
    for n in q:
        if n.op_name == "CubaLIF":
            assert n.annotations["reset_depth"] == depth[n.inputs[0]] or \
                n.annotations["reset_depth"] == depth[n.name]
    assert rep.run_steps == STEPS + max(depth.values())
    assert rep.relays > 0


def test_fixed_point_readout_agrees_with_the_torch_model(torch_model, quantized):
    from nmtoolchain.quantize.token_graph import readout_values

    q, _ = quantized
    split = load_digits_split()
    x, y = split.x_test[:150], split.y_test[:150]
    ref = _torch_logits(torch_model, x)
    fixed = readout_values(q, x)
    agree = float((fixed.argmax(1) == ref.argmax(1)).mean())
    acc_fixed, acc_torch = float((fixed.argmax(1) == y).mean()), float((ref.argmax(1) == y).mean())
    assert agree >= 0.9, agree
    assert acc_fixed >= acc_torch - 0.05, (acc_fixed, acc_torch)


def test_check_accuracy_measures_a_spiking_model_without_conversion(torch_model):
    from nmtoolchain import api

    split = load_digits_split()
    res = api.check_accuracy(str(BUNDLED), None, dataset="digits", timesteps=STEPS, samples=60,
                             target="loihi2")
    ref = _torch_logits(torch_model, split.x_test[:60])
    assert res.spiking and res.samples == 60
    assert res.ann_accuracy == pytest.approx(float((ref.argmax(1) == split.y_test[:60]).mean()))
    assert res.target is not None and res.target.accuracy >= res.ann_accuracy - 0.1


def test_converted_mini_mst_is_refused_naming_softmax_and_inspect_says_the_same(tmp_path, capfd):
    from nmtoolchain.ir import load_graph
    from nmtoolchain.targets.loihi2 import TARGET

    if not MINI_MST.exists():
        pytest.skip("the mini-MST checkpoint is not bundled")
    snn = tmp_path / "mini_mst_snn.nmir"
    assert main(["convert", str(MINI_MST), "--method", "mst", "-T", "8", "-o", str(snn)]) == 0
    capfd.readouterr()
    out_dir = tmp_path / "mst_loihi2"
    code = main(["export", str(snn), "--target", "loihi2", "--calib", "digits", "-o",
                 str(out_dir)])
    err = capfd.readouterr().err
    assert code == 2 and not out_dir.exists()
    assert len(err.strip().splitlines()) == 1
    assert "node 'softmax' (op Softmax)" in err and "fixed-point" in err
    refused = TARGET.refusals(load_graph(snn))
    assert refused[0].node == "softmax" and refused[0].reason in err
    assert {"Softmax", "SpikeMask"} <= {r.op for r in refused}


@pytest.mark.lava
def test_export_verifies_identical_in_lava_and_reports_deployability(tmp_path, capfd):
    pytest.importorskip("lava.magma", reason="Lava is not installed")
    out_dir = tmp_path / "spikformer.loihi2"
    assert main(["export", str(BUNDLED), "--target", "loihi2", "-T", str(STEPS), "-o",
                 str(out_dir)]) == 0
    report = json.loads((out_dir / "report.json").read_text())
    dep = report["deployability"]
    assert {"matmul", "matmul_1"} <= set(dep["lava_simulator_only"])
    assert "patch_embed_stages_0_0" in dep["loihi2_netx"] and not dep["refused"]
    assert report["mapping"]["mapped"] and report["mapping"]["cores_used"] >= 1
    assert (out_dir / "mapping.json").is_file()
    assert report["input"]["drive"] == "graded"
    procs = json.loads((out_dir / "lava_graph.json").read_text())["processes"]
    assert any(p["process"] == "LIFReset" for p in procs)
    capfd.readouterr()
    assert main(["verify", str(out_dir), "--dataset", "digits", "--samples", "1"]) == 0
    out = capfd.readouterr().out
    assert "sample 0: identical" in out and out.strip().splitlines()[-2] == "identical"
