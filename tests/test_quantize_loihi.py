"""Loihi quantization: float SNN graph -> netx fixed-point form.

Expected values come from hand derivations (the rules in
nmtoolchain/quantize/loihi.py's docstring), from lava's own netx and weight
utilities, from the float simulator, and, as the referee, from Lava running
the exported network.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from nmtoolchain.convert import convert_relu_to_if, rate_encode
from nmtoolchain.datasets import load_digits_split
from nmtoolchain.errors import BadInputError, NotExpressibleError, UnsupportedOpError
from nmtoolchain.ir import (
    IF, LIF, Affine, I, AvgPool2d, Conv2d, CubaLIF, Graph, Input, Output, ReLU, Scale,
    graph_from_bytes, graph_to_bytes, load_graph)
from nmtoolchain.quantize import (
    aligned_run, loihi_float_reference, netx_dense_weights, quantize_for_loihi, spike_counts)
from simulators.cycle import Simulator

DATA = Path(__file__).resolve().parents[1] / "nmtoolchain" / "data"


def dense_if(weight, threshold=1.0, bias=None, **neuron) -> Graph:
    """Input -> Affine -> IF -> Output, the smallest quantizable network."""
    w = np.asarray(weight, np.float32)
    g = Graph({"dt": 1.0})
    g.add("x", Input((w.shape[1],)))
    g.add("fc", Affine(w, None), ["x"])
    g.add("spk", IF(v_threshold=threshold, v_bias=0.0 if bias is None else bias, **neuron),
          ["fc"])
    g.add("y", Output(), ["spk"])
    return g.infer_shapes()


def lava_dense_weights(w_int: np.ndarray):
    """What netx + Lava's fixed_pt Dense model store, from lava's own functions."""
    from lava.lib.dl.netx.utils import optimize_weight_bits
    from lava.utils.weightutils import clip_weights, determine_sign_mode, truncate_weights

    with np.errstate(all="ignore"):  # netx divides by a zero maximum in the max == 0 case
        stored, bits, exp, _ = optimize_weight_bits(np.asarray(w_int).astype(int))
        mode = determine_sign_mode(stored)
        used = truncate_weights(clip_weights(stored, mode, num_bits=8), mode, bits)
    return used, -exp


# ------------------------------------------------------------ hand derivations
def test_tiny_dense_layer_mantissas_match_hand_derivation():
    # mixed-sign weights, max |w| = 1.0 on the positive side: s = 254 / 1.0
    g = dense_if([[0.5, -0.3], [1.0, 0.1]], threshold=2.0, bias=np.array([0.1, -0.2]))
    before = g["fc"].op.weight.copy()
    q, rep = quantize_for_loihi(g)
    assert rep.layers[0].scale == pytest.approx(254.0)
    assert rep.layers[0].limited_by == "weights"
    np.testing.assert_array_equal(q["layer1_dense"].op.weight, [[127, -76], [254, 25]])
    assert not np.any(q["layer1_dense"].op.bias)  # the bias lives on the neuron
    ann = q["layer1_neuron"].numerics
    assert ann.v_th_mant == 508                       # 2.0 * 254
    assert ann.bias_mant.tolist() == [25, -51]        # round(25.4), round(-50.8)
    assert (ann.i_decay, ann.v_decay, ann.bias_exp) == (4096, 0, 6)
    np.testing.assert_array_equal(g["fc"].op.weight, before)  # the input graph is untouched


def test_quantized_graph_runs_in_loihi_numerics_as_hand_traced():
    # one always-on input, w = 1.0 -> 255 (single sign), threshold 2.4 -> 612:
    # v (in mantissa units) = 255, 510, 765 > 612 -> spike; the synapse adds one
    # step, so spikes at steps 3, 6, 9 (0-based)
    q, rep = quantize_for_loihi(dense_if([[1.0]], threshold=2.4))
    assert rep.layers[0].vThMant == 612
    out = Simulator(q, "loihi").run(np.ones((1, 1), np.float32), 10).outputs["output"]
    assert np.flatnonzero(out[0, :, 0].numpy()).tolist() == [3, 6, 9]


def test_compare_ge_becomes_threshold_minus_one_and_matches_float_exactly():
    g = dense_if([[1.0], [0.7]], threshold=2.0, compare=">=", reset="to_reset")
    q, rep = quantize_for_loihi(g)
    assert rep.layers[0].vThMant == 510 - 1
    assert any(">=" in c for c in rep.layers[0].changes)
    x = np.ones((1, 1), np.float32)
    fl = Simulator(g, "float").run(x, 20).outputs["y"][0].numpy()
    fx = Simulator(q, "loihi").run(x, 21).outputs["output"][0].numpy()
    assert fl.sum() > 5
    np.testing.assert_array_equal(fx[1:], fl)  # same spikes, one step later


def test_threshold_beyond_17_bits_scales_the_layer_down():
    # weights alone would allow s = 254 / 2e-4 = 1.27e6, i.e. vThMant 1.27e6 > 131071
    q, rep = quantize_for_loihi(dense_if([[1e-4, -2e-4]], threshold=1.0))
    row = rep.layers[0]
    assert row.limited_by == "threshold"
    assert row.vThMant == 131071
    np.testing.assert_array_equal(q["layer1_dense"].op.weight, [[13, -26]])  # x 131071


def test_bias_beyond_13_bits_scales_the_layer_down():
    q, rep = quantize_for_loihi(dense_if([[1.0, -0.5]], threshold=1.0, bias=100.0))
    row = rep.layers[0]
    assert row.limited_by == "bias"
    assert row.scale == pytest.approx(40.95)
    assert q["layer1_neuron"].numerics.bias_mant.tolist() == 4095
    assert row.vThMant == 41
    np.testing.assert_array_equal(q["layer1_dense"].op.weight, [[41, -20]])


def test_lif_and_cuba_decays_follow_the_documented_mapping():
    g = Graph({"dt": 1.0})
    g.add("x", Input((3,)))
    g.add("fc1", Affine(np.eye(3, dtype=np.float32)), ["x"])
    g.add("lif", LIF(tau=4.0, v_threshold=1.0, reset="to_reset"), ["fc1"])
    g.add("fc2", Affine(np.ones((2, 3), np.float32)), ["lif"])
    g.add("cuba", CubaLIF(tau_syn=2.0, tau_mem=8.0, v_threshold=1.0), ["fc2"])
    g.add("y", Output(), ["cuba"])
    q, rep = quantize_for_loihi(g.infer_shapes())
    lif, cuba = rep.layers
    assert (lif.iDecay, lif.vDecay) == (4096, 1024)        # euler: 4096 * dt/tau
    assert cuba.iDecay == round(4096 * (1 - np.exp(-1 / 2.0)))  # 1612
    assert cuba.vDecay == round(4096 * (1 - np.exp(-1 / 8.0)))  # 481
    # LIF input weights carry dt/tau: eye * 0.25 -> s = 255 / 0.25
    np.testing.assert_array_equal(q["layer1_dense"].op.weight, 255 * np.eye(3))
    assert lif.vThMant == 1020


def test_reset_by_subtraction_is_reported_and_the_float_reference_resets_to_zero():
    g = dense_if([[0.6]], threshold=1.0, reset="subtract", v_init=0.5)
    q, rep = quantize_for_loihi(g)
    changes = " ".join(rep.layers[0].changes)
    assert "subtraction" in changes and "v_init" in changes
    ref = loihi_float_reference(g)
    assert (ref["spk"].op.reset, float(ref["spk"].op.v_init)) == ("to_reset", 0.0)
    assert g["spk"].op.reset == "subtract"  # the original is untouched
    # like with like: the reference and the fixed point give the same spikes
    x = np.ones((1, 1), np.float32)
    fl = Simulator(ref, "float").run(x, 30).outputs["y"][0].numpy()
    fx = Simulator(q, "loihi").run(x, 31).outputs["output"][0].numpy()
    np.testing.assert_array_equal(fx[1:], fl)


def test_per_neuron_thresholds_fold_into_the_weight_rows():
    # thresholds [1, 4] -> one vThMant; row 0 scaled by 4/1: W_eff [[4], [1]], s = 255/4
    q, rep = quantize_for_loihi(dense_if([[1.0], [1.0]], threshold=np.array([1.0, 4.0]),
                                         reset="to_reset"))
    np.testing.assert_array_equal(q["layer1_dense"].op.weight, [[255], [64]])
    assert rep.layers[0].vThMant == 255
    out = Simulator(q, "loihi").run(np.ones((1, 1), np.float32), 11).outputs["output"][0]
    # float: neuron 0 fires every 2nd step (v > 1), neuron 1 every 5th (v > 4)
    assert out.sum(0).tolist() == [5, 2]


def test_integrator_readout_becomes_netx_default_neuron_and_accumulates():
    g = Graph({"dt": 1.0})
    g.add("x", Input((1,)))
    g.add("fc", Affine(np.array([[0.5]], np.float32)), ["x"])
    g.add("acc", I(), ["fc"])
    g.add("y", Output(), ["acc"])
    q, rep = quantize_for_loihi(g.infer_shapes())
    ann = q["layer1_neuron"].numerics
    assert (ann.i_decay, ann.v_decay, ann.v_th_mant, ann.readout) == (0, 4096, 1 << 17, True)
    res = Simulator(q, "loihi", record_state=True).run(np.ones((1, 1), np.float32), 4)
    # w = 0.5 -> 255; u grows by 255 << 6 per step after the synapse's one-step delay; v = u
    assert res.state["layer1_neuron"]["v"][0, :, 0].tolist() == [0, 16320, 32640, 48960]
    assert res.outputs["output"].sum() == 0


def test_average_pool_becomes_sum_pool_with_its_factor_in_the_next_weights():
    g = Graph({"dt": 1.0})
    g.add("x", Input((1, 4, 4)))
    g.add("c1", Conv2d(np.ones((2, 1, 1, 1), np.float32)), ["x"])
    g.add("n1", IF(v_threshold=1.0, reset="to_reset"), ["c1"])
    g.add("pool", AvgPool2d((2, 2)), ["n1"])
    g.add("c2", Conv2d(np.array([[[[1.0]], [[-0.5]]]], np.float32)), ["pool"])
    g.add("n2", IF(v_threshold=1.0, reset="to_reset"), ["c2"])
    g.add("y", Output(), ["n2"])
    q, rep = quantize_for_loihi(g.infer_shapes())
    assert [n.op_name for n in q if "pool" in n.name] == ["SumPool2d"]
    # weights / 4 on the summed spikes: s = 254 / 0.25, threshold 1.0 -> 1016
    assert rep.layers[1].vThMant == 1016
    np.testing.assert_array_equal(q["layer2_conv"].op.weight.reshape(-1), [254, -127])


# ------------------------------------------------------------------ netx bug
def test_netx_max_zero_matrix_is_nudged_reported_and_kept_exact_by_lava():
    pytest.importorskip("lava.lib.dl.netx", reason="lava-dl is not installed")
    w = np.array([[-0.5, 0.0, -1.0], [-0.25, -0.75, -0.125]], np.float32)
    q, rep = quantize_for_loihi(dense_if(w))
    wq = q["layer1_dense"].op.weight.astype(int)
    assert wq.max() == 1 and np.count_nonzero(wq == 1) == 1 and wq[0, 1] == 1
    assert any("max == 0" in n for n in rep.layers[0].notes)
    used, shift = lava_dense_weights(wq)
    np.testing.assert_array_equal(used, wq << shift)  # Lava keeps every weight
    # without the nudge, lava's own functions corrupt the matrix (the bug is real)
    raw = wq.copy()
    raw[0, 1] = 0
    used_raw, shift_raw = lava_dense_weights(raw)
    assert not np.array_equal(used_raw, raw << shift_raw)


def test_all_negative_matrix_at_a_power_of_two_is_rescaled_until_lava_keeps_it():
    pytest.importorskip("lava.lib.dl.netx", reason="lava-dl is not installed")
    # threshold-bound scale s = 131071 / 1023.99 = 128 would give min -128, which netx
    # shifts to -256 and Lava clips to -255 for an all-negative matrix
    q, rep = quantize_for_loihi(dense_if([[-1.0, -0.5]], threshold=131071 / 128))
    wq = q["layer1_dense"].op.weight.astype(int)
    assert wq.min() != -128 and any("lowered" in n for n in rep.layers[0].notes)
    used, shift = lava_dense_weights(wq)
    np.testing.assert_array_equal(used, wq << shift)


@pytest.mark.parametrize("case", ["mixed", "excitatory", "inhibitory", "inhib_pow2", "inhib_256",
                                  "max_zero", "max_zero_small", "multiples_of_8", "tiny"])
def test_netx_round_trip_emulation_agrees_with_lava(case):
    pytest.importorskip("lava.lib.dl.netx", reason="lava-dl is not installed")
    rng = np.random.default_rng(3)
    w = {"mixed": lambda: rng.integers(-256, 255, (6, 9)),
         "excitatory": lambda: rng.integers(0, 256, (6, 9)),
         "inhibitory": lambda: rng.integers(-255, 0, (6, 9)),
         "inhib_pow2": lambda: rng.integers(-100, 0, (6, 9)),
         "inhib_256": lambda: rng.integers(-255, 0, (6, 9)),
         "max_zero": lambda: np.minimum(rng.integers(-200, 1, (6, 9)), 0),
         "max_zero_small": lambda: np.minimum(rng.integers(-40, 1, (6, 9)), 0),
         "multiples_of_8": lambda: 8 * rng.integers(-16, 16, (6, 9)),
         "tiny": lambda: rng.integers(-3, 4, (6, 9))}[case]()
    if case == "inhib_pow2":
        w[0, 0] = -128  # an all-negative matrix whose minimum is a power of two
    if case == "inhib_256":
        w[0, 0] = -256  # Lava clips an all-negative matrix to -255
    if case.startswith("max_zero"):
        w[0, 0], w[1, 1] = 0, -5  # all <= 0, max exactly 0 (corrupts only when min < -128)
    used, shift, why = netx_dense_weights(w)
    lava_used, lava_shift = lava_dense_weights(w)
    lava_exact = bool(np.array_equal(lava_used, w.astype(int) << lava_shift))
    assert (used is not None and not why) == lava_exact
    if lava_exact:
        assert shift == lava_shift
        np.testing.assert_array_equal(used, lava_used)


# ------------------------------------------------------------- input, errors
def test_analog_calibration_input_is_refused_with_the_encoder_named():
    with pytest.raises(BadInputError, match="rate_encode"):
        quantize_for_loihi(dense_if([[1.0, 0.5]]), np.array([[0.3, 0.7]], np.float32))


def test_an_unsupported_node_is_named():
    g = Graph()
    g.add("x", Input((2,)))
    g.add("fc", Affine(np.eye(2, dtype=np.float32)), ["x"])
    g.add("gain", Scale(np.float32(2.0)), ["fc"])
    g.add("spk", IF(), ["gain"])
    g.add("y", Output(), ["spk"])
    with pytest.raises(UnsupportedOpError, match="node 'gain' \\(Scale\\)"):
        quantize_for_loihi(g.infer_shapes())


def test_an_encoder_neuron_on_the_analog_input_is_refused():
    g = Graph()
    g.add("x", Input((2,)))
    g.add("enc", IF(), ["x"])
    g.add("fc", Affine(np.eye(2, dtype=np.float32)), ["enc"])
    g.add("spk", IF(), ["fc"])
    g.add("y", Output(), ["spk"])
    with pytest.raises(NotExpressibleError, match="node 'enc' \\(IF\\).*encode"):
        quantize_for_loihi(g.infer_shapes())


# ------------------------------------------------------ report, serialization
def test_report_separates_semantics_error_from_rounding_error_and_serializes():
    rng = np.random.default_rng(0)
    w = rng.normal(0, 0.5, (5, 8)).astype(np.float32)
    g = dense_if(w, threshold=1.0)  # IF resets by subtraction: Loihi cannot
    calib = (rng.random((20, 16, 8)) < 0.4).astype(np.float32)
    q, rep = quantize_for_loihi(g, calib, steps=16)
    err = rep.layers[0].error
    rounding = err["vs_loihi_float_reference"]["relative_count_error"]
    total = err["vs_float"]["relative_count_error"]
    # the three models by hand, spike counts per neuron over the 16 steps:
    # float IF (reset by subtraction), the same with Loihi's reset to 0, and
    # Loihi's integer neuron on the quantized weights and threshold mantissa
    # (one step per synapse, which the aligned run lines up: no delay here)
    w_int, vth = q["layer1_dense"].op.weight.astype(np.int64), rep.layers[0].vThMant
    counts = {}
    for model in ("subtract", "to_zero", "fixed"):
        v = np.zeros((20, 5), np.int64 if model == "fixed" else np.float32)
        n = np.zeros((20, 5))
        for t in range(16):
            v = v + (calib[:, t].astype(np.int64) @ w_int.T if model == "fixed"
                     else calib[:, t] @ w.T)
            z = v > (vth if model == "fixed" else 1.0)
            n += z
            v = v - z if model == "subtract" else np.where(z, 0, v)
        counts[model] = n
    relative = lambda a, b: np.abs(a - b).sum() / a.sum()  # noqa: E731
    assert err["vs_float"]["spikes_per_sample_float"] == pytest.approx(
        counts["subtract"].sum() / 20)
    assert err["vs_loihi_float_reference"]["spikes_per_sample_float"] == pytest.approx(
        counts["to_zero"].sum() / 20)
    assert err["vs_float"]["spikes_per_sample_fixed"] == pytest.approx(
        counts["fixed"].sum() / 20)
    assert total == pytest.approx(relative(counts["subtract"], counts["fixed"]))
    assert rounding == pytest.approx(relative(counts["to_zero"], counts["fixed"]))
    # the reset rule, not the 8-bit weights, costs most
    assert relative(counts["to_zero"], counts["fixed"]) < 0.05
    assert relative(counts["subtract"], counts["to_zero"]) > 0.05
    assert rep.calibration["reference_differs"] is True
    assert q["layer1_neuron"].annotations["quant"]["error"] == err
    text = json.dumps(rep.as_dict())
    assert "layer1_neuron" in text and any("layer1_neuron" in ln for ln in rep.lines())
    back = graph_from_bytes(graph_to_bytes(q))
    assert back["layer1_neuron"].numerics == q["layer1_neuron"].numerics
    assert back["layer1_neuron"].numerics.to_dict()["bias_mant"] == \
        q["layer1_neuron"].numerics.to_dict()["bias_mant"]


# ---------------------------------------------------------------- conversion
def test_rate_encode_fires_floor_of_t_times_x():
    s = rate_encode(np.array([[0.0, 0.25, 0.5, 1.0, 0.3]]), 20)
    assert s.shape == (1, 20, 5)
    np.testing.assert_array_equal(s.sum(1)[0], [0, 5, 10, 20, 6])


def test_threshold_balancing_scales_weights_by_the_activation_percentiles():
    rng = np.random.default_rng(1)
    w1 = rng.normal(0, 1, (6, 4)).astype(np.float32)
    w2 = rng.normal(0, 1, (3, 6)).astype(np.float32)
    g = Graph()
    g.add("x", Input((4,)))
    g.add("fc1", Affine(w1), ["x"])
    g.add("r1", ReLU(), ["fc1"])
    g.add("fc2", Affine(w2), ["r1"])
    g.add("y", Output(), ["fc2"])
    x = rng.random((50, 4)).astype(np.float32)
    snn, lam = convert_relu_to_if(g.infer_shapes(), x, percentile=99.0)
    h = np.maximum(x @ w1.T, 0)                      # the ANN by hand
    lam1 = np.percentile(h[h > 0], 99.0)
    o = h @ w2.T
    lam2 = np.percentile(o[o > 0], 99.0)
    np.testing.assert_allclose(snn["fc1"].op.weight, w1 / lam1, rtol=1e-5)
    np.testing.assert_allclose(snn["fc2"].op.weight, w2 * lam1 / lam2, rtol=1e-5)
    assert snn["r1"].op_name == "IF" and snn["r1"].op.reset == "to_reset"
    assert snn["y"].inputs == ("fc2_if",)


# ---------------------------------------------------------- digits accuracy
@pytest.fixture(scope="module")
def digits():
    return load_digits_split()


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_fixed_point_accuracy_is_within_one_point_of_the_float_snn(digits, kind):
    g = load_graph(DATA / f"digits_{kind}_snn.nmir").infer_shapes()
    shape = tuple(g.inputs()[0].shape)
    steps, n = 32, 200
    calib = rate_encode(digits.x_train[:32].reshape((-1,) + shape), steps)
    q, rep = quantize_for_loihi(g, calib, steps=steps, weight_percentile=99.9)
    spikes = rate_encode(digits.x_test[:n].reshape((-1,) + shape), steps)
    out = rep.layers[-1]
    fl = spike_counts(g, "float", spikes, steps, [out.float_neuron])[out.float_neuron]
    fx = spike_counts(q, "loihi", spikes, steps, [out.layer])[out.layer]
    y = digits.y_test[:n]
    acc_float = 100 * float((fl.argmax(1) == y).mean())
    acc_fixed = 100 * float((fx.argmax(1) == y).mean())
    assert acc_float > 90
    assert abs(acc_fixed - acc_float) <= 1.0, (acc_float, acc_fixed)


# ------------------------------------------------------------------ referee
def test_quantized_mlp_spikes_match_lava_running_its_netx_export(tmp_path, digits):
    """The independent referee: Lava (fixed_pt) runs the exported quantized MLP
    and produces, step for step, the spikes of the quantized graph."""
    pytest.importorskip("lava.lib.dl.netx", reason="lava-dl is not installed")
    try:
        from exporters.loihi2 import export_netx
    except ImportError as e:  # pragma: no cover - depends on the exporter being present
        pytest.skip(f"exporters.loihi2 (the netx writer) is not available: {e}")
    from simulators.parity import check_parity

    g = load_graph(DATA / "digits_mlp_snn.nmir").infer_shapes()
    steps = 16
    q, rep = quantize_for_loihi(g, steps=steps)
    path = tmp_path / "mlp.net"
    export_netx(q, path)
    plan = aligned_run(q, steps)
    x = rate_encode(digits.x_test[:1].reshape(1, 64), steps)[0]
    drive = np.concatenate([x, np.zeros((plan["steps"] - steps, 64), np.float32)]).astype(int)
    res = check_parity(path, drive, plan["steps"], reset_interval=plan["reset_interval"],
                       reset_offset=plan["reset_offset"])
    assert res.identical, res.line()
    ours = Simulator(q, "loihi", record="neurons", reset_interval=plan["reset_interval"],
                     reset_offset=plan["reset_offset"]).run(drive[None].astype(np.float32),
                                                             plan["steps"])
    assert set(res.lava_outputs) == {r.layer for r in rep.layers}
    for name, lava in res.lava_outputs.items():
        np.testing.assert_array_equal(ours.recorded[name][0].numpy().astype(int), lava)
    assert sum(int(v.sum()) for v in res.lava_outputs.values()) > 0
