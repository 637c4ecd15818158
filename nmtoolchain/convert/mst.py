"""QCFS ANN -> IF SNN conversion, the rule MST (Wang et al., ICCV 2023) takes
from QCFS (Bu et al., ICLR 2022).

Every QCFS activation ``λ/L · clip(floor(x·L/λ + φ), 0, L)`` becomes an
integrate-and-fire neuron with (spikingjelly 0.0.0.0.12 semantics)

* threshold ``v_threshold = λ``, reset by subtraction, ``compare='>='``
  (Heaviside(0) = 1: it fires at equality), one spike per step at most;
* membrane pre-charged to ``v_init = λ·φ`` (λ/2; QCFS's code runs the neuron
  once on a constant 0.5 of the λ-normalised input before the first real step,
  which fires nothing) — or 0 with ``precharge=False``;
* spikes of amplitude λ: a ``Scale(λ)`` node follows each IF, so the rate of the
  IF times λ approximates the QCFS output. We keep a separate Scale node rather
  than folding λ into the next layer's weights so that the IF's output stays
  binary spikes (what a back end maps) and the λ of every layer stays visible;
  a later pass may fold the Scale into the next synapse.

BatchNorm is folded into the preceding Conv2d/Affine/Linear first
(:func:`~nmtoolchain.passes.fold_batchnorm.fold_batchnorm`); a BatchNorm that
cannot be folded stays as an analog per-channel affine map.

Inference (recorded in ``metadata['input_encoding']`` and
``metadata['output_decoding']``): the same analog image is the input at every
step (direct encoding); the logits are summed over steps and the prediction at
step t is the argmax of the running sum.

Transformers (MST's windowed attention, seeds.md §2.3): only the QCFS nodes
change. MatMul (Q·Kᵀ of the current step's spikes, P·V), Softmax (a float
softmax every step), Bias (the relative position bias, a constant current),
Mean, Reshape/Transpose, Add and BatchNorm on the residual stream stay as they
are and are evaluated per step on that step's values, exactly MST's inference;
SpikeMask (RSM) nodes stay and are resampled every step. These nodes are listed
in ``metadata['conversion']['per_step_analog']`` (op -> node names) so a back
end sees what it must compute off the neuron cores.

Refused with an :class:`UnsupportedOpError` naming the node: ReLU (this rule
needs QCFS-trained activations; use threshold balancing for ReLU networks), GELU
(MST replaces Swin's GELU by QCFS before training) and
MaxPool2d (QCFS networks use average pooling). The pass never changes the graph
it is given and imports neither torch nor a vendor library.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from nmtoolchain.errors import BadInputError, UnsupportedOpError
from nmtoolchain.ir import IF, Graph, Scale
from nmtoolchain.passes.fold_batchnorm import fold_batchnorm

DIRECT_ENCODING = {
    "method": "direct",
    "rule": "the analog input is applied unchanged at every time step",
}
SUM_DECODING = {
    "method": "sum",
    "rule": "output values summed over time steps; prediction at step t = argmax of the running sum",
}


#: ops a converted transformer evaluates per step on analog values (kept as is)
_PER_STEP_ANALOG = ("MatMul", "Softmax", "Bias", "Mean", "SpikeMask", "LayerNorm")


def convert_mst(graph: Graph, *, timesteps: Optional[int] = None, precharge: bool = True) -> Graph:
    """Convert a QCFS ANN graph into an IF SNN graph (module docstring).

    ``timesteps`` (optional) is only recorded as the intended simulation length.
    Returns a new graph; raises UnsupportedOpError for a ReLU or MaxPool2d node
    and BadInputError for a graph without QCFS or a bad ``timesteps``.
    """
    if timesteps is not None and int(timesteps) < 1:
        raise BadInputError(f"timesteps must be >= 1, got {timesteps}")
    for n in graph:
        if n.op_name == "ReLU":
            raise UnsupportedOpError(
                f"node '{n.name}' (ReLU): MST/QCFS conversion needs QCFS activations in place of "
                "every ReLU (train with nmtoolchain.nn.QCFS), or use threshold balancing")
        if n.op_name == "GELU":
            raise UnsupportedOpError(
                f"node '{n.name}' (GELU): MST/QCFS conversion needs QCFS in place of every GELU "
                "(MST trains its Swin with QCFS where Swin has GELU)")
        if n.op_name == "MaxPool2d":
            raise UnsupportedOpError(
                f"node '{n.name}' (MaxPool2d): MST/QCFS conversion needs average pooling "
                "(QCFS replaces max pooling by AvgPool2d)")
    if not any(n.op_name == "QCFS" for n in graph):
        raise BadInputError("MST conversion: the graph has no QCFS activation to convert")
    snn = fold_batchnorm(graph)
    converted = []
    for name in [n.name for n in snn if n.op_name == "QCFS"]:
        node = snn[name]
        q = node.op
        lam = np.asarray(q.threshold, dtype=np.float32)
        if (lam <= 0).any():
            raise BadInputError(f"node '{name}' (QCFS): threshold λ must be > 0, got {lam}")
        v_init = lam * np.float32(q.shift) if precharge else np.zeros_like(lam)
        node.op = IF(v_threshold=lam, v_init=v_init, reset="subtract", compare=">=",
                     spike="single", r=1.0, v_reset=0.0)
        node.op.check()
        node.annotations["converted_from"] = {
            "op": "QCFS", "levels": int(q.levels), "threshold": lam.tolist(),
            "shift": float(q.shift), "precharge": bool(precharge)}
        scale_name = snn.unique_name(f"{name}_scale")
        users = [u.name for u in snn.users(name)]
        snn.add(scale_name, Scale(scale=lam.copy()), [name],
                {"source": f"spike amplitude λ of '{name}'"})
        for u in users:
            un = snn[u]
            un.inputs = tuple(scale_name if i == name else i for i in un.inputs)
        converted.append(name)
    snn.infer_shapes()
    per_step: dict = {}
    for n in snn:
        if n.op_name in _PER_STEP_ANALOG:
            per_step.setdefault(n.op_name, []).append(n.name)
    snn.metadata["conversion"] = {
        "method": "mst", "rule": "QCFS -> IF(v_th=λ, v_init=λ·shift, reset subtract, fire at >=)"
                                 " followed by Scale(λ)",
        "precharge": bool(precharge), "converted": converted,
        "unfolded_batchnorm": list(snn.metadata.get("unfolded_batchnorm", [])),
        "per_step_analog": per_step}
    snn.metadata["input_encoding"] = dict(DIRECT_ENCODING)
    if timesteps is not None:
        snn.metadata["input_encoding"]["steps"] = int(timesteps)
    snn.metadata["output_decoding"] = dict(SUM_DECODING)
    return snn


__all__ = ["convert_mst"]
