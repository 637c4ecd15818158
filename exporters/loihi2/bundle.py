"""``nmtc export --target loihi2``: a model in, a deployable directory out.

The job, in order (each step a library function; this module only chains
them and writes the results):

1. load the model (any format nmtc reads) and refuse, before any work, a node
   no later step can turn into a netx layer or a Lava process (e.g. Softmax;
   MatMul in a float graph), naming it;
1b. a converted (QCFS/MST) network is adapted to Loihi's reset-to-zero CUBA
   neurons on the ``--calib`` data (:func:`adapt_converted`: spiking readout,
   threshold headroom, pre-charge as a bias; its direct analog input is
   re-coded as a rate code) and its spike amplitudes (``Scale`` after a
   neuron) are folded into the next weights (:func:`nmtoolchain.passes.fold_scales`);
2. fold sum/average pooling into the next layer
   (:func:`nmtoolchain.passes.fold_pooling`);
3. quantize for Loihi unless the graph already is in the netx form
   (:func:`nmtoolchain.quantize.quantize_for_loihi`, with calibration spikes
   from ``--calib`` when given, to measure the per-layer error);
4. map it onto cores (:func:`nmtoolchain.mapping.map_onto_cores`; a layer that
   does not fit raises DoesNotFitError);
5. build every netx layer in memory (:func:`exporters.loihi2.netx_writer.plan_netx`),
   then write the directory.

Directory contents:

* ``network.net``: the lava-dl netx HDF5 network (what Lava and Loihi run);
* ``network.nmir``: the exported IR graph itself (quantized, mapped), which
  ``nmtc verify`` simulates in loihi numerics against Lava running
  ``network.net``. Keeping it is what lets verify catch a changed
  ``network.net``: comparing the file against itself could not;
* ``mapping.json``: the mapping report (cores, per-core use, limits);
* ``report.json`` / ``report.txt``: netx layers, how the input is driven and
  encoded, quantization rows, folded pooling, mapping summary, and which parts
  run on Loihi 2 through netx and which would need Lava's simulator.

A graph with ops netx cannot hold but nmtc can run as Lava processes (Add
outside a recurrent layer, MatMul, Transpose: ``lava_graph.deployability()``'s
``lava_simulator_only``) is exported when it is already quantized (quantizing
such float graphs is not supported yet and is refused naming the node). No
``network.net`` is written for it (netx cannot hold those ops) and it is not
mapped onto cores; the directory holds ``network.nmir``, ``lava_graph.json``
(which nodes run as Lava's Dense/LIF and which as nmtc's own Lava processes,
:func:`exporters.loihi2.lava_graph.plan_lava_graph`) and the reports, whose
deployability section says which parts Loihi 2 could run through netx and
which run only in Lava's CPU simulator. ``nmtc verify`` runs it as a Lava
process graph against nmtc's simulator.

Atomicity: everything is written into a hidden temporary sibling directory
and renamed to DIR at the end, so a failure (or Ctrl-C) leaves neither DIR
nor the temporary directory. DIR must not exist unless ``force`` (then the
old directory is replaced only once the new one is complete).

All files are deterministic: the same model and options give the same bytes
(no times, no absolute output paths).
"""
from __future__ import annotations

import copy
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np

from nmtoolchain.errors import BadInputError, NotExpressibleError, UnsupportedOpError
from nmtoolchain.ir import Graph
from exporters.loihi2.netx_writer import (
    NETX_BUILDERS, NEURON_OPS, NetxPlan, op_hint, graph_origin, plan_netx, write_plan)

REPORT_FORMAT = "nmtc-loihi2-export"
REPORT_VERSION = 1
FILES = {"network": "network.net", "graph": "network.nmir", "mapping": "mapping.json",
         "report_json": "report.json", "report_txt": "report.txt"}
#: Files of an export that runs as a Lava process graph (no netx file, no mapping).
LAVA_GRAPH_FILES = {"graph": "network.nmir", "lava_graph": "lava_graph.json",
                    "report_json": "report.json", "report_txt": "report.txt"}
LAVA_GRAPH_FORMAT = "nmtc-lava-graph"
#: Ops netx cannot hold (outside a recurrent layer's Add) that run as nmtc's own
#: Lava processes in Lava's CPU simulator (lava_graph.LAVA_SIMULATOR_ONLY_OPS).
LAVA_ONLY_OPS = ("Add", "MatMul", "Transpose")
#: Ops the pipeline can still turn into netx layers (neurons the quantizer
#: converts, pooling the fold removes); anything else is refused up front.
PIPELINE_OPS = frozenset(NETX_BUILDERS) | frozenset(NEURON_OPS) | {
    "Output", "Add", "SumPool2d", "AvgPool2d", "IF", "LIF", "I"}
