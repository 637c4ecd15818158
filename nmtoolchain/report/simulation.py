"""Energy and latency reports of a simulation run, per hardware profile.

``build_report`` gathers everything a user or CI needs into plain data:
per-layer counts (per sample), energy per layer and per inference for each
profile, time per step, where the analytic model and each hardware profile
disagree (per layer, by how much), and, when asked, the comparison with a
measured reference stored in a profile (e.g. Intel's PilotNet-LIF board run).
Cores per profile come from :func:`nmtoolchain.mapping.place` (the profile's
declared mapper, the call the export makes), and each profile row says which
mapper placed the graph. Rendering (terminal tables, JSON, HTML with plots)
lives here too; none of it computes energy itself: that is :mod:`nmtoolchain.energy`.
"""
from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from hardware_profiles import load_profile
from nmtoolchain.energy import RULES, compare_profiles, estimate_energy, estimate_latency
from nmtoolchain.errors import BadInputError
from nmtoolchain.fileio import atomic_output
from nmtoolchain.ir import Graph
from nmtoolchain.mapping import place
from nmtoolchain.numerics.loihi import readout_outputs

LAYER_COUNTERS = ("events_in", "synops", "macs", "neuron_updates", "spikes_out")


def _accuracy(result: Any, graph: Graph, labels: Optional[np.ndarray]) -> Optional[float]:
    """Class = the output with the largest sum over the run: spikes, or the v of
    a Loihi readout layer (which never fires) when the run kept it."""
    if labels is None:
        return None
    out_node = graph.outputs()[0]
    src = out_node.inputs[0]
    if src in readout_outputs(graph) and src in result.state:
        out = result.state[src]["v"]
    else:
        out = result.outputs[out_node.name]  # (B, T, classes)
    if out.ndim != 3:
        return None
    pred = out.sum(1).argmax(-1).cpu().numpy()
    return float((pred == np.asarray(labels)[: len(pred)]).mean())


