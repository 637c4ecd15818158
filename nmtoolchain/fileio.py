"""Writing output files safely: never a half-written file.

Every writer in nmtc goes through :func:`atomic_output`: it writes to a
temporary name in the destination's directory and renames it into place only
when writing succeeded, so an interrupted or failed write leaves neither a
partial file nor a changed old one.
"""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Union

from nmtoolchain.errors import BadInputError


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
        raise BadInputError(f"{path}: directory {parent} does not exist")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=parent)
    except OSError as e:
        raise BadInputError(f"{path}: cannot write ({e.strerror})") from None
    os.close(fd)
    try:
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
