"""Run a quantized IR graph in Lava as a network of Lava processes, netx or not.

lava-dl netx can only hold chains of synapse + neuron layers. A Spikformer
block also multiplies two dynamic tensors (spiking self-attention's Q·Kᵀ and
attention·V), adds residuals and permutes axes; none of that has a netx
layer. This module builds such a graph directly from Lava processes:

=================  ==========================================================
IR op              Lava process
=================  ==========================================================
Input              ``GraphSpikeSource`` (ours): row t-1 of the drive at step t,
                   as Lava's RingBuffer feeds ``net.inp`` in the netx runner
Affine / Linear    Lava's ``Dense`` (fixed_pt, bit-accurate): one step per
                   synapse; ``num_message_bits=24`` when its input is graded
                   (an Add or MatMul output), binary otherwise. A token-wise
                   Linear on (N, D) is ONE Dense over the flattened N*D
                   vector with block-diagonal weights ``kron(I_N, W)``
                   (one process instead of N; the zeros cost nothing in the
                   simulator and the result is the same integers)
Conv2d             Lava's ``Dense`` over the flattened (C, H, W) vectors with
                   the conv unrolled into one matrix (:func:`conv_as_matrix`;
                   groups 1); exact integers, one step like any synapse
CubaLIF ('loihi')  Lava's ``LIF`` (bit-accurate): du = iDecay - 1 (Lava adds
                   one back), dv = vDecay, bias_mant, bias_exp, vth = vThMant,
                   exactly as netx builds its CUBA neurons. When the graph's
                   ``metadata['lava_run']`` has a ``reset_interval`` (a
                   quantized spiking transformer), Lava's ``LIFReset`` with
                   offset = the node's ``reset_depth`` + 1, the rule
                   nmtc's simulator applies to that annotation
Add                ``GraphAdd`` (ours): integer sum of its two inputs of the
                   same step (numpy broadcasting), no delay
MatMul             ``GraphMatMul`` (ours): integer a @ b of the two inputs of
                   the same step (spikes 0/1 -> counts), no delay, graded out
Transpose          ``GraphPermute`` (ours): pure re-indexing, no delay
Flatten / Reshape  no process: every tensor travels as its C-order flat
/ Output           vector, on which a reshape is the identity
=================  ==========================================================

The same rules are the loihi-numerics kernels ``AddLoihi``, ``MatMulLoihi``
and ``TransposeLoihi`` of :mod:`simulators.cycle.kernels_loihi`, so
``Simulator(graph, 'loihi')`` and :func:`run_graph_in_lava` must agree bit for
bit at every step (:func:`check_graph_parity`).

Deployability (what :func:`deployability` reports): Input, Affine/Linear,
Conv2d, CubaLIF, Flatten, Reshape, Output are what netx (and so Loihi 2) can hold; our
custom processes (Add, MatMul, Transpose) are Python process models that run
only in Lava's CPU simulator. No Loihi 2 microcode is written for them.

Limits: one Input node, Add with exactly two inputs, synapses without delay
or bias, CubaLIF with ``LoihiCubaNeuron`` numerics (no bias-driven input
neuron, no SigmaDelta, no grouped Conv2d: the netx path runs those). An op outside
the table raises UnsupportedOpError naming the node, before Lava is imported.

Lava is imported only inside the functions that run it; the process classes
are built once in a cached function and named in the run config's
``exception_proc_model_map`` (as :mod:`simulators.lava_runner` does), so
importing this module never imports lava and Lava's model search never scans
this package. Each process (and each recorder) is one OS process in Lava's
runtime: the example Spikformer block, 18 processes plus 18 recorders, builds,
starts and runs 24 steps in about 5 s on two cores.
"""
from __future__ import annotations

import functools
import os
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Sequence, Tuple, Union

import numpy as np

from nmtoolchain.errors import BadInputError, UnsupportedOpError
from nmtoolchain.ir import Graph, Node
from nmtoolchain.numerics.loihi import LoihiCubaNeuron
from nmtoolchain.vendors import require

#: IR ops a netx file (and so Loihi 2 through lava-dl) can hold.
NETX_DEPLOYABLE_OPS = ("Input", "Affine", "Linear", "Conv2d", "CubaLIF", "Flatten", "Reshape",
                       "Output")
