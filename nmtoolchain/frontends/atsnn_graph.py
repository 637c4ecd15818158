"""The IR of an AT-SNN model: the Spikformer's graph with TokenHalt and
TokenMerge nodes carrying the gates (``seeds.md`` §4).

torch.fx cannot trace AT-SNN's data-dependent halting loop, so the loader
traces the plain Spikformer with the same weights (the layers every token
runs through) and inserts the token nodes where the model applies them:

* ``blocks_<l>_halt`` (TokenHalt) after the output of block l, consuming it;
  its ``stream_in`` is the node whose output enters block l (the SPS tokens
  for block 0, the previous TokenHalt after that);
* ``blocks_<m>_merge`` (TokenMerge) at the input of the merge block m,
  with the V neurons of blocks m.. as its size-weighted rows.

The simulator (:mod:`simulators.cycle.kernels_tokens`) gives the token nodes
their runtime state and masks every node between them.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from nmtoolchain.errors import BadInputError
from nmtoolchain.ir import Graph, TokenHalt, TokenMerge

#: config keys of the AT-SNN model that the plain Spikformer does not take
_TOKEN_KEYS = ("halting", "gate_scale", "gate_center", "halt_eps", "halt_order", "readout",
               "merge", "merge_r", "merge_threshold", "merge_block")


def _block_input(graph: Graph, block: int) -> str:
    name = f"blocks_{block}_attn_q_linear"
    if name not in graph.nodes:
        raise BadInputError(f"AT-SNN graph: no node '{name}' (block {block}'s Q projection)")
    return graph[name].inputs[0]


def _block_output(graph: Graph, block: int) -> str:
    last = f"blocks_{block}_mlp_fc2_lif"
    users = [n.name for n in graph if last in n.inputs and n.op_name == "Add"]
    if len(users) != 1:
        raise BadInputError(f"AT-SNN graph: block {block}'s residual output after '{last}' "
                            f"not found")
    return users[0]


def add_token_nodes(graph: Graph, config: Mapping[str, Any], steps: int) -> Graph:
    """Insert TokenHalt (and TokenMerge) nodes into a traced Spikformer ``graph``
    for an AT-SNN ``config``; ``steps`` is the T the model runs for (the last
    step forces halting). Returns the same graph."""
    if config.get("halt_order", "time") != "time":
        raise BadInputError("AT-SNN graph: the simulator runs steps in order, so only "
                            "halt_order 'time' can be simulated (got "
                            f"{config.get('halt_order')!r})")
    depth = int(config["depth"])
    merge_at = int(config.get("merge_block", 0)) if config.get("merge", "none") != "none" else None
    if merge_at is not None:
        entry = _block_input(graph, merge_at)
        name = f"blocks_{merge_at}_merge"
        thr = (float(config["merge_threshold"]) if config["merge"] == "threshold" else None)
        weighted = tuple(f"blocks_{l}_attn_v_lif" for l in range(merge_at, depth))
        graph.replace_input(entry, name)
        graph.add(name, TokenMerge(threshold=thr, r=int(config.get("merge_r", 0)),
                                   weighted=weighted), [entry])
    stream_in = _block_input(graph, 0)
    for l in range(depth):
        out = _block_output(graph, l)
        name = f"blocks_{l}_halt"
        graph.replace_input(out, name)
        graph.add(name, TokenHalt(gamma=float(config["gate_scale"]),
                                  beta=float(config["gate_center"]),
                                  eps=float(config["halt_eps"]), block=l, blocks=depth,
                                  steps=int(steps), stream_in=stream_in,
                                  halting=bool(config["halting"]),
                                  readout=str(config["readout"])), [out])
        stream_in = name
    graph.infer_shapes()
    return graph


def graph_from_atsnn(module: Any, input_shape: Sequence[int], origin: str,
                     steps: int = 4) -> Graph:
    """The IR of an :class:`~nmtoolchain.models.atsnn.ATSpikformer` (see the module
    docstring)."""
    from nmtoolchain.frontends.torch_fx import graph_from_module
    from nmtoolchain.models.spikformer import Spikformer

    config = dict(module.config)
    plain = Spikformer(**{k: v for k, v in config.items() if k not in _TOKEN_KEYS})
    plain.load_state_dict(module.state_dict())
    graph = graph_from_module(plain.eval(), input_shape, origin=origin)
    graph.metadata["atsnn"] = {"steps": int(steps)}
    return add_token_nodes(graph, config, steps)


__all__ = ["graph_from_atsnn", "add_token_nodes"]
