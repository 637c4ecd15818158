"""Translate a Python ``nn.Module`` into the IR by torch.fx symbolic tracing.

Registered leaves (:mod:`nmtoolchain.frontends.torch_leaves`: torch.nn,
sinabs and nmtc modules) are kept opaque and translated from their
attributes; everything else is traced through.
"""
from __future__ import annotations

import operator
from typing import Any, Callable, Dict, List, Sequence, Tuple

from nmtoolchain.errors import NmtcError, UnsupportedOpError
from nmtoolchain.frontends.torch_leaves import class_path, is_vendor_module, leaf_of
from nmtoolchain.ir import Graph
from nmtoolchain.frontends.torch_builder import (
    _Builder, _Tensor, _check_shape, _first_line, _lead_axes, _unsupported_module)


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
        F.avg_pool2d: "avg_pool2d", torch.mean: "mean",
    }
    methods = {
        "flatten": "flatten", "add": "add", "add_": "add", "mul": "mul", "mul_": "mul",
        "div": "div", "sub": "sub", "matmul": "matmul", "relu": "relu", "relu_": "relu",
        "softmax": "softmax", "view": "reshape", "reshape": "reshape", "permute": "permute",
        "transpose": "transpose", "contiguous": "identity", "size": "size", "dim": "dim",
        "mean": "mean",
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
        if kind == "mean":
            x, dim, keepdim = bind([("input", R), ("dim", None), ("keepdim", False)])
            return b.mean(x, dim, keepdim, where, base)
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
