"""Train the registry's ``mini_mst`` (two MST blocks: windowed attention, then
shifted windows with Swin's mask; LayerNorm before the head) on sklearn's
digits (CPU, about a minute on one thread), convert it with ``convert_mst``
and print the ANN accuracy and the SNN accuracy for T = 1..128. Training runs
on one thread (nmtoolchain.training), so a seed gives the same model anywhere.

MST's recipe scaled down (seeds.md §2.2): QCFS L = 16, λ initialised to 2.0,
AdamW without weight decay on λ, biases, BN and the position-bias table; RSM
ratio ``--mask-p`` active in training and inference. Writes the nmtc checkpoint
``nmtoolchain/data/digits_mini_mst.pt`` (or ``--out``).

    .venv/bin/python examples/train_digits_mst.py [--mask-p 0.0] [--no-curve]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from nmtoolchain.datasets import load_digits_split
from nmtoolchain.models import build_model, save_checkpoint
from nmtoolchain.training import fit_classifier

CONFIG = {"dim": 32, "heads": 2, "depth": 2, "window": 2, "mlp_ratio": 2, "levels": 16,
          "threshold": 2.0, "mask_p": 0.0, "shift": True, "final_norm": True}
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "nmtoolchain" / "data" / "digits_mini_mst.pt"


def train(config: dict, epochs: int = 60, seed: int = 0, lr: float = 3e-3) -> tuple:
    """Train and return (module in eval mode, ANN test accuracy)."""
    torch.manual_seed(seed)
    np.random.seed(seed)
    split = load_digits_split()
    xtr, ytr = torch.from_numpy(split.x_train), torch.from_numpy(split.y_train)
    model = build_model("mini_mst", config)
    fit_classifier(model, xtr, ytr, epochs=epochs, lr=lr, seed=seed, clip=5.0,
                   no_decay_names=("rpb_table",))  # nor on λ, biases, BN
    with torch.no_grad():
        acc = float((model(torch.from_numpy(split.x_test)).argmax(-1).numpy()
                     == split.y_test).mean())
    return model, acc


def snn_curve(model: nn.Module, t_max: int = 128) -> list:
    """[(T, SNN accuracy)] on the digits test split after convert_mst."""
    from nmtoolchain.accuracy import accuracy_vs_timesteps
    from nmtoolchain.convert.mst import convert_mst
    from nmtoolchain.frontends.torch_fx import graph_from_module

    split = load_digits_split()
    snn = convert_mst(graph_from_module(model, (1, 8, 8)), timesteps=t_max)
    return accuracy_vs_timesteps(snn, split.x_test, split.y_test, t_max)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--mask-p", type=float, default=0.0)
    ap.add_argument("--no-curve", action="store_true")
    args = ap.parse_args()
    config = dict(CONFIG, mask_p=args.mask_p)
    t0 = time.time()
    model, acc = train(config, args.epochs, args.seed)
    save_checkpoint("mini_mst", config, model, args.out, (1, 8, 8))
    print(f"ANN (mini-MST, QCFS L=16, p={args.mask_p}) test accuracy: {acc:.4f}; "
          f"trained in {time.time() - t0:.1f} s; wrote {args.out}")
    if not args.no_curve:
        t1 = time.time()
        curve = snn_curve(model)
        print("SNN accuracy: " + ", ".join(f"T={t}: {a:.4f}" for t, a in curve)
              + f" ({time.time() - t1:.1f} s)")
        within = [t for t, a in curve if a >= acc - 0.01]
        print(f"smallest T within 1 point of the ANN: {within[0] if within else 'none <= 128'}")


if __name__ == "__main__":
    main()
