"""What a simulation run keeps per step: node outputs and neuron state.

:func:`recorded_nodes` turns the user's ``record=`` request into node names;
a :class:`Recording` collects, for one run, every Output node's and each
recorded node's output, and (``record_state``) each kernel's state, then
stacks them as (B, T, ...). It copies tensors; it never steps a kernel.
"""
from __future__ import annotations

from typing import Any, Dict, List, Sequence, Tuple, Union

import torch

from nmtoolchain.errors import BadInputError
from nmtoolchain.ir import Graph

RecordRequest = Union[None, str, Sequence[str]]
#: ``record_state``: False (none), True (every stateful node) or node names
StateRequest = Union[bool, Sequence[str]]


def recorded_nodes(graph: Graph, order: Sequence[str], record: RecordRequest) -> List[str]:
    """Node names for ``record``: None (none), ``'neurons'`` (every neuron node,
    in execution order), ``'all'`` (every node) or a list of names."""
    if record is None:
        return []
    if record == "neurons":
        return [n for n in order if graph[n].op.is_neuron]
    if record == "all":
        return list(order)
    unknown = [r for r in record if r not in graph.nodes]
    if unknown:
        raise BadInputError(f"cannot record unknown node(s) {unknown}")
    return list(record)


class Recording:
    """Per-step copies of the outputs of ``outputs`` and ``record``, and of
    kernel state as ``with_state`` asks (all nodes, or the named ones), for one run."""

    def __init__(self, record: Sequence[str], outputs: Sequence[str],
                 with_state: StateRequest) -> None:
        self.record, self.outputs = list(record), list(outputs)
        #: the nodes whose state is kept: all (None) or these names
        self.state_of = None if with_state is True else set(with_state or ())
        self._values: Dict[str, List[torch.Tensor]] = {n: [] for n in set(record) | set(outputs)}
        self._state: Dict[str, Dict[str, List[torch.Tensor]]] = {}

    def output(self, name: str, out: torch.Tensor) -> None:
        """Keep node ``name``'s output of this step, if it is recorded."""
        if name in self._values:
            self._values[name].append(out.detach().clone())

    def output_block(self, name: str, out: torch.Tensor) -> None:
        """Keep node ``name``'s outputs of a time chunk ((n, B, ...)), if recorded."""
        if name in self._values:
            self._values[name].extend(out.detach().clone().unbind(0))

    def state(self, name: str, kernel: Any) -> None:
        """Keep the state of ``kernel`` (node ``name``) after this step, if asked."""
        if (self.state_of is None or name in self.state_of) and hasattr(kernel, "state"):
            for key, val in kernel.state().items():
                self._state.setdefault(name, {}).setdefault(key, []).append(val.clone())

    def stacked(self) -> Tuple[Dict[str, torch.Tensor], Dict[str, torch.Tensor],
                               Dict[str, Dict[str, torch.Tensor]]]:
        """(outputs, recorded, state), each series stacked as (B, T, ...)."""
        stack = lambda xs: torch.stack(xs, 1)  # noqa: E731
        return ({n: stack(self._values[n]) for n in self.outputs},
                {n: stack(self._values[n]) for n in self.record},
                {n: {k: stack(v) for k, v in d.items()} for n, d in self._state.items()})
