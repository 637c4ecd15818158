"""The design card's check of AutoST's energy model (issue 12, step 5).

Candidates drawn from the tiny space, scaled to digits (8x8, one channel,
16 tokens; D divided by ``--shrink``, depth cut to ``--max-depth`` blocks),
each trained briefly with surrogate gradients (BPTT, T = 4). Measured in one
run and printed as a table:

(a) Kendall τ between the FLOPs proxy (syops ops[0] of the scaled model) and
    trained test accuracy;
(b) energy at initialisation (random init, one all-ones image, as AutoST's code)
    against the energy the cycle-level simulator measures for the same
    network after training (digits test images), under cmos45nm (syops rule,
    AutoST's), loihi1, loihi2 and speck (their own rule): the ratio per
    candidate and the Kendall τ of the two rankings per profile.

A plot (``--plot``) shows E_init against E_trained per profile and the proxy
against accuracy.

    .venv/bin/python benchmarks/autost_energy_check.py [--n 10] [--epochs 3] [--max-depth 2] \
        [--workers 2] [--plot out.png]
"""
from __future__ import annotations

import argparse
import random
import time

import numpy as np
import torch
from scipy.stats import kendalltau

from nmtoolchain.datasets import load_digits_split
from nmtoolchain.energy import estimate_energy
from nmtoolchain.frontends.torch_fx import graph_from_module
from nmtoolchain.methods.autost.energy_at_init import default_rule, simulate_init
from nmtoolchain.methods.autost.proxies import config_score
from nmtoolchain.methods.autost.space import SPACES, Candidate, model_config, random_candidate
from nmtoolchain.models import build_model
from nmtoolchain.models.spikformer import TimeMean
from nmtoolchain.training import fit_classifier
from simulators.cycle import Simulator

PROFILES = ("cmos45nm", "loihi1", "loihi2", "speck")
STEPS = 4


def scaled(cand: Candidate, max_depth: int) -> Candidate:
    """The candidate with its first ``max_depth`` blocks (still a tiny-space candidate:
    depths 1-10), so deep draws stay cheap to train instead of being redrawn."""
    d = min(cand.depth, max_depth)
    return Candidate(d, cand.mlp_ratios[:d], cand.heads[:d], cand.embed_dim)


def digits_config(cand, shrink: int):
    d = cand.embed_dim // shrink
    return model_config(cand, embed_dim=d, in_channels=1, input_size=8,
                        pools=[False, False, False, True], num_classes=10)


def energies(graph, counts):
    return {p: estimate_energy(counts, p, default_rule(p), graph=graph).total_pj
            for p in PROFILES}


def measure(task):
    """Score, energy at init, brief training, accuracy and simulated energy of one
    candidate: (cand, config, score, accuracy, E_init, E_trained, seconds)."""
    c, shrink, epochs, seed, samples = task
    threads = 1 if multiprocessing_child() else 2
    torch.set_num_threads(threads)
    split = load_digits_split()
    cfg = digits_config(c, shrink)
    score = config_score(cfg)
    g0, n0 = simulate_init(cfg, batch=1, seed=seed)  # one all-ones image
    e_init = energies(g0, n0)
    torch.manual_seed(seed)
    model = build_model("spikformer", cfg)
    t0 = time.time()
    fit_classifier(TimeMean(model, STEPS), torch.from_numpy(split.x_train),
                   torch.from_numpy(split.y_train), epochs=epochs, lr=3e-3,
                   seed=seed, clip=5.0, threads=threads)
    model.eval()
    with torch.no_grad():
        pred = TimeMean(model, STEPS)(torch.from_numpy(split.x_test)).argmax(-1).numpy()
    acc = float((pred == split.y_test).mean())
    g1 = graph_from_module(model, (1, 8, 8), origin="trained")
    run = Simulator(g1, "float").run(split.x_test[:samples], STEPS)
    return c, cfg, score, acc, e_init, energies(g1, run.counts), time.time() - t0


def multiprocessing_child() -> bool:
    import multiprocessing

    return multiprocessing.parent_process() is not None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--shrink", type=int, default=8)
    ap.add_argument("--max-depth", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--plot", default=None)
    ap.add_argument("--workers", type=int, default=1, help="candidates trained at once")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    space = SPACES["tiny"]
    cands = []
    tries = 0
    while len(cands) < args.n and tries < 100000:
        tries += 1
        c = scaled(random_candidate(space, rng), args.max_depth)
        if c not in cands:
            cands.append(c)
    t_all = time.time()
    todo = [(c, args.shrink, args.epochs, args.seed, args.samples) for c in cands]
    if args.workers > 1:  # one candidate per process, torch on one thread each
        import concurrent.futures as cf
        import multiprocessing

        with cf.ProcessPoolExecutor(args.workers,
                                    mp_context=multiprocessing.get_context("spawn")) as pool:
            rows = list(pool.map(measure, todo))
    else:
        rows = [measure(t) for t in todo]
    for c, cfg, score, acc, _, _, secs in rows:
        print(f"{c.label():>28} D'={cfg['embed_dim']:3d} acc {acc:.3f} "
              f"GFLOPs {score.gflops:.5f} train+simulate {secs:.0f} s", flush=True)

    print(f"\n{len(rows)} candidates, {args.epochs} epochs each, {time.time() - t_all:.0f} s")
    head = f"{'candidate':>28} {'params':>7} {'proxy':>8} {'acc':>6}"
    for p in PROFILES:
        head += f" {p + ' init/trained':>22}"
    print(head)
    for c, cfg, s, acc, ei, et, _ in rows:
        line = f"{c.label():>28} {s.parameters:7d} {s.flops_syops / 1e6:7.2f}M {acc:6.3f}"
        for p in PROFILES:
            line += f" {ei[p] * 1e-6:8.3f}/{et[p] * 1e-6:8.3f} uJ"
        print(line)
    proxy = [r[2].flops_syops for r in rows]
    accs = [r[3] for r in rows]
    tau, pv = kendalltau(proxy, accs)
    print(f"\n(a) Kendall tau(FLOPs proxy, trained accuracy) = {tau:.3f} (p = {pv:.3f})")
    print("(b) energy at init vs trained, per profile:")
    for p in PROFILES:
        ei = np.array([r[4][p] for r in rows])
        et = np.array([r[5][p] for r in rows])
        t, pv = kendalltau(ei, et)
        ratio = ei / et
        print(f"  {p:>9}: ratio init/trained median {np.median(ratio):.3f} "
              f"(min {ratio.min():.3f}, max {ratio.max():.3f}); Kendall tau of rankings "
              f"{t:.3f} (p = {pv:.3f})")
    if args.plot:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, axes = plt.subplots(1, len(PROFILES) + 1, figsize=(4 * (len(PROFILES) + 1), 3.6))
        for ax, p in zip(axes, PROFILES):
            ax.loglog([r[5][p] * 1e-6 for r in rows], [r[4][p] * 1e-6 for r in rows], "o")
            lo = min(min(r[4][p], r[5][p]) for r in rows) * 1e-6
            hi = max(max(r[4][p], r[5][p]) for r in rows) * 1e-6
            ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
            ax.set_title(p)
            ax.set_xlabel("trained, simulated (uJ)")
            ax.set_ylabel("at init (uJ)")
        axes[-1].plot(proxy, accs, "o")
        axes[-1].set_xlabel("FLOPs proxy (syops ops)")
        axes[-1].set_ylabel("test accuracy")
        fig.tight_layout()
        fig.savefig(args.plot, dpi=100)
        print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()
