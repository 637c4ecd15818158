"""Fine-tune AT-SNN token halting (and merging) into the digits Spikformer
(16 tokens, D = 32, one block, T = 4) on sklearn's digits, on a CPU in minutes;
print accuracy and tokens processed per ponder weight, and write the chosen
run's nmtc checkpoint ``nmtoolchain/data/digits_atsnn.pt`` (or ``--out``).

As A-ViT fine-tunes a pretrained DeiT, training starts from the bundled
Spikformer (``nmtoolchain/data/digits_spikformer.pt``) with the loss
CE + alpha_p · ponder (+ alpha_d · distribution prior when ``--prior``).
``--ponder`` lists the weights alpha_p to train; ``--merge R`` adds ToMe
merging of R pairs at block 0; ``--save`` picks which run is written
(``ponder:merge``, e.g. ``0.01:0``).

    .venv/bin/python examples/train_digits_atsnn.py [--epochs 20] [--ponder 0.05 0.2 0.5]

The bundled checkpoint (halting + merging, SPS fine-tuned too) is

    .venv/bin/python examples/train_digits_atsnn.py --epochs 20 --ponder 0.2 --merge 4 --tune-sps
"""
from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

import numpy as np
import torch

from nmtoolchain.datasets import load_digits_split
from nmtoolchain.models import build_model, load_checkpoint, save_checkpoint
from nmtoolchain.models.atsnn import ATSpikformer, atsnn_digits, distribution_prior, ponder_loss
from nmtoolchain.models.spikformer import TimeMean
from nmtoolchain.training import fit_classifier

STEPS = 4
DATA = Path(__file__).resolve().parents[1] / "nmtoolchain" / "data"
BASE = DATA / "digits_spikformer.pt"
DEFAULT_OUT = DATA / "digits_atsnn.pt"


@dataclass
class RunResult:
    """One fine-tuning run: its model, config and test figures."""

    label: str
    config: Dict[str, Any]
    model: ATSpikformer
    accuracy: float
    tokens: float  # token x block x step per sample, test set
    full_tokens: int  # the same without adaptation (N x L x T)


def evaluate(model: ATSpikformer, x: torch.Tensor, y: np.ndarray) -> tuple:
    """(accuracy, mean tokens processed per sample) at T = STEPS."""
    wrapped = TimeMean(model.eval(), STEPS)
    with torch.no_grad():
        pred = wrapped(x).argmax(-1).numpy()
    return float((pred == y).mean()), float(model.stats.tokens_processed.float().mean())


class FrozenSPS(TimeMean):
    """TimeMean whose model keeps its spiking patch splitting (SPS) fixed: its
    weights take no gradient and its batch norms stay in eval mode, so the
    layers that run before halting cost what they cost in the unadapted model."""

    def train(self, mode: bool = True) -> "FrozenSPS":
        super().train(mode)
        self.model.patch_embed.eval()
        return self


def train(config: Dict[str, Any], ponder: float, *, epochs: int = 6, seed: int = 0,
          lr: float = 1e-3, prior: Optional[float] = None, label: str = "",
          freeze_sps: bool = True) -> RunResult:
    """Fine-tune an AT-SNN model from the bundled Spikformer's weights
    (``freeze_sps``: the SPS stays as trained, see :class:`FrozenSPS`)."""
    torch.manual_seed(seed)
    split = load_digits_split()
    base, _ = load_checkpoint(BASE)
    model = build_model("atsnn", config)
    model.load_state_dict(base.state_dict())
    if freeze_sps:
        for p in model.patch_embed.parameters():
            p.requires_grad_(False)
    wrapped = FrozenSPS(model, STEPS) if freeze_sps else TimeMean(model, STEPS)
    pairs = STEPS * len(model.blocks)

    def extra() -> torch.Tensor:
        loss = ponder * ponder_loss(model.stats)
        if prior is not None:
            loss = loss + prior * distribution_prior(model.stats, target=(pairs - 1) / 2)
        return loss

    if epochs > 0:
        fit_classifier(wrapped, torch.from_numpy(split.x_train),
                       torch.from_numpy(split.y_train), epochs=epochs, lr=lr, seed=seed,
                       clip=5.0, extra_loss=extra)
    acc, tokens = evaluate(model, torch.from_numpy(split.x_test), split.y_test)
    n = int(model.stats.processed.shape[-1])
    return RunResult(label, dict(config), model.eval(), acc, tokens, n * pairs)


def main(argv: Optional[Sequence[str]] = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ponder", type=float, nargs="+", default=[0.05, 0.2, 0.5])
    ap.add_argument("--merge", type=int, nargs="+", default=[0, 2],
                    help="ToMe pairs merged at block 0 (0: no merging)")
    ap.add_argument("--prior", type=float, default=None, help="distribution prior weight")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--tune-sps", action="store_true",
                    help="fine-tune the SPS too (default: it stays as in the Spikformer)")
    ap.add_argument("--save", default=None, help="run to write, 'ponder:merge' (default: the "
                    "fewest tokens within 1 point of the unadapted accuracy)")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    split = load_digits_split()
    base, meta = load_checkpoint(BASE)
    plain = ATSpikformer(**atsnn_digits(halting=False, readout="final"))
    plain.load_state_dict(base.state_dict())
    acc0, tok0 = evaluate(plain, torch.from_numpy(split.x_test), split.y_test)
    print(f"unadapted Spikformer: accuracy {acc0:.4f}, tokens {tok0:.1f}")
    runs = []
    for r in args.merge:
        for p in args.ponder:
            cfg = atsnn_digits(merge="bipartite" if r else "none", merge_r=r)
            t0 = time.time()
            run = train(cfg, p, epochs=args.epochs, seed=args.seed, prior=args.prior,
                        label=f"{p}:{r}", lr=args.lr, freeze_sps=not args.tune_sps)
            runs.append(run)
            print(f"ponder {p:<6} merge {r}: accuracy {run.accuracy:.4f}, tokens "
                  f"{run.tokens:.1f} / {run.full_tokens} ({1 - run.tokens / tok0:+.1%} fewer) "
                  f"in {time.time() - t0:.0f} s", flush=True)
    if args.save is not None:
        chosen = [r for r in runs if r.label == args.save]
        if not chosen:
            raise SystemExit(f"--save {args.save}: no such run ({[r.label for r in runs]})")
        best = chosen[0]
    else:
        ok = [r for r in runs if r.accuracy >= acc0 - 0.01] or runs
        best = min(ok, key=lambda r: (r.tokens, -r.accuracy))
    save_checkpoint("atsnn", best.config, best.model, args.out, input_shape=[1, 8, 8])
    print(f"wrote {args.out} (run {best.label}: accuracy {best.accuracy:.4f}, tokens "
          f"{best.tokens:.1f})")


if __name__ == "__main__":
    main()
