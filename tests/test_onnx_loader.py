"""The ONNX loader against real ``torch.onnx.export`` files.

References are independent of the loader: torch's own parameters and buffers,
shapes recorded by forward hooks while torch runs the model, and hand-derived
operation counts.

Parameter convention (the IR's, checked here): a BatchNorm node counts all
four of its arrays (weight, bias, running mean, running variance), so the
torch reference is every entry of ``state_dict()`` except BN's
``num_batches_tracked`` counter.

BatchNorm survives export only with ``training=TrainingMode.PRESERVE`` on a
model in eval mode (the default EVAL mode fuses it into the preceding conv).
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Dict, Tuple

import numpy as np
import onnx
import pytest
import torch
import torch.nn as nn
from onnx import TensorProto, helper
from onnx_export import torchscript_exporter

from nmtoolchain.errors import BadInputError, UnsupportedOpError
from nmtoolchain.frontends import load_model
from nmtoolchain.frontends.onnx_loader import graph_from_onnx, load_onnx
from nmtoolchain.ir import (
    Add, Affine, AvgPool2d, BatchNorm, Concat, Conv1d, Conv2d, Flatten, Input, MatMul, Output,
    Scale, Softmax, Transpose)


# ------------------------------------------------------------------ models
class Residual(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.bn = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.relu(self.bn(self.conv1(x)))) + x


class TransposeLast(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.transpose(-2, -1)


class MatMulPair(nn.Module):
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a @ b


class ScaleBy(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 0.125


class SelfAttentionScores(nn.Module):
    """softmax((x Wq + b) (x Wq + b)^T * 0.125) over tokens (N, D)."""

    def __init__(self) -> None:
        super().__init__()
        self.q = nn.Linear(8, 8)
        self.t = TransposeLast()
        self.mm = MatMulPair()
        self.scale = ScaleBy()
        self.sm = nn.Softmax(dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = self.q(x)
        return self.sm(self.scale(self.mm(q, self.t(q))))


def _randomize_bn(model: nn.Module) -> nn.Module:
    """Distinct, non-default BN arrays (the exporter merges initializers of equal value)."""
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.weight.data = torch.rand(n, generator=g) + 0.5
            m.bias.data = torch.randn(n, generator=g)
            m.running_mean = torch.randn(n, generator=g)
            m.running_var = torch.rand(n, generator=g) + 0.5
    return model


def make_mlp() -> Tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 10)), torch.randn(1, 16)


def make_cnn() -> Tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
        nn.AvgPool2d(2), nn.Flatten(), nn.Linear(4 * 2 * 2, 10))
    return _randomize_bn(net), torch.randn(1, 2, 8, 8)


def make_resnet() -> Tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), Residual(4), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    return _randomize_bn(net), torch.randn(1, 1, 8, 8)


def make_attention() -> Tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    return SelfAttentionScores(), torch.randn(1, 5, 8)


def export(model: nn.Module, example, path: Path, **kwargs) -> Path:
    """``torch.onnx.export`` of ``model`` in eval mode, keeping BatchNorm nodes."""
    model.eval()
    kwargs.setdefault("training", torch.onnx.TrainingMode.PRESERVE)
    # these tests read the TorchScript-based exporter's scope names ('/2/conv1/Conv')
    for k, v in torchscript_exporter().items():
        kwargs.setdefault(k, v)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, example, str(path), **kwargs)
    return path


# --------------------------------------------------------------- references
def torch_shapes(model: nn.Module, example: torch.Tensor) -> Dict[str, Tuple[int, ...]]:
    """Per-sample output shape of every named submodule, recorded by forward hooks."""
    shapes: Dict[str, Tuple[int, ...]] = {}
    hooks = [m.register_forward_hook(
        lambda mod, inp, out, name=name: shapes.__setitem__(name, tuple(out.shape[1:])))
        for name, m in model.named_modules() if name]
    try:
        with torch.no_grad():
            shapes[""] = tuple(model(example).shape[1:])
    finally:
        for h in hooks:
            h.remove()
    return shapes


def module_of(node) -> str:
    """The torch module an exported node belongs to: '/2/conv1/Conv' -> '2.conv1'.

    (The test models avoid nested Sequentials, whose scope names torch abbreviates.)
    """
    return ".".join(node.annotations["source"]["name"].split("/")[1:-1])


def torch_parameter_total(model: nn.Module) -> int:
    """Weights and biases of every layer plus BN's running mean and variance
    (the IR's parameters plus buffers: :func:`stored`)."""
    return sum(v.numel() for k, v in model.state_dict().items()
               if not k.endswith("num_batches_tracked"))


def stored(graph) -> int:
    """Every value the IR stores: trainable parameters plus buffers (BN statistics)."""
    tot = graph.totals()
    return tot["parameters"] + tot["buffers"]


def node_for(graph, module: str):
    """The one IR node translated from ONNX nodes of ``module``'s own scope."""
    found = [n for n in graph if "name" in n.annotations.get("source", {})
             and not isinstance(n.op, (Input, Output)) and module_of(n) == module]
    assert len(found) == 1, (module, [n.name for n in found])
    return found[0]


def assert_shapes_match_torch(graph, model: nn.Module, example: torch.Tensor) -> None:
    ref = torch_shapes(model, example)
    checked = 0
    for node in graph:
        if isinstance(node.op, Input):
            assert node.shape == tuple(example.shape[1:]), node.name
        elif isinstance(node.op, Output):
            assert node.shape == ref[""], node.name
        else:
            assert node.shape == ref[module_of(node)], (node.name, module_of(node))
        checked += 1
    assert checked == len(graph) and checked >= 3


# ----------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Each test model exported once: name -> (model, example, path)."""
    root = tmp_path_factory.mktemp("onnx")
    out = {}
    for name, make in [("mlp", make_mlp), ("cnn", make_cnn), ("resnet", make_resnet),
                       ("attention", make_attention)]:
        model, example = make()
        out[name] = (model, example, export(model, (example,), root / f"{name}.onnx"))
    return out


# ---------------------------------------------------------------------- MLP
def test_mlp_parameter_total_equals_torch(exported):
    model, _, path = exported["mlp"]
    assert stored(load_onnx(path)) == torch_parameter_total(model)


def test_mlp_gemm_weights_equal_torch_weights_exactly(exported):
    model, _, path = exported["mlp"]
    graph = load_onnx(path)
    for index in ("0", "2"):
        node = node_for(graph, index)
        assert isinstance(node.op, Affine)
        assert np.array_equal(node.op.weight, model[int(index)].weight.detach().numpy())
        assert np.array_equal(node.op.bias, model[int(index)].bias.detach().numpy())


def test_mlp_node_shapes_equal_torch_shapes(exported):
    model, example, path = exported["mlp"]
    assert_shapes_match_torch(load_onnx(path), model, example)


# ---------------------------------------------------------------------- CNN
def test_cnn_parameter_total_counts_bn_weight_bias_mean_and_var(exported):
    model, _, path = exported["cnn"]
    graph = load_onnx(path)
    assert any(isinstance(n.op, BatchNorm) for n in graph)
    assert stored(graph) == torch_parameter_total(model)


def test_cnn_node_shapes_equal_torch_shapes(exported):
    model, example, path = exported["cnn"]
    assert_shapes_match_torch(load_onnx(path), model, example)


def test_cnn_conv_bn_and_linear_arrays_equal_torch_exactly(exported):
    model, _, path = exported["cnn"]
    graph = load_onnx(path)
    conv, bn, fc = node_for(graph, "0"), node_for(graph, "1"), node_for(graph, "6")
    assert isinstance(conv.op, Conv2d) and conv.op.padding == (1, 1)
    assert np.array_equal(conv.op.weight, model[0].weight.detach().numpy())
    assert np.array_equal(conv.op.bias, model[0].bias.detach().numpy())
    for ours, theirs in [("weight", "weight"), ("bias", "bias"), ("mean", "running_mean"),
                         ("var", "running_var")]:
        assert np.array_equal(getattr(bn.op, ours), getattr(model[1], theirs).detach().numpy())
    assert bn.op.axis == 0 and bn.op.eps == pytest.approx(model[1].eps)
    assert np.array_equal(fc.op.weight, model[6].weight.detach().numpy())


def test_cnn_conv_macs_equal_hand_count(exported):
    _, _, path = exported["cnn"]
    graph = load_onnx(path)
    # Conv2d(2 -> 4, 3x3, padding 1) on 8x8: 4*8*8 outputs, each 2*3*3 MACs.
    assert graph.node_counts(node_for(graph, "0"))["macs"] == 4 * 8 * 8 * 2 * 3 * 3


def test_cnn_flatten_module_becomes_ir_flatten(exported):
    _, _, path = exported["cnn"]
    node = node_for(load_onnx(path), "5")
    assert isinstance(node.op, Flatten) and node.shape == (16,)


# ------------------------------------------------------------------ residual
def test_residual_add_joins_block_output_and_skip(exported):
    _, _, path = exported["resnet"]
    graph = load_onnx(path)
    add = node_for(graph, "2")
    assert isinstance(add.op, Add)
    assert set(add.inputs) == {node_for(graph, "2.conv2").name, node_for(graph, "1").name}


def test_residual_node_shapes_and_parameter_total_equal_torch(exported):
    model, example, path = exported["resnet"]
    graph = load_onnx(path)
    assert_shapes_match_torch(graph, model, example)
    assert stored(graph) == torch_parameter_total(model)


def test_global_average_pool_becomes_avgpool_over_the_whole_map(exported):
    _, _, path = exported["resnet"]
    graph = load_onnx(path)
    pool = node_for(graph, "4")
    assert isinstance(pool.op, AvgPool2d)
    assert pool.op.kernel_size == (8, 8) and pool.op.stride == (8, 8) and pool.shape == (4, 1, 1)
    assert [u.op_name for u in graph.users(pool.name)] == ["Flatten"]


# ----------------------------------------------------------------- attention
def test_attention_token_linear_folds_add_into_affine_bias(exported):
    model, _, path = exported["attention"]
    node = node_for(load_onnx(path), "q")
    assert isinstance(node.op, Affine)
    assert [f["op_type"] for f in node.annotations["source"]["folded"]] == ["Add"]
    assert np.array_equal(node.op.weight, model.q.weight.detach().numpy())
    assert np.array_equal(node.op.bias, model.q.bias.detach().numpy())


def test_attention_dynamic_matmul_transpose_scale_softmax_ops(exported):
    _, _, path = exported["attention"]
    graph = load_onnx(path)
    t, mm = node_for(graph, "t"), node_for(graph, "mm")
    assert isinstance(t.op, Transpose) and t.op.perm == (1, 0)
    assert isinstance(mm.op, MatMul) and mm.inputs == (node_for(graph, "q").name, t.name)
    assert isinstance(node_for(graph, "scale").op, Scale)
    assert float(node_for(graph, "scale").op.scale) == 0.125
    assert isinstance(node_for(graph, "sm").op, Softmax)


def test_softmax_over_the_last_torch_dim_normalizes_the_last_per_sample_axis(exported):
    _, _, path = exported["attention"]
    # torch softmax(dim=-1) of a (batch, 5, 5) tensor: axis 1 of the per-sample (5, 5)
    assert node_for(load_onnx(path), "sm").op.axis == 1


def test_attention_node_shapes_equal_torch_shapes(exported):
    model, example, path = exported["attention"]
    assert_shapes_match_torch(load_onnx(path), model, example)


def test_dynamic_matmul_macs_equal_hand_count(exported):
    _, _, path = exported["attention"]
    graph = load_onnx(path)
    # (5, 8) @ (8, 5): 5*5 outputs, 8 MACs each.
    assert graph.node_counts(node_for(graph, "mm"))["macs"] == 5 * 5 * 8


# ------------------------------------------------------- naming and metadata
def test_metadata_source_and_node_annotations(exported):
    _, _, path = exported["cnn"]
    graph = load_onnx(path)
    assert graph.metadata["source"] == {"path": str(path), "format": "onnx"}
    onnx_nodes = {(n.op_type, n.name) for n in onnx.load(str(path)).graph.node}
    for node in graph:
        assert "." not in node.name and "/" not in node.name
        src = node.annotations["source"]
        if not isinstance(node.op, (Input, Output)):
            assert (src["op_type"], src["name"]) in onnx_nodes
    assert len(graph.inputs()) == 1 and len(graph.outputs()) == 1


def test_load_model_dispatches_onnx_files_to_this_loader(exported):
    model, _, path = exported["mlp"]
    graph = load_model(path)
    assert graph.metadata["source"]["format"] == "onnx"
    assert stored(graph) == torch_parameter_total(model)


# ------------------------------------------------------- other valid shapes
def test_symbolic_batch_and_view_by_batch_size_become_flatten(tmp_path):
    class ViewNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3)
            self.fc = nn.Linear(2 * 4 * 4, 3)

        def forward(self, x):
            y = self.conv(x)
            return self.fc(y.view(y.size(0), -1))

    path = export(ViewNet(), (torch.randn(2, 1, 6, 6),), tmp_path / "view.onnx",
                  input_names=["x"], dynamic_axes={"x": {0: "batch"}})
    assert any(n.op_type == "Shape" for n in onnx.load(str(path)).graph.node)
    graph = load_onnx(path)
    assert graph["x"].shape == (1, 6, 6)
    flat = graph.users(node_for(graph, "conv").name)
    assert [type(n.op) for n in flat] == [Flatten] and flat[0].shape == (32,)


