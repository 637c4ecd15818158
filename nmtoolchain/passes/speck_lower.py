"""Lower an IF graph to DYNAP-CNN layers: Conv2d -> IAF -> optional sum-pool.

A Speck core computes one convolution, one integrate-and-fire neuron per
output value and, per destination, an optional square sum-pooling. This pass
rewrites a float spiking graph into exactly that shape (sinabs 3.1's
``DynapcnnNetwork`` accepts the same patterns):

* ``Flatten -> Affine/Linear`` becomes a Conv2d whose kernel covers the whole
  input map (c, H, W) (a Linear after such a layer is a 1x1 convolution);
* ``AvgPool2d`` becomes ``SumPool2d`` and the weights of the layers it feeds
  are multiplied by 1 / (kH * kW), as sinabs does;
* an IF neuron's ``r`` and ``v_bias`` move into the convolution before it
  (both act on every step's input); thresholds that differ per channel are
  collapsed exactly by rescaling that channel (weights, bias, initial value and
  bound); thresholds that differ within a channel are refused;
* a weight layer read by the output without a neuron (a converted network's
  analog readout) gains a spiking readout: a multi-spike IAF whose threshold is
  one integer unit at the layer's scale and whose bound is the 16-bit floor,
  so its spike count is the summed readout at 8-bit resolution.

Non-sequential networks as sinabs 3.1 takes them: a neuron layer may feed
up to two layers (fan-out; each destination with its own pooling), and an
``Add`` of neuron (or pooled) outputs that feeds convolutions is a merge: on
the chip both cores send their events to the same core (sinabs ``Merge``).

BatchNorm and spike amplitudes are folded before this pass (``fold_batchnorm``,
``fold_scales``). :func:`dynapcnn_layers` then reads the lowered graph as a
list of :class:`DynapcnnLayerSpec` (the core-sized units the quantizer, the
mapping and the writer share). The pass returns a new graph.
"""
from __future__ import annotations

import copy
import dataclasses
from typing import List, Optional, Tuple

import numpy as np

from nmtoolchain.errors import NotExpressibleError
from nmtoolchain.ir import Graph, Node
from nmtoolchain.ir.conv import Conv2d
from nmtoolchain.ir.neuron import IF
from nmtoolchain.ir.pooling import SumPool2d

#: the ops a lowered graph holds
LOWERED_OPS = ("Input", "Conv2d", "IF", "SumPool2d", "Flatten", "Output", "Add")


#: ops the pipeline turns into DYNAP-CNN layers
ACCEPTED = frozenset({"Input", "Output", "Conv2d", "Affine", "Linear", "IF", "SumPool2d",
                      "AvgPool2d", "Flatten", "BatchNorm", "Scale", "Add"})
_LEAKY = ("LIF", "CubaLIF")
_WHY = {
    "MaxPool2d": "max pooling has no spiking equivalent on Speck (its cores sum-pool only)",
    "Concat": "concatenation is not a DYNAP-CNN layer (a core has one input map)",
    "MatMul": "a product of two spike tensors (attention) has no Speck core: cores hold fixed "
              "convolution weights only",
    "Softmax": "softmax is not a spiking operation; Speck cores run Conv2d -> IAF -> sum-pool only",
    "LayerNorm": "layer normalization uses run-time statistics; Speck has no such unit",
    "TokenHalt": "token halting is a transformer operation with no DYNAP-CNN layer",
    "TokenMerge": "token merging is a transformer operation with no DYNAP-CNN layer",
    "SpikeMask": "spike masking has no DYNAP-CNN layer",
    "Conv1d": "Speck cores run 2-D convolutions only",
    "Delay": "Speck has no synaptic or axonal delays",
    "SigmaDelta": "sigma-delta neurons are Loihi's; Speck runs integrate-and-fire neurons",
    "Threshold": "a stateless threshold is not a Speck neuron (IAF with state)",
    "Transpose": "a transpose is not a DYNAP-CNN layer",
    "Reshape": "a reshape is not a DYNAP-CNN layer (only a Flatten before a Linear is absorbed)",
    "Mean": "a mean over an axis is not a DYNAP-CNN layer",
    "Bias": "a stand-alone bias is not a DYNAP-CNN layer",
    "Roll": "a cyclic shift (shifted windows) is not a DYNAP-CNN layer",
    "Slice": "slicing a tensor is not a DYNAP-CNN layer",
}


