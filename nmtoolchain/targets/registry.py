"""The registry of deployment targets: the built-in back ends and plugins.

A target is a profile plus a registered back end: a module defining a
:class:`~nmtoolchain.targets.base.Target` instance. The built-in ones are
listed in :data:`BUILTIN`; other packages add theirs through the
``nmtc.targets`` entry-point group (``name = "package.module:TARGET"``).
``nmtc inspect``, ``nmtc export`` and the Python API all read this one
table, so a target's acceptance is declared once.
"""
from __future__ import annotations

import json
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

from nmtoolchain.errors import BadInputError
from nmtoolchain.ir import Graph
from nmtoolchain.targets import loihi2, nir, nmir, onnx, speck
from nmtoolchain.targets.base import (ExportOptions, ExportResult, ModelLike, Target,
                                      TargetVerdict, load_graph)

#: The targets that ship with nmtc, in the order inspect shows them.
BUILTIN: Tuple[Target, ...] = (loihi2.TARGET, speck.TARGET, nir.TARGET, onnx.TARGET, nmir.TARGET)
ENTRY_POINT_GROUP = "nmtc.targets"

_registry: Optional[Dict[str, Target]] = None


def _plugins() -> List[Target]:
    found = []
    for ep in entry_points().select(group=ENTRY_POINT_GROUP):
        target = ep.load()
        if not isinstance(target, Target):
            raise BadInputError(f"entry point {ep.name} = {ep.value} ({ENTRY_POINT_GROUP}) is not "
                                "an nmtc Target instance")
        found.append(target)
    return found


def targets() -> Dict[str, Target]:
    """Every registered target by name (built-ins first, then plugins)."""
    global _registry
    if _registry is None:
        table: Dict[str, Target] = {}
        for t in list(BUILTIN) + _plugins():
            table.setdefault(t.name, t)
        _registry = table
    return dict(_registry)


def get_target(name: str) -> Target:
    """The target called ``name``; BadInputError listing the known ones otherwise."""
    table = targets()
    if name not in table:
        raise BadInputError(f"--target {name!r}: unknown target; choose one of "
                            f"{', '.join(table)}")
    return table[name]


def check_targets(graph: Graph) -> List[TargetVerdict]:
    """Every target's verdict on ``graph``: the outcome its export would have."""
    return [t.verdict(graph) for t in targets().values()]


def export(model: ModelLike, target: str, output: Optional[Union[str, Path]] = None,
           options: ExportOptions = ExportOptions(), *, allow_pickle: bool = False,
           input_shape: Optional[Tuple[int, ...]] = None,
           dt: Optional[float] = None) -> ExportResult:
    """Export a model file or Graph to ``target``; ``output`` defaults to the model's
    name with the target's suffix (a directory target) or is required (a file target)."""
    t = get_target(target)
    graph, name = load_graph(model, allow_pickle=allow_pickle, input_shape=input_shape, dt=dt)
    if output is None:
        if t.writes != "directory":
            raise BadInputError(f"--target {t.name} needs --output FILE")
        output = t.default_output(name)
    return t.export(graph, Path(output), options, model=name)


def target_of_export(directory: Union[str, Path]) -> Target:
    """The target that wrote the export directory ``directory`` (its report.json says)."""
    d = Path(directory)
    if not d.is_dir():
        raise BadInputError(f"{d}: nmtc verify takes an export directory (from nmtc export "
                            "--target loihi2 -o DIR), not a file" if d.exists() else
                            f"{d}: no such export directory")
    report = d / "report.json"
    if not report.exists() and (d / "network.net").is_file():
        return get_target("loihi2")  # a bare netx network, e.g. one of Intel's
    try:
        name = json.loads(report.read_text()).get("target")
    except (OSError, ValueError, AttributeError):
        raise BadInputError(f"{d}: not an nmtc export directory (no readable report.json)") \
            from None
    if not isinstance(name, str):
        raise BadInputError(f"{report}: no 'target' field; not written by nmtc export")
    return get_target(name)


def verify(directory: Union[str, Path], **kwargs: Any) -> Any:
    """Run the referee of the target that wrote ``directory`` (Lava for loihi2)."""
    return target_of_export(directory).verify(Path(directory), **kwargs)


__all__ = ["targets", "get_target", "check_targets", "export", "verify", "target_of_export", "BUILTIN", "ENTRY_POINT_GROUP"]
