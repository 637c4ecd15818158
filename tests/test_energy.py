"""Counting rules, energy and latency on hand-built RunCounts; every expected
value is derived by hand in the test from the published per-op numbers
(Davies 2018 Table 2 for loihi1, Horowitz 2014 for cmos45nm)."""
from __future__ import annotations

import numpy as np
import pytest

from nmtoolchain.energy import apply_rule, compare_profiles, estimate_energy, estimate_latency
from nmtoolchain.errors import BadInputError
from nmtoolchain.ir import IF, Affine, Graph, Output
from nmtoolchain.ir.conv import Conv2d
from nmtoolchain.ir.io import Input
from nmtoolchain.mapping import Placement, place
from simulators.cycle.counts import RunCounts


def one_core(profile, *layers):
    """A stated placement: each (neuron, synapse) layer on one core of its own."""
    return Placement.given(profile, {n: ((s, n), 1) for n, s in layers})


def two_node_placement(profile):
    return one_core(profile, ("lif1", "fc1"))


def _counts(steps, nodes, static, batch=1):
    """RunCounts from plain lists: nodes = {node: {counter: [per step]}}."""
    c = RunCounts(steps=steps, batch=batch, numerics="float", order=list(static))
    for n, d in nodes.items():
        c.nodes[n] = {k: np.asarray(v, dtype=float) for k, v in d.items()}
    c.static = static
    return c


def two_node_counts(batch=1):
    """A 4 -> 5 dense layer (fc1) fed binary spikes, and its 5 LIF neurons (lif1), T = 2.

    fc1: 20 synapses, fan-out 5 per input; inputs spiking 2 then 4 of 4 ->
    synops 10 then 20. lif1: 5 updates per step, 3 then 4 active, 1 then 2 spikes."""
    nodes = {
        "fc1": {"events_in": [2, 4], "spikes_in": [2, 4], "synops": [10, 20],
                "nb_ops": [8, 16], "nb_is_mac": [0, 0]},
        "lif1": {"events_in": [3, 4], "neuron_updates": [5, 5], "active_neurons": [3, 4],
                 "spikes_out": [1, 2]},
    }
    static = {
        "fc1": {"op": "Affine", "neurons": 0, "synapses": 20, "dense_macs": 20,
                "input_numel": 4, "input_binary": True, "input_kind": ["spikes"]},
        "lif1": {"op": "LIF", "neurons": 5, "synapses": 0, "dense_macs": 0,
                 "input_numel": 5, "input_binary": False, "input_kind": ["analog"]},
    }
    if batch != 1:
        nodes = {n: {k: [batch * x if k != "nb_is_mac" else x for x in v] for k, v in d.items()}
                 for n, d in nodes.items()}
    return _counts(2, nodes, static, batch)


# ------------------------------------------------------------------- energy
def test_loihi1_energy_of_two_node_run_matches_hand_arithmetic():
    r = estimate_energy(two_node_counts(), "loihi1", placement=two_node_placement("loihi1"))
    # synaptic: (10 + 20) synops x 23.6 pJ = 708 pJ
    # neuron: step 0: 3 x 81 + 2 x 52 = 347; step 1: 4 x 81 + 1 x 52 = 376 -> 723 pJ
    # spike: 3 spikes x (1.7 pJ spike + 1 hop x 3.5 pJ) = 15.6 pJ
    # latency (fc1 + lif1 = one layer on one core):
    #   step 0: 10 x 3.5 + 3 x 8.4 + 2 x 5.3 + 1 x 2.1 = 72.9 ns (+ 465 barrier = 537.9)
    #   step 1: 20 x 3.5 + 4 x 8.4 + 1 x 5.3 + 2 x 2.1 = 113.1 ns (+ 465 = 578.1)
    # static: 104 mW x (537.9 + 578.1) ns = 116064 pJ
    tot = r.total()
    assert tot["synaptic"] == pytest.approx(708.0)
    assert tot["neuron"] == pytest.approx(723.0)
    assert tot["spike"] == pytest.approx(15.6)
    assert tot["mac"] == 0.0
    assert tot["static"] == pytest.approx(116064.0)
    assert r.total_pj == pytest.approx(708.0 + 723.0 + 15.6 + 116064.0)
    assert r.rule == "fanout"


