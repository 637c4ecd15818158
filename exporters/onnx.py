"""Write the ANN part of an IR graph as an ONNX model.

ONNX holds a stateless function of one input batch, so only stateless ops
are exported; a graph holding a spiking neuron, a delay, a spike mask, token
halting or merging, or QCFS is refused with one
:class:`~nmtoolchain.errors.NotExpressibleError` naming every such node,
before anything is written. :func:`onnx_unsupported_nodes` is the single
source of that acceptance (``inspect``'s verdict and ``export`` call it).

The translation is a table (:data:`_BUILDERS`) from IR op name to one small
builder each, in the style of lava-dl netx's layer builders: adding an op is
adding one builder. Conventions:

* IR shapes are per sample; every ONNX tensor has a leading batch axis, the
  symbolic dimension ``"N"``. Per-sample axis ``a`` is ONNX axis ``a + 1``;
  Flatten and Reshape keep the batch axis (``Flatten(axis=1)`` or a
  ``Reshape`` whose first target entry is ``0``, "copy the batch size").
* Affine/Linear on a vector become ``Gemm`` (``transB=1``); on a token
  sequence, ``MatMul`` with ``Wᵀ`` (plus ``Add`` of the bias).
* SumPool2d is ``AveragePool`` (``count_include_pad=1``) followed by ``Mul``
  by the window area kH·kW (no extra weights, and nmtc's ONNX loader reads it
  back as AvgPool2d + Scale); AvgPool2d counts padding as zeros, as the IR.
* BatchNorm is ``BatchNormalization`` in inference mode; over an axis other
  than the first per-sample axis it is wrapped in two ``Transpose``.
* Add/MatMul inputs of lower per-sample rank are ``Unsqueeze``-d after the
  batch axis, so numpy broadcasting over per-sample axes is kept.

The file is deterministic (no timestamps; producer ``nmtc`` with nmtc's
version; the lowest ONNX IR version that carries the opset), checked with
``onnx.checker.check_model`` and ONNX shape inference before it is written,
and written atomically (temporary file in the same directory, then
``os.replace``). ``onnx`` is imported only inside functions; checking
acceptance needs no onnx at all.
"""
from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Set, Tuple, Union

import numpy as np

from nmtoolchain.errors import BadInputError, NotExpressibleError
from nmtoolchain.ir import Graph, Node
from nmtoolchain.ir.op import Shape

#: The ONNX opset written when none is asked for; LayerNormalization needs 17.
DEFAULT_OPSET = 17
MIN_OPSET = 17
#: Name of the symbolic batch dimension of every graph input and output.
BATCH_DIM = "N"
PRODUCER_NAME = "nmtc"

_ANN_ONLY = "ONNX holds the ANN only"


@dataclasses.dataclass(frozen=True)
class OnnxRefusal:
    """One node the ONNX exporter cannot write, and why."""

    node: str  # IR node name
    op: str  # IR op name
    reason: str  # one clause, e.g. "stateful spiking neuron; ONNX holds the ANN only"

    def __str__(self) -> str:
        return f"node '{self.node}' ({self.op}): {self.reason}"


# ------------------------------------------------------------------ acceptance
#: Why an op outside the builder table is refused (ops not listed fall back to
#: a generic line; any ``is_neuron`` op is a stateful spiking neuron).
_REFUSAL_REASONS: Dict[str, str] = {
    "Delay": f"stateful (delays values across time steps); {_ANN_ONLY}",
    "Threshold": f"spiking (emits binary spikes); {_ANN_ONLY}",
    "SpikeMask": f"stochastic spike masking redrawn every time step; {_ANN_ONLY}",
    "TokenHalt": f"stateful (accumulates halting scores); {_ANN_ONLY}",
    "TokenMerge": f"data-dependent token merging of the spiking model; {_ANN_ONLY}",
    "QCFS": ("the quantized activation that ANN-to-SNN conversion turns into IF neurons; "
             f"{_ANN_ONLY}"),
}


def _refusal_reason(node: Node) -> Optional[str]:
    """Why ``node`` cannot be exported, or None when it can."""
    op = node.op
    if op.op_name not in _BUILDERS:
        if op.op_name in _REFUSAL_REASONS:
            return _REFUSAL_REASONS[op.op_name]
        if op.is_neuron:
            return f"stateful or spiking neuron; {_ANN_ONLY}"
        return f"{op.op_name} has no ONNX builder; {_ANN_ONLY}"
    delay = getattr(op, "delay", None)
    if op.op_name == "Affine" and delay is not None and np.any(delay != 0):
        return f"has per-synapse delays, which act across time steps; {_ANN_ONLY}"
    if op.op_name == "LayerNorm" and np.ndim(op.weight) == 0:
        return "normalizes over no axis (0-d weight); ONNX's axis would take in the batch"
    return None


