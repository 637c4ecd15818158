"""The one small training loop nmtc's examples and benchmarks share.

AdamW with weight decay on weight matrices only (QCFS's λ, biases, norm
parameters and tables get none, as MST trains them), a cosine schedule over
all steps, seeded shuffled mini-batches, optional gradient-norm clipping.
Deliberately minimal: digits-sized models on a CPU.

Training runs on ``threads`` CPU threads (default 1) whatever the machine has,
because torch's CPU kernels sum in a thread-count-dependent order: with one
thread instead of two the same seed gave models 2-3 points apart (issue 18).
Fixing the count makes a seed reproduce the same weights on any machine.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch
from torch import nn

#: CPU threads training uses by default (see the module docstring)
TRAINING_THREADS = 1


def fit_classifier(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, epochs: int,
                   lr: float = 3e-3, seed: int = 0, batch: int = 64, weight_decay: float = 1e-4,
                   no_decay_names: Sequence[str] = (), clip: Optional[float] = None,
                   threads: int = TRAINING_THREADS,
                   extra_loss: Optional[Callable[[], torch.Tensor]] = None) -> nn.Module:
    """Train ``model`` with cross-entropy on (x, y); returns it in eval mode.

    Parameters with more than one dimension get ``weight_decay`` unless their
    name contains one of ``no_decay_names``; all others get none. ``threads``:
    torch CPU threads while training (restored after); the result is
    deterministic for a given seed and thread count. ``extra_loss``: called after
    each forward pass, its value is added to the cross-entropy (e.g. AT-SNN's
    ponder loss, read from the model's last pass)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        return _fit(model, x, y, epochs=epochs, lr=lr, seed=seed, batch=batch,
                    weight_decay=weight_decay, no_decay_names=no_decay_names, clip=clip,
                    extra_loss=extra_loss)
    finally:
        torch.set_num_threads(previous)


def _fit(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, epochs: int, lr: float,
         seed: int, batch: int, weight_decay: float, no_decay_names: Sequence[str],
         clip: Optional[float], extra_loss: Optional[Callable[[], torch.Tensor]] = None
         ) -> nn.Module:
    decay = [p for n, p in model.named_parameters()
             if p.ndim > 1 and not any(s in n for s in no_decay_names)]
    ids = {id(p) for p in decay}
    rest = [p for p in model.parameters() if id(p) not in ids]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                             {"params": rest, "weight_decay": 0.0}], lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs * ((len(x) + batch - 1) // batch))
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), batch):
            idx = perm[i:i + batch]
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            if extra_loss is not None:
                loss = loss + extra_loss()
            loss.backward()
            if clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), clip)
            opt.step()
            sched.step()
    return model.eval()
