"""Speck back end against sinabs itself (3.1.3): discretize, DynapcnnNetwork, memory, mapping.

Every reference here is computed by sinabs at test time: ``discretize_conv_spike``
(sinabs's discretize.py), ``DynapcnnNetwork(..., discretize=True)`` forward and
``memory_summary``, ``get_constraints`` and ``get_valid_mapping`` (sinabs's mapping.py),
``validate_memory_mapping_speck``. sinabs's DYNAP-CNN package imports samna at
import time; the test-only shim (tests/samna_shim.py) puts placeholder samna
modules in place while importing it, and nothing here builds a chip configuration.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
sinabs = pytest.importorskip("sinabs")
import sinabs.layers as sl  # noqa: E402
from torch import nn  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from samna_shim import import_dynapcnn  # noqa: E402

from nmtoolchain.cli import main  # noqa: E402
from nmtoolchain.frontends.torch_fx import graph_from_module  # noqa: E402
from nmtoolchain.ir import IF, Conv2d, Graph, Input, Output, save_graph  # noqa: E402
from nmtoolchain.ir.serialize import load_graph  # noqa: E402
from nmtoolchain.mapping.speck import assign_cores, layer_memory  # noqa: E402
from nmtoolchain.numerics.speck import quantize_layer  # noqa: E402
from nmtoolchain.quantize.speck import quantize_for_speck  # noqa: E402
from nmtoolchain.targets.registry import export  # noqa: E402
from nmtoolchain.targets.speck import compile_for_speck  # noqa: E402
from simulators.cycle import Simulator  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "nmtoolchain" / "data"


@pytest.fixture(scope="module")
def dynapcnn():
    return import_dynapcnn()


def _sinabs_discretize():
    from sinabs.backend.dynapcnn import discretize  # noqa: F401  (imported by the fixture)

    return sys.modules["sinabs.backend.dynapcnn.discretize"]


# --------------------------------------------------------------- discretize
@pytest.mark.parametrize("seed,v_init", [(0, 0.0), (1, 0.0), (2, 0.4)])
def test_quantize_layer_equals_sinabs_discretize(seed, v_init, dynapcnn):
    disc = _sinabs_discretize()
    g = torch.Generator().manual_seed(seed)
    conv = nn.Conv2d(4, 8, 3, bias=True)
    with torch.no_grad():
        conv.weight.copy_(torch.rand(8, 4, 3, 3, generator=g) * 0.6 - 0.3)
        conv.bias.copy_(torch.rand(8, generator=g) * 0.1 - 0.05)
    spk = sl.IAFSqueeze(batch_size=1, spike_threshold=1.0, min_v_mem=-1.0)
    if v_init:
        spk.v_mem = torch.full((1, 8, 6, 6), v_init)
    c2, s2 = disc.discretize_conv_spike(conv, spk, to_int=False)
    q = quantize_layer(conv.weight.detach().numpy(), conv.bias.detach().numpy(), 1.0, -1.0,
                       np.full((8, 6, 6), v_init, np.float32))
    np.testing.assert_array_equal(q.weight, c2.weight.detach().numpy())
    np.testing.assert_array_equal(q.bias, c2.bias.detach().numpy())
    assert q.threshold == int(s2.spike_threshold) and q.min_v_mem == int(s2.min_v_mem)
    if v_init:
        np.testing.assert_array_equal(q.v_init, s2.v_mem[0].numpy())
    assert np.abs(q.weight).max() <= 128 and q.weight.min() >= -128


def _one_layer_graph(weight: np.ndarray, v_min) -> Graph:
    g = Graph()
    g.add("input", Input(shape=(1, 6, 6)))
    g.add("conv", Conv2d(weight=weight), ["input"])
    g.add("iaf", IF(v_threshold=1.0, v_min=v_min, compare=">=", spike="multi"), ["conv"])
    g.add("output", Output(), ["iaf"])
    return g


def test_min_v_mem_trap_is_avoided_and_an_explicit_trap_refused(tmp_path, capfd, dynapcnn):
    """sinabs with min_v_mem=None rounds every weight to 0; nmtc never does."""
    disc = _sinabs_discretize()
    w = np.random.default_rng(0).uniform(-0.3, 0.3, (8, 1, 3, 3)).astype(np.float32)
    conv = nn.Conv2d(1, 8, 3, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(w))
    trapped, _ = disc.discretize_conv_spike(conv, sl.IAFSqueeze(batch_size=1, min_v_mem=None),
                                            to_int=False)
    assert not trapped.weight.detach().any()  # the trap, shown by sinabs itself
    low = compile_for_speck(_one_layer_graph(w, None)).graph
    qw = np.asarray(low["conv"].op.weight)
    assert np.abs(qw).max() == 128 or qw.max() == 127  # full 8-bit range used
    assert float(low["iaf"].op.v_min) == -32768.0
    # what nmtc chose is what sinabs computes for the same float bound
    rep = low["conv"].annotations["speck"]
    spk = sl.IAFSqueeze(batch_size=1, min_v_mem=rep["min_v_mem_float"])
    c2, s2 = disc.discretize_conv_spike(conv, spk, to_int=False)
    np.testing.assert_array_equal(qw, c2.weight.detach().numpy())
    assert int(s2.min_v_mem) == -32768 and int(s2.spike_threshold) == rep["threshold"]
    # an explicit bound that deep is refused, naming the layer and the bound
    model = save_graph(_one_layer_graph(w, -32768.0), tmp_path / "trap.nmir")
    code = main(["export", str(model), "--target", "speck", "-o", str(tmp_path / "o")])
    err = capfd.readouterr().err
    assert code == 2 and "layer 0 ('conv')" in err and "min_v_mem -32768" in err \
        and "rounds all 72 weights to 0" in err
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------- a sinabs model
def _small_sinabs(batch: int) -> nn.Sequential:
    torch.manual_seed(0)
    snn = nn.Sequential(
        nn.Conv2d(2, 8, 3, padding=1, bias=False), sl.IAFSqueeze(batch_size=batch, min_v_mem=-1.0),
        sl.SumPool2d(2), nn.Conv2d(8, 16, 3, padding=1, bias=False),
        sl.IAFSqueeze(batch_size=batch, min_v_mem=-1.0), nn.AvgPool2d(2), nn.Flatten(),
        nn.Linear(64, 10, bias=False), sl.IAFSqueeze(batch_size=batch, min_v_mem=-1.0))
    with torch.no_grad():
        for m in snn:
            if hasattr(m, "weight"):
                m.weight.mul_(3.0)
    return snn


def test_sinabs_module_export_is_spike_identical_with_dynapcnn_network(tmp_path, dynapcnn):
    DynapcnnNetwork = dynapcnn[0]
    snn = _small_sinabs(batch=1)
    out = tmp_path / "small.speck"
    export(graph_from_module(snn, (2, 8, 8)), "speck", out)
    ref = DynapcnnNetwork(snn, input_shape=(2, 8, 8), discretize=True, dvs_input=False)
    # the exported integers are sinabs's discretized parameters
    exported = torch.load(out / "network.pt", weights_only=True)
    convs = [m.conv_layer for m in ref.dynapcnn_layers.values()] \
        if hasattr(next(iter(ref.dynapcnn_layers.values())), "conv_layer") else \
        [m.conv for m in ref.dynapcnn_layers.values()]
    ours = [v for k, v in exported.items() if k.endswith(".weight")]
    assert len(ours) == len(convs) == 3
    for a, b in zip(ours, convs):
        assert torch.equal(a, b.weight.detach().reshape(a.shape))
    steps = 24
    x = (torch.rand(steps, 2, 8, 8, generator=torch.Generator().manual_seed(1)) < 0.3).float()
    with torch.no_grad():
        want = ref(x)
    graph = load_graph(out / "network.nmir")
    got = Simulator(graph, "speck").run(x.numpy()[None], steps).outputs["output"]
    assert want.sum() > 0
    assert torch.equal(got.reshape(want.shape), want)


def test_nmtc_verify_says_identical_and_reports_a_divergence(tmp_path, capfd):
    out = tmp_path / "small.speck"
    export(graph_from_module(_small_sinabs(batch=1), (2, 8, 8)), "speck", out)
    assert main(["verify", str(out), "--samples", "3"]) == 0
    text = capfd.readouterr().out
    assert "identical" in text and "sinabs" in text
    assert "membrane within the chip's 16-bit range" in text
    # change one integer weight in the sinabs network: verify must find it
    t = torch.load(out / "network.pt", weights_only=True)
    t["0.weight"][0, 0, 1, 1] += 40.0
    torch.save(t, out / "network.pt")
    assert main(["verify", str(out), "--samples", "3", "--json"]) == 1
    res = json.loads(capfd.readouterr().out)
    assert not res["identical"]
    d = res["divergences"][0]
    assert d["layer"] == "1" and d["sinabs"] != d["nmtc"]


# ------------------------------------------------------ the bundled digits CNN
def test_digits_cnn_converts_exports_and_verifies_identical(tmp_path, capfd, dynapcnn):
    snn = tmp_path / "digits_snn.nmir"
    assert main(["convert", str(DATA / "digits_qcfs_cnn.pt"), "--method", "mst", "-T", "16",
                 "-o", str(snn)]) == 0
    out = tmp_path / "digits.speck"
    assert main(["export", str(snn), "--target", "speck", "-o", str(out)]) == 0
    capfd.readouterr()
    for f in ("network.json", "network.pt", "chip_config.json", "network.nmir", "mapping.json",
              "report.txt", "report.json", "layers/layer0_weight.npy"):
        assert (out / f).exists(), f
    assert main(["verify", str(out), "--dataset", "digits", "--samples", "8"]) == 0
    assert "identical" in capfd.readouterr().out
    # sinabs's own discretize leaves the exported integers unchanged (scale 1)
    disc = _sinabs_discretize()
    net_t = torch.load(out / "network.pt", weights_only=True)
    meta = json.loads((out / "network.json").read_text())
    for i, layer in enumerate(meta["layers"]):
        if layer["kind"] != "conv":
            continue
        conv = nn.Conv2d(layer["in_channels"], layer["out_channels"],
                         tuple(layer["kernel_size"]), bias=layer["bias"])
        with torch.no_grad():
            conv.weight.copy_(net_t[f"{i}.weight"])
            if layer["bias"]:
                conv.bias.copy_(net_t[f"{i}.bias"])
        spk = sl.IAFSqueeze(batch_size=1, spike_threshold=float(net_t[f"{i + 1}.spike_threshold"]),
                            min_v_mem=float(net_t[f"{i + 1}.min_v_mem"]))
        spk.v_mem = net_t[f"{i + 1}.v_init"][None].clone()
        c2, s2 = disc.discretize_conv_spike(conv, spk, to_int=False)
        assert torch.equal(c2.weight, conv.weight)
        assert float(s2.spike_threshold) == float(net_t[f"{i + 1}.spike_threshold"])
        assert torch.equal(s2.v_mem, spk.v_mem)
    chip = json.loads((out / "chip_config.json").read_text())
    assert [l["core"] for l in chip["layers"]] == [0, 1, 2]
    assert chip["layers"][0]["threshold_low"] == -32768


# ---------------------------------------------------------- memory and mapping
def _net_a_seq() -> nn.Sequential:
    """sinabs's tests/test_dynapcnn/test_large_net.py DynapCnnNetA architecture, ReLU version."""
    def conv(i, o, k, s=1, p=0):
        return nn.Conv2d(i, o, k, stride=s, padding=p, bias=False)
    return nn.Sequential(
        conv(2, 16, 2, 2), nn.ReLU(), conv(16, 16, 3, p=1), nn.ReLU(), nn.AvgPool2d(2, 2),
        conv(16, 32, 3, p=1), nn.ReLU(), nn.AvgPool2d(2, 2), conv(32, 32, 3, p=1), nn.ReLU(),
        nn.AvgPool2d(2, 2), conv(32, 64, 3, p=1), nn.ReLU(), nn.AvgPool2d(2, 2),
        conv(64, 64, 3, p=1), nn.ReLU(), nn.AvgPool2d(2, 2), conv(64, 256, 2), nn.ReLU(),
        conv(256, 128, 1), nn.ReLU(), conv(128, 1, 1), nn.ReLU(), nn.Flatten())


