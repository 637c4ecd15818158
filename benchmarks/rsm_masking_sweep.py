"""Random Spike Masking sweep: accuracy, synaptic work and energy against the drop ratio p.

Three modes:

``--arch cnn`` (default): the registry ``cnn`` (QCFS, L=8, average pooling)
with a ``SpikeMask(p, role='conv_out')`` after each hidden QCFS activation,
trained on sklearn's digits WITH the mask on (as MST trains), converted with
``convert_mst`` and simulated for T steps on the digits test split; the masks
stay on in the SNN (fresh draw every step). A small CNN, NOT MST's
transformer: it shows the mechanism, not the paper's -26.8 % power.

``--arch mini_mst [--preset mst|mst+mlp]``: the mini-MST transformer of
``examples/train_digits_mst.py`` (its CONFIG and training recipe), TRAINED per
p with the masks on: ``mask_p = p`` on q, k and the attention-score spikes,
and for ``mst+mlp`` also ``mlp_mask_p = p`` on the inputs of both MLP linears
(the paper's Fig. 2(e), absent from MST's released code). ``--seeds N``
(default 3) trains seeds ``seed .. seed+N-1`` per p and prints mean ± s.d.
[min, max] over seeds; ``--presets mst mst+mlp`` sweeps both in one run (p = 0
is one model per seed shared by both: no mask is on); ``--jobs`` runs the
tasks in worker processes. Every task trains and simulates on ONE torch
thread, so the figures do not depend on ``--jobs`` or on the machine's thread
count (nmtoolchain.training). The detailed tables below are printed for the
first seed. Each model is converted
(``convert_mst``), its masks get p and distinct seeds (``apply_rsm``) and it is
simulated T steps (default 32) on the digits test split with the masks on.
Work is reported in two views (``reference/seeds.md`` §2.4):

* graph: what the graph executes, as the simulator counts it; softmax makes
  the attention matrix P dense, so P·V is dense activity-aware MACs;
* spiking: the paper's view, where a masked score spike does not trigger its
  multiplication with V: P·V re-booked as (score spikes passed by the mask) ×
  (V's last dimension) synops by
  :func:`nmtoolchain.methods.rsm.spiking_view_counts`.

Energy of either view is ``compare_profiles`` on that view's RunCounts (never
a private formula): cmos45nm under its default rule (spikformer: Σ fr·T·FLOPs
of weighted layers, MatMuls not counted), cmos45nm under the ``fanout`` rule
(seeds.md §2.5's E_AC·ΣSOP + E_MAC·ΣMAC, MatMuls included), loihi2 and loihi1
(fanout, plus neuron, spike and static terms). Printed: ANN and SNN accuracy;
SOPs of Q·Kᵀ, of P·V, of the attention module (q, k, v, proj, Q·Kᵀ, P·V), of
the masked path and of the whole net; energy per profile; changes relative
to p = 0; the within-model effect (each p's trained weights simulated with
its masks off and on, which separates masking from the drift between models
trained at different p); and per-layer masked/unmasked ratios along the
attention path. ``--plot`` draws accuracy (±1 binomial s.e.) and energy
relative to p = 0 for every profile and both views, with the paper's point.

``--model PATH``: loads a model file (e.g. the bundled mini-MST), converts it
if it holds QCFS and sets p on its masks with ``--preset``, WITHOUT retraining
(only masks trained in keep their training); graph view only.

    .venv/bin/python benchmarks/rsm_masking_sweep.py --plot /tmp/rsm.png
    .venv/bin/python benchmarks/rsm_masking_sweep.py --arch mini_mst --plot /tmp/rsm_mst.png
    .venv/bin/python benchmarks/rsm_masking_sweep.py --arch mini_mst --preset mst+mlp

The mini-MST table of issue 18 (README, MST section) comes from

    .venv/bin/python benchmarks/rsm_masking_sweep.py --arch mini_mst --ps 0 0.5 0.75 \
        --seeds 3 --presets mst mst+mlp --epochs 15 --jobs 2 [--json rows.json]

(15 trainings of the 2-block shifted-window mini-MST, 15 epochs instead of the
bundled model's 60 to fit a shared 2-core CPU: about 30 minutes there).
``--json`` writes every task's figures with the thread counts; ``--from-json``
re-prints the multi-seed summaries from such a file. Thread counts: torch's
CPU kernels sum in a thread-count-dependent order (the same seed trained 3
epochs on 1 and on 2 threads gave weights up to 0.10 apart), so every task
trains and simulates on ``TASK_THREADS`` = 1 thread whatever the host has or
``--jobs`` says; the same command with OMP_NUM_THREADS=1 --jobs 1 and with
OMP_NUM_THREADS=2 --jobs 2 gives identical figures (checked with --seeds 1 --ps 0
0.75 --epochs 2 --steps 8 and --json: every figure equal, only timings differ). The CNN sweep takes about
1.5 minutes.
"""
from __future__ import annotations

