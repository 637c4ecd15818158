"""Kernels of AT-SNN's token nodes (TokenHalt, TokenMerge) and the token masks
they impose on the nodes between them (float numerics).

All token nodes of a graph share one :class:`TokenRun`: which tokens are
active, their accumulated halting scores and sizes, and the mean-field output
gathered at the current step. The graph's nodes are run in time-major order
(every node of step t before step t + 1), which is AT-SNN's default halting
order. Every node on a path from a TokenHalt's ``stream_in`` to the TokenHalt
whose output is a token stream (N, ·) is wrapped by :class:`TokenMasked`: rows
of inactive tokens are zero in its output, and a neuron node leaves their
membranes as they were (frozen). Zero rows carry no events, so synapses,
dynamic MatMuls and neuron updates of halted tokens are not counted; the
wrapper also counts ``neuron_updates`` of active tokens only, and the token
nodes count ``tokens_active`` (tokens processed by their block per step).
"""
from __future__ import annotations

from typing import Dict, List, Optional, Set

import numpy as np
import torch

from nmtoolchain.errors import UnsupportedOpError
from nmtoolchain.ir import Graph, Node
from simulators.cycle.kernels_float import Kernel

TOKEN_OPS = ("TokenHalt", "TokenMerge")


class TokenRun:
    """The token state of one simulation run, shared by the token kernels."""

    def __init__(self, tokens: int, dim: int, device: str) -> None:
        self.tokens, self.dim, self.device = tokens, dim, device
        self.batch = 0
        self.extra: Dict[str, Dict[str, List[float]]] = {}

    def reset(self, batch: int) -> None:
        """Every token active, nothing accumulated, no merge map, no counts."""
        b, n = batch, self.tokens
        self.batch = batch
        self.active = torch.ones(b, n, dtype=torch.bool, device=self.device)
        self.sizes = torch.ones(b, n, device=self.device)
        self.cum = torch.zeros(b, n, device=self.device)
        self.acc = torch.zeros(b, n, self.dim, device=self.device)
        self.acc_step = -1
        self.merge_map: Optional[torch.Tensor] = None
        self.extra = {}
        self.masks: Dict[str, Dict[int, np.ndarray]] = {}

    def record(self, node: str, counter: str, t: int, value: float) -> None:
        """Add ``value`` to ``counter`` of ``node`` at step ``t`` (summed over the batch)."""
        series = self.extra.setdefault(node, {}).setdefault(counter, [])
        while len(series) <= t:
            series.append(0.0)
        series[t] += float(value)

    def record_mask(self, node: str, t: int) -> None:
        """Keep which tokens of the first sample are active at node ``node``, step ``t``."""
        self.masks.setdefault(node, {})[t] = self.active[0].detach().cpu().numpy().astype(float)

    def mask_series(self, steps: int) -> Dict[str, np.ndarray]:
        """Per token node, (steps, N) 0/1 of the first sample (zeros where not run)."""
        out = {}
        for node, rows in self.masks.items():
            arr = np.zeros((steps, self.tokens))
            for t, row in rows.items():
                if t < steps:
                    arr[t] = row
            out[node] = arr
        return out

    def series(self, steps: int) -> Dict[str, Dict[str, np.ndarray]]:
        """The recorded counters as (steps,) arrays."""
        out: Dict[str, Dict[str, np.ndarray]] = {}
        for node, counters in self.extra.items():
            for name, vals in counters.items():
                arr = np.zeros(steps)
                arr[:min(steps, len(vals))] = vals[:steps]
                out.setdefault(node, {})[name] = arr
        return out


