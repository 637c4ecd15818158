"""Run one netx network in Lava and in nmtc's simulator (loihi numerics) on
the same drive, and say "identical" or where they first differ.

The drive means what :func:`simulators.lava_runner.run_netx_in_lava` says:
spikes into ``net.inp``, the input neurons' ``bias_mant``, or a Delta input's
``a_in``, depending on the file. The simulator receives exactly the same
values at the same steps (the netx loader marks bias-driven input neurons).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional, Union

import numpy as np

from simulators.compare import Divergence, compare_runs, first_divergence, format_divergence


@dataclass
class ParityResult:
    """Outcome of one side-by-side run."""

    divergence: Optional[Divergence]
    layers: Dict[str, Any]
    steps: int
    lava_ms_per_step: float
    nmtc_ms_per_step: float
    lava_wall_s: float
    nmtc_wall_s: float
    nmtc_outputs: Dict[str, np.ndarray] = field(default_factory=dict)
    lava_outputs: Dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def identical(self) -> bool:
        return self.divergence is None

    def line(self) -> str:
        return format_divergence(self.divergence)


def simulator_input(graph: Any, drive: np.ndarray, steps: int, kind: str) -> np.ndarray:
    """The drive as the simulator's (1, T, *shape) input."""
    shape = tuple(graph.inputs()[0].shape)
    d = np.asarray(drive)
    if kind == "bias" and d.size == int(np.prod(shape)):
        return d.reshape((1,) + shape).astype(np.float32)  # constant bias
    rows = d.reshape((-1,) + shape)
    if rows.shape[0] == 1:
        rows = np.repeat(rows, steps, axis=0)
    return rows[None, :steps].astype(np.float64 if kind == "a_in" else np.float32)


def run_nmtc_netx(net_path: Union[str, Path], drive: np.ndarray, steps: int, *,
                  reset_interval: Optional[int] = None, reset_offset: int = 0,
                  num_layers: Optional[int] = None, batch_repeat: int = 1):
    """Simulate a netx file in loihi numerics with the Lava runner's drive
    convention; returns (SimResult, outputs as dict name -> (T, *shape) int)."""
    from nmtoolchain.frontends.netx_loader import load_netx
    from simulators.cycle import Simulator
    from simulators.lava_runner import netx_drive_kind

    graph = load_netx(net_path, num_layers=num_layers)
    kind = netx_drive_kind(net_path, num_layers)
    x = simulator_input(graph, drive, steps, kind)
    if batch_repeat > 1:
        x = np.repeat(x, batch_repeat, axis=0)
    sim = Simulator(graph, "loihi", record="neurons", reset_interval=reset_interval,
                    reset_offset=reset_offset)
    res = sim.run(x, steps)
    outs = {k: v[0].cpu().numpy().round().astype(np.int64) for k, v in res.recorded.items()}
    return res, outs


def check_parity(net_path: Union[str, Path], drive: np.ndarray, steps: int, *,
                 reset_interval: Optional[int] = None, reset_offset: int = 0,
                 num_layers: Optional[int] = None) -> ParityResult:
    """Run both and compare every neuron layer at every step."""
    from simulators.lava_runner import run_netx_in_lava

    t0 = time.perf_counter()
    lava = run_netx_in_lava(net_path, drive, steps, reset_interval=reset_interval,
                            reset_offset=reset_offset, num_layers=num_layers)
    lava_wall = time.perf_counter() - t0
    t0 = time.perf_counter()
    res, ours = run_nmtc_netx(net_path, drive, steps, reset_interval=reset_interval,
                              reset_offset=reset_offset, num_layers=num_layers)
    nmtc_wall = time.perf_counter() - t0
    common = [k for k in lava.outputs if k in ours]
    ref = {k: lava.outputs[k] for k in common}
    cand = {k: ours[k] for k in common}
    return ParityResult(first_divergence(ref, cand, layers=common), compare_runs(ref, cand),
                        steps, lava.ms_per_step, res.ms_per_step, lava_wall, nmtc_wall,
                        cand, ref)