def test_energy_per_node_and_per_step_split_the_total():
    r = estimate_energy(two_node_counts(), "loihi1", placement=two_node_placement("loihi1"))
    nodes = r.per_node()
    assert nodes["fc1"]["synaptic"] == pytest.approx(708.0)
    assert nodes["lif1"]["neuron"] == pytest.approx(723.0)
    # the layer's static energy is booked on its neuron node
    assert nodes["lif1"]["static"] == pytest.approx(116064.0)
    steps = r.per_step()
    assert steps["synaptic"].tolist() == pytest.approx([236.0, 472.0])
    assert steps["neuron"].tolist() == pytest.approx([347.0, 376.0])
    assert steps["static"].tolist() == pytest.approx([104 * 537.9, 104 * 578.1])
    assert sum(d["total"] for d in nodes.values()) == pytest.approx(r.total_pj)


def test_cmos45nm_energy_of_two_node_run_is_spikformer_acs_times_0_9_pj():
    r = estimate_energy(two_node_counts(), "cmos45nm")
    # spikformer rule: fc1 dense MACs 20 x input rates (2/4, 4/4) = 10 + 20 = 30 ACs
    # 30 x 0.9 pJ = 27 pJ; no neuron, spike or static terms in the analytic model
    assert r.rule == "spikformer"
    assert r.total() == pytest.approx({"synaptic": 27.0, "mac": 0.0, "neuron": 0.0,
                                       "spike": 0.0, "static": 0.0, "total": 27.0})
    assert r.latency is None


def test_energy_is_per_sample_for_a_batched_run():
    one = estimate_energy(two_node_counts(batch=1), "loihi1",
                          placement=two_node_placement("loihi1"))
    three = estimate_energy(two_node_counts(batch=3), "loihi1",
                            placement=two_node_placement("loihi1"))
    assert three.total_pj == pytest.approx(one.total_pj)


def _analog_first_layer():
    """conv0 fed analog pixels: 100 dense MACs per step, 60 non-zero input x fan-out."""
    nodes = {"conv0": {"events_in": [12, 12], "macs": [60, 60], "nb_ops": [60, 60],
                       "nb_is_mac": [1, 1]}}
    static = {"conv0": {"op": "Conv2d", "neurons": 0, "synapses": 80, "dense_macs": 100,
                        "input_numel": 16, "input_binary": False, "input_kind": ["analog"]}}
    return _counts(2, nodes, static)


def test_analog_first_layer_costs_macs_under_both_conventions_differently():
    counts = _analog_first_layer()
    # spikformer: dense 100 MACs x T=2 = 200 MACs x 4.6 pJ = 920 pJ
    assert estimate_energy(counts, "cmos45nm").total()["mac"] == pytest.approx(920.0)
    # fanout: activity-aware 60 + 60 = 120 MACs x 4.6 pJ = 552 pJ
    assert estimate_energy(counts, "cmos45nm", rule="fanout").total()["mac"] == \
        pytest.approx(552.0)


# -------------------------------------------------------------------- rules
def test_fanout_rule_books_synops_as_acs_and_macs_as_macs():
    counts = two_node_counts()
    counts.nodes["fc1"]["macs"] = np.array([0.0, 7.0])
    r = apply_rule(counts, "fanout")
    assert (r.acs, r.macs) == (30.0, 7.0)
    assert r.per_node["fc1"].acs.tolist() == [10.0, 20.0]