#: IR ops that run only as our custom Lava processes in Lava's CPU simulator.
LAVA_SIMULATOR_ONLY_OPS = ("Add", "MatMul", "Transpose")
#: Ops that need no process: the tensor's C-order flat vector passes unchanged.
_ALIAS_OPS = ("Flatten", "Reshape", "Output")
#: Graded messages between our processes and into Dense (24-bit Loihi payload).
GRADED_MESSAGE_BITS = 24


@dataclass
class ProcSpec:
    """One Lava process to build for one IR node (pure numpy; no lava)."""

    node: str
    kind: str  # source / dense / lif / add / matmul / permute
    inputs: List[str]  # names of the nodes whose process feeds this one, in port order
    size: int  # length of the flat output vector
    params: Dict[str, Any] = field(default_factory=dict)


@dataclass
class LavaGraphPlan:
    """The process network for a graph: ``procs`` in topological order and
    ``alias[name]`` = the node whose process output a no-process node shows."""

    procs: List[ProcSpec]
    alias: Dict[str, str]
    input_node: str
    shapes: Dict[str, Tuple[int, ...]]
    #: what each process sends: 'input' (the drive), 'spikes' (0/1), 'graded'
    kinds: Dict[str, str] = field(default_factory=dict)

    def process_of(self, name: str) -> str:
        while name in self.alias:
            name = self.alias[name]
        return name


@dataclass
class LavaGraphRun:
    """``outputs[name]``: (T, *shape) int64 recording of each recorded node
    (row t-1 = Lava step t, C-order). Timings in seconds."""

    outputs: Dict[str, np.ndarray]
    steps: int
    processes: int
    build_s: float = 0.0
    run_s: float = 0.0


# ------------------------------------------------------------------ planning
def _origin(graph: Graph) -> str:
    src = graph.metadata.get("source", {}) if isinstance(graph.metadata, dict) else {}
    return str(src.get("path", "graph")) if isinstance(src, dict) else "graph"


def _refuse(graph: Graph, node: Node, why: str) -> UnsupportedOpError:
    return UnsupportedOpError(f"{_origin(graph)}: node '{node.name}' (op {node.op_name}) cannot "
                              f"run as a Lava process graph: {why}")


def _dense_spec(graph: Graph, node: Node, graded: bool) -> ProcSpec:
    w = np.asarray(node.op.weight, dtype=np.float64)
    if np.any(w != np.round(w)):
        raise _refuse(graph, node, "weights are not integers; quantize for Loihi first")
    if getattr(node.op, "bias", None) is not None and np.any(node.op.bias):
        raise _refuse(graph, node, "a synapse bias has no Loihi meaning; put it on the neuron")
    if getattr(node.op, "delay", None) is not None and np.any(node.op.delay):
        raise _refuse(graph, node, "synaptic delays are not supported here (use the netx path)")
    w = w.astype(np.int64)
    lo, hi = int(w.min()) if w.size else 0, int(w.max()) if w.size else 0
    mixed = lo < 0 < hi
    # Lava's Dense clips to 8 bits (+ sign when mixed) and truncates
    # (8 - num_weight_bits + mixed) low bits: 9 bits mixed, 8 otherwise keep
    # every integer weight exact.
    if (mixed and not -256 <= lo <= hi <= 255) or (not mixed and max(-lo, hi) > 255):
        raise _refuse(graph, node, f"weights span [{lo}, {hi}]; Lava's Dense holds 8-bit "
                                   "magnitudes (9-bit signed when mixed)")
    in_shape = tuple(graph[node.inputs[0]].shape)
    tokens = int(np.prod(in_shape[:-1])) if len(in_shape) > 1 else 1
    return ProcSpec(node.name, "dense", [node.inputs[0]], int(w.shape[0]) * tokens, {
        "w": w.astype(np.int32), "num_weight_bits": 9 if mixed else 8,
        "num_message_bits": GRADED_MESSAGE_BITS if graded else 0, "tokens": tokens})


#: Largest Dense matrix (entries) built to run in Lava's CPU simulator (256 MB of int32).
MAX_DENSE_ENTRIES = 1 << 26


