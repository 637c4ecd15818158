"""ANN -> SNN conversion by threshold balancing (data-based normalization).

A ReLU network becomes a rate-coded spiking network: every ReLU is replaced by
an integrate-and-fire neuron with threshold 1, and every synapse is rescaled
so that a spike rate of 1 per step stands for the layer's activation scale
λ (a high percentile of its ReLU outputs on calibration data, Rueckauer et al.
2017, "Conversion of continuous-valued deep networks to efficient
event-driven networks"): ``W' = W * λ_in / λ_out``, ``b' = b / λ_out``.
The last synapse (the logits) gets an IF neuron too, so the class is the
output neuron that spikes most.

The input must then be spikes at rate ``x / input_max`` (see
:func:`nmtoolchain.convert.encode.rate_encode`); the converted graph records
that in ``metadata['input_encoding']``.

BatchNorm (eval mode) is folded into the synapse before it first
(:func:`~nmtoolchain.passes.fold_batchnorm.fold_batchnorm`).

Max pooling is refused: the maximum of spike *rates* is not the maximum of
the spikes arriving in one step, and the published spiking max-pool
(Rueckauer et al. 2017: gate each window onto the input with the highest
online-estimated rate) needs per-window gating neurons that neither
nmtc's IR nor Loihi 2's netx layers have. Average pooling is linear, so it
passes spikes through at the same scale and folds into the next synapse for
Loihi; a network trained with ``nn.AvgPool2d`` in place of ``nn.MaxPool2d``
converts.

The percentile: Diehl et al. 2015 ("Fast-classifying, high-accuracy spiking
deep networks through weight and threshold balancing", data-based
normalization) take the maximum activation (``percentile=100``); Rueckauer et
al. 2017 ("robust normalization") replace the maximum by a high percentile of
the activation distribution, which outliers do not inflate, reporting p from
99.0 to 99.9999 to work well; nmtc's default, 99.9, lies in that range.

This is a pass ``Graph -> Graph``; it never changes the graph it is given.
The reset rule is a parameter: ``'to_reset'`` (v <- 0, what Loihi does, so
the float SNN and its fixed-point version have the same semantics) or
``'subtract'`` (the classic conversion, more accurate at few steps).
"""
from __future__ import annotations

import copy
from typing import Any, Dict, Tuple

import numpy as np

from nmtoolchain.convert.encode import encoding_metadata
from nmtoolchain.errors import BadInputError, UnsupportedOpError
from nmtoolchain.ir import IF, Graph
from nmtoolchain.passes.fold_batchnorm import fold_batchnorm

#: Ops a converted network may hold between its synapses and ReLUs.
_PASS = ("Flatten", "AvgPool2d", "SumPool2d", "Reshape")
_SYNAPSES = ("Affine", "Linear", "Conv2d")

#: the one-line refusal of a max-pooling node (module docstring says why)
MAXPOOL_REFUSAL = ("node '{name}' (MaxPool2d): threshold balancing does not convert max pooling "
                   "(a max of spike rates needs gating neurons Loihi 2 lacks); use average "
                   "pooling (nn.AvgPool2d) in the ANN and retrain")


def activation_scales(ann: Graph, calib_x: Any, percentile: float = 99.9) -> Dict[str, float]:
    """λ per ReLU node (and for the graph's output): the ``percentile`` of its
    positive activations on ``calib_x`` (B, *input shape), run in the float
    simulator. A layer that never activates gets λ = 1."""
    from simulators.cycle import Simulator

    x = np.asarray(calib_x, dtype=np.float32)
    relus = [n.name for n in ann if n.op_name == "ReLU"]
    outs = [n.name for n in ann.outputs()]
    sim = Simulator(ann, "float", record=relus + outs, count=False)
    res = sim.run(x, 1)
    lam: Dict[str, float] = {}
    for name in relus + outs:
        a = res.recorded[name][:, 0].detach().cpu().numpy().reshape(-1)
        pos = a[a > 0]
        lam[name] = float(np.percentile(pos, percentile)) if pos.size else 1.0
    return lam


