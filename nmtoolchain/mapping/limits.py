"""Per-core limits read from a hardware profile, and the weight widths a layer
needs in synaptic memory.

A limit keeps the profile key it came from, its source, confidence and
whether it was fitted, so a report can say which limits are published, which
are assumed and which were fitted to a measured mapping. This module reads
profiles and numpy arrays only: no torch, no vendor library.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Tuple

import numpy as np

from hardware_profiles import Profile, Quantity
from nmtoolchain.errors import BadInputError

__all__ = ["RESOURCES", "RESOURCE_UNITS", "Limit", "CoreLimits", "core_limits",
           "netx_weight_bits", "is_loihi_integer"]

#: The per-core resources every slice is checked against, in report order.
RESOURCES: Tuple[str, ...] = ("neurons", "synaptic_memory", "input_axons", "output_axons")
RESOURCE_UNITS = {"neurons": "neurons", "synaptic_memory": "bits", "input_axons": "axons",
                  "output_axons": "axons"}
#: Integer weights netx accepts without clipping (8-bit mantissa + sign, shifted).
LOIHI_WEIGHT_RANGE = (-256, 255)


@dataclass(frozen=True)
class Limit:
    """One number the mapping uses, with where it came from."""

    name: str               # e.g. "neurons", "synapse_overhead_bits"
    value: float            # canonical units (bits, counts) or bool
    unit: str
    key: str                # profile key, "derived" or "override"
    source: str
    confidence: str
    fitted: bool = False
    note: str = ""

    @property
    def kind(self) -> str:
        """'fitted', 'assumed', 'override', 'derived' or 'published'."""
        if self.key == "override":
            return "override"
        if self.fitted:
            return "fitted"
        if self.confidence == "assumed":
            return "assumed"
        if self.key.startswith("derived"):
            return "derived"
        return "published"

    def as_dict(self) -> Dict[str, object]:
        return {"name": self.name, "value": _plain(self.value), "unit": self.unit,
                "profile_key": self.key, "kind": self.kind, "confidence": self.confidence,
                "fitted": self.fitted, "source": self.source, "note": self.note}


@dataclass
class CoreLimits:
    """What one core holds, and how synapses are stored (from one profile)."""

    profile_id: str
    chip_name: str
    neurons: int
    synaptic_memory: int          # bits
    input_axons: int
    output_axons: int
    synapse_overhead_bits: int    # per stored synapse, besides its weight bits
    dense_storage: bool           # dense layers store zeros too
    weight_sharing: bool          # a conv kernel is stored once per core
    conv_shared_axons: bool       # a conv slice receives its input on one axon per connection
    default_weight_bits: int      # assumed for float (unquantized) weights
    cores_per_chip: Optional[int]
    records: Dict[str, Limit] = field(default_factory=dict)

    def capacity(self, resource: str) -> int:
        return int(getattr(self, resource))

    def record(self, resource: str) -> Limit:
        return self.records[resource]

    def limit_list(self) -> List[Limit]:
        order = list(RESOURCES) + ["synapse_overhead_bits", "dense_storage", "weight_sharing",
                                   "conv_shared_axons", "default_weight_bits",
                                   "cores_per_chip"]
        return [self.records[k] for k in order if k in self.records]


def _plain(v):
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)) or (isinstance(v, float) and float(v).is_integer()):
        return int(v)
    return float(v)


def _from_quantity(name: str, key: str, q: Quantity, unit: str) -> Limit:
    return Limit(name, q.canonical, unit, key, q.source, q.confidence, q.fitted, q.note)


def core_limits(profile: Profile, overrides: Optional[Mapping[str, float]] = None) -> CoreLimits:
    """Per-core limits of ``profile`` (canonical units), with ``overrides``
    (resource name -> value) replacing profile values for what-if runs.

    Neurons per core: ``packing_neurons_per_core`` when the profile has it (the
    packing a compiler achieved for CUBA neurons), else ``neurons_per_core``.
    Per-synapse overhead: ``synapse_overhead_bits`` when present, else
    ``synapse_bits - weight_bits`` (a stored synapse at full weight width).
    Dense storage: ``dense_synapse_storage`` (default false: only non-zero
    weights are stored). Convolution axons: ``conv_shared_axons`` (default
    false: one input axon per pre-synaptic neuron in a slice's receptive
    field; true: a shared-weight convolution slice receives all its spikes on
    one input axon per incoming connection, the spike carrying its source
    position, as Loihi 2's convolutional connectivity does).
    """
    fname = profile.path.name
    if profile.kind != "chip" or profile.mapping != "split":
        raise BadInputError(f"{fname}: profile '{profile.id}' is not a chip whose layers split "
                            f"over cores (kind={profile.kind}, mapping={profile.mapping}); "
                            f"map_onto_cores needs a Loihi-style profile such as loihi2")
    rec: Dict[str, Limit] = {}

    def need(key: str) -> Quantity:
        if not profile.has("resources", key):
            raise BadInputError(f"{fname}: no [resources] {key} in profile '{profile.id}'; "
                                f"the mapping needs it")
        return profile.quantity("resources", key)

    if profile.has("resources", "packing_neurons_per_core"):
        rec["neurons"] = _from_quantity("neurons", "packing_neurons_per_core",
                                        need("packing_neurons_per_core"), "neurons")
    else:
        rec["neurons"] = _from_quantity("neurons", "neurons_per_core",
                                        need("neurons_per_core"), "neurons")
    rec["synaptic_memory"] = _from_quantity("synaptic_memory", "synaptic_memory_per_core",
                                            need("synaptic_memory_per_core"), "bits")
    rec["input_axons"] = _from_quantity("input_axons", "max_fan_in_per_core",
                                        need("max_fan_in_per_core"), "axons")
    rec["output_axons"] = _from_quantity("output_axons", "max_fan_out_per_core",
                                         need("max_fan_out_per_core"), "axons")
    wb = need("weight_bits")
    rec["default_weight_bits"] = _from_quantity("default_weight_bits", "weight_bits", wb, "bits")
    if profile.has("resources", "synapse_overhead_bits"):
        rec["synapse_overhead_bits"] = _from_quantity(
            "synapse_overhead_bits", "synapse_overhead_bits",
            need("synapse_overhead_bits"), "bits")
    else:
        sb = need("synapse_bits")
        rec["synapse_overhead_bits"] = Limit(
            "synapse_overhead_bits", max(0.0, sb.canonical - wb.canonical), "bits",
            "derived: synapse_bits - weight_bits",
            f"derived: synapse_bits {sb.canonical:g} ({sb.source}) minus weight_bits "
            f"{wb.canonical:g}", sb.confidence, sb.fitted,
            "a stored synapse at full weight width costs synapse_bits")
    if profile.has("resources", "dense_synapse_storage"):
        rec["dense_storage"] = _from_quantity("dense_storage", "dense_synapse_storage",
                                              need("dense_synapse_storage"), "bool")
    else:
        rec["dense_storage"] = Limit("dense_storage", False, "bool", "default",
                                     "nmtc default: only non-zero weights are stored",
                                     "assumed")
    if profile.has("resources", "weight_sharing"):
        rec["weight_sharing"] = _from_quantity("weight_sharing", "weight_sharing",
                                               need("weight_sharing"), "bool")
    else:
        rec["weight_sharing"] = Limit("weight_sharing", False, "bool", "default",
                                      "nmtc default: every conv synapse stored", "assumed")
    if profile.has("resources", "conv_shared_axons"):
        rec["conv_shared_axons"] = _from_quantity("conv_shared_axons", "conv_shared_axons",
                                                  need("conv_shared_axons"), "bool")
    else:
        rec["conv_shared_axons"] = Limit("conv_shared_axons", False, "bool", "default",
                                         "nmtc default: one input axon per pre-synaptic neuron "
                                         "of a convolution", "assumed")
    if profile.has("resources", "cores"):
        rec["cores_per_chip"] = _from_quantity("cores_per_chip", "cores", need("cores"), "cores")

    for name, value in dict(overrides or {}).items():
        if name not in rec:
            raise BadInputError(f"limits: unknown limit '{name}'; known: {', '.join(rec)}")
        old = rec[name]
        if old.unit == "bool":
            if not isinstance(value, (bool, np.bool_)):
                raise BadInputError(f"limits: '{name}' must be true or false, got {value!r}")
        elif isinstance(value, bool) or not isinstance(value, (int, float, np.integer)) \
                or not math.isfinite(value) or value < 0:
            raise BadInputError(f"limits: '{name}' must be a non-negative number, got {value!r}")
        rec[name] = Limit(name, value, old.unit, "override", "given by the caller (what-if)",
                          "definition", False, f"profile value was {_plain(old.value)}")
    for name in RESOURCES:
        if rec[name].value < 1:
            raise BadInputError(f"{fname}: per-core limit '{name}' is {rec[name].value!r}; "
                                f"it must be at least 1")
    chip = rec.get("cores_per_chip")
    return CoreLimits(
        profile_id=profile.id, chip_name=profile.name,
        neurons=int(rec["neurons"].value), synaptic_memory=int(rec["synaptic_memory"].value),
        input_axons=int(rec["input_axons"].value), output_axons=int(rec["output_axons"].value),
        synapse_overhead_bits=int(round(rec["synapse_overhead_bits"].value)),
        dense_storage=bool(rec["dense_storage"].value),
        weight_sharing=bool(rec["weight_sharing"].value),
        conv_shared_axons=bool(rec["conv_shared_axons"].value),
        default_weight_bits=int(round(rec["default_weight_bits"].value)),
        cores_per_chip=int(chip.value) if chip is not None else None, records=rec)


# ------------------------------------------------------------- weight widths
def is_loihi_integer(weight: np.ndarray) -> bool:
    """Whether ``weight`` holds integers netx stores as they are (no clipping)."""
    w = np.asarray(weight)
    if w.size == 0 or not np.all(np.isfinite(w)):
        return False
    lo, hi = LOIHI_WEIGHT_RANGE
    return bool(np.all(w == np.round(w)) and w.min() >= lo and w.max() <= hi)


def netx_weight_bits(weight: np.ndarray) -> Tuple[int, str]:
    """``num_weight_bits`` as lava-dl netx computes it for a dense layer
    (``lava.lib.dl.netx.utils.optimize_weight_bits``), and its sign mode.

    netx scales the integers so the largest magnitude fills 8 bits (a mixed-
    sign matrix: 7 bits plus sign), then drops the trailing zero bits all
    weights share: ``num_weight_bits = 8 - scale_bits - n`` where
    ``scale_bits = floor(log2(scale)) + signed`` and ``n`` is the number of
    shared trailing zero bits (minus one when signed). The result counts the
    sign bit of a mixed-sign matrix. Reproduced here, not imported, so the
    core does not need lava; the tests compare it with netx's own function.
    A matrix whose largest value is exactly 0 with some negative weights
    gets netx's 9 (the netx bug noted in reference/loihi_lava.md 1.4); an
    all-zero matrix (netx fails on it) is given 1 bit.
    """
    w = np.asarray(weight, dtype=np.float64)
    mx, mn = float(w.max()), float(w.min())
    if mx == 0 and mn == 0:
        return 1, "zero"
    if mx > 254 and mn < 0:
        w = np.clip(w, -256, 254)
        mx = float(w.max())
    if mn < -256 and mx > 0:
        w = np.clip(w, -256, 254)
        mn = float(w.min())
    if mx < 0:
        mode, signed, scale = "inhibitory", 0, -256.0 / mn
    elif mn >= 0:
        mode, signed, scale = "excitatory", 0, 255.0 / mx
    else:
        mode, signed = "mixed", 1
        pos = 127.0 / mx if mx > 0 else math.inf
        scale = min(pos, -128.0 / mn)
    scale_bits = math.floor(math.log2(scale)) + signed
    n = 8
    while n > 0 and np.any(np.round(w / 2 ** n) * 2 ** n != w):
        n -= 1
    n -= signed
    return int(8 - scale_bits - n), mode
