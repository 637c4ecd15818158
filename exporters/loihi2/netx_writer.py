"""Write a quantized IR graph as a lava-dl netx HDF5 network (``*.net``).

The file is exactly what ``lava.lib.dl.netx.hdf5.Network`` reads
(shared/reference/loihi_lava.md §1 and §7), and what
:func:`nmtoolchain.frontends.netx_loader.load_netx` reads back into the same
graph values:

* ``/layer/0 .. /layer/n-1``, ``type`` as a 1-element ``S10`` byte string,
  shapes in C,H,W (dense layers ``(N,)``);
* ``input``: the input shape; with a neuron group when the graph's input
  feeds an input neuron (CUBA driven through its bias, with the transform
  ``weight``/``bias`` scalars; or an SDNN Delta driven through ``a_in``);
* ``dense``: ``weight`` (out, in), optional ``delay``, the neuron's ``bias``
  and its neuron group (omitted for netx's default readout neuron);
* ``dense_rec``: as dense plus ``weight_rec`` (the Affine -> Add <- Affine
  pattern the netx loader builds for a recurrent layer);
* ``conv``: ``weight`` (out, in/groups, kH, kW), (H, W) ``stride``,
  ``padding``, ``dilation``, ``groups``, the bias per channel (or per neuron
  in Lava's W,H,C order) and the neuron group;
* ``flatten``: PyTorch-order flatten before a dense layer;
* neuron groups: ``type`` CUBA with ``iDecay``, ``vDecay``, ``vThMant`` and
  ``refDelay`` = 1, or SDNN with ``vThMant`` (and ``sigma_output`` for a
  Sigma readout); never ``messageBits`` (netx mis-reads it).

A quantized graph is in the form the netx loader produces (the issue's
contract): integer-valued weights, zero synapse biases, CUBA neurons carrying
:class:`~nmtoolchain.numerics.loihi.LoihiCubaNeuron` numerics (``i_decay``,
``v_decay``, ``v_th_mant``, ``bias_mant``, ``bias_exp`` = 6, ...), SigmaDelta
neurons with integer thresholds and biases.
The exporter is a table from IR op to a builder (:data:`NETX_BUILDERS`, as
netx's own ``create_*`` functions); neurons are written by the builder of the
synapse before them. The whole graph is checked and every layer built in
memory before the file is opened, so an op missing from the table
(:class:`UnsupportedOpError`) or a value netx cannot hold
(:class:`NotExpressibleError`) leaves no file. Refused values include what
netx or Lava would silently change: non-integer weights, dense weights outside
[-256, 254] (mixed sign; 0..255 excitatory, -256..-1 inhibitory), a dense
matrix whose largest weight is exactly 0 with negative weights (netx gives it
9 weight bits and Lava corrupts it), an all-zero dense matrix (netx divides by
zero), delays outside 0..62, biases outside 13-bit signed, decays outside
0..4096.

The bytes are deterministic: groups and datasets are created without
modification times and with tracked creation order, in a fixed order, so
the same graph always gives the same file. The file is written through
:func:`nmtoolchain.fileio.atomic_output` (no partial file on failure).

h5py is imported inside the functions; lava is never imported here.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Set, Tuple, Union

import numpy as np

from nmtoolchain.errors import IRValidationError, NotExpressibleError, UnsupportedOpError
from nmtoolchain.fileio import atomic_output
from nmtoolchain.ir import Graph, Node
from nmtoolchain.numerics.loihi import (
    BIAS_EXP, BIAS_MANT_MAX, BIAS_MANT_MIN, MAX_DELAY, READOUT_V_TH_MANT, SDNN_SPIKE_EXP,
    SDNN_STATE_EXP, InputTransform, LoihiCubaNeuron, LoihiSigmaDeltaNeuron, input_transform_of)

#: Neuron ops a synapse (or input) builder writes as the layer's neuron group.
NEURON_OPS = ("CubaLIF", "CubaLI", "SigmaDelta")
#: Value ranges Loihi (through netx and Lava's fixed-point models) holds exactly
#: (decays, thresholds and bias exponents are checked by the numerics record).
BIAS_RANGE = (BIAS_MANT_MIN, BIAS_MANT_MAX)  # 13-bit signed mantissa
VTH_MAX = READOUT_V_TH_MANT  # 17-bit mantissa; 1 << 17 is netx's never-spiking readout
CONV_WEIGHT_RANGE = (-256, 255)  # 8-bit mantissa + sign
#: How an application drives the network's input in Lava (see simulators.lava_runner).
DRIVE_KINDS = ("spikes", "bias", "a_in")


@dataclass
class NetxLayer:
    """One ``/layer/<index>`` group: its datasets and the IR nodes it holds."""

    index: int
    type: str  # input, dense, dense_rec, conv, flatten
    shape: Tuple[int, ...]
    nodes: List[str]  # IR nodes written into this layer, in graph order
    neuron_node: Optional[str] = None  # the IR neuron of this layer, if any
    neuron_kind: Optional[str] = None  # CUBA or SDNN (None: no neuron)
    keys: Dict[str, np.ndarray] = field(default_factory=dict)  # layer datasets
    neuron: Optional[Dict[str, np.ndarray]] = None  # neuron group datasets (None: no group)
    notes: List[str] = field(default_factory=list)

    @property
    def record_name(self) -> Optional[str]:
        """The name Lava runs and the netx loader give this layer's neuron output."""
        return f"layer{self.index}_neuron" if self.neuron_node is not None else None

    def as_dict(self) -> Dict[str, Any]:
        d: Dict[str, Any] = {"index": self.index, "type": self.type, "shape": list(self.shape),
                             "nodes": list(self.nodes), "neuron_node": self.neuron_node,
                             "neuron": self.neuron_kind, "record_name": self.record_name}
        w = self.keys.get("weight") if self.type != "input" else None
        if w is not None:
            d["weight_range"] = [int(w.min()), int(w.max())]
            d["synapses"] = int(w.size) + (int(self.keys["weight_rec"].size)
                                           if "weight_rec" in self.keys else 0)
        if "delay" in self.keys:
            d["max_delay"] = int(np.max(self.keys["delay"]))
        if self.notes:
            d["notes"] = list(self.notes)
        return d