def onnx_unsupported_nodes(graph: Graph) -> List[OnnxRefusal]:
    """Every node :func:`export_onnx` would refuse, in graph order.

    Empty exactly when every node can be exported (export still refuses, as a
    whole, a graph with no Output node or one that fails validation). Needs
    no onnx import and does not modify ``graph``.
    """
    out = []
    for node in graph:
        reason = _refusal_reason(node)
        if reason is not None:
            out.append(OnnxRefusal(node.name, node.op_name, reason))
    return out


def _refusal_message(refusals: Sequence[OnnxRefusal], shown: int = 6) -> str:
    """One line: per (op, reason), the nodes (the first ``shown`` by name)."""
    groups: Dict[Tuple[str, str], List[str]] = {}
    for r in refusals:
        groups.setdefault((r.op, r.reason), []).append(f"'{r.node}'")
    parts = []
    for (op, reason), names in groups.items():
        more = f" (+{len(names) - shown} more)" if len(names) > shown else ""
        label = "node" if len(names) == 1 else "nodes"
        parts.append(f"{label} {', '.join(names[:shown])}{more} ({op}): {reason}")
    return "cannot export to ONNX: " + "; ".join(parts)


# ------------------------------------------------------------------- building
class _OnnxBuild:
    """The ONNX nodes, initializers and graph inputs/outputs of one export.

    Every IR node's value is the ONNX tensor named like the node; helper
    tensors (weights, shapes, intermediates) get fresh names that collide
    with no IR node name.
    """

    def __init__(self, graph: Graph, opset: int) -> None:
        from onnx import TensorProto, helper, numpy_helper

        self.helper, self.numpy_helper, self.float_type = helper, numpy_helper, TensorProto.FLOAT
        self.graph = graph
        self.opset = opset
        self.nodes: List[Any] = []
        self.initializers: List[Any] = []
        self.inputs: List[Any] = []
        self.outputs: List[Any] = []
        self.used: Set[str] = {n.name for n in graph}  # tensor names
        self.node_names: Set[str] = set()  # ONNX node names (a namespace of their own)

    # names and tensors
    def fresh(self, base: str, taken: Optional[Set[str]] = None) -> str:
        """``base``, or ``base_1``, ``base_2``, ... if taken; marks it taken."""
        taken = self.used if taken is None else taken
        name, i = base, 1
        while name in taken:
            name, i = f"{base}_{i}", i + 1
        taken.add(name)
        return name

    def const(self, base: str, value: Any, dtype: Any = np.float32) -> str:
        name = self.fresh(base)
        array = np.ascontiguousarray(np.asarray(value, dtype=dtype))
        self.initializers.append(self.numpy_helper.from_array(array, name))
        return name

    def add(self, op_type: str, inputs: Sequence[str], output: str, name: str,
            **attrs: Any) -> str:
        self.nodes.append(self.helper.make_node(op_type, list(inputs), [output],
                                                name=self.fresh(name, self.node_names), **attrs))
        return output

    def value_info(self, name: str, shape: Shape) -> Any:
        return self.helper.make_tensor_value_info(name, self.float_type,
                                                  [BATCH_DIM] + [int(s) for s in shape])

    # shared pieces
    def unsqueeze_to(self, node: Node, tensor: str, rank: int, want: int) -> str:
        """``tensor`` (per-sample rank ``rank``) with axes inserted after the batch."""
        if rank >= want:
            return tensor
        axes = self.const(f"{node.name}::unsqueeze_axes", list(range(1, 1 + want - rank)),
                          np.int64)
        return self.add("Unsqueeze", [tensor, axes], self.fresh(f"{node.name}::{tensor}_expanded"),
                        f"{node.name}::unsqueeze")


def _axis(axis: int, rank: int) -> int:
    """A per-sample axis (maybe negative) as the ONNX axis (batch first)."""
    return (axis + rank if axis < 0 else axis) + 1


# A builder writes the ONNX nodes computing IR ``node`` into the tensor named
# ``node.name``, reading ``ins`` (the tensors of its inputs, per-sample shapes
# ``shapes``).
_Builder = Callable[[_OnnxBuild, Node, List[str], List[Shape]], None]


