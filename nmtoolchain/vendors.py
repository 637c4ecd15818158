"""The optional vendor libraries, and the one check that a feature needing one makes.

The core of nmtc (IR, loaders, passes, simulator, energy, reports, exports that only
write files) runs without Lava, lava-dl or sinabs. The few entry points that run a
vendor library call :func:`require` first, so a missing vendor is one line naming
the package and how to install it (:class:`MissingVendorError`, CLI exit 2) instead
of a traceback from deep inside a run.
"""
from __future__ import annotations

import contextlib
import importlib
import io
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

from nmtoolchain.errors import MissingVendorError

_LAVA_INSTALL = ("make env, or pip install lava-nc==0.10.0 then "
                 "pip install --no-deps lava-dl==0.6.0 (Python 3.10)")


@dataclass(frozen=True)
class Vendor:
    """One optional library: what it is called, which modules prove it works, how to get it."""

    label: str  # what the user is told is missing
    modules: Tuple[str, ...]  # each must import
    install: str  # how to install it


VENDORS: Dict[str, Vendor] = {
    "lava": Vendor("Lava (lava-nc 0.10)", ("lava.magma.core.process.process",), _LAVA_INSTALL),
    "lava-dl": Vendor("Lava (lava-nc 0.10 and lava-dl 0.6)",
                      ("lava.magma.core.process.process", "lava.lib.dl.netx"), _LAVA_INSTALL),
    "sinabs": Vendor("sinabs 3.1", ("sinabs",),
                     "make env, or pip install --no-deps sinabs==3.1.3"),
    "sanafe": Vendor("SANA-FE 2.2 (sanafe)", ("sanafe",),
                     "make env, or pip install --no-deps sanafe==2.2.9"),
}


def missing(name: str) -> Optional[str]:
    """Why vendor ``name`` (a key of :data:`VENDORS`) cannot be used, or None when it imports.

    Importing is the test (not merely finding the files), so a broken install
    counts as missing too. lava-dl prints a note about an optional toolbox on
    stdout when first imported, and its import of ``torch.utils.cpp_extension``
    prints "No CUDA runtime is found, using CUDA_HOME=..." on stderr wherever an
    nvcc is installed without a GPU; both are swallowed here (nmtc's Lava runs are
    CPU-only), so ``--json`` stays clean and a failure stays one line.
    """
    vendor = VENDORS[name]
    for module in vendor.modules:
        try:
            with contextlib.redirect_stdout(io.StringIO()), \
                    contextlib.redirect_stderr(io.StringIO()):
                importlib.import_module(module)
        except ImportError as exc:
            return str(exc) or type(exc).__name__
    return None


def require(name: str, what: str) -> None:
    """Raise :class:`MissingVendorError` unless vendor ``name`` imports.

    ``what`` names the feature in the message, e.g. ``"nmtc verify"``.
    """
    why = missing(name)
    if why is not None:
        vendor = VENDORS[name]
        raise MissingVendorError(f"{what} needs {vendor.label}, which cannot be imported "
                                 f"({why}): {vendor.install}")


__all__ = ["Vendor", "VENDORS", "missing", "require"]
