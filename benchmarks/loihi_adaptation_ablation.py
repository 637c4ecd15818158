"""Why a converted SNN is adapted before it goes to Loihi: accuracy of the
bundled QCFS CNN on the digits test split, side by side in one run, for each T:

* ``SNN``: the converted float SNN (direct input, subtract reset, λ/2 pre-charge);
* ``rate``: the same with the rate-coded input and the spiking readout the export uses;
* ``naive``: what Loihi's CUBA neurons do without adaptation (reset to 0, no
  pre-charge), float and fixed point;
* ``k=1, 2, 4``: the adaptation (nmtoolchain.convert.for_loihi) with a fixed
  headroom, float;
* ``export``: the exported network in Loihi fixed point with the k the export
  chooses (nmtoolchain.targets.loihi2.loihi_accuracy).

    .venv/bin/python benchmarks/loihi_adaptation_ablation.py [--steps 16 32 64]
"""
from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import numpy as np

from nmtoolchain.targets.loihi2 import loihi_accuracy
from nmtoolchain.convert import rate_encode
from nmtoolchain.convert.for_loihi import with_headroom
from nmtoolchain.convert.mst import convert_mst
from nmtoolchain.convert.readout import add_spiking_readout
from nmtoolchain.datasets import load_digits_split
from nmtoolchain.frontends import load_model
from nmtoolchain.ir import Graph
from nmtoolchain.passes import fold_pooling, fold_scales
from nmtoolchain.quantize import quantize_for_loihi, spike_counts
from simulators.cycle import Simulator

MODEL = Path(__file__).resolve().parents[1] / "nmtoolchain" / "data" / "digits_qcfs_cnn.pt"


def accuracy(graph: Graph, x: np.ndarray, y: np.ndarray, steps: int) -> float:
    """Float simulation; class = argmax of the output's sum over steps."""
    src = graph[graph.outputs()[0].inputs[0]].name
    res = Simulator(graph, "float", record=[src], count=False).run(x, steps)
    return float((res.recorded[src].sum(1).numpy().reshape(len(x), -1).argmax(1) == y).mean())


def naive(graph: Graph) -> Graph:
    """Loihi's neuron applied as is: every IF resets to 0 and starts at 0."""
    g = copy.deepcopy(graph)
    for n in g:
        if n.op_name == "IF":
            n.op.reset, n.op.v_init = "to_reset", np.zeros(())
    return g


def naive_fixed(graph: Graph, calib: np.ndarray, x: np.ndarray, y: np.ndarray,
                steps: int) -> float:
    """``naive`` quantized for Loihi and run in fixed point (aligned count window)."""
    q, rep = quantize_for_loihi(fold_pooling(fold_scales(naive(graph), strict=True)), calib,
                                steps=steps)
    out = rep.layers[-1].layer
    counts = spike_counts(q, "loihi", x, steps, [out])[out]
    return float((counts.reshape(len(counts), -1).argmax(1) == y).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, nargs="+", default=[16, 32, 64])
    args = ap.parse_args()
    d = load_digits_split()
    ann = load_model(MODEL)
    shape = (-1,) + tuple(ann.inputs()[0].shape)
    x, y = d.x_test.reshape(shape), d.y_test
    xtr = d.x_train[:128].reshape(shape)
    print(f"{MODEL.name}, digits test split ({len(y)} images)")
    cols = ["SNN", "rate", "naive", "naive fx", "k=1", "k=2", "k=4", "export (k)"]
    print(f"{'T':>4} " + " ".join(f"{c:>10}" for c in cols) + f" {'s':>6}")
    for t in args.steps:
        t0 = time.time()
        snn = convert_mst(ann, timesteps=t)
        sx, scal = rate_encode(x, t), rate_encode(xtr, t)
        ro = add_spiking_readout(snn, scal, t)
        row = [accuracy(snn, x, y, t), accuracy(ro, sx, y, t), accuracy(naive(ro), sx, y, t),
               naive_fixed(ro, scal, sx, y, t)]
        row += [accuracy(with_headroom(ro, k, t), sx, y, t) for k in (1, 2, 4)]
        fixed = loihi_accuracy(snn, x, y, steps=t)
        cells = [f"{100 * a:>9.2f}%" for a in row]
        cells.append(f"{100 * fixed['accuracy']:>6.2f}% ({fixed['headroom']})")
        print(f"{t:>4} " + " ".join(f"{c:>10}" for c in cells) + f" {time.time() - t0:>6.1f}")


if __name__ == "__main__":
    main()