def dense_matrix(spec: ProcSpec) -> np.ndarray:
    """The int32 weight matrix of a planned Dense, built only to run it in Lava:
    ``kron(I_tokens, W)`` for a token-wise Linear, :func:`conv_as_matrix` for a
    conv. Refuses (naming the node) a matrix above :data:`MAX_DENSE_ENTRIES`."""
    p = spec.params
    if "conv" in p:
        c = p["conv"]
        rows, cols = int(np.prod(c["out_shape"])), int(np.prod(c["in_shape"]))
    else:
        rows, cols = (int(d) * p["tokens"] for d in p["w"].shape)
    if rows * cols > MAX_DENSE_ENTRIES:
        raise BadInputError(f"node '{spec.node}': its Dense would hold {rows} x {cols} weights, "
                            f"more than the {MAX_DENSE_ENTRIES:,} nmtc builds to run in Lava's "
                            "CPU simulator")
    if "conv" in p:
        c = p["conv"]
        return conv_as_matrix(c["weight"], c["in_shape"], c["out_shape"], c["stride"],
                              c["padding"], c["dilation"]).astype(np.int32)
    w = p["w"].astype(np.int64)
    big = np.kron(np.eye(p["tokens"], dtype=np.int64), w) if p["tokens"] > 1 else w
    return big.astype(np.int32)


def conv_as_matrix(weight: np.ndarray, in_shape: Tuple[int, ...], out_shape: Tuple[int, ...],
                   stride: Sequence[int], padding: Sequence[int],
                   dilation: Sequence[int] = (1, 1)) -> np.ndarray:
    """A 2-D convolution (groups 1, no bias) as the matrix M with
    ``flat(conv(x)) = M @ flat(x)`` on C-order flat vectors: one Lava Dense
    computes the conv's integers exactly (the zeros cost nothing there)."""
    co, ci, kh, kw = weight.shape
    _, h, w = in_shape
    _, ho, wo = out_shape
    m = np.zeros((co * ho * wo, ci * h * w), dtype=np.int64)
    oc, oy, ox = np.meshgrid(np.arange(co), np.arange(ho), np.arange(wo), indexing="ij")
    rows = (oc * ho + oy) * wo + ox
    for c in range(ci):
        for ky in range(kh):
            for kx in range(kw):
                iy = oy * stride[0] - padding[0] + ky * dilation[0]
                ix = ox * stride[1] - padding[1] + kx * dilation[1]
                ok = (iy >= 0) & (iy < h) & (ix >= 0) & (ix < w)
                cols = (c * h + iy) * w + ix
                m[rows[ok], cols[ok]] += weight[oc[ok], c, ky, kx].astype(np.int64)
    return m


def _conv_spec(graph: Graph, node: Node, graded: bool) -> ProcSpec:
    op = node.op
    if int(op.groups) != 1:
        raise _refuse(graph, node, "grouped convolution (groups > 1) is not supported here")
    w = np.asarray(op.weight, dtype=np.float64)
    if np.any(w != np.round(w)):
        raise _refuse(graph, node, "weights are not integers; quantize for Loihi first")
    if op.bias is not None and np.any(op.bias):
        raise _refuse(graph, node, "a synapse bias has no Loihi meaning; put it on the neuron")
    conv = {"weight": w.astype(np.int64), "in_shape": tuple(graph[node.inputs[0]].shape),
            "out_shape": tuple(node.shape), "stride": tuple(op.stride),
            "padding": tuple(op.padding), "dilation": tuple(op.dilation)}
    lo, hi = int(w.min()), int(w.max())
    mixed = lo < 0 < hi
    if (mixed and not -256 <= lo <= hi <= 255) or (not mixed and max(-lo, hi) > 255):
        raise _refuse(graph, node, f"weights span [{lo}, {hi}]; Lava's Dense holds 8-bit "
                                   "magnitudes (9-bit signed when mixed)")
    return ProcSpec(node.name, "dense", [node.inputs[0]], int(np.prod(node.shape)), {
        "conv": conv, "num_weight_bits": 9 if mixed else 8,
        "num_message_bits": GRADED_MESSAGE_BITS if graded else 0, "tokens": 1})


