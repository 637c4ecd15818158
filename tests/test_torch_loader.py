"""The torch front end: TorchScript, nmtc checkpoints, pickled modules, fx
tracing of sinabs and nmtc modules, and the error lines users see.

Expected values come from torch itself (parameters, forward hooks), from
sinabs's own simulation, or are derived by hand in the test.
"""
from __future__ import annotations

from typing import Dict, List, Tuple

import numpy as np
import pytest
import torch
from torch import nn
import torch.nn.functional as F

from nmtoolchain.errors import BadInputError, PickleRefusedError, UnsupportedOpError
from nmtoolchain.frontends.torch_loader import (
    graph_from_module, graph_from_torchscript, load_torch_file, save_torchscript)
from nmtoolchain.ir import Graph
from nmtoolchain.models import build_model, save_checkpoint
from nmtoolchain.nn import QCFS, IFNeuron

DIGITS = (1, 8, 8)


# ------------------------------------------------------------------ helpers
@pytest.fixture(scope="module")
def cnn() -> nn.Module:
    """The registry's digits CNN with non-trivial batch-norm statistics and affine terms."""
    torch.manual_seed(0)
    model = build_model("cnn", {"channels": [4, 8]})
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(16, *DIGITS) * 2 + 0.5)
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    return model.eval()


@pytest.fixture(scope="module")
def cnn_graphs(cnn: nn.Module, tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Graph]:
    """The CNN loaded through the three file routes."""
    d = tmp_path_factory.mktemp("cnn")
    save_torchscript(cnn, d / "cnn_script.pt", DIGITS)
    save_checkpoint("cnn", {"channels": [4, 8]}, cnn, d / "cnn_ckpt.pt", DIGITS)
    torch.save(cnn, d / "cnn_pickle.pt")
    return {
        "torchscript": load_torch_file(d / "cnn_script.pt"),
        "checkpoint": load_torch_file(d / "cnn_ckpt.pt"),
        "pickle": load_torch_file(d / "cnn_pickle.pt", allow_pickle=True, input_shape=DIGITS),
    }


def _structure(g: Graph) -> List[Tuple]:
    return [(n.name, n.op_name, n.inputs, n.shape) for n in g]


def _output_shapes(model: nn.Module, x: torch.Tensor) -> Dict[str, Tuple[int, ...]]:
    """Per-sample output shape of every module without children, recorded with hooks."""
    shapes: Dict[str, Tuple[int, ...]] = {}
    handles = []
    for name, m in model.named_modules():
        if name and not list(m.children()):
            handles.append(m.register_forward_hook(
                lambda mod, inp, out, name=name: shapes.__setitem__(name, tuple(out.shape[1:]))))
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return shapes


# ------------------------------------------------------------ the CNN, 3 ways
def test_cnn_gives_identical_ir_through_torchscript_checkpoint_and_pickle(cnn_graphs):
    ref = cnn_graphs["checkpoint"]
    for route in ("torchscript", "pickle"):
        g = cnn_graphs[route]
        assert _structure(g) == _structure(ref), route
        for n in g:
            mine, theirs = n.op.field_values(), ref[n.name].op.field_values()
            assert mine.keys() == theirs.keys()
            for k, v in mine.items():
                if isinstance(v, np.ndarray):
                    np.testing.assert_array_equal(v, theirs[k], err_msg=f"{route} {n.name}.{k}")
                else:
                    assert v == theirs[k], (route, n.name, k)


