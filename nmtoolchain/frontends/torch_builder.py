"""The IR builder shared by nmtc's two torch walkers (torch.fx and TorchScript).

Tensors are interpreted abstractly: each is an IR node with a per-sample
shape; shape arithmetic is evaluated with the batch (and time) size kept
symbolic, so a reshape that moves the batch axis is caught and named. Every
error is one line naming the model and the module or op at fault.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Generic, Iterator, List, Optional, Sequence, Tuple, TypeVar

import numpy as np

from nmtoolchain.errors import BadInputError, IRValidationError, UnsupportedOpError
from nmtoolchain.frontends.torch_leaves import (
    Leaf, LeafContext, class_path, leaf_of, supported_leaf_names)
from nmtoolchain.ir import (
    Add, Affine, AvgPool2d, BatchNorm, Bias, Concat, Conv1d, Conv2d, Flatten, GELU, Graph, Input, LayerNorm, Linear, MatMul, MaxPool2d, Mean, Op, Output, ReLU, Reshape, Roll, Scale, Shape, Slice, Softmax, Transpose)
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


def _infer_minus_one(sizes: List[int], numel: int) -> List[int]:
    """``sizes`` with a single -1 replaced by what makes ``numel`` elements (when it divides)."""
    if sizes.count(-1) == 1:
        known = _prod([t for t in sizes if t != -1])
        if known > 0 and numel % known == 0:
            sizes[sizes.index(-1)] = numel // known
    return sizes


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0].strip() if text else type(e).__name__


# ======================================================================
# op tables: one handler per torch op, shared shape by both walkers
H = TypeVar("H", bound=Callable[..., Any])


class OpTable(Generic[H]):
    """A table from a torch op's name to the one handler that translates it.

    As lava-dl netx turns each layer record into a block through one builder
    per layer type, each walker dispatches each op through one handler per
    name: adding an op is adding one handler under its name(s). A name absent
    from the table is for the walker to refuse, naming it.
    """

    def __init__(self, what: str) -> None:
        self.what = what  # e.g. "TorchScript op": for the duplicate-name error
        self._handlers: Dict[str, H] = {}

    def register(self, *names: str) -> Callable[[H], H]:
        """Decorator: ``handler`` translates every op in ``names``."""
        def add(handler: H) -> H:
            for name in names:
                if name in self._handlers:
                    raise ValueError(f"{self.what} {name!r} has two handlers")
                self._handlers[name] = handler
            return handler
        return add

    def get(self, name: str) -> Optional[H]:
        return self._handlers.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._handlers

    def __iter__(self) -> Iterator[str]:
        return iter(self._handlers)


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
        if isinstance(b, _Tensor):
            a, b = b, a
        if isinstance(a, _Tensor) and b is not None and not isinstance(b, _Tensor):
            return self._add_constant(a, b, alpha, where, base)
        raise self.fail(where, f"cannot add {type(a).__name__} and {type(b).__name__}")

    def _add_constant(self, x: _Tensor, c: Any, alpha: Any, where: str, base: str) -> _Tensor:
        """``x + alpha * c`` for a constant ``c``: a Bias node."""
        if isinstance(c, _Lead) or not _is_number(alpha):
            raise self.fail(where, "arithmetic on the batch/time size is not supported")
        arr = as_array(c)
        return self.bias(x, arr * np.float32(alpha) if alpha != 1 else arr, where, base)

    def bias(self, x: _Tensor, c: Any, where: str, base: str) -> _Tensor:
        """``x + constant``: a Bias node (e.g. MST's relative position bias)."""
        arr = as_array(c)
        if arr.ndim > len(x.shape):
            extra = arr.ndim - len(x.shape)
            if any(s != 1 for s in arr.shape[:extra]):
                raise self.fail(where, f"constant of shape {arr.shape} varies along the batch "
                                       "axis")
            arr = arr.reshape(arr.shape[extra:])
        return self.emit(base, Bias(arr), [x], where)

    def mean(self, x: Any, dim: Any, keepdim: Any, where: str, base: str) -> _Tensor:
        """``x.mean(dim)`` over one per-sample axis: a Mean node."""
        x = self.tensor(x, where)
        if isinstance(dim, (list, tuple)):
            if len(dim) != 1:
                raise self.fail(where, f"mean over several dims {tuple(dim)} (one only)")
            dim = dim[0]
        if dim is None:
            raise self.fail(where, "mean over all elements (give one dim)")
        if keepdim:
            raise self.fail(where, "mean with keepdim=True")
        return self.emit(base, Mean(axis=self.axis(x, dim, where)), [x], where)

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
        numel = _prod(x.shape)
        if not self._keeps_lead_axes(target, numel):
            shown = tuple("B" if isinstance(t, _Lead) and t.index == 0 else
                          "T" if isinstance(t, _Lead) else t for t in target)
            axes = "batch axis 0" if self.lead == 1 else "batch/time axes 0, 1"
            raise self.fail(where, f"reshape to {shown} does not keep the {axes} in place "
                                   "(write e.g. x.reshape(x.shape[0], ...))")
        rest = target[self.lead:]
        if any(not isinstance(t, (int, np.integer)) for t in rest):
            raise self.fail(where, f"reshape to non-constant sizes {rest}")
        rest = _infer_minus_one([int(t) for t in rest], numel)
        if tuple(rest) == x.shape:
            return x
        return self.emit(base, Reshape(shape=tuple(rest)), [x], where)

    def _keeps_lead_axes(self, target: List[Any], numel: int) -> bool:
        """Whether torch sizes ``target`` keep the batch (and time) axes in place:
        they start with those axes' symbolic sizes, or (batch only) with -1
        followed by constant sizes of the sample's ``numel`` elements."""
        head, rest = target[:self.lead], target[self.lead:]
        if len(target) < self.lead or any(isinstance(t, _Lead) for t in rest):
            return False
        if all(isinstance(t, _Lead) and t.index == i for i, t in enumerate(head)):
            return True
        return (self.lead == 1 and head == [-1]  # view(-1, *per_sample): batch inferred
                and all(isinstance(t, (int, np.integer)) and t > 0 for t in rest)
                and _prod(rest) == numel)

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

    def getitem(self, obj: Any, idx: Any, where: str, base: str = "index") -> Any:
        if isinstance(obj, _Tensor):
            return self.index(obj, idx, where, base)
        try:
            return obj[idx]
        except (TypeError, IndexError, KeyError) as e:
            raise self.fail(where, f"cannot index {type(obj).__name__} with {idx!r} ({e})")


    # ------------------------ index ops of windowed transformers (issue 18)
    # torch.roll, slicing with steps, select, chunk/split/unbind, (un)squeeze,
    # GELU; the walkers' constant folding (masked_fill masks) is in fold_constant.
    def roll(self, x: Any, shifts: Any, dims: Any, where: str, base: str) -> _Tensor:
        """``torch.roll(x, shifts, dims)`` over per-sample axes: a Roll node."""
        x = self.tensor(x, where)
        if dims is None or (isinstance(dims, (list, tuple)) and not dims):
            raise self.fail(where, "torch.roll without dims (a roll of the flattened tensor)")
        shifts = list(shifts) if isinstance(shifts, (list, tuple)) else [shifts]
        dims = list(dims) if isinstance(dims, (list, tuple)) else [dims]
        if len(shifts) != len(dims):
            raise self.fail(where, f"torch.roll with {len(shifts)} shifts for {len(dims)} dims")
        if any(not _is_number(_scalar(s)) for s in shifts):
            raise self.fail(where, f"torch.roll with non-constant shifts {shifts}")
        axes = [self.axis(x, d, where) for d in dims]
        pairs = [(int(_scalar(s)), a) for s, a in zip(shifts, axes)
                 if int(_scalar(s)) % x.shape[a]]
        if not pairs:
            return x
        return self.emit(base, Roll(shifts=tuple(p[0] for p in pairs),
                                    axes=tuple(p[1] for p in pairs)), [x], where)

    def slice_axis(self, x: Any, dim: Any, start: Any, stop: Any, step: Any, where: str,
                   base: str) -> _Tensor:
        """``x`` sliced ``start:stop:step`` on torch ``dim`` (Python slice rules)."""
        x = self.tensor(x, where)
        start, stop, step = _scalar(start), _scalar(stop), _scalar(step)
        step = 1 if step is None else step
        if any(v is not None and not _is_number(v) for v in (start, stop, step)):
            raise self.fail(where, f"slice {start}:{stop}:{step} with non-constant bounds")
        full = len(x.shape) + self.lead
        d = int(dim) + full if int(dim) < 0 else int(dim)
        if d < self.lead and 0 <= d:
            if (start in (None, 0) and step == 1
                    and (stop is None or int(stop) >= 2 ** 62)):
                return x  # ':' on the batch (time) axis
        a = self.axis(x, dim, where)
        if int(step) < 1:
            raise self.fail(where, f"slice step {step} (only positive steps)")
        n = x.shape[a]
        lo, hi, st = slice(None if start is None else int(start),
                           None if stop is None else min(int(stop), 2 ** 62),
                           int(step)).indices(n)
        hi = max(lo, hi)
        if (lo, hi, st) == (0, n, 1):
            return x
        if len(range(lo, hi, st)) == 0:
            raise self.fail(where, f"slice {start}:{stop}:{step} of axis size {n} is empty")
        hi = min(n, lo + (len(range(lo, hi, st)) - 1) * st + 1)
        return self.emit(base, Slice(axis=a, start=lo, stop=hi, step=st), [x], where)

    def select(self, x: Any, dim: Any, index: Any, where: str, base: str) -> _Tensor:
        """``x.select(dim, index)`` (``x[..., i]``): a one-wide Slice, then the axis dropped."""
        x = self.tensor(x, where)
        a = self.axis(x, dim, where)
        i = _scalar(index)
        if not _is_number(i):
            raise self.fail(where, f"index {index!r} is not a constant integer")
        n = x.shape[a]
        i = int(i) + n if int(i) < 0 else int(i)
        if not 0 <= i < n:
            raise self.fail(where, f"index {index} out of range for axis size {n}")
        y = x if n == 1 else self.emit(base, Slice(axis=a, start=i, stop=i + 1), [x], where)
        return self._reshape_to(y, x.shape[:a] + x.shape[a + 1:], where, base)

    def _reshape_to(self, x: _Tensor, shape: Tuple[int, ...], where: str, base: str) -> _Tensor:
        if tuple(shape) == x.shape:
            return x
        return self.emit(base, Reshape(shape=tuple(shape)), [x], where)

    def index(self, x: _Tensor, idx: Any, where: str, base: str) -> _Tensor:
        """``x[idx]`` for ints, slices, ``None`` and ``...`` (basic indexing only)."""
        items = list(idx) if isinstance(idx, tuple) else [idx]
        if any(isinstance(i, (_Tensor, list)) or hasattr(i, "detach") for i in items):
            raise self.fail(where, "indexing a tensor with a tensor or a list (advanced "
                                   "indexing) is not supported")
        full = len(x.shape) + self.lead
        if sum(i is Ellipsis for i in items) > 1:
            raise self.fail(where, "more than one '...' in an index")
        used = sum(1 for i in items if i is not None and i is not Ellipsis)
        if used > full:
            raise self.fail(where, f"{used} indices for a {full}-D tensor")
        if Ellipsis in items:
            k = items.index(Ellipsis)
            items = items[:k] + [slice(None)] * (full - used) + items[k + 1:]
        items += [slice(None)] * (full - sum(1 for i in items if i is not None))
        d = 0  # torch axis of the current tensor
        for item in items:
            if item is None:
                x = self.unsqueeze(x, d, where, base)
                d += 1
            elif isinstance(item, slice):
                x = self.slice_axis(x, d, item.start, item.stop, item.step, where, base)
                d += 1
            elif _is_number(_scalar(item)) and not isinstance(_scalar(item), bool):
                x = self.select(x, d, item, where, base)
            else:
                raise self.fail(where, f"index {item!r} is not supported")
        return x

    def split(self, x: Any, sizes: Any, dim: Any, where: str, base: str) -> List[_Tensor]:
        """``torch.split``: pieces of ``sizes`` (an int: equal pieces, the last shorter)."""
        x = self.tensor(x, where)
        a = self.axis(x, dim, where)
        n = x.shape[a]
        if isinstance(sizes, (list, tuple)):
            sizes = [int(_scalar(s)) for s in sizes]
            if sum(sizes) != n:
                raise self.fail(where, f"split sizes {sizes} do not add up to axis size {n}")
        else:
            size = int(_scalar(sizes))
            if size < 1:
                raise self.fail(where, f"split size {size}")
            sizes = [min(size, n - s) for s in range(0, n, size)]
        out, start = [], 0
        for size in sizes:
            out.append(self.slice_axis(x, dim, start, start + size, 1, where, base))
            start += size
        return out

    def chunk(self, x: Any, chunks: Any, dim: Any, where: str, base: str) -> List[_Tensor]:
        """``torch.chunk`` (e.g. a fused qkv output into q, k, v)."""
        x = self.tensor(x, where)
        n = x.shape[self.axis(x, dim, where)]
        k = int(_scalar(chunks))
        if k < 1:
            raise self.fail(where, f"chunk into {k} pieces")
        return self.split(x, -(-n // k), dim, where, base)

    def unbind(self, x: Any, dim: Any, where: str, base: str) -> List[_Tensor]:
        x = self.tensor(x, where)
        a = self.axis(x, dim, where)
        return [self.select(x, dim, i, where, base) for i in range(x.shape[a])]

    def unsqueeze(self, x: Any, dim: Any, where: str, base: str) -> _Tensor:
        x = self.tensor(x, where)
        full = len(x.shape) + self.lead + 1
        d = int(dim) + full if int(dim) < 0 else int(dim)
        if not self.lead <= d < full:
            raise self.fail(where, f"unsqueeze({dim}) before the batch axis")
        a = d - self.lead
        return self._reshape_to(x, x.shape[:a] + (1,) + x.shape[a:], where, base)

    def squeeze(self, x: Any, dim: Any, where: str, base: str) -> _Tensor:
        x = self.tensor(x, where)
        if dim is None:
            return self._reshape_to(x, tuple(s for s in x.shape if s != 1), where, base)
        dims = dim if isinstance(dim, (list, tuple)) else [dim]
        axes = {self.axis(x, d, where) for d in dims}
        shape = tuple(s for i, s in enumerate(x.shape) if not (i in axes and s == 1))
        return self._reshape_to(x, shape, where, base)

    def gelu(self, x: Any, approximate: Any, where: str, base: str) -> _Tensor:
        return self.emit(base, GELU(approximate=str(approximate or "none")),
                         [self.tensor(x, where)], where)


#: torch ops whose result is random: never evaluated at load time as a constant
_RANDOM_OPS = ("rand", "bernoulli", "normal", "multinomial", "dropout", "uniform", "poisson",
               "randperm", "exponential")


def is_dynamic(v: Any) -> bool:
    """Whether ``v`` (or anything inside it) depends on the model input or the batch size."""
    if isinstance(v, (_Tensor, _Lead)):
        return True
    if isinstance(v, (list, tuple)):
        return any(is_dynamic(x) for x in v)
    if isinstance(v, dict):
        return any(is_dynamic(x) for x in v.values())
    return False


def foldable(name: str, args: Sequence[Any], kwargs: Dict[str, Any]) -> bool:
    """Whether a torch op named ``name`` on these values can be evaluated at load
    time: no value depends on the input, one is a tensor, and the op is not random
    (e.g. Swin's shifted-window mask built with ``masked_fill`` in ``forward``)."""
    values = list(args) + list(kwargs.values())
    if is_dynamic(values) or not any(_holds_tensor(v) for v in values):
        return False
    return not any(r in name.lower() for r in _RANDOM_OPS)


def _holds_tensor(v: Any) -> bool:
    if hasattr(v, "detach"):
        return True
    if isinstance(v, (list, tuple)):
        return any(_holds_tensor(x) for x in v)
    return False

def _check_pool_extras(b: _Builder, where: str, kind: str, extra: Dict[str, Any],
                       padding: Any) -> None:
    """Refuse pooling options the IR's pools do not model (both walkers)."""
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
