"""Energy and latency estimates from a simulator run and a hardware profile.

:mod:`~nmtoolchain.energy.rules` re-expresses a run's counts under a counting
convention (hardware fan-out, NeuroBench, syops-counter, Spikformer);
:mod:`~nmtoolchain.energy.model` turns counts and a profile into energy per
node, per step and per inference, latency per step, and comparisons between
profiles. Pure functions of their inputs; numpy only, no torch.
"""
from nmtoolchain.energy.model import (COMPONENTS, CorePlan, EnergyReport, LatencyReport,
                                      ProfileComparison, compare_profiles, estimate_energy,
                                      estimate_latency, plan_cores)
from nmtoolchain.energy.rules import RULES, NodeOps, RuleCounts, apply_rule

__all__ = ["apply_rule", "RULES", "RuleCounts", "NodeOps", "estimate_energy", "estimate_latency",
           "compare_profiles", "plan_cores", "EnergyReport", "LatencyReport", "ProfileComparison",
           "CorePlan", "COMPONENTS"]
