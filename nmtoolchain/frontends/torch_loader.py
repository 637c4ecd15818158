"""Torch front end: TorchScript archives, nmtc checkpoints and (with consent)
pickled modules into an IR :class:`~nmtoolchain.ir.Graph`.

Two walkers share one builder (and the leaf registry in
:mod:`nmtoolchain.frontends.torch_leaves`):

* :func:`graph_from_module` traces a Python ``nn.Module`` with torch.fx,
  treating registered leaves (and every torch.nn / sinabs module) as opaque;
* :func:`graph_from_torchscript` walks a TorchScript graph without inlining:
  a call into a leaf submodule is translated from the submodule's attributes,
  other calls recurse into the callee's graph.

Both interpret the model abstractly: a tensor is an IR node with a per-sample
shape, shape arithmetic (``x.shape``, ``x.size(0)``) is evaluated with the
batch (and time) size kept symbolic, so a reshape that moves the batch axis
is caught and named. Only :class:`~nmtoolchain.errors.NmtcError` subclasses
escape for bad input; every message is one line naming the file and the
module or op at fault. This module never unpickles without ``allow_pickle``.
"""
from __future__ import annotations

import importlib
import json
import operator
import pickle
import zipfile
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from nmtoolchain.errors import (
    BadInputError, IRValidationError, NmtcError, PickleRefusedError, UnsupportedOpError)
from nmtoolchain.frontends.torch_leaves import (
    Leaf, LeafContext, class_path, is_vendor_module, leaf_of, supported_leaf_names)
from nmtoolchain.ir import (
    Add, Affine, AvgPool2d, BatchNorm, Concat, Conv1d, Conv2d, Flatten, Graph, Input,
    LayerNorm, Linear, MatMul, MaxPool2d, Op, Output, ReLU, Reshape, Scale, Shape, Softmax,
    Transpose)
from nmtoolchain.ir.op import OpCheckError, as_array

EXTRA_FILE = "nmtc.json"


# ======================================================================
# abstract values
class _Tensor:
    """A dynamic tensor: the IR node producing it and its per-sample shape."""

    __slots__ = ("name", "shape")

    def __init__(self, name: str, shape: Shape) -> None:
        self.name, self.shape = name, tuple(int(s) for s in shape)

    def __repr__(self) -> str:
        return f"<tensor {self.name} {self.shape}>"


class _Lead:
    """The size of a leading axis (0: batch, 1: time), unknown at load time."""

    __slots__ = ("index",)

    def __init__(self, index: int) -> None:
        self.index = index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Lead) and other.index == self.index

    def __hash__(self) -> int:
        return hash(("lead", self.index))

    def __repr__(self) -> str:
        return "batch" if self.index == 0 else "time"


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, bool, np.number)) and not isinstance(v, _Lead)


def _scalar(v: Any) -> Any:
    """A python number for numbers and 0-d constant tensors; ``v`` otherwise."""
    if hasattr(v, "detach") and getattr(v, "ndim", None) == 0:
        return v.item()
    return v


def _prod(xs: Sequence[int]) -> int:
    p = 1
    for x in xs:
        p *= int(x)
    return p


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0].strip() if text else type(e).__name__


