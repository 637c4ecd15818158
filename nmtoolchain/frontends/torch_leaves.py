"""The registry of torch modules the torch loader translates whole ("leaves").

The loader does not trace into a leaf; it reads the leaf's attributes and
parameters and emits IR ops. The same table serves torch.fx (keyed by the
module's Python class) and TorchScript (keyed by the scripted module's
qualified type name, e.g. ``__torch__.torch.nn.modules.conv.Conv2d``), so both
routes give the same IR for the same module.

A translator returns the ops to chain in order (none: the module is elided,
as Identity and Dropout are). It raises :class:`UnsupportedOpError` (via
``ctx.unsupported``) for a configuration the IR cannot express, and lets an
``AttributeError`` escape when the module lacks an attribute it needs (a
traced TorchScript module keeps only tensors); the TorchScript walker then
walks the module's forward graph instead.

Vendor classes are matched by name, so sinabs is never imported here.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from nmtoolchain.errors import UnsupportedOpError
from nmtoolchain.ir import (
    IF, LI, LIF, Affine, AvgPool2d, BatchNorm, Conv1d, Conv2d, Flatten, GELU, LayerNorm, Linear,
    MaxPool2d, Op, QCFS, ReLU, Shape, Softmax, SpikeMask, SumPool2d)
from nmtoolchain.ir.op import as_array

#: one emitted op and the annotations to add to its node (besides ``source``)
Emitted = Tuple[Op, Dict[str, Any]]


@dataclasses.dataclass
class LeafContext:
    """Where a leaf sits: its path in the model, its per-sample input shape,
    the number of leading non-sample axes (1: batch; 2: batch and time), and
    the model's origin (file name) for messages."""

    path: str
    type_name: str
    in_shape: Shape
    lead: int
    origin: str

    def unsupported(self, why: str) -> UnsupportedOpError:
        return UnsupportedOpError(
            f"model '{self.origin}': module '{self.path}' of type {self.type_name}: {why}")

    def axis(self, dim: int, what: str = "dim") -> int:
        """Per-sample axis for a torch ``dim`` of the full (batch[, time], ...) tensor."""
        full = len(self.in_shape) + self.lead
        d = int(dim) + full if int(dim) < 0 else int(dim)
        if not 0 <= d < full:
            raise self.unsupported(f"{what}={dim} out of range for a {full}-D input")
        if d < self.lead:
            axes = "batch axis 0" if self.lead == 1 else "batch/time axes 0, 1"
            raise self.unsupported(f"{what}={dim} acts on the {axes}, which must stay in place")
        return d - self.lead


@dataclasses.dataclass(frozen=True)
class Leaf:
    """A registered leaf module type."""

    package: str  # module prefix of the class, e.g. "torch.nn", "sinabs", "nmtoolchain.nn"
    name: str  # class name (TorchScript's ``original_name``)
    translate: Callable[[Any, LeafContext], List[Emitted]]
    time_major: bool = False  # works on (batch, time, ...) tensors


def _array(t: Any) -> np.ndarray:
    return as_array(t)


def _opt_array(t: Any) -> Optional[np.ndarray]:
    return None if t is None else as_array(t)


def _pair(v: Any) -> Tuple[int, ...]:
    return tuple(int(x) for x in (v if isinstance(v, (tuple, list)) else (v, v)))


# --------------------------------------------------------------- torch.nn
def _linear(m: Any, ctx: LeafContext) -> List[Emitted]:
    w, b = m.weight, m.bias
    return [(Affine(_array(w), _array(b)) if b is not None else Linear(_array(w)), {})]


