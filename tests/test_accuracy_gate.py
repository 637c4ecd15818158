"""The CI gate says what it checked (issue 18): no gate -> no verdict; bad labels
and non-finite inputs -> exit 2; the JSON's top-level fields. Expected values
come from a network whose accuracies are fixed by construction (as in
test_api.py): Linear(I) -> QCFS(L=2, λ=1) -> Linear(I)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from nmtoolchain.cli import main
from nmtoolchain.nn import QCFS

# ANN right on 3 of 4 (0.75); the SNN without pre-charge right on 2 at T = 1 and
# on 3 at T = 2 (0.6 charges past λ = 1 at the second step): see test_api.py.
X = np.array([[1.5, 0.0], [0.0, 1.5], [0.0, 0.6], [1.5, 0.0]], np.float32)
Y = np.array([0, 1, 1, 1])


@pytest.fixture()
def files(tmp_path):
    ann = nn.Sequential(nn.Linear(2, 2), QCFS(levels=2, threshold=1.0), nn.Linear(2, 2))
    with torch.no_grad():
        for lin in (ann[0], ann[2]):
            lin.weight.copy_(torch.eye(2))
            lin.bias.zero_()
    path = tmp_path / "ann.pt"
    torch.jit.save(torch.jit.script(ann), str(path))

    def data(x=X, y=Y, name="d.npz"):
        np.savez(tmp_path / name, x=x, y=y)
        return str(tmp_path / name)

    return str(path), data


def _run(capfd, model, data, *extra):
    code = main(["check-accuracy", model, "--data", data, "-T", "1", "--no-precharge",
                 "--input-shape", "2", *extra])
    out, err = capfd.readouterr()
    return code, out, err


def test_without_a_gate_nothing_is_judged_and_no_pass_is_printed(files, capfd):
    code, out, err = _run(capfd, files[0], files[1]())
    assert code == 0, err
    assert "PASS" not in out and "FAIL" not in out and "nothing judged" in out
    code, out, _ = _run(capfd, files[0], files[1](), "--json")
    d = json.loads(out)
    assert code == 0 and d["passed"] is None and d["verdict"] == "none"
    assert d["gate_type"] is None and d["threshold"] is None


def test_json_top_level_fields_hold_the_numbers_built_into_the_data(files, capfd):
    code, out, err = _run(capfd, files[0], files[1](), "--max-drop", "0.2", "--seed", "7",
                          "--json")
    d = json.loads(out)
    assert code == 1, err  # drop 0.75 - 0.5 = 0.25 > 0.2
    assert d["ann_accuracy"] == 0.75 and d["snn_accuracy_at_timesteps"] == 0.5
    assert d["gated_accuracy"] == 0.5 and d["drop"] == pytest.approx(0.25)
    assert d["gate_type"] == "max_drop" and d["threshold"] == 0.2
    assert d["timesteps"] == 1 and d["seed"] == 7 and d["samples"] == 4
    assert d["passed"] is False and d["verdict"] == "fail"
    assert "d.npz" in d["data"]
    code, out, _ = _run(capfd, files[0], files[1](), "--min-accuracy", "0.5", "--json")
    d = json.loads(out)
    assert code == 0 and d["passed"] is True and d["verdict"] == "pass"
    assert d["gate_type"] == "min_accuracy" and d["threshold"] == 0.5


@pytest.mark.parametrize("y, what", [
    (np.array([0, 1, 1, 10]), "outside the model's 2 classes"),
    (np.array([0, 1, -1, 1]), "outside the model's 2 classes"),
    (np.array([0, 1, 0.5, 1]), "whole class numbers"),
])
def test_labels_outside_the_models_classes_are_exit_2(files, capfd, y, what):
    code, out, err = _run(capfd, files[0], files[1](y=y), "--max-drop", "1")
    assert code == 2 and what in err and "\n" not in err.strip(), err
    assert out == ""


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_inputs_are_exit_2_even_under_the_loosest_gate(files, capfd, bad):
    x = X.copy()
    x[2, 1] = bad
    code, out, err = _run(capfd, files[0], files[1](x=x), "--max-drop", "1")
    assert code == 2 and "NaN or infinite" in err and "sample 2" in err, err
    x = np.full_like(X, np.nan)
    code, out, err = _run(capfd, files[0], files[1](x=x), "--max-drop", "1")
    assert code == 2 and "4 of 4 samples" in err, err
