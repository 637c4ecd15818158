"""The Speck back end: SynSense Speck / DYNAP-CNN through sinabs.

Pipeline (each a :class:`~nmtoolchain.pipeline.GraphPass`, recorded in the report):

1. ``fold_batchnorm``, 2. ``fold_scales`` (catalog passes);
3. ``encode_input_as_events``: a directly driven analog input becomes a rate
   code (Speck's cores take events only);
4. ``lower_to_dynapcnn``: Conv2d -> IAF -> sum-pool layers
   (:mod:`nmtoolchain.passes.speck_lower`);
5. ``quantize_for_speck``: sinabs's discretize rule (:mod:`nmtoolchain.quantize.speck`);
6. ``map_onto_speck_cores``: the chip's limits, memory per layer, core
   assignment by bipartite matching (:mod:`nmtoolchain.mapping.speck`).

The build is the sequential sinabs network, the mapping and (when NIR can say
it) a NIR graph; :mod:`exporters.speck.bundle` writes the directory and
:mod:`simulators.sinabs_runner` is the referee (sinabs against nmtc's
``speck`` numerics).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from nmtoolchain.errors import BadInputError, NmtcError
from nmtoolchain.ir import Graph
from nmtoolchain.pipeline import GraphPass, PassContext, PassOutput
from nmtoolchain.pipeline.catalog import FoldBatchNorm, FoldScales
from nmtoolchain.targets.base import (Compiled, ExportOptions, ExportResult, Refusal, Target,
                                      graph_origin)

#: the note for a directly driven analog input
SPECK_DIRECT = ("input: the model applies the analog input at every step (direct encoding); "
                "Speck's cores take events, so the export feeds the deterministic rate code of "
                "the input instead (same mean input, quantized to 1/T)")
def speck_refusals(graph: Graph) -> List[Refusal]:
    """Every node no step of the Speck pipeline can lower, and why
    (:func:`nmtoolchain.passes.speck_lower.refused_nodes`)."""
    from nmtoolchain.passes.speck_lower import refused_nodes

    return [Refusal(name, op, why) for name, op, why in refused_nodes(graph)]


# ------------------------------------------------------------------- passes
class EncodeInputAsEvents(GraphPass):
    """A directly driven analog input as a rate code (metadata; the data are encoded
    when the network runs)."""

    name = "encode_input_as_events"

    def skip_reason(self, graph: Graph, ctx: PassContext) -> Optional[str]:
        enc = graph.metadata.get("input_encoding")
        return None if isinstance(enc, dict) and enc.get("method") == "direct" \
            else "the input is not a directly driven analog input"

    def run(self, graph: Graph, ctx: PassContext) -> PassOutput:
        from nmtoolchain.convert.encode import encoding_metadata

        enc = graph.metadata["input_encoding"]
        graph.metadata["input_encoding"] = dict(
            encoding_metadata(ctx.timesteps, float(enc.get("x_max", 1.0))), replaces=SPECK_DIRECT)
        return PassOutput(graph, [SPECK_DIRECT])


class LowerToDynapcnn(GraphPass):
    """Group the graph into DYNAP-CNN layers (:func:`nmtoolchain.passes.speck_lower.lower_to_dynapcnn`)."""

    name = "lower_to_dynapcnn"

    def skip_reason(self, graph: Graph, ctx: PassContext) -> Optional[str]:
        from nmtoolchain.quantize.speck import is_quantized_for_speck

        return "already quantized for Speck" if is_quantized_for_speck(graph) else None

    def run(self, graph: Graph, ctx: PassContext) -> PassOutput:
        from nmtoolchain.passes.speck_lower import lower_to_dynapcnn

        g, notes = lower_to_dynapcnn(graph)
        return PassOutput(g, notes)


class QuantizeForSpeck(GraphPass):
    """Speck's integers by sinabs's discretize rule (:func:`nmtoolchain.quantize.speck.quantize_for_speck`)."""

    name = "quantize_for_speck"

    def skip_reason(self, graph: Graph, ctx: PassContext) -> Optional[str]:
        from nmtoolchain.quantize.speck import is_quantized_for_speck

        return "already quantized for Speck" if is_quantized_for_speck(graph) else None

    def run(self, graph: Graph, ctx: PassContext) -> PassOutput:
        from nmtoolchain.quantize.speck import quantize_for_speck

        g, report = quantize_for_speck(graph)
        return PassOutput(g, list(report.notes), report)


class MapOntoSpeckCores(GraphPass):
    """Chip limits, memory per layer and the core assignment: the ``speck`` mapper of
    :func:`nmtoolchain.mapping.place` (the one the reports use), strict; the result
    is the :class:`~nmtoolchain.mapping.speck.SpeckMapping`."""

    name = "map_onto_speck_cores"

    def run(self, graph: Graph, ctx: PassContext) -> PassOutput:
        from nmtoolchain.mapping import place
        from nmtoolchain.passes.speck_lower import dynapcnn_layers

        placement = place(graph, ctx.profile if ctx.profile is not None else "speck",
                          mapper="speck", strict=True,
                          dvs_input=bool(ctx.options.get("dvs_input", False)))
        mapping = placement.speck
        for spec in dynapcnn_layers(graph):
            graph[spec.conv].annotations["placement"] = {"core": mapping.assignment[spec.index]}
        return PassOutput(graph, [], mapping)


def speck_passes() -> List[GraphPass]:
    """The graph half of the Speck export, in order (module docstring)."""
    return [FoldBatchNorm(), FoldScales(), EncodeInputAsEvents(), LowerToDynapcnn(),
            QuantizeForSpeck(), MapOntoSpeckCores()]


# ------------------------------------------------------------------- target
@dataclasses.dataclass
class SpeckArtifact:
    """What the Speck export writes, built in memory."""

    network: Any  # SinabsNetworkSpec
    layers: List[Any]  # DynapcnnLayerSpec
    mapping: Any  # SpeckMapping
    nir: Any = None
    nir_reason: str = ""


class SpeckTarget(Target):
    """SynSense Speck / DYNAP-CNN: a discretized sinabs network plus the chip configuration."""

    name = "speck"
    summary = "SynSense Speck (DYNAP-CNN): sinabs network, chip configuration, mapping, report"
    writes = "directory"
    suffix = ".speck"
    default_profile = "speck"
    options = frozenset({"profile", "timesteps", "force"})

    def refusals(self, graph: Graph) -> List[Refusal]:
        return speck_refusals(graph)

    def passes(self, options: ExportOptions) -> List[GraphPass]:
        return speck_passes()

    def build(self, compiled: Compiled) -> SpeckArtifact:
        from exporters.speck.network import sinabs_spec
        from nmtoolchain.passes.speck_lower import dynapcnn_layers

        graph = compiled.graph
        network = sinabs_spec(graph)
        layers = dynapcnn_layers(graph)
        mapping = compiled.pipeline.result_of("map_onto_speck_cores")
        nir_graph, reason = None, ""
        try:
            from exporters.nir import graph_to_nir

            nir_graph = graph_to_nir(graph)
        except NmtcError as e:
            reason = " ".join(str(e).split())
        except ImportError as e:  # pragma: no cover - nir is a dependency
            reason = f"nir not importable ({e})"
        return SpeckArtifact(network, layers, mapping, nir_graph, reason)

    def verdict_notes(self, compiled: Compiled) -> List[str]:
        art = compiled.artifact
        if art is None:
            return []
        cores = ", ".join(f"{l}->{c}" for l, c in sorted(art.mapping.assignment.items()))
        return [f"{len(art.layers)} DYNAP-CNN layer(s) on cores (layer->core) {cores}"]

    def write(self, compiled: Compiled, out: Path) -> ExportResult:
        from exporters.speck.bundle import SpeckExport, write_speck_export

        art: SpeckArtifact = compiled.artifact
        pipeline = compiled.pipeline
        prof_id = compiled.profile.id if compiled.profile is not None else self.default_profile
        report, lines, files = write_speck_export(SpeckExport(
            compiled.model, compiled.graph, art.network, art.layers, art.mapping,
            pipeline.result_of("quantize_for_speck"), prof_id, int(compiled.options.timesteps),
            list(pipeline.notes), pipeline.lines(), pipeline.as_dicts(), art.nir,
            art.nir_reason), out, compiled.options.force)
        return ExportResult(self.name, out, files, report, lines, compiled)

    def accuracy(self, graph: Graph, x: Any, y: Any, *, steps: int,
                 calib: Any = None) -> Dict[str, Any]:
        return speck_accuracy(graph, x, y, steps=steps)

    def verify(self, directory: Path, **kwargs: Any) -> Any:
        from simulators.sinabs_runner import verify_speck_export

        return verify_speck_export(directory, **kwargs)


TARGET = SpeckTarget()


def compile_for_speck(graph: Graph, timesteps: int = 16) -> Compiled:
    """The graph half of the export, in memory (refusals, passes, build)."""
    return TARGET.compile(graph, ExportOptions(timesteps=int(timesteps)))


def speck_accuracy(graph: Graph, x: Any, y: Any, *, steps: int) -> Dict[str, Any]:
    """{'accuracy', 'samples', 'steps', 'notes', 'graph'} of the Speck export of
    ``graph`` on (x, y), run in nmtc's speck numerics (spike-identical with sinabs,
    checked by ``nmtc verify``); the class is the output neuron with most spikes."""
    from nmtoolchain.quantize import spike_counts
    from simulators.sinabs_runner import input_spikes

    y = np.asarray(y).reshape(-1)
    if len(x) != len(y):
        raise BadInputError(f"speck_accuracy: {len(x)} samples but {len(y)} labels")
    compiled = compile_for_speck(graph, steps)
    q = compiled.graph
    out = q[q.outputs()[0].inputs[0]].name
    correct = 0
    for i in range(0, len(y), 256):
        spikes = input_spikes(q, np.asarray(x)[i:i + 256], int(steps))
        counts = spike_counts(q, "speck", spikes, int(steps), [out])[out]
        correct += int((counts.reshape(len(counts), -1).argmax(1) == y[i:i + 256]).sum())
    return {"accuracy": correct / len(y), "samples": int(len(y)), "steps": int(steps),
            "notes": list(compiled.pipeline.notes), "graph": q}


__all__ = ["SpeckTarget", "TARGET", "speck_refusals", "speck_passes", "speck_accuracy",
           "compile_for_speck", "EncodeInputAsEvents", "LowerToDynapcnn",
           "QuantizeForSpeck", "MapOntoSpeckCores"]