#: What the export says when a converted network's direct (analog) input is re-coded.
DIRECT_REPLACED = (
    "input: the model applies the analog input at every step (direct encoding); a netx "
    "input layer without neuron carries binary spikes, so the export feeds the deterministic "
    "rate code of the input instead (same mean current, quantized to 1/T)")
#: Calibration samples taken from --calib (enough to measure spike-count error).
CALIB_SAMPLES = 128
DEPLOYABILITY_NOTE = (
    "Every layer above is a lava-dl netx layer: deployable on Loihi 2 through netx and runnable "
    "in Lava's simulator. Ops outside netx (attention MatMul, Softmax, residual Add/Concat, "
    "token halting, ...) would need custom Lava processes that run only in Lava's simulator "
    "(a quantized graph with Add/MatMul/Transpose is exported as a Lava process graph, "
    "without network.net); this network has none, so no part of it is simulator-only.")


@dataclass
class ExportResult:
    """What :func:`export_loihi2` wrote and decided."""

    directory: Path
    plan: Optional[NetxPlan]  # None for a Lava process graph (no network.net)
    report: Dict[str, Any]
    lines: List[str] = field(default_factory=list)
    files: List[str] = field(default_factory=list)  # names written into ``directory``


# ------------------------------------------------------------------- steps
def refuse_unsupported(graph: Graph, also_allowed: Tuple[str, ...] = ()) -> None:
    """UnsupportedOpError naming the first node no pipeline step can export.

    The Lava-only ops (Add, MatMul, Transpose) pass when the graph is already
    quantized; in a float graph a MatMul or Transpose is refused naming it
    (quantizing such graphs is not supported yet)."""
    qcfs = [n.name for n in graph.topological_order() if n.op_name == "QCFS"]
    if qcfs:
        raise UnsupportedOpError(
            f"{graph_origin(graph)}: node '{qcfs[0]}' is a QCFS activation: this is the ANN; "
            "convert it to a spiking network first (nmtc convert MODEL --method mst -T T -o "
            "snn.nmir), then export snn.nmir")
    quantized = is_quantized_for_loihi(graph)
    allowed = PIPELINE_OPS | (set(LAVA_ONLY_OPS) if quantized else set()) | set(also_allowed)
    if not quantized:
        lava_only = [n for n in graph.topological_order()
                     if n.op_name in LAVA_ONLY_OPS and n.op_name not in PIPELINE_OPS]
        if lava_only:
            first = lava_only[0]
            raise UnsupportedOpError(
                f"{graph_origin(graph)}: node '{first.name}' (op {first.op_name}) runs only as "
                "a Lava process, which nmtc exports only from an already quantized graph "
                "(integer weights, Loihi CUBA neurons); quantizing float graphs with "
                f"{'/'.join(LAVA_ONLY_OPS)} is not supported yet")
    bad = [n for n in graph.topological_order() if n.op_name not in allowed]
    if bad:
        first = bad[0]
        more = f" (and {len(bad) - 1} more: {', '.join(n.name for n in bad[1:4])})" \
            if len(bad) > 1 else ""
        why = {r["scale"]: r["why"] for r in graph.metadata.get("unfolded_scales", [])}
        hint = (f" (its spike amplitude cannot be folded into weights: {why[first.name]})"
                if first.name in why else op_hint(first.op_name))
        raise UnsupportedOpError(
            f"{graph_origin(graph)}: node '{first.name}' (op {first.op_name}) cannot be exported "
            f"to Loihi 2 through lava-dl netx{hint}{more}")


def is_quantized_for_loihi(graph: Graph) -> bool:
    """True when the graph is already in the netx form (integer weights, Loihi neurons)."""
    from nmtoolchain.numerics.loihi import is_loihi_cuba

    for n in graph:
        if n.op_name in ("Affine", "Linear", "Conv2d"):
            w = np.asarray(n.op.weight, dtype=np.float64)
            if np.any(w != np.round(w)):
                return False
        elif n.op.is_neuron:
            if n.op_name == "SigmaDelta":
                continue
            if not is_loihi_cuba(n):  # a CubaLIF/CubaLI carrying LoihiCubaNeuron numerics
                return False
    return True


