"""nmtc: a neuromorphic-hardware deployment toolchain.

The core (IR, passes, simulator, energy, reports) imports only numpy and torch;
vendor libraries (lava, lava-dl, sinabs) are imported inside the exporters and
reference runners that need them.
"""
from __future__ import annotations

__version__ = "0.1.0"

from nmtoolchain.errors import (  # noqa: E402
    BadInputError,
    DoesNotFitError,
    IRValidationError,
    NmtcError,
    NotExpressibleError,
    PickleRefusedError,
    UnsupportedOpError,
)

__all__ = [
    "__version__",
    "NmtcError",
    "BadInputError",
    "PickleRefusedError",
    "UnsupportedOpError",
    "IRValidationError",
    "NotExpressibleError",
    "DoesNotFitError",
]
