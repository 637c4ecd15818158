"""The discretized sinabs network of a Speck export: a JSON layer list plus a tensor file.

The export stores no pickled module. ``network.json`` lists the layers of a
sinabs network (``nn.Conv2d``, ``sinabs.layers.IAFSqueeze``,
``sinabs.layers.SumPool2d``, ``sinabs.layers.Merge``, ``nn.Flatten``) in order,
each with its hyper-parameters and the layers it reads (a chain is rebuilt as
``nn.Sequential``, forks and merges as a small module that runs them in order);
``network.pt`` holds only tensors (``torch.load(..., weights_only=True)``):
conv weights and biases, each IAF's threshold, ``min_v_mem`` and initial
membrane value, all integer-valued (sinabs keeps discretized values as floats).
:func:`build_sinabs_network` rebuilds the ``nn.Sequential`` with plain sinabs;
``DynapcnnNetwork(net, input_shape, discretize=True)`` leaves it unchanged
(one group in each layer already sits at its integer limit, so the scale is 1).
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from nmtoolchain.errors import BadInputError, NotExpressibleError
from nmtoolchain.ir import Graph

FORMAT = "nmtc-speck-sinabs/1"


@dataclasses.dataclass
class SinabsLayer:
    """One module of the sequential sinabs network, as network.json records it."""

    kind: str  # conv | iaf | sumpool | flatten
    node: str  # the IR node it comes from
    params: Dict[str, Any] = dataclasses.field(default_factory=dict)

    def as_dict(self) -> Dict[str, Any]:
        return {"kind": self.kind, "node": self.node, **self.params}


@dataclasses.dataclass
class SinabsNetworkSpec:
    """The whole network: input shape, the layer list and the tensors (numpy)."""

    input_shape: Tuple[int, ...]
    layers: List[SinabsLayer]
    tensors: Dict[str, np.ndarray]
    outputs: List[int] = dataclasses.field(default_factory=list)  # layer indices

    def as_dict(self) -> Dict[str, Any]:
        return {"format": FORMAT, "input_shape": list(self.input_shape),
                "layers": [layer.as_dict() for layer in self.layers],
                "outputs": list(self.outputs)}


def sinabs_spec(graph: Graph) -> SinabsNetworkSpec:
    """The sequential sinabs network of a Speck-quantized graph (a chain of nodes)."""
    order = graph.topological_order()
    layers: List[SinabsLayer] = []
    tensors: Dict[str, np.ndarray] = {}
    index: Dict[str, int] = {n.name: -1 for n in graph.inputs()}
    for n in order:
        if n.op_name in ("Input", "Output"):
            continue
        i = len(layers)
        index[n.name] = i
        op = n.op
        inputs = [index[s] for s in n.inputs]
        if n.op_name == "Add":
            if len(inputs) != 2:
                raise NotExpressibleError(
                    f"node '{n.name}' (Add): a merge of {len(inputs)} branches; sinabs's Merge "
                    "takes two")
            layers.append(SinabsLayer("merge", n.name, {"inputs": inputs}))
            continue
        if n.op_name == "Conv2d":
            layers.append(SinabsLayer("conv", n.name, dict(
                in_channels=int(op.weight.shape[1] * op.groups),
                out_channels=int(op.weight.shape[0]), kernel_size=list(op.kernel_size),
                stride=list(op.stride), padding=list(op.padding),
                dilation=list(op.dilation), groups=int(op.groups),
                bias=bool(np.any(op.bias != 0)), inputs=inputs)))
            tensors[f"{i}.weight"] = np.asarray(op.weight, np.float32)
            if np.any(op.bias != 0):  # a bias is the chip's leak: only where there is one
                tensors[f"{i}.bias"] = np.asarray(op.bias, np.float32)
        elif n.op_name == "IF":
            layers.append(SinabsLayer("iaf", n.name, dict(
                spike_fn="MultiSpike" if op.spike == "multi" else "SingleSpike",
                reset_fn="MembraneSubtract" if op.reset == "subtract" else "MembraneReset",
                shape=list(n.shape), inputs=inputs)))
            tensors[f"{i}.spike_threshold"] = np.asarray(op.v_threshold, np.float32).reshape(())
            tensors[f"{i}.min_v_mem"] = np.asarray(op.v_min, np.float32).reshape(())
            tensors[f"{i}.v_init"] = np.broadcast_to(
                np.asarray(op.v_init, np.float32), n.shape).copy()
        elif n.op_name == "SumPool2d":
            layers.append(SinabsLayer("sumpool", n.name, dict(
                kernel_size=list(op.kernel_size), stride=list(op.stride), inputs=inputs)))
        elif n.op_name == "Flatten":
            layers.append(SinabsLayer("flatten", n.name, {"inputs": inputs}))
        else:
            raise NotExpressibleError(f"node '{n.name}' ({n.op_name}) has no sinabs DynapCNN "
                                      "module")
    outputs = [index[o.inputs[0]] for o in graph.outputs()]
    return SinabsNetworkSpec(tuple(graph.inputs()[0].shape), layers, tensors, outputs)


def save_network(spec: SinabsNetworkSpec, directory: Path) -> List[str]:
    """Write network.json and network.pt (tensors only) into ``directory``."""
    import torch

    (directory / "network.json").write_text(json.dumps(spec.as_dict(), indent=1) + "\n")
    torch.save({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in spec.tensors.items()},
               directory / "network.pt")
    return ["network.json", "network.pt"]


def build_sinabs_network(directory: Path, batch_size: int) -> Tuple[Any, Dict[str, Any]]:
    """(nn.Sequential of sinabs layers, network.json) rebuilt from an export directory.

    ``batch_size`` is what sinabs's IAFSqueeze needs to unflatten (batch x time).
    The initial membrane values are in ``net.v_init`` (index -> tensor) for the caller
    to set after sizing the state."""
    import sinabs.layers as sl
    import torch
    from sinabs.activation import MembraneReset, MembraneSubtract, MultiSpike, SingleSpike
    from torch import nn

    directory = Path(directory)
    meta = json.loads((directory / "network.json").read_text())
    if meta.get("format") != FORMAT:
        raise BadInputError(f"{directory}/network.json: not an nmtc Speck network "
                            f"(format {meta.get('format')!r})")
    t = torch.load(directory / "network.pt", weights_only=True)
    mods: List[nn.Module] = []
    v_init: Dict[int, torch.Tensor] = {}
    for i, layer in enumerate(meta["layers"]):
        kind = layer["kind"]
        if kind == "conv":
            m = nn.Conv2d(layer["in_channels"], layer["out_channels"],
                          tuple(layer["kernel_size"]), stride=tuple(layer["stride"]),
                          padding=tuple(layer["padding"]), dilation=tuple(layer["dilation"]),
                          groups=layer["groups"], bias=bool(layer["bias"]))
            with torch.no_grad():
                m.weight.copy_(t[f"{i}.weight"])
                if layer["bias"]:
                    m.bias.copy_(t[f"{i}.bias"])
        elif kind == "iaf":
            m = sl.IAFSqueeze(
                batch_size=batch_size,
                spike_threshold=float(t[f"{i}.spike_threshold"]),
                min_v_mem=float(t[f"{i}.min_v_mem"]),
                spike_fn=MultiSpike if layer["spike_fn"] == "MultiSpike" else SingleSpike,
                reset_fn=MembraneSubtract() if layer["reset_fn"] == "MembraneSubtract"
                else MembraneReset())
            v_init[i] = t[f"{i}.v_init"]
        elif kind == "sumpool":
            m = sl.SumPool2d(tuple(layer["kernel_size"]), stride=tuple(layer["stride"]))
        elif kind == "flatten":
            m = nn.Flatten()
        elif kind == "merge":
            m = sl.Merge()
        else:
            raise BadInputError(f"{directory}/network.json: unknown layer kind {kind!r}")
        mods.append(m)
    inputs = [layer.get("inputs", [i - 1]) for i, layer in enumerate(meta["layers"])]
    outputs = meta.get("outputs", [len(mods) - 1])
    if all(ins == [i - 1] for i, ins in enumerate(inputs)) and outputs == [len(mods) - 1]:
        net = nn.Sequential(*mods)
    else:
        net = _graph_module(mods, inputs, outputs)
    net.v_init = v_init  # type: ignore[attr-defined]
    return net, meta


def _graph_module(mods: List[Any], inputs: List[List[int]], outputs: List[int]) -> Any:
    """A sinabs network with forks and merges: the layers run in order, each on the
    outputs of its ``inputs`` (-1 = the network input); iterating it yields the layers."""
    from torch import nn

    class SinabsGraph(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layers = nn.ModuleList(mods)

        def __iter__(self):  # the layers, in order, as for nn.Sequential
            return iter(self.layers)

        def forward(self, x):
            values = {-1: x}
            for i, m in enumerate(self.layers):
                values[i] = m(*[values[j] for j in inputs[i]])
            outs = [values[o] for o in outputs]
            return outs[0] if len(outs) == 1 else tuple(outs)

    return SinabsGraph()


__all__ = ["FORMAT", "SinabsLayer", "SinabsNetworkSpec", "sinabs_spec", "save_network",
           "build_sinabs_network"]
