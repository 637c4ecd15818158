"""Loihi 2 export: pooling folding, the netx writer, `nmtc export --target loihi2`
and `nmtc verify`.

Referees: torch (pooling folds), the file read back with h5py and with the netx
loader, and Lava itself (fixed_pt), which runs Intel's original networks and our
re-exports and must give identical spikes.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from exporters.loihi2 import export_netx, plan_netx
from nmtoolchain.cli import main
from nmtoolchain.errors import NotExpressibleError, UnsupportedOpError
from nmtoolchain.frontends.netx_loader import load_netx
from nmtoolchain.ir import (
    IF, Affine, AvgPool2d, Conv2d, CubaLIF, Flatten, Graph, Input, MatMul, Output, SumPool2d,
    save_graph)
from nmtoolchain.passes import fold_pooling
from nmtoolchain.numerics.loihi import LoihiCubaNeuron

needs_lava = pytest.mark.skipif(importlib.util.find_spec("lava") is None,
                                reason="lava-nc / lava-dl are not installed")


def run_cli(args, capfd):
    code = main([str(a) for a in args])
    out, err = capfd.readouterr()
    return code, out, err


# ------------------------------------------------------------------ graphs
def _cuba(g, name, src, vth, bias=0, idecay=4096, vdecay=512):
    b = np.asarray(bias)
    g.add(name, CubaLIF(tau_syn=0.0, tau_mem=1.0, v_threshold=float(vth),
                        v_bias=b.astype(np.float32)), [src],
          numerics=LoihiCubaNeuron(i_decay=idecay, v_decay=vdecay, v_th_mant=vth,
                                   bias_mant=b.astype(int), bias_exp=6, ref_delay=1))


def hand_mlp(seed=1) -> Graph:
    """64 -> 32 -> 10, integer weights and biases set by hand (a quantized graph)."""
    rng = np.random.default_rng(seed)
    g = Graph({"source": {"path": "mlp.nmir"}})
    g.add("in", Input((64,)))
    g.add("fc1", Affine(rng.integers(-60, 80, (32, 64)).astype(np.float32)), ["in"])
    _cuba(g, "lif1", "fc1", 100, rng.integers(-5, 20, 32))
    g.add("fc2", Affine(rng.integers(-80, 80, (10, 32)).astype(np.float32)), ["lif1"])
    _cuba(g, "lif2", "fc2", 80, idecay=1024, vdecay=256)
    g.add("out", Output(), ["lif2"])
    return g.infer_shapes()


def hand_cnn(seed=2) -> Graph:
    """1x8x8 -> conv 4 -> SumPool 2 -> conv 6 -> flatten -> dense 10, quantized by hand."""
    rng = np.random.default_rng(seed)
    g = Graph({"source": {"path": "cnn.nmir"}})
    g.add("in", Input((1, 8, 8)))
    g.add("c1", Conv2d(rng.integers(-40, 60, (4, 1, 3, 3)).astype(np.float32), None, 1, 1),
          ["in"])
    _cuba(g, "l1", "c1", 60, rng.integers(-3, 8, (4, 1, 1)))
    g.add("pool", SumPool2d(2, 2), ["l1"])
    g.add("c2", Conv2d(rng.integers(-30, 40, (6, 4, 3, 3)).astype(np.float32), None, 1, 1),
          ["pool"])
    _cuba(g, "l2", "c2", 70)
    g.add("flat", Flatten(), ["l2"])
    g.add("fc", Affine(rng.integers(-50, 50, (10, 96)).astype(np.float32)), ["flat"])
    _cuba(g, "l3", "fc", 60)
    g.add("out", Output(), ["l3"])
    return g.infer_shapes()


def float_if_mlp(seed=0) -> Graph:
    """A float IF network on digits' 1x8x8 input (quantized by the export)."""
    rng = np.random.default_rng(seed)
    g = Graph({"source": {"path": "float_mlp.nmir"}})
    g.add("in", Input((1, 8, 8)))
    g.add("flat", Flatten(), ["in"])
    g.add("fc1", Affine(rng.normal(0, .3, (32, 64)).astype(np.float32),
                        rng.normal(0, .1, 32).astype(np.float32)), ["flat"])
    g.add("if1", IF(v_threshold=1.0), ["fc1"])
    g.add("fc2", Affine(rng.normal(0, .3, (10, 32)).astype(np.float32)), ["if1"])
    g.add("if2", IF(v_threshold=1.0), ["fc2"])
    g.add("out", Output(), ["if2"])
    return g.infer_shapes()


# ------------------------------------------------------------------ pooling folds
def _pool_conv_graph(pool_cls, shape, k, t, w, stride, padding, dilation, groups):
    g = Graph()
    g.add("in", Input(shape))
    g.add("pool", pool_cls(k, t, 0), ["in"])
    g.add("conv", Conv2d(w, None, stride, padding, dilation, groups), ["pool"])
    g.add("out", Output(), ["conv"])
    return g.infer_shapes()


