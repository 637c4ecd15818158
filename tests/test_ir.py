"""The IR: shapes and counts agree with torch, errors name the node, files are deterministic."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from nmtoolchain import ir
from nmtoolchain.errors import BadInputError, IRValidationError


def _single(op, in_shape):
    g = ir.Graph()
    g.add("x", ir.Input(in_shape))
    g.add("n", op, ["x"])
    g.add("y", ir.Output(), ["n"])
    return g.infer_shapes()


conv_cases = st.fixed_dictionaries({
    "cin_per_group": st.integers(1, 3), "groups": st.integers(1, 2), "cout_per_group": st.integers(1, 3),
    "h": st.integers(3, 12), "w": st.integers(3, 12), "kh": st.integers(1, 3), "kw": st.integers(1, 3),
    "sh": st.integers(1, 3), "sw": st.integers(1, 3), "ph": st.integers(0, 2), "pw": st.integers(0, 2),
    "dh": st.integers(1, 2), "dw": st.integers(1, 2)})


@settings(max_examples=60, deadline=None)
@given(conv_cases)
def test_conv2d_shape_synapses_and_macs_match_torch(c):
    cin, cout = c["cin_per_group"] * c["groups"], c["cout_per_group"] * c["groups"]
    # the dilated kernel must fit inside the padded input (torch refuses otherwise)
    assume(c["h"] + 2 * c["ph"] >= c["dh"] * (c["kh"] - 1) + 1)
    assume(c["w"] + 2 * c["pw"] >= c["dw"] * (c["kw"] - 1) + 1)
    kw = dict(stride=(c["sh"], c["sw"]), padding=(c["ph"], c["pw"]),
              dilation=(c["dh"], c["dw"]), groups=c["groups"])
    weight = np.ones((cout, c["cin_per_group"], c["kh"], c["kw"]), np.float32)
    g = _single(ir.Conv2d(weight, **kw), (cin, c["h"], c["w"]))
    ref = F.conv2d(torch.ones(1, cin, c["h"], c["w"]), torch.from_numpy(weight), **kw)
    assert g["n"].shape == tuple(ref.shape[1:])
    counts = g.node_counts(g["n"])
    # conv of an all-ones input with all-ones kernels counts, at each output, the taps
    # that land on real (unpadded) input: the border-aware connection count
    assert counts["synapses"] == int(ref.sum().item())
    # dense MACs: every output times kernel volume, padding taps included
    assert counts["macs"] == ref.numel() * c["cin_per_group"] * c["kh"] * c["kw"]


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 3), st.integers(2, 9), st.integers(2, 9), st.integers(1, 3),
       st.integers(1, 3), st.integers(0, 1))
def test_pooling_shapes_match_torch(c, h, w, k, s, p):
    assume(p <= k // 2 and h + 2 * p >= k and w + 2 * p >= k)  # torch's pooling limits
    x = torch.zeros(1, c, h, w)
    ref_avg = F.avg_pool2d(x, k, s, p)
    ref_max = F.max_pool2d(x, k, s, p)
    assert _single(ir.AvgPool2d(k, s, p), (c, h, w))["n"].shape == tuple(ref_avg.shape[1:])
    assert _single(ir.SumPool2d(k, s, p), (c, h, w))["n"].shape == tuple(ref_avg.shape[1:])
    assert _single(ir.MaxPool2d(k, s, p), (c, h, w))["n"].shape == tuple(ref_max.shape[1:])


def test_sum_pool_synapses_are_window_taps_inside_input():
    # 5x5 input, 2x2 window, stride 2: outputs 2x2, each window fully inside -> 16 taps
    g = _single(ir.SumPool2d(2), (3, 5, 5))
    assert g.node_counts(g["n"])["synapses"] == 3 * 16


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(1, 4), min_size=1, max_size=4), st.data())
def test_flatten_transpose_reshape_match_torch(shape, data):
    t = torch.zeros(1, *shape)
    n = len(shape)
    a = data.draw(st.integers(0, n - 1))
    b = data.draw(st.integers(a, n - 1))
    assert _single(ir.Flatten(a, b), tuple(shape))["n"].shape == tuple(
        torch.flatten(t, a + 1, b + 1).shape[1:])
    perm = data.draw(st.permutations(list(range(n))))
    assert _single(ir.Transpose(tuple(perm)), tuple(shape))["n"].shape == tuple(
        t.permute(0, *[p + 1 for p in perm]).shape[1:])
    assert _single(ir.Reshape((-1,)), tuple(shape))["n"].shape == (int(np.prod(shape)),)


def test_attention_matmuls_match_torch_shapes():
    g = ir.Graph()
    g.add("q", ir.Input((4, 16, 8)))  # heads, tokens, head dim
    g.add("k", ir.Input((4, 16, 8)))
    g.add("kt", ir.Transpose((0, 2, 1)), ["k"])
    g.add("s", ir.MatMul(), ["q", "kt"])
    g.add("v", ir.MatMul(), ["s", "k"])
    g.add("o", ir.Output(), ["v"])
    g.infer_shapes()
    q = torch.zeros(1, 4, 16, 8)
    ref_s = q @ q.transpose(-1, -2)
    assert g["s"].shape == tuple(ref_s.shape[1:])
    assert g["v"].shape == tuple((ref_s @ q).shape[1:])
    # MACs of Q·Kᵀ by hand: 4 heads x 16 x 16 outputs x 8 products
    assert g.node_counts(g["s"])["macs"] == 4 * 16 * 16 * 8


def test_linear_on_tokens_shares_weights_across_tokens():
    g = _single(ir.Affine(np.zeros((5, 3))), (7, 3))
    assert g["n"].shape == (7, 5)
    c = g.node_counts(g["n"])
    assert c["parameters"] == 5 * 3  # an all-zero bias (bias=None) is not a parameter
    assert c["synapses"] == 7 * 5 * 3


def test_shape_error_names_node_and_shapes():
    g = ir.Graph()
    g.add("x", ir.Input((10,)))
    g.add("fc1", ir.Affine(np.zeros((4, 12))), ["x"])
    with pytest.raises(IRValidationError, match=r"node 'fc1' \(Affine\).*\(10,\).*12 input features"):
        g.infer_shapes()


def test_bad_fields_are_rejected_when_added_naming_the_node():
    g = ir.Graph()
    g.add("x", ir.Input((2, 8, 8)))
    with pytest.raises(IRValidationError, match=r"node 'c1' \(Conv2d\).*groups=3"):
        g.add("c1", ir.Conv2d(np.zeros((4, 1, 3, 3)), groups=3), ["x"])
    with pytest.raises(IRValidationError, match=r"node 'n1' \(IF\).*reset"):
        g.add("n1", ir.IF(reset="bounce"), ["x"])
    with pytest.raises(IRValidationError, match="already exists"):
        g.add("x", ir.Input((1,)))
    with pytest.raises(IRValidationError, match=r"'add' \(Add\) needs two or more inputs"):
        g.add("add", ir.Add(), ["x"])


def test_unknown_input_and_stateless_cycle_are_errors():
    g = ir.Graph()
    g.add("x", ir.Input((3,)))
    g.add("a", ir.Add(), ["x", "b"])
    g.add("b", ir.ReLU(), ["a"])
    with pytest.raises(IRValidationError, match="cycle with no neuron"):
        g.infer_shapes()
    g2 = ir.Graph()
    g2.add("x", ir.Input((3,)))
    g2.add("r", ir.ReLU(), ["ghost"])
    with pytest.raises(IRValidationError, match="'r' reads unknown node 'ghost'"):
        g2.infer_shapes()


def test_recurrent_cycle_through_a_neuron_is_allowed():
    g = ir.Graph()
    g.add("x", ir.Input((3,)))
    g.add("w_in", ir.Linear(np.eye(3)), ["x"])
    g.add("w_rec", ir.Linear(np.eye(3)), ["lif"])
    g.add("sum", ir.Add(), ["w_in", "w_rec"])
    g.add("lif", ir.LIF(tau=2.0), ["sum"])
    g.add("y", ir.Output(), ["lif"])
    order, back = g.order()
    assert back == {("lif", "w_rec")}
    assert order.index("sum") < order.index("lif")
    assert g.infer_shapes()["y"].shape == (3,)


def _random_graph(seed: int) -> ir.Graph:
    rng = np.random.default_rng(seed)
    g = ir.Graph({"dt": 1.0, "note": "test"})
    g.add("x", ir.Input((2, 6, 6)))
    g.add("c", ir.Conv2d(rng.normal(size=(3, 2, 3, 3)), rng.normal(size=3), padding=1), ["x"])
    g.add("n", ir.IF(v_threshold=rng.uniform(0.5, 1.5, size=(3, 1, 1)), v_min=-1.0, compare=">="),
          ["c"], annotations={"quant": {"weight_bits": 8, "exp": -3}})
    g.add("p", ir.SumPool2d(2), ["n"])
    g.add("f", ir.Flatten(), ["p"])
    g.add("l", ir.Affine(rng.normal(size=(4, 27)), delay=np.arange(4)[:, None]), ["f"])
    g.add("y", ir.Output(), ["l"])
    return g.infer_shapes()


def test_save_load_round_trip_preserves_everything(tmp_path):
    g = _random_graph(0)
    path = ir.save_graph(g, tmp_path / "g.nmir")
    h = ir.load_graph(path).infer_shapes()
    assert list(h.nodes) == list(g.nodes) and h.metadata == g.metadata
    for name in g.nodes:
        a, b = g[name], h[name]
        assert a.op_name == b.op_name and a.inputs == b.inputs and a.shape == b.shape
        assert a.annotations == b.annotations
        fa, fb = a.op.field_values(), b.op.field_values()
        assert fa.keys() == fb.keys()
        for k in fa:
            if isinstance(fa[k], np.ndarray):
                np.testing.assert_array_equal(fa[k], fb[k])
                assert fa[k].dtype == fb[k].dtype
            else:
                assert fa[k] == fb[k]


def test_saving_is_byte_deterministic(tmp_path):
    a = ir.save_graph(_random_graph(1), tmp_path / "a.nmir").read_bytes()
    b = ir.save_graph(_random_graph(1), tmp_path / "b.nmir").read_bytes()
    assert a == b
    assert ir.graph_to_bytes(ir.graph_from_bytes(a)) == a


def test_corrupt_ir_file_is_bad_input_naming_it(tmp_path):
    data = ir.graph_to_bytes(_random_graph(2))
    p = tmp_path / "cut.nmir"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(BadInputError, match="cut.nmir"):
        ir.load_graph(p)


def test_every_nir_primitive_has_an_ir_op():
    nir_primitives = {"Affine", "Linear", "Scale", "Conv1d", "Conv2d", "SumPool2d", "AvgPool2d",
                      "Flatten", "Delay", "I", "IF", "LI", "LIF", "CubaLIF", "CubaLI", "Threshold",
                      "Input", "Output"}
    mapped = {cls.nir_type for cls in ir.OP_REGISTRY.values() if cls.nir_type}
    assert nir_primitives <= mapped


def test_bias_and_mean_shapes_and_simulation_match_torch():
    from simulators.cycle import simulate

    b = np.arange(4, dtype=np.float32).reshape(1, 4)
    g = ir.Graph()
    g.add("x", ir.Input((3, 4)))
    g.add("b", ir.Bias(b), ["x"])
    g.add("m", ir.Mean(0), ["b"])
    g.add("y", ir.Output(), ["m"])
    g.infer_shapes()
    assert g["m"].shape == (4,)
    x = torch.randn(2, 3, 4)
    out = simulate(g, x, 1).outputs["y"][:, 0]
    assert torch.allclose(out, (x + torch.from_numpy(b)).mean(1))
    with pytest.raises(IRValidationError, match="'bad' \\(Bias\\)"):
        g2 = ir.Graph()
        g2.add("x", ir.Input((3,)))
        g2.add("bad", ir.Bias(np.zeros(5)), ["x"])
        g2.infer_shapes()


def test_spike_mask_module_loads_as_ir_spike_mask_with_its_role():
    from nmtoolchain.frontends.torch_loader import graph_from_module
    from nmtoolchain.nn import SpikeMask

    model = torch.nn.Sequential(torch.nn.Linear(4, 4), SpikeMask(0.75, role="q"))
    g = graph_from_module(model, (4,))
    masks = [n for n in g if n.op_name == "SpikeMask"]
    assert len(masks) == 1 and masks[0].op.p == 0.75
    assert masks[0].annotations["rsm_role"] == "q"
    # p = 0.75 drops about three quarters, fresh every call, no rescaling
    x = torch.ones(20000)
    kept = float(SpikeMask(0.75)(x).mean())
    assert 0.23 < kept < 0.27 and set(SpikeMask(0.75)(x).unique().tolist()) <= {0.0, 1.0}
