"""Translate a Python ``nn.Module`` into the IR by torch.fx symbolic tracing.

Registered leaves (:mod:`nmtoolchain.frontends.torch_leaves`: torch.nn,
sinabs and nmtc modules) are kept opaque and translated from their
attributes; everything else is traced through. Each torch function or tensor
method of the traced graph goes through its one handler in :data:`_FX`
(registered under its import path, e.g. ``torch.add``, or ``.add`` for the
method); one outside the table is refused, naming it and the fx node.
"""
from __future__ import annotations

import importlib
from typing import Any, Callable, Dict, List, Sequence, Tuple

from nmtoolchain.errors import NmtcError, UnsupportedOpError
from nmtoolchain.frontends.torch_leaves import class_path, is_vendor_module, leaf_of
from nmtoolchain.ir import Graph
from nmtoolchain.frontends.torch_builder import (
    OpTable, _Builder, _Tensor, _check_pool_extras, _check_shape, _first_line, _lead_axes,
    _unsupported_module, foldable)


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


class _FxCall:
    """One ``call_function``/``call_method`` node being translated: its
    argument values, and how it is named in messages (``where``) and in the
    IR (``base``)."""

    __slots__ = ("b", "args", "kwargs", "where", "base")

    def __init__(self, b: _Builder, args: Tuple[Any, ...], kwargs: Dict[str, Any], where: str,
                 base: str) -> None:
        self.b, self.args, self.kwargs, self.where, self.base = b, args, kwargs, where, base

    def bind(self, params: Sequence[Tuple[str, Any]]) -> List[Any]:
        """The arguments in ``params`` order, by position or keyword, defaults filled."""
        return _bind(self.args, self.kwargs, params, self.where, self.b)


#: torch function (by import path, e.g. ``torch.add``) or tensor method (``.add``)
#: -> handler(call) -> the value
_FX: OpTable[Callable[[_FxCall], Any]] = OpTable("torch.fx function or method")
_R = _REQUIRED
_F = "torch.nn.functional."


@_FX.register(_F + "dropout", ".contiguous")
def _identity(c: _FxCall) -> Any:
    return c.b.tensor(c.args[0], c.where) if isinstance(c.args[0], _Tensor) else c.args[0]


@_FX.register("torch.flatten", ".flatten")
def _flatten(c: _FxCall) -> Any:
    x, s, e = c.bind([("input", _R), ("start_dim", 0), ("end_dim", -1)])
    return c.b.flatten(x, s, e, c.where, c.base)


@_FX.register("operator.add", "operator.iadd", "torch.add", ".add", ".add_")
def _add(c: _FxCall) -> Any:
    x, y, alpha = c.bind([("input", _R), ("other", _R), ("alpha", 1)])
    return c.b.add(x, y, c.where, c.base, alpha)


@_FX.register("torch.mean", ".mean")
def _mean(c: _FxCall) -> Any:
    x, dim, keepdim = c.bind([("input", _R), ("dim", None), ("keepdim", False)])
    return c.b.mean(x, dim, keepdim, c.where, c.base)


@_FX.register("operator.sub", "torch.sub", ".sub")
def _sub(c: _FxCall) -> Any:
    x, y = c.bind([("input", _R), ("other", _R)])
    return c.b.sub(x, y, c.where)


@_FX.register("operator.mul", "operator.imul", "torch.mul", ".mul", ".mul_")
def _mul(c: _FxCall) -> Any:
    x, y = c.bind([("input", _R), ("other", _R)])
    return c.b.mul(x, y, c.where, c.base)


@_FX.register("operator.truediv", "torch.div", ".div")
def _div(c: _FxCall) -> Any:
    x, y, mode = c.bind([("input", _R), ("other", _R), ("rounding_mode", None)])
    if mode is not None:
        raise c.b.fail(c.where, f"rounding_mode={mode!r}")
    return c.b.div(x, y, c.where, c.base)


@_FX.register("operator.floordiv")
def _floordiv(c: _FxCall) -> Any:
    x, y = c.bind([("input", _R), ("other", _R)])
    return c.b.div(x, y, c.where, c.base, floor=True)


@_FX.register("operator.matmul", "torch.matmul", "torch.bmm", ".matmul")
def _matmul(c: _FxCall) -> Any:
    x, y = c.bind([("input", _R), ("other", _R)])
    return c.b.matmul(x, y, c.where, c.base)


@_FX.register(_F + "relu", "torch.relu", ".relu", ".relu_")
def _relu(c: _FxCall) -> Any:
    return c.b.relu(c.bind([("input", _R)])[0], c.where, c.base)


@_FX.register(_F + "softmax", "torch.softmax", ".softmax")
def _softmax(c: _FxCall) -> Any:
    x, dim = c.bind([("input", _R), ("dim", None)])
    if dim is None:
        raise c.b.fail(c.where, "softmax without dim")
    return c.b.softmax(x, dim, c.where, c.base)


@_FX.register(".view", ".reshape")
def _reshape_method(c: _FxCall) -> Any:
    return c.b.reshape(c.args[0], _varargs(c.args[1:]) or list(c.kwargs.get("shape", ())),
                       c.where, c.base)


