"""The core (IR, loaders, simulator, energy, reports) must not import Lava or
sinabs, so it runs where they cannot (newer Pythons, numpy 2, GPU machines)."""
from __future__ import annotations

import json
import subprocess
import sys

SCRIPT = r"""
import json, sys
import numpy as np
from nmtoolchain import ir
from nmtoolchain.frontends import load_model
from nmtoolchain.demo import BUNDLED_ONNX
from nmtoolchain.report.inspect import inspect_graph
from simulators.cycle import simulate
from nmtoolchain.energy import compare_profiles
from nmtoolchain.report.simulation import build_report

g = ir.Graph({"dt": 1.0})
g.add("x", ir.Input((4,)))
g.add("fc", ir.Linear(np.ones((2, 4))), ["x"])
g.add("n", ir.IF(v_threshold=1.5), ["fc"])
g.add("y", ir.Output(), ["n"])
res = simulate(g, np.ones((1, 4), np.float32), 4)
rep = build_report(g, res, ["loihi2", "cmos45nm"])
info = inspect_graph(load_model(BUNDLED_ONNX))
print(json.dumps({"vendors": sorted(m for m in sys.modules
                                    if m.split(".")[0] in ("lava", "sinabs", "samna")),
                  "spikes": float(res.outputs["y"].sum()),
                  "synapses": info["totals"]["synapses"]}))
"""


def test_core_runs_without_importing_lava_or_sinabs():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["vendors"] == []
    # 4 input spikes x weight 1 = 4 per step per neuron, threshold 1.5: both neurons fire each step
    assert result["spikes"] == 8
    assert result["synapses"] == 18080  # the bundled CNN, hand-counted in test_cli.py