def _input(b: _OnnxBuild, node: Node, ins: List[str], shapes: List[Shape]) -> None:
    b.inputs.append(b.value_info(node.name, node.shape))


def _output(b: _OnnxBuild, node: Node, ins: List[str], shapes: List[Shape]) -> None:
    b.add("Identity", ins, node.name, node.name)
    b.outputs.append(b.value_info(node.name, node.shape))


def _linear(b: _OnnxBuild, node: Node, ins: List[str], shapes: List[Shape]) -> None:
    op, out = node.op, node.name
    weight = np.asarray(op.weight, np.float32)
    bias = getattr(op, "bias", None)
    if len(shapes[0]) == 1:  # (N, in) @ W^T + b
        args = [ins[0], b.const(f"{out}::weight", weight)]
        if bias is not None:
            args.append(b.const(f"{out}::bias", bias))
        b.add("Gemm", args, out, out, transB=1)
        return
    w_t = b.const(f"{out}::weight_t", weight.T)
    if bias is None:
        b.add("MatMul", [ins[0], w_t], out, out)
        return
    product = b.add("MatMul", [ins[0], w_t], b.fresh(f"{out}::matmul"), f"{out}::matmul")
    b.add("Add", [product, b.const(f"{out}::bias", bias)], out, out)


def _scale(b: _OnnxBuild, node: Node, ins: List[str], shapes: List[Shape]) -> None:
    b.add("Mul", [ins[0], b.const(f"{node.name}::scale", node.op.scale)], node.name, node.name)


def _bias(b: _OnnxBuild, node: Node, ins: List[str], shapes: List[Shape]) -> None:
    b.add("Add", [ins[0], b.const(f"{node.name}::bias", node.op.bias)], node.name, node.name)


def _conv(b: _OnnxBuild, node: Node, ins: List[str], shapes: List[Shape]) -> None:
    op, out = node.op, node.name
    b.add("Conv", [ins[0], b.const(f"{out}::weight", op.weight), b.const(f"{out}::bias", op.bias)],
          out, out, kernel_shape=list(op.kernel_size), strides=list(op.stride),
          pads=list(op.padding) * 2, dilations=list(op.dilation), group=int(op.groups))


def _pool_attrs(op: Any) -> Dict[str, Any]:
    return {"kernel_shape": list(op.kernel_size), "strides": list(op.stride),
            "pads": list(op.padding) * 2}


def _avg_pool(b: _OnnxBuild, node: Node, ins: List[str], shapes: List[Shape]) -> None:
    b.add("AveragePool", ins, node.name, node.name, count_include_pad=1, **_pool_attrs(node.op))


def _sum_pool(b: _OnnxBuild, node: Node, ins: List[str], shapes: List[Shape]) -> None:
    op, out = node.op, node.name
    mean = b.add("AveragePool", ins, b.fresh(f"{out}::mean"), f"{out}::mean",
                 count_include_pad=1, **_pool_attrs(op))
    area = b.const(f"{out}::window_area", float(op.kernel_size[0] * op.kernel_size[1]))
    b.add("Mul", [mean, area], out, out)


def _max_pool(b: _OnnxBuild, node: Node, ins: List[str], shapes: List[Shape]) -> None:
    b.add("MaxPool", ins, node.name, node.name, **_pool_attrs(node.op))


def _reshape_keeping_batch(b: _OnnxBuild, node: Node, ins: List[str]) -> None:
    target = b.const(f"{node.name}::shape", [0] + [int(s) for s in node.shape], np.int64)
    b.add("Reshape", [ins[0], target], node.name, node.name)


def _flatten(b: _OnnxBuild, node: Node, ins: List[str], shapes: List[Shape]) -> None:
    if len(node.shape) == 1:  # everything after the batch axis: ONNX Flatten(axis=1)
        b.add("Flatten", ins, node.name, node.name, axis=1)
    else:
        _reshape_keeping_batch(b, node, ins)


def _reshape(b: _OnnxBuild, node: Node, ins: List[str], shapes: List[Shape]) -> None:
    _reshape_keeping_batch(b, node, ins)


def _transpose(b: _OnnxBuild, node: Node, ins: List[str], shapes: List[Shape]) -> None:
    b.add("Transpose", ins, node.name, node.name, perm=[0] + [p + 1 for p in node.op.perm])


