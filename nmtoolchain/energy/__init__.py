"""Energy and latency estimates from a simulator run and a hardware profile.

:mod:`~nmtoolchain.energy.rules` re-expresses a run's counts under a counting
convention (hardware fan-out, NeuroBench, syops-counter, Spikformer);
:mod:`~nmtoolchain.energy.model` turns counts and a profile into energy per
node, per step and per inference, latency per step, and comparisons between
profiles; :mod:`~nmtoolchain.energy.sanafe_model` prices SANA-FE's events for
a profile with ``[chip] cost_model = "sanafe"`` (loihi1-sanafe). Pure functions of their inputs; cores come from one placement
(:func:`nmtoolchain.mapping.place`). numpy only, no torch.
"""
from nmtoolchain.energy.model import (COMPONENTS, EnergyReport, LatencyReport,
                                      ProfileComparison, compare_profiles, estimate_energy,
                                      estimate_latency, resolve_placement)
from nmtoolchain.energy.rules import RULES, NodeOps, RuleCounts, apply_rule

__all__ = ["apply_rule", "RULES", "RuleCounts", "NodeOps", "estimate_energy", "estimate_latency",
           "compare_profiles", "resolve_placement", "EnergyReport", "LatencyReport",
           "ProfileComparison", "COMPONENTS"]
