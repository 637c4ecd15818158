"""Write an IR graph as a NIR file (the field's interchange format).

One builder per IR op with a ``nir_type`` turns the node into the NIR
primitive of the same name, using the installed nir package's constructors;
an ``Add`` whose inputs all have its output shape becomes NIR fan-in (NIR sums
the edges that enter a node). Before anything is written the whole graph is
checked, and a graph holding anything NIR cannot say is refused with one
:class:`~nmtoolchain.errors.NotExpressibleError` naming every such node:

* ops without a NIR primitive (MatMul, Softmax, BatchNorm, SigmaDelta, ...);
* neurons whose IR-only fields are not NIR's meaning: ``v_init != 0``,
  ``v_bias != 0``, ``v_min`` set (a lower clamp), ``spike='multi'``,
  ``compare='>='`` (NIR spikes when v > threshold);
* IF/LIF/CubaLIF whose reset the NIR version written cannot say. A file's
  meaning follows its version: NIR <= 1.0.5 means subtract-reset (v <- v -
  v_threshold), NIR >= 1.0.6 reset-to-``v_reset``. The version written is
  the installed nir's unless asked otherwise (``--nir-version``, 1.0.0 up to
  the installed one): a 1.0.6+ file takes ``reset='to_reset'`` neurons (the
  bundled SNN, Loihi's CUBA, every current snnTorch/norse/rockpool file) and
  refuses ``'subtract'``; a 1.0.5-or-older file (for readers pinned to old
  nir, e.g. sinabs 3.1.3's nir 1.0.4) the other way round. An older version
  is written by nir's own writer, then its version string is set and the
  ``v_reset`` fields it did not have are removed;
* CubaLIF/CubaLI without decay (tau = inf): the IR's CubaLIF is Loihi's
  update and is written as the NIR CubaLIF whose forward-Euler step is the
  same update (:func:`~nmtoolchain.ir.nir_conventions.cuba_to_nir`);
* Affine with a non-zero per-synapse ``delay``; Affine/Linear applied to a
  non-vector input (NIR's Affine takes a vector); CubaLI in a version that
  predates it (1.0.5).

Time: the IR counts time in steps. A graph read from a NIR file with a time
step (``metadata['nir_dt']``, the loader's ``--dt``) is written back in the
file's unit (time constants and delays times dt, I/IF ``r`` divided by it),
and the step is recorded as graph metadata ``nmtc_dt`` so nmtc reads its own
files without ``--dt``.

Graph metadata in the file: ``nmtc_version``, ``nmtc_dt``, ``reset_semantics``
(``'subtract'`` or ``'to_reset'``) and ``nmtc_name_encoding='percent'``: IR
names are written percent-encoded where HDF5 forbids a character (``/``,
which would nest groups), and :func:`~nmtoolchain.frontends.nir_loader.load_nir`
decodes them, so names survive a round trip (both rules live in
:mod:`nmtoolchain.ir.nir_conventions`).

This module imports ``nir`` only inside functions and never writes a partial
file: :func:`export_nir` writes a temporary file next to the target and
renames it into place.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from nmtoolchain.errors import BadInputError, NotExpressibleError
from nmtoolchain.fileio import atomic_output
from nmtoolchain.ir import Graph, Node
from nmtoolchain.ir.nir_conventions import (
    DT_KEY, INTEGRATING_OPS, NAME_ENCODING, NAME_ENCODING_KEY, TAU_FIELDS, cuba_to_nir,
    encode_name, parse_nir_version, reset_semantics_for_version)
from nmtoolchain.ir.nir_conventions import RESETTING_OPS as _RESETTING


#: Oldest NIR version nmtc writes (the 1.0 file layout; 0.x files are read only).
OLDEST_WRITTEN = (1, 0, 0)
#: NIR primitives added after 1.0.0, with the version that added them.
ADDED_IN = {"CubaLI": (1, 0, 5)}


# ----------------------------------------------------------------- checking
def installed_nir_version() -> str:
    """The installed nir package's version string."""
    import nir

    return str(getattr(nir, "version", None) or getattr(nir, "__version__", "0"))


