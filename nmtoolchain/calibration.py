"""Calibration data for passes that measure a network on data (quantization
error, Loihi adaptation): ``digits`` (the bundled train split), a user's
``.npz`` with ``x`` (labels ``y`` optional, other arrays ignored) or a raw
``.npy`` of samples, in the layouts of :mod:`nmtoolchain.inputs`, turned into spike trains the way the graph records its
input encoding.

Pure numpy and the core's data loaders; no back end.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np

from nmtoolchain.convert.encode import encoding_metadata, rate_encode
from nmtoolchain.datasets import load_digits_split, read_npz
from nmtoolchain.errors import BadInputError
from nmtoolchain.inputs import arrange_samples
from nmtoolchain.ir import Graph

#: Calibration samples taken from --calib (enough to measure spike-count error).
CALIB_SAMPLES = 128

#: What an export says when a converted network's direct (analog) input is re-coded.
DIRECT_REPLACED = (
    "input: the model applies the analog input at every step (direct encoding); a netx "
    "input layer without neuron carries binary spikes, so the export feeds the deterministic "
    "rate code of the input instead (same mean current, quantized to 1/T)")


def calibration_spikes(graph: Graph, calib: Union[str, Path], timesteps: int
                       ) -> Tuple[np.ndarray, str, Optional[Dict[str, Any]]]:
    """Calibration inputs as spikes (B, T, *shape): digits (train split) or a
    user's .npz ``x``; analog values are rate-coded as the graph's
    ``input_encoding`` says (deterministic rate code when it says nothing).
    Returns (spikes, description, the encoding used or None)."""
    shape = tuple(graph.inputs()[0].shape)
    x, origin = calibration_samples(calib, shape)
    binary = bool(np.isin(x, (0.0, 1.0)).all())
    if x.ndim == len(shape) + 2 and binary:
        return x, origin + " (spike trains as given)", None
    enc = graph.metadata.get("input_encoding")
    if isinstance(enc, dict) and enc.get("method") not in (None, "rate"):
        raise BadInputError(f"--calib {calib}: the model's input encoding "
                            f"{enc.get('method')!r} is not one nmtc can apply (rate; a direct "
                            "input is re-coded first by recode_direct_input)")
    x_max = float(enc.get("x_max", 1.0)) if isinstance(enc, dict) else 1.0
    used = dict(enc) if isinstance(enc, dict) else encoding_metadata(timesteps, x_max)
    return rate_encode(x, timesteps, x_max=x_max), origin + ", rate-coded", used


def read_calibration_x(calib: Union[str, Path], limit: int = CALIB_SAMPLES
                       ) -> Tuple[np.ndarray, str]:
    """The raw samples of ``--calib`` (at most ``limit``) and where they came from:
    'digits' (the train split), a .npz (``x``; ``y`` and other arrays are not
    needed) or a .npy array."""
    if str(calib) == "digits":
        x = load_digits_split().x_train[:limit]
        return x, f"digits train split, {len(x)} images"
    path = Path(calib)
    if path.suffix == ".npz":
        npz = read_npz(path)
        return npz.x[:limit], f"{path.name} ({npz.keys_note()})"
    if path.suffix == ".npy":
        from nmtoolchain.fileio import require_regular_file

        require_regular_file(path, "calibration file (.npz or .npy)")
        try:
            x = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as e:
            raise BadInputError(f"{path}: not a readable .npy array ({e})") from None
        return np.asarray(x)[:limit], path.name
    raise BadInputError(f"--calib {calib}: expected 'digits', a .npz file with x (y optional) "
                        "or a .npy array of samples")


def calibration_samples(calib: Union[str, Path], shape: Tuple[int, ...]
                        ) -> Tuple[np.ndarray, str]:
    """``--calib``'s samples laid out for an input of ``shape`` (static (N, *shape)
    or per-step (N, T, *shape)) and a description naming the count and layout."""
    x, origin = read_calibration_x(calib)
    x = arrange_samples(np.asarray(x, np.float32), tuple(shape), str(calib),
                        static=str(calib) == "digits")
    steps = f" per-step samples of {x.shape[1]} steps" if x.ndim == len(shape) + 2 \
        else " static samples"
    return x, f"{origin}, {len(x)}{steps}" if str(calib) != "digits" else origin


def recode_direct_input(graph: Graph, timesteps: int) -> List[str]:
    """Re-record a directly encoded (analog every step) input as a rate code, in
    place; returns the note saying so (or nothing)."""
    enc = graph.metadata.get("input_encoding")
    if not (isinstance(enc, dict) and enc.get("method") == "direct"):
        return []
    graph.metadata["input_encoding"] = dict(
        encoding_metadata(timesteps, float(enc.get("x_max", 1.0))), replaces=DIRECT_REPLACED)
    return [DIRECT_REPLACED]


__all__ = ["calibration_spikes", "calibration_samples", "read_calibration_x",
           "recode_direct_input", "CALIB_SAMPLES", "DIRECT_REPLACED"]
