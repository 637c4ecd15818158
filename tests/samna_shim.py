"""TEST-ONLY import shim: lets a test import sinabs's pure-Python DYNAP-CNN code.

``sinabs.backend.dynapcnn/__init__.py`` imports samna (not installable here),
so even its pure-Python memory and mapping code cannot be imported. This
context manager puts empty placeholder modules for samna in ``sys.modules``
for the duration of an import, then removes them. It is used only to read
sinabs's ``memory_summary``, ``get_constraints`` and ``get_valid_mapping`` as
references; nothing here produces a chip configuration, and nmtc never
imports it (it lives under tests/ and is not shipped).
"""
from __future__ import annotations

import contextlib
import sys
import types
from typing import Iterator

_PLACEHOLDERS = {
    "samna": {}, "samnagui": {}, "samna.ui": {}, "samna.graph": {}, "samna.device":
        {"DeviceInfo": type("DeviceInfo", (), {})},
    "samna.speck2e": {}, "samna.speck2e.configuration":
        {"SpeckConfiguration": type("SpeckConfiguration", (), {})},
    "samna.speck2f": {}, "samna.speck2f.configuration":
        {"SpeckConfiguration": type("SpeckConfiguration", (), {})},
    "samna.specksim": {}, "samna.specksim.nodes": {
        "SpecksimConvolutionalFilterNode": type("SpecksimConvolutionalFilterNode", (), {}),
        "SpecksimIAFFilterNode": type("SpecksimIAFFilterNode", (), {}),
        "SpecksimSumPoolingFilterNode": type("SpecksimSumPoolingFilterNode", (), {})},
}


@contextlib.contextmanager
def samna_placeholders() -> Iterator[None]:
    """Placeholder samna modules while importing sinabs.backend.dynapcnn (then removed)."""
    added = []
    for name, attrs in _PLACEHOLDERS.items():
        if name not in sys.modules:
            mod = types.ModuleType(name)
            mod.__dict__.update(attrs)
            sys.modules[name] = mod
            added.append(name)
    for name in added:  # samna.device etc. as attributes of their parents
        if "." in name:
            parent, _, child = name.rpartition(".")
            setattr(sys.modules[parent], child, sys.modules[name])
    try:
        yield
    finally:
        for name in added:
            sys.modules.pop(name, None)


def import_dynapcnn():
    """(sinabs.backend.dynapcnn.DynapcnnNetwork, ...mapping, ...chips.dynapcnn) through the shim."""
    with samna_placeholders():
        from sinabs.backend.dynapcnn import mapping
        from sinabs.backend.dynapcnn.chips import dynapcnn as chip
        from sinabs.backend.dynapcnn.dynapcnn_network import DynapcnnNetwork
    return DynapcnnNetwork, mapping, chip
