"""The Lava reference runner against Intel's recorded ground truth, hand-derived
fixed-point dynamics and Lava's own Var.get(); and the divergence finder on
hand-built recordings with planted differences.

Intel's networks and recordings come with the lava-dl wheel (``intel_netx``
fixture). Ground-truth arrays are stored in Lava's W,H,C order with time last;
``_gt`` turns them into the runner's (T, C,H,W).
"""
from __future__ import annotations

import math
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from nmtoolchain.errors import BadInputError
from simulators.compare import compare_runs, first_divergence, format_divergence

lava = pytest.mark.lava


def _gt(path) -> np.ndarray:
    """A ground-truth array (*whc, T) -> (T, *chw) int64."""
    a = np.load(path)
    return a.transpose([a.ndim - 1] + list(range(a.ndim - 2, -1, -1))).astype(np.int64)


def _run(*args, **kwargs):
    pytest.importorskip("lava.lib.dl.netx", reason="lava-dl is not installed")
    from simulators.lava_runner import run_netx_in_lava

    t0 = time.perf_counter()
    run = run_netx_in_lava(*args, **kwargs)
    print(f"{args[0]}: {run.timing_line()}; total {time.perf_counter() - t0:.2f} s")
    return run


def _decay(x: np.ndarray, d: int) -> np.ndarray:
    """Loihi's x * (4096 - d) / 4096, rounded toward zero."""
    p = x * (4096 - d)
    return np.sign(p) * (np.abs(p) >> 12)


def _tiny_bias(intel_netx) -> np.ndarray:
    """Intel's recorded input bias for tiny.net, (C,H,W)."""
    return np.load(intel_netx / "gts/tinynet/input_bias.npy").transpose(2, 1, 0).astype(np.int64)


def _digit_image() -> np.ndarray:
    """A scikit-learn digit (a 0) upscaled into a 28x28 frame in [0, 1], flattened."""
    from sklearn.datasets import load_digits

    img = load_digits().images[0] / 16.0
    x = np.zeros((28, 28))
    x[2:26, 2:26] = np.kron(img, np.ones((3, 3)))
    return x.reshape(-1)


# ----------------------------------------------------------------- tiny.net
@lava
def test_tinynet_every_layer_matches_intel_ground_truth_in_intels_window(intel_netx):
    # Intel's test compares output[..., 2:17] with gt[..., 1:]: recorded column
    # j of neuron layer p is Lava step j + p, i.e. our row j + p - 1.
    run = _run(intel_netx / "tiny.net", _tiny_bias(intel_netx), 17, reset_interval=16)
    gts = {"layer0_neuron": "input", "layer1_neuron": "layer1", "layer2_neuron": "output"}
    assert list(run.outputs) == list(gts)
    for p, (name, file) in enumerate(gts.items()):
        gt = np.load(intel_netx / f"gts/tinynet/{file}.npy")[0].transpose(3, 0, 1, 2)
        assert run.outputs[name].shape == (17,) + gt.shape[1:]
        assert gt[1:].sum() > 0
        np.testing.assert_array_equal(run.outputs[name][p:p + 15], gt[1:], err_msg=name)


@lava
def test_tinynet_without_the_layer_reset_diverges_from_ground_truth_at_the_output(intel_netx):
    # Intel resets neuron layer j just before step j+2 (Reset processes in its
    # simulation test, reset_interval=16 on hardware), clearing what its bias
    # built up before real input arrives; without that the output differs.
    run = _run(intel_netx / "tiny.net", _tiny_bias(intel_netx), 17)
    gt = np.load(intel_netx / "gts/tinynet/output.npy")[0].transpose(3, 0, 1, 2)
    d = first_divergence({"layer2_neuron": gt[1:].astype(np.int64)},
                         {"layer2_neuron": run.outputs["layer2_neuron"][2:17]})
    assert d is not None and d.layer == "layer2_neuron"


@lava
def test_record_layers_keeps_only_the_named_layers(intel_netx):
    run = _run(intel_netx / "tiny.net", _tiny_bias(intel_netx), 3,
               record_layers=["layer2_neuron"])
    assert list(run.outputs) == ["layer2_neuron"]
    assert run.outputs["layer2_neuron"].shape == (3, 36, 1, 1)


@lava
def test_per_step_bias_drive_gives_the_hand_computed_input_spikes(intel_netx):
    path = intel_netx / "tiny.net"
    with h5py.File(path, "r") as f:
        n = f["layer/0/neuron"]
        i_decay, v_decay, vth = int(n["iDecay"][()]), int(n["vDecay"][()]), int(n["vThMant"][()])
    bias = np.random.default_rng(0).integers(-40, 80, size=(10, 3, 16, 16))
    run = _run(path, bias, 10)
    # No synapse feeds the input neuron: u stays 0, v = decay(v) + bias << 6.
    v = np.zeros((3, 16, 16), np.int64)
    expected = []
    for t in range(10):
        v = np.clip(_decay(v, v_decay) + (bias[t] << 6), -(2 ** 23 - 1), 2 ** 23 - 1)
        s = v > vth << 6
        v[s] = 0
        expected.append(s)
    assert i_decay == 4096
    np.testing.assert_array_equal(run.outputs["layer0_neuron"], np.stack(expected).astype(int))