def _mean(b: _OnnxBuild, node: Node, ins: List[str], shapes: List[Shape]) -> None:
    axis = _axis(node.op.axis, len(shapes[0]))
    if b.opset >= 18:  # axes became an input in opset 18
        axes = b.const(f"{node.name}::axes", [axis], np.int64)
        b.add("ReduceMean", [ins[0], axes], node.name, node.name, keepdims=0)
    else:
        b.add("ReduceMean", ins, node.name, node.name, axes=[axis], keepdims=0)


def _batch_norm(b: _OnnxBuild, node: Node, ins: List[str], shapes: List[Shape]) -> None:
    op, out = node.op, node.name
    params = [b.const(f"{out}::{k}", getattr(op, k)) for k in ("weight", "bias", "mean", "var")]
    axis = _axis(op.axis, len(shapes[0]))
    if axis == 1:
        b.add("BatchNormalization", [ins[0]] + params, out, out, epsilon=op.eps)
        return
    # bring the normalized axis to ONNX axis 1, normalize, and put it back
    rank = len(shapes[0]) + 1
    perm = [0, axis] + [a for a in range(1, rank) if a != axis]
    inverse = [perm.index(a) for a in range(rank)]
    moved = b.add("Transpose", ins, b.fresh(f"{out}::channels_first"),
                  f"{out}::channels_first", perm=perm)
    normed = b.add("BatchNormalization", [moved] + params, b.fresh(f"{out}::normalized"),
                   f"{out}::normalize", epsilon=op.eps)
    b.add("Transpose", [normed], out, out, perm=inverse)


def _layer_norm(b: _OnnxBuild, node: Node, ins: List[str], shapes: List[Shape]) -> None:
    op, out = node.op, node.name
    b.add("LayerNormalization",
          [ins[0], b.const(f"{out}::weight", op.weight), b.const(f"{out}::bias", op.bias)],
          out, out, axis=-int(op.weight.ndim), epsilon=op.eps)


def _relu(b: _OnnxBuild, node: Node, ins: List[str], shapes: List[Shape]) -> None:
    b.add("Relu", ins, node.name, node.name)


def _softmax(b: _OnnxBuild, node: Node, ins: List[str], shapes: List[Shape]) -> None:
    b.add("Softmax", ins, node.name, node.name, axis=_axis(node.op.axis, len(shapes[0])))


def _add(b: _OnnxBuild, node: Node, ins: List[str], shapes: List[Shape]) -> None:
    rank = len(node.shape)
    terms = [b.unsqueeze_to(node, t, len(s), rank) for t, s in zip(ins, shapes)]
    acc = terms[0]
    for i, term in enumerate(terms[1:], start=1):
        last = i == len(terms) - 1
        out = node.name if last else b.fresh(f"{node.name}::partial_sum")
        acc = b.add("Add", [acc, term], out, node.name if last else f"{node.name}::add")


def _concat(b: _OnnxBuild, node: Node, ins: List[str], shapes: List[Shape]) -> None:
    b.add("Concat", ins, node.name, node.name, axis=_axis(node.op.axis, len(shapes[0])))


def _matmul(b: _OnnxBuild, node: Node, ins: List[str], shapes: List[Shape]) -> None:
    rank = max(len(s) for s in shapes)
    a, c = (b.unsqueeze_to(node, t, len(s), rank) for t, s in zip(ins, shapes))
    b.add("MatMul", [a, c], node.name, node.name)


#: IR op name -> builder. An op not listed is refused (see ``_REFUSAL_REASONS``).
_BUILDERS: Dict[str, _Builder] = {
    "Input": _input,
    "Output": _output,
    "Affine": _linear,
    "Linear": _linear,
    "Scale": _scale,
    "Bias": _bias,
    "Conv1d": _conv,
    "Conv2d": _conv,
    "AvgPool2d": _avg_pool,
    "SumPool2d": _sum_pool,
    "MaxPool2d": _max_pool,
    "Flatten": _flatten,
    "Reshape": _reshape,
    "Transpose": _transpose,
    "Mean": _mean,
    "BatchNorm": _batch_norm,
    "LayerNorm": _layer_norm,
    "ReLU": _relu,
    "Softmax": _softmax,
    "Add": _add,
    "Concat": _concat,
    "MatMul": _matmul,
}

#: The IR ops the ONNX exporter writes.
ONNX_EXPORTABLE_OPS: Tuple[str, ...] = tuple(sorted(_BUILDERS))


