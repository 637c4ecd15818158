"""Writing output files safely: never a half-written file.

Every writer in nmtc goes through :func:`atomic_output`: it writes to a
temporary name in the destination's directory and renames it into place only
when writing succeeded, so an interrupted or failed write leaves neither a
partial file nor a changed old one.
"""
from __future__ import annotations

import os
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Union

from nmtoolchain.errors import BadInputError


def require_regular_file(path: Union[str, Path], what: str = "file") -> Path:
    """Return ``path`` if it names a regular file; else a one-line BadInputError.

    Checked with ``stat`` before any ``open``: opening a FIFO (or a terminal, a
    socket, a character device) for reading blocks or never ends.
    """
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise BadInputError(f"{path}: no such file") from None
    except OSError as e:
        raise BadInputError(f"{path}: cannot read ({e.strerror})") from None
    if stat.S_ISDIR(st.st_mode):
        raise BadInputError(f"{path}: is a directory, expected a {what}")
    if not stat.S_ISREG(st.st_mode):
        kind = ("a FIFO (named pipe)" if stat.S_ISFIFO(st.st_mode) else
                "a character device" if stat.S_ISCHR(st.st_mode) else
                "a socket" if stat.S_ISSOCK(st.st_mode) else "not a regular file")
        raise BadInputError(f"{path}: is {kind}, expected a regular {what}")
    return path


#: a ``.part`` temporary older than this (seconds) belongs to no running writer
STALE_PART_AGE_S = 60.0


def clean_stale_parts(parent: Union[str, Path], name: str) -> None:
    """Remove ``.NAME.*.part`` temporaries a killed earlier run left in ``parent``
    (only those older than :data:`STALE_PART_AGE_S`, so a concurrent writer's
    temporary survives)."""
    import shutil
    import time

    parent = Path(parent)
    try:
        stale = list(parent.glob(f".{name}.*.part"))
    except OSError:
        return
    now = time.time()
    for p in stale:
        try:
            if now - p.lstat().st_mtime < STALE_PART_AGE_S:
                continue
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
        except OSError:
            pass


#: reads every dataset of an HDF5 file; run in a child so that a corrupt file that
#: crashes the HDF5 C library (it can segfault) kills the child, not nmtc
_HDF5_PROBE = """
import sys, h5py
def visit(name, obj):
    if isinstance(obj, h5py.Dataset):
        obj[()]
        dict(obj.attrs)
with h5py.File(sys.argv[1], 'r') as f:
    f.visititems(visit)
"""
#: seconds the probe may take before the file is called too large or looping
HDF5_PROBE_TIMEOUT_S = 120.0
_PROBED: set = set()  # (path, size, mtime, inode) of files that read cleanly


def probe_hdf5(path: Path) -> None:
    """Read the whole HDF5 file ``path`` in a child process first.

    A file the HDF5 library cannot read without crashing (segfault, abort)
    becomes a one-line BadInputError here; only a file that reads cleanly is
    then opened in this process.
    """
    import subprocess
    import sys

    try:
        st = os.stat(path)
        key = (str(Path(path).resolve()), st.st_size, st.st_mtime_ns, st.st_ino)
    except OSError as e:
        raise BadInputError(f"{path}: cannot read ({e.strerror})") from None
    if key in _PROBED:
        return
    try:
        r = subprocess.run([sys.executable, "-c", _HDF5_PROBE, str(path)], capture_output=True,
                           timeout=HDF5_PROBE_TIMEOUT_S, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise BadInputError(f"{path}: reading the HDF5 file took over "
                            f"{HDF5_PROBE_TIMEOUT_S:.0f} s; refusing it") from None
    if r.returncode < 0:
        raise BadInputError(f"{path}: corrupt HDF5 file (the HDF5 library crashed reading it, "
                            f"signal {-r.returncode})")
    if r.returncode != 0:
        lines = [ln for ln in r.stderr.decode(errors="replace").splitlines() if ln.strip()]
        why = lines[-1].strip()[:200] if lines else f"exit {r.returncode}"
        raise BadInputError(f"{path}: truncated or corrupt HDF5 file ({why})")
    _PROBED.add(key)


def refuse_existing_output(path: Union[str, Path], force: bool,
                           option: str = "-o") -> Path:
    """The one overwrite rule of every nmtc output (export files and directories,
    ``convert -o``, ``report --html``): an existing path is replaced only with
    ``--force``. Checked before any work is done."""
    path = Path(path)
    if not force and (path.exists() or path.is_symlink()):
        raise BadInputError(f"{path}: already exists; choose another {option} or pass --force "
                            "to replace it")
    if path.is_dir() and not path.is_symlink():
        raise BadInputError(f"{path}: is a directory; {option} names a file here")
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_output(path: Union[str, Path]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it to ``path`` on success.

    An OSError (missing directory, no permission, disk full) becomes a
    one-line BadInputError naming ``path``; any other error propagates after
    the temporary file is removed.
    """
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise BadInputError(f"{path}: {parent} is not a directory" if parent.exists()
                            else f"{path}: directory {parent} does not exist")
    clean_stale_parts(parent, path.name)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=parent)
    except OSError as e:
        raise BadInputError(f"{path}: cannot write ({e.strerror})") from None
    os.close(fd)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 would survive the rename
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError):
            raise BadInputError(f"{path}: cannot write ({' '.join(str(e).split())})") from None
        raise
