"""The cycle-level simulator: float numerics against sinabs, counts against
sinabs and hand-derived values, Loihi CUBA arithmetic against a hand trace."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from nmtoolchain import ir
from nmtoolchain.errors import BadInputError, UnsupportedOpError
from nmtoolchain.frontends.torch_loader import graph_from_module
from nmtoolchain.numerics.loihi import LoihiCubaNeuron
from simulators.cycle import Simulator, simulate


# --------------------------------------------------------- float vs sinabs
def _sinabs_cnn(spike_fn, batch):
    import sinabs.activation as sa
    import sinabs.layers as sl

    def iaf():
        return sl.IAFSqueeze(batch_size=batch, spike_fn=spike_fn, min_v_mem=-1.0,
                             reset_fn=sa.MembraneSubtract())

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1, bias=False), iaf(), sl.SumPool2d(2),
        nn.Conv2d(4, 8, 3, stride=2, padding=1, bias=False), iaf(),
        nn.Flatten(), nn.Linear(8 * 2 * 2, 5, bias=False), iaf())
    for m in model:
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            m.weight.data *= 2.5
    return model


@pytest.mark.parametrize("spike", ["single", "multi"])
@pytest.mark.sinabs
def test_float_numerics_reproduce_sinabs_spikes_and_synops(spike):
    import sinabs
    import sinabs.activation as sa

    batch, steps = 3, 12
    model = _sinabs_cnn(sa.SingleSpike if spike == "single" else sa.MultiSpike, batch)
    x = (torch.rand(batch, steps, 2, 8, 8, generator=torch.Generator().manual_seed(1)) < 0.3).float()

    graph = graph_from_module(model, (2, 8, 8))
    res = Simulator(graph, "float", record="neurons").run(x, steps)

    analyzer = sinabs.SNNAnalyzer(model)
    recorded = {}
    hooks = [m.register_forward_hook(lambda mod, i, o, k=k: recorded.__setitem__(k, o.detach()))
             for k, m in enumerate(model) if hasattr(m, "spike_threshold")]
    sinabs.reset_states(model)
    with torch.no_grad():
        model(x.reshape(batch * steps, 2, 8, 8))
    for h in hooks:
        h.remove()

    # spikes: every IF layer, every step, every neuron (sinabs flattens batch*time)
    neuron_nodes = [n for n in graph.topological_order() if n.op_name == "IF"]
    assert len(neuron_nodes) == len(recorded) == 3
    for node, (k, ref) in zip(neuron_nodes, sorted(recorded.items())):
        ours = res.recorded[node.name]
        assert torch.equal(ours.reshape(ref.shape), ref), node.name
    assert sum(float(r.sum()) for r in recorded.values()) > 0

    # synops per weighted layer: sinabs reports them per sample, summed over the steps
    stats = analyzer.get_layer_statistics()["parameter"]
    weighted = [n for n in graph.topological_order() if n.op_name in ("Conv2d", "Linear", "Affine")]
    per_sample = [res.counts.counter(n.name, "synops").sum() / batch for n in weighted]
    sinabs_synops = [float(v["synops"]) for v in stats.values()]
    assert len(sinabs_synops) == 3
    assert np.allclose(per_sample, sinabs_synops, rtol=1e-6)


# ------------------------------------------------------ hand-derived counts
def test_counts_of_a_small_net_match_hand_derivation():
    g = ir.Graph({"dt": 1.0})
    g.add("x", ir.Input((3,)))
    g.add("fc", ir.Affine(np.array([[1.0, 0.0, 2.0], [0.5, 0.5, 0.0]])), ["x"])
    g.add("lif", ir.IF(v_threshold=1.0), ["fc"])
    g.add("y", ir.Output(), ["lif"])
    spikes = torch.tensor([[[1, 0, 1], [0, 1, 0], [1, 1, 1]]], dtype=torch.float32)  # (B=1,T=3,3)
    res = simulate(g, spikes, 3)
    c = res.counts
    # step 1: inputs {0,2} -> 2 events x 2 outputs = 4 synops; step 2: 1 x 2; step 3: 3 x 2
    assert c.counter("fc", "synops").tolist() == [4, 2, 6]
    # NeuroBench counts only non-zero weights: column nnz = [2, 1, 1]
    assert c.counter("fc", "nb_ops").tolist() == [2 + 1, 1, 2 + 1 + 1]
    # v: step1 = W@[1,0,1] = [3, .5] -> neuron 0 fires (3 > 1), v -> [2, .5]
    #    step2 = [2, .5] + [0, .5] = [2, 1] -> neuron 0 fires (2 > 1), v -> [1, 1]
    #    step3 = [1, 1] + [3, 1] = [4, 2] -> both fire
    assert res.outputs["y"][0].tolist() == [[1, 0], [1, 0], [1, 1]]
    assert c.counter("lif", "spikes_out").tolist() == [1, 1, 2]
    assert c.counter("lif", "neuron_updates").tolist() == [2, 2, 2]
    assert c.static["fc"]["input_binary"] is True


def test_counts_over_many_steps_equal_numpy_across_the_counters_buffered_chunks():
    # 70 steps span three of the counter's 32-step chunks (the last one partial);
    # every per-step count of a Linear fed random multi-spikes is recomputed here
    # with numpy from the same spikes, summed over the batch.
    rng = np.random.default_rng(3)
    w = rng.normal(size=(5, 12)).astype(np.float32)
    w[:3, :4] = 0.0  # columns 0-3 drive only 2 of the 5 outputs
    g = ir.Graph({"dt": 1.0})
    g.add("x", ir.Input((12,)))
    g.add("fc", ir.Linear(w), ["x"])
    g.add("y", ir.Output(), ["fc"])
    x = rng.integers(0, 3, size=(2, 70, 12)) * (rng.random((2, 70, 12)) < 0.3)
    x = x.astype(np.float32)
    c = simulate(g, x, 70).counts
    np.testing.assert_array_equal(c.counter("fc", "events_in"), (x != 0).sum(axis=(0, 2)))
    np.testing.assert_array_equal(c.counter("fc", "spikes_in"), x.sum(axis=(0, 2)))
    np.testing.assert_array_equal(c.counter("fc", "synops"), 5 * x.sum(axis=(0, 2)))
    np.testing.assert_array_equal(c.counter("fc", "nb_ops"),
                                  ((x != 0) * (w != 0).sum(0)).sum(axis=(0, 2)))
    np.testing.assert_array_equal(c.counter("fc", "nb_is_mac"), (x.max(axis=(0, 2)) > 1) * 1.0)
    assert c.static["fc"]["input_binary"] is bool(x.max() <= 1)


def test_recording_an_unknown_node_is_refused_naming_it():
    g = ir.Graph()
    g.add("x", ir.Input((2,)))
    g.add("y", ir.Output(), ["x"])
    with pytest.raises(BadInputError, match=r"cannot record unknown node\(s\) \['nope'\]"):
        Simulator(g, record=["x", "nope"])


def test_conv_synops_are_border_aware():
    # 1 input channel 3x3, kernel 3x3, padding 1, 2 output channels: a spike in the
    # corner reaches 2x2 output positions per channel = 8 synapses; the centre reaches 18.
    g = ir.Graph()
    g.add("x", ir.Input((1, 3, 3)))
    g.add("c", ir.Conv2d(np.ones((2, 1, 3, 3)), padding=1), ["x"])
    g.add("y", ir.Output(), ["c"])
    x = torch.zeros(1, 2, 1, 3, 3)
    x[0, 0, 0, 0, 0] = 1  # corner at step 1
    x[0, 1, 0, 1, 1] = 1  # centre at step 2
    res = simulate(g, x, 2)
    assert res.counts.counter("c", "synops").tolist() == [8, 18]


def test_analog_first_layer_counts_macs_not_synops():
    g = ir.Graph()
    g.add("x", ir.Input((4,)))
    g.add("fc", ir.Linear(np.ones((3, 4))), ["x"])
    g.add("y", ir.Output(), ["fc"])
    res = simulate(g, torch.tensor([[0.5, 0.0, 0.25, 2.0]]), 2)
    assert res.counts.counter("fc", "macs").tolist() == [9, 9]  # 3 non-zero inputs x 3
    assert res.counts.counter("fc", "synops").tolist() == [0, 0]
    assert res.counts.counter("fc", "nb_is_mac").tolist() == [1, 1]


def test_spiking_matmul_counts_coincident_pairs():
    g = ir.Graph()
    g.add("q", ir.Input((2, 3)))
    g.add("k", ir.Input((3, 2)))
    g.add("s", ir.MatMul(), ["q", "k"])
    g.add("y", ir.Output(), ["s"])
    q = torch.tensor([[[1, 0, 1], [0, 0, 1]]], dtype=torch.float32)
    k = torch.tensor([[[1, 1], [1, 0], [0, 1]]], dtype=torch.float32)
    res = simulate(g, {"q": q, "k": k}, 1)
    # products with both factors non-zero: row0: k-rows 0 (2) + 2 (1) = 3; row1: k-row 2 (1) = 1
    assert res.counts.counter("s", "synops").tolist() == [4]
    assert torch.equal(res.outputs["y"][0, 0], q[0] @ k[0])


def test_qcfs_if_conversion_semantics_precharge_and_subtract():
    # IF with threshold 2, pre-charged to 1 (λ/2), reset by subtraction, fires at >=
    g = ir.Graph()
    g.add("x", ir.Input((1,)))
    g.add("n", ir.IF(v_threshold=2.0, v_init=1.0, compare=">=", reset="subtract"), ["x"])
    g.add("y", ir.Output(), ["n"])
    res = simulate(g, torch.tensor([[1.0]]), 4)
    # v: 1+1=2 fire -> 0; 0+1=1; 1+1=2 fire -> 0; 1
    assert res.outputs["y"][0, :, 0].tolist() == [1, 0, 1, 0]


def test_spike_mask_drops_about_p_and_is_seeded():
    g = ir.Graph()
    g.add("x", ir.Input((1000,)))
    g.add("m", ir.SpikeMask(p=0.75, seed=3), ["x"])
    g.add("y", ir.Output(), ["m"])
    ones = torch.ones(2, 1000)
    a = simulate(g, ones, 5).outputs["y"]
    b = simulate(g, ones, 5).outputs["y"]
    assert torch.equal(a, b)
    kept = float(a.mean())
    assert 0.2 < kept < 0.3  # binomial(10000, 0.25): 5 sigma is ~0.022
    assert not torch.equal(a[:, 0], a[:, 1])  # a fresh draw every step


# -------------------------------------------------- Loihi CUBA by hand
def _cuba_graph(i_decay, v_decay, vth, bias=0, weight=1.0):
    g = ir.Graph({"dt": 1.0})
    g.add("x", ir.Input((1,)))
    g.add("w", ir.Affine(np.array([[weight]])), ["x"])
    g.add("n", ir.CubaLIF(v_threshold=vth, reset="to_reset"), ["w"],
          numerics=LoihiCubaNeuron(i_decay=i_decay, v_decay=v_decay, v_th_mant=vth,
                                   bias_mant=bias, bias_exp=6))
    g.add("y", ir.Output(), ["n"])
    return g


def test_loihi_cuba_matches_hand_trace():
    # iDecay 2048 (u halves), vDecay 1024 (v keeps 3/4), vth 3 -> 192 after << 6, weight 2.
    g = _cuba_graph(2048, 1024, 3, weight=2.0)
    spikes = torch.tensor([[[1], [0], [0], [1], [0]]], dtype=torch.float32)
    res = Simulator(g, "loihi", record_state=True).run(spikes, 5)
    u = res.state["n"]["u"][0, :, 0].tolist()
    v = res.state["n"]["v"][0, :, 0].tolist()
    # the synapse delays by one step: a = [0, 2, 0, 0, 2]; a << 6 = [0, 128, 0, 0, 128]
    # u: 0; 0*2048/4096 + 128 = 128; 64; 32; 16 + 128 = 144
    assert u == [0, 128, 64, 32, 144]
    # v: 0; 0 + 128 = 128; 128*3/4 + 64 = 160; 120 + 32 = 152; 114 + 144 = 258 > 192 -> spike, v = 0
    assert v == [0, 128, 160, 152, 0]
    assert res.outputs["y"][0, :, 0].tolist() == [0, 0, 0, 0, 1]


def test_loihi_decay_rounds_toward_zero_for_negative_values():
    # weight -3: u = -192 at step 2, then -192 * 4095/4096 -> -191.95 -> -191 (toward zero)
    g = _cuba_graph(1, 4096, 100, weight=-3.0)
    spikes = torch.tensor([[[1], [0], [0]]], dtype=torch.float32)
    res = Simulator(g, "loihi", record_state=True).run(spikes, 3)
    assert res.state["n"]["u"][0, :, 0].tolist() == [0, -192, -191]


def test_loihi_current_wraps_and_voltage_saturates():
    # a single weight of 2^17 - 1 times 64 exceeds the 24-bit u: Lava wraps u once
    # (u > 2^23 -> u - 2^24) but saturates v at 2^23 - 1.
    g = _cuba_graph(4096, 4096, 131071, weight=float(2 ** 17 + 5))
    res = Simulator(g, "loihi", record_state=True).run(torch.ones(1, 3, 1), 3)
    a6 = (2 ** 17 + 5) * 64  # = 2^23 + 320
    assert res.state["n"]["u"][0, 1, 0].item() == a6 - 2 ** 24
    # u = -2^22 every step (iDecay 4096), v never decays (vDecay 0): v runs to the floor
    g2 = _cuba_graph(4096, 0, 131071, weight=-float(2 ** 16))
    res2 = Simulator(g2, "loihi", record_state=True).run(torch.ones(1, 5, 1), 5)
    assert res2.state["n"]["v"][0, :, 0].tolist() == [0, -2 ** 22, -(2 ** 23 - 1),
                                                       -(2 ** 23 - 1), -(2 ** 23 - 1)]


def test_loihi_numerics_refuse_unquantized_nodes():
    g = ir.Graph()
    g.add("x", ir.Input((2,)))
    g.add("w", ir.Affine(np.array([[0.5, 1.0]])), ["x"])
    g.add("n", ir.IF(), ["w"])
    g.add("y", ir.Output(), ["n"])
    with pytest.raises(UnsupportedOpError, match="'w'.*not integers"):
        Simulator(g, "loihi")


def test_bad_input_shape_is_named():
    g = _cuba_graph(0, 0, 10)
    with pytest.raises(BadInputError, match="input 'x' has shape"):
        simulate(g, torch.zeros(1, 2, 3), 2)


def test_lambda_scaled_spikes_are_counted_as_events_not_macs():
    # a converted QCFS layer emits spikes of amplitude λ (IF -> Scale(λ)); the next
    # layer receives events: 1 event x fan-out 3 = 3 synops per step, no MACs
    g = ir.Graph()
    g.add("x", ir.Input((1,)))
    g.add("n", ir.IF(v_threshold=0.5), ["x"])
    g.add("s", ir.Scale(2.0), ["n"])
    g.add("fc", ir.Linear(np.ones((3, 1))), ["s"])
    g.add("y", ir.Output(), ["fc"])
    res = simulate(g, torch.ones(1, 1), 2)
    assert res.counts.counter("fc", "synops").tolist() == [3, 3]
    assert res.counts.counter("fc", "macs").tolist() == [0, 0]
