"""Lowering and quantization keep the spikes: checked against nmtc's float kernels
(the reference semantics of the original graph), on graphs built so that the
rewrite is exact in float32 (power-of-two rescaling, integer weights at scale 1)."""
from __future__ import annotations

import numpy as np

from nmtoolchain.ir import IF, Conv2d, Graph, Input, Output
from nmtoolchain.passes.speck_lower import lower_to_dynapcnn
from nmtoolchain.quantize.speck import quantize_for_speck
from simulators.cycle import Simulator

RNG = np.random.default_rng(3)


def _graph(weight, bias, neuron) -> Graph:
    g = Graph()
    g.add("input", Input(shape=(2, 6, 6)))
    g.add("conv", Conv2d(weight=weight, bias=bias, padding=1), ["input"])
    g.add("iaf", neuron, ["conv"])
    g.add("output", Output(), ["iaf"])
    return g


def _events(steps=30):
    return (RNG.random((4, steps, 2, 6, 6)) < 0.4).astype(np.float32)


def test_per_channel_thresholds_collapse_exactly():
    w = RNG.uniform(-1, 1, (4, 2, 3, 3)).astype(np.float32)
    b = RNG.uniform(0, 0.1, 4).astype(np.float32)
    thr = np.array([0.5, 1.0, 2.0, 4.0], np.float32).reshape(4, 1, 1)
    g = _graph(w, b, IF(v_threshold=thr, v_init=thr / 2, v_min=-thr, compare=">=",
                        spike="single"))
    low, notes = lower_to_dynapcnn(g)
    assert np.asarray(low["iaf"].op.v_threshold).size == 1
    assert any("collapsed" in n for n in notes)
    x = _events()
    want = Simulator(g, "float").run(x, 30).outputs["output"]
    got = Simulator(low, "float").run(x, 30).outputs["output"]
    assert want.sum() > 0 and bool((want == got).all())


def test_fire_above_threshold_becomes_integer_ge_threshold_plus_one():
    """v > threshold with reset to zero: on integers the same as v >= threshold + 1."""
    w = RNG.integers(-127, 128, (4, 2, 3, 3)).astype(np.float32)
    w[0, 0, 0, 0] = 127  # weights at the 8-bit limit: scale 1, integers unchanged
    g = _graph(w, np.zeros(4, np.float32),
               IF(v_threshold=100.0, v_min=-32768.0, compare=">", spike="single",
                  reset="to_reset"))
    q, rep = quantize_for_speck(lower_to_dynapcnn(g)[0])
    assert rep.layers[0].numerics.scale == 1.0
    assert float(q["iaf"].op.v_threshold) == 101.0 and q["iaf"].op.compare == ">="
    x = _events()
    want = Simulator(g, "float").run(x, 30).outputs["output"]
    got = Simulator(q, "speck").run(x, 30).outputs["output"]
    assert want.sum() > 0 and bool((want == got).all())


def test_speck_numerics_equal_float_kernels_on_integer_graphs():
    """On an integer graph the speck kernels compute what the float kernels compute
    (MultiSpike, subtract, clamp): two independent implementations of sinabs's IAF."""
    w = RNG.integers(-127, 128, (4, 2, 3, 3)).astype(np.float32)
    w[0, 0, 0, 0] = -128
    g = _graph(w, RNG.integers(-5, 6, 4).astype(np.float32),
               IF(v_threshold=150.0, v_init=40.0, v_min=-300.0, compare=">=", spike="multi"))
    q, _ = quantize_for_speck(lower_to_dynapcnn(g)[0])
    x = _events()
    want = Simulator(q, "float").run(x, 30).outputs["output"]
    got = Simulator(q, "speck").run(x, 30).outputs["output"]
    assert want.max() > 1 and bool((want == got).all())


def test_fire_above_threshold_with_subtract_is_noted_not_hidden():
    w = RNG.integers(-127, 128, (4, 2, 3, 3)).astype(np.float32)
    g = _graph(w, np.zeros(4, np.float32),
               IF(v_threshold=100.0, v_min=-32768.0, compare=">", spike="single"))
    q, rep = quantize_for_speck(lower_to_dynapcnn(g)[0])
    assert float(q["iaf"].op.v_threshold) == round(100.0 * rep.layers[0].numerics.scale)
    assert any("differ only when v is exactly a multiple" in n for n in rep.notes)