@_FX.register("torch.reshape")
def _reshape_function(c: _FxCall) -> Any:
    x, target = c.bind([("input", _R), ("shape", _R)])
    return c.b.reshape(x, list(target), c.where, c.base)


@_FX.register(".permute")
def _permute_method(c: _FxCall) -> Any:
    return c.b.permute(c.args[0], _varargs(c.args[1:]) or list(c.kwargs.get("dims", ())),
                       c.where, c.base)


@_FX.register("torch.permute")
def _permute_function(c: _FxCall) -> Any:
    x, dims = c.bind([("input", _R), ("dims", _R)])
    return c.b.permute(x, list(dims), c.where, c.base)


@_FX.register("torch.transpose", ".transpose")
def _transpose(c: _FxCall) -> Any:
    x, d0, d1 = c.bind([("input", _R), ("dim0", _R), ("dim1", _R)])
    return c.b.transpose(x, d0, d1, c.where, c.base)


@_FX.register(".size")
def _size(c: _FxCall) -> Any:
    x, dim = c.bind([("input", _R), ("dim", None)])
    return c.b.size(x, dim, c.where)


@_FX.register(".dim")
def _dim(c: _FxCall) -> Any:
    return len(c.b.shape_of(c.b.tensor(c.args[0], c.where)))


@_FX.register("builtins.getattr")
def _getattr(c: _FxCall) -> Any:
    obj, attr = c.args[0], c.args[1]
    if isinstance(obj, _Tensor) and attr == "shape":
        return c.b.shape_of(obj)
    if isinstance(obj, _Tensor) and attr == "ndim":
        return len(c.b.shape_of(obj))
    raise c.b.fail(c.where, f"attribute .{attr} of a tensor is not supported")


@_FX.register("operator.getitem")
def _getitem(c: _FxCall) -> Any:
    return c.b.getitem(c.args[0], c.args[1], c.where, c.base)


@_FX.register("torch.cat")
def _cat(c: _FxCall) -> Any:
    xs, dim = c.bind([("tensors", _R), ("dim", 0)])
    return c.b.concat(list(xs), dim, c.where, c.base)


@_FX.register(_F + "linear")
def _linear(c: _FxCall) -> Any:
    x, w, bias = c.bind([("input", _R), ("weight", _R), ("bias", None)])
    return c.b.linear(x, w, bias, c.where, c.base)


_POOL_PARAMS = [("input", _R), ("kernel_size", _R), ("stride", None), ("padding", 0)]


def _pool(c: _FxCall, kind: str, extra_names: Tuple[str, ...]) -> Any:
    """``F.max_pool2d``/``F.avg_pool2d``; options the IR lacks are refused."""
    x, k, s, p = c.bind(_POOL_PARAMS)
    extra = dict(zip(extra_names, c.args[4:4 + len(extra_names)]))
    extra.update({k2: v for k2, v in c.kwargs.items() if k2 not in
                  ("input", "kernel_size", "stride", "padding")})
    _check_pool_extras(c.b, c.where, kind, extra, p)
    return c.b.pool(kind[:3], x, k, s, p, c.where, c.base)


@_FX.register(_F + "max_pool2d")
def _max_pool2d(c: _FxCall) -> Any:
    return _pool(c, "max_pool2d", ("dilation", "ceil_mode"))


@_FX.register(_F + "avg_pool2d")
def _avg_pool2d(c: _FxCall) -> Any:
    return _pool(c, "avg_pool2d", ("ceil_mode", "count_include_pad", "divisor_override"))


# ------------------------------ index ops of windowed transformers (issue 18)
@_FX.register("torch.roll", ".roll")
def _roll(c: _FxCall) -> Any:
    x, shifts, dims = c.bind([("input", _R), ("shifts", _R), ("dims", None)])
    return c.b.roll(x, shifts, dims, c.where, c.base)


@_FX.register("torch.chunk", ".chunk")
def _chunk(c: _FxCall) -> Any:
    x, chunks, dim = c.bind([("input", _R), ("chunks", _R), ("dim", 0)])
    return c.b.chunk(x, chunks, dim, c.where, c.base)


@_FX.register("torch.split", ".split")
def _split(c: _FxCall) -> Any:
    x, sizes, dim = c.bind([("tensor", _R), ("split_size_or_sections", _R), ("dim", 0)])
    return c.b.split(x, sizes, dim, c.where, c.base)


@_FX.register("torch.unbind", ".unbind")
def _unbind(c: _FxCall) -> Any:
    x, dim = c.bind([("input", _R), ("dim", 0)])
    return c.b.unbind(x, dim, c.where, c.base)


@_FX.register("torch.select", ".select")
def _select(c: _FxCall) -> Any:
    x, dim, index = c.bind([("input", _R), ("dim", _R), ("index", _R)])
    return c.b.select(x, dim, index, c.where, c.base)


@_FX.register("torch.unsqueeze", ".unsqueeze")
def _unsqueeze(c: _FxCall) -> Any:
    x, dim = c.bind([("input", _R), ("dim", _R)])
    return c.b.unsqueeze(x, dim, c.where, c.base)


