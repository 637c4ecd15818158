"""Mapping onto cores: partitions, memory and lower bounds derived by hand,
does-not-fit errors, placement annotations (on a copy: the caller's graph is
untouched), traffic between cores, netx's weight widths, Intel's PilotNet-LIF
between a hand-derived lower bound and the 74 cores Intel's compiler used,
and one placement shared by the export and the reports."""
from __future__ import annotations

import json

import numpy as np
import pytest

from hardware_profiles import load_profile
from nmtoolchain.errors import BadInputError, DoesNotFitError, NmtcError, UnsupportedOpError
from nmtoolchain.ir import (IF, Affine, Conv2d, Flatten, Graph, Input, Output, SumPool2d,
                            graph_to_bytes)
from nmtoolchain.mapping import RESOURCES, map_onto_cores, netx_weight_bits, place

RNG = np.random.default_rng(7)


def ternary(out: int, inn: int) -> np.ndarray:
    """Weights in {-1, 0, 1} with both signs and odd values: netx gives them
    2 bits (mixed sign: scale 127 -> 7 scale bits, no shared trailing zeros)."""
    w = RNG.integers(-1, 2, size=(out, inn)).astype(np.float32)
    w[0, :3] = [-1, 0, 1]
    return w


def dense_net(sizes, weights=None) -> Graph:
    """Input(sizes[0]) -> [Affine 'fc{i}' -> IF 'lif{i}'] * ... -> Output."""
    g = Graph()
    g.add("x", Input((sizes[0],)))
    prev = "x"
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
        w = weights[i - 1] if weights is not None else ternary(b, a)
        g.add(f"fc{i}", Affine(w), [prev])
        g.add(f"lif{i}", IF(v_threshold=0.5), [f"fc{i}"])
        prev = f"lif{i}"
    g.add("out", Output(), [prev])
    return g.infer_shapes()


def conv_net() -> Graph:
    """Input 2x12x12 -> conv 4@3x3 pad 1 -> IF -> flatten -> dense 10 -> IF."""
    g = Graph()
    g.add("x", Input((2, 12, 12)))
    g.add("conv1", Conv2d(RNG.integers(-3, 4, size=(4, 2, 3, 3)).astype(np.float32),
                          padding=(1, 1)), ["x"])
    g.add("lif1", IF(), ["conv1"])
    g.add("flat", Flatten(), ["lif1"])
    g.add("fc2", Affine(ternary(10, 576)), ["flat"])
    g.add("lif2", IF(), ["fc2"])
    g.add("out", Output(), ["lif2"])
    return g.infer_shapes()


# ------------------------------------------------------------- partitions
def test_1000_neurons_with_400_per_core_pack_as_400_400_200():
    report = map_onto_cores(dense_net([50, 1000]), limits={"neurons": 400})
    assert report.layer("fc1").neurons_per_core == [400, 400, 200]


def test_balance_strategy_splits_1000_neurons_evenly_over_the_same_3_cores():
    report = map_onto_cores(dense_net([50, 1000]), strategy="balance", limits={"neurons": 400})
    assert report.layer("fc1").neurons_per_core == [334, 333, 333]


def test_synaptic_memory_limits_neurons_per_core_by_hand():
    # loihi2 stores dense layers densely: 200 synapses per neuron at 2 weight bits +
    # 34 overhead bits = 7,200 bits; 50,000 bits hold 6 neurons (43,200);
    # 100 neurons -> 16 x 6 + 4.
    report = map_onto_cores(dense_net([200, 100]), limits={"synaptic_memory": 50_000})
    layer = report.layer("fc1")
    assert layer.bits_per_synapse == 2 + 34
    assert layer.neurons_per_core == [6] * 16 + [4]
    assert [c.needs["synaptic_memory"] for c in report.cores] == [43_200] * 16 + [28_800]


