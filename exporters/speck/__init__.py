"""Speck / DYNAP-CNN export: the sinabs network, the chip configuration, the mapping.

:mod:`exporters.speck.network` writes and rebuilds the discretized sinabs
network; :mod:`exporters.speck.bundle` writes the export directory (it only
writes: the graph work is the target's pipeline, nmtoolchain/targets/speck.py).
"""
