"""The cycle-level simulator: an interpreter over the IR (as torch.fx's
Interpreter walks a graph), one time step at a time, batched and vectorized
with torch. Numerics are a mode ('float' reference, 'loihi' bit-exact);
counting is done in the same walk, from the same tensors, by
:meth:`Simulator._count`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Union

import numpy as np
import torch

from nmtoolchain.errors import BadInputError
from nmtoolchain.ir import Graph
from simulators.cycle.counts import RunCounts
from simulators.cycle.fanout import fanout_maps
from simulators.cycle.kernels_float import make_float_kernel
from simulators.cycle.kernels_loihi import make_loihi_kernel
from simulators.cycle.kernels_speck import make_speck_kernel

NUMERICS = ("float", "loihi", "speck")
_SPIKING_KINDS = ("spikes", "graded")


@dataclass
class SimResult:
    """Outputs of a run: ``outputs[name]`` is (B, T, *shape) for every Output
    node; ``recorded`` holds the same for each recorded node; ``state`` holds
    recorded neuron state (u, v) per node; ``counts`` the counters."""

    outputs: Dict[str, torch.Tensor]
    recorded: Dict[str, torch.Tensor]
    state: Dict[str, Dict[str, torch.Tensor]]
    counts: RunCounts
    wall_s: float = 0.0
    ms_per_step: float = 0.0


class Simulator:
    """Run an IR graph for T steps.

    ``record``: None, ``'neurons'`` (every neuron node), ``'all'``, or a list of
    node names whose outputs are kept per step. ``record_state``: also keep u/v
    of Loihi CUBA neurons per step. ``reset_interval``/``reset_offset``: netx's
    LIFReset schedule (loihi numerics).
    """

    def __init__(self, graph: Graph, numerics: str = "float", *, device: str = "cpu",
                 record: Union[None, str, Sequence[str]] = None, record_state: bool = False,
                 reset_interval: Optional[int] = None, reset_offset: int = 0,
                 count: bool = True) -> None:
        if numerics not in NUMERICS:
            raise BadInputError(f"unknown numerics {numerics!r}; choose one of {', '.join(NUMERICS)}")
        graph.infer_shapes()
        self.graph, self.numerics, self.device = graph, numerics, device
        self.order, self.back = graph.order()
        self.kernels = {}
        layer_index = 0
        for name in self.order:
            node = graph[name]
            if numerics == "float":
                self.kernels[name] = make_float_kernel(node, graph, device)
            elif numerics == "speck":
                self.kernels[name] = make_speck_kernel(node, graph, device)
            else:
                self.kernels[name] = make_loihi_kernel(
                    node, graph, device, layer_index=layer_index,
                    reset_interval=reset_interval, reset_offset=reset_offset)
            if node.op.is_neuron:
                layer_index += 1
        #: synapses on a recurrent loop that run in two halves (send, then take the
        #: step's input once their source has run), as Lava's Dense does: Loihi
        #: numerics only; the float kernels have no synaptic delay, so the back
        #: edge's one step is the loop's whole delay there.
        self.deferred = sorted({dst for src, dst in self.back
                                if hasattr(self.kernels[dst], "absorb")
                                and len(graph[dst].inputs) == 1})
        self.inputs = [n.name for n in graph.inputs()]
        self.outputs = [n.name for n in graph.outputs()]
        neurons = [n for n in self.order if graph[n].op.is_neuron]
        if record is None:
            self.record = []
        elif record == "neurons":
            self.record = neurons
        elif record == "all":
            self.record = list(self.order)
        else:
            unknown = [r for r in record if r not in graph.nodes]
            if unknown:
                raise BadInputError(f"cannot record unknown node(s) {unknown}")
            self.record = list(record)
        self.record_state = record_state
        self.count = count
        self.fanout = {n: fanout_maps(graph, graph[n]) for n in self.order} if count else {}
        self.fanout = {n: tuple(f.to(device=device, dtype=torch.float32) for f in m)
                       for n, m in self.fanout.items() if m is not None}
        self.kind: Dict[str, str] = {}
        self.chunk = 32  # steps buffered before counting them in one vectorized pass
        self._skip_count = {n for n in self.order if graph[n].op_name in ("Input", "Output")}

    # --------------------------------------------------------------- kinds
    def _resolve_kinds(self, feeds: Dict[str, torch.Tensor]) -> None:
        """What each node's output carries (spikes, graded, analog), by
        propagation from inputs; an Input carries spikes if it is fed only
        non-negative integers."""
        for name in self.order:
            k = self.kernels[name]
            node = self.graph[name]
            kind = k.output_kind
            if kind == "auto":
                x = feeds[name]
                kind = "spikes" if bool(((x >= 0) & (x == torch.round(x))).all()) else "analog"
            elif kind == "scaled":
                srcs = [self.kind.get(s, "analog") for s in node.inputs]
                kind = "graded" if srcs and srcs[0] in _SPIKING_KINDS else "analog"
            elif kind == "same":
                srcs = [self.kind.get(s, "analog") for s in node.inputs]
                if node.op_name == "AvgPool2d" and srcs and srcs[0] == "spikes":
                    kind = "analog"  # averaging spikes gives fractions, not events
                elif srcs and all(s in _SPIKING_KINDS for s in srcs):
                    kind = "graded" if "graded" in srcs else "spikes"
                else:
                    kind = "analog"
            self.kind[name] = kind

    # ---------------------------------------------------------------- run
    def _feeds(self, inputs, steps: int) -> Dict[str, torch.Tensor]:
        if not isinstance(inputs, dict):
            if len(self.inputs) != 1:
                raise BadInputError(f"graph has inputs {self.inputs}: pass a dict name -> tensor")
            inputs = {self.inputs[0]: inputs}
        feeds = {}
        for name in self.inputs:
            if name not in inputs:
                raise BadInputError(f"no data for graph input '{name}'")
            x = torch.as_tensor(np.asarray(inputs[name]) if not torch.is_tensor(inputs[name])
                                else inputs[name]).to(self.device)
            shape = tuple(self.graph[name].shape)
            if tuple(x.shape[1:]) == shape:
                x = x.unsqueeze(1).expand((x.shape[0], steps) + shape)  # static input
            elif tuple(x.shape[2:]) != shape or x.shape[1] < steps:
                raise BadInputError(
                    f"input '{name}' has shape {tuple(x.shape)}; expected (batch, {shape}) or "
                    f"(batch, T>={steps}, {shape})")
            feeds[name] = x.to(torch.float32) if not x.is_floating_point() else x
        return feeds

    def run(self, inputs, steps: int, *, progress: Optional[Callable[[int], None]] = None
            ) -> SimResult:
        """Simulate ``steps`` time steps. ``inputs``: (B, *shape) applied at every
        step, or (B, T, *shape) per step; a dict for several inputs."""
        if steps < 1:
            raise BadInputError(f"steps must be >= 1, got {steps}")
        feeds = self._feeds(inputs, steps)
        batch = next(iter(feeds.values())).shape[0]
        self._resolve_kinds({k: v[:, 0] for k, v in feeds.items()})
        for k in self.kernels.values():
            k.reset(batch)
        counts = RunCounts(steps, batch, self.numerics, order=list(self.order))
        rec: Dict[str, List[torch.Tensor]] = {n: [] for n in set(self.record) | set(self.outputs)}
        state: Dict[str, Dict[str, List[torch.Tensor]]] = {}
        prev: Dict[str, torch.Tensor] = {}
        pending: Dict[str, list] = {}
        self._series: Dict[str, Dict[str, np.ndarray]] = {}
        self._steps = steps
        t0 = time.perf_counter()
        t_first = None
        with torch.no_grad():
            for t in range(steps):
                values: Dict[str, torch.Tensor] = {}
                for name in self.order:
                    node = self.graph[name]
                    if name in feeds:
                        xs = [feeds[name][:, t]]
                    elif name in self.deferred:
                        values[name] = out = self.kernels[name].emit(t)
                        if name in rec:
                            rec[name].append(out.detach().clone())
                        continue
                    else:
                        xs = []
                        for src in node.inputs:
                            if (src, name) in self.back:
                                v = prev.get(src)
                                xs.append(v if v is not None else torch.zeros(
                                    (batch,) + tuple(self.graph[src].shape), device=self.device))
                            else:
                                xs.append(values[src])
                    out = self.kernels[name].step(xs, t)
                    values[name] = out
                    if self.count and name not in self._skip_count:
                        pending.setdefault(name, []).append((xs, out))
                    if name in rec:
                        rec[name].append(out.detach().clone())
                    if self.record_state and hasattr(self.kernels[name], "state"):
                        for key, val in self.kernels[name].state().items():
                            state.setdefault(name, {}).setdefault(key, []).append(val.clone())
                for name in self.deferred:  # their source has run: take its spikes
                    xs = [values[self.graph[name].inputs[0]]]
                    self.kernels[name].absorb(xs, t)
                    if self.count and name not in self._skip_count:
                        pending.setdefault(name, []).append((xs, values[name]))
                prev = values
                if self.count and ((t + 1) % self.chunk == 0 or t + 1 == steps):
                    self._flush(pending, t + 1)
                    pending = {}
                if t == 0:
                    t_first = time.perf_counter()
                if progress is not None:
                    progress(t + 1)
        wall = time.perf_counter() - t0
        steady = (time.perf_counter() - t_first) / (steps - 1) if steps > 1 else wall
        counts.nodes = self._series
        for name in self.order:
            node = self.graph[name]
            c = self.graph.node_counts(node)
            counts.static[name] = {
                "op": node.op_name, "neurons": c["neurons"], "synapses": c["synapses"],
                "dense_macs": c["macs"], "parameters": c["parameters"],
                "inputs": list(node.inputs), "output_shape": list(node.shape),
                "has_bias": bool(np.any(getattr(node.op, "bias", None))
                                 if isinstance(getattr(node.op, "bias", None), np.ndarray)
                                 else False),
                "input_numel": int(sum(np.prod(self.graph[s].shape) for s in node.inputs)),
                "input_binary": bool(name in counts.nodes and "max_in" in counts.nodes[name]
                                     and counts.nodes[name]["max_in"].max() <= 1),
                "input_kind": [self.kind.get(s, "analog") for s in node.inputs],
            }
        stack = lambda xs: torch.stack(xs, 1)  # noqa: E731  (B, T, ...)
        return SimResult(
            outputs={n: stack(rec[n]) for n in self.outputs},
            recorded={n: stack(rec[n]) for n in self.record},
            state={n: {k: stack(v) for k, v in d.items()} for n, d in state.items()},
            counts=counts, wall_s=wall, ms_per_step=1000 * steady)

    # ------------------------------------------------------------ counting
    def _flush(self, pending: Dict[str, list], t_end: int) -> None:
        """Count the buffered steps [t_end - n, t_end) of every node at once.

        The tensors are the very inputs and outputs the kernels saw in this
        run; only the reductions are batched over steps to save dispatches."""
        for name, items in pending.items():
            n = len(items)
            xs = [torch.stack([it[0][i] for it in items]) for i in range(len(items[0][0]))]
            out = torch.stack([it[1] for it in items])
            for key, series in self._count_chunk(name, xs, out).items():
                arr = self._series.setdefault(name, {}).setdefault(key, np.zeros(self._steps))
                arr[t_end - n:t_end] = series.double().cpu().numpy()

    def _count_chunk(self, name: str, xs: List[torch.Tensor], out: torch.Tensor
                     ) -> Dict[str, torch.Tensor]:
        """Counters for one node over a chunk: xs[i] and out are (n, B, ...)."""
        node = self.graph[name]
        n = out.shape[0]
        flat = lambda x: x.reshape(n, -1)  # noqa: E731
        per_step = lambda x: flat(x).sum(1)  # noqa: E731
        kinds = [self.kind.get(s, "analog") for s in node.inputs]
        nz = [(x != 0) for x in xs]
        c: Dict[str, torch.Tensor] = {"events_in": sum(per_step(m) for m in nz)}
        if kinds and all(k == "spikes" for k in kinds):
            c["max_in"] = torch.stack([flat(x).max(1).values for x in xs]).max(0).values.float()
        fo = self.fanout.get(name)
        if fo is not None:
            full, nonzero = fo
            x = xs[0].to(torch.float32)
            b = x.shape[1]
            xf = x.reshape(n * b, -1)
            f_full, f_nz = full.reshape(-1), nonzero.reshape(-1)
            if kinds[0] == "spikes":
                c["spikes_in"] = per_step(x)
                c["synops"] = (xf @ f_full).reshape(n, b).sum(1)
                mx = flat(x).max(1).values
                c["nb_is_mac"] = (mx > 1).float()
                # binary spikes are their own event mask: skip rebuilding it
                mf = xf if bool(mx.max() <= 1) else nz[0].reshape(n * b, -1).to(torch.float32)
            else:
                mf = nz[0].reshape(n * b, -1).to(torch.float32)
                key = "synops" if kinds[0] == "graded" else "macs"
                c[key] = (mf @ f_full).reshape(n, b).sum(1)
                c["nb_is_mac"] = flat((x.abs() != 1) & (x != 0)).any(1).float()
            c["nb_ops"] = (mf @ f_nz).reshape(n, b).sum(1)
        elif node.op_name == "MatMul":
            a, bb = nz[0].to(torch.float32), nz[1].to(torch.float32)
            products = per_step(torch.matmul(a, bb))
            key = "synops" if all(k in _SPIKING_KINDS for k in kinds) else "macs"
            c[key] = products
        if node.op.is_neuron:
            c["neuron_updates"] = torch.full((n,), float(out[0].numel()))
            active = (nz[0] | (out != 0)) if nz else (out != 0)
            c["active_neurons"] = per_step(active)
            if self.kind[name] == "spikes":
                c["spikes_out"] = per_step(out)
            elif self.kind[name] == "graded":
                c["spikes_out"] = per_step(out != 0)
        return c


def simulate(graph: Graph, inputs, steps: int, numerics: str = "float", **kwargs) -> SimResult:
    """Convenience: build a :class:`Simulator` and run it once."""
    run_kw = {k: kwargs.pop(k) for k in ("progress",) if k in kwargs}
    return Simulator(graph, numerics, **kwargs).run(inputs, steps, **run_kw)
