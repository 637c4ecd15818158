"""One answer per target: `nmtc inspect`'s verdict equals the outcome of `nmtc export`.

For every bundled model, every Intel netx test network that loads, the NIR
files of the test suite, a converted QCFS network and the Spikformer block,
and for every registered target: inspect says ✓ exactly when export exits 0,
and when it says ✗ the export exits 2 naming a node the verdict named. A
verdict that needs `--calib` is checked by exporting with `--calib digits`.
Both sides run the real CLI in-process (`nmtoolchain.cli.main`).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest

from nmtoolchain.cli import main
from nmtoolchain.targets import targets

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "nmtoolchain" / "data"
TEST_DATA = Path(__file__).resolve().parent / "data"

MODELS = sorted(p.name for p in DATA.iterdir() if p.suffix in (".pt", ".onnx", ".nmir")) + \
    sorted(f"tests/data/{p.name}" for p in TEST_DATA.glob("*.nir")) + \
    ["converted_qcfs.nmir", "spikformer_block.nmir", "maxpool_cnn.onnx", "lif_mlp.nir",
     "traced_cnn.pt", "sinabs_cnn.nir", "braille_rnn.nir", "snntorch_rleaky.nir"]
INTEL = ["tiny.net", "mnist.net", "gts/pilotnet_lif/network.net", "gts/pilotnet_sdnn/network.net",
         "gts/pilotnet_sdnn/square_network.net"]
TARGETS = list(targets())
#: NIR fixtures whose time constants are in seconds (written for a 1 ms step):
#: nmtc refuses them without the step, as it should (issue 14)
DT_ARGS = {"cubali_nir108.nir": ["--dt", "1e-3"], "reset_to_v_reset_nir108.nir": ["--dt", "1e-3"],
           "braille_rnn.nir": ["--dt", "1e-4"], "snntorch_rleaky.nir": ["--dt", "1e-4"]}


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> Path:
    """Models the corpus builds: a converted QCFS CNN and the Spikformer block."""
    d = tmp_path_factory.mktemp("corpus")
    assert main(["convert", str(DATA / "digits_qcfs_cnn.pt"), "--method", "mst", "-T", "16",
                 "-o", str(d / "converted_qcfs.nmir")]) == 0
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        from spikformer_block import build_spikformer_block
    finally:
        sys.path.pop(0)
    from nmtoolchain.ir import save_graph

    save_graph(build_spikformer_block(), d / "spikformer_block.nmir")
    _write_made_by_producers(d)
    return d


def _write_made_by_producers(d: Path) -> None:
    """Files as other tools write them: torch.onnx (a max-pooling CNN with softmax),
    torch.jit.trace (a CNN, input shape in nmtc.json), nir's own API (an LIF MLP)
    and sinabs.to_nir (a spiking CNN) when sinabs is installed."""
    import nir
    import torch
    from torch import nn

    torch.manual_seed(0)
    cnn = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                        nn.Linear(4 * 4 * 4, 10), nn.Softmax(-1)).eval()
    torch.onnx.export(cnn, torch.zeros(1, 1, 8, 8), str(d / "maxpool_cnn.onnx"))
    traced = torch.jit.trace(nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(),
                                           nn.Linear(4 * 6 * 6, 10)).eval(),
                             torch.zeros(1, 1, 8, 8))
    torch.jit.save(traced, str(d / "traced_cnn.pt"),
                   _extra_files={"nmtc.json": json.dumps({"input_shape": [1, 8, 8]})})
    rng = np.random.default_rng(0)
    nodes = {"input": nir.Input(input_type={"input": np.array([64])}),
             "fc1": nir.Affine(rng.normal(size=(16, 64)).astype(np.float32),
                               np.zeros(16, np.float32)),
             "lif1": nir.LIF(tau=np.full(16, 2.0, np.float32), r=np.ones(16, np.float32),
                             v_leak=np.zeros(16, np.float32),
                             v_threshold=np.ones(16, np.float32)),
             "fc2": nir.Linear(rng.normal(size=(10, 16)).astype(np.float32)),
             "output": nir.Output(output_type={"output": np.array([10])})}
    nir.write(str(d / "lif_mlp.nir"), nir.NIRGraph(
        nodes=nodes, edges=[("input", "fc1"), ("fc1", "lif1"), ("lif1", "fc2"),
                            ("fc2", "output")]))
    _write_recurrent(d)
    try:
        import sinabs
        import sinabs.layers as sl
    except ImportError:
        return  # the sinabs file is skipped by the test that needs it
    snn = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), sl.IAFSqueeze(batch_size=1),
                        sl.SumPool2d(2), nn.Flatten(), nn.Linear(4 * 4 * 4, 10),
                        sl.IAFSqueeze(batch_size=1))
    graph = sinabs.to_nir(snn, torch.zeros(1, 1, 8, 8))
    graph.infer_types()
    for node in graph.nodes.values():
        if isinstance(node, nir.Conv2d):  # sinabs leaves it None; nir.write needs it
            node.input_shape = tuple(int(s) for s in node.input_type["input"][1:])
    nir.write(str(d / "sinabs_cnn.nir"), graph)


def _write_recurrent(d: Path) -> None:
    """Recurrent networks (issue 14): the braille-style RNN written with nir's API,
    and snnTorch's RLeaky through snnTorch's own NIR export where it installs."""
    from recurrent_models import snn_rnn, write_braille_rnn, write_snntorch

    write_braille_rnn(d / "braille_rnn.nir")
    try:
        import snntorch  # noqa: F401
    except ImportError:
        return  # skipped by the test that needs it
    write_snntorch(snn_rnn("RLeaky"), d / "snntorch_rleaky.nir")


def _path(name: str, made: Path, intel_dir: Path = None) -> Path:
    if name.startswith("tests/data/"):
        return ROOT / name
    if (DATA / name).exists():
        return DATA / name
    if intel_dir is not None:
        return intel_dir / name
    return made / name


def _inspect(path: Path, capsys) -> dict:
    assert main(["inspect", str(path), "--json"] + DT_ARGS.get(path.name, [])) == 0
    return json.loads(capsys.readouterr().out)


def _verdicts(path: Path, capsys) -> Dict[str, dict]:
    return {v["target"]: v for v in _inspect(path, capsys)["targets"]}


def _calib_for(info: dict, tmp_path: Path) -> str:
    """digits for an 8x8 input, else random analog samples of the model's input shape."""
    shape = next(r["output_shape"] for r in info["nodes"] if r["op"] == "Input")
    if int(np.prod(shape)) == 64:
        return "digits"
    x = np.random.default_rng(0).random((16, *shape)).astype(np.float32)
    np.savez(tmp_path / "calib.npz", x=x)
    return str(tmp_path / "calib.npz")