def calibration_spikes(graph: Graph, calib: Union[str, Path], timesteps: int
                       ) -> Tuple[np.ndarray, str, Optional[Dict[str, Any]]]:
    """Calibration inputs as spikes (B, T, *shape): digits (train split) or a
    user's .npz ``x``; analog values are rate-coded as the graph's
    ``input_encoding`` says (deterministic rate code when it says nothing).
    Returns (spikes, description, the encoding used or None)."""
    from nmtoolchain.convert import encoding_metadata, rate_encode
    from nmtoolchain.datasets import load_digits_split, load_npz
    from nmtoolchain.inputs import _fit

    shape = tuple(graph.inputs()[0].shape)
    if str(calib) == "digits":
        x = load_digits_split().x_train[:CALIB_SAMPLES]
        origin = f"digits train split, {len(x)} images"
    else:
        path = Path(calib)
        if path.suffix != ".npz":
            raise BadInputError(f"--calib {calib}: expected 'digits' or a .npz file with x (and y)")
        x, _ = load_npz(path)
        x = x[:CALIB_SAMPLES]
        origin = f"{path.name}, {len(x)} samples"
    x = _fit(np.asarray(x, np.float32), shape, str(calib))
    binary = bool(np.isin(x, (0.0, 1.0)).all())
    if x.ndim == len(shape) + 2 and binary:
        return x, origin + " (spike trains as given)", None
    enc = graph.metadata.get("input_encoding")
    if isinstance(enc, dict) and enc.get("method") not in (None, "rate"):
        raise BadInputError(f"--calib {calib}: the model's input encoding "
                            f"{enc.get('method')!r} is not one nmtc can apply (rate; a direct "
                            "input is re-coded first by recode_direct_input)")
    x_max = float(enc.get("x_max", 1.0)) if isinstance(enc, dict) else 1.0
    used = dict(enc) if isinstance(enc, dict) else encoding_metadata(timesteps, x_max)
    return rate_encode(x, timesteps, x_max=x_max), origin + ", rate-coded", used


def recode_direct_input(graph: Graph, timesteps: int) -> List[str]:
    """Re-record a directly encoded (analog every step) input as a rate code, in
    place; returns the note saying so (or nothing)."""
    from nmtoolchain.convert import encoding_metadata

    enc = graph.metadata.get("input_encoding")
    if not (isinstance(enc, dict) and enc.get("method") == "direct"):
        return []
    graph.metadata["input_encoding"] = dict(
        encoding_metadata(timesteps, float(enc.get("x_max", 1.0))), replaces=DIRECT_REPLACED)
    return [DIRECT_REPLACED]


def adapt_converted(graph: Graph, calib: Any, timesteps: int) -> Tuple[Graph, List[str]]:
    """A converted (QCFS/MST) graph adapted to reset-to-zero CUBA neurons
    (:func:`nmtoolchain.convert.for_loihi.adapt_for_loihi`, which needs
    calibration data), with its spike amplitudes folded into weights; other
    graphs only get the fold. Returns (graph, notes)."""
    from nmtoolchain.convert.for_loihi import adapt_for_loihi, needs_adaptation
    from nmtoolchain.passes import fold_scales

    notes: List[str] = []
    if needs_adaptation(graph) and not is_quantized_for_loihi(graph):
        if calib is None:
            raise BadInputError(
                f"{graph_origin(graph)}: a converted network (subtract reset, pre-charge or an "
                "analog output) is adapted to Loihi's reset-to-zero neurons on calibration data; "
                "pass --calib digits or --calib FILE.npz")
        notes += recode_direct_input(graph, timesteps)
        spikes, origin, _ = calibration_spikes(graph, calib, timesteps)
        graph = adapt_for_loihi(graph, spikes, timesteps)
        ad = graph.metadata["loihi_adaptation"]
        notes.append(f"adapted for Loihi on {origin}: " + "; ".join(ad["changes"])
                     + f" (headroom k={ad['headroom']} chosen; prediction agreement with the "
                     f"unadapted SNN per k: {ad['agreement_with_unadapted']})")
    return fold_scales(graph), notes