@lava
def test_recorded_state_equals_var_get_after_each_single_step(intel_netx):
    from lava.lib.dl import netx
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg

    steps = 5
    path = intel_netx / "tiny.net"
    run = _run(path, _tiny_bias(intel_netx), steps, reset_interval=16, record_state=True)
    net = netx.hdf5.Network(net_config=str(path), reset_interval=16)
    net.in_layer.neuron.bias_mant.init = _tiny_bias(intel_netx).transpose(2, 1, 0)
    us, vs = [], []
    try:
        for _ in range(steps):
            net.run(condition=RunSteps(num_steps=1), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
            us.append(net.layers[1].neuron.u.get().transpose(2, 1, 0))
            vs.append(net.layers[1].neuron.v.get().transpose(2, 1, 0))
    finally:
        net.stop()
    assert np.abs(np.stack(us)).sum() > 0
    np.testing.assert_array_equal(run.u["layer1_neuron"], np.stack(us))
    np.testing.assert_array_equal(run.v["layer1_neuron"], np.stack(vs))


# ----------------------------------------------------------------- mnist.net
@pytest.fixture(scope="module")
def mnist_run(intel_netx):
    pytest.importorskip("lava.lib.dl.netx", reason="lava-dl is not installed")
    from simulators.lava_runner import input_drive_from_image

    drive = input_drive_from_image(intel_netx / "mnist.net", _digit_image())
    return _run(intel_netx / "mnist.net", drive, 12, record_state=True)


@lava
def test_mnist_records_all_layers_with_their_shapes_and_activity(mnist_run):
    shapes = {"layer0_neuron": (12, 784), "layer1_neuron": (12, 512),
              "layer2_neuron": (12, 512), "layer3_neuron": (12, 10)}
    assert {n: a.shape for n, a in mnist_run.outputs.items()} == shapes
    for name in ("layer0_neuron", "layer1_neuron", "layer2_neuron"):
        assert mnist_run.outputs[name].sum() > 0, name
    assert set(np.unique(mnist_run.outputs["layer1_neuron"])) <= {0, 1}
    assert math.isfinite(mnist_run.ms_per_step) and mnist_run.build_s > 0


@lava
def test_mnist_readout_v_is_recorded_and_equals_its_u(mnist_run):
    # netx's default readout neuron: vDecay 4096, no bias, so v = u every step;
    # its threshold (1 << 17) << 6 is above the 24-bit v range, so it never spikes.
    v, u = mnist_run.v["layer3_neuron"], mnist_run.u["layer3_neuron"]
    assert v.shape == (12, 10) and np.abs(v).sum() > 0
    np.testing.assert_array_equal(v, u)
    assert mnist_run.outputs["layer3_neuron"].sum() == 0


@lava
def test_mnist_layer1_current_is_the_weighted_input_spikes_of_the_step_before(mnist_run,
                                                                             intel_netx):
    # iDecay 4096: u holds only this step's input, which the Dense synapse
    # delivers one step late: u1[t] = (W1 @ s0[t-1]) << 6, u1[0] = 0.
    with h5py.File(intel_netx / "mnist.net", "r") as f:
        w1 = f["layer/1/weight"][()].astype(np.int64)
    s0 = mnist_run.outputs["layer0_neuron"]
    expected = np.vstack([np.zeros((1, 512), np.int64), (s0[:-1] @ w1.T) << 6])
    np.testing.assert_array_equal(mnist_run.u["layer1_neuron"], expected)


# ----------------------------------------------------------------- PilotNet LIF
PILOTNET_STEPS = 17  # the reference note found steps 1-17 identical; 18+ differ in reset phase
PILOTNET_GT = {"layer0_neuron": "input", "layer1_neuron": "conv-0", "layer2_neuron": "conv-1",
               "layer3_neuron": "conv-2", "layer4_neuron": "conv-3", "layer5_neuron": "conv-4",
               "layer7_neuron": "fc-0", "layer8_neuron": "fc-1", "layer9_neuron": "fc-2"}


@pytest.fixture(scope="module")
def pilotnet_run(intel_netx):
    """The whole PilotNet-LIF (158,509 neurons), 17 steps, reset every 16 as
    Intel's recording; about 10 s here (a 5-step run alone is ~4 s)."""
    root = intel_netx / "gts/pilotnet_lif"
    image = np.load(root / "image.npy").transpose(2, 1, 0)  # Intel's bias, W,H,C -> C,H,W
    return _run(root / "network.net", image, PILOTNET_STEPS, reset_interval=16,
                record_state=True)


@lava
def test_pilotnet_lif_spikes_of_every_layer_match_intel_ground_truth(pilotnet_run, intel_netx):
    root = intel_netx / "gts/pilotnet_lif"
    reference = {n: _gt(root / f"{f}.npy")[:PILOTNET_STEPS] for n, f in PILOTNET_GT.items()}
    assert format_divergence(first_divergence(reference, pilotnet_run.outputs)) == "identical"
    assert set(PILOTNET_GT) < set(pilotnet_run.outputs)  # plus the fc-3 readout


@lava
def test_pilotnet_lif_current_u_of_every_layer_matches_intel_ground_truth(pilotnet_run,
                                                                         intel_netx):
    root = intel_netx / "gts/pilotnet_lif"
    reference = {n: _gt(root / f"{f}-u.npy")[:PILOTNET_STEPS]
                 for n, f in PILOTNET_GT.items() if f != "input"}
    assert first_divergence(reference, pilotnet_run.u) is None


@lava
def test_pilotnet_lif_v_differs_only_where_intel_records_128_after_a_spike(pilotnet_run,
                                                                          intel_netx):
    # Lava zeroes v on a spike; the recording holds 128 there (reference note §2.5).
    root = intel_netx / "gts/pilotnet_lif"
    for name, f in PILOTNET_GT.items():
        if f == "input":
            continue
        gt_v = _gt(root / f"{f}-v.npy")[:PILOTNET_STEPS]
        differ = pilotnet_run.v[name] != gt_v
        spiked = pilotnet_run.outputs[name] == 1
        assert differ.any(), name
        assert np.all(spiked[differ] & (gt_v[differ] == 128) & (pilotnet_run.v[name][differ] == 0))


# ----------------------------------------------------------------- SDNN, spike input
@lava
def test_pilotnet_sdnn_driven_through_delta_a_in_matches_intel_output(intel_netx):
    root = intel_netx / "gts/pilotnet_sdnn"
    frame = np.load(root / "input.npy").transpose(3, 2, 1, 0)  # (1, C, H, W), repeated
    gt = np.load(root / "output.npy").astype(np.int64)  # (1, 9): Intel's 9-step sigma output
    run = _run(root / "network.net", frame, gt.shape[1])
    assert run.drive_kind == "a_in"
    np.testing.assert_array_equal(run.outputs["layer9_neuron"], gt.T)


@lava
def test_ntidigits_spike_input_through_net_inp_matches_ground_truth_step_for_step(intel_netx):
    # Input layer without neuron: spikes go through a RingBuffer into net.inp;
    # the recorded column j is Lava step j (our row j-1). Synaptic delays up to 62.
    root = intel_netx / "gts/ntidigits"
    steps = 120
    spikes = np.load(root / "input.npy")[:, :steps].T.reshape(steps, 1, 1, 64)
    gt = np.load(root / "output.npy").T.astype(np.int64)  # (3000, 242)
    run = _run(root / "ntidigits.net", spikes, steps, num_layers=5)
    assert run.drive_kind == "spikes"
    out = run.outputs["layer4_neuron"]
    assert gt[1:steps].sum() > 0
    np.testing.assert_array_equal(out[:steps - 1], gt[1:steps])


# ----------------------------------------------------------------- input transform, errors
def test_input_drive_from_image_maps_unit_range_to_weight_times_minus1_1_plus_bias_truncated(
        intel_netx):
    from simulators.lava_runner import input_drive_from_image

    path = intel_netx / "gts/pilotnet_lif/network.net"
    with h5py.File(path, "r") as f:
        w, b = float(f["layer/0/weight"][()]), float(f["layer/0/bias"][()])
    assert (w, b) == (40.0, 36.0)
    x = np.array([0.0, 0.5, 1.0, 0.015, 0.99])
    # 2*40*x - 40 + 36: -4, 36, 76, -2.8 -> -2 (toward zero), 75.2 -> 75
    np.testing.assert_array_equal(input_drive_from_image(path, x), [-4, 36, 76, -2, 75])
    np.testing.assert_array_equal(input_drive_from_image(path, x, centered=False),
                                  [36, 56, 76, 36, 75])


def test_input_drive_from_image_reads_the_same_transform_from_the_loaded_graph(intel_netx):
    from nmtoolchain.frontends.netx_loader import load_netx
    from simulators.lava_runner import input_drive_from_image

    x = np.linspace(0, 1, 784)
    path = intel_netx / "mnist.net"
    np.testing.assert_array_equal(input_drive_from_image(load_netx(path), x),
                                  input_drive_from_image(path, x))


def test_a_drive_of_the_wrong_shape_is_refused_naming_the_file_before_lava_starts(intel_netx):
    from simulators.lava_runner import run_netx_in_lava

    with pytest.raises(BadInputError,
                       match=r"tiny\.net: bias drive must have shape \(T, 3, 16, 16\)"):
        run_netx_in_lava(intel_netx / "tiny.net", np.zeros((5, 16, 16, 3)), 5)


def test_non_binary_values_in_a_binary_spike_drive_are_refused(intel_netx):
    from simulators.lava_runner import run_netx_in_lava

    spikes = np.zeros((4, 1, 1, 64))
    spikes[1, 0, 0, 3] = 2
    with pytest.raises(BadInputError,
                       match=r"ntidigits\.net: a binary spike drive must hold only 0 and 1"):
        run_netx_in_lava(intel_netx / "gts/ntidigits/ntidigits.net", spikes, 4, num_layers=5)


def test_recording_an_unknown_layer_is_refused_listing_the_layers(intel_netx):
    from simulators.lava_runner import run_netx_in_lava

    with pytest.raises(BadInputError, match=r"layer7_neuron.*layer0_neuron"):
        run_netx_in_lava(intel_netx / "tiny.net", _tiny_bias(intel_netx), 2,
                         record_layers=["layer7_neuron"])


# ----------------------------------------------------------------- compare.py
def _recordings():
    rng = np.random.default_rng(1)
    ref = {"layer0_neuron": rng.integers(0, 2, (6, 3, 4, 5)),
           "layer1_neuron": rng.integers(0, 2, (6, 8)),
           "layer2_neuron": rng.integers(-9, 9, (6, 2))}
    return ref, {n: a.copy() for n, a in ref.items()}


def test_first_divergence_finds_the_planted_difference_exactly():
    ref, cand = _recordings()
    cand["layer0_neuron"][4, 2, 1, 3] = 7
    cand["layer0_neuron"][4, 2, 3, 0] += 1
    d = first_divergence(ref, cand)
    assert (d.layer, d.step, d.neuron) == ("layer0_neuron", 4, (2, 1, 3))
    assert (d.reference, d.candidate) == (int(ref["layer0_neuron"][4, 2, 1, 3]), 7)
    assert (d.differ, d.size) == (2, 60)
    assert format_divergence(d) == (
        f"first divergence: layer0_neuron step 4 neuron (2, 1, 3): "
        f"lava={d.reference} nmtc=7 (2 of 60 differ at that step)")


def test_first_divergence_prefers_the_earlier_step_then_the_upstream_layer():
    ref, cand = _recordings()
    cand["layer0_neuron"][3, 0, 0, 0] += 1  # later step, upstream layer
    cand["layer2_neuron"][2, 1] += 1  # earliest step
    cand["layer1_neuron"][2, 5] += 1  # same step, more upstream: wins
    d = first_divergence(ref, cand)
    assert (d.layer, d.step, d.neuron) == ("layer1_neuron", 2, (5,))


def test_identical_recordings_give_none_and_the_word_identical():
    ref, cand = _recordings()
    assert first_divergence(ref, cand) is None
    assert format_divergence(first_divergence(ref, cand)) == "identical"


def test_mismatched_shapes_raise_an_error_naming_the_layer():
    ref, cand = _recordings()
    cand["layer1_neuron"] = cand["layer1_neuron"][:, :7]
    with pytest.raises(BadInputError, match=r"layer 'layer1_neuron': shapes differ"):
        first_divergence(ref, cand)


def test_steps_limits_the_scan_to_the_first_rows():
    ref, cand = _recordings()
    cand["layer2_neuron"][5, 0] += 3
    assert first_divergence(ref, cand, steps=5) is None
    assert first_divergence(ref, cand).step == 5


def test_compare_runs_counts_events_and_mismatches_per_layer():
    ref = {"a": np.array([[1, 0, 1], [0, 0, 1]]), "b": np.array([[0], [2]])}
    cand = {"a": np.array([[1, 1, 1], [0, 0, 0]]), "b": np.array([[0], [2]])}
    s = compare_runs(ref, cand)
    assert list(s) == ["a", "b"]
    assert (s["a"].events_reference, s["a"].events_candidate) == (3, 3)
    assert (s["a"].mismatches, s["a"].first_step) == (2, 0)
    assert s["b"].identical and s["b"].first_step is None and s["b"].sum_reference == 2


def test_importing_the_runner_and_the_finder_does_not_import_lava():
    code = ("import sys, simulators.lava_runner, simulators.compare; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'lava', 'torch'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=str(Path(__file__).parents[1]))
    assert out.stdout.strip() == "[]"
