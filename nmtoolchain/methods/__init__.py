"""Graph-level methods from the seed papers (passes ``Graph -> Graph``).

* :mod:`nmtoolchain.methods.rsm` — MST's Random Spike Masking.
"""
from nmtoolchain.methods.rsm import KNOWN_ROLES, PAPER_ONLY_ROLES, PRESETS, apply_rsm, masked_path

__all__ = ["apply_rsm", "masked_path", "PRESETS", "KNOWN_ROLES", "PAPER_ONLY_ROLES"]