def test_neurobench_books_a_layer_fed_values_above_one_as_macs():
    # fc2 sits after a sum-pool: step 0 saw a value of 2 (MAC step), step 1 only 0/1
    nodes = {"fc2": {"events_in": [3, 4], "spikes_in": [4, 4], "synops": [20, 20],
                     "nb_ops": [6, 8], "nb_is_mac": [1, 0]}}
    static = {"fc2": {"op": "Linear", "neurons": 0, "synapses": 25, "dense_macs": 25,
                      "input_numel": 5, "input_binary": False, "input_kind": ["spikes"]}}
    r = apply_rule(_counts(2, nodes, static), "neurobench")
    assert r.macs == 6.0 and r.acs == 8.0
    assert r.dense == 25 * 2          # synapses x steps


def test_neurobench_ignores_pooling_and_matmul():
    nodes = {"pool": {"synops": [4, 4], "nb_ops": [4, 4], "nb_is_mac": [0, 0]},
             "attn": {"synops": [9, 9]}}
    static = {"pool": {"op": "SumPool2d", "neurons": 0, "synapses": 16, "dense_macs": 0,
                       "input_numel": 16, "input_binary": True},
              "attn": {"op": "MatMul", "neurons": 0, "synapses": 0, "dense_macs": 27,
                       "input_numel": 18, "input_binary": True}}
    r = apply_rule(_counts(2, nodes, static), "neurobench")
    assert (r.acs, r.macs, r.dense) == (0.0, 0.0, 0.0)


def test_syops_counts_conv_bias_bn_neurons_and_ignores_matmul():
    nodes = {
        "conv": {"events_in": [4, 8], "synops": [30, 60]},
        "bn": {"events_in": [32, 32]},
        "lif": {"events_in": [32, 32], "neuron_updates": [32, 32], "spikes_out": [5, 5]},
        "attn": {"synops": [100, 100]},
    }
    static = {
        "conv": {"op": "Conv2d", "neurons": 0, "synapses": 200, "dense_macs": 288,
                 "input_numel": 16, "input_binary": True, "has_bias": True,
                 "output_shape": (2, 4, 4)},
        "bn": {"op": "BatchNorm", "neurons": 0, "input_numel": 32, "input_binary": False},
        "lif": {"op": "LIF", "neurons": 32, "input_numel": 32, "input_binary": False},
        "attn": {"op": "MatMul", "neurons": 0, "dense_macs": 512, "input_numel": 64,
                 "input_binary": True},
    }
    r = apply_rule(_counts(2, nodes, static), "syops")
    # conv: (288 dense + 32 bias outputs) = 320 ops x input rates (4/16 + 8/16) = 240 ACs
    assert r.per_node["conv"].ac_total == pytest.approx(240.0)
    # bn: 2 x 32 = 64 ops per step on analog input -> 128 MACs
    assert r.per_node["bn"].mac_total == pytest.approx(128.0)
    # lif: 32 per step, always ACs (analog input: rate 1) -> 64 ACs
    assert r.per_node["lif"].ac_total == pytest.approx(64.0)
    assert "attn" not in r.per_node
    assert (r.acs, r.macs) == pytest.approx((304.0, 128.0))


def test_syops_reads_the_conv_bias_from_the_graph():
    g = Graph()
    g.add("x", Input(shape=(1, 4, 4)))
    g.add("conv", Conv2d(weight=np.ones((2, 1, 3, 3), np.float32),
                         bias=np.array([0.5, 0.0], np.float32), padding=(1, 1)), ["x"])
    g.infer_shapes()
    dense = g.node_counts(g["conv"])["macs"]          # 2 x 4 x 4 outputs x 9 taps = 288
    nodes = {"conv": {"events_in": [16, 16], "synops": [200, 200]}}
    static = {"conv": {"op": "Conv2d", "neurons": 0, "synapses": 200, "dense_macs": dense,
                       "input_numel": 16, "input_binary": True}}
    counts = _counts(2, nodes, static)
    assert apply_rule(counts, "syops", g).acs == pytest.approx(2 * (288 + 32))
    without = apply_rule(counts, "syops")
    assert without.acs == pytest.approx(2 * 288)
    assert "conv" in without.notes[0]