def test_dynapcnn_net_a_memory_and_assignment_match_sinabs(dynapcnn):
    from sinabs.from_torch import from_model

    DynapcnnNetwork, mapping, chip = dynapcnn
    torch.manual_seed(0)
    snn = from_model(_net_a_seq(), batch_size=1).spiking_model
    ref = DynapcnnNetwork(snn, input_shape=(2, 128, 128), discretize=False, dvs_input=False)
    summary = ref.memory_summary()
    want_cores = mapping.get_valid_mapping(ref.dynapcnn_layers,
                                           chip.DynapcnnConfigBuilder.get_constraints())
    got = compile_for_speck(graph_from_module(snn, (2, 128, 128))) \
        .pipeline.result_of("map_onto_speck_cores")
    assert [m.kernel for m in got.layers] == [int(summary["kernel"][i]) for i in range(9)]
    assert [m.neuron for m in got.layers] == [int(summary["neuron"][i]) for i in range(9)]
    assert got.assignment == dict(want_cores)
    # sinabs's test ordering [0, 1, 2, 7, 4, 5, 6, 3, 8] is valid under nmtc's fits too
    for layer, core in enumerate([0, 1, 2, 7, 4, 5, 6, 3, 8]):
        assert core in got.layers[layer].fits


@pytest.mark.parametrize("c_in,c_out,k,s,p,hw,kernel,neuron", [
    # synsense_nir.md §1.3, values computed with sinabs's memory_summary
    (2, 16, 3, 1, 1, 64, 512, 65536), (2, 32, 3, 2, 1, 128, 1024, 131072),
    (16, 32, 3, 1, 1, 32, 8192, 32768), (32, 64, 3, 1, 1, 16, 32768, 16384),
    (64, 128, 3, 1, 1, 8, 131072, 8192), (128, 256, 3, 1, 0, 6, 524288, 4096),
    (256, 10, 1, 1, 0, 1, 4096, 10), (64, 64, 3, 1, 1, 32, 65536, 65536)])
