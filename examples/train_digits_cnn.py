"""Train the bundled example CNN on scikit-learn's digits and write it as
TorchScript (with its input shape) and ONNX into ``nmtoolchain/data/``.

Run:  .venv/bin/python examples/train_digits_cnn.py
Takes a few seconds on a CPU. The committed files are its output (seed 0).
"""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from nmtoolchain.datasets import load_digits_split

OUT = Path(__file__).resolve().parents[1] / "nmtoolchain" / "data"


def build() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Flatten(), nn.Linear(16 * 2 * 2, 10),
    )


def main() -> None:
    torch.manual_seed(0)
    data = load_digits_split()
    x, y = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)
    model = build()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for epoch in range(30):
        perm = torch.randperm(len(x))
        for i in range(0, len(x), 64):
            idx = perm[i:i + 64]
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        acc = (model(torch.from_numpy(data.x_test)).argmax(1).numpy() == data.y_test).mean()
    print(f"test accuracy: {acc:.4f}")
    OUT.mkdir(parents=True, exist_ok=True)
    meta = json.dumps({"input_shape": [1, 8, 8], "test_accuracy": round(float(acc), 4),
                       "trained_by": "examples/train_digits_cnn.py"})
    torch.jit.save(torch.jit.script(model), str(OUT / "digits_cnn.pt"),
                   _extra_files={"nmtc.json": meta})
    buf = io.BytesIO()
    # PRESERVE keeps BatchNormalization nodes (the default eval export fuses
    # them into Conv), so the ONNX file is the same graph as the TorchScript one.
    torch.onnx.export(model, torch.zeros(1, 1, 8, 8), buf, input_names=["image"],
                      training=torch.onnx.TrainingMode.PRESERVE,
                      output_names=["logits"], dynamic_axes={"image": {0: "batch"}})
    (OUT / "digits_cnn.onnx").write_bytes(buf.getvalue())
    print(f"wrote {OUT / 'digits_cnn.pt'} and {OUT / 'digits_cnn.onnx'}")


if __name__ == "__main__":
    main()
