"""AT-SNN on the digits Spikformer (16 tokens, T = 4): tokens processed,
accuracy and energy per profile for no adaptation, halting at several ponder
weights, and halting + merging; plus a plot of accuracy against tokens.

Every figure comes from the cycle simulator (float numerics) on the digits
test split (450 images): accuracy from its outputs, tokens processed from its
``tokens_active`` counts (token x block x step per image), energy from the
report of the same run (each profile's own counting rule). The AT-SNN models
are fine-tuned from the bundled Spikformer by examples/train_digits_atsnn.py's
``train`` (cached under ``--cache``; ``--retrain`` trains again), with the
SPS (which runs before halting) fixed unless a row says "SPS tuned"; the
bundled ``nmtoolchain/data/digits_atsnn.pt`` is measured too.

    PYTHONPATH=. .venv/bin/python benchmarks/atsnn_tokens.py [--epochs 20] [--plot out.png]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))

from nmtoolchain.datasets import load_digits_split  # noqa: E402
from nmtoolchain.frontends.torch_loader import load_torch_file  # noqa: E402
from nmtoolchain.models import save_checkpoint  # noqa: E402
from nmtoolchain.models.atsnn import atsnn_digits  # noqa: E402
from nmtoolchain.report.simulation import build_report  # noqa: E402
from simulators.cycle.interpreter import simulate  # noqa: E402

STEPS = 4
PROFILES = ["loihi2", "loihi1", "speck", "cmos45nm"]
DATA = ROOT / "nmtoolchain" / "data"
#: (label, ponder weight, ToMe pairs merged at block 0, SPS fine-tuned too)
RUNS: List[Tuple[str, float, int, bool]] = [
    ("halting p=0.05", 0.05, 0, False),
    ("halting p=0.2", 0.2, 0, False),
    ("halting p=0.5", 0.5, 0, False),
    ("halting p=0.2 + merge r=4", 0.2, 4, False),
    ("halting p=0.3 + merge r=4", 0.3, 4, False),
    ("halting p=0.2 + merge r=4, SPS tuned", 0.2, 4, True),
]


def measure(path: Path, x: np.ndarray, y: np.ndarray) -> Dict[str, Any]:
    """Simulate a checkpoint on (x, y): accuracy, tokens per image, energy per profile."""
    graph = load_torch_file(path)
    res = simulate(graph, x, STEPS)
    rep = build_report(graph, res, PROFILES, labels=y)
    tokens = rep.get("tokens")
    if tokens is None:  # no token nodes: every token, every block, every step
        depth = sum(1 for node in graph if node.name.endswith("_mlp_fc2_lif"))
        n_tok = int(graph["blocks_0_attn_q_linear"].shape[0])
        processed, full = float(n_tok * depth * STEPS), n_tok * depth * STEPS
    else:
        processed, full = tokens["processed_per_sample"], tokens["unadapted_per_sample"]
    return {"accuracy": rep["accuracy"], "tokens": processed, "full": full,
            "synops": rep["totals_per_sample"]["synops"],
            "energy": {p: rep["profiles"][p]["energy_per_inference_pj"] for p in PROFILES}}


def trained(label: str, ponder: float, merge: int, tune_sps: bool, cache: Path, epochs: int,
            retrain: bool) -> Path:
    """The checkpoint of one run, trained now if not cached."""
    from train_digits_atsnn import train

    path = cache / f"atsnn_p{ponder}_m{merge}_e{epochs}{'_sps' if tune_sps else ''}.pt"
    if path.is_file() and not retrain:
        return path
    cfg = atsnn_digits(merge="bipartite" if merge else "none", merge_r=merge)
    t0 = time.time()
    run = train(cfg, ponder, epochs=epochs, lr=2e-3, label=label, freeze_sps=not tune_sps)
    print(f"  trained {label} in {time.time() - t0:.0f} s", flush=True)
    cache.mkdir(parents=True, exist_ok=True)
    save_checkpoint("atsnn", cfg, run.model, path, input_shape=[1, 8, 8])
    return path


def main(argv: Optional[List[str]] = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--cache", type=Path, default=Path("/tmp/nmtc_atsnn_runs"))
    ap.add_argument("--retrain", action="store_true")
    ap.add_argument("--plot", type=Path, default=None, help="accuracy vs tokens (PNG)")
    ap.add_argument("--skip-training", action="store_true",
                    help="only the unadapted and the bundled AT-SNN model")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    split = load_digits_split()
    x, y = split.x_test, split.y_test
    rows: List[Tuple[str, Dict[str, Any]]] = [
        ("no adaptation (bundled Spikformer)", measure(DATA / "digits_spikformer.pt", x, y))]
    if (DATA / "digits_atsnn.pt").is_file():
        rows.append(("bundled digits_atsnn.pt", measure(DATA / "digits_atsnn.pt", x, y)))
    if not args.skip_training:
        for label, ponder, merge, tune_sps in RUNS:
            path = trained(label, ponder, merge, tune_sps, args.cache, args.epochs, args.retrain)
            rows.append((label, measure(path, x, y)))
    base = rows[0][1]
    print(f"\nAT-SNN on digits (450 test images, T = {STEPS}, 16 tokens, 1 block; "
          f"simulator, float numerics)")
    head = (f"{'model':<36} {'tokens':>7} {'vs base':>8} {'acc':>7} {'d acc':>7} "
            f"{'synops':>9} " + " ".join(f"{'E ' + p:>12}" for p in PROFILES))
    print(head)
    print("-" * len(head))
    for label, r in rows:
        print(f"{label:<36} {r['tokens']:7.2f} {r['tokens'] / base['tokens'] - 1:+8.1%} "
              f"{r['accuracy']:7.4f} {100 * (r['accuracy'] - base['accuracy']):+6.2f}p "
              f"{r['synops']:9,.0f} "
              + " ".join(f"{r['energy'][p] / 1e3:10.2f}nJ" for p in PROFILES))
    ok = [(label, r) for label, r in rows[1:]
          if r["tokens"] <= 0.6 * base["tokens"] and r["accuracy"] >= base["accuracy"] - 0.01]
    print(f"\ngoal (>= 40% fewer tokens at <= 1 point accuracy loss): "
          + (f"met by {', '.join(label for label, _ in ok)}" if ok else "not met"))
    if args.plot is not None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        for label, r in rows:
            ax.scatter(r["tokens"], 100 * r["accuracy"], label=label)
        ax.set_xlabel("tokens processed per image (token x block x step)")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title("AT-SNN on digits: accuracy against tokens")
        ax.legend(fontsize=7)
        fig.savefig(args.plot, dpi=110, bbox_inches="tight")
        print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()