def _quantize(graph: Graph, calib: Any, timesteps: int, profile: Any
              ) -> Tuple[Graph, Optional[Any], List[str]]:
    from nmtoolchain.quantize import quantize_for_loihi

    notes: List[str] = recode_direct_input(graph, timesteps)
    spikes = None
    if calib is not None:
        spikes, origin, used = calibration_spikes(graph, calib, timesteps)
        notes.append(f"calibration: {origin}")
        if used is not None and "input_encoding" not in graph.metadata:
            graph.metadata["input_encoding"] = used
    else:
        notes.append("no --calib: per-layer error not measured")
    q, report = quantize_for_loihi(graph, spikes, steps=timesteps, profile=profile)
    return q, report, notes


def _map(graph: Graph, profile: Any) -> Tuple[Dict[str, Any], List[str]]:
    """Run the mapping; returns (mapping dict for mapping.json, report lines)."""
    from nmtoolchain.mapping import map_onto_cores

    if graph.order()[1]:
        note = ("not mapped: nmtc's core mapper does not place recurrent layers yet (netx "
                "dense_rec); the network itself is exported and nmtc verify checks it in Lava")
        return {"mapped": False, "note": note}, [note]
    rep = map_onto_cores(graph, profile)
    d = rep.as_dict() if hasattr(rep, "as_dict") else dict(rep)
    lines = list(rep.lines()) if hasattr(rep, "lines") else []
    return d, lines


def write_network(plan: NetxPlan, path: Path) -> None:
    write_plan(plan, path)


def write_graph(graph: Graph, path: Path) -> None:
    from nmtoolchain.ir import graph_to_bytes

    path.write_bytes(graph_to_bytes(graph))


def write_mapping_json(mapping: Dict[str, Any], path: Path) -> None:
    path.write_text(_json(mapping))


def write_reports(report: Dict[str, Any], lines: List[str], directory: Path) -> None:
    (directory / FILES["report_json"]).write_text(_json(report))
    (directory / FILES["report_txt"]).write_text("\n".join(lines) + "\n")


def _json(obj: Any) -> str:
    return json.dumps(obj, indent=2, default=_jsonable, allow_nan=True) + "\n"


def _jsonable(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, (set, frozenset)):
        return sorted(v)
    if isinstance(v, Path):
        return str(v)
    if hasattr(v, "as_dict"):
        return v.as_dict()
    return str(v)


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
            from nmtoolchain.convert.encode import RATE_ENCODING

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
                 mapping_lines: List[str], notes: List[str]) -> Tuple[Dict[str, Any], List[str]]:
    """report.json (a dict) and report.txt (lines), both deterministic."""
    from nmtoolchain import __version__

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
    lines += ["", f"check it: nmtc verify <this directory> --steps {report['verify_steps']}"]
    return report, lines


def _mapping_summary(mapping: Dict[str, Any]) -> Dict[str, Any]:
    """The mapping's totals, limits, use and reference comparison; the per-layer and
    per-core tables stay in mapping.json."""
    keep = {k: v for k, v in mapping.items() if not isinstance(v, (list, dict))}
    for k in ("reference", "limits", "utilization", "traffic"):
        if k in mapping:
            keep[k] = mapping[k]
    return keep


# ------------------------------------------------------------------ the job
def prepare_for_loihi(graph: Graph, calib: Optional[Union[str, Path]], timesteps: int,
                      profile: Any = "loihi2") -> Tuple[Graph, Optional[Any], List[str]]:
    """The graph half of the export, in memory: refuse what cannot be exported,
    adapt a converted network (:func:`adapt_converted`), fold pooling, quantize
    (unless already in netx form). Returns (graph in netx form, the
    quantization report or None, notes)."""
    from nmtoolchain.passes import fold_pooling

    graph = copy.deepcopy(graph)  # the steps below record metadata; the caller's graph stays
    refuse_unsupported(graph, also_allowed=("Scale",))  # before any work
    graph, notes = adapt_converted(graph, calib, int(timesteps))
    refuse_unsupported(graph)
    graph = fold_pooling(graph)
    qreport = None
    if is_quantized_for_loihi(graph):
        if calib is not None:
            notes.append("--calib ignored: the model is already quantized for Loihi")
    else:
        graph, qreport, qnotes = _quantize(graph, calib, int(timesteps), profile)
        notes += qnotes
        if any(n.op_name in ("SumPool2d", "AvgPool2d") for n in graph):
            graph = fold_pooling(graph)
    return graph, qreport, notes


