"""nmtc's loihi1-sanafe profile against SANA-FE 2.2.9 itself (the independent
referee: its compiled simulator and its silicon-calibrated loihi.yaml), on a
dense net, a conv net and a net with many spikes split over several tiles.
Events must be identical; energy and time per step within 5%."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from hardware_profiles import load_profile
from nmtoolchain.energy import estimate_energy, estimate_latency
from nmtoolchain.errors import BadInputError
from nmtoolchain.ir import LIF, Affine, Graph, Output
from nmtoolchain.ir.conv import Conv2d
from nmtoolchain.ir.io import Input
from nmtoolchain.mapping import Placement
from simulators.cycle.interpreter import simulate
from simulators.sanafe_cases import CASES
from simulators.sanafe_runner import run_sanafe, sanafe_layers


@pytest.mark.sanafe
@pytest.mark.parametrize("make", CASES, ids=lambda m: m.__name__)
def test_loihi1_sanafe_within_5_percent_of_sanafe_with_identical_events(make):
    case = make()
    T = case.spikes.shape[0]
    x = torch.tensor(case.spikes.reshape((1, T) + tuple(case.graph["x"].op.shape)))
    counts = simulate(case.graph, x, T).counts
    ref = run_sanafe(case.graph, case.spikes.reshape(T, -1),
                     Placement.given("loihi1-sanafe", case.layers))
    # identical events: spikes per layer, and synaptic events (SANA-FE 'spikes')
    assert ref.spikes_per_group["x"] == int(case.spikes.sum())
    for layer in case.layers:
        assert ref.spikes_per_group[layer] == int(counts.counter(layer, "spikes_out").sum())
    assert ref.synaptic_events == int(counts.total("synops"))
    assert ref.steps == T + len(case.layers)

    er = estimate_energy(counts, "loihi1-sanafe",
                         placement=Placement.given("loihi1-sanafe", case.layers))
    assert er.steps == ref.steps
    assert er.total_pj == pytest.approx(ref.energy_pj["total"], rel=0.05)
    # the synaptic part is exact: same events, same pJ per kind
    assert er.total()["synaptic"] == pytest.approx(ref.energy_pj["synapse"], rel=1e-9)
    # messages: exact for dense layers; a strided conv leaves border neurons without
    # synapses, whose spikes SANA-FE sends nowhere while nmtc books one message each
    exact = all(not isinstance(case.graph[n].op, Conv2d) for n, _ in
                (nodes for nodes, _ in case.layers.values()))
    assert er.total()["spike"] == pytest.approx(ref.energy_pj["network"],
                                                rel=1e-9 if exact else 0.10)
    assert er.latency.mean_step_ns == pytest.approx(ref.total_ns / ref.steps, rel=0.05)
    # step by step while input arrives; in the drain SANA-FE also updates neurons whose
    # potential is non-zero without input, which nmtc's counts do not record
    np.testing.assert_allclose(er.latency.step_ns[:T], ref.step_ns[:T], rtol=0.05)


def test_loihi1_sanafe_constants_are_sanafes_loihi_yaml():
    """The profile's numbers as written in SANA-FE 2.2.9's examples/loihi.yaml
    (copied here by hand from that file)."""
    p = load_profile("loihi1-sanafe")
    expected_pj = {"synop_dense": 35.5, "synop_sparse": 33.6, "synop_conv": 24.0,
                   "neuron_access": 51.2, "neuron_update": 21.6, "spike_out": 69.3,
                   "message_out": 111.0, "message_in": 0.0, "hop_east_west": 3.0,
                   "hop_north_south": 4.2}
    expected_ns = {"synop_dense": 3.8, "synop_sparse": 4.7, "synop_conv": 3.1,
                   "neuron_access": 6.0, "neuron_update": 3.7, "spike_out": 30.0,
                   "message_out": 5.1, "message_in": 16.0, "barrier_1_tile": 600.0,
                   "barrier_2_tiles": 1000.0, "barrier_4_tiles": 1400.0,
                   "barrier_29_tiles": 1800.0}
    for k, v in expected_pj.items():
        assert p.value("energy", k) == pytest.approx(v), k
    for k, v in expected_ns.items():
        assert p.value("time", k) == pytest.approx(v), k
    assert p.value("power", "static") == 0.0


def test_sanafe_model_by_hand_one_layer():
    """4 -> 3 dense layer on core 0, inputs on core 1, T = 2 (3 SANA-FE steps).
    Step 0: 2 input spikes; step 1: 1 input spike; neuron n fires once at nmtc step 1.
    By hand (loihi.yaml): synaptic 3 x 3 x 35.5; neurons 3 steps x 3 x 51.2 access
    + updates (3, 3 active) x 21.6 + 1 x 69.3; messages: 3 input spikes x 1 core
    x 111 (n has no consumer)."""
    from simulators.cycle.counts import RunCounts
    c = RunCounts(steps=2, batch=1, numerics="float", order=["x", "fc", "n"])
    c.nodes = {"fc": {"spikes_in": np.array([2., 1.]), "synops": np.array([6., 3.])},
               "n": {"active_neurons": np.array([3., 3.]), "spikes_out": np.array([0., 1.]),
                     "neuron_updates": np.array([3., 3.])}}
    c.static = {"x": {"op": "Input", "neurons": 0},
                "fc": {"op": "Affine", "inputs": ["x"], "synapses": 12},
                "n": {"op": "IF", "inputs": ["fc"], "neurons": 3}}
    pl = Placement.given("loihi1-sanafe", {"n": (("fc", "n"), (0,))})
    er = estimate_energy(c, "loihi1-sanafe", placement=pl)
    assert er.steps == 3
    assert er.total()["synaptic"] == pytest.approx(9 * 35.5)
    assert er.total()["neuron"] == pytest.approx(9 * 51.2 + 6 * 21.6 + 69.3)
    assert er.total()["spike"] == pytest.approx(3 * 111.0)
    assert er.total()["static"] == 0.0
    lat = estimate_latency(c, "loihi1-sanafe", placement=pl)
    # step 0: core 0 receives 2 messages (16 ns) of 3 synapses (3.8 ns), after the
    # first message's 5.1 ns; its neurons: 3 x 6 ns access; barrier 600 ns (1 tile)
    assert lat.step_ns[0] == pytest.approx(600 + max(3 * 6.0, 2 * 16 + 6 * 3.8 + 5.1))
    # step 2: 3 accesses, 3 updates, 1 spike out, no message (no consumer)
    assert lat.step_ns[2] == pytest.approx(600 + 3 * 6.0 + 3 * 3.7 + 30.0)


def test_referee_refuses_what_sanafe_cannot_reproduce():
    g = Graph()
    g.add("x", Input((4,)))
    g.add("fc", Affine(np.full((2, 4), 0.3, np.float32)), ["x"])
    g.add("n", LIF(), ["fc"])
    g.add("y", Output(), ["n"])
    with pytest.raises(BadInputError, match="not supported"):
        sanafe_layers(g)
