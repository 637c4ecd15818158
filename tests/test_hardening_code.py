"""Loading a model file never runs code from it without consent (issue 16, item 1).

The archives here are written by torch.jit itself; the file a crafted
``__setstate__`` would create is the independent witness: it must not exist.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Tuple

import pytest

torch = pytest.importorskip("torch")

from nmtoolchain.errors import PickleRefusedError  # noqa: E402
from nmtoolchain.frontends import load_model  # noqa: E402
from nmtoolchain.frontends.archive_safety import torchscript_findings  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


class _WritesOnLoad(torch.nn.Module):
    """A network whose __setstate__ maps (and so creates) a file at a path it holds."""

    def __init__(self, target: str) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(4, 2)
        self.target = target

    def forward(self, x):
        return self.lin(x)

    @torch.jit.export
    def __getstate__(self) -> Tuple[str, bool]:
        return (self.target, self.training)

    @torch.jit.export
    def __setstate__(self, state: Tuple[str, bool]) -> None:
        self.target = state[0]
        self.training = state[1]
        t = torch.from_file(self.target, shared=True, size=16, dtype=torch.uint8)
        t.fill_(65)
        self.target = str(int(t.sum()))


class _WritesInForward(torch.nn.Module):
    def __init__(self, target: str) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(4, 2)
        self.target = target

    def forward(self, x):
        t = torch.from_file(self.target, shared=True, size=4, dtype=torch.uint8)
        return self.lin(x) + t.sum()


def _archive(module: torch.nn.Module, path: Path) -> Path:
    torch.jit.save(torch.jit.script(module), str(path))
    return path


def test_setstate_archive_is_refused_and_writes_nothing(tmp_path):
    witness = tmp_path / "pwned"
    path = _archive(_WritesOnLoad(str(witness)), tmp_path / "evil.pt")
    # the archive really is dangerous: torch.jit.load in a child process creates the file
    probe = tmp_path / "probe"
    subprocess.run([sys.executable, "-c", "import sys, torch\ntry: torch.jit.load(sys.argv[1])\n"
                    "except Exception: pass", str(_archive(_WritesOnLoad(str(probe)),
                                                           tmp_path / "probe.pt"))],
                   check=True, capture_output=True)
    assert probe.exists()
    with pytest.raises(PickleRefusedError, match=r"evil\.pt: loading would run code .*__setstate__"):
        load_model(path, input_shape=(4,))
    assert not witness.exists()


def test_setstate_archive_is_refused_by_every_cli_command(tmp_path):
    witness = tmp_path / "pwned"
    path = _archive(_WritesOnLoad(str(witness)), tmp_path / "evil.pt")
    for args in (["inspect", str(path)], ["simulate", str(path), "--dataset", "digits"],
                 ["export", str(path), "--target", "nir", "-o", str(tmp_path / "o.nir")]):
        r = subprocess.run([sys.executable, "-m", "nmtoolchain.cli", *args], cwd=tmp_path,
                           capture_output=True, text=True, env={"PYTHONPATH": str(ROOT),
                                                                "PATH": "/usr/bin:/bin"})
        assert r.returncode == 2, (args, r.stderr)
        assert len(r.stderr.splitlines()) == 1 and "--allow-code" in r.stderr, r.stderr
        assert not witness.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evil.pt"]


def test_file_access_in_forward_is_refused(tmp_path):
    path = _archive(_WritesInForward(str(tmp_path / "x")), tmp_path / "fwd.pt")
    found = torchscript_findings(path)
    assert any("torch.from_file" in f.what for f in found), found
    with pytest.raises(PickleRefusedError, match="torch.from_file"):
        load_model(path, input_shape=(4,))


def test_plain_torchscript_has_no_findings_and_loads(tmp_path):
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                              torch.nn.Linear(4 * 6 * 6, 10))
    path = _archive(net, tmp_path / "ok.pt")
    assert torchscript_findings(path) == []
    graph = load_model(path, input_shape=(1, 8, 8))
    assert len(graph.nodes) >= 4


def test_consent_lets_the_archive_load(tmp_path):
    witness = tmp_path / "w"
    path = _archive(_WritesOnLoad(str(witness)), tmp_path / "evil.pt")
    try:
        load_model(path, input_shape=(4,), allow_pickle=True)
    except Exception:
        pass  # torch may fail after __setstate__ ran; consent means the code did run
    assert witness.exists()
