"""Time-major spiking models as the published Spikformer code writes them.

That code (ZK-Zhou/spikformer, AutoST) keeps a leading time axis: the image is
repeated over ``T`` steps (``x.unsqueeze(0).repeat(T, 1, 1, 1, 1)``), layers
run on ``x.flatten(0, 1)`` and reshape back to ``(T, B, ...)``, every neuron is
a multi-step module looping over dim 0, and the head reads ``x.mean(0)``.
nmtc's IR is a per-step graph, so the TorchScript walker folds the time axis
away here:

* :class:`Seq` is a time-major ``(T, B, ...)`` tensor; its IR node is the
  per-step value (T is the simulator's step count). ``unsqueeze(0)`` +
  ``repeat(T, 1, ...)`` of the input starts one (direct encoding: the same
  image every step); ``flatten(0, 1)`` and ``reshape(T, B, ...)`` pairs are
  no-ops; any other op on it acts on per-step axes only.
* A submodule whose traced graph selects time steps (``select``/``unbind``
  over dim 0) and ``stack``\\ s them back is a *neuron region*: it becomes one
  IR neuron. Its constants propose LIF/IF parameters; the region's own ops,
  evaluated with torch on probe inputs (a dyadic grid, so threshold ties
  occur, and continuous random values), must give the candidate's spikes
  exactly, else the load is refused naming the module. No code from the file
  runs: the region's aten ops are evaluated one by one from a fixed list of
  tensor arithmetic.
* ``mean`` over dim 0 is the rate readout: the output is averaged over the
  T steps (``metadata['output_decoding']``). Only affine ops may follow it,
  as only they commute with the average.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from nmtoolchain.errors import UnsupportedOpError
from nmtoolchain.frontends.torch_builder import _Builder, _Lead, _Tensor, _scalar
from nmtoolchain.ir import IF, LIF


class Seq(_Tensor):
    """A time-major ``(T, B, *shape)`` tensor; ``name`` is its per-step IR node."""

    __slots__ = ("steps",)

    def __init__(self, name: str, shape: Sequence[int], steps: int) -> None:
        super().__init__(name, shape)
        self.steps = int(steps)

    def __repr__(self) -> str:
        return f"<time-major tensor {self.name} (T={self.steps}, B) + {self.shape}>"


class Rate(_Tensor):
    """A per-step tensor standing for its average over the T steps (after ``mean(0)``)."""

    __slots__ = ()


def _plain(t: _Tensor) -> _Tensor:
    return _Tensor(t.name, t.shape)


def _walk(v: Any, fn: Callable[[Any], Any]) -> Any:
    if isinstance(v, list):
        return [_walk(x, fn) for x in v]
    if isinstance(v, tuple):
        return tuple(_walk(x, fn) for x in v)
    return fn(v)


def _flat(v: Any) -> List[Any]:
    if isinstance(v, (list, tuple)):
        return [y for x in v for y in _flat(x)]
    return [v]


DIRECT_ENCODING = {"method": "direct",
                   "rule": "the analog input is applied unchanged at every time step"}
MEAN_DECODING = {"method": "mean",
                 "rule": "output values averaged over the time steps (the model's mean over "
                         "dim 0, moved past its affine head)"}

#: ops that may follow the mean over time: affine, so they commute with the average
_AFFINE_AFTER_MEAN = {
    "aten::linear", "aten::addmm", "aten::matmul", "aten::mul", "aten::div", "aten::add",
    "aten::view", "aten::reshape", "aten::flatten", "aten::transpose", "aten::permute",
    "aten::t", "aten::squeeze", "aten::unsqueeze", "aten::batch_norm"}
_AFFINE_LEAVES = {"Linear", "Identity", "Dropout", "Flatten", "BatchNorm1d"}


class TimeAxis:
    """The walker's view of a model's time axis: where it starts, its T, its readout."""

    def __init__(self, builder: _Builder) -> None:
        self.b = builder
        self.steps: Optional[int] = None
        self.readout: Optional[str] = None
        self._regions: Dict[Any, Any] = {}  # canonical region key -> (op, how)
        #: the live module a pickled model was traced from (consent given), or None
        self.live: Optional[Any] = None

    # ----------------------------------------------------------- dispatch
    def wants(self, kind: str, args: Sequence[Any]) -> bool:
        """Whether this aten op involves the time axis (then :meth:`aten` translates it)."""
        vals = _flat(list(args))
        if any(isinstance(v, (Seq, Rate)) for v in vals):
            return True
        if kind == "aten::unsqueeze" and self.b.lead == 1 and isinstance(args[0], _Tensor):
            d = _scalar(args[1])
            return isinstance(d, (int, np.integer)) and int(d) in (0, -len(args[0].shape) - 2)
        if (kind in ("aten::view", "aten::reshape") and isinstance(args[0], _Tensor)
                and len(args) > 1 and isinstance(args[1], (list, tuple))):
            return self._time_head(list(args[1])) is not None
        return False

    def _time_head(self, target: List[Any]) -> Optional[int]:
        """T when torch sizes ``target`` start with (time, batch), else None."""
        if len(target) < 2 or _scalar(target[1]) != _Lead(0):
            return None
        t = _scalar(target[0])
        if t == _Lead(1):
            return -1  # the symbolic T of a time-major tensor
        if isinstance(t, (int, np.integer)) and self.steps is not None and int(t) == self.steps:
            return int(t)
        return None

    def aten(self, kind: str, a: List[Any], where: str, base: str,
             plain: Callable[[str, List[Any], str, str], Any]) -> Any:
        """Translate an aten op that involves the time axis."""
        b = self.b
        x = a[0]
        if kind == "aten::unsqueeze" and not isinstance(x, (Seq, Rate)):
            return Seq(x.name, x.shape, 1)
        if kind in ("aten::view", "aten::reshape") and not isinstance(x, Rate):
            return self._reshape(x, list(a[1]), where, base, plain)
        if isinstance(x, Seq) and kind in ("aten::repeat", "aten::expand"):
            return self._repeat(x, list(a[1]), kind, where)
        if isinstance(x, Seq) and kind == "aten::flatten":
            lo, hi = int(_scalar(a[1])), int(_scalar(a[2]))
            full = len(x.shape) + 2
            lo, hi = lo + full if lo < 0 else lo, hi + full if hi < 0 else hi
            if (lo, hi) == (0, 1):
                return _Tensor(x.name, x.shape)  # (T*B, ...): the per-step tensor
        if isinstance(x, Seq) and kind == "aten::mean":
            dims = a[1] if isinstance(a[1], (list, tuple)) else [a[1]]
            if [int(_scalar(d)) for d in dims] == [0]:
                if len(a) > 2 and a[2]:
                    raise b.fail(where, "mean over time with keepdim=True")
                self.readout = "mean"
                return Rate(x.name, x.shape)
        vals = [v for v in _flat(list(a)) if isinstance(v, _Tensor)]
        if any(isinstance(v, Rate) for v in vals):
            return self._after_mean(kind, a, vals, where, base, plain)
        return self.per_step(lambda args: plain(kind, args, where, base), a, vals, where)

    def per_step(self, fn: Callable[[List[Any]], Any], a: List[Any], vals: List[_Tensor],
                 where: str) -> Any:
        """``fn`` on time-major tensors, translated per step (axes 0, 1 held in place)."""
        b = self.b
        if not all(isinstance(v, Seq) for v in vals):
            raise b.fail(where, "mixes a time-major (T, B, ...) tensor with a per-step one")
        steps = {v.steps for v in vals}
        if len(steps) != 1:
            raise b.fail(where, f"mixes time-major tensors of {sorted(steps)} steps")
        lead = b.lead
        b.lead = 2
        try:
            out = fn(_walk(list(a), lambda v: _plain(v) if isinstance(v, Seq) else v))
        finally:
            b.lead = lead
        t = steps.pop()
        return _walk(out, lambda v: Seq(v.name, v.shape, t) if isinstance(v, _Tensor) else v)

    def _reshape(self, x: _Tensor, target: List[Any], where: str, base: str,
                 plain: Callable[[str, List[Any], str, str], Any]) -> Any:
        head = self._time_head(target)
        if head is None:
            if isinstance(x, Seq):  # a reshape that keeps no (T, B) head
                raise self.b.fail(where, f"reshape of a time-major (T, B, ...) tensor to "
                                         f"{tuple(target)} does not keep the time and batch "
                                         "axes in place")
            return plain("aten::reshape", [x, target], where, base)
        steps = x.steps if isinstance(x, Seq) else (self.steps or head)
        if isinstance(x, Seq) and head > 0 and head != x.steps:
            raise self.b.fail(where, f"reshape to {head} steps of a {x.steps}-step tensor")
        y = plain("aten::reshape", [_plain(x), [_Lead(0)] + target[2:]], where, base)
        return Seq(y.name, y.shape, steps)

    def _repeat(self, x: Seq, reps: List[Any], kind: str, where: str) -> Seq:
        reps = [_scalar(r) for r in reps]
        keep = 1 if kind == "aten::repeat" else -1
        t = reps[0] if reps else None
        if (x.steps != 1 or len(reps) != len(x.shape) + 2 or not isinstance(t, (int, np.integer))
                or t < 1 or any(r not in (keep, 1) for r in reps[1:])):
            raise self.b.fail(where, f"{kind.split('::')[1]}{tuple(reps)} of a time-major "
                                     "tensor (only repeating the input over the time axis)")
        if self.steps is not None and self.steps != int(t):
            raise self.b.fail(where, f"repeats the input over {t} steps after {self.steps}")
        self.steps = int(t)
        return Seq(x.name, x.shape, int(t))

    def _after_mean(self, kind: str, a: List[Any], vals: List[_Tensor], where: str, base: str,
                    plain: Callable[[str, List[Any], str, str], Any]) -> Any:
        if kind not in _AFFINE_AFTER_MEAN or not all(isinstance(v, Rate) for v in vals):
            raise self.b.fail(where, "follows the mean over time (dim 0) but is not affine in "
                                     "it, so the per-step graph cannot stand for it")
        out = plain(kind, _walk(list(a), lambda v: _plain(v) if isinstance(v, Rate) else v),
                    where, base)
        return _walk(out, lambda v: Rate(v.name, v.shape) if isinstance(v, _Tensor) else v)

    def leaf(self, type_name: str, x: Any, translate: Callable[[_Tensor], _Tensor],
             where: str) -> _Tensor:
        """A registered leaf module called on a time-major (or time-averaged) tensor."""
        if isinstance(x, Rate):
            if type_name not in _AFFINE_LEAVES:
                raise self.b.fail(where, f"{type_name} follows the mean over time (dim 0) but "
                                         "is not affine, so the per-step graph cannot stand "
                                         "for it")
            y = translate(_plain(x))
            return Rate(y.name, y.shape)
        return self.per_step(lambda args: translate(args[0]), [x], [x], where)

    def finish(self, graph: Any, result: Any) -> None:
        """Record the time axis in the graph's metadata."""
        if self.steps is None and not any(isinstance(v, Seq) for v in _flat([result])):
            return
        steps = self.steps
        graph.metadata["input_encoding"] = dict(DIRECT_ENCODING, steps=steps)
        if self.readout == "mean" and all(isinstance(v, Rate) for v in _flat([result])
                                          if isinstance(v, _Tensor)):
            graph.metadata["output_decoding"] = dict(MEAN_DECODING, steps=steps)
        graph.metadata["time_major"] = {"steps": steps, "layout": "(T, B, ...)",
                                        "neuron_regions": len(self._regions)}

    # ------------------------------------------------------ neuron regions
    def neuron_region(self, module: Any, graph: Any, path: str, args: List[Any], index: int,
                      evaluate_aten: Callable[[str, List[Any]], Any]) -> Seq:
        """One IR neuron for the module whose traced graph loops over the time steps of
        ``args[index]`` (other arguments: modules it calls)."""
        b = self.b
        x = args[index]
        where = f"module '{path or '<top>'}'"
        key = _region_key(module, graph)
        found = self._regions.get(key)
        if found is None and self.live is not None:  # consent given: the module's own forward
            live = self.live.get_submodule(path) if path else self.live
            found = identify(lambda p: call_live(live, p), _constants(module, graph), x.shape,
                             x.steps, f"model '{b.origin}': {where}")
            self._regions[key] = found
        elif found is None:
            found = identify_region(module, graph, list(args), index, x.shape, x.steps,
                                    evaluate_aten, f"model '{b.origin}': {where}")
            self._regions[key] = found
        op, how = found
        y = b.emit((path or "neuron").replace(".", "_"), op.__class__(**op.field_values()),
                   [_plain(x)], where, path or None, {"time_region": how})
        return Seq(y.name, y.shape, x.steps)