@dataclass
class NetxPlan:
    """Everything :func:`export_netx` writes, built and checked in memory."""

    layers: List[NetxLayer]
    drive: str  # how the input is driven in Lava: spikes, bias or a_in
    input_shape: Tuple[int, ...]
    input_transform: Optional[Dict[str, int]] = None  # bias drive: weight, bias
    notes: List[str] = field(default_factory=list)

    def record_names(self) -> Dict[str, str]:
        """IR neuron node name -> ``layer{i}_neuron`` (Lava's and the loader's name)."""
        return {la.neuron_node: la.record_name for la in self.layers if la.neuron_node}

    def as_dict(self) -> Dict[str, Any]:
        return {"drive": self.drive, "input_shape": list(self.input_shape),
                "input_transform": self.input_transform,
                "layers": [la.as_dict() for la in self.layers], "notes": list(self.notes)}


# --------------------------------------------------------------------- errors
def graph_origin(graph: Graph) -> str:
    """The file a graph was loaded from (for error messages), or 'graph'."""
    src = graph.metadata.get("source")
    if isinstance(src, dict) and src.get("path"):
        return str(src["path"])
    return "graph"


class _Planner:
    """Walks the graph's chain from its Input to its Output, one builder per op."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.where = graph_origin(graph)
        self.layers: List[NetxLayer] = []
        self.claimed: Set[str] = set()
        self.drive = "spikes"
        self.transform: Optional[Dict[str, int]] = None
        self.input_shape: Tuple[int, ...] = ()
        self.notes: List[str] = []
        self.back: Set[Tuple[str, str]] = set()
        self._users: Optional[Dict[str, List[Node]]] = None

    # ------------------------------------------------------------ helpers
    def refuse(self, node: Node, msg: str) -> NotExpressibleError:
        return NotExpressibleError(f"{self.where}: node '{node.name}' ({node.op_name}): {msg}")

    def users(self, name: str) -> List[Node]:
        """Readers of ``name``, from an index built once per plan (planning only
        reads the graph; a scan per node made 3,000-layer files quadratic)."""
        if self._users is None:
            self._users = self.graph.users_index()
        return self._users.get(name, [])

    def forward_users(self, node: Node) -> List[Node]:
        return [u for u in self.users(node.name) if (node.name, u.name) not in self.back]

    def next_node(self, tail: Node) -> Node:
        users = self.forward_users(tail)
        if len(users) != 1:
            names = [u.name for u in users]
            raise self.refuse(tail, f"feeds {len(users)} nodes {names}; a netx network is one "
                                    "chain of layers (no branches)" if users else
                              "feeds nothing; a netx network is one chain ending in an Output")
        return users[0]

    def add_layer(self, type_: str, shape: Tuple[int, ...], nodes: List[Node],
                  neuron: Optional[Node] = None, kind: Optional[str] = None) -> NetxLayer:
        layer = NetxLayer(len(self.layers), type_, tuple(int(s) for s in shape),
                          [n.name for n in nodes], neuron.name if neuron is not None else None,
                          kind)
        self.layers.append(layer)
        self.claimed.update(n.name for n in nodes)
        return layer

    # ------------------------------------------------------------ top level
    def plan(self) -> NetxPlan:
        g = self.graph
        try:
            g.infer_shapes()
            order, self.back = g.order()
        except IRValidationError as e:
            raise NotExpressibleError(f"{self.where}: {e}") from None
        nodes = [g[n] for n in order]
        missing = [n for n in nodes if n.op_name not in NETX_BUILDERS
                   and n.op_name not in NEURON_OPS and n.op_name not in ("Add", "Output")]
        if missing:
            first = missing[0]
            others = ", ".join(f"'{n.name}' ({n.op_name})" for n in missing[1:4])
            more = (f"; also {others}" + (f" and {len(missing) - 4} more" if len(missing) > 4
                                          else "")) if len(missing) > 1 else ""
            raise UnsupportedOpError(
                f"{self.where}: node '{first.name}' (op {first.op_name}) cannot be exported to "
                f"lava-dl netx{op_hint(first.op_name)}{more}; netx layers come from: "
                f"{', '.join(sorted(NETX_BUILDERS))} (+ {', '.join(NEURON_OPS)} neurons)")
        ins, outs = g.inputs(), g.outputs()
        if len(ins) != 1 or len(outs) != 1:
            raise NotExpressibleError(f"{self.where}: a netx network has one input and one output; "
                                      f"this graph has {len(ins)} inputs and {len(outs)} outputs")
        node = ins[0]
        while node.op_name != "Output":
            if node.name in self.claimed:
                raise self.refuse(node, "is reached twice")
            builder = NETX_BUILDERS.get(node.op_name)
            if builder is None:  # a neuron or Add no synapse builder claimed
                if node.op.is_neuron:
                    raise self.refuse(node, "a neuron without a dense or conv synapse right before "
                                            "it (netx pairs every neuron with one synapse)")
                raise self.refuse(node, "an Add outside a recurrent dense layer: netx has no "
                                        "residual or merge connections")
            tail = builder(self, node)
            node = self.next_node(tail)
        self.claimed.add(node.name)
        left = [n.name for n in nodes if n.name not in self.claimed]
        if left:
            raise NotExpressibleError(f"{self.where}: node(s) {left} are not on the chain from the "
                                      "input to the output; netx cannot hold them")
        if not any(la.neuron_node for la in self.layers):
            raise NotExpressibleError(f"{self.where}: the graph has no neuron layer; netx needs at "
                                      "least one dense or conv layer")
        return NetxPlan(self.layers, self.drive, self.input_shape, self.transform, self.notes)

    # ------------------------------------------------------------ builders
    def input_layer(self, node: Node) -> Node:
        shape = tuple(node.op.shape)
        if len(shape) not in (1, 3):
            raise self.refuse(node, f"input shape {list(shape)}: netx inputs are (N,) or (C, H, W)")
        self.input_shape = shape
        users = self.forward_users(node)
        neuron = users[0] if len(users) == 1 and users[0].op.is_neuron else None
        if neuron is None:
            layer = self.add_layer("input", shape, [node])
            layer.keys["shape"] = np.asarray(shape, np.int64)
            return node
        if neuron.op_name == "SigmaDelta":
            kind, group, bias = self.sdnn_neuron(neuron, shape, role="input")
            self.drive = "a_in"
        else:
            kind, group, bias = self.cuba_neuron(neuron, shape, "input")
            self.drive = "bias"
        if bias is not None and np.any(bias):
            raise self.refuse(neuron, "an input neuron with its own bias: netx's Input block takes "
                                      "no bias (the bias is how the input is driven)")
        transform = input_transform_of(neuron)
        if kind == "CUBA" and transform is None:
            raise self.refuse(neuron, "a CUBA input neuron must be driven through its bias "
                                      "(numerics.input_transform = InputTransform(weight, bias)), "
                                      "which is the only way netx's Input block is driven")
        transform = transform or InputTransform()
        self.transform = {"weight": transform.weight, "bias": transform.bias}
        layer = self.add_layer("input", shape, [node, neuron], neuron, kind)
        layer.keys["shape"] = np.asarray(shape, np.int64)
        layer.keys["weight"] = np.asarray(self.transform["weight"], np.float32)
        layer.keys["bias"] = np.asarray(self.transform["bias"], np.float32)
        layer.neuron = group
        return neuron

    def flatten_layer(self, node: Node) -> Node:
        src = self.graph[node.inputs[0]]
        shape = tuple(src.shape)
        op = node.op
        nd = len(shape)
        a = op.start_dim + nd if op.start_dim < 0 else op.start_dim
        b = op.end_dim + nd if op.end_dim < 0 else op.end_dim
        if (a, b) != (0, nd - 1):
            raise self.refuse(node, f"a partial flatten (start_dim {op.start_dim}, end_dim "
                                    f"{op.end_dim}); netx flattens the whole layer")
        nxt = self.next_node(node)
        if nxt.op_name not in ("Affine", "Linear", "Output"):
            raise self.refuse(node, f"feeds a {nxt.op_name}; netx applies a flatten only to the "
                                    "dense layer after it")
        if nd == 1 or node.annotations.get("source", {}).get("implicit"):
            # Nothing to write: a 1-D flatten is a no-op, and an implicit one (an
            # input without neuron feeding a dense layer) is how netx already reads it.
            self.claimed.add(node.name)
            return node
        n = int(np.prod(shape))
        layer = self.add_layer("flatten", (n, 1, 1), [node])
        layer.keys["shape"] = np.asarray((n, 1, 1), np.int64)
        return node

    def dense_layer(self, node: Node) -> Node:
        src = self.graph[node.inputs[0]]
        if len(src.shape) != 1:
            raise self.refuse(node, f"a dense layer on a {len(src.shape)}-D input "
                                    f"{list(src.shape)}; netx needs a flatten before it")
        nxt = self.next_node(node)
        rec = None
        if nxt.op_name == "Add":
            rec, neuron = self.recurrent_parts(node, nxt)
            nodes = [node, nxt, rec, neuron]
        elif nxt.op.is_neuron and nxt.op_name in NEURON_OPS:
            neuron, nodes = nxt, [node, nxt]
        else:
            raise self.refuse(node, f"feeds a {nxt.op_name}; netx pairs each dense synapse with a "
                                    "neuron (CubaLIF with Loihi parameters, or SigmaDelta)")
        w = self.integer_weights(node)
        w_rec = self.integer_weights(rec) if rec is not None else None
        self.synapse_bias_is_zero(node)
        if rec is not None:
            self.synapse_bias_is_zero(rec)
        both = w if w_rec is None else np.hstack((w, w_rec))
        self.check_dense_range(node, both)
        n_out = int(w.shape[0])
        kind, group, bias = self.neuron_group(neuron, (n_out,), "dense")
        layer = self.add_layer("dense_rec" if rec is not None else "dense", (n_out,), nodes,
                               neuron, kind)
        layer.keys["shape"] = np.asarray((n_out,), np.int64)
        layer.keys["weight"] = w.astype(np.float32)
        if w_rec is not None:
            layer.keys["weight_rec"] = w_rec.astype(np.float32)
        delay = self.delay(node, w.shape)
        if rec is not None:
            self.delay(rec, w_rec.shape)  # checks its range

            def full(n: Node) -> np.ndarray:
                d = getattr(n.op, "delay", None)
                return np.broadcast_to(np.zeros(()) if d is None else np.asarray(d), w.shape)

            if not np.array_equal(full(node), full(rec)):
                raise self.refuse(rec, "netx applies the same delays to a recurrent layer's input "
                                       "and recurrent synapses; these differ")
        if delay is not None:
            layer.keys["delay"] = delay
        if bias is not None and np.any(bias):
            layer.keys["bias"] = bias.reshape(n_out).astype(np.float32)
        layer.neuron = group
        if group is None:
            layer.notes.append("netx default readout neuron (no neuron group)")
        return neuron

    def conv_layer(self, node: Node) -> Node:
        op = node.op
        nxt = self.next_node(node)
        if not (nxt.op.is_neuron and nxt.op_name in NEURON_OPS):
            raise self.refuse(node, f"feeds a {nxt.op_name}; netx pairs each conv synapse with a "
                                    "neuron (CubaLIF with Loihi parameters, or SigmaDelta)")
        w = self.integer_weights(node)
        lo, hi = CONV_WEIGHT_RANGE
        if w.size and (w.min() < lo or w.max() > hi):
            raise self.refuse(node, f"weights span [{int(w.min())}, {int(w.max())}]; Loihi holds "
                                    f"{lo}..{hi} (8-bit mantissa and sign)")
        self.synapse_bias_is_zero(node)
        shape = tuple(int(s) for s in node.shape)
        kind, group, bias = self.neuron_group(nxt, shape, "conv", need_group=True)
        layer = self.add_layer("conv", shape, [node, nxt], nxt, kind)
        layer.keys["shape"] = np.asarray(shape, np.int64)
        layer.keys["weight"] = w.astype(np.float32)
        layer.keys["stride"] = np.asarray(op.stride, np.int64)
        layer.keys["padding"] = np.asarray(op.padding, np.int64)
        layer.keys["dilation"] = np.asarray(op.dilation, np.int64)
        layer.keys["groups"] = np.asarray(op.groups, np.int64)
        if bias is not None and np.any(bias):
            full = np.broadcast_to(bias, shape)
            per_channel = full[:, :1, :1]
            if np.array_equal(full, np.broadcast_to(per_channel, shape)):
                layer.keys["bias"] = per_channel.reshape(shape[0]).astype(np.float32)
            else:  # one bias per neuron, in Lava's W,H,C order
                whc = np.ascontiguousarray(full.transpose(2, 1, 0))
                layer.keys["bias"] = whc.astype(np.float32)
        layer.neuron = group
        return nxt

    # ------------------------------------------------------------ parts
    def recurrent_parts(self, syn: Node, add: Node) -> Tuple[Node, Node]:
        """For ``syn -> add <- rec <- neuron <- add``: (rec, neuron)."""
        if len(add.inputs) != 2:
            raise self.refuse(add, "an Add with more than two inputs is not a recurrent netx layer")
        other = self.graph[add.inputs[1] if add.inputs[0] == syn.name else add.inputs[0]]
        neuron = self.next_node(add)
        if (other.op_name not in ("Affine", "Linear") or other.inputs[0] != neuron.name
                or neuron.op_name not in NEURON_OPS):
            raise self.refuse(add, "an Add is exported only as netx's dense_rec: input synapse + "
                                   "recurrent synapse fed by the layer's own neuron, summed into "
                                   "that neuron")
        if len(self.users(other.name)) != 1:
            raise self.refuse(other, "the recurrent synapse must feed only its layer's sum")
        self.claimed.add(other.name)
        return other, neuron

    def integer_weights(self, node: Node) -> np.ndarray:
        w = np.asarray(node.op.weight, dtype=np.float64)
        if not np.all(np.isfinite(w)) or np.any(w != np.round(w)):
            raise self.refuse(node, "weights are not integers; quantize the graph for Loihi first "
                                    "(nmtc export --calib ...)")
        return w

    def synapse_bias_is_zero(self, node: Node) -> None:
        b = getattr(node.op, "bias", None)
        if b is not None and np.any(np.asarray(b) != 0):
            raise self.refuse(node, "a synapse bias has no netx field; Loihi adds the bias in the "
                                    "neuron (quantize for Loihi to move it there)")

    def check_dense_range(self, node: Node, w: np.ndarray) -> None:
        lo, hi = int(w.min()), int(w.max())
        if hi == 0 and lo == 0:
            raise self.refuse(node, "every weight is 0: lava-dl netx cannot load an all-zero "
                                    "dense matrix (its weight-bit optimizer divides by the "
                                    "largest weight)")
        if hi == 0 and lo < 0:
            raise self.refuse(node, f"all weights are <= 0 and the largest is exactly 0 (min "
                                    f"{lo}): lava-dl netx reads such a matrix as mixed-sign "
                                    "and Lava corrupts its weights; make the zero weights "
                                    "strictly negative or give one weight +1 when quantizing")
        if lo < 0 < hi:
            ok, rng = lo >= -256 and hi <= 254, "[-256, 254] for mixed-sign weights"
        elif lo >= 0:
            ok, rng = hi <= 255, "[0, 255] for excitatory weights"
        else:
            ok, rng = lo >= -256, "[-256, -1] for inhibitory weights"
        if not ok:
            raise self.refuse(node, f"weights span [{lo}, {hi}]; netx and Lava hold {rng} "
                                    "(8-bit mantissa and sign) and would clip the rest")
        # the last word: emulate netx's weight-bit optimizer and Lava's Dense
        # model exactly, and refuse any matrix they would not reproduce (e.g. an
        # all-negative matrix whose minimum is -2^k, or -256 inhibitory)
        from nmtoolchain.quantize.loihi import netx_dense_weights

        _, _, why = netx_dense_weights(w)
        if why:
            raise self.refuse(node, f"netx and Lava would not reproduce these weights ({why}); "
                                    "quantize with nmtoolchain.quantize.quantize_for_loihi, "
                                    "which avoids such matrices")

    def delay(self, node: Node, w_shape: Tuple[int, int]) -> Optional[np.ndarray]:
        d = getattr(node.op, "delay", None)
        if d is None:
            return None
        d = np.asarray(d)
        if np.any(d < 0) or np.any(d > MAX_DELAY) or np.any(d != np.round(d)):
            raise self.refuse(node, f"synaptic delays must be integers in 0..{MAX_DELAY} (Loihi's "
                                    f"6-bit delay), got {d.min()}..{d.max()}")
        n_out, n_in = w_shape
        d = d.astype(np.float32)
        if d.ndim == 0 or d.size == 1:
            return d.reshape(())
        full = np.broadcast_to(d, w_shape) if d.ndim == 2 else None
        if d.ndim == 2 and d.shape == (n_out, 1):
            return d.reshape(n_out)  # per neuron; netx checks (out,) first
        if d.ndim == 2 and d.shape == (1, n_in) and n_in != n_out:
            return d.reshape(n_in)  # per input
        if full is None:
            raise self.refuse(node, f"delay of shape {list(d.shape)} does not broadcast to the "
                                    f"weights {list(w_shape)}")
        return np.ascontiguousarray(full)

    def neuron_group(self, neuron: Node, shape: Tuple[int, ...], where: str,
                     need_group: bool = False
                     ) -> Tuple[str, Optional[Dict[str, np.ndarray]], Optional[np.ndarray]]:
        if neuron.op_name == "SigmaDelta":
            return self.sdnn_neuron(neuron, shape, role=where)
        kind, group, bias = self.cuba_neuron(neuron, shape, where)
        if not need_group and neuron.numerics.is_netx_default_readout():
            group = None  # netx builds exactly this neuron when the group is absent
        return kind, group, bias

    def cuba_neuron(self, neuron: Node, shape: Tuple[int, ...], where: str
                    ) -> Tuple[str, Dict[str, np.ndarray], Optional[np.ndarray]]:
        q = neuron.numerics
        if not isinstance(q, LoihiCubaNeuron):
            raise self.refuse(neuron, "no Loihi fixed-point parameters (numerics "
                                      "LoihiCubaNeuron: iDecay, vDecay, vThMant, bias_mant); "
                                      "quantize the graph for Loihi first (nmtc export --calib)")
        # the record holds 0..4096 decays and a 0..1 << 17 threshold; netx fixes bias_exp
        if q.bias_exp != BIAS_EXP:
            raise self.refuse(neuron, f"bias_exp = {q.bias_exp}; netx always uses {BIAS_EXP}")
        bias = self.integer_bias(neuron, q.bias_mant, shape, "bias_mant")
        group = {"type": _s10("CUBA"), "iDecay": np.asarray(q.i_decay, np.int64),
                 "vDecay": np.asarray(q.v_decay, np.int64),
                 "vThMant": np.asarray(q.v_th_mant, np.int64),
                 "refDelay": np.asarray(1 if q.ref_delay is None else q.ref_delay, np.int64)}
        return "CUBA", group, bias

    def sdnn_neuron(self, neuron: Node, shape: Tuple[int, ...], role: str
                    ) -> Tuple[str, Dict[str, np.ndarray], Optional[np.ndarray]]:
        op = neuron.op
        want = ("delta",) if role == "input" else ("sigma_delta", "sigma")
        if op.role not in want:
            raise self.refuse(neuron, f"a SigmaDelta with role '{op.role}' as the {role} "
                                      f"neuron; netx builds {' or '.join(want)} there")
        if op.role == "sigma_delta" and op.activation != "relu":
            raise self.refuse(neuron, "netx's SigmaDelta always applies ReLU; activation "
                                      f"'{op.activation}' cannot be expressed")
        q = neuron.numerics
        if isinstance(q, LoihiSigmaDeltaNeuron):
            for k, want in (("spike_exp", SDNN_SPIKE_EXP), ("state_exp", SDNN_STATE_EXP)):
                if getattr(q, k) != want:
                    raise self.refuse(neuron, f"{k} = {getattr(q, k)}; netx builds SDNN neurons "
                                              f"with {want}")
        thr = np.asarray(op.threshold, dtype=np.float64)
        if thr.size != 1 or thr.reshape(-1)[0] != round(float(thr.reshape(-1)[0])) \
                or thr.reshape(-1)[0] < 0:
            raise self.refuse(neuron, "netx holds one non-negative integer threshold (vThMant) per "
                                      f"layer, got {thr.reshape(-1)[:4].tolist()}")
        bias = self.integer_bias(neuron, op.bias, shape, "bias")
        if op.role == "sigma" and bias is not None and np.any(bias):
            raise self.refuse(neuron, "Lava's Sigma readout takes no bias")
        group: Dict[str, np.ndarray] = {"type": _s10("SDNN"),
                                        "vThMant": np.asarray(int(thr.reshape(-1)[0]), np.int64)}
        if op.role == "sigma":
            group["sigma_output"] = np.asarray(True)
        return "SDNN", group, bias

    def integer_bias(self, neuron: Node, value: Any, shape: Tuple[int, ...],
                     what: str) -> Optional[np.ndarray]:
        b = np.asarray(value, dtype=np.float64)
        if not np.all(np.isfinite(b)) or np.any(b != np.round(b)):
            raise self.refuse(neuron, f"{what} is not an integer")
        try:
            b = np.broadcast_to(b, shape)
        except ValueError:
            raise self.refuse(neuron, f"{what} of shape {list(b.shape)} does not fit the layer "
                                      f"{list(shape)}") from None
        if b.size and (b.min() < BIAS_RANGE[0] or b.max() > BIAS_RANGE[1]):
            raise self.refuse(neuron, f"{what} spans [{int(b.min())}, {int(b.max())}]; Loihi's "
                                      f"bias mantissa is 13-bit signed ({BIAS_RANGE[0]}.."
                                      f"{BIAS_RANGE[1]})")
        return b if np.any(b) else None


def op_hint(op_name: str) -> str:
    """What to do about an op netx cannot hold (empty when there is no advice)."""
    hints = {
        "SumPool2d": " (fold it first: nmtoolchain.passes.fold_pooling)",
        "AvgPool2d": " (fold it first: nmtoolchain.passes.fold_pooling)",
        "MaxPool2d": " (max pooling has no spiking equivalent; use average or sum pooling)",
        "MatMul": " (a product of two dynamic tensors needs a custom Lava process; netx has none)",
        "IF": " (quantize for Loihi first: IF/LIF neurons become CUBA neurons)",
        "LIF": " (quantize for Loihi first: IF/LIF neurons become CUBA neurons)",
        "BatchNorm": " (fold batch norm into the layer before it first)",
        "ReLU": " (an ANN activation: convert to a spiking network first: nmtc convert MODEL "
                "--method threshold --calib DATA -o snn.nmir)",
    }
    return hints.get(op_name, "")


def _s10(s: str) -> np.ndarray:
    return np.array([s.encode("ascii")], dtype="S10")


#: IR op -> builder of the netx layer it starts (returns the layer's last node).
NETX_BUILDERS: Dict[str, Callable[[_Planner, Node], Node]] = {
    "Input": _Planner.input_layer,
    "Affine": _Planner.dense_layer,
    "Linear": _Planner.dense_layer,
    "Conv2d": _Planner.conv_layer,
    "Flatten": _Planner.flatten_layer,
}
# ``Output`` ends the chain (no layer); neurons and the Add of a recurrent
# layer are written by the synapse builder before them.


def plan_netx(graph: Graph) -> NetxPlan:
    """Check ``graph`` and build every netx layer in memory (nothing is written).

    Raises UnsupportedOpError naming the first node whose op netx cannot hold
    and NotExpressibleError naming a node whose structure or values it cannot.
    """
    return _Planner(graph).plan()


def export_netx(graph: Graph, path: Union[str, Path]) -> NetxPlan:
    """Write ``graph`` (quantized, contract form) to the netx file ``path``.

    Returns the plan (layers, IR node -> ``layer{i}_neuron`` names, how the
    input is driven). The file appears only complete (atomic rename).
    """
    plan = plan_netx(graph)
    with atomic_output(path) as tmp:
        write_plan(plan, tmp)
    return plan


def write_plan(plan: NetxPlan, path: Union[str, Path]) -> None:
    """Write a plan's layers to ``path`` with deterministic bytes (no times)."""
    import h5py
    from h5py import h5f, h5g, h5p

    def group_props(plist_class: Any) -> Any:
        p = h5p.create(plist_class)
        p.set_obj_track_times(False)
        p.set_link_creation_order(h5p.CRT_ORDER_TRACKED | h5p.CRT_ORDER_INDEXED)
        return p

    def new_group(parent: Any, name: str) -> Any:
        return h5py.Group(h5g.create(parent.id, name.encode("ascii"),
                                     gcpl=group_props(h5p.GROUP_CREATE)))

    def put(grp: Any, key: str, value: np.ndarray) -> None:
        grp.create_dataset(key, data=value, track_times=False)

    fapl = h5p.create(h5p.FILE_ACCESS)
    fapl.set_libver_bounds(h5f.LIBVER_EARLIEST, h5f.LIBVER_LATEST)
    fid = h5f.create(str(path).encode(), h5f.ACC_TRUNC, fcpl=group_props(h5p.FILE_CREATE),
                     fapl=fapl)
    with h5py.File(fid) as f:
        top = new_group(f, "layer")
        for layer in plan.layers:
            g = new_group(top, str(layer.index))
            put(g, "type", _s10(layer.type))
            for key, value in layer.keys.items():
                put(g, key, value)
            if layer.neuron is not None:
                n = new_group(g, "neuron")
                for key, value in layer.neuron.items():
                    put(n, key, value)


__all__ = ["export_netx", "plan_netx", "write_plan", "NetxPlan", "NetxLayer", "NETX_BUILDERS",
           "NEURON_OPS", "DRIVE_KINDS", "graph_origin", "op_hint"]
