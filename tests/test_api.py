"""The Python API (``import nmtoolchain as nmtc``): cheap to import, models as
modules, files or graphs, data as arrays, tensors or files, and the accuracy
gate's semantics. Expected values come from torch running the module itself or
are derived by hand in the comments."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

import nmtoolchain as nmtc
from nmtoolchain import ir
from nmtoolchain.accuracy import AccuracyCheck
from nmtoolchain.cli import main
from nmtoolchain.errors import BadInputError
from nmtoolchain.nn import LIFNeuron, QCFS


def test_importing_nmtoolchain_imports_neither_torch_nor_a_vendor_nor_the_cli():
    code = ("import sys, nmtoolchain as nmtc; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('torch', 'lava', 'sinabs', 'typer', 'nmtoolchain.api')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_every_entry_point_is_reachable_and_convert_and_report_stay_packages():
    for name in ("load", "convert", "simulate", "report", "export", "verify", "check_accuracy"):
        assert callable(getattr(nmtc, name)), name
    # the names are shared with subpackages; both uses keep working after their import
    import nmtoolchain.convert.mst as mst
    import nmtoolchain.report.simulation as simulation
    from nmtoolchain.convert import rate_encode

    assert callable(mst.convert_mst) and callable(simulation.build_report)
    assert nmtc.convert.rate_encode is rate_encode
    assert "method" in str(__import__("inspect").signature(nmtc.convert))


# ------------------------------------------------------- simulate vs torch itself
def _lif_module() -> nn.Module:
    torch.manual_seed(3)
    lin = nn.Linear(4, 3)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[0.9, -0.2, 0.4, 0.1], [0.3, 0.3, 0.3, 0.3],
                                       [-0.5, 0.8, 0.2, 0.6]]))
        lin.bias.copy_(torch.tensor([0.05, 0.0, -0.1]))
    return nn.Sequential(lin, LIFNeuron(tau=2.0, v_threshold=0.7))


def test_simulate_an_nn_module_gives_the_spikes_torch_gives():
    module = _lif_module().eval()
    x = np.random.default_rng(0).uniform(0, 2, (5, 4)).astype(np.float32)
    steps = 12
    with torch.no_grad():
        module[1].reset_states()
        expected = module(torch.from_numpy(x)[:, None].expand(5, steps, 4)).numpy()  # (N, T, 3)
    assert 0 < expected.sum() < expected.size  # neither silent nor saturated

    run = nmtc.simulate(module, x, timesteps=steps, input_shape=(4,))
    (out,) = run.outputs.values()
    np.testing.assert_array_equal(out.numpy(), expected)
    assert run.report["totals_per_sample"]["spikes_out"] == pytest.approx(expected.sum() / 5)
    # a torch tensor as data and a graph as model give the same run
    graph = nmtc.load(module, input_shape=(4,))
    again = nmtc.simulate(graph, torch.from_numpy(x), timesteps=steps)
    np.testing.assert_array_equal(next(iter(again.outputs.values())).numpy(), expected)


def test_load_of_a_module_without_input_shape_is_bad_input():
    with pytest.raises(BadInputError, match="input_shape"):
        nmtc.load(_lif_module())


def _hand_if_graph() -> ir.Graph:
    """Two IF neurons fed by 4 inputs: weights 0.25 and 0.5 each, threshold 2.7."""
    g = ir.Graph({"dt": 1.0})
    g.add("x", ir.Input((4,)))
    g.add("fc", ir.Linear(np.array([[0.25] * 4, [0.5] * 4], np.float32)), ["x"])
    g.add("n", ir.IF(v_threshold=2.7), ["fc"])
    g.add("y", ir.Output(), ["n"])
    return g


# Input all ones: neuron 0 gets 1.0 per step, neuron 1 gets 2.0. With subtractive
# reset the spikes by step T are floor(T * drive / 2.7): T=10 -> 3 and 7.
HAND_SPIKES_T10 = 3 + 7


def test_simulate_arrays_counts_the_hand_derived_spikes_and_the_cli_agrees(tmp_path, capfd):
    x = np.ones((3, 4), np.float32)
    run = nmtc.simulate(_hand_if_graph(), x, timesteps=10, profile="loihi2")
    assert run.report["totals_per_sample"]["spikes_out"] == HAND_SPIKES_T10
    assert float(run.outputs["y"].sum()) == 3 * HAND_SPIKES_T10
    assert run.energy_pj("loihi2") == run.report["profiles"]["loihi2"]["energy_per_inference_pj"]
    # the CLI, on the saved graph and a data file, prints the same counts
    ir.save_graph(_hand_if_graph(), tmp_path / "hand.nmir")
    np.savez(tmp_path / "x.npz", x=x, y=np.zeros(3, np.int64))
    code = main(["simulate", str(tmp_path / "hand.nmir"), "--data", str(tmp_path / "x.npz"),
                 "-T", "10", "--json"])
    out, err = capfd.readouterr()
    assert code == 0, err
    assert json.loads(out)["totals_per_sample"]["spikes_out"] == HAND_SPIKES_T10


def test_report_prices_every_profile_asked_and_an_unknown_one_fails_before_running():
    run = nmtc.report(_hand_if_graph(), np.ones((2, 4), np.float32), timesteps=10,
                      profiles="loihi2,cmos45nm")
    assert set(run.report["profiles"]) == {"loihi2", "cmos45nm"}
    assert run.counts.steps == 10 and run.counts.batch == 2
    with pytest.raises(BadInputError):
        nmtc.report(_hand_if_graph(), np.ones((2, 4), np.float32), profiles=["no_such_chip"])


def test_convert_and_export_take_modules_and_write_files(tmp_path):
    ann = nn.Sequential(nn.Linear(2, 2), QCFS(levels=2, threshold=1.0), nn.Linear(2, 2))
    snn = nmtc.convert(ann, input_shape=(2,), timesteps=4)
    assert [n.op_name for n in snn].count("IF") == 1
    path = nmtc.export(snn, "nmir", tmp_path / "snn.nmir").path
    assert [n.op_name for n in nmtc.load(path)] == [n.op_name for n in snn]
    with pytest.raises(BadInputError, match="tpu"):
        nmtc.export(snn, "tpu", tmp_path / "x")


# ------------------------------------------------------------ the accuracy gate
def _identity_qcfs_ann() -> nn.Module:
    """Linear(I) -> QCFS(L=2, λ=1) -> Linear(I): the output is the QCFS of the input."""
    ann = nn.Sequential(nn.Linear(2, 2), QCFS(levels=2, threshold=1.0), nn.Linear(2, 2))
    with torch.no_grad():
        for lin in (ann[0], ann[2]):
            lin.weight.copy_(torch.eye(2))
            lin.bias.zero_()
    return ann


# By construction (λ = 1, L = 2):
#  (1.5, 0) label 0: ANN (1, 0) right; the SNN neuron gets 1.5 > λ every step, right.
#  (0, 1.5) label 1: the same, mirrored.
#  (0, 0.6) label 1: ANN floor(0.6·2 + 0.5)/2 = 0.5 on class 1, right. SNN without
#      pre-charge: 0.6 < λ at T=1 -> no spike, a tie that argmax breaks to 0 (wrong);
#      at T=2 1.2 >= λ -> a spike on class 1 (right). With pre-charge λ/2: 1.1 at T=1, right.
#  (1.5, 0) label 1: wrong for both, always.
X = np.array([[1.5, 0.0], [0.0, 1.5], [0.0, 0.6], [1.5, 0.0]], np.float32)
Y = np.array([0, 1, 1, 1])


def test_accuracies_are_the_ones_built_into_the_data():
    res = nmtc.check_accuracy(_identity_qcfs_ann(), X, Y, timesteps=2, precharge=False)
    assert isinstance(res, AccuracyCheck)
    assert res.ann_accuracy == 0.75
    assert res.curve == [(1, 0.5), (2, 0.75)]
    pre = nmtc.check_accuracy(_identity_qcfs_ann(), X, Y, timesteps=1)
    assert pre.curve == [(1, 0.75)]


@pytest.mark.parametrize("gate, passed", [
    ({"min_accuracy": 0.5}, True),    # SNN(T=1) = 0.5 >= 0.5
    ({"min_accuracy": 0.51}, False),
    ({"max_drop": 0.25}, True),       # ANN - SNN = 0.75 - 0.5 = 0.25 <= 0.25
    ({"max_drop": 0.24}, False),
    ({}, None),                       # no gate: no verdict
])
def test_gate_compares_the_snn_at_t_max_with_the_threshold(gate, passed):
    res = nmtc.check_accuracy(_identity_qcfs_ann(), torch.from_numpy(X), torch.from_numpy(Y),
                              timesteps=1, precharge=False, **gate)
    assert res.passed is passed
    d = res.as_dict()
    assert d["passed"] is passed and d["gate_type"] == (next(iter(gate)) if gate else None)
    assert {"model", "data", "samples", "ann_accuracy", "snn_accuracy", "precharge", "target",
            "gate", "passed"} <= set(d)
    assert d["snn_accuracy"] == [{"timesteps": 1, "accuracy": 0.5}] and d["samples"] == 4


def test_gate_options_are_checked_before_anything_runs():
    with pytest.raises(BadInputError, match="not both"):
        nmtc.check_accuracy(_identity_qcfs_ann(), X, Y, timesteps=1, min_accuracy=0.5,
                            max_drop=0.1)
    with pytest.raises(BadInputError, match=r"\[0, 1\]"):
        nmtc.check_accuracy(_identity_qcfs_ann(), X, Y, timesteps=1, max_drop=1.5)
    with pytest.raises(BadInputError, match="labels"):
        nmtc.check_accuracy(_identity_qcfs_ann(), X, Y[:3], timesteps=1)


def test_check_accuracy_json_from_the_cli_is_the_librarys_schema(tmp_path, capfd):
    path = tmp_path / "ann.pt"
    torch.jit.save(torch.jit.script(_identity_qcfs_ann()), str(path))
    np.savez(tmp_path / "d.npz", x=X, y=Y)
    code = main(["check-accuracy", str(path), "--data", str(tmp_path / "d.npz"), "-T", "2",
                 "--no-precharge", "--max-drop", "0", "--json", "--input-shape", "2"])
    out, err = capfd.readouterr()
    assert code == 0, err  # the gate judges T_max = 2, where the SNN equals the ANN (0.75)
    d = json.loads(out)
    assert d["ann_accuracy"] == 0.75 and d["passed"] is True and d["gated_accuracy"] == 0.75
    assert [p["accuracy"] for p in d["snn_accuracy"]] == [0.5, 0.75]


def test_the_readme_python_snippet_runs_and_prints_its_verdict(capsys):
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme[readme.index("### Python API"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    exec(compile(code, "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "64 samples" in out and "µJ per inference" in out
    # the bundled QCFS CNN converts within 2 points on these 64 images (the gate's verdict)
    assert out.strip().endswith("PASS")