def is_time_region(graph: Any, index: int) -> bool:
    """Whether a traced module graph is an unrolled neuron loop: it selects time
    steps of its input ``index`` (after ``self``) over dim 0 and returns them
    stacked over dim 0. (Traced inside a model, a module may also receive the
    submodules it calls as inputs.)"""
    inputs, outputs = list(graph.inputs()), list(graph.outputs())
    if len(inputs) < index + 2 or len(outputs) != 1:
        return False

    def dim0(n: Any) -> bool:
        d = list(n.inputs())[1]
        return d.node().kind() == "prim::Constant" and d.toIValue() == 0

    x = inputs[index + 1].unique()
    picks = any(n.kind() in ("aten::select", "aten::unbind") and
                list(n.inputs())[0].unique() == x and dim0(n) for n in graph.nodes())
    last = outputs[0].node()
    return picks and last.kind() in ("aten::stack", "aten::cat") and dim0(last)


def reset_spikingjelly(module: Any) -> None:
    """Clear spikingjelly neurons' membranes (their ``reset()``), as
    ``functional.reset_net`` does: they keep state between calls."""
    for m in module.modules():
        if type(m).__module__.startswith("spikingjelly.") and callable(getattr(m, "reset", None)):
            m.reset()


def call_live(module: Any, x: Any) -> Any:
    """A live (unpickled, with consent) region module's own forward from a clean state."""
    import torch

    reset_spikingjelly(module)
    with torch.no_grad():
        out = module(x)
    reset_spikingjelly(module)
    return out