def _conv_padding(m: Any, ctx: LeafContext, nd: int) -> Tuple[int, ...]:
    if getattr(m, "padding_mode", "zeros") != "zeros":
        raise ctx.unsupported(f"padding_mode={m.padding_mode!r} (only 'zeros')")
    pad = m.padding
    if isinstance(pad, str):
        if pad == "valid":
            return (0,) * nd
        k = tuple(int(s) for s in m.weight.shape[2:])
        dil = tuple(int(d) for d in m.dilation)
        total = [d * (kk - 1) for d, kk in zip(dil, k)]
        if any(t % 2 for t in total):
            raise ctx.unsupported("padding='same' with an even kernel pads unevenly")
        return tuple(t // 2 for t in total)
    return tuple(int(p) for p in pad)


def _conv(cls: type, nd: int) -> Callable[[Any, LeafContext], List[Emitted]]:
    def translate(m: Any, ctx: LeafContext) -> List[Emitted]:
        padding = _conv_padding(m, ctx, nd)
        op = cls(_array(m.weight), _opt_array(m.bias), stride=tuple(m.stride), padding=padding,
                 dilation=tuple(m.dilation), groups=int(m.groups))
        return [(op, {})]
    return translate


def _batch_norm(m: Any, ctx: LeafContext) -> List[Emitted]:
    if m.running_mean is None or m.running_var is None:
        raise ctx.unsupported("track_running_stats=False (batch statistics at inference)")
    n = int(m.running_mean.shape[0])
    weight = _array(m.weight) if m.weight is not None else np.ones(n, np.float32)
    bias = _array(m.bias) if m.bias is not None else np.zeros(n, np.float32)
    if ctx.lead != 1:
        raise ctx.unsupported("batch norm on a (batch, time, ...) tensor")
    axis = ctx.axis(1, "channel axis")  # torch normalizes axis 1, right after the batch
    return [(BatchNorm(_array(m.running_mean), _array(m.running_var), weight, bias,
                       eps=float(m.eps), axis=axis), {})]


def _layer_norm(m: Any, ctx: LeafContext) -> List[Emitted]:
    shape = tuple(int(s) for s in m.normalized_shape)
    weight = _array(m.weight) if m.weight is not None else np.ones(shape, np.float32)
    bias = _array(m.bias) if getattr(m, "bias", None) is not None else np.zeros(shape, np.float32)
    return [(LayerNorm(weight, bias, eps=float(m.eps)), {})]


def _relu(m: Any, ctx: LeafContext) -> List[Emitted]:
    return [(ReLU(), {})]


def _gelu(m: Any, ctx: LeafContext) -> List[Emitted]:
    return [(GELU(approximate=str(getattr(m, "approximate", "none"))), {})]


def _softmax(m: Any, ctx: LeafContext) -> List[Emitted]:
    if m.dim is None:
        raise ctx.unsupported("dim=None (implicit softmax axis)")
    return [(Softmax(axis=ctx.axis(m.dim)), {})]


def _avg_pool(m: Any, ctx: LeafContext) -> List[Emitted]:
    if m.ceil_mode:
        raise ctx.unsupported("ceil_mode=True")
    if m.divisor_override:
        raise ctx.unsupported("divisor_override")
    if not m.count_include_pad and any(_pair(m.padding)):
        raise ctx.unsupported("count_include_pad=False with padding")
    return [(AvgPool2d(_pair(m.kernel_size), _pair(m.stride if m.stride is not None else 0),
                       _pair(m.padding)), {})]


def _max_pool(m: Any, ctx: LeafContext) -> List[Emitted]:
    if m.ceil_mode:
        raise ctx.unsupported("ceil_mode=True")
    if any(d != 1 for d in _pair(m.dilation)):
        raise ctx.unsupported(f"dilation={m.dilation}")
    if getattr(m, "return_indices", False):
        raise ctx.unsupported("return_indices=True")
    return [(MaxPool2d(_pair(m.kernel_size), _pair(m.stride if m.stride is not None else 0),
                       _pair(m.padding)), {})]


def _flatten(m: Any, ctx: LeafContext) -> List[Emitted]:
    start = ctx.axis(m.start_dim, "start_dim")
    end = ctx.axis(m.end_dim, "end_dim")
    return [(Flatten(start_dim=start, end_dim=end), {})]


def _elide(m: Any, ctx: LeafContext) -> List[Emitted]:
    return []


# ----------------------------------------------------------------- sinabs
def _sinabs_spike(m: Any, ctx: LeafContext) -> Dict[str, Any]:
    """Spike/reset/threshold fields shared by sinabs IAF and LIF (synsense_nir.md §2.1)."""
    if getattr(m, "tau_syn", None) is not None or getattr(m, "alpha_syn", None) is not None:
        raise ctx.unsupported("synaptic current (tau_syn) is not supported")
    fn = m.spike_fn
    fn_name = getattr(fn, "__name__", type(fn).__name__)
    if fn_name == "MultiSpike":
        spike = "multi"  # trunc(v / thr) spikes for v > 0: at least one iff v >= thr
    elif fn_name == "SingleSpike":
        spike = "single"  # fires at v >= thr
    else:
        raise ctx.unsupported(f"spike_fn {fn_name} (supported: SingleSpike, MultiSpike)")
    thr = _array(m.spike_threshold)
    reset_fn = m.reset_fn
    reset_name = type(reset_fn).__name__
    if reset_name == "MembraneSubtract":
        sub = getattr(reset_fn, "subtract_value", None)
        if sub is not None and not np.allclose(float(sub), thr):
            raise ctx.unsupported(
                f"MembraneSubtract(subtract_value={sub}) differs from the threshold")
        reset, v_reset = "subtract", 0.0
    elif reset_name == "MembraneReset":
        v_reset = float(getattr(reset_fn, "reset_value", 0.0))
        if v_reset != 0.0:  # sinabs adds reset_value to every neuron, spiking or not
            raise ctx.unsupported(f"MembraneReset(reset_value={v_reset}) (only 0)")
        reset = "to_reset"
    else:
        raise ctx.unsupported(f"reset_fn {reset_name} (supported: MembraneSubtract, MembraneReset)")
    v_min = None if m.min_v_mem is None else _array(m.min_v_mem)
    return {"v_threshold": thr, "v_reset": v_reset, "reset": reset, "v_init": 0.0,
            "v_min": v_min, "spike": spike, "compare": ">="}


def _sinabs_iaf(m: Any, ctx: LeafContext) -> List[Emitted]:
    fields = _sinabs_spike(m, ctx)
    ann = {"sinabs": {"layer": ctx.type_name, "spike_fn": _fn_name(m.spike_fn),
                      "reset_fn": type(m.reset_fn).__name__}}
    return [(IF(r=1.0, **fields), ann)]


def _fn_name(fn: Any) -> str:
    return getattr(fn, "__name__", type(fn).__name__)


def _sinabs_tau_r(m: Any, ctx: LeafContext) -> Tuple[np.ndarray, np.ndarray, Dict[str, Any]]:
    """tau in steps and the input gain r that reproduce sinabs's update.

    The op's ``discretization`` field says which one-step update reproduces
    the source: ``exponential`` (here) or ``euler`` (nmtc's LIF).

    sinabs: v <- a·v + (1 - a)·x (norm_input) or a·v + x, a = exp(-1/tau).
    The exact solution of tau dv/dt = -v + r·x over one step with x held is
    v <- a·v + (1 - a)·r·x, so r = 1 (norm_input) or 1/(1 - a).
    """
    tau = as_array(m.tau_mem_calculated)
    alpha = np.exp(-1.0 / tau.astype(np.float64))
    r = np.ones_like(tau) if m.norm_input else (1.0 / (1.0 - alpha)).astype(np.float32)
    ann = {"layer": ctx.type_name, "norm_input": bool(m.norm_input),
           "alpha_mem": alpha.astype(np.float32).tolist()}
    return tau, r, ann


def _sinabs_lif(m: Any, ctx: LeafContext) -> List[Emitted]:
    fields = _sinabs_spike(m, ctx)
    tau, r, ann = _sinabs_tau_r(m, ctx)
    ann.update(spike_fn=_fn_name(m.spike_fn), reset_fn=type(m.reset_fn).__name__)
    return [(LIF(tau=tau, r=r, v_leak=0.0, discretization="exponential", **fields),
             {"sinabs": ann})]


def _sinabs_exp_leak(m: Any, ctx: LeafContext) -> List[Emitted]:
    if m.min_v_mem is not None:
        raise ctx.unsupported("min_v_mem on a leaky integrator (LI has no lower clamp)")
    tau, r, ann = _sinabs_tau_r(m, ctx)
    return [(LI(tau=tau, r=r, v_leak=0.0, discretization="exponential"), {"sinabs": ann})]


def _sinabs_sum_pool(m: Any, ctx: LeafContext) -> List[Emitted]:
    if float(m.norm_type) != 1.0:
        raise ctx.unsupported(f"LPPool norm_type={m.norm_type} (SumPool2d needs 1)")
    if m.ceil_mode:
        raise ctx.unsupported("ceil_mode=True")
    k = _pair(m.kernel_size)
    return [(SumPool2d(k, _pair(m.stride) if m.stride is not None else k, (0, 0)), {})]


# -------------------------------------------------------------------- nmtc
def _nmtc_qcfs(m: Any, ctx: LeafContext) -> List[Emitted]:
    return [(QCFS(levels=int(m.levels), threshold=_array(m.threshold), shift=float(m.shift)), {})]


def _nmtc_spike_mask(m: Any, ctx: LeafContext) -> List[Emitted]:
    return [(SpikeMask(p=float(m.p), seed=m.seed), {"rsm_role": str(m.role)})]


def _nmtc_neuron_fields(m: Any) -> Dict[str, Any]:
    return {"v_threshold": float(m.v_threshold), "reset": str(m.reset),
            "v_reset": float(m.v_reset), "v_init": float(m.v_init), "compare": str(m.compare),
            "spike": "single", "v_min": None}


def _nmtc_if(m: Any, ctx: LeafContext) -> List[Emitted]:
    return [(IF(r=1.0, **_nmtc_neuron_fields(m)), {})]


def _nmtc_lif(m: Any, ctx: LeafContext) -> List[Emitted]:
    # v <- v + (v_leak - v + x) / tau: forward Euler of the IR's LIF with dt = 1
    op = LIF(tau=float(m.tau), r=1.0, v_leak=float(m.v_leak), discretization="euler",
             **_nmtc_neuron_fields(m))
    return [(op, {})]


def _nmtc_plif(m: Any, ctx: LeafContext) -> List[Emitted]:
    # inference: a LIF with the learned leak, tau = 1 / sigmoid(w)
    tau = 1.0 / (1.0 + np.exp(-float(m.w.detach().reshape(-1)[0])))
    op = LIF(tau=float(1.0 / tau), r=1.0, v_leak=float(m.v_leak), discretization="euler",
             **_nmtc_neuron_fields(m))
    return [(op, {})]


def _nmtc_step_wise(m: Any, ctx: LeafContext) -> List[Emitted]:
    # the wrapped layer acts once per step, which is what every IR node does
    inner = m.module
    leaf = leaf_of(inner)
    if leaf is None or leaf.time_major:
        raise ctx.unsupported(f"wraps {class_path(inner)}, which is not a per-step layer nmtc "
                              "translates")
    inner_ctx = LeafContext(ctx.path + ".module", class_path(inner).rpartition(".")[2],
                            ctx.in_shape, 1, ctx.origin)
    return leaf.translate(inner, inner_ctx)


def _nmtc_token_batch_norm(m: Any, ctx: LeafContext) -> List[Emitted]:
    inner_ctx = LeafContext(ctx.path + ".bn", "BatchNorm1d", tuple(ctx.in_shape[-1:]), 1,
                            ctx.origin)
    ((op, extra),) = _batch_norm(m.bn, inner_ctx)
    op.axis = len(ctx.in_shape) - 1  # the features: the last per-sample axis
    return [(op, extra)]


LEAVES: List[Leaf] = [
    Leaf("torch.nn", "Linear", _linear),
    Leaf("torch.nn", "Conv1d", _conv(Conv1d, 1)),
    Leaf("torch.nn", "Conv2d", _conv(Conv2d, 2)),
    Leaf("torch.nn", "BatchNorm1d", _batch_norm),
    Leaf("torch.nn", "BatchNorm2d", _batch_norm),
    Leaf("torch.nn", "LayerNorm", _layer_norm),
    Leaf("torch.nn", "ReLU", _relu),
    Leaf("torch.nn", "GELU", _gelu),
    Leaf("torch.nn", "Softmax", _softmax),
    Leaf("torch.nn", "AvgPool2d", _avg_pool),
    Leaf("torch.nn", "MaxPool2d", _max_pool),
    Leaf("torch.nn", "Flatten", _flatten),
    Leaf("torch.nn", "Identity", _elide),
    Leaf("torch.nn", "Dropout", _elide),
    Leaf("torch.nn", "Dropout1d", _elide),
    Leaf("torch.nn", "Dropout2d", _elide),
    Leaf("sinabs", "IAF", _sinabs_iaf, time_major=True),
    Leaf("sinabs", "IAFSqueeze", _sinabs_iaf),
    Leaf("sinabs", "LIF", _sinabs_lif, time_major=True),
    Leaf("sinabs", "LIFSqueeze", _sinabs_lif),
    Leaf("sinabs", "ExpLeak", _sinabs_exp_leak, time_major=True),
    Leaf("sinabs", "ExpLeakSqueeze", _sinabs_exp_leak),
    Leaf("sinabs", "SumPool2d", _sinabs_sum_pool),
    Leaf("nmtoolchain.nn", "QCFS", _nmtc_qcfs),
    Leaf("nmtoolchain.nn", "SpikeMask", _nmtc_spike_mask),
    Leaf("nmtoolchain.nn", "IFNeuron", _nmtc_if, time_major=True),
    Leaf("nmtoolchain.nn", "LIFNeuron", _nmtc_lif, time_major=True),
    # Spikformer family (#11)
    Leaf("nmtoolchain.nn", "PLIFNeuron", _nmtc_plif, time_major=True),
    Leaf("nmtoolchain.nn", "StepWise", _nmtc_step_wise, time_major=True),
    Leaf("nmtoolchain.nn", "TokenBatchNorm", _nmtc_token_batch_norm),
]

_BY_NAME: Dict[str, List[Leaf]] = {}
for _leaf in LEAVES:
    _BY_NAME.setdefault(_leaf.name, []).append(_leaf)


def class_path(module: Any) -> str:
    """Qualified class name of a Python or TorchScript module, e.g.
    ``torch.nn.modules.conv.Conv2d`` (TorchScript's ``__torch__.`` prefix and
    ``___torch_mangle_N`` parts removed)."""
    c = getattr(module, "_c", None)
    if c is not None and hasattr(c, "_type"):
        q = c._type().qualified_name()
        parts = [p for p in q.split(".") if not p.startswith("___torch_mangle_")]
        if parts and parts[0] == "__torch__":
            parts = parts[1:]
        return ".".join(parts)
    t = type(module)
    return f"{t.__module__}.{t.__qualname__}"


def find_leaf(qualified: str) -> Optional[Leaf]:
    """The registered leaf for a qualified class name, or None."""
    mod, _, name = qualified.rpartition(".")
    for leaf in _BY_NAME.get(name, ()):
        if mod == leaf.package or mod.startswith(leaf.package + "."):
            return leaf
    return None


def leaf_of(module: Any) -> Optional[Leaf]:
    """The registered leaf for a module object (Python or TorchScript), or None."""
    return find_leaf(class_path(module))


def supported_leaf_names() -> List[str]:
    """Class names of all leaves, for error messages."""
    return sorted({leaf.name for leaf in LEAVES})


def is_vendor_module(qualified: str) -> bool:
    """A torch.nn or sinabs class: the tracer must not trace into it even if unsupported."""
    if qualified.startswith("torch.nn.modules.container."):
        return False
    return qualified.startswith(("torch.nn.", "sinabs."))


__all__ = ["Leaf", "LeafContext", "LEAVES", "class_path", "find_leaf", "leaf_of",
           "supported_leaf_names", "is_vendor_module"]
