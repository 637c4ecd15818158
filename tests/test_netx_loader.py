"""The netx HDF5 loader against two referees: Lava's own
``lava.lib.dl.netx.hdf5.Network`` built from the same file, and the values read
straight from the file with h5py. Intel's shipped networks (tiny, mnist,
pilotnet_lif, pilotnet_sdnn, ntidigits) plus small files written here for the
cases Intel ships none of (dense_rec, scalar ``type``, non-integer weights,
broken files)."""
from __future__ import annotations

import dataclasses
import math
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from nmtoolchain.errors import BadInputError, UnsupportedOpError
from nmtoolchain.frontends import load_model
from nmtoolchain.frontends.netx_loader import load_netx
from nmtoolchain.ir import (
    Affine, Conv2d, CubaLIF, Flatten, Input, SigmaDelta, graph_from_bytes, graph_to_bytes)
from nmtoolchain.vendors import missing

NETWORKS = {
    "tiny": ("tiny.net", None),
    "mnist": ("mnist.net", None),
    "pilotnet_lif": ("gts/pilotnet_lif/network.net", None),
    "pilotnet_sdnn": ("gts/pilotnet_sdnn/network.net", None),
    "ntidigits5": ("gts/ntidigits/ntidigits.net", 5),
}


def _lava_network(path: Path, num_layers=None):
    from lava.lib.dl import netx  # vendor library: imported only in the test

    return netx.hdf5.Network(net_config=str(path), num_layers=num_layers)


def _neuron_nodes(graph):
    """Neuron nodes in netx layer order (one per Lava block)."""
    nodes = [n for n in graph if n.op.is_neuron]
    return sorted(nodes, key=lambda n: n.annotations["source"]["netx_layer"])


def _synapse_nodes(graph):
    return [n for n in graph if isinstance(n.op, (Affine, Conv2d))]


def _file_weight(f, layer: int, key: str = "weight") -> np.ndarray:
    w = f[f"layer/{layer}/{key}"][()]
    if w.ndim == 5:
        w = w[..., 0]
    if w.ndim == 1:
        w = w.reshape(int(np.prod(f[f"layer/{layer}/shape"][()])), -1)
    return w


ALL = sorted(NETWORKS)
CUBA_NETS = ["mnist", "ntidigits5", "pilotnet_lif", "tiny"]
INPUT_NEURON_NETS = ["mnist", "pilotnet_lif", "pilotnet_sdnn", "tiny"]


@pytest.fixture(scope="module")
def build(intel_netx):
    """name -> (path, IR graph, Lava network), each built once per module; the Lava
    network is None without lava-dl (the tests that read it are marked lava and skip)."""
    cache = {}
    have_lava = missing("lava-dl") is None

    def get(name):
        if name not in cache:
            rel, num_layers = NETWORKS[name]
            path = intel_netx / rel
            cache[name] = (path, load_netx(path, num_layers=num_layers),
                           _lava_network(path, num_layers) if have_lava else None)
        return cache[name]

    return get


# ------------------------------------------------ (a) structure equals Lava's
@pytest.mark.parametrize("name", ALL)
@pytest.mark.lava
def test_neuron_layers_have_lava_shapes(build, name):
    _, graph, net = build(name)
    ours = [n.shape for n in _neuron_nodes(graph)]
    lava = [tuple(layer.shape[::-1]) for layer in net.layers]  # Lava is W,H,C
    assert ours == lava


@pytest.mark.parametrize("name", ALL)
@pytest.mark.lava
def test_neuron_count_per_layer_equals_lava(build, name):
    _, graph, net = build(name)
    ours = [graph.node_counts(n)["neurons"] for n in _neuron_nodes(graph)]
    lava = [int(np.prod(layer.neuron.s_out.shape)) for layer in net.layers]
    assert ours == lava and graph.totals()["neurons"] == sum(lava)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.lava
def test_synapse_output_shapes_equal_lava_synapses(build, name):
    _, graph, net = build(name)
    lava = [tuple(layer.synapse.a_out.shape[::-1]) for layer in net.layers
            if hasattr(layer, "synapse")]
    ours = [n.shape for n in _synapse_nodes(graph)]
    assert ours == lava