def test_layer_memory_formula_table(c_in, c_out, k, s, p, hw, kernel, neuron):
    out = (hw + 2 * p - k) // s + 1
    assert layer_memory(c_out, c_in, (k, k), (out, out), False) == (kernel, neuron, 0)


def test_validate_memory_mapping_speck_figures():
    from sinabs.utils import validate_memory_mapping_speck

    with pytest.raises(Exception, match="Kernel memory is 128Ki"):
        validate_memory_mapping_speck(64, 65, [3, 3], [1, 1], [1, 1], [8, 8])
    assert layer_memory(65, 64, (3, 3), (8, 8), False)[0] == 128 * 1024
    msg = validate_memory_mapping_speck(2, 64, [3, 3], [1, 1], [1, 1], [8, 8])
    assert "Kernel memory is 2Ki and neuron memory is 4Ki" in str(msg)
    assert layer_memory(64, 2, (3, 3), (8, 8), False)[:2] == (2 * 1024, 4 * 1024)


def test_assignment_equals_sinabs_edmonds_on_random_fit_lists(dynapcnn):
    _, mapping, _ = dynapcnn
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(1, 10))
        fits = [sorted(rng.choice(9, size=int(rng.integers(0, 5)), replace=False).tolist())
                for _ in range(n)]
        graph = mapping.edmonds(mapping.make_flow_graph(fits, 9), 0, n + 10)
        try:
            want = mapping.recover_mapping(graph, n)
        except ValueError:
            want = None
        assert assign_cores(fits, 9) == want, fits
    assert assign_cores([[1, 2], [1, 2], [1, 2]]) is None  # sinabs's own failing example


