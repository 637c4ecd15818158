"""The GPU kernel of Loihi's CUBA loop (simulators/cycle/fused_triton.py) is
bit-exact with Lava's integer formulas: checked here in Triton's interpreter
on the CPU (tests/triton_interpreted_check.py, in a fresh process), so that
a machine without a GPU tests the very kernel code a GPU compiles."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_triton_cuba_kernel_is_lavas_arithmetic_in_the_interpreter():
    pytest.importorskip("triton", reason="Triton is not installed (it ships with CUDA torch)")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    res = subprocess.run([sys.executable, str(ROOT / "tests/triton_interpreted_check.py")],
                         capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert res.returncode == 0 and res.stdout.strip().endswith("ok"), res.stderr[-3000:]
