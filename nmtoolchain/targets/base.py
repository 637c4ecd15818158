"""What a deployment target is: one registered back end with one answer.

A :class:`Target` declares, once, what it accepts (:meth:`Target.refusals`:
every node it cannot take, and why), the passes its pipeline runs
(:meth:`Target.passes`), what it builds in memory from the compiled graph
(:meth:`Target.build`) and how it writes that (:meth:`Target.write`).
``nmtc inspect`` asks :meth:`Target.verdict` and ``nmtc export`` calls
:meth:`Target.export`; both go through :meth:`Target.compile`, so the
verdict is the export's outcome: inspect runs the same pipeline in memory
(stopping, with a stated requirement, where the export needs data such as
``--calib``).
"""
from __future__ import annotations

import abc
import dataclasses
from pathlib import Path
from typing import (Any, ClassVar, Dict, FrozenSet, List, Mapping, Optional, Sequence, Tuple,
                    Union)

import numpy as np

from hardware_profiles import Profile, load_profile
from nmtoolchain.errors import BadInputError, NmtcError, UnsupportedOpError
from nmtoolchain.frontends import load_model
from nmtoolchain.ir import Graph
from nmtoolchain.pipeline import (CalibSource, GraphPass, PassContext, PipelineResult,
                                  run_pipeline)

#: How many node names a grouped reason shows before "and N more".
SHOWN_NAMES = 4


def graph_origin(graph: Graph) -> str:
    """The file a graph was loaded from (for messages: the file the user passed), or
    'graph'."""
    if getattr(graph, "loaded_from", None):
        return str(graph.loaded_from)
    src = graph.metadata.get("source")
    if isinstance(src, dict) and src.get("path"):
        return str(src["path"])
    return "graph"


ModelLike = Union[str, Path, Graph]


def load_graph(model: ModelLike, *, allow_pickle: bool = False,
               input_shape: Optional[Tuple[int, ...]] = None,
               dt: Optional[float] = None) -> Tuple[Graph, str]:
    """(graph, the name reports use) for a model file or an IR Graph."""
    if isinstance(model, Graph):
        return model, graph_origin(model)
    return load_model(Path(model), allow_pickle=allow_pickle, input_shape=input_shape,
                      dt=dt), str(model)


@dataclasses.dataclass(frozen=True)
class Refusal:
    """One node a target cannot take, and why (the sentence a user reads)."""

    node: str
    op: str
    reason: str


def group_refusals(refusals: Sequence[Refusal]) -> List[str]:
    """One line per distinct reason, naming the nodes (all of them when few)."""
    by_reason: Dict[str, List[str]] = {}
    for r in refusals:
        by_reason.setdefault(r.reason, []).append(r.node)
    out = []
    for reason, names in by_reason.items():
        shown = ", ".join(names[:SHOWN_NAMES])
        if len(names) > SHOWN_NAMES:
            rest = names[SHOWN_NAMES:]
            shown += f" and {len(rest)} more ({', '.join(rest[:SHOWN_NAMES])}" + \
                (", ...)" if len(rest) > SHOWN_NAMES else ")")
        out.append(f"{reason}: {shown}")
    return out


@dataclasses.dataclass
class TargetVerdict:
    """Whether a target takes a graph: the answer ``nmtc export`` would give.

    ``requires``: what the export needs from the user that inspect does not
    have (e.g. ``--calib``); the verdict then covers the pipeline up to that
    point. ``notes``: facts a user should know (e.g. parts that run only in a
    simulator)."""

    target: str
    ok: bool
    reasons: List[str] = dataclasses.field(default_factory=list)
    notes: List[str] = dataclasses.field(default_factory=list)
    requires: List[str] = dataclasses.field(default_factory=list)

    def as_dict(self) -> Dict[str, object]:
        return {"target": self.target, "ok": self.ok, "reasons": self.reasons,
                "notes": self.notes, "requires": self.requires}