def test_spikformer_rule_is_rate_times_t_times_flops():
    nodes = {"conv": {"events_in": [4, 6], "spikes_in": [4, 8], "synops": [50, 90]},
             "attn": {"synops": [100, 100]}, "q": {"spikes_out": [8, 16]}}
    static = {"conv": {"op": "Conv2d", "neurons": 0, "synapses": 200, "dense_macs": 288,
                       "input_numel": 16, "input_binary": False, "input_kind": ["spikes"]},
              "q": {"op": "LIF", "neurons": 32, "output_shape": [4, 8]},
              "attn": {"op": "MatMul", "neurons": 0, "dense_macs": 512, "input_numel": 64,
                       "inputs": ["q", "k"], "input_kind": ["spikes", "spikes"]}}
    r = apply_rule(_counts(2, nodes, static), "spikformer")
    # firing rates 4/16 and 8/16 (a value of 2 counts 2): 288 x (0.25 + 0.5) = 216 ACs
    assert r.per_node["conv"].ac_total == pytest.approx(216.0) and r.macs == 0.0
    # SSA term: Q·Kᵀ's dense MACs x the rate of Q (8/32, 16/32): 512 x 0.75 = 384 ACs
    assert r.per_node["attn"].ac_total == pytest.approx(384.0)
    assert r.acs == pytest.approx(600.0)


def test_spikformer_rule_max_pool_of_spikes_is_spikes():
    # conv2 reads a max-pool of spikes: ACs at the rate of its input values, not MACs
    nodes = {"conv2": {"events_in": [3, 5], "values_in": [3, 5], "macs": [30, 50]}}
    static = {"pool": {"op": "MaxPool2d", "inputs": ["lif"], "input_kind": ["spikes"]},
              "conv2": {"op": "Conv2d", "neurons": 0, "dense_macs": 100, "input_numel": 10,
                        "inputs": ["pool"], "input_kind": ["analog"]}}
    r = apply_rule(_counts(2, nodes, static), "spikformer")
    assert r.per_node["conv2"].ac_total == pytest.approx(100 * (0.3 + 0.5))
    assert r.macs == 0.0


def test_unknown_rule_is_bad_input():
    with pytest.raises(BadInputError, match="unknown counting rule 'flops'"):
        apply_rule(two_node_counts(), "flops")


# ------------------------------------------------------------------ latency
def _two_layer_counts():
    """Two dense+LIF layers; per step layer A: 100 synops, 10 neurons (4 active, 2 spikes);
    layer B: 30 synops, 5 neurons (1 active, 1 spike)."""
    nodes = {
        "fcA": {"synops": [100, 100]},
        "lifA": {"neuron_updates": [10, 10], "active_neurons": [4, 4], "spikes_out": [2, 2]},
        "fcB": {"synops": [30, 30]},
        "lifB": {"neuron_updates": [5, 5], "active_neurons": [1, 1], "spikes_out": [1, 1]},
    }
    static = {
        "fcA": {"op": "Affine", "neurons": 0, "synapses": 100, "dense_macs": 100,
                "input_numel": 10},
        "lifA": {"op": "LIF", "neurons": 10, "input_numel": 10},
        "fcB": {"op": "Affine", "neurons": 0, "synapses": 50, "dense_macs": 50,
                "input_numel": 10},
        "lifB": {"op": "LIF", "neurons": 5, "input_numel": 5},
    }
    return _counts(2, nodes, static)


# loihi1 work per step, by hand:
#   layer A: 100 x 3.5 + 4 x 8.4 + 6 x 5.3 + 2 x 2.1 = 350 + 33.6 + 31.8 + 4.2 = 419.6 ns
#   layer B:  30 x 3.5 + 1 x 8.4 + 4 x 5.3 + 1 x 2.1 = 105 + 8.4 + 21.2 + 2.1 = 136.7 ns
WORK_A, WORK_B, BARRIER = 419.6, 136.7, 465.0


def two_layers(profile, cores_a=1, cores_b=1):
    return Placement.given(profile, {"lifA": (("fcA", "lifA"), cores_a),
                                     "lifB": (("fcB", "lifB"), cores_b)})