def _check(path: Path, target: str, tmp_path: Path, capsys) -> None:
    info = _inspect(path, capsys)
    verdict = {v["target"]: v for v in info["targets"]}[target]
    out = tmp_path / ("out" + targets()[target].suffix)
    args = ["export", str(path), "--target", target, "-o", str(out)] + DT_ARGS.get(path.name, [])
    if verdict["ok"] and verdict["requires"]:
        assert any("--calib" in r for r in verdict["requires"])
        args += ["--calib", _calib_for(info, tmp_path)]
    rc = main(args)
    err = capsys.readouterr().err.strip()
    if verdict["ok"]:
        assert rc == 0, f"inspect said ✓ {target}, export failed: {err}"
        assert out.exists()
    else:
        assert rc == 2, f"inspect said ✗ {target} ({verdict['reasons']}), export exited {rc}"
        assert len(err.splitlines()) == 1 and not out.exists()
        named: List[str] = [w.strip(" ,'()") for r in verdict["reasons"]
                            for w in r.rsplit(": ", 1)[-1].split(",")]
        assert any(f"'{n}'" in err or f" {n} " in err or f" {n}" in err for n in named if n), \
            (err, named)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("model", MODELS)
def test_inspect_verdict_is_the_export_outcome(model, target, made, tmp_path, capsys):
    path = _path(model, made)
    if not path.exists() and model == "sinabs_cnn.nir":
        pytest.skip("sinabs is not installed: no sinabs-written NIR file to check")
    if not path.exists() and model == "snntorch_rleaky.nir":
        pytest.skip("snnTorch is not installed: no snnTorch-written NIR file to check")
    capsys.readouterr()
    _check(path, target, tmp_path, capsys)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("net", INTEL)
def test_inspect_verdict_is_the_export_outcome_for_intels_networks(net, target, intel_netx,
                                                                    tmp_path, capsys):
    _check(intel_netx / net, target, tmp_path, capsys)


def test_the_corpus_has_both_outcomes_for_every_chip_target(made, capsys):
    """The parity above is not vacuous: loihi2 and nir each accept some models and
    refuse others in this corpus."""
    seen: Dict[str, set] = {t: set() for t in TARGETS}
    for m in MODELS:
        if not _path(m, made).exists():
            continue
        for t, v in _verdicts(_path(m, made), capsys).items():
            seen[t].add(v["ok"])
    assert seen["loihi2"] == {True, False} and seen["nir"] == {True, False}
    assert seen["onnx"] == {True, False}
    assert seen["nmir"] == {True}


@pytest.mark.parametrize("target", TARGETS)
def test_a_file_nmtc_cannot_load_is_refused_alike_by_inspect_and_export(target, intel_netx,
                                                                         tmp_path, capsys):
    """Intel's ntidigits.net has a layer type nmtc does not read (its 'average' layer):
    inspect and every export exit 2 with the same one-line message."""
    path = intel_netx / "gts/ntidigits/ntidigits.net"
    assert main(["inspect", str(path)]) == 2
    inspect_err = capsys.readouterr().err.strip()
    assert main(["export", str(path), "--target", target, "-o", str(tmp_path / "out")]) == 2
    export_err = capsys.readouterr().err.strip()
    assert inspect_err == export_err and len(export_err.splitlines()) == 1
    assert "average" in export_err and not (tmp_path / "out").exists()
