"""The small driver that runs a target's passes in order and records each one.

:func:`run_pipeline` copies the caller's graph once, runs each pass on it,
and diffs node fingerprints before and after every pass (added, removed,
changed nodes), so every pass gets the same typed record without keeping
its own bookkeeping. In a dry run a pass may stop the pipeline with
:class:`~nmtoolchain.pipeline.contract.NeedsInput`; the result then says what
is missing and which passes did not run.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from nmtoolchain.ir import Graph, Node
from nmtoolchain.pipeline.contract import GraphPass, NeedsInput, PassContext, PassRecord


@dataclasses.dataclass
class PipelineResult:
    """The graph after the pipeline and one record per pass, in order."""

    graph: Graph
    records: List[PassRecord]
    #: set when a dry run stopped because a pass needs input the user gives at export
    needs: Optional[str] = None

    def result_of(self, name: str) -> Any:
        """The typed result of the pass called ``name`` (None if it did not run)."""
        for r in self.records:
            if r.name == name and r.ran:
                return r.result
        return None

    def ran(self, name: str) -> bool:
        """Whether the pass called ``name`` ran (was not skipped)."""
        return any(r.name == name and r.ran for r in self.records)

    @property
    def notes(self) -> List[str]:
        return [n for r in self.records for n in r.notes]

    def lines(self) -> List[str]:
        """One summary line per pass, for report.txt."""
        return [r.summary() for r in self.records]

    def as_dicts(self) -> List[Dict[str, Any]]:
        return [r.as_dict() for r in self.records]


def _fingerprint(node: Node) -> str:
    """A digest of what a node computes: op, fields, inputs and target numerics."""
    h = hashlib.sha1()
    h.update(node.op_name.encode())
    h.update(repr(tuple(node.inputs)).encode())
    for key, value in node.op.field_values().items():
        h.update(key.encode())
        if isinstance(value, np.ndarray):
            h.update(str((value.dtype, value.shape)).encode())
            h.update(np.ascontiguousarray(value).tobytes())
        else:
            h.update(repr(value).encode())
    numerics = getattr(node, "numerics", None)
    if numerics is not None:
        h.update(repr(numerics).encode())
    return h.hexdigest()


def _snapshot(graph: Graph) -> Dict[str, str]:
    return {n.name: _fingerprint(n) for n in graph}


def run_pipeline(graph: Graph, passes: Sequence[GraphPass], ctx: PassContext) -> PipelineResult:
    """Run ``passes`` in order on a copy of ``graph``; the caller's graph is never changed.
    The copy's shapes are inferred first: every pass may read them (a graph built
    or loaded without shapes is common in the Python API)."""
    g = copy.deepcopy(graph).infer_shapes()
    records: List[PassRecord] = []
    before = _snapshot(g)
    for i, p in enumerate(passes):
        why = p.skip_reason(g, ctx)
        if why is not None:
            records.append(PassRecord(p.name, False, skipped_because=why))
            continue
        try:
            out = p.run(g, ctx)
        except NeedsInput as need:
            if not ctx.dry_run:
                raise
            records.append(PassRecord(p.name, False, skipped_because=need.requirement))
            records += [PassRecord(q.name, False, skipped_because=f"after {p.name}")
                        for q in passes[i + 1:]]
            return PipelineResult(g, records, needs=need.requirement)
        g = out.graph
        after = _snapshot(g)
        records.append(PassRecord(
            p.name, True,
            added=tuple(n for n in after if n not in before),
            removed=tuple(n for n in before if n not in after),
            changed=tuple(n for n in after if n in before and after[n] != before[n]),
            notes=tuple(out.notes), result=out.result))
        before = after
    return PipelineResult(g, records)


__all__ = ["run_pipeline", "PipelineResult"]
