"""Layer-major (time-batched) execution of the parts of a graph without recurrence.

A graph without back edges has no node whose step t depends on a later
node's step t, so each node can run over a whole time chunk before the next
node starts: the interpreter hands it (n, B, ...) blocks of its inputs and
keeps its (n, B, ...) output. :func:`run_block` does that for one kernel: a
kernel that knows how to take a block at once (a ``run_block`` method:
Loihi's synapses as one call over n·B with the one-step delay as a shift in
time, Loihi's CUBA neuron as an in-place loop over a preallocated buffer)
does so; any other kernel is stepped n times on slices of the block, which
is the step-by-step schedule's very sequence of calls on that kernel, so its
results (random masks included: each SpikeMask holds its own generator) are
the same by construction.

:func:`time_chunk` bounds the memory a chunk holds. This module decides
nothing about counting or recording; it never walks the graph.
"""
from __future__ import annotations

import sys
from typing import List, Sequence

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
    outs = [kernel.step([x[i] for x in xs], t0 + i) for i in range(n)]
    return torch.stack(outs)


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
