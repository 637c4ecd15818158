"""Read an ONNX model (the ANN side: what torch, Keras or any trainer exports)
into an IR :class:`~nmtoolchain.ir.Graph`.

The translation is a table from ONNX ``op_type`` to one builder each (in the
style of lava-dl netx's layer builders): adding an operator is adding one
method. Conventions:

* The batch axis (axis 0 of every ONNX tensor) is dropped: IR shapes are per
  sample. Operators that would act on it (a Transpose moving it, a Flatten or
  Reshape merging it into another axis, a Softmax or Concat along it) are
  refused with :class:`~nmtoolchain.errors.UnsupportedOpError`.
* Constants come from initializers and ``Constant`` nodes. Any node whose
  inputs are all constants is evaluated once with ONNX's own reference
  evaluator (``onnx.reference``), so the shape arithmetic exporters emit
  (``Shape -> Gather -> Concat -> Reshape``) becomes a constant. ``Shape`` of
  a tensor with a symbolic batch dimension yields a marker value for that
  dimension which a Reshape recognizes as "keep the batch".
* A constant added to the output of a Conv, MatMul/Gemm or BatchNorm that
  nothing else reads is folded into that node's bias (so MatMul + Add becomes
  one Affine); multiplication or division by a constant becomes a Scale.
* ``Identity`` and ``Dropout`` are elided.

Every IR node records where it came from in ``annotations['source']``
(ONNX op_type and node name, plus any node folded into it). Bad input raises
only :class:`~nmtoolchain.errors.NmtcError` subclasses, each one line naming
the file and the node at fault. This module must not import torch.
"""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import AbstractSet, Any, Callable, Dict, Optional, Sequence, Tuple, Union

import numpy as np

from nmtoolchain.errors import BadInputError, IRValidationError, NmtcError, UnsupportedOpError
from nmtoolchain.ir import (
    Add, Affine, AvgPool2d, BatchNorm, Concat, Conv1d, Conv2d, Flatten, Graph, Input, Linear,
    MatMul, MaxPool2d, Mean, Output, ReLU, Reshape, Scale, Softmax, Transpose)
from nmtoolchain.ir.op import Op, OpCheckError, Shape

#: Stand-in for a symbolic batch size inside constant shape arithmetic. A
#: Reshape whose first target entry equals it keeps the batch axis; any other
#: arithmetic on it is refused (it would depend on the batch size).
BATCH_MARKER = 2_147_483_647

#: Ops evaluated on constants that may carry :data:`BATCH_MARKER` unchanged.
_MARKER_SAFE_OPS = frozenset(
    {"Gather", "Unsqueeze", "Squeeze", "Concat", "Slice", "Cast", "Identity", "Reshape"})


def load_onnx(path: Union[str, Path]) -> Graph:
    """Read the ONNX file ``path`` into an IR graph with inferred shapes.

    Raises BadInputError for a missing, empty, truncated or invalid file and
    UnsupportedOpError for an operator (or use of one) nmtc cannot translate.
    """
    import onnx

    path = Path(path)
    if not path.exists():
        raise BadInputError(f"{path}: no such file")
    if path.is_dir():
        raise BadInputError(f"{path}: is a directory, expected an ONNX file")
    try:
        size = path.stat().st_size
    except OSError as e:
        raise BadInputError(f"{path}: cannot read ({e.strerror})") from None
    if size == 0:
        raise BadInputError(f"{path}: file is empty")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # DecodeError, truncated data, ...
        raise BadInputError(
            f"{path}: not a readable ONNX model ({type(e).__name__}: {_first_line(e)})") from None
    _check_external_data(model, path)
    try:
        onnx.load_external_data_for_model(model, str(path.parent))
    except Exception as e:  # missing or short external data file
        raise BadInputError(
            f"{path}: external tensor data unreadable ({type(e).__name__}: {_first_line(e)})"
        ) from None
    return graph_from_onnx(model, origin=str(path))


def _check_external_data(model: Any, path: Path) -> None:
    """Refuse external tensor data outside the model's directory (an absolute path
    or one with '..' would make loading read any file the user can read)."""
    for t in model.graph.initializer:
        for e in t.external_data:
            if e.key == "location":
                loc = Path(e.value)
                if loc.is_absolute() or ".." in loc.parts:
                    raise BadInputError(
                        f"{path}: initializer '{t.name}' keeps its data at {e.value!r}, outside "
                        "the model's directory; refusing to read it")


#: attributes that must hold positive integers (a 0 stride or kernel crashes
#: native shape inference with a division by zero)
_POSITIVE_INT_ATTRS = ("strides", "dilations", "kernel_shape", "group")
#: attributes that must hold non-negative integers
_NON_NEGATIVE_INT_ATTRS = ("pads",)
#: element types nmtc can compute with (onnx.TensorProto: FLOAT, UINT8, INT8, UINT16,
#: INT16, INT32, INT64, BOOL, FLOAT16, DOUBLE, UINT32, UINT64, BFLOAT16)
_REAL_TENSOR_TYPES = frozenset({1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 16})


