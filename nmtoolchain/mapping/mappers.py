"""The mappers, and :func:`place`: one placement of a graph onto a target's cores.

:func:`place` is the one entry point: the Loihi export (through
:func:`map_onto_cores`) and the energy and latency reports
(:mod:`nmtoolchain.energy`, ``nmtc simulate``/``report``) both call it, so
they see the same cores per layer. The profile's ``[chip] mapper`` names the
mapper:

``loihi``
    :func:`nmtoolchain.mapping.loihi_mapper.map_loihi`: slices each neuron
    layer over cores within the per-core limits (a split chip: loihi1,
    loihi2). It reads shapes and weights only, so float graphs (what
    ``simulate`` runs) map too; float weights are counted at the profile's
    ``weight_bits`` (the report says so).
``speck``
    :func:`nmtoolchain.mapping.speck.place_speck`: the graph lowered and
    quantized as the Speck export does, each DYNAP-CNN layer on one of the 9
    cores by sinabs's memory formulas and bipartite matching (speck). The
    export's mapping pass calls ``place(..., mapper="speck", strict=True)``.
``per_layer``
    :func:`nmtoolchain.mapping.per_layer.place_per_layer`: an estimate from
    the profile, each layer on cores of its own (user chips with no
    dedicated mapper).
``none``
    No cores (the analytic cmos45nm model): an empty placement.

When the Loihi mapper cannot place a graph (a node it does not place, such as
pooling or MatMul; a loop other than netx's dense_rec; a layer that does not
fit one core), or the Speck mapper cannot (a node with no DYNAP-CNN layer, such as a ReLU or a
MatMul; a layer beyond a chip limit; more layers than cores), a report asks
``place(..., strict=False)`` and gets the per-layer estimate with the reason
recorded in ``fallback_reason``; the export asks ``strict=True`` and gets the
error.
"""
from __future__ import annotations

from typing import Mapping, Optional, Union

import numpy as np

from hardware_profiles import MAPPERS, Profile, load_profile
from nmtoolchain.errors import (BadInputError, DoesNotFitError, IRValidationError,
                                NotExpressibleError, UnsupportedOpError)
from nmtoolchain.ir import Graph
from nmtoolchain.mapping.loihi_mapper import map_loihi
from nmtoolchain.mapping.per_layer import place_per_layer
from nmtoolchain.mapping.placement import PlacedLayer, Placement, chip_size
from nmtoolchain.mapping.report import MappingReport
from nmtoolchain.mapping.speck import place_speck

__all__ = ["place", "map_onto_cores"]

ProfileLike = Union[str, Profile]


def _from_mapping(report: MappingReport, prof: Profile) -> Placement:
    layers = tuple(PlacedLayer(L.neuron, L.nodes, tuple(L.cores)) for L in report.layers)
    return Placement(prof.id, "loihi", layers, chip_size(prof), tuple(report.notes),
                     declared_mapper=prof.mapper, mapping=report)


def place(graph: Graph, profile: ProfileLike, *, mapper: Optional[str] = None,
          strict: bool = False, strategy: str = "pack", counts=None,
          spikes: Optional[Mapping[str, np.ndarray]] = None,
          limits: Optional[Mapping[str, float]] = None,
          what_if: Optional[bool] = False, dvs_input: bool = False) -> Placement:
    """Place ``graph`` on ``profile``'s cores with the profile's declared mapper
    (``mapper`` overrides it). ``graph`` is not modified.

    ``strict``: a mapper that cannot place the graph raises (the export);
    otherwise the Loihi mapper falls back to the per-layer estimate and the
    placement says why (the reports). ``strategy``, ``counts``, ``spikes``,
    ``limits`` and ``what_if`` are the Loihi mapper's options (see
    :func:`map_onto_cores`); the other mappers refuse ``limits``.
    ``dvs_input``: the Speck mapper's option (the first layer reads the DVS, at
    most 2 channels).
    """
    prof = load_profile(profile)
    name = mapper or prof.mapper
    if name not in MAPPERS:
        raise BadInputError(f"unknown mapper {name!r}; known: {', '.join(MAPPERS)}")
    if name != "loihi" and limits:
        raise BadInputError(f"limits: only the 'loihi' mapper takes per-core limit overrides, "
                            f"not '{name}'")
    if name == "none":
        return Placement(prof.id, "none", (), None, declared_mapper=prof.mapper)
    if name == "per_layer":
        return place_per_layer(graph, prof, chip_size(prof))
    try:
        if name == "speck":
            return place_speck(graph, prof, dvs_input=dvs_input)
        report = map_loihi(graph, prof, strategy=strategy, counts=counts, spikes=spikes,
                           limits=limits, what_if=what_if)
    except (UnsupportedOpError, DoesNotFitError, NotExpressibleError, IRValidationError) as e:
        if strict or (name == "loihi" and isinstance(e, (NotExpressibleError,
                                                         IRValidationError))):
            raise
        est = place_per_layer(graph, prof, chip_size(prof))
        return Placement(est.profile_id, est.mapper, est.layers, est.cores_per_chip, est.notes,
                         declared_mapper=prof.mapper, fallback_reason=str(e))
    return _from_mapping(report, prof)


def map_onto_cores(graph: Graph, profile: ProfileLike = "loihi2", *,
                   strategy: str = "pack", counts=None,
                   spikes: Optional[Mapping[str, np.ndarray]] = None,
                   limits: Optional[Mapping[str, float]] = None,
                   what_if: Optional[bool] = None) -> MappingReport:
    """The Loihi mapper's full report for ``graph`` on ``profile`` (the export's
    mapping.json): ``place(graph, profile, mapper="loihi", strict=True).mapping``.

    ``counts``: a :class:`simulators.cycle.counts.RunCounts` of a run of this
    graph, for spike messages per step (layer spike totals, spread evenly over
    a layer's neurons). ``spikes``: neuron node -> recorded outputs, shape
    (T, *shape) or (B, T, *shape), for exact messages per step. ``limits``:
    per-core limits replacing the profile's (``neurons``, ``synaptic_memory``,
    ``input_axons``, ``output_axons``, ``synapse_overhead_bits``,
    ``dense_storage``, ``weight_sharing``, ``default_weight_bits``), for what-if
    runs. ``what_if``: also map again with each assumed or fitted limit
    relaxed and report the core counts (default: only for a network whose real
    mapping is published, e.g. PilotNet-LIF on Loihi 2).

    The graph is not modified: ``report.annotated(graph)`` returns a copy with
    ``annotations['placement']`` on every placed node.

    Raises DoesNotFitError when one neuron of a layer exceeds a core,
    UnsupportedOpError for a node the mapping cannot place, BadInputError for
    a profile that is not a split-mapping chip.
    """
    placement = place(graph, profile, mapper="loihi", strict=True, strategy=strategy,
                      counts=counts, spikes=spikes, limits=limits, what_if=what_if)
    if placement.mapping is None:  # the Loihi mapper always reports; never reached
        raise AssertionError("the loihi mapper returned no report")
    return placement.mapping
