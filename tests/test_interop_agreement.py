"""Exports are checked against their source, not only against Lava (issue 14, step 7).

A Loihi 2 export with --calib measures, on its calibration data, how often the
export (Loihi fixed point) predicts the same class as the source model (float),
the correlation of their output spike counts and, with labels, both accuracies;
the report prints it first and ``--min-agreement`` turns a loss into exit 1.
The independent references: a network whose fixed-point arithmetic is exact by
construction (integer weights, threshold and no leak: the hand-derived expectation
is full agreement and equal counts), and the digits labels.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from nmtoolchain.cli import main

ROOT = Path(__file__).resolve().parents[1]
SNN = ROOT / "nmtoolchain" / "data" / "digits_cnn_snn.nmir"


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("agree") / "cnn.loihi2"
    assert main(["export", str(SNN), "--target", "loihi2", "--calib", "digits",
                 "-o", str(out)]) == 0
    return out


def test_report_starts_with_the_agreement_with_the_source(exported):
    lines = (exported / "report.txt").read_text().splitlines()
    assert lines[1].startswith("agreement with the source model: ")
    assert "accuracy: source" in lines[2]
    rep = json.loads((exported / "report.json").read_text())
    assert next(iter(rep)) == "agreement"
    ag = rep["agreement"]
    assert ag["samples"] == 128 and ag["steps"] == 16
    # the bundled SNN is trained on digits: the labels say both sides mostly are right
    assert 0.9 <= ag["source_accuracy"] <= 1.0 and 0.9 <= ag["export_accuracy"] <= 1.0
    assert 0.0 <= ag["agreement"] <= 1.0 and ag["correlation"] > 0.9


def test_min_agreement_turns_a_loss_into_exit_1(exported, tmp_path, capsys):
    measured = json.loads((exported / "report.json").read_text())["agreement"]["agreement"]
    capsys.readouterr()
    rc = main(["export", str(SNN), "--target", "loihi2", "--calib", "digits",
               "--min-agreement", "1.0", "-o", str(tmp_path / "x.loihi2")])
    err = capsys.readouterr().err
    assert rc == (1 if measured < 1.0 else 0)
    if rc == 1:
        assert f"agreement with the source model {measured:.3f} is below" in err
    assert main(["export", str(SNN), "--target", "loihi2", "--calib", "digits",
                 "--min-agreement", str(measured), "-o", str(tmp_path / "y.loihi2")]) == 0


def test_min_agreement_without_calibration_data_is_refused(tmp_path, capsys):
    capsys.readouterr()
    assert main(["export", str(SNN), "--target", "loihi2", "--min-agreement", "0.9",
                 "-o", str(tmp_path / "z.loihi2")]) == 2
    assert "--min-agreement" in capsys.readouterr().err
    assert not (tmp_path / "z.loihi2").exists()


def test_exact_network_agrees_fully(tmp_path):
    """Integer weights, integer threshold, no leak, reset to 0: Loihi's integer
    arithmetic is exact here, so source and export must agree on every sample."""
    from nmtoolchain.ir import IF, Affine, Graph, Input, Output
    from nmtoolchain.targets import ExportOptions
    from nmtoolchain.targets.agreement import measure
    from nmtoolchain.targets.registry import get_target

    rng = np.random.default_rng(0)
    g = Graph()
    g.add("x", Input(shape=(16,)))
    g.add("fc", Affine(weight=rng.integers(-2, 3, (6, 16)).astype(np.float32)), ["x"])
    g.add("n", IF(v_threshold=4.0, reset="to_reset"), ["fc"])
    g.add("out", Output(), ["n"])
    g.infer_shapes()
    spikes = (rng.random((40, 16, 16)) < 0.4).astype(np.float32)
    np.savez(tmp_path / "calib.npz", x=spikes)  # spike trains, used as given
    compiled = get_target("loihi2").compile(g, ExportOptions(calib=str(tmp_path / "calib.npz")))

    ag = measure(g, compiled.graph, spikes, 16, "hand-made spikes")

    assert ag.source_events > 10
    assert ag.agreement == 1.0 and ag.correlation == pytest.approx(1.0)
    assert ag.source_events == ag.export_events


@pytest.mark.lava
def test_verify_against_the_source_model_prints_the_agreement_first(exported, tmp_path, capsys):
    pytest.importorskip("lava.lib.dl.netx", reason="lava-dl is not installed")
    capsys.readouterr()
    rc = main(["verify", str(exported), "--against", str(SNN), "--dataset", "digits",
               "--samples", "4", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert next(iter(out)) == "agreement" and out["agreement"]["samples"] == 4
    assert rc == (0 if out["identical"] else 1)
    # the labels are the independent check: the trained SNN and its export get most right
    assert out["agreement"]["source_accuracy"] >= 0.5


def _bias_free_export(tmp_path) -> Path:
    """16 inputs of weight 1 into 4 IF neurons of threshold 4, no bias, exported to Loihi 2
    with all-ones calibration: it fires on ones and can never fire on zeros."""
    pytest.importorskip("lava.lib.dl.netx", reason="lava-dl is not installed")
    from nmtoolchain.ir import IF, Affine, Graph, Input, Output, save_graph

    g = Graph()
    g.add("x", Input(shape=(16,)))
    g.add("fc", Affine(weight=np.ones((4, 16), np.float32)), ["x"])
    g.add("n", IF(v_threshold=4.0, reset="to_reset"), ["fc"])
    g.add("out", Output(), ["n"])
    save_graph(g.infer_shapes(), tmp_path / "g.nmir")
    np.savez(tmp_path / "ones.npz", x=np.ones((4, 16), np.float32))
    out = tmp_path / "g.loihi2"
    assert main(["export", str(tmp_path / "g.nmir"), "--target", "loihi2", "--calib",
                 str(tmp_path / "ones.npz"), "-o", str(out)]) == 0
    return out


@pytest.mark.lava
def test_verify_warns_when_no_sample_produced_an_event(tmp_path, capsys):
    """A bias-free network fed zeros never fires: 'identical' is then vacuous, and said so."""
    exported = _bias_free_export(tmp_path)
    np.savez(tmp_path / "zeros.npz", x=np.zeros((2, 16), np.float32), y=np.zeros(2, np.int64))
    capsys.readouterr()
    main(["verify", str(exported), "--data", str(tmp_path / "zeros.npz"),
          "--samples", "2"])
    assert "no sample produced a single event" in capsys.readouterr().err


@pytest.mark.lava
def test_verify_warns_when_some_samples_produced_no_event(tmp_path, capsys):
    """One silent sample among firing ones: the warning names how many and which."""
    exported = _bias_free_export(tmp_path)
    # sample 0 all ones (the first layer fires), sample 1 all zeros (nothing can fire)
    x = np.stack([np.ones(16, np.float32), np.zeros(16, np.float32)])
    np.savez(tmp_path / "mixed.npz", x=x, y=np.zeros(2, np.int64))
    capsys.readouterr()
    main(["verify", str(exported), "--data", str(tmp_path / "mixed.npz"),
          "--samples", "2"])
    err = capsys.readouterr().err
    assert "1 of 2 samples produced no event" in err and "first: sample 1" in err
