"""A QCFS-converted SNN on its way to Loihi 2: scale folding, the spiking
readout, the reset-to-zero adaptation, the export run in Lava, the fixed-point
accuracy and ``nmtc check-accuracy --target loihi2``."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from nmtoolchain.cli import main
from nmtoolchain.convert.for_loihi import needs_adaptation, with_headroom
from nmtoolchain.convert.mst import convert_mst
from nmtoolchain.convert.readout import add_spiking_readout
from nmtoolchain.datasets import load_digits_split
from nmtoolchain.errors import NotExpressibleError
from nmtoolchain.frontends import load_model
from nmtoolchain.ir import IF, Affine, Conv2d, Flatten, Graph, Input, Output, Scale, SumPool2d
from nmtoolchain.passes import fold_scales
from simulators.cycle import Simulator

BUNDLED = Path(__file__).resolve().parents[1] / "nmtoolchain" / "data" / "digits_qcfs_cnn.pt"


def _run(graph: Graph, x: np.ndarray, steps: int) -> np.ndarray:
    out = graph.outputs()[0].name
    return Simulator(graph, "float", count=False).run(x, steps).outputs[out].numpy()


def _dense_chain(scale) -> Graph:
    rng = np.random.default_rng(0)
    g = Graph()
    g.add("input", Input(np.array([4])))
    g.add("fc1", Affine(rng.normal(size=(3, 4)).astype(np.float32), np.zeros(3, np.float32)),
          ["input"])
    g.add("if1", IF(v_threshold=np.asarray(0.5)), ["fc1"])
    g.add("amp", Scale(np.asarray(scale, np.float32)), ["if1"])
    g.add("fc2", Affine(rng.normal(size=(2, 3)).astype(np.float32),
                        np.asarray([0.1, -0.2], np.float32)), ["amp"])
    g.add("output", Output(), ["fc2"])
    return g.infer_shapes()


def test_scalar_scale_moves_into_the_next_weights_by_hand():
    g = _dense_chain(2.5)
    f = fold_scales(g, strict=True)
    assert "amp" not in [n.name for n in f] and f["fc2"].inputs == ("if1",)
    np.testing.assert_allclose(f["fc2"].op.weight, g["fc2"].op.weight * 2.5, rtol=1e-6)
    np.testing.assert_array_equal(f["fc2"].op.bias, g["fc2"].op.bias)  # bias is not scaled
    x = np.random.default_rng(1).uniform(0, 1, size=(5, 6, 4)).astype(np.float32)
    np.testing.assert_allclose(_run(f, x, 6), _run(g, x, 6), rtol=1e-5, atol=1e-5)


def test_per_feature_scale_scales_columns():
    s = np.array([1.0, 2.0, 3.0], np.float32)
    g = _dense_chain(s)
    f = fold_scales(g, strict=True)
    np.testing.assert_allclose(f["fc2"].op.weight, g["fc2"].op.weight * s[None, :], rtol=1e-6)


def test_per_channel_scale_through_pooling_and_grouped_conv_keeps_outputs():
    rng = np.random.default_rng(2)
    g = Graph()
    g.add("input", Input(np.array([2, 6, 6])))
    g.add("c1", Conv2d(rng.normal(size=(4, 2, 3, 3)).astype(np.float32), np.zeros(4, np.float32),
                       padding=(1, 1)), ["input"])
    g.add("if1", IF(v_threshold=np.asarray(0.7)), ["c1"])
    s = np.array([0.5, 1.5, 2.0, 3.0], np.float32).reshape(4, 1, 1)
    g.add("amp", Scale(s), ["if1"])
    g.add("pool", SumPool2d((2, 2), (2, 2), (0, 0)), ["amp"])
    g.add("c2", Conv2d(rng.normal(size=(4, 2, 3, 3)).astype(np.float32), np.zeros(4, np.float32),
                       padding=(1, 1), groups=2), ["pool"])
    g.add("flat", Flatten(0, -1), ["c2"])
    g.add("output", Output(), ["flat"])
    g.infer_shapes()
    f = fold_scales(g, strict=True)
    # group 0 reads channels 0-1, group 1 reads 2-3: kernel column j of output o gets s[group*2+j]
    want = g["c2"].op.weight * np.array([[0.5, 1.5]] * 2 + [[2.0, 3.0]] * 2)[:, :, None, None]
    np.testing.assert_allclose(f["c2"].op.weight, want, rtol=1e-6)
    x = rng.uniform(0, 1, size=(3, 5, 2, 6, 6)).astype(np.float32)
    np.testing.assert_allclose(_run(f, x, 5), _run(g, x, 5), rtol=1e-5, atol=1e-5)


def test_a_scale_that_reaches_an_output_is_kept_or_refused_naming_it():
    g = Graph()
    g.add("input", Input(np.array([3])))
    g.add("if1", IF(), ["input"])
    g.add("amp", Scale(np.asarray(2.0)), ["if1"])
    g.add("output", Output(), ["amp"])
    g.infer_shapes()
    kept = fold_scales(g)
    assert "amp" in [n.name for n in kept]
    assert kept.metadata["unfolded_scales"][0]["stopped_at"] == "output"
    with pytest.raises(NotExpressibleError, match="Scale 'amp'.*Output 'output'"):
        fold_scales(g, strict=True)


def test_headroom_and_bias_precharge_by_hand():
    """One IF neuron, constant input 0.35, threshold 1, pre-charge 0.5, T=10, k=2:
    adapted threshold 2, bias 2*0.5/10 = 0.1, reset to 0: v grows 0.45 per step,
    first exceeds 2 at step 5 (2.25), restarts at 0 and exceeds it again at
    step 10: spikes at steps 5 and 10, and the spike amplitude doubles to 2 * 1.25."""
    g = Graph()
    g.add("input", Input(np.array([1])))
    g.add("fc", Affine(np.ones((1, 1), np.float32), np.zeros(1, np.float32)), ["input"])
    g.add("if1", IF(v_threshold=np.asarray(1.0), v_init=np.asarray(0.5)), ["fc"])
    g.add("amp", Scale(np.asarray(1.25)), ["if1"])
    g.add("fc2", Affine(np.ones((1, 1), np.float32), np.zeros(1, np.float32)), ["amp"])
    g.add("output", Output(), ["fc2"])
    g.infer_shapes()
    assert needs_adaptation(g)
    a = with_headroom(g, 2.0, steps=10)
    op = a["if1"].op
    assert float(op.v_threshold) == pytest.approx(2.0)
    assert float(op.v_bias) == pytest.approx(0.1)
    assert float(op.v_init) == 0.0 and op.reset == "to_reset"
    assert float(a["amp"].op.scale) == pytest.approx(2.5)
    x = np.full((1, 10, 1), 0.35, np.float32)
    res = Simulator(a, "float", record=["if1"], count=False).run(x, 10)
    spikes = res.recorded["if1"][0, :, 0].numpy()
    np.testing.assert_array_equal(np.nonzero(spikes)[0], [4, 9])  # steps 5 and 10


def test_spiking_readout_threshold_is_the_percentile_of_the_logits():
    g = _dense_chain(1.0)
    x = np.random.default_rng(3).uniform(0, 1, size=(20, 8, 4)).astype(np.float32)
    ro = add_spiking_readout(g, x, 8, percentile=90.0)
    node = ro[ro.outputs()[0].inputs[0]]
    assert node.op_name == "IF" and node.inputs == ("fc2",)
    logits = Simulator(g, "float", record=["fc2"], count=False).run(x, 8).recorded["fc2"].numpy()
    pos = logits[logits > 0]
    assert float(node.op.v_threshold) == pytest.approx(float(np.percentile(pos, 90.0)), rel=1e-6)
    assert ro.metadata["output_decoding"]["method"] == "spike_count"


@pytest.fixture(scope="module")
def converted() -> Graph:
    return convert_mst(load_model(BUNDLED), timesteps=16)


def test_export_without_calibration_is_refused_in_one_line(converted, tmp_path, capsys):
    src = tmp_path / "snn.nmir"
    from nmtoolchain.ir import save_graph

    save_graph(converted, src)
    rc = main(["export", str(src), "--target", "loihi2", "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "--calib" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_converted_cnn_exports_and_runs_identically_in_lava(converted, tmp_path):
    pytest.importorskip("lava", reason="Lava (lava-nc) is not installed")
    from nmtoolchain.targets.loihi2 import export_loihi2
    from exporters.loihi2.verify import verify_export

    exp = export_loihi2(converted, tmp_path / "qcfs.loihi2", calib="digits", timesteps=16)
    assert exp.plan is not None and (exp.directory / "network.net").exists()
    assert [la.type for la in exp.plan.layers] == ["input", "conv", "conv", "flatten", "dense"]
    ver = verify_export(exp.directory, dataset="digits", samples=2)
    assert ver.identical, ver.lines()


def test_fixed_point_accuracy_stays_near_the_ann(converted):
    """ANN 98.67% (torch); without the adaptation Loihi's reset-to-zero costs
    ~30 points here, with it the T=16 fixed-point export keeps > 90%."""
    from nmtoolchain.targets.loihi2 import loihi_accuracy
    from nmtoolchain.accuracy import ann_accuracy

    d = load_digits_split()
    x = d.x_test.reshape(-1, 1, 8, 8)
    ann = ann_accuracy(load_model(BUNDLED), x, d.y_test)
    r = loihi_accuracy(converted, x, d.y_test, steps=16)
    assert r["accuracy"] > 0.90 and ann - r["accuracy"] < 0.08
    assert r["headroom"] in (1, 2, 4, 8)


def test_check_accuracy_gate_on_the_loihi2_export(capsys):
    args = ["check-accuracy", str(BUNDLED), "--dataset", "digits", "-T", "16",
            "--target", "loihi2", "--json"]
    assert main(args + ["--min-accuracy", "0.5"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["target"]["name"] == "loihi2" and out["passed"]
    assert main(args + ["--min-accuracy", "0.999"]) == 1
    capsys.readouterr()
    # a target without chip numerics is refused (speck has them: tests/test_speck_export.py)
    assert main(["check-accuracy", str(BUNDLED), "--dataset", "digits", "--target", "nir"]) == 2


def test_exporting_the_qcfs_ann_says_to_convert_it_first(tmp_path, capsys):
    rc = main(["export", str(BUNDLED), "--target", "loihi2", "--calib", "digits",
               "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "QCFS" in err and "nmtc convert" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_simulating_the_export_rate_codes_digits_as_the_model_records(converted, tmp_path,
                                                                      capsys):
    """The exported graph records a rate input encoding, so `nmtc simulate --dataset
    digits` feeds spikes: the first convolution counts synaptic events, no MACs, and
    its input events equal the spikes of the deterministic rate code, written here
    from its definition (an integrate-and-fire neuron per pixel, threshold 1, reset
    by subtraction, driven by the pixel value every step)."""
    from nmtoolchain.targets.loihi2 import prepare_for_loihi
    from nmtoolchain.ir import save_graph

    q, _, _ = prepare_for_loihi(converted, "digits", 16)
    save_graph(q, tmp_path / "q.nmir")
    rc = main(["simulate", str(tmp_path / "q.nmir"), "--numerics", "loihi", "--dataset",
               "digits", "-T", "16", "--samples", "4", "--json"])
    rep = json.loads(capsys.readouterr().out)
    assert rc == 0 and "rate-coded" in rep["inputs"]
    first = next(r for r in rep["layers"] if r["name"] == "layer1_conv")
    assert first["macs"] == 0 and first["synops"] > 0
    d = load_digits_split()
    pixels = np.clip(d.x_test[:4].astype(np.float64), 0.0, 1.0)  # k/16: sums are exact
    v, spikes = np.zeros_like(pixels), 0.0
    for _ in range(16):
        v += pixels
        fired = v >= 1.0
        spikes += fired.sum()
        v -= fired
    assert 0 < spikes < 16 * pixels.size
    assert first["events_in"] == pytest.approx(spikes / 4)


def test_check_accuracy_target_calibrates_on_the_data_file_by_default(tmp_path, capsys):
    d = load_digits_split()
    np.savez(tmp_path / "digits.npz", x=d.x_test[:200].reshape(-1, 1, 8, 8), y=d.y_test[:200])
    rc = main(["check-accuracy", str(BUNDLED), "--data", str(tmp_path / "digits.npz"), "-T", "16",
               "--target", "loihi2", "--min-accuracy", "0.85", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["samples"] == 200
    assert any("digits.npz" in n for n in out["target"]["notes"])  # calibrated on the file
