"""A sinabs SNN that loses accuracy in Loihi fixed point makes the export fail its
agreement gate, and says so first (issue 14, step 7).

The case: a digits CNN trained as a ReLU ANN and run as a sinabs SNN (the ANN's
weights in ``IAFSqueeze`` layers: reset by subtraction and several spikes per
step where the membrane holds several thresholds). sinabs itself scores about 96%
on the digits test split at the export's own step count. Loihi 2's neurons emit
at most one spike per step and reset to zero, so the fixed-point export predicts
another class on many calibration samples: ``export --min-agreement 0.9`` must
exit 1, print the loss before anything else, and report.txt/report.json must
start with it.

References, independent of nmtc: sinabs's own simulation (its accuracy against
the digits labels, its output spike counts on the calibration samples, which
must be the "source" side of the export's agreement: the agreement is
source-vs-export, not export-vs-itself), and the digits labels.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.sinabs

torch = pytest.importorskip("torch")
sinabs = pytest.importorskip("sinabs", reason="sinabs is not installed")

from nmtoolchain.calibration import CALIB_SAMPLES  # noqa: E402
from nmtoolchain.cli import main  # noqa: E402
from nmtoolchain.convert import rate_encode  # noqa: E402
from nmtoolchain.datasets import load_digits_split  # noqa: E402

T = 8  # the export's own step count, and the step count sinabs is measured at


def _train_ann(split):
    from torch import nn

    from nmtoolchain.training import fit_classifier

    torch.manual_seed(0)
    ann = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(),
                        nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(),
                        nn.Flatten(), nn.Linear(256, 10))
    return fit_classifier(ann, torch.from_numpy(split.x_train.reshape(-1, 1, 8, 8)),
                          torch.from_numpy(split.y_train), epochs=30)


def _sinabs_counts(snn, x: np.ndarray) -> np.ndarray:
    """Output spike counts (N, 10) of sinabs running ``snn`` on the rate code of x."""
    sinabs.reset_states(snn)
    spikes = torch.from_numpy(rate_encode(x, T)).reshape((len(x) * T,) + x.shape[1:])
    with torch.no_grad():
        out = snn(spikes)
    sinabs.reset_states(snn)
    return out.reshape(len(x), T, -1).sum(1).numpy()


@pytest.fixture(scope="module")
def sinabs_case(tmp_path_factory):
    import sinabs.layers as sl
    from torch import nn

    split = load_digits_split()
    ann = _train_ann(split)
    snn = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), sl.IAFSqueeze(num_timesteps=T),
                        nn.Conv2d(8, 16, 3, stride=2, padding=1), sl.IAFSqueeze(num_timesteps=T),
                        nn.Flatten(), nn.Linear(256, 10), sl.IAFSqueeze(num_timesteps=T))
    for a, b in ((0, 0), (2, 2), (5, 5)):
        snn[b].load_state_dict(ann[a].state_dict())
    snn.eval()
    path = tmp_path_factory.mktemp("sinabs") / "sinabs_digits_snn.pt"
    torch.save(snn, str(path))  # a pickled module: what a sinabs user saves
    return snn, path, split


def test_sinabs_scores_about_96_percent_at_the_exports_step_count(sinabs_case):
    snn, _, split = sinabs_case
    counts = _sinabs_counts(snn, split.x_test.reshape(-1, 1, 8, 8))
    acc = float((counts.argmax(1) == split.y_test).mean())
    assert 0.94 <= acc <= 0.98, acc
    assert counts.sum(1).mean() > 3 * T  # several spikes per step: what Loihi cannot emit


def test_export_with_min_agreement_exits_1_and_prints_the_loss_first(sinabs_case, tmp_path,
                                                                     capsys):
    snn, path, split = sinabs_case
    out = tmp_path / "sinabs.loihi2"
    capsys.readouterr()
    rc = main(["export", str(path), "--allow-code", "--input-shape", "1,8,8",
               "--target", "loihi2", "--calib", "digits", "-T", str(T),
               "--min-agreement", "0.9", "-o", str(out)])
    printed = capsys.readouterr()
    assert rc == 1
    assert "below --min-agreement 0.9" in printed.err
    lines = printed.out.splitlines()
    assert lines[0].startswith("nmtc export --target loihi2")
    assert lines[1].startswith("agreement with the source model: ")  # the loss comes first
    assert "accuracy: source" in lines[2]
    report_txt = (out / "report.txt").read_text().splitlines()
    assert report_txt[1] == lines[1]
    rep = json.loads((out / "report.json").read_text())
    assert next(iter(rep)) == "agreement"
    ag = rep["agreement"]
    assert ag["agreement"] < 0.9 and ag["steps"] == T
    # the loss, judged by the digits labels
    assert ag["export_accuracy"] < ag["source_accuracy"] - 0.05

    # "source" is the sinabs model itself, not the export compared with itself:
    # sinabs's own counts on the same calibration images give the source side
    calib = split.x_train[:CALIB_SAMPLES].reshape(-1, 1, 8, 8)
    ref = _sinabs_counts(snn, calib)
    assert ag["samples"] == len(calib)
    assert ag["source_events"] == pytest.approx(float(ref.sum(1).mean()), rel=1e-6)
    assert ag["source_accuracy"] == pytest.approx(
        float((ref.argmax(1) == split.y_train[:CALIB_SAMPLES]).mean()))
    assert ag["export_events"] < ag["source_events"] / 3
