"""``nmtc convert --method threshold``: a plain ReLU CNN to an IF SNN (issue 14, step 6).

References, all independent of the code under test: torch's own forward of the
bundled TorchScript CNN (its intermediate ReLU outputs give the activation
percentiles, its logits the ANN's predictions and accuracy), the BatchNorm fold
and weight scaling written out in numpy here, the digits labels, and Lava
running the Loihi 2 export (``nmtc verify``).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from nmtoolchain.cli import main  # noqa: E402
from nmtoolchain.datasets import load_digits_split  # noqa: E402
from nmtoolchain.ir import load_graph  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "nmtoolchain" / "data"
CNN_PT = DATA / "digits_cnn.pt"


@pytest.fixture(scope="module")
def split():
    return load_digits_split()


@pytest.fixture(scope="module")
def torch_cnn():
    return torch.jit.load(str(CNN_PT)).eval()


def _torch_activations(model, x: np.ndarray):
    """Every child's output of the TorchScript Sequential, run by torch itself."""
    outs, h = [], torch.from_numpy(x)
    with torch.no_grad():
        for child in model.children():
            h = child(h)
            outs.append(h.numpy().copy())
    return outs


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    out = tmp_path_factory.mktemp("thr") / "cnn_snn.nmir"
    assert main(["convert", str(CNN_PT), "--method", "threshold", "--calib", "digits",
                 "-T", "32", "-o", str(out)]) == 0
    return load_graph(out).infer_shapes()


def test_scales_are_the_percentiles_of_torchs_own_activations(converted, split, torch_cnn):
    x = split.x_train.reshape(-1, 1, 8, 8)[:1024]
    acts = _torch_activations(torch_cnn, x)
    conv = converted.metadata["conversion"]
    lam = conv["lambdas"]
    assert conv["percentile"] == 99.9 and conv["samples"] == 1024
    for node, child in (("2", 2), ("6", 6), ("output", 9)):  # ReLU, ReLU, logits
        a = acts[child].reshape(-1)
        assert lam[node] == pytest.approx(np.percentile(a[a > 0], 99.9), rel=1e-4), node
    # BatchNorm folded and the first synapse scaled by x_max / λ, by hand from torch's tensors
    sd = {k: v.numpy() for k, v in torch_cnn.state_dict().items()}
    s = sd["1.weight"] / np.sqrt(sd["1.running_var"] + 1e-5)
    x_max = float(x.max())
    assert converted.metadata["input_encoding"]["x_max"] == pytest.approx(x_max)
    w = sd["0.weight"] * s[:, None, None, None] * x_max / lam["2"]
    b = ((sd["0.bias"] - sd["1.running_mean"]) * s + sd["1.bias"]) / lam["2"]
    np.testing.assert_allclose(converted["0"].op.weight, w, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(converted["0"].op.bias, b, rtol=1e-4, atol=1e-6)
    assert [n.op_name for n in converted].count("IF") == 3
    assert all(n.op.reset == "to_reset" for n in converted if n.op_name == "IF")


def test_percentile_100_is_the_maximum(tmp_path, split, torch_cnn):
    out = tmp_path / "max.nmir"
    assert main(["convert", str(CNN_PT), "--method", "threshold", "--calib", "digits",
                 "--percentile", "100", "-o", str(out)]) == 0
    lam = load_graph(out).metadata["conversion"]["lambdas"]
    acts = _torch_activations(torch_cnn, split.x_train.reshape(-1, 1, 8, 8)[:1024])
    assert lam["6"] == pytest.approx(float(acts[6].max()), rel=1e-5)


def test_onnx_and_torchscript_convert_alike(tmp_path, converted):
    out = tmp_path / "onnx_snn.nmir"
    assert main(["convert", str(DATA / "digits_cnn.onnx"), "--method", "threshold",
                 "--calib", "digits", "-T", "32", "-o", str(out)]) == 0
    other = load_graph(out).metadata["conversion"]["lambdas"]
    mine = converted.metadata["conversion"]["lambdas"]
    np.testing.assert_allclose(sorted(other.values()), sorted(mine.values()), rtol=1e-4)


def test_check_accuracy_measures_the_ann_with_torch_and_the_rate_coded_snn(split, torch_cnn,
                                                                          capsys):
    """The ANN accuracy check-accuracy reports is torch's own; the SNN approaches it with T."""
    capsys.readouterr()
    assert main(["check-accuracy", str(CNN_PT), "--dataset", "digits", "-T", "64",
                 "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    with torch.no_grad():
        logits = torch_cnn(torch.from_numpy(split.x_test.reshape(-1, 1, 8, 8))).numpy()
    assert res["ann_accuracy"] == pytest.approx(float((logits.argmax(1) == split.y_test).mean()))
    assert res["conversion"] == "threshold" and res["rate_coded_input"] is True
    curve = {r["timesteps"]: r["accuracy"] for r in res["snn_accuracy"]}
    assert curve[64] > curve[8] and curve[64] >= 0.85  # a rate code needs steps
    assert res["ann_accuracy"] - curve[64] <= 0.12


def test_max_pooling_is_refused_naming_average_pooling(tmp_path, capsys):
    from torch import nn

    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Linear(4 * 4 * 4, 10)).eval()
    path = tmp_path / "maxpool.pt"
    torch.jit.save(torch.jit.script(model), str(path))
    np.savez(tmp_path / "calib.npz", x=np.random.default_rng(0).random((8, 1, 8, 8),
                                                                        dtype=np.float32))
    capsys.readouterr()
    rc = main(["convert", str(path), "--method", "threshold", "--input-shape", "1,8,8",
               "--calib", str(tmp_path / "calib.npz"), "-o", str(tmp_path / "m.nmir")])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1
    assert "MaxPool2d" in err and "average pooling" in err and "Traceback" not in err
    assert not (tmp_path / "m.nmir").exists()


@pytest.mark.parametrize("args, words", [
    ([], "--calib"),  # data-based normalization needs data
    (["--calib", "NEG"], "rate code"),  # negative inputs cannot be rate-coded
    (["--calib", "digits", "--percentile", "0"], "--percentile"),
])
def test_bad_threshold_options_are_one_line_exit_2(tmp_path, capsys, args, words):
    np.savez(tmp_path / "neg.npz", x=-np.ones((4, 1, 8, 8), np.float32))
    args = [str(tmp_path / "neg.npz") if a == "NEG" else a for a in args]
    capsys.readouterr()
    rc = main(["convert", str(CNN_PT), "--method", "threshold", *args,
               "-o", str(tmp_path / "x.nmir")])
    err = capsys.readouterr().err
    assert rc == 2 and words in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.nmir").exists()


def test_python_api_converts_an_nn_module(split):
    """nmtc.convert(module, method='threshold') on a module the user holds."""
    from torch import nn

    import nmtoolchain as nmtc

    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)).eval()
    x = split.x_train[:256].reshape(-1, 1, 8, 8)
    snn = nmtc.convert(model, method="threshold", calib=x, input_shape=(1, 8, 8))
    with torch.no_grad():
        h = torch.relu(model[1](torch.from_numpy(x).flatten(1))).numpy()
    lam = snn.metadata["conversion"]["lambdas"]
    relu = next(n.name for n in snn if n.op_name == "IF")
    assert lam[relu] == pytest.approx(np.percentile(h[h > 0], 99.9), rel=1e-4)