class TokenHaltK(Kernel):
    """ACT halting over (step, block) pairs (see :class:`nmtoolchain.ir.TokenHalt`).

    Between blocks the output is the masked stream (the kind of its input);
    after the last block it is the readout (real-valued)."""

    def __init__(self, node: Node, graph: Graph, run: TokenRun, device: str = "cpu") -> None:
        super().__init__(node, graph, device)
        self.run = run
        last = int(node.op.block) == int(node.op.blocks) - 1
        self.output_kind = "analog" if last else "same"

    def reset(self, batch: int) -> None:
        super().reset(batch)
        self.run.reset(batch)

    def step(self, xs, t):
        op, run = self.node.op, self.run
        x = xs[0]
        active = run.active
        run.record(self.node.name, "tokens_active", t, active.sum())
        run.record_mask(self.node.name, t)
        if run.acc_step != t:  # first block of this step: a fresh mean-field share
            run.acc = torch.zeros_like(x)
            run.acc_step = t
        last_pair = t == int(op.steps) - 1 and int(op.block) == int(op.blocks) - 1
        if op.halting:
            h = torch.sigmoid(float(op.gamma) * x[..., 0] - float(op.beta))
            if last_pair:
                h = torch.ones_like(h)
            h = h * active
            new_cum = run.cum + h
            halting = active & (new_cum >= 1.0 - float(op.eps))
            w = torch.where(halting, 1.0 - run.cum, h) * active
            run.cum = torch.where(active, new_cum, run.cum)
            run.active = active & ~halting
        else:
            w = torch.full_like(run.cum, 1.0 if last_pair else 0.0) * active
            if last_pair:
                run.active = torch.zeros_like(active)
        run.acc = run.acc + w[..., None] * x
        if int(op.block) < int(op.blocks) - 1:
            return x * run.active[..., None]
        out = run.acc * float(op.steps) if op.readout == "act" else x
        return out * run.sizes[..., None]


class TokenMergeK(Kernel):
    """ToMe bipartite merging with a map fixed at the first step it runs.

    Group means of spikes are events with a payload (graded), as a scaled spike."""

    output_kind = "scaled"

    def __init__(self, node: Node, graph: Graph, run: TokenRun, device: str = "cpu") -> None:
        super().__init__(node, graph, device)
        self.run = run

    def step(self, xs, t):
        run, op = self.run, self.node.op
        x = xs[0]
        if run.merge_map is None:
            run.merge_map = self._map(x * run.active[..., None])
        out = (run.merge_map @ x) * run.active[..., None]  # a group of the tokens as they came
        run.record(self.node.name, "tokens_active", t, run.active.sum())
        run.record_mask(self.node.name, t)
        return out

    def _map(self, x: torch.Tensor) -> torch.Tensor:
        """The (B, N, N) merge map; updates the run's active tokens and sizes."""
        run, op = self.run, self.node.op
        b, n, _ = x.shape
        norm = x / torch.linalg.vector_norm(x, dim=-1, keepdim=True).clamp_min(1e-12)
        a_idx, b_idx = list(range(0, n, 2)), list(range(1, n, 2))
        sim = torch.einsum("bid,bjd->bij", norm[:, a_idx], norm[:, b_idx])
        ok = run.active[:, a_idx][:, :, None] & run.active[:, b_idx][:, None, :]
        sim = torch.where(ok, sim, torch.full_like(sim, -2.0))
        score, partner = sim.max(dim=2)
        if op.threshold is not None:
            merge = score > float(op.threshold)
        else:
            merge = torch.zeros_like(score, dtype=torch.bool)
            r = min(int(op.r), len(a_idx))
            if r:
                order = torch.sort(score, dim=1, descending=True, stable=True).indices[:, :r]
                merge.scatter_(1, order, True)
            merge &= score > -2.0
        target = torch.arange(n, device=x.device).repeat(b, 1)
        b_tensor = torch.tensor(b_idx, device=x.device)
        target[:, a_idx] = torch.where(merge, b_tensor[partner], target[:, a_idx])
        weight = torch.zeros(b, n, n, device=x.device)  # [sample, dst, src] = size of src
        weight.scatter_(1, target[:, None, :], run.sizes[:, None, :])
        sizes = weight.sum(2)
        run.sizes = sizes
        run.active = run.active & (sizes > 0)
        return weight / sizes.clamp_min(1e-12)[..., None]


class TokenMasked:
    """A node's kernel under token masks: zero rows for inactive tokens, frozen
    membranes for neurons, optional size weighting (merged V rows)."""

    def __init__(self, inner: Kernel, run: TokenRun, weighted: bool = False) -> None:
        self.inner, self.run, self.weighted = inner, run, weighted
        self.neuron = bool(inner.node.op.is_neuron) and hasattr(inner, "v")
        self.per_token = int(np.prod(inner.node.shape[1:]))

    def __getattr__(self, name: str):
        return getattr(self.inner, name)

    def reset(self, batch: int) -> None:
        self.inner.reset(batch)
        self.neuron = bool(self.inner.node.op.is_neuron) and hasattr(self.inner, "v")

    def step(self, xs, t):
        active = self.run.active
        mask = active[..., None]
        if self.neuron:
            v_old = self.inner.v
        out = self.inner.step(xs, t)
        if self.neuron:
            self.inner.v = torch.where(mask, self.inner.v, v_old)
            self.run.record(self.inner.node.name, "neuron_updates", t,
                            active.sum() * self.per_token)
        out = out * mask.to(out.dtype)
        if self.weighted:
            out = out * self.run.sizes[..., None]
        return out


