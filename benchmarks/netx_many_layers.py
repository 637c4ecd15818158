"""Large netx files: how nmtc's time grows with the number of layers.

Usage: ``python benchmarks/netx_many_layers.py [--layers 300 1000 3000]``

Builds chains of N dense CUBA layers (10 neurons each) with h5py, then, in one
run, prints per N: the time to load the file, the loihi2 verdict (netx plan and
core mapping, the two sweeps that were quadratic: one scan of the graph per
node to find its users), and, side by side, a users sweep done the old way (a
scan per node) and with :meth:`Graph.users_index` (one pass). Per-layer times
that stay flat across N mean the work is linear.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def write_chain(path: Path, n: int) -> None:
    import h5py

    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        g = f.create_group("layer/0")
        g["shape"], g["type"] = np.array([10]), np.array([b"input"])
        for i in range(1, n + 1):
            g = f.create_group(f"layer/{i}")
            g["shape"], g["type"] = np.array([10]), np.array([b"dense"])
            g["weight"] = rng.integers(-50, 50, (10, 10)).astype(np.float32)
            g["bias"] = np.zeros(10, np.float32)
            nr = g.create_group("neuron")
            nr["type"] = np.array([b"CUBA"])
            nr["iDecay"], nr["vDecay"], nr["vThMant"], nr["refDelay"] = 4096, 0, 100, 1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, nargs="+", default=[300, 1000])
    args = ap.parse_args()
    from nmtoolchain.frontends import load_model
    from nmtoolchain.targets.registry import get_target

    print(f"{'layers':>7} {'nodes':>6} {'load s':>7} {'ms/layer':>8} {'loihi2 verdict s':>16} "
          f"{'ms/layer':>8} {'users: scan/node s':>18} {'index s':>8} {'ratio':>6}")
    with tempfile.TemporaryDirectory() as d:
        for n in args.layers:
            path = Path(d) / f"chain{n}.net"
            write_chain(path, n)
            t0 = time.perf_counter()
            g = load_model(path)
            t_load = time.perf_counter() - t0
            t0 = time.perf_counter()
            get_target("loihi2").verdict(g)
            t_verdict = time.perf_counter() - t0
            t0 = time.perf_counter()
            old = {name: g.users(name) for name in g.nodes}
            t_scan = time.perf_counter() - t0
            t0 = time.perf_counter()
            new = g.users_index()
            t_index = time.perf_counter() - t0
            assert {k: [u.name for u in v] for k, v in old.items()} == \
                {k: [u.name for u in v] for k, v in new.items()}
            print(f"{n:>7} {len(g.nodes):>6} {t_load:>7.2f} {1e3 * t_load / n:>8.2f} "
                  f"{t_verdict:>16.2f} {1e3 * t_verdict / n:>8.2f} {t_scan:>18.3f} "
                  f"{t_index:>8.4f} {t_scan / max(t_index, 1e-9):>6.0f}")


if __name__ == "__main__":
    main()
