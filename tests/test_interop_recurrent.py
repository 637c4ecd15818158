"""Recurrent networks from other tools, onto Loihi 2 (issue 14, item 4).

Two producers: snnTorch's RLeaky / RSynaptic written by snnTorch's own NIR
export, and a braille-style RNN written with nir's own API after the NIR
paper's Loihi 2 network (12 inputs -> 38 recurrent CubaLIF neurons with an
Affine recurrent weight -> 7 CubaLIF readout neurons; random weights; time
constants in seconds for a 1e-4 s step, read with ``--dt 1e-4``).

References, none of them nmtc's:

* float: snnTorch's own simulation of the same module (RLeaky, spike for
  spike), and NIR's equations integrated by hand in numpy below (the braille
  file), with the recurrent edge delivering the previous step's spikes, as
  snnTorch's ``recurrent(self.spk)`` and NIR's cycle semantics do;
* Loihi 2: Lava itself (``nmtc verify``: Lava fixed_pt running network.net vs
  nmtc's loihi simulation of the exported graph, every layer and step);
* mapping: the per-core needs of a recurrent layer derived by hand from the
  mapping's definitions (one input axon per pre-synaptic neuron, own neurons
  included; dense storage of [W_in | W_rec]; one output axon per destination
  core, the layer's own cores included).

Lava tests carry ``@pytest.mark.lava`` and skip with the reason where Lava is
hidden or absent (conftest); snnTorch tests skip where snnTorch is not installed.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

DT = 1e-4
T = 25
B = 6
N_IN, N_HID, N_OUT = 12, 38, 7

needs_lava = pytest.mark.lava


# ------------------------------------------------------------ braille file
def _braille_params(seed: int = 0) -> dict:
    """Braille-style RNN parameters as snnTorch's RSynaptic writes them for a
    1e-4 s step (w_in = tau_syn/dt, r = tau_mem/dt: I' = a I + x, v' = b v + I)."""
    rng = np.random.default_rng(seed)
    f32 = lambda a: np.asarray(a, np.float32)  # noqa: E731
    tau_syn, tau_mem = 5e-4, 1e-3  # a = 0.8, b = 0.9 per step
    return {
        "w1": f32(rng.normal(0.0, 0.45, (N_HID, N_IN))), "b1": f32(rng.normal(0, 0.02, N_HID)),
        "w_rec": f32(rng.normal(0.0, 0.12, (N_HID, N_HID))),
        "w2": f32(rng.normal(0.0, 0.35, (N_OUT, N_HID))), "b2": f32(np.zeros(N_OUT)),
        "tau_syn": tau_syn, "tau_mem": tau_mem, "v_th": 1.0,
    }


def _cuba(n: int, p: dict):
    import nir

    full = lambda v: np.full(n, v, np.float32)  # noqa: E731
    return nir.CubaLIF(tau_syn=full(p["tau_syn"]), tau_mem=full(p["tau_mem"]),
                       r=full(p["tau_mem"] / DT), v_leak=full(0.0), v_threshold=full(p["v_th"]),
                       w_in=full(p["tau_syn"] / DT), v_reset=full(0.0))


def write_braille_rnn(path: Path, seed: int = 0) -> Path:
    """The braille-style recurrent network, written with nir's own API."""
    import nir

    p = _braille_params(seed)
    nodes = {
        "input": nir.Input(input_type={"input": np.array([N_IN])}),
        "fc1": nir.Affine(p["w1"], p["b1"]),
        "lif1": _cuba(N_HID, p),
        "w_rec": nir.Affine(p["w_rec"], np.zeros(N_HID, np.float32)),
        "fc2": nir.Affine(p["w2"], p["b2"]),
        "lif2": _cuba(N_OUT, p),
        "output": nir.Output(output_type={"output": np.array([N_OUT])}),
    }
    edges = [("input", "fc1"), ("fc1", "lif1"), ("lif1", "w_rec"), ("w_rec", "lif1"),
             ("lif1", "fc2"), ("fc2", "lif2"), ("lif2", "output")]
    nir.write(str(path), nir.NIRGraph(nodes=nodes, edges=edges))
    return path


