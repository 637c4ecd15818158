"""The referee: nmtc's simulator in loihi numerics gives the same spikes as
Lava (fixed_pt) running the same netx file, at every step and layer."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("lava.lib.dl.netx", reason="lava-dl is not installed")

from simulators.parity import check_parity, run_nmtc_netx  # noqa: E402


def _assert_identical(result):
    assert result.identical, result.line()
    # the comparison is not vacuous: layers were compared and spikes happened
    assert len(result.layers) >= 2
    assert sum(int(np.abs(v).sum()) for v in result.lava_outputs.values()) > 0


def test_tiny_net_matches_lava(intel_netx):
    bias = np.load(intel_netx / "gts/tinynet/input_bias.npy").transpose(2, 1, 0)
    _assert_identical(check_parity(intel_netx / "tiny.net", bias, 20, reset_interval=16))


def test_mnist_net_matches_lava_on_a_digit(intel_netx):
    from sklearn.datasets import load_digits

    from simulators.lava_runner import input_drive_from_image

    img = np.zeros((28, 28))
    img[2:26, 2:26] = np.kron(load_digits().images[3] / 16.0, np.ones((3, 3)))
    drive = input_drive_from_image(intel_netx / "mnist.net", img.reshape(-1))
    _assert_identical(check_parity(intel_netx / "mnist.net", drive, 16))


def test_first_layers_of_pilotnet_lif_match_lava(intel_netx):
    root = intel_netx / "gts/pilotnet_lif"
    image = np.load(root / "image.npy").transpose(2, 1, 0)
    _assert_identical(check_parity(root / "network.net", image, 6, reset_interval=16,
                                   num_layers=3))


def test_pilotnet_sdnn_graded_spikes_match_lava(intel_netx):
    root = intel_netx / "gts/pilotnet_sdnn"
    frame = np.load(root / "input.npy").transpose(3, 2, 1, 0)
    _assert_identical(check_parity(root / "network.net", frame, 8))


def test_ntidigits_synaptic_delays_match_lava(intel_netx):
    root = intel_netx / "gts/ntidigits"
    steps = 80
    spikes = np.load(root / "input.npy")[:, :steps].T.reshape(steps, 1, 1, 64)
    _assert_identical(check_parity(root / "ntidigits.net", spikes, steps, num_layers=5))


def test_simulator_agrees_with_intels_recorded_pilotnet_spikes(intel_netx):
    # Intel's recording (the arrays its Loihi 2 hardware test asserts against) is a
    # third referee: every layer's spikes for steps 1-17, where Lava agrees with it.
    root = intel_netx / "gts/pilotnet_lif"
    image = np.load(root / "image.npy").transpose(2, 1, 0)
    _, ours = run_nmtc_netx(root / "network.net", image, 17, reset_interval=16)
    names = {"layer0_neuron": "input", "layer1_neuron": "conv-0", "layer2_neuron": "conv-1",
             "layer3_neuron": "conv-2", "layer4_neuron": "conv-3", "layer5_neuron": "conv-4",
             "layer7_neuron": "fc-0", "layer8_neuron": "fc-1", "layer9_neuron": "fc-2"}
    for name, f in names.items():
        gt = np.load(root / f"{f}.npy")  # W,H,C,T or N,T
        gt = gt.transpose([gt.ndim - 1] + list(range(gt.ndim - 2, -1, -1))).astype(np.int64)
        np.testing.assert_array_equal(ours[name], gt[:17], err_msg=name)