def build_report(graph: Graph, result: Any, profiles: Sequence[str], *,
                 reference: str = "cmos45nm", measured: Optional[str] = None,
                 labels: Optional[np.ndarray] = None, inputs: str = "",
                 rules: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """Plain-data report of ``result`` (a SimResult) under ``profiles``; each
    profile's cores are ``place(graph, profile)``.

    ``rules``: counting rules (nmtoolchain.energy.rules). The first prices the
    per-profile rows (each row says its ``rule``); every one is also reported
    under ``by_rule`` (rule -> profile -> ACs, MACs and energy). None: each
    profile's own default rule."""
    counts = result.counts
    per = counts.per_sample()
    loaded = [load_profile(p) for p in profiles]
    ref = load_profile(reference)
    rules = list(rules or [])
    for r in rules:
        if r not in RULES:
            raise BadInputError(f"--rule {r!r} is not one of {', '.join(RULES)}")
    # the profiles as given (a user's file may have any name): looked up by id below,
    # never reloaded by name
    by_id = {p.id: p for p in loaded + [ref]}
    placements = {p.id: place(graph, p) for p in loaded + [ref]}
    comparison = compare_profiles(counts, loaded, reference=ref, placements=placements,
                                  graph=graph, rule=rules[0] if rules else None)
    layers = []
    for name in counts.order:
        row = {k: float(per.counter(name, k).sum()) for k in LAYER_COUNTERS}
        if not any(row.values()):
            continue
        row.update(name=name, op=counts.static[name]["op"],
                   energy_pj={p: comparison.per_node.get(name, {}).get(p, 0.0)
                              for p in comparison.reports},
                   rel_to_reference={p: comparison.relative[p].get(name)
                                     for p in comparison.reports if p != comparison.reference})
        layers.append(row)
    prof_rows = {}
    for pid, rep in comparison.reports.items():
        prof = by_id[pid] if pid in by_id else load_profile(pid)
        lat = rep.latency
        if lat is None and prof.has("time", "synop"):
            lat = estimate_latency(counts, prof, placements.get(pid), graph=graph)
        tot = rep.total()
        placed = rep.placement
        prof_rows[pid] = {
            "name": prof.name if hasattr(prof, "name") else pid,
            "rule": rep.rule,
            "energy_per_inference_pj": tot["total"],
            "dynamic_pj": tot["total"] - tot.get("static", 0.0),
            "static_pj": tot.get("static", 0.0),
            "components_pj": tot,
            "time_per_step_ns": lat.mean_step_ns if lat else None,
            "time_per_inference_ns": lat.total_ns if lat else None,
            "cores": placed.n_cores if placed.mapper != "none" else None,
            "cores_estimated": placed.mapper == "per_layer",
            "mapper": placed.mapper,
            "placement": placed.as_dict(),
            "notes": list(rep.notes) + ([n for n in lat.notes if n not in rep.notes] if lat else
                                        ["analytic model: no time per operation"]),
            # what the figures above are recomputed from (see rebuild_from_json)
            "constants": _constants(prof),
            "cost_model": prof.chip.get("cost_model", "per_op"),
            "hops_per_spike": 1.0,
            "ops_per_node": {n: {"acs": o.acs.tolist(), "macs": o.macs.tolist()}
                             for n, o in rep.ops.per_node.items()},
            "step_ns": lat.step_ns.tolist() if lat else None,
            "barrier_ns": lat.barrier_ns if lat else None,
            "chips": placed.chips,
            "core_ids": {L.name: list(L.cores) for L in placed.layers},
        }
    # a note every profile carries is about the run, not a profile: said once
    common: List[str] = []
    if len(prof_rows) > 1:
        rows_notes = [row["notes"] for row in prof_rows.values()]
        common = [n for n in rows_notes[0] if all(n in r for r in rows_notes[1:])]
        for row in prof_rows.values():
            row["notes"] = [n for n in row["notes"] if n not in common]
    report: Dict[str, Any] = {
        "model": _model_source(graph),
        "notes": common,
        "inputs": inputs,
        "steps": counts.steps, "batch": counts.batch, "numerics": counts.numerics,
        "accuracy": _accuracy(result, graph, labels),
        "totals_per_sample": {k: per.total(k) for k in LAYER_COUNTERS},
        "layers": layers,
        "profiles": prof_rows,
        "reference_profile": comparison.reference,
        "relative_total_to_reference": {p: v["total"] for p, v in comparison.relative.items()},
        "series_per_sample": {n: {k: per.counter(n, k).tolist() for k in SERIES_COUNTERS}
                              for n in counts.order
                              if any(per.counter(n, k).any() for k in SERIES_COUNTERS)},
        "spikes_per_step": [float(x) for x in
                            sum((per.counter(n, "spikes_out") for n in counts.order),
                                np.zeros(counts.steps))],
    }
    tokens = token_summary(graph, counts)
    if tokens is not None:
        report["tokens"] = tokens
    if rules:
        report["by_rule"] = _by_rule(counts, loaded, placements, graph, rules)
    if measured:
        report["measured"] = measured_comparison(measured, prof_rows, loaded)
    return report


#: per-step counters the JSON carries per node, enough to recompute every figure
SERIES_COUNTERS = ("synops", "macs", "neuron_updates", "active_neurons", "spikes_out",
                   "spikes_in", "events_in")


def token_summary(graph: Graph, counts: Any) -> Optional[Dict[str, Any]]:
    """Tokens processed (token x block x step) per sample of a graph with TokenHalt
    nodes (AT-SNN), per block and step, against the unadapted count N x L x T;
    ``sample_map``: per block, (T, N) 0/1 of the first sample. None without them."""
    halts = [n for n in counts.order if n in graph.nodes and graph[n].op_name == "TokenHalt"]
    if not halts:
        return None
    per = counts.per_sample()
    tokens = int(graph[halts[0]].shape[0])
    rows = [per.counter(h, "tokens_active").tolist() for h in halts]
    total = float(sum(sum(r) for r in rows))
    full = tokens * len(halts) * counts.steps
    return {"nodes": halts, "tokens": tokens, "blocks": len(halts), "steps": counts.steps,
            "processed_per_sample": total, "unadapted_per_sample": full,
            "fraction": total / full if full else None,
            "per_block_step": rows,
            "sample_map": [np.asarray(counts.token_masks.get(h, np.zeros((counts.steps, tokens))))
                           .tolist() for h in halts]}


def _constants(prof: Any) -> Dict[str, Dict[str, float]]:
    """The profile's [energy], [time] and [power] values in canonical units (pJ, ns, mW)."""
    out: Dict[str, Dict[str, float]] = {}
    for sec, key, q in prof.quantities():
        if sec in ("energy", "time", "power"):
            out.setdefault(sec, {})[key] = float(q.canonical)
    return out


def _by_rule(counts: Any, loaded: Sequence[Any], placements: Dict[str, Any], graph: Graph,
             rules: Sequence[str]) -> Dict[str, Dict[str, Dict[str, Any]]]:
    """rule -> profile -> the rule's ACs and MACs per inference, and the energy they price to."""
    out: Dict[str, Dict[str, Dict[str, Any]]] = {}
    for rule in rules:
        out[rule] = {}
        for prof in loaded:
            rep = estimate_energy(counts, prof, rule, placements.get(prof.id), graph)
            tot = rep.total()
            out[rule][prof.id] = {
                "rule": rule, "acs": float(sum(o.acs.sum() for o in rep.ops.per_node.values())),
                "macs": float(sum(o.macs.sum() for o in rep.ops.per_node.values())),
                "energy_per_inference_pj": tot["total"],
                "dynamic_pj": tot["total"] - tot.get("static", 0.0),
                "notes": list(rep.ops.notes)}
    return out


def measured_comparison(name: str, prof_rows: Dict[str, Dict[str, Any]],
                        profiles: List[Any]) -> List[Dict[str, Any]]:
    """Estimates next to a measurement stored as ``[reference.<name>]`` in a profile
    (``profiles``: loaded profiles, or names/paths to load)."""
    rows = []
    for given in profiles:
        prof = load_profile(given)
        pid = prof.id
        if not prof.has(f"reference.{name}", "dynamic_energy_per_inference"):
            continue
        sec = f"reference.{name}"
        meas_e = prof.value(sec, "dynamic_energy_per_inference", unit="pJ")
        meas_t = prof.value(sec, "step_time", unit="ns")
        est = prof_rows[pid]
        # a fitted constant whose source names the measured network was fitted on it
        marker = name.split("_")[0].lower()
        fitted = [f"{s}.{k}" for s, k, q in prof.quantities()
                  if q.fitted and marker in q.source.lower()]
        elsewhere = [f"{s}.{k}" for s, k, q in prof.quantities()
                     if q.fitted and marker not in q.source.lower()]
        rows.append({
            "profile": pid, "measurement": name,
            "measured_dynamic_pj": meas_e, "estimated_dynamic_pj": est["dynamic_pj"],
            "energy_rel_error": (est["dynamic_pj"] - meas_e) / meas_e,
            "measured_step_ns": meas_t, "estimated_step_ns": est["time_per_step_ns"],
            "time_rel_error": (est["time_per_step_ns"] - meas_t) / meas_t,
            "measured_cores": prof.value(sec, "cores_used") if prof.has(sec, "cores_used") else None,
            "estimated_cores": est["cores"],
            "sources": {"energy": prof.source(sec, "dynamic_energy_per_inference"),
                        "time": prof.source(sec, "step_time")},
            "fitted_constants": fitted,
            "fitted_on_other_networks": elsewhere,
        })
    if not rows:
        raise BadInputError(f"--measured {name}: no profile among {profiles} holds a measurement "
                            f"'[reference.{name}]'")
    return rows


# ------------------------------------------------------------------ render
def _model_source(graph: Graph) -> Dict[str, Any]:
    """Where the model came from: ``path`` is the file the user passed; a graph
    converted from another file keeps that one as ``converted_from``."""
    src = dict(graph.metadata.get("source", {}) or {})
    given = getattr(graph, "loaded_from", None)
    if given:
        if src.get("path") and src["path"] != given:
            src["converted_from"] = src["path"]
        src["path"] = given
    return src


#: energy units, largest first: (name, picojoules per unit)
ENERGY_UNITS = (("mJ", 1e9), ("µJ", 1e6), ("nJ", 1e3), ("pJ", 1.0))


def energy_unit(values: Sequence[float]) -> tuple:
    """One unit (name, pJ per unit) for a set of energies, chosen by their largest
    magnitude, so a plot axis and the table next to it read the same."""
    top = max((abs(float(v)) for v in values if v is not None and np.isfinite(v)), default=0.0)
    for unit, f in ENERGY_UNITS:
        if top >= f:
            return unit, f
    return "pJ", 1.0


def _fmt_pj(pj: float) -> str:
    for unit, f in (("mJ", 1e9), ("µJ", 1e6), ("nJ", 1e3)):
        if abs(pj) >= f:
            return f"{pj / f:.3g} {unit}"
    return f"{pj:.3g} pJ"


def _fmt_ns(ns: Optional[float]) -> str:
    if ns is None:
        return "-"
    for unit, f in (("ms", 1e6), ("µs", 1e3)):
        if abs(ns) >= f:
            return f"{ns / f:.3g} {unit}"
    return f"{ns:.3g} ns"


def _fmt_cores(row: Dict[str, Any]) -> str:
    """Cores and the mapper that placed them, e.g. '74 (loihi)', '10 (per_layer est.)'."""
    if row["cores"] is None:
        return "-"
    mapper = row.get("mapper", "")
    return f"{row['cores']} ({mapper}{' est.' if row['cores_estimated'] else ''})"


def render_report(rep: Dict[str, Any], console: Any) -> None:
    """Print the report as rich tables."""
    from rich.table import Table

    src = rep["model"].get("path", "model")
    console.print(f"[bold]{src}[/bold]: {rep['steps']} steps, {rep['numerics']} numerics, "
                  f"batch {rep['batch']}; inputs: {rep['inputs']}")
    if rep.get("accuracy") is not None:
        console.print(f"accuracy: {rep['accuracy'] * 100:.2f}%")
    profs = list(rep["profiles"])
    t = Table(title="per layer, per sample and inference")
    for col in ("layer", "op", "events in", "synops", "MACs", "spikes out"):
        t.add_column(col, justify="left" if col in ("layer", "op") else "right")
    for p in profs:
        t.add_column(f"E {p}", justify="right")
    for r in rep["layers"]:
        t.add_row(r["name"], r["op"], f"{r['events_in']:,.0f}", f"{r['synops']:,.0f}",
                  f"{r['macs']:,.0f}", f"{r['spikes_out']:,.0f}",
                  *[_fmt_pj(r["energy_pj"].get(p, 0.0)) for p in profs])
    console.print(t)
    t2 = Table(title="per inference, per profile")
    for col in ("profile", "rule", "energy", "dynamic", "static", "time/step", "cores",
                f"vs {rep['reference_profile']}"):
        t2.add_column(col, justify="left" if col in ("profile", "rule") else "right")
    for p, row in rep["profiles"].items():
        rel = rep["relative_total_to_reference"].get(p)
        t2.add_row(p, row["rule"], _fmt_pj(row["energy_per_inference_pj"]),
                   _fmt_pj(row["dynamic_pj"]), _fmt_pj(row["static_pj"]),
                   _fmt_ns(row["time_per_step_ns"]),
                   _fmt_cores(row),
                   "-" if rel is None else f"{rel * 100:+.1f}%")
    console.print(t2)
    tok = rep.get("tokens")
    if tok:
        console.print(f"tokens processed (token x block x step) per sample: "
                      f"{tok['processed_per_sample']:,.1f} of {tok['unadapted_per_sample']:,} "
                      f"({(1 - tok['fraction']) * 100:.1f}% fewer than without adaptation), "
                      f"synops {rep['totals_per_sample']['synops']:,.0f}, energy "
                      + ", ".join(f"{p} {_fmt_pj(r['energy_per_inference_pj'])}"
                                  for p, r in rep["profiles"].items()))
        for node, row in zip(tok["nodes"], tok["per_block_step"]):
            console.print(f"  {node}: per step " + " ".join(f"{v:.2f}" for v in row))
    if rep.get("by_rule"):
        t3 = Table(title="per inference, per counting rule")
        for col in ("rule", "profile", "ACs", "MACs", "energy", "dynamic"):
            t3.add_column(col, justify="left" if col in ("rule", "profile") else "right")
        for rule, rows in rep["by_rule"].items():
            for p, row in rows.items():
                t3.add_row(rule, p, f"{row['acs']:,.0f}", f"{row['macs']:,.0f}",
                           _fmt_pj(row["energy_per_inference_pj"]), _fmt_pj(row["dynamic_pj"]))
        console.print(t3)
    for p, row in rep["profiles"].items():
        if row.get("mapper", "none") != "none":
            console.print(f"{p}: {row['placement']['description']}")
    for note in rep.get("notes", []):
        console.print(f"note: {note}")
    disagree = sorted(
        ((abs(v), r["name"], p, v) for r in rep["layers"] for p, v in r["rel_to_reference"].items()
         if v is not None), reverse=True)[:5]
    if disagree:
        console.print(f"largest per-layer disagreements with {rep['reference_profile']}:")
        for _, name, p, v in disagree:
            console.print(f"  {name}: {p} {v * 100:+.1f}%")
    for m in rep.get("measured", []):
        console.print(
            f"[bold]measured ({m['measurement']}, {m['profile']}):[/bold] dynamic energy per "
            f"inference {_fmt_pj(m['estimated_dynamic_pj'])} estimated vs "
            f"{_fmt_pj(m['measured_dynamic_pj'])} measured ({m['energy_rel_error'] * 100:+.1f}%); "
            f"time per step {_fmt_ns(m['estimated_step_ns'])} vs {_fmt_ns(m['measured_step_ns'])} "
            f"({m['time_rel_error'] * 100:+.1f}%); cores {m['estimated_cores']} vs "
            f"{m['measured_cores']}")
        console.print(f"  source: {m['sources']['energy']}")
        console.print("  fitted to this network (not validated by it): "
                      + (", ".join(m["fitted_constants"]) or "none"))
        if m.get("fitted_on_other_networks"):
            console.print("  fitted on other networks (validated by this one): "
                          + ", ".join(m["fitted_on_other_networks"]))


def _figure_png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _token_html(rep: Dict[str, Any], plt: Any) -> str:
    """The tokens section: counts and a heat map of the first sample's tokens
    processed at each block (rows) and step (columns), on the token grid."""
    tok = rep["tokens"]
    n, blocks, steps = tok["tokens"], tok["blocks"], tok["steps"]
    side = int(round(np.sqrt(n)))
    grid = (side, side) if side * side == n else (1, n)
    fig, axes = plt.subplots(blocks, steps, figsize=(1.6 * steps + 1, 1.6 * blocks + 0.6),
                             squeeze=False)
    for l in range(blocks):
        for t in range(steps):
            ax = axes[l][t]
            ax.imshow(np.asarray(tok["sample_map"][l][t]).reshape(grid), vmin=0, vmax=1,
                      cmap="viridis")
            ax.set_xticks([])
            ax.set_yticks([])
            if l == 0:
                ax.set_title(f"step {t + 1}", fontsize=8)
            if t == 0:
                ax.set_ylabel(f"block {l + 1}", fontsize=8)
    fig.suptitle("tokens processed (sample 0; bright = processed)", fontsize=9)
    png = _figure_png(fig)
    plt.close(fig)
    rows = "".join(f"<tr><td>{html.escape(node)}</td>"
                   + "".join(f"<td>{v:.2f}</td>" for v in row) + "</tr>"
                   for node, row in zip(tok["nodes"], tok["per_block_step"]))
    head = "".join(f"<th>step {t + 1}</th>" for t in range(steps))
    return (f"<h2>Tokens processed</h2><p>{tok['processed_per_sample']:,.1f} token x block x "
            f"step per sample of {tok['unadapted_per_sample']:,} without adaptation "
            f"({(1 - tok['fraction']) * 100:.1f}% fewer); synops "
            f"{rep['totals_per_sample']['synops']:,.0f}; energy "
            + ", ".join(f"{html.escape(p)} {_fmt_pj(r['energy_per_inference_pj'])}"
                        for p, r in rep["profiles"].items())
            + f"</p><table><tr><th>block</th>{head}</tr>{rows}</table>"
            f'<img alt="token heat map" src="data:image/png;base64,{png}">')


def write_html(rep: Dict[str, Any], path: Path) -> Path:
    """One self-contained HTML file a hardware engineer can send on: the model
    (the file passed), the counting rule, accuracy when labels were given, the
    per-profile and per-layer tables, plots readable at 1280 px (legend beside
    the bars, one energy unit per plot and table, chosen by magnitude) and the
    measured-vs-estimated comparison when asked for. Written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    profs = list(rep["profiles"])
    names = [r["name"] for r in rep["layers"]]
    layer_e = [r["energy_pj"].get(p, 0.0) for r in rep["layers"] for p in profs]
    lunit, lf = energy_unit(layer_e)
    # at most 12 in at 100 dpi: the plot fits a 1280 px window without scaling
    fig, ax = plt.subplots(figsize=(min(12.0, max(7.0, 0.45 * len(names) + 4)), 4.5), dpi=100)
    width = 0.8 / max(1, len(profs))
    for i, p in enumerate(profs):
        vals = [(r["energy_pj"].get(p, 0.0) or np.nan) / lf for r in rep["layers"]]  # 0: no bar
        ax.bar(np.arange(len(names)) + i * width, vals, width, label=p)
    ax.set_yscale("log")
    ax.set_ylabel(f"energy per inference ({lunit})")
    ax.set_xticks(np.arange(len(names)) + 0.4 - width / 2)
    step = max(1, len(names) // 40)  # a readable number of layer labels
    ax.set_xticklabels([n if i % step == 0 else "" for i, n in enumerate(names)], rotation=60,
                       ha="right", fontsize=8)
    ax.legend(title="profile", loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    ax.set_title("energy per layer and profile")
    ax.grid(axis="y", which="major", alpha=0.3)
    fig.tight_layout()
    energy_png = _figure_png(fig)
    plt.close(fig)

    punit, pf = energy_unit([v["energy_per_inference_pj"] for v in rep["profiles"].values()])
    fig, ax = plt.subplots(figsize=(7.0, max(2.0, 0.5 * len(profs) + 1)), dpi=100)
    totals = [rep["profiles"][p]["energy_per_inference_pj"] / pf for p in profs]
    dyn = [rep["profiles"][p]["dynamic_pj"] / pf for p in profs]
    ax.barh(profs, totals, color="#9ecae1", label="total")
    ax.barh(profs, dyn, height=0.4, color="#3182bd", label="dynamic")
    ax.set_xlabel(f"energy per inference ({punit})")
    ax.set_xscale("log")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    ax.set_title("energy per profile")
    fig.tight_layout()
    profile_png = _figure_png(fig)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7.0, 3.0), dpi=100)
    ax.plot(np.arange(1, rep["steps"] + 1), rep["spikes_per_step"], marker="o")
    ax.set_xlabel("time step")
    ax.set_ylabel("spikes per sample")
    ax.set_title("spikes per step")
    fig.tight_layout()
    spikes_png = _figure_png(fig)
    plt.close(fig)

    token_html = _token_html(rep, plt) if rep.get("tokens") else ""

    def table(rows: List[List[str]], head: List[str]) -> str:
        h = "".join(f"<th>{html.escape(c)}</th>" for c in head)
        b = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>"
                    for r in rows)
        return f"<table><tr>{h}</tr>{b}</table>"

    def in_unit(pj: float, f: float) -> str:
        return f"{pj / f:,.3g}"

    layer_rows = [[r["name"], r["op"], f"{r['synops']:,.0f}", f"{r['spikes_out']:,.0f}",
                   *[in_unit(r["energy_pj"].get(p, 0.0), lf) for p in profs]]
                  for r in rep["layers"]]
    prof_rows = [[p, v["rule"], in_unit(v["energy_per_inference_pj"], pf),
                  in_unit(v["dynamic_pj"], pf), _fmt_ns(v["time_per_step_ns"]), _fmt_cores(v)]
                 for p, v in rep["profiles"].items()]
    meas_rows = [[m["profile"], m["measurement"], _fmt_pj(m["estimated_dynamic_pj"]),
                  _fmt_pj(m["measured_dynamic_pj"]), f"{m['energy_rel_error'] * 100:+.1f}%",
                  _fmt_ns(m["estimated_step_ns"]), _fmt_ns(m["measured_step_ns"]),
                  f"{m['time_rel_error'] * 100:+.1f}%", m["sources"]["energy"]]
                 for m in rep.get("measured", [])]
    meas = ("<h2>Measured vs estimated</h2>" + table(meas_rows, [
        "profile", "measurement", "estimated energy", "measured energy", "error",
        "estimated time/step", "measured time/step", "error", "source"])) if meas_rows else ""
    rules = sorted({str(v["rule"]) for v in rep["profiles"].values()})
    model = rep["model"]
    src = str(model.get("path", "model"))
    origin = (f" (converted from {html.escape(str(model['converted_from']))})"
              if model.get("converted_from") else "")
    acc = (f"<p><b>Accuracy</b> on the labelled inputs: {rep['accuracy'] * 100:.2f}%</p>"
           if rep.get("accuracy") is not None else "")
    notes = "".join(f"<li>{html.escape(str(n))}</li>" for n in rep.get("notes", []))
    doc = f"""<!doctype html><html><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>nmtc report: {html.escape(Path(src).name)}</title>
<style>body{{font-family:sans-serif;margin:1.5em auto;max-width:1240px;padding:0 1em;color:#222}}
table{{border-collapse:collapse;margin:0.5em 0 1.5em}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}th{{background:#f3f3f3}}
td:first-child,th:first-child{{text-align:left}}img{{max-width:100%;height:auto}}
.meta{{color:#555}}</style></head><body>
<h1>nmtc report: {html.escape(src)}</h1>
<p class="meta">{html.escape(src)}{origin}; {rep['steps']} time steps, {html.escape(rep['numerics'])}
numerics, batch {rep['batch']}; inputs: {html.escape(rep['inputs'])}.
Counting rule: {html.escape(', '.join(rules))}; reference profile:
{html.escape(str(rep.get('reference_profile', '')))}.</p>
{acc}
<h2>Per profile (energy in {punit} per inference)</h2>
{table(prof_rows, ['profile', 'rule', f'energy ({punit})', f'dynamic ({punit})', 'time/step', 'cores'])}
<img alt="energy per profile" src="data:image/png;base64,{profile_png}">
{meas}
<h2>Energy per layer ({lunit} per inference)</h2>
<img alt="energy per layer" src="data:image/png;base64,{energy_png}">
{table(layer_rows, ['layer', 'op', 'synops', 'spikes out'] + [f'{p} ({lunit})' for p in profs])}
<h2>Spikes per step</h2><img alt="spikes per step" src="data:image/png;base64,{spikes_png}">
{token_html}
{f'<h2>Notes</h2><ul>{notes}</ul>' if notes else ''}
<script type="application/json" id="nmtc-report">{html.escape(json.dumps(rep, default=float))}</script>
</body></html>"""
    path = Path(path)
    with atomic_output(path) as tmp:
        tmp.write_text(doc, encoding="utf-8")
    return path