def _mlp(flatten_between: bool) -> Graph:
    """Flatten -> Linear -> IF -> [Flatten ->] Linear -> IF: the second Linear reads the
    first one's neurons, which the lowering turns into a (n, 1, 1) map."""
    from nmtoolchain.ir import Affine, Flatten

    g = Graph()
    g.add("input", Input(shape=(2, 4, 4)))
    g.add("flat", Flatten(), ["input"])
    g.add("fc1", Affine(weight=RNG.uniform(-0.5, 0.5, (16, 32)).astype(np.float32),
                        bias=RNG.uniform(0, 0.05, 16).astype(np.float32)), ["flat"])
    g.add("n1", IF(v_threshold=1.0, v_min=-1.0, compare=">=", spike="multi"), ["fc1"])
    prev = "n1"
    if flatten_between:
        g.add("flat2", Flatten(), ["n1"])
        prev = "flat2"
    g.add("fc2", Affine(weight=RNG.uniform(-0.8, 0.8, (5, 16)).astype(np.float32)), [prev])
    g.add("n2", IF(v_threshold=1.0, v_min=-1.0, compare=">=", spike="multi"), ["fc2"])
    g.add("output", Output(), ["n2"])
    return g.infer_shapes()


def test_linear_after_linear_lowers_and_keeps_the_spikes():
    """Two Linear layers in a row become a full-size and a 1x1 convolution; the float
    kernels give the same output spikes before and after (float32-exact rewrite)."""
    x = (RNG.random((3, 25, 2, 4, 4)) < 0.5).astype(np.float32)
    for between in (False, True):
        g = _mlp(between)
        low, notes = lower_to_dynapcnn(g)
        assert low["fc1"].op_name == low["fc2"].op_name == "Conv2d"
        assert low["fc1"].op.weight.shape == (16, 2, 4, 4)
        assert low["fc2"].op.weight.shape == (5, 16, 1, 1)
        want = Simulator(g, "float").run(x, 25).outputs["output"]
        got = Simulator(low, "float").run(x, 25).outputs["output"]
        assert want.sum() > 0 and got.shape == want.shape and bool((want == got).all())


def test_average_pooling_at_the_output_is_said_to_sum():
    """With no weights after it, the 1/(kH*kW) of an average pooling has nowhere to go:
    the output becomes the sum (4x the average here) and the notes say so."""
    from nmtoolchain.ir import AvgPool2d

    g = Graph()
    g.add("input", Input(shape=(2, 8, 8)))
    g.add("c", Conv2d(weight=np.full((4, 2, 3, 3), 0.3, np.float32), padding=1), ["input"])
    g.add("n", IF(v_threshold=1.0, v_min=-1.0, compare=">=", spike="multi"), ["c"])
    g.add("p", AvgPool2d(kernel_size=2), ["n"])
    g.add("output", Output(), ["p"])
    low, notes = lower_to_dynapcnn(g.infer_shapes())
    assert any("'p'" not in n and n.startswith("p: AvgPool2d 2x2 at the output") and
               "4 x the model's average" in n for n in notes), notes
    x = (RNG.random((1, 10, 2, 8, 8)) < 0.5).astype(np.float32)
    want = Simulator(g, "float").run(x, 10).outputs["output"]
    got = Simulator(low, "float").run(x, 10).outputs["output"]
    assert want.sum() > 0 and bool((got == 4 * want).all())


def test_weights_above_the_threshold_are_noted_where_the_chip_can_differ():
    """The chip emits at most one spike per input event (reference synsense_nir.md §1.6):
    an integer weight above the threshold is named with both values; below, nothing."""
    from nmtoolchain.quantize.speck import weights_above_threshold

    w = np.zeros((4, 2, 3, 3), np.float32)
    w[0, 0, 0, 0], w[1, 1, 2, 2] = 127.0, -50.0  # scale 1: integers unchanged
    for thr, expect in ((100.0, {"iaf": (127, 100)}), (127.0, {}), (200.0, {})):
        g = _graph(w, np.zeros(4, np.float32), IF(v_threshold=thr, v_min=-32768.0,
                                                 compare=">=", spike="multi"))
        q, rep = quantize_for_speck(lower_to_dynapcnn(g)[0])
        assert weights_above_threshold(q) == expect
        noted = [n for n in rep.notes if "above the threshold" in n]
        assert (noted != []) == bool(expect)
        if expect:
            assert noted[0].startswith("iaf: integer weight 127 above the threshold 100")
