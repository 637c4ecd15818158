"""Random Spike Masking sweep: SNN accuracy, synaptic work and energy against the drop ratio p.

Default path (what exists today): the registry ``cnn`` (QCFS, L=8, average
pooling) with a ``SpikeMask(p, role='conv_out')`` after each hidden QCFS
activation, trained on sklearn's digits WITH the mask on (as MST trains),
converted with ``convert_mst`` and simulated for T steps on the digits test
split; the masks stay on in the SNN (fresh draw every step). This is a small
CNN, NOT MST's Swin transformer: it shows the mechanism, not the paper's
-26.8 % power at p = 0.75 (which masks only the attention path).

``--model PATH`` instead loads a model file (e.g. the mini-MST transformer),
converts it if it holds QCFS, and sets p on its masks with ``--preset`` (the
model is then not retrained per p: only masks trained in keep their training).

Per p it prints: SNN accuracy; synaptic work per inference (synops + activity-
aware MACs, total and in the masked path: the nodes fed by a mask up to the
next neuron); energy per inference under cmos45nm, loihi2, loihi1
(``compare_profiles`` on the run's counts, each profile's default rule); and
each figure's change relative to p = 0.

    .venv/bin/python benchmarks/rsm_masking_sweep.py --plot /tmp/rsm.png
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from torch import nn

from nmtoolchain.convert.mst import convert_mst
from nmtoolchain.datasets import load_digits_split
from nmtoolchain.energy import compare_profiles
from nmtoolchain.frontends.torch_fx import graph_from_module
from nmtoolchain.ir import Graph
from nmtoolchain.methods import apply_rsm, masked_path
from nmtoolchain.models import build_model
from nmtoolchain.nn import QCFS, SpikeMask
from nmtoolchain.training import fit_classifier

CONFIG = {"activation": "qcfs", "pool": "avg", "levels": 8, "threshold": 2.0,
          "channels": [8, 16], "batch_norm": True}
PROFILES = ("cmos45nm", "loihi2", "loihi1")


def masked_cnn(p: float) -> nn.Module:
    """The registry cnn with ``SpikeMask(p, 'conv_out')`` after every QCFS."""
    model = build_model("cnn", CONFIG)
    layers: List[nn.Module] = []
    for m in model.features:
        layers.append(m)
        if isinstance(m, QCFS):
            layers.append(SpikeMask(p, role="conv_out"))
    model.features = nn.Sequential(*layers)
    return model


def train_masked_cnn(p: float, epochs: int, seed: int = 0, lr: float = 3e-3) -> nn.Module:
    """Train :func:`masked_cnn` on digits with the masks on (recipe of
    examples/train_digits_qcfs.py: AdamW, cosine schedule, no decay on λ)."""
    torch.manual_seed(seed)
    split = load_digits_split()
    xtr, ytr = torch.from_numpy(split.x_train), torch.from_numpy(split.y_train)
    model = masked_cnn(p)
    fit_classifier(model, xtr, ytr, epochs=epochs, lr=lr, seed=seed)  # no decay on λ
    return model


def measure(snn: Graph, x: np.ndarray, y: np.ndarray, steps: int) -> Dict[str, object]:
    """Simulate ``steps`` steps on (x, y) once; accuracy, work and energy per inference."""
    from simulators.cycle import simulate

    res = simulate(snn, x, steps)
    out = [n.name for n in snn.outputs()][0]
    logits = res.outputs[out].detach().cpu().numpy().sum(1).reshape(len(x), -1)
    counts = res.counts
    path = masked_path(snn)
    per = float(len(x))
    work = lambda names=None: (counts.total("synops", names)  # noqa: E731
                               + counts.total("macs", names)) / per
    comp = compare_profiles(counts, list(PROFILES), graph=snn)
    return {"acc": float((logits.argmax(-1) == y).mean()),
            "synops": counts.total("synops") / per, "macs": counts.total("macs") / per,
            "work": work(), "work_masked": work(path) if path else 0.0,
            "energy_pj": {pr: float(comp.total[pr]) for pr in PROFILES}}


def rel(x: float, x0: float) -> str:
    return "   n/a" if x0 == 0 else f"{100 * (x - x0) / x0:+6.1f}%"


def sweep(ps: Sequence[float], steps: int, epochs: int, model: Optional[Path],
          preset: str, seed: int) -> List[Dict[str, object]]:
    split = load_digits_split()
    rows = []
    base: Optional[Graph] = None
    if model is not None:
        from nmtoolchain.frontends import load_model

        base = load_model(model)
        if any(n.op_name == "QCFS" for n in base):
            base = convert_mst(base)
    for p in ps:
        t0 = time.time()
        if base is None:
            ann = graph_from_module(train_masked_cnn(p, epochs, seed), (1, 8, 8),
                                    origin=f"masked cnn p={p}")
            snn = apply_rsm(convert_mst(ann), p, roles=["conv_out"], seed=seed)
        else:
            snn = apply_rsm(base, p, preset=preset, seed=seed)
        row = measure(snn, split.x_test, split.y_test, steps)
        row.update(p=p, seconds=time.time() - t0)
        rows.append(row)
    return rows


def print_table(rows: List[Dict[str, object]], label: str, steps: int) -> None:
    r0 = rows[0]
    print(f"RSM sweep on {label}; digits test split, T={steps}; work = synops + activity-aware "
          "MACs per inference (masked path: nodes fed by a mask up to the next neuron)")
    head = (f"{'p':>5} {'acc':>7} {'Δacc':>7} {'work':>10} {'Δ':>7} {'masked path':>11} {'Δ':>7}"
            + "".join(f" {pr + ' µJ':>12} {'Δ':>7}" for pr in PROFILES) + f" {'s':>5}")
    print(head)
    for r in rows:
        line = (f"{r['p']:>5.2f} {100 * r['acc']:>6.2f}% {100 * (r['acc'] - r0['acc']):>+6.2f}p"
                f" {r['work']:>10.0f} {rel(r['work'], r0['work'])}"
                f" {r['work_masked']:>11.0f} {rel(r['work_masked'], r0['work_masked'])}")
        for pr in PROFILES:
            e, e0 = r["energy_pj"][pr], r0["energy_pj"][pr]
            line += f" {e / 1e6:>12.4f} {rel(e, e0)}"
        print(line + f" {r['seconds']:>5.1f}")


def plot(rows: List[Dict[str, object]], path: Path, label: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ps = [r["p"] for r in rows]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.5))
    a1.plot(ps, [100 * r["acc"] for r in rows], "o-")
    a1.set_xlabel("drop ratio p")
    a1.set_ylabel("SNN accuracy (%)")
    for pr in PROFILES:
        e0 = rows[0]["energy_pj"][pr]
        a2.plot(ps, [r["energy_pj"][pr] / e0 for r in rows], "o-", label=pr)
    a2.set_xlabel("drop ratio p")
    a2.set_ylabel("energy / energy at p=0")
    a2.legend()
    fig.suptitle(f"Random Spike Masking on {label}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ps", type=float, nargs="+", default=[0.0, 0.5, 0.75])
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", type=Path, default=None,
                    help="model file to mask instead of training the CNN per p")
    ap.add_argument("--preset", default="mst", help="RSM preset used with --model")
    ap.add_argument("--plot", type=Path, default=None, help="write a PNG here")
    args = ap.parse_args()
    ps = sorted(set(args.ps))
    if ps[0] != 0.0:
        ps = [0.0] + ps  # the reference for relative changes
    label = (f"{args.model.name} (preset {args.preset}, not retrained per p)" if args.model else
             "the QCFS digits CNN (a CNN, not MST's transformer), masks after each hidden "
             "activation, trained with the mask on")
    rows = sweep(ps, args.steps, args.epochs, args.model, args.preset, args.seed)
    print_table(rows, label, args.steps)
    if args.plot:
        plot(rows, args.plot, args.model.name if args.model else "QCFS digits CNN")
        print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()
