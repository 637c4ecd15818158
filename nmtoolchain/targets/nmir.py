"""The nmtc IR file back end (``.nmir``): the graph exactly as nmtc holds it.

Every graph can be written; nothing is refused. Reading it back gives the
same graph (deterministic zip of JSON and ``.npy`` arrays)."""
from __future__ import annotations

from pathlib import Path
from typing import List

from nmtoolchain.fileio import atomic_output
from nmtoolchain.ir import Graph, graph_to_bytes
from nmtoolchain.targets.base import Compiled, ExportResult, Refusal, Target


class NmirTarget(Target):
    """nmtc's own IR file, read by every nmtc command."""

    name = "nmir"
    summary = "nmtc IR file (.nmir), read back by every nmtc command"
    writes = "file"
    suffix = ".nmir"

    def refusals(self, graph: Graph) -> List[Refusal]:
        return []

    def build(self, compiled: Compiled) -> bytes:
        return graph_to_bytes(compiled.graph)

    def write(self, compiled: Compiled, out: Path) -> ExportResult:
        with atomic_output(out) as tmp:
            tmp.write_bytes(compiled.artifact)
        return ExportResult(self.name, out, [out.name], {"target": self.name,
                                                         "model": compiled.model},
                            [f"wrote {out}"], compiled)


TARGET = NmirTarget()

__all__ = ["NmirTarget", "TARGET"]
