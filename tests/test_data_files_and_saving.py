"""Data files (#14 item 8) and the usual ways of saving a model (#14 item 9),
through the CLI, with every result read back independently: ``--save`` files
with numpy, model outputs against the torch module that holds the weights,
the digits split against scikit-learn's own call."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from test_cli import assert_one_line_error, run_cli

ROOT = Path(__file__).resolve().parents[1]
CNN_SNN = ROOT / "nmtoolchain" / "data" / "digits_cnn_snn.nmir"  # input (1, 8, 8)


def _mlp() -> nn.Module:
    torch.manual_seed(3)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10)).eval()


def _torchscript(tmp_path: Path, module: nn.Module) -> Path:
    from nmtoolchain.frontends.torch_loader import save_torchscript

    return save_torchscript(module, tmp_path / "mlp.pt", (1, 8, 8))


def _digits(n: int) -> np.ndarray:
    from sklearn.datasets import load_digits

    return (load_digits().images[:n] / 16.0).astype(np.float32)[:, None]  # (n, 1, 8, 8)


def _saved(capfd, model, tmp_path, *extra, name="run.npz"):
    out = tmp_path / name
    code, stdout, err = run_cli(["simulate", model, "-T", "3", "--save", out, "--json", *extra],
                                capfd)
    assert code == 0, err
    with np.load(out, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}, json.loads(stdout)


# ------------------------------------------------------------------ item 8
def test_raw_npy_of_static_samples_is_n_samples(tmp_path, capfd):
    """(N, *shape) in a .npy: N samples applied at every step (it used to be read
    as one sample of N steps); each step's output equals the torch module's."""
    module = _mlp()
    x = _digits(20)
    np.save(tmp_path / "x.npy", x)
    arrays, rep = _saved(capfd, _torchscript(tmp_path, module), tmp_path,
                         "--data", tmp_path / "x.npy", "--samples", 20)
    assert rep["batch"] == 20 and "20 static samples" in rep["inputs"]
    out = arrays["output.output"]
    assert out.shape == (20, 3, 10)
    want = module(torch.from_numpy(x)).detach().numpy()
    for t in range(3):
        np.testing.assert_allclose(out[:, t], want, rtol=1e-5, atol=1e-5)


def test_per_step_npz_with_x_alone_and_extra_arrays(tmp_path, capfd):
    """(N, T, *shape) in a .npz holding x and a producer's other arrays, no y:
    the run reads x per step and names what it ignored."""
    module = _mlp()
    rng = np.random.default_rng(1)
    x = rng.random((4, 3, 1, 8, 8)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x, spk_rec=np.zeros((3, 4, 10)), mem_rec=np.ones(2))
    arrays, rep = _saved(capfd, _torchscript(tmp_path, module), tmp_path,
                         "--data", tmp_path / "d.npz")
    assert "4 per-step samples of 3 steps" in rep["inputs"]
    assert "keys x; ignored: mem_rec, spk_rec" in rep["inputs"]
    assert "y" not in arrays
    np.testing.assert_array_equal(arrays["x"], x)
    for t in range(3):
        want = module(torch.from_numpy(x[:, t])).detach().numpy()
        np.testing.assert_allclose(arrays["output.output"][:, t], want, rtol=1e-5, atol=1e-5)


def test_flat_samples_are_reshaped(tmp_path, capfd):
    module = _mlp()
    x = _digits(5)
    np.savez(tmp_path / "flat.npz", x=x.reshape(5, 64), y=np.arange(5))
    arrays, rep = _saved(capfd, _torchscript(tmp_path, module), tmp_path,
                         "--data", tmp_path / "flat.npz")
    np.testing.assert_array_equal(arrays["y"], np.arange(5))
    want = module(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(arrays["output.output"][:, 0], want, rtol=1e-5, atol=1e-5)


def test_ambiguous_and_unfitting_arrays_are_refused(tmp_path, capfd):
    """(N, 1, 64) for a (64,) input: T = 1 per step, or static with a unit axis."""
    torch.manual_seed(0)
    flat = nn.Sequential(nn.Linear(64, 10)).eval()
    from nmtoolchain.frontends.torch_loader import save_torchscript

    model = save_torchscript(flat, tmp_path / "flat.pt", (64,))
    np.save(tmp_path / "amb.npy", np.zeros((5, 1, 64), np.float32))
    code, _, err = run_cli(["simulate", model, "--data", tmp_path / "amb.npy"], capfd)
    assert_one_line_error(code, err, "amb.npy", "(5, 1, 64)", "(64,)", "ambiguous",
                          "static (N, 64)", "per-step (N, T, 64)")
    np.save(tmp_path / "bad.npy", np.zeros((5, 7, 9), np.float32))
    code, _, err = run_cli(["simulate", model, "--data", tmp_path / "bad.npy"], capfd)
    assert_one_line_error(code, err, "bad.npy", "(5, 7, 9)", "static (N, 64)",
                          "per-step (N, T, 64)")


def test_check_accuracy_still_needs_labels(tmp_path, capfd):
    np.savez(tmp_path / "x.npz", x=_digits(5))
    code, _, err = run_cli(["check-accuracy", CNN_SNN, "--data", tmp_path / "x.npz", "-T", "2"],
                           capfd)
    assert_one_line_error(code, err, "no labels (y)")


def test_calibration_reads_x_alone_npz_and_npy(tmp_path):
    from nmtoolchain.calibration import calibration_samples

    x = _digits(12)
    np.save(tmp_path / "c.npy", x)
    np.savez(tmp_path / "c.npz", x=x.reshape(12, 64), extra=np.ones(3))
    got, origin = calibration_samples(tmp_path / "c.npy", (1, 8, 8))
    np.testing.assert_array_equal(got, x)
    assert "12 static samples" in origin
    got, origin = calibration_samples(tmp_path / "c.npz", (1, 8, 8))
    np.testing.assert_array_equal(got, x)
    assert "ignored: extra" in origin


def test_digits_split_is_the_documented_one():
    """25% test, stratified, seed 0: scikit-learn's own call gives the same split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    from nmtoolchain.datasets import load_digits_split

    d = load_digits()
    _, xte, ytr, yte = train_test_split(d.images / 16.0, d.target, test_size=0.25,
                                        random_state=0, stratify=d.target)
    split = load_digits_split()
    assert (len(split.y_train), len(split.y_test)) == (1347, 450)
    np.testing.assert_array_equal(split.y_test, yte)
    np.testing.assert_allclose(split.x_test[:, 0], xte, atol=1e-7)
    # stratified: each class's share of the test split is within one image of 25%
    for c in range(10):
        assert abs(int((split.y_test == c).sum()) - 0.25 * int((d.target == c).sum())) <= 1
    readme = (ROOT / "README.md").read_text()
    assert "test_size=0.25" in readme and "random_state=0" in readme


