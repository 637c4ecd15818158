"""Turn a data source into simulator inputs for a graph.

Sources: the bundled ``digits`` data set, a user's ``.npz`` (``x`` and, for
accuracy, ``y``; other arrays are ignored and named), a raw ``.npy`` array,
or — when none is given — seeded random spikes (said so in every report).

Layouts (:func:`arrange_samples`), detected by the graph's per-sample input
shape: static (N, *shape), each sample applied at every step, or per-step
(N, T, *shape). A ``.npy`` of exactly *shape* is one sample; anything two
layouts fit is refused with both named.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from nmtoolchain.errors import BadInputError
from nmtoolchain.ir import Graph


@dataclass
class RunInputs:
    """Inputs (N, *shape) or (N, T, *shape), optional labels, and where they came from."""

    x: np.ndarray
    y: Optional[np.ndarray]
    description: str


#: the two layouts a data array may have, N samples of the model's per-sample input shape
STATIC = "static (N, *shape): each sample applied at every step"
PER_STEP = "per-step (N, T, *shape): one input per step"


def _describe(kind: str, shape: tuple) -> str:
    dims = ", ".join(map(str, shape))
    return f"static (N, {dims})" if kind == "static" else f"per-step (N, T, {dims})"


def arrange_samples(x: np.ndarray, shape: tuple, origin: str, *,
                    one_sample: bool = False, static: bool = False) -> np.ndarray:
    """``x`` laid out as static (N, *shape) or per-step (N, T, *shape) samples of a
    model whose per-sample input shape is ``shape``.

    The layout is detected by the model's input shape: an array whose trailing axes
    are ``shape`` after one leading axis holds N static samples, after two N samples
    of T steps. Samples stored flat (e.g. (N, 64) for a (1, 8, 8) input) are
    reshaped to the layout their size fits (static first: a flat per-step reading
    of the same array would have T = 1). ``one_sample``: an array of exactly
    ``shape`` (a single ``.npy`` sample or array) is one static sample. An array
    two layouts fit exactly, (N, 1, *shape) (per-step with T = 1, or static
    samples with a unit axis, as producers that write (1, C) inputs save them),
    is refused naming both; so is one no layout fits. ``static``: the source is
    known to hold static samples (a bundled data set); only their size must fit.
    """
    if x.ndim < 1 or x.shape[0] == 0 or x.size == 0:
        raise BadInputError(f"{origin}: holds no samples (array shape {tuple(x.shape)})")
    if x.dtype.kind not in "biuf":
        raise BadInputError(f"{origin}: samples have dtype {x.dtype}; expected real numbers")
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        bad = ~np.isfinite(x.reshape(x.shape[0], -1)).all(axis=1)
        raise BadInputError(f"{origin}: {int(bad.sum())} of {len(x)} samples hold NaN or "
                            f"infinite values (first: sample {int(np.argmax(bad))})")
    shape = tuple(int(s) for s in shape)
    dims, size = tuple(x.shape), int(np.prod(shape))
    if one_sample and dims == shape:
        return x[None]
    flat_static = x.ndim >= 2 and int(np.prod(dims[1:])) == size
    flat_step = x.ndim >= 3 and int(np.prod(dims[2:])) == size
    if static and flat_static:
        return x.reshape((dims[0],) + shape)
    if dims[1:] == shape:
        return x
    if dims[2:] == shape:
        if dims[1] == 1:  # (N, 1, *shape): T = 1, or static samples with a unit axis?
            raise _ambiguous(origin, dims, shape)
        return x
    if flat_static:  # e.g. flat 64 -> (1, 8, 8); a flat per-step reading would have T = 1
        return x.reshape((dims[0],) + shape)
    if flat_step:
        return x.reshape(dims[:2] + shape)
    if one_sample and int(np.prod(dims)) == size:
        return x.reshape((1,) + shape)
    raise BadInputError(f"{origin}: array shape {dims} (static samples of shape {dims[1:]}) "
                        f"fits no layout of the model's input {shape}: expected "
                        f"{_describe('static', shape)} or {_describe('per-step', shape)}")


def _ambiguous(origin: str, dims: tuple, shape: tuple) -> BadInputError:
    n = dims[0]
    return BadInputError(
        f"{origin}: array shape {dims} is ambiguous for the model's input {shape}: "
        f"{n} static samples (unit axis dropped) or {n} per-step samples with T = 1; "
        f"save it as {_describe('static', shape)} or {_describe('per-step', shape)} "
        f"with T >= the steps run")


def _layout_note(x: np.ndarray, shape: tuple) -> str:
    """'16 static samples' or '4 per-step samples of 20 steps'."""
    if x.ndim == len(shape) + 2:
        return f"{len(x)} per-step samples of {x.shape[1]} steps"
    return f"{len(x)} static samples"


def load_run_inputs(graph: Graph, *, dataset: Optional[str] = None, data: Optional[Path] = None,
                    samples: int = 16, seed: int = 0, rate: float = 0.1) -> RunInputs:
    """Inputs for ``graph``'s single input, at most ``samples`` of them."""
    ins = graph.inputs()
    if len(ins) != 1:
        raise BadInputError(f"model has {len(ins)} inputs; nmtc simulate feeds exactly one")
    shape = tuple(ins[0].shape)
    if dataset is not None and data is not None:
        raise BadInputError("give either --dataset or --data, not both")
    if dataset is not None:
        if dataset != "digits":
            raise BadInputError(f"--dataset {dataset!r}: unknown data set (bundled: digits)")
        from nmtoolchain.datasets import load_digits_split

        split = load_digits_split()
        x = arrange_samples(split.x_test[:samples], shape, "digits", static=True)
        return RunInputs(x, split.y_test[:samples], f"digits test split, {len(x)} images")
    if data is not None:
        from nmtoolchain.fileio import require_regular_file

        data = require_regular_file(data, "data file (.npz or .npy)")
        if data.suffix == ".npy":
            try:
                x = np.load(data, allow_pickle=False)
            except (ValueError, OSError) as e:
                raise BadInputError(f"{data}: not a readable .npy array ({e})") from None
            x = arrange_samples(x, shape, str(data), one_sample=True).astype(np.float32)
            x = x[:samples]
            return RunInputs(x, None, f"{data.name}, {_layout_note(x, shape)}")
        from nmtoolchain.datasets import read_npz

        npz = read_npz(data)
        x = arrange_samples(npz.x, shape, str(data))[:samples]
        y = None if npz.y is None else npz.y[:samples]
        return RunInputs(x, y, f"{data.name}, {_layout_note(x, shape)} ({npz.keys_note()})")
    rng = np.random.default_rng(seed)
    x = (rng.random((samples,) + shape) < rate).astype(np.float32)
    return RunInputs(x, None, f"random spikes (rate {rate}, seed {seed}); pass --data or --dataset "
                              "for real inputs")


def encode_for_graph(graph: Graph, inputs: RunInputs, steps: int) -> RunInputs:
    """Static analog samples rate-coded for ``steps`` steps when the graph records a
    rate input encoding (``metadata['input_encoding']``, e.g. a Loihi export);
    anything else (spikes, time series, graphs without a rate encoding) as is."""
    from nmtoolchain.convert import rate_encode

    enc = graph.metadata.get("input_encoding")
    x = np.asarray(inputs.x)
    shape = tuple(graph.inputs()[0].shape)
    if not (isinstance(enc, dict) and enc.get("method") == "rate") or x.ndim != len(shape) + 1 \
            or np.isin(x, (0.0, 1.0)).all():
        return inputs
    x_max = float(enc.get("x_max", 1.0))
    return RunInputs(rate_encode(x, steps, x_max=x_max), inputs.y,
                     f"{inputs.description}, rate-coded as the model records (x_max {x_max:g})")