def _installed_nir(requested: Optional[str] = None) -> Tuple[Any, str, str]:
    """The nir module, the NIR version to write and the reset semantics it means.

    ``requested`` (``--nir-version``) None: the installed nir's version.
    BadInputError for a version nmtc cannot write with the installed nir.
    """
    import nir

    installed = installed_nir_version()
    if requested is None:
        return nir, installed, reset_semantics_for_version(installed)
    try:
        want = parse_nir_version(requested)
    except ValueError:
        raise BadInputError(f"--nir-version {requested!r}: not a version like 1.0.8") from None
    have = parse_nir_version(installed)
    if not OLDEST_WRITTEN <= want <= have:
        raise BadInputError(f"--nir-version {requested}: nmtc writes NIR 1.0.0 to {installed} "
                            f"(the installed nir); older files are read, not written")
    version = ".".join(str(p) for p in want)
    return nir, version, reset_semantics_for_version(version)


def _ensure_shapes(graph: Graph) -> None:
    if any(n.shape is None for n in graph):
        graph.infer_shapes()


def _problems(graph: Graph, nir: Any, version: str, semantics: str
              ) -> List[Tuple[Node, Optional[str]]]:
    """(node, reason) for every node NIR cannot express; reason None: no NIR primitive."""
    out: List[Tuple[Node, Optional[str]]] = []
    for node in graph:
        op = node.op
        if op.op_name == "Add":
            reason = _add_problem(graph, node)
            if reason:
                out.append((node, reason))
            continue
        if op.nir_type is None:
            out.append((node, None))
            continue
        added = ADDED_IN.get(op.nir_type)
        if not hasattr(nir, op.nir_type) or (
                added is not None and parse_nir_version(version) < added):
            out.append((node, f"NIR {version} has no {op.nir_type} (added in a later nir)"))
            continue
        reasons: List[str] = []
        if op.op_name in ("Affine", "Linear"):
            in_shape = graph[node.inputs[0]].shape
            if len(in_shape) != 1:
                reasons.append(f"acts on the last axis of a {tuple(in_shape)} input; "
                               "NIR's Affine/Linear take a vector")
            delay = getattr(op, "delay", None)
            if delay is not None and np.any(delay != 0):
                reasons.append("has per-synapse delays, which NIR cannot express")
        if op.is_neuron:
            reasons.extend(_neuron_problems(op, version, semantics))
        if op.op_name in ("CubaLIF", "CubaLI"):
            try:
                cuba_to_nir(op.tau_syn, op.tau_mem, op.r, op.w_in)
            except ValueError as e:
                reasons.append(str(e))
        if reasons:
            out.append((node, "; ".join(reasons)))
    return out


def _add_problem(graph: Graph, node: Node) -> Optional[str]:
    shapes = [tuple(graph[s].shape) for s in node.inputs]
    if any(s != tuple(node.shape) for s in shapes):
        return (f"adds inputs of shapes {shapes} with broadcasting; NIR fan-in sums "
                "equal shapes only")
    srcs = _fan_in_sources(graph, node.name)
    if len(set(srcs)) != len(srcs):
        return "adds the same input more than once, which NIR fan-in cannot say"
    return None


def _neuron_problems(op: Any, version: str, semantics: str) -> List[str]:
    reasons = []
    if op.op_name in _RESETTING and op.reset != semantics:
        need = "NIR >= 1.0.6" if op.reset == "to_reset" else "NIR <= 1.0.5"
        flag = "" if op.reset == "to_reset" else "; write one with --nir-version 1.0.5"
        reasons.append(f"reset='{op.reset}' needs {need} (writing NIR {version}, "
                       f"which means reset='{semantics}'{flag})")
    if getattr(op, "v_init", None) is not None and np.any(op.v_init != 0):
        reasons.append("v_init != 0")
    if getattr(op, "v_bias", None) is not None and np.any(op.v_bias != 0):
        reasons.append("v_bias != 0")
    if getattr(op, "v_min", None) is not None:
        reasons.append("v_min (lower clamp) is set")
    if getattr(op, "spike", "single") != "single":
        reasons.append(f"spike='{op.spike}'")
    if getattr(op, "compare", ">") != ">":
        reasons.append(f"compare='{op.compare}' (NIR spikes when v > v_threshold)")
    return reasons


