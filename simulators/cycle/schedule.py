"""Layer-major (time-batched) execution; recurrent components step inside it.

A graph without back edges has no node whose step t depends on a later
node's step t, so each node can run over a whole time chunk before the next
node starts: the interpreter hands it (n, B, ...) blocks of its inputs and
keeps its (n, B, ...) output. :func:`run_block` does that for one kernel: a
kernel that knows how to take a block at once (a ``run_block`` method:
Loihi's synapses as one call over n·B with the one-step delay as a shift in
time, Loihi's CUBA neuron as an in-place loop over a preallocated buffer)
does so; a kernel without state whose step works per sample (``per_sample``:
element-wise ops, pooling, reshapes; convolutions and matmuls on the CPU)
takes the block as one batch of n·B samples (a static input, the same every
step, once); any other kernel is stepped n times on slices of the block,
which is the step-by-step schedule's very sequence of calls on that kernel,
so its results (random masks included: each SpikeMask holds its own
generator) are the same by construction.

A graph with back edges runs the same way by :func:`units`: each strongly
connected component with a back edge is one unit, stepped through the chunk
inside (the interpreter's ``_run_loop``), between units that take whole blocks.

:func:`time_chunk` bounds the memory a chunk holds; :func:`memory_estimate`
adds what a run keeps to the end (recorded outputs, the input) and
:func:`warn_if_too_big` prints that estimate before a run that would not fit
in the device's free memory. This module decides nothing about counting or
recording.
"""
from __future__ import annotations

import heapq
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Set, Tuple

import numpy as np
import torch

from nmtoolchain.ir import Graph

SCHEDULES = ("auto", "layer", "step")

#: bytes one time chunk may hold in node outputs before it is split further
DEFAULT_CHUNK_BYTES = 1 << 30
#: steps per chunk at most: longer chunks gain nothing measurable, and a run
#: stays responsive (progress, Ctrl-C) between chunks
MAX_CHUNK_STEPS = 256


def run_block(kernel: object, xs: List[torch.Tensor], t0: int) -> torch.Tensor:
    """Run ``kernel`` over steps t0 .. t0+n-1: ``xs[i]`` is (n, B, ...), returns (n, B, ...)."""
    fast = getattr(kernel, "run_block", None)
    if fast is not None:
        out = fast(xs, t0)
        if out is not None:  # None: the kernel declined this block
            return out
    n = xs[0].shape[0] if xs else 0
    if getattr(kernel, "per_sample", False) and xs:  # one call over n·B samples
        if n > 1 and all(x.stride(0) == 0 for x in xs):  # the same input every step (a
            y = kernel.step([x[0] for x in xs], t0)  # static image): once, seen n times
            return y.unsqueeze(0).expand((n,) + tuple(y.shape))
    if (getattr(kernel, "per_sample", False) and xs
            and xs[0].shape[1] >= getattr(kernel, "min_batch", 0)):
        flat = kernel.step([x.reshape((-1,) + tuple(x.shape[2:])) for x in xs], t0)
        return flat.reshape((n, -1) + tuple(flat.shape[1:]))
    outs = [kernel.step([x[i] for x in xs], t0 + i) for i in range(n)]
    return torch.stack(outs)


def units(graph: Graph, order: Sequence[str], back: Set[Tuple[str, str]]) -> List[List[str]]:
    """The layer-major schedule's units, in the order they run: one node, or
    a recurrent component (the nodes of a strongly connected component with
    a back edge, in ``order``'s order), which steps its time chunk one step at
    a time inside. Each unit runs after every unit it reads (a topological
    order of the components' graph, ties by first appearance in ``order``)."""
    comp = graph.strongly_connected()
    looped = {comp[dst] for _, dst in back}
    key = {n: ("loop", comp[n]) if comp[n] in looped else ("node", n) for n in order}
    groups: Dict[tuple, List[str]] = {}
    for n in order:
        groups.setdefault(key[n], []).append(n)
    first = {k: i for i, k in enumerate(groups)}
    waiting = {k: len({key[s] for n in names for s in graph[n].inputs} - {k})
               for k, names in groups.items()}
    readers: Dict[tuple, Set[tuple]] = {k: set() for k in groups}
    for k, names in groups.items():
        for src in {key[s] for n in names for s in graph[n].inputs} - {k}:
            readers[src].add(k)
    ready = [(first[k], k) for k, w in waiting.items() if w == 0]
    heapq.heapify(ready)
    out: List[List[str]] = []
    while ready:  # Kahn's algorithm; the components' graph is acyclic
        _, k = heapq.heappop(ready)
        out.append(groups[k])
        for r in readers[k]:
            waiting[r] -= 1
            if waiting[r] == 0:
                heapq.heappush(ready, (first[r], r))
    return out


