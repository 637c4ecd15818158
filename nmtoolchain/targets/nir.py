"""The NIR back end: a NIR file (the field's interchange format).

Acceptance is :func:`exporters.nir.nir_problems` with the installed nir
(ops without a NIR primitive, neuron fields NIR cannot say, reset semantics
of the nir version that would write the file); the build is the
``nir.NIRGraph`` in memory, written atomically by ``nir.write``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, List, Sequence

from exporters.nir import graph_to_nir, nir_problems, nir_refusal_message, write_nir_graph
from nmtoolchain.errors import NmtcError, NotExpressibleError
from nmtoolchain.ir import Graph
from nmtoolchain.targets.base import Compiled, ExportResult, Refusal, Target


class NirTarget(Target):
    """A NIR file for the NIR ecosystem (sinabs, snnTorch, Norse, Lava-dl, Rockpool, ...)."""

    name = "nir"
    summary = "NIR file (.nir), the neuromorphic interchange format"
    writes = "file"
    suffix = ".nir"

    def refusals(self, graph: Graph) -> List[Refusal]:
        return [Refusal(n.name, n.op_name, r if r is not None else "has no NIR equivalent")
                for n, r in nir_problems(graph)]

    def refusal_error(self, graph: Graph, refusals: Sequence[Refusal]) -> NmtcError:
        return NotExpressibleError(nir_refusal_message(nir_problems(graph)))

    def build(self, compiled: Compiled) -> Any:
        return graph_to_nir(compiled.graph)

    def write(self, compiled: Compiled, out: Path) -> ExportResult:
        write_nir_graph(compiled.artifact, out)
        return ExportResult(self.name, out, [out.name], {"target": self.name,
                                                         "model": compiled.model},
                            [f"wrote {out}"], compiled)


TARGET = NirTarget()

__all__ = ["NirTarget", "TARGET"]
