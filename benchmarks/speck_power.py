"""How far the assumed Speck energy per synaptic operation is from a measurement.

Yao et al., "Spike-based dynamic computing with asynchronous sensing-computing
neuromorphic chip", Nat. Commun. 15:4464 (2024), Table 1, measured the total
power of Speck running a tiny network, Input-32C3S1-32C3S2-32C3S1-AP4-32FC-Output,
on DVS Gesture in real time: 9.5 mW (vanilla SNN) and 3.8 mW (dynamic SNN),
on 5 cores (the values are in hardware_profiles/speck.toml,
[reference.yao2024_dvs_gesture]). This script builds that network in nmtc,
places it with the Speck mapper, runs it on random DVS events at stated rates,
prices the run with the ``speck`` profile (energy per synaptic op: the
assumed parameter) and prints, per event rate, the estimated total power, its
ratio to each measured figure, and the energy per synaptic op that would make
the estimate equal the measurement.

What is assumed (not in the paper's table), and printed with the results:

* the DVS's 128x128 events are sum-pooled 4x4 by the chip's DVS layer before
  core 0: at 64x64, layer 0's neuron memory would be 32 * 2^(6+6) = 131072
  entries (largest core: 65536), at 32x32 it is 32768, so 4x4 is the pooling
  that lets the network run on Speck at all; nmtc does not lower the DVS layer,
  so the input here is the pooled event counts (2, 32, 32);
* padding 1 on the 3x3 convolutions, 11 output classes (DVS Gesture);
* weights drawn at random (normal, std ``gain * sqrt(2 / fan_in)``), threshold 1,
  no bias; the hidden activity this gives is printed (spikes per second) next
  to the paper's spike counts, whose normalisation is not known;
* events uniform over the 2x128x128 pixels at the stated rates, Poisson per
  1 ms bin; one simulator step is 1 ms of real time.

Total power = resting power ([power] static, 0.42 mW, measured) + the
dynamic energy of one second of input. The printed implied synop energy
assumes the other dynamic terms (spikes, hops) as the profile has them.

    .venv/bin/python benchmarks/speck_power.py [--rates 1e4 1e5 1e6] [--steps 200] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Dict, List

import numpy as np

from hardware_profiles import load_profile
from nmtoolchain.energy import estimate_energy, estimate_latency
from nmtoolchain.ir import IF, Affine, AvgPool2d, Conv2d, Flatten, Graph, Input, Output
from nmtoolchain.mapping import place
from simulators.cycle import Simulator

DVS = (2, 128, 128)
POOL = 4          # DVS pre-processing sum pooling (module docstring)
DT_S = 1e-3       # real time per simulator step
CLASSES = 11      # DVS Gesture


def yao_tiny_network(seed: int = 0, gain: float = 1.0) -> Graph:
    """Input-32C3S1-32C3S2-32C3S1-AP4-32FC-Output on (2, 32, 32) pooled DVS events."""
    rng = np.random.default_rng(seed)

    def w(*shape: int) -> np.ndarray:
        fan_in = int(np.prod(shape[1:]))
        return (rng.standard_normal(shape) * gain * np.sqrt(2.0 / fan_in)).astype(np.float32)

    def neuron() -> IF:
        return IF(v_threshold=1.0, v_min=-1.0, reset="subtract", spike="multi", compare=">=")

    g = Graph()
    g.add("input", Input(shape=(DVS[0], DVS[1] // POOL, DVS[2] // POOL)))
    g.add("conv1", Conv2d(weight=w(32, 2, 3, 3), padding=1), ["input"])
    g.add("iaf1", neuron(), ["conv1"])
    g.add("conv2", Conv2d(weight=w(32, 32, 3, 3), stride=2, padding=1), ["iaf1"])
    g.add("iaf2", neuron(), ["conv2"])
    g.add("conv3", Conv2d(weight=w(32, 32, 3, 3), padding=1), ["iaf2"])
    g.add("iaf3", neuron(), ["conv3"])
    g.add("ap4", AvgPool2d(kernel_size=4), ["iaf3"])
    g.add("flat", Flatten(), ["ap4"])
    g.add("fc1", Affine(weight=w(32, 32 * 4 * 4)), ["flat"])
    g.add("iaf4", neuron(), ["fc1"])
    g.add("fc2", Affine(weight=w(CLASSES, 32)), ["iaf4"])
    g.add("iaf5", neuron(), ["fc2"])
    g.add("output", Output(), ["iaf5"])
    return g.infer_shapes()


def dvs_events(rate_hz: float, steps: int, seed: int = 1) -> np.ndarray:
    """(1, steps, 2, 32, 32) event counts: uniform random DVS events at ``rate_hz``
    (Poisson per step), sum-pooled 4x4 as the DVS layer does."""
    rng = np.random.default_rng(seed)
    c, h, w = DVS
    out = np.zeros((steps, c, h // POOL, w // POOL), np.float32)
    for t in range(steps):
        n = rng.poisson(rate_hz * DT_S)
        idx = rng.integers(0, c * h * w, n)
        ch, y, x = np.unravel_index(idx, DVS)
        np.add.at(out[t], (ch, y // POOL, x // POOL), 1.0)
    return out[None]


def run(rate_hz: float, steps: int, gain: float) -> Dict[str, Any]:
    prof = load_profile("speck")
    g = yao_tiny_network(gain=gain)
    x = dvs_events(rate_hz, steps)
    counts = Simulator(g, "float").run(x, steps).counts
    energy = estimate_energy(counts, prof, graph=g)
    latency = estimate_latency(counts, prof, graph=g)
    seconds = steps * DT_S
    tot = energy.total()
    dyn_pj = sum(v for k, v in tot.items() if k not in ("static", "total"))
    synop_pj = tot["synaptic"] + tot["mac"]
    ops = sum(float(np.sum(counts.counter(n, k))) for n in counts.nodes
              for k in ("synops", "macs"))
    spikes = {n: float(np.sum(counts.counter(n, "spikes_out"))) for n in counts.nodes
              if g[n].op.is_neuron}
    rest_mw = prof.value("power", "static")
    dyn_mw = dyn_pj * 1e-12 / seconds * 1e3
    total_mw = rest_mw + dyn_mw
    e_synop = prof.value("energy", "synop")
    ref = {"vanilla_snn": prof.value("reference.yao2024_dvs_gesture", "total_power_vanilla_snn"),
           "dynamic_snn": prof.value("reference.yao2024_dvs_gesture", "total_power_dynamic_snn")}
    implied = {}
    for k, meas in ref.items():
        left_mw = meas - rest_mw - (dyn_mw - synop_pj * 1e-12 / seconds * 1e3)
        implied[k] = left_mw * 1e-3 / (ops / seconds) * 1e12 if ops else None
    return {
        "input_events_per_s": rate_hz,
        "synaptic_ops_per_s": ops / seconds,
        "spikes_per_s": {n: v / seconds for n, v in spikes.items()},
        "hidden_spikes_per_s": sum(spikes.values()) / seconds,
        "dynamic_mw": dyn_mw, "resting_mw": rest_mw, "total_mw": total_mw,
        "ratio_estimate_to_measured": {k: total_mw / v for k, v in ref.items()},
        "synop_pj_assumed": e_synop,
        "synop_pj_implied_by_measurement": implied,
        "time_per_step_ns": latency.mean_step_ns, "real_time_per_step_ns": DT_S * 1e9,
        "cores": {L.name: list(L.cores) for L in energy.placement.layers},
        "mapper": energy.placement.mapper,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rates", type=float, nargs="+", default=[1e4, 1e5, 1e6],
                    help="DVS events per second (assumed; see the module docstring)")
    ap.add_argument("--steps", type=int, default=200, help="1 ms steps simulated")
    ap.add_argument("--gain", type=float, default=1.0, help="weight scale (He init x gain)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    prof = load_profile("speck")
    placement = place(yao_tiny_network(gain=args.gain), prof)
    rows: List[Dict[str, Any]] = [run(r, args.steps, args.gain) for r in args.rates]
    ref = prof.sections["reference.yao2024_dvs_gesture"]
    print(f"Yao et al. 2024 Table 1 tiny network on Speck: {placement.describe()}; "
          f"the paper: {int(ref['cores_used'].value)} cores")
    print(f"measured total power, DVS Gesture: vanilla SNN {ref['total_power_vanilla_snn'].value}"
          f" mW, dynamic SNN {ref['total_power_dynamic_snn'].value} mW; spikes "
          f"{ref['spikes_vanilla_snn'].value:.1e} / {ref['spikes_dynamic_snn'].value:.1e} "
          "(normalisation not known)")
    print(f"assumed energy per synaptic op {prof.value('energy', 'synop')} pJ "
          f"({prof.quantity('energy', 'synop').note.split(';')[0]})")
    head = (f"{'events/s':>9} {'synops/s':>10} {'spikes/s':>10} {'dyn mW':>8} {'total mW':>9} "
            f"{'est/9.5':>8} {'est/3.8':>8} {'pJ/synop for 9.5':>17} {'for 3.8':>8} "
            f"{'step ns (1 ms real)':>20}")
    print(head)
    for r in rows:
        imp = r["synop_pj_implied_by_measurement"]
        print(f"{r['input_events_per_s']:>9.0e} {r['synaptic_ops_per_s']:>10.3g} "
              f"{r['hidden_spikes_per_s']:>10.3g} {r['dynamic_mw']:>8.3g} {r['total_mw']:>9.3g} "
              f"{r['ratio_estimate_to_measured']['vanilla_snn']:>8.3f} "
              f"{r['ratio_estimate_to_measured']['dynamic_snn']:>8.3f} "
              f"{imp['vanilla_snn']:>17.3g} {imp['dynamic_snn']:>8.3g} "
              f"{r['time_per_step_ns']:>20.4g}")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "placement": placement.as_dict()},
                                        indent=2) + "\n")


if __name__ == "__main__":
    main()
