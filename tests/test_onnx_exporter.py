"""The ONNX exporter against torch and ONNX's own reference evaluator.

Every numerical expectation comes from outside the exporter: the original
torch module's forward (``torch.jit.load`` of the bundled TorchScript file, or
the small module the test builds), or torch/numpy code written here for the
ops no torch module of nmtc's loaders produces (sum pooling, batch norm over
the feature axis of tokens, broadcasting across per-sample ranks). The ONNX
side is run by ``onnx.reference.ReferenceEvaluator``, ONNX's executable spec.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Tuple

import numpy as np
import onnx
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from onnx.reference import ReferenceEvaluator

import nmtoolchain
from exporters.onnx import export_onnx, graph_to_onnx, onnx_unsupported_nodes
from nmtoolchain.errors import BadInputError, NotExpressibleError
from nmtoolchain.frontends import load_model
from nmtoolchain.frontends.onnx_loader import load_onnx
from nmtoolchain.frontends.torch_loader import graph_from_module, save_torchscript
from nmtoolchain.ir import (
    IF, LIF, Add, Affine, BatchNorm, Graph, Input, MatMul, Mean, Output, SumPool2d, Transpose)

DATA = Path(nmtoolchain.__file__).parent / "data"
TOL = dict(rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------ helpers
def digits_batch(n: int = 64) -> Tuple[np.ndarray, np.ndarray]:
    """Real 8x8 digits from scikit-learn, scaled to [0, 1] as the bundled CNN was trained."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images[:n] / 16.0).astype(np.float32)[:, None]
    return x, d.target[:n]


def run_onnx(model_or_path, *inputs: np.ndarray) -> np.ndarray:
    model = onnx.load(str(model_or_path)) if isinstance(model_or_path, Path) else model_or_path
    names = [vi.name for vi in model.graph.input]
    return ReferenceEvaluator(model).run(None, dict(zip(names, inputs)))[0]


