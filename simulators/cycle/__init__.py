"""The cycle-level simulator over the IR (see :mod:`simulators.cycle.interpreter`)."""
from simulators.cycle.counts import COUNTERS, RunCounts
from simulators.cycle.interpreter import NUMERICS, SimResult, Simulator, simulate

__all__ = ["Simulator", "SimResult", "simulate", "RunCounts", "COUNTERS", "NUMERICS"]
