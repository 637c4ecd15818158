"""Quantization passes: float SNN graph -> a target's fixed-point form.

* :func:`quantize_for_loihi` (``loihi``): Loihi 2 / lava-dl netx integers
  (8-bit weight mantissa, 17-bit threshold, 13-bit bias, 12-bit decays), with
  a per-layer :class:`QuantReport`; :func:`loihi_float_reference` is the float
  model with Loihi's semantics, to compare float and fixed point like with like;
  :func:`aligned_run` / :func:`spike_counts` run the fixed-point graph so each
  layer lines up with the float model despite Loihi's one step per synapse.
"""
from nmtoolchain.quantize.loihi import (
    LayerQuant, LoihiLimits, QuantReport, limits_from_profile, loihi_float_reference,
    netx_dense_weights, netx_dense_weights_exact, quantize_for_loihi, spike_counts,
    aligned_run, pipeline_depths)

__all__ = ["quantize_for_loihi", "loihi_float_reference", "QuantReport", "LayerQuant",
           "LoihiLimits", "limits_from_profile", "netx_dense_weights",
           "netx_dense_weights_exact", "spike_counts", "aligned_run", "pipeline_depths"]