def _refusal(problems: Sequence[Tuple[Node, Optional[str]]]) -> str:
    plain = [f"{n.name} ({n.op_name})" for n, r in problems if r is None]
    parts = []
    if plain:
        parts.append(f"nodes {', '.join(plain)} have no NIR equivalent" if len(plain) > 1
                     else f"node {plain[0]} has no NIR equivalent")
    parts += [f"node {n.name} ({n.op_name}) {r}" for n, r in problems if r is not None]
    return "cannot export to NIR: " + "; ".join(parts)


def nir_problems(graph: Graph, version: Optional[str] = None
                 ) -> List[Tuple[Node, Optional[str]]]:
    """(node, reason) for every node NIR ``version`` (None: the installed nir's)
    cannot express (reason None: the op has no NIR primitive); empty when
    :func:`graph_to_nir` would succeed."""
    _ensure_shapes(graph)
    nir, version, semantics = _installed_nir(version)
    return _problems(graph, nir, version, semantics)


def nir_refusal_message(problems: Sequence[Tuple[Node, Optional[str]]]) -> str:
    """The one-line refusal :func:`graph_to_nir` raises for ``problems``."""
    return _refusal(problems)


def nir_unsupported_nodes(graph: Graph) -> List[str]:
    """``"name (Op)"`` or ``"name (Op: reason)"`` for each node NIR cannot express.

    Empty when :func:`graph_to_nir` would succeed with the installed nir.
    Fills the graph's shapes if they are missing.
    """
    _ensure_shapes(graph)
    nir, version, semantics = _installed_nir()
    return [f"{n.name} ({n.op_name})" if r is None else f"{n.name} ({n.op_name}: {r})"
            for n, r in _problems(graph, nir, version, semantics)]


# ----------------------------------------------------------------- building
def _fan_in_sources(graph: Graph, name: str) -> List[str]:
    """The non-Add nodes whose sum an input named ``name`` stands for."""
    node = graph[name]
    if node.op.op_name != "Add":
        return [name]
    return [s for i in node.inputs for s in _fan_in_sources(graph, i)]


def _full(value: Any, shape: Sequence[int]) -> np.ndarray:
    """A parameter broadcast to the node shape (NIR derives shapes from it)."""
    return np.ascontiguousarray(
        np.broadcast_to(np.asarray(value, np.float32), tuple(shape)))


def _build_node(nir: Any, graph: Graph, node: Node, semantics: str) -> Any:
    op, shape = node.op, tuple(node.shape)
    in_shape = tuple(graph[node.inputs[0]].shape) if node.inputs else shape
    build = _BUILDERS[op.nir_type]
    dt = float(graph.metadata.get("nir_dt", 1.0) or 1.0)
    return build(nir, _in_file_units(op, dt), shape, in_shape, semantics)


def _in_file_units(op: Any, dt: float) -> Any:
    """``op`` with NIR's fields and time in the file's unit (steps of ``dt``):
    CubaLIF/CubaLI in NIR's Euler form (module docstring)."""
    import copy

    if op.op_name in ("CubaLIF", "CubaLI"):
        op = copy.copy(op)
        op.tau_syn, op.tau_mem, op.r, op.w_in = cuba_to_nir(op.tau_syn, op.tau_mem, op.r,
                                                            op.w_in)
    if dt == 1.0 or not (op.is_neuron or op.op_name == "Delay"):
        return op
    out = copy.copy(op)
    for key in TAU_FIELDS:
        if getattr(out, key, None) is not None:
            setattr(out, key, np.asarray(getattr(out, key), np.float64) * dt)
    if op.op_name in INTEGRATING_OPS:
        out.r = np.asarray(out.r, np.float64) / dt
    if op.op_name == "Delay":
        # NIR's delay is a time; nir stores it as a float array
        out.delay = np.asarray(out.delay, np.float64) * dt
    return out


