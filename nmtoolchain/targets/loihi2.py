"""The Loihi 2 back end: what it accepts, its pass pipeline, its writer and referee.

Pipeline (each a :class:`~nmtoolchain.pipeline.GraphPass`, recorded in the
export report):

0. ``quantize_token_graph``: a float spiking transformer (Spikformer-style:
   MatMul, Transpose, residual Add, spike MaxPool, token Mean) becomes a
   fixed-point Lava process graph (:mod:`nmtoolchain.quantize.token_graph`);
   the passes below then skip it;
1. ``adapt_for_loihi``: a converted (QCFS/MST) network is adapted to Loihi's
   reset-to-zero CUBA neurons on the ``--calib`` data (spiking readout,
   threshold headroom, pre-charge as a bias; a direct analog input is
   re-coded as a rate code);
2. ``fold_scales``: spike amplitudes (``Scale`` after a neuron) into the next weights;
3. ``check_netx_ops``: refuse anything no later step can turn into a netx
   layer or a Lava process (a Scale that could not be folded, say);
4. ``fold_pooling``, 5. ``quantize_for_loihi`` (unless already in netx form),
   6. ``fold_pooling`` again for pooling the quantizer kept;

then the build: every netx layer planned in memory
(:func:`exporters.loihi2.netx_writer.plan_netx`) or, for a quantized graph
with Lava-only ops (Add outside a recurrent layer, MatMul, Transpose), a
Lava process graph; and the placement stage, ``map_onto_cores``, for netx
networks without recurrence. :mod:`exporters.loihi2.bundle` writes the
directory; :mod:`exporters.loihi2.verify` is the referee (Lava against nmtc).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np

from exporters.loihi2.bundle import (LavaGraphExport, NetxExport, write_lava_graph_export,
                                     write_netx_export)
from exporters.loihi2.lava_graph import LAVA_SIMULATOR_ONLY_OPS, deployability, plan_lava_graph
from exporters.loihi2.verify import verify_export
from exporters.loihi2.netx_writer import NETX_BUILDERS, NEURON_OPS, op_hint, plan_netx
from nmtoolchain.calibration import calibration_spikes, recode_direct_input
from nmtoolchain.convert.encode import rate_encode
from nmtoolchain.convert.for_loihi import adapt_for_loihi, needs_adaptation
from nmtoolchain.errors import (BadInputError, NmtcError, NotExpressibleError,
                                UnsupportedOpError)
from nmtoolchain.ir import Graph
from nmtoolchain.quantize import spike_counts
from nmtoolchain.quantize.loihi import LOIHI_NEURONS
from nmtoolchain.quantize.token_graph import (is_token_graph, quantize_token_graph,
                                              readout_values, token_graph_refusals)
from nmtoolchain.pipeline import (GraphPass, NeedsInput, PassContext, PassOutput,
                                  run_pipeline)
from nmtoolchain.pipeline.catalog import (FoldPooling, FoldScales, MapOntoCores,
                                          QuantizeForLoihi, is_quantized_for_loihi)
from nmtoolchain.targets.base import (Compiled, ExportOptions, ExportResult, Refusal, Target,
                                      graph_origin, group_refusals, load_graph)

#: Ops the pipeline can turn into netx layers (neurons the quantizer converts,
#: pooling the fold removes, a recurrent layer's Add); anything else is refused up front.
PIPELINE_OPS = frozenset(NETX_BUILDERS) | frozenset(NEURON_OPS) | frozenset(LOIHI_NEURONS) | {
    "Output", "Add", "SumPool2d", "AvgPool2d"}
#: Lava-only ops that no pass can make netx layers of (Add is netx's dense_rec in a
#: recurrent layer): exported only from an already quantized graph.
LAVA_ONLY_NOT_NETX = tuple(op for op in LAVA_SIMULATOR_ONLY_OPS if op not in PIPELINE_OPS)
#: AT-SNN's token nodes: refused by name, first (no pass can make netx layers of them)
TOKEN_OPS = ("TokenHalt", "TokenMerge")
#: The requirement a dry run states for a converted network.
CALIB_IGNORED = "--calib ignored: the model is already quantized for Loihi"
NEEDS_CALIB = ("--calib: a converted network (subtract reset, pre-charge or an analog output) "
               "is adapted to Loihi's reset-to-zero neurons on calibration data")


def loihi2_refusals(graph: Graph, *, allow_scale: bool = True) -> List[Refusal]:
    """Every node no step of the Loihi 2 pipeline can export, and why.

    The Lava-only ops pass when the graph is already quantized; a float graph
    with them goes to the token-graph quantizer, whose refusals (node, reason:
    softmax, random masks, LayerNorm, ...) are returned instead. ``allow_scale``: a ``Scale`` is accepted before the
    fold (the pipeline folds spike amplitudes into weights)."""
    quantized = is_quantized_for_loihi(graph)
    if not quantized and not any(n.op_name == "QCFS" for n in graph) and (
            is_token_graph(graph) or any(n.op_name in LAVA_ONLY_NOT_NETX for n in graph)):
        # a spiking transformer: quantize_token_graph, or why it cannot
        return [Refusal(n, op, why) for n, op, why in token_graph_refusals(graph)]
    allowed = set(PIPELINE_OPS) | ({"Scale"} if allow_scale else set()) \
        | (set(LAVA_SIMULATOR_ONLY_OPS) | {"Reshape"} if quantized else set())
    why_scale = {r["scale"]: r["why"] for r in graph.metadata.get("unfolded_scales", [])}
    out: List[Refusal] = []
    for n in graph.topological_order():
        if n.op_name == "QCFS":
            out.append(Refusal(n.name, n.op_name, (
                "is a QCFS activation: this is the ANN; convert it to a spiking network first "
                "(nmtc convert MODEL --method mst -T T -o snn.nmir), then export snn.nmir")))
        elif not quantized and n.op_name in LAVA_ONLY_NOT_NETX:
            out.append(Refusal(n.name, n.op_name, (
                "runs only as a Lava process, which nmtc exports only from an already quantized "
                "graph (integer weights, Loihi CUBA neurons); quantizing float graphs with "
                f"{'/'.join(LAVA_SIMULATOR_ONLY_OPS)} is not supported yet")))
        elif n.op_name in TOKEN_OPS:
            out.append(Refusal(n.name, n.op_name, (
                "is AT-SNN's data-dependent token halting/merging (runtime token masks shared "
                "across blocks and steps), which no lava-dl netx layer holds; run it in "
                "nmtc simulate")))
        elif n.op_name not in allowed:
            hint = (f" (its spike amplitude cannot be folded into weights: {why_scale[n.name]})"
                    if n.name in why_scale else op_hint(n.op_name))
            out.append(Refusal(n.name, n.op_name,
                               f"cannot be exported to Loihi 2 through lava-dl netx{hint}"))
    # a QCFS ANN is told to convert first: that advice covers its BatchNorm too; a
    # token node is named before the layers around it
    return sorted(out, key=lambda r: (r.op != "QCFS", r.op not in TOKEN_OPS))


def token_input_levels(calib: Any) -> int:
    """Integer levels of the graded input drive: 16 for the digits (and when no
    calibration data is given), else the smallest L in 16, 255 that makes the
    calibration samples integers (255 when none does)."""
    if calib is None or str(calib) == "digits":
        return 16
    from nmtoolchain.calibration import read_calibration_x

    x = np.asarray(read_calibration_x(calib)[0], np.float64)
    for levels in (16, 255):
        if np.allclose(x * levels, np.round(x * levels), atol=1e-4):
            return levels
    return 255


class QuantizeTokenGraph(GraphPass):
    """A float spiking transformer (Spikformer-style: MatMul, Transpose, residual
    Add, spike MaxPool, token Mean) in Loihi fixed point as a Lava process graph
    (:func:`nmtoolchain.quantize.token_graph.quantize_token_graph`); the result is
    its quantization report."""

    name = "quantize_token_graph"

    def skip_reason(self, graph: Graph, ctx: PassContext) -> Optional[str]:
        if is_quantized_for_loihi(graph):
            return "already in Loihi's fixed-point form"
        if not is_token_graph(graph):
            return "not a spiking transformer (no MatMul, Transpose or token Mean)"
        return None

    def run(self, graph: Graph, ctx: PassContext) -> PassOutput:
        levels = token_input_levels(ctx.calib)
        q, rep = quantize_token_graph(graph, steps=int(ctx.timesteps), input_levels=levels)
        notes = [f"spiking transformer quantized for Lava: {len(rep.layers)} neuron layers, "
                 f"{rep.relays} relay layers aligning residual/attention inputs, graded input "
                 f"round(x * {levels}) for {rep.steps} steps, run {rep.run_steps} steps "
                 "(per-depth LIFReset)"] + list(rep.notes)
        return PassOutput(q, notes, result=rep)


def _refusal_error(graph: Graph, refused: List[Refusal]) -> NmtcError:
    first = refused[0]
    rest = [r.node for r in refused[1:]]
    more = f" (and {len(rest)} more: {', '.join(rest[:3])}{', ...' if len(rest) > 3 else ''})" \
        if rest else ""
    return UnsupportedOpError(f"{graph_origin(graph)}: node '{first.node}' (op {first.op}) "
                              f"{first.reason}{more}")


# ------------------------------------------------------------------- passes
class AdaptForLoihi(GraphPass):
    """A converted (QCFS/MST) graph adapted to reset-to-zero CUBA neurons
    (:func:`nmtoolchain.convert.for_loihi.adapt_for_loihi`) on the calibration data."""

    name = "adapt_for_loihi"

    def skip_reason(self, graph: Graph, ctx: PassContext) -> Optional[str]:
        if not needs_adaptation(graph):
            return "not a converted network (no subtract reset, pre-charge or analog output)"
        if is_quantized_for_loihi(graph):
            return "already in Loihi's fixed-point (netx) form"
        return None

    def run(self, graph: Graph, ctx: PassContext) -> PassOutput:
        if ctx.calib is None:
            if ctx.dry_run:
                raise NeedsInput(NEEDS_CALIB)
            raise BadInputError(
                f"{graph_origin(graph)}: a converted network (subtract reset, pre-charge or an "
                "analog output) is adapted to Loihi's reset-to-zero neurons on calibration data; "
                "pass --calib digits or --calib FILE.npz")
        notes = recode_direct_input(graph, ctx.timesteps)
        spikes, origin, _ = calibration_spikes(graph, ctx.calib, ctx.timesteps)
        adapted = adapt_for_loihi(graph, spikes, ctx.timesteps)
        ad = adapted.metadata["loihi_adaptation"]
        notes.append(f"adapted for Loihi on {origin}: " + "; ".join(ad["changes"])
                     + f" (headroom k={ad['headroom']} chosen; prediction agreement with the "
                     f"unadapted SNN per k: {ad['agreement_with_unadapted']})")
        return PassOutput(adapted, notes)


class CheckNetxOps(GraphPass):
    """Refuse, naming the node, what the remaining passes cannot make netx layers of
    (e.g. a spike amplitude that could not be folded). Changes nothing."""

    name = "check_netx_ops"

    def run(self, graph: Graph, ctx: PassContext) -> PassOutput:
        refused = loihi2_refusals(graph, allow_scale=False)
        if refused:
            raise _refusal_error(graph, refused)
        return PassOutput(graph)


class MapNetxLayers(MapOntoCores):
    """Core placement of a netx network (not of a Lava process graph)."""

    def skip_reason(self, graph: Graph, ctx: PassContext) -> Optional[str]:
        if not graph.order()[1] and any(n.op_name in LAVA_SIMULATOR_ONLY_OPS for n in graph):
            return ("Lava-only ops: the core mapping places netx layers; these run in Lava's "
                    "CPU simulator")
        return super().skip_reason(graph, ctx)


def loihi2_passes() -> List[GraphPass]:
    """The graph half of the Loihi 2 export, in order (module docstring)."""
    return [QuantizeTokenGraph(), AdaptForLoihi(), FoldScales(), CheckNetxOps(), FoldPooling(),
            QuantizeForLoihi(), FoldPooling()]


# ------------------------------------------------------------------- target
@dataclasses.dataclass
class Loihi2Artifact:
    """What the Loihi 2 export writes: a netx network or a Lava process graph."""

    plan: Any  # NetxPlan, or None for a Lava process graph
    lava_graph: Any = None  # LavaGraphPlan when the graph runs as Lava processes


class Loihi2Target(Target):
    """Intel Loihi 2 through lava-dl netx (plus nmtc's Lava processes for ops netx lacks)."""

    name = "loihi2"
    summary = "Intel Loihi 2: lava-dl netx directory (network.net, mapping, report)"
    writes = "directory"
    suffix = ".loihi2"
    default_profile = "loihi2"
    options = frozenset({"profile", "calib", "timesteps", "force"})

    def refusals(self, graph: Graph) -> List[Refusal]:
        return loihi2_refusals(graph)

    def refusal_error(self, graph: Graph, refusals: Any) -> NmtcError:
        return _refusal_error(graph, list(refusals))

    def passes(self, options: ExportOptions) -> List[GraphPass]:
        return loihi2_passes()

    def build(self, compiled: Compiled) -> Loihi2Artifact:
        graph = compiled.graph
        quantized_here = compiled.pipeline.result_of("quantize_for_loihi") is not None
        if not quantized_here and any(n.op_name in LAVA_SIMULATOR_ONLY_OPS for n in graph):
            try:
                plan = plan_netx(graph)  # a recurrent layer's Add is netx's dense_rec
            except (NotExpressibleError, UnsupportedOpError):
                return Loihi2Artifact(None, _lava_graph_plan(graph))
        else:
            plan = plan_netx(graph)  # refuses what netx cannot hold, before mapping or writing
        # placement: the second stage of the pipeline, on the planned graph
        ctx = PassContext(self.name, compiled.profile, int(compiled.options.timesteps),
                          compiled.options.calib, {}, False)
        placed = run_pipeline(graph, [MapNetxLayers()], ctx)
        compiled.graph = placed.graph
        compiled.pipeline.records += placed.records
        return Loihi2Artifact(plan)

    def verdict_notes(self, compiled: Compiled) -> List[str]:
        if compiled.artifact is None or compiled.artifact.plan is not None:
            return []  # a netx plan holds every node (a recurrent layer's Add is dense_rec)
        only = set(deployability(compiled.graph)["lava_simulator_only"])
        return group_refusals([Refusal(n.name, n.op_name, (
            f"{n.op_name} runs only in Lava's CPU simulator (nmtc's own Lava process; not "
            "deployable on the chip through netx)")) for n in compiled.graph.topological_order()
            if n.name in only])

    def accuracy(self, graph: Graph, x: Any, y: Any, *, steps: int,
                 calib: Optional[Union[str, Path]] = "digits") -> Dict[str, Any]:
        return loihi_accuracy(graph, x, y, steps=steps, calib=calib)

    def verify(self, directory: Path, **kwargs: Any) -> Any:
        return verify_export(directory, **kwargs)

    def write(self, compiled: Compiled, out: Path) -> ExportResult:
        art: Loihi2Artifact = compiled.artifact
        pipeline = compiled.pipeline
        notes = list(pipeline.notes)
        if not pipeline.ran("quantize_for_loihi") and compiled.options.calib is not None:
            notes.append(CALIB_IGNORED)
        prof_id = compiled.profile.id if compiled.profile is not None else self.default_profile
        if art.plan is None:
            report, lines, files = write_lava_graph_export(LavaGraphExport(
                compiled.model, compiled.graph, prof_id, int(compiled.options.timesteps), notes,
                pipeline.lines(), pipeline.as_dicts(),
                pipeline.result_of("quantize_token_graph")), out, compiled.options.force)
        else:
            agreement = None
            if compiled.options.calib is not None and compiled.source is not None:
                from nmtoolchain.targets.agreement import on_calibration

                try:
                    agreement = on_calibration(compiled.source, compiled.graph,
                                               compiled.options.calib,
                                               int(compiled.options.timesteps))
                except NmtcError as e:  # the export stands; say why it was not measured
                    notes.append(f"agreement with the source not measured: {e}")
            mapping = pipeline.result_of("map_onto_cores")
            map_rec = next(r for r in pipeline.records if r.name == "map_onto_cores")
            report, lines, files = write_netx_export(NetxExport(
                compiled.model, compiled.graph, art.plan, prof_id, int(compiled.options.timesteps),
                pipeline.result_of("quantize_for_loihi"), mapping,
                None if map_rec.ran else map_rec.skipped_because, notes, pipeline.lines(),
                pipeline.as_dicts(), agreement), out, compiled.options.force)
        return ExportResult(self.name, out, files, report, lines, compiled)


def _lava_graph_plan(graph: Graph) -> Any:
    """The Lava process graph of a quantized graph with Lava-only ops, or a refusal
    naming the first Lava-only node."""
    try:
        return plan_lava_graph(graph)
    except NmtcError as e:
        first = next(n for n in graph.topological_order() if n.op_name in LAVA_SIMULATOR_ONLY_OPS)
        raise UnsupportedOpError(
            f"{graph_origin(graph)}: node '{first.name}' (op {first.op_name}) cannot be exported "
            f"to Loihi 2 through lava-dl netx{op_hint(first.op_name)}, and the graph cannot run "
            f"as a Lava process graph either: {' '.join(str(e).split())}") from None


TARGET = Loihi2Target()


# ------------------------------------------------------- library entry points
def prepare_for_loihi(graph: Graph, calib: Optional[Union[str, Path]], timesteps: int,
                      profile: Any = "loihi2") -> Tuple[Graph, Optional[Any], List[str]]:
    """The graph half of the export, in memory: refuse, adapt, fold, quantize.
    Returns (graph in netx form, the quantization report or None, notes)."""
    refused = loihi2_refusals(graph)
    if refused:
        raise _refusal_error(graph, refused)
    options = ExportOptions(profile=profile, calib=calib, timesteps=int(timesteps))
    ctx = PassContext("loihi2", TARGET.profile_of(options), int(timesteps), calib, {}, False)
    result = run_pipeline(graph, loihi2_passes(), ctx)
    notes = list(result.notes)
    if not result.ran("quantize_for_loihi") and calib is not None:
        notes.append(CALIB_IGNORED)
    return result.graph, result.result_of("quantize_for_loihi"), notes


def export_loihi2(model: Union[str, Path, Graph], out_dir: Union[str, Path], *,
                  profile: Any = "loihi2", calib: Optional[Union[str, Path]] = None,
                  timesteps: int = 16, force: bool = False, allow_pickle: bool = False,
                  input_shape: Optional[Tuple[int, ...]] = None) -> ExportResult:
    """Export ``model`` (a file or a Graph) for Loihi 2 into the directory ``out_dir``.

    ``profile``: hardware profile name or .toml path (bit widths, core limits).
    ``calib``: 'digits' or a .npz with ``x``: calibration data (adaptation of a
    converted network; the quantizer's error measurement). ``timesteps``:
    steps per sample for calibration and the report's verify advice.
    ``force``: replace an existing ``out_dir``."""
    graph, name = load_graph(model, allow_pickle=allow_pickle, input_shape=input_shape)
    return TARGET.export(graph, Path(out_dir), ExportOptions(
        profile=profile, calib=calib, timesteps=timesteps, force=force), model=name)


def loihi_accuracy(graph: Graph, x: Any, y: Any, *, steps: int,
                   calib: Optional[Union[str, Path]] = "digits",
                   profile: Any = "loihi2") -> Dict[str, Any]:
    """{'accuracy', 'samples', 'steps', 'headroom', 'notes', 'graph'} of the
    fixed-point export of ``graph`` on (x, y): the graph half of the export
    (:func:`prepare_for_loihi`) simulated in nmtc's loihi numerics (bit-exact
    with Lava, checked by ``nmtc verify``) with the export's input encoding and
    the pipeline-aligned count window; the class is the output neuron with the
    most spikes. ``x`` holds analog samples (N, *input shape), rate-coded as
    the export records."""
    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y).reshape(-1)
    if len(x) != len(y):
        raise BadInputError(f"loihi_accuracy: {len(x)} samples but {len(y)} labels")
    q, _, notes = prepare_for_loihi(graph, calib, int(steps), profile)
    if "lava_run" in q.metadata:  # a spiking transformer: v of its summing readout
        shape = tuple(q.inputs()[0].shape)
        correct = 0
        for i in range(0, len(x), 256):
            v = readout_values(q, x[i:i + 256].reshape((-1,) + shape))
            correct += int((v.argmax(1) == y[i:i + 256]).sum())
        return {"accuracy": correct / len(y), "samples": int(len(y)), "steps": int(steps),
                "headroom": None, "notes": notes, "graph": q}
    out = q[q.outputs()[0].inputs[0]].name
    enc = q.metadata.get("input_encoding", {})
    shape = tuple(q.inputs()[0].shape)
    xs = x.reshape((len(x),) + shape)
    correct = 0
    for i in range(0, len(xs), 256):
        spikes = rate_encode(xs[i:i + 256], int(steps), x_max=float(enc.get("x_max", 1.0)))
        counts = spike_counts(q, "loihi", spikes, int(steps), [out])[out]
        correct += int((counts.reshape(len(counts), -1).argmax(1) == y[i:i + 256]).sum())
    ad = q.metadata.get("loihi_adaptation", {})
    return {"accuracy": correct / len(y), "samples": int(len(y)), "steps": int(steps),
            "headroom": ad.get("headroom"), "notes": notes, "graph": q}


__all__ = ["loihi_accuracy", "Loihi2Target", "TARGET", "loihi2_refusals", "loihi2_passes", "prepare_for_loihi",
           "export_loihi2", "AdaptForLoihi", "CheckNetxOps", "MapNetxLayers", "PIPELINE_OPS",
           "QuantizeTokenGraph", "token_input_levels"]
