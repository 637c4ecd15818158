"""How much work a run will be, estimated before it starts, and the limit past which
nmtc refuses it (issue 16: ``-T 100000000`` ran for minutes with growing memory).

The estimate is a count of element-steps: for every sample and time step, each
node's output elements plus each weight it reads. On the reference machine
(2 cores) the float simulator did about 3e7 element-steps per second (check-accuracy
-T 1024 on digits: 2.1e9 element-steps in 72 s), so the
limit (:data:`MAX_ELEMENT_STEPS`) is about a quarter of an hour of work. The message
states the estimate, so a user who wants a longer run can split it. Imports
nothing heavier than numpy.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from nmtoolchain.errors import BadInputError

#: refuse a run estimated to take more element-steps than this
MAX_ELEMENT_STEPS = 3e10
#: element-steps per second measured for the float simulator on the reference machine
ELEMENT_STEPS_PER_S = 3e7
#: a time-step count past this is refused outright (no network here needs it)
MAX_TIMESTEPS = 1_000_000


@dataclass(frozen=True)
class RunEstimate:
    """The size of a simulation run, from the graph alone."""

    per_step: int  # element-steps per sample and time step
    samples: int
    timesteps: int

    @property
    def element_steps(self) -> float:
        return float(self.per_step) * self.samples * self.timesteps

    @property
    def seconds(self) -> float:
        return self.element_steps / ELEMENT_STEPS_PER_S


def _per_step(graph: Any) -> int:
    total = 0
    for node in graph.nodes.values():
        if node.shape is not None:
            total += int(np.prod(node.shape, dtype=np.int64))
        for value in node.op.field_values().values():
            if isinstance(value, np.ndarray):
                total += int(value.size)
    return max(total, 1)


def check_run_size(graph: Any, timesteps: int, samples: int, what: str = "simulation") -> RunEstimate:
    """Estimate a run of ``graph`` over ``samples`` samples and ``timesteps`` steps;
    BadInputError (with the estimate) past :data:`MAX_ELEMENT_STEPS`."""
    if int(timesteps) > MAX_TIMESTEPS:
        raise BadInputError(f"--timesteps {timesteps} is over the limit of {MAX_TIMESTEPS:,} "
                            "steps")
    est = RunEstimate(_per_step(graph), max(int(samples), 1), int(timesteps))
    if est.element_steps > MAX_ELEMENT_STEPS:
        raise BadInputError(
            f"this {what} is estimated at {est.element_steps:.2g} element-steps "
            f"({est.per_step:,} per step x {est.timesteps:,} steps x {est.samples:,} samples, "
            f"about {est.seconds / 60:.0f} min), over the limit of {MAX_ELEMENT_STEPS:.0e}; "
            "use fewer --timesteps or --samples")
    return est


__all__ = ["RunEstimate", "check_run_size", "MAX_ELEMENT_STEPS", "MAX_TIMESTEPS"]