def test_latency_is_slowest_layer_plus_barrier():
    lat = estimate_latency(_two_layer_counts(), "loihi1", two_layers("loihi1"))
    assert lat.step_ns.tolist() == pytest.approx([WORK_A + BARRIER] * 2)
    assert lat.total_ns == pytest.approx(2 * (WORK_A + BARRIER))
    assert lat.placement.cores_per_layer() == {"lifA": 1, "lifB": 1}


def test_latency_splits_a_layer_evenly_over_its_placed_cores():
    lat = estimate_latency(_two_layer_counts(), "loihi1", two_layers("loihi1", cores_a=4))
    # A on 4 cores: 419.6 / 4 = 104.9 ns < B's 136.7 ns on its one core
    assert lat.mean_step_ns == pytest.approx(WORK_B + BARRIER)
    assert lat.placement.n_cores == 5


def test_layers_placed_on_the_same_core_add_up():
    lat = estimate_latency(_two_layer_counts(), "loihi1", two_layers("loihi1", [0], [0]))
    assert lat.mean_step_ns == pytest.approx(WORK_A + WORK_B + BARRIER)
    assert lat.placement.n_cores == 1


def test_counted_work_the_placement_omits_gets_a_core_of_its_own_and_a_note():
    only_a = Placement.given("loihi1", {"lifA": (("fcA", "lifA"), 4)})
    lat = estimate_latency(_two_layer_counts(), "loihi1", only_a)
    # fcB and lifB each alone on one core: the slowest is fcB's 30 x 3.5 = 105 ns,
    # lifB's 8.4 + 4 x 5.3 + 2.1 = 31.7 ns, layer A's 104.9 ns per core
    assert lat.mean_step_ns == pytest.approx(105.0 + BARRIER)
    assert lat.placement.n_cores == 6
    assert any("fcB, lifB" in n and "one core each" in n for n in lat.notes)


def test_latency_needs_a_profile_with_times():
    with pytest.raises(BadInputError, match="cmos45nm.toml: .*no \\[time\\]"):
        estimate_latency(_two_layer_counts(), "cmos45nm")


def test_a_chip_profile_without_graph_or_placement_is_bad_input():
    with pytest.raises(BadInputError, match="'loihi' mapper, which needs the graph"):
        estimate_latency(_two_layer_counts(), "loihi1")


def test_placement_naming_an_unknown_node_is_bad_input():
    bad = Placement.given("loihi1", {"conv9": (("conv9",), 2)})
    with pytest.raises(BadInputError, match="placement: node 'conv9'"):
        estimate_latency(_two_layer_counts(), "loihi1", bad)


def test_placement_with_zero_cores_is_bad_input():
    with pytest.raises(BadInputError, match="placement: layer 'lifA' needs a core count"):
        two_layers("loihi1", cores_a=0)


def test_placement_of_another_profile_is_bad_input():
    with pytest.raises(BadInputError, match="placement is for profile 'loihi2'"):
        estimate_latency(_two_layer_counts(), "loihi1", two_layers("loihi2"))


# ------------------------------------------------ per-layer mapper (estimate)
def _dense_layer(neurons, inputs):
    """Input(inputs) -> Affine(neurons x inputs) 'fc' -> IF 'lif': neurons x inputs synapses."""
    g = Graph()
    g.add("x", Input((inputs,)))
    g.add("fc", Affine(np.ones((neurons, inputs), np.float32)), ["x"])
    g.add("lif", IF(), ["fc"])
    g.add("y", Output(), ["lif"])
    return g.infer_shapes()


def test_estimated_cores_follow_neurons_per_core():
    # loihi1: 2500 neurons / 1024 per core -> 3 cores; 25,000 synapses x 16 bits fit one core
    p = place(_dense_layer(2500, 10), "loihi1", mapper="per_layer")
    assert p.mapper == "per_layer" and p.cores_per_layer() == {"lif": 3}
    assert p.layer_of("fc").name == "lif"


