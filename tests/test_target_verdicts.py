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
    ["converted_qcfs.nmir", "spikformer_block.nmir"]
INTEL = ["tiny.net", "mnist.net", "gts/pilotnet_lif/network.net", "gts/pilotnet_sdnn/network.net"]
TARGETS = list(targets())


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
    return d


def _path(name: str, made: Path, intel_dir: Path = None) -> Path:
    if name.startswith("tests/data/"):
        return ROOT / name
    if (DATA / name).exists():
        return DATA / name
    if intel_dir is not None:
        return intel_dir / name
    return made / name


def _inspect(path: Path, capsys) -> dict:
    assert main(["inspect", str(path), "--json"]) == 0
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
    args = ["export", str(path), "--target", target, "-o", str(out)]
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
    _check(_path(model, made), target, tmp_path, capsys)


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
        for t, v in _verdicts(_path(m, made), capsys).items():
            seen[t].add(v["ok"])
    assert seen["loihi2"] == {True, False} and seen["nir"] == {True, False}
    assert seen["onnx"] == {True, False}
    assert seen["nmir"] == {True}