def test_sparse_storage_counts_only_non_zero_weights():
    w = np.zeros((100, 200), np.float32)
    for i in range(100):  # exactly 50 non-zeros per row, both signs, odd values
        w[i, RNG.choice(200, 50, replace=False)] = RNG.choice([-1.0, 1.0], 50)
    w[0, :2] = [-1, 1]
    # 50 synapses x 36 bits = 1,800 per neuron; 54,000 bits hold 30 neurons
    report = map_onto_cores(dense_net([200, 100], [w]),
                            limits={"synaptic_memory": 54_000, "dense_storage": False})
    assert report.layer("fc1").neurons_per_core == [30, 30, 30, 10]


def test_lower_bound_and_distance_from_it_by_hand():
    # fc1 400->1000 at 2 + 34 = 36 bits: 14,400 bits per neuron; 545,454-bit cores
    # hold 37 neurons -> 28 cores, but ceil(14.4e6 / 545,454) = 27 is the layer's bound.
    # fc2 1000->10: 360,000 bits, 1,000 inputs -> 1 core, bound 1.
    report = map_onto_cores(dense_net([400, 1000, 10]),
                            limits={"synaptic_memory": 545_454, "neurons": 400})
    fc1, fc2 = report.layer("fc1"), report.layer("fc2")
    assert fc1.lower_bound_by_resource == {"neurons": 3, "synaptic_memory": 27,
                                           "input_axons": 1, "output_axons": 1}
    assert (fc1.lower_bound, fc2.lower_bound) == (27, 1)
    assert (len(fc1.cores), len(fc2.cores)) == (28, 1)
    assert (report.lower_bound, report.cores_used, report.above_lower_bound) == (28, 29, 1)
    # shared-core bound: memory (14.4e6 + 0.36e6) / 545,454 = 27.06 -> 28
    assert report.shared_lower_bound == 28


def test_conv_with_weight_sharing_stores_each_channels_kernel_once_per_core():
    # kernel of one output channel: 2 in x 3 x 3 = 18 weights x 8 bits = 144 bits
    g = conv_net()
    report = map_onto_cores(g, limits={"neurons": 100})
    conv = report.layer("conv1")
    assert conv.totals["synaptic_memory"] == 4 * 144
    for core in report.cores:
        if core.layer == "conv1":
            channels = core.box[0][1] - core.box[0][0]
            assert core.needs["synaptic_memory"] == channels * 144


def test_conv_without_weight_sharing_stores_the_irs_border_aware_synapses():
    g = conv_net()
    report = map_onto_cores(g, limits={"neurons": 10_000, "weight_sharing": False,
                                       "dense_storage": True})
    structural = g.node_counts(g["conv1"])["synapses"]   # the IR's own count
    assert report.layer("conv1").totals["synaptic_memory"] == structural * (8 + 34)


# ------------------------------------------------------------------ errors
def test_fan_in_over_the_limit_names_layer_resource_need_and_limit():
    with pytest.raises(DoesNotFitError) as e:
        map_onto_cores(dense_net([5000, 10]))
    assert str(e.value) == ("layer 'fc1' does not fit a loihi2 core: one neuron needs 5,000 "
                            "input axons, a core has 4,096")


def test_synapses_over_memory_names_layer_resource_need_and_limit():
    w = RNG.integers(-128, 128, size=(10, 4000)).astype(np.float32)
    w[0, :2] = [-128, 127]          # full 8-bit mixed range: 8 bits + 34 overhead
    with pytest.raises(DoesNotFitError) as e:
        map_onto_cores(dense_net([4000, 10], [w]), limits={"synaptic_memory": 100_000})
    assert str(e.value) == ("layer 'fc1' does not fit a loihi2 core: one neuron needs 168,000 "
                            "bits of synaptic memory (4,000 synapses x 42 bits), a core has "
                            "100,000")
    assert isinstance(e.value, NmtcError) and e.value.exit_code == 2


