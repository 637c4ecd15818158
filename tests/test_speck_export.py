"""Speck export end to end: input formats, the export directory, check-accuracy, the demo stage.

References: sinabs runs every exported network (``nmtc verify``), the files are
read back with plain ``torch.load(weights_only=True)``, ``numpy`` and ``json``,
and the digits labels decide accuracy.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sinabs")

from nmtoolchain.cli import main  # noqa: E402
from nmtoolchain.convert.threshold_balance import convert_relu_to_if  # noqa: E402
from nmtoolchain.datasets import load_digits_split  # noqa: E402
from nmtoolchain.frontends import load_model  # noqa: E402
from nmtoolchain.ir import save_graph  # noqa: E402
from nmtoolchain.passes import fold_batchnorm  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "nmtoolchain" / "data"


@pytest.mark.parametrize("source", ["digits_cnn.onnx", "digits_cnn.pt"])
def test_onnx_and_torchscript_models_export_and_verify(source, tmp_path, capfd):
    """The bundled ReLU CNN, as ONNX and as TorchScript, threshold-balanced to IF."""
    split = load_digits_split()
    ann = fold_batchnorm(load_model(DATA / source))
    snn, _ = convert_relu_to_if(ann, split.x_train[:128].reshape(-1, 1, 8, 8), reset="subtract",
                                compare=">=")
    model = save_graph(snn, tmp_path / "snn.nmir")
    out = tmp_path / "m.speck"
    assert main(["export", str(model), "--target", "speck", "-o", str(out)]) == 0
    assert main(["verify", str(out), "--dataset", "digits", "--samples", "4"]) == 0
    assert "identical" in capfd.readouterr().out


def test_sinabs_nir_file_exports_and_verifies(tmp_path, capfd):
    import nir
    import sinabs
    import sinabs.layers as sl
    from torch import nn

    torch.manual_seed(0)
    snn = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), sl.IAFSqueeze(batch_size=1),
                        sl.SumPool2d(2), nn.Flatten(), nn.Linear(4 * 4 * 4, 10),
                        sl.IAFSqueeze(batch_size=1))
    graph = sinabs.to_nir(snn, torch.zeros(1, 2, 8, 8))
    graph.infer_types()  # sinabs leaves Conv2d input_shape None; nir.write needs it
    for node in graph.nodes.values():
        if isinstance(node, nir.Conv2d):
            node.input_shape = tuple(int(s) for s in node.input_type["input"][1:])
    path = tmp_path / "sinabs_cnn.nir"
    nir.write(str(path), graph)
    out = tmp_path / "nir.speck"
    assert main(["export", str(path), "--target", "speck", "-o", str(out)]) == 0
    assert main(["verify", str(out), "--samples", "2"]) == 0
    assert "identical" in capfd.readouterr().out


def test_export_directory_contents(tmp_path, capfd):
    snn = tmp_path / "snn.nmir"
    assert main(["convert", str(DATA / "digits_qcfs_cnn.pt"), "--method", "mst", "-T", "16",
                 "-o", str(snn)]) == 0
    out = tmp_path / "d.speck"
    assert main(["export", str(snn), "--target", "speck", "-o", str(out)]) == 0
    capfd.readouterr()
    tensors = torch.load(out / "network.pt", weights_only=True)  # no pickle
    assert all(isinstance(v, torch.Tensor) for v in tensors.values())
    for k, v in tensors.items():
        assert torch.equal(v, torch.round(v)), k  # discretized: integers only
        if k.endswith((".weight", ".bias")):
            assert -128 <= float(v.min()) and float(v.max()) <= 127, k
        else:
            assert -32768 <= float(v.min()) and float(v.max()) <= 32767, k
    chip = json.loads((out / "chip_config.json").read_text())
    mapping = json.loads((out / "mapping.json").read_text())
    report = json.loads((out / "report.json").read_text())
    assert report["target"] == "speck" and "samna" in report["samna"]
    for layer in chip["layers"]:
        w = np.load(out / layer["weights"])
        assert w.dtype == np.int8 and w.shape[2] == w.shape[3] == layer["kernel_size"]
        assert layer["core"] == mapping["assignment"][str(layer["layer"])]
        assert 1 <= layer["threshold_high"] <= 32767 and layer["threshold_low"] == -32768
    # per core: what is used never exceeds the limit (sinabs get_constraints, literal)
    limits = {0: (16384, 65536), 3: (32768, 32768), 5: (65536, 16384), 7: (16384, 16384)}
    for core in mapping["cores"]:
        k, n = limits[max(c for c in limits if c <= core["core"])]
        assert (core["kernel_memory_limit"], core["neuron_memory_limit"]) == (k, n)
        assert core["kernel_memory_used"] <= k and core["neuron_memory_used"] <= n
    # exporting again without --force is refused, with it replaced
    assert main(["export", str(snn), "--target", "speck", "-o", str(out)]) == 2
    assert "already exists" in capfd.readouterr().err
    assert main(["export", str(snn), "--target", "speck", "-o", str(out), "--force"]) == 0


def test_check_accuracy_gates_the_speck_export(capfd):
    code = main(["check-accuracy", str(DATA / "digits_qcfs_cnn.pt"), "--dataset", "digits",
                 "-T", "16", "--target", "speck", "--min-accuracy", "0.9", "--json"])
    res = json.loads(capfd.readouterr().out)
    assert code == 0 and res["passed"]
    snn16 = dict((r["timesteps"], r["accuracy"]) for r in res["snn_accuracy"])[16]
    assert res["target"]["name"] == "speck"
    assert abs(res["target"]["accuracy"] - snn16) <= 0.02  # within 2 points of the float SNN
    assert main(["check-accuracy", str(DATA / "digits_qcfs_cnn.pt"), "--dataset", "digits",
                 "-T", "4", "--target", "speck", "--min-accuracy", "0.999"]) == 1


def test_demo_speck_stage():
    from nmtoolchain.demo_speck import speck_stage

    s = speck_stage(samples=4)
    assert s["verify"] == "identical"
    assert s["float_snn_accuracy"] - s["speck_accuracy"] <= 0.02
    row = s["report"]["profiles"]["speck"]
    assert row["energy_per_inference_pj"] > row["dynamic_pj"] > 0


def test_samna_configuration_where_samna_is_installed(tmp_path, capfd):
    """Only a real samna makes the chip configuration; without it the report says so."""
    from exporters.speck.bundle import samna_available

    ok, why = samna_available()
    snn = tmp_path / "snn.nmir"
    assert main(["convert", str(DATA / "digits_qcfs_cnn.pt"), "--method", "mst", "-T", "16",
                 "-o", str(snn)]) == 0
    out = tmp_path / "d.speck"
    assert main(["export", str(snn), "--target", "speck", "-o", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    if not ok:
        assert not (out / "samna_config.json").exists() and report["samna"] == why
        print(f"SKIP reason: {why}")
        pytest.skip(why)
    assert (out / "samna_config.json").exists() and report["samna"] == "samna_config.json"