# ------------------------------------------------------------------- the model
def _check_opset(opset: int) -> int:
    import onnx

    newest = int(onnx.defs.onnx_opset_version())
    if not isinstance(opset, (int, np.integer)) or not MIN_OPSET <= int(opset) <= newest:
        raise BadInputError(
            f"ONNX opset {opset!r} is not supported: choose {MIN_OPSET}..{newest} "
            f"(the installed onnx {onnx.__version__} knows up to {newest}; "
            "LayerNormalization needs 17)")
    return int(opset)


def _shaped(graph: Graph) -> Graph:
    """``graph`` with shapes inferred, without touching the caller's graph."""
    if all(n.shape is not None for n in graph):
        return graph
    return copy.deepcopy(graph).infer_shapes()


def graph_to_onnx(graph: Graph, *, opset: int = DEFAULT_OPSET) -> Any:
    """Build a checked ``onnx.ModelProto`` computing ``graph`` on a batch.

    Raises NotExpressibleError naming every node ONNX cannot hold (see
    :func:`onnx_unsupported_nodes`), and BadInputError for an opset outside
    17..newest. The caller's graph is not modified.
    """
    import onnx
    from onnx import helper

    from nmtoolchain import __version__

    opset = _check_opset(opset)
    refusals = onnx_unsupported_nodes(graph)
    if refusals:
        raise NotExpressibleError(_refusal_message(refusals))
    graph = _shaped(graph)
    if not graph.outputs():
        raise NotExpressibleError("cannot export to ONNX: the graph has no Output node")
    build = _OnnxBuild(graph, opset)
    for node in graph.topological_order():
        shapes = [graph[s].shape for s in node.inputs]
        _BUILDERS[node.op_name](build, node, list(node.inputs), shapes)
    onnx_graph = helper.make_graph(build.nodes, PRODUCER_NAME, build.inputs, build.outputs,
                                   initializer=build.initializers)
    opset_ids = [helper.make_opsetid("", opset)]
    model = helper.make_model(
        onnx_graph, opset_imports=opset_ids, producer_name=PRODUCER_NAME,
        producer_version=__version__,
        ir_version=helper.find_min_ir_version_for(opset_ids))
    onnx.checker.check_model(model, full_check=True)
    _cross_check_shapes(model, graph)
    return model


def _cross_check_shapes(model: Any, graph: Graph) -> None:
    """ONNX's shape inference must agree with the IR's shape of every node.

    A difference is a bug in a builder; better to stop than to write a file
    whose tensors are not what the IR says.
    """
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    onnx_shapes: Dict[str, Tuple[Any, ...]] = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.output):
        if vi.type.tensor_type.HasField("shape"):
            onnx_shapes[vi.name] = tuple(
                d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
                for d in vi.type.tensor_type.shape.dim)
    for node in graph:
        got = onnx_shapes.get(node.name)
        if got is None:
            continue
        want = (BATCH_DIM,) + tuple(node.shape)
        if len(got) != len(want) or any(g is not None and g != w for g, w in zip(got, want)):
            raise RuntimeError(
                f"ONNX export of node '{node.name}' ({node.op_name}) infers shape {got} but "
                f"the IR says {want}; this is a bug in exporters/onnx.py")


def onnx_bytes(graph: Graph, *, opset: int = DEFAULT_OPSET) -> bytes:
    """The serialized model of :func:`graph_to_onnx`; the same graph gives the same bytes."""
    return graph_to_onnx(graph, opset=opset).SerializeToString(deterministic=True)


def export_onnx(graph: Graph, path: Union[str, Path], *, opset: int = DEFAULT_OPSET) -> Path:
    """Write ``graph`` (its ANN: stateless ops only) to the ONNX file ``path``.

    Everything is checked before writing (NotExpressibleError naming every
    refused node; BadInputError for a bad opset or an unwritable path); the
    file is written under a temporary name next to ``path`` and renamed into
    place, so a failure leaves neither a partial nor a changed file.
    """
    from nmtoolchain.fileio import atomic_output

    path = Path(path)
    data = onnx_bytes(graph, opset=opset)
    with atomic_output(path) as tmp:
        tmp.write_bytes(data)
    return path


__all__ = ["export_onnx", "graph_to_onnx", "onnx_bytes", "onnx_unsupported_nodes", "OnnxRefusal",
           "ONNX_EXPORTABLE_OPS", "DEFAULT_OPSET"]