def pooled_net() -> Graph:
    """IF -> unfolded SumPool2d -> conv -> IF: the pool has no core of its own."""
    g = Graph()
    g.add("x", Input((2, 8, 8)))
    g.add("lif0", IF(), ["x"])
    g.add("pool", SumPool2d(kernel_size=(2, 2)), ["lif0"])
    g.add("conv", Conv2d(np.ones((2, 2, 3, 3), np.float32)), ["pool"])
    g.add("lif1", IF(), ["conv"])
    g.add("out", Output(), ["lif1"])
    return g.infer_shapes()


def test_node_the_mapping_cannot_place_is_named():
    with pytest.raises(UnsupportedOpError, match=r"node 'pool' \(op SumPool2d\)"):
        map_onto_cores(pooled_net())


def test_a_profile_that_is_not_a_split_mapping_chip_is_refused():
    with pytest.raises(BadInputError, match="speck"):
        map_onto_cores(dense_net([10, 10]), "speck")


# ----------------------------------------------------- placement annotations
def test_mapping_leaves_the_callers_graph_byte_for_byte_unchanged():
    g = conv_net()
    before = graph_to_bytes(g)
    report = map_onto_cores(g, limits={"neurons": 100})
    place(g, "loihi2")
    place(g, "speck")
    assert graph_to_bytes(g) == before
    assert all("placement" not in n.annotations for n in g.nodes.values())
    annotated = report.annotated(g)           # a copy carries the annotations
    assert annotated["lif1"].annotations["placement"]["cores"] == report.layer("conv1").cores
    assert graph_to_bytes(g) == before


def test_every_neuron_of_every_layer_is_on_exactly_one_core():
    report = map_onto_cores(conv_net(), limits={"neurons": 100})
    g = report.annotated(conv_net())
    seen_cores = []
    for name in ("lif1", "lif2"):
        ann = g[name].annotations["placement"]
        cover = np.zeros(int(np.prod(g[name].shape)) if ann["slicing"] == "flat"
                         else g[name].shape, np.int64)
        for box in ann["boxes"]:
            cover[tuple(slice(a, b) for a, b in box)] += 1
        assert (cover == 1).all(), name
        sizes = [int(np.prod([b - a for a, b in box])) for box in ann["boxes"]]
        assert ann["neurons_per_core"] == sizes
        assert len(ann["cores"]) == len(ann["boxes"])
        seen_cores += ann["cores"]
    assert seen_cores == list(range(report.cores_used))   # numbered in layer order
    assert g["conv1"].annotations["placement"]["cores"] == g["lif1"].annotations[
        "placement"]["cores"]


def test_every_core_respects_every_limit():
    report = map_onto_cores(conv_net(), limits={"neurons": 100, "input_axons": 600,
                                                  "output_axons": 50})
    caps = {r: report.limits[i].value for i, r in enumerate(RESOURCES)}
    for core in report.cores:
        for r in RESOURCES:
            assert core.needs[r] <= caps[r], (core.id, r)


# ------------------------------------------------- one placement for all
def test_the_report_falls_back_to_per_layer_cores_and_says_why():
    g = pooled_net()
    with pytest.raises(UnsupportedOpError):
        place(g, "loihi2", strict=True)          # the export's call refuses
    p = place(g, "loihi2")                       # the report's call estimates
    assert (p.mapper, p.declared_mapper) == ("per_layer", "loihi")
    assert "node 'pool' (op SumPool2d)" in p.fallback_reason
    assert "could not place" in p.describe()
    # lif0, pool (alone: its consumer conv does work), conv + lif1: one core each
    assert p.cores_per_layer() == {"lif0": 1, "pool": 1, "lif1": 1}


