"""The one contract every graph pass follows, and the record it leaves.

A pass takes a graph and a :class:`PassContext` (the target, its profile,
the time steps, calibration data) and returns a :class:`PassOutput`: the new
graph, notes for the report, and optionally a typed result (a quantization or
mapping report). The driver (:mod:`nmtoolchain.pipeline.driver`) owns
copying: it hands each pass a graph the pass may change in place, diffs the
graph before and after, and turns that into a :class:`PassRecord`, which the
export report prints. A pass never touches the caller's graph, and never
writes a file.
"""
from __future__ import annotations

import abc
import dataclasses
from pathlib import Path
from typing import Any, ClassVar, Dict, List, Mapping, Optional, Tuple, Union

from nmtoolchain.ir import Graph

#: Calibration data as a user names it: ``"digits"`` or a path to a ``.npz``.
CalibSource = Union[str, Path]


@dataclasses.dataclass(frozen=True)
class PassContext:
    """What a target's pipeline knows besides the graph.

    ``profile`` is a loaded :class:`hardware_profiles.Profile` (or None for a
    target without a chip, such as NIR). ``dry_run`` is True when the
    pipeline runs only to answer whether the target takes a graph
    (``nmtc inspect``): passes that need data the user has not given stop the
    run with :class:`NeedsInput` instead of failing.
    """

    target: str
    profile: Any = None
    timesteps: int = 16
    calib: Optional[CalibSource] = None
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    dry_run: bool = False


@dataclasses.dataclass
class PassOutput:
    """What a pass returns: the graph, report notes, and an optional typed result."""

    graph: Graph
    notes: List[str] = dataclasses.field(default_factory=list)
    #: a typed result with ``as_dict()`` (e.g. QuantReport, MappingReport), or None
    result: Any = None


class NeedsInput(Exception):
    """Raised by a pass in a dry run when it needs something the user gives at export
    time (e.g. calibration data); the verdict says what, and the run stops there."""

    def __init__(self, requirement: str) -> None:
        super().__init__(requirement)
        self.requirement = requirement


@dataclasses.dataclass(frozen=True)
class PassRecord:
    """What one pass did to the graph, as the export report prints it."""

    name: str
    ran: bool
    #: why the pass did not run (empty when it ran)
    skipped_because: str = ""
    added: Tuple[str, ...] = ()
    removed: Tuple[str, ...] = ()
    changed: Tuple[str, ...] = ()
    notes: Tuple[str, ...] = ()
    result: Any = None

    @property
    def changed_graph(self) -> bool:
        return bool(self.added or self.removed or self.changed)

    def summary(self) -> str:
        """One line: the pass and what it changed."""
        if not self.ran:
            return f"{self.name}: skipped ({self.skipped_because})"
        if not self.changed_graph:
            return f"{self.name}: no change"
        parts = []
        for word, names in (("added", self.added), ("removed", self.removed),
                            ("changed", self.changed)):
            if names:
                shown = ", ".join(names[:6])
                rest = f" and {len(names) - 6} more" if len(names) > 6 else ""
                parts.append(f"{word} {len(names)} ({shown}{rest})")
        return f"{self.name}: " + "; ".join(parts)

    def as_dict(self) -> Dict[str, Any]:
        d: Dict[str, Any] = {"pass": self.name, "ran": self.ran}
        if not self.ran:
            d["skipped_because"] = self.skipped_because
            return d
        d.update(added=list(self.added), removed=list(self.removed), changed=list(self.changed),
                 notes=list(self.notes))
        return d


class GraphPass(abc.ABC):
    """A graph transform with the one contract: ``run(graph, ctx) -> PassOutput``.

    ``skip_reason`` says why the pass does not apply to a graph (None: it
    applies); the driver records the reason instead of running it.
    """

    name: ClassVar[str] = "pass"

    def skip_reason(self, graph: Graph, ctx: PassContext) -> Optional[str]:
        return None

    @abc.abstractmethod
    def run(self, graph: Graph, ctx: PassContext) -> PassOutput:
        """Transform ``graph`` (the driver's private copy: changing it in place is fine)."""


__all__ = ["PassContext", "PassOutput", "PassRecord", "GraphPass", "NeedsInput", "CalibSource"]