def _lif_spec(graph: Graph, node: Node) -> ProcSpec:
    q = node.numerics
    if not isinstance(q, LoihiCubaNeuron):
        raise _refuse(graph, node, "no Loihi CUBA parameters (numerics LoihiCubaNeuron); "
                                   "quantize for Loihi first")
    if q.input_transform is not None:
        raise _refuse(graph, node, "a bias-driven input neuron (use the netx path)")
    size = int(np.prod(node.shape))
    bias = np.broadcast_to(q.bias_mant, tuple(node.shape)).reshape(-1)
    params = {"du": q.lava_du, "dv": q.v_decay, "vth": q.v_th_mant,
              "bias_mant": bias.astype(np.int32), "bias_exp": q.bias_exp}
    interval = _reset_interval(graph)
    if interval:  # LIFReset at the neuron's depth (the simulator's rule, interpreter.py)
        depth = int(node.annotations.get("reset_depth", 0))
        params.update(reset_interval=interval, reset_offset=(depth + 1) % interval)
    return ProcSpec(node.name, "lif", [node.inputs[0]], size, params)


def _reset_interval(graph: Graph) -> int:
    """The reset interval a token-graph quantization recorded (0: no resets)."""
    run = graph.metadata.get("lava_run") if isinstance(graph.metadata, dict) else None
    return int(run.get("reset_interval", 0)) if isinstance(run, dict) else 0


def _broadcast_index(in_shape: Tuple[int, ...], out_shape: Tuple[int, ...]) -> np.ndarray:
    """Flat index into an input for every flat output position (broadcasting)."""
    return np.broadcast_to(np.arange(int(np.prod(in_shape))).reshape(in_shape),
                           out_shape).reshape(-1).astype(np.int64)


def plan_lava_graph(graph: Graph) -> LavaGraphPlan:
    """The processes that run ``graph`` in Lava (module docstring's table).

    Pure numpy: refuses (UnsupportedOpError naming the node) anything outside
    the table before any Lava import."""
    graph.infer_shapes()
    order, back = graph.order()
    if back:
        a, b = sorted(back)[0]
        raise _refuse(graph, graph[b], f"recurrent edge from '{a}' is not supported here")
    inputs = [n.name for n in graph.inputs()]
    if len(inputs) != 1:
        raise BadInputError(f"{_origin(graph)}: a Lava process graph needs exactly one Input "
                            f"node, found {inputs}")
    plan = LavaGraphPlan([], {}, inputs[0], {n: tuple(graph[n].shape) for n in order})
    kinds = plan.kinds
    for name in order:
        node = graph[name]
        op = node.op_name
        size = int(np.prod(node.shape))
        if op == "Input":
            plan.procs.append(ProcSpec(name, "source", [], size))
            kinds[name] = "input"
        elif op in _ALIAS_OPS:
            plan.alias[name] = node.inputs[0]
        elif op in ("Affine", "Linear", "Conv2d"):
            src = plan.process_of(node.inputs[0])
            spec = _conv_spec if op == "Conv2d" else _dense_spec
            plan.procs.append(spec(graph, node, graded=kinds[src] == "graded"))
            kinds[name] = "graded"
        elif op == "CubaLIF":
            plan.procs.append(_lif_spec(graph, node))
            kinds[name] = "spikes"
        elif op == "Add":
            if len(node.inputs) != 2:
                raise _refuse(graph, node, f"Add takes exactly two inputs here, got "
                                           f"{len(node.inputs)}")
            out = tuple(node.shape)
            plan.procs.append(ProcSpec(name, "add", list(node.inputs), size, {
                "index_a": _broadcast_index(tuple(graph[node.inputs[0]].shape), out),
                "index_b": _broadcast_index(tuple(graph[node.inputs[1]].shape), out)}))
            kinds[name] = "graded"
        elif op == "MatMul":
            plan.procs.append(ProcSpec(name, "matmul", list(node.inputs), size, {
                "shape_a": tuple(graph[node.inputs[0]].shape),
                "shape_b": tuple(graph[node.inputs[1]].shape)}))
            kinds[name] = "graded"
        elif op == "Transpose":
            in_shape = tuple(graph[node.inputs[0]].shape)
            index = np.arange(int(np.prod(in_shape))).reshape(in_shape) \
                .transpose(node.op.perm).reshape(-1)
            plan.procs.append(ProcSpec(name, "permute", [node.inputs[0]], size,
                                       {"index": index.astype(np.int64)}))
            kinds[name] = kinds[plan.process_of(node.inputs[0])]
        else:
            raise _refuse(graph, node, "no Lava process for it; supported: "
                          + ", ".join(NETX_DEPLOYABLE_OPS + LAVA_SIMULATOR_ONLY_OPS))
    for p in plan.procs:
        p.inputs = [plan.process_of(i) for i in p.inputs]
    return plan


