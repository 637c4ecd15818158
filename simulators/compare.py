"""Find where two recordings of the same network first disagree.

A recording is a dict ``{layer name: array (T, *shape)}``: row t is time step
t (0-based row; Lava's step t+1), neurons in C,H,W (or (N,)) order, as
:func:`simulators.lava_runner.run_netx_in_lava` and the cycle simulator (batch
row 0) produce them. :func:`first_divergence` scans steps in order and, within
a step, layers in network order (the reference dict's order unless ``layers``
says otherwise), so the first difference it reports is the earliest one in
time and the most upstream one at that time: usually the cause, not an echo.

Values are compared exactly by default (bit-exact fixed point); ``atol``
allows a tolerance for float recordings. Nothing here imports lava or torch
(a torch tensor is accepted through ``numpy.asarray``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from nmtoolchain.errors import BadInputError

Steps = Union[None, int, slice, range, Sequence[int]]


@dataclass(frozen=True)
class Divergence:
    """The first element where the candidate differs from the reference.

    ``step`` is the 0-based row of the (T, *shape) recordings; ``neuron`` the
    index within the layer in C,H,W (or (N,)) order; ``differ`` how many
    elements of that layer differ at that step, out of ``size``.
    """

    layer: str
    step: int
    neuron: Tuple[int, ...]
    reference: Union[int, float]
    candidate: Union[int, float]
    differ: int
    size: int


@dataclass(frozen=True)
class LayerComparison:
    """One layer over the compared steps: activity on each side and mismatches.

    ``events_*`` counts non-zero elements (spikes, or non-zero graded
    values); ``sum_*`` the sum of the values; ``mismatches`` the differing
    elements; ``first_step`` the first differing row (None when identical).
    """

    layer: str
    shape: Tuple[int, ...]
    steps: int
    events_reference: int
    events_candidate: int
    sum_reference: float
    sum_candidate: float
    mismatches: int
    first_step: Optional[int]

    @property
    def identical(self) -> bool:
        return self.mismatches == 0


def _array(name: str, side: str, value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor, without importing torch
        value = value.detach().cpu().numpy()
    a = np.asarray(value)
    if a.dtype.kind not in "biuf":
        raise BadInputError(f"layer '{name}': {side} recording is not numeric (dtype {a.dtype})")
    if a.ndim < 1:
        raise BadInputError(f"layer '{name}': {side} recording must be (T, *shape), got a scalar")
    return a


def _layer_order(reference: Mapping[str, Any], candidate: Mapping[str, Any],
                 layers: Optional[Sequence[str]]) -> List[str]:
    if layers is None:
        order = [n for n in reference if n in candidate]
        if not order:
            raise BadInputError(
                f"no layer recorded on both sides (reference: {list(reference)}, candidate: "
                f"{list(candidate)})")
        return order
    for n in layers:
        for side, rec in (("reference", reference), ("candidate", candidate)):
            if n not in rec:
                raise BadInputError(f"layer '{n}' is not in the {side} recording "
                                    f"(it has {list(rec)})")
    return list(layers)


def _rows(name: str, t_ref: int, t_cand: int, steps: Steps) -> np.ndarray:
    """The 0-based rows to compare."""
    if steps is None:
        if t_ref != t_cand:
            raise BadInputError(f"layer '{name}': reference has {t_ref} steps but candidate has "
                                f"{t_cand}; pass steps= to compare a common range")
        return np.arange(t_ref)
    t = min(t_ref, t_cand)
    if isinstance(steps, (int, np.integer)) and not isinstance(steps, bool):
        if steps < 0 or steps > t:
            raise BadInputError(f"layer '{name}': steps={steps} but the recordings have "
                                f"{t_ref} (reference) and {t_cand} (candidate) steps")
        return np.arange(int(steps))
    if isinstance(steps, slice):
        return np.arange(t)[steps]
    rows = np.asarray(list(steps), dtype=np.int64)
    if rows.size and (rows.min() < 0 or rows.max() >= t):
        raise BadInputError(f"layer '{name}': step rows {rows.min()}..{rows.max()} are outside "
                            f"the common 0..{t - 1}")
    return rows


def _pair(name: str, reference: Mapping[str, Any], candidate: Mapping[str, Any],
          steps: Steps) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    ref = _array(name, "reference", reference[name])
    cand = _array(name, "candidate", candidate[name])
    if ref.shape[1:] != cand.shape[1:]:
        raise BadInputError(
            f"layer '{name}': shapes differ: reference {list(ref.shape)} vs candidate "
            f"{list(cand.shape)} (expected (T, *shape) on both sides, C,H,W order)")
    rows = _rows(name, ref.shape[0], cand.shape[0], steps)
    return ref, cand, rows


def _differs(a: np.ndarray, b: np.ndarray, atol: float) -> np.ndarray:
    if atol:
        return np.abs(a.astype(np.float64) - b.astype(np.float64)) > atol
    return a != b


def _scalar(x: Any) -> Union[int, float]:
    v = x.item()
    return int(v) if float(v).is_integer() else float(v)


def first_divergence(reference: Mapping[str, Any], candidate: Mapping[str, Any], *,
                     layers: Optional[Sequence[str]] = None, steps: Steps = None,
                     atol: float = 0.0) -> Optional[Divergence]:
    """The earliest (step, then layer in network order) difference, or None.

    ``layers``: names to compare, in network order (default: the reference's
    layers that the candidate also has, in the reference's order). ``steps``:
    None (all; both sides must have the same length), an int N (the first N
    rows), a slice, or a sequence of 0-based rows. Shapes that differ raise a
    :class:`BadInputError` naming the layer.
    """
    order = _layer_order(reference, candidate, layers)
    best: Optional[Tuple[int, int, str]] = None  # (step, layer position, layer)
    pairs = {}
    for pos, n in enumerate(order):
        ref, cand, rows = _pair(n, reference, candidate, steps)
        pairs[n] = (ref, cand)
        if not len(rows):
            continue
        bad_rows = _differs(ref[rows], cand[rows], atol).reshape(len(rows), -1).any(axis=1)
        if bad_rows.any():
            t = int(rows[bad_rows].min())
            if best is None or (t, pos) < best[:2]:
                best = (t, pos, n)
    if best is None:
        return None
    t, _, n = best
    ref, cand = pairs[n]
    bad = _differs(ref[t], cand[t], atol)
    flat = int(np.flatnonzero(bad.reshape(-1))[0])
    idx = tuple(int(i) for i in np.unravel_index(flat, bad.shape))
    return Divergence(layer=n, step=t, neuron=idx, reference=_scalar(ref[t][idx]),
                      candidate=_scalar(cand[t][idx]), differ=int(bad.sum()), size=int(bad.size))


def format_divergence(d: Optional[Divergence], reference_name: str = "lava",
                      candidate_name: str = "nmtc") -> str:
    """'identical', or one line naming the layer, step, neuron and both values."""
    if d is None:
        return "identical"
    return (f"first divergence: {d.layer} step {d.step} neuron {d.neuron}: "
            f"{reference_name}={d.reference} {candidate_name}={d.candidate} "
            f"({d.differ:,} of {d.size:,} differ at that step)")


def compare_runs(reference: Mapping[str, Any], candidate: Mapping[str, Any], *,
                 layers: Optional[Sequence[str]] = None, steps: Steps = None,
                 atol: float = 0.0) -> Dict[str, LayerComparison]:
    """Per layer (network order): events and sums on each side, mismatches."""
    out: Dict[str, LayerComparison] = {}
    for n in _layer_order(reference, candidate, layers):
        ref, cand, rows = _pair(n, reference, candidate, steps)
        r, c = ref[rows], cand[rows]
        bad = _differs(r, c, atol)
        per_row = bad.reshape(len(rows), -1).any(axis=1) if len(rows) else np.zeros(0, bool)
        first = int(rows[int(np.argmax(per_row))]) if per_row.any() else None
        out[n] = LayerComparison(
            layer=n, shape=tuple(int(s) for s in ref.shape[1:]), steps=len(rows),
            events_reference=int(np.count_nonzero(r)), events_candidate=int(np.count_nonzero(c)),
            sum_reference=float(r.sum()), sum_candidate=float(c.sum()),
            mismatches=int(bad.sum()), first_step=first)
    return out


def format_comparison(summary: Mapping[str, LayerComparison], reference_name: str = "lava",
                      candidate_name: str = "nmtc") -> str:
    """A plain-text table of :func:`compare_runs`, one row per layer."""
    head = (f"{'layer':<20} {'shape':<16} {reference_name + ' events':>14} "
            f"{candidate_name + ' events':>14} {'mismatches':>11} {'first step':>10}")
    lines: List[str] = [head]
    for s in summary.values():
        first = "-" if s.first_step is None else str(s.first_step)
        lines.append(f"{s.layer:<20} {str(list(s.shape)):<16} {s.events_reference:>14,} "
                     f"{s.events_candidate:>14,} {s.mismatches:>11,} {first:>10}")
    return "\n".join(lines)


__all__ = ["Divergence", "LayerComparison", "first_divergence", "format_divergence",
           "compare_runs", "format_comparison"]