def export_and_report_net() -> Graph:
    """Input 2x32x32 -> conv 16@3x3 stride 2 -> IF (4,096 neurons) -> flatten ->
    dense 4096 -> 24 -> IF: both layers need several loihi2 cores."""
    g = Graph()
    g.add("x", Input((2, 32, 32)))
    g.add("conv1", Conv2d(RNG.normal(size=(16, 2, 3, 3)).astype(np.float32), stride=(2, 2),
                          padding=(1, 1)), ["x"])
    g.add("lif1", IF(reset="to_reset"), ["conv1"])
    g.add("flat", Flatten(), ["lif1"])
    g.add("fc2", Affine(RNG.normal(size=(24, 4096)).astype(np.float32) * 0.05), ["flat"])
    g.add("lif2", IF(reset="to_reset"), ["fc2"])
    g.add("out", Output(), ["lif2"])
    return g.infer_shapes()


def test_export_and_report_place_the_same_graph_on_the_same_cores(tmp_path):
    from nmtoolchain.targets.loihi2 import export_loihi2
    from nmtoolchain.ir import load_graph
    from nmtoolchain.report.simulation import build_report
    from simulators.cycle.interpreter import simulate

    export_loihi2(export_and_report_net(), tmp_path / "exp", timesteps=4)
    mapping = json.loads((tmp_path / "exp" / "mapping.json").read_text())
    exported = {L["neuron"]: len(L["cores"]) for L in mapping["layers"]}
    assert sum(exported.values()) > len(exported)        # some layer spans several cores
    g = load_graph(tmp_path / "exp" / "network.nmir")    # the graph the export wrote
    x = RNG.integers(0, 2, size=(1, 2, 32, 32)).astype(np.float32)
    rep = build_report(g, simulate(g, x, 4), ["loihi2"])
    row = rep["profiles"]["loihi2"]
    assert row["mapper"] == "loihi" and row["cores"] == mapping["cores_used"]
    assert {k: v["cores"] for k, v in row["placement"]["layers"].items()} == exported


# ----------------------------------------------------------------- traffic
def two_layer_traffic_net() -> Graph:
    wb = np.array([[1, 0, 0, 0],      # m0 <- n0
                   [0, 1, 0, 0],      # m1 <- n1
                   [1, 0, 0, 0],      # m2 <- n0
                   [0, 0, 0, 1]],     # m3 <- n3
                  np.float32)
    return dense_net([6, 4, 4], [np.ones((4, 6), np.float32), wb])


def test_traffic_between_cores_by_hand():
    # lif1 on cores 0 (n0, n1) and 1 (n2, n3); lif2 on cores 2 (m0, m1), 3 (m2, m3).
    # n0 -> cores 2 and 3, n1 -> 2, n2 -> none, n3 -> 3.
    report = map_onto_cores(two_layer_traffic_net(),
                            limits={"neurons": 2, "dense_storage": False})
    cores = {c.id: c for c in report.cores}
    assert cores[0].destinations == [2, 3] and cores[0].needs["output_axons"] == 3
    assert cores[1].destinations == [3] and cores[1].needs["output_axons"] == 1
    assert cores[2].needs["input_axons"] == 2 and cores[3].needs["input_axons"] == 2
    t = report.traffic()
    assert t["links"] == 3 and t["messages_if_every_neuron_spikes_once"] == 4


def test_messages_per_step_from_recorded_spikes_by_hand():
    spikes = np.zeros((3, 4))
    spikes[0, 0] = 1                 # n0: 2 messages
    spikes[1, [1, 2]] = 1            # n1: 1, n2: 0
    spikes[2, [0, 3]] = 1            # n0: 2, n3: 1
    report = map_onto_cores(two_layer_traffic_net(), spikes={"lif1": spikes},
                            limits={"neurons": 2, "dense_storage": False})
    assert report.activity["messages_per_step"] == [2.0, 1.0, 3.0]