def deployability(graph: Graph) -> Dict[str, List[str]]:
    """Which nodes netx (Loihi 2) can hold and which run only in Lava's simulator.

    ``loihi2_netx``: Input, synapse, CUBA neuron and shape-only nodes;
    ``lava_simulator_only``: Add, MatMul, Transpose (our Python processes);
    ``unsupported``: anything else."""
    out: Dict[str, List[str]] = {"loihi2_netx": [], "lava_simulator_only": [], "unsupported": []}
    for n in graph.topological_order():
        key = ("loihi2_netx" if n.op_name in NETX_DEPLOYABLE_OPS else
               "lava_simulator_only" if n.op_name in LAVA_SIMULATOR_ONLY_OPS else "unsupported")
        out[key].append(n.name)
    return out


def chip_part(graph: Graph) -> Graph:
    """The netx-deployable part of a Lava process graph as a graph the core
    mapper can place: every synapse and CUBA neuron layer, with each tensor
    that a Lava-only process computes (Add, MatMul, Transpose) replaced by an
    ``Input`` named ``host:<node>`` (on a chip, the host would send it). A
    neuron driven without a synapse is then an input layer."""
    from nmtoolchain.ir import Input as InputOp

    graph.infer_shapes()
    sub = Graph({"source": dict(graph.metadata.get("source", {}))})

    def feed(name: str) -> str:
        if name in sub.nodes:
            return name
        host = f"host:{name}"
        if host not in sub.nodes:
            sub.add(host, InputOp(tuple(graph[name].shape)))
        return host

    for node in graph.topological_order():
        op = node.op_name
        if op == "Input":
            sub.add(node.name, copy_op(node.op))
        elif op in ("Affine", "Linear", "Conv2d") or node.op.is_neuron:
            sub.add(node.name, copy_op(node.op), [feed(node.inputs[0])],
                    numerics=node.numerics)
        elif op in ("Flatten", "Reshape") and node.inputs[0] in sub.nodes:
            sub.add(node.name, copy_op(node.op), [node.inputs[0]])
    return sub.infer_shapes()


def copy_op(op: Any) -> Any:
    """A shallow copy of an IR op (its arrays are shared, never written)."""
    import dataclasses

    return dataclasses.replace(op)


