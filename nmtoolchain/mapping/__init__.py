"""Mapping: partition a graph's neuron layers onto a chip's cores, place the
cores, and report the resources used.

:func:`map_onto_cores` reads per-core limits from a hardware profile
(``hardware_profiles/*.toml``; see :mod:`nmtoolchain.mapping.limits`), slices
every neuron layer so that each slice fits one core (ranges of neurons for
dense layers, channel x row x column tiles for convolutions; see
:mod:`nmtoolchain.mapping.layers` for what a slice needs), numbers the cores
in layer order, writes ``annotations['placement']`` on each neuron node, and
returns a :class:`MappingReport` (``as_dict()`` for mapping.json, ``lines()``
for report.txt). A layer that cannot fit one neuron on a core raises
:class:`~nmtoolchain.errors.DoesNotFitError` naming the layer, the resource,
the need and the limit.

The memory model in one paragraph: a dense synapse costs its weight bits (netx's
``num_weight_bits`` of the integer weights, or the profile's ``weight_bits``
for float weights) plus the profile's per-synapse overhead; dense layers store
non-zero weights, or all weights when the profile says dense storage; a
convolution with weight sharing stores the kernel rows of its output channels
once per core. Where the numbers come from is in each limit's record, and
the report says which are published, assumed, or fitted to a measured mapping.

This package imports numpy and the profile loader only: no torch, no vendor
library; it never runs a network.
"""
from nmtoolchain.mapping.limits import (RESOURCES, CoreLimits, Limit, core_limits,
                                        netx_weight_bits)
from nmtoolchain.mapping.mapper import STRATEGIES, map_onto_cores
from nmtoolchain.mapping.report import CoreUse, LayerMapping, MappingReport

__all__ = ["map_onto_cores", "MappingReport", "LayerMapping", "CoreUse", "CoreLimits", "Limit",
           "core_limits", "netx_weight_bits", "RESOURCES", "STRATEGIES"]