def refused_nodes(graph: Graph) -> List[Tuple[str, str, str]]:
    """(node, op, why) for every node no step of the Speck pipeline can lower: the
    export's refusals and the Speck mapper's, one list."""
    out: List[Tuple[str, str, str]] = []
    for n in graph.topological_order():
        op = n.op_name
        if op in ACCEPTED:
            continue
        if n.op.is_ann_activation:
            how = "--method threshold --calib DATA" if op == "ReLU" else "--method mst -T T"
            why = (f"is an ANN activation ({op}): convert the network to spikes first "
                   f"(nmtc convert MODEL {how} -o snn.nmir), then export snn.nmir")
        elif n.op.is_readout:  # its v is the answer: Speck's cores emit spikes only
            why = (f"{op} is a non-spiking readout (its v is the answer), but Speck's cores emit "
                   "only spikes, which the host counts: make the output layer integrate-and-fire "
                   "(IF) and read its spike counts")
        elif op in _LEAKY:
            why = (f"{op} has leaky or current-based dynamics Speck cannot run: its neurons are "
                   "non-leaky integrate-and-fire (sinabs IAFSqueeze only)")
        else:
            why = _WHY.get(op, f"{op} is not a convolution, IAF neuron or sum-pooling: Speck "
                               "cores run Conv2d -> IAF -> sum-pool only")
        out.append((n.name, op, why))
    return out


def _fail(graph: Graph, node: Node, why: str) -> NotExpressibleError:
    return NotExpressibleError(f"node '{node.name}' (op {node.op_name}) cannot be exported to "
                               f"speck: {why}")


def _affine_to_conv(g: Graph) -> List[str]:
    notes = []
    from nmtoolchain.ir.reshape import Flatten

    if any(n.op_name in ("Affine", "Linear") for n in g):
        for out in g.outputs():  # keep a 1-D output 1-D once its layer becomes a conv
            src = g[out.inputs[0]]
            if src.shape is not None and len(src.shape) == 1 and src.op_name != "Flatten":
                name = g.unique_name(src.name + "_flat")
                g.add(name, Flatten(), [src.name])
                out.inputs = (name,)
    converted: set = set()  # Linear layers already rewritten (their outputs are now (n, 1, 1))

    def from_converted(name: str) -> bool:
        """Whether ``name`` is a rewritten Linear or an elementwise node (neuron) fed by one."""
        cur = g[name]
        while cur.name not in converted and cur.op.is_neuron and len(cur.inputs) == 1:
            cur = g[cur.inputs[0]]
        return cur.name in converted

    for node in [n for n in g.topological_order() if n.op_name in ("Affine", "Linear")]:
        src = g[node.inputs[0]]
        w = np.asarray(node.op.weight, np.float32)
        b = np.asarray(getattr(node.op, "bias", None) if getattr(node.op, "bias", None) is not None
                       else np.zeros(w.shape[0]), np.float32)
        if getattr(node.op, "delay", None) is not None and np.any(node.op.delay):
            raise _fail(g, node, "per-synapse delays do not exist on Speck")
        if src.op_name == "Flatten":
            feed = g[src.inputs[0]]
            shape = feed.shape
            if shape is not None and len(shape) == 1 and from_converted(feed.name):
                shape = (shape[0], 1, 1)  # a Flatten of a rewritten Linear layer's output
            if shape is None or len(shape) != 3 or src.shape != (int(np.prod(shape)),):
                raise _fail(g, node, f"it reads a Flatten of {shape}; a Speck layer reads a "
                                     "(C, H, W) map")
            src_name = feed.name
        elif src.shape is not None and len(src.shape) == 3 and src.shape[1:] == (1, 1):
            shape, src_name = src.shape, src.name
        elif src.shape is not None and len(src.shape) == 1 and from_converted(src.name):
            # a Linear after a Linear layer: its input is now a (n, 1, 1) map
            shape, src_name = (src.shape[0], 1, 1), src.name
        else:
            raise _fail(g, node, f"its input has shape {src.shape}; a Speck layer reads a "
                                 "(C, H, W) event map (Flatten -> Linear or a 1x1 map)")
        c, h, wd = shape
        node.op = Conv2d(weight=w.reshape(w.shape[0], c, h, wd), bias=b)
        node.inputs = (src_name,)
        node.annotations["speck_from"] = "Linear as a full-size convolution"
        converted.add(node.name)
        notes.append(f"{node.name}: Linear {w.shape[1]}->{w.shape[0]} as a {h}x{wd} convolution")
        if src.op_name == "Flatten" and not g.users(src.name):
            g.remove(src.name)
        for u in g.users(node.name):  # per-neuron parameters (out,) -> (out, 1, 1)
            if u.op.is_neuron:
                for k, v in u.op.arrays().items():
                    if v.ndim == 1 and v.shape[0] == w.shape[0] and v.shape[0] > 1:
                        setattr(u.op, k, v.reshape(-1, 1, 1))
    g.infer_shapes()  # once all are rewritten (a Linear after a Linear reads the new shape)
    return notes