def _neuron_kwargs(op: Any, shape: Sequence[int], names: Sequence[str]) -> Dict[str, np.ndarray]:
    return {k: _full(getattr(op, k), shape) for k in names}


def _resetting(cls_name: str, names: Sequence[str]) -> Callable[..., Any]:
    def build(nir: Any, op: Any, shape: Any, in_shape: Any, semantics: str) -> Any:
        kwargs = _neuron_kwargs(op, shape, names)
        if semantics == "to_reset":
            kwargs["v_reset"] = _full(op.v_reset, shape)
        return getattr(nir, cls_name)(**kwargs)
    return build


def _simple_neuron(cls_name: str, names: Sequence[str]) -> Callable[..., Any]:
    def build(nir: Any, op: Any, shape: Any, in_shape: Any, semantics: str) -> Any:
        return getattr(nir, cls_name)(**_neuron_kwargs(op, shape, names))
    return build


def _conv(nir: Any, op: Any, shape: Any, in_shape: Any, semantics: str) -> Any:
    one_d = op.op_name == "Conv1d"
    return getattr(nir, op.op_name)(
        input_shape=int(in_shape[1]) if one_d else tuple(int(s) for s in in_shape[1:]),
        weight=np.asarray(op.weight, np.float32),
        stride=op.stride[0] if one_d else tuple(op.stride),
        padding=op.padding[0] if one_d else tuple(op.padding),
        dilation=op.dilation[0] if one_d else tuple(op.dilation),
        groups=int(op.groups), bias=np.asarray(op.bias, np.float32))


def _pool(nir: Any, op: Any, shape: Any, in_shape: Any, semantics: str) -> Any:
    return getattr(nir, op.op_name)(kernel_size=np.array(op.kernel_size),
                                    stride=np.array(op.stride), padding=np.array(op.padding))


_BUILDERS: Dict[str, Callable[..., Any]] = {
    "Input": lambda nir, op, shape, ins, sem: nir.Input(
        input_type={"input": np.array(op.shape)}),
    "Output": lambda nir, op, shape, ins, sem: nir.Output(
        output_type={"output": np.array(shape)}),
    "Affine": lambda nir, op, shape, ins, sem: nir.Affine(
        weight=np.asarray(op.weight, np.float32), bias=np.asarray(op.bias, np.float32)),
    "Linear": lambda nir, op, shape, ins, sem: nir.Linear(
        weight=np.asarray(op.weight, np.float32)),
    "Scale": lambda nir, op, shape, ins, sem: nir.Scale(scale=_full(op.scale, shape)),
    "Conv1d": _conv,
    "Conv2d": _conv,
    "SumPool2d": _pool,
    "AvgPool2d": _pool,
    "Flatten": lambda nir, op, shape, ins, sem: nir.Flatten(
        input_type={"input": np.array(ins)}, start_dim=int(op.start_dim),
        end_dim=int(op.end_dim)),
    "Delay": lambda nir, op, shape, ins, sem: nir.Delay(delay=_full(op.delay, shape)),
    "Threshold": lambda nir, op, shape, ins, sem: nir.Threshold(
        threshold=_full(op.threshold, shape)),
    "I": _simple_neuron("I", ("r",)),
    "LI": _simple_neuron("LI", ("tau", "r", "v_leak")),
    "CubaLI": _simple_neuron("CubaLI", ("tau_syn", "tau_mem", "r", "v_leak", "w_in")),
    "IF": _resetting("IF", ("r", "v_threshold")),
    "LIF": _resetting("LIF", ("tau", "r", "v_leak", "v_threshold")),
    "CubaLIF": _resetting("CubaLIF", ("tau_syn", "tau_mem", "r", "v_leak", "v_threshold",
                                      "w_in")),
}


