"""The library's graph transforms as passes with the one contract.

Each class wraps one library function (which stays usable on its own) and
says when it does not apply. Target-specific passes that only one back end
needs live with that target (``nmtoolchain/targets/<name>.py``).
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from nmtoolchain.calibration import calibration_spikes, recode_direct_input
from nmtoolchain.convert.mst import convert_mst
from nmtoolchain.ir import Graph
from nmtoolchain.mapping import map_onto_cores
from nmtoolchain.numerics.loihi import is_loihi_cuba
from nmtoolchain.passes import fold_batchnorm, fold_pooling, fold_scales
from nmtoolchain.quantize import quantize_for_loihi
from nmtoolchain.pipeline.contract import GraphPass, PassContext, PassOutput

_POOLS = ("SumPool2d", "AvgPool2d")


class FoldBatchNorm(GraphPass):
    """Fold BatchNorm into the preceding weighted layer (:func:`nmtoolchain.passes.fold_batchnorm`)."""

    name = "fold_batchnorm"

    def skip_reason(self, graph: Graph, ctx: PassContext) -> Optional[str]:
        return None if any(n.op_name == "BatchNorm" for n in graph) else "no BatchNorm"

    def run(self, graph: Graph, ctx: PassContext) -> PassOutput:
        return PassOutput(fold_batchnorm(graph))


class FoldScales(GraphPass):
    """Move a neuron's output ``Scale`` into the weights it feeds
    (:func:`nmtoolchain.passes.fold_scales`)."""

    name = "fold_scales"

    def skip_reason(self, graph: Graph, ctx: PassContext) -> Optional[str]:
        return None if any(n.op_name == "Scale" for n in graph) else "no Scale"

    def run(self, graph: Graph, ctx: PassContext) -> PassOutput:
        return PassOutput(fold_scales(graph))


class FoldPooling(GraphPass):
    """Fold sum/average pooling into the next weighted layer
    (:func:`nmtoolchain.passes.fold_pooling`)."""

    name = "fold_pooling"

    def skip_reason(self, graph: Graph, ctx: PassContext) -> Optional[str]:
        return None if any(n.op_name in _POOLS for n in graph) else "no sum/average pooling"

    def run(self, graph: Graph, ctx: PassContext) -> PassOutput:
        return PassOutput(fold_pooling(graph))


class ConvertMST(GraphPass):
    """QCFS ANN -> IF SNN with threshold λ and λ/2 pre-charge (:func:`nmtoolchain.convert.convert_mst`).

    Options: ``precharge`` (default True)."""

    name = "convert_mst"

    def skip_reason(self, graph: Graph, ctx: PassContext) -> Optional[str]:
        return None if any(n.op_name == "QCFS" for n in graph) else "no QCFS activation"

    def run(self, graph: Graph, ctx: PassContext) -> PassOutput:
        return PassOutput(convert_mst(graph, timesteps=ctx.timesteps,
                                      precharge=bool(ctx.options.get("precharge", True))))


class MapOntoCores(GraphPass):
    """Partition the neuron layers onto the profile's cores
    (:func:`nmtoolchain.mapping.map_onto_cores`); the result is the mapping report,
    and the graph carries each layer's placement (``annotations['placement']``)."""

    name = "map_onto_cores"

    def skip_reason(self, graph: Graph, ctx: PassContext) -> Optional[str]:
        if ctx.profile is None:
            return "no hardware profile"
        return None

    def run(self, graph: Graph, ctx: PassContext) -> PassOutput:
        rep = map_onto_cores(graph, ctx.profile)
        return PassOutput(rep.annotated(graph), result=rep)


__all__ = ["FoldBatchNorm", "FoldScales", "FoldPooling", "ConvertMST", "MapOntoCores"]


class QuantizeForLoihi(GraphPass):
    """Quantize a float SNN to Loihi's fixed point (:func:`nmtoolchain.quantize.quantize_for_loihi`),
    measuring the per-layer spike-count error on the context's calibration data
    when there is some. The result is the quantization report. Skipped for a
    graph already in netx form (Intel's .net files, an earlier export)."""

    name = "quantize_for_loihi"

    def skip_reason(self, graph: Graph, ctx: PassContext) -> Optional[str]:
        return "already in Loihi's fixed-point (netx) form" if is_quantized_for_loihi(graph) \
            else None

    def run(self, graph: Graph, ctx: PassContext) -> PassOutput:
        notes = recode_direct_input(graph, ctx.timesteps)
        spikes = None
        if ctx.calib is not None:
            spikes, origin, used = calibration_spikes(graph, ctx.calib, ctx.timesteps)
            notes.append(f"calibration: {origin}")
            if used is not None and "input_encoding" not in graph.metadata:
                graph.metadata["input_encoding"] = used
        else:
            notes.append("no --calib: per-layer error not measured")
        q, report = quantize_for_loihi(graph, spikes, steps=ctx.timesteps, profile=ctx.profile)
        return PassOutput(q, notes, report)


def is_quantized_for_loihi(graph: Graph) -> bool:
    """True when the graph is already in the netx form (integer weights, Loihi neurons)."""
    for n in graph:
        if n.op.is_synapse:
            w = np.asarray(n.op.weight, dtype=np.float64)
            if np.any(w != np.round(w)):
                return False
        elif n.op.is_neuron:
            if n.op_name == "SigmaDelta":
                continue
            if not is_loihi_cuba(n):  # a CubaLIF/CubaLI carrying LoihiCubaNeuron numerics
                return False
    return True


__all__ += ["QuantizeForLoihi", "is_quantized_for_loihi"]
