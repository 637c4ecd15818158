"""Spikformers saved by other people's code (issue #11): the published code
structure as an ANN twin (tests/spikformer_published.py), saved as TorchScript
and ONNX, loads into the IR. References: torch's own outputs and parameter
count, and the hand derivation of Spikformer-4-384's MACs."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from nmtoolchain import api
from nmtoolchain.frontends import load_model
from spikformer_published import PublishedSpikformerANN, randomize_bn


def _save(model, shape, tmp_path):
    x = torch.rand((2,) + shape)
    ts = tmp_path / "model.pt"
    torch.jit.trace(model, x).save(str(ts))
    ox = tmp_path / "model.onnx"
    torch.onnx.export(model, x, str(ox), input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "b"}, "y": {0: "b"}}, opset_version=17)
    return ts, ox


def test_published_ann_twin_small_loads_and_simulates_as_torch(tmp_path):
    torch.manual_seed(0)
    model = randomize_bn(PublishedSpikformerANN(1, 32, 1, 2, 2, 10, (False, False, False, True)))
    ts, ox = _save(model, (1, 8, 8), tmp_path)
    x = torch.rand(5, 1, 8, 8)
    with torch.no_grad():
        ref = model(x).numpy()
    for path in (ts, ox):
        g = load_model(path, input_shape=(1, 8, 8))
        ops = {n.op_name for n in g}
        assert {"Mean", "MatMul", "Transpose", "BatchNorm"} <= ops, (path, ops)
        out = np.asarray(next(iter(api.simulate(g, x.numpy(), timesteps=1).outputs.values())))
        np.testing.assert_allclose(out[:, 0], ref, atol=1e-4, err_msg=str(path))


def test_published_spikformer_4_384_counts_from_torchscript_and_onnx(tmp_path):
    torch.manual_seed(0)
    model = randomize_bn(PublishedSpikformerANN())
    ts, ox = _save(model, (3, 32, 32), tmp_path)
    n_torch = sum(p.numel() for p in model.parameters())
    assert n_torch == 9_324_730  # the paper's 9.32 M
    # torch.onnx (eval mode) fuses each SPS BatchNorm2d into its conv: the BN's
    # weight and bias (2 per channel) become one conv bias per channel
    sps_bn2d_channels = 48 + 96 + 192 + 384 + 384
    expected = {ts: n_torch, ox: n_torch - sps_bn2d_channels}
    for path in (ts, ox):
        tot = load_model(path, input_shape=(3, 32, 32)).totals()
        assert tot["parameters"] == expected[path], path
        # hand: SPS convs, 4 blocks of 64 tokens x (4 D² + 2 D·4D) + Q·Kᵀ + A·V, head
        sps = (32 * 32 * 27 * 48 + 32 * 32 * 9 * 48 * 96 + 32 * 32 * 9 * 96 * 192
               + 16 * 16 * 9 * 192 * 384 + 8 * 8 * 9 * 384 * 384)
        qk = av = 12 * 64 * 64 * 32
        blocks = 4 * (64 * (4 * 384 * 384 + 2 * 384 * 1536) + qk + av)
        assert tot["macs"] == sps + blocks + 3840 == 934_039_296, path


def test_published_ann_twin_pickled_module_loads_only_with_allow_pickle(tmp_path):
    # a whole nn.Module pickled by torch.save: unpickling runs code from the file,
    # so it loads only with consent, then simulates as torch does
    from nmtoolchain.errors import NmtcError

    torch.manual_seed(0)
    model = randomize_bn(PublishedSpikformerANN(1, 32, 1, 2, 2, 10, (False, False, False, True)))
    path = tmp_path / "module.pt"
    torch.save(model, path)
    with pytest.raises(NmtcError, match="pickle"):
        load_model(path, input_shape=(1, 8, 8))
    g = load_model(path, input_shape=(1, 8, 8), allow_pickle=True)
    assert {"Mean", "MatMul", "Transpose", "BatchNorm", "MaxPool2d"} <= {n.op_name for n in g}
    x = torch.rand(5, 1, 8, 8)
    with torch.no_grad():
        ref = model(x).numpy()
    out = np.asarray(next(iter(api.simulate(g, x.numpy(), timesteps=1).outputs.values())))
    np.testing.assert_allclose(out[:, 0], ref, atol=1e-4)
