"""The IR graph: named nodes with ordered inputs (as torch.fx), one op each.

A graph may contain cycles only through a neuron (a stateful node): such an
edge carries the neuron's output of the previous time step, as in NIR's
recurrent graphs and netx's ``dense_rec``. Every error raised here names the
node at fault.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Set, Tuple

from nmtoolchain.errors import IRValidationError
from nmtoolchain.ir.io import Input, Output
from nmtoolchain.ir.op import Op, OpCheckError, Shape


@dataclasses.dataclass(eq=False)
class Node:
    """One operator instance in a graph."""

    name: str
    op: Op
    inputs: Tuple[str, ...] = ()
    #: free-form, JSON-serializable annotations: ``quant`` (bit widths,
    #: exponents), ``placement`` (core ids), ``loihi`` (exact fixed-point
    #: parameters read from a netx file), ``source`` (where it came from).
    annotations: Dict[str, Any] = dataclasses.field(default_factory=dict)
    shape: Optional[Shape] = None  # output shape, set by Graph.infer_shapes

    @property
    def op_name(self) -> str:
        return self.op.op_name


class Graph:
    """A directed graph of IR nodes.

    ``metadata`` holds graph-wide facts: ``dt`` (time step in the unit of the
    neurons' tau), ``source`` (file and format it was loaded from),
    ``nir_version`` and ``reset_semantics`` for graphs read from NIR.
    """

    def __init__(self, metadata: Optional[Dict[str, Any]] = None) -> None:
        self.nodes: Dict[str, Node] = {}
        self.metadata: Dict[str, Any] = dict(metadata or {})

    # ------------------------------------------------------------- building
    def add(self, name: str, op: Op, inputs: Sequence[str] = (),
            annotations: Optional[Dict[str, Any]] = None) -> Node:
        """Add a node; checks its fields and its input count, naming it on error."""
        if not isinstance(name, str) or not name:
            raise IRValidationError(f"node name must be a non-empty string, got {name!r}")
        if name in self.nodes:
            raise IRValidationError(f"node '{name}' already exists")
        inputs = tuple(inputs)
        want = op.num_inputs
        if want is None:
            if len(inputs) < 2:
                raise IRValidationError(
                    f"node '{name}' ({op.op_name}) needs two or more inputs, got {len(inputs)}")
        elif len(inputs) != want:
            raise IRValidationError(
                f"node '{name}' ({op.op_name}) needs {want} input(s), got {len(inputs)}")
        try:
            op.check()
        except OpCheckError as e:
            raise IRValidationError(f"node '{name}' ({op.op_name}): {e}") from None
        node = Node(name, op, inputs, dict(annotations or {}))
        self.nodes[name] = node
        return node

    def unique_name(self, base: str) -> str:
        """``base`` if free, else ``base_1``, ``base_2``, ..."""
        base = base.replace(".", "_") or "node"
        if base not in self.nodes:
            return base
        i = 1
        while f"{base}_{i}" in self.nodes:
            i += 1
        return f"{base}_{i}"

    def remove(self, name: str) -> None:
        """Remove a node that nothing consumes."""
        users = [n.name for n in self.nodes.values() if name in n.inputs]
        if users:
            raise IRValidationError(f"cannot remove node '{name}': used by {users}")
        del self.nodes[name]

    def replace_input(self, old: str, new: str) -> None:
        """Make every consumer of ``old`` read ``new`` instead."""
        for n in self.nodes.values():
            if old in n.inputs:
                n.inputs = tuple(new if i == old else i for i in n.inputs)

    # ------------------------------------------------------------ querying
    def __len__(self) -> int:
        return len(self.nodes)

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes.values())

    def __getitem__(self, name: str) -> Node:
        try:
            return self.nodes[name]
        except KeyError:
            raise IRValidationError(f"no node named '{name}'") from None

    def inputs(self) -> List[Node]:
        return [n for n in self.nodes.values() if isinstance(n.op, Input)]

    def outputs(self) -> List[Node]:
        return [n for n in self.nodes.values() if isinstance(n.op, Output)]

    def users(self, name: str) -> List[Node]:
        return [n for n in self.nodes.values() if name in n.inputs]

    def edges(self) -> List[Tuple[str, str]]:
        """(source, destination) pairs, in node order then input order."""
        return [(src, n.name) for n in self.nodes.values() for src in n.inputs]

    # ----------------------------------------------------------- structure
    def order(self) -> Tuple[List[str], Set[Tuple[str, str]]]:
        """Topological order and the set of recurrent (back) edges.

        A back edge must leave a neuron; a cycle through stateless nodes only
        is an error naming a node on it.
        """
        for n in self.nodes.values():
            for src in n.inputs:
                if src not in self.nodes:
                    raise IRValidationError(f"node '{n.name}' reads unknown node '{src}'")
        state: Dict[str, int] = {}
        order: List[str] = []
        back: Set[Tuple[str, str]] = set()

        for root in self.nodes:
            if root in state:
                continue
            stack: List[Tuple[str, Iterator[str]]] = [(root, iter(self.nodes[root].inputs))]
            state[root] = 1
            while stack:
                name, it = stack[-1]
                nxt = next(it, None)
                if nxt is None:
                    stack.pop()
                    state[name] = 2
                    order.append(name)
                elif state.get(nxt) == 1:
                    if not self.nodes[nxt].op.is_neuron:
                        raise IRValidationError(
                            f"node '{nxt}' ({self.nodes[nxt].op_name}) is on a cycle with no "
                            "neuron: a recurrent edge must leave a neuron")
                    back.add((nxt, name))
                elif nxt not in state:
                    state[nxt] = 1
                    stack.append((nxt, iter(self.nodes[nxt].inputs)))
        return order, back

    def topological_order(self) -> List[Node]:
        return [self.nodes[n] for n in self.order()[0]]

    def infer_shapes(self) -> "Graph":
        """Fill every node's output ``shape``; raise naming the first bad node."""
        if not self.inputs():
            raise IRValidationError("graph has no Input node")
        order, back = self.order()
        for n in self.nodes.values():
            n.shape = None
        for _ in range(2 if back else 1):  # second pass checks recurrent edges
            for name in order:
                node = self.nodes[name]
                shapes = [self.nodes[s].shape for s in node.inputs]
                known = [s for s in shapes if s is not None]
                if len(known) < len(shapes):
                    missing = [src for src, s in zip(node.inputs, shapes) if s is None]
                    if any((src, name) not in back for src in missing):
                        raise IRValidationError(
                            f"node '{name}' ({node.op_name}): inputs {missing} have no shape")
                    shapes = [s if s is not None else known[0] if known else None
                              for s in shapes]
                    if any(s is None for s in shapes):
                        continue
                try:
                    node.shape = tuple(int(d) for d in node.op.infer_shape(shapes))
                except OpCheckError as e:
                    ins = ", ".join(str(tuple(s)) for s in shapes)
                    raise IRValidationError(
                        f"node '{name}' ({node.op_name}) with input shape {ins}: {e}") from None
        return self

    def validate(self) -> "Graph":
        """Check fields, edges, cycles and shapes; returns self."""
        for n in self.nodes.values():
            try:
                n.op.check()
            except OpCheckError as e:
                raise IRValidationError(f"node '{n.name}' ({n.op_name}): {e}") from None
        return self.infer_shapes()

    # -------------------------------------------------------------- totals
    def node_counts(self, node: Node) -> Dict[str, int]:
        """Parameters, synapses and MACs per time step of one node (shapes needed)."""
        in_shapes = [self.nodes[s].shape for s in node.inputs]
        out = node.shape
        if out is None or any(s is None for s in in_shapes):
            raise IRValidationError(f"node '{node.name}' has no inferred shape; call infer_shapes")
        return {
            "parameters": node.op.num_parameters(),
            "synapses": int(node.op.synapses(in_shapes, out)),
            "macs": int(node.op.macs(in_shapes, out)),
            "neurons": int(_prod(out)) if node.op.is_neuron else 0,
        }

    def totals(self) -> Dict[str, int]:
        """Sum of :meth:`node_counts` over all nodes."""
        tot = {"parameters": 0, "synapses": 0, "macs": 0, "neurons": 0}
        for n in self.nodes.values():
            for k, v in self.node_counts(n).items():
                tot[k] += v
        return tot

    def op_names(self) -> List[str]:
        return sorted({n.op_name for n in self.nodes.values()})

    def __repr__(self) -> str:
        return f"Graph({len(self.nodes)} nodes: {', '.join(self.op_names())})"


def _prod(shape: Iterable[int]) -> int:
    p = 1
    for s in shape:
        p *= int(s)
    return p
