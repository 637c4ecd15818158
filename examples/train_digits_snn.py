"""Train two digits classifiers as ANNs, convert them to spiking networks,
quantize them for Loihi 2, and compare float and fixed-point accuracy.

For each model (an MLP 64-128-10 and a CNN conv8-conv16/2-fc10):

1. train a ReLU ANN on scikit-learn's bundled digits (train split, CPU,
   a few seconds);
2. convert it to an SNN by threshold balancing
   (:func:`nmtoolchain.convert.convert_relu_to_if`): IF neurons with
   threshold 1, reset to 0 and compare '>' (Loihi's own semantics, so the
   float SNN is already the like-for-like reference of the fixed-point
   model), input spikes from the deterministic rate code
   :func:`nmtoolchain.convert.rate_encode` over ``STEPS`` steps;
3. write the float SNN as ``nmtoolchain/data/digits_{mlp,cnn}_snn.nmir``;
4. quantize it (:func:`nmtoolchain.quantize.quantize_for_loihi`, calibration
   on 200 training images) and print the per-layer report;
5. measure test accuracy (class = output neuron with the most spikes, first
   index on a tie): the float SNN in float numerics over ``STEPS`` steps, and
   the quantized graph in loihi numerics (bit-exact with Lava ``fixed_pt``)
   over ``STEPS + depth`` steps with netx's per-layer reset aligned to the
   one-step-per-synapse pipeline (:func:`nmtoolchain.quantize.aligned_run`).

Run:  .venv/bin/python examples/train_digits_snn.py  [--no-write]
Takes about 15 s on a 2-core CPU. The committed files are its output (seed 0).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Dict, Tuple

import numpy as np
import torch
from torch import nn

from nmtoolchain.convert import convert_relu_to_if, rate_encode
from nmtoolchain.datasets import load_digits_split
from nmtoolchain.ir import Affine, Conv2d, Flatten, Graph, Input, Output, ReLU, save_graph
from nmtoolchain.quantize import quantize_for_loihi, spike_counts

OUT = Path(__file__).resolve().parents[1] / "nmtoolchain" / "data"
STEPS = 32             # presentation length of one image (rate-code steps)
PERCENTILE = 99.9      # threshold balancing: activation percentile taken as λ
WEIGHT_PERCENTILE = 99.9  # quantization: |w| percentile mapped to the mantissa's top
CALIB_IMAGES = 200


def build(kind: str) -> nn.Sequential:
    if kind == "mlp":
        return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(16 * 4 * 4, 10))


def to_ir(model: nn.Sequential, input_shape: Tuple[int, ...], name: str) -> Graph:
    """The trained Sequential as an IR ANN graph (Linear/Conv2d/ReLU/Flatten)."""
    g = Graph({"source": {"format": "torch", "trained_by": "examples/train_digits_snn.py",
                          "model": name}})
    prev = g.add("input", Input(input_shape)).name
    counts: Dict[str, int] = {}
    for m in model:
        kind = type(m).__name__.lower()
        counts[kind] = counts.get(kind, 0) + 1
        node = f"{kind}{counts[kind]}"
        if isinstance(m, nn.Linear):
            op = Affine(m.weight.detach().numpy(), m.bias.detach().numpy())
        elif isinstance(m, nn.Conv2d):
            op = Conv2d(m.weight.detach().numpy(), m.bias.detach().numpy(), m.stride,
                        m.padding, m.dilation, m.groups)
        elif isinstance(m, nn.ReLU):
            op = ReLU()
        elif isinstance(m, nn.Flatten):
            op = Flatten(0, -1)
        else:
            raise TypeError(f"unexpected module {m}")
        prev = g.add(node, op, [prev]).name
    g.add("output", Output(), [prev])
    return g.infer_shapes()


def train(kind: str, x: np.ndarray, y: np.ndarray, epochs: int = 40) -> nn.Sequential:
    torch.manual_seed(0)
    model = build(kind)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    for _ in range(epochs):
        perm = torch.randperm(len(xt))
        for i in range(0, len(xt), 64):
            idx = perm[i:i + 64]
            opt.zero_grad()
            nn.functional.cross_entropy(model(xt[idx]), yt[idx]).backward()
            opt.step()
    return model.eval()


def accuracy(counts: np.ndarray, y: np.ndarray) -> float:
    return float((counts.reshape(len(counts), -1).argmax(1) == y).mean())


def run(kind: str, write: bool) -> Dict[str, float]:
    t0 = time.perf_counter()
    data = load_digits_split()
    shape = (64,) if kind == "mlp" else (1, 8, 8)
    xtr = data.x_train.reshape((len(data.x_train),) + shape)
    xte = data.x_test.reshape((len(data.x_test),) + shape)
    model = train(kind, xtr, data.y_train)
    with torch.no_grad():
        ann_acc = float((model(torch.from_numpy(xte)).argmax(1).numpy() == data.y_test).mean())
    ann = to_ir(model, shape, f"digits_{kind}")
    snn, _ = convert_relu_to_if(ann, xtr, steps=STEPS, percentile=PERCENTILE,
                                reset="to_reset", compare=">")
    calib = rate_encode(xtr[:CALIB_IMAGES], STEPS)
    q, report = quantize_for_loihi(snn, calib, steps=STEPS, weight_percentile=WEIGHT_PERCENTILE)
    spikes = rate_encode(xte, STEPS)
    out = report.layers[-1]
    fl = spike_counts(snn, "float", spikes, STEPS, [out.float_neuron])[out.float_neuron]
    fx = spike_counts(q, "loihi", spikes, STEPS, [out.layer])[out.layer]
    acc_float, acc_fixed = accuracy(fl, data.y_test), accuracy(fx, data.y_test)
    snn.metadata["accuracy"] = {
        "dataset": "digits test split (nmtoolchain.datasets.load_digits_split, 450 images)",
        "ann": round(ann_acc, 4), "snn_float": round(acc_float, 4),
        "snn_loihi_fixed": round(acc_fixed, 4), "steps": STEPS,
        "rule": "class = output neuron with most spikes (first on a tie)"}
    print(f"== digits {kind.upper()} ==")
    print("\n".join(report.lines()))
    print(f"test accuracy ({len(data.y_test)} images, {STEPS} steps): ANN {100 * ann_acc:.2f}%  "
          f"float SNN {100 * acc_float:.2f}%  fixed-point (loihi) {100 * acc_fixed:.2f}%  "
          f"difference {100 * (acc_fixed - acc_float):+.2f} points  "
          f"(argmax agreement {100 * float((fl.argmax(1) == fx.argmax(1)).mean()):.2f}%)")
    if write:
        path = save_graph(snn, OUT / f"digits_{kind}_snn.nmir")
        print(f"wrote {path} ({path.stat().st_size} bytes)")
    print(f"({time.perf_counter() - t0:.1f} s)")
    return {"ann": ann_acc, "float": acc_float, "fixed": acc_fixed}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-write", action="store_true", help="do not write the .nmir files")
    args = ap.parse_args()
    for kind in ("mlp", "cnn"):
        run(kind, write=not args.no_write)


if __name__ == "__main__":
    main()