@_FX.register("torch.squeeze", ".squeeze")
def _squeeze(c: _FxCall) -> Any:
    x, dim = c.bind([("input", _R), ("dim", None)])
    return c.b.squeeze(x, dim, c.where, c.base)


@_FX.register(_F + "gelu")
def _gelu(c: _FxCall) -> Any:
    x, approximate = c.bind([("input", _R), ("approximate", "none")])
    return c.b.gelu(x, approximate, c.where, c.base)


@_FX.register(_F + "layer_norm")
def _layer_norm(c: _FxCall) -> Any:
    x, shape, w, bias, eps = c.bind([("input", _R), ("normalized_shape", _R), ("weight", None),
                                     ("bias", None), ("eps", 1e-5)])
    return c.b.layer_norm(x, shape, w, bias, eps, c.where, c.base)


@_FX.register("torch.masked_fill", ".masked_fill")
def _masked_fill(c: _FxCall) -> Any:
    raise c.b.fail(c.where, "masked_fill of a tensor computed from the input (only masks "
                            "built from constants, e.g. Swin's shifted-window mask, load)")


def _fold_fx(node: Any, args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Any:
    """Evaluate a call on constants only (no value from the input) with torch itself."""
    if node.op == "call_method":
        return getattr(args[0], node.target)(*args[1:], **kwargs)
    return node.target(*args, **kwargs)


def _fx_handlers() -> Tuple[Dict[Any, Callable[[_FxCall], Any]],
                            Dict[str, Callable[[_FxCall], Any]]]:
    """:data:`_FX` resolved: torch callables -> handler, method names -> handler."""
    functions: Dict[Any, Callable[[_FxCall], Any]] = {}
    methods: Dict[str, Callable[[_FxCall], Any]] = {}
    for name in _FX:
        handler = _FX.get(name)
        if name.startswith("."):
            methods[name[1:]] = handler
        else:
            module, _, attr = name.rpartition(".")
            functions[getattr(importlib.import_module(module), attr)] = handler
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

        self._refuse_random_draws(fx_graph)
        for node in fx_graph.nodes:
            try:
                self._node(node, env, value, shape)
            except NmtcError:
                raise
            except Exception as e:  # a torch or numpy error on an unusual argument
                raise UnsupportedOpError(
                    f"model '{self.b.origin}': node '{node.name}' ({node.op} {node.target}): "
                    f"{type(e).__name__}: {_first_line(e)}") from None

    def _refuse_random_draws(self, fx_graph: Any) -> None:
        """A forward that draws random numbers (``torch.rand(x.shape) > p``, as released
        RSM code does) is refused naming the draw before anything else: newer torch.fx
        traces such calls, older versions fail on them, and either way a deployed network
        cannot repeat the draw. nmtc's seeded ``SpikeMask`` is the replacement."""
        for node in fx_graph.nodes:
            name = (node.target if node.op == "call_method"
                    else getattr(node.target, "__name__", "") if node.op == "call_function"
                    else "")
            if name in _RANDOM_DRAWS:
                raise UnsupportedOpError(
                    f"model '{self.b.origin}': {name}() (node '{node.name}'"
                    f"{_in_module(node)}) draws random numbers inside forward, which a "
                    "converted network cannot repeat; mask with nmtoolchain.nn.SpikeMask "
                    "(seeded per run) instead")

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
        """A function or method call through its handler in :data:`_FX`; one outside
        the table is refused naming it and listing the supported ones."""
        if node.op == "call_method":
            handler = self.methods.get(node.target)
            label = f"method .{node.target}()"
        else:
            handler = self.functions.get(node.target)
            label = f"function {_callable_name(node.target)}"
        where = f"{label} (node '{node.name}'{_in_module(node)})"
        if foldable(str(getattr(node.target, "__name__", node.target)), args, kwargs):
            return _fold_fx(node, args, kwargs)
        if handler is None:
            supported = sorted({_callable_name(f) for f in self.functions}
                               | {f".{m}()" for m in self.methods})
            raise UnsupportedOpError(
                f"model '{self.b.origin}': {where} is not supported (supported: "
                f"{', '.join(supported)})")
        return handler(_FxCall(self.b, args, kwargs, where, node.name))


#: torch functions and tensor methods that draw random numbers
_RANDOM_DRAWS = frozenset({"rand", "randn", "rand_like", "randn_like", "randint", "randint_like",
                           "randperm", "bernoulli", "bernoulli_", "normal", "normal_",
                           "uniform_", "multinomial", "poisson", "exponential_"})


def _in_module(node: Any) -> str:
    """`` in module 'a.b'`` for an fx node traced inside submodule ``a.b`` (torch.fx
    records the stack of modules it was called from), else ``''``."""
    stack = getattr(node, "meta", {}).get("nn_module_stack") or {}
    if not stack:
        return ""
    path, last = list(stack.items())[-1]
    path = last[0] if isinstance(last, tuple) and last and isinstance(last[0], str) else path
    return f" in module '{path}'" if path else ""


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