def _between(graph: Graph, start: str, end: str) -> Set[str]:
    """Nodes on a path from ``start`` to ``end`` (both excluded)."""
    users: Dict[str, List[str]] = {}
    for n in graph:
        for i in n.inputs:
            users.setdefault(i, []).append(n.name)
    down, todo = set(), [start]
    while todo:
        for u in users.get(todo.pop(), []):
            if u not in down:
                down.add(u)
                todo.append(u)
    up, todo = set(), [end]
    while todo:
        for i in graph[todo.pop()].inputs:
            if i not in up:
                up.add(i)
                todo.append(i)
    return (down & up) - {start, end}


def token_nodes(graph: Graph) -> List[str]:
    """Names of the graph's TokenHalt and TokenMerge nodes."""
    return [n.name for n in graph if n.op_name in TOKEN_OPS]


def check_token_numerics(graph: Graph, numerics: str) -> None:
    """Token nodes run with float numerics only: refuse others naming the node."""
    names = token_nodes(graph)
    if names and numerics != "float":
        raise UnsupportedOpError(f"node '{names[0]}' ({graph[names[0]].op_name}): token "
                                 f"halting and merging run with float numerics only, not "
                                 f"{numerics!r}")


def with_token_kernels(graph: Graph, kernels: Dict[str, object], numerics: str,
                       device: str) -> Dict[str, object]:
    """Kernels for the token nodes and masked kernels for the nodes they gate."""
    names = token_nodes(graph)
    if not names:
        return kernels
    check_token_numerics(graph, numerics)
    halts = [graph[n] for n in names if graph[n].op_name == "TokenHalt"]
    shape = graph[names[0]].shape
    run = TokenRun(int(shape[0]), int(shape[-1]), device)
    out = dict(kernels)
    region: Set[str] = set()
    for node in halts:
        start = node.op.stream_in
        if start not in graph.nodes:
            raise UnsupportedOpError(f"node '{node.name}' (TokenHalt): stream_in "
                                     f"'{start}' is not a node of the graph")
        region |= _between(graph, start, node.name)
        if graph[start].op_name not in TOKEN_OPS:
            region.add(start)
    weighted: Set[str] = set()
    for name in names:
        node = graph[name]
        if node.op_name == "TokenHalt":
            out[name] = TokenHaltK(node, graph, run, device)
        else:
            out[name] = TokenMergeK(node, graph, run, device)
            weighted |= set(node.op.weighted)
    if not halts:  # merging alone: everything after the merge is token-masked
        raise UnsupportedOpError(f"node '{names[0]}' (TokenMerge): needs the TokenHalt nodes "
                                 "that close each block")
    for name in region - set(names):
        shp = graph[name].shape
        if shp is not None and len(shp) == 2 and int(shp[0]) == run.tokens:
            out[name] = TokenMasked(kernels[name], run, weighted=name in weighted)
    return out


def token_masks(kernels: Dict[str, object], steps: int) -> Dict[str, np.ndarray]:
    """Per token node, the (steps, N) active tokens of the run's first sample."""
    for k in kernels.values():
        if isinstance(k, (TokenHaltK, TokenMergeK)):
            return k.run.mask_series(steps)
    return {}


def token_counts(kernels: Dict[str, object], steps: int) -> Dict[str, Dict[str, np.ndarray]]:
    """Counters the token kernels recorded (``tokens_active``, and
    ``neuron_updates`` of masked neurons, which replace the dense count)."""
    for k in kernels.values():
        if isinstance(k, (TokenHaltK, TokenMergeK)):
            return k.run.series(steps)
    return {}


__all__ = ["TOKEN_OPS", "check_token_numerics", "TokenRun", "TokenHaltK", "TokenMergeK", "TokenMasked",
           "with_token_kernels", "token_counts", "token_masks", "token_nodes"]