def test_estimated_cores_follow_synaptic_memory():
    # loihi1: 200,000 synapses x 16 bits / 1,048,576 bits per core = 3.05 -> 4 cores
    p = place(_dense_layer(100, 2000), "loihi1", mapper="per_layer")
    assert p.cores_per_layer() == {"lif": 4}


def test_speck_puts_each_layer_on_one_core():
    p = place(_dense_layer(100_000, 2), "speck")
    assert p.mapper == "per_layer" and p.cores_per_layer() == {"lif": 1}


# --------------------------------------------------------------- comparison
def test_compare_profiles_reports_difference_to_cmos45nm():
    cmp = compare_profiles(two_node_counts(), ["loihi1"],
                           placements={"loihi1": two_node_placement("loihi1")})
    loihi_total = 708.0 + 723.0 + 15.6 + 116064.0          # from the loihi1 test above
    assert cmp.reference == "cmos45nm"
    assert cmp.total == pytest.approx({"loihi1": loihi_total, "cmos45nm": 27.0})
    assert cmp.relative["loihi1"]["total"] == pytest.approx((loihi_total - 27.0) / 27.0)
    # per node: fc1 costs 708 pJ on loihi1 and 27 pJ in the analytic model
    assert cmp.per_node["fc1"] == pytest.approx({"loihi1": 708.0, "cmos45nm": 27.0})
    assert cmp.relative["loihi1"]["fc1"] == pytest.approx((708.0 - 27.0) / 27.0)
    # lif1 costs nothing in the analytic model: no relative difference defined
    assert cmp.relative["loihi1"]["lif1"] is None
    assert cmp.relative["cmos45nm"]["total"] == 0.0


def test_reports_serialise_to_json():
    import json
    counts = two_node_counts()
    placed = {p: two_node_placement(p) for p in ("loihi1", "loihi2", "speck")}
    text = json.dumps({"energy": estimate_energy(counts, "loihi2",
                                                 placement=placed["loihi2"]).as_dict(),
                       "compare": compare_profiles(counts, ["loihi1", "speck"],
                                                   placements=placed).as_dict()})
    back = json.loads(text)
    assert back["energy"]["total_pj"]["synaptic"] == pytest.approx(708.0)
    assert back["compare"]["rules"] == {"loihi1": "fanout", "speck": "fanout",
                                        "cmos45nm": "spikformer"}


def test_max_pool_of_spikes_yields_spikes_counted_by_hand():
    """Input spikes (1, 4, 4) -> MaxPool 2x2 -> Conv 3x3 pad 1 (1 -> 1 channel) -> IF.

    The input has spikes in 3 of the 4 pooling windows at step 0 and 1 window at
    step 1, so the pool emits 3 then 1 spikes (binary). Each pooled position
    reaches all 4 outputs of the 2x2 conv (3x3 kernel, padding 1): fan-out 4.
    By hand: the conv books 12 then 4 synaptic ops (ACs under the fanout rule)
    and no MAC. Before the fix max-pool output was labelled analog and every
    layer behind it was priced as MACs."""
    import torch

    from nmtoolchain.ir import MaxPool2d
    from simulators.cycle.interpreter import simulate

    g = Graph()
    g.add("x", Input(shape=(1, 4, 4)))
    g.add("pool", MaxPool2d(kernel_size=(2, 2)), ["x"])
    g.add("conv", Conv2d(weight=np.ones((1, 1, 3, 3), np.float32), padding=(1, 1)), ["pool"])
    g.add("lif", IF(), ["conv"])
    g.add("y", Output(), ["lif"])
    x = torch.zeros(1, 2, 1, 4, 4)
    x[0, 0, 0, 0, 0] = 1          # window (0, 0)
    x[0, 0, 0, 1, 1] = 1          # window (0, 0) again: still one pooled spike
    x[0, 0, 0, 0, 3] = 1          # window (0, 1)
    x[0, 0, 0, 3, 3] = 1          # window (1, 1)
    x[0, 1, 0, 2, 0] = 1          # step 1: window (1, 0)
    counts = simulate(g, x, 2).counts
    np.testing.assert_array_equal(counts.counter("conv", "synops"), [12, 4])
    np.testing.assert_array_equal(counts.counter("conv", "macs"), [0, 0])
    ops = apply_rule(counts, "fanout")
    assert ops.per_node["conv"].acs.sum() == 16 and ops.per_node["conv"].macs.sum() == 0