def step_bytes(graph: Graph, order: Sequence[str], batch: int) -> int:
    """Bytes one time step of every node's output occupies (8 per value, the widest dtype)."""
    return int(sum(8 * batch * int(np.prod(graph[n].shape)) for n in order))


def time_chunk(graph: Graph, order: Sequence[str], batch: int, steps: int,
               budget: int = DEFAULT_CHUNK_BYTES, *, quiet: bool = False) -> int:
    """Steps per chunk so that a chunk's node outputs stay within ``budget`` bytes.

    When not even one step fits, says so on stderr (with the estimate) and
    runs one step per chunk."""
    per_step = max(1, step_bytes(graph, order, batch))
    n = budget // per_step
    if n < 1:
        if not quiet:
            print(f"nmtc: one time step of this graph at batch {batch} holds about "
                  f"{per_step / 2**20:.0f} MiB of node outputs (budget {budget / 2**20:.0f} MiB); "
                  "running one step per chunk", file=sys.stderr)
        return 1
    return int(min(steps, n, MAX_CHUNK_STEPS))


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes a run holds at its peak, estimated before it starts (8 bytes per
    value, the widest dtype the kernels use)."""

    #: time steps whose node outputs are held at once (a layer-major chunk, or
    #: the steps the step schedule buffers for counting)
    held_steps: int
    #: node outputs of those steps
    held: int
    #: outputs kept for the whole run (recorded and Output nodes): the per-step
    #: copies and the stacked (B, T, ...) result
    kept: int
    #: the data fed in
    inputs: int

    @property
    def total(self) -> int:
        return self.held + self.kept + self.inputs

    def describe(self) -> str:
        gib = lambda b: f"{b / 2**30:.2f} GiB"  # noqa: E731
        return (f"about {gib(self.total)} (node outputs of {self.held_steps} step(s) held at "
                f"once: {gib(self.held)}, recorded outputs: {gib(self.kept)}, "
                f"inputs: {gib(self.inputs)})")


def memory_estimate(graph: Graph, order: Sequence[str], batch: int, steps: int,
                    held_steps: int, kept: Sequence[str], input_bytes: int) -> MemoryEstimate:
    """What a run of ``steps`` steps at ``batch`` holds: ``held_steps`` steps of
    every node's output, every step of the ``kept`` nodes' outputs (twice: the
    per-step copies, then the stacked result) and ``input_bytes`` of input."""
    kept_per_step = sum(8 * batch * int(np.prod(graph[n].shape)) for n in set(kept))
    return MemoryEstimate(held_steps, held_steps * step_bytes(graph, order, batch),
                          2 * steps * kept_per_step, int(input_bytes))


def free_bytes(device: str) -> Optional[int]:
    """Memory free for a run on ``device``: CUDA's free device memory, or the
    host's MemAvailable (Linux); None where it cannot be read."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return int(torch.cuda.mem_get_info(dev)[0])
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def warn_if_too_big(estimate: MemoryEstimate, device: str) -> bool:
    """Print the estimate on stderr when the run would not fit in ``device``'s
    free memory (the run still starts: the estimate is an upper bound, and
    swap or a freed cache may carry it); returns whether it was printed."""
    free = free_bytes(device)
    if free is None or estimate.total <= free:
        return False
    print(f"nmtc: this run needs {estimate.describe()}, but only {free / 2**30:.2f} GiB are "
          f"free on {device}; record fewer nodes, or run fewer steps or a smaller batch",
          file=sys.stderr)
    return True
