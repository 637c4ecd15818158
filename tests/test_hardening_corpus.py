"""The malformed-input corpus (tests/malformed/generate.py, >= 300 cases) through
every command: no traceback, crash, hang or exit 3; every failure exit 2 in exactly
one stderr line; nothing left behind (issue 16, "Done when").

CI runs a fixed sample of the corpus (NMTC_CORPUS_SAMPLE cases, default 160, a
couple of minutes on two cores); ``NMTC_CORPUS_SAMPLE=all`` runs every case, as
``python tests/malformed/run_corpus.py`` does with its count table.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "malformed"))

pytest.importorskip("torch")
pytest.importorskip("onnx")
pytest.importorskip("h5py")


def test_generator_builds_at_least_300_distinct_cases():
    from generate import build_cases

    cases = build_cases()
    assert len(cases) >= 300
    assert len({c.name for c in cases}) == len(cases)


def test_corpus_fails_cleanly(tmp_path):
    sample = os.environ.get("NMTC_CORPUS_SAMPLE", "160")
    args = [sys.executable, str(HERE / "malformed" / "run_corpus.py"), "--workers", "2",
            "--timeout", "60", "--json", str(tmp_path / "out.json")]
    if sample != "all":
        args += ["--sample", sample]
    r = subprocess.run(args, capture_output=True, text=True, timeout=1500,
                       env={**os.environ, "PYTHONPATH": os.pathsep.join(
                           [str(HERE.parent)] + os.environ.get("PYTHONPATH", "").split(
                               os.pathsep))})
    table = json.loads((tmp_path / "out.json").read_text())["table"]
    assert table["cases"] >= (300 if sample == "all" else int(sample)), r.stdout
    for key in ("tracebacks", "crashes", "hangs", "stderr != 1 line", "left behind",
                "setup failed", "code executions"):
        assert table[key] == 0, r.stdout
    assert table.get("exit 3", 0) == 0, r.stdout
    assert table["failing cases"] == 0, r.stdout
