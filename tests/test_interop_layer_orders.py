"""Common layer orders from the ecosystem reach Loihi 2 (issue 14, step 5).

* snnTorch's conv -> avg-pool -> neuron: the pool folds into the convolution
  before it. The folded convolution is compared with torch's own
  ``conv2d`` followed by ``avg_pool2d`` / sum pooling (an independent
  reference), over strides, paddings, dilations and window shapes.
* norse/rockpool's (1, N) input: read as (N,) (tests/test_interop_producers.py
  checks the spikes); here the Loihi export of such a file.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nmtoolchain.ir import IF, AvgPool2d, Conv2d, Graph, Input, Output, SumPool2d
from nmtoolchain.passes.fold_pooling import fold_pooling


def _graph(conv: Conv2d, pool, shape):
    g = Graph()
    g.add("x", Input(shape=shape))
    g.add("conv", conv, ["x"])
    g.add("pool", pool, ["conv"])
    g.add("lif", IF(), ["pool"])
    g.add("out", Output(), ["lif"])
    return g.infer_shapes()


@pytest.mark.parametrize("stride, padding, dilation, window, groups, kind", [
    ((1, 1), (1, 1), (1, 1), (2, 2), 1, "avg"),
    ((1, 1), (0, 0), (1, 1), (2, 2), 1, "sum"),
    ((2, 1), (1, 0), (1, 1), (2, 3), 1, "avg"),
    ((1, 1), (2, 2), (2, 2), (2, 2), 2, "avg"),
    ((1, 2), (1, 1), (1, 1), (3, 2), 2, "sum"),
])
def test_conv_then_pool_before_a_neuron_folds_into_one_equal_convolution(
        stride, padding, dilation, window, groups, kind):
    rng = np.random.default_rng(0)
    w = rng.normal(size=(4, 4 // groups, 3, 3)).astype(np.float32)
    b = rng.normal(size=4).astype(np.float32)
    pool = (AvgPool2d if kind == "avg" else SumPool2d)(window, window, (0, 0))
    g = _graph(Conv2d(w, b, stride, padding, dilation, groups), pool, (4, 11, 12))

    folded = fold_pooling(g)

    assert "pool" not in [n.name for n in folded]
    assert folded["lif"].inputs == ("conv",)
    x = torch.from_numpy(rng.normal(size=(2, 4, 11, 12)).astype(np.float32))
    y = F.conv2d(x, torch.from_numpy(w), torch.from_numpy(b), stride, padding, dilation, groups)
    want = F.avg_pool2d(y, window, window) if kind == "avg" else \
        F.avg_pool2d(y, window, window) * (window[0] * window[1])
    op = folded["conv"].op
    got = F.conv2d(x, torch.from_numpy(np.asarray(op.weight)),
                   torch.from_numpy(np.asarray(op.bias)), op.stride, op.padding,
                   op.dilation, op.groups)
    assert got.shape == want.shape and tuple(got.shape[1:]) == folded["conv"].shape
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_conv_read_by_two_nodes_keeps_the_pool_as_a_depthwise_synapse():
    g = _graph(Conv2d(np.ones((2, 2, 3, 3), np.float32), None), AvgPool2d((2, 2), (2, 2),
                                                                          (0, 0)), (2, 6, 6))
    g.add("tap", IF(), ["conv"])  # a second reader: the conv cannot absorb the pool
    folded = fold_pooling(g)
    assert folded["pool"].op_name == "Conv2d" and folded["pool"].op.groups == 2


def _snntorch_cnn_file(tmp_path):
    snn = pytest.importorskip("snntorch", reason="snnTorch is not installed: no snnTorch file")
    import nir
    from snntorch.export_nir import export_to_nir
    from torch import nn

    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.AvgPool2d(2),
        snn.Leaky(beta=torch.full((4, 4, 4), 0.9), threshold=torch.ones(4, 4, 4),
                  init_hidden=True),
        nn.Flatten(), nn.Linear(64, 10),
        snn.Leaky(beta=torch.full((10,), 0.9), threshold=torch.ones(10), init_hidden=True,
                  output=True))
    graph = export_to_nir(net, torch.zeros(1, 1, 8, 8), ignore_dims=[0])
    for node in graph.nodes.values():
        if isinstance(node, nir.Conv2d) and node.input_shape is None:
            node.input_shape = (8, 8)
    path = tmp_path / "cnn.nir"
    nir.write(str(path), graph)
    return path


def test_snntorch_conv_avgpool_leaky_cnn_exports_to_loihi2(tmp_path, capsys):
    from nmtoolchain.cli import main

    path = _snntorch_cnn_file(tmp_path)
    out = tmp_path / "cnn.loihi2"
    assert main(["export", str(path), "--dt", "1e-4", "--target", "loihi2", "--calib",
                 "digits", "-o", str(out)]) == 0, capsys.readouterr().err
    assert (out / "network.net").exists()


@pytest.mark.lava
def test_snntorch_cnn_export_runs_identically_in_lava(tmp_path, capsys):
    pytest.importorskip("lava.lib.dl.netx", reason="lava-dl is not installed")
    from nmtoolchain.cli import main

    path = _snntorch_cnn_file(tmp_path)
    out = tmp_path / "cnn.loihi2"
    assert main(["export", str(path), "--dt", "1e-4", "--target", "loihi2", "--calib",
                 "digits", "-o", str(out)]) == 0
    capsys.readouterr()
    assert main(["verify", str(out), "--dataset", "digits", "--samples", "2"]) == 0
    assert "identical" in capsys.readouterr().out