# ------------------------------------------------ (b) values equal the file / Lava
@pytest.mark.parametrize("name", ALL)
def test_synapse_weights_equal_file_values(build, name):
    path, graph, _ = build(name)
    with h5py.File(path, "r") as f:
        for node in _synapse_nodes(graph):
            expected = _file_weight(f, node.annotations["source"]["netx_layer"])
            np.testing.assert_array_equal(node.op.weight, expected, err_msg=node.name)


@pytest.mark.parametrize("name", ["mnist", "ntidigits5", "pilotnet_lif", "pilotnet_sdnn"])
@pytest.mark.lava
def test_dense_weights_equal_lava_synapse_after_its_exponent(build, name):
    _, graph, net = build(name)
    lava_dense = [layer.synapse for layer in net.layers
                  if hasattr(layer, "synapse") and hasattr(layer.synapse, "weights")]
    ours = [n for n in _synapse_nodes(graph) if isinstance(n.op, Affine)]
    assert len(ours) == len(lava_dense)
    for node, syn in zip(ours, lava_dense):
        scale = 2.0 ** (-syn.proc_params["weight_exp"])  # netx stores W << s, exp = -s
        np.testing.assert_array_equal(node.op.weight * scale, syn.weights.init, err_msg=node.name)


@pytest.mark.parametrize("name", ["pilotnet_lif", "pilotnet_sdnn", "tiny"])
@pytest.mark.lava
def test_conv_weights_equal_lava_kernels(build, name):
    _, graph, net = build(name)
    lava_conv = [layer.synapse for layer in net.layers
                 if hasattr(layer, "synapse") and hasattr(layer.synapse, "weight")]
    ours = [n for n in _synapse_nodes(graph) if isinstance(n.op, Conv2d)]
    assert len(ours) == len(lava_conv)
    for node, syn in zip(ours, lava_conv):
        # Lava holds a flipped (out, kW, kH, in) kernel for its true convolution.
        lava_as_torch = syn.weight.init[:, ::-1, ::-1, :].transpose(0, 3, 2, 1)
        np.testing.assert_array_equal(node.op.weight, lava_as_torch, err_msg=node.name)
        assert node.op.stride == tuple(syn.proc_params["stride"][::-1])
        assert node.op.padding == tuple(syn.proc_params["padding"][::-1])


@pytest.mark.parametrize("name", CUBA_NETS)
@pytest.mark.lava
def test_cuba_parameters_equal_lava_lif(build, name):
    _, graph, net = build(name)
    pairs = list(zip(_neuron_nodes(graph), [layer.neuron for layer in net.layers]))
    assert pairs and all(isinstance(n.op, CubaLIF) for n, _ in pairs)
    for node, lif in pairs:
        q = node.numerics
        assert (q.v_th_mant, q.i_decay - 1, q.v_decay) == (
            int(lif.vth.init), int(lif.du.init), int(lif.dv.init)), node.name
        assert float(node.op.v_threshold) == lif.vth.init
        lava_bias = np.broadcast_to(lif.bias_mant.init, lif.s_out.shape)
        ours = np.broadcast_to(q.bias_mant, node.shape)
        np.testing.assert_array_equal(ours, lava_bias.transpose(*range(lava_bias.ndim)[::-1]))
        np.testing.assert_array_equal(np.broadcast_to(node.op.v_bias, node.shape), ours)


@pytest.mark.parametrize("name", CUBA_NETS)
def test_cuba_parameters_equal_file_values(build, name):
    path, graph, _ = build(name)
    with h5py.File(path, "r") as f:
        for node in _neuron_nodes(graph):
            if not isinstance(node.op, CubaLIF) or node.numerics.readout:
                continue
            grp = f[f"layer/{node.annotations['source']['netx_layer']}/neuron"]
            q = node.numerics
            assert (q.i_decay, q.v_decay, q.v_th_mant, q.ref_delay) == (
                grp["iDecay"][()], grp["vDecay"][()], grp["vThMant"][()], grp["refDelay"][()])


@pytest.mark.parametrize("name", CUBA_NETS)
def test_cuba_taus_give_loihi_per_step_decays(build, name):
    _, graph, _ = build(name)
    assert graph.metadata["dt"] == 1.0
    for node in _neuron_nodes(graph):
        if not isinstance(node.op, CubaLIF):
            continue
        q = node.numerics
        for tau, decay in ((node.op.tau_syn, q.i_decay), (node.op.tau_mem, q.v_decay)):
            per_step = 0.0 if float(tau) == 0 else math.exp(-1.0 / float(tau))
            assert per_step == pytest.approx(1 - decay / 4096, abs=1e-6), node.name