def test_simulate_save_records_layers(tmp_path, capfd):
    """--save of a spiking network: recorded spikes, read back with numpy, add up
    to the per-layer spike counts the run reports."""
    arrays, rep = _saved(capfd, CNN_SNN, tmp_path, "--dataset", "digits", "--samples", 3)
    layers = {k[len("layer."):]: v for k, v in arrays.items() if k.startswith("layer.")}
    assert layers and "output.output" in arrays
    reported = {row["name"]: row["spikes_out"] for row in rep["layers"]}
    for name, spikes in layers.items():
        assert spikes.shape[:2] == (3, 3)
        assert set(np.unique(spikes)) <= {0.0, 1.0}
        assert spikes.sum() / 3 == pytest.approx(reported[name])
    assert arrays["y"].shape == (3,)


def test_simulate_save_refuses_an_existing_file(tmp_path, capfd):
    (tmp_path / "run.npz").write_bytes(b"old")
    code, _, err = run_cli(["simulate", CNN_SNN, "-T", "2", "--save", tmp_path / "run.npz"],
                           capfd)
    assert_one_line_error(code, err, "run.npz", "--force")
    assert (tmp_path / "run.npz").read_bytes() == b"old"


# ------------------------------------------------------------------ item 9
def test_state_dict_with_arch_and_config(tmp_path, capfd):
    """A plain state_dict of nmtc's mlp, read with --arch/--config: the run's
    outputs equal the module that saved the weights."""
    from nmtoolchain.models import build_model

    torch.manual_seed(5)
    module = build_model("mlp", {"sizes": [64, 20, 10]}).eval()
    torch.save(module.state_dict(), tmp_path / "w.pt")
    torch.save({"epoch": 7, "model_state_dict": module.state_dict()}, tmp_path / "train.pt")
    x = _digits(6)
    np.save(tmp_path / "x.npy", x)
    want = module(torch.from_numpy(x)).detach().numpy()
    for name in ("w.pt", "train.pt"):
        arrays, _ = _saved(capfd, tmp_path / name, tmp_path, "--arch", "mlp", "--config",
                           '{"sizes": [64, 20, 10]}', "--data", tmp_path / "x.npy",
                           name=f"{name}.npz")
        np.testing.assert_allclose(arrays["output.output"][:, 0], want, rtol=1e-5, atol=1e-5)
    cfg = tmp_path / "cfg.json"
    cfg.write_text('{"sizes": [64, 20, 10]}')
    code, out, err = run_cli(["inspect", tmp_path / "w.pt", "--arch", "mlp", "--config", cfg,
                              "--json"], capfd)
    assert code == 0, err
    assert json.loads(out)["totals"]["parameters"] == sum(p.numel() for p in module.parameters())