@dataclasses.dataclass(frozen=True)
class ExportOptions:
    """What a user may set for an export; a target says which apply (``Target.options``)."""

    profile: Optional[Any] = None  # name, .toml path or Profile; None: the target's default
    calib: Optional[CalibSource] = None
    timesteps: int = 16
    force: bool = False
    #: target-specific options (e.g. ``strict`` for a back end that has it)
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Compiled:
    """A graph compiled for a target, in memory, ready to write."""

    target: str
    model: str
    graph: Graph
    pipeline: PipelineResult
    profile: Optional[Profile]
    options: ExportOptions
    #: what the target builds from the compiled graph (a netx plan, a NIR graph, bytes, ...);
    #: None when a dry run stopped for a requirement
    artifact: Any = None
    #: the graph the export started from (as loaded), for source-vs-export agreement
    source: Optional[Graph] = None

    @property
    def needs(self) -> Optional[str]:
        return self.pipeline.needs


@dataclasses.dataclass
class ExportResult:
    """What an export wrote: the path, the files, the report (JSON-able and as lines)."""

    target: str
    path: Path
    files: List[str]
    report: Dict[str, Any]
    lines: List[str]
    compiled: Optional[Compiled] = None

    @property
    def directory(self) -> Path:  # the Loihi export's name for ``path``
        return self.path

    @property
    def plan(self) -> Any:  # the netx plan of a Loihi export (None for a Lava process graph)
        art = self.compiled.artifact if self.compiled is not None else None
        return getattr(art, "plan", None)


class Target(abc.ABC):
    """A registered back end. Subclasses set the class attributes and implement
    :meth:`refusals`, :meth:`build` and :meth:`write`; most also :meth:`passes`."""

    #: the name users pass to ``--target``
    name: ClassVar[str]
    #: one line for ``--help`` and the README
    summary: ClassVar[str]
    #: ``"file"`` or ``"directory"``
    writes: ClassVar[str] = "file"
    #: default output name suffix (``model.nir``, ``model.loihi2``)
    suffix: ClassVar[str] = ""
    #: bundled hardware profile used when the user names none (None: no chip)
    default_profile: ClassVar[Optional[str]] = None
    #: which :class:`ExportOptions` fields apply ("profile", "calib", "timesteps", "force")
    options: ClassVar[FrozenSet[str]] = frozenset()

    # ----------------------------------------------------- what a target declares
    @abc.abstractmethod
    def refusals(self, graph: Graph) -> List[Refusal]:
        """Every node this target cannot take as the graph stands, before any pass."""

    def refusals_with(self, graph: Graph, options: ExportOptions) -> List[Refusal]:
        """The refusals under the user's options (a target whose verdict depends on an
        option, e.g. nir's ``nir_version``, overrides this; default: :meth:`refusals`)."""
        return self.refusals(graph)

    def refusal_error(self, graph: Graph, refusals: Sequence[Refusal]) -> NmtcError:
        """The one-line error export raises for ``refusals`` (first node named, the rest counted)."""
        first = refusals[0]
        rest = [r.node for r in refusals[1:]]
        more = (f" (and {len(rest)} more: {', '.join(rest[:SHOWN_NAMES])}"
                + (", ...)" if len(rest) > SHOWN_NAMES else ")")) if rest else ""
        return UnsupportedOpError(f"{graph_origin(graph)}: node '{first.node}' (op {first.op}) "
                                  f"cannot be exported to {self.name}: {first.reason}{more}")

    def passes(self, options: ExportOptions) -> List[GraphPass]:
        """The pipeline this target runs before building (default: none)."""
        return []

    @abc.abstractmethod
    def build(self, compiled: Compiled) -> Any:
        """What to write, built in memory from the compiled graph; raises NmtcError
        for anything the format cannot hold."""

    @abc.abstractmethod
    def write(self, compiled: Compiled, out: Path) -> ExportResult:
        """Write ``compiled`` to ``out`` atomically (nothing left behind on failure)."""

    def verdict_notes(self, compiled: Compiled) -> List[str]:
        """Facts inspect shows next to a positive verdict."""
        return []

    def accuracy(self, graph: Graph, x: Any, y: Any, *, steps: int,
                 calib: Optional[CalibSource] = None) -> Dict[str, Any]:
        """Accuracy of ``graph`` as this target's export would run it (its numerics)."""
        raise BadInputError(f"--target {self.name}: no fixed-point accuracy for this target "
                            "(it has no chip numerics)")

    def verify(self, directory: Path, **kwargs: Any) -> Any:
        """Run the target's referee on an export directory (e.g. Lava for loihi2)."""
        raise BadInputError(f"{directory}: nmtc verify has no referee for target {self.name}")

    def default_output(self, model: str) -> Path:
        return Path(Path(model).name.split(".")[0] + self.suffix)

    # ------------------------------------------------------------ one answer
    def profile_of(self, options: ExportOptions) -> Optional[Profile]:
        if self.default_profile is None and options.profile is None:
            return None
        return load_profile(options.profile if options.profile is not None
                            else self.default_profile)

    def compile(self, graph: Graph, options: ExportOptions = ExportOptions(), *,
                model: Optional[str] = None, dry_run: bool = False) -> Compiled:
        """Refuse what the target cannot take, run its pipeline, build the artifact.

        The caller's graph is never changed. ``dry_run``: stop where the export
        needs input the user has not given (the result's ``needs`` says what)."""
        refused = self.refusals_with(graph, options)
        if refused:
            raise self.refusal_error(graph, refused)
        prof = self.profile_of(options)
        ctx = PassContext(self.name, prof, int(options.timesteps), options.calib,
                          dict(options.extra), dry_run)
        result = run_pipeline(graph, self.passes(options), ctx)
        compiled = Compiled(self.name, model or graph_origin(graph), result.graph, result,
                            prof, options, source=graph)
        if result.needs is None:
            compiled.artifact = self.build(compiled)
        return compiled

    def verdict(self, graph: Graph) -> TargetVerdict:
        """What :meth:`export` would do with ``graph``: refused (with every reason)
        or accepted (with what it still needs from the user)."""
        refused = self.refusals(graph)
        if refused:
            return TargetVerdict(self.name, False, group_refusals(refused))
        try:
            compiled = self.compile(graph, dry_run=True)
        except NmtcError as e:
            return TargetVerdict(self.name, False, [" ".join(str(e).split())])
        requires = [compiled.needs] if compiled.needs else []
        return TargetVerdict(self.name, True, notes=self.verdict_notes(compiled),
                             requires=requires)

    def export(self, graph: Graph, out: Path, options: ExportOptions = ExportOptions(), *,
               model: Optional[str] = None) -> ExportResult:
        """Compile ``graph`` and write it to ``out``; one NmtcError line on failure, nothing
        written."""
        check_options(self, options)
        out = Path(out)
        if self.writes == "directory":
            check_output_directory(out, options.force)
        else:
            from nmtoolchain.fileio import refuse_existing_output

            refuse_existing_output(out, options.force)
        compiled = self.compile(graph, options, model=model)
        return self.write(compiled, out)


