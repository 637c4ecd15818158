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
* IF/LIF/CubaLIF whose reset the installed nir cannot say. A file's meaning
  follows the version that wrote it: nir <= 1.0.5 writes subtract-reset
  (v <- v - v_threshold), nir >= 1.0.6 writes reset-to-``v_reset``. With the
  pinned nir 1.0.4 a ``reset='to_reset'`` neuron (Loihi's CUBA, for one) is
  refused, even with ``v_reset = 0``: writing it under a 1.0.4 version string
  would silently turn it into subtract-reset, and writing a >= 1.0.6 file by
  hand would make a file that the pinned nir and sinabs cannot read. With
  nir >= 1.0.6 installed the rule flips: ``to_reset`` is written with its
  ``v_reset`` and ``subtract`` is refused;
* Affine with a non-zero per-synapse ``delay``; Affine/Linear applied to a
  non-vector input (NIR's Affine takes a vector); CubaLI when the installed
  nir predates it (1.0.5).

Graph metadata in the file: ``nmtc_version``, ``reset_semantics``
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
    NAME_ENCODING, NAME_ENCODING_KEY, encode_name, reset_semantics_for_version)
from nmtoolchain.ir.nir_conventions import RESETTING_OPS as _RESETTING


# ----------------------------------------------------------------- checking
def _installed_nir() -> Tuple[Any, str, str]:
    """The nir module, its version, and the reset semantics it writes."""
    import nir

    version = str(getattr(nir, "version", None) or getattr(nir, "__version__", "0"))
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
        if not hasattr(nir, op.nir_type):
            out.append((node, f"nir {version} has no {op.nir_type} (added in a later nir)"))
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
        need = "nir>=1.0.6" if op.reset == "to_reset" else "nir<=1.0.5"
        reasons.append(f"reset='{op.reset}' needs {need} (installed: nir {version}, "
                       f"which means reset='{semantics}')")
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


def nir_problems(graph: Graph) -> List[Tuple[Node, Optional[str]]]:
    """(node, reason) for every node the installed nir cannot express (reason None:
    the op has no NIR primitive); empty when :func:`graph_to_nir` would succeed."""
    _ensure_shapes(graph)
    nir, version, semantics = _installed_nir()
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
    return build(nir, op, shape, in_shape, semantics)


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


def graph_to_nir(graph: Graph) -> Any:
    """Build a ``nir.NIRGraph`` equivalent to ``graph`` with the installed nir.

    Raises NotExpressibleError naming every node NIR cannot express (see the
    module docstring) before building anything.
    """
    _ensure_shapes(graph)
    nir, version, semantics = _installed_nir()
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
                     NAME_ENCODING_KEY: NAME_ENCODING})
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata)


def export_nir(graph: Graph, path: Union[str, Path]) -> Path:
    """Write ``graph`` to the NIR file ``path``; returns the path.

    The graph is checked first (NotExpressibleError, nothing written); the
    file is written under a temporary name in the same directory and renamed
    into place, so a failure leaves neither a partial file nor a changed one.
    """
    path = Path(path)
    write_nir_graph(graph_to_nir(graph), path)
    return path


def write_nir_graph(nir_graph: Any, path: Union[str, Path]) -> Path:
    """Write a built ``nir.NIRGraph`` to ``path`` atomically; returns the path."""
    import nir

    path = Path(path)
    with atomic_output(path) as tmp:
        nir.write(str(tmp), nir_graph)
    return path


__all__ = ["graph_to_nir", "export_nir", "nir_unsupported_nodes", "nir_problems",
           "nir_refusal_message", "write_nir_graph", "encode_name"]