@pytest.mark.parametrize("route", ["torchscript", "checkpoint", "pickle"])
def test_cnn_ir_weights_equal_the_torch_parameters(cnn, cnn_graphs, route):
    g = cnn_graphs[route]
    ops = [n.op_name for n in g]
    assert ops == ["Input", "Conv2d", "BatchNorm", "ReLU", "MaxPool2d", "Conv2d", "BatchNorm",
                   "ReLU", "MaxPool2d", "Flatten", "Affine", "Output"]
    checked = 0
    for n in g:
        if n.op_name in ("Conv2d", "Affine"):
            m = cnn.get_submodule(n.annotations["source"])
            np.testing.assert_array_equal(n.op.weight, m.weight.detach().numpy())
            np.testing.assert_array_equal(n.op.bias, m.bias.detach().numpy())
            checked += 1
        elif n.op_name == "BatchNorm":
            m = cnn.get_submodule(n.annotations["source"])
            np.testing.assert_array_equal(n.op.mean, m.running_mean.numpy())
            np.testing.assert_array_equal(n.op.var, m.running_var.numpy())
            np.testing.assert_array_equal(n.op.weight, m.weight.detach().numpy())
            np.testing.assert_array_equal(n.op.bias, m.bias.detach().numpy())
            assert n.op.eps == m.eps
            checked += 1
    assert checked == 5


@pytest.mark.parametrize("route", ["torchscript", "checkpoint", "pickle"])
def test_cnn_parameter_total_equals_torch_count(cnn, cnn_graphs, route):
    # torch counts BN running statistics as buffers; so does the IR (apart
    # from the trainable parameters)
    running = sum(m.running_mean.numel() + m.running_var.numel()
                  for m in cnn.modules() if isinstance(m, nn.BatchNorm2d))
    torch_count = sum(p.numel() for p in cnn.parameters())
    assert cnn_graphs[route].totals()["parameters"] == torch_count
    assert cnn_graphs[route].totals()["buffers"] == running


def test_cnn_node_shapes_equal_torch_output_shapes(cnn, cnn_graphs):
    torch_shapes = _output_shapes(cnn, torch.zeros(2, *DIGITS))
    g = cnn_graphs["torchscript"]
    for n in g:
        if n.op_name not in ("Input", "Output"):
            assert n.shape == torch_shapes[n.annotations["source"]], n.name


def test_checkpoint_file_holds_the_documented_fields(cnn, tmp_path):
    path = save_checkpoint("cnn", {"channels": [4, 8]}, cnn, tmp_path / "c.pt", DIGITS)
    raw = torch.load(path, weights_only=True)
    assert raw["nmtc_checkpoint"] == 1 and raw["architecture"] == "cnn"
    assert raw["config"] == {"channels": [4, 8]} and raw["input_shape"] == list(DIGITS)
    assert set(raw["state_dict"]) == set(cnn.state_dict())
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temporary file left


# ------------------------------------------------------------------ sinabs
def _sinabs_snn() -> nn.Module:
    sl = pytest.importorskip("sinabs.layers")
    torch.manual_seed(1)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3), sl.IAFSqueeze(batch_size=1, spike_threshold=2.0, min_v_mem=-1.5),
        sl.SumPool2d(2), nn.Flatten(), nn.Linear(36, 10),
        sl.IAFSqueeze(batch_size=1, spike_threshold=0.5))


def test_sinabs_iaf_becomes_if_with_threshold_compare_and_v_min():
    snn = _sinabs_snn()
    g = graph_from_module(snn, DIGITS)
    ifs = [n for n in g if n.op_name == "IF"]
    assert [n.annotations["source"] for n in ifs] == ["1", "5"]
    for n in ifs:
        layer = snn.get_submodule(n.annotations["source"])
        assert float(n.op.v_threshold) == float(layer.spike_threshold)
        assert n.op.compare == ">="
        assert n.op.reset == "subtract" and n.op.spike == "multi"
    assert float(ifs[0].op.v_min) == -1.5
    assert ifs[1].op.v_min is None
    assert [n.op_name for n in g] == ["Input", "Conv2d", "IF", "SumPool2d", "Flatten", "Affine",
                                      "IF", "Output"]
    assert g["2"].op.kernel_size == (2, 2) and g["2"].op.stride == (2, 2)


