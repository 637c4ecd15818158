"""Chip numerics as typed parameters: what each target's integer arithmetic holds.

* :mod:`nmtoolchain.numerics.speck`: SynSense Speck / DYNAP-CNN (8-bit
  weights and biases, 16-bit thresholds and state, one scale per layer).
"""
