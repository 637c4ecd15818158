"""ONNX files from torch's dynamo exporter load and compute what torch computes.

From torch 2.9 ``torch.onnx.export(model, x, path)`` uses the dynamo exporter by
default (``torch.export`` + onnxscript): other node names, BatchNorm folded into the
convolution, ``AdaptiveAvgPool2d(1)`` and ``x.mean((2, 3))`` written as ReduceMean over
H and W, ``view`` as Reshape. A user on a current torch brings such files. Reference:
torch's own forward of the same module. Skipped where the installed torch has no
dynamo exporter (the project's Python 3.10 venv pins torch 2.3)."""
from __future__ import annotations

import importlib.util
import inspect
import warnings

import numpy as np
import pytest
import torch
import torch.nn as nn

from nmtoolchain.frontends.onnx_loader import load_onnx
from nmtoolchain.ir import AvgPool2d
from simulators.cycle import Simulator
from test_onnx_loader import make_attention, make_cnn, make_mlp, make_resnet

HAS_DYNAMO = ("dynamo" in inspect.signature(torch.onnx.export).parameters
              and importlib.util.find_spec("onnxscript") is not None)
pytestmark = pytest.mark.skipif(
    not HAS_DYNAMO, reason=f"torch {torch.__version__} has no dynamo ONNX exporter "
                           "(needs torch >= 2.5 with onnxscript)")


class SpatialMean(nn.Module):
    """A ResNet head written by hand: global average by ``x.mean((2, 3))``."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 6, 3, padding=1)
        self.fc = nn.Linear(6, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).mean((2, 3)))


def make_spatial_mean():
    torch.manual_seed(0)
    return SpatialMean(), torch.randn(1, 2, 6, 6)


def _dynamo_export(model: nn.Module, example: torch.Tensor, path) -> None:
    model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (example,), str(path), dynamo=True)


@pytest.mark.parametrize("make", [make_mlp, make_cnn, make_resnet, make_attention,
                                  make_spatial_mean], ids=lambda f: f.__name__[5:])
def test_dynamo_export_loads_and_simulates_as_torch(make, tmp_path):
    model, example = make()
    path = tmp_path / "model.onnx"
    _dynamo_export(model, example, path)
    graph = load_onnx(path)
    x = torch.randn((3,) + tuple(example.shape[1:]), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        want = model(x).numpy()
    got = Simulator(graph, "float").run(x, 1).outputs
    (out,) = got.values()
    np.testing.assert_allclose(np.asarray(out)[:, 0], want, rtol=1e-5, atol=1e-5)


def test_spatial_reduce_mean_becomes_average_pooling_over_the_whole_map(tmp_path):
    model, example = make_spatial_mean()
    path = tmp_path / "mean.onnx"
    _dynamo_export(model, example, path)
    pools = [n for n in load_onnx(path) if isinstance(n.op, AvgPool2d)]
    assert len(pools) == 1 and tuple(pools[0].op.kernel_size) == (6, 6), pools
