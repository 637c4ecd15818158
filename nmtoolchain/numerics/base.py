"""Base of the typed target-numerics records a node may carry (``Node.numerics``).

An IR op says what a node computes in real numbers; a target's numerics
record says how one target computes it exactly (Loihi's integer decays,
threshold and bias mantissas, ...). Each record is a frozen dataclass with
typed fields, validated when it is made, so a node that carries one carries a
valid one. Records are registered by their ``kind`` string, which is how
``.nmir`` files name them.

This module must not import the IR, torch or a vendor library: the IR imports
it.
"""
from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Dict, Tuple, Type

import numpy as np

from nmtoolchain.errors import IRValidationError

#: Every registered record class, by its ``kind``.
NUMERICS_REGISTRY: Dict[str, Type["TargetNumerics"]] = {}


def _plain(value: Any) -> Any:
    """A field value as JSON data: arrays become ints or nested lists, records dicts."""
    if isinstance(value, np.ndarray):
        return value.item() if value.ndim == 0 else value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if dataclasses.is_dataclass(value):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    return value


@dataclasses.dataclass(frozen=True, eq=False)
class TargetNumerics:
    """How one target computes a node exactly; subclasses set ``kind`` and ``applies_to``.

    Equality compares the kind and every field value (arrays element-wise).
    """

    #: registry key and the name written in ``.nmir`` files, e.g. ``'loihi.cuba'``
    kind: ClassVar[str] = ""
    #: the target this record belongs to, e.g. ``'loihi2'``
    target: ClassVar[str] = ""
    #: op names a node carrying this record may have
    applies_to: ClassVar[Tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("kind"):
            NUMERICS_REGISTRY[cls.kind] = cls

    # ------------------------------------------------------------- checks
    def check_op(self, op_name: str) -> None:
        """Raise IRValidationError if this record cannot describe an ``op_name`` node."""
        if self.applies_to and op_name not in self.applies_to:
            raise IRValidationError(
                f"{self.kind} numerics apply to {'/'.join(self.applies_to)} nodes, not {op_name}")

    def check_shape(self, shape: Tuple[int, ...]) -> None:
        """Raise IRValidationError if a per-neuron field does not fit the node shape."""

    # ------------------------------------------------------ serialization
    def to_dict(self) -> Dict[str, Any]:
        """``{'kind': ..., field: value, ...}`` as plain JSON data."""
        out: Dict[str, Any] = {"kind": self.kind}
        for f in dataclasses.fields(self):
            out[f.name] = _plain(getattr(self, f.name))
        return out

    def describe(self) -> str:
        """One short line for tables (arrays as their range)."""
        parts = [self.kind]
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, np.ndarray) and v.size > 1:
                parts.append(f"{f.name}[{int(v.min())}..{int(v.max())}]")
            elif v is not None and v is not False:
                parts.append(f"{f.name}={_plain(v)}")
        return " ".join(parts)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TargetNumerics):
            return NotImplemented
        return type(self) is type(other) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(repr(self.to_dict()))


def numerics_from_dict(data: Dict[str, Any]) -> TargetNumerics:
    """Rebuild a record from :meth:`TargetNumerics.to_dict`; IRValidationError if unknown."""
    if not isinstance(data, dict) or "kind" not in data:
        raise IRValidationError(f"numerics record without a 'kind': {data!r}")
    cls = NUMERICS_REGISTRY.get(data["kind"])
    if cls is None:
        raise IRValidationError(f"unknown numerics kind {data['kind']!r}; known: "
                                f"{', '.join(sorted(NUMERICS_REGISTRY))}")
    names = {f.name for f in dataclasses.fields(cls)}
    extra = sorted(set(data) - names - {"kind"})
    if extra:
        raise IRValidationError(f"{cls.kind} numerics have no field(s) {extra}")
    return cls(**{k: v for k, v in data.items() if k != "kind"})


__all__ = ["TargetNumerics", "NUMERICS_REGISTRY", "numerics_from_dict"]