def _braille_by_hand(x: np.ndarray, p: dict) -> tuple:
    """NIR's equations, forward Euler with step DT, in float64: (hidden, output)
    spikes. Edges into a node are summed; the recurrent edge carries the hidden
    layer's spikes of the previous step (zeros at step 0)."""
    x = x.astype(np.float64)
    a_syn, a_mem = DT / p["tau_syn"], DT / p["tau_mem"]
    w_in, r = p["tau_syn"] / DT, p["tau_mem"] / DT

    def layer(i, v, inp):
        i = i + a_syn * (-i + w_in * inp)
        v = v + a_mem * (0.0 - v + r * i)
        s = v > p["v_th"]
        return i, np.where(s, 0.0, v), s.astype(np.float64)

    b = x.shape[0]
    i1, v1, s1 = np.zeros((b, N_HID)), np.zeros((b, N_HID)), np.zeros((b, N_HID))
    i2, v2 = np.zeros((b, N_OUT)), np.zeros((b, N_OUT))
    hid, out = [], []
    for t in range(x.shape[1]):
        rec = s1 @ p["w_rec"].T.astype(np.float64)  # last step's spikes
        i1, v1, s1 = layer(i1, v1, x[:, t] @ p["w1"].T + p["b1"] + rec)
        i2, v2, s2 = layer(i2, v2, s1 @ p["w2"].T + p["b2"])
        hid.append(s1)
        out.append(s2)
    return np.stack(hid, 1), np.stack(out, 1)


def _spikes(seed: int, rate: float = 0.3, n: int = N_IN) -> np.ndarray:
    return (np.random.default_rng(seed).random((B, T, n)) < rate).astype(np.float32)


def test_braille_rnn_float_simulation_follows_nir_equations_by_hand(tmp_path):
    from simulators.cycle import Simulator

    import nmtoolchain as nmtc

    path = write_braille_rnn(tmp_path / "braille.nir")
    x = _spikes(1)
    want_hid, want_out = _braille_by_hand(x, _braille_params())
    graph = nmtc.load(str(path), dt=DT)
    res = Simulator(graph, "float", record=["lif1", "lif2"]).run(x, T)
    got_hid = res.recorded["lif1"].numpy()
    got_out = res.recorded["lif2"].numpy()

    assert want_hid.sum() > 100 and want_out.sum() > 10  # not vacuous
    # the recurrence matters: without it the hidden layer spikes differently
    no_rec = dict(_braille_params(), w_rec=np.zeros((N_HID, N_HID), np.float32))
    assert (_braille_by_hand(x, no_rec)[0] != want_hid).any()
    np.testing.assert_array_equal(got_hid, want_hid)
    np.testing.assert_array_equal(got_out, want_out)


# ------------------------------------------------------------ snnTorch
def _snntorch():
    return pytest.importorskip("snntorch", reason="snnTorch is not installed: no snnTorch "
                                                  "RLeaky/RSynaptic file to read")


def _snn_rnn(kind: str):
    """Linear -> RLeaky/RSynaptic (all-to-all recurrent Linear) -> Linear -> Leaky.
    One beta per layer (netx holds one decay per layer), reset to zero."""
    snn = _snntorch()
    import torch
    from torch import nn

    torch.manual_seed(0)
    n = N_HID
    if kind == "RLeaky":
        rec = snn.RLeaky(beta=torch.full((n,), 0.9), threshold=torch.ones(n), linear_features=n,
                         init_hidden=True, reset_mechanism="zero", reset_delay=False)
    else:  # snnTorch 1.0.0's RSynaptic forward fails with reset_delay=False: its default
        rec = snn.RSynaptic(alpha=torch.full((n,), 0.8), beta=torch.full((n,), 0.9),
                            threshold=torch.ones(n), linear_features=n, init_hidden=True,
                            reset_mechanism="zero")
    net = nn.Sequential(nn.Linear(N_IN, n), rec, nn.Linear(n, N_OUT),
                        snn.Leaky(beta=torch.full((N_OUT,), 0.9), threshold=torch.ones(N_OUT),
                                  init_hidden=True, output=True, reset_mechanism="zero",
                                  reset_delay=False))
    with torch.no_grad():
        net[0].weight.mul_(3.0)
        net[2].weight.mul_(3.0)
    return net


def _run_snntorch(net, x: np.ndarray) -> tuple:
    """snnTorch's own simulation, one call per step: (hidden, output) spikes."""
    import torch

    for m in net.modules():
        if hasattr(m, "reset_hidden"):
            m.reset_hidden()
    hid, out = [], []
    with torch.no_grad():
        for t in range(x.shape[1]):
            o = net(torch.from_numpy(x[:, t]))
            out.append((o[0] if isinstance(o, tuple) else o).numpy())
            hid.append(net[1].spk.numpy().copy())
    return np.stack(hid, 1), np.stack(out, 1)