# ------------------------------------------------ region evaluation
#: the tensor arithmetic a neuron region may use (evaluated with torch's own aten ops)
REGION_OPS = frozenset({
    "aten::select", "aten::unbind", "aten::stack", "aten::full_like", "aten::zeros_like",
    "aten::ones_like", "aten::add", "aten::sub", "aten::rsub", "aten::mul", "aten::div",
    "aten::neg", "aten::ge", "aten::gt", "aten::le", "aten::lt", "aten::eq", "aten::to",
    "aten::float", "aten::type_as", "aten::detach", "aten::clone", "aten::contiguous",
    "aten::where", "aten::heaviside", "aten::clamp", "aten::clamp_min", "aten::clamp_max",
    "aten::size", "aten::mul_", "aten::add_", "aten::sub_", "aten::div_", "aten::fill_",
    "aten::copy_", "aten::masked_fill", "aten::sign", "aten::relu", "aten::view_as",
    "aten::reshape_as", "aten::expand_as"})
_ARITH = ("aten::add", "aten::sub", "aten::rsub", "aten::mul", "aten::div", "aten::ge",
          "aten::gt", "aten::le", "aten::lt", "aten::eq", "aten::full_like", "aten::where",
          "aten::clamp", "aten::fill_", "aten::masked_fill", "aten::add_", "aten::sub_",
          "aten::mul_", "aten::div_")