def export_loihi2(model: Union[str, Path, Graph], out_dir: Union[str, Path], *,
                  profile: Any = "loihi2", calib: Optional[Union[str, Path]] = None,
                  timesteps: int = 16, force: bool = False, allow_pickle: bool = False,
                  input_shape: Optional[Tuple[int, ...]] = None) -> ExportResult:
    """Export ``model`` (a file or a Graph) for Loihi 2 into ``out_dir`` (module docstring).

    ``profile``: hardware profile name or .toml path (bit widths, core limits).
    ``calib``: 'digits' or a .npz with ``x``: calibration data for the
    quantizer's error measurement (only used when the model needs quantizing).
    ``timesteps``: steps per sample for calibration and the report's verify
    advice. ``force``: replace an existing ``out_dir``.
    """
    from hardware_profiles import load_profile

    out_dir = Path(out_dir)
    if isinstance(timesteps, bool) or not isinstance(timesteps, (int, np.integer)) \
            or timesteps < 1:
        raise BadInputError(f"--timesteps must be a positive integer, got {timesteps!r}")
    parent = out_dir.parent if str(out_dir.parent) else Path(".")
    if out_dir.exists() and not force:
        raise BadInputError(f"{out_dir}: already exists; choose another -o or pass --force to "
                            "replace it")
    if out_dir.exists() and not out_dir.is_dir():
        raise BadInputError(f"{out_dir}: exists and is not a directory")
    if not parent.is_dir():
        raise BadInputError(f"{out_dir}: parent directory {parent} does not exist")
    prof = load_profile(profile)

    if isinstance(model, Graph):
        graph, model_name = model, graph_origin(model)
    else:
        from nmtoolchain.frontends import load_model

        graph = load_model(model, allow_pickle=allow_pickle, input_shape=input_shape)
        model_name = str(model)
    graph, qreport, notes = prepare_for_loihi(graph, calib, int(timesteps), prof)
    if qreport is None and any(n.op_name in LAVA_ONLY_OPS for n in graph):
        try:
            plan = plan_netx(graph)  # a recurrent layer's Add is netx's dense_rec
        except (NotExpressibleError, UnsupportedOpError):
            return _export_lava_graph(graph, model_name, out_dir, parent, prof.id,
                                      int(timesteps), notes, force)
    else:
        plan = plan_netx(graph)  # refuses what netx cannot hold, before mapping or writing
    mapping, mapping_lines = _map(graph, prof)
    quant = _quant_rows(graph, qreport)
    quant_lines = list(qreport.lines()) if qreport is not None else [quant["note"]]
    report, lines = build_report(model_name, graph, plan, prof.id, int(timesteps), quant,
                                 quant_lines, mapping, mapping_lines, notes)

    def write(tmp: Path) -> None:
        write_network(plan, tmp / FILES["network"])
        write_graph(graph, tmp / FILES["graph"])
        write_mapping_json(mapping, tmp / FILES["mapping"])
        write_reports(report, lines, tmp)

    _write_atomically(write, out_dir, parent, force)
    return ExportResult(out_dir, plan, report, lines, list(FILES.values()))