@pytest.mark.lava
def test_sdnn_parameters_equal_lava_processes(build):
    _, graph, net = build("pilotnet_sdnn")
    pairs = list(zip(_neuron_nodes(graph), [layer.neuron for layer in net.layers]))
    assert len(pairs) == 9 and all(isinstance(n.op, SigmaDelta) for n, _ in pairs)
    roles = {"Delta": "delta", "SigmaDelta": "sigma_delta", "Sigma": "sigma"}
    for node, proc in pairs:
        assert node.op.role == roles[type(proc).__name__], node.name
        if node.op.role == "sigma":
            continue
        q = node.numerics
        scale = 1 << (q.spike_exp + q.state_exp)
        assert int(proc.spike_exp.init) == q.spike_exp
        assert int(proc.state_exp.init) == q.state_exp
        assert float(node.op.threshold) * scale == float(np.asarray(proc.vth.init).reshape(-1)[0])
        if node.op.role == "sigma_delta":
            lava_bias = np.asarray(proc.bias.init).transpose(*range(len(proc.s_out.shape))[::-1])
            np.testing.assert_array_equal(
                np.broadcast_to(node.op.bias, node.shape) * scale, lava_bias)


@pytest.mark.parametrize("name", INPUT_NEURON_NETS)
@pytest.mark.lava
def test_input_transform_equals_lava_in_layer(build, name):
    _, graph, net = build(name)
    first = _neuron_nodes(graph)[0]
    assert first.annotations["source"]["type"] == "input"
    assert dataclasses.asdict(first.numerics.input_transform) == net.in_layer.transform


@pytest.mark.parametrize("name", ALL)
def test_annotations_survive_serialization(build, name):
    _, graph, _ = build(name)
    again = graph_from_bytes(graph_to_bytes(graph))
    for node in graph:
        assert again[node.name].annotations == node.annotations
        assert again[node.name].numerics == node.numerics


# ------------------------------------------------ per-network facts
def test_mnist_synapse_total_is_hand_count(intel_netx):
    graph = load_netx(intel_netx / "mnist.net")
    assert graph.totals()["synapses"] == 784 * 512 + 512 * 512 + 512 * 10


@pytest.mark.lava
def test_mnist_last_layer_is_netx_default_readout(intel_netx):
    graph = load_netx(intel_netx / "mnist.net")
    q = graph["layer3_neuron"].numerics
    net = _lava_network(intel_netx / "mnist.net")
    lif = net.layers[3].neuron
    assert q.readout is True
    assert (q.i_decay - 1, q.v_decay, q.v_th_mant) == (
        int(lif.du.init), int(lif.dv.init), int(lif.vth.init))
    assert q.v_th_mant == 131072 and math.isinf(float(graph["layer3_neuron"].op.tau_syn))


@pytest.mark.lava
def test_ntidigits_delays_equal_lava_delay_synapses(intel_netx):
    path = intel_netx / "gts/ntidigits/ntidigits.net"
    graph = load_netx(path, num_layers=5)
    net = _lava_network(path, 5)
    for node, layer in zip(_synapse_nodes(graph), net.layers):
        if node.op.delay is None:
            assert not hasattr(layer.synapse, "delays")
            continue
        full = np.broadcast_to(node.op.delay, node.op.weight.shape)
        np.testing.assert_array_equal(full, layer.synapse.delays.init, err_msg=node.name)


def test_ntidigits_uncut_names_file_layer_and_num_layers(intel_netx):
    with pytest.raises(UnsupportedOpError) as e:
        load_netx(intel_netx / "gts/ntidigits/ntidigits.net")
    msg = str(e.value)
    assert "ntidigits.net" in msg and "layer 5" in msg and "average" in msg
    assert "num_layers=5" in msg and "netx" in msg and "\n" not in msg


