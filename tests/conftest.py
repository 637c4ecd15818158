"""Shared fixtures: where Intel's netx test networks live, temporary dirs; and the
vendor switch: ``NMTC_HIDE_VENDORS=lava,sinabs`` runs the suite as if Lava and
sinabs were not installed, and tests marked ``lava``/``sinabs`` skip, naming the
package, whenever that vendor cannot be imported."""
from __future__ import annotations

import importlib.util
import os
import sysconfig
from functools import lru_cache
from pathlib import Path

_HIDE_DIR = Path(__file__).parent / "_hide_vendors"


def _hide_vendors_now() -> None:
    """Install the import blocker before any test module is imported, and put its
    directory on PYTHONPATH so subprocesses (the CLI tests) are blocked too."""
    if not os.environ.get("NMTC_HIDE_VENDORS", "").strip():
        return
    spec = importlib.util.spec_from_file_location("_nmtc_hide_vendors",
                                                  _HIDE_DIR / "sitecustomize.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # installs the blocker (once)
    paths = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    if str(_HIDE_DIR) not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([str(_HIDE_DIR)] + [p for p in paths if p])


_hide_vendors_now()

import pytest  # noqa: E402

# The vendor each marker needs (a key of nmtoolchain.vendors.VENDORS).
_MARKER_VENDOR = {"lava": "lava-dl", "sinabs": "sinabs", "sanafe": "sanafe"}


@lru_cache(maxsize=None)
def _vendor_missing(marker: str) -> str | None:
    """The skip reason when a marker's vendor cannot be imported, else None."""
    from nmtoolchain.vendors import VENDORS, missing

    name = _MARKER_VENDOR[marker]
    why = missing(name)
    return None if why is None else f"needs {VENDORS[name].label}: {why}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip tests marked ``lava`` or ``sinabs`` when that vendor is missing."""
    for item in items:
        for marker in _MARKER_VENDOR:
            if item.get_closest_marker(marker) is not None:
                reason = _vendor_missing(marker)
                if reason is not None:
                    item.add_marker(pytest.mark.skip(reason=reason))


def _intel_netx_dir() -> Path | None:
    """lava-dl's wheel installs its own tests (trained networks and Intel's
    recorded ground truth) into site-packages/tests/lava/lib/dl/netx."""
    for key in ("purelib", "platlib"):
        p = Path(sysconfig.get_paths()[key]) / "tests" / "lava" / "lib" / "dl" / "netx"
        if (p / "mnist.net").exists():
            return p
    return None


@pytest.fixture(scope="session")
def intel_netx() -> Path:
    """Directory with tiny.net, mnist.net and gts/* from the lava-dl wheel."""
    p = _intel_netx_dir()
    if p is None:
        pytest.skip("lava-dl's bundled test networks are not installed (pip install lava-dl)")
    return p
