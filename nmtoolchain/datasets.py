"""Data sets nmtc can evaluate on without a download.

* ``digits``: scikit-learn's bundled 8x8 digits (1,797 images, 10 classes),
  the embedded default, split deterministically into train and test.
* ``.npz`` files a user passes, holding ``x`` (N, ...) and ``y`` (N,).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np

from nmtoolchain.errors import BadInputError


@dataclass
class Split:
    """Inputs (float32, per-sample shape after the first axis) and integer labels."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def load_digits_split(test_fraction: float = 0.25, seed: int = 0) -> Split:
    """Digits as (N, 1, 8, 8) floats in [0, 1], a stratified fixed split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None, :, :]
    y = d.target.astype(np.int64)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=test_fraction, random_state=seed,
                                          stratify=y)
    return Split(xtr, ytr, xte, yte)


def load_npz(path: Union[str, Path], *, labels: bool = True) -> tuple:
    """Read ``x`` and ``y`` from a user's ``.npz`` (never unpickles).

    ``labels=False``: ``y`` is optional (calibration data); it is None when absent."""
    path = Path(path)
    if not path.exists():
        raise BadInputError(f"{path}: no such file")
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in (("x", "y") if labels else ("x",)) if k not in f.files]
            if missing:
                want = "'x' and 'y'" if labels else "'x' (and optionally 'y')"
                raise BadInputError(f"{path}: missing array(s) {missing}; expected {want}")
            x = f["x"]
            y = f["y"] if "y" in f.files else None
    except BadInputError:
        raise
    except Exception as e:  # ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error
        raise BadInputError(f"{path}: not a readable .npz file ({type(e).__name__}: "
                            f"{' '.join(str(e).split())[:160]})") from None
    if y is None:
        return x.astype(np.float32), None
    if len(x) != len(y):
        raise BadInputError(f"{path}: x has {len(x)} samples but y has {len(y)}")
    if y.dtype.kind not in "iub" and (y.dtype.kind != "f" or not np.all(np.isfinite(y))
                                      or np.any(y != np.round(y))):
        raise BadInputError(f"{path}: labels y must be whole class numbers 0, 1, ...")
    return x.astype(np.float32), y.astype(np.int64)