class RegionError(Exception):
    """The region uses something outside :data:`REGION_OPS`."""


def _evaluate(module: Any, graph: Any, args: List[Any],
              evaluate_aten: Callable[[str, List[Any]], Any]) -> Any:
    """The region's outputs for ``args`` (the probe tensor, and any modules passed in)."""
    results = _run(graph, [module] + list(args), evaluate_aten, 0)
    if len(results) != 1 or not hasattr(results[0], "detach"):
        raise RegionError("does not return one tensor")
    return results[0]


def _run(graph: Any, args: List[Any], evaluate_aten: Callable[[str, List[Any]], Any],
         depth: int) -> List[Any]:
    """A region graph's values, op by op (submodule calls recursed into)."""
    import torch

    if depth > 8:
        raise RegionError("nests submodule calls too deeply")
    env: Dict[int, Any] = {}
    for v, a in zip(graph.inputs(), args):
        env[v.unique()] = a
    for node in graph.nodes():
        kind = node.kind()
        ins = [env.get(v.unique()) for v in node.inputs()]
        outs = list(node.outputs())
        if kind == "prim::Constant":
            if outs[0].type().kind() == "FunctionType":
                raise RegionError("calls a function")
            val: Any = outs[0].toIValue()
        elif kind == "prim::ListConstruct":
            val = list(ins)
        elif kind == "prim::TupleConstruct":
            val = tuple(ins)
        elif kind in ("prim::ListUnpack", "prim::TupleUnpack"):
            for o, v in zip(outs, ins[0]):
                env[o.unique()] = v
            continue
        elif kind == "prim::CallMethod":
            sub = ins[0]
            try:
                called = sub._c._get_method(node.s("name")).graph
            except (AttributeError, RuntimeError):
                raise RegionError(f"calls method {node.s('name')!r} of a non-script "
                                  "module") from None
            out = _run(called, ins, evaluate_aten, depth + 1)
            for o, v in zip(outs, out):
                env[o.unique()] = v
            continue
        elif kind == "prim::PythonOp":
            raise RegionError("calls a Python function (e.g. an autograd Function for the "
                              "surrogate spike) that a TorchScript file cannot hold")
        elif kind == "prim::GetAttr":
            val = getattr(ins[0], node.s("name"))
            if not isinstance(val, (torch.Tensor, int, float, bool, torch.jit.ScriptModule)):
                raise RegionError(f"reads attribute {node.s('name')!r} of type "
                                  f"{type(val).__name__}")
        elif kind == "prim::NumToTensor":
            val = torch.tensor(ins[0])
        elif kind in ("aten::Int", "aten::Float", "aten::ScalarImplicit", "aten::IntImplicit",
                      "aten::FloatImplicit"):
            val = ins[0].item() if isinstance(ins[0], torch.Tensor) else ins[0]
        elif kind in REGION_OPS:
            val = evaluate_aten(kind, ins)
        else:
            raise RegionError(f"uses {kind}")
        if len(outs) == 1:
            env[outs[0].unique()] = val
        else:
            for o, v in zip(outs, val):
                env[o.unique()] = v
    return [env[v.unique()] for v in graph.outputs()]