def _write_atomically(write: Any, out_dir: Path, parent: Path, force: bool) -> None:
    """``write(tmp)`` into a hidden temporary sibling, then rename it to ``out_dir``."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".part", dir=parent))
    try:
        write(tmp)
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; the export is an ordinary directory
        _move_into_place(tmp, out_dir, force)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError):
            raise BadInputError(f"{out_dir}: cannot write ({' '.join(str(e).split())})") from None
        raise


# ------------------------------------------------------- Lava process graph
#: What each planned process kind is in Lava, and whose it is.
_LAVA_PROCESS = {"source": ("GraphSpikeSource", "nmtc"), "dense": ("Dense", "lava"),
                 "lif": ("LIF", "lava"), "add": ("GraphAdd", "nmtc"),
                 "matmul": ("GraphMatMul", "nmtc"), "permute": ("GraphPermute", "nmtc")}


def describe_lava_graph(graph: Graph, model: str) -> Dict[str, Any]:
    """lava_graph.json: the Lava processes that run ``graph`` (no weights: those
    stay in network.nmir), from :func:`exporters.loihi2.lava_graph.plan_lava_graph`.

    Refuses (UnsupportedOpError naming the first Lava-only node, one line) a
    graph that cannot run as a Lava process graph."""
    from exporters.loihi2.lava_graph import plan_lava_graph
    from nmtoolchain.errors import NmtcError

    try:
        plan = plan_lava_graph(graph)
    except NmtcError as e:
        first = next(n for n in graph.topological_order() if n.op_name in LAVA_ONLY_OPS)
        raise UnsupportedOpError(
            f"{graph_origin(graph)}: node '{first.name}' (op {first.op_name}) cannot be exported "
            f"to Loihi 2 through lava-dl netx{op_hint(first.op_name)}, and the graph cannot run "
            f"as a Lava process graph either: {' '.join(str(e).split())}") from None
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


def _export_lava_graph(graph: Graph, model: str, out_dir: Path, parent: Path, profile_id: str,
                       timesteps: int, notes: List[str], force: bool) -> ExportResult:
    """The export of a quantized graph with Lava-only ops (module docstring)."""
    from nmtoolchain import __version__
    from exporters.loihi2.lava_graph import deployability

    desc = describe_lava_graph(graph, model)
    dep = deployability(graph)
    sentence = _lava_deployability_sentence(dep)
    quant = _quant_rows(graph, None)
    depth = int(desc["pipeline_depth"])
    mapping = {"mapped": False, "note": "not mapped: Lava-only ops (the core mapping places "
                                        "netx layers; these run in Lava's CPU simulator)"}
    report = {
        "format": REPORT_FORMAT, "version": REPORT_VERSION, "nmtc_version": __version__,
        "model": model, "target": "loihi2", "runs_as": "lava_process_graph",
        "profile": profile_id, "files": dict(LAVA_GRAPH_FILES), "timesteps": timesteps,
        "pipeline_depth": depth, "verify_steps": timesteps + depth,
        "input": {"drive": "spikes", "shape": desc["input"]["shape"],
                  "how": "binary spikes into the Input node's source process; row t-1 of the "
                         "drive is sent at step t"},
        "lava_graph": {k: desc[k] for k in ("lava_dense_lif", "nmtc_lava_processes")},
        "quantization": quant, "mapping": mapping,
        "deployability": {"loihi2_netx": dep["loihi2_netx"],
                          "lava_simulator_only": dep["lava_simulator_only"],
                          "refused": dep["unsupported"], "netx_file_written": False,
                          "note": sentence},
        "notes": list(notes),
    }
    lines = [f"nmtc export --target loihi2: {model}",
             f"runs as a Lava process graph: {len(desc['processes'])} processes; input spikes "
             f"{desc['input']['shape']}; pipeline depth {depth} steps",
             "", "Lava processes (lava_graph.json):",
             f"  {'node':<12} {'op':<10} {'process':<18} {'by':<5} inputs"]
    for d in desc["processes"]:
        lines.append(f"  {d['node']:<12} {d['op']:<10} {d['process']:<18} {d['provided_by']:<5} "
                     f"{', '.join(d['inputs']) or '-'}")
    lines += ["", "quantization:", "  " + quant["note"],
              "", "mapping:", "  " + mapping["note"],
              "", "deployability:",
              f"  on Loihi 2 through netx: {', '.join(dep['loihi2_netx'])}",
              f"  only in Lava's simulator: {', '.join(dep['lava_simulator_only'])}",
              "  " + LAVA_ONLY_NOTE]
    if notes:
        lines += ["", "notes:"] + ["  " + n for n in notes]
    lines += ["", f"check it: nmtc verify <this directory> --steps {report['verify_steps']}"]

    def write(tmp: Path) -> None:
        write_graph(graph, tmp / LAVA_GRAPH_FILES["graph"])
        (tmp / LAVA_GRAPH_FILES["lava_graph"]).write_text(_json(desc))
        write_reports(report, lines, tmp)

    _write_atomically(write, out_dir, parent, force)
    return ExportResult(out_dir, None, report, lines, list(LAVA_GRAPH_FILES.values()))


def _move_into_place(tmp: Path, out_dir: Path, force: bool) -> None:
    """Rename the finished temporary directory to ``out_dir`` (replacing it with force)."""
    if not out_dir.exists():
        os.replace(tmp, out_dir)
        return
    if not force:
        raise BadInputError(f"{out_dir}: appeared while exporting; not replaced (use --force)")
    old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".old", dir=out_dir.parent))
    os.rmdir(old)
    os.replace(out_dir, old)
    try:
        os.replace(tmp, out_dir)
    except BaseException:
        os.replace(old, out_dir)
        raise
    shutil.rmtree(old, ignore_errors=True)


__all__ = ["export_loihi2", "ExportResult", "refuse_unsupported", "is_quantized_for_loihi",
           "calibration_spikes", "build_report", "describe_lava_graph", "FILES",
           "LAVA_GRAPH_FILES"]