def test_sinabs_fires_at_equality_as_the_recorded_compare_says():
    sl = pytest.importorskip("sinabs.layers")
    from sinabs.activation import SingleSpike

    layer = sl.IAF(spike_threshold=1.0, spike_fn=SingleSpike)
    spikes = layer(torch.full((1, 1, 1), 1.0))  # v reaches the threshold exactly
    assert spikes.item() == 1.0
    g = graph_from_module(nn.Sequential(nn.Linear(1, 1), layer), (1,))
    assert g["1"].op.compare == ">=" and g["1"].op.spike == "single"


@pytest.mark.parametrize("norm_input", [True, False])
def test_sinabs_lif_tau_and_r_reproduce_sinabs_membrane(norm_input):
    sl = pytest.importorskip("sinabs.layers")
    layer = sl.LIF(tau_mem=4.0, spike_threshold=1e6, norm_input=norm_input, record_states=True)
    x = torch.tensor([0.5, 1.0, -0.25, 2.0]).reshape(1, 4, 1)
    layer(x)
    sinabs_v = layer.recordings["v_mem"].reshape(-1).tolist()
    node = graph_from_module(nn.Sequential(nn.Linear(1, 1), layer), (1,))["1"]
    assert node.op.discretization == "exponential"
    # tau dv/dt = -v + r x, solved exactly over one step with x held: v <- a v + (1 - a) r x
    a = float(np.exp(-1.0 / node.op.tau))
    v, ours = 0.0, []
    for xt in x.reshape(-1).tolist():
        v = a * v + (1 - a) * float(node.op.r) * xt
        ours.append(v)
    np.testing.assert_allclose(ours, sinabs_v, rtol=1e-5)


# ------------------------------------------------- residual add and attention
class AttentionBlock(nn.Module):
    """x + proj(softmax(h hᵀ) x) with h = qk(x), on (batch, tokens, features)."""

    def __init__(self, d: int = 8) -> None:
        super().__init__()
        self.qk = nn.Linear(d, d)
        self.proj = nn.Linear(d, d)
        self.attn = nn.Softmax(dim=-1)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, D = x.shape
        h = self.qk(x).reshape(B, N, 2, D // 2).permute(0, 2, 1, 3)  # heads
        a = self.attn(h @ h.transpose(-1, -2))
        y = (a @ h).transpose(1, 2).reshape(B, N, D)
        return self.act(self.proj(y) + x)


@pytest.mark.parametrize("route", ["fx", "torchscript"])
def test_attention_add_and_matmul_shapes_equal_what_torch_computes(route):
    model = AttentionBlock().eval()
    seen: Dict[str, Tuple[int, ...]] = {}
    record = lambda key: lambda m, a: seen.__setitem__(key, tuple(a[0].shape[1:]))  # noqa: E731
    hooks = [model.attn.register_forward_pre_hook(record("scores")),
             model.act.register_forward_pre_hook(record("sum"))]
    with torch.no_grad():
        model(torch.randn(3, 5, 8))
    for h in hooks:
        h.remove()
    g = (graph_from_module(model, (5, 8)) if route == "fx"
         else graph_from_torchscript(torch.jit.script(model), (5, 8)))
    adds = [n for n in g if n.op_name == "Add"]
    matmuls = [n for n in g if n.op_name == "MatMul"]
    assert len(adds) == 1 and len(matmuls) == 2
    scores = [n for n in matmuls if g.users(n.name)[0].annotations["source"] == "attn"]
    assert scores[0].shape == tuple(seen["scores"])  # (heads, tokens, tokens)
    assert adds[0].shape == tuple(seen["sum"])
    assert g.users(adds[0].name)[0].op_name == "ReLU"


def test_reshape_that_moves_the_batch_axis_is_refused_naming_the_node():
    class Merge(nn.Module):
        def forward(self, x):
            return x.view(-1, 4)

    with pytest.raises(UnsupportedOpError, match=r"node 'view'.*batch axis 0"):
        graph_from_module(Merge(), (2, 8), origin="m.pt")


# ----------------------------------------------------------- error messages
def test_pickled_module_is_refused_without_consent(cnn, tmp_path):
    path = tmp_path / "net.pt"
    torch.save(cnn, path)
    with pytest.raises(PickleRefusedError) as err:
        load_torch_file(path)
    assert str(err.value) == (
        f"{path}: holds a pickled Python object; unpickling runs code from the file. "
        "Re-run with --allow-code if you trust it")


def test_bare_state_dict_says_it_has_no_architecture_and_the_next_step(cnn, tmp_path):
    path = tmp_path / "weights.pt"
    torch.save(cnn.state_dict(), path)
    with pytest.raises(BadInputError) as err:
        load_torch_file(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}: ") and "\n" not in msg
    assert "does not say which network" in msg and "--arch NAME --config JSON" in msg
    # the next step it names works (outputs checked in tests/test_data_files_and_saving.py)
    g = load_torch_file(path, arch="cnn", config={"channels": [4, 8]})
    assert g.metadata["source"]["format"] == "checkpoint"
    assert tuple(g.inputs()[0].shape) == (1, 8, 8)


def test_truncated_checkpoint_is_bad_input_naming_the_file(cnn, tmp_path):
    path = save_checkpoint("cnn", {"channels": [4, 8]}, cnn, tmp_path / "c.pt", DIGITS)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(BadInputError, match=r"^" + str(path) + r": truncated or corrupt"):
        load_torch_file(path)


def test_unsupported_module_names_its_path_and_type():
    class Recurrent(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4),
                                          nn.GRU(4, 4))

        def forward(self, x):
            return self.features(x)

    with pytest.raises(UnsupportedOpError) as err:
        graph_from_module(Recurrent(), (3, 4), origin="net.pt")
    assert str(err.value).startswith(
        "model 'net.pt': module 'features.3' of type GRU is not supported")