# ------------------------------------------------------------- lava classes
@functools.lru_cache(maxsize=None)
def _graph_process_classes() -> Dict[str, Tuple[type, type]]:
    """Our Lava processes and their fixed-point CPU models, built once.

    Defined inside a function so that importing this module never imports
    lava; Lava's runtime forks its workers, which inherit the classes. Every
    port carries int32 vectors (C-order flat tensors); every model computes in
    ``run_spk`` from the same step's inputs (no delay)."""
    from lava.magma.core.decorator import implements, requires, tag
    from lava.magma.core.model.py.model import PyLoihiProcessModel
    from lava.magma.core.model.py.ports import PyInPort, PyOutPort
    from lava.magma.core.model.py.type import LavaPyType
    from lava.magma.core.process.ports.ports import InPort, OutPort
    from lava.magma.core.process.process import AbstractProcess
    from lava.magma.core.process.variable import Var
    from lava.magma.core.resources import CPU
    from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

    class GraphSpikeSource(AbstractProcess):
        """Sends column t-1 of ``data`` (size, T) at step t; zeros after T."""

        def __init__(self, *, data: np.ndarray) -> None:
            super().__init__()
            self.data = Var(shape=data.shape, init=data)
            self.s_out = OutPort(shape=data.shape[:1])

    @implements(proc=GraphSpikeSource, protocol=LoihiProtocol)
    @requires(CPU)
    @tag("fixed_pt")
    class PyGraphSpikeSourceModel(PyLoihiProcessModel):
        data: np.ndarray = LavaPyType(np.ndarray, np.int32)
        s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)

        def run_spk(self) -> None:
            t = self.time_step
            if t <= self.data.shape[1]:
                self.s_out.send(self.data[:, t - 1])
            else:
                self.s_out.send(np.zeros(self.data.shape[0], np.int32))

    class GraphAdd(AbstractProcess):
        """y = a[index_a] + b[index_b] of the same step."""

        def __init__(self, *, size_a: int, size_b: int, index_a: np.ndarray,
                     index_b: np.ndarray) -> None:
            super().__init__(index_a=index_a, index_b=index_b)
            self.a_in = InPort(shape=(size_a,))
            self.b_in = InPort(shape=(size_b,))
            self.s_out = OutPort(shape=(len(index_a),))

    @implements(proc=GraphAdd, protocol=LoihiProtocol)
    @requires(CPU)
    @tag("fixed_pt")
    class PyGraphAddModel(PyLoihiProcessModel):
        a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
        b_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
        s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)

        def run_spk(self) -> None:
            a = self.a_in.recv().astype(np.int64)
            b = self.b_in.recv().astype(np.int64)
            p = self.proc_params
            self.s_out.send((a[p["index_a"]] + b[p["index_b"]]).astype(np.int32))

    class GraphMatMul(AbstractProcess):
        """y = a @ b (integers) of the same step; a, b arrive C-order flat."""

        def __init__(self, *, shape_a: Tuple[int, ...], shape_b: Tuple[int, ...],
                     size_out: int) -> None:
            super().__init__(shape_a=tuple(shape_a), shape_b=tuple(shape_b))
            self.a_in = InPort(shape=(int(np.prod(shape_a)),))
            self.b_in = InPort(shape=(int(np.prod(shape_b)),))
            self.s_out = OutPort(shape=(size_out,))

    @implements(proc=GraphMatMul, protocol=LoihiProtocol)
    @requires(CPU)
    @tag("fixed_pt")
    class PyGraphMatMulModel(PyLoihiProcessModel):
        a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
        b_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
        s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)

        def run_spk(self) -> None:
            p = self.proc_params
            a = self.a_in.recv().astype(np.int64).reshape(p["shape_a"])
            b = self.b_in.recv().astype(np.int64).reshape(p["shape_b"])
            self.s_out.send(np.matmul(a, b).reshape(-1).astype(np.int32))

    class GraphPermute(AbstractProcess):
        """y = x[index] of the same step (Transpose as re-indexing)."""

        def __init__(self, *, size_in: int, index: np.ndarray) -> None:
            super().__init__(index=index)
            self.a_in = InPort(shape=(size_in,))
            self.s_out = OutPort(shape=(len(index),))

    @implements(proc=GraphPermute, protocol=LoihiProtocol)
    @requires(CPU)
    @tag("fixed_pt")
    class PyGraphPermuteModel(PyLoihiProcessModel):
        a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
        s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)

        def run_spk(self) -> None:
            self.s_out.send(self.a_in.recv()[self.proc_params["index"]].astype(np.int32))

    return {"source": (GraphSpikeSource, PyGraphSpikeSourceModel),
            "add": (GraphAdd, PyGraphAddModel),
            "matmul": (GraphMatMul, PyGraphMatMulModel),
            "permute": (GraphPermute, PyGraphPermuteModel)}