def _constants(module: Any, graph: Any) -> List[float]:
    """Numbers the region computes with: operands of its arithmetic, attribute scalars."""
    import torch

    found: List[float] = []

    def add(v: Any) -> None:
        if isinstance(v, torch.Tensor) and v.numel() == 1:
            v = v.item()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v):
            found.append(float(v))

    for n in graph.nodes():
        if n.kind() in _ARITH:
            for i, v in enumerate(list(n.inputs())[:3]):
                if i == 2 and n.kind() in ("aten::add", "aten::sub", "aten::rsub"):
                    continue  # alpha
                src = v.node()
                if src.kind() == "prim::Constant" and v.type().kind() != "FunctionType":
                    add(v.toIValue())
                elif src.kind() == "prim::GetAttr":
                    add(getattr(module, src.s("name"), None))
    return sorted(set(found))


def _region_key(module: Any, graph: Any) -> Any:
    """The region's ops, wiring and constants: equal keys compute the same function."""
    import torch

    ids: Dict[int, int] = {}
    for i, v in enumerate(graph.inputs()):
        ids[v.unique()] = i
    parts: List[Any] = []
    for n in graph.nodes():
        const: Any = None
        if n.kind() == "prim::Constant":
            o = n.output()
            v = None if o.type().kind() == "FunctionType" else o.toIValue()
            const = tuple(v.flatten().tolist()) if isinstance(v, torch.Tensor) else repr(v)
        elif n.kind() == "prim::GetAttr":
            v = getattr(module, n.s("name"), None)
            const = (n.s("name"), tuple(v.flatten().tolist()) if isinstance(v, torch.Tensor)
                     else repr(v))
        parts.append((n.kind(), tuple(ids.get(v.unique(), -1) for v in n.inputs()), const))
        for o in n.outputs():
            ids[o.unique()] = len(ids)
    parts.append(tuple(ids.get(v.unique(), -1) for v in graph.outputs()))
    return tuple(parts)