def check_options(target: Target, options: ExportOptions) -> None:
    """BadInputError when an option is set that ``target`` does not use."""
    if isinstance(options.timesteps, bool) or not isinstance(options.timesteps, (int, np.integer)) \
            or options.timesteps < 1:
        raise BadInputError(f"--timesteps must be a positive integer, got {options.timesteps!r}")
    # --force (replace an existing output) applies to every target
    given = {"profile": options.profile is not None, "calib": options.calib is not None}
    extra = sorted(k for k, v in given.items() if v and k not in target.options)
    if extra:
        raise BadInputError(f"{', '.join('--' + k for k in extra)} "
                            f"{'does' if len(extra) == 1 else 'do'} not apply to --target "
                            f"{target.name}")


def check_output_directory(out: Path, force: bool) -> None:
    """The checks before an export writes a directory (no work is done if they fail)."""
    parent = out.parent if str(out.parent) else Path(".")
    if out.exists() and not force:
        raise BadInputError(f"{out}: already exists; choose another -o or pass --force to "
                            "replace it")
    if out.exists() and not out.is_dir():
        raise BadInputError(f"{out}: exists and is not a directory")
    if not parent.is_dir():
        raise BadInputError(f"{out}: parent directory {parent} does not exist")


__all__ = ["Target", "TargetVerdict", "Refusal", "ExportOptions", "ExportResult", "Compiled",
           "group_refusals", "graph_origin", "load_graph", "ModelLike", "check_options", "check_output_directory"]