def validate_onnx_model(model: Any, origin: str) -> None:
    """Check attribute ranges and initializer dtypes/values before any native
    code (the ONNX checker, shape inference) sees the model.

    Raises BadInputError naming the node or initializer and the bad value.
    """
    from onnx import helper, numpy_helper

    for i, node in enumerate(model.graph.node):
        label = node.name or f"#{i} {node.op_type}"
        for a in node.attribute:
            try:
                v = helper.get_attribute_value(a)
            except Exception as e:  # noqa: BLE001 - a malformed attribute proto
                raise BadInputError(f"{origin}: node '{label}' (op {node.op_type}) attribute "
                                    f"{a.name} is malformed ({_first_line(e)})") from None
            values = list(v) if isinstance(v, (list, tuple)) else [v]
            if a.name in _POSITIVE_INT_ATTRS + _NON_NEGATIVE_INT_ATTRS:
                low = 1 if a.name in _POSITIVE_INT_ATTRS else 0
                if not all(isinstance(x, int) and low <= x < 2**31 for x in values):
                    bound = "positive" if low else "non-negative"
                    raise BadInputError(
                        f"{origin}: node '{label}' (op {node.op_type}) has {a.name} {values}; "
                        f"each must be a {bound} integer below 2**31")
            elif isinstance(v, float) and not np.isfinite(v):
                raise BadInputError(f"{origin}: node '{label}' (op {node.op_type}) has "
                                    f"{a.name} {v}; it must be finite")
    for t in model.graph.initializer:
        if t.data_type not in _REAL_TENSOR_TYPES:
            raise BadInputError(f"{origin}: initializer '{t.name}' has element type "
                                f"{helper.tensor_dtype_to_string(t.data_type)}; nmtc needs real "
                                "numbers (float or integer)")
        if any(d < 0 or d > 2**31 for d in t.dims):
            raise BadInputError(f"{origin}: initializer '{t.name}' has dims {list(t.dims)}")
        try:
            arr = numpy_helper.to_array(t)
        except Exception as e:  # noqa: BLE001 - size does not match dims, ...
            raise BadInputError(f"{origin}: initializer '{t.name}' is malformed "
                                f"({_first_line(e)})") from None
        if arr.dtype.kind == "f" and arr.size and not np.isfinite(arr).all():
            bad = "NaN" if np.isnan(arr).any() else "Inf"
            raise BadInputError(f"{origin}: initializer '{t.name}' holds {bad} values; weights "
                                "must be finite")


def graph_from_onnx(model: Any, origin: str) -> Graph:
    """Translate an ``onnx.ModelProto`` into an IR graph with inferred shapes.

    ``origin`` (usually the file path) starts every error message and becomes
    ``graph.metadata['source']['path']``.
    """
    import onnx

    if not isinstance(model, onnx.ModelProto):
        raise BadInputError(f"{origin}: expected an onnx.ModelProto, got {type(model).__name__}")
    validate_onnx_model(model, origin)
    try:
        onnx.checker.check_model(model)
    except Exception as e:  # onnx.checker.ValidationError and friends
        raise BadInputError(f"{origin}: invalid ONNX model ({_first_line(e)})") from None
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # shape inference is only a cross-check; the IR infers its own
        inferred = None
    translator = _OnnxTranslator(model, origin)
    graph = translator.translate()
    if inferred is not None:
        _cross_check_shapes(graph, inferred, origin, set(translator.time.seq))
    graph.metadata["source"] = {"path": str(origin), "format": "onnx"}
    graph.metadata["onnx"] = {
        "ir_version": int(model.ir_version),
        "opset": _default_opset(model),
        "producer": f"{model.producer_name} {model.producer_version}".strip(),
    }
    return graph


# ----------------------------------------------------------------- helpers
def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else "no details"


def _default_opset(model: Any) -> int:
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return int(imp.version)
    return 1


def _sanitize(name: str) -> str:
    """An ONNX name as an IR node name: no '/', '.', '::' or other punctuation."""
    return re.sub(r"[^0-9A-Za-z_]+", "_", name).strip("_")


def _prod(shape: Sequence[int]) -> int:
    return int(np.prod(shape)) if len(shape) else 1