def test_tiny_conv_drops_trailing_kernel_axis(intel_netx):
    graph = load_netx(intel_netx / "tiny.net")
    with h5py.File(intel_netx / "tiny.net", "r") as f:
        stored = f["layer/1/weight"][()]
    assert stored.shape == (24, 3, 5, 5, 1)
    np.testing.assert_array_equal(graph["layer1_conv"].op.weight, stored[..., 0])


def test_flatten_layer_becomes_ir_flatten(intel_netx):
    graph = load_netx(intel_netx / "gts/pilotnet_lif/network.net")
    node = graph["layer6_flatten"]
    assert isinstance(node.op, Flatten) and node.shape == (64 * 2 * 20,)


def test_metadata_names_source_and_format(intel_netx):
    graph = load_model(intel_netx / "mnist.net")
    assert graph.metadata["source"] == {"path": str(intel_netx / "mnist.net"), "format": "netx"}
    assert graph.metadata["netx"]["layers_loaded"] == 4


# ------------------------------------------------ files written here
def _write_type(g, key: str, text: str, scalar: bool = False) -> None:
    if scalar:
        g.create_dataset(key, data=text.encode("ascii"))
    else:
        g.create_dataset(key, (1,), "S10", [text.encode("ascii")])


def _write_cuba(g, i_decay: int, v_decay: int, vth: int) -> None:
    n = g.create_group("neuron")
    n.create_dataset("type", data=b"CUBA")
    for k, v in dict(iDecay=i_decay, vDecay=v_decay, vThMant=vth, refDelay=1).items():
        n.create_dataset(k, data=v)


def _small_dense_file(path: Path, *, recurrent=False, scalar_type=False, weight=None,
                      neuron=None) -> Path:
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        layers = f.create_group("layer")
        g = layers.create_group("0")
        _write_type(g, "type", "input", scalar_type)
        g["shape"] = np.array([6])
        g = layers.create_group("1")
        _write_type(g, "type", "dense_rec" if recurrent else "dense", scalar_type)
        g["shape"] = np.array([4])
        g["weight"] = (rng.integers(-20, 20, (4, 6)) if weight is None else weight).astype("f4")
        if recurrent:
            g["weight_rec"] = rng.integers(-20, 20, (4, 4)).astype("f4")
        g["bias"] = np.array([1, -2, 3, 0], "f4")
        if neuron is None:
            _write_cuba(g, 1024, 512, 40)
        else:
            neuron(g)
    return path


@pytest.mark.lava
def test_dense_rec_matches_lava_recurrent_block(tmp_path):
    path = _small_dense_file(tmp_path / "rec.net", recurrent=True)
    graph = load_netx(path)
    net = _lava_network(path)
    block = net.layers[0]
    assert type(block).__name__ == "RecurrentDense"
    exp = 2.0 ** (-block.synapse.proc_params["weight_exp"])
    np.testing.assert_array_equal(graph["layer1_dense_rec"].op.weight * exp,
                                  block.synapse.weights.init)
    np.testing.assert_array_equal(graph["layer1_recurrent"].op.weight * exp,
                                  block.synapse_rec.weights.init)
    assert graph["layer1_neuron"].shape == tuple(block.shape)


def test_dense_rec_feeds_neuron_back_through_recurrent_affine(tmp_path):
    graph = load_netx(_small_dense_file(tmp_path / "rec.net", recurrent=True))
    assert graph["layer1_recurrent"].inputs == ("layer1_neuron",)
    assert graph["layer1_sum"].inputs == ("layer1_dense_rec", "layer1_recurrent")
    assert graph["layer1_neuron"].inputs == ("layer1_sum",)
    assert ("layer1_neuron", "layer1_recurrent") in graph.order()[1]


@pytest.mark.lava
def test_scalar_bytes_type_loads_like_lava(tmp_path):
    path = _small_dense_file(tmp_path / "scalar.net", scalar_type=True)
    graph = load_netx(path)
    net = _lava_network(path)
    assert isinstance(graph["layer0_input"].op, Input)
    assert [n.shape for n in _neuron_nodes(graph)] == [tuple(net.layers[0].shape)]