def test_torchscript_without_input_shape_asks_for_the_flag(tmp_path):
    path = tmp_path / "plain.pt"
    torch.jit.save(torch.jit.script(nn.Sequential(nn.Linear(3, 2))), path)
    with pytest.raises(BadInputError) as err:
        load_torch_file(path)
    assert str(err.value).startswith(f"{path}: ") and "--input-shape" in str(err.value)
    assert load_torch_file(path, input_shape=(3,))["0"].shape == (2,)


# ------------------------------------------------------------ nmtc modules
def test_qcfs_forward_equals_the_hand_formula():
    q = QCFS(levels=8, threshold=2.0, shift=0.5)
    x = torch.tensor([-1.0, 0.0, 0.1, 0.2, 0.9, 1.3, 2.0, 5.0])
    # λ/L · clamp(floor(x·L/λ + 1/2), 0, L) = 0.25 · clamp(floor(4x + 0.5), 0, 8)
    expected = [0.0, 0.0, 0.0, 0.25, 1.0, 1.25, 2.0, 2.0]
    assert q(x).tolist() == expected


def test_qcfs_mlp_checkpoint_gives_qcfs_nodes_with_the_learned_threshold(tmp_path):
    cfg = {"sizes": [64, 16, 10], "activation": "qcfs", "levels": 4, "threshold": 3.0}
    model = build_model("mlp", cfg)
    with torch.no_grad():
        model[2].threshold.fill_(2.5)  # as if training moved λ
    g = load_torch_file(save_checkpoint("mlp", cfg, model, tmp_path / "q.pt", DIGITS))
    (node,) = [n for n in g if n.op_name == "QCFS"]
    assert node.op.levels == 4 and float(node.op.threshold) == 2.5 and node.shape == (16,)