# ======================================================================
# the IR builder shared by both walkers
class _Builder:
    """Emits IR nodes; ``where`` strings name the torch construct in messages."""

    def __init__(self, origin: str, lead: int) -> None:
        self.origin = origin
        self.lead = lead
        self.graph = Graph(metadata={"dt": 1.0})
        self.scope: Optional[str] = None  # dotted path of the module being walked

    # ------------------------------------------------------------ basics
    def fail(self, where: str, why: str) -> UnsupportedOpError:
        return UnsupportedOpError(f"model '{self.origin}': {where}: {why}")

    def emit(self, base: str, op: Op, inputs: Sequence[_Tensor], where: str,
             source: Optional[str] = None, extra: Optional[Dict[str, Any]] = None) -> _Tensor:
        """Add one node named after ``base``; ``source`` defaults to the current
        module scope (TorchScript) or ``base`` (the fx node name)."""
        name = self.graph.unique_name(base or op.op_name.lower())
        ann = {"source": source or self.scope or base}
        ann.update(extra or {})
        try:
            self.graph.add(name, op, [t.name for t in inputs], ann)
            shape = op.infer_shape([t.shape for t in inputs])
        except IRValidationError as e:
            raise BadInputError(f"model '{self.origin}': {where}: {e}") from None
        except OpCheckError as e:
            ins = ", ".join(str(t.shape) for t in inputs)
            raise BadInputError(
                f"model '{self.origin}': {where} ({op.op_name}) with per-sample input {ins}: {e} "
                "(is the input shape right?)") from None
        return _Tensor(name, shape)

    def input(self, shape: Shape) -> _Tensor:
        node = self.graph.add("input", Input(shape=tuple(shape)), (), {"source": "input"})
        return _Tensor(node.name, tuple(shape))

    def output(self, value: Any, where: str) -> None:
        tensors: List[_Tensor] = []

        def collect(v: Any) -> None:
            if isinstance(v, _Tensor):
                tensors.append(v)
            elif isinstance(v, (list, tuple)):
                for x in v:
                    collect(x)
            elif isinstance(v, dict):
                for x in v.values():
                    collect(x)

        collect(value)
        if not tensors:
            raise self.fail(where, "the model returns no tensor computed from its input")
        for t in tensors:
            name = self.graph.unique_name("output")
            self.graph.add(name, Output(), [t.name], {"source": "output"})

    def tensor(self, v: Any, where: str, what: str = "input") -> _Tensor:
        if not isinstance(v, _Tensor):
            raise self.fail(where, f"{what} is a constant ({type(v).__name__}), not computed "
                                   "from the model input")
        return v

    def axis(self, x: _Tensor, dim: Any, where: str, what: str = "dim") -> int:
        """Per-sample axis of torch ``dim``; the batch (and time) axes are refused."""
        full = len(x.shape) + self.lead
        if not isinstance(dim, (int, np.integer)):
            raise self.fail(where, f"{what}={dim!r} is not a constant integer")
        d = int(dim) + full if int(dim) < 0 else int(dim)
        if not 0 <= d < full:
            raise self.fail(where, f"{what}={dim} out of range for a {full}-D tensor")
        if d < self.lead:
            axes = "batch axis 0" if self.lead == 1 else "batch/time axes 0, 1"
            raise self.fail(where, f"{what}={dim} acts on the {axes}, which must stay in place")
        return d - self.lead

    def shape_of(self, x: _Tensor) -> Tuple[Any, ...]:
        return tuple(_Lead(i) for i in range(self.lead)) + x.shape

    # -------------------------------------------------------- leaves
    def leaf(self, module: Any, leaf: Leaf, path: str, x: Any, where: str) -> _Tensor:
        x = self.tensor(x, where)
        type_name = class_path(module).rpartition(".")[2]
        ctx = LeafContext(path or type_name, type_name, x.shape, self.lead, self.origin)
        emitted = leaf.translate(module, ctx)  # AttributeError: let the caller fall back
        base = (path or type_name).replace(".", "_")
        for op, extra in emitted:
            x = self.emit(base, op, [x], where, path or type_name, extra)
        return x

    # ------------------------------------------------------ arithmetic
    def add(self, a: Any, b: Any, where: str, base: str, alpha: Any = 1) -> Any:
        a, b, alpha = _scalar(a), _scalar(b), _scalar(alpha)
        if _is_number(a) and _is_number(b) and _is_number(alpha):
            return a + alpha * b
        if isinstance(a, _Lead) or isinstance(b, _Lead):
            raise self.fail(where, "arithmetic on the batch/time size is not supported")
        if isinstance(a, _Tensor) and isinstance(b, _Tensor):
            if alpha != 1:
                b = self.scale(b, alpha, where, base + "_alpha")
            return self.emit(base, Add(), [a, b], where)
        raise self.fail(where, "adding a constant to a tensor is not supported (only the sum "
                               "of two computed tensors)")

    def sub(self, a: Any, b: Any, where: str) -> Any:
        a, b = _scalar(a), _scalar(b)
        if _is_number(a) and _is_number(b):
            return a - b
        raise self.fail(where, "subtraction of tensors is not supported")

    def mul(self, a: Any, b: Any, where: str, base: str) -> Any:
        a, b = _scalar(a), _scalar(b)
        if _is_number(a) and _is_number(b):
            return a * b
        if isinstance(a, _Lead) or isinstance(b, _Lead):
            raise self.fail(where, "arithmetic on the batch/time size is not supported")
        if isinstance(a, _Tensor) and isinstance(b, _Tensor):
            raise self.fail(where, "the elementwise product of two computed tensors is not "
                                   "supported")
        if isinstance(b, _Tensor):
            a, b = b, a
        if isinstance(a, _Tensor):
            return self.scale(a, b, where, base)
        raise self.fail(where, f"cannot multiply {type(a).__name__} by {type(b).__name__}")

    def div(self, a: Any, b: Any, where: str, base: str, floor: bool = False) -> Any:
        a, b = _scalar(a), _scalar(b)
        if _is_number(a) and _is_number(b):
            return a // b if floor else a / b
        if isinstance(a, _Lead) or isinstance(b, _Lead):
            raise self.fail(where, "arithmetic on the batch/time size is not supported")
        if isinstance(a, _Tensor) and not isinstance(b, _Tensor) and not floor:
            c = as_array(b)
            return self.scale(a, 1.0 / c, where, base)
        raise self.fail(where, "only division of a tensor by a constant is supported")

    def scale(self, x: _Tensor, c: Any, where: str, base: str) -> _Tensor:
        arr = as_array(c)
        if arr.ndim > len(x.shape):
            extra = arr.ndim - len(x.shape)
            if any(s != 1 for s in arr.shape[:extra]):
                raise self.fail(where, f"constant of shape {arr.shape} scales the batch axis")
            arr = arr.reshape(arr.shape[extra:])
        return self.emit(base, Scale(arr), [x], where)

    def matmul(self, a: Any, b: Any, where: str, base: str) -> _Tensor:
        if isinstance(a, _Tensor) and isinstance(b, _Tensor):
            return self.emit(base, MatMul(), [a, b], where)
        if isinstance(a, _Tensor) and b is not None and getattr(b, "ndim", 0) == 2:
            return self.emit(base, Linear(as_array(b).T.copy()), [a], where)
        raise self.fail(where, "matmul needs two computed tensors, or a tensor times a 2-D "
                               "constant")

    # -------------------------------------------------- layers as functions
    def relu(self, x: Any, where: str, base: str) -> _Tensor:
        return self.emit(base, ReLU(), [self.tensor(x, where)], where)

    def softmax(self, x: Any, dim: Any, where: str, base: str) -> _Tensor:
        x = self.tensor(x, where)
        return self.emit(base, Softmax(axis=self.axis(x, dim, where)), [x], where)

    def linear(self, x: Any, w: Any, b: Any, where: str, base: str) -> _Tensor:
        x = self.tensor(x, where)
        if isinstance(w, _Tensor) or isinstance(b, _Tensor):
            raise self.fail(where, "linear with computed (non-constant) weights")
        op = Affine(as_array(w), as_array(b)) if b is not None else Linear(as_array(w))
        return self.emit(base, op, [x], where)

    def conv(self, x: Any, w: Any, b: Any, stride: Any, padding: Any, dilation: Any,
             groups: Any, where: str, base: str) -> _Tensor:
        x = self.tensor(x, where)
        if isinstance(w, _Tensor) or isinstance(b, _Tensor):
            raise self.fail(where, "convolution with computed (non-constant) weights")
        w = as_array(w)
        nd = w.ndim - 2
        if nd not in (1, 2):
            raise self.fail(where, f"{nd}-D convolution is not supported (1-D and 2-D only)")
        if isinstance(padding, str):
            if padding != "valid":
                raise self.fail(where, f"padding={padding!r} (only explicit or 'valid')")
            padding = 0
        cls = Conv2d if nd == 2 else Conv1d
        op = cls(w, None if b is None else as_array(b), stride=stride, padding=padding,
                 dilation=dilation, groups=int(groups))
        return self.emit(base, op, [x], where)

    def pool(self, kind: str, x: Any, kernel: Any, stride: Any, padding: Any, where: str,
             base: str) -> _Tensor:
        x = self.tensor(x, where)
        stride = stride if stride not in (None, [], ()) else 0
        cls = MaxPool2d if kind == "max" else AvgPool2d
        return self.emit(base, cls(kernel, stride, padding), [x], where)

    def batch_norm(self, x: Any, w: Any, b: Any, mean: Any, var: Any, eps: Any, where: str,
                   base: str) -> _Tensor:
        x = self.tensor(x, where)
        if mean is None or var is None:
            raise self.fail(where, "batch norm without running statistics")
        n = int(as_array(mean).size)
        w = as_array(w) if w is not None else np.ones(n, np.float32)
        b = as_array(b) if b is not None else np.zeros(n, np.float32)
        axis = self.axis(x, 1, where, "channel axis")
        return self.emit(base, BatchNorm(mean, var, w, b, eps=float(eps), axis=axis), [x], where)

    def layer_norm(self, x: Any, shape: Any, w: Any, b: Any, eps: Any, where: str,
                   base: str) -> _Tensor:
        x = self.tensor(x, where)
        shape = tuple(int(s) for s in shape)
        w = as_array(w) if w is not None else np.ones(shape, np.float32)
        b = as_array(b) if b is not None else np.zeros(shape, np.float32)
        return self.emit(base, LayerNorm(w, b, eps=float(eps)), [x], where)

    def concat(self, xs: Sequence[Any], dim: Any, where: str, base: str) -> _Tensor:
        ts = [self.tensor(t, where) for t in xs]
        if len(ts) == 1:
            return ts[0]
        return self.emit(base, Concat(axis=self.axis(ts[0], dim, where)), ts, where)

    # ----------------------------------------------------------- shapes
    def flatten(self, x: Any, start: Any, end: Any, where: str, base: str) -> _Tensor:
        x = self.tensor(x, where)
        a = self.axis(x, start, where, "start_dim")
        b = self.axis(x, end, where, "end_dim")
        if a == b:
            return x
        return self.emit(base, Flatten(start_dim=a, end_dim=b), [x], where)

    def reshape(self, x: Any, target: Sequence[Any], where: str, base: str) -> _Tensor:
        x = self.tensor(x, where)
        target = [_scalar(t) for t in target]
        lead = self.lead
        head, rest = target[:lead], target[lead:]
        ok_head = all(isinstance(t, _Lead) and t.index == i for i, t in enumerate(head))
        numel = _prod(x.shape)
        if not ok_head and lead == 1 and head == [-1] and all(
                isinstance(t, (int, np.integer)) and t > 0 for t in rest) and _prod(rest) == numel:
            ok_head = True  # view(-1, *per_sample): the batch size is inferred
        if not ok_head or len(target) < lead or any(isinstance(t, _Lead) for t in rest):
            shown = tuple("B" if isinstance(t, _Lead) and t.index == 0 else
                          "T" if isinstance(t, _Lead) else t for t in target)
            axes = "batch axis 0" if lead == 1 else "batch/time axes 0, 1"
            raise self.fail(where, f"reshape to {shown} does not keep the {axes} in place "
                                   "(write e.g. x.reshape(x.shape[0], ...))")
        if any(not isinstance(t, (int, np.integer)) for t in rest):
            raise self.fail(where, f"reshape to non-constant sizes {rest}")
        rest = [int(t) for t in rest]
        if rest.count(-1) == 1:
            known = _prod([t for t in rest if t != -1])
            if known > 0 and numel % known == 0:
                rest[rest.index(-1)] = numel // known
        if tuple(rest) == x.shape:
            return x
        return self.emit(base, Reshape(shape=tuple(rest)), [x], where)

    def permute(self, x: Any, dims: Sequence[Any], where: str, base: str) -> _Tensor:
        x = self.tensor(x, where)
        full = len(x.shape) + self.lead
        if len(dims) != full:
            raise self.fail(where, f"permute{tuple(dims)} of a {full}-D tensor")
        norm = [int(d) + full if int(d) < 0 else int(d) for d in dims]
        if norm[:self.lead] != list(range(self.lead)):
            raise self.fail(where, f"permute{tuple(dims)} moves the batch axis 0")
        perm = tuple(d - self.lead for d in norm[self.lead:])
        if perm == tuple(range(len(perm))):
            return x
        return self.emit(base, Transpose(perm=perm), [x], where)

    def transpose(self, x: Any, d0: Any, d1: Any, where: str, base: str) -> _Tensor:
        x = self.tensor(x, where)
        a, b = self.axis(x, d0, where, "dim0"), self.axis(x, d1, where, "dim1")
        if a == b:
            return x
        perm = list(range(len(x.shape)))
        perm[a], perm[b] = perm[b], perm[a]
        return self.emit(base, Transpose(perm=tuple(perm)), [x], where)

    def size(self, x: Any, dim: Any, where: str) -> Any:
        x = self.tensor(x, where)
        shape = self.shape_of(x)
        if dim is None:
            return shape
        d = int(dim)
        if not -len(shape) <= d < len(shape):
            raise self.fail(where, f"size({dim}) of a {len(shape)}-D tensor")
        return shape[d]

    def getitem(self, obj: Any, idx: Any, where: str) -> Any:
        if isinstance(obj, _Tensor):
            raise self.fail(where, "indexing or slicing a tensor is not supported")
        try:
            return obj[idx]
        except (TypeError, IndexError, KeyError) as e:
            raise self.fail(where, f"cannot index {type(obj).__name__} with {idx!r} ({e})")