def graph_to_nir(graph: Graph, version: Optional[str] = None) -> Any:
    """Build a ``nir.NIRGraph`` equivalent to ``graph`` with the installed nir,
    meaning what NIR ``version`` (None: the installed one) says.

    Raises NotExpressibleError naming every node NIR cannot express (see the
    module docstring) before building anything.
    """
    _ensure_shapes(graph)
    nir, version, semantics = _installed_nir(version)
    problems = _problems(graph, nir, version, semantics)
    if problems:
        raise NotExpressibleError(_refusal(problems))

    names = {n.name: encode_name(n.name) for n in graph}
    nodes: Dict[str, Any] = {}
    edges: List[Tuple[str, str]] = []
    for node in graph:
        if node.op.op_name == "Add":
            continue  # becomes fan-in of its consumers
        nodes[names[node.name]] = _build_node(nir, graph, node, semantics)
        for src in node.inputs:
            edges.extend((names[s], names[node.name]) for s in _fan_in_sources(graph, src))

    metadata: Dict[str, Any] = {}
    for k, v in (graph.metadata.get("nir_metadata") or {}).items():
        if isinstance(v, (str, int, float)) and not isinstance(v, bool):
            metadata[str(k)] = v  # keep what the source file said
    from nmtoolchain import __version__

    metadata.update({"nmtc_version": __version__, "reset_semantics": semantics,
                     NAME_ENCODING_KEY: NAME_ENCODING,
                     DT_KEY: float(graph.metadata.get("nir_dt", 1.0) or 1.0)})
    import inspect

    # nir >= 1.0.6 re-infers types on construction and gets grouped and
    # non-square convolutions wrong (input channels = weight.shape[1], one
    # kernel size for both axes); the IR's shapes are already checked
    checks = "type_check" in inspect.signature(nir.NIRGraph.__init__).parameters
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata,
                        **({"type_check": False} if checks else {}))


def export_nir(graph: Graph, path: Union[str, Path], version: Optional[str] = None) -> Path:
    """Write ``graph`` to the NIR file ``path`` as NIR ``version`` (None: the
    installed nir's); returns the path.

    The graph is checked first (NotExpressibleError, nothing written); the
    file is written under a temporary name in the same directory and renamed
    into place, so a failure leaves neither a partial file nor a changed one.
    """
    path = Path(path)
    write_nir_graph(graph_to_nir(graph, version), path, version)
    return path


def write_nir_graph(nir_graph: Any, path: Union[str, Path],
                    version: Optional[str] = None) -> Path:
    """Write a built ``nir.NIRGraph`` to ``path`` atomically as NIR ``version``
    (None: the installed nir's); returns the path."""
    import nir

    path = Path(path)
    _, version, _ = _installed_nir(version)
    with atomic_output(path) as tmp:
        nir.write(str(tmp), nir_graph)
        if version != installed_nir_version():
            _restamp(tmp, version)
    return path


def _restamp(path: Path, version: str) -> None:
    """Make a file nir wrote into a NIR ``version`` file: its version string,
    and no ``v_reset`` fields before 1.0.6 (older readers reject them; the
    graph was checked to mean subtract-reset there)."""
    import h5py

    old = parse_nir_version(version) < parse_nir_version("1.0.6")
    with h5py.File(path, "r+") as f:
        del f["version"]
        f.create_dataset("version", data=version)
        if old:
            _drop_v_reset(f["node"])


def _drop_v_reset(group: Any) -> None:
    import h5py

    for key in list(group.keys()):
        item = group[key]
        if isinstance(item, h5py.Group):
            _drop_v_reset(item)
        elif key == "v_reset":
            del group[key]


__all__ = ["graph_to_nir", "export_nir", "nir_unsupported_nodes", "nir_problems",
           "nir_refusal_message", "write_nir_graph", "encode_name", "installed_nir_version"]
