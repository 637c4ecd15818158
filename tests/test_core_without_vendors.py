"""The core (IR, loaders, passes, conversion, quantization, simulator, energy,
reports, the Loihi export that only writes files) must run without Lava, lava-dl
and sinabs, so it runs where they cannot (newer Pythons, numpy 2, GPU machines).

Each check runs in a fresh interpreter with the vendors made unimportable by
tests/_hide_vendors (``NMTC_HIDE_VENDORS``), whatever this interpreter has."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nmtoolchain.demo import BUNDLED_QCFS

ROOT = Path(__file__).resolve().parents[1]
HIDE_DIR = Path(__file__).resolve().parent / "_hide_vendors"
VENDORS = ("lava", "sinabs", "samna")


def _env(hidden: bool) -> dict:
    """This environment, with the repository importable and, if ``hidden``, the vendors not."""
    env = dict(os.environ)
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep)
             if p and Path(p).resolve() != HIDE_DIR]
    env["PYTHONPATH"] = os.pathsep.join(([str(HIDE_DIR)] if hidden else []) + [str(ROOT)] + paths)
    if hidden:
        env["NMTC_HIDE_VENDORS"] = "lava,sinabs,samna"
    else:
        env.pop("NMTC_HIDE_VENDORS", None)
    return env


def _python(code: str, hidden: bool) -> dict:
    """Run ``code`` in a fresh interpreter; the JSON object its last line prints."""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, env=_env(hidden), cwd=ROOT)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_hiding_makes_the_vendors_unimportable_as_if_not_installed():
    result = _python(r"""
import importlib.util, json
failures = {}
for name in ("lava", "lava.lib.dl.netx", "lava.magma.core", "sinabs", "sinabs.layers"):
    try:
        __import__(name)
        failures[name] = "imported"
    except ModuleNotFoundError as e:
        failures[name] = e.name
import numpy, torch, nir  # everything else still imports
print(json.dumps({"failures": failures, "spec": importlib.util.find_spec("lava") is None}))
""", hidden=True)
    # ModuleNotFoundError names the top-level package, as when it is not installed
    assert result["failures"] == {"lava": "lava", "lava.lib.dl.netx": "lava",
                                  "lava.magma.core": "lava", "sinabs": "sinabs",
                                  "sinabs.layers": "sinabs"}
    assert result["spec"] is True


def test_every_module_of_the_core_imports_without_vendors():
    """Every module of nmtoolchain, simulators and exporters: vendor imports, if
    any, sit inside the functions that run a vendor."""
    result = _python(r"""
import importlib, json, pkgutil, sys
failed, seen = {}, 0
for top in ("nmtoolchain", "simulators", "exporters"):
    pkg = importlib.import_module(top)
    for info in pkgutil.walk_packages(pkg.__path__, top + "."):
        if info.name.rsplit(".", 1)[-1] == "__main__":
            continue
        seen += 1
        try:
            importlib.import_module(info.name)
        except Exception as e:
            failed[info.name] = f"{type(e).__name__}: {e}"
print(json.dumps({"failed": failed, "seen": seen,
                  "vendors": sorted(m for m in sys.modules if m.split(".")[0] in ("lava", "sinabs", "samna"))}))
""", hidden=True)
    assert result["failed"] == {}
    assert result["vendors"] == []
    assert result["seen"] >= 40  # walk_packages really found the tree


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


@pytest.mark.parametrize("hidden", [False, True], ids=["installed", "hidden"])
def test_core_runs_without_importing_lava_or_sinabs(hidden):
    result = _python(SCRIPT, hidden)
    assert result["vendors"] == []
    # 4 input spikes x weight 1 = 4 per step per neuron, threshold 1.5: both neurons fire each step
    assert result["spikes"] == 8
    assert result["synapses"] == 18080  # the bundled CNN, hand-counted in test_cli.py


def _cli(args, env):
    return subprocess.run([sys.executable, "-m", "nmtoolchain.cli"] + [str(a) for a in args],
                          capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)


def test_convert_and_export_work_without_lava_and_verify_names_what_to_install(tmp_path):
    """MST conversion, calibration, quantization, mapping and the netx writer need
    no vendor; ``verify`` (which runs Lava) says in one line what to install."""
    env = _env(hidden=True)
    snn = tmp_path / "snn.nmir"
    conv = _cli(["convert", BUNDLED_QCFS, "--method", "mst", "-T", "4", "-o", snn], env)
    assert conv.returncode == 0, conv.stderr
    out = tmp_path / "snn.loihi2"
    exp = _cli(["export", snn, "--target", "loihi2", "--calib", "digits", "-T", "4",
                "-o", out, "--json"], env)
    assert exp.returncode == 0, exp.stderr
    # the netx file opens as HDF5 with one group per layer (read here with h5py)
    import h5py

    with h5py.File(out / "network.net", "r") as f:
        assert len(f["layer"]) >= 2
    ver = _cli(["verify", out], env)
    assert ver.returncode == 2, ver.stderr
    lines = [ln for ln in ver.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in ver.stderr, ver.stderr
    line = lines[0]
    assert line.startswith("nmtc: error: nmtc verify needs Lava")
    for needle in ("lava-nc", "lava-dl", "No module named 'lava'", "pip install", "make env"):
        assert needle in line, (needle, line)
    # the library entry points that run Lava say the same, as MissingVendorError
    result = _python(r"""
import json, sys
import numpy as np
sys.path.insert(0, "examples")
from nmtoolchain.errors import MissingVendorError, NmtcError
from nmtoolchain.ir import load_graph
from simulators.lava_runner import run_netx_in_lava
from exporters.loihi2.lava_graph import run_graph_in_lava
from spikformer_block import build_spikformer_block

export = %r
shape = tuple(load_graph(export + "/network.nmir").infer_shapes().inputs()[0].shape)
block = build_spikformer_block().infer_shapes()
calls = {
    "netx": lambda: run_netx_in_lava(export + "/network.net", np.zeros((4,) + shape, np.int64), 4),
    "graph": lambda: run_graph_in_lava(block, np.zeros((3,) + tuple(block.inputs()[0].shape),
                                                       np.int64), 3),
}
said = {}
for name, call in calls.items():
    try:
        call()
        said[name] = "ran"
    except MissingVendorError as e:
        said[name] = str(e) if isinstance(e, NmtcError) else "not an NmtcError"
print(json.dumps(said))
""" % str(out), hidden=True)
    assert result["netx"].startswith("running a netx file in Lava needs Lava (lava-nc 0.10 and "
                                     "lava-dl 0.6)"), result
    assert result["graph"].startswith("running a graph in Lava needs Lava (lava-nc 0.10)"), result
    assert all("pip install lava-nc==0.10.0" in v for v in result.values()), result
