"""Energy at initialisation (``reference/seeds.md`` §3.4).

The randomly initialised candidate (PLIF τ = 2, BatchNorm in eval mode with
its default running statistics) runs for T = 4 steps on a small batch in the
cycle-level simulator; the run's counts (measured firing rates) are priced by
:func:`nmtoolchain.energy.estimate_energy` under any hardware profile. The
input is recorded: ``ones`` (the released code's data loader: all-ones
images) or ``data`` (a real batch the caller passes, the paper's wording).
On the analytic ``cmos45nm`` profile the default rule is ``syops`` (the counter
AutoST calls: E = 0.9 pJ × ACs + 4.6 pJ × MACs); other profiles use their own
default rule (``fanout`` on the chips) unless ``rule`` says otherwise.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional

import numpy as np

from nmtoolchain.errors import BadInputError
from nmtoolchain.methods.autost.space import STEPS


@dataclass(frozen=True)
class InitEnergy:
    """Energy of one inference of the initialised model, and what it rests on."""

    profile: str
    rule: str
    input: str                 # "ones" or "data"
    batch: int
    steps: int
    seed: int
    total_pj: float
    acs: float                 # per sample, under ``rule``
    macs: float
    spike_rate: float          # spikes per neuron and step, over all neurons

    def as_dict(self) -> Dict[str, Any]:
        return dict(self.__dict__)


def default_rule(profile: str) -> Optional[str]:
    """``syops`` on the analytic profile (AutoST's counter), else the profile's own."""
    return "syops" if profile == "cmos45nm" else None


def init_graph(config: Mapping[str, Any], seed: int = 0):
    """The IR graph of the randomly initialised model (torch seed ``seed``), eval mode."""
    import torch

    from nmtoolchain.frontends.torch_fx import graph_from_module
    from nmtoolchain.models.spikformer import build_spikformer

    torch.manual_seed(seed)
    model = build_spikformer(config).eval()
    c = model.config
    return graph_from_module(model, (int(c["in_channels"]), int(c["input_size"]),
                                     int(c["input_size"])), origin="autost-init")


def simulate_init(config: Mapping[str, Any], *, batch: int = 4, steps: int = STEPS,
                  data: Optional[np.ndarray] = None, seed: int = 0):
    """(graph, counts) of the initialised model run on ``data`` or all-ones."""
    from simulators.cycle import Simulator

    graph = init_graph(config, seed)
    shape = tuple(graph.inputs()[0].shape)
    if data is None:
        x = np.ones((batch,) + tuple(shape), dtype=np.float32)
    else:
        x = np.asarray(data, dtype=np.float32)
        if x.shape[1:] != tuple(shape):
            raise BadInputError(f"energy at init: data of shape {x.shape[1:]} per sample, the "
                                f"model takes {tuple(shape)}")
    res = Simulator(graph, "float").run(x, steps)
    return graph, res.counts


def energy_at_init(config: Mapping[str, Any], profile: str = "cmos45nm",
                   rule: Optional[str] = None, *, batch: int = 4, steps: int = STEPS,
                   data: Optional[np.ndarray] = None, seed: int = 0) -> InitEnergy:
    """Simulate the initialised ``config`` and price the run under ``profile``."""
    from nmtoolchain.energy import estimate_energy

    graph, counts = simulate_init(config, batch=batch, steps=steps, data=data, seed=seed)
    rule = rule or default_rule(profile)
    rep = estimate_energy(counts, profile, rule, graph=graph)
    per = counts.per_sample() if counts.batch != 1 else counts
    neurons = sum(float(per.counter(n, "neuron_updates").sum()) for n in per.order)
    spikes = sum(float(per.counter(n, "spikes_out").sum()) for n in per.order
                 if per.static.get(n, {}).get("neurons"))
    return InitEnergy(rep.profile, rep.rule, "ones" if data is None else "data",
                      counts.batch, steps, seed, rep.total_pj, rep.ops.acs, rep.ops.macs,
                      spikes / neurons if neurons else 0.0)


__all__ = ["InitEnergy", "energy_at_init", "simulate_init", "init_graph", "default_rule"]
