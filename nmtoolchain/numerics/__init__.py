"""Typed target numerics: how a target computes a node exactly (``Node.numerics``).

``base`` holds the record base class and its registry (by ``kind``, the name
``.nmir`` files use); ``loihi`` holds Loihi 2's fixed-point constants, the
decay <-> tau rule and the CUBA / sigma-delta neuron records; ``speck`` holds
SynSense Speck / DYNAP-CNN's integers (8-bit weights and biases, 16-bit
thresholds and state, one scale per layer). Nothing here imports the IR,
torch or a vendor library.
"""
from nmtoolchain.numerics.base import NUMERICS_REGISTRY, TargetNumerics, numerics_from_dict
from nmtoolchain.numerics.loihi import (
    InputTransform, LoihiCubaNeuron, LoihiSigmaDeltaNeuron, is_loihi_cuba)

__all__ = ["TargetNumerics", "NUMERICS_REGISTRY", "numerics_from_dict", "LoihiCubaNeuron",
           "LoihiSigmaDeltaNeuron", "InputTransform", "is_loihi_cuba"]