def convert_relu_to_if(ann: Graph, calib_x: Any, *, steps: int = 32, percentile: float = 99.9,
                       input_max: float = 1.0, reset: str = "to_reset",
                       compare: str = ">") -> Tuple[Graph, Dict[str, float]]:
    """Convert a ReLU ANN graph into a rate-coded IF SNN graph.

    The ANN is a chain: Input -> [Flatten] -> (Affine | Linear | Conv2d) ->
    ReLU -> ... -> (Affine | Linear | Conv2d) -> Output, optionally with
    Flatten, AvgPool2d or SumPool2d between layers. ``calib_x`` (B, *input
    shape) are analog training inputs in [0, input_max]. Returns the SNN graph
    (spike input, IF neurons with threshold 1 and the chosen ``reset`` and
    ``compare``, output IF spikes) and the λ used per layer. ``steps`` is
    only recorded (the encoding's intended length). ``percentile`` in (0, 100]
    (100: the maximum, Diehl et al. 2015).
    """
    if not 0.0 < float(percentile) <= 100.0:
        raise BadInputError(f"--percentile must be in (0, 100], got {percentile}")
    if not float(input_max) > 0.0:
        raise BadInputError(f"input_max must be positive, got {input_max}")
    if reset not in ("to_reset", "subtract"):
        raise BadInputError(f"reset must be 'to_reset' or 'subtract', got {reset!r}")
    ann = fold_batchnorm(ann)
    for n in ann:
        if n.op_name == "MaxPool2d":
            raise UnsupportedOpError(MAXPOOL_REFUSAL.format(name=n.name))
        if n.op_name not in ("Input", "Output", "ReLU") + _SYNAPSES + _PASS:
            raise UnsupportedOpError(
                f"node '{n.name}' ({n.op_name}): threshold balancing converts chains of "
                f"{', '.join(_SYNAPSES)} with ReLU (and {', '.join(_PASS)}); fold or remove it")
    if len(ann.inputs()) != 1 or len(ann.outputs()) != 1:
        raise BadInputError("threshold balancing needs a graph with one input and one output")
    lam = activation_scales(ann, calib_x, percentile)
    snn = Graph(copy.deepcopy(ann.metadata))
    scale_of: Dict[str, float] = {}  # value scale of each node's output (activation = rate * λ)
    out_node = ann.outputs()[0]
    for node in ann.topological_order():
        op = copy.deepcopy(node.op)
        ann_ = copy.deepcopy(node.annotations)
        if node.op_name == "Input":
            scale_of[node.name] = float(input_max)
            snn.add(node.name, op, node.inputs, ann_)
            continue
        src = node.inputs[0]
        if node.op_name in _SYNAPSES:
            users = ann.users(node.name)
            if len(users) != 1:
                raise UnsupportedOpError(
                    f"node '{node.name}' ({node.op_name}) feeds {len(users)} nodes; threshold "
                    "balancing handles chains only")
            nxt = users[0]
            if nxt.op_name == "ReLU":
                lam_out = lam[nxt.name]
            elif nxt.op_name == "Output":
                lam_out = lam[nxt.name]
            else:
                raise UnsupportedOpError(
                    f"node '{node.name}' ({node.op_name}) feeds '{nxt.name}' ({nxt.op_name}); "
                    "expected a ReLU or the output")
            lam_in = scale_of[src]
            op.weight = (np.asarray(op.weight, np.float64) * lam_in / lam_out).astype(np.float32)
            bias = getattr(op, "bias", None)
            if bias is not None:
                op.bias = (np.asarray(bias, np.float64) / lam_out).astype(np.float32)
            ann_["conversion"] = {"lambda_in": lam_in, "lambda_out": lam_out}
            snn.add(node.name, op, node.inputs, ann_)
            scale_of[node.name] = lam_out
            if nxt.op_name == "Output":  # the logits get a spiking neuron too
                name = snn.unique_name(f"{node.name}_if")
                snn.add(name, IF(v_threshold=1.0, reset=reset, compare=compare), [node.name],
                        {"conversion": {"lambda": lam_out, "from": "output"}})
                scale_of[name] = lam_out
                snn.add(out_node.name, copy.deepcopy(out_node.op), [name],
                        copy.deepcopy(out_node.annotations))
            continue
        if node.op_name == "ReLU":
            snn.add(node.name, IF(v_threshold=1.0, reset=reset, compare=compare), node.inputs,
                    {**ann_, "conversion": {"lambda": lam[node.name], "from": "ReLU"}})
            scale_of[node.name] = lam[node.name]
            continue
        if node.op_name == "Output":
            if node.name in snn.nodes:
                continue  # added after the last synapse's IF neuron
            if ann[src].op_name == "ReLU":
                snn.add(node.name, op, node.inputs, ann_)
                continue
            raise UnsupportedOpError(
                f"output '{node.name}' reads '{src}' ({ann[src].op_name}); threshold "
                "balancing expects the last synapse or a ReLU to feed the output")
        snn.add(node.name, op, node.inputs, ann_)  # Flatten, pooling: linear, same scale
        scale_of[node.name] = scale_of[src]
    snn.metadata["input_encoding"] = encoding_metadata(steps, input_max)
    snn.metadata["conversion"] = {
        "method": "threshold balancing (ReLU -> IF, data-based normalization)",
        "percentile": float(percentile), "reset": reset, "compare": compare,
        "lambdas": {k: float(v) for k, v in lam.items()}}
    snn.infer_shapes()
    return snn, lam


__all__ = ["convert_relu_to_if", "activation_scales", "MAXPOOL_REFUSAL"]
