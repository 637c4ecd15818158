"""Make the vendor libraries unimportable, for testing that nmtc runs without them.

``NMTC_HIDE_VENDORS=lava,sinabs`` lists top-level packages to hide. When this
directory is on ``PYTHONPATH``, Python imports this file at start-up (the
``sitecustomize`` hook), so the interpreter and every subprocess it starts see
``import lava`` fail with ``ModuleNotFoundError`` as if lava-nc and lava-dl were
not installed. tests/conftest.py installs the same blocker and puts this
directory on ``PYTHONPATH`` for subprocesses, so the variable alone suffices
under pytest. Files that lava-dl's wheel installs as data (site-packages/tests/
lava/...: Intel's .net networks) stay readable, and ``importlib.metadata`` still
lists the distributions: only imports are blocked.
"""
from __future__ import annotations

import importlib
import os
import sys
from typing import Any, Optional, Sequence, Tuple

ENV_VAR = "NMTC_HIDE_VENDORS"


def hidden_packages() -> Tuple[str, ...]:
    """Top-level package names listed in ``NMTC_HIDE_VENDORS`` (comma separated)."""
    return tuple(p.strip() for p in os.environ.get(ENV_VAR, "").split(",") if p.strip())


class HidingFinder:
    """Wraps one ``sys.meta_path`` finder so that it does not see the listed packages.

    Every finder present at start-up (the path finder that searches site-packages
    included) is wrapped, so ``import lava`` raises ``ModuleNotFoundError`` and
    ``importlib.util.find_spec("lava")`` returns None, as when it is not installed.
    """

    def __init__(self, inner: Any, packages: Sequence[str]) -> None:
        self.inner = inner
        self.packages = tuple(packages)

    def find_spec(self, fullname: str, path: Optional[Any] = None,
                  target: Optional[Any] = None) -> Any:
        if fullname.split(".")[0] in self.packages:
            return None
        return self.inner.find_spec(fullname, path, target)

    def __getattr__(self, name: str) -> Any:  # invalidate_caches, find_distributions, ...
        return getattr(self.inner, name)


def install() -> bool:
    """Wrap the import finders (once); False when nothing is to be hidden.

    Refuses when a hidden package is already imported: hiding it then would be a lie.
    """
    packages = hidden_packages()
    if not packages:
        return False
    if any(type(f).__name__ == "HidingFinder" for f in sys.meta_path):
        return True
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in packages)
    if loaded:
        raise RuntimeError(f"{ENV_VAR}: {', '.join(loaded[:3])} already imported")
    sys.meta_path[:] = [HidingFinder(f, packages) if hasattr(f, "find_spec") else f
                        for f in sys.meta_path]
    importlib.invalidate_caches()
    return True


install()