class _OnnxTranslator:
    """One translation of one ONNX graph; builders are its ``_op_<OpType>`` methods."""

    def __init__(self, model: Any, origin: str) -> None:
        self.model = model
        self.onnx_graph = model.graph
        self.origin = origin
        self.opset = _default_opset(model)
        self.graph = Graph()
        self.consts: Dict[str, np.ndarray] = {}
        self.values: Dict[str, str] = {}  # ONNX tensor name -> IR node name (dynamic tensors)
        self.uses: Dict[str, int] = {}  # IR node name -> ONNX readers of its value
        self.producer: Dict[str, Any] = {}  # ONNX tensor name -> producing NodeProto
        self.batch = 1  # the batch size Shape reports (BATCH_MARKER when symbolic)
        self.readers: Dict[str, int] = {}
        self.lead = 1  # leading axes of the node being translated (2: time-major, (T, B, ...))
        from nmtoolchain.frontends.onnx_time import OnnxTimeAxis

        self.time = OnnxTimeAxis(self)
        for node in self.onnx_graph.node:
            for t in node.input:
                if t:
                    self.readers[t] = self.readers.get(t, 0) + 1
        for out in self.onnx_graph.output:
            self.readers[out.name] = self.readers.get(out.name, 0) + 1

    # ---------------------------------------------------------------- driver
    def translate(self) -> Graph:
        from onnx import numpy_helper

        for init in self.onnx_graph.initializer:
            try:
                self.consts[init.name] = numpy_helper.to_array(init)
            except Exception as e:
                raise BadInputError(
                    f"{self.origin}: initializer '{init.name}' cannot be read "
                    f"({_first_line(e)})") from None
        self._add_inputs()
        for index, node in enumerate(self.onnx_graph.node):
            if index in self.time.done:  # translated with its neuron region
                continue
            node_label = node.name or f"{node.op_type}_{index}"
            self._translate_node(node, node_label, index)
        self._add_outputs()
        try:
            self.graph.infer_shapes()
        except IRValidationError as e:
            raise IRValidationError(f"{self.origin}: {e}") from None
        self.time.finish(self.graph, [vi.name for vi in self.onnx_graph.output])
        return self.graph

    def _add_inputs(self) -> None:
        batches = set()
        for vi in self.onnx_graph.input:
            if vi.name in self.consts:  # IR < 4 lists initializers as inputs too
                continue
            where = f"{self.origin}: graph input '{vi.name}'"
            tt = vi.type.tensor_type if vi.type.HasField("tensor_type") else None
            if tt is None or not tt.HasField("shape"):
                raise BadInputError(f"{where} has no tensor shape; nmtc needs static shapes")
            dims = list(tt.shape.dim)
            if len(dims) < 2:
                raise BadInputError(
                    f"{where} has rank {len(dims)}; expected a batch axis plus per-sample axes")
            batches.add(dims[0].dim_value if dims[0].HasField("dim_value") else None)
            sample = []
            for axis, d in enumerate(dims[1:], start=1):
                if not d.HasField("dim_value") or d.dim_value <= 0:
                    label = d.dim_param or "unknown"
                    raise BadInputError(
                        f"{where} has a symbolic dimension '{label}' on axis {axis}; only the "
                        "batch axis (0) may be symbolic")
                sample.append(int(d.dim_value))
            name = self.graph.unique_name(_sanitize(vi.name) or "input")
            if name[0].isdigit():
                name = self.graph.unique_name(f"input_{name}")
            self.graph.add(name, Input(shape=tuple(sample)), (), {
                "source": {"format": "onnx", "op_type": "graph input", "name": vi.name}})
            self.graph.nodes[name].shape = tuple(sample)
            self.values[vi.name] = name
            self.uses[name] = self.readers.get(vi.name, 0)
        if not self.values:
            raise BadInputError(f"{self.origin}: the model has no (non-constant) graph input")
        self.batch = batches.pop() if len(batches) == 1 and None not in batches else BATCH_MARKER

    def _add_outputs(self) -> None:
        for vi in self.onnx_graph.output:
            if vi.name in self.consts:
                raise UnsupportedOpError(
                    f"{self.origin}: graph output '{vi.name}' is a constant that does not "
                    "depend on any input")
            src = self.values.get(vi.name)
            if src is None:
                raise BadInputError(
                    f"{self.origin}: graph output '{vi.name}' is produced by no node")
            name = _sanitize(vi.name) or "output"
            if name[0].isdigit():
                name = f"output_{name}"
            name = self.graph.unique_name(name)
            self.graph.add(name, Output(), (src,), {
                "source": {"format": "onnx", "op_type": "graph output", "name": vi.name}})

    def _translate_node(self, node: Any, label: str, index: int = -1) -> None:
        if node.domain not in ("", "ai.onnx"):
            raise UnsupportedOpError(
                f"{self.origin}: node '{label}' (op {node.domain}.{node.op_type}) is from "
                f"custom domain '{node.domain}', which is not supported; supported: "
                f"{', '.join(SUPPORTED_OPS)}")
        inputs = [t for t in node.input if t]
        if node.op_type == "Constant" or (inputs and all(t in self.consts for t in inputs)):
            self._fold_constant(node, label)
            return
        try:
            if self.time.handle(node, label, index):  # time-major (T, B, ...) tensors
                return
        except NmtcError:
            raise
        except Exception as e:
            raise self.bad(node, label, f"cannot be translated ({type(e).__name__}: "
                                        f"{_first_line(e)})") from e
        self.translate_plain(node, label)

    def translate_plain(self, node: Any, label: str) -> None:
        """Translate ``node`` through its builder (``self.lead`` leading axes)."""
        builder = _BUILDERS.get(node.op_type)
        if builder is None:
            raise UnsupportedOpError(
                f"{self.origin}: node '{label}' (op {node.op_type}) is not supported; "
                f"supported: {', '.join(SUPPORTED_OPS)} (and any node on constants only)")
        try:
            builder(self, node, label)
        except NmtcError:
            raise
        except Exception as e:  # a malformed node the checker let through; name it
            raise self.bad(node, label, f"cannot be translated ({type(e).__name__}: "
                                        f"{_first_line(e)})") from e

    # ---------------------------------------------------- errors and access
    def unsupported(self, node: Any, label: str, why: str) -> UnsupportedOpError:
        return UnsupportedOpError(f"{self.origin}: node '{label}' (op {node.op_type}) {why}")

    def bad(self, node: Any, label: str, why: str) -> BadInputError:
        return BadInputError(f"{self.origin}: node '{label}' (op {node.op_type}) {why}")

    def attrs(self, node: Any) -> Dict[str, Any]:
        from onnx import helper

        out = {}
        for a in node.attribute:
            v = helper.get_attribute_value(a)
            out[a.name] = v.decode() if isinstance(v, bytes) else v
        return out

    def const(self, tensor: str) -> Optional[np.ndarray]:
        return self.consts.get(tensor) if tensor else None

    def need_const(self, node: Any, label: str, index: int, what: str) -> Optional[np.ndarray]:
        """The constant at input ``index`` (None when the optional input is absent)."""
        if index >= len(node.input) or not node.input[index]:
            return None
        c = self.consts.get(node.input[index])
        if c is None:
            raise self.unsupported(
                node, label, f"has a computed (non-constant) {what} '{node.input[index]}'; "
                f"only a constant {what} is supported")
        return c

    def dyn(self, node: Any, label: str, index: int) -> str:
        """The IR node carrying the dynamic tensor at input ``index``."""
        t = node.input[index] if index < len(node.input) else ""
        if not t:
            raise self.bad(node, label, f"lacks its input #{index}")
        if t in self.values:
            return self.values[t]
        if t in self.consts:
            raise self.unsupported(
                node, label, f"has the constant '{t}' as input #{index}, where nmtc needs a "
                "tensor computed from the graph input")
        raise self.bad(node, label, f"reads tensor '{t}' that no node produces")

    def sample_shape(self, ir_name: str) -> Shape:
        return self.graph.nodes[ir_name].shape  # set by emit() as each node is added

    def alias(self, node: Any, ir_name: str) -> None:
        """``node.output[0]`` is the same value as ``ir_name`` (elided node)."""
        out = node.output[0]
        self.values[out] = ir_name
        self.uses[ir_name] += self.readers.get(out, 0) - 1

    def emit(self, node: Any, label: str, op: Op, inputs: Sequence[str]) -> str:
        """Add ``op`` as an IR node for ``node``'s first output and infer its shape."""
        used_outputs = [t for t in node.output[1:] if t and self.readers.get(t)]
        if used_outputs:
            raise self.unsupported(
                node, label, f"has its extra output(s) {used_outputs} in use; only the first "
                "output is supported")
        base = _sanitize(node.name or label) or node.op_type
        if base[0].isdigit():
            base = f"{node.op_type}_{base}"
        name = self.graph.unique_name(base)
        source = {"format": "onnx", "op_type": node.op_type, "name": node.name or label}
        try:
            graph_node = self.graph.add(name, op, inputs, {"source": source})
        except IRValidationError as e:
            raise self.bad(node, label, f"cannot be translated: {e}") from None
        graph_node.shape = self._infer(node, label, op, inputs)
        self.values[node.output[0]] = name
        self.uses[name] = self.readers.get(node.output[0], 0)
        return name

    def _infer(self, node: Any, label: str, op: Op, inputs: Sequence[str]) -> Shape:
        shapes = [self.sample_shape(i) for i in inputs]
        try:
            return tuple(int(d) for d in op.infer_shape(shapes))
        except OpCheckError as e:
            ins = ", ".join(str(s) for s in shapes)
            raise self.bad(
                node, label, f"with per-sample input shape {ins} as IR {op.op_name}: {e}") from None

    def make_op(self, node: Any, label: str, factory: Callable[[], Op]) -> Op:
        """Build an IR op, turning its field checks into an error naming ``node``."""
        try:
            op = factory()
            op.check()
        except (OpCheckError, ValueError, TypeError) as e:
            raise self.bad(node, label, f"has parameters the IR rejects: {e}") from None
        return op

    # ----------------------------------------------------------- constants
    def _fold_constant(self, node: Any, label: str) -> None:
        from onnx.reference import ReferenceEvaluator

        if node.op_type != "Constant" and node.op_type not in _MARKER_SAFE_OPS and any(
                self._has_marker(self.consts[t]) for t in node.input if t):
            raise self.unsupported(
                node, label, "computes with the symbolic batch size; only passing it on to "
                "a Reshape is supported")
        feeds = {t: self.consts[t] for t in node.input if t}
        try:
            results = ReferenceEvaluator(node, opsets={"": self.opset}).run(None, feeds)
        except Exception as e:
            raise self.unsupported(
                node, label, f"on constant inputs could not be evaluated ({type(e).__name__}: "
                f"{_first_line(e)})") from None
        for t, value in zip(node.output, results):
            if t:
                self.consts[t] = np.asarray(value)

    @staticmethod
    def _has_marker(a: np.ndarray) -> bool:
        return a.dtype.kind in "iu" and a.size < 64 and bool((a == BATCH_MARKER).any())

    def sample_const(self, node: Any, label: str, c: np.ndarray, full_rank: int) -> np.ndarray:
        """A constant operand of a broadcasting op, without its batch axis."""
        c = np.asarray(c, dtype=np.float32)
        full_rank += self.lead - 1
        if c.ndim > full_rank:
            raise self.unsupported(
                node, label, f"broadcasts a constant of shape {c.shape} over a rank-"
                f"{full_rank} tensor, which would add axes")
        if c.ndim == full_rank:
            if any(d != 1 for d in c.shape[:self.lead]):
                raise self.unsupported(
                    node, label, f"has a constant of shape {c.shape} that varies along the batch "
                    "axis")
            c = c.reshape(c.shape[self.lead:])
        return c

    # ------------------------------------------------------------- builders
    def _op_Identity(self, node: Any, label: str) -> None:
        self.alias(node, self.dyn(node, label, 0))

    def _op_Dropout(self, node: Any, label: str) -> None:
        if len(node.output) > 1 and node.output[1] and self.readers.get(node.output[1]):
            raise self.unsupported(node, label, "has its mask output in use")
        self.alias(node, self.dyn(node, label, 0))

    def _op_Shape(self, node: Any, label: str) -> None:
        full = np.array((self.batch,) + self.sample_shape(self.dyn(node, label, 0)), np.int64)
        a = self.attrs(node)
        start, end = a.get("start", 0), a.get("end", None)
        self.consts[node.output[0]] = full[start:end]

    def _op_Relu(self, node: Any, label: str) -> None:
        self.emit(node, label, ReLU(), [self.dyn(node, label, 0)])

    def _op_Conv(self, node: Any, label: str) -> None:
        x = self.dyn(node, label, 0)
        w = self.need_const(node, label, 1, "weight")
        b = self.need_const(node, label, 2, "bias")
        a = self.attrs(node)
        nd = w.ndim - 2
        if nd not in (1, 2):
            raise self.unsupported(node, label, f"is a {nd}-D convolution; only 1-D and 2-D are")
        in_shape = self.sample_shape(x)
        if len(in_shape) != nd + 1:
            raise self.bad(node, label, f"has a {nd}-D kernel but input shape {in_shape}")
        stride = tuple(a.get("strides", [1] * nd))
        dilation = tuple(a.get("dilations", [1] * nd))
        kernel = tuple(int(k) for k in w.shape[2:])
        pads = self._symmetric_pads(node, label, a, in_shape[1:], kernel, stride, dilation)
        cls = Conv1d if nd == 1 else Conv2d
        op = self.make_op(node, label, lambda: cls(
            weight=w, bias=b, stride=stride, padding=pads, dilation=dilation,
            groups=int(a.get("group", 1))))
        self.emit(node, label, op, [x])

    def _symmetric_pads(self, node: Any, label: str, a: Dict[str, Any], spatial: Sequence[int],
                        kernel: Sequence[int], stride: Sequence[int],
                        dilation: Sequence[int]) -> Tuple[int, ...]:
        """Per-axis padding from ``pads``/``auto_pad``; asymmetric padding is refused."""
        nd = len(kernel)
        auto = a.get("auto_pad", "NOTSET")
        if auto in ("NOTSET", ""):
            pads = list(a.get("pads", [0] * (2 * nd)))
            begin, end = pads[:nd], pads[nd:]
        elif auto == "VALID":
            begin = end = [0] * nd
        elif auto in ("SAME_UPPER", "SAME_LOWER"):
            begin, end = [], []
            for n, k, s, d in zip(spatial, kernel, stride, dilation):
                total = max((math.ceil(n / s) - 1) * s + (k - 1) * d + 1 - n, 0)
                small, large = total // 2, total - total // 2
                begin.append(small if auto == "SAME_UPPER" else large)
                end.append(large if auto == "SAME_UPPER" else small)
        else:
            raise self.bad(node, label, f"has an unknown auto_pad '{auto}'")
        if list(begin) != list(end):
            raise self.unsupported(
                node, label, f"pads asymmetrically (begin {list(begin)}, end {list(end)}, "
                f"auto_pad {auto}); only symmetric padding is supported")
        return tuple(int(p) for p in begin)

    def _op_Gemm(self, node: Any, label: str) -> None:
        x = self.dyn(node, label, 0)
        w = self.need_const(node, label, 1, "weight (input B)")
        c = self.need_const(node, label, 2, "bias (input C)")
        a = self.attrs(node)
        if a.get("transA", 0):
            raise self.unsupported(node, label, "has transA=1, which would transpose the batch axis")
        if w.ndim != 2:
            raise self.bad(node, label, f"has a weight of shape {w.shape}; Gemm needs 2-D")
        alpha, beta = float(a.get("alpha", 1.0)), float(a.get("beta", 1.0))
        weight = np.asarray(w if a.get("transB", 0) else w.T, dtype=np.float32)  # (out, in)
        if alpha != 1.0:
            weight = weight * np.float32(alpha)
        if c is None:
            op = self.make_op(node, label, lambda: Linear(weight=weight))
        else:
            try:
                bias = np.broadcast_to(np.asarray(c, np.float32), (1, weight.shape[0]))[0]
            except ValueError:
                raise self.unsupported(
                    node, label, f"has a bias C of shape {c.shape} that is not one value per "
                    f"output ({weight.shape[0]}) shared by all samples") from None
            if beta != 1.0:
                bias = bias * np.float32(beta)
            op = self.make_op(node, label, lambda: Affine(weight=weight, bias=bias.copy()))
        self.emit(node, label, op, [x])

    def _op_MatMul(self, node: Any, label: str) -> None:
        left, right = node.input[0], node.input[1]
        if left in self.consts:
            raise self.unsupported(
                node, label, f"multiplies the constant '{left}' from the left; only x @ W "
                "(constant right operand) or two computed operands are supported")
        x = self.dyn(node, label, 0)
        if right in self.consts:
            w = self.consts[right]
            if w.ndim != 2:
                raise self.unsupported(
                    node, label, f"has a constant right operand of shape {w.shape}; only a 2-D "
                    "weight (in, out) is supported")
            weight = np.ascontiguousarray(np.asarray(w, np.float32).T)
            self.emit(node, label, self.make_op(node, label, lambda: Linear(weight=weight)), [x])
            return
        y = self.dyn(node, label, 1)
        sa, sb = self.sample_shape(x), self.sample_shape(y)
        if len(sa) != len(sb) or len(sa) < 2:
            raise self.unsupported(
                node, label, f"multiplies per-sample shapes {sa} and {sb}; both operands need the "
                "same rank >= 2 per sample (rank >= 3 with the batch axis)")
        self.emit(node, label, MatMul(), [x, y])

    def _op_Add(self, node: Any, label: str) -> None:
        self._add_or_sub(node, label, sign=1.0)

    def _op_Sub(self, node: Any, label: str) -> None:
        self._add_or_sub(node, label, sign=-1.0)

    def _add_or_sub(self, node: Any, label: str, sign: float) -> None:
        ta, tb = node.input[0], node.input[1]
        if ta not in self.consts and tb not in self.consts:
            x, y = self.dyn(node, label, 0), self.dyn(node, label, 1)
            sa, sb = self.sample_shape(x), self.sample_shape(y)
            if sign < 0:
                raise self.unsupported(
                    node, label, "subtracts two computed tensors; only a - constant is supported")
            if len(sa) != len(sb):
                raise self.unsupported(
                    node, label, f"adds tensors of different rank {sa} and {sb}, which would "
                    "broadcast across the batch axis")
            self.emit(node, label, Add(), [x, y])
            return
        if ta in self.consts and sign < 0:
            raise self.unsupported(
                node, label, "subtracts a computed tensor from a constant; only a - constant "
                "is supported")
        index = 1 if ta in self.consts else 0
        x = self.dyn(node, label, index)
        c = self.consts[tb if index == 0 else ta]
        self._fold_bias(node, label, x, sign * np.asarray(c, np.float32))

    def _fold_bias(self, node: Any, label: str, x: str, c: np.ndarray) -> None:
        """Add the constant ``c`` to the bias of the node producing ``x``."""
        producer = self.graph.nodes[x]
        op = producer.op
        if isinstance(op, (Linear, Conv1d, Conv2d, BatchNorm)):
            shape = self.sample_shape(x)
            axis = {Conv1d: 0, Conv2d: 0}.get(type(op), op.axis if isinstance(op, BatchNorm) else -1)
            if self.uses[x] != 1:
                raise self.unsupported(
                    node, label, f"adds a constant to the output of '{x}', which is also read "
                    "elsewhere, so the constant cannot be folded into its bias; adding a "
                    "constant is only supported right after a Conv/Gemm/MatMul/BatchNorm")
            per_sample = self.sample_const(node, label, c, len(shape) + 1)
            try:
                full = np.broadcast_to(per_sample, shape)
            except ValueError:
                raise self.bad(
                    node, label, f"adds a constant of shape {c.shape} that does not broadcast to "
                    f"{shape}") from None
            rows = np.moveaxis(full, axis, 0).reshape(shape[axis], -1)
            if not np.all(rows == rows[:, :1]):
                raise self.unsupported(
                    node, label, f"adds a constant of shape {c.shape} that varies along axes "
                    f"other than the output features of '{x}', so it is not a bias")
            add = rows[:, 0].astype(np.float32)
            if type(op) is Linear:
                weight = op.weight
                producer.op = self.make_op(node, label, lambda: Affine(weight=weight, bias=add))
            else:
                op.bias = (op.bias + add).astype(np.float32)
            producer.annotations["source"].setdefault("folded", []).append(
                {"op_type": node.op_type, "name": node.name or label})
            self.alias(node, x)
            return
        raise self.unsupported(
            node, label, f"adds a constant to the output of '{x}' ({producer.op_name}); a "
            "constant can only be folded into the bias of a directly preceding "
            "Conv/Gemm/MatMul/BatchNorm")

    def _op_Mul(self, node: Any, label: str) -> None:
        self._scale(node, label, invert=False)

    def _op_Div(self, node: Any, label: str) -> None:
        self._scale(node, label, invert=True)

    def _scale(self, node: Any, label: str, invert: bool) -> None:
        ta, tb = node.input[0], node.input[1]
        if invert and ta in self.consts:
            raise self.unsupported(node, label, "divides a constant by a computed tensor")
        if ta not in self.consts and tb not in self.consts:
            raise self.unsupported(
                node, label, "multiplies or divides two computed tensors elementwise; only a "
                "constant factor is supported")
        index = 1 if ta in self.consts else 0
        x = self.dyn(node, label, index)
        c = self.sample_const(node, label, self.consts[tb if index == 0 else ta],
                              len(self.sample_shape(x)) + 1)
        if invert:
            c = (np.float32(1.0) / c).astype(np.float32)
        self.emit(node, label, self.make_op(node, label, lambda: Scale(scale=c)), [x])

    def _op_Flatten(self, node: Any, label: str) -> None:
        x = self.dyn(node, label, 0)
        rank = len(self.sample_shape(x)) + 1
        axis = int(self.attrs(node).get("axis", 1))
        axis = axis + rank if axis < 0 else axis
        if axis != 1:
            raise self.unsupported(
                node, label, f"flattens at axis {axis}, which merges axes into the batch axis; "
                "only axis=1 (flatten each sample) is supported")
        self.emit(node, label, Flatten(start_dim=0, end_dim=-1), [x])

    def _op_Reshape(self, node: Any, label: str) -> None:
        x = self.dyn(node, label, 0)
        target = self.need_const(node, label, 1, "shape")
        target = [int(v) for v in np.asarray(target).reshape(-1)]
        in_shape = self.sample_shape(x)
        allowzero = int(self.attrs(node).get("allowzero", 0))
        if not target:
            raise self.unsupported(node, label, "reshapes to a scalar, dropping the batch axis")
        if target[0] not in (-1, 0, self.batch) or (allowzero and target[0] == 0):
            raise self.unsupported(
                node, label, f"reshapes to {target}, whose first entry is neither -1, 0 nor the "
                "batch size; reshaping across the batch axis is not supported")
        rest = []
        for i, t in enumerate(target[1:]):
            if t == 0 and not allowzero:
                if i >= len(in_shape):
                    raise self.bad(node, label, f"copies axis {i + 1} that input {in_shape} lacks")
                t = in_shape[i]
            rest.append(t)
        n = _prod(in_shape)
        if rest.count(-1) + (target[0] == -1) > 1:
            raise self.unsupported(
                node, label, f"reshapes to {target} with more than one -1 (counting the batch "
                "axis); the per-sample shape is ambiguous")
        if -1 in rest:
            known = _prod([t for t in rest if t != -1])
            if known <= 0 or n % known:
                raise self.bad(node, label, f"cannot reshape per-sample {in_shape} to {target}")
            rest[rest.index(-1)] = n // known
        if _prod(rest) != n or any(t <= 0 for t in rest):
            raise self.unsupported(
                node, label, f"reshapes per-sample shape {in_shape} to {target}, which changes "
                "the batch size; only per-sample reshapes are supported")
        op = Flatten(start_dim=0, end_dim=-1) if len(rest) == 1 else Reshape(shape=tuple(rest))
        self.emit(node, label, op, [x])

    def _op_Transpose(self, node: Any, label: str) -> None:
        x = self.dyn(node, label, 0)
        lead = self.lead
        rank = len(self.sample_shape(x)) + lead
        perm = [int(p) for p in self.attrs(node).get("perm", list(range(rank))[::-1])]
        perm = [p + rank if p < 0 else p for p in perm]
        if perm[:lead] != list(range(lead)):
            raise self.unsupported(
                node, label, f"has perm {perm}, which moves the batch axis 0; it must stay first")
        self.emit(node, label, Transpose(perm=tuple(p - lead for p in perm[lead:])), [x])

    def _pool(self, node: Any, label: str, cls: type) -> None:
        x = self.dyn(node, label, 0)
        a = self.attrs(node)
        kernel = tuple(int(k) for k in a.get("kernel_shape", []))
        in_shape = self.sample_shape(x)
        if len(kernel) != 2 or len(in_shape) != 3:
            raise self.unsupported(
                node, label, f"pools with kernel {list(kernel)} over per-sample shape "
                f"{in_shape}; only 2-D pooling over (C, H, W) is supported")
        stride = tuple(int(s) for s in a.get("strides", [1, 1]))
        if any(int(d) != 1 for d in a.get("dilations", [1, 1])):
            raise self.unsupported(node, label, f"has dilations {a['dilations']}; only 1 is")
        pads = self._symmetric_pads(node, label, a, in_shape[1:], kernel, stride, (1, 1))
        if a.get("ceil_mode", 0) and any(
                (n + 2 * p - k) % s for n, p, k, s in zip(in_shape[1:], pads, kernel, stride)):
            raise self.unsupported(
                node, label, "has ceil_mode=1 with windows that do not tile the input; only "
                "floor rounding is supported")
        if cls is AvgPool2d and any(pads) and not a.get("count_include_pad", 0):
            raise self.unsupported(
                node, label, "averages over padding with count_include_pad=0; only "
                "count_include_pad=1 (padding counts as zeros) is supported")
        op = self.make_op(node, label, lambda: cls(kernel_size=kernel, stride=stride,
                                                   padding=pads))
        self.emit(node, label, op, [x])

    def _op_AveragePool(self, node: Any, label: str) -> None:
        self._pool(node, label, AvgPool2d)

    def _op_MaxPool(self, node: Any, label: str) -> None:
        self._pool(node, label, MaxPool2d)

    def _global_pool(self, node: Any, label: str, cls: type) -> None:
        x = self.dyn(node, label, 0)
        in_shape = self.sample_shape(x)
        if len(in_shape) != 3:
            raise self.unsupported(
                node, label, f"pools over per-sample shape {in_shape}; only (C, H, W) is "
                "supported")
        kernel = tuple(in_shape[1:])
        self.emit(node, label, cls(kernel_size=kernel, stride=kernel, padding=(0, 0)), [x])

    def _op_GlobalAveragePool(self, node: Any, label: str) -> None:
        self._global_pool(node, label, AvgPool2d)

    def _op_GlobalMaxPool(self, node: Any, label: str) -> None:
        self._global_pool(node, label, MaxPool2d)

    # ------------------------------------------ Spikformer family (#11)
    def _op_ReduceMean(self, node: Any, label: str) -> None:
        """Mean over one per-sample axis (Spikformer's token mean before the head)."""
        x = self.dyn(node, label, 0)
        a = self.attrs(node)
        rank = len(self.sample_shape(x)) + self.lead
        axes = a.get("axes")
        if axes is None and len(node.input) > 1 and node.input[1]:
            axes = self.need_const(node, label, 1, "axes")
            if axes is None:
                raise self.unsupported(node, label, "has axes that are not a constant")
        if axes is None or a.get("noop_with_empty_axes", 0):
            raise self.unsupported(node, label, "reduces over all axes; give one axis")
        axes = [int(v) + rank if int(v) < 0 else int(v) for v in np.asarray(axes).reshape(-1)]
        if rank == 4 and sorted(axes) == [2, 3]:
            self._spatial_mean(node, label, x, bool(a.get("keepdims", 1)))
            return
        if len(axes) != 1:
            raise self.unsupported(node, label, f"reduces over axes {axes}; only one is supported")
        if axes[0] < self.lead:
            raise self.unsupported(node, label, "reduces along the batch axis 0")
        if a.get("keepdims", 1):
            raise self.unsupported(node, label, "has keepdims=1; only keepdims=0 is supported")
        self.emit(node, label, Mean(axis=axes[0] - self.lead), [x])

    def _spatial_mean(self, node: Any, label: str, x: str, keepdims: bool) -> None:
        """``x.mean((2, 3))`` / AdaptiveAvgPool2d(1) as torch's dynamo exporter writes it
        (ReduceMean over H and W): average pooling over the whole map, then, without
        keepdims, a flatten of the (C, 1, 1) result."""
        h, w = self.sample_shape(x)[1:]
        pooled = self.emit(node, label, AvgPool2d(kernel_size=(h, w), stride=(h, w),
                                                  padding=(0, 0)), [x])
        if not keepdims:
            self.uses[pooled] = 1
            self.emit(node, f"{label}_flatten", Flatten(start_dim=0, end_dim=-1), [pooled])

    def _op_BatchNormalization(self, node: Any, label: str) -> None:
        x = self.dyn(node, label, 0)
        a = self.attrs(node)
        if a.get("training_mode", 0):
            raise self.unsupported(node, label, "is in training mode; export the model in eval mode")
        if not a.get("spatial", 1):
            raise self.unsupported(node, label, "has spatial=0 (per-element statistics)")
        scale, bias, mean, var = (self.need_const(node, label, i, what) for i, what in
                                  enumerate(("scale", "bias", "mean", "var"), start=1))
        if any(v is None for v in (scale, bias, mean, var)):
            raise self.bad(node, label, "lacks one of scale, bias, mean, var")
        op = self.make_op(node, label, lambda: BatchNorm(
            mean=mean, var=var, weight=scale, bias=bias, eps=float(a.get("epsilon", 1e-5)),
            axis=0))
        self.emit(node, label, op, [x])

    def _op_Softmax(self, node: Any, label: str) -> None:
        x = self.dyn(node, label, 0)
        rank = len(self.sample_shape(x)) + 1
        axis = int(self.attrs(node).get("axis", -1 if self.opset >= 13 else 1))
        axis = axis + rank if axis < 0 else axis
        if axis == 0:
            raise self.unsupported(node, label, "normalizes along the batch axis 0")
        if self.opset < 13 and axis != rank - 1:
            raise self.unsupported(
                node, label, f"(opset {self.opset}) normalizes over all axes from {axis} on "
                "together; only the last axis is supported before opset 13")
        self.emit(node, label, Softmax(axis=axis - 1), [x])

    def _op_Concat(self, node: Any, label: str) -> None:
        xs = [self.dyn(node, label, i) for i in range(len(node.input))]
        rank = len(self.sample_shape(xs[0])) + 1
        axis = int(self.attrs(node).get("axis", 0))
        axis = axis + rank if axis < 0 else axis
        if axis == 0:
            raise self.unsupported(node, label, "concatenates along the batch axis 0")
        if len(xs) == 1:
            self.alias(node, xs[0])
            return
        self.emit(node, label, Concat(axis=axis - 1), xs)


