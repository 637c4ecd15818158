"""The NIR back end: a NIR file (the field's interchange format).

Acceptance is :func:`exporters.nir.nir_problems` for the NIR version written
(option ``nir_version``, the CLI's ``--nir-version``; default the installed
nir's): ops without a NIR primitive, neuron fields NIR cannot say, reset
semantics of that version. The build is the ``nir.NIRGraph`` in memory,
written atomically by ``nir.write`` and stamped with the version asked for.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, List, Optional, Sequence

from exporters.nir import graph_to_nir, nir_problems, nir_refusal_message, write_nir_graph
from nmtoolchain.errors import NmtcError, NotExpressibleError
from nmtoolchain.ir import Graph
from nmtoolchain.targets.base import Compiled, ExportOptions, ExportResult, Refusal, Target


_NO_PRIMITIVE = "has no NIR equivalent"


class NirTarget(Target):
    """A NIR file for the NIR ecosystem (sinabs, snnTorch, Norse, Lava-dl, Rockpool, ...)."""

    name = "nir"
    summary = "NIR file (.nir), the neuromorphic interchange format"
    writes = "file"
    suffix = ".nir"

    def refusals(self, graph: Graph) -> List[Refusal]:
        return self.refusals_with(graph, ExportOptions())

    def refusals_with(self, graph: Graph, options: ExportOptions) -> List[Refusal]:
        return [Refusal(n.name, n.op_name, r if r is not None else _NO_PRIMITIVE)
                for n, r in nir_problems(graph, _asked(options))]

    def refusal_error(self, graph: Graph, refusals: Sequence[Refusal]) -> NmtcError:
        return NotExpressibleError(nir_refusal_message(
            [(graph[r.node], None if r.reason == _NO_PRIMITIVE else r.reason)
             for r in refusals]))

    def build(self, compiled: Compiled) -> Any:
        return graph_to_nir(compiled.graph, _version(compiled))

    def write(self, compiled: Compiled, out: Path) -> ExportResult:
        write_nir_graph(compiled.artifact, out, _version(compiled))
        return ExportResult(self.name, out, [out.name], {"target": self.name,
                                                         "model": compiled.model},
                            [f"wrote {out}"], compiled)


def _asked(options: ExportOptions) -> Optional[str]:
    """The NIR version asked for (``--nir-version``), None for the installed one."""
    v = options.extra.get("nir_version")
    return None if v is None else str(v)


def _version(compiled: Compiled) -> Optional[str]:
    return _asked(compiled.options)


TARGET = NirTarget()

__all__ = ["NirTarget", "TARGET"]