def _downstream_synapses(g: Graph, name: str) -> List[Node]:
    """Weight layers reached from ``name`` through pooling and Flatten only."""
    out: List[Node] = []
    for u in g.users(name):
        if u.op.is_synapse:
            out.append(u)
        elif u.op_name in ("SumPool2d", "AvgPool2d", "Flatten"):
            out += _downstream_synapses(g, u.name)
        elif u.op_name == "Add":
            raise _fail(g, u, f"it merges the average pooling '{name}' with another branch; "
                              "the 1/(kH*kW) rescale cannot go into the shared weights "
                              "(use sum pooling)")
    return out


def _avgpool_to_sumpool(g: Graph) -> List[str]:
    notes = []
    for node in [n for n in g.topological_order() if n.op_name == "AvgPool2d"]:
        kh, kw = node.op.kernel_size
        if tuple(node.op.padding) != (0, 0):
            raise _fail(g, node, f"padding {node.op.padding}: Speck's sum pooling has none")
        synapses = _downstream_synapses(g, node.name)
        for syn in synapses:
            syn.op.weight = (np.asarray(syn.op.weight, np.float32) / float(kh * kw))
        node.op = SumPool2d(kernel_size=node.op.kernel_size, stride=node.op.stride)
        notes.append(f"{node.name}: AvgPool2d {kh}x{kw} as SumPool2d, next weights x 1/{kh * kw}"
                     if synapses else
                     f"{node.name}: AvgPool2d {kh}x{kw} at the output as SumPool2d: the output "
                     f"is {kh * kw} x the model's average (sums of spikes; the class with most "
                     "spikes is unchanged)")
    return notes


def _conv_before(g: Graph, neuron: Node) -> Node:
    src = g[neuron.inputs[0]]
    if src.op_name != "Conv2d":
        raise _fail(g, neuron, f"it reads '{src.name}' ({src.op_name}); a Speck neuron reads "
                               "its core's convolution")
    if len(g.users(src.name)) != 1:
        raise _fail(g, src, "its output is read by more than its neuron")
    return src


def _channel_vector(g: Graph, neuron: Node, name: str, value: np.ndarray) -> np.ndarray:
    """A neuron parameter as one value per channel, or refusal if it varies in space."""
    shape = neuron.shape
    full = np.broadcast_to(np.asarray(value, np.float32), shape)
    per_c = full.reshape(shape[0], -1)
    if np.any(per_c != per_c[:, :1]):
        raise _fail(g, neuron, f"{name} differs between neurons of one channel; a Speck core "
                               "has one value per layer (per channel can be folded, per neuron not)")
    return per_c[:, 0].copy()


def _normalise_neurons(g: Graph) -> List[str]:
    notes = []
    for node in [n for n in g.topological_order() if n.op.is_neuron]:
        op = node.op
        if node.op_name != "IF":
            raise _fail(g, node, "only integrate-and-fire neurons run on Speck")
        conv = _conv_before(g, node)
        cop = conv.op
        if op.reset == "to_reset" and np.any(np.asarray(op.v_reset) != 0):
            raise _fail(g, node, "reset to a non-zero v_reset; Speck resets by subtraction or "
                                 "to zero")
        w = np.asarray(cop.weight, np.float32)
        b = np.asarray(cop.bias, np.float32)
        r = _channel_vector(g, node, "r", op.r)
        v_bias = _channel_vector(g, node, "v_bias", op.v_bias)
        # v += r * (W x + b) + v_bias  ==  v += (rW) x + (r b + v_bias)
        w = w * r[:, None, None, None]
        b = b * r + v_bias
        thr = _channel_vector(g, node, "v_threshold", op.v_threshold)
        if np.any(thr <= 0):
            raise _fail(g, node, "a threshold <= 0")
        ref = float(thr.max())
        k = (ref / thr).astype(np.float32)  # scale channel c by ref / thr_c: same spikes
        v_init = np.broadcast_to(np.asarray(op.v_init, np.float32), node.shape) * \
            k[:, None, None]
        if op.v_min is not None:
            vmin = _channel_vector(g, node, "v_min", op.v_min) * k
            if np.any(vmin != vmin[0]):
                raise _fail(g, node, "v_min differs between channels after collapsing "
                                     "the thresholds")
            v_min: Optional[np.ndarray] = np.asarray(vmin[0], np.float32)
        else:
            v_min = None
        if np.any(k != 1):
            notes.append(f"{node.name}: per-channel thresholds collapsed to {ref:.6g} by "
                         "rescaling each channel's weights, bias and initial value")
        cop.weight = (w * k[:, None, None, None]).astype(np.float32)
        cop.bias = (b * k).astype(np.float32)
        v0 = v_init if np.any(v_init != v_init.reshape(-1)[0]) else \
            np.asarray(v_init.reshape(-1)[0], np.float32)
        node.op = IF(r=1.0, v_threshold=ref, v_reset=0.0, reset=op.reset, v_init=v0,
                     v_min=v_min, v_bias=0.0, spike=op.spike, compare=op.compare)
    return notes


