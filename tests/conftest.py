"""Shared fixtures: where Intel's netx test networks live, temporary dirs."""
from __future__ import annotations

import sysconfig
from pathlib import Path

import pytest


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
