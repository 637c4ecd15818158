"""Base class and registry of IR operators.

An :class:`Op` is a small typed record (one dataclass per primitive, in the
style of NIR) holding the parameters of one operator. It knows how to infer its
output shape from its input shapes and how to check its own fields. It does
not know its name or its edges; :class:`nmtoolchain.ir.graph.Graph` holds
those, and wraps every error an op raises with the node's name.

Shapes are per sample: no batch axis and no time axis (NIR's convention).
"""
from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Dict, List, Optional, Sequence, Tuple, Type

import numpy as np

Shape = Tuple[int, ...]

#: Every concrete operator class, by its ``op_name``.
OP_REGISTRY: Dict[str, Type["Op"]] = {}


class OpCheckError(ValueError):
    """Raised by an op's ``check``/``infer_shape``; the graph adds the node name."""


def as_array(value: Any, dtype: Any = np.float32) -> np.ndarray:
    """Return ``value`` as a numpy array of ``dtype`` (scalars become 0-d arrays)."""
    if hasattr(value, "detach"):  # a torch tensor; no torch import needed here
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=dtype)


def as_tuple(value: Any, n: int, name: str) -> Tuple[int, ...]:
    """Expand an int or a sequence to an ``n``-tuple of ints."""
    if isinstance(value, (int, np.integer)):
        return (int(value),) * n
    arr = np.asarray(value).reshape(-1)
    if arr.size == 1:
        return (int(arr[0]),) * n
    if arr.size != n:
        raise OpCheckError(f"{name} must have {n} values, got {arr.tolist()}")
    return tuple(int(v) for v in arr)


@dataclasses.dataclass(eq=False)
class Op:
    """Base of all IR operators.

    Class attributes a subclass sets:
      ``num_inputs``: how many inputs (``None``: two or more, as for Add).
      ``nir_type``: the NIR 1.0.x primitive this op maps to one-to-one, or None.
      ``is_neuron``: the op holds state across time steps and emits spikes or
      membrane values (the simulator keeps its state; cycles may pass through it).

    Capability traits (what passes and targets ask instead of comparing names):
      ``is_stateful``: the output depends on earlier time steps (neurons, Delay).
      ``is_synapse``: a stored weight tensor connects its input to its output
      (Linear, Affine, Conv1d, Conv2d): what quantizers scale and mappers place.
      ``is_pooling``: a fixed-window reduction (sum, average, max pooling).
      ``is_ann_activation``: a rate-coded ANN nonlinearity a spiking target cannot
      run before conversion (ReLU, QCFS).
      ``is_normalization``: statistics-based normalization (BatchNorm, LayerNorm),
      folded into weights or refused by spiking targets.
      ``is_layout``: moves values without arithmetic (Flatten, Reshape, Transpose).
      ``is_readout``: a neuron that never spikes; its output is its membrane value
      v (I, LI, CubaLI): read by its v, and only at a network's output on chips.
    """

    op_name: ClassVar[str] = "Op"
    num_inputs: ClassVar[Optional[int]] = 1
    nir_type: ClassVar[Optional[str]] = None
    is_neuron: ClassVar[bool] = False
    is_stateful: ClassVar[bool] = False
    is_synapse: ClassVar[bool] = False
    is_pooling: ClassVar[bool] = False
    is_ann_activation: ClassVar[bool] = False
    is_normalization: ClassVar[bool] = False
    is_layout: ClassVar[bool] = False
    is_readout: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "op_name" not in cls.__dict__:
            cls.op_name = cls.__name__
        OP_REGISTRY[cls.op_name] = cls

    # ----------------------------------------------------------------- fields
    def field_values(self) -> Dict[str, Any]:
        """The dataclass fields as a dict, in declaration order."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def arrays(self) -> Dict[str, np.ndarray]:
        """The array-valued fields (parameters), in declaration order."""
        return {k: v for k, v in self.field_values().items() if isinstance(v, np.ndarray)}

    #: array fields that hold constants or statistics, not trained values
    #: (BatchNorm's running mean/var, a constant Scale): counted as buffers
    buffer_fields: ClassVar[Tuple[str, ...]] = ()

    def num_parameters(self) -> int:
        """Number of trainable values: the array fields, less :attr:`buffer_fields`
        and less an all-zero ``bias`` of a synapse (the loader's stand-in for
        ``bias=False``; a trained bias is never exactly zero everywhere)."""
        n = 0
        for k, a in self.arrays().items():
            if k in self.buffer_fields or (k == "bias" and self.is_synapse and not a.any()):
                continue
            n += a.size
        return int(n)

    def num_buffers(self) -> int:
        """Number of stored non-trainable values (:attr:`buffer_fields`)."""
        return int(sum(a.size for k, a in self.arrays().items() if k in self.buffer_fields))

    # ------------------------------------------------------------ semantics
    def check(self) -> None:
        """Raise :class:`OpCheckError` if the fields are inconsistent."""

    def infer_shape(self, in_shapes: Sequence[Shape]) -> Shape:
        """Output shape for the given input shapes (default: same as the input)."""
        return tuple(in_shapes[0])

    def synapses(self, in_shapes: Sequence[Shape], out_shape: Shape) -> int:
        """Structural connections with a fixed weight (border-aware for convs)."""
        return 0

    def macs(self, in_shapes: Sequence[Shape], out_shape: Shape) -> int:
        """Multiply-accumulates per time step for real-valued inputs (dense count)."""
        return 0

    def describe(self) -> str:
        """Short parameter summary for tables (scalars only)."""
        parts: List[str] = []
        for k, v in self.field_values().items():
            if isinstance(v, np.ndarray):
                if v.size == 1:
                    parts.append(f"{k}={float(v.reshape(-1)[0]):.4g}")
                else:
                    parts.append(f"{k}{list(v.shape)}")
            elif v is not None and v != () and k not in ("shape",):
                parts.append(f"{k}={v}")
        return ", ".join(parts)


def norm_axis(axis: int, ndim: int) -> int:
    """A per-sample axis in 0..ndim-1 (negative counts from the end); OpCheckError if out of range."""
    a = axis + ndim if axis < 0 else axis
    if not 0 <= a < ndim:
        raise OpCheckError(f"axis {axis} out of range for a {ndim}-D input")
    return a


def broadcast_ok(param: np.ndarray, shape: Shape) -> bool:
    """True if a per-neuron parameter broadcasts to the neuron shape."""
    try:
        np.broadcast_shapes(param.shape, tuple(shape))
    except ValueError:
        return False
    return np.broadcast_shapes(param.shape, tuple(shape)) == tuple(shape)