def _write_snntorch(net, path: Path) -> Path:
    import nir
    import torch
    from snntorch.export_nir import export_to_nir

    nir.write(str(path), export_to_nir(net, torch.zeros(1, N_IN), ignore_dims=[0]))
    return path


def test_snntorch_rleaky_file_is_recurrent_and_simulates_like_snntorch(tmp_path):
    from simulators.cycle import Simulator

    import nmtoolchain as nmtc

    net = _snn_rnn("RLeaky")
    x = _spikes(2)
    want_hid, want_out = _run_snntorch(net, x)
    graph = nmtc.load(str(_write_snntorch(net, tmp_path / "rleaky.nir")), dt=DT)
    assert graph.order()[1]  # the file's recurrent edge is a back edge of the graph
    res = Simulator(graph, "float", record=["1.lif"]).run(x, T)
    (got_out,) = res.outputs.values()

    assert want_hid.sum() > 100 and want_out.sum() > 10
    np.testing.assert_array_equal(res.recorded["1.lif"].numpy(), want_hid)
    np.testing.assert_array_equal(got_out.numpy().reshape(want_out.shape), want_out)


# ------------------------------------------------------------ inspect / export
def _models(tmp_path: Path) -> dict:
    out = {"braille": write_braille_rnn(tmp_path / "braille.nir")}
    try:
        import snntorch  # noqa: F401
    except ImportError:
        return out
    for kind in ("RLeaky", "RSynaptic"):
        out[kind] = _write_snntorch(_snn_rnn(kind), tmp_path / f"{kind}.nir")
    return out


def test_recurrent_files_are_accepted_for_loihi2_by_inspect_and_export(tmp_path, capsys):
    """inspect's verdict says ✓ loihi2 with no Lava-only note, and export writes a
    dense_rec layer (recurrent weights, same exponent) placed on cores."""
    import json

    import h5py

    from nmtoolchain.cli import main

    for name, path in _models(tmp_path).items():
        capsys.readouterr()
        assert main(["inspect", str(path), "--json", "--dt", str(DT)]) == 0
        verdict = {v["target"]: v for v in json.loads(capsys.readouterr().out)["targets"]}
        assert verdict["loihi2"]["ok"], (name, verdict["loihi2"])
        assert not any("Lava's CPU simulator" in r for r in verdict["loihi2"].get("reasons", []))
        out = tmp_path / f"{name}.loihi2"
        assert main(["export", str(path), "--target", "loihi2", "--dt", str(DT),
                     "-o", str(out)]) == 0, capsys.readouterr().err
        with h5py.File(out / "network.net", "r") as f:
            assert f["layer/1/type"][0] == b"dense_rec"
            assert f["layer/1/weight_rec"].shape == (N_HID, N_HID)
            assert f["layer/2/type"][0] == b"dense"
            w = np.hstack((f["layer/1/weight"][()], f["layer/1/weight_rec"][()]))
            assert np.array_equal(w, np.round(w)) and w.min() >= -256 and w.max() <= 254
        mapping = json.loads((out / "mapping.json").read_text())
        rec = mapping["layers"][0]
        assert rec["recurrent"] == "layer1_recurrent"
        assert rec["totals"]["input_axons"] == N_IN + N_HID