def test_state_dict_messages(tmp_path, capfd):
    from nmtoolchain.models import build_model

    torch.save(build_model("mlp", {}).state_dict(), tmp_path / "w.pt")
    code, _, err = run_cli(["inspect", tmp_path / "w.pt"], capfd)
    assert_one_line_error(code, err, "w.pt", "state dict", "--arch NAME --config JSON", "mlp",
                          "Saving a model for nmtc")
    code, _, err = run_cli(["inspect", tmp_path / "w.pt", "--arch", "cnn"], capfd)
    assert_one_line_error(code, err, "w.pt", "do not fit architecture 'cnn'")
    code, _, err = run_cli(["inspect", tmp_path / "w.pt", "--arch", "mlp", "--config", "{x"],
                           capfd)
    assert_one_line_error(code, err, "--config", "not JSON")
    code, _, err = run_cli(["inspect", CNN_SNN, "--arch", "mlp"], capfd)
    assert_one_line_error(code, err, "digits_cnn_snn.nmir", "state_dict")


def test_pickle_of_a_main_class_names_the_next_step(tmp_path, capfd):
    """torch.save(model) from a script: its class lives in __main__, which nmtc
    cannot import even with consent; the message says how to save instead."""
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent("""
        import sys, torch
        from torch import nn
        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(64, 10)
            def forward(self, x):
                return self.fc(x)
        torch.save(Net(), sys.argv[1])
    """))
    subprocess.run([sys.executable, str(script), str(tmp_path / "net.pt")], check=True)
    for extra in ([], ["--allow-code", "--input-shape", "64"]):
        code, _, err = run_cli(["inspect", tmp_path / "net.pt", *extra], capfd)
        assert_one_line_error(code, err, "net.pt", "Net", "__main__", "TorchScript", "ONNX",
                              "--arch")


@pytest.mark.parametrize("how", ["script", "trace"])
def test_plain_torchscript_needs_and_takes_input_shape(tmp_path, capfd, how):
    module = _mlp()
    x = _digits(4)
    saved = torch.jit.script(module) if how == "script" else \
        torch.jit.trace(module, torch.from_numpy(x[:1]))
    torch.jit.save(saved, str(tmp_path / "m.pt"))
    code, _, err = run_cli(["inspect", tmp_path / "m.pt"], capfd)
    assert_one_line_error(code, err, "m.pt", "--input-shape")
    np.save(tmp_path / "x.npy", x)
    arrays, _ = _saved(capfd, tmp_path / "m.pt", tmp_path, "--input-shape", "1,8,8",
                       "--data", tmp_path / "x.npy")
    want = module(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(arrays["output.output"][:, 0], want, rtol=1e-5, atol=1e-5)