def test_if_neuron_compare_decides_firing_at_equality():
    x = torch.full((1, 4, 1), 0.25)  # v = 0.25, 0.5, 0.75, 1.0 (exact in binary)
    assert IFNeuron(1.0, compare=">=")(x)[0, :, 0].tolist() == [0.0, 0.0, 0.0, 1.0]
    assert IFNeuron(1.0, compare=">")(x)[0, :, 0].tolist() == [0.0, 0.0, 0.0, 0.0]
    g = graph_from_module(nn.Sequential(nn.Linear(2, 1), IFNeuron(1.0, compare=">")), (2,))
    assert g["1"].op.compare == ">" and g["1"].op.reset == "subtract"


# ------------------------------------- every handler family, against torch's forward
# Each model below exercises one family of the walkers' op tables (arithmetic,
# shape ops, layers written as functions, aten layers of a traced module,
# control flow); the loaded graph, simulated for one step in float numerics,
# must give what torch's own forward gives on the same input.
def _simulated(g: Graph, x: torch.Tensor) -> np.ndarray:
    from simulators.cycle.interpreter import simulate

    (out,) = simulate(g, x.numpy(), 1).outputs.values()
    return out[:, 0].numpy()


def _load(model: nn.Module, shape: Tuple[int, ...], route: str) -> Graph:
    if route == "fx":
        return graph_from_module(model, shape)
    return graph_from_torchscript(torch.jit.script(model), shape)


def _assert_matches_torch(model: nn.Module, g: Graph, x: torch.Tensor) -> None:
    with torch.no_grad():
        expected = model(x).numpy()
    np.testing.assert_allclose(_simulated(g, x), expected, rtol=1e-5, atol=1e-5)


class Arithmetic(nn.Module):
    """add (with alpha, with a constant), mul, div by constants, integer size arithmetic."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 6)
        self.register_buffer("shift", torch.linspace(-1.0, 1.0, 6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc(x)
        y = torch.add(h, x, alpha=2.0)
        y = y + self.shift
        y = y.mul(0.5)
        y = 3.0 * y
        y = y / 4.0
        half = x.size(-1) // 2  # 3
        return y * (half - 1)


class Shapes(nn.Module):
    """shape reads, permute/transpose/reshape/view/flatten (method and function forms), cat."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 2, 4, 4)
        b = x.shape[0]
        h = x.permute(0, 2, 3, 1).contiguous()  # (B, 4, 4, 2)
        h = torch.reshape(h, (-1, 16, 2))
        h = torch.transpose(h, 1, 2).contiguous()  # (B, 2, 16)
        h = h.view(b, -1)
        g = torch.flatten(torch.permute(x, (0, 1, 3, 2)), 1)
        k = x.reshape(x.size(0), x.dim() * 8)  # (B, 32)
        return torch.cat([h, g, k], dim=1)


class Functional(nn.Module):
    """Layers written as functions: pools, relu, dropout, linear, softmax, matmuls."""

    def __init__(self) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(1)
        self.w = nn.Parameter(torch.randn(6, 8, generator=gen))
        self.b = nn.Parameter(torch.randn(6, generator=gen))
        self.register_buffer("m", torch.randn(6, 3, generator=gen))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 2, 4, 4)
        mx = F.max_pool2d(x, 2)
        av = F.avg_pool2d(x, kernel_size=2, stride=2)
        h = torch.relu(mx) + F.relu(av)
        h = F.dropout(h, 0.5, training=False)
        h = F.linear(torch.flatten(h, 1), self.w, self.b)  # (B, 6)
        s = F.softmax(h, dim=-1)
        q = h.reshape(h.shape[0], 3, 2)
        qq = torch.matmul(q, q.transpose(1, 2)).flatten(1)  # (B, 9)
        return torch.cat([s @ self.m, qq], dim=1)


@pytest.mark.parametrize("route", ["fx", "torchscript"])
@pytest.mark.parametrize("model_cls, shape", [(Arithmetic, (3, 6)), (Shapes, (2, 4, 4)),
                                              (Functional, (2, 4, 4))])
