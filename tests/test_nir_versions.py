"""`nmtc export --target nir --nir-version V` (issue 14): the NIR version a user asks
for, default the installed nir's (1.0.8). Files are read back with nir's own
``nir.read`` and their version and fields checked with h5py; what each version
means for resets is NIR's (<= 1.0.5: subtract, >= 1.0.6: to v_reset)."""
from __future__ import annotations

from pathlib import Path

import h5py
import nir
import numpy as np
import pytest

from nmtoolchain.cli import main

ROOT = Path(__file__).resolve().parents[1]
SNN = ROOT / "nmtoolchain" / "data" / "digits_mlp_snn.nmir"  # reset-to-zero IF network


def _version(path: Path) -> str:
    with h5py.File(path, "r") as f:
        return f["version"][()].decode()


def test_bundled_reset_to_zero_snn_exports_as_current_nir(tmp_path, capsys):
    out = tmp_path / "snn.nir"
    assert main(["export", str(SNN), "--target", "nir", "-o", str(out)]) == 0
    assert _version(out) == nir.version == "1.0.8"
    graph = nir.read(str(out))  # nir's own reader takes it
    ifs = [n for n in graph.nodes.values() if isinstance(n, nir.IF)]
    assert ifs and all(np.all(np.asarray(n.v_reset) == 0) for n in ifs)


@pytest.mark.parametrize("version", ["1.0.6", "1.0.7", "1.0.8"])
def test_reset_to_zero_network_writes_any_version_that_means_it(tmp_path, version):
    out = tmp_path / "snn.nir"
    assert main(["export", str(SNN), "--target", "nir", "--nir-version", version,
                 "-o", str(out)]) == 0
    assert _version(out) == version


def test_older_version_refuses_reset_to_zero_in_one_line(tmp_path, capsys):
    out = tmp_path / "snn.nir"
    capsys.readouterr()
    assert main(["export", str(SNN), "--target", "nir", "--nir-version", "1.0.4",
                 "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "reset='to_reset' needs NIR >= 1.0.6" in err
    assert not out.exists()


def test_subtract_network_written_as_nir_1_0_4_has_no_v_reset(tmp_path):
    """A sinabs-style (subtract-reset) file read from NIR 1.0.4 goes back out as 1.0.4."""
    from nmtoolchain.ir import IF, Affine, Graph, Input, Output, save_graph

    g = Graph()
    g.add("x", Input(shape=(3,)))
    g.add("fc", Affine(weight=np.eye(3, dtype=np.float32)), ["x"])
    g.add("if1", IF(reset="subtract"), ["fc"])
    g.add("out", Output(), ["if1"])
    src = save_graph(g.infer_shapes(), tmp_path / "sub.nmir")
    out = tmp_path / "sub.nir"
    assert main(["export", str(src), "--target", "nir", "--nir-version", "1.0.5",
                 "-o", str(out)]) == 0
    with h5py.File(out, "r") as f:
        assert f["version"][()].decode() == "1.0.5"
        assert "v_reset" not in f["node/nodes/if1"]
    assert main(["export", str(src), "--target", "nir", "-o", str(tmp_path / "new.nir")]) == 2


@pytest.mark.parametrize("version, words", [("2.0", "nmtc writes NIR 1.0.0 to 1.0.8"),
                                            ("0.2.0", "nmtc writes NIR 1.0.0 to 1.0.8"),
                                            ("latest", "not a version")])
def test_unwritable_version_is_refused_naming_the_range(tmp_path, capsys, version, words):
    capsys.readouterr()
    assert main(["export", str(SNN), "--target", "nir", "--nir-version", version,
                 "-o", str(tmp_path / "o.nir")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and words in err


def test_nir_version_on_another_target_is_refused(tmp_path, capsys):
    capsys.readouterr()
    assert main(["export", str(SNN), "--target", "onnx", "--nir-version", "1.0.8",
                 "-o", str(tmp_path / "o.onnx")]) == 2
    assert "--nir-version applies to --target nir" in capsys.readouterr().err