@dataclasses.dataclass(frozen=True)
class _Candidate:
    kind: str  # "LIF" or "IF"
    tau: float
    r: float
    leak: float
    thr: float
    v_reset: float
    reset: str
    v_init: float
    compare: str

    def op(self) -> Any:
        common = dict(r=self.r, v_threshold=self.thr, v_reset=self.v_reset, reset=self.reset,
                      v_init=self.v_init, compare=self.compare)
        if self.kind == "IF":
            return IF(**common)
        return LIF(tau=self.tau, v_leak=self.leak, discretization="euler", **common)

    def describe(self) -> str:
        dyn = ("v += x" if self.kind == "IF" else
               f"tau={self.tau:g}" + (", decay_input" if self.r == 1 else ""))
        return (f"{self.kind}({dyn}, v_th={self.thr:g} ({self.compare}), "
                + (f"hard reset to {self.v_reset:g}" if self.reset == "to_reset"
                   else "soft reset") + ")")


def _candidates(consts: List[float]) -> List[_Candidate]:
    taus = sorted({c for c in consts if c > 1} | {1.0 / c for c in consts if 0 < c < 1})
    out: List[_Candidate] = []
    for thr in [c for c in consts if c > 0]:
        for compare in (">=", ">"):
            resets = [("to_reset", vr) for vr in consts] + [("subtract", 0.0)]
            for reset, vr in resets:
                for v_init in sorted({vr, 0.0}):
                    for tau in taus:
                        for leak in sorted({vr, 0.0}):
                            for r in (1.0, tau):  # decay_input, or input added whole
                                out.append(_Candidate("LIF", tau, r, leak, thr, vr, reset,
                                                      v_init, compare))
                    out.append(_Candidate("IF", 1.0, 1.0, 0.0, thr, vr, reset, v_init,
                                          compare))
    return out


def _simulate(cands: List[_Candidate], x: np.ndarray) -> np.ndarray:
    """Spikes of every candidate on ``x`` (T, N): (K, T, N), in float32 with the IR
    float simulator's own update order (v + dt/tau (v_leak - v + r x) + bias, then
    spike and reset), dt = 1."""
    f32 = np.float32

    def col(values: List[float]) -> np.ndarray:
        return np.asarray(values, dtype=f32).reshape(-1, 1)

    is_if = np.asarray([c.kind == "IF" for c in cands]).reshape(-1, 1)
    k = f32(1.0) / col([c.tau for c in cands])
    r, leak, thr = col([c.r for c in cands]), col([c.leak for c in cands]), col(
        [c.thr for c in cands])
    vr = col([c.v_reset for c in cands])
    sub = np.asarray([c.reset == "subtract" for c in cands]).reshape(-1, 1)
    ge = np.asarray([c.compare == ">=" for c in cands]).reshape(-1, 1)
    v = np.broadcast_to(col([c.v_init for c in cands]), (len(cands), x.shape[1])).copy()
    zero = f32(0.0)
    spikes = np.empty((len(cands),) + x.shape, dtype=f32)
    for t in range(x.shape[0]):
        xt = x[t][None, :]
        v = np.where(is_if, v + r * xt + zero, v + k * (leak - v + r * xt) + zero)
        s = np.where(ge, v >= thr, v > thr).astype(f32)
        v = np.where(sub, v - s * thr, np.where(s > 0, vr, v))
        spikes[:, t] = s
    return spikes


