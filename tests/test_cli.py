"""The nmtc CLI: inspect across formats, and one clear line + exit 2 for every bad input."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from nmtoolchain.cli import main
from nmtoolchain.demo import BUNDLED_ONNX, BUNDLED_TORCHSCRIPT

NMTC = [sys.executable, "-m", "nmtoolchain.cli"]


def run_cli(args, capfd):
    code = main([str(a) for a in args])
    out, err = capfd.readouterr()
    return code, out, err


def assert_one_line_error(code, err, *needles):
    assert code == 2, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("nmtc: error: ")
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], (n, lines[0])


# ---------------------------------------------------------------- happy paths
def test_help_and_version(capfd):
    code, out, _ = run_cli(["--help"], capfd)
    assert code == 0 and "inspect" in out and "export" in out
    code, out, _ = run_cli(["--version"], capfd)
    import nmtoolchain

    assert code == 0 and out.strip() == f"nmtc {nmtoolchain.__version__}"


def _inspect_json(path, capfd, *extra):
    code, out, err = run_cli(["inspect", path, "--json", *extra], capfd)
    assert code == 0, err
    return json.loads(out)


def test_inspect_torchscript_and_onnx_of_same_cnn_agree_with_hand_count(capfd):
    ts = _inspect_json(BUNDLED_TORCHSCRIPT, capfd)
    ox = _inspect_json(BUNDLED_ONNX, capfd)
    assert ts["totals"] == ox["totals"]
    # parameters: torch's own count of trainable weights/biases; BN running
    # statistics are buffers, reported apart
    model = torch.jit.load(str(BUNDLED_TORCHSCRIPT))
    n_param = sum(p.numel() for p in model.parameters())
    n_bn_stats = sum(b.numel() for name, b in model.named_buffers() if "running" in name)
    assert ts["totals"]["parameters"] == n_param
    assert ts["totals"]["buffers"] == n_bn_stats
    # synapses by hand (border-aware: taps on zero padding are not connections):
    # conv1 1->8, k3 p1 on 8x8: 22 valid taps per axis -> 22*22*8*1 = 3872
    # avgpool 2 on 8x8x8: 8 taps per axis -> 64*8 = 512
    # conv2 8->16, k3 p1 on 4x4: 10 valid taps per axis -> 100*16*8 = 12800
    # avgpool 2 on 16x4x4: 4 per axis -> 16*16 = 256 ; linear 64->10 = 640
    assert ts["totals"]["synapses"] == 3872 + 512 + 12800 + 256 + 640
    # MACs (dense): conv1 8*8*8*9 + conv2 16*4*4*72 + fc 640
    assert ts["totals"]["macs"] == 8 * 8 * 8 * 9 + 16 * 4 * 4 * 72 + 640


def test_inspect_table_lists_nodes_totals_and_targets(capfd):
    code, out, err = run_cli(["inspect", BUNDLED_TORCHSCRIPT], capfd)
    assert code == 0, err
    assert "Conv2d" in out and "totals:" in out
    assert "loihi2" in out and "convert" in out  # ReLU must be converted first


def test_inspect_reads_nmir_written_by_export(tmp_path, capfd):
    out_file = tmp_path / "cnn.nmir"
    code, _, err = run_cli(["export", BUNDLED_ONNX, "--target", "nmir", "-o", out_file], capfd)
    assert code == 0, err
    assert _inspect_json(out_file, capfd)["totals"] == _inspect_json(BUNDLED_ONNX, capfd)["totals"]


# ---------------------------------------------------------------- bad input
def test_missing_file(tmp_path, capfd):
    p = tmp_path / "nope.pt"
    code, _, err = run_cli(["inspect", p], capfd)
    assert_one_line_error(code, err, str(p), "no such file")


def test_empty_file(tmp_path, capfd):
    p = tmp_path / "empty.onnx"
    p.write_bytes(b"")
    code, _, err = run_cli(["inspect", p], capfd)
    assert_one_line_error(code, err, str(p), "empty")


@pytest.mark.parametrize("src", [BUNDLED_TORCHSCRIPT, BUNDLED_ONNX], ids=["torchscript", "onnx"])
def test_truncated_file(src, tmp_path, capfd):
    data = Path(src).read_bytes()
    p = tmp_path / ("cut" + Path(src).suffix)
    p.write_bytes(data[: len(data) // 2])
    code, _, err = run_cli(["inspect", p], capfd)
    assert_one_line_error(code, err, str(p))
    assert any(w in err for w in ("truncated", "corrupt", "not a valid", "cannot parse"))


def test_wrong_format(tmp_path, capfd):
    p = tmp_path / "notes.pt"
    p.write_text("this is a text file, not a model\n")
    code, _, err = run_cli(["inspect", p], capfd)
    assert_one_line_error(code, err, str(p), "unrecognized model format")


def test_pickled_module_needs_consent(tmp_path, capfd):
    p = tmp_path / "pickled.pt"
    torch.save(nn.Sequential(nn.Flatten(), nn.Linear(64, 10)), p)
    code, _, err = run_cli(["inspect", p, "--input-shape", "1,8,8"], capfd)
    assert_one_line_error(code, err, str(p), "--allow-code")
    code, out, err = run_cli(["inspect", p, "--input-shape", "1,8,8", "--allow-pickle", "--json"],
                             capfd)
    assert code == 0, err
    assert json.loads(out)["totals"]["parameters"] == 64 * 10 + 10


def test_unsupported_operator_is_named(tmp_path, capfd):
    class Wavy(nn.Module):
        def forward(self, x):
            return torch.sin(x)

    p = tmp_path / "wavy.onnx"
    buf = io.BytesIO()
    torch.onnx.export(Wavy(), torch.zeros(1, 4), buf)
    p.write_bytes(buf.getvalue())
    code, _, err = run_cli(["inspect", p], capfd)
    assert_one_line_error(code, err, str(p), "Sin")


def test_export_refusal_leaves_no_file(tmp_path, capfd):
    out_file = tmp_path / "cnn.nir"
    code, _, err = run_cli(["export", BUNDLED_ONNX, "--target", "nir", "-o", out_file], capfd)
    assert_one_line_error(code, err, "NIR")
    assert not out_file.exists()
    assert [p for p in tmp_path.iterdir()] == []


def test_unknown_export_target(tmp_path, capfd):
    code, _, err = run_cli(["export", BUNDLED_ONNX, "--target", "tpu", "-o", tmp_path / "x"], capfd)
    assert_one_line_error(code, err, "tpu")


def test_console_script_exit_codes_in_a_real_process(tmp_path):
    env = dict(os.environ)
    bad = subprocess.run(NMTC + ["inspect", str(tmp_path / "missing.onnx")], capture_output=True,
                         text=True, env=env)
    assert bad.returncode == 2
    assert bad.stderr.strip().startswith("nmtc: error:") and "Traceback" not in bad.stderr
    ok = subprocess.run(NMTC + ["inspect", str(BUNDLED_ONNX), "--json"], capture_output=True,
                        text=True, env=env)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["totals"]["synapses"] > 0


# ------------------------------------------------ inspect on the field's formats
@pytest.mark.parametrize("rel, neurons", [
    ("mnist.net", 784 + 512 + 512 + 10),
    ("gts/pilotnet_lif/network.net", 158_509),  # Intel's count for pilotnet-LIF (reference §3)
])
def test_inspect_intel_netx_networks(intel_netx, rel, neurons, capfd):
    info = _inspect_json(intel_netx / rel, capfd)
    assert info["source"]["format"] == "netx"
    assert info["totals"]["neurons"] == neurons
    loihi = next(t for t in info["targets"] if t["target"] == "loihi2")
    assert loihi["ok"], loihi


@pytest.mark.sinabs
def test_inspect_nir_written_by_sinabs(tmp_path, capfd):
    import nir
    import sinabs
    import sinabs.layers as sl

    torch.manual_seed(0)
    snn = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), sl.IAFSqueeze(batch_size=1),
                        sl.SumPool2d(2), nn.Flatten(), nn.Linear(4 * 4 * 4, 10),
                        sl.IAFSqueeze(batch_size=1))
    graph = sinabs.to_nir(snn, torch.zeros(1, 2, 8, 8))
    graph.infer_types()  # nir.write needs Conv2d input_shape, which sinabs leaves None (§2.3)
    for node in graph.nodes.values():
        if isinstance(node, nir.Conv2d):
            node.input_shape = tuple(int(s) for s in node.input_type["input"][1:])
    path = tmp_path / "sinabs_cnn.nir"
    nir.write(str(path), graph)
    capfd.readouterr()  # nir 1.0.4's infer_types prints warnings to stdout
    info = _inspect_json(path, capfd)
    assert info["source"]["format"] == "nir"
    ops = [r["op"] for r in info["nodes"]]
    assert ops.count("IF") == 2 and "Conv2d" in ops and "SumPool2d" in ops
    # parameters straight from the torch module: conv 2*4*9+4, linear 64*10+10
    assert info["totals"]["parameters"] == (2 * 4 * 9 + 4) + (64 * 10 + 10)
    nir_verdict = next(t for t in info["targets"] if t["target"] == "nir")
    assert nir_verdict["ok"]


def _digits_test_split():
    """scikit-learn's digits, images / 16, the stratified 25% test split of seed 0
    (the split nmtoolchain.datasets documents), built here with sklearn alone."""
    import numpy as np
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None]
    _, x_test, _, y_test = train_test_split(x, d.target, test_size=0.25, random_state=0,
                                            stratify=d.target)
    return x_test, y_test


def _bundled_snn_float_accuracy(x_test, y_test) -> float:
    """The bundled digits SNN (Affine -> IF -> Affine -> IF, reset to 0, fire on
    v > 1) in numpy, fed the deterministic rate code written from its
    definition: per pixel v += x, spike when v >= 1, then v -= 1."""
    import numpy as np

    from nmtoolchain.demo import BUNDLED_SNN
    from nmtoolchain.ir import load_graph

    g = load_graph(BUNDLED_SNN)
    assert [n.op_name for n in g] == ["Input", "Affine", "IF", "Affine", "IF", "Output"]
    layers = [(g[a].op.weight, g[a].op.bias, float(g[b].op.v_threshold))
              for a, b in (("linear1", "relu1"), ("linear2", "linear2_if"))]
    assert all(g[n].op.reset == "to_reset" and g[n].op.compare == ">"
               for n in ("relu1", "linear2_if"))
    steps = int(g.metadata["input_encoding"]["steps"])
    pixels = x_test.reshape(len(x_test), -1).astype(np.float64)
    enc = np.zeros_like(pixels)
    v = [np.zeros((len(pixels), w.shape[0]), np.float32) for w, _, _ in layers]
    count = np.zeros((len(pixels), layers[-1][0].shape[0]))
    for _ in range(steps):
        enc += pixels
        s = (enc >= 1.0).astype(np.float32)
        enc -= s
        for i, (w, b, thr) in enumerate(layers):
            v[i] = v[i] + s @ w.T + b
            s = (v[i] > thr).astype(np.float32)
            v[i] = np.where(s > 0, np.float32(0), v[i])
        count += s
    return float((count.argmax(1) == y_test).mean())  # first class on a tie


@pytest.mark.lava
def test_demo_runs_the_embedded_default(intel_netx, capfd):
    code, out, err = run_cli(["demo", "--json"], capfd)
    assert code == 0, err
    summary = json.loads(out)
    # the figures the demo prints, recomputed here without nmtc's pipeline
    x_test, y_test = _digits_test_split()
    model = torch.jit.load(str(BUNDLED_TORCHSCRIPT)).eval()
    with torch.no_grad():
        pred = model(torch.from_numpy(x_test)).argmax(1).numpy()
    assert summary["ann_test_accuracy"] == pytest.approx(float((pred == y_test).mean()))
    # stored values: weights, biases and batch-norm statistics (not its step counter)
    stored = sum(v.numel() for k, v in model.state_dict().items()
                 if not k.endswith("num_batches_tracked"))
    tot = summary["torchscript"]["totals"]
    assert tot["parameters"] + tot["buffers"] == stored
    import onnx

    proto = onnx.load(str(BUNDLED_ONNX))
    initializers = sum(int(torch.tensor(t.dims).prod()) for t in proto.graph.initializer)
    otot = summary["onnx_totals"]
    assert otot["parameters"] + otot["buffers"] == initializers == stored
    assert summary["totals_agree"] is True
    assert summary["ann_test_accuracy"] > 0.9
    # the simulator reproduces Intel's recorded PilotNet-LIF spikes bit for bit
    assert summary["pilotnet"]["spikes_vs_intel"] == "identical"
    measured = summary["pilotnet"]["report"]["measured"][0]
    assert measured["measured_dynamic_pj"] == 1.09e9  # Intel's board figure, from the profile
    # the digits SNN: fixed point within 1 point of float, and Lava runs the export identically
    loihi = summary["loihi_export"]
    # numpy and torch may round a borderline membrane differently: one image of slack
    assert loihi["float_accuracy"] == pytest.approx(
        _bundled_snn_float_accuracy(x_test, y_test), abs=1.01 / len(y_test))
    assert abs(loihi["fixed_accuracy"] - loihi["float_accuracy"]) <= 0.01
    assert loihi["float_accuracy"] > 0.9
    assert loihi["verify"] == "identical"
    # MST: the QCFS CNN converts, its export runs identically in Lava, and the
    # fixed-point accuracy on the whole test split stays within 5 points of the ANN
    mst = summary["mst"]
    from nmtoolchain.demo import BUNDLED_QCFS
    from nmtoolchain.models import load_checkpoint

    qcfs, _ = load_checkpoint(BUNDLED_QCFS)  # the torch module, run by torch
    with torch.no_grad():
        pred = qcfs(torch.from_numpy(x_test)).argmax(1).numpy()
    assert mst["ann_accuracy"] == pytest.approx(float((pred == y_test).mean()))
    assert mst["verify"] == "identical"
    assert abs(mst["snn_accuracy"] - mst["ann_accuracy"]) <= 0.01
    assert mst["ann_accuracy"] - mst["loihi_fixed_accuracy"] <= 0.05
    assert set(mst["loihi_report"]["profiles"]) == {"loihi2", "loihi1"}


def test_inspect_says_which_nodes_run_only_in_lavas_simulator(tmp_path, capfd):
    import sys as _sys

    from nmtoolchain.ir import save_graph

    _sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
    from spikformer_block import build_spikformer_block

    path = tmp_path / "block.nmir"
    save_graph(build_spikformer_block(), path)
    info = _inspect_json(path, capfd)
    loihi = next(t for t in info["targets"] if t["target"] == "loihi2")
    assert loihi["ok"]
    text = " ".join(loihi["notes"])
    assert "MatMul runs only in Lava's CPU simulator" in text and "scores" in text
    assert "Add runs only" in text and "res1" in text


# ------------------------------------------------------- consistency of the CLI
BUNDLED_MLP_SNN = Path(__file__).resolve().parents[1] / "nmtoolchain" / "data" / "digits_mlp_snn.nmir"
BUNDLED_QCFS = Path(__file__).resolve().parents[1] / "nmtoolchain" / "data" / "digits_qcfs_cnn.pt"


def test_ctrl_c_during_a_long_simulation_exits_130_in_a_real_process():
    import signal
    import time

    # the console script's own entry point; SIGINT's default handler is restored
    # in case the test runner was started with SIGINT ignored (background jobs)
    script = ("import signal, sys\n"
              "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
              "from nmtoolchain.cli import main\n"
              "print('ready', file=sys.stderr, flush=True)\n"
              f"sys.exit(main(['simulate', {str(BUNDLED_MLP_SNN)!r}, '-T', '200000', "
              "'--samples', '1', '--json']))\n")
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr.readline().strip() == "ready"
        time.sleep(2.0)  # inside main: loading the model or simulating 200,000 steps
        assert proc.poll() is None, "the simulation ended before it could be interrupted"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert out == ""  # no partial JSON


def test_debug_after_the_subcommand_shows_the_traceback(tmp_path, capfd):
    missing = tmp_path / "missing.onnx"
    res = subprocess.run(NMTC + ["inspect", str(missing), "--debug"], capture_output=True,
                         text=True)
    assert res.returncode != 0
    assert "Traceback" in res.stderr and "BadInputError" in res.stderr
    from nmtoolchain.errors import BadInputError

    with pytest.raises(BadInputError, match="no such file"):
        main(["inspect", str(missing), "--debug"])
    # without it: the one line
    code, _, err = run_cli(["inspect", missing], capfd)
    assert_one_line_error(code, err, "no such file")


@pytest.mark.parametrize("where", ["before", "after"])
def test_quiet_prints_only_the_result(where, tmp_path, capfd):
    out_file = tmp_path / "snn.nmir"
    args = ["convert", BUNDLED_QCFS, "--method", "mst", "-T", "8", "-o", out_file]
    code, out, err = run_cli(["-q"] + args if where == "before" else args + ["--quiet"], capfd)
    assert code == 0, err
    assert (out, err) == ("", "") and out_file.exists()  # the file is the result
    code, out, err = run_cli(["convert", BUNDLED_QCFS, "--method", "mst", "-o",
                              tmp_path / "again.nmir"], capfd)
    assert code == 0 and "wrote" in out + err  # not quiet: says what it wrote
    code, out, err = run_cli(["check-accuracy", BUNDLED_QCFS, "--dataset", "digits", "-T", "2",
                              "--samples", "20", "-q"], capfd)
    assert code == 0 and err == ""
    assert out.splitlines() and len(out.splitlines()) == 1 and out.startswith("gate: ")


def test_json_mode_keeps_stdout_pure_even_when_a_library_prints(monkeypatch, capfd):
    import nmtoolchain.report.inspect as inspect_mod

    real = inspect_mod.inspect_graph

    def noisy(graph):
        print("a library talking on stdout")
        os.write(1, b"and a C library writing to descriptor 1\n")
        return real(graph)

    monkeypatch.setattr(inspect_mod, "inspect_graph", noisy)
    code, out, err = run_cli(["inspect", BUNDLED_ONNX, "--json"], capfd)
    assert code == 0, err
    assert json.loads(out)["totals"]["synapses"] == 18080
    assert "a library talking on stdout" in err and "descriptor 1" in err


def test_export_json_to_a_file_target_prints_only_json(tmp_path, capfd):
    out_file = tmp_path / "cnn.nmir"
    code, out, err = run_cli(["export", BUNDLED_ONNX, "--target", "nmir", "-o", out_file,
                              "--json"], capfd)
    assert code == 0, err
    assert json.loads(out) == {"target": "nmir", "path": str(out_file)}


def test_report_takes_profile_repeated_or_comma_separated_and_the_old_name(capfd):
    base = ["report", BUNDLED_MLP_SNN, "--dataset", "digits", "-T", "4", "--samples", "2",
            "--json"]
    code, out, err = run_cli(base + ["-p", "loihi2", "--profile", "loihi1,cmos45nm"], capfd)
    assert code == 0, err
    assert set(json.loads(out)["profiles"]) == {"loihi2", "loihi1", "cmos45nm"}
    code, out, err = run_cli(base + ["--profiles", "speck,cmos45nm"], capfd)
    assert code == 0, err
    assert set(json.loads(out)["profiles"]) == {"speck", "cmos45nm"}
    code, out, _ = run_cli(["report", "--help"], capfd)
    assert "--profile" in out and "--profiles" not in out


def test_samples_defaults_to_16_in_simulate_report_and_verify(capfd):
    import typer.main

    from nmtoolchain.cli import app

    commands = typer.main.get_command(app).commands
    for name in ("simulate", "report", "verify"):
        (param,) = [p for p in commands[name].params if p.name == "samples"]
        assert param.default == 16, name
    # and it is what a run uses: 16 of the 360 test images
    code, out, err = run_cli(["simulate", BUNDLED_MLP_SNN, "--dataset", "digits", "-T", "2",
                              "--json"], capfd)
    assert code == 0, err
    assert json.loads(out)["batch"] == 16


def test_timesteps_is_spelled_the_same_in_every_command_that_steps(capfd):
    import typer.main

    from nmtoolchain.cli import app

    for name, cmd in typer.main.get_command(app).commands.items():
        for p in cmd.params:
            if p.name == "timesteps":
                assert set(p.opts) == {"--timesteps", "-T"}, name
            assert "--steps" not in p.opts or p.hidden, name


@pytest.mark.lava
def test_verify_takes_T_and_still_the_old_steps(intel_netx, tmp_path, capfd):
    out_dir = tmp_path / "tiny_loihi2"
    code, _, err = run_cli(["export", intel_netx / "tiny.net", "--target", "loihi2", "-o",
                            out_dir], capfd)
    assert code == 0, err
    base = ["verify", out_dir, "--samples", "1", "--reset-interval", "16", "--json"]
    code, out, err = run_cli(base + ["-T", "6"], capfd)
    assert code == 0, out + err
    result = json.loads(out)
    assert result["steps"] == 6 and result["identical"] is True
    code, out, err = run_cli(base + ["--steps", "5"], capfd)
    assert code == 0, out + err
    assert json.loads(out)["steps"] == 5 and "deprecated" in err
    code, _, err = run_cli(base + ["-T", "6", "--steps", "6"], capfd)
    assert_one_line_error(code, err, "--timesteps")