def test_each_op_family_simulates_as_torch_computes(model_cls, shape, route):
    model = model_cls().eval()
    x = torch.randn(3, *shape, generator=torch.Generator().manual_seed(0))
    _assert_matches_torch(model, _load(model, shape, route), x)


class TracedLayers(nn.Module):
    """Conv, batch norm, layer norm and linear layers; traced, TorchScript keeps only their
    tensors, so the walker reads the aten ops of their graphs."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, padding=1, stride=1)
        self.bn = nn.BatchNorm2d(3)
        self.conv1d = nn.Conv1d(3, 2, 3, padding=1)
        self.norm = nn.LayerNorm(16)
        self.fc = nn.Linear(32, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 2, 4, 4)
        h = torch.relu(self.bn(self.conv(x)))
        h = self.conv1d(h.flatten(2))  # (B, 2, 16)
        return self.fc(self.norm(h).flatten(1))


def test_traced_conv_norm_and_linear_layers_simulate_as_torch_computes():
    torch.manual_seed(0)
    model = TracedLayers()
    model.train()
    with torch.no_grad():  # non-trivial running statistics
        model(torch.randn(8, 2, 4, 4) * 2 + 0.5)
    model.eval()
    x = torch.randn(3, 2, 4, 4)
    traced = torch.jit.trace(model, x)
    g = graph_from_torchscript(traced, (2, 4, 4))
    assert {"Conv2d", "Conv1d", "BatchNorm", "LayerNorm", "Affine"} <= {n.op_name for n in g}
    _assert_matches_torch(model, g, x)


class Branching(nn.Module):
    """TorchScript control flow on constants: if/else on the rank, comparisons, asserts."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.flag: bool = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 3 and not self.flag is False:
            x = x.flatten(1)
        if x.size(1) < 8 or x.size(1) != 12:
            raise ValueError("12 features expected")
        y = self.fc(x.reshape(x.shape[0], 3, 4))
        n = int(x.size(1))
        return y * float(n) if n >= 12 else y


def test_torchscript_branches_on_constants_simulate_as_torch_computes():
    model = Branching().eval()
    x = torch.randn(2, 3, 4)
    _assert_matches_torch(model, graph_from_torchscript(torch.jit.script(model), (3, 4)), x)
    with pytest.raises(BadInputError, match="the model raises"):
        graph_from_torchscript(torch.jit.script(model), (2, 4))


class ShapeReads(nn.Module):
    """fx-only shape reads: x.ndim, x.size(), x.mean(dim)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, 4)
        b, c, w = x.size()
        y = x.reshape(b, c * w // x.ndim * 3)
        return torch.cat([y, x.mean(dim=-1), torch.mean(x, 1)], dim=1)


def test_fx_shape_reads_and_mean_simulate_as_torch_computes():
    model = ShapeReads()
    x = torch.randn(2, 3, 4)
    _assert_matches_torch(model, graph_from_module(model, (3, 4)), x)


class Sigmoid(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.block = nn.Sequential(nn.Linear(3, 3))
        self.inner = _SigmoidInner()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(self.block(x))


class _SigmoidInner(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(x)


def test_an_op_outside_the_tables_is_refused_naming_the_op_and_where():
    with pytest.raises(UnsupportedOpError) as fx_err:
        graph_from_module(Sigmoid(), (3,), origin="s.pt")
    assert str(fx_err.value).startswith(
        "model 's.pt': function torch.sigmoid (node 'sigmoid' in module 'inner') is not supported "
        "(supported: ")
    assert "F.relu" in str(fx_err.value) and ".view()" in str(fx_err.value)
    with pytest.raises(UnsupportedOpError) as ts_err:
        graph_from_torchscript(torch.jit.script(Sigmoid()), (3,), origin="s.pt")
    assert str(ts_err.value) == "model 's.pt': op aten::sigmoid in module 'inner' is not supported"