def _probes(steps: int, shape: Tuple[int, ...], consts: List[float]) -> List[Any]:
    """A dyadic grid (exact arithmetic, so threshold ties happen) and continuous values."""
    import torch

    g = torch.Generator().manual_seed(1234)
    scale = max([abs(c) for c in consts] + [1.0])
    full = (steps, 1 if int(np.prod(shape)) >= 4096 else 2) + tuple(shape)
    grid = torch.randint(-8, 25, full, generator=g).to(torch.float32) * (scale / 8)
    cont = (torch.rand(full, generator=g) * 4 - 1) * scale
    return [grid, cont]


def identify_region(module: Any, graph: Any, args: List[Any], index: int,
                    shape: Tuple[int, ...], steps: int,
                    evaluate_aten: Callable[[str, List[Any]], Any], who: str) -> Tuple[Any, str]:
    """The IR neuron equal to a TorchScript neuron region's ops (see :func:`identify`);
    ``args`` are the region's arguments, the probe goes in at ``index``."""
    def run(x: Any) -> Any:
        return _evaluate(module, graph, args[:index] + [x] + args[index + 1:], evaluate_aten)

    return identify(run,
                    _constants(module, graph), shape, steps, who)


def identify(evaluate: Callable[[Any], Any], consts: List[float], shape: Tuple[int, ...],
             steps: int, who: str) -> Tuple[Any, str]:
    """The IR neuron whose spikes equal ``evaluate``'s (a region's own ops on a
    (T, B, *shape) torch tensor), with a note of how it was found.

    Candidates are built from the region's constants ``consts``; the first (in a
    fixed order) whose spikes equal the region's on every probe neuron is chosen.
    None: :class:`UnsupportedOpError` naming the region (``who``)."""
    import torch

    consts = sorted(set(consts) | {0.0})
    probes = _probes(steps, shape, consts)
    try:
        with torch.no_grad():
            outs = [torch.as_tensor(np.asarray(evaluate(p))) for p in probes]
    except RegionError as e:
        raise UnsupportedOpError(f"{who}: a loop over time steps that {e}, so it cannot be "
                                 "identified as a neuron") from None
    except UnsupportedOpError:
        raise
    except Exception as e:  # the region's ops refusing the probe
        raise UnsupportedOpError(f"{who}: a loop over time steps that cannot be evaluated "
                                 f"({type(e).__name__}: {str(e).strip().splitlines()[0]})"
                                 ) from None
    if any(tuple(o.shape) != tuple(p.shape) for o, p in zip(outs, probes)):
        raise UnsupportedOpError(f"{who}: a loop over time steps whose output shape differs "
                                 "from its input's, so it is not a neuron layer")
    if any(not bool(((o == 0) | (o == 1)).all()) for o in outs):
        raise UnsupportedOpError(f"{who}: a loop over time steps whose outputs are not spikes "
                                 "(0/1), so it matches no IR spiking neuron")
    cands = _candidates(consts)
    probes_np = [p.reshape(steps, -1).numpy().astype(np.float32) for p in probes]
    outs_np = [o.reshape(steps, -1).numpy().astype(np.float32) for o in outs]
    for width in (256, 4096):  # screen on a few neurons, then on more
        kept = []
        for p, o in zip(probes_np, outs_np):
            p, o = p[:, :width], o[:, :width]
            kept.append((_simulate(cands, p) == o[None]).reshape(len(cands), -1).all(1))
        cands = [c for c, a, b in zip(cands, *kept) if a and b]
    for c in cands:
        if all(bool((_simulate([c], p)[0] == o).all()) for p, o in zip(probes_np, outs_np)):
            how = (f"loop over {steps} time steps identified as {c.describe()}; equal spike "
                   f"for spike on {sum(p.numel() for p in probes)} probe values")
            return c.op(), how
    raise UnsupportedOpError(
        f"{who}: a loop over time steps that matches no IR neuron (LIF/IF with the constants "
        f"{', '.join(f'{c:g}' for c in consts)}, hard or soft reset, > or >=) on probe inputs")