@pytest.mark.lava
def test_fractional_weights_truncate_toward_zero_like_netx(tmp_path):
    w = np.array([[1.7, -1.7, 2.5, -0.5, 0.0, 3.9]] * 4)
    path = _small_dense_file(tmp_path / "frac.net", weight=w)
    graph = load_netx(path)
    net = _lava_network(path)
    syn = net.layers[0].synapse
    node = graph["layer1_dense"]
    np.testing.assert_array_equal(node.op.weight * 2.0 ** (-syn.proc_params["weight_exp"]),
                                  syn.weights.init)
    np.testing.assert_array_equal(node.op.weight[0], [1, -1, 2, 0, 0, 3])
    assert node.annotations["netx_import"]["weights_truncated"] == 4 * 5


@pytest.mark.lava
def test_dense_without_neuron_gets_lava_default_readout(tmp_path):
    path = _small_dense_file(tmp_path / "readout.net", neuron=lambda g: None)
    graph = load_netx(path)
    lif = _lava_network(path).layers[0].neuron
    q = graph["layer1_neuron"].numerics
    assert q.readout is True
    assert (q.i_decay - 1, q.v_decay, q.v_th_mant) == (
        int(lif.du.init), int(lif.dv.init), int(lif.vth.init))
    np.testing.assert_array_equal(q.bias_mant, lif.bias_mant.init)


def test_rf_neuron_is_unsupported(tmp_path):
    def rf(g):
        n = g.create_group("neuron")
        n.create_dataset("type", data=b"RF_PHASE")
        n["vThMant"], n["sinDecay"], n["cosDecay"] = 80, 100, 4000

    path = _small_dense_file(tmp_path / "rf.net", neuron=rf)
    with pytest.raises(UnsupportedOpError, match=r"rf\.net: layer 1 \(dense\).*RF_PHASE"):
        load_netx(path)


# ------------------------------------------------ bad input
def test_truncated_file_is_bad_input_naming_it(intel_netx, tmp_path):
    data = (intel_netx / "mnist.net").read_bytes()
    path = tmp_path / "cut.net"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(BadInputError, match=r"cut\.net: .*(truncated|corrupt|cannot read)"):
        load_netx(path)


def test_hdf5_without_layer_group_is_bad_input(tmp_path):
    path = tmp_path / "nolayer.h5"
    with h5py.File(path, "w") as f:
        f["something"] = np.zeros(3)
    with pytest.raises(BadInputError, match=r"nolayer\.h5: .*no 'layer' group"):
        load_netx(path)


def test_missing_weight_names_layer_and_key(intel_netx, tmp_path):
    path = tmp_path / "noweight.net"
    shutil.copy(intel_netx / "mnist.net", path)
    with h5py.File(path, "a") as f:
        del f["layer/2/weight"]
    with pytest.raises(BadInputError, match=r"noweight\.net: layer 2 \(dense\): .*'weight'"):
        load_netx(path)


def test_gap_in_layer_numbering_is_bad_input(intel_netx, tmp_path):
    path = tmp_path / "gap.net"
    shutil.copy(intel_netx / "mnist.net", path)
    with h5py.File(path, "a") as f:
        f.move("layer/2", "layer/7")
    with pytest.raises(BadInputError, match=r"gap\.net: layers must be numbered.*'2'"):
        load_netx(path)


def test_weight_rows_disagreeing_with_declared_shape_is_bad_input(intel_netx, tmp_path):
    path = tmp_path / "shape.net"
    shutil.copy(intel_netx / "mnist.net", path)
    with h5py.File(path, "a") as f:
        del f["layer/1/shape"]
        f["layer/1/shape"] = np.array([500])
    with pytest.raises(BadInputError, match=r"shape\.net: layer 1 \(dense\): .*500"):
        load_netx(path)


def test_conv_declared_shape_disagreeing_with_kernel_is_bad_input(intel_netx, tmp_path):
    path = tmp_path / "conv.net"
    shutil.copy(intel_netx / "tiny.net", path)
    with h5py.File(path, "a") as f:
        del f["layer/1/shape"]
        f["layer/1/shape"] = np.array([24, 7, 7])
    with pytest.raises(BadInputError, match=r"conv\.net: layer 1 \(conv\): declared shape"):
        load_netx(path)


def test_flatten_shape_disagreeing_with_input_is_bad_input(intel_netx, tmp_path):
    path = tmp_path / "flat.net"
    shutil.copy(intel_netx / "gts/pilotnet_lif/network.net", path)
    with h5py.File(path, "a") as f:
        del f["layer/6/shape"]
        f["layer/6/shape"] = np.array([1, 1, 2000])
    with pytest.raises(BadInputError, match=r"flat\.net: layer 6 \(flatten\)"):
        load_netx(path)


