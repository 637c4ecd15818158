"""The Loihi 2 export directory: reports and files, written atomically.

The compile side (refusal, adaptation, folding, quantization, placement) is
the Loihi 2 target's pipeline (:mod:`nmtoolchain.targets.loihi2`); this
module only turns its result into the directory:

* ``network.net``: the lava-dl netx HDF5 network (what Lava and Loihi run);
* ``network.nmir``: the exported IR graph itself (quantized, mapped), which
  ``nmtc verify`` simulates in loihi numerics against Lava running
  ``network.net``. Keeping it is what lets verify catch a changed
  ``network.net``: comparing the file against itself could not;
* ``mapping.json``: the mapping report (cores, per-core use, limits);
* ``report.json`` / ``report.txt``: the passes that ran and what each
  changed, netx layers, how the input is driven and encoded, quantization
  rows, folded pooling, mapping summary, and which parts run on Loihi 2
  through netx and which would need Lava's simulator.

A quantized graph with ops netx cannot hold but nmtc can run as Lava processes
(Add outside a recurrent layer, MatMul, Transpose) is written as a Lava
process graph: ``network.nmir``, ``lava_graph.json`` (which nodes run as
Lava's Dense/LIF and which as nmtc's own Lava processes) and the reports,
without ``network.net`` and without a mapping.

Atomicity: everything is written into a hidden temporary sibling directory
and renamed to DIR at the end, so a failure (or Ctrl-C) leaves neither DIR
nor the temporary directory. DIR must not exist unless ``force`` (then the
old directory is replaced only once the new one is complete). All files are
deterministic: the same model and options give the same bytes.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from exporters.directory import _json, _write_atomically, write_graph
from exporters.loihi2.lava_graph import chip_part, deployability, plan_lava_graph
from exporters.loihi2.netx_writer import NetxPlan, write_plan
from nmtoolchain import __version__
from nmtoolchain.convert.encode import RATE_ENCODING
from nmtoolchain.ir import Graph

REPORT_FORMAT = "nmtc-loihi2-export"
REPORT_VERSION = 1
FILES = {"network": "network.net", "graph": "network.nmir", "mapping": "mapping.json",
         "report_json": "report.json", "report_txt": "report.txt"}
#: Files of an export that runs as a Lava process graph (no netx file, no mapping).
LAVA_GRAPH_FILES = {"graph": "network.nmir", "lava_graph": "lava_graph.json",
                    "report_json": "report.json", "report_txt": "report.txt"}
LAVA_GRAPH_FORMAT = "nmtc-lava-graph"
DEPLOYABILITY_NOTE = (
    "Every layer above is a lava-dl netx layer: deployable on Loihi 2 through netx and runnable "
    "in Lava's simulator. Ops outside netx (attention MatMul, Softmax, residual Add/Concat, "
    "token halting, ...) would need custom Lava processes that run only in Lava's simulator "
    "(a quantized graph with Add/MatMul/Transpose is exported as a Lava process graph, "
    "without network.net); this network has none, so no part of it is simulator-only.")


@dataclass
class NetxExport:
    """Everything the netx directory is written from (the compiled graph and its records)."""

    model: str
    graph: Graph
    plan: NetxPlan
    profile_id: str
    timesteps: int
    qreport: Any  # QuantReport, or None when the model was already in netx form
    mapping: Any  # MappingReport, or None when not mapped
    not_mapped_because: Optional[str]
    notes: List[str]
    pass_lines: List[str]
    passes: List[Dict[str, Any]]
    #: source-vs-export agreement (nmtoolchain.targets.agreement), printed first
    agreement: Any = None


@dataclass
class LavaGraphExport:
    """Everything a Lava process graph export is written from."""

    model: str
    graph: Graph
    profile_id: str
    timesteps: int
    notes: List[str]
    pass_lines: List[str]
    passes: List[Dict[str, Any]]
    #: TokenQuantReport when the export quantized a spiking transformer (else None)
    token_report: Any = None


def write_network(plan: NetxPlan, path: Path) -> None:
    write_plan(plan, path)



def write_mapping_json(mapping: Dict[str, Any], path: Path) -> None:
    path.write_text(_json(mapping))


def write_reports(report: Dict[str, Any], lines: List[str], directory: Path) -> None:
    (directory / FILES["report_json"]).write_text(_json(report))
    (directory / FILES["report_txt"]).write_text("\n".join(lines) + "\n")





# ------------------------------------------------------------------ report
def _input_section(graph: Graph, plan: NetxPlan) -> Dict[str, Any]:
    enc = graph.metadata.get("input_encoding")
    d: Dict[str, Any] = {"drive": plan.drive, "shape": list(plan.input_shape)}
    if plan.drive == "spikes":
        d["how"] = ("binary spikes into net.inp (netx input layer without neuron); row t-1 of "
                    "the drive reaches the first neuron layer at step t+1")
        if isinstance(enc, dict):
            d["encoding"] = enc
        else:
            d["encoding"] = dict(RATE_ENCODING, assumed=True)
            d["encoding_note"] = ("the model records no input encoding; analog data is "
                                  "rate-coded (nmtoolchain.convert.rate_encode) by nmtc verify")
    elif plan.drive == "bias":
        d["how"] = ("the input layer is a CUBA neuron driven through its bias: "
                    "bias_mant = trunc(2 * weight * x - weight + bias) for an image x in [0, 1] "
                    "(lava-dl's own convention; see simulators.lava_runner.input_drive_from_image)")
        d["transform"] = plan.input_transform
        d["encoding"] = enc if isinstance(enc, dict) else {"method": "bias", "centered": True}
    else:
        d["how"] = ("the input layer is an SDNN Delta neuron: integer values sent to its a_in "
                    "every step")
        d["encoding"] = enc if isinstance(enc, dict) else {"method": "graded", "scale": 255}
    return d


def _quant_rows(graph: Graph, qreport: Any) -> Dict[str, Any]:
    if qreport is not None:
        return {"performed": True, **qreport.as_dict()}
    rows = [{"layer": n.name, **n.annotations["quant"]} for n in graph.topological_order()
            if isinstance(n.annotations.get("quant"), dict)]
    return {"performed": False, "note": "the model was already in Loihi's fixed-point (netx) form",
            "layers": rows}


def build_report(model: str, graph: Graph, plan: NetxPlan, profile_id: str, timesteps: int,
                 quant: Dict[str, Any], quant_lines: List[str], mapping: Dict[str, Any],
                 mapping_lines: List[str], notes: List[str],
                 pass_lines: Sequence[str] = (), passes: Sequence[Dict[str, Any]] = ()
                 ) -> Tuple[Dict[str, Any], List[str]]:
    """report.json (a dict) and report.txt (lines), both deterministic."""
    layers = [la.as_dict() for la in plan.layers]
    deploy = {
        "loihi2_netx": [n for la in plan.layers for n in la.nodes],
        "lava_simulator_only": [],
        "refused": [],
        "note": DEPLOYABILITY_NOTE,
    }
    depth = sum(1 for la in plan.layers if la.type in ("dense", "dense_rec", "conv"))
    report = {
        "format": REPORT_FORMAT, "version": REPORT_VERSION, "nmtc_version": __version__,
        "model": model, "target": "loihi2", "profile": profile_id,
        "files": dict(FILES), "timesteps": int(timesteps), "pipeline_depth": depth,
        "verify_steps": int(timesteps) + depth,
        "passes": list(passes),
        "input": _input_section(graph, plan),
        "layers": layers,
        "folded_pooling": graph.metadata.get("folded_pooling", []),
        "quantization": quant,
        "mapping": _mapping_summary(mapping),
        "deployability": deploy,
        "notes": list(notes) + list(plan.notes),
    }
    lines = [f"nmtc export --target loihi2: {model}",
             f"profile {profile_id}; {len(plan.layers)} netx layers; input driven by "
             f"{plan.drive} {list(plan.input_shape)}; pipeline depth {depth} steps",
             "", "passes:"] + ["  " + ln for ln in pass_lines] + [
             "", "netx layers (network.net):",
             f"  {'#':>3} {'type':<10} {'shape':<16} {'neuron':<7} {'weights':<14} IR nodes"]
    for la in layers:
        wr = la.get("weight_range")
        lines.append(f"  {la['index']:>3} {la['type']:<10} {str(la['shape']):<16} "
                     f"{la['neuron'] or '-':<7} {str(wr) if wr else '-':<14} "
                     f"{', '.join(la['nodes'])}")
        for n in la.get("notes", []):
            lines.append(f"      note: {n}")
    inp = report["input"]
    lines += ["", f"input: {inp['how']}", f"  encoding: {json.dumps(inp.get('encoding'))}"]
    if report["folded_pooling"]:
        lines += ["", "pooling folded:"]
        for r in report["folded_pooling"]:
            lines.append(f"  {r['pool']} ({r['op']} {r['kernel']} stride {r['stride']}) -> "
                         f"{r['how']} into {', '.join(r['into'])}")
    lines += ["", "quantization:"] + ["  " + ln for ln in quant_lines]
    lines += ["", "mapping (mapping.json):"] + ["  " + ln for ln in mapping_lines]
    lines += ["", "deployability:", f"  on Loihi 2 through netx: {len(deploy['loihi2_netx'])} "
              "IR nodes (all of them)", "  only in Lava's simulator: none",
              "  " + DEPLOYABILITY_NOTE]
    if report["notes"]:
        lines += ["", "notes:"] + ["  " + n for n in report["notes"]]
    lines += ["", f"check it: nmtc verify <this directory> -T {report['verify_steps']}"]
    return report, lines


def _mapping_summary(mapping: Dict[str, Any]) -> Dict[str, Any]:
    """The mapping's totals, limits, use and reference comparison; the per-layer and
    per-core tables stay in mapping.json."""
    keep = {k: v for k, v in mapping.items() if not isinstance(v, (list, dict))}
    for k in ("reference", "limits", "utilization", "traffic"):
        if k in mapping:
            keep[k] = mapping[k]
    return keep


def write_netx_export(ex: NetxExport, out_dir: Path, force: bool
                      ) -> Tuple[Dict[str, Any], List[str], List[str]]:
    """Write the netx export directory; returns (report, report lines, file names)."""
    if ex.mapping is not None:
        mapping = ex.mapping.as_dict()
        mapping_lines = list(ex.mapping.lines())
    else:
        note = f"not mapped: {ex.not_mapped_because}"
        mapping, mapping_lines = {"mapped": False, "note": note}, [note]
    quant = _quant_rows(ex.graph, ex.qreport)
    quant_lines = list(ex.qreport.lines()) if ex.qreport is not None else [quant["note"]]
    report, lines = build_report(ex.model, ex.graph, ex.plan, ex.profile_id, ex.timesteps, quant,
                                 quant_lines, mapping, mapping_lines, ex.notes, ex.pass_lines, ex.passes)
    if ex.agreement is not None:  # first: whether the export still does what the source did
        report = {"agreement": ex.agreement.as_dict(), **report}
        lines = lines[:1] + ex.agreement.lines() + lines[1:]

    def write(tmp: Path) -> None:
        write_network(ex.plan, tmp / FILES["network"])
        write_graph(ex.graph, tmp / FILES["graph"])
        write_mapping_json(mapping, tmp / FILES["mapping"])
        write_reports(report, lines, tmp)

    parent = out_dir.parent if str(out_dir.parent) else Path(".")
    _write_atomically(write, out_dir, parent, force)
    return report, lines, list(FILES.values())




# ------------------------------------------------------- Lava process graph
#: What each planned process kind is in Lava, and whose it is.
_LAVA_PROCESS = {"source": ("GraphSpikeSource", "nmtc"), "dense": ("Dense", "lava"),
                 "lif": ("LIF", "lava"), "add": ("GraphAdd", "nmtc"),
                 "matmul": ("GraphMatMul", "nmtc"), "permute": ("GraphPermute", "nmtc")}


def describe_lava_graph(graph: Graph, model: str) -> Dict[str, Any]:
    """lava_graph.json: the Lava processes that run ``graph`` (no weights: those
    stay in network.nmir), from :func:`exporters.loihi2.lava_graph.plan_lava_graph`
    (the target has already checked that the graph runs as a Lava process graph)."""
    plan = plan_lava_graph(graph)
    procs = []
    depth: Dict[str, int] = {}
    for p in plan.procs:
        cls, owner = _LAVA_PROCESS[p.kind]
        depth[p.node] = max((depth[i] for i in p.inputs), default=0) + (p.kind == "dense")
        d: Dict[str, Any] = {"node": p.node, "op": graph[p.node].op_name, "process": cls,
                             "provided_by": owner, "inputs": list(p.inputs), "size": int(p.size),
                             "sends": plan.kinds.get(p.node, "graded")}
        if p.kind == "dense":
            d.update(num_weight_bits=p.params["num_weight_bits"],
                     num_message_bits=p.params["num_message_bits"], tokens=p.params["tokens"])
        elif p.kind == "lif":
            d.update(du=p.params["du"], dv=p.params["dv"], vth=p.params["vth"],
                     bias_exp=p.params["bias_exp"])
            if "reset_interval" in p.params:
                d.update(process="LIFReset", reset_interval=p.params["reset_interval"],
                         reset_offset=p.params["reset_offset"])
        procs.append(d)
    by = lambda owner: [d["node"] for d in procs if d["provided_by"] == owner]  # noqa: E731
    return {"format": LAVA_GRAPH_FORMAT, "version": REPORT_VERSION, "model": model,
            "input": {"node": plan.input_node, "shape": list(plan.shapes[plan.input_node]),
                      "drive": "spikes (row t-1 of the drive at step t)"},
            "lava_dense_lif": by("lava"), "nmtc_lava_processes": by("nmtc"),
            "no_process": {k: plan.process_of(k) for k in sorted(plan.alias)},
            "pipeline_depth": max(depth.values(), default=0),
            "processes": procs,
            "run_with": "exporters.loihi2.lava_graph.run_graph_in_lava(graph, spikes, steps), "
                        "Loihi2SimCfg fixed_pt (Lava's CPU simulator)"}


LAVA_ONLY_NOTE = (
    "The Lava-only nodes run as nmtc's own Python Lava processes with no Loihi 2 microcode. "
    "No network.net is written: netx cannot hold the Lava-only ops, so the whole graph "
    "runs in Lava's CPU simulator (network.nmir + lava_graph.json).")


def _lava_deployability_sentence(dep: Dict[str, List[str]]) -> str:
    return (f"Deployable on Loihi 2 through netx: {len(dep['loihi2_netx'])} IR nodes "
            f"({', '.join(dep['loihi2_netx'])}). Only in Lava's CPU simulator: "
            f"{len(dep['lava_simulator_only'])} IR nodes ({', '.join(dep['lava_simulator_only'])}"
            "). " + LAVA_ONLY_NOTE)


def write_lava_graph_export(ex: LavaGraphExport, out_dir: Path, force: bool
                            ) -> Tuple[Dict[str, Any], List[str], List[str]]:
    """Write the export of a quantized graph with Lava-only ops (module docstring);
    returns (report, report lines, file names)."""
    graph, model, profile_id, timesteps, notes = (ex.graph, ex.model, ex.profile_id,
                                                   ex.timesteps, ex.notes)
    parent = out_dir.parent if str(out_dir.parent) else Path(".")
    desc = describe_lava_graph(graph, model)
    dep = deployability(graph)
    sentence = _lava_deployability_sentence(dep)
    run = graph.metadata.get("lava_run") if isinstance(graph.metadata, dict) else None
    quant = {"performed": True, "note": _token_quant_note(ex.token_report),
             **ex.token_report.as_dict()} if ex.token_report is not None \
        else _quant_rows(graph, None)
    depth = int(desc["pipeline_depth"])
    mapping, mapping_lines = _chip_part_mapping(graph, profile_id)
    files = dict(LAVA_GRAPH_FILES)
    if mapping.get("mapped"):
        files["mapping"] = "mapping.json"
    report = {
        "format": REPORT_FORMAT, "version": REPORT_VERSION, "nmtc_version": __version__,
        "model": model, "target": "loihi2", "runs_as": "lava_process_graph",
        "profile": profile_id, "files": files, "timesteps": timesteps,
        "pipeline_depth": depth,
        "verify_steps": int(run["steps"]) if run else timesteps + depth,
        "passes": list(ex.passes),
        "input": {"drive": "spikes", "shape": desc["input"]["shape"],
                  "how": "binary spikes into the Input node's source process; row t-1 of the "
                         "drive is sent at step t"} if not run else {
            "drive": "graded", "shape": desc["input"]["shape"],
            "encoding": dict(graph.metadata.get("input_encoding", {})),
            "how": f"graded integers round(x * {run['input_levels']}) (24-bit messages) for "
                   f"{run['input_steps']} steps, then zero; {run['steps']} steps in all; each "
                   f"neuron is reset (LIFReset, interval {run['reset_interval']}) at its depth"},
        "run_protocol": dict(run) if run else None,
        "lava_graph": {k: desc[k] for k in ("lava_dense_lif", "nmtc_lava_processes")},
        "quantization": quant, "mapping": mapping,
        "deployability": {"loihi2_netx": dep["loihi2_netx"],
                          "lava_simulator_only": dep["lava_simulator_only"],
                          "refused": dep["unsupported"], "netx_file_written": False,
                          "note": sentence},
        "notes": list(notes),
    }
    lines = [f"nmtc export --target loihi2: {model}",
             f"runs as a Lava process graph: {len(desc['processes'])} processes; input "
             f"{'graded' if run else 'spikes'} {desc['input']['shape']}; pipeline depth {depth} "
             "steps",
             "", "passes:"] + ["  " + ln for ln in ex.pass_lines] + [
             "", "Lava processes (lava_graph.json):",
             f"  {'node':<12} {'op':<10} {'process':<18} {'by':<5} inputs"]
    for d in desc["processes"]:
        lines.append(f"  {d['node']:<12} {d['op']:<10} {d['process']:<18} {d['provided_by']:<5} "
                     f"{', '.join(d['inputs']) or '-'}")
    lines += ["", "quantization:", "  " + quant["note"],
              "", "mapping:"] + ["  " + ln for ln in mapping_lines] + [
              "",
              "deployability:",
              f"  on Loihi 2 through netx: {', '.join(dep['loihi2_netx'])}",
              f"  only in Lava's simulator: {', '.join(dep['lava_simulator_only'])}",
              "  " + LAVA_ONLY_NOTE]
    if notes:
        lines += ["", "notes:"] + ["  " + n for n in notes]
    lines += ["", f"check it: nmtc verify <this directory> -T {report['verify_steps']}"]

    def write(tmp: Path) -> None:
        write_graph(graph, tmp / LAVA_GRAPH_FILES["graph"])
        (tmp / LAVA_GRAPH_FILES["lava_graph"]).write_text(_json(desc))
        if mapping.get("mapped"):
            write_mapping_json(mapping, tmp / "mapping.json")
        write_reports(report, lines, tmp)

    _write_atomically(write, out_dir, parent, force)
    return report, lines, list(files.values())


def _token_quant_note(rep: Any) -> str:
    return (f"spiking transformer quantized by nmtc (quantize_token_graph): {len(rep.layers)} "
            f"neuron layers, {rep.relays} relay layers, readout {rep.readout} (its v is the "
            "summed logits)")


def _chip_part_mapping(graph: Graph, profile_id: str) -> Tuple[Dict[str, Any], List[str]]:
    """Core placement of the netx-deployable part (:func:`chip_part`): what a
    chip would hold if the host ran the Lava-only processes. Not mapped (with
    the reason) when the mapper cannot place that part."""
    from nmtoolchain.errors import NmtcError
    from nmtoolchain.mapping import map_onto_cores

    try:
        rep = map_onto_cores(chip_part(graph), profile_id)
    except NmtcError as e:
        note = ("not mapped: Lava-only ops (the core mapping places netx layers; these run in "
                f"Lava's CPU simulator); the deployable part could not be placed: {e}")
        return {"mapped": False, "note": note}, [note]
    d = rep.as_dict()
    note = (f"deployable part only (synapse and neuron layers; each tensor a Lava-only "
            f"process computes enters as a host input): {d['cores_used']} cores of "
            f"{d['cores_per_chip']} per chip (lower bound {d['lower_bound']})")
    d.update(mapped=True, part="loihi2_netx", note=note)
    return d, [note] + list(rep.lines())




__all__ = ["NetxExport", "LavaGraphExport", "write_netx_export", "write_lava_graph_export",
           "build_report", "describe_lava_graph", "FILES", "LAVA_GRAPH_FILES"]
