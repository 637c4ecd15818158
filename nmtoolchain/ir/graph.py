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
from nmtoolchain.numerics.base import TargetNumerics

#: Annotation keys that used to carry semantics and now live in typed fields
#: (``Node.numerics``, the op's ``discretization``); ``Graph.add`` refuses them.
_RETIRED_ANNOTATIONS = {
    "loihi": "Loihi parameters are Node.numerics (nmtoolchain.numerics.loihi.LoihiCubaNeuron "
             "/ LoihiSigmaDeltaNeuron); pass numerics=... to Graph.add",
    "discretization": "the discretization is a field of the LIF/LI op",
}


@dataclasses.dataclass(eq=False)
class Node:
    """One operator instance in a graph."""

    name: str
    op: Op
    inputs: Tuple[str, ...] = ()
    #: free-form, JSON-serializable, report-only annotations: ``quant`` (bit
    #: widths, exponents), ``placement`` (core ids), ``source`` (where it came
    #: from), ``netx_import`` (what the netx loader truncated). Nothing that
    #: changes what the node computes lives here.
    annotations: Dict[str, Any] = dataclasses.field(default_factory=dict)
    shape: Optional[Shape] = None  # output shape, set by Graph.infer_shapes
    #: how a target computes this node exactly (e.g. Loihi's integer CUBA
    #: parameters), or None: the op's float semantics only
    numerics: Optional[TargetNumerics] = None

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
        #: the file the user passed, when this graph was loaded from one (messages name
        #: it; ``metadata['source']`` may name an earlier file, e.g. a converted .nmir's
        #: ANN). Not serialized.
        self.loaded_from: Optional[str] = None

    # ------------------------------------------------------------- building
    def add(self, name: str, op: Op, inputs: Sequence[str] = (),
            annotations: Optional[Dict[str, Any]] = None, *,
            numerics: Optional[TargetNumerics] = None) -> Node:
        """Add a node; checks its fields, its input count and that its
        ``numerics`` record fits its op, naming it on error."""
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
        retired = [k for k in (annotations or {}) if k in _RETIRED_ANNOTATIONS]
        if retired:
            raise IRValidationError(f"node '{name}': annotations['{retired[0]}'] is no longer "
                                    f"read: {_RETIRED_ANNOTATIONS[retired[0]]}")
        if numerics is not None:
            if not isinstance(numerics, TargetNumerics):
                raise IRValidationError(f"node '{name}': numerics must be a TargetNumerics "
                                        f"record, got {type(numerics).__name__}")
            try:
                numerics.check_op(op.op_name)
            except IRValidationError as e:
                raise IRValidationError(f"node '{name}' ({op.op_name}): {e}") from None
        node = Node(name, op, inputs, dict(annotations or {}), numerics=numerics)
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
        """The nodes reading ``name`` (a scan of the graph: for a sweep over every
        node use :meth:`users_index` once instead, or the sweep is quadratic)."""
        return [n for n in self.nodes.values() if name in n.inputs]

    def users_index(self) -> Dict[str, List[Node]]:
        """``{name: users(name)}`` for every node, in one pass (same order as
        :meth:`users`). A snapshot: stale once the graph changes."""
        index: Dict[str, List[Node]] = {name: [] for name in self.nodes}
        for n in self.nodes.values():
            for src in dict.fromkeys(n.inputs):  # a node reading src twice is one user
                if src in index:
                    index[src].append(n)
        return index

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
        back = self._recurrent_edges()
        indeg = {n: 0 for n in self.nodes}
        succ: Dict[str, List[str]] = {n: [] for n in self.nodes}
        for n in self.nodes.values():
            for src in n.inputs:
                if (src, n.name) not in back:
                    indeg[n.name] += 1
                    succ[src].append(n.name)
        pos = {n: i for i, n in enumerate(self.nodes)}
        import heapq

        ready = [(pos[n], n) for n, d in indeg.items() if d == 0]
        heapq.heapify(ready)
        order: List[str] = []
        while ready:
            _, name = heapq.heappop(ready)
            order.append(name)
            for nxt in succ[name]:
                indeg[nxt] -= 1
                if indeg[nxt] == 0:
                    heapq.heappush(ready, (pos[nxt], nxt))
        if len(order) < len(self.nodes):
            stuck = next(n for n in self.nodes if n not in set(order))
            raise IRValidationError(
                f"node '{stuck}' ({self.nodes[stuck].op_name}) is on a cycle with no neuron: "
                "a recurrent edge must leave a neuron")
        return order, back

    def _recurrent_edges(self) -> Set[Tuple[str, str]]:
        """Edges inside a strongly connected component that leave a neuron."""
        comp = self.strongly_connected()
        back: Set[Tuple[str, str]] = set()
        for n in self.nodes.values():
            for src in n.inputs:
                if comp[src] == comp[n.name] and self.nodes[src].op.is_neuron:
                    back.add((src, n.name))
        return back

    def strongly_connected(self) -> Dict[str, int]:
        """Each node's strongly connected component, as an id shared by the
        nodes of one component (iterative Tarjan: deep graphs do not recurse)."""
        index: Dict[str, int] = {}
        low: Dict[str, int] = {}
        on_stack: Set[str] = set()
        stack: List[str] = []
        comp: Dict[str, int] = {}
        succ: Dict[str, List[str]] = {n: [] for n in self.nodes}
        for n in self.nodes.values():
            for src in n.inputs:
                succ[src].append(n.name)
        counter = 0
        for root in self.nodes:  # iterative Tarjan
            if root in index:
                continue
            work = [(root, iter(succ[root]))]
            index[root] = low[root] = counter
            counter += 1
            stack.append(root)
            on_stack.add(root)
            while work:
                v, it = work[-1]
                w = next(it, None)
                if w is not None:
                    if w not in index:
                        index[w] = low[w] = counter
                        counter += 1
                        stack.append(w)
                        on_stack.add(w)
                        work.append((w, iter(succ[w])))
                    elif w in on_stack:
                        low[v] = min(low[v], index[w])
                    continue
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        comp[w] = index[v]
                        if w == v:
                            break
        return comp

    def topological_order(self) -> List[Node]:
        return [self.nodes[n] for n in self.order()[0]]

    def infer_shapes(self) -> "Graph":
        """Fill every node's output ``shape``; raise naming the first bad node.

        With :meth:`add` (which checks each op's fields) this is the graph's
        whole validation: unknown inputs, cycles without a neuron, shapes."""
        if not self.inputs():
            raise IRValidationError("graph has no Input node")
        order, back = self.order()
        for n in self.nodes.values():
            n.shape = None
        if not back:
            for name in order:
                self._infer_node(name, [self.nodes[s].shape for s in self.nodes[name].inputs])
            return self
        # Recurrent graphs: propagate what is known; when stuck, let a node whose
        # inputs are partly known assume the missing ones match the known ones
        # (a recurrent sum); then a final pass checks every node with all inputs.
        guess = False
        for _ in range(2 * len(order) + 2):
            progress = False
            for name in order:
                node = self.nodes[name]
                if node.shape is not None:
                    continue
                shapes = [self.nodes[s].shape for s in node.inputs]
                if any(s is None for s in shapes):
                    known = [s for s in shapes if s is not None]
                    if not (guess and known):
                        continue
                    shapes = [s if s is not None else known[0] for s in shapes]
                self._infer_node(name, shapes)
                progress = True
                guess = False
            if all(n.shape is not None for n in self.nodes.values()):
                break
            if not progress:
                if guess:
                    break
                guess = True
        missing = [n.name for n in self.nodes.values() if n.shape is None]
        if missing:
            raise IRValidationError(f"node '{missing[0]}': cannot infer its shape (its inputs "
                                    "form a cycle with no known shape)")
        for name in order:
            node = self.nodes[name]
            got = node.shape
            self._infer_node(name, [self.nodes[s].shape for s in node.inputs])
            if node.shape != got:
                raise IRValidationError(
                    f"node '{name}' ({node.op_name}): recurrent input changes its shape "
                    f"from {got} to {node.shape}")
        return self

    def _infer_node(self, name: str, shapes: List[Optional[Shape]]) -> None:
        node = self.nodes[name]
        if any(s is None for s in shapes):
            missing = [src for src, s in zip(node.inputs, shapes) if s is None]
            raise IRValidationError(f"node '{name}' ({node.op_name}): inputs {missing} have no shape")
        try:
            node.shape = tuple(int(d) for d in node.op.infer_shape(shapes))
        except OpCheckError as e:
            ins = ", ".join(str(tuple(s)) for s in shapes)
            raise IRValidationError(
                f"node '{name}' ({node.op_name}) with input shape {ins}: {e}") from None
        if node.numerics is not None:
            try:
                node.numerics.check_shape(node.shape)
            except IRValidationError as e:
                raise IRValidationError(f"node '{name}' ({node.op_name}): {e}") from None

    # -------------------------------------------------------------- totals
    def node_counts(self, node: Node) -> Dict[str, int]:
        """Parameters, synapses and MACs per time step of one node (shapes needed)."""
        in_shapes = [self.nodes[s].shape for s in node.inputs]
        out = node.shape
        if out is None or any(s is None for s in in_shapes):
            raise IRValidationError(f"node '{node.name}' has no inferred shape; call infer_shapes")
        return {
            "parameters": node.op.num_parameters(),
            "buffers": node.op.num_buffers(),
            "synapses": int(node.op.synapses(in_shapes, out)),
            "macs": int(node.op.macs(in_shapes, out)),
            "neurons": int(_prod(out)) if node.op.is_neuron else 0,
        }

    def totals(self) -> Dict[str, int]:
        """Sum of :meth:`node_counts` over all nodes."""
        tot = {"parameters": 0, "buffers": 0, "synapses": 0, "macs": 0, "neurons": 0}
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