def test_conv1d_becomes_ir_conv1d_with_torch_shape(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv1d(3, 5, 3, stride=2, padding=1), nn.ReLU())
    example = torch.randn(1, 3, 11)
    graph = load_onnx(export(model, (example,), tmp_path / "c1d.onnx"))
    conv = node_for(graph, "0")
    assert isinstance(conv.op, Conv1d) and conv.op.stride == (2,)
    assert np.array_equal(conv.op.weight, model[0].weight.detach().numpy())
    assert_shapes_match_torch(graph, model, example)


def test_two_graph_inputs_become_two_input_nodes_joined_by_concat(tmp_path):
    class Two(nn.Module):
        def forward(self, a, b):
            return torch.cat([torch.relu(a), torch.relu(b)], dim=1)

    path = export(Two(), (torch.randn(1, 2, 4), torch.randn(1, 3, 4)), tmp_path / "two.onnx",
                  input_names=["a", "b"])
    graph = load_onnx(path)
    assert sorted(n.name for n in graph.inputs()) == ["a", "b"]
    cat = [n for n in graph if isinstance(n.op, Concat)]
    assert len(cat) == 1 and cat[0].op.axis == 0 and cat[0].shape == (5, 4)


# ---------------------------------------------------------------- bad input
def test_empty_file_is_bad_input_naming_the_file(tmp_path):
    path = tmp_path / "empty.onnx"
    path.write_bytes(b"")
    with pytest.raises(BadInputError, match="empty") as err:
        load_onnx(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_truncated_file_is_bad_input_naming_the_file(exported, tmp_path):
    data = exported["cnn"][2].read_bytes()
    path = tmp_path / "half.onnx"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(BadInputError) as err:
        load_onnx(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_text_file_named_onnx_is_bad_input_naming_the_file(tmp_path):
    path = tmp_path / "notes.onnx"
    path.write_text("this is a text file, not a protobuf\n")
    with pytest.raises(BadInputError) as err:
        load_onnx(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_sin_is_unsupported_naming_file_node_and_op(tmp_path):
    class Sine(nn.Module):
        def forward(self, x):
            return torch.sin(torch.relu(x))

    path = export(Sine(), (torch.randn(1, 4),), tmp_path / "sin.onnx")
    sin = [n for n in onnx.load(str(path)).graph.node if n.op_type == "Sin"][0]
    with pytest.raises(UnsupportedOpError) as err:
        load_onnx(path)
    msg = str(err.value)
    assert str(path) in msg and f"'{sin.name}'" in msg and "(op Sin)" in msg
    assert "supported: " in msg and "Conv" in msg and "\n" not in msg


def test_lstm_is_unsupported_naming_file_node_and_op(tmp_path):
    class Recurrent(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm = nn.LSTM(4, 8)

        def forward(self, x):
            return self.lstm(x)[0]

    path = export(Recurrent(), (torch.randn(3, 1, 4),), tmp_path / "lstm.onnx")
    with pytest.raises(UnsupportedOpError) as err:
        load_onnx(path)
    assert str(path) in str(err.value) and "'/lstm/LSTM' (op LSTM)" in str(err.value)


def test_symbolic_non_batch_dimension_is_bad_input(tmp_path):
    path = export(nn.Sequential(nn.Conv2d(1, 2, 3)), (torch.randn(1, 1, 6, 6),),
                  tmp_path / "dyn.onnx", input_names=["x"],
                  dynamic_axes={"x": {0: "batch", 2: "height"}})
    with pytest.raises(BadInputError, match="height") as err:
        load_onnx(path)
    assert str(path) in str(err.value) and "'x'" in str(err.value)


def test_constant_added_after_relu_is_unsupported_naming_the_add(tmp_path):
    class Shifted(nn.Module):
        def forward(self, x):
            return torch.relu(x) + 1.0

    path = export(Shifted(), (torch.randn(1, 4),), tmp_path / "shift.onnx")
    add = [n for n in onnx.load(str(path)).graph.node if n.op_type == "Add"][0]
    with pytest.raises(UnsupportedOpError) as err:
        load_onnx(path)
    assert str(path) in str(err.value) and f"'{add.name}' (op Add)" in str(err.value)


def test_asymmetric_conv_padding_is_unsupported_naming_the_node():
    weight = helper.make_tensor("w", TensorProto.FLOAT, [2, 1, 3, 3], np.ones(18).tolist())
    conv = helper.make_node("Conv", ["x", "w"], ["y"], name="lopsided", pads=[1, 0, 0, 1])
    model = helper.make_model(
        helper.make_graph(
            [conv], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 6, 6])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 5, 5])], [weight]),
        opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(UnsupportedOpError, match="asymmetric") as err:
        graph_from_onnx(model, origin="lopsided.onnx")
    assert str(err.value).startswith("lopsided.onnx: node 'lopsided' (op Conv)")


