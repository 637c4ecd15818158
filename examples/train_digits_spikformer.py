"""Train a small Spikformer (``spikformer`` architecture, 16 tokens, D = 32,
one block) on sklearn's digits with surrogate gradients, T = 4, on a CPU in a
few minutes; print the float test accuracy and write the nmtc checkpoint
``nmtoolchain/data/digits_spikformer.pt`` (or ``--out``).

Spikformer's recipe scaled down (seeds.md §1.3): direct encoding (the image at
every step), logits averaged over the T steps, cross-entropy; LIF τ = 2 with
hard reset, sigmoid surrogate (α = 4). ``--variant autost`` trains AutoST's
pre-activation PLIF model instead.

    .venv/bin/python examples/train_digits_spikformer.py [--epochs 20] [--variant autost]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from nmtoolchain.datasets import load_digits_split
from nmtoolchain.models import build_model, save_checkpoint
from nmtoolchain.models.spikformer import TimeMean, spikformer_digits
from nmtoolchain.training import fit_classifier

STEPS = 4
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "nmtoolchain" / "data" / "digits_spikformer.pt"


def train(config: dict, epochs: int = 20, seed: int = 0, lr: float = 3e-3) -> tuple:
    """Train and return (Spikformer in eval mode, float test accuracy at T = STEPS)."""
    torch.manual_seed(seed)
    np.random.seed(seed)
    split = load_digits_split()
    model = build_model("spikformer", config)
    wrapped = TimeMean(model, STEPS)
    fit_classifier(wrapped, torch.from_numpy(split.x_train), torch.from_numpy(split.y_train),
                   epochs=epochs, lr=lr, seed=seed, clip=5.0)
    with torch.no_grad():
        pred = wrapped(torch.from_numpy(split.x_test)).argmax(-1).numpy()
    return model.eval(), float((pred == split.y_test).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--variant", choices=("spikformer", "autost"), default="spikformer")
    args = ap.parse_args()
    torch.set_num_threads(2)
    config = spikformer_digits(args.variant)
    t0 = time.time()
    model, acc = train(config, args.epochs, args.seed)
    print(f"trained {args.variant} in {time.time() - t0:.0f} s: float test accuracy "
          f"{acc:.4f} (T = {STEPS}, 450 images)")
    save_checkpoint("spikformer", config, model, args.out, input_shape=[1, 8, 8])
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