# ------------------------------------------------------------------ running
def _input_rows(plan: LavaGraphPlan, spikes: Any, steps: int) -> np.ndarray:
    """The drive as (T, size) int32: (T, *shape) per step, or (*shape) held."""
    name = plan.input_node
    shape = plan.shapes[name]
    if isinstance(spikes, Mapping):
        if name not in spikes:
            raise BadInputError(f"no data for graph input '{name}'")
        spikes = spikes[name]
    a = np.asarray(spikes)
    if a.dtype.kind not in "biuf":
        raise BadInputError(f"input '{name}': drive is not numeric (dtype {a.dtype})")
    if a.dtype.kind == "f" and (not np.isfinite(a).all() or np.any(a != np.round(a))):
        raise BadInputError(f"input '{name}': drive must hold integers (spikes or graded values)")
    if tuple(a.shape) == shape:
        a = np.broadcast_to(a, (steps,) + shape)
    if tuple(a.shape[1:]) != shape or a.shape[0] < steps:
        raise BadInputError(f"input '{name}': drive has shape {list(a.shape)}; expected "
                            f"(T>={steps}, {', '.join(map(str, shape))}) or "
                            f"({', '.join(map(str, shape))})")
    return a[:steps].reshape(steps, -1).astype(np.int64)


def _recorded(graph: Graph, plan: LavaGraphPlan, record: Union[str, Sequence[str]]) -> List[str]:
    procs = [p.node for p in plan.procs if p.kind != "source"]
    if record == "all":
        return procs
    if record == "neurons":
        return [p.node for p in plan.procs if p.kind == "lif"]
    unknown = [r for r in record if r not in graph.nodes]
    if unknown:
        raise BadInputError(f"cannot record unknown node(s) {unknown}")
    return list(record)


def run_graph_in_lava(graph: Graph, spikes: Any, steps: int, *,
                      record: Union[str, Sequence[str]] = "all") -> LavaGraphRun:
    """Run ``graph`` (quantized, module docstring's ops) in Lava ``fixed_pt``.

    ``spikes``: the Input node's drive, (T, *shape) (row t-1 sent at step t,
    as the netx runner's ``'spikes'`` drive) or (*shape) held every step;
    binary spikes, or graded integers. ``record``: 'all' (every node with a
    process, except the source), 'neurons' (LIF nodes), or node names (a
    Flatten/Reshape/Output node records its source's vector in its shape).
    Returns each recorded node as (T, *shape) int64, row t-1 = Lava step t:
    the same rows ``Simulator(graph, 'loihi', record=...)`` produces."""
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise BadInputError(f"steps must be a positive integer, got {steps!r}")
    steps = int(steps)
    plan = plan_lava_graph(graph)
    rows = _input_rows(plan, spikes, steps)
    src_kind = "spikes" if np.isin(rows, (0, 1)).all() else "graded"
    wanted = _recorded(graph, plan, record)

    require("lava", "running a graph in Lava")
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.dense.process import Dense
    from lava.proc.lif.process import LIF, LIFReset
    from simulators.lava_runner import _recorder_classes

    classes = _graph_process_classes()
    FileSink, PyFileSink = _recorder_classes()[:2]
    models: Dict[Any, type] = {}
    procs: Dict[str, Any] = {}
    tmp = tempfile.TemporaryDirectory(prefix="nmtc_lava_graph_")
    first = None
    t0 = time.perf_counter()
    try:
        for p in plan.procs:
            if p.kind == "source":
                cls, model = classes["source"]
                proc = cls(data=np.ascontiguousarray(rows.T).astype(np.int32))
                models[proc] = model
                ports_in: List[Any] = []
                first = proc
            elif p.kind == "dense":
                bits = p.params["num_message_bits"]
                if bits == 0 and plan.kinds[p.inputs[0]] == "input" \
                        and src_kind == "graded":
                    bits = GRADED_MESSAGE_BITS  # graded drive straight into a synapse
                proc = Dense(weights=dense_matrix(p), num_message_bits=bits,
                             num_weight_bits=p.params["num_weight_bits"], weight_exp=0,
                             name=p.node)
                ports_in = [proc.s_in]
            elif p.kind == "lif":
                q = p.params
                kw = dict(shape=(p.size,), du=q["du"], dv=q["dv"], bias_mant=q["bias_mant"],
                          bias_exp=q["bias_exp"], vth=q["vth"], name=p.node)
                proc = LIFReset(reset_interval=q["reset_interval"],
                                reset_offset=q["reset_offset"], **kw) \
                    if "reset_interval" in q else LIF(**kw)
                ports_in = [proc.a_in]
            elif p.kind == "add":
                cls, model = classes["add"]
                sizes = [next(s.size for s in plan.procs if s.node == i) for i in p.inputs]
                proc = cls(size_a=sizes[0], size_b=sizes[1], index_a=p.params["index_a"],
                           index_b=p.params["index_b"])
                models[proc] = model
                ports_in = [proc.a_in, proc.b_in]
            elif p.kind == "matmul":
                cls, model = classes["matmul"]
                proc = cls(shape_a=p.params["shape_a"], shape_b=p.params["shape_b"],
                           size_out=p.size)
                models[proc] = model
                ports_in = [proc.a_in, proc.b_in]
            else:  # permute
                cls, model = classes["permute"]
                size_in = next(s.size for s in plan.procs if s.node == p.inputs[0])
                proc = cls(size_in=size_in, index=p.params["index"])
                models[proc] = model
                ports_in = [proc.a_in]
            for src, port in zip(p.inputs, ports_in):
                _out_port(procs[src]).connect(port)
            procs[p.node] = proc
        files: Dict[str, str] = {}
        for name in wanted:
            src = plan.process_of(name)
            if src not in procs:
                raise BadInputError(f"node '{name}' has no Lava process to record")
            port = _out_port(procs[src])
            size = int(port.shape[0])
            path = os.path.join(tmp.name, f"{len(files)}.i32")
            np.zeros((steps, size), np.int32).tofile(path)
            sink = FileSink(shape=(size,), steps=steps, path=path)
            port.connect(sink.a_in)
            models[sink] = PyFileSink
            files[name] = path
        cfg = Loihi2SimCfg(select_tag="fixed_pt", exception_proc_model_map=models)
        build_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        try:
            first.run(condition=RunSteps(num_steps=steps), run_cfg=cfg)
        finally:
            first.stop()
        run_s = time.perf_counter() - t1
        outputs = {n: np.fromfile(p, dtype=np.int32).astype(np.int64)
                   .reshape((steps,) + tuple(graph[n].shape)) for n, p in files.items()}
    finally:
        tmp.cleanup()
    return LavaGraphRun(outputs, steps, len(procs) + len(files), build_s, run_s)