def _add_readouts(g: Graph) -> List[str]:
    from nmtoolchain.numerics.speck import WEIGHT_BITS, discretization_scale, state_floor

    notes = []
    for conv in [n for n in g.topological_order() if n.op_name == "Conv2d"]:
        users = g.users(conv.name)
        if any(u.op.is_neuron for u in users):
            continue
        if not all(u.op_name in ("Output", "Flatten") for u in users):
            continue  # not a readout; the grouping names the problem
        w, b = conv.op.weight, conv.op.bias
        s = min(discretization_scale(w, WEIGHT_BITS), discretization_scale(b, WEIGHT_BITS))
        thr = float(np.float32(1.0 / s))
        name = g.unique_name(conv.name + "_readout")
        g.add(name, IF(v_threshold=thr, v_min=state_floor(w, b, thr), reset="subtract",
                       spike="multi", compare=">="), [conv.name],
              annotations={"speck_readout": True})
        # consumers of the conv now read the readout neuron
        for u in users:
            u.inputs = tuple(name if i == conv.name else i for i in u.inputs)
        notes.append(f"{name}: spiking readout added after '{conv.name}' (multi-spike IAF, "
                     "threshold one integer unit, bound at the 16-bit floor): output = spike counts")
    return notes


def lower_to_dynapcnn(graph: Graph) -> Tuple[Graph, List[str]]:
    """A copy of ``graph`` in DYNAP-CNN form (module docstring) and notes on each rewrite."""
    g = copy.deepcopy(graph)
    g.infer_shapes()
    notes = _affine_to_conv(g)
    g.infer_shapes()
    notes += _avgpool_to_sumpool(g)
    notes += _add_readouts(g)
    g.infer_shapes()
    notes += _normalise_neurons(g)
    g.infer_shapes()
    why_scale = {r["scale"]: r["why"] for r in g.metadata.get("unfolded_scales", [])}
    for n in g.topological_order():
        if n.op_name not in LOWERED_OPS:
            raise _fail(g, n, "its spike amplitude cannot be folded into weights: "
                              f"{why_scale[n.name]}" if n.name in why_scale
                        else "no DYNAP-CNN layer holds this op after lowering")
    dynapcnn_layers(g)  # refuses what does not group into cores
    return g, notes


# ----------------------------------------------------------------- grouping
@dataclasses.dataclass
class Destination:
    """Where a layer's spikes go: another layer (index) or the network output (None),
    through a square sum-pooling of ``pool`` (1 = none)."""

    layer: Optional[int]
    pool: Tuple[int, int]
    pool_stride: Tuple[int, int]
    pool_nodes: Tuple[str, ...] = ()


@dataclasses.dataclass
class DynapcnnLayerSpec:
    """One core's worth of graph: a convolution, its neurons and where they send."""

    index: int
    conv: str
    neuron: str
    in_shape: Tuple[int, int, int]
    out_shape: Tuple[int, int, int]
    kernel: Tuple[int, int]
    stride: Tuple[int, int]
    padding: Tuple[int, int]
    dilation: Tuple[int, int]
    groups: int
    has_bias: bool
    destinations: List[Destination] = dataclasses.field(default_factory=list)
    #: the layers feeding this one (None = the network input); two or more = a merge
    sources: List[Optional[int]] = dataclasses.field(default_factory=list)

    @property
    def source(self) -> Optional[int]:
        """The first source (the only one unless the layer merges branches)."""
        return self.sources[0] if self.sources else None