def test_transpose_moving_the_batch_axis_is_unsupported(tmp_path):
    class SwapBatch(nn.Module):
        def forward(self, x):
            return torch.relu(x.transpose(0, 1))

    path = export(SwapBatch(), (torch.randn(1, 3, 4),), tmp_path / "swap.onnx")
    with pytest.raises(UnsupportedOpError, match="batch axis") as err:
        load_onnx(path)
    assert str(path) in str(err.value) and "(op Transpose)" in str(err.value)


# ------------------------------------------ hand-built models (ONNX helper)
def _single_node_model(node, x_shape, y_shape, initializers=()):
    return helper.make_model(
        helper.make_graph(
            [node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, y_shape)], list(initializers)),
        opset_imports=[helper.make_opsetid("", 17)])


def test_gemm_without_transb_with_alpha_beta_matches_onnx_reference_output():
    from onnx.reference import ReferenceEvaluator

    rng = np.random.default_rng(0)
    b = rng.standard_normal((6, 3)).astype(np.float32)  # (in, out): transB = 0
    c = rng.standard_normal(3).astype(np.float32)
    node = helper.make_node("Gemm", ["x", "b", "c"], ["y"], name="g", alpha=0.5, beta=2.0)
    model = _single_node_model(node, [1, 6], [1, 3], [
        onnx.numpy_helper.from_array(b, "b"), onnx.numpy_helper.from_array(c, "c")])
    x = rng.standard_normal((1, 6)).astype(np.float32)
    expected = ReferenceEvaluator(model).run(None, {"x": x})[0][0]
    op = graph_from_onnx(model, origin="gemm.onnx")["g"].op
    assert isinstance(op, Affine) and op.weight.shape == (3, 6)
    np.testing.assert_allclose(op.weight @ x[0] + op.bias, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("target, ir_type, ir_shape", [
    ([-1, 32], Flatten, (32,)), ([1, 32], Flatten, (32,)), ([0, 32], Flatten, (32,)),
    ([0, 4, 8], "Reshape", (4, 8)), ([1, -1, 2], "Reshape", (16, 2))])
def test_reshape_keeping_the_batch_axis_becomes_per_sample_op(target, ir_type, ir_shape):
    shape = onnx.numpy_helper.from_array(np.array(target, np.int64), "shape")
    node = helper.make_node("Reshape", ["x", "shape"], ["y"], name="r")
    model = _single_node_model(node, [1, 2, 16], [1] + list(ir_shape), [shape])
    node = graph_from_onnx(model, origin="r.onnx")["r"]
    assert node.op_name == (ir_type if isinstance(ir_type, str) else ir_type.__name__)
    assert node.shape == ir_shape


def test_reshape_that_changes_the_batch_size_is_unsupported():
    shape = onnx.numpy_helper.from_array(np.array([2, 16], np.int64), "shape")
    node = helper.make_node("Reshape", ["x", "shape"], ["y"], name="r")
    model = _single_node_model(node, [1, 2, 16], [2, 16], [shape])
    with pytest.raises(UnsupportedOpError, match="batch") as err:
        graph_from_onnx(model, origin="r.onnx")
    assert str(err.value).startswith("r.onnx: node 'r' (op Reshape)")
