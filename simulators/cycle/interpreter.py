"""The cycle-level simulator: an interpreter over the IR (as torch.fx's
Interpreter walks a graph), batched and vectorized with torch. Two schedules
give the same results: step-major (every node once per time step) and
layer-major (each node over a whole time chunk, then the next node; a
recurrent component steps its chunk inside: :mod:`simulators.cycle.schedule`). Numerics are a mode ('float' reference, 'loihi' bit-exact).
Counting (:mod:`simulators.cycle.counting`) and recording
(:mod:`simulators.cycle.recording`) observe the same walk, from the same
tensors; recurrent synapses that send before they receive, as Lava's do,
are :class:`DeferredSynapses`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Set, Tuple, Union

import numpy as np
import torch

from nmtoolchain.errors import BadInputError
from nmtoolchain.ir import Graph, Node
from simulators.cycle.counting import SPIKING_KINDS, ActivityCounter, static_facts
from simulators.cycle.counts import RunCounts
from simulators.cycle.kernels_float import make_float_kernel
from simulators.cycle.kernels_loihi import make_loihi_kernel
from simulators.cycle.kernels_speck import make_speck_kernel
from simulators.cycle.kernels_tokens import (TOKEN_OPS, check_token_numerics, token_counts,
                                             token_masks, with_token_kernels)
from simulators.cycle.recording import Recording, StateRequest, recorded_nodes
from simulators.cycle.schedule import (DEFAULT_CHUNK_BYTES, SCHEDULES, memory_estimate, units,
                                       run_block, time_chunk, warn_if_too_big)

NUMERICS = ("float", "loihi", "speck")


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

    def to_cpu(self) -> "SimResult":
        """The same result with every tensor on the CPU (a GPU run's, for reports)."""
        cpu = lambda d: {k: v.cpu() for k, v in d.items()}  # noqa: E731
        return SimResult(cpu(self.outputs), cpu(self.recorded),
                         {n: cpu(d) for n, d in self.state.items()}, self.counts, self.wall_s,
                         self.ms_per_step)


def check_device(device: str) -> None:
    """Refuse, in one line, a device torch does not know or this machine lacks."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise BadInputError(f"--device {device!r}: not a torch device (cpu, cuda, cuda:N)") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise BadInputError(f"--device {device}: no CUDA device on this machine")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise BadInputError(f"--device {device}: this machine has "
                                f"{torch.cuda.device_count()} CUDA device(s)")
    elif dev.type != "cpu":
        raise BadInputError(f"--device {device}: the simulator runs on cpu or cuda")


class DeferredSynapses:
    """Synapses on a recurrent loop that run in two halves, as Lava's Dense does.

    At its turn in the order such a synapse sends what it took in the
    previous step (:meth:`emit`); once every node of the step has run, it
    takes the step's input from its source (:meth:`absorb`). Only kernels
    that can split (an ``absorb`` method: Loihi numerics) with one input and
    on the receiving end of a back edge; the float kernels have no synaptic
    delay, so there the back edge's one step is the loop's whole delay.
    """

    def __init__(self, graph: Graph, kernels: Dict[str, object],
                 back: Set[Tuple[str, str]]) -> None:
        self.graph, self.kernels = graph, kernels
        self.names: List[str] = sorted({dst for _, dst in back
                                        if hasattr(kernels[dst], "absorb")
                                        and len(graph[dst].inputs) == 1})

    def __contains__(self, name: object) -> bool:
        return name in self.names

    def __iter__(self):
        return iter(self.names)

    def emit(self, name: str, t: int) -> torch.Tensor:
        """What synapse ``name`` sends at step ``t`` (taken in the step before)."""
        return self.kernels[name].emit(t)

    def absorb(self, values: Dict[str, torch.Tensor], t: int
               ) -> List[Tuple[str, List[torch.Tensor]]]:
        """Each synapse takes its source's output of step ``t``; returns (name, inputs)."""
        taken = []
        for name in self.names:
            xs = [values[self.graph[name].inputs[0]]]
            self.kernels[name].absorb(xs, t)
            taken.append((name, xs))
        return taken


def _make_kernels(graph: Graph, order: Sequence[str], numerics: str, device: str,
                  reset_interval: Optional[int], reset_offset: int) -> Dict[str, object]:
    """One kernel per node; Loihi kernels learn their neuron layer's index
    (for netx's LIFReset schedule)."""
    check_token_numerics(graph, numerics)
    kernels = {}
    layer_index = 0
    for name in order:
        node = graph[name]
        if node.op_name in TOKEN_OPS:  # stateful together: kernels_tokens makes them
            continue
        if numerics == "float":
            kernels[name] = make_float_kernel(node, graph, device)
        elif numerics == "speck":
            kernels[name] = make_speck_kernel(node, graph, device)
        else:
            # a Lava process graph resets each neuron at its own depth (annotation)
            kernels[name] = make_loihi_kernel(
                node, graph, device, layer_index=int(node.annotations.get("reset_depth",
                                                                          layer_index)),
                reset_interval=reset_interval, reset_offset=reset_offset)
        if node.op.is_neuron:
            layer_index += 1
    return with_token_kernels(graph, kernels, numerics, device)


def _propagated_kind(node: Node, declared: str, kinds: Dict[str, str]) -> str:
    """The kind of a node whose kernel derives it from its inputs' kinds."""
    srcs = [kinds.get(s, "analog") for s in node.inputs]
    if declared == "scaled":
        return "graded" if srcs and srcs[0] in SPIKING_KINDS else "analog"
    if node.op_name == "AvgPool2d" and srcs and srcs[0] == "spikes":
        return "analog"  # averaging spikes gives fractions, not events
    if srcs and all(s in SPIKING_KINDS for s in srcs):
        return "graded" if "graded" in srcs else "spikes"
    return "analog"


class _full_fp32:
    """On a GPU, turn TF32 off for the run (float numerics as in float32 on the
    CPU; the Loihi kernels do not rely on it), and restore the settings after."""

    def __init__(self, device: str) -> None:
        self.on = torch.device(device).type == "cuda"

    def __enter__(self) -> None:
        if self.on:
            self.saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False

    def __exit__(self, *exc) -> None:
        if self.on:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = self.saved


class _StepClock:
    """Wall time of a run and its steady-state time per step (after step 0)."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.t_first: Optional[float] = None

    def step_done(self, t: int) -> None:
        if t == 0:
            self.t_first = time.perf_counter()

    def times(self, steps: int) -> Tuple[float, float]:
        """(wall seconds, steady ms per step)."""
        wall = time.perf_counter() - self.t0
        steady = (time.perf_counter() - self.t_first) / (steps - 1) if steps > 1 else wall
        return wall, 1000 * steady


class Simulator:
    """Run an IR graph for T steps.

    ``record``: None, ``'neurons'`` (every neuron node), ``'all'``, or a list of
    node names whose outputs are kept per step. ``record_state``: also keep the
    state (u/v) of every neuron per step (True), or of the named nodes. ``reset_interval``/``reset_offset``: netx's
    LIFReset schedule (loihi numerics). ``schedule``: ``'step'`` runs every
    node once per time step; ``'layer'`` runs each node over a time chunk
    (``chunk_bytes`` bounds a chunk's node outputs), a recurrent component
    one step at a time within the chunk, and is refused for token halting or
    merging and when neuron state is recorded per step; ``'auto'`` (default)
    takes ``'layer'`` where allowed. Both give identical outputs,
    recordings and counts (tests/test_simulator_schedules.py).
    """

    def __init__(self, graph: Graph, numerics: str = "float", *, device: str = "cpu",
                 record: Union[None, str, Sequence[str]] = None,
                 record_state: StateRequest = False,
                 reset_interval: Optional[int] = None, reset_offset: int = 0,
                 count: bool = True, schedule: str = "auto",
                 chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> None:
        if numerics not in NUMERICS:
            raise BadInputError(f"unknown numerics {numerics!r}; choose one of {', '.join(NUMERICS)}")
        check_device(device)
        if schedule not in SCHEDULES:
            raise BadInputError(f"unknown schedule {schedule!r}; choose one of {', '.join(SCHEDULES)}")
        graph.infer_shapes()
        self.graph, self.numerics, self.device = graph, numerics, device
        self.order, self.back = graph.order()
        self.kernels = _make_kernels(graph, self.order, numerics, device, reset_interval,
                                     reset_offset)
        self.deferred = DeferredSynapses(graph, self.kernels, self.back)
        self.inputs = [n.name for n in graph.inputs()]
        self.outputs = [n.name for n in graph.outputs()]
        self.record = recorded_nodes(graph, self.order, record)
        if not isinstance(record_state, bool):
            recorded_nodes(graph, self.order, list(record_state))  # unknown names: one line
        self.record_state = record_state
        self.count = count
        self.counter = ActivityCounter(graph, self.order, device) if count else None
        self.kind: Dict[str, str] = {}
        tokens = any(graph[n].op_name in TOKEN_OPS for n in self.order)
        layer_ok = not record_state and not tokens
        if schedule == "layer" and not layer_ok:
            raise BadInputError("schedule 'layer' needs a graph without token halting or "
                                "merging, and no per-step neuron state recording; use "
                                "schedule 'step'")
        #: the layer-major schedule's units: single nodes, and recurrent components
        #: that step their time chunk inside (simulators.cycle.schedule.units)
        self.units = units(graph, self.order, self.back)
        #: the schedule this simulator runs: 'layer' or 'step'
        self.schedule = "layer" if schedule != "step" and layer_ok else "step"
        self.chunk_bytes = chunk_bytes

    # --------------------------------------------------------------- kinds
    def _resolve_kinds(self, feeds: Dict[str, torch.Tensor]) -> None:
        """What each node's output carries (spikes, graded, analog), by
        propagation from inputs; an Input carries spikes if it is fed only
        non-negative integers."""
        for name in self.order:
            kind = self.kernels[name].output_kind
            if kind == "auto":
                x = feeds[name]
                kind = "spikes" if bool(((x >= 0) & (x == torch.round(x))).all()) else "analog"
            elif kind in ("scaled", "same"):
                kind = _propagated_kind(self.graph[name], kind, self.kind)
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
        if progress is None:  # a listener (the CLI's bar on a terminal), if any
            from nmtoolchain.progress import step_callback

            progress = step_callback(f"simulating ({self.numerics})", steps)
        feeds = self._feeds(inputs, steps)
        batch = next(iter(feeds.values())).shape[0]
        chunk = (time_chunk(self.graph, self.order, batch, steps, self.chunk_bytes)
                 if self.schedule == "layer" else
                 min(steps, self.counter.chunk) if self.counter is not None else 1)
        input_bytes = sum(x.untyped_storage().nbytes() for x in feeds.values())
        warn_if_too_big(memory_estimate(self.graph, self.order, batch, steps, chunk,
                                        list(self.record) + list(self.outputs), input_bytes),
                        self.device)
        self._resolve_kinds({k: v[:, 0] for k, v in feeds.items()})
        for k in self.kernels.values():
            k.reset(batch)
        recording = Recording(self.record, self.outputs, self.record_state)
        if self.counter is not None:
            self.counter.start(steps, self.kind)
        clock = _StepClock()
        with torch.no_grad(), _full_fp32(self.device):
            if self.schedule == "layer":
                self._run_layer_major(feeds, steps, chunk, recording, progress)
                wall = time.perf_counter() - clock.t0
                outputs, recorded, state = recording.stacked()
                return SimResult(outputs=outputs, recorded=recorded, state=state,
                                 counts=self._run_counts(steps, batch), wall_s=wall,
                                 ms_per_step=1000 * wall / steps)
            prev: Dict[str, torch.Tensor] = {}
            for t in range(steps):
                prev = self._step(t, feeds, prev, batch, recording)
                if self.counter is not None:
                    self.counter.end_step(t)
                clock.step_done(t)
                if progress is not None:
                    progress(t + 1)
        wall, ms_per_step = clock.times(steps)
        outputs, recorded, state = recording.stacked()
        return SimResult(outputs=outputs, recorded=recorded, state=state,
                         counts=self._run_counts(steps, batch), wall_s=wall,
                         ms_per_step=ms_per_step)

    def _run_layer_major(self, feeds: Dict[str, torch.Tensor], steps: int, chunk: int,
                         recording: Recording,
                         progress: Optional[Callable[[int], None]]) -> None:
        """Each node over time chunks of ``chunk`` steps, then the next; state
        carries between chunks."""
        batch = next(iter(feeds.values())).shape[0]
        for t0 in range(0, steps, chunk):
            t1 = min(steps, t0 + chunk)
            values: Dict[str, torch.Tensor] = {}
            for unit in self.units:
                if len(unit) > 1 or (unit[0], unit[0]) in self.back:
                    self._run_loop(unit, values, t0, t1, batch, recording)
                    continue
                name = unit[0]
                if name in feeds:
                    xs = [feeds[name][:, t0:t1].transpose(0, 1)]
                else:
                    xs = [values[src] for src in self.graph[name].inputs]
                out = run_block(self.kernels[name], xs, t0)
                values[name] = out
                if self.counter is not None:
                    self.counter.observe_block(name, xs, out, t0)
                recording.output_block(name, out)
            if progress is not None:
                for t in range(t0, t1):
                    progress(t + 1)

    def _run_loop(self, unit: List[str], values: Dict[str, torch.Tensor], t0: int, t1: int,
                  batch: int, recording: Recording) -> None:
        """A recurrent component over steps t0 .. t1-1, one step at a time, as
        the step schedule runs it (deferred synapses send, then take their
        input once the step's nodes have run; back edges read the step
        before); inputs from outside are the blocks in ``values``, and each
        node's steps become its (n, B, ...) block, counted and recorded."""
        members = set(unit)
        outside = {s for n in unit for s in self.graph[n].inputs if s not in members}
        outs: Dict[str, List[torch.Tensor]] = {n: [] for n in unit}
        ins: Dict[str, List[List[torch.Tensor]]] = {n: [] for n in unit}
        prev: Dict[str, torch.Tensor] = {}
        for i, t in enumerate(range(t0, t1)):
            now = {src: values[src][i] for src in outside}  # this step's outside inputs
            for name in unit:
                if name in self.deferred:
                    now[name] = self.deferred.emit(name, t)
                else:
                    xs = self._gather(name, now, prev, batch)
                    now[name] = self.kernels[name].step(xs, t)
                    ins[name].append(xs)
                outs[name].append(now[name])
            for name in unit:  # their source has run
                if name in self.deferred:
                    xs = [now[self.graph[name].inputs[0]]]
                    self.kernels[name].absorb(xs, t)
                    ins[name].append(xs)
            prev = now
        for name in unit:
            out = values[name] = torch.stack(outs[name])
            if self.counter is not None:
                xs = [torch.stack([step[k] for step in ins[name]])
                      for k in range(len(ins[name][0]))] if ins[name] and ins[name][0] else []
                self.counter.observe_block(name, xs, out, t0)
            recording.output_block(name, out)

    def _step(self, t: int, feeds: Dict[str, torch.Tensor], prev: Dict[str, torch.Tensor],
              batch: int, recording: Recording) -> Dict[str, torch.Tensor]:
        """Run every node once, in order, for step ``t``; returns the step's outputs."""
        values: Dict[str, torch.Tensor] = {}
        for name in self.order:
            if name in feeds:
                xs = [feeds[name][:, t]]
            elif name in self.deferred:
                values[name] = out = self.deferred.emit(name, t)
                recording.output(name, out)
                continue
            else:
                xs = self._gather(name, values, prev, batch)
            out = self.kernels[name].step(xs, t)
            values[name] = out
            self._observe(name, xs, out)
            recording.output(name, out)
            recording.state(name, self.kernels[name])
        for name, xs in self.deferred.absorb(values, t):  # their source has run
            self._observe(name, xs, values[name])
        return values

    def _gather(self, name: str, values: Dict[str, torch.Tensor], prev: Dict[str, torch.Tensor],
                batch: int) -> List[torch.Tensor]:
        """The inputs of ``name`` this step: a back edge reads its source's output of
        the step before (zeros at step 0)."""
        xs = []
        for src in self.graph[name].inputs:
            if (src, name) in self.back:
                v = prev.get(src)
                xs.append(v if v is not None else torch.zeros(
                    (batch,) + tuple(self.graph[src].shape), device=self.device))
            else:
                xs.append(values[src])
        return xs

    def _observe(self, name: str, xs: List[torch.Tensor], out: torch.Tensor) -> None:
        if self.counter is not None:
            self.counter.observe(name, xs, out)

    def _run_counts(self, steps: int, batch: int) -> RunCounts:
        """The counters of the run just done, with each node's static facts."""
        counts = RunCounts(steps, batch, self.numerics, order=list(self.order))
        counts.nodes = self.counter.series if self.counter is not None else {}
        if self.counter is not None:  # token masks: tokens_active, active neurons updated
            for name, series in token_counts(self.kernels, steps).items():
                counts.nodes.setdefault(name, {}).update(series)
        counts.token_masks = token_masks(self.kernels, steps)
        for name in self.order:
            counts.static[name] = static_facts(self.graph, name, counts.nodes.get(name),
                                               self.kind)
        return counts


def simulate(graph: Graph, inputs, steps: int, numerics: str = "float", **kwargs) -> SimResult:
    """Convenience: build a :class:`Simulator` and run it once."""
    run_kw = {k: kwargs.pop(k) for k in ("progress",) if k in kwargs}
    return Simulator(graph, numerics, **kwargs).run(inputs, steps, **run_kw)
