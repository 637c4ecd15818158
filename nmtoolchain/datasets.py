"""Data sets nmtc can evaluate on without a download.

* ``digits``: scikit-learn's bundled 8x8 digits (1,797 images, 10 classes),
  the embedded default, split deterministically into train and test.
* ``.npz`` files a user passes, holding ``x`` (N, ...) and, where accuracy is
  measured, ``y`` (N,); other arrays in the file (a producer's recordings) are
  left unread and named as such.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Union

import numpy as np

from nmtoolchain.errors import BadInputError


@dataclass
class Split:
    """Inputs (float32, per-sample shape after the first axis) and integer labels."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


#: the split every command's ``--dataset digits`` uses (README "Data files")
DIGITS_TEST_FRACTION = 0.25
DIGITS_SPLIT_SEED = 0


def load_digits_split(test_fraction: float = DIGITS_TEST_FRACTION,
                      seed: int = DIGITS_SPLIT_SEED) -> Split:
    """Digits as (N, 1, 8, 8) floats in [0, 1], a stratified fixed split:
    scikit-learn's ``train_test_split`` with ``test_size=test_fraction``,
    ``random_state=seed``, ``stratify=labels`` (1,347 train, 450 test images)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None, :, :]
    y = d.target.astype(np.int64)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=test_fraction, random_state=seed,
                                          stratify=y)
    return Split(xtr, ytr, xte, yte)


@dataclass
class NpzData:
    """Samples ``x``, labels ``y`` (None when the file has none) and which of the
    file's arrays were read (``used``) and left alone (``ignored``)."""

    x: np.ndarray
    y: Optional[np.ndarray]
    used: List[str] = field(default_factory=list)
    ignored: List[str] = field(default_factory=list)

    def keys_note(self) -> str:
        """'keys x, y' or 'keys x; ignored: spk, mem' for a run's description."""
        note = "keys " + ", ".join(self.used)
        return note + (f"; ignored: {', '.join(self.ignored)}" if self.ignored else "")


def read_npz(path: Union[str, Path], *, labels: bool = False) -> NpzData:
    """Read ``x`` (and ``y`` when present) from a user's ``.npz`` (never unpickles).

    ``labels=True``: ``y`` is required (accuracy). Other arrays, e.g. the
    recordings a producer saved next to its inputs, are listed as ignored."""
    path = Path(path)
    if not path.exists():
        raise BadInputError(f"{path}: no such file")
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in (("x", "y") if labels else ("x",)) if k not in f.files]
            if missing:
                want = "'x' and 'y'" if labels else "'x' (and optionally 'y')"
                raise BadInputError(f"{path}: missing array(s) {missing}; expected {want} "
                                    f"(the file holds {sorted(f.files)})")
            x = f["x"]
            y = f["y"] if "y" in f.files else None
            used = ["x"] + (["y"] if y is not None else [])
            ignored = sorted(k for k in f.files if k not in used)
    except BadInputError:
        raise
    except Exception as e:  # ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error
        raise BadInputError(f"{path}: not a readable .npz file ({type(e).__name__}: "
                            f"{' '.join(str(e).split())[:160]})") from None
    if y is None:
        return NpzData(x.astype(np.float32), None, used, ignored)
    if len(x) != len(y):
        raise BadInputError(f"{path}: x has {len(x)} samples but y has {len(y)}")
    if y.dtype.kind not in "iub" and (y.dtype.kind != "f" or not np.all(np.isfinite(y))
                                      or np.any(y != np.round(y))):
        raise BadInputError(f"{path}: labels y must be whole class numbers 0, 1, ...")
    return NpzData(x.astype(np.float32), y.astype(np.int64), used, ignored)


def load_npz(path: Union[str, Path], *, labels: bool = True) -> tuple:
    """``(x, y)`` of :func:`read_npz`; ``labels=False``: ``y`` is optional (None when absent)."""
    data = read_npz(path, labels=labels)
    return data.x, data.y