@pytest.mark.parametrize("pool_cls,shape,k,t,kernel,stride,padding,dilation,groups", [
    (AvgPool2d, (4, 8, 8), 2, 2, 3, 1, 1, 1, 1),      # the common case: k*K kernel, stride k
    (SumPool2d, (4, 12, 10), 2, 2, 3, 2, 1, 1, 2),    # conv stride and groups
    (AvgPool2d, (4, 9, 11), 3, 3, 2, 1, 0, 1, 1),     # input not a multiple of k, no padding
    (SumPool2d, (4, 12, 12), 2, 1, 3, 1, 0, 2, 1),    # overlapping windows, dilated conv
    (AvgPool2d, (2, 16, 12), 4, 4, 2, 1, 1, 1, 2),
])
def test_folded_pool_and_conv_equal_torch_pool_then_conv(pool_cls, shape, k, t, kernel, stride,
                                                         padding, dilation, groups):
    rng = np.random.default_rng(0)
    w = rng.standard_normal((6, shape[0] // groups, kernel, kernel)).astype(np.float32)
    g = _pool_conv_graph(pool_cls, shape, k, t, w, stride, padding, dilation, groups)
    folded = fold_pooling(g)
    assert "pool" not in folded.nodes and "pool" in g.nodes  # the input graph is unchanged
    conv = folded["conv"].op
    x = torch.as_tensor(rng.standard_normal((3,) + shape))
    pooled = F.avg_pool2d(x, k, t)
    if pool_cls is SumPool2d:
        pooled = pooled * (k * k)
    want = F.conv2d(pooled, torch.as_tensor(w, dtype=torch.float64), stride=stride,
                    padding=padding, dilation=dilation, groups=groups)
    got = F.conv2d(x, torch.as_tensor(conv.weight, dtype=torch.float64), stride=conv.stride,
                   padding=conv.padding, dilation=conv.dilation, groups=conv.groups)
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_common_fold_is_kernel_repeated_k_times_with_stride_and_padding_times_k():
    w = np.arange(2 * 1 * 3 * 3, dtype=np.float32).reshape(2, 1, 3, 3)
    g = _pool_conv_graph(AvgPool2d, (1, 8, 8), 2, 2, w, 1, 1, 1, 1)
    conv = fold_pooling(g)["conv"].op
    want = np.repeat(np.repeat(w, 2, axis=2), 2, axis=3) / 4.0  # W[o,i,a,b] = K[o,i,a//2,b//2]/4
    np.testing.assert_array_equal(conv.weight, want)
    assert conv.stride == (2, 2) and conv.padding == (2, 2)


def test_pool_then_flatten_then_dense_folds_into_the_dense_weights():
    rng = np.random.default_rng(3)
    g = Graph()
    g.add("in", Input((3, 7, 6)))
    g.add("pool", AvgPool2d((2, 3), (2, 3), (1, 0)), ["in"])  # padded, rectangular window
    g.add("flat", Flatten(), ["pool"])
    w = rng.standard_normal((5, 3 * 4 * 2)).astype(np.float32)
    g.add("fc", Affine(w, rng.standard_normal(5).astype(np.float32)), ["flat"])
    g.add("out", Output(), ["fc"])
    g.infer_shapes()
    folded = fold_pooling(g)
    x = torch.as_tensor(rng.standard_normal((4, 3, 7, 6)))
    pooled = F.avg_pool2d(x, (2, 3), (2, 3), (1, 0))  # torch counts padding as zeros too
    want = F.linear(pooled.flatten(1), torch.as_tensor(w, dtype=torch.float64),
                    torch.as_tensor(g["fc"].op.bias, dtype=torch.float64))
    fc = folded["fc"].op
    got = F.linear(x.flatten(1), torch.as_tensor(fc.weight, dtype=torch.float64),
                   torch.as_tensor(fc.bias, dtype=torch.float64))
    torch.testing.assert_close(got, want)
    assert folded["flat"].shape == (3 * 7 * 6,)


def test_pool_before_a_neuron_becomes_a_depthwise_convolution():
    g = Graph()
    g.add("in", Input((3, 6, 6)))
    g.add("pool", SumPool2d(2, 2), ["in"])
    g.add("if", IF(v_threshold=1.0), ["pool"])
    g.add("out", Output(), ["if"])
    g.infer_shapes()
    conv = fold_pooling(g)["pool"].op
    x = torch.rand(2, 3, 6, 6, dtype=torch.float64)
    got = F.conv2d(x, torch.as_tensor(conv.weight, dtype=torch.float64), stride=conv.stride,
                   groups=conv.groups)
    torch.testing.assert_close(got, F.avg_pool2d(x, 2) * 4)


def test_pool_feeding_an_output_cannot_fold_and_the_error_names_it():
    g = Graph()
    g.add("in", Input((2, 4, 4)))
    g.add("pool_out", SumPool2d(2, 2), ["in"])
    g.add("out", Output(), ["pool_out"])
    g.infer_shapes()
    with pytest.raises(NotExpressibleError, match="'pool_out'.*'out' \\(Output\\)"):
        fold_pooling(g)


def test_fold_that_would_read_pixels_where_the_conv_read_padding_is_refused():
    w = np.ones((2, 2, 3, 3), np.float32)  # 9 rows pooled by 2 leave row 8 out; conv pads 1
    g = _pool_conv_graph(SumPool2d, (2, 9, 8), 2, 2, w, 1, 1, 1, 1)
    with pytest.raises(NotExpressibleError, match="'pool'.*'conv'.*height"):
        fold_pooling(g)


# ------------------------------------------------------------------ the netx file
def _ds(f, key):
    return f[key][()]


def test_dense_file_layout_is_what_netx_reads(tmp_path):
    g = hand_mlp()
    path = tmp_path / "mlp.net"
    export_netx(g, path)
    with h5py.File(path, "r") as f:
        assert sorted(f["layer"].keys()) == ["0", "1", "2"]
        for i, t in enumerate(("input", "dense", "dense")):
            ty = f[f"layer/{i}/type"]
            assert ty.dtype == np.dtype("S10") and ty.shape == (1,) and ty[0] == t.encode()
        assert _ds(f, "layer/0/shape").tolist() == [64] and "neuron" not in f["layer/0"]
        np.testing.assert_array_equal(_ds(f, "layer/1/weight"), g["fc1"].op.weight)  # (out, in)
        np.testing.assert_array_equal(_ds(f, "layer/1/bias"), g["lif1"].numerics.bias_mant)
        n = f["layer/2/neuron"]
        assert sorted(n.keys()) == ["iDecay", "refDelay", "type", "vDecay", "vThMant"]
        assert (_ds(f, "layer/2/neuron/type")[0], int(n["iDecay"][()]), int(n["vDecay"][()]),
                int(n["vThMant"][()]), int(n["refDelay"][()])) == (b"CUBA", 1024, 256, 80, 1)
        assert "bias" not in f["layer/2"]  # zero bias is not written


def test_conv_file_layout_has_chw_shapes_hw_pairs_and_channel_bias(tmp_path):
    g = fold_pooling(hand_cnn())
    path = tmp_path / "cnn.net"
    export_netx(g, path)
    with h5py.File(path, "r") as f:
        types = [_ds(f, f"layer/{i}/type")[0].decode() for i in range(len(f["layer"]))]
        assert types == ["input", "conv", "conv", "flatten", "dense"]
        assert _ds(f, "layer/1/shape").tolist() == [4, 8, 8]
        assert _ds(f, "layer/1/weight").shape == (4, 1, 3, 3)
        folded = g["c2"].op  # the pool folded: 6x4x6x6 kernel, stride 2, padding 2
        np.testing.assert_array_equal(_ds(f, "layer/2/weight"), folded.weight)
        assert (_ds(f, "layer/2/stride").tolist(), _ds(f, "layer/2/padding").tolist(),
                _ds(f, "layer/2/dilation").tolist(), int(_ds(f, "layer/2/groups"))) == \
            ([2, 2], [2, 2], [1, 1], 1)
        np.testing.assert_array_equal(_ds(f, "layer/1/bias"),
                                      g["l1"].numerics.bias_mant.reshape(4))


@pytest.mark.parametrize("make", [hand_mlp, lambda: fold_pooling(hand_cnn())],
                         ids=["mlp", "cnn"])
def test_loading_the_export_gives_back_the_graph_values(tmp_path, make):
    g = make()
    plan = export_netx(g, tmp_path / "x.net")
    back = load_netx(tmp_path / "x.net")
    for ir_name, rec in plan.record_names().items():
        a, b = g[ir_name], back[rec]
        for k in ("i_decay", "v_decay", "v_th_mant"):
            assert getattr(a.numerics, k) == getattr(b.numerics, k)
        np.testing.assert_array_equal(np.broadcast_to(a.numerics.bias_mant, a.shape),
                                      np.broadcast_to(b.numerics.bias_mant, b.shape))
        syn_a, syn_b = g[a.inputs[0]], back[b.inputs[0]]
        np.testing.assert_array_equal(syn_a.op.weight, syn_b.op.weight)
        assert getattr(syn_a.op, "stride", None) == getattr(syn_b.op, "stride", None)


def test_export_bytes_are_identical_when_written_twice(tmp_path):
    g = fold_pooling(hand_cnn())
    export_netx(g, tmp_path / "a.net")
    time.sleep(1.1)  # HDF5 stores object times with 1-second resolution when it stores them
    export_netx(g, tmp_path / "b.net")
    assert (tmp_path / "a.net").read_bytes() == (tmp_path / "b.net").read_bytes()


def test_matmul_is_refused_naming_the_node_before_any_file_is_written(tmp_path):
    g = Graph()
    g.add("q", Input((4, 8)))
    g.add("k", Input((8, 4)))
    g.add("attn_scores", MatMul(), ["q", "k"])
    g.add("out", Output(), ["attn_scores"])
    with pytest.raises(UnsupportedOpError, match="'attn_scores' \\(op MatMul\\)"):
        export_netx(g.infer_shapes(), tmp_path / "x.net")
    assert list(tmp_path.iterdir()) == []


def _single_dense(w):
    g = Graph()
    g.add("in", Input((w.shape[1],)))
    g.add("fc", Affine(w.astype(np.float32)), ["in"])
    _cuba(g, "lif", "fc", 10)
    g.add("out", Output(), ["lif"])
    return g.infer_shapes()


def test_dense_matrix_whose_largest_weight_is_zero_is_refused_naming_it(tmp_path):
    # netx's optimize_weight_bits treats max == 0 with negatives as mixed sign
    # (reference/loihi_lava.md §1.4); Lava then corrupts the weights.
    w = np.array([[0, -3, -5], [-1, -2, 0]])
    with pytest.raises(NotExpressibleError, match="'fc'.*largest is exactly 0"):
        export_netx(_single_dense(w), tmp_path / "x.net")
    assert list(tmp_path.iterdir()) == []


def test_weights_netx_would_clip_are_refused():
    with pytest.raises(NotExpressibleError, match="'fc'.*\\[-256, 254\\]"):
        plan_netx(_single_dense(np.array([[255, -1, 3]])))


def test_float_weights_are_refused_with_advice_to_quantize():
    with pytest.raises(NotExpressibleError, match="'fc'.*not integers.*quantize"):
        plan_netx(_single_dense(np.array([[0.5, -1.0, 2.0]])))


# ------------------------------------------------------------------ Intel's networks
INTEL = {
    "tiny": ("tiny.net", None), "mnist": ("mnist.net", None),
    "pilotnet_lif": ("gts/pilotnet_lif/network.net", 3),
    "pilotnet_sdnn": ("gts/pilotnet_sdnn/network.net", None),
    "ntidigits": ("gts/ntidigits/ntidigits.net", 5),
}


def _signature(graph):
    """Values of every node in network order (names aside)."""
    out = []
    for n in graph.topological_order():
        fields = {k: v for k, v in n.op.field_values().items() if not isinstance(v, np.ndarray)}
        numerics = None if n.numerics is None else n.numerics.to_dict()  # every typed field
        process = n.annotations.get("netx_import", {}).get("process")  # SDNN process kind
        out.append((n.op_name, n.shape, (numerics, process), fields, n.op.arrays()))
    return out


@pytest.mark.parametrize("net", sorted(INTEL))
def test_intel_network_reloads_with_the_same_values_after_export(intel_netx, tmp_path, net):
    rel, n_layers = INTEL[net]
    src = load_netx(intel_netx / rel, num_layers=n_layers)
    export_netx(src, tmp_path / "x.net")
    a, b = _signature(src), _signature(load_netx(tmp_path / "x.net"))
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x[:4] == y[:4]
        assert x[4].keys() == y[4].keys()
        for k in x[4]:
            np.testing.assert_array_equal(x[4][k], y[4][k])


def _intel_drive(root, net):
    if net == "tiny":
        return np.load(root / "gts/tinynet/input_bias.npy").transpose(2, 1, 0), 8, 16
    if net == "mnist":
        from sklearn.datasets import load_digits

        from simulators.lava_runner import input_drive_from_image

        img = np.zeros((28, 28))
        img[2:26, 2:26] = np.kron(load_digits().images[3] / 16.0, np.ones((3, 3)))
        return input_drive_from_image(root / "mnist.net", img.reshape(-1)), 8, None
    if net == "pilotnet_lif":
        return np.load(root / "gts/pilotnet_lif/image.npy").transpose(2, 1, 0), 4, 16
    if net == "pilotnet_sdnn":
        return np.load(root / "gts/pilotnet_sdnn/input.npy").transpose(3, 2, 1, 0)[:5], 5, None
    steps = 60
    spikes = np.load(root / "gts/ntidigits/input.npy")[:, :steps].T.reshape(steps, 1, 1, 64)
    return spikes, steps, None


@needs_lava
@pytest.mark.parametrize("net", sorted(INTEL))
def test_intel_network_and_its_reexport_give_identical_spikes_in_lava(intel_netx, tmp_path, net):
    from simulators.lava_runner import run_netx_in_lava

    rel, n_layers = INTEL[net]
    export_netx(load_netx(intel_netx / rel, num_layers=n_layers), tmp_path / "x.net")
    drive, steps, reset = _intel_drive(intel_netx, net)
    orig = run_netx_in_lava(intel_netx / rel, drive, steps, num_layers=n_layers,
                            reset_interval=reset)
    ours = run_netx_in_lava(tmp_path / "x.net", drive, steps, reset_interval=reset)
    assert list(orig.outputs) == list(ours.outputs)
    for name in orig.outputs:
        np.testing.assert_array_equal(ours.outputs[name], orig.outputs[name], err_msg=name)
    assert sum(int(np.count_nonzero(v)) for v in orig.outputs.values()) > 0  # not vacuous


def _hand_dense_rec(src: Path, rng: np.random.Generator) -> None:
    """A dense_rec file written by hand with h5py (reference/loihi_lava.md §1.2)."""
    with h5py.File(src, "w") as f:
        g = f.create_group("layer/0")
        g.create_dataset("type", (1,), "S10", [b"input"])
        g["shape"] = np.array([20])
        g = f.create_group("layer/1")
        g.create_dataset("type", (1,), "S10", [b"dense_rec"])
        g["shape"] = np.array([12])
        g["weight"] = rng.integers(-50, 90, (12, 20)).astype("f4")
        g["weight_rec"] = rng.integers(-40, 40, (12, 12)).astype("f4")
        g["bias"] = rng.integers(-3, 9, 12).astype("f4")
        n = g.create_group("neuron")
        n["type"], n["iDecay"], n["vDecay"], n["vThMant"], n["refDelay"] = b"CUBA", 1024, 512, 60, 1


@needs_lava
def test_recurrent_layer_reexported_gives_the_same_spikes_in_lava(tmp_path):
    from simulators.lava_runner import run_netx_in_lava

    rng = np.random.default_rng(4)
    src = tmp_path / "hand_rec.net"
    _hand_dense_rec(src, rng)
    plan = export_netx(load_netx(src), tmp_path / "re.net")
    assert [la.type for la in plan.layers] == ["input", "dense_rec"]
    with h5py.File(tmp_path / "re.net", "r") as f:
        with h5py.File(src, "r") as orig:
            np.testing.assert_array_equal(f["layer/1/weight_rec"][()],
                                          orig["layer/1/weight_rec"][()])
    x = (rng.random((30, 20)) < 0.3).astype(int)
    a, b = run_netx_in_lava(src, x, 30), run_netx_in_lava(tmp_path / "re.net", x, 30)
    np.testing.assert_array_equal(b.outputs["layer1_neuron"], a.outputs["layer1_neuron"])
    assert a.outputs["layer1_neuron"].sum() > 0


@needs_lava
def test_recurrent_layer_simulates_like_lava_and_its_export_verifies(tmp_path):
    """Lava's Dense sends before it receives, so a spike at step t reaches its own
    layer's u at step t + 1 through the recurrent synapses: nmtc's loihi numerics
    give Lava's spikes at every step, and the export's verify says identical."""
    from nmtoolchain.targets.loihi2 import export_loihi2
    from exporters.loihi2.verify import verify_export
    from simulators.cycle import Simulator
    from simulators.lava_runner import run_netx_in_lava

    rng = np.random.default_rng(4)
    src = tmp_path / "hand_rec.net"
    _hand_dense_rec(src, rng)
    x = (rng.random((30, 20)) < 0.3).astype(np.float32)
    lava = run_netx_in_lava(src, x, 30).outputs["layer1_neuron"]
    graph = load_netx(src)
    res = Simulator(graph, "loihi", record="neurons").run(x[None], 30)
    ours = res.recorded["layer1_neuron"][0].numpy()
    np.testing.assert_array_equal(ours, lava)
    assert lava.sum() > 0
    w_rec = graph["layer1_recurrent"].op.weight
    # every spike is delivered to each of its recurrent synapses (all 12 targets)
    assert res.counts.total("synops", ["layer1_recurrent"]) == lava.sum() * w_rec.shape[0]
    exp = export_loihi2(src, tmp_path / "rec.loihi2")
    import json

    mapping = json.loads((exp.directory / "mapping.json").read_text())
    (layer,) = mapping["layers"]  # placed: the recurrent synapses on its core
    assert layer["recurrent"] == "layer1_recurrent"
    assert layer["totals"]["input_axons"] == 20 + 12  # the input's and the layer's own neurons
    np.savez(tmp_path / "x.npz", x=x[None], y=np.zeros(1, int))
    ver = verify_export(exp.directory, data=tmp_path / "x.npz", steps=30)
    assert ver.identical, ver.lines()


@needs_lava
def test_per_neuron_conv_bias_is_written_in_lava_order_and_runs_as_the_graph(tmp_path):
    from simulators.cycle import Simulator
    from simulators.lava_runner import run_netx_in_lava

    rng = np.random.default_rng(5)
    g = Graph()
    g.add("in", Input((2, 6, 5)))
    g.add("c", Conv2d(rng.integers(-30, 50, (3, 2, 3, 2)).astype(np.float32), None, (1, 2),
                      (1, 0)), ["in"])
    _cuba(g, "n", "c", 40, rng.integers(-5, 10, (3, 6, 2)))  # one bias per neuron
    g.add("out", Output(), ["n"])
    g.infer_shapes()
    export_netx(g, tmp_path / "cb.net")
    with h5py.File(tmp_path / "cb.net", "r") as f:
        assert f["layer/1/bias"].shape == (2, 6, 3)  # W, H, C
    x = (rng.random((12, 2, 6, 5)) < 0.3).astype(np.float32)
    lava = run_netx_in_lava(tmp_path / "cb.net", x, 12)
    ours = Simulator(g, "loihi", record="neurons").run(x[None], 12).recorded["n"][0].numpy()
    np.testing.assert_array_equal(lava.outputs["layer1_neuron"], ours)
    assert ours.sum() > 0


# ------------------------------------------------------------------ the CLI
@pytest.fixture
def mlp_file(tmp_path):
    p = tmp_path / "mlp.nmir"
    save_graph(hand_mlp(), p)
    return p


@pytest.fixture
def cnn_file(tmp_path):
    p = tmp_path / "cnn.nmir"
    save_graph(hand_cnn(), p)
    return p


@needs_lava
def test_cli_exports_hand_quantized_mlp_and_verify_says_identical(tmp_path, mlp_file, capfd):
    out_dir = tmp_path / "mlp_loihi2"
    code, out, err = run_cli(["export", mlp_file, "--target", "loihi2", "-o", out_dir], capfd)
    assert code == 0, err
    assert sorted(p.name for p in out_dir.iterdir()) == [
        "mapping.json", "network.net", "network.nmir", "report.json", "report.txt"]
    code, out, err = run_cli(["verify", out_dir, "--samples", "2"], capfd)
    assert code == 0, out + err
    assert "\nidentical\n" in out and "ms/step" in out
    assert out.count(": identical") == 2  # both samples


@needs_lava
def test_cli_exports_cnn_with_folded_sumpool_and_verify_on_digits_says_identical(
        tmp_path, cnn_file, capfd):
    out_dir = tmp_path / "cnn_loihi2"
    code, _, err = run_cli(["export", cnn_file, "--target", "loihi2", "-o", out_dir], capfd)
    assert code == 0, err
    report = json.loads((out_dir / "report.json").read_text())
    assert [r["pool"] for r in report["folded_pooling"]] == ["pool"]
    assert [la["type"] for la in report["layers"]] == ["input", "conv", "conv", "flatten", "dense"]
    code, out, err = run_cli(["verify", out_dir, "--dataset", "digits", "--samples", "2",
                              "--json"], capfd)
    assert code == 0, out + err
    res = json.loads(out[out.index("{"):])
    assert res["identical"] and "rate-coded" in res["inputs"]
    assert all(s["events"] > 0 for s in res["samples"])


@needs_lava
def test_verify_rate_codes_analog_data_from_an_npz(tmp_path, mlp_file, capfd):
    from nmtoolchain.datasets import load_digits_split

    out_dir = tmp_path / "mlp_loihi2"
    assert run_cli(["export", mlp_file, "--target", "loihi2", "-o", out_dir], capfd)[0] == 0
    split = load_digits_split()
    np.savez(tmp_path / "digits.npz", x=split.x_test[:3].reshape(3, 64), y=split.y_test[:3])
    code, out, err = run_cli(["verify", out_dir, "--data", tmp_path / "digits.npz",
                              "--samples", "1"], capfd)
    assert code == 0, out + err
    assert "digits.npz" in out and "rate-coded" in out and "\nidentical\n" in out


@needs_lava
def test_verify_exits_1_naming_the_layer_whose_weight_was_changed(tmp_path, mlp_file, capfd):
    out_dir = tmp_path / "mlp_loihi2"
    assert run_cli(["export", mlp_file, "--target", "loihi2", "-o", out_dir], capfd)[0] == 0
    with h5py.File(out_dir / "network.net", "r+") as f:  # tamper: one weight of layer 2
        w = f["layer/2/weight"][()]
        w[3, 5] += 40
        f["layer/2/weight"][...] = w
    code, out, err = run_cli(["verify", out_dir, "--samples", "1"], capfd)
    assert code == 1, out + err
    assert "first divergence: layer layer2_neuron (dense, IR node 'lif2')" in out
    assert "neuron (3,)" in out and "DIFFERENT" in out


@needs_lava
def test_cli_quantizes_a_float_network_with_digits_calibration_and_lava_agrees(tmp_path, capfd):
    model = tmp_path / "float_mlp.nmir"
    save_graph(float_if_mlp(), model)
    out_dir = tmp_path / "float_loihi2"
    code, _, err = run_cli(["export", model, "--target", "loihi2", "-o", out_dir,
                            "--calib", "digits", "--timesteps", "8"], capfd)
    assert code == 0, err
    report = json.loads((out_dir / "report.json").read_text())
    rows = report["quantization"]["layers"]
    assert report["quantization"]["performed"] and len(rows) == 2
    assert all("vs_float" in r["error"] for r in rows)  # error measured on the calibration set
    code, out, err = run_cli(["verify", out_dir, "--dataset", "digits", "--samples", "1"], capfd)
    assert code == 0, out + err
    assert "\nidentical\n" in out


@needs_lava
def test_cli_exports_intel_tiny_net_and_verify_drives_its_input_neuron_bias(
        intel_netx, tmp_path, capfd):
    out_dir = tmp_path / "tiny_loihi2"
    code, _, err = run_cli(["export", intel_netx / "tiny.net", "--target", "loihi2", "-o",
                            out_dir], capfd)
    assert code == 0, err
    report = json.loads((out_dir / "report.json").read_text())
    assert report["input"]["drive"] == "bias" and report["input"]["transform"] == \
        {"weight": 36, "bias": 34}
    assert not report["quantization"]["performed"]
    code, out, err = run_cli(["verify", out_dir, "--samples", "1", "--steps", "6",
                              "--reset-interval", "16"], capfd)
    assert code == 0, out + err
    assert "\nidentical\n" in out and "bias = trunc(2 w x - w + b)" in out


def test_unsupported_matmul_exits_2_naming_it_and_leaves_no_directory(tmp_path, capfd):
    g = Graph()
    g.add("q", Input((4, 16)))
    g.add("k", Input((16, 4)))
    g.add("fc", Affine(np.ones((16, 16), np.float32)), ["q"])
    g.add("scores", MatMul(), ["fc", "k"])
    g.add("out", Output(), ["scores"])
    model = tmp_path / "attn.nmir"
    save_graph(g.infer_shapes(), model)
    out_dir = tmp_path / "attn_loihi2"
    code, _, err = run_cli(["export", model, "--target", "loihi2", "-o", out_dir], capfd)
    assert code == 2
    assert err.startswith("nmtc: error: ") and "'scores' (op MatMul)" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["attn.nmir"]


def test_layer_too_large_for_a_core_exits_2_and_leaves_no_directory(tmp_path, capfd):
    g = Graph()
    g.add("x", Input((5000,)))  # one neuron's fan-in of 5000 exceeds 4096 input axons per core
    g.add("fc", Affine(np.ones((4, 5000), np.float32)), ["x"])
    _cuba(g, "wide", "fc", 10)
    g.add("out", Output(), ["wide"])
    model = tmp_path / "wide.nmir"
    save_graph(g.infer_shapes(), model)
    code, _, err = run_cli(["export", model, "--target", "loihi2", "-o", tmp_path / "d"], capfd)
    assert code == 2, err
    assert "'fc'" in err and "input axons" in err and "5000" in err.replace(",", "")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wide.nmir"]


def test_interrupted_export_leaves_neither_directory_nor_temporary_one(
        tmp_path, mlp_file, capfd, monkeypatch):
    from exporters.loihi2 import bundle

    def interrupted(*args, **kwargs):  # Ctrl-C while the mapping file is written
        raise KeyboardInterrupt

    monkeypatch.setattr(bundle, "write_mapping_json", interrupted)
    code, _, err = run_cli(["export", mlp_file, "--target", "loihi2", "-o",
                            tmp_path / "mlp_loihi2"], capfd)
    assert code != 0 and ("aborted" in err or "interrupted" in err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlp.nmir"]  # no DIR, no .part


def test_failed_export_with_force_keeps_the_old_directory(tmp_path, mlp_file, capfd,
                                                          monkeypatch):
    from exporters.loihi2 import bundle

    out_dir = tmp_path / "mlp_loihi2"
    assert run_cli(["export", mlp_file, "--target", "loihi2", "-o", out_dir], capfd)[0] == 0
    before = {p.name: p.read_bytes() for p in out_dir.iterdir()}

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(bundle, "write_reports", broken)
    code, _, err = run_cli(["export", mlp_file, "--target", "loihi2", "-o", out_dir, "--force"],
                           capfd)
    assert code == 2 and "No space left" in err
    assert {p.name: p.read_bytes() for p in out_dir.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlp.nmir", "mlp_loihi2"]


def test_existing_directory_needs_force(tmp_path, mlp_file, capfd):
    out_dir = tmp_path / "mlp_loihi2"
    out_dir.mkdir()
    code, _, err = run_cli(["export", mlp_file, "--target", "loihi2", "-o", out_dir], capfd)
    assert code == 2 and "--force" in err and list(out_dir.iterdir()) == []
    code, _, err = run_cli(["export", mlp_file, "--target", "loihi2", "-o", out_dir, "--force"],
                           capfd)
    assert code == 0, err
    assert (out_dir / "network.net").is_file()


def test_exporting_twice_gives_identical_bytes_in_every_file(tmp_path, cnn_file, capfd):
    dirs = [tmp_path / "a", tmp_path / "b"]
    for i, d in enumerate(dirs):
        if i:
            time.sleep(1.1)  # a stored time would differ
        assert run_cli(["export", cnn_file, "--target", "loihi2", "-o", d], capfd)[0] == 0
    names = sorted(p.name for p in dirs[0].iterdir())
    assert names == ["mapping.json", "network.net", "network.nmir", "report.json", "report.txt"]
    for n in names:
        assert (dirs[0] / n).read_bytes() == (dirs[1] / n).read_bytes(), n


def test_verify_of_a_missing_directory_exits_2(tmp_path, capfd):
    code, _, err = run_cli(["verify", tmp_path / "nope"], capfd)
    assert code == 2 and "no such export directory" in err


def test_nir_export_still_needs_an_output_file(capfd):
    from nmtoolchain.demo import BUNDLED_ONNX

    code, _, err = run_cli(["export", BUNDLED_ONNX, "--target", "nmir"], capfd)
    assert code == 2 and "--output" in err


@pytest.mark.parametrize("w", [np.full((2, 3), -128.0), np.array([[-256.0, -3.0], [-5.0, -1.0]])],
                         ids=["inhibitory_pow2", "inhibitory_256"])
def test_exporter_refuses_dense_weights_lava_would_change(w, tmp_path):
    # Lava's own functions: an all-negative matrix with minimum -2^k is shifted past
    # its 8-bit range, and -256 inhibitory is clipped to -255 (see test_quantize_loihi)
    from exporters.loihi2.netx_writer import export_netx
    from nmtoolchain import ir

    g = ir.Graph({"dt": 1.0})
    g.add("x", ir.Input((w.shape[1],)))
    g.add("fc", ir.Affine(w), ["x"])
    g.add("n", ir.CubaLIF(v_threshold=10, reset="to_reset"), ["fc"],
          numerics=LoihiCubaNeuron(i_decay=4096, v_decay=0, v_th_mant=10, bias_mant=0,
                                   bias_exp=6))
    g.add("y", ir.Output(), ["n"])
    g.infer_shapes()
    with pytest.raises(Exception, match="'fc'.*would not reproduce"):
        export_netx(g, tmp_path / "net.net")
    assert not (tmp_path / "net.net").exists()


# ------------------------------------------------------------------ Lava-only ops (Spikformer)
def _spikformer():
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
    from spikformer_block import block_input, build_spikformer_block

    return build_spikformer_block, block_input


@pytest.fixture
def block_export(tmp_path, capfd):
    build, _ = _spikformer()
    model = tmp_path / "block.nmir"
    save_graph(build(), model)
    out_dir = tmp_path / "block_loihi2"
    code, out, err = run_cli(["export", model, "--target", "loihi2", "-o", out_dir], capfd)
    assert code == 0, err
    return out_dir, out


def test_quantized_block_with_matmul_exports_a_lava_graph_and_no_netx_file(block_export):
    out_dir, out = block_export
    assert sorted(p.name for p in out_dir.iterdir()) == [
        "lava_graph.json", "mapping.json", "network.nmir", "report.json", "report.txt"]
    assert "wrote" in out and "network.net" not in out.split("wrote")[-1]


def test_block_report_lists_netx_and_lava_simulator_only_nodes(block_export):
    out_dir, _ = block_export
    report = json.loads((out_dir / "report.json").read_text())
    dep = report["deployability"]
    # the example's own list of attention/residual nodes is the referee
    assert dep["lava_simulator_only"] == ["k_t", "scores", "attn_v", "res1", "res2"]
    assert {"x", "q_fc", "q_lif", "attn_lif", "mlp2_lif"} <= set(dep["loihi2_netx"])
    assert not set(dep["loihi2_netx"]) & set(dep["lava_simulator_only"])
    assert dep["netx_file_written"] is False and "No network.net is written" in dep["note"]
    # the mapping places the deployable part only (Lava-only tensors enter as host inputs)
    assert report["mapping"]["mapped"] is True and "deployable part only" in \
        report["mapping"]["note"]
    txt = (out_dir / "report.txt").read_text()
    assert "only in Lava's simulator: k_t, scores, attn_v, res1, res2" in txt
    assert "deployable part only" in txt


def test_lava_graph_json_says_which_nodes_are_lava_dense_lif_and_which_nmtc_processes(
        block_export):
    out_dir, _ = block_export
    desc = json.loads((out_dir / "lava_graph.json").read_text())
    assert {"q_fc", "q_lif", "mlp1_fc", "mlp2_lif"} <= set(desc["lava_dense_lif"])
    assert {"k_t", "scores", "attn_v", "res1", "res2"} <= set(desc["nmtc_lava_processes"])
    procs = {p["node"]: p for p in desc["processes"]}
    assert procs["q_fc"]["process"] == "Dense" and procs["q_lif"]["process"] == "LIF"
    assert procs["scores"]["process"] == "GraphMatMul"
    assert procs["scores"]["inputs"] == ["q_lif", "k_t"]


@needs_lava
def test_verify_of_the_block_export_runs_lava_processes_and_says_identical(
        block_export, capfd):
    out_dir, _ = block_export
    code, out, err = run_cli(["verify", out_dir, "--steps", "12", "--samples", "1"], capfd)
    assert code == 0, out + err
    assert "sample 0: identical" in out and "\nidentical\n" in out
    assert "seeded random spikes" in out and "Lava process graph" in out


@needs_lava
def test_verify_of_the_block_export_uses_spikes_from_an_npz(block_export, tmp_path, capfd):
    _, block_input = _spikformer()
    out_dir, _ = block_export
    np.savez(tmp_path / "spikes.npz", x=block_input(steps=12)[None].astype(np.float32),
             y=np.zeros(1, np.int64))  # labels are required by the .npz reader, unused here
    code, out, err = run_cli(["verify", out_dir, "--steps", "12", "--samples", "1",
                              "--data", tmp_path / "spikes.npz"], capfd)
    assert code == 0, out + err
    assert "spikes.npz" in out and "sample 0: identical" in out


def test_float_graph_with_a_matmul_is_refused_naming_it_and_leaves_no_directory(
        tmp_path, capfd):
    from nmtoolchain.ir import LIF, Linear

    g = Graph({"source": {"path": "float_attn.nmir"}})
    g.add("x", Input((8, 8)))
    g.add("fc", Linear(np.full((8, 8), 0.25, np.float32)), ["x"])
    g.add("lif", LIF(tau=2.0, r=1.0, v_leak=0.0, v_threshold=1.0, reset="to_reset"), ["fc"])
    g.add("self_scores", MatMul(), ["lif", "lif"])
    g.add("out", Output(), ["self_scores"])
    model = tmp_path / "float_attn.nmir"
    save_graph(g.infer_shapes(), model)
    out_dir = tmp_path / "float_attn_loihi2"
    code, _, err = run_cli(["export", model, "--target", "loihi2", "-o", out_dir], capfd)
    assert code == 2
    assert err.startswith("nmtc: error: ") and len(err.strip().splitlines()) == 1
    # the token-graph quantizer takes the MatMul; the scores leave as the output,
    # which has no readout neuron (a Spikformer's head sums its logits in one)
    assert "'out' (op Output)" in err and "head Affine after the token mean" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["float_attn.nmir"]


def test_per_neuron_time_constants_on_the_token_graph_are_refused_naming_the_node(
        tmp_path, capfd):
    # the token graph's Lava processes take one decay per layer: two time constants in
    # one layer cannot be expressed, and the refusal says which parameter differs
    from nmtoolchain.ir import LIF, Linear

    g = Graph({"source": {"path": "two_taus.nmir"}})
    g.add("x", Input((8, 8)))
    g.add("fc", Linear(np.full((8, 8), 0.25, np.float32)), ["x"])
    g.add("lif", LIF(tau=np.array([2.0] * 4 + [4.0] * 4, np.float32), r=1.0, v_leak=0.0,
                     v_threshold=1.0, reset="to_reset"), ["fc"])
    g.add("self_scores", MatMul(), ["lif", "lif"])
    g.add("out", Output(), ["self_scores"])
    model = tmp_path / "two_taus.nmir"
    save_graph(g.infer_shapes(), model)
    code, _, err = run_cli(["export", model, "--target", "loihi2", "-o", tmp_path / "o"], capfd)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "node 'lif'" in err and "tau differs between neurons (2 values)" in err, err


@pytest.mark.lava
def test_bundled_digits_cnn_snn_exports_and_verifies_identical_in_lava(tmp_path, capfd):
    # the trained digits CNN (examples/train_digits_snn.py): conv, pooling folded,
    # quantized with digits calibration, then run by Lava next to nmtc
    from nmtoolchain.cli import main
    from nmtoolchain.demo import DATA_DIR

    out = tmp_path / "cnn.loihi2"
    code = main(["export", str(DATA_DIR / "digits_cnn_snn.nmir"), "--target", "loihi2",
                 "--calib", "digits", "-o", str(out)])
    _, err = capfd.readouterr()
    assert code == 0, err
    code = main(["verify", str(out), "--dataset", "digits", "--samples", "2"])
    text, err = capfd.readouterr()
    assert code == 0, text + err
    assert "sample 0: identical" in text and "sample 1: identical" in text
