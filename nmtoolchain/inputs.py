"""Turn a data source into simulator inputs for a graph.

Sources: the bundled ``digits`` data set, a user's ``.npz`` (``x`` and, for
accuracy, ``y``), a raw ``.npy`` array, or — when none is given — seeded
random spikes (said so in every report). Shapes are checked against the
graph's input with an error naming both.
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


def _fit(x: np.ndarray, shape: tuple, origin: str) -> np.ndarray:
    if x.ndim < 1 or x.shape[0] == 0 or x.size == 0:
        raise BadInputError(f"{origin}: holds no samples (array shape {tuple(x.shape)})")
    if x.dtype.kind not in "biuf":
        raise BadInputError(f"{origin}: samples have dtype {x.dtype}; expected real numbers")
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        bad = ~np.isfinite(x.reshape(x.shape[0], -1)).all(axis=1)
        raise BadInputError(f"{origin}: {int(bad.sum())} of {len(x)} samples hold NaN or "
                            f"infinite values (first: sample {int(np.argmax(bad))})")
    if tuple(x.shape[1:]) == shape or tuple(x.shape[2:]) == shape:
        return x
    if int(np.prod(x.shape[1:])) == int(np.prod(shape)):
        return x.reshape((x.shape[0],) + shape)  # e.g. flat 64 -> (1, 8, 8)
    raise BadInputError(f"{origin}: samples have shape {tuple(x.shape[1:])} but the model's input "
                        f"is {shape}")


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
        x = _fit(split.x_test[:samples], shape, "digits")
        return RunInputs(x, split.y_test[:samples], f"digits test split, {len(x)} images")
    if data is not None:
        from nmtoolchain.fileio import require_regular_file

        data = require_regular_file(data, "data file (.npz or .npy)")
        if data.suffix == ".npy":
            try:
                x = np.load(data, allow_pickle=False)
            except (ValueError, OSError) as e:
                raise BadInputError(f"{data}: not a readable .npy array ({e})") from None
            if tuple(x.shape) == shape or (x.ndim == len(shape) + 1 and tuple(x.shape[1:]) == shape):
                x = x[None]  # one sample (optionally with a time axis)
            return RunInputs(_fit(x, shape, str(data)).astype(np.float32)[:samples], None,
                             f"{data.name}")
        from nmtoolchain.datasets import load_npz

        x, y = load_npz(data)
        x = _fit(x, shape, str(data))[:samples]
        return RunInputs(x, y[:samples], f"{data.name}, {len(x)} samples")
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
