"""SANA-FE 2.2.9 (silicon-calibrated Loihi) vs nmtc's loihi1-sanafe and loihi1 profiles.

For each network of simulators/sanafe_cases.py: the same graph, input spikes
and placement run in nmtc's simulator (counts, then energy and latency under
each profile) and in SANA-FE itself; prints energy, time per step and events
side by side, with nmtc/SANA-FE ratios. loihi1-sanafe runs T + D steps (the
pipeline drain) as SANA-FE does; loihi1 prices the T steps nmtc simulated.

    PYTHONPATH=. python benchmarks/sanafe_comparison.py
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from nmtoolchain.energy import estimate_energy  # noqa: E402
from nmtoolchain.mapping import Placement  # noqa: E402
from simulators.cycle.interpreter import simulate  # noqa: E402
from simulators.sanafe_cases import CASES, SanafeCase  # noqa: E402
from simulators.sanafe_runner import SanafeRun, run_sanafe  # noqa: E402


@dataclass
class Row:
    """One network: SANA-FE's figures and nmtc's under two profiles."""

    case: str
    sanafe: SanafeRun
    nmtc: Dict[str, Dict[str, float]]   # profile -> energy_pj, step_ns, total_ns, synops, ...
    spikes_nmtc: Dict[str, int]


def compare(case: SanafeCase) -> Row:
    """Run one case on both sides."""
    T = case.spikes.shape[0]
    shape = case.graph["x"].op.shape
    x = torch.tensor(case.spikes.reshape((1, T) + tuple(shape)))
    counts = simulate(case.graph, x, T).counts
    ref = run_sanafe(case.graph, case.spikes.reshape(T, -1),
                     Placement.given("loihi1-sanafe", case.layers))
    out = {}
    for prof in ("loihi1-sanafe", "loihi1"):
        er = estimate_energy(counts, prof, placement=Placement.given(prof, case.layers))
        out[prof] = {"energy_pj": er.total_pj, "total_ns": er.latency.total_ns,
                     "steps": er.steps, "step_ns": er.latency.mean_step_ns}
    synops = counts.total("synops")
    spikes = {n: int(counts.counter(n, "spikes_out").sum()) for n in case.layers}
    spikes["x"] = int(case.spikes.sum())
    out["events"] = {"synops": synops}
    return Row(case.name, ref, out, spikes)


def main() -> None:
    print(f"{'net':6} {'side':14} {'energy uJ':>10} {'x SANA-FE':>9} {'ns/step':>9} "
          f"{'x SANA-FE':>9} {'syn events':>10} {'spikes':>7}")
    for make in CASES:
        r = compare(make())
        s = r.sanafe
        s_step = s.total_ns / s.steps
        print(f"{r.case:6} {'SANA-FE 2.2.9':14} {s.energy_pj['total'] / 1e6:10.4f} {1:9.3f} "
              f"{s_step:9.1f} {1:9.3f} {s.synaptic_events:10d} {s.fired:7d}")
        for prof in ("loihi1-sanafe", "loihi1"):
            d = r.nmtc[prof]
            # per inference: loihi1-sanafe includes the drain, like SANA-FE; loihi1 does not
            print(f"{'':6} {prof:14} {d['energy_pj'] / 1e6:10.4f} "
                  f"{d['energy_pj'] / s.energy_pj['total']:9.3f} {d['step_ns']:9.1f} "
                  f"{d['step_ns'] / s_step:9.3f} {int(r.nmtc['events']['synops']):10d} "
                  f"{sum(r.spikes_nmtc.values()):7d}")


if __name__ == "__main__":
    main()