@pytest.mark.lava
def test_threshold_converted_cnn_exports_to_loihi2_and_verifies_in_lava(tmp_path, capfd):
    pytest.importorskip("lava.lib.dl.netx", reason="lava-dl is not installed")
    snn = tmp_path / "snn.nmir"
    assert main(["convert", str(CNN_PT), "--method", "threshold", "--calib", "digits",
                 "-T", "32", "-o", str(snn)]) == 0
    out = tmp_path / "cnn.loihi2"
    assert main(["export", str(snn), "--target", "loihi2", "--calib", "digits", "-T", "32",
                 "-o", str(out)]) == 0
    rep = json.loads((out / "report.json").read_text())
    assert rep["agreement"]["export_accuracy"] >= 0.8  # digits labels: the export classifies
    capfd.readouterr()
    assert main(["verify", str(out), "--dataset", "digits", "--samples", "3"]) == 0
    assert "identical" in capfd.readouterr().out


def test_agreement_against_the_ann_source_uses_torchs_predictions(tmp_path, split, torch_cnn):
    """verify --against the ReLU ANN a converted export came from: the source side is
    the ANN on analog images, so its accuracy is torch's own."""
    from nmtoolchain.api import load
    from nmtoolchain.targets.agreement import against_source

    snn = tmp_path / "snn.nmir"
    assert main(["convert", str(CNN_PT), "--method", "threshold", "--calib", "digits",
                 "-T", "16", "-o", str(snn)]) == 0
    out = tmp_path / "cnn.loihi2"
    assert main(["export", str(snn), "--target", "loihi2", "-T", "16", "-o", str(out)]) == 0
    x, y = split.x_test[:100].reshape(-1, 1, 8, 8), split.y_test[:100]
    ag = against_source(out, load(CNN_PT), x, y, "digits test, 100 images")
    with torch.no_grad():
        ann_pred = torch_cnn(torch.from_numpy(x)).numpy().argmax(1)
    assert ag.source_is_ann and ag.samples == 100
    assert ag.source_accuracy == pytest.approx(float((ann_pred == y).mean()))
    # agreement and export accuracy are consistent with torch's predictions and the labels
    assert abs(ag.export_accuracy - ag.source_accuracy) <= 1 - ag.agreement + 1e-9
    assert "the source is an ANN" in "\n".join(ag.lines())
