"""Mapping: place a graph's layers onto a chip's cores, and report the resources used.

:func:`place` (:mod:`nmtoolchain.mapping.mappers`) is the one source of
placement: it runs the mapper the profile declares (``[chip] mapper``) and
returns a :class:`Placement` (cores per layer, which nodes share them, which
mapper decided). The Loihi export and the energy/latency reports both call
it. The mappers:

* :mod:`~nmtoolchain.mapping.loihi_mapper` (``mapper = "loihi"``) reads
  per-core limits from a split chip's profile (see
  :mod:`nmtoolchain.mapping.limits`), slices every neuron layer so that each
  slice fits one core (ranges of neurons for dense layers, channel x row x
  column tiles for convolutions; see :mod:`nmtoolchain.mapping.layers` for
  what a slice needs), numbers the cores in layer order and returns a
  :class:`MappingReport` (``as_dict()`` for mapping.json, ``lines()`` for
  report.txt, ``annotated(graph)`` for a copy of the graph carrying
  ``annotations['placement']``). :func:`map_onto_cores` returns that report.
  A layer that cannot fit one neuron on a core raises
  :class:`~nmtoolchain.errors.DoesNotFitError` naming the layer, the
  resource, the need and the limit.
* :mod:`~nmtoolchain.mapping.speck` (``mapper = "speck"``) lowers and
  quantizes the graph as the Speck export does and gives each DYNAP-CNN layer
  one of the 9 cores by sinabs's memory formulas and bipartite matching
  (``Placement.speck`` holds the memory per layer and the assignment).
* :mod:`~nmtoolchain.mapping.per_layer` (``mapper = "per_layer"``) estimates
  each layer's cores from the profile: chips without a dedicated mapper, and
  the reports' fallback where the Loihi or Speck mapper cannot place a graph.

The memory model in one paragraph: a dense synapse costs its weight bits (netx's
``num_weight_bits`` of the integer weights, or the profile's ``weight_bits``
for float weights) plus the profile's per-synapse overhead; dense layers store
non-zero weights, or all weights when the profile says dense storage; a
convolution with weight sharing stores the kernel rows of its output channels
once per core. Where the numbers come from is in each limit's record, and
the report says which are published, assumed, or fitted to a measured mapping.

This package imports numpy and the profile loader (the Speck mapper also the
Speck lowering and quantization, which use torch for sinabs's rounding); no
vendor library; it never runs a network, and never modifies the graph it is
given.
"""
from nmtoolchain.mapping.limits import (RESOURCES, CoreLimits, Limit, core_limits,
                                        netx_weight_bits)
from nmtoolchain.mapping.loihi_mapper import STRATEGIES
from nmtoolchain.mapping.mappers import map_onto_cores, place
from nmtoolchain.mapping.placement import PlacedLayer, Placement
from nmtoolchain.mapping.report import CoreUse, LayerMapping, MappingReport

__all__ = ["place", "Placement", "PlacedLayer", "map_onto_cores", "MappingReport",
           "LayerMapping", "CoreUse", "CoreLimits", "Limit", "core_limits", "netx_weight_bits",
           "RESOURCES", "STRATEGIES"]