def _out_port(proc: Any) -> Any:
    return proc.a_out if hasattr(proc, "a_out") else proc.s_out


def run_graph_in_simulator(graph: Graph, spikes: Any, steps: int, *,
                           record: Union[str, Sequence[str]] = "all") -> Dict[str, np.ndarray]:
    """nmtc's simulator (loihi numerics) on the same drive, same recordings:
    name -> (T, *shape) int64 (row t = step t, the Lava run's row t)."""
    from simulators.cycle import Simulator

    plan = plan_lava_graph(graph)
    rows = _input_rows(plan, spikes, steps)
    names = _recorded(graph, plan, record)
    x = rows.reshape((1, steps) + plan.shapes[plan.input_node]).astype(np.float64)
    interval = _reset_interval(graph)
    kw = {"reset_interval": interval, "reset_offset": 0} if interval else {}
    res = Simulator(graph, "loihi", record=names, count=False, **kw).run(x, steps)
    return {n: res.recorded[n][0].cpu().numpy().round().astype(np.int64) for n in names}


def check_graph_parity(graph: Graph, spikes: Any, steps: int, *,
                       record: Union[str, Sequence[str]] = "all"):
    """Run both; returns (first divergence or None, lava recordings, nmtc recordings)."""
    from simulators.compare import first_divergence

    lava = run_graph_in_lava(graph, spikes, steps, record=record)
    ours = run_graph_in_simulator(graph, spikes, steps, record=list(lava.outputs))
    return first_divergence(lava.outputs, ours, layers=list(lava.outputs)), lava.outputs, ours


__all__ = ["plan_lava_graph", "run_graph_in_lava", "run_graph_in_simulator",
           "check_graph_parity", "deployability", "LavaGraphPlan", "LavaGraphRun", "ProcSpec",
           "NETX_DEPLOYABLE_OPS", "LAVA_SIMULATOR_ONLY_OPS", "conv_as_matrix", "chip_part",
           "dense_matrix", "MAX_DENSE_ENTRIES"]
