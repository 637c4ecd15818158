"""What ``nmtc search`` writes: every evaluated candidate as JSON lines, the
best as a model config and as an nmtc checkpoint (random initial weights, so
``nmtc inspect``/``simulate``/``report`` take it), and a plot of the proxy
against energy (or clean MACs when no energy was measured) with the Pareto
front (highest proxy for its cost)."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

from nmtoolchain.methods.autost.search import Evaluated, SearchResult
from nmtoolchain.methods.autost.space import model_config


def pareto_front(points: Sequence[Tuple[float, float]]) -> List[int]:
    """Indices of points not dominated (lower cost x and higher proxy y), by cost."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best_y = [], -math.inf
    for i in order:
        if points[i][1] > best_y:
            front.append(i)
            best_y = points[i][1]
    return front


def summary(result: SearchResult) -> Dict[str, object]:
    """JSON-able summary: settings, the best, the top pool, counts, wall time."""
    c = result.config
    return {"space": c.space, "seed": c.seed, "population": c.population,
            "iterations": c.iterations, "select": c.select, "mutations": c.mutations,
            "crossovers": c.crossovers, "s_prob": c.s_prob, "m_prob": c.m_prob,
            "params_window": [c.min_params, c.max_params], "profile": c.profile,
            "energy_weight": c.energy_weight, "energy_budget_j": c.energy_budget_j,
            "fit": None if c.fit is None else f"{c.fit.profile}:{c.fit.max_chips}",
            "evaluated": len(result.evaluated), "draws": result.draws,
            "wall_s": result.wall_s, "energy_at_init": result.energy_setup,
            "best": result.best.as_dict(),
            "best_config": model_config(result.best.candidate, num_classes=c.num_classes),
            "top": [ev.as_dict() for ev in result.top], "notes": list(result.notes)}


def write_results(result: SearchResult, out_dir: Path, checkpoint: bool = True
                  ) -> Dict[str, str]:
    """Write the files into ``out_dir``; returns name -> path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files: Dict[str, str] = {}
    p = out / "candidates.jsonl"
    p.write_text("".join(json.dumps(ev.as_dict()) + "\n" for ev in result.evaluated))
    files["candidates"] = str(p)
    cfg = model_config(result.best.candidate, num_classes=result.config.num_classes)
    p = out / "best_config.json"
    p.write_text(json.dumps({"architecture": "spikformer", "config": cfg,
                             "input_shape": [3, 32, 32]}, indent=2) + "\n")
    files["best_config"] = str(p)
    p = out / "summary.json"
    p.write_text(json.dumps(summary(result), indent=2) + "\n")
    files["summary"] = str(p)
    if checkpoint:
        import torch

        from nmtoolchain.models import build_model, save_checkpoint

        torch.manual_seed(result.config.seed)
        files["best_checkpoint"] = str(save_checkpoint(
            "spikformer", cfg, build_model("spikformer", cfg), out / "best.pt", [3, 32, 32]))
    files["plot"] = str(plot(result.evaluated, out / "proxy_vs_energy.png"))
    return files


def plot(evaluated: Sequence[Evaluated], path: Path) -> Path:
    """Scatter of the FLOPs proxy against energy at init (else clean MACs), front marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with_e = [ev for ev in evaluated if ev.energy_pj is not None]
    evs = with_e or list(evaluated)
    if with_e:
        xs, xlabel = [ev.energy_pj * 1e-9 for ev in evs], "energy at initialisation (mJ)"
    else:
        xs, xlabel = [ev.score.macs_clean / 1e9 for ev in evs], "clean MACs over T (G)"
    ys = [ev.score.gflops for ev in evs]
    front = pareto_front(list(zip(xs, ys)))
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.scatter(xs, ys, s=8, alpha=0.5, label="evaluated")
    ax.plot([xs[i] for i in front], [ys[i] for i in front], "r.-", label="Pareto front")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("FLOPs proxy, syops ops[0] (G)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


__all__ = ["pareto_front", "summary", "write_results", "plot"]