def test_neurobench_rule_decides_mac_or_ac_per_step_over_the_batch():
    """NeuroBench classifies a forward call's ops as MACs when any input value lies
    outside {-1, 0, 1}; nmtc decides per step over the simulated batch. Batch of
    2, one step: sample 0 feeds [2, 0] (a value of 2), sample 1 feeds [1, 1].
    By hand: non-zero inputs x non-zero fan-out (1) = 1 + 2 = 3 ops over the
    batch, all MACs because of sample 0's 2; per sample 1.5 MACs, 0 ACs."""
    import torch

    from simulators.cycle.interpreter import simulate

    g = Graph()
    g.add("x", Input((2,)))
    g.add("fc", Affine(np.ones((1, 2), np.float32)), ["x"])
    g.add("n", IF(v_threshold=np.float32(10.0)), ["fc"])
    g.add("y", Output(), ["n"])
    counts = simulate(g, torch.tensor([[[2.0, 0.0]], [[1.0, 1.0]]]), 1).counts
    ops = apply_rule(counts, "neurobench")
    assert ops.per_node["fc"].macs.sum() == pytest.approx(1.5)
    assert ops.per_node["fc"].acs.sum() == 0
    # per-sample grouping (NeuroBench at batch size 1): sample 0's 1 op is a MAC,
    # sample 1's 2 ops are ACs; per sample 0.5 MACs and 1 AC
    ops = apply_rule(counts, "neurobench-sample")
    assert ops.per_node["fc"].macs.sum() == pytest.approx(0.5)
    assert ops.per_node["fc"].acs.sum() == pytest.approx(1.0)


def test_neurobench_sample_grouping_equals_neurobench_run_one_sample_at_a_time():
    """The per-sample rule on a batch equals the batch rule averaged over runs of one
    sample each (each such run is a NeuroBench forward call of batch size 1).
    Spiking inputs, one sample with a multi-spike of 2 at step 1 only."""
    import torch

    from simulators.cycle.interpreter import simulate

    g = Graph()
    g.add("x", Input((3,)))
    g.add("fc", Affine(np.array([[1, 0, 2], [0, 3, 1]], np.float32)), ["x"])
    g.add("n", IF(v_threshold=np.float32(100.0)), ["fc"])
    g.add("y", Output(), ["n"])
    x = torch.tensor([[[1.0, 0.0, 1.0], [2.0, 1.0, 0.0]],
                      [[0.0, 1.0, 1.0], [1.0, 1.0, 1.0]]])
    batch = apply_rule(simulate(g, x, 2).counts, "neurobench-sample").per_node["fc"]
    ones = [apply_rule(simulate(g, x[i:i + 1], 2).counts, "neurobench").per_node["fc"]
            for i in range(2)]
    np.testing.assert_allclose(batch.macs, (ones[0].macs + ones[1].macs) / 2)
    np.testing.assert_allclose(batch.acs, (ones[0].acs + ones[1].acs) / 2)
    # by hand, non-zero weights per input column: 1, 1, 2. Step 0: sample 0 feeds
    # columns 0, 2 -> 3 ACs; sample 1 columns 1, 2 -> 3 ACs. Step 1: sample 0 feeds
    # [2, 1, 0] -> 2 MACs; sample 1 all three -> 4 ACs. Per sample: ACs [3, 2], MACs [0, 1].
    np.testing.assert_allclose(batch.acs, [3.0, 2.0])
    np.testing.assert_allclose(batch.macs, [0.0, 1.0])
