"""`nmtc report` on Intel's PilotNet-LIF with the loihi2 profile, next to
Intel's Loihi 2 board measurement (lava-dl's pilotnet benchmark notebook:
1.09 mJ dynamic per 16-step inference, 153 µs per step, 74 cores).

    .venv/bin/python benchmarks/pilotnet_energy_report.py [--html out.html]

Runs the bit-exact simulation on Intel's own input (16 steps, LIFReset every
16 steps as in Intel's recording) and prints the report, including the
relative error against the measurement and which profile constants were
fitted to this network (those cannot be validated by it).
"""
from __future__ import annotations

import sys
import sysconfig
import tempfile
from pathlib import Path

import numpy as np

from nmtoolchain.cli import main as nmtc


def run(extra: list) -> int:
    root = Path(sysconfig.get_paths()["purelib"]) / "tests/lava/lib/dl/netx/gts/pilotnet_lif"
    if not (root / "network.net").exists():
        raise SystemExit("lava-dl's test networks are not installed (pip install lava-dl)")
    with tempfile.TemporaryDirectory() as tmp:
        drive = Path(tmp) / "pilotnet_input_bias.npy"
        np.save(drive, np.load(root / "image.npy").transpose(2, 1, 0))  # W,H,C -> C,H,W
        return nmtc(["report", str(root / "network.net"), "--data", str(drive),
                     "--numerics", "loihi", "--reset-interval", "16", "-T", "16",
                     "--profiles", "loihi2,loihi1,cmos45nm", "--measured", "pilotnet_lif",
                     *extra])


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