# ------------------------------------------------- forks and merges (sinabs 3.1)
class _Residual(nn.Module):
    """conv1 -> iaf1 -> conv2 -> iaf2; iaf1 + iaf2 -> conv3 -> iaf3 (iaf1 feeds two layers)."""

    def __init__(self, merge: bool) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(2, 8, 3, padding=1, bias=False)
        self.i1 = sl.IAFSqueeze(batch_size=1, min_v_mem=-1.0)
        self.c2 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.i2 = sl.IAFSqueeze(batch_size=1, min_v_mem=-1.0)
        self.merge = sl.Merge() if merge else None
        self.c3 = nn.Conv2d(8, 4, 3, padding=1, bias=False)
        self.i3 = sl.IAFSqueeze(batch_size=1, min_v_mem=-1.0)

    def forward(self, x):
        a = self.i1(self.c1(x))
        b = self.i2(self.c2(a))
        m = self.merge(a, b) if self.merge is not None else a + b
        return self.i3(self.c3(m))


def test_residual_network_matches_dynapcnn_network_with_merge(tmp_path, capfd, dynapcnn):
    DynapcnnNetwork = dynapcnn[0]
    torch.manual_seed(0)
    res = _Residual(merge=False)  # nmtc reads the `+` as an Add node
    with torch.no_grad():
        for c in (res.c1, res.c2, res.c3):
            c.weight.mul_(4.0)
    out = tmp_path / "res.speck"
    export(graph_from_module(res, (2, 8, 8)), "speck", out)
    chip = json.loads((out / "chip_config.json").read_text())["layers"]
    assert [d["layer"] for d in chip[0]["destinations"]] == [chip[1]["core"], chip[2]["core"]]
    assert chip[2]["sources"] == [chip[0]["core"], chip[1]["core"]]
    assert main(["verify", str(out), "--samples", "2"]) == 0
    assert "identical" in capfd.readouterr().out
    ref_module = _Residual(merge=True)  # sinabs's own merge layer, same weights
    ref_module.load_state_dict(res.state_dict())
    ref = DynapcnnNetwork(ref_module, input_shape=(2, 8, 8), discretize=True, dvs_input=False)
    x = (torch.rand(20, 2, 8, 8, generator=torch.Generator().manual_seed(2)) < 0.5).float()
    with torch.no_grad():
        want = ref(x)
    got = Simulator(load_graph(out / "network.nmir"), "speck").run(x.numpy()[None], 20) \
        .outputs["output"]
    assert want.sum() > 0 and torch.equal(got.reshape(want.shape), want)