def torch_forward(module: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return module(torch.from_numpy(x)).numpy()


def load_via_torchscript(module: nn.Module, input_shape, tmp_path: Path):
    """``module`` saved as TorchScript and read back by nmtc's torch loader."""
    path = save_torchscript(module.eval(), tmp_path / "model.pt", input_shape)
    return load_model(path)


def randomize_norms(module: nn.Module) -> nn.Module:
    """Non-default batch/layer-norm arrays, so a lost or swapped array shows."""
    g = torch.Generator().manual_seed(3)
    for m in module.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            n = m.num_features
            m.weight.data = torch.rand(n, generator=g) + 0.5
            m.bias.data = torch.randn(n, generator=g)
            m.running_mean = torch.randn(n, generator=g)
            m.running_var = torch.rand(n, generator=g) + 0.5
        elif isinstance(m, nn.LayerNorm):
            m.weight.data = torch.rand(m.weight.shape, generator=g) + 0.5
            m.bias.data = torch.randn(m.bias.shape, generator=g)
    return module.eval()


def torch_parameter_count(module: nn.Module) -> int:
    """Every stored array of the module except BN's batch counter (the IR's convention)."""
    return sum(v.numel() for k, v in module.state_dict().items()
               if not k.endswith("num_batches_tracked"))


# ------------------------------------------------------------------ modules
class ConvFamily(nn.Module):
    """Grouped, dilated, padded, strided convs, batch norm, max/avg pooling."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(4, 8, 3, padding=2, dilation=2, groups=2), nn.BatchNorm2d(8), nn.ReLU(),
            nn.MaxPool2d(3, stride=2, padding=1),
            nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8),
            nn.AvgPool2d(2, stride=1, padding=1), nn.ReLU(), nn.Conv2d(8, 6, (1, 2)))
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(6 * 4 * 3, 5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class Conv1dNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(3, 6, 3, padding=2, dilation=2, groups=3)
        self.conv2 = nn.Conv1d(6, 4, 5, stride=2)
        self.fc = nn.Linear(4 * 6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(F.relu(self.conv2(F.relu(self.conv(x)))), 1))


class Attention(nn.Module):
    """An attention-like block over (tokens, features): layer norm, q/k/v, scaled
    q·kᵀ, softmax, ·v, a head split by reshape/transpose, a residual, a concat,
    a constant bias, a mean over tokens and a linear head."""

    def __init__(self, tokens: int = 6, dim: int = 8, heads: int = 2,
                 layer_norm: bool = True, pool: bool = True, position: bool = True) -> None:
        super().__init__()
        self.heads, self.pool, self.position_bias = heads, pool, position
        self.norm = nn.LayerNorm(dim) if layer_norm else nn.Identity()
        self.q, self.k, self.v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.proj = nn.Linear(2 * dim, dim)
        self.register_buffer("position", torch.randn(tokens, dim) if position else torch.zeros(0))
        self.head = nn.Linear(dim if pool else tokens * dim, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        h = self.norm(x)
        q = self.q(h).reshape(b, n, self.heads, d // self.heads).permute(0, 2, 1, 3)
        k = self.k(h).reshape(b, n, self.heads, d // self.heads).permute(0, 2, 1, 3)
        v = self.v(h).reshape(b, n, self.heads, d // self.heads).permute(0, 2, 1, 3)
        attn = torch.softmax(q @ k.transpose(-2, -1) * 0.5, dim=-1)
        y = (attn @ v).permute(0, 2, 1, 3).reshape(b, n, d)
        y = self.proj(torch.cat([y, x], dim=-1)) + x
        if self.position_bias:
            y = y + self.position
        if self.pool:
            return self.head(y.mean(dim=1))
        return self.head(y.reshape(b, n * d))


# -------------------------------------------------- (a) the bundled digits CNN
@pytest.mark.parametrize("source", ["digits_cnn.pt", "digits_cnn.onnx"])
def test_bundled_digits_cnn_export_computes_what_the_torch_module_computes(source, tmp_path):
    reference = torch.jit.load(str(DATA / "digits_cnn.pt")).eval()
    x, labels = digits_batch(64)
    path = export_onnx(load_model(DATA / source), tmp_path / "digits.onnx")
    got = run_onnx(path, x)
    want = torch_forward(reference, x)
    np.testing.assert_allclose(got, want, **TOL)
    assert (got.argmax(1) == labels).mean() > 0.9  # the trained net, not a zero network
    # the batch axis is symbolic: one sample runs through the same file
    np.testing.assert_allclose(run_onnx(path, x[:1]), want[:1], **TOL)


def test_written_file_declares_the_batch_axis_and_the_producer(tmp_path):
    model = onnx.load(str(export_onnx(load_model(DATA / "digits_cnn.pt"), tmp_path / "d.onnx")))
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "N" and [d.dim_value for d in dims[1:]] == [1, 8, 8]
    out = model.graph.output[0].type.tensor_type.shape.dim
    assert out[0].dim_param == "N" and out[1].dim_value == 10
    assert (model.producer_name, model.producer_version) == ("nmtc", nmtoolchain.__version__)
    assert [(o.domain, o.version) for o in model.opset_import] == [("", 17)]


# ------------------------------------------------ (b) op families against torch
@pytest.mark.parametrize("make, input_shape", [
    (ConvFamily, (4, 12, 10)),
    (Conv1dNet, (3, 16)),
], ids=["conv2d-groups-dilation-pools-bn", "conv1d-groups-dilation"])
def test_convolution_families_equal_torch(make, input_shape, tmp_path):
    torch.manual_seed(0)
    module = randomize_norms(make())
    graph = load_via_torchscript(module, input_shape, tmp_path)
    x = np.random.default_rng(1).standard_normal((5,) + input_shape).astype(np.float32)
    np.testing.assert_allclose(run_onnx(graph_to_onnx(graph), x), torch_forward(module, x), **TOL)


# ReduceMean's axes moved to an input in opset 18; the newest opset the installed onnx knows
@pytest.mark.parametrize("opset", [17, 18, onnx.defs.onnx_opset_version()])
def test_attention_block_equals_torch(opset, tmp_path):
    torch.manual_seed(0)
    module = randomize_norms(Attention())
    graph = graph_from_module(module, (6, 8))  # torch.fx: nmtc's TorchScript walker lacks mean
    assert {"LayerNorm", "MatMul", "Transpose", "Reshape", "Softmax", "Concat", "Mean", "Bias",
            "Scale", "Add"} <= set(graph.op_names())
    x = np.random.default_rng(2).standard_normal((3, 6, 8)).astype(np.float32)
    got = run_onnx(graph_to_onnx(graph, opset=opset), x)
    np.testing.assert_allclose(got, torch_forward(module, x), **TOL)


def test_sum_pool_equals_a_convolution_with_ones():
    graph = Graph()
    graph.add("x", Input(shape=(2, 6, 7)))
    graph.add("pool", SumPool2d(kernel_size=(2, 3), stride=(2, 1), padding=(1, 1)), ["x"])
    graph.add("y", Output(), ["pool"])
    x = np.random.default_rng(3).standard_normal((4, 2, 6, 7)).astype(np.float32)
    ones = torch.ones(2, 1, 2, 3)  # depthwise window sum, zero padding
    want = F.conv2d(torch.from_numpy(x), ones, stride=(2, 1), padding=(1, 1), groups=2).numpy()
    np.testing.assert_allclose(run_onnx(graph_to_onnx(graph), x), want, **TOL)


def test_batch_norm_over_token_features_equals_torch():
    """BatchNorm on axis 1 of (tokens, features): torch's BatchNorm1d on (B, D, N)."""
    rng = np.random.default_rng(4)
    bn = randomize_norms(nn.BatchNorm1d(5))
    graph = Graph()
    graph.add("x", Input(shape=(7, 5)))
    graph.add("bn", BatchNorm(mean=bn.running_mean, var=bn.running_var, weight=bn.weight,
                              bias=bn.bias, eps=bn.eps, axis=1), ["x"])
    graph.add("y", Output(), ["bn"])
    x = rng.standard_normal((3, 7, 5)).astype(np.float32)
    with torch.no_grad():
        want = bn(torch.from_numpy(x).transpose(1, 2)).transpose(1, 2).numpy()
    np.testing.assert_allclose(run_onnx(graph_to_onnx(graph), x), want, **TOL)


def test_add_and_matmul_broadcast_over_per_sample_axes_not_the_batch():
    """x (2, 4, 3) per sample plus its mean (4, 3): the mean repeats over x's first
    per-sample axis, not over the batch (as numpy on per-sample arrays would)."""
    graph = Graph()
    graph.add("x", Input(shape=(2, 4, 3)))
    graph.add("m", Mean(axis=0), ["x"])
    graph.add("sum", Add(), ["x", "m"])
    graph.add("mt", Transpose(perm=(1, 0)), ["m"])
    graph.add("prod", MatMul(), ["sum", "mt"])
    graph.add("y", Output(), ["prod"])
    x = np.random.default_rng(5).standard_normal((3, 2, 4, 3)).astype(np.float32)
    want = np.stack([(s + s.mean(0)) @ s.mean(0).T for s in x])
    np.testing.assert_allclose(run_onnx(graph_to_onnx(graph), x), want, **TOL)


# ------------------------------------------------ (c) nmtc's ONNX loader reads it back
@pytest.mark.parametrize("make, input_shape, constants", [
    (ConvFamily, (4, 12, 10), 0),
    (Conv1dNet, (3, 16), 0),
    # what nmtc's ONNX loader reads: no LayerNormalization, ReduceMean or free constant Add
    # (its one constant outside the state dict: the 0.5 scale of q·kᵀ, an IR Scale parameter)
    (lambda: Attention(layer_norm=False, pool=False, position=False), (6, 8), 1),
], ids=["conv2d", "conv1d", "attention"])
def test_round_trip_through_nmtcs_onnx_loader_keeps_totals(make, input_shape, constants,
                                                            tmp_path):
    torch.manual_seed(0)
    module = randomize_norms(make())
    graph = load_via_torchscript(module, input_shape, tmp_path)
    back = load_onnx(export_onnx(graph, tmp_path / "model.onnx"))
    before, after = graph.totals(), back.totals()
    assert after["parameters"] == before["parameters"]
    assert (after["parameters"] + after["buffers"] == before["parameters"] + before["buffers"]
            == torch_parameter_count(module) + constants)
    assert (after["macs"], after["synapses"]) == (before["macs"], before["synapses"])


def test_round_trip_of_the_bundled_cnn_keeps_totals(tmp_path):
    graph = load_model(DATA / "digits_cnn.pt")
    back = load_onnx(export_onnx(graph, tmp_path / "digits.onnx"))
    # torch: the same counts (parameters; MACs of 3x3 convs at 8x8 and 4x4, and the head)
    reference = torch.jit.load(str(DATA / "digits_cnn.pt"))
    assert back.totals()["parameters"] + back.totals()["buffers"] \
        == torch_parameter_count(reference) == 1994
    assert back.totals()["macs"] == 8 * 64 * 9 + 16 * 16 * 8 * 9 + 64 * 10 == 23680


# ------------------------------------------------------------------- (d) refusal
def spiking_graph() -> Graph:
    graph = Graph()
    graph.add("x", Input(shape=(4,)))
    graph.add("fc", Affine(weight=np.ones((3, 4)), bias=np.zeros(3)), ["x"])
    graph.add("lif1", LIF(tau=2.0, r=1.0, v_leak=0.0, v_threshold=1.0), ["fc"])
    graph.add("fc2", Affine(weight=np.ones((2, 3)), bias=np.zeros(2)), ["lif1"])
    graph.add("if2", IF(r=1.0, v_threshold=1.0), ["fc2"])
    graph.add("y", Output(), ["if2"])
    return graph


def test_a_spiking_graph_is_refused_naming_its_neurons_and_nothing_is_written(tmp_path):
    target = tmp_path / "snn.onnx"
    with pytest.raises(NotExpressibleError) as info:
        export_onnx(spiking_graph(), target)
    message = str(info.value)
    assert "'lif1' (LIF)" in message and "'if2' (IF)" in message and "ANN" in message
    assert "\n" not in message
    assert list(tmp_path.iterdir()) == []  # no file, no temporary left behind
    assert [(r.node, r.op) for r in onnx_unsupported_nodes(spiking_graph())] == [
        ("lif1", "LIF"), ("if2", "IF")]


def test_the_bundled_converted_snn_is_refused_and_an_old_file_is_left_untouched(tmp_path):
    graph = load_model(DATA / "digits_cnn_snn.nmir")
    neurons = {n.name for n in graph if n.op.is_neuron}
    assert neurons
    target = tmp_path / "snn.onnx"
    target.write_bytes(b"previous export")
    with pytest.raises(NotExpressibleError) as info:
        export_onnx(graph, target)
    assert all(f"'{name}'" in str(info.value) for name in neurons)
    assert target.read_bytes() == b"previous export"
    assert [p.name for p in tmp_path.iterdir()] == ["snn.onnx"]


def test_an_ann_has_no_unsupported_nodes_and_bad_requests_are_one_line_errors(tmp_path):
    graph = load_model(DATA / "digits_cnn.pt")
    assert onnx_unsupported_nodes(graph) == []
    with pytest.raises(BadInputError, match="opset"):
        export_onnx(graph, tmp_path / "a.onnx", opset=13)
    with pytest.raises(BadInputError, match="does not exist"):
        export_onnx(graph, tmp_path / "missing" / "a.onnx")
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- (e) determinism
def test_exporting_twice_gives_identical_bytes(tmp_path):
    first = export_onnx(load_model(DATA / "digits_cnn.pt"), tmp_path / "first.onnx")
    second = export_onnx(load_model(DATA / "digits_cnn.pt"), tmp_path / "second.onnx")
    assert first.read_bytes() == second.read_bytes()


def test_another_process_writes_the_same_bytes(tmp_path):
    """No hash order, time or path leaks into the file (a fresh interpreter, another hash seed)."""
    here = export_onnx(load_model(DATA / "digits_cnn.pt"), tmp_path / "here.onnx")
    there = tmp_path / "there.onnx"
    code = ("import sys; from nmtoolchain.frontends import load_model; "
            "from exporters.onnx import export_onnx; "
            "export_onnx(load_model(sys.argv[1]), sys.argv[2])")
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONHASHSEED="12345", PYTHONPATH=str(root))
    subprocess.run([sys.executable, "-c", code, str(DATA / "digits_cnn.pt"), str(there)],
                   check=True, env=env, cwd=tmp_path, timeout=300)
    assert there.read_bytes() == here.read_bytes()


# ------------------------------------------- acceptance and export give one answer
@pytest.mark.parametrize("name", sorted(p.name for p in DATA.iterdir()
                                        if p.suffix in (".pt", ".onnx", ".nmir")))
def test_acceptance_is_what_export_does_for_every_bundled_model(name, tmp_path):
    graph = load_model(DATA / name)
    refusals = onnx_unsupported_nodes(graph)
    target = tmp_path / "model.onnx"
    if refusals:
        with pytest.raises(NotExpressibleError) as info:
            export_onnx(graph, target)
        message = str(info.value)
        assert f"'{refusals[0].node}'" in message and "\n" not in message
        assert all(f"({r.op}): {r.reason}" in message for r in refusals)
        assert not target.exists()
    else:
        assert onnx.load(str(export_onnx(graph, target))).graph.node