def _check_shape(input_shape: Optional[Sequence[int]], origin: str) -> Tuple[int, ...]:
    try:
        shape = tuple(int(s) for s in input_shape)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        shape = ()
    if not shape or min(shape) < 1:
        raise BadInputError(
            f"model '{origin}': input shape {input_shape!r} must be positive integers per sample "
            "(no batch axis), e.g. 1,8,8")
    return shape


def _lead_axes(module: Any) -> int:
    """2 if the model holds a neuron working on (batch, time, ...) tensors, else 1."""
    for m in module.modules():
        leaf = leaf_of(m)
        if leaf is not None and leaf.time_major:
            return 2
    return 1


def _unsupported_module(origin: str, path: str, module: Any) -> UnsupportedOpError:
    type_name = class_path(module).rpartition(".")[2]
    return UnsupportedOpError(
        f"model '{origin}': module '{path}' of type {type_name} is not supported "
        f"(supported modules: {', '.join(supported_leaf_names())})")


# ======================================================================
# torch.fx
def _bind(args: Sequence[Any], kwargs: Dict[str, Any], params: Sequence[Tuple[str, Any]],
          where: str, builder: _Builder) -> List[Any]:
    """Positional + keyword arguments -> values in ``params`` order (name, default)."""
    out: List[Any] = []
    for i, (name, default) in enumerate(params):
        if i < len(args):
            out.append(args[i])
        elif name in kwargs:
            out.append(kwargs[name])
        elif default is _REQUIRED:
            raise builder.fail(where, f"missing argument {name!r}")
        else:
            out.append(default)
    return out


_REQUIRED = object()


def _varargs(args: Sequence[Any]) -> List[Any]:
    """``x.view(2, 3)`` and ``x.view((2, 3))`` alike."""
    if len(args) == 1 and isinstance(args[0], (list, tuple)):
        return list(args[0])
    return list(args)