def _small_conv_file(path: Path, *, full_bias: bool) -> Path:
    """Input 2x9x11 -> conv 4 channels, kernel (3,2), stride (1,2), padding (1,0),
    groups 2, dilation (2,1): the (H, W) pairs all differ, so an axis swap shows."""
    rng = np.random.default_rng(1)
    out_chw = (4, 7, 5)  # H: (9+2-4-1)//1+1 = 7, W: (11-1-1)//2+1 = 5
    with h5py.File(path, "w") as f:
        layers = f.create_group("layer")
        g = layers.create_group("0")
        _write_type(g, "type", "input")
        g["shape"] = np.array([2, 9, 11])
        g = layers.create_group("1")
        _write_type(g, "type", "conv")
        g["shape"] = np.array(out_chw)
        g["weight"] = rng.integers(-8, 8, (4, 1, 3, 2)).astype("f4")
        g["stride"], g["padding"] = np.array([1, 2]), np.array([1, 0])
        g["dilation"], g["groups"] = np.array([2, 1]), 2
        bias = rng.integers(-5, 5, out_chw[::-1] if full_bias else (4,))  # Lava W,H,C order
        g["bias"] = bias.astype("f4")
        _write_cuba(g, 4096, 1024, 30)
    return path


@pytest.mark.parametrize("full_bias", [False, True])
@pytest.mark.lava
def test_conv_bias_and_pairs_match_lava(tmp_path, full_bias):
    path = _small_conv_file(tmp_path / "conv.net", full_bias=full_bias)
    graph = load_netx(path)
    block = _lava_network(path).layers[0]
    node = graph["layer1_neuron"]
    assert node.shape == tuple(block.shape[::-1])
    lava_bias = np.broadcast_to(block.neuron.bias_mant.init, block.shape).transpose(2, 1, 0)
    np.testing.assert_array_equal(np.broadcast_to(node.op.v_bias, node.shape), lava_bias)
    conv = graph["layer1_conv"].op
    assert conv.groups == int(block.synapse.proc_params["groups"])
    assert conv.dilation == tuple(block.synapse.proc_params["dilation"][::-1])
    assert not conv.bias.any()  # the bias lives in the neuron, as on Loihi


@pytest.mark.lava
def test_input_without_neuron_feeds_dense_through_implicit_flatten(tmp_path):
    path = tmp_path / "flat_in.net"
    with h5py.File(path, "w") as f:
        layers = f.create_group("layer")
        g = layers.create_group("0")
        _write_type(g, "type", "input")
        g["shape"] = np.array([1, 2, 3])
        g = layers.create_group("1")
        _write_type(g, "type", "dense")
        g["shape"] = np.array([4])
        g["weight"] = np.arange(24, dtype="f4").reshape(4, 6) - 12
        _write_cuba(g, 4096, 0, 10)
    graph = load_netx(path)
    net = _lava_network(path)
    flat = graph["layer1_flatten"]
    assert flat.annotations["source"]["implicit"] is True
    assert flat.shape == tuple(net.inp.shape)


@pytest.mark.filterwarnings("ignore:Found max delay")
@pytest.mark.parametrize(
    "delay", [np.arange(6) * 7.0, np.float32(5.0), np.arange(24.0).reshape(4, 6) * 3])
@pytest.mark.lava
def test_delays_broadcast_as_lava_delay_dense(tmp_path, delay):
    """Per-input (6,), scalar and full (4, 6, with values above 62 clamped) delays."""
    def cuba_with_delay(g):
        g["delay"] = delay
        _write_cuba(g, 4096, 1024, 40)

    path = _small_dense_file(tmp_path / "delay.net", neuron=cuba_with_delay)
    node = load_netx(path)["layer1_dense"]
    lava = _lava_network(path).layers[0].synapse.delays.init
    np.testing.assert_array_equal(np.broadcast_to(node.op.delay, node.op.weight.shape), lava)
    clamped = int(np.count_nonzero(np.asarray(delay) > 62))
    assert node.annotations["netx_import"]["delays_clamped"] == clamped
