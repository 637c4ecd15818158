"""The ONNX back end: the ANN (or any stateless) part of a graph as an ONNX model.

Acceptance is :func:`exporters.onnx.onnx_unsupported_nodes` (spiking or
stateful nodes, and fields ONNX cannot say); the build is the checked
``onnx.ModelProto`` in memory (:func:`exporters.onnx.graph_to_onnx`, opset 17
unless ``extra={"opset": N}``), written atomically.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, List, Sequence

from exporters.onnx import DEFAULT_OPSET, graph_to_onnx, onnx_unsupported_nodes
from nmtoolchain.errors import NmtcError, NotExpressibleError
from nmtoolchain.fileio import atomic_output
from nmtoolchain.ir import Graph
from nmtoolchain.targets.base import Compiled, ExportResult, Refusal, Target, graph_origin


class OnnxTarget(Target):
    """An ONNX model of a stateless graph (an ANN before conversion, a quantized ANN)."""

    name = "onnx"
    summary = "ONNX model (.onnx) of a stateless (ANN) graph"
    writes = "file"
    suffix = ".onnx"

    def refusals(self, graph: Graph) -> List[Refusal]:
        return [Refusal(r.node, r.op, r.reason) for r in onnx_unsupported_nodes(graph)]

    def refusal_error(self, graph: Graph, refusals: Sequence[Refusal]) -> NmtcError:
        first, rest = refusals[0], [r.node for r in refusals[1:]]
        more = f" (and {len(rest)} more: {', '.join(rest[:4])}{', ...' if len(rest) > 4 else ''})" \
            if rest else ""
        return NotExpressibleError(f"{graph_origin(graph)}: cannot export to ONNX: node "
                                   f"'{first.node}' ({first.op}): {first.reason}{more}")

    def build(self, compiled: Compiled) -> Any:
        opset = int(compiled.options.extra.get("opset", DEFAULT_OPSET))
        return graph_to_onnx(compiled.graph, opset=opset)

    def write(self, compiled: Compiled, out: Path) -> ExportResult:
        data = compiled.artifact.SerializeToString(deterministic=True)
        with atomic_output(out) as tmp:
            tmp.write_bytes(data)
        return ExportResult(self.name, out, [out.name], {"target": self.name,
                                                         "model": compiled.model},
                            [f"wrote {out}"], compiled)


TARGET = OnnxTarget()

__all__ = ["OnnxTarget", "TARGET"]