def test_messages_per_step_from_run_counts_spread_layer_spikes_evenly():
    from simulators.cycle.interpreter import simulate
    wb = np.array([[1, 0, 1, 0],      # m0 <- n0, n2
                   [0, 1, 0, 0],      # m1 <- n1
                   [1, 0, 0, 0],      # m2 <- n0
                   [0, 0, 0, 1]],     # m3 <- n3
                  np.float32)
    g = dense_net([6, 4, 4], [np.ones((4, 6), np.float32), wb])
    # lif2 on cores 2 (m0, m1) and 3 (m2, m3): n0 -> 2 cores, n1, n2, n3 -> 1 each,
    # 5 messages if all 4 lif1 neurons spike: 5/4 messages per lif1 spike on average.
    # Inputs: all ones, one-hot, zeros. Every lif1 neuron sums all 6 inputs (weights 1):
    # 6, 1, 0 > threshold 0.5 -> samples 0 and 1 fire all 4 neurons at every step
    # (IF, reset by subtraction, one spike per step), sample 2 never fires:
    # 8 / 3 lif1 spikes per sample and step -> 8/3 x 5/4 = 10/3 messages.
    x = np.zeros((3, 6), np.float32)
    x[0] = 1
    x[1, 2] = 1
    counts = simulate(g, x, steps=5).counts
    report = map_onto_cores(g, counts=counts, limits={"neurons": 2, "dense_storage": False})
    assert report.activity["messages_per_step"] == pytest.approx([10 / 3] * 5)


# ----------------------------------------------------------- weight widths
@pytest.mark.parametrize("case", ["full_mixed", "ternary", "excitatory", "inhibitory", "even",
                                  "pilot_like"])
def test_weight_bits_equal_lava_netx_optimize_weight_bits(case):
    utils = pytest.importorskip("lava.lib.dl.netx.utils")
    w = {"full_mixed": RNG.integers(-128, 128, (20, 30)),
         "ternary": ternary(20, 30),
         "excitatory": RNG.integers(0, 4, (20, 30)),
         "inhibitory": -RNG.integers(1, 9, (20, 30)),
         "even": 2 * RNG.integers(-20, 20, (20, 30)),
         "pilot_like": 2 * RNG.integers(-3, 4, (20, 30))}[case].astype(np.int64)
    assert netx_weight_bits(w)[0] == utils.optimize_weight_bits(w.copy())[1]


def test_float_weights_assume_the_profiles_weight_bits_and_say_so():
    w = RNG.normal(size=(10, 20)).astype(np.float32)
    report = map_onto_cores(dense_net([20, 10], [w]))
    assert report.layer("fc1").weight_bits == load_profile("loihi2").value("resources",
                                                                          "weight_bits")
    assert any("float weights" in n for n in report.notes)


def test_a_float_graph_is_placed_by_the_loihi_mapper_and_the_placement_says_so():
    w = RNG.normal(size=(10, 20)).astype(np.float32)
    p = place(dense_net([20, 10], [w]), "loihi2")
    assert (p.mapper, p.fallback_reason) == ("loihi", "")
    assert p.cores_per_layer() == {"lif1": 1}
    assert any("float weights" in n and "8-bit" in n for n in p.notes)


def test_mapping_is_deterministic_and_json_serializable():
    a = json.dumps(map_onto_cores(conv_net(), limits={"neurons": 100}).as_dict(),
                   sort_keys=True)
    b = json.dumps(map_onto_cores(conv_net(), limits={"neurons": 100}).as_dict(),
                   sort_keys=True)
    assert a == b


# ---------------------------------------------------------------- PilotNet
@pytest.fixture(scope="module")
def pilotnet(intel_netx):
    from nmtoolchain.frontends.netx_loader import load_netx
    g = load_netx(intel_netx / "gts" / "pilotnet_lif" / "network.net")
    return g, map_onto_cores(g, "loihi2")


def test_pilotnet_places_all_158509_neurons(pilotnet):
    g, report = pilotnet
    assert sum(c.needs["neurons"] for c in report.cores) == 158_509
    placed = sum(sum(n.annotations["placement"]["neurons_per_core"])
                 for n in report.annotated(g).nodes.values() if n.op.is_neuron)
    assert placed == 158_509