#: ONNX op_type -> builder. Every op not listed (and not on constants only) is refused.
_BUILDERS: Dict[str, Callable[[_OnnxTranslator, Any, str], None]] = {
    name[len("_op_"):]: fn for name, fn in vars(_OnnxTranslator).items()
    if name.startswith("_op_")}

#: The ONNX operators the loader translates, for error messages and docs.
SUPPORTED_OPS: Tuple[str, ...] = tuple(sorted(_BUILDERS) + ["Constant"])


def _cross_check_shapes(graph: Graph, inferred: Any, origin: str,
                        time_major: AbstractSet[str] = frozenset()) -> None:
    """Compare each translated node's shape with ONNX's own shape inference.

    A difference means the translation is wrong somewhere; better to say so
    than to hand on a graph whose shapes disagree with the model.
    """
    known: Dict[str, Tuple[Any, ...]] = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.output):
        if vi.type.HasField("tensor_type") and vi.type.tensor_type.HasField("shape"):
            dims = vi.type.tensor_type.shape.dim
            known[vi.name] = tuple(d.dim_value if d.HasField("dim_value") else None for d in dims)
    by_source = {}
    for n in graph:
        src = n.annotations.get("source", {})
        by_source[(src.get("op_type"), src.get("name"))] = n
    for node in inferred.graph.node:
        n = by_source.get((node.op_type, node.name))
        if n is None or not node.name or not node.output or node.output[0] not in known:
            continue
        sample = known[node.output[0]][2 if node.output[0] in time_major else 1:]
        if None in sample or n.shape is None:
            continue
        if tuple(sample) != tuple(n.shape):
            raise IRValidationError(
                f"{origin}: node '{node.name}' (op {node.op_type}) translates to shape "
                f"{n.shape} per sample but ONNX infers {tuple(sample)}")

__all__ = ["load_onnx", "graph_from_onnx", "SUPPORTED_OPS", "BATCH_MARKER"]
