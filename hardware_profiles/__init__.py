"""Hardware profiles (TOML) and their loader.

A profile is data about one target: its resources (cores, neurons and
synaptic memory per core, bit widths), its energy and time per operation and
its static power. Every number is a small table carrying its own provenance::

    synop = { value = 23.6, unit = "pJ", source = "Davies et al. 2018, Table 2", confidence = "medium" }

with optional ``note`` (a string) and ``fitted`` (true when the number was
chosen to match a measurement, which that measurement then cannot validate).
``confidence`` is one of :data:`CONFIDENCE_LEVELS`.

The loader validates a file completely before anything uses it, and every
problem is a one-line :class:`~nmtoolchain.errors.BadInputError` naming the
file and the key. Values are converted to canonical units on load: energy in
pJ, time in ns, power in mW (so mW x ns = pJ), memory in bits; the unit as
written is kept for display. This module must not import torch or a vendor
library: it is read by the mapping, quantization and energy code alike.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple, Union

from nmtoolchain.errors import BadInputError

try:  # Python >= 3.11
    import tomllib as _toml
except ModuleNotFoundError:  # Python 3.10: the pinned backport
    import tomli as _toml

__all__ = ["Profile", "Quantity", "load_profile", "list_profiles", "profile_path",
           "CONFIDENCE_LEVELS", "UNITS", "KNOWN_RULES", "MAPPERS", "COST_MODELS"]

#: Where the bundled profiles live (package data).
PROFILE_DIR = Path(__file__).resolve().parent

#: How sure we are of a number: published measurement or spec ("high"),
#: published but pre-silicon / secondary / one board ("medium"), recalled,
#: derived with strong assumptions or unverified ("low"), no published number
#: and a prior used instead ("assumed"), or true by the model's definition.
CONFIDENCE_LEVELS = ("high", "medium", "low", "assumed", "definition")

#: Counting rules a profile may name as its default (see nmtoolchain.energy.rules).
KNOWN_RULES = ("fanout", "neurobench", "neurobench-sample", "syops", "spikformer")
KINDS = ("chip", "analytic")
MAPPINGS = ("split", "one-layer-per-core", "none")
#: Core placers a profile may declare as ``[chip] mapper`` (see
#: :func:`nmtoolchain.mapping.place`): ``loihi`` slices layers over cores
#: within per-core limits (a split chip with the limits it reads); ``speck``
#: lowers the graph to DYNAP-CNN layers and assigns one core per layer by
#: sinabs's memory formulas and bipartite matching (a one-layer-per-core chip
#: with per-core kernel/neuron/bias memories); ``per_layer`` estimates each
#: layer's cores from the profile (the chips without a dedicated mapper);
#: ``none``: a model without cores (analytic profiles). Absent, it is ``loihi``
#: for a split chip, ``per_layer`` for another chip, ``none`` for an analytic
#: profile.
MAPPERS = ("loihi", "speck", "per_layer", "none")
#: How energy and time are priced (``[chip] cost_model``): ``per_op`` (default)
#: books counted operations at the [energy]/[time] per-op costs
#: (nmtoolchain.energy.model); ``sanafe`` prices SANA-FE's events (neuron
#: accesses, messages per destination core, per-kind synapses, the pipeline
#: drain; nmtoolchain.energy.sanafe_model).
COST_MODELS = ("per_op", "sanafe")

#: unit -> (dimension, factor to the canonical unit of that dimension)
UNITS: Dict[str, Tuple[str, float]] = {
    "fJ": ("energy", 1e-3), "pJ": ("energy", 1.0), "nJ": ("energy", 1e3),
    "uJ": ("energy", 1e6), "µJ": ("energy", 1e6), "mJ": ("energy", 1e9), "J": ("energy", 1e12),
    "ps": ("time", 1e-3), "ns": ("time", 1.0), "us": ("time", 1e3), "µs": ("time", 1e3),
    "ms": ("time", 1e6), "s": ("time", 1e9),
    "nW": ("power", 1e-6), "uW": ("power", 1e-3), "µW": ("power", 1e-3), "mW": ("power", 1.0),
    "W": ("power", 1e3),
    "bits": ("bits", 1.0), "bytes": ("bits", 8.0), "KiB": ("bits", 8192.0),
    "count": ("count", 1.0), "cores": ("count", 1.0), "neurons": ("count", 1.0),
    "axons": ("count", 1.0), "synapses": ("count", 1.0), "entries": ("count", 1.0),
    "steps": ("count", 1.0), "chips": ("count", 1.0), "1": ("count", 1.0),
    "bool": ("bool", 1.0),
}
CANONICAL_UNIT = {"energy": "pJ", "time": "ns", "power": "mW", "bits": "bits",
                  "count": "count", "bool": "bool"}

#: The dimension every value of a section must have (None: any).
_SECTION_DIMENSION = {"resources": None, "energy": "energy", "time": "time", "power": "power",
                      "reference": None}
#: Keys of [resources] with a fixed dimension.
_RESOURCE_DIMENSION = {
    "cores": "count", "neurons_per_core": "count", "packing_neurons_per_core": "count",
    "synaptic_memory_per_core": "bits", "synapse_bits": "bits", "weight_sharing": "bool",
    "max_fan_in_per_core": "count", "max_fan_out_per_core": "count", "weight_bits": "bits",
    "state_bits": "bits", "threshold_bits": "bits", "decay_bits": "bits", "max_delay": "count",
}
#: Required keys per kind of profile, by section.
_REQUIRED = {
    "chip": {
        "resources": ("cores", "neurons_per_core", "synaptic_memory_per_core", "synapse_bits",
                      "max_fan_in_per_core", "max_fan_out_per_core", "weight_bits",
                      "state_bits", "threshold_bits"),
        "energy": ("synop", "mac", "neuron_update_inactive", "neuron_update_active",
                   "spike_out", "hop"),
        "time": ("synop", "neuron_update_inactive", "neuron_update_active", "spike_out",
                 "barrier"),
        "power": ("static",),
    },
    "analytic": {"energy": ("synop", "mac")},
}
_QUANTITY_FIELDS = {"value", "unit", "source", "confidence", "note", "fitted"}


@dataclass(frozen=True)
class Quantity:
    """One number of a profile with its unit and provenance."""

    value: Union[float, int, bool, Tuple[float, ...]]  # as written in the file
    unit: str                                          # as written in the file
    dimension: str                                     # energy, time, power, bits, count, bool
    canonical: Union[float, bool, Tuple[float, ...]]   # value in CANONICAL_UNIT[dimension]
    source: str                                        # where the number comes from
    confidence: str                                    # one of CONFIDENCE_LEVELS
    note: str = ""                                     # caveats, alternatives
    fitted: bool = False                               # chosen to match a measurement


@dataclass
class Profile:
    """A validated hardware profile; numbers are read with :meth:`value`."""

    id: str                 # file stem, e.g. "loihi2"; the key used in comparisons
    name: str               # [chip] name, e.g. "Intel Loihi 2"
    description: str
    kind: str               # "chip" or "analytic"
    mapping: str            # "split", "one-layer-per-core" or "none"
    mapper: str             # core placer: "loihi", "speck", "per_layer" or "none" (MAPPERS)
    default_rule: str       # counting rule the profile's numbers are meant for
    path: Path
    chip: Dict[str, object] = field(default_factory=dict)
    sections: Dict[str, Dict[str, Quantity]] = field(default_factory=dict)

    def has(self, section: str, key: str) -> bool:
        """Whether the profile defines ``[section] key``."""
        return key in self.sections.get(section, {})

    def quantity(self, section: str, key: str) -> Quantity:
        """The full record of ``[section] key``; BadInputError if absent."""
        try:
            return self.sections[section][key]
        except KeyError:
            raise BadInputError(f"{self.path.name}: no [{section}] {key} in profile "
                                f"'{self.id}'") from None

    def value(self, section: str, key: str, unit: Optional[str] = None):
        """``[section] key`` in canonical units (pJ, ns, mW, bits), or in ``unit``."""
        q = self.quantity(section, key)
        if unit is None:
            return q.canonical
        if unit not in UNITS or UNITS[unit][0] != q.dimension:
            raise BadInputError(f"{self.path.name}: [{section}] {key} is a {q.dimension}; "
                                f"cannot express it in '{unit}'")
        factor = UNITS[unit][1]
        if isinstance(q.canonical, tuple):
            return tuple(v / factor for v in q.canonical)
        return q.canonical / factor

    def get(self, section: str, key: str, default=None):
        """Canonical value of ``[section] key``, or ``default`` when absent."""
        return self.value(section, key) if self.has(section, key) else default

    def source(self, section: str, key: str) -> str:
        """Where the number ``[section] key`` comes from."""
        return self.quantity(section, key).source

    def quantities(self) -> Iterator[Tuple[str, str, Quantity]]:
        """Every number of the profile as (section, key, quantity)."""
        for sec, d in self.sections.items():
            for key, q in d.items():
                yield sec, key, q

    def __repr__(self) -> str:
        return f"Profile({self.id!r}, {self.name!r}, kind={self.kind!r})"


def list_profiles() -> List[str]:
    """Names of the bundled profiles (usable with :func:`load_profile`)."""
    return sorted(p.stem for p in PROFILE_DIR.glob("*.toml"))


def profile_path(name_or_path: Union[str, Path]) -> Path:
    """The file a profile name or path refers to; BadInputError if there is none."""
    text = str(name_or_path)
    bundled = PROFILE_DIR / f"{text}.toml"
    if isinstance(name_or_path, str) and "/" not in text and "\\" not in text \
            and not text.endswith(".toml") and bundled.is_file():
        return bundled
    path = Path(name_or_path)
    if path.is_file():
        return path
    if path.suffix != ".toml" and not path.parent.parts:
        raise BadInputError(f"{text}: no such hardware profile; bundled profiles: "
                            f"{', '.join(list_profiles())} (or give a path to a .toml file)")
    raise BadInputError(f"{text}: profile file not found")


def load_profile(name_or_path: Union[str, Path, Profile]) -> Profile:
    """Load and validate a bundled profile by name (``"loihi2"``) or a user's
    ``.toml`` by path. A :class:`Profile` passed in is returned as is."""
    if isinstance(name_or_path, Profile):
        return name_or_path
    path = profile_path(name_or_path)
    fname = path.name
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise BadInputError(f"{fname}: cannot read profile: {e.strerror or e}") from None
    try:
        data = _toml.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise BadInputError(f"{fname}: not a text file (TOML must be UTF-8)") from None
    except _toml.TOMLDecodeError as e:
        raise BadInputError(f"{fname}: TOML syntax error: {e}") from None
    return _build_profile(data, path)


# ----------------------------------------------------------------- validation
def _build_profile(data: dict, path: Path) -> Profile:
    fname = path.name
    known = {"format_version", "chip", "resources", "energy", "time", "power", "reference"}
    for top in data:
        if top not in known:
            raise BadInputError(f"{fname}: unknown section or key '{top}'; expected "
                                f"{', '.join(sorted(known))}")
    version = data.get("format_version", 1)
    if version != 1:
        raise BadInputError(f"{fname}: format_version {version!r} is not supported (expected 1)")
    chip = data.get("chip")
    if not isinstance(chip, dict):
        raise BadInputError(f"{fname}: missing required section [chip]")
    for key in ("name", "kind"):
        if key not in chip:
            raise BadInputError(f"{fname}: missing required key [chip] {key}")
    for key, v in chip.items():
        if not isinstance(v, str):
            raise BadInputError(f"{fname}: [chip] {key} must be a string, got {v!r}")
    kind = chip["kind"]
    _check_choice(fname, "chip", "kind", kind, KINDS)
    mapping = chip.get("mapping", "split" if kind == "chip" else "none")
    _check_choice(fname, "chip", "mapping", mapping, MAPPINGS)
    mapper = chip.get("mapper", "none" if kind == "analytic" else
                      "loihi" if mapping == "split" else "per_layer")
    _check_choice(fname, "chip", "mapper", mapper, MAPPERS)
    if (kind == "analytic") != (mapper == "none"):
        raise BadInputError(f"{fname}: [chip] mapper = {mapper!r} does not suit a '{kind}' "
                            f"profile (an analytic model has no cores: 'none'; a chip needs "
                            f"'loihi', 'speck' or 'per_layer')")
    if mapper == "loihi" and mapping != "split":
        raise BadInputError(f"{fname}: [chip] mapper = 'loihi' slices layers over cores, but "
                            f"mapping = {mapping!r}; it needs mapping = 'split'")
    if mapper == "speck" and mapping != "one-layer-per-core":
        raise BadInputError(f"{fname}: [chip] mapper = 'speck' puts each layer on one core, but "
                            f"mapping = {mapping!r}; it needs mapping = 'one-layer-per-core'")
    default_rule = chip.get("default_rule", "fanout")
    _check_choice(fname, "chip", "default_rule", default_rule, KNOWN_RULES)
    _check_choice(fname, "chip", "cost_model", chip.get("cost_model", "per_op"), COST_MODELS)

    sections: Dict[str, Dict[str, Quantity]] = {}
    for sec in ("resources", "energy", "time", "power"):
        if sec in data:
            sections[sec] = _parse_section(fname, sec, data[sec], _SECTION_DIMENSION[sec])
    ref = data.get("reference", {})
    if not isinstance(ref, dict):
        raise BadInputError(f"{fname}: [reference] must be a table of tables")
    for sub, table in ref.items():
        sections[f"reference.{sub}"] = _parse_section(fname, f"reference.{sub}", table, None)

    for sec, keys in _REQUIRED[kind].items():
        for key in keys:
            if key not in sections.get(sec, {}):
                raise BadInputError(f"{fname}: missing required key [{sec}] {key} "
                                    f"(a '{kind}' profile needs it)")
    return Profile(id=path.stem, name=chip["name"], description=chip.get("description", ""),
                   kind=kind, mapping=mapping, mapper=mapper, default_rule=default_rule, path=path,
                   chip=dict(chip), sections=sections)


def _check_choice(fname: str, sec: str, key: str, value: str, choices) -> None:
    if value not in choices:
        raise BadInputError(f"{fname}: [{sec}] {key} = {value!r} is not one of "
                            f"{', '.join(choices)}")


def _parse_section(fname: str, sec: str, table, dimension: Optional[str]) -> Dict[str, Quantity]:
    if not isinstance(table, dict):
        raise BadInputError(f"{fname}: [{sec}] must be a table")
    out = {}
    for key, entry in table.items():
        dim = _RESOURCE_DIMENSION.get(key) if sec == "resources" else dimension
        out[key] = _parse_quantity(fname, sec, key, entry, dim)
    return out


def _parse_quantity(fname: str, sec: str, key: str, entry, dimension: Optional[str]) -> Quantity:
    where = f"{fname}: [{sec}] {key}"
    if not isinstance(entry, dict):
        raise BadInputError(f"{where}: must be a table {{ value = ..., unit = ..., source = ..., "
                            f"confidence = ... }}, got {entry!r}")
    extra = set(entry) - _QUANTITY_FIELDS
    if extra:
        raise BadInputError(f"{where}: unknown field(s) {', '.join(sorted(extra))}; allowed: "
                            f"{', '.join(sorted(_QUANTITY_FIELDS))}")
    for f in ("value", "unit", "source", "confidence"):
        if f not in entry:
            raise BadInputError(f"{where}: missing required field '{f}'")
    unit = entry["unit"]
    if not isinstance(unit, str) or unit not in UNITS:
        raise BadInputError(f"{where}: unknown unit {unit!r}; known units: {', '.join(UNITS)}")
    dim, factor = UNITS[unit]
    if dimension is not None and dim != dimension:
        raise BadInputError(f"{where}: unit '{unit}' is a {dim}, but this key needs a "
                            f"{dimension} (e.g. {CANONICAL_UNIT[dimension]})")
    source, conf = entry["source"], entry["confidence"]
    if not isinstance(source, str) or not source.strip():
        raise BadInputError(f"{where}: 'source' must be a non-empty string")
    if conf not in CONFIDENCE_LEVELS:
        raise BadInputError(f"{where}: confidence {conf!r} is not one of "
                            f"{', '.join(CONFIDENCE_LEVELS)}")
    note = entry.get("note", "")
    if not isinstance(note, str):
        raise BadInputError(f"{where}: 'note' must be a string")
    fitted = entry.get("fitted", False)
    if not isinstance(fitted, bool):
        raise BadInputError(f"{where}: 'fitted' must be true or false, got {fitted!r}")

    value = entry["value"]
    if dim == "bool":
        if not isinstance(value, bool):
            raise BadInputError(f"{where}: value must be true or false, got {value!r}")
        canonical = value
    elif isinstance(value, list) and sec == "resources":
        if not value:
            raise BadInputError(f"{where}: value list is empty")
        nums = tuple(_number(where, v, dim) for v in value)
        canonical = tuple(v * factor for v in nums)
        value = nums
    else:
        value = _number(where, value, dim)
        canonical = value * factor
    return Quantity(value=value, unit=unit, dimension=dim, canonical=canonical, source=source,
                    confidence=conf, note=note, fitted=fitted)


def _number(where: str, v, dim: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise BadInputError(f"{where}: value must be a number, got {v!r}")
    if not math.isfinite(v):
        raise BadInputError(f"{where}: value must be finite, got {v!r}")
    if v < 0:
        what = {"energy": "an energy", "time": "a time", "power": "a power"}.get(dim, "a resource")
        raise BadInputError(f"{where}: value {v!r} is negative; {what} cannot be negative")
    return v
