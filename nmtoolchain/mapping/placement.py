"""A placement: which cores each layer of a graph occupies, and which mapper said so.

The result type of :func:`nmtoolchain.mapping.place`; the energy and latency
estimates read it (:mod:`nmtoolchain.energy`), the export writes the Loihi
mapper's detail (``Placement.mapping``) or the Speck mapper's
(``Placement.speck``) as mapping.json.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from hardware_profiles import Profile, load_profile
from nmtoolchain.errors import BadInputError
from nmtoolchain.ir import Graph
from nmtoolchain.mapping.report import MappingReport

__all__ = ["PlacedLayer", "Placement", "chip_size"]

ProfileLike = Union[str, Profile]


@dataclass(frozen=True)
class PlacedLayer:
    """One layer's cores: the nodes whose work runs there, and the core ids."""

    name: str                 # the layer's neuron node, else its only node
    nodes: Tuple[str, ...]    # nodes computed on these cores (synapses, then the neuron)
    cores: Tuple[int, ...]    # core ids; layers naming the same id share that core

    def __post_init__(self) -> None:
        if not self.nodes:
            raise BadInputError(f"placement: layer '{self.name}' names no node")
        if not self.cores or any(isinstance(c, bool) or not isinstance(c, (int, np.integer))
                                 or c < 0 for c in self.cores):
            raise BadInputError(f"placement: layer '{self.name}' needs a non-empty list of "
                                f"core ids >= 0, got {list(self.cores)!r}")
        if len(set(self.cores)) != len(self.cores):
            raise BadInputError(f"placement: layer '{self.name}' names a core twice: "
                                f"{list(self.cores)}")


@dataclass(frozen=True)
class Placement:
    """Which cores each layer of a graph occupies on one profile's chip, and
    which mapper decided it."""

    profile_id: str
    mapper: str                           # "loihi", "speck", "per_layer", "none" or "given"
    layers: Tuple[PlacedLayer, ...]
    cores_per_chip: Optional[int] = None  # None: one chip whatever the count
    notes: Tuple[str, ...] = ()
    declared_mapper: str = ""             # the profile's [chip] mapper
    fallback_reason: str = ""             # why the declared mapper did not place it
    #: the Loihi mapper's full report (mapping.json); None for the other mappers
    mapping: Optional[MappingReport] = field(default=None, compare=False, repr=False)
    #: the Speck mapper's memory per layer and core assignment
    #: (:class:`nmtoolchain.mapping.speck.SpeckMapping`); None for the other mappers
    speck: Optional[Any] = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        seen: Dict[str, str] = {}
        for layer in self.layers:
            for n in layer.nodes:
                if n in seen:
                    raise BadInputError(f"placement: node '{n}' is in layers '{seen[n]}' and "
                                        f"'{layer.name}'")
                seen[n] = layer.name

    # ------------------------------------------------------------- queries
    @property
    def n_cores(self) -> int:
        """Distinct cores used."""
        return len({c for L in self.layers for c in L.cores})

    @property
    def chips(self) -> int:
        """Chips the cores need (1 when the chip size is not a limit)."""
        if not self.cores_per_chip:
            return 1
        return max(1, math.ceil(self.n_cores / self.cores_per_chip))

    def layer_of(self, node: str) -> Optional[PlacedLayer]:
        """The layer whose cores compute ``node``, or None."""
        for layer in self.layers:
            if node in layer.nodes:
                return layer
        return None

    def cores_per_layer(self) -> Dict[str, int]:
        """layer name -> number of cores."""
        return {L.name: len(L.cores) for L in self.layers}

    def describe(self) -> str:
        """One line: which mapper placed the graph, on how many cores."""
        if self.mapper == "none":
            return f"profile '{self.profile_id}' has no cores: nothing placed"
        what = {"loihi": "the Loihi mapper (per-core limits)",
                "speck": "the Speck mapper (sinabs's memory formulas, bipartite core "
                         "assignment)",
                "per_layer": "the per-layer estimate (each layer's cores from the profile)",
                "given": "the caller"}.get(self.mapper, self.mapper)
        line = f"placed by {what}: {self.n_cores} core(s) on profile '{self.profile_id}'"
        if self.fallback_reason:
            line += (f"; the declared '{self.declared_mapper}' mapper could not place this "
                     f"graph: {self.fallback_reason}")
        return line

    def annotated(self, graph: Graph) -> Graph:
        """A copy of ``graph`` carrying the Loihi mapper's placement annotations;
        BadInputError for a placement of another mapper."""
        if self.mapping is None:
            raise BadInputError(f"placement by '{self.mapper}' has no per-core annotations "
                                "(only the Loihi mapper writes them)")
        return self.mapping.annotated(graph)

    def as_dict(self) -> Dict[str, object]:
        out: Dict[str, object] = {
            "mapper": self.mapper, "declared_mapper": self.declared_mapper,
            "fallback_reason": self.fallback_reason or None,
            "layers": {L.name: {"nodes": list(L.nodes), "cores": len(L.cores)}
                       for L in self.layers},
            "cores_used": self.n_cores, "chips": self.chips,
            "description": self.describe(), "notes": list(self.notes)}
        if self.speck is not None:  # which core each layer has (one per layer)
            for L in self.layers:
                out["layers"][L.name]["core_ids"] = list(L.cores)  # type: ignore[index]
            out["speck_mapping"] = self.speck.as_dict()
        return out

    # --------------------------------------------------------- construction
    @classmethod
    def given(cls, profile: ProfileLike,
              layers: Mapping[str, Tuple[Sequence[str], Union[int, Sequence[int]]]]
              ) -> "Placement":
        """A placement stated by the caller: layer -> (its nodes, a core count
        or core ids). Counts get fresh ids after the highest id named."""
        prof = load_profile(profile)
        named = [c for _, spec in layers.values() if not isinstance(spec, int) for c in spec]
        next_id = max(named) + 1 if named else 0
        out = []
        for name, (nodes, spec) in layers.items():
            if isinstance(spec, int) and not isinstance(spec, bool):
                if spec < 1:
                    raise BadInputError(f"placement: layer '{name}' needs a core count >= 1, "
                                        f"got {spec}")
                ids: Tuple[int, ...] = tuple(range(next_id, next_id + spec))
                next_id += spec
            else:
                ids = tuple(int(c) for c in spec)
            out.append(PlacedLayer(name, tuple(nodes), ids))
        return cls(prof.id, "given", tuple(out), chip_size(prof),
                   declared_mapper=prof.mapper)


def chip_size(prof: Profile) -> Optional[int]:
    """Cores of one chip, when more cores mean more chips (a split chip)."""
    total = prof.get("resources", "cores")
    if not total or prof.mapping == "one-layer-per-core":
        return None
    return int(total)
