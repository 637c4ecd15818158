"""nmtc: a neuromorphic-hardware deployment toolchain.

The core (IR, passes, simulator, energy, reports) imports only numpy and torch;
vendor libraries (lava, lava-dl, sinabs) are imported inside the exporters and
reference runners that need them.

The Python API (:mod:`nmtoolchain.api`) is reached from here lazily, so that
``import nmtoolchain`` imports neither torch nor a vendor library::

    import nmtoolchain as nmtc
    graph = nmtc.load("model.onnx")
    run = nmtc.simulate(graph, x, timesteps=16)

``nmtc.convert`` and ``nmtc.report`` are the API functions although
``nmtoolchain.convert`` and ``nmtoolchain.report`` are also subpackages: the
names resolve to an object that calls the function and forwards attribute
access to the subpackage, so ``nmtoolchain.convert.mst`` and
``import nmtoolchain.report.simulation`` keep working.
"""
from __future__ import annotations

import importlib
import sys
import types
from typing import Any, Dict, List

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

#: API names resolved on first use from nmtoolchain.api
_API = ("load", "convert", "simulate", "report", "export", "verify", "check_accuracy",
        "Simulation")
#: API names that are also subpackages of nmtoolchain
_SHARED = ("convert", "report")


class _FunctionAndPackage:
    """``nmtc.convert`` / ``nmtc.report``: calling it calls the API function;
    any attribute comes from the subpackage of the same name."""

    __slots__ = ("_function", "_package")

    def __init__(self, function: str, package: str) -> None:
        object.__setattr__(self, "_function", function)
        object.__setattr__(self, "_package", package)

    def _api(self) -> Any:
        return getattr(importlib.import_module("nmtoolchain.api"), self._function)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._api()(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(importlib.import_module(self._package), name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(importlib.import_module(self._package), name, value)

    def __delattr__(self, name: str) -> None:
        delattr(importlib.import_module(self._package), name)

    def __dir__(self) -> List[str]:
        return dir(importlib.import_module(self._package))

    @property
    def __doc__(self) -> str:  # type: ignore[override]
        return self._api().__doc__

    @property
    def __signature__(self) -> Any:
        import inspect

        return inspect.signature(self._api())

    def __repr__(self) -> str:
        return f"<nmtc.{self._function}: the API function (also the package {self._package})>"


_SHARED_OBJECTS: Dict[str, _FunctionAndPackage] = {
    n: _FunctionAndPackage(n, f"{__name__}.{n}") for n in _SHARED}


class _Package(types.ModuleType):
    # importing nmtoolchain.convert binds the subpackage as an attribute of this
    # package; reading that attribute still gives the callable stand-in.
    def __getattribute__(self, name: str) -> Any:
        if name in _SHARED:
            return _SHARED_OBJECTS[name]
        return super().__getattribute__(name)


def __getattr__(name: str) -> Any:
    if name in _API:
        value = getattr(importlib.import_module("nmtoolchain.api"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> List[str]:
    return sorted(set(globals()) | set(_API))


sys.modules[__name__].__class__ = _Package

__all__ = [
    "__version__",
    "NmtcError",
    "BadInputError",
    "PickleRefusedError",
    "UnsupportedOpError",
    "IRValidationError",
    "NotExpressibleError",
    "DoesNotFitError",
    *_API,
]