def _fx_handlers() -> Tuple[Dict[Any, str], Dict[str, str]]:
    import torch
    import torch.nn.functional as F

    functions: Dict[Any, str] = {
        torch.flatten: "flatten", operator.add: "add", operator.iadd: "add", torch.add: "add",
        operator.sub: "sub", torch.sub: "sub", operator.mul: "mul", operator.imul: "mul",
        torch.mul: "mul", operator.truediv: "div", torch.div: "div",
        operator.floordiv: "floordiv", operator.matmul: "matmul", torch.matmul: "matmul",
        torch.bmm: "matmul", F.relu: "relu", torch.relu: "relu", F.softmax: "softmax",
        torch.softmax: "softmax", torch.reshape: "reshape_fn", torch.permute: "permute_fn",
        torch.transpose: "transpose", operator.getitem: "getitem", getattr: "getattr",
        torch.cat: "cat", F.linear: "linear", F.dropout: "identity", F.max_pool2d: "max_pool2d",
        F.avg_pool2d: "avg_pool2d",
    }
    methods = {
        "flatten": "flatten", "add": "add", "add_": "add", "mul": "mul", "mul_": "mul",
        "div": "div", "sub": "sub", "matmul": "matmul", "relu": "relu", "relu_": "relu",
        "softmax": "softmax", "view": "reshape", "reshape": "reshape", "permute": "permute",
        "transpose": "transpose", "contiguous": "identity", "size": "size", "dim": "dim",
    }
    return functions, methods


class _TraceFailure(Exception):
    def __init__(self, path: str, type_name: str, error: BaseException) -> None:
        super().__init__(path)
        self.path, self.type_name, self.error = path, type_name, error


def _make_tracer() -> Any:
    import torch.fx

    class NmtcTracer(torch.fx.Tracer):
        """Does not trace into registered leaves nor into torch.nn / sinabs modules."""

        def is_leaf_module(self, m: Any, qualname: str) -> bool:
            if leaf_of(m) is not None:
                return True
            return is_vendor_module(class_path(m))

        def call_module(self, m: Any, forward: Callable, args: Any, kwargs: Any) -> Any:
            try:
                return super().call_module(m, forward, args, kwargs)
            except _TraceFailure:
                raise
            except Exception as e:
                try:
                    path = self.path_of_module(m)
                except Exception:
                    path = "?"
                raise _TraceFailure(path, type(m).__name__, e) from None

    return NmtcTracer()


def graph_from_module(module: Any, input_shape: Sequence[int], *, origin: str = "model") -> Graph:
    """Translate a Python ``nn.Module`` into an IR graph by torch.fx symbolic tracing.

    ``input_shape`` is per sample (e.g. ``(1, 8, 8)``); for a model with
    neurons on (batch, time, ...) tensors it excludes the time axis too.
    ``origin`` names the model in error messages (the file it came from).
    """
    shape = _check_shape(input_shape, origin)
    tracer = _make_tracer()
    try:
        fx_graph = tracer.trace(module)
    except _TraceFailure as e:
        raise UnsupportedOpError(
            f"model '{origin}': module '{e.path}' of type {e.type_name} cannot be traced by "
            f"torch.fx ({type(e.error).__name__}: {_first_line(e.error)})") from None
    except Exception as e:
        raise UnsupportedOpError(
            f"model '{origin}': torch.fx cannot trace the model's forward "
            f"({type(e).__name__}: {_first_line(e)})") from None
    builder = _Builder(origin, _lead_axes(module))
    _FxWalker(builder, module).run(fx_graph, shape)
    graph = builder.graph.infer_shapes()
    graph.metadata["source"] = {"path": origin, "format": "module"}
    return graph


