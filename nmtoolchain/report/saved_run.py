"""``nmtc simulate --save RUN.npz``: a simulator run as plain arrays.

The file is an ordinary ``.npz`` (read with ``np.load(path)``, no pickles):

* ``output.NAME``: each graph output, (N, T, *shape) per step;
* ``layer.NAME``: each recorded layer's output, (N, T, *shape) per step
  (``--record``: every neuron layer by default);
* ``x``: the inputs the simulator was fed, static (N, *shape) or per-step
  (N, T, *shape); ``y``: the labels, when the data had them.

Written atomically (no half-written file on failure).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Union

import numpy as np


def _numpy(value: object) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()  # type: ignore[union-attr]
    return np.asarray(value)


def run_arrays(run: Any) -> Dict[str, np.ndarray]:
    """The arrays :func:`save_run` writes, by key, for ``run``, an
    :class:`nmtoolchain.api.Simulation` (not imported here: the API sits above
    the report layer)."""
    arrays: Dict[str, np.ndarray] = {}
    for name, value in run.result.outputs.items():
        arrays[f"output.{name}"] = _numpy(value)
    for name, value in run.result.recorded.items():
        arrays[f"layer.{name}"] = _numpy(value)
    arrays["x"] = _numpy(run.inputs.x)
    if run.inputs.y is not None:
        arrays["y"] = _numpy(run.inputs.y)
    return arrays


def save_run(run: Any, path: Union[str, Path]) -> Path:
    """Write ``run``'s outputs, recorded layers, inputs and labels to ``path`` (.npz)."""
    from nmtoolchain.fileio import atomic_output

    path = Path(path)
    arrays = run_arrays(run)
    with atomic_output(path) as tmp:
        with open(tmp, "wb") as f:  # a file object: np.savez would append .npz to a name
            np.savez_compressed(f, **arrays)
    return path


__all__ = ["save_run", "run_arrays"]