import argparse
import sys
import importlib.util
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from nmtoolchain.convert.mst import convert_mst
from nmtoolchain.datasets import load_digits_split
from nmtoolchain.energy import compare_profiles
from nmtoolchain.frontends.torch_fx import graph_from_module
from nmtoolchain.ir import Graph
from nmtoolchain.methods.rsm import (PRESETS, apply_rsm, masked_path, score_value_matmuls,
                                     spiking_view_counts)
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


# ----------------------------------------------------------------- mini-MST
MST_EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "train_digits_mst.py"
WEIGHTED = ("Linear", "Affine", "Conv1d", "Conv2d")
VIEWS = ("graph", "spiking")
#: energy columns: (label, profile, rule or None for the profile's default rule)
ENERGY_COLUMNS = (("cmos45nm", "cmos45nm", None), ("cmos45nm/fanout", "cmos45nm", "fanout"),
                  ("loihi2", "loihi2", None), ("loihi1", "loihi1", None))
#: torch CPU threads of every sweep task (training and simulation): torch's kernels sum
#: in a thread-count-dependent order, so the count is fixed, not taken from the host
TASK_THREADS = 1
PAPER_POWER_CHANGE = -0.268  # MST at p = 0.75, "with no performance drop" (seeds.md §2.4)


def _mst_example():
    """examples/train_digits_mst.py as a module (its CONFIG and train())."""
    spec = importlib.util.spec_from_file_location("train_digits_mst", MST_EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def train_masked_mst(p: float, preset: str, epochs: int, seed: int) -> Tuple[nn.Module, float]:
    """The example's mini-MST trained with the preset's masks at ratio p:
    (module in eval mode, ANN test accuracy with the masks on)."""
    ex = _mst_example()
    cfg = dict(ex.CONFIG, mask_p=p, mlp_mask_p=p if preset == "mst+mlp" else 0.0)
    return ex.train(cfg, epochs, seed)


def _single(nodes: List[str]) -> Optional[str]:
    return nodes[0] if len(nodes) == 1 else None


def _back_to_weighted(g: Graph, name: str) -> Tuple[Optional[str], Optional[str]]:
    """From ``name`` up single-input nodes to the first weighted node:
    (first neuron passed, weighted node)."""
    neuron = None
    cur = g[name]
    while cur.op_name not in WEIGHTED:
        if cur.op.is_neuron and neuron is None:
            neuron = cur.name
        if len(cur.inputs) != 1:
            return neuron, None
        cur = g[cur.inputs[0]]
    return neuron, cur.name


def _forward(g: Graph, name: str, want) -> Optional[str]:
    """From ``name`` down single-user nodes to the first node with ``want(node)``."""
    cur = _single([u.name for u in g.users(name)])
    while cur is not None and not want(g[cur]):
        cur = _single([u.name for u in g.users(cur)])
    return cur


def attention_layout(g: Graph) -> List[Dict[str, Optional[str]]]:
    """Per attention block (one per P·V match of ``score_value_matmuls``), the
    node names along its path: q, k, v (weighted), qk (Q·Kᵀ), score_if,
    score_mask, pv (P·V), attn_v_if, proj; plus fc1, fc2 of the MLP that
    follows the next 'mlp_in' mask, when there is one. Found by structure."""
    mlp_masks = [n.name for n in g if n.op_name == "SpikeMask"
                 and n.annotations.get("rsm_role") == "mlp_in"]
    order = [n.name for n in g]
    out = []
    for m in score_value_matmuls(g):
        pv, mask = str(m["matmul"]), str(m["mask"])
        cur, score_if = g[mask].inputs[0], None
        while g[cur].op_name != "MatMul" and len(g[cur].inputs) == 1:
            if g[cur].op.is_neuron and score_if is None:
                score_if = cur
            cur = g[cur].inputs[0]
        qk = cur if g[cur].op_name == "MatMul" else None
        row: Dict[str, Optional[str]] = {"qk": qk, "score_if": score_if, "score_mask": mask,
                                         "score_events": str(m["events_node"]), "pv": pv}
        row["q"] = _back_to_weighted(g, g[qk].inputs[0])[1] if qk else None
        row["k"] = _back_to_weighted(g, g[qk].inputs[1])[1] if qk else None
        row["v"] = _back_to_weighted(g, g[pv].inputs[1])[1]
        row["attn_v_if"] = _forward(g, pv, lambda n: n.op.is_neuron)
        row["proj"] = (_forward(g, row["attn_v_if"], lambda n: n.op_name in WEIGHTED)
                       if row["attn_v_if"] else None)
        after = [mm for mm in mlp_masks if order.index(mm) > order.index(pv)]
        row["fc1"] = _forward(g, after[0], lambda n: n.op_name in WEIGHTED) if after else None
        fc1_if = _forward(g, row["fc1"], lambda n: n.op.is_neuron) if row["fc1"] else None
        row["fc2"] = _forward(g, fc1_if, lambda n: n.op_name in WEIGHTED) if fc1_if else None
        out.append(row)
    return out


#: per-layer table: (key in the layout, label, quantity)
LAYER_ROWS = (("q", "q Linear", "sops"), ("k", "k Linear", "sops"), ("v", "v Linear", "sops"),
              ("qk", "Q·Kᵀ", "sops"), ("score_if", "score IF", "spikes"),
              ("score_mask", "score mask", "passed"), ("pv", "P·V graph", "ops"),
              ("pv", "P·V spiking", "ops_sv"), ("attn_v_if", "attn·V IF", "spikes"),
              ("proj", "proj Linear", "sops"), ("fc1", "MLP fc1", "sops"),
              ("fc2", "MLP fc2", "sops"))


def measure_mst(snn: Graph, x: np.ndarray, y: np.ndarray, steps: int,
                roles: Sequence[str]) -> Dict[str, object]:
    """Simulate once; accuracy, work of both views and energy per inference."""
    from simulators.cycle import simulate

    res = simulate(snn, x, steps)
    out = [n.name for n in snn.outputs()][0]
    logits = res.outputs[out].detach().cpu().numpy().sum(1).reshape(len(x), -1)
    per = float(len(x))
    views = {"graph": res.counts, "spiking": spiking_view_counts(snn, res.counts)}
    layout = attention_layout(snn)
    path = masked_path(snn, roles=roles)
    row: Dict[str, object] = {"acc": float((logits.argmax(-1) == y).mean()), "work": {},
                              "energy_pj": {}, "layers": []}
    for view, c in views.items():
        work = lambda names=None: (c.total("synops", names) + c.total("macs", names)) / per  # noqa
        attn = [n for b in layout for k in ("q", "k", "v", "qk", "pv", "proj") if (n := b[k])]
        row["work"][view] = {
            "qk": work([b["qk"] for b in layout if b["qk"]]), "pv": work([b["pv"] for b in layout]),
            "attn": work(attn), "path": work(path),
            "sops": c.total("synops") / per, "macs": c.total("macs") / per, "total": work(),
            # every preset's masked path: p = 0 is one model shared by the presets
            "path_of": {pr: work(masked_path(snn, roles=PRESETS[pr])) for pr in PRESETS}}
        energy = {}
        for label, prof, rule in ENERGY_COLUMNS:
            comp = compare_profiles(c, [prof], reference=prof, rule=rule, graph=snn)
            energy[label] = float(comp.total[prof])
        row["energy_pj"][view] = energy
    g, sv = views["graph"], views["spiking"]
    for b in layout:
        vals = {}
        for key, label, what in LAYER_ROWS:
            n = b.get(key)
            if n is None:
                continue
            if what in ("sops", "ops"):  # synops + MACs as the graph executes
                v = g.total("synops", [n]) + g.total("macs", [n])
            elif what == "ops_sv":
                v = sv.total("synops", [n]) + sv.total("macs", [n])
            elif what == "spikes":
                v = g.total("spikes_out", [n])
            else:  # spikes the mask passed = non-zero inputs of the node right after it
                v = g.total("events_in", [b["score_events"]])
            vals[label] = (n, v / per)
        row["layers"].append(vals)
    return row


def sweep_mst(ps: Sequence[float], steps: int, epochs: int, preset: str,
              seed: int) -> List[Dict[str, object]]:
    """Train, convert and measure the mini-MST once per p (module docstring)."""
    split = load_digits_split()
    roles = PRESETS[preset]
    rows = []
    for p in ps:
        t0 = time.time()
        model, ann_acc = train_masked_mst(p, preset, epochs, seed)
        t1 = time.time()
        ann = graph_from_module(model, (1, 8, 8), origin=f"mini-MST {preset} p={p}")
        converted = convert_mst(ann, timesteps=steps)
        snn = apply_rsm(converted, p, preset=preset, seed=seed)
        row = measure_mst(snn, split.x_test, split.y_test, steps, roles)
        row.update(p=p, ann_acc=ann_acc, train_s=t1 - t0, sim_s=time.time() - t1)
        # the same trained weights with the masks off at inference: separates the direct
        # effect of masking from the drift between models trained at different p
        row["off"] = row if p == 0 else measure_mst(
            apply_rsm(converted, 0.0, preset=preset, seed=seed), split.x_test, split.y_test,
            steps, roles)
        rows.append(row)
    return rows


def _mst_task(task: Tuple[str, int, float, int, int, bool]) -> Dict[str, object]:
    """One (preset, seed, p) of the multi-seed sweep, in its own process on one
    thread: train, convert, mask, measure (masks off too when ``with_off``)."""
    import torch

    torch.set_num_threads(TASK_THREADS)  # simulation sums in a thread-independent order too
    preset, seed, p, steps, epochs, with_off = task
    split = load_digits_split()
    roles = PRESETS[preset]
    t0 = time.time()
    model, ann_acc = train_masked_mst(p, preset, epochs, seed)
    t1 = time.time()
    converted = convert_mst(graph_from_module(model, (1, 8, 8)), timesteps=steps)
    snn = apply_rsm(converted, p, preset=preset, seed=seed)
    row = measure_mst(snn, split.x_test, split.y_test, steps, roles)
    row.update(p=p, seed=seed, preset=preset, ann_acc=ann_acc, train_s=t1 - t0,
               sim_s=time.time() - t1)
    if with_off and p > 0:
        row["off"] = measure_mst(apply_rsm(converted, 0.0, preset=preset, seed=seed),
                                 split.x_test, split.y_test, steps, roles)
    return row


def _progress(row: Dict[str, object], done: int, total: int) -> Dict[str, object]:
    """Print one finished task (so a long sweep shows its results as they come); returns it."""
    print(f"task {done}/{total}: preset {row['preset']} seed {row['seed']} p={row['p']:g}: "
          f"ANN {100 * row['ann_acc']:.2f}%, SNN {100 * row['acc']:.2f}%, "
          f"train {row['train_s']:.0f} s, simulate {row['sim_s']:.0f} s", flush=True)
    return row


def sweep_mst_seeds(ps: Sequence[float], steps: int, epochs: int, presets: Sequence[str],
                    seeds: Sequence[int], jobs: int) -> Dict[str, Dict[int, List[Dict]]]:
    """preset -> seed -> rows by p; every task trains on one thread in its own
    process, so the figures do not depend on ``jobs`` or the machine's threads.
    p = 0 is one model shared by the presets (no mask is on at p = 0)."""
    tasks = [(presets[0], s, 0.0, steps, epochs, False) for s in seeds]
    tasks += [(pr, s, p, steps, epochs, s == seeds[0]) for pr in presets for s in seeds
              for p in ps if p > 0]
    rows = []
    if jobs > 1:
        import multiprocessing

        with multiprocessing.get_context("spawn").Pool(jobs) as pool:
            for row in pool.imap_unordered(_mst_task, tasks, chunksize=1):
                rows.append(_progress(row, len(rows) + 1, len(tasks)))
    else:
        for t in tasks:
            rows.append(_progress(_mst_task(t), len(rows) + 1, len(tasks)))
    zero = {r["seed"]: r for r in rows if r["p"] == 0}
    out: Dict[str, Dict[int, List[Dict]]] = {}
    for pr in presets:
        for sd in seeds:
            mine = [zero[sd]] + sorted((r for r in rows if r["preset"] == pr and r["seed"] == sd
                                        and r["p"] > 0), key=lambda r: r["p"])
            out.setdefault(pr, {})[sd] = mine
    return out


def write_rows(path: Path, runs: Dict[str, Dict[int, List[Dict]]], argv: Sequence[str],
               jobs: int, steps: int, epochs: int) -> None:
    """Every task's row as JSON, with the command and the thread counts (training
    and simulation: :data:`TASK_THREADS` per task whatever the host has)."""
    import json

    import torch

    doc = {"command": " ".join(argv), "host_torch_threads": torch.get_num_threads(),
           "task_threads": TASK_THREADS, "jobs": jobs, "steps": steps, "epochs": epochs,
           "runs": {pr: {str(sd): rows for sd, rows in by.items()} for pr, by in runs.items()}}
    path.write_text(json.dumps(doc, indent=1, default=float))
    print(f"wrote {path}")


def reprint(path: Path) -> None:
    """The multi-seed summaries of a :func:`write_rows` file, without running anything."""
    import json

    doc = json.loads(path.read_text())
    print(f"from {path}: command {doc['command']}; host torch threads "
          f"{doc['host_torch_threads']}, task threads {doc['task_threads']}, jobs {doc['jobs']}")
    for preset, by in doc["runs"].items():
        rows = {int(sd): r for sd, r in by.items()}
        steps, epochs = doc.get("steps", "?"), doc.get("epochs", "?")
        print_seed_summary(rows, preset, steps, epochs)


def _ms(values: Sequence[float], scale: float = 100.0, unit: str = "") -> str:
    """mean ± sample s.d. [min, max] (s.d. over seeds)."""
    v = scale * np.asarray(values, dtype=float)
    sd = v.std(ddof=1) if len(v) > 1 else 0.0
    return f"{v.mean():6.2f}{unit} ± {sd:4.2f} [{v.min():6.2f}, {v.max():6.2f}]"


def _path_work(row: Dict[str, object], view: str, preset: str) -> float:
    """Work per inference on ``preset``'s masked path in ``view`` (rows without
    ``path_of``, from older files: the path of the roles the row was measured with)."""
    work = row["work"][view]
    return work.get("path_of", {}).get(preset, work["path"])


def print_seed_summary(by_seed: Dict[int, List[Dict]], preset: str, steps: int,
                       epochs: int) -> None:
    """Per p: accuracies and energy changes over seeds (mean ± s.d. [min, max])."""
    seeds = sorted(by_seed)
    ps = [r["p"] for r in by_seed[seeds[0]]]
    labels = [c[0] for c in ENERGY_COLUMNS]
    paper = " (paper-figure MLP mask, not MST's released code)" if preset == "mst+mlp" else \
        " (MST's released masking: q, k, scores)"
    print(f"\n== preset {preset}{paper}: {len(seeds)} seeds {seeds}, T={steps}, "
          f"{epochs} epochs, training and simulation on 1 thread; mean ± s.d. [min, max] "
          "over seeds ==")
    print(f"{'p':>5} {'ANN acc %':>30} {'SNN acc %':>30} {'ΔSNN vs p=0 (paired), points':>32}")
    for i, p in enumerate(ps):
        ann = [by_seed[s][i]["ann_acc"] for s in seeds]
        snn = [by_seed[s][i]["acc"] for s in seeds]
        d = [by_seed[s][i]["acc"] - by_seed[s][0]["acc"] for s in seeds]
        print(f"{p:>5.2f} {_ms(ann):>30} {_ms(snn):>30} {_ms(d):>32}")
    print("attention share of the work per inference (graph view: q, k, v, proj, Q·Kᵀ, P·V "
          "over the whole net), %:")
    for i, p in enumerate(ps):
        share = [by_seed[s][i]["work"]["graph"]["attn"] / by_seed[s][i]["work"]["graph"]["total"]
                 for s in seeds]
        print(f"{p:>5.2f} {_ms(share):>30}")
    print("masked-path share of the work per inference (the nodes this preset's masks feed, "
          "up to the next neuron: the most RSM can remove), %; graph view | spiking view:")
    for i, p in enumerate(ps):
        cells = [_ms([_path_work(by_seed[s][i], v, preset) / by_seed[s][i]["work"][v]["total"]
                      for s in seeds]) for v in VIEWS]
        print(f"{p:>5.2f} {cells[0]:>30} | {cells[1]}")
    print("energy change vs p=0 (same seed), % (mean ± s.d. [min, max]); profile/rule, view:")
    for view in VIEWS:
        for lab in labels:
            cells = []
            for i, p in enumerate(ps[1:], start=1):
                ch = [by_seed[s][i]["energy_pj"][view][lab] / by_seed[s][0]["energy_pj"][view][lab]
                      - 1 for s in seeds]
                cells.append(f"p={p:g}: {_ms(ch)}")
            print(f"  {lab:>15} {view:>8}  " + "   ".join(cells))


def _ratio(x: float, x0: float) -> str:
    return "   n/a" if x0 == 0 else f"{x / x0:6.3f}"


def print_mst_tables(rows: List[Dict[str, object]], preset: str, steps: int, n_test: int) -> None:
    r0 = rows[0]
    roles = ", ".join(PRESETS[preset])
    print(f"RSM sweep on the mini-MST (examples/train_digits_mst.py CONFIG), preset {preset} "
          f"(masks on {roles}), each p TRAINED with the masks on; digits test split "
          f"({n_test} images), T={steps}, masks on in the SNN (fresh draw every step)")
    se = 100 * np.sqrt(r0["acc"] * (1 - r0["acc"]) / n_test)
    print(f"\naccuracy (1 binomial s.e. on {n_test} images ≈ {se:.1f} points)")
    print(f"{'p':>5} {'ANN acc':>8} {'ΔANN':>7} {'SNN acc':>8} {'ΔSNN':>7} {'train s':>8} "
          f"{'sim s':>6}")
    for r in rows:
        dann = 100 * (r["ann_acc"] - r0["ann_acc"])
        print(f"{r['p']:>5.2f} {100 * r['ann_acc']:>7.2f}% {dann:>+6.2f}p"
              f" {100 * r['acc']:>7.2f}% {100 * (r['acc'] - r0['acc']):>+6.2f}p"
              f" {r['train_s']:>8.1f} {r['sim_s']:>6.1f}")
    print("\nwork per inference: synops (accumulates of spikes) + activity-aware MACs; "
          "view graph = as executed (P·V dense MACs), spiking = P·V booked as passed score "
          "spikes × d (seeds.md §2.4); attention = q, k, v, proj, Q·Kᵀ, P·V; masked path = "
          f"nodes fed by a {roles} mask up to the next neuron; Δ vs p=0 in the same view")
    cols = (("qk", "Q·Kᵀ"), ("pv", "P·V"), ("attn", "attention"), ("path", "masked path"),
            ("sops", "net synops"), ("macs", "net MACs"), ("total", "net total"))
    print(f"{'p':>5} {'view':>8}" + "".join(f" {h:>11} {'Δ':>7}" for _, h in cols))
    for view in VIEWS:
        for r in rows:
            w = dict(r["work"][view], path=_path_work(r, view, preset))
            w0 = dict(r0["work"][view], path=_path_work(r0, view, preset))
            print(f"{r['p']:>5.2f} {view:>8}" + "".join(
                f" {w[k]:>11.0f} {rel(w[k], w0[k])}" for k, _ in cols))
    print("\nenergy per inference (µJ) = compare_profiles on the view's counts; cmos45nm = its "
          "default spikformer rule (weighted layers only, MatMuls not counted), "
          "cmos45nm/fanout = E_AC·Σsynops + E_MAC·ΣMACs (seeds.md §2.5); "
          "loihi = fanout + neuron, spike, static")
    labels = [c[0] for c in ENERGY_COLUMNS]
    print(f"{'p':>5} {'view':>8}" + "".join(f" {lab:>15} {'Δ':>7}" for lab in labels))
    for view in VIEWS:
        for r in rows:
            e, e0 = r["energy_pj"][view], r0["energy_pj"][view]
            print(f"{r['p']:>5.2f} {view:>8}" + "".join(
                f" {e[lab] / 1e6:>15.4f} {rel(e[lab], e0[lab])}" for lab in labels))
    print("\nwithin-model effect: each p's trained weights simulated with its masks OFF "
          "(p=0 at inference) and ON; values = masks off (µJ for energy), Δ = on vs off in "
          "the same view (no drift between models)")
    print(f"{'p':>5} {'view':>8} {'acc off':>8} {'acc on':>8} {'net total off':>14} {'Δ':>7}"
          + "".join(f" {lab:>15} {'Δ':>7}" for lab in labels))
    for view in VIEWS:
        for r in rows[1:]:
            off = r["off"]
            w, w0 = r["work"][view]["total"], off["work"][view]["total"]
            e, e0 = r["energy_pj"][view], off["energy_pj"][view]
            print(f"{r['p']:>5.2f} {view:>8} {100 * off['acc']:>7.2f}% {100 * r['acc']:>7.2f}%"
                  f" {w0:>14.0f} {rel(w, w0)}" + "".join(
                      f" {e0[lab] / 1e6:>15.4f} {rel(e[lab], e0[lab])}" for lab in labels))
    print("\nper-layer values per inference at p=0 and masked/unmasked ratios (value at p / "
          "value at p=0; each p is its own trained model, so firing rates differ too). "
          "Naive factors with unchanged firing: Q·Kᵀ (1-p)², score mask and P·V spiking (1-p)")
    head = f"{'layer':<12} {'node':<26} {'p=0':>10}" + "".join(
        f" {'p=' + format(r['p'], 'g'):>8}" for r in rows[1:])
    for bi, block in enumerate(r0["layers"]):
        print(f"block {bi}:\n{head}")
        for label, (node, v0) in block.items():
            line = f"{label:<12} {node:<26} {v0:>10.1f}"
            for r in rows[1:]:
                v = r["layers"][bi].get(label, (node, float("nan")))[1]
                line += f" {_ratio(v, v0):>8}"
            print(line)
    print("\n(1-p)² = " + ", ".join(f"{(1 - r['p']) ** 2:.4f}" for r in rows[1:])
          + "; (1-p) = " + ", ".join(f"{1 - r['p']:.4f}" for r in rows[1:]))
    at = [r for r in rows if abs(r["p"] - 0.75) < 1e-9]
    if at:
        r = at[0]
        ch = {f"{lab} {view}": (r["energy_pj"][view][lab] - r0["energy_pj"][view][lab])
              / r0["energy_pj"][view][lab] for view in VIEWS for lab in labels}
        print(f"\npaper: MST power {100 * PAPER_POWER_CHANGE:+.1f}% at p=0.75 with no accuracy "
              f"loss. here at p=0.75: SNN accuracy {100 * (r['acc'] - r0['acc']):+.2f} points, "
              f"energy " + ", ".join(f"{k} {100 * v:+.1f}%" for k, v in ch.items()))


def plot_mst(rows: List[Dict[str, object]], path: Path, preset: str, n_test: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ps = [r["p"] for r in rows]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    for key, style, label in (("ann_acc", "o-", "ANN (masks on)"), ("acc", "s-", "SNN")):
        acc = np.array([r[key] for r in rows])
        a1.errorbar(ps, 100 * acc, yerr=100 * np.sqrt(acc * (1 - acc) / n_test), fmt=style,
                    capsize=3, label=label)
    a1.set_xlabel("drop ratio p")
    a1.set_ylabel(f"accuracy (%), ±1 s.e. on {n_test} images")
    a1.legend()
    for i, (label, _, _) in enumerate(ENERGY_COLUMNS):
        color = f"C{i}"
        for view, style in (("graph", "o-"), ("spiking", "s--")):
            e0 = rows[0]["energy_pj"][view][label]
            a2.plot(ps, [r["energy_pj"][view][label] / e0 for r in rows], style, color=color,
                    label=f"{label} ({view})")
    a2.plot([0.75], [1 + PAPER_POWER_CHANGE], "k*", markersize=12, label="MST paper (power)")
    a2.set_xlabel("drop ratio p")
    a2.set_ylabel("energy / energy at p=0")
    a2.legend(fontsize=7)
    fig.suptitle(f"Random Spike Masking on the mini-MST (preset {preset}, trained per p)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", choices=("cnn", "mini_mst"), default="cnn",
                    help="model trained per p (ignored with --model)")
    ap.add_argument("--ps", type=float, nargs="+", default=[0.0, 0.5, 0.75])
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=None,
                    help="training epochs (default: 30 for cnn, 60 for mini_mst)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--seeds", type=int, default=3,
                    help="mini_mst: train this many seeds (seed, seed+1, ...) per p")
    ap.add_argument("--presets", nargs="+", default=None, choices=sorted(PRESETS),
                    help="mini_mst: presets to sweep in one run (default: --preset)")
    ap.add_argument("--jobs", type=int, default=1,
                    help="mini_mst: worker processes (results do not depend on it)")
    ap.add_argument("--model", type=Path, default=None,
                    help="model file to mask instead of training a model per p")
    ap.add_argument("--preset", default="mst", choices=sorted(PRESETS),
                    help="RSM preset used with --model and --arch mini_mst")
    ap.add_argument("--plot", type=Path, default=None, help="write a PNG here")
    ap.add_argument("--from-json", type=Path, default=None,
                    help="re-print the multi-seed summaries of a --json file (no run)")
    ap.add_argument("--json", type=Path, default=None,
                    help="mini_mst: write every task's row (figures, seed, thread counts) "
                         "here; timings under 'train_s'/'sim_s' are the only fields that vary "
                         "between runs")
    args = ap.parse_args()
    ps = sorted(set(args.ps))
    if ps[0] != 0.0:
        ps = [0.0] + ps  # the reference for relative changes
    t0 = time.time()
    if args.from_json:
        reprint(args.from_json)
        return
    if args.arch == "mini_mst" and args.model is None:
        import torch

        presets = args.presets or [args.preset]
        seeds = list(range(args.seed, args.seed + max(1, args.seeds)))
        epochs = args.epochs or 60
        print(f"command: {' '.join(sys.argv)}; torch threads here {torch.get_num_threads()} "
              f"(training and simulation use 1 per task), jobs {args.jobs}")
        runs = sweep_mst_seeds(ps, args.steps, epochs, presets, seeds, args.jobs)
        if args.json:
            write_rows(args.json, runs, sys.argv, args.jobs, args.steps, epochs)
        n_test = len(load_digits_split().y_test)
        for preset in presets:
            rows = runs[preset][seeds[0]]
            print(f"\n#### detail for seed {seeds[0]}, preset {preset}")
            print_mst_tables(rows, preset, args.steps, n_test)
        for preset in presets:
            print_seed_summary(runs[preset], preset, args.steps, epochs)
        if args.plot:
            plot_mst(runs[presets[0]][seeds[0]], args.plot, presets[0], n_test)
            print(f"wrote {args.plot}")
        print(f"total {time.time() - t0:.1f} s")
        return
    label = (f"{args.model.name} (preset {args.preset}, not retrained per p)" if args.model else
             "the QCFS digits CNN (a CNN, not MST's transformer), masks after each hidden "
             "activation, trained with the mask on")
    rows = sweep(ps, args.steps, args.epochs or 30, args.model, args.preset, args.seed)
    print_table(rows, label, args.steps)
    if args.plot:
        plot(rows, args.plot, args.model.name if args.model else "QCFS digits CNN")
        print(f"wrote {args.plot}")
    print(f"total {time.time() - t0:.1f} s")


if __name__ == "__main__":
    main()