class _FxWalker:
    def __init__(self, builder: _Builder, root: Any) -> None:
        self.b = builder
        self.root = root
        self.functions, self.methods = _fx_handlers()

    def run(self, fx_graph: Any, shape: Tuple[int, ...]) -> None:
        import torch.fx

        env: Dict[Any, Any] = {}

        def value(a: Any) -> Any:
            return torch.fx.node.map_arg(a, lambda n: env[n])

        for node in fx_graph.nodes:
            try:
                self._node(node, env, value, shape)
            except NmtcError:
                raise
            except Exception as e:  # a torch or numpy error on an unusual argument
                raise UnsupportedOpError(
                    f"model '{self.b.origin}': node '{node.name}' ({node.op} {node.target}): "
                    f"{type(e).__name__}: {_first_line(e)}") from None

    def _node(self, node: Any, env: Dict[Any, Any], value: Callable[[Any], Any],
              shape: Tuple[int, ...]) -> None:
        where = f"node '{node.name}'"
        if node.op == "placeholder":
            if not self.b.graph.inputs():
                env[node] = self.b.input(shape)
            elif node.args:  # a defaulted extra argument: its default value
                env[node] = node.args[0]
            else:
                raise self.b.fail(where, "the model takes more than one input; only one "
                                         "is supported")
        elif node.op == "get_attr":
            env[node] = self._attr(node.target)
        elif node.op == "call_module":
            env[node] = self._module(node, value(node.args), value(node.kwargs))
        elif node.op in ("call_function", "call_method"):
            env[node] = self._function(node, value(node.args), value(node.kwargs))
        elif node.op == "output":
            self.b.output(value(node.args[0]), "output")

    def _attr(self, target: str) -> Any:
        obj = self.root
        for part in target.split("."):
            obj = getattr(obj, part)
        return obj.detach() if hasattr(obj, "detach") else obj

    def _module(self, node: Any, args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Any:
        path = str(node.target)
        sub = self.root.get_submodule(path)
        leaf = leaf_of(sub)
        if leaf is None:
            raise _unsupported_module(self.b.origin, path, sub)
        if len(args) != 1 or kwargs:
            raise self.b.fail(f"module '{path}'", "called with more than one argument")
        return self.b.leaf(sub, leaf, path, args[0], f"module '{path}'")

    def _function(self, node: Any, args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Any:
        if node.op == "call_method":
            kind = self.methods.get(node.target)
            label = f"method .{node.target}()"
        else:
            kind = self.functions.get(node.target)
            label = f"function {_callable_name(node.target)}"
        where = f"{label} (node '{node.name}')"
        if kind is None:
            supported = sorted({_callable_name(f) for f in self.functions}
                               | {f".{m}()" for m in self.methods})
            raise UnsupportedOpError(
                f"model '{self.b.origin}': {where} is not supported (supported: "
                f"{', '.join(supported)})")
        b, base = self.b, node.name
        bind = lambda params: _bind(args, kwargs, params, where, b)  # noqa: E731
        R = _REQUIRED
        if kind == "identity":
            return b.tensor(args[0], where) if isinstance(args[0], _Tensor) else args[0]
        if kind == "flatten":
            x, s, e = bind([("input", R), ("start_dim", 0), ("end_dim", -1)])
            return b.flatten(x, s, e, where, base)
        if kind == "add":
            x, y, alpha = bind([("input", R), ("other", R), ("alpha", 1)])
            return b.add(x, y, where, base, alpha)
        if kind == "sub":
            x, y = bind([("input", R), ("other", R)])
            return b.sub(x, y, where)
        if kind == "mul":
            x, y = bind([("input", R), ("other", R)])
            return b.mul(x, y, where, base)
        if kind == "div":
            x, y, mode = bind([("input", R), ("other", R), ("rounding_mode", None)])
            if mode is not None:
                raise b.fail(where, f"rounding_mode={mode!r}")
            return b.div(x, y, where, base)
        if kind == "floordiv":
            x, y = bind([("input", R), ("other", R)])
            return b.div(x, y, where, base, floor=True)
        if kind == "matmul":
            x, y = bind([("input", R), ("other", R)])
            return b.matmul(x, y, where, base)
        if kind == "relu":
            return b.relu(bind([("input", R)])[0], where, base)
        if kind == "softmax":
            x, dim = bind([("input", R), ("dim", None)])
            if dim is None:
                raise b.fail(where, "softmax without dim")
            return b.softmax(x, dim, where, base)
        if kind == "reshape":
            return b.reshape(args[0], _varargs(args[1:]) or list(kwargs.get("shape", ())),
                             where, base)
        if kind == "reshape_fn":
            x, target = bind([("input", R), ("shape", R)])
            return b.reshape(x, list(target), where, base)
        if kind == "permute":
            return b.permute(args[0], _varargs(args[1:]) or list(kwargs.get("dims", ())),
                             where, base)
        if kind == "permute_fn":
            x, dims = bind([("input", R), ("dims", R)])
            return b.permute(x, list(dims), where, base)
        if kind == "transpose":
            x, d0, d1 = bind([("input", R), ("dim0", R), ("dim1", R)])
            return b.transpose(x, d0, d1, where, base)
        if kind == "size":
            x, dim = bind([("input", R), ("dim", None)])
            return b.size(x, dim, where)
        if kind == "dim":
            return len(b.shape_of(b.tensor(args[0], where)))
        if kind == "getattr":
            obj, attr = args[0], args[1]
            if isinstance(obj, _Tensor) and attr == "shape":
                return b.shape_of(obj)
            if isinstance(obj, _Tensor) and attr == "ndim":
                return len(b.shape_of(obj))
            raise b.fail(where, f"attribute .{attr} of a tensor is not supported")
        if kind == "getitem":
            return b.getitem(args[0], args[1], where)
        if kind == "cat":
            xs, dim = bind([("tensors", R), ("dim", 0)])
            return b.concat(list(xs), dim, where, base)
        if kind == "linear":
            x, w, bias = bind([("input", R), ("weight", R), ("bias", None)])
            return b.linear(x, w, bias, where, base)
        if kind in ("max_pool2d", "avg_pool2d"):
            x, k, s, p = bind([("input", R), ("kernel_size", R), ("stride", None),
                               ("padding", 0)])
            extra = dict(zip(("dilation", "ceil_mode"), args[4:6])) if kind == "max_pool2d" \
                else dict(zip(("ceil_mode", "count_include_pad", "divisor_override"), args[4:7]))
            extra.update({k2: v for k2, v in kwargs.items() if k2 not in
                          ("input", "kernel_size", "stride", "padding")})
            _check_pool_extras(b, where, kind, extra, p)
            return b.pool(kind[:3], x, k, s, p, where, base)
        raise b.fail(where, "is not supported")  # pragma: no cover


def _check_pool_extras(b: _Builder, where: str, kind: str, extra: Dict[str, Any],
                       padding: Any) -> None:
    if extra.get("ceil_mode"):
        raise b.fail(where, "ceil_mode=True")
    dil = extra.get("dilation", 1)
    if any(int(d) != 1 for d in (dil if isinstance(dil, (list, tuple)) else [dil])):
        raise b.fail(where, f"dilation={dil}")
    if extra.get("return_indices"):
        raise b.fail(where, "return_indices=True")
    if extra.get("divisor_override"):
        raise b.fail(where, "divisor_override")
    pads = padding if isinstance(padding, (list, tuple)) else [padding]
    if extra.get("count_include_pad", True) is False and any(int(p) for p in pads):
        raise b.fail(where, "count_include_pad=False with padding")


def _callable_name(f: Any) -> str:
    """``operator.add``, ``F.relu``, ``torch.matmul``... for messages."""
    import torch
    import torch.nn.functional as F

    name = getattr(f, "__name__", repr(f))
    mod = getattr(f, "__module__", None) or ""
    if mod in ("_operator", "operator"):
        return f"operator.{name}"
    if getattr(F, name, None) is f:
        return f"F.{name}"
    if getattr(torch, name, None) is f:
        return f"torch.{name}"
    if mod == "builtins":
        return name
    return f"{mod}.{name}" if mod else name


# ======================================================================
# TorchScript
class _ModRef:
    """A (sub)module of a scripted model and its dotted path."""

    __slots__ = ("module", "path")

    def __init__(self, module: Any, path: str) -> None:
        self.module, self.path = module, path


class _ScriptFn:
    """A TorchScript function constant, e.g. torch.nn.functional.relu."""

    __slots__ = ("qualified",)

    def __init__(self, qualified: str) -> None:
        self.qualified = qualified


_PASS_THROUGH = {
    "prim::NumToTensor", "aten::Int", "aten::IntImplicit", "aten::Float", "aten::FloatImplicit",
    "aten::ScalarImplicit", "prim::unchecked_cast", "aten::detach", "aten::contiguous",
    "aten::dropout", "aten::dropout_", "aten::feature_dropout", "aten::alpha_dropout",
    "aten::clone", "prim::data",
}
_IGNORED = {"aten::warn", "prim::Print"}
_COMPARE: Dict[str, Callable[[Any, Any], Any]] = {
    "aten::__is__": lambda a, b: a is b or (a is None and b is None),
    "aten::__isnot__": lambda a, b: not (a is b or (a is None and b is None)),
    "aten::eq": operator.eq, "aten::ne": operator.ne, "aten::lt": operator.lt,
    "aten::gt": operator.gt, "aten::le": operator.le, "aten::ge": operator.ge,
    "aten::__and__": lambda a, b: a and b, "aten::__or__": lambda a, b: a or b,
}
_FUNCTIONS_BY_NAME = {
    "torch.nn.functional.relu": "relu", "torch.nn.functional.softmax": "softmax",
    "torch.nn.functional.dropout": "identity", "torch.nn.functional.dropout1d": "identity",
    "torch.nn.functional.dropout2d": "identity",
}


class _ScriptWalker:
    def __init__(self, builder: _Builder) -> None:
        self.b = builder
        self.depth = 0

    # ---------------------------------------------------------- frames
    def call_module(self, ref: _ModRef, method: str, args: List[Any]) -> List[Any]:
        """Translate a call of ``ref.method(*args)``: a leaf, or its graph."""
        where = f"module '{ref.path or '<top>'}'"
        if method == "forward":
            leaf = leaf_of(ref.module)
            if leaf is not None and len(args) == 1:
                try:
                    return [self.b.leaf(ref.module, leaf, ref.path, args[0], where)]
                except AttributeError as missing:
                    # a traced module keeps only tensors: walk its graph instead
                    return self._walk_traced_leaf(ref, args, missing)
            elif is_vendor_module(class_path(ref.module)):
                raise _unsupported_module(self.b.origin, ref.path or "<top>", ref.module)
        try:
            graph = ref.module._c._get_method(method).graph
        except (AttributeError, RuntimeError):
            raise self.b.fail(where, f"has no TorchScript method {method!r}") from None
        return self.run(graph, [ref] + list(args), ref.path)

    def _walk_traced_leaf(self, ref: _ModRef, args: List[Any], missing: Exception) -> List[Any]:
        try:
            graph = ref.module._c._get_method("forward").graph
            return self.run(graph, [ref] + list(args), ref.path)
        except UnsupportedOpError as e:
            inner = str(e).split(": ", 1)[-1]
            type_name = class_path(ref.module).rpartition(".")[2]
            raise UnsupportedOpError(
                f"model '{self.b.origin}': module '{ref.path or '<top>'}' of type {type_name} "
                f"was traced, so TorchScript kept no attribute to translate it from "
                f"({_first_line(missing)}), and its traced graph cannot be walked ({inner}); "
                "save an nmtc checkpoint or a pickled module instead") from None

    def run(self, graph: Any, args: List[Any], path: str) -> List[Any]:
        self.depth += 1
        if self.depth > 200:
            raise self.b.fail(f"module '{path}'", "recursion too deep")
        env: Dict[int, Any] = {}
        inputs = list(graph.inputs())
        if len(inputs) != len(args):
            raise self.b.fail(f"module '{path or '<top>'}'",
                              f"expects {len(inputs) - 1} argument(s), got {len(args) - 1}")
        for v, a in zip(inputs, args):
            env[v.unique()] = a
        self.block(graph.nodes(), env, path)
        out = [env[v.unique()] for v in graph.outputs()]
        self.depth -= 1
        return out

    def block(self, nodes: Any, env: Dict[int, Any], path: str) -> None:
        for node in nodes:
            try:
                self.node(node, env, path)
            except NmtcError:
                raise
            except Exception as e:  # a torch or numpy error on an unusual argument
                where = f" in module '{path}'" if path else ""
                raise UnsupportedOpError(
                    f"model '{self.b.origin}': op {node.kind()}{where}: "
                    f"{type(e).__name__}: {_first_line(e)}") from None

    # ----------------------------------------------------------- nodes
    def node(self, node: Any, env: Dict[int, Any], path: str) -> None:
        kind = node.kind()
        outs = list(node.outputs())
        ins = [env.get(v.unique()) for v in node.inputs()]
        short = kind.split("::", 1)[-1].strip("_")
        # ops inside a submodule (a traced leaf, a user block) are named after it
        base = path.replace(".", "_") if path else short
        self.b.scope = path or None
        where = f"op {kind} in module '{path}'" if path else f"op {kind}"
        b = self.b

        def set1(value: Any) -> None:
            env[outs[0].unique()] = value

        if kind == "prim::Constant":
            t = outs[0].type()
            if t.kind() == "FunctionType":
                qualified = t.annotation_str
                set1(_ScriptFn(qualified[len("__torch__."):] if qualified.startswith("__torch__.")
                               else qualified))
            else:
                set1(outs[0].toIValue())
        elif kind in ("prim::ListConstruct", "prim::TupleConstruct"):
            set1(list(ins) if kind == "prim::ListConstruct" else tuple(ins))
        elif kind in ("prim::ListUnpack", "prim::TupleUnpack"):
            seq = ins[0]
            if isinstance(seq, _Tensor) or len(seq) != len(outs):
                raise b.fail(where, f"cannot unpack {seq!r} into {len(outs)} values")
            for o, v in zip(outs, seq):
                env[o.unique()] = v
        elif kind == "prim::TupleIndex":
            set1(b.getitem(ins[0], ins[1], where))
        elif kind == "prim::GetAttr":
            set1(self.get_attr(ins[0], node.s("name"), where))
        elif kind == "prim::CallMethod":
            ref = ins[0]
            if not isinstance(ref, _ModRef):
                raise b.fail(where, "method call on a non-module value")
            results = self.call_module(ref, node.s("name"), ins[1:])
            for o, v in zip(outs, results):
                env[o.unique()] = v
        elif kind == "prim::CallFunction":
            results = self.call_function(ins[0], ins[1:], path)
            for o, v in zip(outs, results):
                env[o.unique()] = v
        elif kind == "prim::If":
            cond = ins[0]
            if not isinstance(cond, (bool, int)) or isinstance(cond, _Lead):
                raise b.fail(where, "a branch that depends on computed values is not supported")
            blk = list(node.blocks())[0 if cond else 1]
            self.block(blk.nodes(), env, path)
            for o, v in zip(outs, blk.outputs()):
                env[o.unique()] = env.get(v.unique())
        elif kind == "prim::Loop":
            raise b.fail(where, "loops are not supported")
        elif kind == "prim::RaiseException":
            raise BadInputError(f"model '{b.origin}': {where}: the model raises "
                                f"{ins[0]!r} for this input (is the input shape right?)")
        elif kind == "prim::Uninitialized":
            set1(None)
        elif kind in _PASS_THROUGH:
            set1(ins[0])
        elif kind in _IGNORED:
            for o in outs:
                env[o.unique()] = None
        elif kind in _COMPARE:
            if any(isinstance(v, _Tensor) for v in ins[:2]):
                raise b.fail(where, "comparisons of tensors are not supported")
            if any(isinstance(v, _Lead) for v in ins[:2]):
                raise b.fail(where, "a branch on the batch/time size is not supported")
            set1(_COMPARE[kind](ins[0], ins[1]))
        elif kind == "aten::__not__":
            set1(not ins[0])
        elif kind in ("prim::dtype", "prim::device", "prim::layout", "aten::format"):
            set1(None)
        elif kind == "aten::size":
            set1(b.size(ins[0], ins[1] if len(ins) > 1 else None, where))
        elif kind == "aten::dim":
            set1(len(b.shape_of(b.tensor(ins[0], where))))
        elif kind == "aten::len":
            set1(len(ins[0]))
        elif kind == "aten::__getitem__":
            set1(b.getitem(ins[0], ins[1], where))
        else:
            results = self.aten(kind, ins, where, base)
            set1(results)

    def get_attr(self, obj: Any, name: str, where: str) -> Any:
        if not isinstance(obj, _ModRef):
            raise self.b.fail(where, f"attribute {name!r} of a non-module value")
        import torch

        value = getattr(obj.module, name)
        if isinstance(value, torch.jit.ScriptModule):
            return _ModRef(value, f"{obj.path}.{name}" if obj.path else name)
        if isinstance(value, torch.Tensor):
            return value.detach()
        return value

    def call_function(self, fn: Any, args: List[Any], path: str) -> List[Any]:
        if not isinstance(fn, _ScriptFn):
            raise self.b.fail(f"module '{path}'", "call of a non-function value")
        name = fn.qualified.rpartition(".")[2]
        base = f"{path.replace('.', '_')}_{name}" if path else name
        where = f"function {fn.qualified}" + (f" in module '{path}'" if path else "")
        kind = _FUNCTIONS_BY_NAME.get(fn.qualified)
        if kind == "identity":
            return [args[0]]
        if kind == "relu":
            return [self.b.relu(args[0], where, base)]
        if kind == "softmax":
            return [self.b.softmax(args[0], args[1], where, base)]
        graph = _script_function_graph(fn.qualified)
        if graph is None:
            raise UnsupportedOpError(f"model '{self.b.origin}': {where} is not supported")
        return self.run(graph, list(args), path)

    # ----------------------------------------------------------- aten
    def aten(self, kind: str, a: List[Any], where: str, base: str) -> Any:
        b = self.b
        if kind in ("aten::add", "aten::add_"):
            return b.add(a[0], a[1], where, base, a[2] if len(a) > 2 else 1)
        if kind in ("aten::sub", "aten::sub_"):
            return b.sub(a[0], a[1], where)
        if kind in ("aten::mul", "aten::mul_"):
            return b.mul(a[0], a[1], where, base)
        if kind in ("aten::div", "aten::div_"):
            if len(a) > 2 and a[2] is not None:
                raise b.fail(where, f"rounding_mode={a[2]!r}")
            return b.div(a[0], a[1], where, base)
        if kind in ("aten::floordiv", "aten::floor_divide"):
            return b.div(a[0], a[1], where, base, floor=True)
        if kind == "aten::neg" and _is_number(a[0]):
            return -a[0]
        if kind in ("aten::matmul", "aten::bmm"):
            return b.matmul(a[0], a[1], where, base)
        if kind in ("aten::relu", "aten::relu_"):
            return b.relu(a[0], where, base)
        if kind == "aten::softmax":
            return b.softmax(a[0], a[1], where, base)
        if kind == "aten::flatten":
            return b.flatten(a[0], a[1], a[2], where, base)
        if kind in ("aten::view", "aten::reshape"):
            return b.reshape(a[0], list(a[1]), where, base)
        if kind == "aten::permute":
            return b.permute(a[0], list(a[1]), where, base)
        if kind == "aten::transpose":
            return b.transpose(a[0], a[1], a[2], where, base)
        if kind == "aten::linear":
            return b.linear(a[0], a[1], a[2], where, base)
        if kind == "aten::_convolution":
            if a[6]:
                raise b.fail(where, "transposed convolution is not supported")
            return b.conv(a[0], a[1], a[2], a[3], a[4], a[5], a[8], where, base)
        if kind in ("aten::conv1d", "aten::conv2d"):
            return b.conv(a[0], a[1], a[2], a[3], a[4], a[5], a[6], where, base)
        if kind == "aten::max_pool2d":
            _check_pool_extras(b, where, "max_pool2d", {"dilation": a[4], "ceil_mode": a[5]},
                               a[3])
            return b.pool("max", a[0], a[1], a[2], a[3], where, base)
        if kind == "aten::avg_pool2d":
            _check_pool_extras(b, where, "avg_pool2d", {
                "ceil_mode": a[4], "count_include_pad": a[5], "divisor_override": a[6]}, a[3])
            return b.pool("avg", a[0], a[1], a[2], a[3], where, base)
        if kind == "aten::batch_norm":
            if a[5]:
                raise b.fail(where, "batch norm in training mode (call .eval() before saving)")
            return b.batch_norm(a[0], a[1], a[2], a[3], a[4], a[7], where, base)
        if kind == "aten::layer_norm":
            return b.layer_norm(a[0], a[1], a[2], a[3], a[4], where, base)
        if kind == "aten::cat":
            return b.concat(list(a[0]), a[1], where, base)
        raise UnsupportedOpError(f"model '{b.origin}': {where} is not supported")


def _script_function_graph(qualified: str) -> Any:
    """The TorchScript graph of an importable Python function, or None."""
    import torch

    mod_name, _, fn_name = qualified.rpartition(".")
    try:
        fn = getattr(importlib.import_module(mod_name), fn_name)
        return torch.jit.script(fn).graph
    except Exception:
        return None


def graph_from_torchscript(scripted: Any, input_shape: Optional[Sequence[int]],
                           origin: str = "model") -> Graph:
    """Translate a loaded TorchScript module into an IR graph, without inlining.

    A call into a submodule that is a registered leaf is translated from the
    submodule's attributes; other calls recurse into the callee's graph.
    ``input_shape`` is per sample; None is an error telling the user to pass
    ``--input-shape`` (:func:`load_torch_file` reads it from the archive).
    """
    if input_shape is None:
        raise BadInputError(
            f"{origin}: TorchScript model does not record its input shape; pass --input-shape "
            "(per sample, e.g. 1,8,8) or save it with nmtoolchain.frontends.torch_loader."
            "save_torchscript")
    shape = _check_shape(input_shape, origin)
    builder = _Builder(origin, _lead_axes(scripted))
    walker = _ScriptWalker(builder)
    x = builder.input(shape)
    try:
        results = walker.call_module(_ModRef(scripted, ""), "forward", [x])
    except NmtcError:
        raise
    except RecursionError:
        raise UnsupportedOpError(
            f"model '{origin}': the TorchScript graph nests too deeply") from None
    builder.output(results[0] if len(results) == 1 else tuple(results), "output")
    graph = builder.graph.infer_shapes()
    graph.metadata["source"] = {"path": origin, "format": "torchscript"}
    return graph


def save_torchscript(module: Any, path: Union[str, Path], input_shape: Sequence[int]) -> Path:
    """Script (or, failing that, trace) ``module`` and save it with ``nmtc.json``
    (``{"input_shape": [...]}``) inside the archive, atomically."""
    import torch

    path = Path(path)
    shape = _check_shape(input_shape, str(path))
    try:
        scripted = torch.jit.script(module)
    except Exception as script_error:
        example = torch.zeros((1,) * _lead_axes(module) + shape)
        try:
            with torch.no_grad():
                scripted = torch.jit.trace(module, example)
        except Exception as trace_error:
            raise UnsupportedOpError(
                f"{path}: cannot script ({_first_line(script_error)}) or trace "
                f"({_first_line(trace_error)}) the module") from None
        finally:
            for m in module.modules():  # tracing ran forward: drop any neuron state
                if hasattr(m, "reset_states"):
                    m.reset_states()
    extra = {EXTRA_FILE: json.dumps({"input_shape": list(shape)})}
    from nmtoolchain.fileio import atomic_output

    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_output(path) as tmp:
            torch.jit.save(scripted, str(tmp), _extra_files=extra)
    except RuntimeError as e:  # e.g. a traced call of a Python autograd Function
        raise UnsupportedOpError(f"{path}: cannot save as TorchScript ({_first_line(e)})") from None
    return path


# ======================================================================
# files
def _is_torchscript_archive(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError, EOFError):
        return False
    return any(n.endswith("/constants.pkl") or "/code/" in n for n in names)


def _shape_from_extra(raw: Any, path: Path) -> Optional[Tuple[int, ...]]:
    if not raw:
        return None
    try:
        data = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
        return tuple(int(s) for s in data["input_shape"])
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
        raise BadInputError(f"{path}: {EXTRA_FILE} in the archive is malformed ({e})") from None


def _refused_global(e: BaseException) -> bool:
    """weights_only loading failed because the pickle names a class or function."""
    text = str(e)
    return "Unsupported class" in text or "Unsupported global" in text


def load_torch_file(path: Union[str, Path], *, allow_pickle: bool = False,
                    input_shape: Optional[Sequence[int]] = None) -> Graph:
    """Load a TorchScript archive, an nmtc checkpoint, or (only with
    ``allow_pickle``) a pickled ``nn.Module`` into an IR graph.

    ``input_shape`` (per sample) overrides the shape recorded in the file; it
    is required for a pickled module and for TorchScript saved without
    :func:`save_torchscript`.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise BadInputError(f"{path}: file is empty")
    if _is_torchscript_archive(path):
        extra = {EXTRA_FILE: ""}
        try:
            scripted = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
        except Exception as e:
            raise BadInputError(
                f"{path}: truncated or corrupt TorchScript archive ({_first_line(e)})") from None
        shape = input_shape if input_shape is not None else _shape_from_extra(extra[EXTRA_FILE],
                                                                               path)
        graph = graph_from_torchscript(scripted, shape, str(path))
        graph.metadata["source"] = {"path": str(path), "format": "torchscript"}
        return graph

    fmt = "checkpoint"
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if not _refused_global(e):
            raise BadInputError(
                f"{path}: truncated or corrupt torch file ({_first_line(e)})") from None
        if not allow_pickle:
            raise PickleRefusedError(
                f"{path}: holds a pickled Python object; unpickling runs code from the file. "
                "Re-run with --allow-pickle if you trust it") from None
        obj = _unpickle(path)
        fmt = "pickle"
    except Exception as e:  # RuntimeError (zip), EOFError, OSError, ValueError
        raise BadInputError(
            f"{path}: truncated or corrupt torch file ({type(e).__name__}: {_first_line(e)})"
        ) from None

    from nmtoolchain.models import is_checkpoint, module_from_checkpoint

    if is_checkpoint(obj):
        module, recorded = module_from_checkpoint(obj, str(path))
        shape = input_shape if input_shape is not None else recorded
        fmt = "checkpoint"
    elif fmt == "pickle":
        if isinstance(obj, torch.jit.ScriptModule):
            graph = graph_from_torchscript(obj, input_shape, str(path))
            graph.metadata["source"] = {"path": str(path), "format": "pickle"}
            return graph
        if not isinstance(obj, torch.nn.Module):
            raise BadInputError(
                f"{path}: the pickled object is a {type(obj).__name__}, not a torch nn.Module")
        if input_shape is None:
            raise BadInputError(
                f"{path}: a pickled module does not record its input shape; pass --input-shape "
                "(per sample, e.g. 1,8,8)")
        module, shape = obj.eval(), input_shape
    elif isinstance(obj, dict):
        tensors = all(hasattr(v, "shape") for v in obj.values()) and obj
        what = (f"a bare state dict ({len(obj)} tensors)" if tensors
                else f"a dict (keys: {', '.join(map(str, list(obj)[:5]))}) but no 'architecture'")
        raise BadInputError(
            f"{path}: holds {what}; a state dict has no architecture, so the network cannot be "
            "rebuilt. Save an nmtc checkpoint with nmtoolchain.models.save_checkpoint(name, "
            "config, module, path, input_shape) or TorchScript with nmtoolchain.frontends."
            "torch_loader.save_torchscript(module, path, input_shape)")
    else:
        raise BadInputError(
            f"{path}: holds a {type(obj).__name__}, not a model (expected TorchScript, an nmtc "
            "checkpoint or a pickled nn.Module)")
    graph = graph_from_module(module, shape, origin=str(path))
    graph.metadata["source"] = {"path": str(path), "format": fmt}
    return graph


def _unpickle(path: Path) -> Any:
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except (AttributeError, ImportError) as e:
        raise BadInputError(
            f"{path}: the pickled object needs code that cannot be imported here "
            f"({_first_line(e)})") from None
    except Exception as e:
        raise BadInputError(
            f"{path}: cannot unpickle ({type(e).__name__}: {_first_line(e)})") from None


__all__ = ["load_torch_file", "graph_from_module", "graph_from_torchscript", "save_torchscript",
           "EXTRA_FILE"]
