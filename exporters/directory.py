"""Writing an export directory: deterministic JSON and the atomic directory rename.

Shared by every back end that writes a directory (loihi2, speck): everything
goes into a hidden temporary sibling that is renamed into place only when
complete, so a failure leaves neither the directory nor the temporary one.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from nmtoolchain.errors import BadInputError
from nmtoolchain.ir import Graph, graph_to_bytes


def write_graph(graph: Graph, path: Path) -> None:
    path.write_bytes(graph_to_bytes(graph))


def _json(obj: Any) -> str:
    return json.dumps(obj, indent=2, default=_jsonable, allow_nan=True) + "\n"


def _jsonable(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, (set, frozenset)):
        return sorted(v)
    if isinstance(v, Path):
        return str(v)
    if hasattr(v, "as_dict"):
        return v.as_dict()
    return str(v)


def _write_atomically(write: Any, out_dir: Path, parent: Path, force: bool) -> None:
    """``write(tmp)`` into a hidden temporary sibling, then rename it to ``out_dir``."""
    try:  # an unwritable parent (read-only, /proc, no space) is the user's to fix
        tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".part", dir=parent))
    except OSError as e:
        raise BadInputError(f"{out_dir}: cannot write ({' '.join(str(e).split())})") from None
    try:
        write(tmp)
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; the export is an ordinary directory
        _move_into_place(tmp, out_dir, force)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError):
            raise BadInputError(f"{out_dir}: cannot write ({' '.join(str(e).split())})") from None
        raise


def _move_into_place(tmp: Path, out_dir: Path, force: bool) -> None:
    """Rename the finished temporary directory to ``out_dir`` (replacing it with force)."""
    if not out_dir.exists():
        os.replace(tmp, out_dir)
        return
    if not force:
        raise BadInputError(f"{out_dir}: appeared while exporting; not replaced (use --force)")
    old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".old", dir=out_dir.parent))
    os.rmdir(old)
    os.replace(out_dir, old)
    try:
        os.replace(tmp, out_dir)
    except BaseException:
        os.replace(old, out_dir)
        raise
    shutil.rmtree(old, ignore_errors=True)


__all__ = ["write_graph", "_json", "_jsonable", "_write_atomically", "_move_into_place"]