def test_a_recurrent_loop_netx_cannot_hold_is_refused_naming_the_edge(tmp_path, capsys):
    """A loop whose recurrent synapse feeds the neuron without an input synapse
    beside it (no Add) is not a dense_rec layer: inspect and export agree."""
    import json

    import nir

    from nmtoolchain.cli import main

    p = _braille_params()
    nodes = {"input": nir.Input(input_type={"input": np.array([N_HID])}),
             "lif1": _cuba(N_HID, p), "w_rec": nir.Linear(p["w_rec"]),
             "fc2": nir.Linear(p["w2"]), "lif2": _cuba(N_OUT, p),
             "output": nir.Output(output_type={"output": np.array([N_OUT])})}
    path = tmp_path / "loop.nir"
    nir.write(str(path), nir.NIRGraph(nodes=nodes, edges=[
        ("input", "lif1"), ("lif1", "w_rec"), ("w_rec", "lif1"), ("lif1", "fc2"),
        ("fc2", "lif2"), ("lif2", "output")]))
    capsys.readouterr()
    assert main(["inspect", str(path), "--json", "--dt", str(DT)]) == 0
    verdict = {v["target"]: v for v in json.loads(capsys.readouterr().out)["targets"]}
    assert not verdict["loihi2"]["ok"]
    rc = main(["export", str(path), "--target", "loihi2", "--dt", str(DT),
               "-o", str(tmp_path / "x.loihi2")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "lif1" in err
    assert not (tmp_path / "x.loihi2").exists()


# ------------------------------------------------------------ mapping by hand
def test_recurrent_layer_mapping_counts_its_own_synapses_and_axons(tmp_path):
    """40 recurrent neurons at 16 per core: three slices. Each slice stores
    rows x (12 + 40) synapses (dense storage) and reads 12 + 40 input axons;
    each hidden neuron sends to the 3 hidden cores and the readout's core."""
    from nmtoolchain.ir import Add, Affine, CubaLIF, Graph, Input, Output
    from nmtoolchain.mapping import map_onto_cores, place
    from nmtoolchain.quantize import quantize_for_loihi

    n = 40
    rng = np.random.default_rng(5)

    g = Graph()
    g.add("in", Input((N_IN,)))
    g.add("fc1", Affine(rng.normal(0, 1, (n, N_IN)).astype(np.float32), None), ["in"])
    g.add("lif1", CubaLIF(tau_syn=2.0, tau_mem=4.0, v_threshold=1.0), ["sum"])
    g.add("rec", Affine(rng.normal(0, 0.3, (n, n)).astype(np.float32), None), ["lif1"])
    g.add("sum", Add(), ["fc1", "rec"])
    g.add("fc2", Affine(rng.normal(0, 1, (N_OUT, n)).astype(np.float32), None), ["lif1"])
    g.add("lif2", CubaLIF(tau_syn=2.0, tau_mem=4.0, v_threshold=1.0), ["fc2"])
    g.add("out", Output(), ["lif2"])
    g.infer_shapes()
    q, _ = quantize_for_loihi(g)
    rep = map_onto_cores(q, "loihi2", limits={"neurons": 16})

    hid = rep.layer("layer1_neuron")
    assert hid.recurrent == "layer1_recurrent" and hid.neurons_per_core == [16, 16, 8]
    bps = hid.bits_per_synapse
    hid_cores = [c for c in rep.cores if c.layer == hid.name]
    readout_core = next(c.id for c in rep.cores if c.layer != hid.name)
    for core, rows in zip(hid_cores, (16, 16, 8)):
        assert core.needs["synaptic_memory"] == rows * (N_IN + n) * bps
        assert core.needs["input_axons"] == N_IN + n
        assert core.needs["output_axons"] == rows * (3 + 1)
        assert core.destinations == sorted([c.id for c in hid_cores] + [readout_core])
    # the one placement energy and reports read puts the whole layer on those cores
    placed = place(q, "loihi2", limits={"neurons": 16}, strict=True)
    assert set(placed.layer_of("layer1_recurrent").nodes) == {
        "layer1_dense_rec", "layer1_recurrent", "layer1_sum", "layer1_neuron"}


# ------------------------------------------------------------ Lava
def _export_and_verify(model: Path, tmp_path: Path, x: np.ndarray, calib: bool = True):
    import nmtoolchain as nmtc

    kw = {}
    if calib:
        np.savez(tmp_path / "calib.npz", x=x)
        kw["calib"] = str(tmp_path / "calib.npz")
    exp = nmtc.export(str(model), "loihi2", str(tmp_path / "out.loihi2"), dt=DT, timesteps=T,
                      **kw)
    ver = nmtc.verify(exp.path, x, timesteps=T + 2)
    return exp, ver


@needs_lava
def test_braille_rnn_export_runs_in_lava_spike_for_spike(tmp_path):
    x = _spikes(3)
    exp, ver = _export_and_verify(write_braille_rnn(tmp_path / "braille.nir"), tmp_path, x)
    assert ver.identical, ver.lines()
    assert len(ver.samples) == B and sum(s.events for s in ver.samples) > 100  # not vacuous
    row = exp.report["quantization"]["layers"][0]
    assert row["recurrent"] == "layer1_recurrent"
    # measured against the float source on the calibration spikes (reported, not gated)
    assert row["error"]["vs_float"]["spikes_per_sample_float"] > 0


@needs_lava
@pytest.mark.parametrize("kind", ["RLeaky", "RSynaptic"])
def test_snntorch_recurrent_export_runs_in_lava_spike_for_spike(kind, tmp_path):
    net = _snn_rnn(kind)
    x = _spikes(4)
    _, ver = _export_and_verify(_write_snntorch(net, tmp_path / f"{kind}.nir"), tmp_path, x)
    assert ver.identical, ver.lines()
    assert len(ver.samples) == B and sum(s.events for s in ver.samples) > 100