def test_pilotnet_fits_every_core_and_uses_at_least_the_lower_bound(pilotnet):
    _, report = pilotnet
    for core in report.cores:
        assert all(u <= 1.0 for u in core.utilization.values()), core.id
    assert report.cores_used >= report.lower_bound >= report.shared_lower_bound


def test_pilotnet_cores_lie_between_a_hand_bound_and_intels_74(pilotnet):
    """Loihi 2's documented per-core limits, none fitted to PilotNet: 8,192 neurons
    (1 M neurons / 128 cores), 192 KB, 34 bits per dense synapse besides its weight
    (fitted on the Oxford network), 4,096 output axons (Loihi 1 prior)."""
    _, report = pilotnet
    prof = load_profile("loihi2")
    fitted = {k: q.source for k, q in prof.sections["resources"].items() if q.fitted}
    assert fitted and all("pilotnet" not in src.lower() for src in fitted.values())
    neurons_per_core = 2 ** 20 // 128                             # 8,192 (brief: 1 M / 128)
    assert prof.value("resources", "neurons_per_core") == neurons_per_core
    memory = 192 * 1024 * 8                                       # 192 KB in bits
    overhead = 34                                                 # fitted on Oxford
    out_axons = 4096
    # per layer: ceil(neurons / 8,192), and every neuron with a consumer needs >= 1
    # output axon (layer5 feeds every core of the densely stored dense layer: >= 6)
    neurons = [3 * 66 * 200, 24 * 32 * 99, 36 * 15 * 49, 48 * 7 * 24, 64 * 4 * 22,
               64 * 2 * 20]
    dense_cores = -(-2560 * 100 * (1 + overhead) // memory)      # 256,000 weights >= 9 bits
    assert dense_cores == 6
    conv = [max(-(-n // neurons_per_core), -(-n // out_axons)) for n in neurons[:5]]
    conv.append(max(-(-neurons[5] // neurons_per_core), -(-neurons[5] * dense_cores // out_axons)))
    hand_bound = sum(conv) + dense_cores + 3                      # 10 19 7 2 2 4 + 6 + 3
    assert hand_bound == 53
    assert hand_bound <= report.cores_used <= 74                  # Intel's compiler: 74
    assert report.lower_bound <= report.cores_used
    ref = report.reference
    assert ref["cores_used"] == 74 and ref["nmtc_cores_used"] == report.cores_used
    text = "\n".join(report.lines())
    assert "74 cores" in text and f"nmtc uses {report.cores_used}" in text
    assert "no per-core limit was fitted to this mapping" in text and "layer1_conv" in text
    kinds = {lim.name: lim.kind for lim in report.limits}
    assert kinds["input_axons"] == "assumed" and kinds["neurons"] == "published"
    assert report.what_if and all("change" in w for w in report.what_if)
    # every conv core receives its input on one axon (Intel's printout: 1-2)
    for layer in report.layers:
        if layer.kind == "conv":
            assert all(c.needs["input_axons"] == 1 for c in report.cores
                       if c.layer == layer.name)


# --------------------------------------------- Loihi 2's documented limits by hand
def test_loihi2_neuron_limit_by_hand():
    # 3 -> 20,000 dense: 8,192 neurons per core (brief: 1 M neurons / 128 cores);
    # memory 3 synapses x (2 + 34) bits x 8,192 = 884,736 bits < 192 KB
    report = map_onto_cores(dense_net([3, 20_000]))
    assert report.layer("fc1").neurons_per_core == [8192, 8192, 20_000 - 2 * 8192]


def test_loihi2_dense_memory_limit_by_hand():
    # 2,000 -> 300 ternary (2 netx bits): a neuron stores 2,000 x (2 + 34) = 72,000
    # bits; 192 KB = 1,572,864 bits hold 21 -> 14 x 21 + 6
    report = map_onto_cores(dense_net([2000, 300]))
    assert report.layer("fc1").neurons_per_core == [21] * 14 + [6]
    assert report.cores[0].needs["synaptic_memory"] == 21 * 72_000


def _weights(out: int, inn: int, lo: int, hi: int) -> np.ndarray:
    w = RNG.integers(lo, hi + 1, size=(out, inn)).astype(np.float32)
    w[0, :3] = [lo, hi, 1]                # both extremes and an odd value
    return w


def test_loihi2_oxford_shaped_network_by_hand():
    """Intel's Oxford network's shapes (dense 200 -> 256 -> 200, netx 8- and 7-bit
    weights): 200 x (8 + 34) = 8,400 bits per neuron -> 187 per 192 KB core;
    256 x (7 + 34) = 10,496 -> 149. Intel's compiler used 3 + 2 cores."""
    g = dense_net([200, 256, 200], [_weights(256, 200, -128, 127), _weights(200, 256, -64, 63)])
    report = map_onto_cores(g)
    assert [report.layer(n).weight_bits for n in ("fc1", "fc2")] == [8, 7]
    assert report.layer("fc1").neurons_per_core == [187, 69]
    assert report.layer("fc2").neurons_per_core == [149, 51]
    assert report.cores_used == 4
    ref = report.reference            # recognised by its layer shapes
    assert ref["name"] == "oxford" and ref["cores_used"] == 5
    assert "not a validation" in ref["caveat"] and "synapse_overhead_bits" in ref["caveat"]


def test_loihi2_synapse_overhead_is_the_fit_to_intels_oxford_allocations():
    """The fit written out: Intel's compiler charged 16,200 and 16,128 SynMem units
    (12,000 per core, read as 192 KB) for the Oxford layers' 51,200 synapses each
    (netx 8 and 7 weight bits). Validation on PilotNet-LIF's 2560->100 layer (3 bits),
    not used in the fit: 61,440 units for 100 neurons, 12,800 for 17."""
    bits_per_unit = 192 * 1024 * 8 / 12_000
    over = [16_200 * bits_per_unit / 51_200 - 8, 16_128 * bits_per_unit / 51_200 - 7]
    fit = round(sum(over) / 2)
    assert fit == load_profile("loihi2").value("resources", "synapse_overhead_bits") == 34
    for neurons, units in ((100, 61_440), (17, 12_800)):
        predicted = neurons * 2560 * (3 + fit) / bits_per_unit
        assert abs(predicted / units - 1) < 0.2


def test_loihi2_conv_takes_one_input_axon_per_core_by_hand():
    """8x64x64 -> conv 16@3x3 pad 1: 65,536 neurons -> 8 cores of 8,192 when a conv
    core receives its input on one axon. With one axon per pre-synaptic neuron
    (conv_shared_axons off) a tile needs 8 x (rows + 2) x (cols + 2) <= 4,096
    (fewer at the border): no 8- or 9-tile grid of the 64x64 map fits, a 5 x 2 grid
    of 13 x 32 tiles does (8 x 15 x 33 = 3,960): 10 cores."""
    g = Graph()
    g.add("x", Input((8, 64, 64)))
    g.add("conv1", Conv2d(RNG.integers(-3, 4, size=(16, 8, 3, 3)).astype(np.float32),
                          padding=(1, 1)), ["x"])
    g.add("lif1", IF(), ["conv1"])
    g.add("out", Output(), ["lif1"])
    g.infer_shapes()
    shared = map_onto_cores(g)
    assert len(shared.layer("conv1").cores) == 8
    assert all(c.needs["input_axons"] == 1 for c in shared.cores)
    per_neuron = map_onto_cores(g, limits={"conv_shared_axons": False})
    assert len(per_neuron.layer("conv1").cores) == 10
    assert max(c.needs["input_axons"] for c in per_neuron.cores) == 3960
