"""Quantize a float spiking transformer (Spikformer-style) into a Lava process graph.

The netx quantizer (:mod:`nmtoolchain.quantize.loihi`) handles chains of
synapse + neuron layers. A Spikformer also has residual ``Add``, spike x spike
``MatMul`` (Q·Kᵀ, A·V), axis permutations, a constant attention ``Scale``,
spike ``MaxPool2d`` and a token ``Mean`` before the head. This module turns
such a float graph (after its BatchNorms are folded) into a graph of

* ``Input``: graded integers ``round(x * input_levels)`` (digits: 0..16), held
  for the ``T`` input steps and zero afterwards;
* ``Conv2d`` / ``Linear``: integer weights, no synapse bias (Lava ``Dense``;
  a conv is unrolled into one Dense by the Lava graph builder);
* ``CubaLIF`` with :class:`~nmtoolchain.numerics.loihi.LoihiCubaNeuron`
  numerics (Lava ``LIFReset``);
* ``Add``, ``MatMul``, ``Transpose``, ``Reshape``, ``Flatten``, ``Output``.

Rules (dt = 1 step, float LIF as in :mod:`nmtoolchain.quantize.loihi`):

* A synapse (bias b, BN folded) + LIF (k = dt/tau, euler) with input unit
  ``x = unit * x_int`` gets one scale s (integer v per float v): ``W_int =
  round(s k r W unit)`` (|W_int| <= 254), ``bias_mant = round(s k (r b +
  v_leak) + s v_bias)`` (13-bit), ``vThMant = round(s theta)``, iDecay 4096
  (no current memory), vDecay = round(4096 k).
* A LIF driven directly by an integer tensor (A·V counts, scaled by the
  attention ``Scale``) has no weight to scale: s = 1 / (k r unit), and
  vThMant = round(s theta) (reported when it rounds).
* ``Scale`` nodes vanish into their tensor's unit.
* ``MaxPool2d`` of spikes is OR over the window: a conv of ones (own channel,
  same kernel, stride, padding) into a memoryless neuron (iDecay = vDecay =
  4096) with vThMant 0: fires iff a spike is in the window. Exact.
* ``Mean`` over tokens + ``Affine`` head + ``Output``: one Linear over the
  flattened tokens (W / N per token) into a readout that sums its input over
  the run (iDecay 0: u persists; vDecay 4096: v = u + bias) with bias
  ``T * b``: v at the last step is s * sum over t of the float logits.
* Every synapse delays by one step. ``Add`` and ``MatMul`` need both inputs
  of the same step, so the earlier one is delayed with relays (identity
  Linear + memoryless neuron, vThMant 0: the same spikes one step later; a
  delayed sum is the sum of delayed spikes). Exact.
* A neuron of depth d (synapses from the input) first sees input at step d
  (0-based); its bias would charge it before. Every neuron is reset (Lava
  ``LIFReset``) at step d, so from then on it computes the float neuron's
  steps 0..T-1 (up to rounding). ``metadata['lava_run']`` records the
  protocol: ``steps = T + D`` (D the readout's depth), ``input_steps = T``,
  ``reset_interval`` and the node annotation ``reset_depth``.

What is not exact against the float model: the rounding of weights, biases
and thresholds, and Loihi's ``v > vth`` for the float ``v >= vth``
(differs only on equality). Lava and nmtc's loihi numerics agree bit for bit
(``nmtc verify``). Anything else (a LIF fed by something other than a synapse
or an integer tensor, an Add of tensors with different units, a delay of a
graded tensor that is not a sum of spike tensors) is refused naming the node.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from nmtoolchain.errors import BadInputError, NotExpressibleError
from nmtoolchain.ir import (Add, Conv2d, CubaLIF, Flatten, Graph, Input, Linear, MatMul,
                           Output, Reshape, Transpose)
from nmtoolchain.numerics.loihi import (BIAS_EXP, BIAS_MANT_MAX, DECAY_UNIT, STATE_LIMIT,
                                        VTH_MANT_MAX,
                                        LoihiCubaNeuron, tau_from_decay)
from nmtoolchain.numerics.loihi import READOUT_V_TH_MANT

#: Ops of a float graph this quantizer rewrites (besides BatchNorm, folded first).
TOKEN_GRAPH_OPS = ("Input", "Conv2d", "Affine", "Linear", "LIF", "MaxPool2d", "Add", "MatMul",
                   "Scale", "Transpose", "Reshape", "Flatten", "Mean", "Output", "BatchNorm")
#: Largest integer weight magnitude used (Lava Dense: 8 bits, 9 with mixed signs).
W_MAX = 254
_SYNAPSES = ("Conv2d", "Affine", "Linear")
_LAYOUT = ("Transpose", "Reshape", "Flatten")


@dataclasses.dataclass
class _T:
    """A quantized tensor: its node in the new graph, float value per integer,
    depth (steps behind the input) and whether it holds 0/1 spikes."""

    name: str
    unit: float
    depth: int
    spikes: bool
    vmax: float = 1.0  # largest integer value it holds


@dataclasses.dataclass
class TokenLayer:
    """One quantized neuron layer: scale and what bound it."""

    layer: str
    float_neuron: str
    scale: float
    bound_by: str
    v_th_mant: int
    depth: int
    notes: List[str] = dataclasses.field(default_factory=list)

    def as_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class TokenQuantReport:
    """What :func:`quantize_token_graph` did."""

    layers: List[TokenLayer]
    relays: int
    input_levels: int
    steps: int
    run_steps: int
    readout: str
    notes: List[str] = dataclasses.field(default_factory=list)

    def as_dict(self) -> Dict[str, Any]:
        return {"method": "token_graph", "layers": [r.as_dict() for r in self.layers],
                "relays": self.relays, "input_levels": self.input_levels,
                "steps": self.steps, "run_steps": self.run_steps, "readout": self.readout,
                "notes": list(self.notes)}


def is_token_graph(graph: Graph) -> bool:
    """A float spiking graph with ops only this quantizer handles (MatMul, Transpose,
    MaxPool, Mean, ...): a Spikformer-style network."""
    names = {n.op_name for n in graph}
    return bool(names & {"MatMul", "Transpose", "Mean"}) and "LIF" in names \
        and names <= set(TOKEN_GRAPH_OPS)


#: Why an op outside TOKEN_GRAPH_OPS cannot be part of an exact fixed-point Lava graph.
WHY_NOT = {
    "Softmax": "is a softmax (exp and a division per row of analog attention scores), which "
               "has no Loihi fixed-point form; as a host process it would run in floating "
               "point, which nmtc's loihi numerics do not model, so Lava-vs-nmtc exactness "
               "cannot be claimed",
    "SpikeMask": "draws a random mask every step; a Lava process would have to replay nmtc's "
                 "seeded torch random stream draw for draw",
    "LayerNorm": "needs per-token mean and variance (a division and a square root), which "
                 "have no Loihi fixed-point form",
    "IF": "is an MST/QCFS IF neuron (reset by subtraction, pre-charge) inside residual or "
          "attention paths; Loihi's reset-to-zero adaptation exists only for layer chains",
    "Roll": "is a cyclic shift of the token grid, which the token-graph quantizer does not map",
    "Bias": "adds a bias to a tensor outside a synapse; no neuron carries it",
    "GELU": "is an analog activation with no spiking fixed-point form",
}


class TokenGraphRefusal(NotExpressibleError):
    """A node the token-graph quantizer cannot express exactly (``node``, ``op``, ``reason``)."""

    def __init__(self, message: str, node: str, op: str, reason: str) -> None:
        super().__init__(message)
        self.node, self.op, self.reason = node, op, reason


def token_graph_refusals(graph: Graph) -> List[Tuple[str, str, str]]:
    """(node, op, reason) for every node :func:`quantize_token_graph` refuses by op;
    when there is none, the first structural refusal of a dry run of the quantizer."""
    out = []
    for n in graph.topological_order():
        if n.op_name not in TOKEN_GRAPH_OPS:
            out.append((n.name, n.op_name, WHY_NOT.get(n.op_name, (
                "has no fixed-point form in nmtc's Lava process graph (supported: "
                + ", ".join(TOKEN_GRAPH_OPS) + ")"))))
        elif n.op_name == "LIF" and (n.op.reset not in ("to_reset", "zero")
                                     or np.any(np.asarray(n.op.v_reset) != 0)):
            out.append((n.name, n.op_name, "Loihi resets to zero; this LIF resets by "
                        f"{n.op.reset} to {np.asarray(n.op.v_reset).tolist()}"))
    if not out:
        try:
            _Quantizer(graph, 1, 16).run()
        except TokenGraphRefusal as e:
            out.append((e.node, e.op, e.reason))
    order = list(WHY_NOT)
    return sorted(out, key=lambda r: order.index(r[1]) if r[1] in order else len(order))


class _Quantizer:
    def __init__(self, graph: Graph, steps: int, input_levels: int) -> None:
        from nmtoolchain.passes.fold_batchnorm import fold_batchnorm

        self.src = fold_batchnorm(graph).infer_shapes()
        left = self.src.metadata.get("unfolded_batchnorm") or []
        if left:
            raise TokenGraphRefusal(f"{self._origin()}: batch norm that cannot be folded into "
                                    f"the layer before it: {left[0]}", str(left[0]).split("'")[1]
                                    if "'" in str(left[0]) else "?", "BatchNorm",
                                    f"cannot be folded into the layer before it: {left[0]}")
        self.T, self.levels = int(steps), int(input_levels)
        self.q = Graph({"source": dict(self.src.metadata.get("source", {}))})
        self.t: Dict[str, _T] = {}
        self.layers: List[TokenLayer] = []
        self.relays = 0
        self._delayed: Dict[Tuple[str, int], _T] = {}
        self.notes: List[str] = []

    def _origin(self) -> str:
        s = self.src.metadata.get("source", {}) if hasattr(self, "src") else {}
        return str(s.get("path", "graph")) if isinstance(s, dict) else "graph"

    def _refuse(self, node: Any, why: str) -> TokenGraphRefusal:
        reason = f"cannot run in Loihi fixed point as a Lava process graph: {why}"
        return TokenGraphRefusal(f"{self._origin()}: node '{node.name}' (op {node.op_name}) "
                                 f"{reason}", node.name, node.op_name, reason)

    def _add(self, name: str, op: Any, inputs: Any = (), **kw: Any) -> None:
        """Add a node to the new graph and infer its shape alone (the whole
        graph's inference per node would be quadratic in its size)."""
        self.q.add(name, op, list(inputs), **kw)
        node = self.q[name]
        node.shape = tuple(int(d) for d in op.infer_shape([self.q[i].shape for i in inputs]))

    def _name(self, base: str) -> str:
        name, i = base, 1
        while name in self.q.nodes:
            name, i = f"{base}_{i}", i + 1
        return name

    # ------------------------------------------------------------- neurons
    def _neuron(self, name: str, src: str, *, i_decay: int, v_decay: int, vth: int,
                bias: Any = 0, depth: int, readout: bool = False) -> str:
        bias = np.asarray(bias, np.int64)
        tau_mem = tau_from_decay(v_decay)
        self._add(name, CubaLIF(tau_syn=float(tau_from_decay(i_decay)), tau_mem=float(tau_mem),
                                 v_threshold=float(vth), v_bias=np.float32(0)), [src],
                   numerics=LoihiCubaNeuron(i_decay=i_decay, v_decay=v_decay, v_th_mant=vth,
                                            bias_mant=bias, bias_exp=BIAS_EXP, ref_delay=1,
                                            readout=readout))
        self.q[name].annotations["reset_depth"] = int(depth)
        return name

    def _relay(self, x: _T) -> _T:
        """x one step later: identity Linear + memoryless neuron firing on one spike."""
        shape = tuple(self.q[x.name].shape)
        base = self._name(f"{x.name}_relay")
        self._add(f"{base}_fc", Linear(np.eye(shape[-1], dtype=np.float32)), [x.name])
        self._neuron(base, f"{base}_fc", i_decay=DECAY_UNIT, v_decay=DECAY_UNIT, vth=0,
                     depth=x.depth + 1)
        self.relays += 1
        return _T(base, 1.0, x.depth + 1, True)

    def _delay(self, x: _T, k: int, who: Any) -> _T:
        """x delayed by k steps (relays of spikes; sums and layouts rebuilt)."""
        if k == 0:
            return x
        key = (x.name, k)
        if key in self._delayed:
            return self._delayed[key]
        node = self.q[x.name]
        if x.spikes and node.op_name == "CubaLIF":
            out = self._relay(self._delay(x, k - 1, who))
        elif node.op_name == "Add":
            a, b = (self._delay(self._info_q[i], k, who) for i in node.inputs)
            name = self._name(f"{x.name}_d{k}")
            self._add(name, Add(), [a.name, b.name])
            out = _T(name, x.unit, x.depth + k, False, x.vmax)
        elif node.op_name in _LAYOUT:
            inner = self._delay(self._info_q[node.inputs[0]], k, who)
            name = self._name(f"{x.name}_d{k}")
            self._add(name, dataclasses.replace(node.op), [inner.name])
            out = _T(name, x.unit, x.depth + k, x.spikes, x.vmax)
        else:
            raise self._refuse(who, f"its input '{x.name}' ({node.op_name}) arrives "
                               f"{k} step(s) early and only spikes and sums of spikes can be "
                               "delayed exactly")
        self._info_q[out.name] = out
        self._delayed[key] = out
        return out

    # ---------------------------------------------------------------- run
    def run(self) -> Tuple[Graph, TokenQuantReport]:
        src = self.src
        self._info_q: Dict[str, _T] = {}
        pending: Dict[str, Any] = {}  # float synapse name -> its node (waiting for its LIF)
        readout = None
        for node in src.topological_order():
            op = node.op_name
            ins = [self.t.get(i) for i in node.inputs]
            if op == "Input":
                shape = tuple(node.shape)
                self._add("input", Input(shape))
                self._set(node.name, _T("input", 1.0 / self.levels, 0, False, float(self.levels)))
            elif op in _SYNAPSES:
                users = src.users(node.name)
                if len(users) == 1 and users[0].op_name == "LIF":
                    pending[node.name] = node
                elif ins[0] is not None and ins[0].name == "__mean__":
                    readout = self._readout(node, users)
                else:
                    raise self._refuse(node, "a synapse must feed exactly one LIF neuron "
                                       "(or be the head after the token mean)")
            elif op == "LIF":
                self._lif(node, pending)
            elif op == "MaxPool2d":
                self._maxpool(node, ins[0])
            elif op == "Scale":
                s = np.asarray(node.op.scale, np.float64)
                if s.size != 1 or float(s) <= 0:
                    raise self._refuse(node, "only one positive constant scale folds into a unit")
                x = ins[0]
                self._set(node.name, _T(x.name, x.unit * float(s), x.depth, False, x.vmax))
            elif op in ("Add", "MatMul"):
                self._binary(node, ins)
            elif op in _LAYOUT:
                x = ins[0]
                name = self._name(node.name)
                self._add(name, dataclasses.replace(node.op), [x.name])
                self._set(node.name, _T(name, x.unit, x.depth, x.spikes, x.vmax))
            elif op == "Mean":
                shape = tuple(src[node.inputs[0]].shape)
                if len(shape) != 2 or node.op.axis % 2 != 0:
                    raise self._refuse(node, "only a mean over the tokens of (tokens, D) is "
                                       "folded into the head")
                self._mean_src, self._mean_n = ins[0], shape[0]
                self.t[node.name] = _T("__mean__", ins[0].unit, ins[0].depth, False)
            elif op == "Output":
                if readout is None:
                    raise self._refuse(node, "the output must be the head Affine after the "
                                       "token mean (summed over time by a readout neuron)")
                self._add("output", Output(), [readout])
            elif op == "BatchNorm":
                raise self._refuse(node, "batch norm that could not be folded")
            else:
                raise self._refuse(node, "not supported")
        depth = max(t.depth for t in self._info_q.values())
        interval = self.T + depth + 1
        self.q.metadata["lava_run"] = {"input_steps": self.T, "steps": self.T + depth,
                                       "reset_interval": interval, "reset_offset": 0,
                                       "input_levels": self.levels, "readout": readout,
                                       "read": "v of the readout at the last step"}
        self.q.metadata["input_encoding"] = {"method": "graded", "scale": self.levels,
                                             "steps": self.T}
        rep = TokenQuantReport(self.layers, self.relays, self.levels, self.T, self.T + depth,
                               readout, self.notes)
        self.q.metadata["token_quantization"] = rep.as_dict()
        return self.q.infer_shapes(), rep

    def _set(self, fname: str, t: _T) -> None:
        self.t[fname] = t
        self._info_q[t.name] = t

    def _lif(self, node: Any, pending: Dict[str, Any]) -> None:
        op = node.op

        def uniform(field: str) -> float:
            """The neuron parameter as one number: the Lava processes take one per layer."""
            values = np.unique(np.asarray(getattr(op, field), dtype=np.float64))
            if values.size != 1:
                raise self._refuse(node, f"{field} differs between neurons ({values.size} "
                                         "values); one value per layer is supported")
            return float(values[0])

        tau = uniform("tau")
        if getattr(op, "discretization", "euler") == "exponential":
            k = 1.0 - math.exp(-1.0 / tau)
        else:
            k = 1.0 / tau
        r, theta = uniform("r"), uniform("v_threshold")
        vb, leak = uniform("v_bias"), uniform("v_leak")
        v_decay = int(round(DECAY_UNIT * k))
        syn = pending.pop(node.inputs[0], None)
        notes: List[str] = []
        name = self._name(node.name)
        if syn is None:  # driven directly by an integer tensor
            x = self.t[node.inputs[0]]
            if x.spikes:
                raise self._refuse(node, "a neuron reading spikes without a synapse")
            s = 1.0 / (k * r * x.unit)
            vth = int(round(theta * s))
            if not math.isclose(vth, theta * s, rel_tol=1e-9):
                notes.append(f"threshold {theta * s:g} rounded to {vth}")
            bias = round(s * (k * leak + vb))
            self._neuron(name, x.name, i_decay=DECAY_UNIT, v_decay=v_decay, vth=vth,
                         bias=bias, depth=x.depth)
            self.layers.append(TokenLayer(name, node.name, s, "integer input (no weights)",
                                          vth, x.depth, notes))
            self._set(node.name, _T(name, 1.0, x.depth, True))
            return
        x = self.t[syn.inputs[0]]
        w = np.asarray(syn.op.weight, np.float64) * k * r * x.unit
        b = np.asarray(syn.op.bias if getattr(syn.op, "bias", None) is not None else
                       np.zeros(w.shape[0]), np.float64)
        b = b * k * r + k * leak + vb
        bounds = {"weights": W_MAX / max(np.abs(w).max(), 1e-30),
                  "bias": BIAS_MANT_MAX / max(np.abs(b).max(), 1e-30),
                  "threshold": VTH_MANT_MAX / max(theta, 1e-30)}
        bound = min(bounds, key=bounds.get)
        s = bounds[bound]
        w_int = np.round(w * s).astype(np.float32)
        vth = int(round(theta * s))
        bias = np.round(b * s).astype(np.int64)
        if syn.op_name == "Conv2d":
            bias = bias.reshape(-1, *([1] * (len(node.shape) - 1)))
            new = Conv2d(w_int, None, tuple(syn.op.stride), tuple(syn.op.padding),
                         tuple(syn.op.dilation), int(syn.op.groups))
        else:
            new = Linear(w_int)
        fc = self._name(syn.name)
        self._add(fc, new, [x.name])
        self._neuron(name, fc, i_decay=DECAY_UNIT, v_decay=v_decay, vth=vth,
                     bias=np.broadcast_to(bias, tuple(node.shape)) if bias.ndim > 1 else bias,
                     depth=x.depth + 1)
        self.layers.append(TokenLayer(name, node.name, float(s), bound, vth, x.depth + 1, notes))
        self._set(node.name, _T(name, 1.0, x.depth + 1, True))

    def _maxpool(self, node: Any, x: _T) -> None:
        if not x.spikes:
            raise self._refuse(node, "max pooling is exact here only on spikes (OR)")
        c = int(self.q[x.name].shape[0])
        kh, kw = node.op.kernel_size
        stride = tuple(node.op.stride) if any(node.op.stride) else (kh, kw)
        w = np.zeros((c, c, kh, kw), np.float32)
        w[np.arange(c), np.arange(c)] = 1.0
        fc = self._name(f"{node.name}_or")
        self._add(fc, Conv2d(w, None, stride, tuple(node.op.padding)), [x.name])
        name = self._name(node.name)
        self._neuron(name, fc, i_decay=DECAY_UNIT, v_decay=DECAY_UNIT, vth=0, depth=x.depth + 1)
        self.layers.append(TokenLayer(name, node.name, 1.0, "max of spikes = OR (exact)", 0,
                                      x.depth + 1))
        self._set(node.name, _T(name, 1.0, x.depth + 1, True))

    def _binary(self, node: Any, ins: List[_T]) -> None:
        a, b = ins
        if node.op_name == "Add" and not math.isclose(a.unit, b.unit, rel_tol=1e-12):
            raise self._refuse(node, f"adds tensors of different units ({a.unit:g}, {b.unit:g})")
        d = max(a.depth, b.depth)
        a, b = self._delay(a, d - a.depth, node), self._delay(b, d - b.depth, node)
        name = self._name(node.name)
        self._add(name, Add() if node.op_name == "Add" else MatMul(), [a.name, b.name])
        if node.op_name == "Add":
            unit, vmax = a.unit, a.vmax + b.vmax
        else:
            inner = int(self.q[a.name].shape[-1])
            unit, vmax = a.unit * b.unit, a.vmax * b.vmax * inner
        self._set(node.name, _T(name, unit, d, False, vmax))

    def _readout(self, head: Any, users: List[Any]) -> str:
        if head.op_name == "Conv2d" or len(users) != 1 or users[0].op_name != "Output":
            raise self._refuse(head, "the head after the token mean must be a Linear/Affine "
                               "read by the Output")
        x, n = self._mean_src, self._mean_n
        w = np.asarray(head.op.weight, np.float64) * x.unit / n  # (C, D)
        b = np.asarray(head.op.bias if getattr(head.op, "bias", None) is not None else
                       np.zeros(w.shape[0]), np.float64) * self.T
        wt = np.tile(w, (1, n))  # flat index = token * D + d
        # u sums T steps of W x (x <= vmax) and must stay inside Loihi's 24-bit state
        reach = float(np.abs(wt).sum(1).max()) * x.vmax * self.T + float(np.abs(b).max())
        bounds = {"weights": W_MAX / max(np.abs(wt).max(), 1e-30),
                  "bias": BIAS_MANT_MAX / max(np.abs(b).max(), 1e-30),
                  "24-bit state": STATE_LIMIT / 64.0 / max(reach, 1e-30)}
        bound = min(bounds, key=bounds.get)
        s = bounds[bound]
        flat = self._name(f"{head.name}_tokens")
        self._add(flat, Flatten(0, -1), [x.name])
        fc = self._name(head.name)
        self._add(fc, Linear(np.round(wt * s).astype(np.float32)), [flat])
        name = self._name(f"{head.name}_readout")
        self._neuron(name, fc, i_decay=0, v_decay=DECAY_UNIT, vth=READOUT_V_TH_MANT - 1,
                     bias=np.round(b * s).astype(np.int64), depth=x.depth + 1, readout=False)
        self.layers.append(TokenLayer(name, head.name, float(s), bound,
                                      READOUT_V_TH_MANT - 1, x.depth + 1,
                                      ["readout: v = s * (sum over steps of the float logits)"]))
        self._info_q[name] = _T(name, 1.0 / s, x.depth + 1, False)
        return name


def quantize_token_graph(graph: Graph, *, steps: int, input_levels: int = 16
                         ) -> Tuple[Graph, TokenQuantReport]:
    """A Spikformer-style float graph as a Loihi fixed-point Lava process graph
    (module docstring); the input graph is not modified."""
    if not isinstance(graph, Graph):
        raise BadInputError(f"quantize_token_graph needs an IR Graph, got {type(graph).__name__}")
    if isinstance(steps, bool) or int(steps) < 1:
        raise BadInputError(f"steps must be a positive integer, got {steps!r}")
    if int(input_levels) < 1:
        raise BadInputError(f"input_levels must be a positive integer, got {input_levels!r}")
    refused = token_graph_refusals(graph)
    if refused:
        n, o, why = refused[0]
        raise NotExpressibleError(f"node '{n}' (op {o}) {why}")
    return _Quantizer(graph, int(steps), int(input_levels)).run()


def readout_values(graph: Graph, x: np.ndarray, *, device: str = "cpu") -> np.ndarray:
    """v of the readout after the ``lava_run`` protocol, (B, classes), for
    analog samples ``x`` (B, *input shape) in [0, 1]: the quantized graph run
    in nmtc's loihi numerics (bit-exact with Lava)."""
    from simulators.cycle import Simulator

    run = graph.metadata["lava_run"]
    T, steps, levels = int(run["input_steps"]), int(run["steps"]), int(run["input_levels"])
    drive = lava_run_drive(graph, x)
    sim = Simulator(graph, "loihi", record=[], count=False, device=device,
                    reset_interval=int(run["reset_interval"]), reset_offset=0)
    sim.run(drive, steps)
    del T, levels
    return sim.kernels[run["readout"]].v.cpu().numpy().astype(np.float64) / 64.0


def lava_run_drive(graph: Graph, x: np.ndarray) -> np.ndarray:
    """(B, steps, *shape) integer drive: round(x * levels) for the input steps, then 0."""
    run = graph.metadata["lava_run"]
    T, steps, levels = int(run["input_steps"]), int(run["steps"]), int(run["input_levels"])
    x = np.asarray(x, np.float64)
    ints = np.round(x * levels)
    out = np.zeros((len(x), steps) + x.shape[1:], np.float32)
    out[:, :T] = ints[:, None]
    return out


__all__ = ["quantize_token_graph", "is_token_graph", "token_graph_refusals", "readout_values",
           "lava_run_drive", "TokenQuantReport", "TokenLayer", "TOKEN_GRAPH_OPS", "WHY_NOT",
           "TokenGraphRefusal"]
