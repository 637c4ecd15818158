"""AutoST's search on this machine, measured in one run:

* scoring one candidate: the weight-free graph through the shared counter
  (uncached), the cached per-block sum the search uses, and building the torch
  model and tracing it (the route the search avoids), side by side;
* the full default search (population 50, 20 iterations, FLOPs fitness) on a
  space: wall time, candidates evaluated and drawn, the best;
* energy at initialisation (simulated T = 4, all-ones input, cmos45nm/syops)
  for the first N evaluated candidates with 1 and with ``--workers`` processes,
  and the time for all evaluated candidates at that rate (an extrapolation,
  printed as such unless ``--energy-all`` measures it).

    .venv/bin/python benchmarks/autost_search.py [--space small] [--seed 0]
        [--energy-n 4] [--workers 2] [--energy-all]
"""
from __future__ import annotations

import argparse
import time

from nmtoolchain.methods.autost import proxies
from nmtoolchain.methods.autost.evaluate import EnergyJob, Scorer
from nmtoolchain.methods.autost.search import SearchConfig, run_search
from nmtoolchain.methods.autost.space import model_config


def _time(fn, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default="small")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--energy-n", type=int, default=4)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--energy-all", action="store_true")
    args = ap.parse_args()

    res = run_search(SearchConfig(space=args.space, seed=args.seed))
    best = res.best
    print(f"full default search, {args.space} space, seed {args.seed}: {len(res.evaluated)} "
          f"candidates evaluated ({res.draws} drawn) in {res.wall_s:.2f} s")
    print(f"  best {best.candidate.label()}: {best.score.gflops:.3f} GFLOPs (syops), "
          f"{best.score.parameters / 1e6:.3f} M params, clean {best.score.macs_clean / 1e9:.3f} "
          "G MACs")

    cand = best.candidate
    cfg = model_config(cand)
    t_graph = _time(lambda: proxies.config_score(cfg))
    t_cached = _time(lambda: proxies.candidate_score(cand), repeat=20)

    def traced() -> None:
        from nmtoolchain.frontends.torch_fx import graph_from_module
        from nmtoolchain.models.spikformer import build_spikformer
        g = graph_from_module(build_spikformer(cfg), (3, 32, 32), origin="bench")
        proxies.graph_score(g)

    t_torch = _time(traced, repeat=2)
    print("scoring one candidate (best of runs):")
    print(f"  torch build + trace + count : {t_torch * 1e3:9.2f} ms")
    print(f"  weight-free graph + count   : {t_graph * 1e3:9.2f} ms  "
          f"({t_torch / t_graph:.1f}x faster)")
    print(f"  cached block sums (search)  : {t_cached * 1e3:9.4f} ms  "
          f"({t_torch / t_cached:.0f}x faster)")

    n = len(res.evaluated) if args.energy_all else min(args.energy_n, len(res.evaluated))
    cands = [ev.candidate for ev in res.evaluated[:n]]
    job = EnergyJob(batch=args.batch, seed=args.seed)
    walls = {}
    for workers in sorted({1, args.workers}):
        if args.energy_all and workers == 1 and args.workers != 1:
            continue
        with Scorer(job, workers=workers) as scorer:
            t0 = time.perf_counter()
            energies = scorer(cands)
            walls[workers] = time.perf_counter() - t0
        print(f"energy at init of {n} candidates, {workers} worker(s): {walls[workers]:.1f} s "
              f"({walls[workers] / n:.1f} s per candidate; mean {sum(energies) / n * 1e-9:.3f} "
              "mJ under cmos45nm/syops)")
    w = walls.get(args.workers)
    if w is not None and not args.energy_all:
        print(f"  all {len(res.evaluated)} evaluated candidates at that rate with "
              f"{args.workers} workers: about {w / n * len(res.evaluated) / 60:.0f} min "
              "(extrapolated, not measured)")


if __name__ == "__main__":
    main()