def _follow(g: Graph, start: str) -> List[Tuple[str, Tuple[int, int], Tuple[int, int],
                                                  Tuple[str, ...]]]:
    """(consumer, pool kernel, pool stride, pool nodes) for each path leaving ``start``
    through consecutive sum-pools (kernels multiply, as sinabs consolidates them)."""
    out = []
    for u in g.users(start):
        if u.op_name == "SumPool2d":
            k, s = tuple(u.op.kernel_size), tuple(u.op.stride)
            if s != k:
                raise _fail(g, u, f"pooling stride {s} differs from its kernel {k}; Speck "
                                  "pools with stride = kernel")
            if tuple(u.op.padding) != (0, 0):
                raise _fail(g, u, f"pooling padding {u.op.padding}; Speck pools without padding")
            for c, k2, s2, nodes in _follow(g, u.name):
                out.append((c, (k[0] * k2[0], k[1] * k2[1]), (s[0] * s2[0], s[1] * s2[1]),
                            (u.name,) + nodes))
        elif u.op_name == "Add":  # a merge: the events go to every layer the sum feeds
            for c in g.users(u.name):
                if c.op_name != "Conv2d":
                    raise _fail(g, u, f"a merge feeds '{c.name}' ({c.op_name}); on Speck a "
                                      "merge feeds a core's convolution")
                out.append((c.name, (1, 1), (1, 1), (u.name,)))
        else:
            out.append((u.name, (1, 1), (1, 1), ()))
    return out


def dynapcnn_layers(g: Graph) -> List[DynapcnnLayerSpec]:
    """The lowered graph as DYNAP-CNN layers, in topological order (sinabs's layer order)."""
    g.infer_shapes()
    convs = [n for n in g.topological_order() if n.op_name == "Conv2d"]
    index = {c.name: i for i, c in enumerate(convs)}
    layers: List[DynapcnnLayerSpec] = []
    for i, conv in enumerate(convs):
        users = g.users(conv.name)
        if len(users) != 1 or not users[0].op.is_neuron:
            raise _fail(g, conv, "a Speck core's convolution feeds exactly one IAF neuron layer")
        neuron = users[0]
        op = conv.op
        spec = DynapcnnLayerSpec(
            i, conv.name, neuron.name, tuple(g[conv.inputs[0]].shape), tuple(conv.shape),
            tuple(op.kernel_size), tuple(op.stride), tuple(op.padding), tuple(op.dilation),
            int(op.groups), bool(np.any(op.bias != 0)))
        for consumer, pool, pstride, nodes in _follow(g, neuron.name):
            c = g[consumer]
            if c.op_name == "Conv2d":
                spec.destinations.append(Destination(index[consumer], pool, pstride, nodes))
            elif c.op_name == "Output" or (c.op_name == "Flatten" and all(
                    u.op_name == "Output" for u in g.users(c.name))):
                spec.destinations.append(Destination(None, pool, pstride, nodes))
            else:
                raise _fail(g, c, f"it reads neuron layer '{neuron.name}'; only a convolution, "
                                  "a sum-pooling or the output may")
        layers.append(spec)
    by_neuron = {s.neuron: s.index for s in layers}
    for spec in layers:
        feed = g[g[spec.conv].inputs[0]]
        branches = [g[i] for i in feed.inputs] if feed.op_name == "Add" else [feed]
        for src in branches:
            first = src
            while src.op_name == "SumPool2d":
                src = g[src.inputs[0]]
            if src.op_name == "Input":
                if first is not src or feed.op_name == "Add":
                    raise _fail(g, g[spec.conv], "it reads the input through a pooling or a "
                                                 "merge (a DVS pre-processing layer), which nmtc "
                                                 "does not lower yet")
                spec.sources.append(None)
            elif src.name in by_neuron:
                spec.sources.append(by_neuron[src.name])
            else:
                raise _fail(g, src, f"it feeds layer '{spec.conv}'; on Speck a layer reads the "
                                    "input, neuron layers, their poolings or a merge of those")
    for inp in g.inputs():
        for u in g.users(inp.name):
            if u.op_name != "Conv2d":
                raise _fail(g, u, "it reads the network input; on Speck the input goes to a "
                                  "core's convolution")
    return layers


def is_lowered(graph: Graph) -> bool:
    """True when every node is one a DYNAP-CNN layer holds (the lowering's output)."""
    return all(n.op_name in LOWERED_OPS for n in graph)


__all__ = ["lower_to_dynapcnn", "dynapcnn_layers", "refused_nodes", "ACCEPTED", "DynapcnnLayerSpec", "Destination",
           "is_lowered", "LOWERED_OPS"]
